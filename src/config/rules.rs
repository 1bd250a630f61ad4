//! Per-route rules, token locations, routing by model and route lists as configured.

use super::fields::{err, objects, only_keys, string_list};
use super::raw::{RawDpop, RawHeaderLocation, RawModelRouting, RawRateLimits, RawRule};
use super::url::valid_authority;
use crate::authn::dpop::{self, DpopRules};
use crate::authn::extract::{HeaderLocation, Locations};
use crate::authz::claim_path::ClaimPath;
use crate::authz::route_rules::{PathMatch, Requirements, RouteRule, RuleAction};
use crate::authz::ClaimRequirement;
use crate::routes::RouteList;
use serde_json::Value;

/// A configured route list: each entry a path (starting with `/`; `*` and `{param}` allowed)
/// or a LiteLLM route group name. Anything else matches no request, so a misspelt group
/// (`openai_route`) would silently empty an allow-list or a deny rule: refused.
pub(super) fn route_list(entries: &[String], field: &str) -> Result<RouteList, String> {
    for (i, entry) in entries.iter().enumerate() {
        if !entry.starts_with('/') && crate::routes::groups::members(entry).is_none() {
            return Err(err(&format!("{field}[{i}]"), format!(
                "{entry:?} is neither a path (starting with /) nor a LiteLLM route group (e.g. openai_routes, info_routes, management_routes)"
            )));
        }
    }
    Ok(RouteList::compile(entries))
}

pub(super) fn compile_locations(headers: Vec<RawHeaderLocation>, params: Vec<String>, cookies: Vec<String>) -> Result<Locations, String> {
    let mut out = Locations::default();
    for (i, h) in headers.into_iter().enumerate() {
        let name = h.name.to_ascii_lowercase();
        if name.is_empty() || !name.chars().all(token_char) {
            return Err(err(&format!("from_headers[{i}].name"), "must be an HTTP header name"));
        }
        if name == "cookie" || name.starts_with(crate::authz::identity::IDENTITY_HEADER_PREFIX) {
            return Err(err(&format!("from_headers[{i}].name"), "use from_cookies for cookies; x-litellm-* headers are the filter's own"));
        }
        out.headers.push(HeaderLocation { name, value_prefix: h.value_prefix });
    }
    for (field, names) in [("from_params", &params), ("from_cookies", &cookies)] {
        if let Some(i) = names.iter().position(|n| n.is_empty() || !n.chars().all(token_char)) {
            return Err(err(&format!("{field}[{i}]"), "must be a non-empty name"));
        }
    }
    out.params = params;
    out.cookies = cookies;
    Ok(out)
}

/// The `dpop` block. DPoP is defined for the `Authorization` header only.
pub(super) fn compile_dpop(raw: Option<RawDpop>, locations: &Locations) -> Result<Option<DpopRules>, String> {
    let Some(raw) = raw.filter(|d| d.enabled) else { return Ok(None) };
    if !locations.is_default() {
        return Err(err("dpop", "DPoP tokens come in the Authorization header: remove from_headers, from_params and from_cookies"));
    }
    let max_age = raw.max_age.unwrap_or(dpop::DEFAULT_MAX_AGE);
    if !(1..=3600).contains(&max_age) {
        return Err(err("dpop.max_age", "must be between 1 and 3600 seconds"));
    }
    let max_skew = raw.max_skew.unwrap_or(dpop::DEFAULT_MAX_SKEW);
    if max_skew > 300 {
        return Err(err("dpop.max_skew", "must be at most 300 seconds"));
    }
    let public_origin = match raw.public_origin {
        None => None,
        Some(origin) => {
            let origin = origin.trim_end_matches('/').to_string();
            let authority = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            if !authority.is_some_and(|a| !a.contains('/') && valid_authority(a)) {
                return Err(err("dpop.public_origin", format!("{origin:?} must be scheme://host[:port], e.g. https://api.example.com")));
            }
            Some(origin)
        }
    };
    Ok(Some(DpopRules { max_age, max_skew, public_origin }))
}

/// `model_routing.header`'s default (Envoy AI Gateway's equivalent is `x-ai-eg-model`).
pub const DEFAULT_MODEL_HEADER: &str = "x-litellm-model";

/// Routing by model (`model_routing`): the request header that names the requested model for
/// Envoy's route matching. The filter removes any value a client sent and sets its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRouting {
    /// Lowercase header name.
    pub header: String,
}

/// Headers the request already has a meaning for: framing and hop-by-hop headers, and the ones
/// this filter reads. A routing header by one of these names would change what it means.
const NOT_A_ROUTING_HEADER: &[&str] = &[
    "host", "content-length", "content-type", "transfer-encoding", "connection", "te", "upgrade", "keep-alive",
    "proxy-connection", "expect", "authorization", "cookie", "dpop",
];

/// `model_routing`: off unless `enabled`; the header name checked once, here.
pub(super) fn compile_model_routing(raw: Option<RawModelRouting>, locations: &Locations) -> Result<Option<ModelRouting>, String> {
    let Some(raw) = raw.filter(|r| r.enabled) else { return Ok(None) };
    let field = "model_routing.header";
    let header = raw.header.unwrap_or_else(|| DEFAULT_MODEL_HEADER.to_string()).to_ascii_lowercase();
    if header.starts_with(':') {
        return Err(err(field, format!("{header:?} is a pseudo-header, which Envoy does not let a filter add: name a regular header, e.g. {DEFAULT_MODEL_HEADER}")));
    }
    if header.is_empty() || !header.chars().all(token_char) {
        return Err(err(field, format!("{header:?} is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")));
    }
    if NOT_A_ROUTING_HEADER.contains(&header.as_str()) || locations.wants_header(&header) {
        return Err(err(field, format!("{header:?} already means something in the request: name a header of its own, e.g. {DEFAULT_MODEL_HEADER}")));
    }
    if crate::authz::identity::IDENTITY_HEADERS.contains(&header.as_str()) || header == crate::authz::identity::REASON_HEADER {
        return Err(err(field, format!("{header:?} is one of the identity headers this filter sets")));
    }
    Ok(Some(ModelRouting { header }))
}

/// Enforcing the records' `rpm_limit`, `tpm_limit` and `max_parallel_requests` (`rate_limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// LiteLLM's window (`LITELLM_RATE_LIMIT_WINDOW_SIZE`), seconds.
    pub window_s: u64,
    /// Which of an answer's tokens count (`general_settings.token_rate_limit_type`).
    pub tokens: crate::limits::usage::TokenKind,
}

/// `rate_limits`: on unless `enabled: false` (LiteLLM enforces the records' limits whenever
/// they are set; turning that off must be said).
pub(super) fn compile_rate_limits(raw: Option<RawRateLimits>, tokens: crate::limits::usage::TokenKind) -> Result<Option<RateLimits>, String> {
    match raw {
        Some(RawRateLimits { enabled: false, .. }) => Ok(None),
        Some(RawRateLimits { window_seconds: Some(w), .. }) if !(1..=86_400).contains(&w) => {
            Err(err("rate_limits.window_seconds", "must be between 1 and 86400 seconds"))
        }
        raw => Ok(Some(RateLimits {
            window_s: raw.and_then(|r| r.window_seconds).unwrap_or(crate::limits::DEFAULT_WINDOW_SECONDS),
            tokens,
        })),
    }
}

/// RFC 9110 `tchar`: what a header name, a query parameter or a cookie name here may contain.
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

pub(super) fn compile_rule(i: usize, raw: RawRule) -> Result<RouteRule, String> {
    let here = format!("rules[{i}]");
    let m = raw.matcher;
    let path = match (m.path, m.prefix, m.routes) {
        (Some(p), None, None) if p.starts_with('/') => PathMatch::Exact(p),
        (None, Some(p), None) if p.starts_with('/') => PathMatch::Prefix(p),
        (None, None, Some(r)) if !r.is_empty() => PathMatch::Routes(route_list(&r, &format!("{here}.match.routes"))?),
        _ => return Err(err(&format!("{here}.match"), "needs exactly one of path, prefix (each starting with /) or routes (a non-empty list)")),
    };
    let action = match (raw.public, raw.deny, raw.require) {
        (true, false, None) => RuleAction::Public,
        (false, true, None) => RuleAction::Deny,
        (false, false, Some(r)) if !r.admin && !r.team && r.scopes.is_empty() && r.claims.as_ref().is_none_or(Value::is_null) => {
            return Err(err(&format!("{here}.require"), "asks for nothing: name at least one of admin, team, scopes, claims"));
        }
        (false, false, Some(r)) => RuleAction::Require(Requirements {
            admin: r.admin,
            team: r.team,
            scopes: r.scopes,
            claims: claim_requirements(r.claims.as_ref(), &format!("{here}.require.claims"))?,
        }),
        _ => return Err(err(&here, "needs exactly one of \"public\": true, \"deny\": true or \"require\": {…}")),
    };
    // A method or host that no request can have would make the rule never apply.
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    let methods: Vec<String> = m.methods.iter().map(|x| x.to_ascii_uppercase()).collect();
    if let Some(i) = methods.iter().position(|x| !METHODS.contains(&x.as_str())) {
        return Err(err(&format!("{here}.match.methods[{i}]"), format!("must be an HTTP method ({})", METHODS.join(", "))));
    }
    let hosts: Vec<String> = m.hosts.iter().map(|x| x.to_ascii_lowercase()).collect();
    for (i, host) in hosts.iter().enumerate() {
        let name = host.strip_prefix("*.").unwrap_or(host);
        if !valid_authority(name) || name.contains(':') && !name.starts_with('[') {
            return Err(err(&format!("{here}.match.hosts[{i}]"), "must be a host name (or *.domain), without scheme, port or path"));
        }
    }
    Ok(RouteRule { path, methods, hosts, action })
}

/// Declarative claim conditions (`custom_validate`, rule requirements).
pub(super) fn claim_requirements(value: Option<&Value>, field: &str) -> Result<Vec<ClaimRequirement>, String> {
    let field = field.to_string();
    if let Some(Value::String(callable)) = value {
        return Err(err(&field, format!(
            "{callable:?} is a Python callable, which cannot run in Envoy; write the rule as a list of \
             {{\"claim\": \"<path>\", \"equals\" | \"any_of\" | \"all_of\": …}}"
        )));
    }
    let mut rules = Vec::new();
    for (i, rule) in objects(value, &field)?.into_iter().enumerate() {
        let here = format!("{field}[{i}]");
        only_keys(rule, &["claim", "equals", "any_of", "all_of"], &here)?;
        let path = rule
            .get("claim")
            .and_then(Value::as_str)
            .and_then(ClaimPath::parse)
            .ok_or_else(|| err(&here, "needs \"claim\": a non-empty claim path"))?;
        let mut made = Vec::new();
        if let Some(v) = rule.get("equals") {
            made.push(ClaimRequirement::Equals(path.clone(), v.clone()));
        }
        if let Some(list) = string_list(rule.get("any_of"), &format!("{here}.any_of"))? {
            made.push(ClaimRequirement::AnyOf(path.clone(), list));
        }
        if let Some(list) = string_list(rule.get("all_of"), &format!("{here}.all_of"))? {
            made.push(ClaimRequirement::AllOf(path, list));
        }
        if made.len() != 1 {
            return Err(err(&here, "needs exactly one of \"equals\", \"any_of\", \"all_of\""));
        }
        rules.append(&mut made);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;
    use crate::authn::extract::HeaderLocation;
    use crate::authz::route_rules::RuleAction;
    use crate::config::ApiKeys;
    use serde_json::json;

    #[test]
    fn token_locations_forwarding_and_api_keys() {
        let d = compile_json(json!({"public_key_url": "https://idp/k"})).unwrap();
        assert!(d.token_locations.is_default() && d.forward && d.api_keys == ApiKeys::Refuse);
        let c = compile_json(json!({"public_key_url": "https://idp/k",
            "from_headers": [{"name": "X-Token", "value_prefix": "Token "}], "from_params": ["access_token"],
            "from_cookies": ["session"], "forward": false, "api_keys": "pass_through"}))
        .unwrap();
        assert_eq!(c.token_locations.headers, [HeaderLocation { name: "x-token".into(), value_prefix: "Token ".into() }]);
        assert!(!c.forward && c.api_keys == ApiKeys::PassThrough);
        for (bad, says) in [
            (json!({"from_headers": [{"name": "bad name"}]}), "from_headers[0].name"),
            (json!({"from_headers": [{"name": "cookie"}]}), "from_cookies"),
            (json!({"from_headers": [{"name": "x-litellm-user-id"}]}), "from_headers[0].name"),
            (json!({"from_headers": [{"nam": "x"}]}), "from_headers[0]"),
            (json!({"from_params": [""]}), "from_params[0]"),
            (json!({"api_keys": "allow"}), "api_keys"),
        ] {
            let mut cfg = bad.clone();
            cfg["public_key_url"] = json!("https://idp/k");
            let e = compile_json(cfg).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn route_rules_compile_with_one_matcher_and_one_action() {
        let c = compile_json(json!({"public_key_url": "https://idp/k", "rules": [
            {"match": {"path": "/health"}, "public": true},
            {"match": {"prefix": "/admin/", "methods": ["post"], "hosts": ["API.example.com"]},
             "require": {"admin": true, "claims": [{"claim": "tier", "equals": "gold"}]}},
            {"match": {"routes": ["openai_routes"]}, "require": {"team": true, "scopes": ["llm"]}},
            {"match": {"prefix": "/internal/"}, "deny": true},
        ]}))
        .unwrap();
        assert_eq!(c.rules.len(), 4);
        assert_eq!(c.rules[1].methods, ["POST"]);
        assert_eq!(c.rules[1].hosts, ["api.example.com"]);
        assert!(matches!(&c.rules[1].action, RuleAction::Require(r) if r.admin && r.claims.len() == 1));
        for (rule, says) in [
            (json!({"match": {"path": "/a", "prefix": "/b"}, "public": true}), "rules[0].match"),
            (json!({"match": {"path": "a"}, "public": true}), "rules[0].match"),
            (json!({"match": {"routes": []}, "public": true}), "rules[0].match"),
            (json!({"match": {"path": "/a"}}), "exactly one of"),
            (json!({"match": {"path": "/a"}, "public": true, "deny": true}), "exactly one of"),
            (json!({"match": {"path": "/a"}, "require": {"claims": [{"claim": "x"}]}}), "rules[0].require.claims[0]"),
            (json!({"match": {"path": "/a"}, "require": {"colour": 1}}), "rules[0].require"),
            (json!({"match": {"path": "/a", "regex": "x"}, "public": true}), "rules[0].match"),
        ] {
            let e = compile_json(json!({"public_key_url": "https://idp/k", "rules": [rule]})).unwrap_err();
            assert!(e.contains(says), "{rule}: {e}");
        }
    }

    #[test]
    fn custom_validate_is_declarative() {
        let c = jwtauth(json!({"custom_validate": [
            {"claim": "tenant", "equals": "acme"},
            {"claim": "groups", "any_of": ["a", "b"]},
            {"claim": "amr", "all_of": ["mfa"]}]})).unwrap();
        assert_eq!(c.policy.custom_validate.len(), 3);
        let e = jwtauth(json!({"custom_validate": "my_module.my_validator"})).unwrap_err();
        assert!(e.contains("Python callable"), "{e}");
        let e = jwtauth(json!({"custom_validate": [{"claim": "x", "equals": 1, "any_of": ["y"]}]})).unwrap_err();
        assert!(e.contains("exactly one of"), "{e}");
    }

    #[test]
    fn model_routing_is_off_unless_enabled_and_its_header_is_checked_at_load() {
        let off = compile_json(json!({"public_key_url": "https://idp/k"})).unwrap();
        assert_eq!(off.model_routing, None);
        let disabled = compile_json(json!({"public_key_url": "https://idp/k", "model_routing": {"enabled": false, "header": ":path"}}));
        assert_eq!(disabled.unwrap().model_routing, None, "a disabled block is not checked further");
        let on = compile_json(json!({"public_key_url": "https://idp/k", "model_routing": {"enabled": true}})).unwrap();
        assert_eq!(on.model_routing.unwrap().header, "x-litellm-model");
        let named = compile_json(json!({"public_key_url": "https://idp/k", "model_routing": {"enabled": true, "header": "X-AI-EG-Model"}}));
        assert_eq!(named.unwrap().model_routing.unwrap().header, "x-ai-eg-model");
        for (header, says) in [
            (":authority", "pseudo-header"),
            ("", "not an HTTP header name"),
            ("x model", "not an HTTP header name"),
            ("x-model\r\n", "not an HTTP header name"),
            ("Host", "already means something"),
            ("authorization", "already means something"),
            ("x-token", "already means something"),
            ("x-litellm-team-id", "identity headers"),
            ("x-llm-jwt-auth-reason", "identity headers"),
        ] {
            let cfg = json!({"public_key_url": "https://idp/k", "from_headers": [{"name": "x-token"}],
                             "model_routing": {"enabled": true, "header": header}});
            let e = compile_json(cfg).unwrap_err();
            assert!(e.contains("model_routing.header") && e.contains(says), "{header:?}: {e}");
        }
        for (cfg, says) in [
            (json!({"model_routing": {"header": "x-m"}}), "missing field `enabled`"),
            (json!({"model_routing": {"enabled": true, "name": "x-m"}}), "unknown field `name`"),
            (json!({"model_routing": true}), "model_routing"),
        ] {
            let mut cfg = cfg;
            cfg["public_key_url"] = json!("https://idp/k");
            let e = compile_json(cfg).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
