//! LiteLLM's `JWTIssuerConfig` list: one entry per identity provider, each with its own keys,
//! audience and claim fields.

use super::fields::{err, flag, objects, only_keys, string_list};
use super::url::{locate, DISCOVERY_PATH};
use super::fields::JWTAUTH;
use super::{check_policy, JwksSource};
use crate::authn::claims::ClaimRules;
use crate::authz::claim_path::ClaimPath;
use crate::authz::Policy;
use serde_json::Value;
use std::collections::BTreeMap;

/// One configured issuer, compiled.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// The exact `iss` value this issuer's tokens carry.
    pub iss: String,
    pub jwks: Vec<JwksSource>,
    pub claim_rules: ClaimRules,
    /// The global policy with this issuer's claim fields in place.
    pub policy: Policy,
}

/// Members of LiteLLM's `JWTIssuerConfig`.
/// The issuers, from either `issuers` or `litellm_jwtauth.issuers` (one place only).
pub(super) fn compile(
    top: Option<Value>,
    in_jwtauth: Option<Value>,
    base: &Policy,
    clusters: &BTreeMap<String, String>,
    time_rules: &ClaimRules,
    records_enabled: bool,
) -> Result<Vec<Issuer>, String> {
    let (field, value) = match (top, in_jwtauth) {
        (Some(_), Some(_)) => return Err(err("issuers", format!("set either issuers or {JWTAUTH}.issuers, not both"))),
        (Some(v), None) => ("issuers".to_string(), v),
        (None, Some(v)) => (format!("{JWTAUTH}.issuers"), v),
        (None, None) => return Ok(Vec::new()),
    };
    let issuers = compile_issuers(&field, &value, base, clusters, time_rules, records_enabled)?;
    for issuer in &issuers {
        check_policy(&issuer.policy, &format!("issuer {:?}", issuer.iss))?;
    }
    Ok(issuers)
}

pub(super) const ISSUER_FIELDS: &[&str] = &[
    "issuer", "jwks_url", "audience", "disable_audience_validation", "user_id_jwt_field",
    "user_email_jwt_field", "team_id_jwt_field", "team_ids_jwt_field", "org_id_jwt_field",
    "end_user_id_jwt_field", "virtual_key_claim_field", "unregistered_jwt_client_behavior",
];

/// LiteLLM's `JWTIssuerConfig` list → issuers, each with the global policy and its own claim
/// fields, audience and key source (`jwks_url`, else the issuer's OIDC discovery document).
pub(super) fn compile_issuers(
    field: &str,
    value: &Value,
    base: &Policy,
    clusters: &BTreeMap<String, String>,
    time_rules: &ClaimRules,
    records_enabled: bool,
) -> Result<Vec<Issuer>, String> {
    let mut issuers: Vec<Issuer> = Vec::new();
    for (i, entry) in objects(Some(value), field)?.into_iter().enumerate() {
        let here = format!("{field}[{i}]");
        only_keys(entry, ISSUER_FIELDS, &here)?;
        let iss = match entry.get("issuer") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(err(&here, "needs \"issuer\": the exact iss of its tokens")),
        };
        if issuers.iter().any(|other| other.iss == iss) {
            return Err(err(&here, format!("issuer {iss:?} is configured twice")));
        }
        for unsupported in ["virtual_key_claim_field", "unregistered_jwt_client_behavior"] {
            if entry.get(unsupported).is_some_and(|v| !v.is_null()) {
                return Err(err(&format!("{here}.{unsupported}"), "JWT → virtual key mapping is not supported"));
            }
        }
        let jwks_url = match entry.get("jwks_url") {
            None | Some(Value::Null) => {
                if !(iss.starts_with("https://") || iss.starts_with("http://")) {
                    return Err(err(&here, "needs jwks_url (the issuer is not an http(s) URL to discover keys from)"));
                }
                format!("{}{DISCOVERY_PATH}", iss.trim_end_matches('/'))
            }
            Some(Value::String(u)) if !u.is_empty() => u.clone(),
            Some(_) => return Err(err(&format!("{here}.jwks_url"), "must be a URL")),
        };
        let source = locate(&jwks_url, &format!("{here}.jwks_url"), clusters).map_err(String::from)?;
        let audience = match entry.get("audience") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(a)) if !a.is_empty() => vec![a.clone()],
            Some(list @ Value::Array(_)) => string_list(Some(list), &format!("{here}.audience"))?.unwrap_or_default(),
            Some(_) => return Err(err(&format!("{here}.audience"), "must be a string or a list of strings")),
        };
        let no_audience = flag(entry, "disable_audience_validation", &format!("{here}.disable_audience_validation"))?;
        // LiteLLM's rule: choose one, so that "no audience check" is never an accident.
        if audience.is_empty() != no_audience {
            return Err(err(&here, "set exactly one of audience and disable_audience_validation: true"));
        }
        let mut policy = base.clone();
        for (name, slot) in [
            ("user_id_jwt_field", &mut policy.user_id_jwt_field),
            ("user_email_jwt_field", &mut policy.user_email_jwt_field),
            ("team_id_jwt_field", &mut policy.team_id_jwt_field),
            ("team_ids_jwt_field", &mut policy.team_ids_jwt_field),
            ("org_id_jwt_field", &mut policy.org_id_jwt_field),
            ("end_user_id_jwt_field", &mut policy.end_user_id_jwt_field),
        ] {
            match entry.get(name) {
                None | Some(Value::Null) => {}
                Some(Value::String(p)) => {
                    *slot = Some(ClaimPath::parse(p).ok_or_else(|| err(&format!("{here}.{name}"), "must be a non-empty claim path"))?);
                }
                Some(_) => return Err(err(&format!("{here}.{name}"), "must be a claim path (string)")),
            }
        }
        if policy.team_ids_jwt_field.is_some() && !records_enabled {
            return Err(err(&format!("{here}.team_ids_jwt_field"), "needs team/user records: add a record_source or static teams"));
        }
        issuers.push(Issuer {
            iss: iss.clone(),
            jwks: vec![source],
            claim_rules: ClaimRules { audience, issuer: Some(iss), ..time_rules.clone() },
            policy,
        });
    }
    Ok(issuers)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;
    use serde_json::json;

    #[test]
    fn issuers_are_compiled_from_either_place_but_not_both() {
        let list = json!([{"issuer": "https://a", "audience": ["x", "y"]}]);
        let top = compile_json(json!({"issuers": list})).unwrap();
        let nested = compile_json(json!({"general_settings": {"litellm_jwtauth": {"issuers": list}}})).unwrap();
        for c in [&top, &nested] {
            assert_eq!(c.issuers.len(), 1);
            assert_eq!(c.issuers[0].claim_rules.audience, ["x", "y"]);
            assert_eq!(c.issuers[0].claim_rules.issuer.as_deref(), Some("https://a"));
            assert_eq!(c.key_sources().count(), 1);
        }
        let both = compile_json(json!({"issuers": list, "general_settings": {"litellm_jwtauth": {"issuers": list}}}));
        assert!(both.unwrap_err().contains("not both"));
    }

    #[test]
    fn bad_issuers_are_refused_with_the_field() {
        for (issuers, says) in [
            (json!([{"jwks_url": "https://a/k", "audience": "x"}]), "[0]: needs \"issuer\""),
            (json!([{"issuer": "https://a"}]), "exactly one of audience and disable_audience_validation"),
            (json!([{"issuer": "https://a", "audience": "x", "disable_audience_validation": true}]), "exactly one"),
            (json!([{"issuer": "urn:a", "audience": "x"}]), "needs jwks_url"),
            (json!([{"issuer": "https://a", "audience": "x"}, {"issuer": "https://a", "audience": "y"}]), "configured twice"),
            (json!([{"issuer": "https://a", "audience": "x", "jwks_url": "ftp://a"}]), "issuers[0].jwks_url"),
            (json!([{"issuer": "https://a", "audience": "x", "colour": 1}]), "unknown member \"colour\""),
            (json!([{"issuer": "https://a", "audience": "x", "virtual_key_claim_field": "k"}]), "not supported"),
            (json!([{"issuer": "https://a", "audience": "x", "team_ids_jwt_field": "groups"}]), "needs team/user records"),
            (json!([{"issuer": "https://a", "audience": 5}]), "issuers[0].audience"),
            (json!({"issuer": "https://a"}), "must be a list"),
        ] {
            let e = compile_json(json!({"issuers": issuers})).unwrap_err();
            assert!(e.contains(says), "{issuers}: {e}");
        }
    }
}
