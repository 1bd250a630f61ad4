//! LiteLLM's own route predicates (`RouteChecks.is_llm_api_route`, `is_info_route`,
//! `is_unbilled_route`, and `route_skips_budget_checks` of auth_checks.py, 1.110.2), as they
//! decide a non-admin's routes and whether budgets apply. These are not `_allowed_routes_check`
//! over a configured list (that is [`super::RouteList`]): LiteLLM matches its group members here
//! with its own regex translation (`_route_matches_pattern`), prefix rules for pass-through
//! providers and a few fixed route sets, reproduced below.

use super::groups::{
    AGENT_INFERENCE_ROUTES, ANTHROPIC_ROUTES, GOOGLE_ROUTES, INFO_ROUTES, LITELLM_NATIVE_ROUTES,
    MAPPED_PASS_THROUGH_ROUTES, MCP_INFERENCE_ROUTES, OPENAI_ROUTES,
};

/// `MODEL_LIST_ROUTES` (proxy/_types.py).
const MODEL_LIST_ROUTES: &[&str] = &["/models", "/v1/models", "/claude_code_gateway/v1/models"];

/// `MODEL_DISCOVERY_ROUTES`: read-only routes that never spend, so budgets are not checked.
const MODEL_DISCOVERY_ROUTES: &[&str] =
    &["/model/info", "/v1/model/info", "/v2/model/info", "/model_group/info", "/utils/model_info"];

/// `BUDGET_ENFORCED_SIDE_EFFECT_ROUTES`: not LLM routes, but budgets still apply.
const BUDGET_ENFORCED_SIDE_EFFECT_ROUTES: &[&str] =
    &["/health", "/health/services", "/health/test_connection", "/auto_router/test_routing"];

/// `MCP_DISCOVERY_ROUTES`: MCP routes whose requests never spend.
const MCP_DISCOVERY_ROUTES: &[&str] = &["/mcp-rest/tools/list", "/v1/mcp/tools"];

/// `_UNBILLED_ROUTES` of route_checks.py (besides the model lists).
const UNBILLED_ROUTES: &[&str] = &[
    "/utils/token_counter",
    "/utils/transform_request",
    "/responses/input_tokens",
    "/v1/responses/input_tokens",
    "/openai/v1/responses/input_tokens",
];

/// `_EU_JEV_DECISION_ROUTE`: an LLM route unless a pass-through endpoint is configured on it
/// (this filter has none).
const EU_JEV_DECISION_ROUTE: &str = "/eu_jev/v1/systemone";

/// One step of a group member as LiteLLM's `_route_matches_pattern` turns it into a regex:
/// `{x}` → `[^/]+`, `{x:path}` → `[^:]+` when a `:` follows later in the member, else any
/// characters; the rest is used as regex text unescaped, and the members only contain two
/// metacharacters: `.` (any character but a newline) and `?` (the character before is optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Char(char, bool),
    AnyChar(bool),
    Segment,
    Rest { stop_at_colon: bool },
}

fn compile(member: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut rest = member;
    while let Some(c) = rest.chars().next() {
        if c == '{' {
            if let Some(close) = rest.find('}') {
                let param = rest.get(1..close).unwrap_or_default();
                let after = rest.get(close + 1..).unwrap_or_default();
                steps.push(if param.ends_with(":path") { Step::Rest { stop_at_colon: after.contains(':') } } else { Step::Segment });
                rest = after;
                continue;
            }
        }
        rest = rest.get(c.len_utf8()..).unwrap_or_default();
        match c {
            '?' => match steps.last_mut() {
                Some(Step::Char(_, optional) | Step::AnyChar(optional)) => *optional = true,
                _ => steps.push(Step::Char('?', false)),
            },
            '.' => steps.push(Step::AnyChar(false)),
            other => steps.push(Step::Char(other, false)),
        }
    }
    steps
}

fn matches_steps(steps: &[Step], text: &[char]) -> bool {
    let Some((first, rest)) = steps.split_first() else { return text.is_empty() };
    let one = |ok: &dyn Fn(char) -> bool, optional: bool| {
        (text.first().is_some_and(|c| ok(*c)) && matches_steps(rest, text.get(1..).unwrap_or_default()))
            || (optional && matches_steps(rest, text))
    };
    match *first {
        Step::Char(want, optional) => one(&|c| c == want, optional),
        Step::AnyChar(optional) => one(&|c| c != '\n', optional),
        Step::Segment | Step::Rest { .. } => {
            let allowed = |c: char| match *first {
                Step::Segment => c != '/',
                Step::Rest { stop_at_colon } => !(stop_at_colon && c == ':'),
                _ => false,
            };
            let run = text.iter().take_while(|c| allowed(**c)).count();
            (1..=run).rev().any(|n| matches_steps(rest, text.get(n..).unwrap_or_default()))
        }
    }
}

/// `_is_azure_openai_route`: `/openai/deployments/<a>/<b>/chat/completions`,
/// `/engines/<a>/chat/completions`.
fn is_azure_openai_route(route: &str) -> bool {
    let segments = |prefix: &str, n: usize| {
        route
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("/chat/completions"))
            .is_some_and(|middle| middle.split('/').count() == n && middle.split('/').all(|s| !s.is_empty()))
    };
    segments("/openai/deployments/", 2) || segments("/engines/", 1)
}

/// `RouteChecks.is_llm_api_route`: the routes every authenticated caller may use. Asked on
/// every non-admin request, so LiteLLM's member lists are compiled once (the first time) into
/// one set of exact routes, the `*` prefixes and the patterns; the answer is the same as
/// trying each list in LiteLLM's order (`is_llm_api_route_as_litellm_writes_it` in the tests).
pub fn is_llm_api_route(route: &str) -> bool {
    let m = LLM_API_MATCHER.get_or_init(LlmApiMatcher::new);
    if m.exact.contains(route)
        || m.prefixes.iter().any(|p| route.starts_with(p))
        || is_azure_openai_route(route)
        || MAPPED_PASS_THROUGH_ROUTES.iter().any(|p| route == *p || route.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
        || route.trim_end_matches('/') == EU_JEV_DECISION_ROUTE
    {
        return true;
    }
    let text: Vec<char> = route.chars().collect();
    m.patterns.iter().any(|steps| matches_steps(steps, &text))
}

static LLM_API_MATCHER: std::sync::OnceLock<LlmApiMatcher> = std::sync::OnceLock::new();

/// Compile [`is_llm_api_route`]'s lists now (at configure time), so no request pays for it.
pub fn prepare() {
    LLM_API_MATCHER.get_or_init(LlmApiMatcher::new);
}

/// [`is_llm_api_route`]'s lists, compiled.
struct LlmApiMatcher {
    exact: std::collections::HashSet<&'static str>,
    prefixes: Vec<&'static str>,
    patterns: Vec<Vec<Step>>,
}

impl LlmApiMatcher {
    fn new() -> Self {
        let mut m = LlmApiMatcher { exact: Default::default(), prefixes: Vec::new(), patterns: Vec::new() };
        // Exact members of the three provider lists; their templates (and `*` entries of the
        // OpenAI list) as LiteLLM tries them.
        for list in [OPENAI_ROUTES, ANTHROPIC_ROUTES, GOOGLE_ROUTES] {
            for member in list {
                m.exact.insert(member);
                if member.contains('{') {
                    m.patterns.push(compile(member));
                }
            }
        }
        m.prefixes.extend(OPENAI_ROUTES.iter().filter_map(|r| r.strip_suffix('*')));
        // `check_route_access` lists: exact, `*` prefix, or the member as a pattern.
        for list in [MCP_INFERENCE_ROUTES, AGENT_INFERENCE_ROUTES, LITELLM_NATIVE_ROUTES] {
            for member in list {
                m.exact.insert(member);
                m.prefixes.extend(member.strip_suffix('*'));
                m.patterns.push(compile(member));
            }
        }
        m
    }
}

/// `RouteChecks.is_info_route`: exact members of `info_routes`.
pub fn is_info_route(route: &str) -> bool {
    INFO_ROUTES.contains(&route)
}

/// `RouteChecks.is_unbilled_route`: model lists, token counters (no budget is reserved).
pub fn is_unbilled_route(route: &str) -> bool {
    let last = route.rsplit('/').next().unwrap_or_default();
    let (resource, action) = last.split_once(':').unwrap_or((last, ""));
    MODEL_LIST_ROUTES.contains(&route)
        || UNBILLED_ROUTES.contains(&route)
        || ["count_tokens", "count-tokens"].contains(&resource)
        || action == "countTokens"
}

/// `route_skips_budget_checks` (plus `is_mcp_discovery_request`'s route part): budgets apply on
/// LLM routes and a few side-effect routes only; model discovery never spends. (LiteLLM also
/// skips MCP JSON-RPC requests whose body `method` spends nothing, and zero-priced models; this
/// filter reads neither, so it checks budgets there: stricter.)
pub fn route_skips_budget_checks(route: &str) -> bool {
    if BUDGET_ENFORCED_SIDE_EFFECT_ROUTES.contains(&route) {
        return false;
    }
    if MODEL_LIST_ROUTES.contains(&route) || MODEL_DISCOVERY_ROUTES.contains(&route) || MCP_DISCOVERY_ROUTES.contains(&route) {
        return true;
    }
    !is_llm_api_route(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `_route_matches_pattern`: the member as an anchored regex.
    fn matches_pattern(route: &str, member: &str) -> bool {
        let text: Vec<char> = route.chars().collect();
        matches_steps(&compile(member), &text)
    }

    /// `check_route_access`: exact, trailing-`*` prefix, or the member as a pattern.
    fn check_route_access(route: &str, members: &[&str]) -> bool {
        members.contains(&route)
            || members.iter().filter_map(|m| m.strip_suffix('*')).any(|prefix| route.starts_with(prefix))
            || members.iter().any(|m| matches_pattern(route, m))
    }

    /// LiteLLM's `is_llm_api_route` as it is written, list by list: the reference the compiled
    /// matcher is held to.
    fn is_llm_api_route_as_litellm_writes_it(route: &str) -> bool {
        OPENAI_ROUTES.contains(&route)
            || ANTHROPIC_ROUTES.contains(&route)
            || GOOGLE_ROUTES.contains(&route)
            || check_route_access(route, MCP_INFERENCE_ROUTES)
            || check_route_access(route, AGENT_INFERENCE_ROUTES)
            || check_route_access(route, LITELLM_NATIVE_ROUTES)
            || OPENAI_ROUTES.iter().any(|m| {
                (m.contains('{') && matches_pattern(route, m)) || m.strip_suffix('*').is_some_and(|p| route.starts_with(p))
            })
            || GOOGLE_ROUTES.iter().chain(ANTHROPIC_ROUTES).any(|m| m.contains('{') && matches_pattern(route, m))
            || is_azure_openai_route(route)
            || MAPPED_PASS_THROUGH_ROUTES
                .iter()
                .any(|p| route == *p || route.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
            || route.trim_end_matches('/') == EU_JEV_DECISION_ROUTE
    }

    /// The compiled matcher answers as LiteLLM's list-by-list code for every member of every
    /// list, and for members changed at their ends and inside.
    #[test]
    fn the_compiled_matcher_is_litellms_predicate() {
        let lists = [OPENAI_ROUTES, ANTHROPIC_ROUTES, GOOGLE_ROUTES, MCP_INFERENCE_ROUTES, AGENT_INFERENCE_ROUTES,
                     LITELLM_NATIVE_ROUTES, MAPPED_PASS_THROUGH_ROUTES, INFO_ROUTES, crate::routes::groups::MANAGEMENT_ROUTES];
        let mut routes = vec![String::new(), "/".into(), "/x".into(), EU_JEV_DECISION_ROUTE.into()];
        for member in lists.iter().flat_map(|l| l.iter()) {
            let filled = member.replace("{model}", "m").replace(":path}", "}");
            let filled: String = {
                let mut out = String::new();
                let mut depth = 0;
                for c in filled.chars() {
                    match c {
                        '{' => { depth += 1; out.push('p'); }
                        '}' => depth -= 1,
                        _ if depth > 0 => {}
                        _ => out.push(c),
                    }
                }
                out
            };
            for r in [member.to_string(), filled.clone(), format!("{filled}/"), format!("{filled}/x/y"), format!("{filled}x"),
                      filled.trim_end_matches('*').to_string(), format!("/v1{filled}"), filled.replacen('/', "//", 1),
                      filled.chars().take(filled.len() / 2).collect()] {
                routes.push(r);
            }
        }
        let mut differ = Vec::new();
        for r in &routes {
            if is_llm_api_route(r) != is_llm_api_route_as_litellm_writes_it(r) {
                differ.push(r.clone());
            }
        }
        assert!(differ.is_empty(), "{} of {} routes differ: {:?}", differ.len(), routes.len(), differ.iter().take(10).collect::<Vec<_>>());
        assert!(routes.len() > 1000, "{}", routes.len());
    }

    /// Every expectation here was checked against LiteLLM 1.110.2's `RouteChecks.is_llm_api_route`.
    #[test]
    fn llm_api_routes_as_litellm_matches_them() {
        for route in [
            "/v1/chat/completions", "/chat/completions", "/v1/messages", "/mcp/tools/list", "/mcp/anything",
            "/v1/threads/thread_abc/runs", "/threads/t1", "/containers/c1/files", "/v1/models",
            "/v1beta/models/gemini-pro:generateContent", "/v1beta/models/tuned/x:countTokens",
            "/openai/deployments/gpt-4o/chat/completions", "/openai/deployments/a/b/chat/completions",
            "/engines/e1/chat/completions", "/bedrock", "/bedrock/model/x/invoke", "/anthropic/v1/messages",
            "/a2a/agent-1", "/a2a/x/.well-known/agent-card.json", "/v1/traces/abc", "/rag/query",
            "/eu_jev/v1/systemone/", "/claude-code/plugins/p/archive/d.zip", "/realtime",
            "/openai/deployments/a/b/c/chat/completions", // the `/openai` pass-through prefix
        ] {
            assert!(is_llm_api_route(route), "{route}");
        }
        for route in [
            "/key/generate", "/team/new", "/guardrails/apply_guardrail", "/model/info", "/v1/model/info",
            "/model_group/info", "/v1/mcp/server", "/bedrockx/y", "/threads/", "/threads/a/b/c",
            "/v1beta/models/gemini-pro:deleteEverything", "/engines/a/b/chat/completions",
            "/health", "/some/unknown/route", "/spend/logs", "/lens/",
        ] {
            assert!(!is_llm_api_route(route), "{route}");
        }
    }

    #[test]
    fn patterns_keep_litellms_regex_metacharacters() {
        // `.` is any character and `x?` an optional one in LiteLLM's unescaped patterns.
        assert!(matches_pattern("/a2a/x/Xwell-known/agent-cardXjson", "/a2a/{agent_id}/.well-known/agent-card.json"));
        assert!(matches_pattern("/realtimgpt", "/realtime?{model}"));
        assert!(matches_pattern("/realtimegpt", "/realtime?{model}"));
        assert!(matches_pattern("/realtime", "/realtime?{model}"), "`e?` then one character for the placeholder");
        assert!(!matches_pattern("/realtim", "/realtime?{model}"), "the placeholder needs a character");
        assert!(!matches_pattern("/models/a:b:generateContent", "/models/{m:path}:generateContent"), "stops at `:`");
        assert!(matches_pattern("/models/a/b:generateContent", "/models/{m:path}:generateContent"));
        assert!(matches_pattern("/lens/a/b", "/lens/{path:path}"));
        assert!(!matches_pattern("/lens/", "/lens/{path:path}"));
    }

    #[test]
    fn budgets_are_skipped_off_llm_routes_and_on_model_discovery() {
        for route in ["/models", "/v1/models", "/model/info", "/v2/model/info", "/key/info", "/user/list", "/team/new",
                      "/mcp-rest/tools/list", "/v1/mcp/tools", "/some/unknown/route"] {
            assert!(route_skips_budget_checks(route), "{route}");
        }
        for route in ["/v1/chat/completions", "/v1/embeddings", "/mcp/tools/list", "/health", "/health/services", "/bedrock/x"] {
            assert!(!route_skips_budget_checks(route), "{route}");
        }
    }

    #[test]
    fn unbilled_and_info_routes() {
        for route in ["/v1/models", "/utils/token_counter", "/v1/messages/count_tokens", "/v1beta/models/g:countTokens"] {
            assert!(is_unbilled_route(route), "{route}");
        }
        assert!(!is_unbilled_route("/v1/chat/completions"));
        assert!(is_info_route("/key/info") && is_info_route("/v2/model/info"));
        assert!(!is_info_route("/key/info/x"));
    }
}
