//! A request's headers, read once, and what they decide before any key is looked at: spoofed
//! identity headers to remove, public routes, the gateway's route rules, where the credential
//! is, and API keys passed through. Pure: the request module applies it.

use crate::authn::dpop::Scheme;
use crate::authn::extract::{dpop_token, is_jwt_shaped, without_cookie, without_param, Found};
use crate::authz::identity::{IDENTITY_HEADER_PREFIX, REASON_HEADER, TEAM_SELECTION_HEADER};
use crate::authz::route_rules::{self, RuleAction, Target};
use crate::config::{ApiKeys, FilterConfig};
use crate::error::AuthError;

/// The headers this filter reads, from one host call for all of them.
#[derive(Debug, Default)]
pub struct Headers {
    pub path: String,
    pub method: String,
    pub authority: String,
    pub content_type: Option<String>,
    /// The headers a credential may be in (`token_locations`).
    pub credentials: Vec<(String, String)>,
    /// `:scheme` (for a DPoP proof's `htu`).
    pub scheme: String,
    /// `DPoP` proofs (only read when DPoP is configured).
    pub dpop_proofs: Vec<String>,
    /// An `Upgrade` header (a WebSocket, e.g. `/v1/realtime`): what follows is no request body.
    pub upgrade: bool,
    /// Identity headers the client sent (`x-litellm-*`, the denial reason, the routing header
    /// of `model_routing`): only this filter sets them, so they are removed before anything else.
    pub spoofed: Vec<String>,
    /// `x-litellm-team-id`: removed like the other identity headers, but read first — it is
    /// how a caller picks one of its teams (LiteLLM's team selection).
    pub team_header: Option<String>,
    /// The client sent the routing header: Envoy picked the route with it, so the route must be
    /// picked again without it.
    pub spoofed_route: bool,
}

impl Headers {
    pub fn read(all: Vec<(String, String)>, config: &FilterConfig) -> Headers {
        let mut h = Headers::default();
        let routing = config.model_routing.as_ref().map(|r| r.header.as_str());
        for (name, value) in all {
            let route_header = routing == Some(name.as_str());
            if route_header || name.starts_with(IDENTITY_HEADER_PREFIX) || name == REASON_HEADER {
                h.spoofed_route |= route_header;
                if name == TEAM_SELECTION_HEADER {
                    h.team_header = Some(value);
                }
                h.spoofed.push(name);
            } else if config.token_locations.wants_header(&name) {
                h.credentials.push((name, value));
            } else {
                match name.as_str() {
                    ":path" => h.path = value,
                    ":method" => h.method = value,
                    ":authority" => h.authority = value,
                    ":scheme" => h.scheme = value,
                    "content-type" => h.content_type = Some(value),
                    "upgrade" => h.upgrade = true,
                    "dpop" if config.dpop.is_some() => h.dpop_proofs.push(value),
                    _ => {}
                }
            }
        }
        h
    }

    /// The path without query or fragment: what routes and rules match.
    pub fn route(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or_default()
    }

    /// Whether a body that names the model may follow the headers: not for `GET`, `HEAD`,
    /// `CONNECT` or an upgrade, whose stream (if any) is not a request body.
    pub fn may_carry_model(&self) -> bool {
        !self.upgrade && !matches!(self.method.as_str(), "GET" | "HEAD" | "CONNECT")
    }

    /// The request URL without query or fragment, as a DPoP proof's `htu` names it.
    pub fn url(&self) -> String {
        let scheme = if self.scheme.is_empty() { "http" } else { &self.scheme };
        format!("{scheme}://{}{}", self.authority, self.route())
    }
}

/// What the headers decide.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<'h> {
    /// A public route (`public_routes`, or a rule with `public: true`): no token needed.
    Public,
    /// A non-JWT API key with `api_keys: pass_through`: LiteLLM behind Envoy checks its own
    /// keys; this filter asserts nothing about them.
    ApiKey,
    Deny(AuthError),
    /// A token to verify; `rule` is the route rule whose requirements apply after LiteLLM's.
    Token { token: &'h str, found: Found<'h>, rule: Option<usize>, scheme: Scheme },
}

pub fn admit<'h>(config: &'h FilterConfig, headers: &'h Headers) -> Admission<'h> {
    let route = headers.route();
    if config.public_routes.matches(route) {
        return Admission::Public;
    }
    let target = Target { route, method: &headers.method, host: &headers.authority };
    let rule = match route_rules::find(&config.rules, &target) {
        Some((_, RuleAction::Public)) => return Admission::Public,
        Some((_, RuleAction::Deny)) => {
            return Admission::Deny(AuthError::RouteRule(format!("route {route} is closed by the gateway's rules")))
        }
        Some((i, RuleAction::Require(_))) => Some(i),
        None => None,
    };
    let dpop = config.dpop.as_ref().and_then(|_| dpop_token(&headers.credentials));
    let found = match dpop {
        Some(found) => found.map(|t| (t, Found::Header("authorization"), Scheme::Dpop)),
        None => config.token_locations.find(&headers.credentials, &headers.path).map(|(t, f)| (t, f, Scheme::Bearer)),
    };
    let (token, found, scheme) = match found {
        Ok(found) => found,
        Err(e) => return Admission::Deny(e),
    };
    if config.api_keys == ApiKeys::PassThrough && !is_jwt_shaped(token) {
        if rule.is_some() {
            // A route rule's requirements can only be checked on a verified JWT.
            return Admission::Deny(AuthError::RouteRule(format!("route {route} requires a JWT; API keys are not accepted here")));
        }
        return Admission::ApiKey;
    }
    Admission::Token { token, found, rule, scheme }
}

/// The header change that forwards the request without its credential (`forward: false`):
/// the header removed, the query parameter or the cookie taken out.
pub fn without_credential<'a>(found: &Found<'a>, headers: &Headers) -> (&'a str, Option<String>) {
    match *found {
        Found::Header(name) => (name, None),
        Found::Param(name) => (":path", Some(without_param(&headers.path, name))),
        Found::Cookie(name) => {
            let cookies: Vec<&str> = headers.credentials.iter().filter(|(n, _)| n == "cookie").map(|(_, v)| v.as_str()).collect();
            ("cookie", without_cookie(&cookies.join("; "), name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::compile_json;
    use serde_json::json;

    fn headers(config: &FilterConfig, list: &[(&str, &str)]) -> Headers {
        Headers::read(list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), config)
    }

    const JWT: &str = "aaa.bbb.ccc";

    #[test]
    fn spoofed_identity_headers_are_collected_for_removal() {
        let cfg = compile_json(json!({"public_key_url": "http://a/j"})).unwrap();
        let h = headers(&cfg, &[(":path", "/v1/models?x=1"), ("x-litellm-user-id", "admin"), (REASON_HEADER, "none"), ("authorization", "Bearer t")]);
        assert_eq!(h.spoofed, vec!["x-litellm-user-id".to_string(), REASON_HEADER.to_string()]);
        assert_eq!(h.route(), "/v1/models");
        assert_eq!(h.credentials, vec![("authorization".to_string(), "Bearer t".to_string())]);
    }

    #[test]
    fn a_client_sent_routing_header_is_spoofed_whatever_its_name() {
        let default = compile_json(json!({"public_key_url": "http://a/j", "model_routing": {"enabled": true}})).unwrap();
        let h = headers(&default, &[(":path", "/v1/x"), ("x-litellm-model", "claude-x")]);
        assert_eq!(h.spoofed, ["x-litellm-model"]);
        assert!(h.spoofed_route);
        let named = compile_json(json!({"public_key_url": "http://a/j", "model_routing": {"enabled": true, "header": "x-ai-eg-model"}})).unwrap();
        let h = headers(&named, &[(":path", "/v1/x"), ("x-ai-eg-model", "claude-x"), ("x-litellm-model", "m")]);
        assert_eq!(h.spoofed, ["x-ai-eg-model", "x-litellm-model"]);
        assert!(h.spoofed_route);
        let off = compile_json(json!({"public_key_url": "http://a/j"})).unwrap();
        let h = headers(&off, &[(":path", "/v1/x"), ("x-ai-eg-model", "claude-x"), ("x-litellm-model", "m")]);
        assert_eq!(h.spoofed, ["x-litellm-model"], "routing off: x-litellm-* are still the filter's own");
        assert!(!h.spoofed_route);
    }

    #[test]
    fn only_requests_that_may_carry_a_body_are_held_for_its_model() {
        let cfg = compile_json(json!({"public_key_url": "http://a/j"})).unwrap();
        assert!(headers(&cfg, &[(":method", "POST")]).may_carry_model());
        assert!(headers(&cfg, &[(":method", "PUT")]).may_carry_model());
        for list in [&[(":method", "GET")][..], &[(":method", "HEAD")], &[(":method", "CONNECT")],
                     &[(":method", "POST"), ("upgrade", "websocket")]] {
            assert!(!headers(&cfg, list).may_carry_model(), "{list:?}");
        }
    }

    #[test]
    fn public_routes_and_rules_come_before_the_credential() {
        let cfg = compile_json(json!({
            "public_key_url": "http://a/j",
            "general_settings": {"public_routes": ["/health"]},
            "rules": [{"match": {"path": "/closed"}, "deny": true}, {"match": {"path": "/open"}, "public": true},
                      {"match": {"prefix": "/v1/"}, "require": {"scopes": ["llm"]}}],
        }))
        .unwrap();
        let at = |path: &str| headers(&cfg, &[(":path", path), (":method", "GET")]);
        assert_eq!(admit(&cfg, &at("/health")), Admission::Public);
        assert_eq!(admit(&cfg, &at("/open")), Admission::Public);
        assert!(matches!(admit(&cfg, &at("/closed")), Admission::Deny(AuthError::RouteRule(_))));
        assert!(matches!(admit(&cfg, &at("/v1/chat/completions")), Admission::Deny(AuthError::MissingToken)));
        let with_token = headers(&cfg, &[(":path", "/v1/x"), ("authorization", &format!("Bearer {JWT}"))]);
        let bearer = Admission::Token { token: JWT, found: Found::Header("authorization"), rule: Some(2), scheme: Scheme::Bearer };
        assert_eq!(admit(&cfg, &with_token), bearer);
    }

    #[test]
    fn api_keys_pass_through_only_when_asked_and_never_past_a_rule() {
        let cfg = compile_json(json!({"public_key_url": "http://a/j", "api_keys": "pass_through",
                                      "rules": [{"match": {"prefix": "/admin"}, "require": {"scopes": ["x"]}}]}))
        .unwrap();
        let key = |path: &str| headers(&cfg, &[(":path", path), ("authorization", "Bearer sk-123")]);
        assert_eq!(admit(&cfg, &key("/v1/chat/completions")), Admission::ApiKey);
        assert!(matches!(admit(&cfg, &key("/admin/x")), Admission::Deny(AuthError::RouteRule(_))));
        let strict = compile_json(json!({"public_key_url": "http://a/j"})).unwrap();
        let h = headers(&strict, &[(":path", "/v1/x"), ("authorization", "Bearer sk-123")]);
        assert!(matches!(admit(&strict, &h), Admission::Token { token: "sk-123", .. }), "verified (and refused) as a JWT");
    }

    #[test]
    fn the_dpop_scheme_is_read_only_with_dpop_configured() {
        let plain = compile_json(json!({"public_key_url": "http://a/j"})).unwrap();
        let dpop = compile_json(json!({"public_key_url": "http://a/j", "dpop": {"enabled": true}})).unwrap();
        let list = [(":path", "/v1/x?q=1"), (":scheme", "https"), (":authority", "gw:8443"), ("authorization", "DPoP aaa.bbb.ccc"), ("dpop", "p.r.f")];
        assert!(matches!(admit(&plain, &headers(&plain, &list)), Admission::Deny(AuthError::MissingToken)), "LiteLLM knows Bearer only");
        let h = headers(&dpop, &list);
        assert!(matches!(admit(&dpop, &h), Admission::Token { token: JWT, scheme: Scheme::Dpop, .. }));
        assert_eq!(h.dpop_proofs, ["p.r.f"]);
        assert_eq!(h.url(), "https://gw:8443/v1/x");
        assert!(headers(&plain, &list).dpop_proofs.is_empty());
        let bearer = headers(&dpop, &[(":path", "/v1/x"), ("authorization", "Bearer aaa.bbb.ccc")]);
        assert!(matches!(admit(&dpop, &bearer), Admission::Token { scheme: Scheme::Bearer, .. }));
        let two = headers(&dpop, &[(":path", "/v1/x"), ("authorization", "DPoP aaa.bbb.ccc"), ("authorization", "Bearer x.y.z")]);
        assert!(matches!(admit(&dpop, &two), Admission::Deny(AuthError::Malformed(_))));
    }

    #[test]
    fn the_credential_is_removed_where_it_was_found() {
        let cfg = compile_json(json!({"public_key_url": "http://a/j"})).unwrap();
        let h = headers(&cfg, &[(":path", "/v1/x?token=abc&y=1"), ("cookie", "a=1; tok=abc; b=2")]);
        assert_eq!(without_credential(&Found::Header("authorization"), &h), ("authorization", None));
        assert_eq!(without_credential(&Found::Param("token"), &h), (":path", Some("/v1/x?y=1".to_string())));
        let cookies = Headers { credentials: vec![("cookie".into(), "a=1; tok=abc; b=2".into())], ..h };
        assert_eq!(without_credential(&Found::Cookie("tok"), &cookies), ("cookie", Some("a=1; b=2".to_string())));
    }
}
