//! LiteLLM's `get_nested_value` (spec §6, newest semantics) for every `*_jwt_field`: a
//! dot-path into the claims, `\.` escaping a literal dot, a leading `metadata.` dropped, no list
//! indexing. Paths are split once, at configure time.

use serde_json::{Map, Value};

/// A compiled claim path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    text: String,
    parts: Vec<String>,
}

impl ClaimPath {
    /// `None` for an empty path (LiteLLM: empty path → default).
    pub fn parse(path: &str) -> Option<Self> {
        if path.is_empty() {
            return None;
        }
        let walked = path.strip_prefix("metadata.").unwrap_or(path);
        let mut parts = Vec::new();
        let mut current = String::new();
        let mut chars = walked.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'.') => {
                    current.push('.');
                    chars.next();
                }
                '.' => parts.push(std::mem::take(&mut current)),
                other => current.push(other),
            }
        }
        parts.push(current);
        Some(ClaimPath { text: path.to_string(), parts })
    }

    /// The path as configured (for error messages).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at this path, if every step is an object member.
    pub fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.parts.split_first()?;
        let mut value = claims.get(first)?;
        for part in rest {
            value = value.as_object()?.get(part)?;
        }
        Some(value)
    }

    /// A string claim (an id, an email). Other types count as absent.
    pub fn string(&self, claims: &Map<String, Value>) -> Option<String> {
        self.lookup(claims).and_then(Value::as_str).map(str::to_owned)
    }

    /// A string, or the first element of a list of strings (newest LiteLLM's team id rule).
    pub fn string_or_first(&self, claims: &Map<String, Value>) -> Option<String> {
        match self.lookup(claims)? {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => items.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        }
    }

    /// A list of strings (roles, groups). A single string is one role — LiteLLM iterates it
    /// character by character, a bug this filter does not reproduce (docs/compatibility.md).
    pub fn strings(&self, claims: &Map<String, Value>) -> Vec<String> {
        match self.lookup(claims) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }
}

/// A declarative condition on one claim (`custom_validate`, rule requirements).
#[derive(Debug, Clone)]
pub enum ClaimRequirement {
    /// The claim equals this JSON value.
    Equals(ClaimPath, Value),
    /// The claim (a string, or a list of strings) contains at least one of these.
    AnyOf(ClaimPath, Vec<String>),
    /// The claim (a string, or a list of strings) contains all of these.
    AllOf(ClaimPath, Vec<String>),
}

impl ClaimRequirement {
    pub fn holds(&self, claims: &Map<String, Value>) -> bool {
        match self {
            ClaimRequirement::Equals(path, want) => path.lookup(claims) == Some(want),
            ClaimRequirement::AnyOf(path, wanted) => {
                let have = path.strings(claims);
                wanted.iter().any(|w| have.contains(w))
            }
            ClaimRequirement::AllOf(path, wanted) => {
                let have = path.strings(claims);
                wanted.iter().all(|w| have.contains(w))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        json!({
            "sub": "u1",
            "realm_access": {"roles": ["admin", "dev"]},
            "kubernetes.io": {"namespace": "ml"},
            "user": {"email": "a@b.c"},
            "metadata": {"team": "t-meta"},
            "groups": ["g1", "g2"],
            "role": "viewer",
            "n": 5
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn path(p: &str) -> ClaimPath {
        ClaimPath::parse(p).unwrap()
    }

    #[test]
    fn top_level_and_nested_paths() {
        assert_eq!(path("sub").string(&claims()).as_deref(), Some("u1"));
        assert_eq!(path("realm_access.roles").strings(&claims()), ["admin", "dev"]);
        assert_eq!(path("user.email").string(&claims()).as_deref(), Some("a@b.c"));
    }

    #[test]
    fn escaped_dot_reads_a_key_containing_a_dot() {
        assert_eq!(path(r"kubernetes\.io.namespace").string(&claims()).as_deref(), Some("ml"));
        assert_eq!(path("kubernetes.io.namespace").string(&claims()), None);
    }

    #[test]
    fn metadata_prefix_is_dropped_like_litellm() {
        assert_eq!(path("metadata.user.email").string(&claims()).as_deref(), Some("a@b.c"));
        assert_eq!(path("metadata.team").string(&claims()), None, "a real `metadata` claim is unreachable");
    }

    #[test]
    fn no_list_indexing_and_no_walking_into_scalars() {
        assert_eq!(path("groups.0").string(&claims()), None);
        assert_eq!(path("groups[0]").string(&claims()), None);
        assert_eq!(path("sub.x").string(&claims()), None);
    }

    #[test]
    fn typed_reads() {
        assert_eq!(path("n").string(&claims()), None, "numbers are not ids");
        assert_eq!(path("groups").string_or_first(&claims()).as_deref(), Some("g1"));
        assert_eq!(path("role").strings(&claims()), ["viewer"], "a string role is one role");
        assert!(path("missing").strings(&claims()).is_empty());
        assert!(ClaimPath::parse("").is_none());
    }
}
