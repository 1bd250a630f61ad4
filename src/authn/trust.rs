//! Several identity providers at once (newest LiteLLM's `litellm_jwtauth.issuers`).
//!
//! Each configured issuer has its own JWKS, audience and claim-field mapping. The token's
//! unverified `iss` picks the issuer before any key is looked up or fetched; the signature is
//! then checked with that issuer's keys only, so a token can only take an issuer's rules if
//! that issuer signed it. Tokens from other issuers take the global configuration
//! (`public_key_url`, `public_keys`, `audience`, `issuer`) as in LiteLLM, where issuers are
//! additive — or, when no global keys are configured, are refused as from an unknown issuer.

use crate::authz::Policy;
use crate::authn::claims::ClaimRules;
use crate::config::{FilterConfig, JwksSource};
use crate::error::AuthError;
use crate::authn::keys::PublicKey;
use serde_json::{Map, Value};
use std::sync::Arc;

/// What applies to one token: where its keys come from, the registered-claim rules and the
/// authorization policy.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    pub jwks: &'a [JwksSource],
    pub inline_keys: &'a [Arc<PublicKey>],
    pub claim_rules: &'a ClaimRules,
    pub policy: &'a Policy,
}

/// Which trust a token takes: the global configuration or one configured issuer. Chosen once
/// per token (by its unverified `iss`) and kept with the verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustId {
    Global,
    Issuer(usize),
}

/// Which trust a token with these (not yet verified) claims takes.
pub fn select_id(config: &FilterConfig, claims: &Map<String, Value>) -> Result<TrustId, AuthError> {
    if !config.issuers.is_empty() {
        if let Some(iss) = claims.get("iss").and_then(Value::as_str) {
            if let Some(i) = config.issuers.iter().position(|i| i.iss == iss) {
                return Ok(TrustId::Issuer(i));
            }
        }
        if config.jwks.is_empty() && config.inline_keys.is_empty() {
            return Err(AuthError::UnknownIssuer);
        }
    }
    Ok(TrustId::Global)
}

/// The rules of a trust.
pub fn trust(config: &FilterConfig, id: TrustId) -> Trust<'_> {
    let issuer = match id {
        TrustId::Issuer(i) => config.issuers.get(i),
        TrustId::Global => None,
    };
    match issuer {
        Some(issuer) => Trust { jwks: &issuer.jwks, inline_keys: &[], claim_rules: &issuer.claim_rules, policy: &issuer.policy },
        None => Trust {
            jwks: &config.jwks,
            inline_keys: &config.inline_keys,
            claim_rules: &config.claim_rules,
            policy: &config.policy,
        },
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile;
    use serde_json::json;

    fn select<'a>(config: &'a FilterConfig, claims: &Map<String, Value>) -> Result<Trust<'a>, AuthError> {
        select_id(config, claims).map(|id| trust(config, id))
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn two_issuers(global: bool) -> FilterConfig {
        let mut cfg = json!({"general_settings": {"litellm_jwtauth": {"issuers": [
            {"issuer": "https://a.example", "jwks_url": "https://a.example/keys", "audience": "api-a",
             "user_id_jwt_field": "email"},
            {"issuer": "https://b.example", "disable_audience_validation": true,
             "team_id_jwt_field": "groups.0"},
        ]}}});
        if global {
            cfg["public_key_url"] = json!("https://global.example/jwks");
            cfg["audience"] = json!("global-api");
        }
        compile(cfg.to_string().as_bytes(), &|_| None).unwrap()
    }

    #[test]
    fn iss_selects_the_issuer_with_its_keys_audience_and_fields() {
        let cfg = two_issuers(false);
        let a = select(&cfg, &claims(json!({"iss": "https://a.example"}))).unwrap();
        assert_eq!(a.jwks.len(), 1);
        assert_eq!(a.jwks[0].url, "https://a.example/keys");
        assert!(!a.jwks[0].discovery);
        assert_eq!(a.claim_rules.audience, ["api-a"]);
        assert_eq!(a.policy.user_id_jwt_field.as_ref().map(|p| p.as_str()), Some("email"));
        assert!(a.inline_keys.is_empty());

        let b = select(&cfg, &claims(json!({"iss": "https://b.example"}))).unwrap();
        assert_eq!(b.jwks[0].url, "https://b.example/.well-known/openid-configuration");
        assert!(b.jwks[0].discovery);
        assert!(b.claim_rules.audience.is_empty());
        assert!(b.policy.user_id_jwt_field.is_none());
        assert!(b.policy.team_id_jwt_field.is_some());
    }

    #[test]
    fn without_global_keys_other_issuers_are_refused() {
        let cfg = two_issuers(false);
        for c in [json!({"iss": "https://c.example"}), json!({"iss": "https://a.example/"}), json!({}), json!({"iss": 1})] {
            assert_eq!(select(&cfg, &claims(c)).map(|_| ()), Err(AuthError::UnknownIssuer));
        }
    }

    #[test]
    fn with_global_keys_other_issuers_take_the_global_rules() {
        let cfg = two_issuers(true);
        let other = select(&cfg, &claims(json!({"iss": "https://c.example"}))).unwrap();
        assert_eq!(other.jwks[0].url, "https://global.example/jwks");
        assert_eq!(other.claim_rules.audience, ["global-api"]);
        let a = select(&cfg, &claims(json!({"iss": "https://a.example"}))).unwrap();
        assert_eq!(a.claim_rules.audience, ["api-a"]);
    }
}
