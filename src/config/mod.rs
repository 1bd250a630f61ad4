//! The plugin configuration: parsed, validated and compiled once, at `on_configure`.
//!
//! Bad configuration is an error naming the field, so Envoy refuses it and the filter never
//! runs half-configured. LiteLLM's own `general_settings.litellm_jwtauth` block is accepted as
//! is; LiteLLM settings whose rules this version does not enforce yet are refused unless they
//! hold their do-nothing value — ignoring a rule the operator asked for would fail open.

use crate::authn::claims::ClaimRules;
use crate::authz::{ClaimRequirement, Policy, RbacRole, RolePermission};
use crate::store::records::Lifetimes;
use crate::records::{Kind, Record};
use crate::authz::claim_path::ClaimPath;
use crate::authn::extract::{HeaderLocation, Locations};
use crate::authn::trust::Issuer;
use crate::authz::route_rules::{PathMatch, Requirements, RouteRule, RuleAction};
use crate::authn::keys::{pem, PublicKey};
use crate::routes::RouteList;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every field name of LiteLLM's `LiteLLM_JWTAuth` (seed and newest), in LiteLLM's order.
pub const LITELLM_JWTAUTH_FIELDS: &[&str] = &[
    "admin_jwt_scope", "admin_allowed_routes", "team_id_jwt_field", "team_id_upsert",
    "team_ids_jwt_field", "upsert_sso_user_to_team", "team_allowed_routes", "team_id_default",
    "team_alias_jwt_field", "org_id_jwt_field", "org_alias_jwt_field", "user_id_jwt_field",
    "user_email_jwt_field", "user_allowed_email_domain", "user_roles_jwt_field",
    "user_allowed_roles", "user_id_upsert", "end_user_id_jwt_field", "agent_id_jwt_field",
    "mcp_client_id_jwt_field", "public_key_ttl", "public_key_stale_ttl", "public_allowed_routes",
    "enforce_rbac", "roles_jwt_field", "role_mappings", "object_id_jwt_field", "scope_mappings",
    "enforce_scope_based_access", "enforce_team_based_model_access", "custom_validate",
    "jwt_litellm_role_map", "sync_user_role_and_teams", "oidc_userinfo_endpoint",
    "oidc_userinfo_enabled", "oidc_userinfo_cache_ttl", "virtual_key_claim_field",
    "jwt_client_id_field", "virtual_key_mapping_cache_ttl", "unregistered_jwt_client_behavior",
    "auto_register_map_existing_key", "routing_overrides", "team_claim_fallback",
    "fallback_to_db_teams", "issuers", "id_jag_requesting_apps",
];

/// `litellm_jwtauth` fields this version enforces. The others (team/user records, upserts,
/// the groups path, newest-only features) are accepted only with a value that asks for nothing
/// (null, false, an empty list, or LiteLLM's default).
const ENFORCED_JWTAUTH_FIELDS: &[&str] = &[
    "admin_jwt_scope", "admin_allowed_routes", "team_id_jwt_field", "team_allowed_routes",
    "team_id_default", "org_id_jwt_field", "user_id_jwt_field", "user_email_jwt_field",
    "user_allowed_email_domain", "user_roles_jwt_field", "user_allowed_roles",
    "end_user_id_jwt_field", "public_key_ttl", "enforce_rbac", "roles_jwt_field", "role_mappings",
    "object_id_jwt_field", "scope_mappings", "enforce_scope_based_access", "custom_validate",
    "upsert_sso_user_to_team", "public_allowed_routes", "public_key_stale_ttl", "team_ids_jwt_field", "team_id_upsert",
    "user_id_upsert", "enforce_team_based_model_access", "issuers",
];

/// `litellm_jwtauth` fields that only mean something with team/user records.
const RECORD_FIELDS: &[&str] =
    &["team_ids_jwt_field", "team_id_upsert", "user_id_upsert", "enforce_team_based_model_access"];

/// `general_settings` keys understood here.
const GENERAL_SETTINGS_FIELDS: &[&str] =
    &["litellm_jwtauth", "enable_jwt_auth", "role_permissions", "enforce_rbac", "public_routes"];

pub const DEFAULT_PUBLIC_KEY_TTL_S: f64 = 600.0;
/// Newest LiteLLM's `public_key_stale_ttl` default.
pub const DEFAULT_PUBLIC_KEY_STALE_TTL_S: f64 = 3600.0;
pub const DEFAULT_FETCH_TIMEOUT_MS: u64 = 5000;
pub const DEFAULT_KID_REFETCH_INTERVAL_S: f64 = 30.0;
pub const DEFAULT_ADMIN_JWT_SCOPE: &str = "litellm_proxy_admin";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Newest LiteLLM's default `team_allowed_routes`.
const DEFAULT_TEAM_ALLOWED_ROUTES: &[&str] = &[
    "openai_routes", "info_routes", "mcp_routes", "/v1/messages", "/v1/messages/count_tokens",
    "/rag/ingest", "/v1/rag/ingest", "/rag/query", "/v1/rag/query",
];
const DEFAULT_ADMIN_ALLOWED_ROUTES: &[&str] =
    &["management_routes", "spend_tracking_routes", "global_spend_tracking_routes", "info_routes"];

/// `public_key_url`: one URL (LiteLLM's comma-separated form included) or a list of them.
#[derive(Debug)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(OneOrMany::One(s)),
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(serde::de::Error::custom("expected a URL, a list of URLs or a comma-separated string")),
                })
                .collect::<Result<_, _>>()
                .map(OneOrMany::Many),
            _ => Err(serde::de::Error::custom("expected a URL, a list of URLs or a comma-separated string")),
        }
    }
}

/// The JSON the operator writes in the Wasm filter's `configuration`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    public_key_url: Option<OneOrMany>,
    #[serde(default)]
    clusters: BTreeMap<String, String>,
    #[serde(default)]
    public_keys: Vec<String>,
    audience: Option<String>,
    issuer: Option<String>,
    #[serde(default)]
    leeway: u64,
    /// Refuse tokens without `exp` (default). `false`: PyJWT's (and LiteLLM's) rule.
    require_exp: Option<bool>,
    /// Longest accepted token lifetime in seconds (`exp − iat`, or `exp − now` without `iat`).
    max_token_lifetime: Option<u64>,
    jwks_fetch_timeout_ms: Option<u64>,
    /// Seconds between refetches a token with an unknown `kid` may cause (per URL and Envoy
    /// process); 0: never refetch early (LiteLLM: keys change only when the TTL runs out).
    kid_refetch_interval: Option<f64>,
    /// Claims scopes are read from (LiteLLM: `scope`; Azure AD access tokens use `scp`).
    scope_claims: Option<Vec<String>>,
    /// Largest body read when a rule needs the requested model.
    max_body_bytes: Option<usize>,
    /// Verified tokens remembered per worker (0 disables).
    token_cache_size: Option<usize>,
    /// `enforce` (default) or `report` (shadow mode: decide and record, let everything through).
    #[serde(default)]
    mode: Mode,
    /// Also publish the identity and denial reason as Envoy filter state (costs two or more
    /// host calls per request; the same values are in the forwarded headers anyway).
    #[serde(default)]
    filter_state: bool,
    /// Static records (LiteLLM field names).
    #[serde(default)]
    teams: Vec<Value>,
    #[serde(default)]
    users: Vec<Value>,
    #[serde(default)]
    organizations: Vec<Value>,
    #[serde(default)]
    end_users: Vec<Value>,
    /// Model access groups: name → models (LiteLLM's `model_info.access_groups`).
    #[serde(default)]
    model_access_groups: BTreeMap<String, Vec<String>>,
    /// Where records not in the configuration come from.
    record_source: Option<RawSource>,
    /// Several identity providers (LiteLLM's `litellm_jwtauth.issuers`; either place, not both).
    issuers: Option<Value>,
    /// Token locations (Envoy `jwt_authn` names). None set: `Authorization: Bearer`, as LiteLLM.
    #[serde(default)]
    from_headers: Vec<RawHeaderLocation>,
    #[serde(default)]
    from_params: Vec<String>,
    #[serde(default)]
    from_cookies: Vec<String>,
    /// Keep the credential in the request sent upstream (default) or remove it.
    forward: Option<bool>,
    /// What to do with a credential that is not a JWT (`sk-…` virtual keys).
    #[serde(default)]
    api_keys: ApiKeys,
    /// Per-route policy, first match wins.
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    general_settings: Map<String, Value>,
}

/// Enums written as one word in the configuration, read as a string so that any other JSON
/// value gets "expected one of …" rather than serde's internal words.
macro_rules! word_enum {
    ($ty:ident { $($word:literal => $variant:ident),+ $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                const WORDS: &[&str] = &[$($word),+];
                struct Words;
                impl serde::de::Visitor<'_> for Words {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        write!(f, "one of {}", WORDS.join(", "))
                    }
                    fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<$ty, E> {
                        match word {
                            $($word => Ok($ty::$variant),)+
                            other => Err(E::custom(format!("{other:?} is not one of {}", WORDS.join(", ")))),
                        }
                    }
                }
                d.deserialize_str(Words)
            }
        }
    };
}

word_enum!(Mode { "enforce" => Enforce, "report" => Report });
word_enum!(ApiKeys { "refuse" => Refuse, "pass_through" => PassThrough });
word_enum!(SourceKind { "litellm" => Litellm, "http" => Http });

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderLocation {
    name: String,
    #[serde(default)]
    value_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    matcher: RawMatch,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    deny: bool,
    require: Option<RawRequire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    path: Option<String>,
    prefix: Option<String>,
    routes: Option<Vec<String>>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequire {
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    team: bool,
    #[serde(default)]
    scopes: Vec<String>,
    claims: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// LiteLLM's management API: `/team/info?team_id=…` etc., with the master key.
    Litellm,
    /// Any JSON service: one URL path template per kind, `{id}` replaced (URL-encoded).
    Http,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "type")]
    kind: SourceKind,
    url: String,
    cluster: Option<String>,
    master_key: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    paths: BTreeMap<String, String>,
    ttl: Option<f64>,
    negative_ttl: Option<f64>,
    stale_ttl: Option<f64>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    write_through: bool,
}

/// One JWKS endpoint and the Envoy cluster `dispatch_http_call` reaches it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    pub url: String,
    pub cluster: String,
    /// `:authority` for the fetch: the URL's host[:port] as written.
    pub authority: String,
    /// `:path` for the fetch, with the query string.
    pub path: String,
    /// An OIDC discovery document (`…/.well-known/openid-configuration`): its `jwks_uri`
    /// is fetched for the keys.
    pub discovery: bool,
    /// Where the operator wrote the URL (`public_key_url`, `issuers[0].jwks_url`, …), for logs.
    pub field: String,
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
}

impl FilterConfig {
    /// Every key source: the global ones, then each issuer's.
    pub fn key_sources(&self) -> impl Iterator<Item = &JwksSource> {
        self.jwks.iter().chain(self.issuers.iter().flat_map(|i| i.jwks.iter()))
    }
}

/// The compiled record source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSource {
    pub kind: SourceKind,
    pub cluster: String,
    pub authority: String,
    /// Path prefix from the URL (no trailing slash).
    pub base_path: String,
    /// Path template per kind (`{id}` is replaced, URL-encoded).
    pub paths: BTreeMap<Kind, String>,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    pub write_through: bool,
}

/// A JSON error in the operator's words: syntax errors with their line and column, type errors
/// as "expected …, got …" without Rust's type names.
fn read_error(path: &str, e: &serde_json::Error) -> String {
    let at = format!("line {}, column {}", e.line(), e.column());
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or_default();
    if e.is_syntax() || e.is_eof() || path == "?" || path == "." {
        return format!("invalid plugin configuration: not valid JSON at {at}: {text}");
    }
    let plain = |t: &str| -> String {
        let t = t.trim();
        if let Some(rest) = t.strip_prefix("struct ") {
            return format!("an object ({rest})").replace(" (Raw", " (").replace("(Config)", "(the configuration)");
        }
        match t {
            "u64" | "u32" | "u16" | "u8" | "usize" => "a whole number (0 or more)".into(),
            "f64" | "f32" => "a number".into(),
            "a sequence" => "a list".into(),
            "a map" => "an object".into(),
            "a boolean" => "true or false".into(),
            other => other.to_string(),
        }
    };
    let got = |t: &str| -> String {
        let t = t.trim();
        for (serde_word, ours) in [("string ", "the string "), ("integer ", "the number "), ("floating point ", "the number "), ("boolean ", "")] {
            if let Some(v) = t.strip_prefix(serde_word) {
                return format!("{ours}{}", v.trim_matches('`'));
            }
        }
        match t {
            "map" => "an object".into(),
            "sequence" => "a list".into(),
            "unit value" | "null" => "null".into(),
            other => other.to_string(),
        }
    };
    let what = match text.split_once(", expected ") {
        // "unknown field `x`, expected one of `a`, `b`" already says it in the operator's words.
        Some(_) if text.starts_with("unknown field") => text.to_string(),
        Some((found, expected)) => {
            let found = found.strip_prefix("invalid type: ").or_else(|| found.strip_prefix("invalid value: ")).unwrap_or(found);
            format!("expected {}, got {}", plain(expected), got(found))
        }
        None => text.to_string(),
    };
    err(path, format!("{what} ({at})"))
}

fn err(field: &str, what: impl std::fmt::Display) -> String {
    format!("invalid plugin configuration: {field}: {what}")
}

/// Parse and compile the plugin configuration. `env` reads the VM's environment
/// (`JWT_PUBLIC_KEY_URL`, `JWT_AUDIENCE`, `JWT_ISSUER`, as LiteLLM reads its env vars).
pub fn compile(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<FilterConfig, String> {
    let raw: RawConfig = match json.iter().find(|b| !b.is_ascii_whitespace()) {
        None => RawConfig::default(),
        Some(b'{') => {
            let mut de = serde_json::Deserializer::from_slice(json);
            let raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                read_error(&path, e.inner())
            })?;
            de.end().map_err(|e| read_error(".", &e))?;
            raw
        }
        Some(_) => return Err("invalid plugin configuration: must be a JSON object ({…})".into()),
    };

    let settings = general_settings(&raw.general_settings)?;
    let mut statics = Vec::new();
    for (field, kind, list) in [
        ("teams", Kind::Team, &raw.teams),
        ("users", Kind::User, &raw.users),
        ("organizations", Kind::Org, &raw.organizations),
        ("end_users", Kind::EndUser, &raw.end_users),
    ] {
        for (i, v) in list.iter().enumerate() {
            let here = format!("{field}[{i}]");
            let record = Record::from_static(kind, v).map_err(|(member, what)| match member.is_empty() {
                true => err(&here, what),
                false => err(&format!("{here}.{member}"), what),
            })?;
            if record.id().is_empty() {
                return Err(err(&here, "needs its id (team_id / user_id / organization_id)"));
            }
            if statics.iter().any(|r: &Record| r.key() == record.key()) {
                // Which copy would apply is not what the operator can see: refuse.
                return Err(err(&here, format!("{} {:?} is configured twice", kind.as_str(), record.id())));
            }
            statics.push(record);
        }
    }
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
    let scope_claims = raw.scope_claims.unwrap_or_else(|| vec!["scope".to_string()]);
    if scope_claims.is_empty() {
        return Err(err("scope_claims", "must name at least one claim (leave it out for LiteLLM's \"scope\")"));
    }
    let mut policy = settings.policy;
    policy.access_groups = raw.model_access_groups;
    policy.scope_claims = scope_claims
        .iter()
        .map(|c| ClaimPath::parse(c).ok_or_else(|| err("scope_claims", "entries must be non-empty")))
        .collect::<Result<_, _>>()?;
    if raw.leeway > 86_400 {
        return Err(err("leeway", "must be at most 86400 seconds"));
    }
    if raw.max_token_lifetime == Some(0) || raw.max_token_lifetime.is_some_and(|m| m > 86_400 * 366) {
        return Err(err("max_token_lifetime", "must be between 1 and 31622400 seconds"));
    }
    // The time rules every issuer shares; audience and issuer are set per trust below.
    let time_rules = ClaimRules {
        leeway: raw.leeway,
        require_exp: raw.require_exp.unwrap_or(true),
        max_lifetime: raw.max_token_lifetime,
        ..ClaimRules::default()
    };
    let issuers_value = match (raw.issuers, settings.issuers) {
        (Some(_), Some(_)) => {
            return Err(err("issuers", format!("set either issuers or {JWTAUTH}.issuers, not both")))
        }
        (Some(v), None) => Some(("issuers".to_string(), v)),
        (None, Some(v)) => Some((format!("{JWTAUTH}.issuers"), v)),
        (None, None) => None,
    };
    let issuers = match issuers_value {
        Some((field, value)) => compile_issuers(&field, &value, &policy, &raw.clusters, &time_rules, records_enabled)?,
        None => Vec::new(),
    };
    for issuer in &issuers {
        check_policy(&issuer.policy, &format!("issuer {:?}", issuer.iss))?;
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if !(1..=64 * 1024 * 1024).contains(&max_body_bytes) {
        return Err(err("max_body_bytes", "must be between 1 and 67108864"));
    }
    let token_cache_size = raw.token_cache_size.unwrap_or(crate::store::token_cache::DEFAULT_CAPACITY);
    if token_cache_size > 1_000_000 {
        return Err(err("token_cache_size", "must be at most 1000000"));
    }

    let urls: Vec<String> = match raw.public_key_url {
        Some(OneOrMany::One(s)) => split_urls(&s),
        Some(OneOrMany::Many(list)) => list.iter().flat_map(|s| split_urls(s)).collect(),
        None => env("JWT_PUBLIC_KEY_URL").map(|s| split_urls(&s)).unwrap_or_default(),
    };
    let mut jwks = Vec::with_capacity(urls.len());
    for url in &urls {
        jwks.push(locate(url, "public_key_url", &raw.clusters)?);
    }
    let all_sources: Vec<&JwksSource> = jwks.iter().chain(issuers.iter().flat_map(|i| i.jwks.iter())).collect();
    // A discovered `jwks_uri` may name any host, so with discovery every entry may be needed.
    let discovery = all_sources.iter().any(|s| s.discovery);
    let names = |url: &str, authority: &str| {
        split_url(url).is_some_and(|(a, _, _)| a == authority) || cluster_default(url).as_deref() == Some(authority)
    };
    for authority in raw.clusters.keys() {
        let used = all_sources.iter().any(|s| names(&s.url, authority)) || record_url.as_deref().is_some_and(|u| names(u, authority));
        if !used && !discovery {
            return Err(err(
                &format!("clusters.{authority}"),
                "names no host:port of a key URL (public_key_url, issuers) or of record_source.url",
            ));
        }
    }

    let mut inline_keys = Vec::with_capacity(raw.public_keys.len());
    for (i, text) in raw.public_keys.iter().enumerate() {
        inline_keys.push(Arc::new(pem::parse(text).map_err(|e| err(&format!("public_keys[{i}]"), e))?));
    }
    if jwks.is_empty() && inline_keys.is_empty() && issuers.is_empty() {
        return Err(err(
            "public_key_url",
            "no keys configured: set public_key_url (or JWT_PUBLIC_KEY_URL in the VM environment), public_keys or issuers",
        ));
    }

    if !jwks.is_empty() || !inline_keys.is_empty() {
        check_policy(&policy, "the global configuration")?;
    }
    // An empty audience or issuer would switch its check off: most likely an unset variable
    // in a template, so it is refused rather than read as "no check".
    for (field, value) in [("audience", &raw.audience), ("issuer", &raw.issuer)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(err(field, "must not be empty (leave it out for no check)"));
        }
    }
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let audience = nonempty(raw.audience).or_else(|| nonempty(env("JWT_AUDIENCE")));
    let issuer = nonempty(raw.issuer).or_else(|| nonempty(env("JWT_ISSUER")));
    let fetch_timeout_ms = raw.jwks_fetch_timeout_ms.unwrap_or(DEFAULT_FETCH_TIMEOUT_MS);
    if !(1..=60_000).contains(&fetch_timeout_ms) {
        return Err(err("jwks_fetch_timeout_ms", "must be between 1 and 60000"));
    }

    Ok(FilterConfig {
        jwks,
        inline_keys,
        claim_rules: ClaimRules { audience: audience.into_iter().collect(), issuer, ..time_rules },
        public_key_ttl_ms: (settings.public_key_ttl_s * 1000.0) as u64,
        public_key_stale_ttl_ms: settings.public_key_stale_ttl_ms,
        fetch_timeout_ms,
        kid_refetch_interval_ms: match raw.kid_refetch_interval {
            Some(s) if s != 0.0 && s < 1.0 => return Err(err("kid_refetch_interval", "must be 0 (off) or at least 1 second")),
            v => seconds_ms(v, DEFAULT_KID_REFETCH_INTERVAL_S, "kid_refetch_interval")?,
        },
        policy,
        public_routes: settings.public_routes,
        max_body_bytes,
        token_cache_size,
        statics,
        record_source,
        record_lifetimes,
        mode: raw.mode,
        filter_state: raw.filter_state,
        issuers,
        clusters: raw.clusters,
        token_locations: compile_locations(raw.from_headers, raw.from_params, raw.from_cookies)?,
        forward: raw.forward.unwrap_or(true),
        api_keys: raw.api_keys,
        rules: raw.rules.into_iter().enumerate().map(|(i, r)| compile_rule(i, r)).collect::<Result<_, _>>()?,
    })
}

/// A configured route list: each entry a path (starting with `/`; `*` and `{param}` allowed)
/// or a LiteLLM route group name. Anything else matches no request, so a misspelt group
/// (`openai_route`) would silently empty an allow-list or a deny rule: refused.
fn route_list(entries: &[String], field: &str) -> Result<RouteList, String> {
    for (i, entry) in entries.iter().enumerate() {
        if !entry.starts_with('/') && crate::routes::groups::members(entry).is_none() {
            return Err(err(&format!("{field}[{i}]"), format!(
                "{entry:?} is neither a path (starting with /) nor a LiteLLM route group (e.g. openai_routes, info_routes, management_routes)"
            )));
        }
    }
    Ok(RouteList::compile(entries))
}

/// Rules that would check nothing as configured: refused, so that no setting reads stricter
/// than it is. `whose` names the policy (the global one or an issuer's) in the message.
fn check_policy(p: &Policy, whose: &str) -> Result<(), String> {
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

fn compile_locations(headers: Vec<RawHeaderLocation>, params: Vec<String>, cookies: Vec<String>) -> Result<Locations, String> {
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
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

fn compile_rule(i: usize, raw: RawRule) -> Result<RouteRule, String> {
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

/// LiteLLM's `JWT_PUBLIC_KEY_URL` form: comma-separated, each entry trimmed, empties dropped.
fn split_urls(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
}

/// `(authority as written, path)` of an http(s) URL, or `None`.
fn split_url(url: &str) -> Option<(&str, &str, u16)> {
    let (rest, default_port) = if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, 80)
    } else {
        return None;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    Some((authority, path, default_port))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with a non-empty host and a numeric port.
fn valid_authority(authority: &str) -> bool {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let Some((v6, after)) = rest.split_once(']') else { return false };
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return false,
                },
            };
            (!v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'), port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            (!host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || "-._~%".contains(c)), port)
        }
    };
    host_ok && port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok())
}

/// The default cluster name for a URL: its `host:port`, with the scheme's port filled in.
fn cluster_default(url: &str) -> Option<String> {
    let (authority, _, default_port) = split_url(url)?;
    let has_port = match authority.rfind(']') {
        Some(bracket) => authority.get(bracket + 1..).is_some_and(|r| r.starts_with(':')),
        None => authority.contains(':'),
    };
    Some(if has_port { authority.to_string() } else { format!("{authority}:{default_port}") })
}

/// Newest LiteLLM treats a key URL with this path as an OIDC discovery document.
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Where a URL is fetched from: the Envoy cluster (`clusters` by authority, else the URL's
/// `host:port`), `:authority` and `:path`. `field` is where the URL was written; errors name it.
pub fn locate(url: &str, field: &str, clusters: &BTreeMap<String, String>) -> Result<JwksSource, String> {
    let bad = |what: &str| err(field, format!("{url:?}: {what}"));
    let (authority, path, _) = split_url(url).ok_or_else(|| bad("must start with http:// or https://"))?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain spaces or control characters"));
    }
    if authority.contains('@') || !valid_authority(authority) {
        return Err(bad("needs a host, optionally :port (and no user info)"));
    }
    if path.contains('#') {
        return Err(bad("must not contain a fragment"));
    }
    // `http://idp?x=1` asks for `/?x=1`: a `:path` always starts with `/`.
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    let default_cluster = cluster_default(url).ok_or_else(|| bad("cannot derive a cluster name"))?;
    let cluster = clusters
        .get(authority)
        .or_else(|| clusters.get(&default_cluster))
        .cloned()
        .unwrap_or(default_cluster);
    let path = if path.is_empty() { "/".to_string() } else { path };
    let discovery = path.split('?').next().is_some_and(|p| p.ends_with(DISCOVERY_PATH));
    Ok(JwksSource { url: url.to_string(), cluster, authority: authority.to_string(), path, discovery, field: field.to_string() })
}

struct Settings {
    public_key_ttl_s: f64,
    public_key_stale_ttl_ms: u64,
    policy: Policy,
    public_routes: RouteList,
    /// Record-dependent `litellm_jwtauth` fields set to something that asks for a rule.
    record_fields_used: Vec<&'static str>,
    /// `litellm_jwtauth.issuers`, compiled later (it needs the finished global policy).
    issuers: Option<Value>,
}

fn seconds_ms(v: Option<f64>, default_s: f64, field: &str) -> Result<u64, String> {
    let s = v.unwrap_or(default_s);
    if !(s.is_finite() && (0.0..=86_400.0 * 30.0).contains(&s)) {
        return Err(err(field, "must be a number of seconds, 0 to 2592000"));
    }
    Ok((s * 1000.0) as u64)
}

fn compile_source(src: RawSource, clusters: &BTreeMap<String, String>) -> Result<(RecordSource, Lifetimes), String> {
    let parsed = locate(&src.url, "record_source.url", clusters)?;
    let base_path = parsed.path.trim_end_matches('/').to_string();
    let mut paths = BTreeMap::new();
    for (name, kind) in [("team", Kind::Team), ("user", Kind::User), ("org", Kind::Org), ("end_user", Kind::EndUser)] {
        let path = match (src.kind, src.paths.get(name)) {
            (_, Some(p)) => p.clone(),
            (SourceKind::Litellm, None) => match kind {
                Kind::Team => "/team/info?team_id={id}",
                Kind::User => "/user/info?user_id={id}",
                Kind::Org => "/organization/info?organization_id={id}",
                Kind::EndUser => "/customer/info?end_user_id={id}",
            }
            .to_string(),
            (SourceKind::Http, None) => continue,
        };
        if !path.starts_with('/') || !path.contains("{id}") {
            return Err(err(&format!("record_source.paths.{name}"), "must start with / and contain {id}"));
        }
        paths.insert(kind, path);
    }
    if let Some(unknown) = src.paths.keys().find(|k| !["team", "user", "org", "end_user"].contains(&k.as_str())) {
        return Err(err(&format!("record_source.paths.{unknown}"), "unknown kind (team, user, org, end_user)"));
    }
    if src.kind == SourceKind::Http && paths.is_empty() {
        return Err(err("record_source.paths", "an http source needs at least one path template"));
    }
    let mut headers: Vec<(String, String)> = src.headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    if let Some(key) = src.master_key.filter(|k| !k.is_empty()) {
        headers.push(("authorization".into(), format!("Bearer {key}")));
    } else if src.kind == SourceKind::Litellm {
        return Err(err("record_source.master_key", "LiteLLM's management API needs the master key"));
    }
    let timeout_ms = src.timeout_ms.unwrap_or(2000);
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(err("record_source.timeout_ms", "must be between 1 and 60000"));
    }
    if src.write_through && src.kind != SourceKind::Litellm {
        return Err(err("record_source.write_through", "only a litellm source can create records"));
    }
    let lifetimes = Lifetimes {
        ttl_ms: seconds_ms(src.ttl, 60.0, "record_source.ttl")?,
        negative_ttl_ms: seconds_ms(src.negative_ttl, 10.0, "record_source.negative_ttl")?,
        stale_ttl_ms: seconds_ms(src.stale_ttl, 300.0, "record_source.stale_ttl")?,
    };
    let source = RecordSource {
        kind: src.kind,
        cluster: src.cluster.unwrap_or(parsed.cluster),
        authority: parsed.authority,
        base_path,
        paths,
        headers,
        timeout_ms,
        write_through: src.write_through,
    };
    Ok((source, lifetimes))
}

const JWTAUTH: &str = "general_settings.litellm_jwtauth";

/// Members of LiteLLM's `JWTIssuerConfig`.
const ISSUER_FIELDS: &[&str] = &[
    "issuer", "jwks_url", "audience", "disable_audience_validation", "user_id_jwt_field",
    "user_email_jwt_field", "team_id_jwt_field", "team_ids_jwt_field", "org_id_jwt_field",
    "end_user_id_jwt_field", "virtual_key_claim_field", "unregistered_jwt_client_behavior",
];

/// LiteLLM's `JWTIssuerConfig` list → issuers, each with the global policy and its own claim
/// fields, audience and key source (`jwks_url`, else the issuer's OIDC discovery document).
fn compile_issuers(
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
        let source = locate(&jwks_url, &format!("{here}.jwks_url"), clusters)?;
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

fn field_err(name: &str, what: impl std::fmt::Display) -> String {
    err(&format!("{JWTAUTH}.{name}"), what)
}

fn opt_string(jwt: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match jwt.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(field_err(name, "must be a non-empty string")),
    }
}

fn opt_path(jwt: &Map<String, Value>, name: &str) -> Result<Option<ClaimPath>, String> {
    Ok(opt_string(jwt, name)?.and_then(|p| ClaimPath::parse(&p)))
}

fn flag(map: &Map<String, Value>, name: &str, field: &str) -> Result<bool, String> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(err(field, "must be a boolean")),
    }
}

fn string_list(value: Option<&Value>, field: &str) -> Result<Option<Vec<String>>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| err(field, "must be a list of strings")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(err(field, "must be a list of strings")),
    }
}

fn objects<'a>(value: Option<&'a Value>, field: &str) -> Result<Vec<&'a Map<String, Value>>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_object().ok_or_else(|| err(field, "entries must be objects")))
            .collect(),
        Some(_) => Err(err(field, "must be a list")),
    }
}

/// Refuse members other than `allowed` (pydantic's `extra = "forbid"`).
fn only_keys(obj: &Map<String, Value>, allowed: &[&str], field: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(err(field, format!("unknown member {k:?} (allowed: {})", allowed.join(", ")))),
        None => Ok(()),
    }
}

fn rbac_role(value: Option<&Value>, field: &str) -> Result<RbacRole, String> {
    value
        .and_then(Value::as_str)
        .and_then(RbacRole::parse)
        .ok_or_else(|| err(field, "must be one of proxy_admin, team, internal_user"))
}

/// `custom_validate`: LiteLLM takes a Python callable; here the rule is declarative:
/// `[{"claim": "<dot.path>", "equals": <json> | "any_of": [..] | "all_of": [..]}]`, all must hold.
fn custom_validate(value: Option<&Value>) -> Result<Vec<ClaimRequirement>, String> {
    claim_requirements(value, &format!("{JWTAUTH}.custom_validate"))
}

/// Declarative claim conditions (`custom_validate`, rule requirements).
fn claim_requirements(value: Option<&Value>, field: &str) -> Result<Vec<ClaimRequirement>, String> {
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

/// Validate and compile `general_settings`.
fn general_settings(gs: &Map<String, Value>) -> Result<Settings, String> {
    if let Some(unknown) = gs.keys().find(|k| !GENERAL_SETTINGS_FIELDS.contains(&k.as_str())) {
        return Err(err(
            &format!("general_settings.{unknown}"),
            format!("not supported (supported: {})", GENERAL_SETTINGS_FIELDS.join(", ")),
        ));
    }
    if gs.get("enable_jwt_auth") == Some(&Value::Bool(false)) {
        // This filter is JWT authentication: `false` cannot mean anything it could honour.
        return Err(err(
            "general_settings.enable_jwt_auth",
            "false is not supported: this filter always authenticates JWTs; remove the filter (or disable it per route) to turn it off",
        ));
    }
    flag(gs, "enable_jwt_auth", "general_settings.enable_jwt_auth")?;
    let general_enforce_rbac = flag(gs, "enforce_rbac", "general_settings.enforce_rbac")?;
    let empty = Map::new();
    let jwt = match gs.get("litellm_jwtauth") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(err(JWTAUTH, "must be an object")),
    };

    // LiteLLM's own constructor check, with its wording.
    let unknown: Vec<&str> =
        jwt.keys().map(String::as_str).filter(|k| !LITELLM_JWTAUTH_FIELDS.contains(k)).collect();
    if !unknown.is_empty() {
        return Err(format!(
            "invalid plugin configuration: {JWTAUTH}: Invalid arguments provided: {}. Allowed arguments are: {}.",
            unknown.join(", "),
            LITELLM_JWTAUTH_FIELDS.join(", ")
        ));
    }
    let record_fields_used: Vec<&'static str> = RECORD_FIELDS
        .iter()
        .copied()
        .filter(|f| jwt.get(*f).is_some_and(|v| !asks_for_nothing(f, v)))
        .collect();
    for (name, value) in jwt {
        if !ENFORCED_JWTAUTH_FIELDS.contains(&name.as_str()) && !asks_for_nothing(name, value) {
            return Err(field_err(
                name,
                "is a LiteLLM rule this version of llm-jwt-auth does not support yet; refusing to start \
                 rather than silently ignore it (docs/configuration.md lists what is supported)",
            ));
        }
    }

    let public_key_ttl_s = match jwt.get("public_key_ttl") {
        None | Some(Value::Null) => DEFAULT_PUBLIC_KEY_TTL_S,
        Some(v) => v
            .as_f64()
            .filter(|t| t.is_finite() && *t >= 1.0 && *t <= 86_400.0 * 30.0)
            .ok_or_else(|| field_err("public_key_ttl", "must be a number of seconds, 1 to 2592000"))?,
    };

    let public_key_stale_ttl_ms = match jwt.get("public_key_stale_ttl") {
        None | Some(Value::Null) => seconds_ms(None, DEFAULT_PUBLIC_KEY_STALE_TTL_S, "")?,
        Some(v) => seconds_ms(Some(v.as_f64().unwrap_or(-1.0)), 0.0, &format!("{JWTAUTH}.public_key_stale_ttl"))?,
    };
    let user_roles_jwt_field = opt_path(jwt, "user_roles_jwt_field")?;
    let user_allowed_roles = string_list(jwt.get("user_allowed_roles"), &format!("{JWTAUTH}.user_allowed_roles"))?;
    if user_roles_jwt_field.is_some() != user_allowed_roles.is_some() {
        return Err(err(JWTAUTH, "user_allowed_roles must be provided if user_roles_jwt_field is set."));
    }
    let mut role_mappings = Vec::new();
    for (i, m) in objects(jwt.get("role_mappings"), &format!("{JWTAUTH}.role_mappings"))?.into_iter().enumerate() {
        let here = format!("{JWTAUTH}.role_mappings[{i}]");
        only_keys(m, &["role", "internal_role"], &here)?;
        let idp_role = m.get("role").and_then(Value::as_str).ok_or_else(|| err(&here, "needs \"role\": a string"))?;
        role_mappings.push((idp_role.to_string(), rbac_role(m.get("internal_role"), &format!("{here}.internal_role"))?));
    }
    let object_id_jwt_field = opt_path(jwt, "object_id_jwt_field")?;
    if object_id_jwt_field.is_some() && jwt.get("role_mappings").is_none_or(Value::is_null) {
        return Err(err(JWTAUTH, "if object_id_jwt_field is set, role_mappings must also be set. Needed to infer if the caller is a user or team."));
    }
    let enforce_scope_based_access = flag(jwt, "enforce_scope_based_access", &format!("{JWTAUTH}.enforce_scope_based_access"))?;
    let mut scope_mappings = Vec::new();
    for (i, m) in objects(jwt.get("scope_mappings"), &format!("{JWTAUTH}.scope_mappings"))?.into_iter().enumerate() {
        let here = format!("{JWTAUTH}.scope_mappings[{i}]");
        only_keys(m, &["scope", "models", "routes"], &here)?;
        let scope = m.get("scope").and_then(Value::as_str).ok_or_else(|| err(&here, "needs \"scope\": a string"))?;
        let models = string_list(m.get("models"), &format!("{here}.models"))?.unwrap_or_default();
        if string_list(m.get("routes"), &format!("{here}.routes"))?.is_some_and(|r| !r.is_empty()) {
            // LiteLLM accepts and ignores it; a route limit nobody enforces would read stricter
            // than it is.
            return Err(err(&format!("{here}.routes"), "is not enforced (LiteLLM ignores it too): restrict routes with role_permissions or rules"));
        }
        scope_mappings.push((scope.to_string(), models));
    }
    if jwt.get("scope_mappings").is_some_and(|v| !v.is_null()) && !enforce_scope_based_access {
        // LiteLLM refuses this too, but its message ("scope_mappings must be set if
        // enforce_scope_based_access is true.") states the reverse rule.
        return Err(err(
            JWTAUTH,
            "enforce_scope_based_access must be true when scope_mappings is set (the mappings are only enforced then)",
        ));
    }
    if enforce_scope_based_access && scope_mappings.is_empty() {
        // Without mappings the scope gate would check nothing.
        return Err(err(JWTAUTH, "scope_mappings must be set if enforce_scope_based_access is true."));
    }

    let role_permissions = match gs.get("role_permissions") {
        None | Some(Value::Null) => None,
        value => {
            let mut out = Vec::new();
            for (i, p) in objects(value, "general_settings.role_permissions")?.into_iter().enumerate() {
                let here = format!("general_settings.role_permissions[{i}]");
                only_keys(p, &["role", "models", "routes"], &here)?;
                let role = rbac_role(p.get("role"), &format!("{here}.role"))?;
                if out.iter().any(|q: &RolePermission| q.role == role) {
                    return Err(err(&format!("{here}.role"), format!("{} has permissions twice; only one entry would apply", role.as_str())));
                }
                out.push(RolePermission {
                    role,
                    models: string_list(p.get("models"), &format!("{here}.models"))?,
                    routes: match string_list(p.get("routes"), &format!("{here}.routes"))? {
                        Some(r) => Some(route_list(&r, &format!("{here}.routes"))?),
                        None => None,
                    },
                });
            }
            Some(out)
        }
    };
    let public_routes_extra =
        string_list(gs.get("public_routes"), "general_settings.public_routes")?.unwrap_or_default();
    route_list(&public_routes_extra, "general_settings.public_routes")?;
    let mut public_routes = vec!["public_routes".to_string()];
    public_routes.extend(public_routes_extra);
    let admin_allowed_routes = string_list(jwt.get("admin_allowed_routes"), &format!("{JWTAUTH}.admin_allowed_routes"))?
        .unwrap_or_else(|| DEFAULT_ADMIN_ALLOWED_ROUTES.iter().map(|s| s.to_string()).collect());
    let team_allowed_routes = string_list(jwt.get("team_allowed_routes"), &format!("{JWTAUTH}.team_allowed_routes"))?
        .unwrap_or_else(|| DEFAULT_TEAM_ALLOWED_ROUTES.iter().map(|s| s.to_string()).collect());
    string_list(jwt.get("public_allowed_routes"), &format!("{JWTAUTH}.public_allowed_routes"))?;
    flag(jwt, "upsert_sso_user_to_team", &format!("{JWTAUTH}.upsert_sso_user_to_team"))?;

    let policy = Policy {
        admin_jwt_scope: opt_string(jwt, "admin_jwt_scope")?.unwrap_or_else(|| DEFAULT_ADMIN_JWT_SCOPE.to_string()),
        admin_allowed_routes: route_list(&admin_allowed_routes, &format!("{JWTAUTH}.admin_allowed_routes"))?,
        team_id_jwt_field: opt_path(jwt, "team_id_jwt_field")?,
        team_id_default: opt_string(jwt, "team_id_default")?,
        org_id_jwt_field: opt_path(jwt, "org_id_jwt_field")?,
        user_id_jwt_field: opt_path(jwt, "user_id_jwt_field")?,
        user_email_jwt_field: opt_path(jwt, "user_email_jwt_field")?,
        user_allowed_email_domain: opt_string(jwt, "user_allowed_email_domain")?,
        user_roles_jwt_field,
        user_allowed_roles: user_allowed_roles.unwrap_or_default(),
        end_user_id_jwt_field: opt_path(jwt, "end_user_id_jwt_field")?,
        enforce_rbac: flag(jwt, "enforce_rbac", &format!("{JWTAUTH}.enforce_rbac"))?,
        roles_jwt_field: opt_path(jwt, "roles_jwt_field")?,
        role_mappings,
        object_id_jwt_field,
        scope_mappings,
        enforce_scope_based_access,
        role_permissions,
        general_enforce_rbac,
        custom_validate: custom_validate(jwt.get("custom_validate"))?,
        scope_claims: Vec::new(),
        // LiteLLM's `is_llm_api_route` and info routes. `llm_api_routes` lists
        // /guardrails/apply_guardrail, but `is_llm_api_route` does not pass it: non-admins are
        // refused there (found by running LiteLLM 1.110.2 on the same requests).
        non_admin_routes: RouteList::compile(&["llm_api_routes", "info_routes"])
            .without(crate::routes::groups::APPLY_GUARDRAIL_ROUTES),
        team_ids_jwt_field: opt_path(jwt, "team_ids_jwt_field")?,
        team_id_upsert: flag(jwt, "team_id_upsert", &format!("{JWTAUTH}.team_id_upsert"))?,
        user_id_upsert: flag(jwt, "user_id_upsert", &format!("{JWTAUTH}.user_id_upsert"))?,
        enforce_team_based_model_access: flag(jwt, "enforce_team_based_model_access", &format!("{JWTAUTH}.enforce_team_based_model_access"))?,
        team_allowed_routes: route_list(&team_allowed_routes, &format!("{JWTAUTH}.team_allowed_routes"))?,
        access_groups: BTreeMap::new(),
    };
    Ok(Settings {
        public_key_ttl_s,
        public_key_stale_ttl_ms,
        policy,
        public_routes: RouteList::compile(&public_routes),
        record_fields_used,
        issuers: jwt.get("issuers").filter(|v| !v.is_null()).cloned(),
    })
}

/// Whether a not-yet-enforced LiteLLM field holds a value that asks for no rule.
fn asks_for_nothing(name: &str, value: &Value) -> bool {
    let defaults: &[&str] = match name {
        "admin_allowed_routes" => &[
            "management_routes", "spend_tracking_routes", "global_spend_tracking_routes", "info_routes",
        ],
        "team_allowed_routes" => &["openai_routes", "info_routes"],
        "public_allowed_routes" => &["public_routes"],
        _ => &[],
    };
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Array(items) => {
            items.is_empty() || (!defaults.is_empty() && items.iter().map(Value::as_str).eq(defaults.iter().map(|d| Some(*d))))
        }
        // TTLs of features that are off change nothing.
        Value::Number(_) => matches!(name, "oidc_userinfo_cache_ttl" | "virtual_key_mapping_cache_ttl"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys::vectors;
    use serde_json::json;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn compile_json(v: Value) -> Result<FilterConfig, String> {
        compile(v.to_string().as_bytes(), &no_env)
    }

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
    fn key_urls_must_be_well_formed() {
        let c = compile_json(json!({"public_key_url": ["http://idp?x=1", "https://[::1]:8443/k", "http://idp:9090"]})).unwrap();
        assert_eq!(c.jwks[0].path, "/?x=1", "a :path starts with /");
        assert_eq!(c.jwks[1].cluster, "[::1]:8443");
        assert_eq!(c.jwks[2].path, "/");
        for bad in ["http://idp/a b", "http://idp/a\r\nx", "http://idp/\u{0}", "http://idp:", "http://[::1", "http://:80/k",
                    "http://idp:99999/k", "http://idp:8x/k", "http://[::1]x/k", "http://id p/k", "http://user@idp/k"] {
            assert!(compile_json(json!({"public_key_url": bad})).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn discovery_urls_are_recognised_with_or_without_a_query() {
        let c = compile_json(json!({"public_key_url": [
            "https://idp/.well-known/openid-configuration",
            "https://idp/realms/x/.well-known/openid-configuration?appid=1",
            "https://idp/.well-known/openid-configuration/keys",
        ]}))
        .unwrap();
        assert_eq!(c.jwks.iter().map(|s| s.discovery).collect::<Vec<_>>(), [true, true, false]);
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
    fn comma_separated_and_list_urls_like_jwt_public_key_url() {
        let c = compile_json(json!({"public_key_url": " http://a:8080/j?x=1 , ,http://b/j"})).unwrap();
        let names: Vec<_> = c.jwks.iter().map(|s| (s.cluster.as_str(), s.path.as_str())).collect();
        assert_eq!(names, [("a:8080", "/j?x=1"), ("b:80", "/j")]);
        let c = compile_json(json!({"public_key_url": ["http://a/1", "http://c/2,http://d/3"]})).unwrap();
        assert_eq!(c.jwks.len(), 3);
    }

    #[test]
    fn clusters_override_by_authority_and_must_be_used() {
        let c = compile_json(json!({
            "public_key_url": "https://idp.example.com/keys",
            "clusters": {"idp.example.com:443": "outbound|443||idp.example.com"}
        }))
        .unwrap();
        assert_eq!(c.jwks[0].cluster, "outbound|443||idp.example.com");
        let e = compile_json(json!({"public_key_url": "http://a/j", "clusters": {"b:80": "x"}})).unwrap_err();
        assert!(e.contains("clusters.b:80"), "{e}");
        let c = compile_json(json!({"public_key_url": "http://a/j", "clusters": {"litellm:4000": "outbound|4000||litellm"},
            "record_source": {"type": "litellm", "url": "http://litellm:4000", "master_key": "sk"}})).unwrap();
        assert_eq!(c.record_source.unwrap().cluster, "outbound|4000||litellm", "clusters routes the record source too");
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
    fn unknown_and_invalid_fields_are_named() {
        let e = compile_json(json!({"public_key_url": "http://a/j", "audiance": "x"})).unwrap_err();
        assert!(e.contains("audiance"), "{e}");
        for (cfg, field) in [
            (json!({"public_key_url": "ftp://a/j"}), "public_key_url"),
            (json!({"public_key_url": "http://u:p@a/j"}), "public_key_url"),
            (json!({"public_key_url": "http://a/j", "leeway": -1}), "leeway"),
            (json!({"public_key_url": "http://a/j", "jwks_fetch_timeout_ms": 0}), "jwks_fetch_timeout_ms"),
            (json!({"public_keys": ["nope"]}), "public_keys[0]"),
            (json!({"public_key_url": "http://a/j", "general_settings": {"master_key": "sk"}}), "general_settings.master_key"),
        ] {
            let e = compile_json(cfg).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn errors_read_as_the_operator_wrote_the_config() {
        for (cfg, says) in [
            (r#"{"public_key_url": 5}"#, "public_key_url: expected a URL, a list of URLs or a comma-separated string"),
            (r#"{"public_key_url": ["http://a/j", 5]}"#, "public_key_url: expected a URL, a list of URLs or a comma-separated string"),
            (r#"{"public_key_url": "http://a/j", "leeway": "30"}"#, "leeway: expected a whole number (0 or more), got the string \"30\""),
            (r#"{"public_key_url": "http://a/j", "forward": "no"}"#, "forward: expected true or false, got the string \"no\""),
            (r#"{"public_key_url": "http://a/j", "teams": {}}"#, "teams: expected a list, got an object"),
            (r#"{"public_key_url": "http://a/j", "mode": 3}"#, "mode: expected one of enforce, report"),
            (r#"{"public_key_url": "http://a/j", "api_keys": "allow"}"#, "api_keys: \"allow\" is not one of refuse, pass_through"),
            ("{\n \"public_key_url\": \"http://a/j\"\n \"x\": 1}", "not valid JSON at line 3, column 2: expected `,` or `}`"),
            (r#"{"public_key_url": "http://a/j",}"#, "not valid JSON at line 1, column 33: trailing comma"),
            ("[1]", "must be a JSON object"),
        ] {
            let e = compile(cfg.as_bytes(), &no_env).unwrap_err();
            assert!(e.contains(says), "{cfg}: {e}");
            for rust in ["u64", "OneOrMany", "untagged", "?:", "sequence", "a map"] {
                assert!(!e.contains(rust), "{cfg}: {e}");
            }
        }
    }

    #[test]
    fn litellm_block_unknown_keys_get_litellms_message() {
        let e = compile_json(json!({"public_key_url": "http://a/j",
            "general_settings": {"litellm_jwtauth": {"team_id_jwt_feld": "t"}}}))
        .unwrap_err();
        assert!(e.contains("Invalid arguments provided: team_id_jwt_feld. Allowed arguments are: admin_jwt_scope, "), "{e}");
    }

    #[test]
    fn litellm_block_ttl_and_admin_scope_are_read() {
        let c = compile_json(json!({"public_key_url": "http://a/j", "general_settings": {
            "enable_jwt_auth": true,
            "litellm_jwtauth": {"public_key_ttl": 2, "admin_jwt_scope": "admin"}}}))
        .unwrap();
        assert_eq!(c.public_key_ttl_ms, 2000);
        let fail_closed = compile_json(json!({"public_key_url": "http://a/j",
            "general_settings": {"litellm_jwtauth": {"public_key_stale_ttl": 0}}})).unwrap();
        assert_eq!(fail_closed.public_key_stale_ttl_ms, 0);
        assert!(compile_json(json!({"public_key_url": "http://a/j",
            "general_settings": {"litellm_jwtauth": {"public_key_stale_ttl": "1h"}}})).unwrap_err().contains("public_key_stale_ttl"));
        assert_eq!(c.policy.admin_jwt_scope, "admin");
        let e = compile_json(json!({"public_key_url": "http://a/j",
            "general_settings": {"litellm_jwtauth": {"public_key_ttl": 0}}}))
        .unwrap_err();
        assert!(e.contains("public_key_ttl"));
    }

    #[test]
    fn record_dependent_litellm_rules_need_records() {
        let ok = compile_json(json!({"public_key_url": "http://a/j", "general_settings": {"litellm_jwtauth": {
            "team_ids_jwt_field": null, "user_id_upsert": false, "team_id_upsert": false,
            "enforce_team_based_model_access": false, "public_key_stale_ttl": 3600}}}));
        assert!(ok.is_ok(), "{ok:?}");
        for rule in [json!({"team_ids_jwt_field": "groups"}), json!({"user_id_upsert": true}),
                     json!({"team_id_upsert": true}), json!({"enforce_team_based_model_access": true})] {
            let e = compile_json(json!({"public_key_url": "http://a/j",
                "general_settings": {"litellm_jwtauth": rule.clone()}})).unwrap_err();
            assert!(e.contains("needs team/user records"), "{e}");
            let with_teams = compile_json(json!({"public_key_url": "http://a/j", "teams": [{"team_id": "t"}],
                "general_settings": {"litellm_jwtauth": rule}}));
            assert!(with_teams.is_ok(), "{with_teams:?}");
        }
        let e = jwtauth(json!({"sync_user_role_and_teams": true})).unwrap_err();
        assert!(e.contains("does not support yet"), "{e}");
        let with_records = compile_json(json!({"public_key_url": "http://a/j", "teams": [{"team_id": "t"}],
            "general_settings": {"litellm_jwtauth": {"sync_user_role_and_teams": true}}})).unwrap_err();
        assert!(with_records.contains("does not support yet") && !with_records.contains("records"),
            "with records set, the message does not blame missing records: {with_records}");
    }

    #[test]
    fn record_sources_compile_with_litellm_defaults() {
        let c = compile_json(json!({"public_key_url": "http://a/j", "record_source": {
            "type": "litellm", "url": "http://litellm:4000/", "master_key": "sk-1", "ttl": 30}})).unwrap();
        let s = c.record_source.unwrap();
        assert_eq!(s.cluster, "litellm:4000");
        assert_eq!(s.paths.get(&Kind::Team).map(String::as_str), Some("/team/info?team_id={id}"));
        assert!(s.headers.contains(&("authorization".into(), "Bearer sk-1".into())));
        assert_eq!(c.record_lifetimes, Lifetimes { ttl_ms: 30_000, negative_ttl_ms: 10_000, stale_ttl_ms: 300_000 });
        let e = compile_json(json!({"public_key_url": "http://a/j", "record_source": {"type": "litellm", "url": "http://l"}})).unwrap_err();
        assert!(e.contains("record_source.master_key"), "{e}");
        let e = compile_json(json!({"public_key_url": "http://a/j", "record_source": {"type": "http", "url": "http://l",
            "paths": {"team": "/teams"}}})).unwrap_err();
        assert!(e.contains("record_source.paths.team"), "{e}");
        let ok = compile_json(json!({"public_key_url": "http://a/j", "record_source": {"type": "http", "url": "http://l/api",
            "paths": {"team": "/teams/{id}"}, "headers": {"X-Token": "t"}}})).unwrap();
        let s = ok.record_source.unwrap();
        assert_eq!(s.base_path, "/api");
        assert!(!s.paths.contains_key(&Kind::User));
    }

    #[test]
    fn mode_defaults_to_enforce_and_takes_report() {
        assert_eq!(compile_json(json!({"public_key_url": "http://a/j"})).unwrap().mode, Mode::Enforce);
        assert_eq!(compile_json(json!({"public_key_url": "http://a/j", "mode": "report"})).unwrap().mode, Mode::Report);
        assert!(compile_json(json!({"public_key_url": "http://a/j", "mode": "off"})).unwrap_err().contains("mode"));
    }

    #[test]
    fn static_records_refuse_fields_they_do_not_read() {
        let e = compile_json(json!({"public_key_url": "http://a/j",
            "teams": [{"team_id": "research", "modles": ["gpt-4o"]}]})).unwrap_err();
        assert!(e.starts_with("invalid plugin configuration: teams[0].modles: unknown field of a team record (known: "), "{e}");
        assert!(e.contains("models"), "the message lists the real name: {e}");
        for (cfg, field) in [
            (json!({"users": [{"user_id": "u", "max_budgt": 1}]}), "users[0].max_budgt"),
            (json!({"organizations": [{"organization_id": "o", "model": []}]}), "organizations[0].model"),
            (json!({"end_users": [{"user_id": "c", "block": true}]}), "end_users[0].block"),
            (json!({"teams": [{"team_id": "t", "litellm_budget_table": {"max_budet": 1}}]}), "teams[0].litellm_budget_table.max_budet"),
            (json!({"teams": [{"team_id": "t", "litellm_budget_table": 5}]}), "teams[0].litellm_budget_table"),
            (json!({"end_users": [{"user_id": "c", "litellm_model_table": {}}]}), "end_users[0].litellm_model_table"),
            (json!({"teams": [{"team_id": "t"}, {"team_id": "t", "blocked": true}]}), "teams[1]: team \"t\" is configured twice"),
        ] {
            let mut cfg = cfg.clone();
            cfg["public_key_url"] = json!("http://a/j");
            let e = compile_json(cfg).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
        let ok = compile_json(json!({"public_key_url": "http://a/j", "teams": [{"team_id": "t", "models": ["m"],
            "litellm_budget_table": {"max_budget": 2}, "litellm_model_table": {"model_aliases": {"a": "m"}}}]}));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn settings_that_would_check_nothing_are_refused() {
        for (cfg, says) in [
            (json!({"general_settings": {"enable_jwt_auth": false}}), "general_settings.enable_jwt_auth: false is not supported"),
            (json!({"general_settings": {"litellm_jwtauth": {"enforce_scope_based_access": true}}}),
             "scope_mappings must be set if enforce_scope_based_access is true."),
            (json!({"general_settings": {"litellm_jwtauth": {"enforce_scope_based_access": true, "scope_mappings": []}}}),
             "scope_mappings must be set if enforce_scope_based_access is true."),
            (json!({"general_settings": {"litellm_jwtauth": {"scope_mappings": [{"scope": "s", "models": ["m"]}]}}}),
             "enforce_scope_based_access must be true when scope_mappings is set"),
            (json!({"general_settings": {"litellm_jwtauth": {"enforce_scope_based_access": true,
                "scope_mappings": [{"scope": "s", "models": ["m"], "routes": ["/v1/models"]}]}}}), "scope_mappings[0].routes: is not enforced"),
            (json!({"general_settings": {"role_permissions": [{"role": "team", "models": ["m"]}]}}),
             "general_settings.role_permissions: only applies with general_settings.litellm_jwtauth.enforce_rbac: true"),
            (json!({"general_settings": {"litellm_jwtauth": {"enforce_rbac": true}, "role_permissions": [
                {"role": "team", "models": ["m"]}, {"role": "team", "models": ["n"]}]}}), "role_permissions[1].role: team has permissions twice"),
            (json!({"general_settings": {"litellm_jwtauth": {"user_allowed_email_domain": "x.io"}}}),
             "user_allowed_email_domain: needs user_email_jwt_field"),
            (json!({"audience": ""}), "audience: must not be empty"),
            (json!({"issuer": " "}), "issuer: must not be empty"),
            (json!({"scope_claims": []}), "scope_claims: must name at least one claim"),
            (json!({"general_settings": {"litellm_jwtauth": {"admin_allowed_routes": ["management_route"]}}}),
             "admin_allowed_routes[0]: \"management_route\" is neither a path"),
            (json!({"general_settings": {"public_routes": ["/ok", "health"]}}), "general_settings.public_routes[1]"),
            (json!({"general_settings": {"litellm_jwtauth": {"team_allowed_routes": ["openai_routes", "v1/models"]}}}),
             "team_allowed_routes[1]"),
            (json!({"rules": [{"match": {"routes": ["openai_route"]}, "deny": true}]}), "rules[0].match.routes[0]"),
            (json!({"rules": [{"match": {"prefix": "/a", "methods": ["DELEET"]}, "deny": true}]}), "rules[0].match.methods[0]"),
            (json!({"rules": [{"match": {"prefix": "/a", "hosts": ["https://api.example.com"]}, "deny": true}]}), "rules[0].match.hosts[0]"),
            (json!({"rules": [{"match": {"prefix": "/a", "hosts": ["api.example.com/v1"]}, "deny": true}]}), "rules[0].match.hosts[0]"),
            (json!({"rules": [{"match": {"prefix": "/a"}, "require": {}}]}), "rules[0].require: asks for nothing"),
        ] {
            let mut cfg = cfg.clone();
            cfg["public_key_url"] = json!("http://a/j");
            let e = compile_json(cfg.clone()).unwrap_err();
            assert!(e.contains(says), "{cfg}: {e}");
        }
        let ok = compile_json(json!({"public_key_url": "http://a/j", "rules": [
            {"match": {"prefix": "/a", "methods": ["post"], "hosts": ["*.example.com", "API.example.com"]}, "require": {"team": true}}],
            "general_settings": {"enable_jwt_auth": true, "public_routes": ["/status", "public_routes"]}}));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn static_records_are_typed() {
        let c = compile_json(json!({"public_key_url": "http://a/j",
            "teams": [{"team_id": "t1", "models": ["gpt-4o"], "max_budget": 5}],
            "users": [{"user_id": "u1"}], "organizations": [{"organization_id": "o1"}],
            "end_users": [{"user_id": "c1", "blocked": true}]})).unwrap();
        assert_eq!(c.statics.len(), 4);
        let e = compile_json(json!({"public_key_url": "http://a/j", "teams": [{"models": ["x"]}]})).unwrap_err();
        assert!(e.contains("teams[0]"), "{e}");
        let e = compile_json(json!({"public_key_url": "http://a/j", "teams": [{"team_id": "t", "blocked": "yes"}]})).unwrap_err();
        assert!(e.contains("teams[0]"), "{e}");
    }

    fn jwtauth(block: Value) -> Result<FilterConfig, String> {
        compile_json(json!({"public_key_url": "http://a/j", "general_settings": {"litellm_jwtauth": block}}))
    }

    #[test]
    fn litellm_constructor_validations_with_litellms_messages() {
        let e = jwtauth(json!({"user_roles_jwt_field": "roles"})).unwrap_err();
        assert!(e.contains("user_allowed_roles must be provided if user_roles_jwt_field is set."), "{e}");
        let e = jwtauth(json!({"user_allowed_roles": ["a"]})).unwrap_err();
        assert!(e.contains("user_allowed_roles must be provided if user_roles_jwt_field is set."), "{e}");
        let e = jwtauth(json!({"object_id_jwt_field": "oid"})).unwrap_err();
        assert!(e.contains("if object_id_jwt_field is set, role_mappings must also be set."), "{e}");
        let e = jwtauth(json!({"scope_mappings": [{"scope": "s", "models": ["m"]}]})).unwrap_err();
        assert!(e.contains("enforce_scope_based_access must be true when scope_mappings is set"), "the correct text, not LiteLLM's reversed one: {e}");
    }

    #[test]
    fn mappings_and_permissions_are_typed_and_closed() {
        let e = jwtauth(json!({"roles_jwt_field": "r", "role_mappings": [{"role": "a", "internal_role": "god"}]})).unwrap_err();
        assert!(e.contains("role_mappings[0].internal_role"), "{e}");
        let e = jwtauth(json!({"enforce_scope_based_access": true,
            "scope_mappings": [{"scope": "s", "models": ["m"], "extra": 1}]})).unwrap_err();
        assert!(e.contains("unknown member \"extra\""), "{e}");
        let e = compile_json(json!({"public_key_url": "http://a/j", "general_settings": {
            "role_permissions": [{"role": "team", "models": "gpt-4"}]}})).unwrap_err();
        assert!(e.contains("role_permissions[0].models"), "{e}");
        let c = compile_json(json!({"public_key_url": "http://a/j", "general_settings": {
            "enforce_rbac": true,
            "role_permissions": [{"role": "team", "models": ["gpt-4"], "routes": ["openai_routes"]}],
            "litellm_jwtauth": {"enforce_rbac": true, "team_id_jwt_field": "tid"}}})).unwrap();
        assert!(c.policy.enforce_rbac && c.policy.general_enforce_rbac);
        assert_eq!(c.policy.role_permissions.as_ref().map(Vec::len), Some(1));
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
    fn public_routes_add_to_litellms_and_scope_claims_default_to_scope() {
        let c = compile_json(json!({"public_key_url": "http://a/j", "scope_claims": ["scope", "scp"],
            "general_settings": {"public_routes": ["/status", "/docs/*"]}})).unwrap();
        for open in ["/health/liveliness", "/", "/status", "/docs/x/y"] {
            assert!(c.public_routes.matches(open), "{open}");
        }
        assert!(!c.public_routes.matches("/v1/chat/completions"));
        assert_eq!(c.policy.scope_claims.len(), 2);
        let d = compile_json(json!({"public_key_url": "http://a/j"})).unwrap();
        assert_eq!(d.policy.scope_claims, vec![crate::authz::claim_path::ClaimPath::parse("scope").unwrap()]);
        assert_eq!(d.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn inline_pem_keys_and_certificates_are_loaded() {
        let v = vectors();
        let c = compile_json(json!({"public_keys": [v["keys"]["rsa"]["cert"], v["keys"]["p256"]["pem"]]})).unwrap();
        assert_eq!(c.inline_keys.len(), 2);
        assert!(c.jwks.is_empty());
    }
}
