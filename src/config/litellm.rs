//! LiteLLM's own blocks: `general_settings` and `general_settings.litellm_jwtauth`, validated as
//! LiteLLM's constructor does (with its messages where they are right) and compiled into the
//! authorization [`Policy`]. Settings this version does not enforce are refused unless they hold
//! their do-nothing value.

use super::fields::{err, field_err, flag, objects, only_keys, opt_path, opt_string, seconds_ms, string_list, JWTAUTH};
use super::rules::{claim_requirements, route_list};
use super::{DEFAULT_ADMIN_ALLOWED_ROUTES, DEFAULT_ADMIN_JWT_SCOPE, DEFAULT_PUBLIC_KEY_STALE_TTL_S, DEFAULT_PUBLIC_KEY_TTL_S, DEFAULT_TEAM_ALLOWED_ROUTES};
use crate::authz::{ClaimRequirement, Policy, RbacRole, RolePermission};
use crate::limits::usage::TokenKind;
use crate::records::USER_ROLES;
use crate::routes::RouteList;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

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
pub(super) const ENFORCED_JWTAUTH_FIELDS: &[&str] = &[
    "admin_jwt_scope", "admin_allowed_routes", "team_id_jwt_field", "team_allowed_routes",
    "team_id_default", "org_id_jwt_field", "user_id_jwt_field", "user_email_jwt_field",
    "user_allowed_email_domain", "user_roles_jwt_field", "user_allowed_roles",
    "end_user_id_jwt_field", "public_key_ttl", "enforce_rbac", "roles_jwt_field", "role_mappings",
    "object_id_jwt_field", "scope_mappings", "enforce_scope_based_access", "custom_validate",
    "upsert_sso_user_to_team", "public_allowed_routes", "public_key_stale_ttl", "team_ids_jwt_field", "team_id_upsert",
    "user_id_upsert", "enforce_team_based_model_access", "issuers", "team_claim_fallback",
    "fallback_to_db_teams", "team_alias_jwt_field", "org_alias_jwt_field", "jwt_litellm_role_map",
    "sync_user_role_and_teams", "oidc_userinfo_endpoint", "oidc_userinfo_enabled", "oidc_userinfo_cache_ttl",
];

/// `litellm_jwtauth` fields that only mean something with team/user records.
pub(super) const RECORD_FIELDS: &[&str] =
    &["team_ids_jwt_field", "team_id_upsert", "user_id_upsert", "enforce_team_based_model_access",
      "team_claim_fallback", "fallback_to_db_teams", "team_alias_jwt_field", "org_alias_jwt_field",
      "sync_user_role_and_teams"];

/// `general_settings` keys understood here.
pub(super) const GENERAL_SETTINGS_FIELDS: &[&str] =
    &["litellm_jwtauth", "enable_jwt_auth", "role_permissions", "enforce_rbac", "public_routes", "token_rate_limit_type"];

pub(super) struct Settings {
    pub(super) public_key_ttl_s: f64,
    pub(super) public_key_stale_ttl_ms: u64,
    pub(super) policy: Policy,
    pub(super) public_routes: RouteList,
    /// Record-dependent `litellm_jwtauth` fields set to something that asks for a rule.
    pub(super) record_fields_used: Vec<&'static str>,
    /// `litellm_jwtauth.issuers`, compiled later (it needs the finished global policy).
    pub(super) issuers: Option<Value>,
    /// `token_rate_limit_type`: which of an answer's tokens count toward `tpm_limit`.
    pub(super) token_kind: TokenKind,
    /// `oidc_userinfo_*` when enabled: the endpoint as written and the cache TTL (ms).
    pub(super) userinfo: Option<(String, u64)>,
}

/// `general_settings.token_rate_limit_type`: LiteLLM's `total` (default), `input` or
/// `output`. LiteLLM takes any other value for `total`; here it is refused (a typo of `input`
/// would count more than meant, and say nothing).
fn token_kind(gs: &Map<String, Value>) -> Result<TokenKind, String> {
    let field = "general_settings.token_rate_limit_type";
    match gs.get("token_rate_limit_type") {
        None | Some(Value::Null) => Ok(TokenKind::Total),
        Some(Value::String(s)) if s == "total" => Ok(TokenKind::Total),
        Some(Value::String(s)) if s == "input" => Ok(TokenKind::Input),
        Some(Value::String(s)) if s == "output" => Ok(TokenKind::Output),
        Some(_) => Err(err(field, "must be one of total, input, output")),
    }
}


pub(super) fn rbac_role(value: Option<&Value>, field: &str) -> Result<RbacRole, String> {
    value
        .and_then(Value::as_str)
        .and_then(RbacRole::parse)
        .ok_or_else(|| err(field, "must be one of proxy_admin, team, internal_user"))
}

/// `custom_validate`: LiteLLM takes a Python callable; here the rule is declarative:
/// `[{"claim": "<dot.path>", "equals": <json> | "any_of": [..] | "all_of": [..]}]`, all must hold.
pub(super) fn custom_validate(value: Option<&Value>) -> Result<Vec<ClaimRequirement>, String> {
    claim_requirements(value, &format!("{JWTAUTH}.custom_validate"))
}

/// Validate and compile `general_settings`.
pub(super) fn general_settings(gs: &Map<String, Value>) -> Result<Settings, String> {
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
    let empty = Map::new();
    let jwt = match gs.get("litellm_jwtauth") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(err(JWTAUTH, "must be an object")),
    };
    let record_fields_used = known_fields(jwt)?;
    let (public_key_ttl_s, public_key_stale_ttl_ms) = key_lifetimes(jwt)?;
    let public_routes_extra =
        string_list(gs.get("public_routes"), "general_settings.public_routes")?.unwrap_or_default();
    route_list(&public_routes_extra, "general_settings.public_routes")?;
    let mut public_routes = vec!["public_routes".to_string()];
    public_routes.extend(public_routes_extra);
    // Accepted, read by nobody (LiteLLM neither): checked for their type only.
    string_list(jwt.get("public_allowed_routes"), &format!("{JWTAUTH}.public_allowed_routes"))?;
    flag(jwt, "upsert_sso_user_to_team", &format!("{JWTAUTH}.upsert_sso_user_to_team"))?;
    Ok(Settings {
        public_key_ttl_s,
        public_key_stale_ttl_ms,
        policy: policy(gs, jwt)?,
        public_routes: RouteList::compile(&public_routes),
        record_fields_used,
        issuers: jwt.get("issuers").filter(|v| !v.is_null()).cloned(),
        token_kind: token_kind(gs)?,
        userinfo: super::userinfo::read(jwt)?,
    })
}

/// LiteLLM's own constructor check (unknown names, with its wording), then the names this
/// version does not enforce: refused unless they ask for nothing. Returns the record-dependent
/// fields that ask for a rule.
fn known_fields(jwt: &Map<String, Value>) -> Result<Vec<&'static str>, String> {
    let unknown: Vec<&str> =
        jwt.keys().map(String::as_str).filter(|k| !LITELLM_JWTAUTH_FIELDS.contains(k)).collect();
    if !unknown.is_empty() {
        return Err(format!(
            "invalid plugin configuration: {JWTAUTH}: Invalid arguments provided: {}. Allowed arguments are: {}.",
            unknown.join(", "),
            LITELLM_JWTAUTH_FIELDS.join(", ")
        ));
    }
    for (name, value) in jwt {
        if !ENFORCED_JWTAUTH_FIELDS.contains(&name.as_str()) && !asks_for_nothing(name, value) {
            return Err(field_err(
                name,
                "is a LiteLLM rule this version of llm-jwt-auth does not support yet; refusing to start \
                 rather than silently ignore it (docs/configuration.md lists what is supported)",
            ));
        }
    }
    Ok(RECORD_FIELDS.iter().copied().filter(|f| jwt.get(*f).is_some_and(|v| !asks_for_nothing(f, v))).collect())
}

/// `public_key_ttl` (seconds) and `public_key_stale_ttl` (milliseconds).
fn key_lifetimes(jwt: &Map<String, Value>) -> Result<(f64, u64), String> {
    let ttl_s = match jwt.get("public_key_ttl") {
        None | Some(Value::Null) => DEFAULT_PUBLIC_KEY_TTL_S,
        Some(v) => v
            .as_f64()
            .filter(|t| t.is_finite() && *t >= 1.0 && *t <= 86_400.0 * 30.0)
            .ok_or_else(|| field_err("public_key_ttl", "must be a number of seconds, 1 to 2592000"))?,
    };
    let stale_ms = match jwt.get("public_key_stale_ttl") {
        None | Some(Value::Null) => seconds_ms(None, DEFAULT_PUBLIC_KEY_STALE_TTL_S, "")?,
        Some(v) => seconds_ms(Some(v.as_f64().unwrap_or(-1.0)), 0.0, &format!("{JWTAUTH}.public_key_stale_ttl"))?,
    };
    Ok((ttl_s, stale_ms))
}

/// The authorization policy from `litellm_jwtauth` and `general_settings`.
fn policy(gs: &Map<String, Value>, jwt: &Map<String, Value>) -> Result<Policy, String> {
    let user_roles_jwt_field = opt_path(jwt, "user_roles_jwt_field")?;
    let user_allowed_roles = string_list(jwt.get("user_allowed_roles"), &format!("{JWTAUTH}.user_allowed_roles"))?;
    if user_roles_jwt_field.is_some() != user_allowed_roles.is_some() {
        return Err(err(JWTAUTH, "user_allowed_roles must be provided if user_roles_jwt_field is set."));
    }
    let object_id_jwt_field = opt_path(jwt, "object_id_jwt_field")?;
    if object_id_jwt_field.is_some() && jwt.get("role_mappings").is_none_or(Value::is_null) {
        return Err(err(JWTAUTH, "if object_id_jwt_field is set, role_mappings must also be set. Needed to infer if the caller is a user or team."));
    }
    let enforce_scope_based_access = flag(jwt, "enforce_scope_based_access", &format!("{JWTAUTH}.enforce_scope_based_access"))?;
    let admin_allowed_routes = string_list(jwt.get("admin_allowed_routes"), &format!("{JWTAUTH}.admin_allowed_routes"))?
        .unwrap_or_else(|| DEFAULT_ADMIN_ALLOWED_ROUTES.iter().map(|s| s.to_string()).collect());
    let team_allowed_routes = string_list(jwt.get("team_allowed_routes"), &format!("{JWTAUTH}.team_allowed_routes"))?
        .unwrap_or_else(|| DEFAULT_TEAM_ALLOWED_ROUTES.iter().map(|s| s.to_string()).collect());
    Ok(Policy {
        admin_jwt_scope: opt_string(jwt, "admin_jwt_scope")?.unwrap_or_else(|| DEFAULT_ADMIN_JWT_SCOPE.to_string()),
        admin_allowed_routes: route_list(&admin_allowed_routes, &format!("{JWTAUTH}.admin_allowed_routes"))?,
        team_id_jwt_field: opt_path(jwt, "team_id_jwt_field")?,
        team_alias_jwt_field: opt_path(jwt, "team_alias_jwt_field")?,
        org_alias_jwt_field: opt_path(jwt, "org_alias_jwt_field")?,
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
        role_mappings: role_mappings(jwt)?,
        object_id_jwt_field,
        scope_mappings: scope_mappings(jwt, enforce_scope_based_access)?,
        enforce_scope_based_access,
        role_permissions: role_permissions(gs)?,
        general_enforce_rbac: flag(gs, "enforce_rbac", "general_settings.enforce_rbac")?,
        custom_validate: custom_validate(jwt.get("custom_validate"))?,
        scope_claims: Vec::new(),
        team_ids_jwt_field: opt_path(jwt, "team_ids_jwt_field")?,
        team_id_upsert: flag(jwt, "team_id_upsert", &format!("{JWTAUTH}.team_id_upsert"))?,
        user_id_upsert: flag(jwt, "user_id_upsert", &format!("{JWTAUTH}.user_id_upsert"))?,
        enforce_team_based_model_access: flag(jwt, "enforce_team_based_model_access", &format!("{JWTAUTH}.enforce_team_based_model_access"))?,
        team_claim_fallback: flag(jwt, "team_claim_fallback", &format!("{JWTAUTH}.team_claim_fallback"))?,
        sync_user_role_and_teams: flag(jwt, "sync_user_role_and_teams", &format!("{JWTAUTH}.sync_user_role_and_teams"))?,
        jwt_litellm_role_map: jwt_litellm_role_map(jwt)?,
        fallback_to_db_teams: flag(jwt, "fallback_to_db_teams", &format!("{JWTAUTH}.fallback_to_db_teams"))?,
        team_allowed_routes: route_list(&team_allowed_routes, &format!("{JWTAUTH}.team_allowed_routes"))?,
        access_groups: BTreeMap::new(),
    })
}

/// `jwt_litellm_role_map`: IdP role glob → LiteLLM user role, written to the user record when
/// `sync_user_role_and_teams` (LiteLLM reads it nowhere else, so without it the map is refused:
/// it would read as if roles were mapped).
fn jwt_litellm_role_map(jwt: &Map<String, Value>) -> Result<Vec<(String, String)>, String> {
    let field = format!("{JWTAUTH}.jwt_litellm_role_map");
    let mut out = Vec::new();
    for (i, m) in objects(jwt.get("jwt_litellm_role_map"), &field)?.into_iter().enumerate() {
        let here = format!("{field}[{i}]");
        only_keys(m, &["jwt_role", "litellm_role"], &here)?;
        let pattern = m.get("jwt_role").and_then(Value::as_str).ok_or_else(|| err(&here, "needs \"jwt_role\": a string (a glob)"))?;
        let role = m
            .get("litellm_role")
            .and_then(Value::as_str)
            .filter(|r| USER_ROLES.contains(r))
            .ok_or_else(|| err(&format!("{here}.litellm_role"), format!("must be one of {}", USER_ROLES.join(", "))))?;
        out.push((pattern.to_string(), role.to_string()));
    }
    if !out.is_empty() && jwt.get("sync_user_role_and_teams") != Some(&Value::Bool(true)) {
        return Err(err(&field, "does nothing without sync_user_role_and_teams: true (LiteLLM applies it only when syncing)"));
    }
    if !out.is_empty() && jwt.get("roles_jwt_field").is_none_or(Value::is_null) {
        return Err(err(&field, "needs roles_jwt_field: the claim whose roles it maps"));
    }
    Ok(out)
}

/// `role_mappings`: IdP role → RBAC role, first match wins.
fn role_mappings(jwt: &Map<String, Value>) -> Result<Vec<(String, RbacRole)>, String> {
    let mut out = Vec::new();
    for (i, m) in objects(jwt.get("role_mappings"), &format!("{JWTAUTH}.role_mappings"))?.into_iter().enumerate() {
        let here = format!("{JWTAUTH}.role_mappings[{i}]");
        only_keys(m, &["role", "internal_role"], &here)?;
        let idp_role = m.get("role").and_then(Value::as_str).ok_or_else(|| err(&here, "needs \"role\": a string"))?;
        out.push((idp_role.to_string(), rbac_role(m.get("internal_role"), &format!("{here}.internal_role"))?));
    }
    Ok(out)
}

/// `scope_mappings`: scope → models, only with `enforce_scope_based_access` (and the other way
/// round: the gate needs mappings to check anything).
fn scope_mappings(jwt: &Map<String, Value>, enforced: bool) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out = Vec::new();
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
        out.push((scope.to_string(), models));
    }
    if jwt.get("scope_mappings").is_some_and(|v| !v.is_null()) && !enforced {
        // LiteLLM refuses this too, but its message ("scope_mappings must be set if
        // enforce_scope_based_access is true.") states the reverse rule.
        return Err(err(
            JWTAUTH,
            "enforce_scope_based_access must be true when scope_mappings is set (the mappings are only enforced then)",
        ));
    }
    if enforced && out.is_empty() {
        // Without mappings the scope gate would check nothing.
        return Err(err(JWTAUTH, "scope_mappings must be set if enforce_scope_based_access is true."));
    }
    Ok(out)
}

/// `general_settings.role_permissions`: one entry per RBAC role, `None` when absent.
fn role_permissions(gs: &Map<String, Value>) -> Result<Option<Vec<RolePermission>>, String> {
    let value = match gs.get("role_permissions") {
        None | Some(Value::Null) => return Ok(None),
        value => value,
    };
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
    Ok(Some(out))
}

/// Whether a not-yet-enforced LiteLLM field holds a value that asks for no rule.
pub(super) fn asks_for_nothing(name: &str, value: &Value) -> bool {
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
    use crate::config::testing::*;
    use serde_json::json;

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
}
