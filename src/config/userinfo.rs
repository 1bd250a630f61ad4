//! LiteLLM's OIDC UserInfo settings (`oidc_userinfo_enabled`, `oidc_userinfo_endpoint`,
//! `oidc_userinfo_cache_ttl`): opaque (non-JWT) bearer tokens are checked by asking the IdP's
//! UserInfo endpoint, whose answer stands in for the token's claims.

use super::fields::{field_err, flag, JWTAUTH};
use super::url::{locate, JwksSource};
use super::ApiKeys;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// LiteLLM's `oidc_userinfo_cache_ttl` default, in seconds.
pub const DEFAULT_CACHE_TTL_S: f64 = 300.0;
/// The longest `oidc_userinfo_cache_ttl` accepted: a revoked token is admitted that long.
pub const MAX_CACHE_TTL_S: f64 = 86_400.0;

/// Where opaque tokens are checked, and for how long an answer is reused.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    pub endpoint: JwksSource,
    pub cache_ttl_ms: u64,
}

/// The settings as written, checked for their types (the endpoint is located later, with the
/// clusters). `None` unless `oidc_userinfo_enabled` is true.
pub(super) fn read(jwt: &Map<String, Value>) -> Result<Option<(String, u64)>, String> {
    let enabled = flag(jwt, "oidc_userinfo_enabled", &format!("{JWTAUTH}.oidc_userinfo_enabled"))?;
    let endpoint = match jwt.get("oidc_userinfo_endpoint") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(_) => return Err(field_err("oidc_userinfo_endpoint", "must be the URL of the IdP's UserInfo endpoint")),
    };
    let ttl_s = match jwt.get("oidc_userinfo_cache_ttl") {
        None | Some(Value::Null) => DEFAULT_CACHE_TTL_S,
        Some(v) => v.as_f64().filter(|t| t.is_finite() && (1.0..=MAX_CACHE_TTL_S).contains(t)).ok_or_else(|| {
            field_err("oidc_userinfo_cache_ttl", "must be a number of seconds, 1 to 86400 (each UserInfo answer is reused that long)")
        })?,
    };
    if !enabled {
        return Ok(None); // an endpoint alone asks for nothing, as in LiteLLM
    }
    let endpoint = endpoint.ok_or_else(|| {
        field_err("oidc_userinfo_endpoint", "must be set when oidc_userinfo_enabled is true (the IdP's UserInfo URL)")
    })?;
    Ok(Some((endpoint, (ttl_s * 1000.0) as u64)))
}

/// Locate the endpoint through the clusters, and refuse what cannot go with it.
pub(super) fn compile(
    read: Option<(String, u64)>,
    clusters: &BTreeMap<String, String>,
    api_keys: ApiKeys,
) -> Result<Option<UserInfo>, String> {
    let Some((url, cache_ttl_ms)) = read else { return Ok(None) };
    if api_keys == ApiKeys::PassThrough {
        // Both would claim every non-JWT token: which one decides must not be a guess.
        return Err(field_err(
            "oidc_userinfo_enabled",
            "cannot be combined with api_keys: pass_through (both claim non-JWT tokens); choose one",
        ));
    }
    let endpoint = locate(&url, &format!("{JWTAUTH}.oidc_userinfo_endpoint"), clusters)?;
    Ok(Some(UserInfo { endpoint, cache_ttl_ms }))
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;
    use serde_json::json;

    fn with(jwtauth: serde_json::Value) -> Result<crate::config::FilterConfig, String> {
        compile_json(json!({"public_key_url": "http://idp:8080/jwks", "general_settings": {"litellm_jwtauth": jwtauth}}))
    }

    #[test]
    fn enabled_needs_an_endpoint_and_takes_litellms_default_ttl() {
        let e = with(json!({"oidc_userinfo_enabled": true})).unwrap_err();
        assert!(e.contains("litellm_jwtauth.oidc_userinfo_endpoint") && e.contains("must be set"), "{e}");
        let c = with(json!({"oidc_userinfo_enabled": true, "oidc_userinfo_endpoint": "http://idp:8080/me"})).unwrap();
        let u = c.userinfo.unwrap();
        assert_eq!((u.endpoint.cluster.as_str(), u.endpoint.path.as_str(), u.cache_ttl_ms), ("idp:8080", "/me", 300_000));
    }

    #[test]
    fn an_endpoint_or_a_ttl_alone_asks_for_nothing() {
        let c = with(json!({"oidc_userinfo_endpoint": "http://idp:8080/me", "oidc_userinfo_cache_ttl": 60})).unwrap();
        assert!(c.userinfo.is_none());
        let c = with(json!({"oidc_userinfo_enabled": false, "oidc_userinfo_endpoint": "http://idp:8080/me"})).unwrap();
        assert!(c.userinfo.is_none());
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        for (jwtauth, field, text) in [
            (json!({"oidc_userinfo_enabled": "yes", "oidc_userinfo_endpoint": "http://idp/me"}), "oidc_userinfo_enabled", ""),
            (json!({"oidc_userinfo_enabled": true, "oidc_userinfo_endpoint": 5}), "oidc_userinfo_endpoint", "URL"),
            (json!({"oidc_userinfo_enabled": true, "oidc_userinfo_endpoint": "idp/me"}), "oidc_userinfo_endpoint", "http://"),
            (json!({"oidc_userinfo_enabled": true, "oidc_userinfo_endpoint": "http://idp/me", "oidc_userinfo_cache_ttl": 0}), "oidc_userinfo_cache_ttl", "1 to 86400"),
            (json!({"oidc_userinfo_enabled": true, "oidc_userinfo_endpoint": "http://idp/me", "oidc_userinfo_cache_ttl": "300"}), "oidc_userinfo_cache_ttl", "seconds"),
            (json!({"oidc_userinfo_enabled": true, "oidc_userinfo_endpoint": "http://idp/me", "oidc_userinfo_cache_ttl": 90000}), "oidc_userinfo_cache_ttl", "86400"),
        ] {
            let e = with(jwtauth.clone()).unwrap_err();
            assert!(e.contains(&format!("litellm_jwtauth.{field}")) && e.contains(text), "{jwtauth}: {e}");
        }
    }

    #[test]
    fn pass_through_api_keys_and_userinfo_are_refused_together() {
        let e = compile_json(json!({"public_key_url": "http://idp:8080/jwks", "api_keys": "pass_through",
            "general_settings": {"litellm_jwtauth": {"oidc_userinfo_enabled": true, "oidc_userinfo_endpoint": "http://idp:8080/me"}}}))
        .unwrap_err();
        assert!(e.contains("oidc_userinfo_enabled") && e.contains("pass_through"), "{e}");
    }

    #[test]
    fn the_endpoint_may_be_the_only_credential_check_and_its_cluster_counts_as_used() {
        let c = compile_json(json!({"clusters": {"idp.example:443": "idp"},
            "general_settings": {"litellm_jwtauth": {"oidc_userinfo_enabled": true, "oidc_userinfo_endpoint": "https://idp.example/userinfo"}}}))
        .unwrap();
        let u = c.userinfo.unwrap();
        assert_eq!((u.endpoint.cluster.as_str(), u.endpoint.authority.as_str()), ("idp", "idp.example"));
    }
}
