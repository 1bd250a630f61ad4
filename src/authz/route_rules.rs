//! Per-route policy: rules matched on path, method and host, first match wins (as Envoy's
//! routes). A rule makes a route public, closes it, or adds requirements on top of LiteLLM's
//! rules — it never grants what LiteLLM's rules refuse, so a rule can only narrow access
//! (or open a route to everyone, which is explicit).

use crate::authz::ClaimRequirement;
use crate::error::AuthError;
use crate::authz::identity::Identity;
use crate::routes::RouteList;
use serde_json::{Map, Value};

/// Which paths a rule covers.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// The path (without query) equals this.
    Exact(String),
    /// The path starts with this.
    Prefix(String),
    /// LiteLLM route syntax: literal paths, route-group names, `{param}` templates, trailing `*`.
    Routes(RouteList),
}

#[derive(Debug, Clone)]
pub struct RouteRule {
    pub path: PathMatch,
    /// Upper case; empty: any method.
    pub methods: Vec<String>,
    /// Lower case, without port; `*.example.com` matches subdomains; empty: any host.
    pub hosts: Vec<String>,
    pub action: RuleAction,
}

#[derive(Debug, Clone)]
pub enum RuleAction {
    /// No token needed (as LiteLLM's public routes).
    Public,
    /// Refused for everyone (403), token or not.
    Deny,
    /// LiteLLM's rules, and then these.
    Require(Requirements),
}

/// What a request on a rule's route must show beyond LiteLLM's rules.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    /// The caller is a proxy admin (the token carries `admin_jwt_scope`).
    pub admin: bool,
    /// The caller was resolved to a team.
    pub team: bool,
    /// Every one of these scopes is in the token.
    pub scopes: Vec<String>,
    /// Claim conditions, as `custom_validate`'s.
    pub claims: Vec<ClaimRequirement>,
}

/// The request as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub route: &'a str,
    pub method: &'a str,
    /// `:authority`, possibly with a port.
    pub host: &'a str,
}

impl RouteRule {
    fn matches(&self, target: &Target) -> bool {
        let path_ok = match &self.path {
            PathMatch::Exact(p) => target.route == p,
            PathMatch::Prefix(p) => target.route.starts_with(p.as_str()),
            PathMatch::Routes(list) => list.matches(target.route),
        };
        path_ok
            && (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(target.method)))
            && (self.hosts.is_empty() || self.hosts.iter().any(|h| host_matches(h, target.host)))
    }
}

fn host_matches(pattern: &str, authority: &str) -> bool {
    let host = strip_port(authority).to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(domain) => host.strip_suffix(domain).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => host == pattern,
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // [v6]:port
        return authority.split_once(']').map_or(authority, |(h, _)| h.trim_start_matches('['));
    }
    authority.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(authority, |(h, _)| h)
}

/// The first rule that covers the request.
pub fn find<'a>(rules: &'a [RouteRule], target: &Target) -> Option<(usize, &'a RuleAction)> {
    rules.iter().enumerate().find(|(_, r)| r.matches(target)).map(|(i, r)| (i, &r.action))
}

impl Requirements {
    /// Check an allowed request against the rule. `scopes` are the token's scopes.
    pub fn check(&self, route: &str, identity: &Identity, claims: &Map<String, Value>, scopes: &[String]) -> Result<(), AuthError> {
        let refuse = |what: String| Err(AuthError::RouteRule(format!("route {route} requires {what}")));
        if self.admin && !identity.admin {
            return refuse("a proxy admin token".into());
        }
        if self.team && identity.team_id.is_none() {
            return refuse("a team".into());
        }
        if let Some(missing) = self.scopes.iter().find(|s| !scopes.contains(s)) {
            return refuse(format!("the scope {missing:?}"));
        }
        if let Some(i) = self.claims.iter().position(|c| !c.holds(claims)) {
            return refuse(format!("claim condition {} of its rule", i + 1));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::claim_path::ClaimPath;
    use serde_json::json;

    fn rule(path: PathMatch, action: RuleAction) -> RouteRule {
        RouteRule { path, methods: vec![], hosts: vec![], action }
    }

    fn t<'a>(route: &'a str, method: &'a str, host: &'a str) -> Target<'a> {
        Target { route, method, host }
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = vec![
            rule(PathMatch::Exact("/health".into()), RuleAction::Public),
            rule(PathMatch::Prefix("/admin/".into()), RuleAction::Require(Requirements { admin: true, ..Default::default() })),
            rule(PathMatch::Prefix("/".into()), RuleAction::Deny),
        ];
        assert!(matches!(find(&rules, &t("/health", "GET", "h")), Some((0, RuleAction::Public))));
        assert!(matches!(find(&rules, &t("/health/x", "GET", "h")), Some((2, RuleAction::Deny))));
        assert!(matches!(find(&rules, &t("/admin/keys", "GET", "h")), Some((1, RuleAction::Require(_)))));
        assert!(find(&rules[..2], &t("/v1/chat/completions", "POST", "h")).is_none());
    }

    #[test]
    fn litellm_route_syntax_methods_and_hosts() {
        let mut r = rule(PathMatch::Routes(RouteList::compile(&["openai_routes", "/team/*"])), RuleAction::Deny);
        r.methods = vec!["POST".into()];
        r.hosts = vec!["api.example.com".into(), "*.internal".into()];
        let rules = vec![r];
        assert!(find(&rules, &t("/v1/chat/completions", "POST", "api.example.com:443")).is_some());
        assert!(find(&rules, &t("/team/x", "post", "API.example.com")).is_some());
        assert!(find(&rules, &t("/v1/chat/completions", "GET", "api.example.com")).is_none());
        assert!(find(&rules, &t("/v1/chat/completions", "POST", "other.example.com")).is_none());
        assert!(find(&rules, &t("/v1/chat/completions", "POST", "a.b.internal:8080")).is_some());
        assert!(find(&rules, &t("/v1/chat/completions", "POST", "internal")).is_none());
        assert!(find(&rules, &t("/v1/chat/completions", "POST", "xinternal")).is_none());
        assert!(find(&rules, &t("/key/generate", "POST", "api.example.com")).is_none());
    }

    #[test]
    fn requirements_are_checked_in_order_with_a_clear_reason() {
        let claims = json!({"scope": "a b", "tier": "gold"}).as_object().cloned().unwrap();
        let scopes = vec!["a".to_string(), "b".to_string()];
        let team = Identity { team_id: Some("t1".into()), user_role: "internal_user", ..Default::default() };
        let admin = Identity { user_role: "proxy_admin", admin: true, ..Default::default() };
        let record_admin = Identity { user_role: "proxy_admin", ..Default::default() };
        let need = |r: Requirements, who: &Identity| r.check("/x", who, &claims, &scopes);
        assert!(need(Requirements { admin: true, ..Default::default() }, &admin).is_ok());
        assert!(need(Requirements { admin: true, ..Default::default() }, &record_admin).is_err(),
            "a user record saying proxy_admin is not the admin scope");
        let e = need(Requirements { admin: true, ..Default::default() }, &team).unwrap_err();
        assert_eq!(e.status(), 403);
        assert!(e.message().contains("route /x requires a proxy admin token"), "{}", e.message());
        assert!(need(Requirements { team: true, ..Default::default() }, &team).is_ok());
        assert!(need(Requirements { team: true, ..Default::default() }, &admin).is_err());
        assert!(need(Requirements { scopes: vec!["b".into()], ..Default::default() }, &team).is_ok());
        assert!(need(Requirements { scopes: vec!["b".into(), "c".into()], ..Default::default() }, &team)
            .unwrap_err()
            .message()
            .contains("\"c\""));
        let tier = |v: &str| ClaimRequirement::Equals(ClaimPath::parse("tier").unwrap(), json!(v));
        assert!(need(Requirements { claims: vec![tier("gold")], ..Default::default() }, &team).is_ok());
        assert!(need(Requirements { claims: vec![tier("silver")], ..Default::default() }, &team).is_err());
    }
}
