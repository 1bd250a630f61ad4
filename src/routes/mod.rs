//! Route lists as LiteLLM reads them (spec §2.1, newest semantics): each entry is either a
//! `LiteLLMRoutes` group name — whose members are Starlette-style templates, `{name}` one
//! non-empty segment, `{name:path}` anything — or a literal path, where a trailing `*` means
//! "starts with". Lists are compiled once, at configure time.


pub mod checks;
pub mod group_label;
pub mod groups;

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `{name}`: one or more characters other than `/`.
    Segment,
    /// `{name:path}`: any characters, `/` included.
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
    Template(Vec<Token>),
}

impl Pattern {
    /// A group member: a template when it has `{…}`, otherwise exact text (`*` is literal here).
    fn template(member: &str) -> Self {
        if !member.contains('{') {
            return Pattern::Exact(member.to_string());
        }
        let mut tokens = Vec::new();
        let mut rest = member;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest.get(open..).and_then(|r| r.find('}')).map(|c| c + open) else { break };
            if open > 0 {
                tokens.push(Token::Literal(rest.get(..open).unwrap_or_default().to_string()));
            }
            let param = rest.get(open + 1..close).unwrap_or_default();
            tokens.push(if param.ends_with(":path") { Token::Rest } else { Token::Segment });
            rest = rest.get(close + 1..).unwrap_or_default();
        }
        if !rest.is_empty() {
            tokens.push(Token::Literal(rest.to_string()));
        }
        Pattern::Template(tokens)
    }

    /// A literal entry of a configured list.
    fn literal(entry: &str) -> Self {
        match entry.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_string()),
            None => Pattern::Exact(entry.to_string()),
        }
    }

}

fn match_tokens(tokens: &[Token], route: &str) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return route.is_empty();
    };
    match first {
        Token::Literal(text) => route.strip_prefix(text.as_str()).is_some_and(|r| match_tokens(rest, r)),
        Token::Segment => {
            let segment_end = route.find('/').unwrap_or(route.len());
            // Try every non-empty split inside the segment (a literal may follow, e.g. `{id}.zip`).
            (1..=segment_end).rev().any(|end| route.get(end..).is_some_and(|r| match_tokens(rest, r)))
        }
        Token::Rest => (0..=route.len()).rev().any(|end| {
            route.is_char_boundary(end) && route.get(end..).is_some_and(|r| match_tokens(rest, r))
        }),
    }
}

/// A compiled `*_allowed_routes` / `routes` list. Matching is per request, so the patterns
/// are split once: exact paths in a hash set (most group members), then prefixes, then the
/// few templates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteList {
    /// The entries as configured, for messages.
    texts: Vec<String>,
    exact: HashSet<String>,
    prefixes: Vec<String>,
    templates: Vec<Vec<Token>>,
}

impl RouteList {
    pub fn compile<S: AsRef<str>>(entries: &[S]) -> Self {
        let mut list = RouteList::default();
        for entry in entries {
            let text = entry.as_ref();
            list.texts.push(text.to_string());
            let patterns = match groups::members(text) {
                Some(members) => members.iter().map(|m| Pattern::template(m)).collect(),
                None => vec![Pattern::literal(text)],
            };
            for pattern in patterns {
                match pattern {
                    Pattern::Exact(p) => {
                        list.exact.insert(p);
                    }
                    Pattern::Prefix(p) => list.prefixes.push(p),
                    Pattern::Template(t) => list.templates.push(t),
                }
            }
        }
        list
    }

    /// The list without these exact routes (a group member LiteLLM's own checks leave out).
    pub fn without(mut self, routes: &[&str]) -> Self {
        for r in routes {
            self.exact.remove(*r);
        }
        self
    }

    /// LiteLLM's `_allowed_routes_check`: does any entry match the route?
    pub fn matches(&self, route: &str) -> bool {
        self.exact.contains(route)
            || self.prefixes.iter().any(|p| route.starts_with(p.as_str()))
            || self.templates.iter().any(|t| match_tokens(t, route))
    }

    /// The entries as configured (for LiteLLM's `Allowed routes=[…]` texts).
    pub fn entries(&self) -> Vec<&str> {
        self.texts.iter().map(String::as_str).collect()
    }

    /// LiteLLM's `get_actual_routes`: group names replaced by their members.
    pub fn expanded(&self) -> Vec<&str> {
        self.texts
            .iter()
            .flat_map(|t| match groups::members(t) {
                Some(members) => members.to_vec(),
                None => vec![t.as_str()],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_templates_match_real_paths() {
        let l = RouteList::compile(&["openai_routes"]);
        assert!(l.matches("/v1/chat/completions"));
        assert!(l.matches("/threads/abc"));
        assert!(l.matches("/openai/deployments/gpt-4o/chat/completions"));
        assert!(!l.matches("/threads/"), "{{param}} needs a non-empty segment");
        assert!(!l.matches("/threads/a/b"));
        assert!(!l.matches("/v1/chat/completions/x"), "anchored at the end");
        assert!(!l.matches("/key/generate"));
    }

    #[test]
    fn path_params_span_slashes_and_backtrack() {
        let l = RouteList::compile(&["google_routes"]);
        assert!(l.matches("/v1beta/models/gemini-pro:generateContent"));
        assert!(l.matches("/v1beta/models/tunedModels/x:streamGenerateContent"));
        assert!(!l.matches("/v1beta/models/gemini-pro:deleteEverything"));
        let mcp = RouteList::compile(&["mcp_routes"]);
        assert!(mcp.matches("/v1/mcp/server/a/b/c"));
    }

    #[test]
    fn star_is_literal_in_group_members_but_a_prefix_in_literal_entries() {
        let group = RouteList::compile(&["openai_routes"]);
        assert!(group.matches("/containers/*"));
        assert!(!group.matches("/containers/abc"));
        let literal = RouteList::compile(&["/v1/custom/*", "/exact"]);
        assert!(literal.matches("/v1/custom/anything/here"));
        assert!(literal.matches("/exact"));
        assert!(!literal.matches("/exact/more"));
    }

    #[test]
    fn seed_missing_comma_bug_is_not_reproduced() {
        let l = RouteList::compile(&["openai_routes"]);
        assert!(l.matches("/v2/rerank") && l.matches("/realtime"));
    }

    #[test]
    fn expansion_and_python_repr_for_messages() {
        let l = RouteList::compile(&["/a", "anthropic_routes"]);
        let expanded = l.expanded();
        assert_eq!(expanded.first(), Some(&"/a"));
        assert!(expanded.contains(&"/v1/messages"));
        assert_eq!(l.entries(), ["/a", "anthropic_routes"]);
    }
}
