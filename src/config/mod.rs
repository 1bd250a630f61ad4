//! The plugin configuration: parsed, validated and compiled once, at `on_configure`.
//!
//! Bad configuration is an error naming the field, so Envoy refuses it and the filter never
//! runs half-configured, and no mistaken setting makes the filter less strict than written.
//! The JSON is read by [`raw`] (serde shapes, errors in the operator's words); LiteLLM's own
//! `general_settings` block by [`litellm`]; key and record URLs by [`url`]; issuers, records and
//! per-route rules by [`issuers`], [`records`] and [`rules`]; [`fields`] reads typed members.

pub mod fields;
pub mod issuers;
pub mod litellm;
pub mod raw;
pub mod records;
pub mod rules;
pub mod url;
pub mod userinfo;

pub use issuers::Issuer;
pub use raw::SourceKind;
pub use records::RecordSource;
pub use rules::{ModelRouting, RateLimits, DEFAULT_MODEL_HEADER};
pub use litellm::LITELLM_JWTAUTH_FIELDS;
pub use url::{locate, JwksSource, UrlError};

use crate::authn::claims::ClaimRules;
use crate::authn::extract::Locations;
use crate::authn::keys::{pem, PublicKey};
use crate::authz::claim_path::ClaimPath;
use crate::authz::route_rules::RouteRule;
use crate::authz::Policy;
use crate::records::Record;
use crate::routes::RouteList;
use crate::store::records::Lifetimes;
use fields::{err, seconds_ms};
use fields::JWTAUTH;
use litellm::general_settings;
use records::compile_source;
use rules::{compile_locations, compile_rule};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const DEFAULT_PUBLIC_KEY_TTL_S: f64 = 600.0;
/// Newest LiteLLM's `public_key_stale_ttl` default.
pub const DEFAULT_PUBLIC_KEY_STALE_TTL_S: f64 = 3600.0;
pub const DEFAULT_FETCH_TIMEOUT_MS: u64 = 5000;
/// Verified tokens each worker remembers (`token_cache_size`).
pub const DEFAULT_TOKEN_CACHE_SIZE: usize = 4096;
pub const DEFAULT_KID_REFETCH_INTERVAL_S: f64 = 30.0;
pub const DEFAULT_ADMIN_JWT_SCOPE: &str = "litellm_proxy_admin";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Newest LiteLLM's default `team_allowed_routes`.
pub(super) const DEFAULT_TEAM_ALLOWED_ROUTES: &[&str] = &[
    "openai_routes", "info_routes", "mcp_routes", "/v1/messages", "/v1/messages/count_tokens",
    "/rag/ingest", "/v1/rag/ingest", "/rag/query", "/v1/rag/query",
];
pub(super) const DEFAULT_ADMIN_ALLOWED_ROUTES: &[&str] =
    &["management_routes", "spend_tracking_routes", "global_spend_tracking_routes", "info_routes"];

/// What a denial does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Refuse with LiteLLM's error response.
    #[default]
    Enforce,
    /// Shadow mode: count, log and record the denial (filter state, `x-llm-jwt-auth-reason`
    /// request header) but let the request through — for rolling out against live traffic.
    Report,
}

/// What a non-JWT credential (anything that is not three dot-separated parts, e.g. LiteLLM's
/// `sk-…` virtual keys) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiKeys {
    /// 401, as for any credential that is not a valid JWT.
    #[default]
    Refuse,
    /// Let the request through untouched (no identity headers) for an upstream that checks
    /// the key itself — typically a LiteLLM proxy behind Envoy.
    PassThrough,
}

/// The compiled configuration every request of a worker shares.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// The global key sources (tokens of no configured issuer).
    pub jwks: Vec<JwksSource>,
    pub inline_keys: Vec<Arc<PublicKey>>,
    pub claim_rules: ClaimRules,
    pub public_key_ttl_ms: u64,
    /// How long past the TTL the last good JWKS is served while refreshing or during an outage.
    pub public_key_stale_ttl_ms: u64,
    pub fetch_timeout_ms: u64,
    /// At most one refetch per this many ms for tokens with an unknown `kid`; 0: none.
    pub kid_refetch_interval_ms: u64,
    pub policy: Policy,
    /// LiteLLM's `public_routes` plus `general_settings.public_routes`: no token needed.
    pub public_routes: RouteList,
    pub max_body_bytes: usize,
    pub token_cache_size: usize,
    pub statics: Vec<Record>,
    pub record_source: Option<RecordSource>,
    pub record_lifetimes: Lifetimes,
    pub mode: Mode,
    pub filter_state: bool,
    /// Configured issuers, chosen by the token's `iss` (see [`crate::authn::trust`]).
    pub issuers: Vec<Issuer>,
    /// `clusters` as configured: also routes `jwks_uri`s found by OIDC discovery.
    pub clusters: BTreeMap<String, String>,
    pub token_locations: Locations,
    /// Keep the credential in the forwarded request.
    pub forward: bool,
    pub api_keys: ApiKeys,
    pub rules: Vec<RouteRule>,
    /// DPoP-bound tokens (RFC 9449), when configured.
    pub dpop: Option<crate::authn::dpop::DpopRules>,
    /// Routing by model, when configured: the body is then read on every request this filter
    /// authorizes (up to `max_body_bytes`), whether or not a rule needs the model.
    pub model_routing: Option<ModelRouting>,
    /// The records' rate limits, unless turned off (`rate_limits.enabled: false`).
    pub rate_limits: Option<RateLimits>,
    /// The route groups the decision metrics are labelled with.
    pub route_group_labels: crate::routes::group_label::RouteGroupLabels,
    /// OIDC UserInfo for opaque tokens (`oidc_userinfo_enabled`), when configured.
    pub userinfo: Option<userinfo::UserInfo>,
}

impl FilterConfig {
    /// Every key source: the global ones, then each issuer's.
    pub fn key_sources(&self) -> impl Iterator<Item = &JwksSource> {
        self.jwks.iter().chain(self.issuers.iter().flat_map(|i| i.jwks.iter()))
    }
}

/// Parse and compile the plugin configuration. `env` reads the VM's environment
/// (`JWT_PUBLIC_KEY_URL`, `JWT_AUDIENCE`, `JWT_ISSUER`, as LiteLLM reads its env vars).
pub fn compile(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<FilterConfig, String> {
    let raw = raw::read(json)?;
    let settings = general_settings(&raw.general_settings)?;
    let statics = records::statics(&raw)?;
    let record_url = raw.record_source.as_ref().map(|s| s.url.clone());
    let (record_source, record_lifetimes) = match raw.record_source {
        Some(src) => {
            let (s, l) = compile_source(src, &raw.clusters)?;
            (Some(s), l)
        }
        None => (None, Lifetimes { ttl_ms: 60_000, negative_ttl_ms: 10_000, stale_ttl_ms: 300_000 }),
    };
    let records_enabled = record_source.is_some() || !statics.is_empty();
    if let Some(field) = settings.record_fields_used.iter().find(|_| !records_enabled) {
        return Err(err(
            &format!("{JWTAUTH}.{field}"),
            "needs team/user records: add a record_source or static teams/users",
        ));
    }
    let mut policy = settings.policy;
    policy.access_groups = raw.model_access_groups;
    policy.scope_claims = scope_claims(raw.scope_claims)?;
    let time_rules = time_rules(raw.leeway, raw.require_exp, raw.max_token_lifetime, raw.token_types)?;
    let issuers = issuers::compile(raw.issuers, settings.issuers, &policy, &raw.clusters, &time_rules, records_enabled)?;
    let jwks = url::key_urls(raw.public_key_url, env, &raw.clusters)?;
    let userinfo = userinfo::compile(settings.userinfo, &raw.clusters, raw.api_keys)?;
    let all_sources: Vec<&JwksSource> =
        jwks.iter().chain(issuers.iter().flat_map(|i| i.jwks.iter())).chain(userinfo.iter().map(|u| &u.endpoint)).collect();
    url::check_clusters_used(&raw.clusters, &all_sources, record_url.as_deref())?;
    let inline_keys = inline_keys(&raw.public_keys)?;
    if jwks.is_empty() && inline_keys.is_empty() && issuers.is_empty() && userinfo.is_none() {
        return Err(err(
            "public_key_url",
            "no keys configured: set public_key_url (or JWT_PUBLIC_KEY_URL in the VM environment), public_keys or issuers",
        ));
    }
    // UserInfo answers take the global rules too.
    if !jwks.is_empty() || !inline_keys.is_empty() || userinfo.is_some() {
        check_policy(&policy, "the global configuration")?;
    }
    let (audience, issuer) = audience_and_issuer(raw.audience, raw.issuer, env)?;
    let token_locations = compile_locations(raw.from_headers, raw.from_params, raw.from_cookies)?;
    Ok(FilterConfig {
        jwks,
        inline_keys,
        claim_rules: ClaimRules { audience: audience.into_iter().collect(), issuer, ..time_rules },
        public_key_ttl_ms: (settings.public_key_ttl_s * 1000.0) as u64,
        public_key_stale_ttl_ms: settings.public_key_stale_ttl_ms,
        fetch_timeout_ms: within(raw.jwks_fetch_timeout_ms.unwrap_or(DEFAULT_FETCH_TIMEOUT_MS), 1, 60_000, "jwks_fetch_timeout_ms")?,
        kid_refetch_interval_ms: match raw.kid_refetch_interval {
            Some(s) if s != 0.0 && s < 1.0 => return Err(err("kid_refetch_interval", "must be 0 (off) or at least 1 second")),
            v => seconds_ms(v, DEFAULT_KID_REFETCH_INTERVAL_S, "kid_refetch_interval")?,
        },
        policy,
        public_routes: settings.public_routes,
        max_body_bytes: within(raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES) as u64, 1, 64 * 1024 * 1024, "max_body_bytes")? as usize,
        token_cache_size: within(raw.token_cache_size.unwrap_or(DEFAULT_TOKEN_CACHE_SIZE) as u64, 0, 1_000_000, "token_cache_size")? as usize,
        statics,
        record_source,
        record_lifetimes,
        mode: raw.mode,
        filter_state: raw.filter_state,
        issuers,
        clusters: raw.clusters,
        dpop: rules::compile_dpop(raw.dpop, &token_locations)?,
        model_routing: rules::compile_model_routing(raw.model_routing, &token_locations)?,
        rate_limits: rules::compile_rate_limits(raw.rate_limits, settings.token_kind)?,
        token_locations,
        forward: raw.forward.unwrap_or(true),
        api_keys: raw.api_keys,
        rules: raw.rules.into_iter().enumerate().map(|(i, r)| compile_rule(i, r)).collect::<Result<_, _>>()?,
        route_group_labels: crate::routes::group_label::RouteGroupLabels::default(),
        userinfo,
    })
}

/// `value` if it lies in `min..=max`, else an error naming the field.
fn within(value: u64, min: u64, max: u64, field: &str) -> Result<u64, String> {
    match (min..=max).contains(&value) {
        true => Ok(value),
        false if min == 0 => Err(err(field, format!("must be at most {max}"))),
        false => Err(err(field, format!("must be between {min} and {max}"))),
    }
}

/// The claims scopes are read from (LiteLLM: `scope`).
fn scope_claims(configured: Option<Vec<String>>) -> Result<Vec<ClaimPath>, String> {
    let names = configured.unwrap_or_else(|| vec!["scope".to_string()]);
    if names.is_empty() {
        return Err(err("scope_claims", "must name at least one claim (leave it out for LiteLLM's \"scope\")"));
    }
    names.iter().map(|c| ClaimPath::parse(c).ok_or_else(|| err("scope_claims", "entries must be non-empty"))).collect()
}

/// The time rules every issuer shares; audience and issuer are set per trust.
fn time_rules(leeway: u64, require_exp: Option<bool>, max_lifetime: Option<u64>, token_types: Option<Vec<String>>) -> Result<ClaimRules, String> {
    within(leeway, 0, 86_400, "leeway")?;
    if let Some(max) = max_lifetime {
        within(max, 1, 86_400 * 366, "max_token_lifetime")?;
    }
    let token_types = match token_types {
        None => Vec::new(),
        Some(list) if list.is_empty() => {
            return Err(err("token_types", "must name at least one type (leave it out to accept any typ)"))
        }
        Some(list) => list
            .iter()
            .map(|t| match t.trim() {
                "" => Err(err("token_types", "entries must be non-empty media types, e.g. \"at+jwt\"")),
                t if t.chars().any(|c| c.is_whitespace() || c.is_control()) => Err(err("token_types", format!("{t:?} is not a media type"))),
                t => Ok(crate::authn::claims::media_type(t)),
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(ClaimRules { leeway, require_exp: require_exp.unwrap_or(true), max_lifetime, token_types, ..ClaimRules::default() })
}

fn inline_keys(texts: &[String]) -> Result<Vec<Arc<PublicKey>>, String> {
    texts.iter().enumerate().map(|(i, text)| pem::parse(text).map(Arc::new).map_err(|e| err(&format!("public_keys[{i}]"), e))).collect()
}

/// The global `audience` and `issuer` (else `JWT_AUDIENCE` / `JWT_ISSUER` from the VM's
/// environment, as LiteLLM reads them). An empty one would switch its check off — most likely an
/// unset variable in a template — so it is refused rather than read as "no check".
fn audience_and_issuer(
    audience: Option<String>,
    issuer: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<String>, Option<String>), String> {
    for (field, value) in [("audience", &audience), ("issuer", &issuer)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(err(field, "must not be empty (leave it out for no check)"));
        }
    }
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    Ok((audience.or_else(|| nonempty(env("JWT_AUDIENCE"))), issuer.or_else(|| nonempty(env("JWT_ISSUER")))))
}

/// Rules that would check nothing as configured: refused, so that no setting reads stricter
/// than it is. `whose` names the policy (the global one or an issuer's) in the message.
pub(super) fn check_policy(p: &Policy, whose: &str) -> Result<(), String> {
    if p.role_permissions.is_some() && !p.enforce_rbac {
        return Err(err(
            "general_settings.role_permissions",
            format!("only applies with {JWTAUTH}.enforce_rbac: true (LiteLLM ignores it otherwise); set enforce_rbac or remove role_permissions"),
        ));
    }
    if p.user_allowed_email_domain.is_some() && p.user_email_jwt_field.is_none() {
        return Err(err(
            &format!("{JWTAUTH}.user_allowed_email_domain"),
            format!("needs user_email_jwt_field (in {whose}): without the email claim every token would be refused"),
        ));
    }
    Ok(())
}

/// Helpers for the configuration tests of every submodule.
#[cfg(test)]
pub(crate) mod testing {
    use super::{compile, FilterConfig};
    use serde_json::{json, Value};

    pub fn no_env(_: &str) -> Option<String> {
        None
    }

    pub fn compile_json(v: Value) -> Result<FilterConfig, String> {
        compile(v.to_string().as_bytes(), &no_env)
    }

    /// A configuration with this `litellm_jwtauth` block.
    pub fn jwtauth(block: Value) -> Result<FilterConfig, String> {
        compile_json(json!({"public_key_url": "http://a/j", "general_settings": {"litellm_jwtauth": block}}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;
    use crate::config::compile;
    use crate::testkeys::vectors;
    use serde_json::json;

    #[test]
    fn token_types_are_media_types_and_never_an_empty_list() {
        let c = testing::compile_json(json!({"public_key_url": "http://a/j", "token_types": ["application/AT+JWT", "jwt"]})).unwrap();
        assert_eq!(c.claim_rules.token_types, ["at+jwt", "jwt"]);
        for (bad, says) in [(json!([]), "at least one"), (json!([" "]), "non-empty"), (json!(["at jwt"]), "not a media type")] {
            let e = testing::compile_json(json!({"public_key_url": "http://a/j", "token_types": bad})).unwrap_err();
            assert!(e.contains("token_types") && e.contains(says), "{e}");
        }
    }

    #[test]
    fn minimal_url_config_gets_litellm_defaults() {
        let c = compile_json(json!({"public_key_url": "https://idp.example.com/keys"})).unwrap();
        assert_eq!(
            c.jwks,
            vec![JwksSource {
                url: "https://idp.example.com/keys".into(),
                cluster: "idp.example.com:443".into(),
                authority: "idp.example.com".into(),
                path: "/keys".into(),
                discovery: false,
                field: "public_key_url".into(),
            }]
        );
        assert_eq!(c.public_key_ttl_ms, 600_000);
        assert_eq!(c.public_key_stale_ttl_ms, 3_600_000);
        assert_eq!(c.fetch_timeout_ms, 5000);
        assert_eq!(c.claim_rules, ClaimRules::default());
        assert_eq!(c.policy.admin_jwt_scope, "litellm_proxy_admin");
    }

    #[test]
    fn env_supplies_url_audience_and_issuer_when_config_does_not() {
        let env = |k: &str| match k {
            "JWT_PUBLIC_KEY_URL" => Some("http://idp:9000/jwks,http://idp2/jwks".to_string()),
            "JWT_AUDIENCE" => Some("api".to_string()),
            _ => None,
        };
        let c = compile(b"{}", &env).unwrap();
        assert_eq!(c.jwks.len(), 2);
        assert_eq!(c.claim_rules.audience, ["api"]);
        let c = compile(br#"{"audience": "mine"}"#, &env).unwrap();
        assert_eq!(c.claim_rules.audience, ["mine"]);
    }

    #[test]
    fn refuses_config_without_any_key_source() {
        assert!(compile_json(json!({})).unwrap_err().contains("no keys configured"));
        assert!(compile(b"", &no_env).is_err());
    }

    #[test]
    fn inline_pem_keys_and_certificates_are_loaded() {
        let v = vectors();
        let c = compile_json(json!({"public_keys": [v["keys"]["rsa"]["cert"], v["keys"]["p256"]["pem"]]})).unwrap();
        assert_eq!(c.inline_keys.len(), 2);
        assert!(c.jwks.is_empty());
    }
}
