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
    /// Its `issuer` label in the decision metrics: the `iss` without its scheme, every
    /// character other than a letter, digit or `_` written `_`, at most [`LABEL_MAX`]
    /// characters, unique among the issuers (a clash gets `_<n>`, its position from 1).
    pub label: String,
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
        let label = unique_label(issuer_label(&iss), i, &issuers);
        issuers.push(Issuer {
            label,
            iss: iss.clone(),
            jwks: vec![source],
            claim_rules: ClaimRules { audience, issuer: Some(iss), ..time_rules.clone() },
            policy,
        });
    }
    Ok(issuers)
}

/// Longest issuer label (a Prometheus label value; Entra's `iss` with its tenant id fits).
pub const LABEL_MAX: usize = 64;

/// `base`, or, when an earlier issuer has it, `base_<n>` for the first free `n` from the
/// issuer's position (`i + 1`), the base cut so that the whole stays within [`LABEL_MAX`].
fn unique_label(base: String, i: usize, earlier: &[Issuer]) -> String {
    let taken = |label: &str| earlier.iter().any(|other| other.label == label);
    if !taken(&base) {
        return base;
    }
    (i + 1..)
        .map(|n| {
            let suffix = format!("_{n}");
            let kept: String = base.chars().take(LABEL_MAX.saturating_sub(suffix.len())).collect();
            kept + &suffix
        })
        .find(|label| !taken(label))
        .unwrap_or(base) // unreachable: only finitely many labels are taken
}

/// The metric label for an `iss` (see [`Issuer::label`]).
fn issuer_label(iss: &str) -> String {
    let bare = iss.split_once("://").map_or(iss, |(_, rest)| rest);
    let label: String = bare
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .trim_matches('_')
        .chars()
        .take(LABEL_MAX)
        .collect();
    if label.is_empty() { "issuer".to_string() } else { label }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;
    use serde_json::json;

    #[test]
    fn issuers_get_distinct_metric_labels_from_their_iss() {
        let c = compile_json(json!({"issuers": [
            {"issuer": "https://login.example.com/tenant-a/v2.0", "audience": "x", "jwks_url": "https://login.example.com/k"},
            {"issuer": "https://login.example.com/tenant_a/v2.0", "audience": "x", "jwks_url": "https://login.example.com/k"},
            {"issuer": "urn:idp", "audience": "x", "jwks_url": "https://idp/k"},
            {"issuer": "https://", "audience": "x", "jwks_url": "https://idp/k"},
        ]}))
        .unwrap();
        let labels: Vec<&str> = c.issuers.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(labels, ["login_example_com_tenant_a_v2_0", "login_example_com_tenant_a_v2_0_2", "urn_idp", "issuer"]);
        let long = format!("https://{}", "a".repeat(300));
        let c = compile_json(json!({"issuers": [
            {"issuer": long, "audience": "x", "jwks_url": "https://idp/k"},
            {"issuer": format!("{long}/"), "audience": "x", "jwks_url": "https://idp/k"},
        ]}))
        .unwrap();
        assert_eq!(c.issuers[0].label.len(), super::LABEL_MAX);
        assert_eq!(c.issuers[1].label.len(), super::LABEL_MAX, "suffixed, still within the maximum");
        assert!(c.issuers[1].label.ends_with("_2"));
        // A suffix that is itself another issuer's label moves on to the next number.
        let c = compile_json(json!({"issuers": [
            {"issuer": "https://a", "audience": "x", "jwks_url": "https://idp/k"},
            {"issuer": "https://a_3", "audience": "x", "jwks_url": "https://idp/k"},
            {"issuer": "https://a/", "audience": "x", "jwks_url": "https://idp/k"},
        ]}))
        .unwrap();
        let labels: Vec<&str> = c.issuers.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(labels, ["a", "a_3", "a_4"]);
    }

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
