//! LiteLLM's `auth_builder` decisions for a verified token (spec §7.2, seed order, newest
//! fixes): custom validation, RBAC role, the `enforce_rbac` gate with role permissions, the
//! scope → model gate, identity extraction, the admin path, the required team id and
//! `validate_object_id` — plus the non-admin route check of `common_checks`. Pure: the
//! caller supplies the route and, when [`Policy::needs_model`] says so, the requested model.

use crate::claim_path::ClaimPath;
use crate::error::AuthError;
use crate::identity::{Identity, ROLE_INTERNAL_USER, ROLE_PROXY_ADMIN};
use crate::routes::{py_list, RouteList};
use serde_json::{Map, Value};

/// LiteLLM's `RBAC_ROLES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacRole {
    ProxyAdmin,
    Team,
    InternalUser,
}

impl RbacRole {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "proxy_admin" => Some(Self::ProxyAdmin),
            "team" => Some(Self::Team),
            "internal_user" => Some(Self::InternalUser),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProxyAdmin => "proxy_admin",
            Self::Team => "team",
            Self::InternalUser => "internal_user",
        }
    }
}

/// One `general_settings.role_permissions` entry.
#[derive(Debug, Clone)]
pub struct RolePermission {
    pub role: RbacRole,
    pub models: Option<Vec<String>>,
    pub routes: Option<RouteList>,
}

/// A declarative `custom_validate` rule on one claim.
#[derive(Debug, Clone)]
pub enum ClaimRequirement {
    /// The claim equals this JSON value.
    Equals(ClaimPath, Value),
    /// The claim (a string, or a list of strings) contains at least one of these.
    AnyOf(ClaimPath, Vec<String>),
    /// The claim (a string, or a list of strings) contains all of these.
    AllOf(ClaimPath, Vec<String>),
}

impl ClaimRequirement {
    fn holds(&self, claims: &Map<String, Value>) -> bool {
        match self {
            ClaimRequirement::Equals(path, want) => path.lookup(claims) == Some(want),
            ClaimRequirement::AnyOf(path, wanted) => {
                let have = path.strings(claims);
                wanted.iter().any(|w| have.contains(w))
            }
            ClaimRequirement::AllOf(path, wanted) => {
                let have = path.strings(claims);
                wanted.iter().all(|w| have.contains(w))
            }
        }
    }
}

/// The compiled authorization policy (LiteLLM's `litellm_jwtauth` + `general_settings`).
#[derive(Debug, Clone)]
pub struct Policy {
    pub admin_jwt_scope: String,
    pub admin_allowed_routes: RouteList,
    pub team_id_jwt_field: Option<ClaimPath>,
    pub team_id_default: Option<String>,
    pub org_id_jwt_field: Option<ClaimPath>,
    pub user_id_jwt_field: Option<ClaimPath>,
    pub user_email_jwt_field: Option<ClaimPath>,
    /// Newest LiteLLM: a token whose email is in another domain is refused (403).
    pub user_allowed_email_domain: Option<String>,
    pub user_roles_jwt_field: Option<ClaimPath>,
    pub user_allowed_roles: Vec<String>,
    pub end_user_id_jwt_field: Option<ClaimPath>,
    pub enforce_rbac: bool,
    pub roles_jwt_field: Option<ClaimPath>,
    pub role_mappings: Vec<(String, RbacRole)>,
    pub object_id_jwt_field: Option<ClaimPath>,
    pub scope_mappings: Vec<(String, Vec<String>)>,
    pub enforce_scope_based_access: bool,
    /// `general_settings.role_permissions`; `None` when the key is absent.
    pub role_permissions: Option<Vec<RolePermission>>,
    /// `general_settings.enforce_rbac` (read by `validate_object_id`, spec §10.4).
    pub general_enforce_rbac: bool,
    pub custom_validate: Vec<ClaimRequirement>,
    /// Claims scopes are read from. LiteLLM: `scope` only; Azure AD also uses `scp`.
    pub scope_claims: Vec<ClaimPath>,
    /// Routes any non-admin token may call (LiteLLM's LLM API and info routes).
    pub non_admin_routes: RouteList,
}

/// What the request asks for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The path without the query string.
    pub route: &'a str,
    pub model: Option<&'a str>,
}

fn forbidden(message: String) -> AuthError {
    AuthError::Forbidden(message)
}

fn model_not_available(model: &str) -> AuthError {
    forbidden(format!(
        "The requested model '{model}' is not available for this API key, or the model name is \
         invalid. Check the models available to you and try again."
    ))
}

impl Policy {
    /// Scopes from every configured scope claim (string split on whitespace, or a list).
    pub fn scopes(&self, claims: &Map<String, Value>) -> Vec<String> {
        let mut out = Vec::new();
        for path in &self.scope_claims {
            match path.lookup(claims) {
                Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
                Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned)),
                _ => {}
            }
        }
        out
    }

    fn team_id(&self, claims: &Map<String, Value>) -> Option<String> {
        // Newest: the claim (first element of a list), else `team_id_default`.
        self.team_id_jwt_field
            .as_ref()
            .and_then(|p| p.string_or_first(claims))
            .filter(|t| !t.is_empty())
            .or_else(|| self.team_id_default.clone())
    }

    fn user_id_claim(&self, claims: &Map<String, Value>) -> Option<String> {
        self.user_id_jwt_field.as_ref().and_then(|p| p.string(claims))
    }

    /// LiteLLM's `get_rbac_role`: the first rule that applies.
    pub fn rbac_role(&self, claims: &Map<String, Value>, scopes: &[String]) -> Option<RbacRole> {
        if scopes.contains(&self.admin_jwt_scope) {
            return Some(RbacRole::ProxyAdmin);
        }
        if self.team_id(claims).is_some() {
            return Some(RbacRole::Team);
        }
        if self.user_id_claim(claims).is_some() {
            return Some(RbacRole::InternalUser);
        }
        if let Some(path) = &self.user_roles_jwt_field {
            if path.strings(claims).iter().any(|r| self.user_allowed_roles.contains(r)) {
                return Some(RbacRole::InternalUser);
            }
        }
        if let Some(path) = &self.roles_jwt_field {
            let roles = path.strings(claims);
            if let Some((_, role)) = self.role_mappings.iter().find(|(idp, _)| roles.contains(idp)) {
                return Some(*role);
            }
        }
        None
    }

    fn permission(&self, role: RbacRole) -> Option<&RolePermission> {
        self.role_permissions.as_ref()?.iter().find(|p| p.role == role)
    }

    /// Whether deciding this token needs the requested model (so the body must be read).
    pub fn needs_model(&self, claims: &Map<String, Value>) -> bool {
        let scopes = self.scopes(claims);
        let scope_gate = self.enforce_scope_based_access && !self.scope_mappings.is_empty();
        let role_gate = self.enforce_rbac
            && self
                .rbac_role(claims, &scopes)
                .and_then(|r| self.permission(r))
                .is_some_and(|p| p.models.is_some());
        scope_gate || role_gate
    }

    /// Decide a verified token's request. `Ok` carries the identity to forward.
    pub fn authorize(&self, claims: &Map<String, Value>, request: Request) -> Result<Identity, AuthError> {
        let route = request.route;
        // 2. custom_validate
        if !self.custom_validate.iter().all(|rule| rule.holds(claims)) {
            return Err(forbidden("Invalid JWT token".into()));
        }
        // 3–4. RBAC role and the enforce_rbac gate.
        let scopes = self.scopes(claims);
        let rbac_role = self.rbac_role(claims, &scopes);
        if self.enforce_rbac {
            let role = rbac_role.ok_or_else(|| {
                forbidden("Unmatched token passed in. enforce_rbac is set to True. Token must belong to a proxy admin, team, or user.".into())
            })?;
            if let Some(permission) = self.permission(role) {
                if let (Some(models), Some(model)) = (&permission.models, request.model) {
                    if !models.iter().any(|m| m == model) {
                        return Err(model_not_available(model));
                    }
                }
                if let Some(routes) = &permission.routes {
                    if !routes.matches(route) {
                        return Err(forbidden(format!(
                            "Role={} not allowed to call route={route}. Allowed routes={}",
                            role.as_str(),
                            py_list(&routes.entries())
                        )));
                    }
                }
            }
        }
        // 5. scope → model gate
        if self.enforce_scope_based_access && !self.scope_mappings.is_empty() {
            if let Some(model) = request.model {
                let allowed = self
                    .scope_mappings
                    .iter()
                    .filter(|(scope, _)| scopes.contains(scope))
                    .any(|(_, models)| models.iter().any(|m| m == model));
                if !allowed {
                    return Err(model_not_available(model));
                }
            }
        }
        // 6. identity
        let user_email = self.user_email_jwt_field.as_ref().and_then(|p| p.string(claims));
        if let (Some(domain), Some(email)) = (&self.user_allowed_email_domain, &user_email) {
            if email.rsplit_once('@').map(|(_, d)| d) != Some(domain.as_str()) {
                return Err(forbidden(format!(
                    "Email domain not allowed. User email: {email}. Allowed domain: {domain}"
                )));
            }
        }
        let mut user_id = self.user_id_claim(claims).or_else(|| user_email.clone());
        let org_id = self.org_id_jwt_field.as_ref().and_then(|p| p.string(claims));
        let end_user_id = self.end_user_id_jwt_field.as_ref().and_then(|p| p.string(claims));
        // 7. object_id
        let mut team_id = None;
        if let Some(object_id) = self.object_id_jwt_field.as_ref().and_then(|p| p.string(claims)) {
            match rbac_role {
                Some(RbacRole::Team) => team_id = Some(object_id),
                Some(RbacRole::InternalUser) => user_id = Some(object_id),
                _ => {}
            }
        }
        let sub = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        // 8. admin (by scope, not by mapped role)
        if scopes.contains(&self.admin_jwt_scope) {
            if !self.admin_allowed_routes.matches(route) {
                return Err(AuthError::Denied(format!(
                    "Admin not allowed to access this route. Route={route}, Allowed Routes={}",
                    py_list(&self.admin_allowed_routes.expanded())
                )));
            }
            return Ok(Identity {
                user_id: user_id.or(sub),
                user_role: ROLE_PROXY_ADMIN,
                user_email,
                org_id,
                ..Identity::default()
            });
        }
        // 9. single team
        if team_id.is_none() {
            team_id = self.team_id(claims);
            if team_id.is_none() {
                if let Some(field) = &self.team_id_jwt_field {
                    return Err(AuthError::Denied(format!(
                        "No team id found in token. Checked team_id field '{}'",
                        field.as_str()
                    )));
                }
            }
        }
        // 12. validate_object_id (general_settings.enforce_rbac)
        if self.general_enforce_rbac && user_id.is_none() && team_id.is_none() {
            return Err(forbidden(
                "No user or team id found in token. enforce_rbac is set to True. Token must belong to a proxy admin, team, or user.".into(),
            ));
        }
        // common_checks: non-admins may call LLM API and info routes only.
        if !self.non_admin_routes.matches(route) {
            return Err(AuthError::Denied(format!(
                "Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route={route}. Your role={}. Your user_id={}",
                "unknown",
                user_id.as_deref().unwrap_or("unknown")
            )));
        }
        Ok(Identity {
            user_id: user_id.or(sub),
            user_role: ROLE_INTERNAL_USER,
            user_email,
            team_id,
            org_id,
            end_user_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile;
    use serde_json::json;

    fn policy(general_settings: Value) -> Policy {
        let cfg = json!({"public_key_url": "http://idp/jwks", "general_settings": general_settings});
        compile(cfg.to_string().as_bytes(), &|_| None).unwrap().policy
    }

    fn jwt(block: Value) -> Policy {
        policy(json!({"litellm_jwtauth": block}))
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn call(p: &Policy, c: Value, route: &str, model: Option<&str>) -> Result<Identity, AuthError> {
        p.authorize(&claims(c), Request { route, model })
    }

    const CHAT: &str = "/v1/chat/completions";

    #[test]
    fn plain_token_may_call_llm_routes_as_internal_user() {
        let id = call(&jwt(json!({})), json!({"sub": "u1"}), CHAT, Some("gpt-4o")).unwrap();
        assert_eq!(id.user_role, ROLE_INTERNAL_USER);
        assert_eq!(id.user_id.as_deref(), Some("u1"), "sub is forwarded when no user id field");
        assert!(call(&jwt(json!({})), json!({}), "/v1/models", None).is_ok());
        assert!(call(&jwt(json!({})), json!({}), "/key/info", None).is_ok(), "info routes are open");
    }

    #[test]
    fn non_admin_on_management_route_gets_litellms_401() {
        let e = call(&jwt(json!({})), json!({"sub": "u1"}), "/key/generate", None).unwrap_err();
        assert_eq!(e.status(), 401);
        assert_eq!(
            e.message(),
            "Authentication Error, Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route=/key/generate. Your role=unknown. Your user_id=unknown"
        );
    }

    #[test]
    fn admin_scope_is_admin_on_management_routes_only_by_default() {
        let p = jwt(json!({}));
        let admin = json!({"sub": "root", "scope": "openid litellm_proxy_admin"});
        let id = call(&p, admin.clone(), "/key/generate", None).unwrap();
        assert_eq!(id.user_role, ROLE_PROXY_ADMIN);
        assert!(call(&p, admin.clone(), "/global/spend/logs", None).is_ok());
        let e = call(&p, admin.clone(), CHAT, Some("gpt-4o")).unwrap_err();
        assert_eq!(e.status(), 401);
        let m = e.message();
        assert!(m.starts_with("Authentication Error, Admin not allowed to access this route. Route=/v1/chat/completions, Allowed Routes=['/user/new', "), "{m}");
        let custom = jwt(json!({"admin_jwt_scope": "llm.admin", "admin_allowed_routes": ["openai_routes", "/admin/*"]}));
        let admin = json!({"scope": ["llm.admin"]});
        assert!(call(&custom, admin.clone(), CHAT, None).is_ok());
        assert!(call(&custom, admin.clone(), "/admin/x/y", None).is_ok());
        assert!(call(&custom, admin, "/key/generate", None).is_err());
    }

    #[test]
    fn rbac_role_resolution_order() {
        let p = jwt(json!({
            "team_id_jwt_field": "tid", "user_id_jwt_field": "uid",
            "user_roles_jwt_field": "realm_access.roles", "user_allowed_roles": ["llm-user"],
            "roles_jwt_field": "groups", "role_mappings": [{"role": "ops", "internal_role": "proxy_admin"}, {"role": "devs", "internal_role": "team"}]
        }));
        let scopes = |c: &Value| p.scopes(&claims(c.clone()));
        let role = |c: Value| p.rbac_role(&claims(c.clone()), &scopes(&c));
        assert_eq!(role(json!({"scope": "litellm_proxy_admin", "tid": "t"})), Some(RbacRole::ProxyAdmin));
        assert_eq!(role(json!({"tid": "t", "uid": "u"})), Some(RbacRole::Team));
        assert_eq!(role(json!({"uid": "u", "groups": ["ops"]})), Some(RbacRole::InternalUser));
        assert_eq!(role(json!({"realm_access": {"roles": ["llm-user"]}})), Some(RbacRole::InternalUser));
        assert_eq!(role(json!({"groups": ["x", "devs", "ops"]})), Some(RbacRole::ProxyAdmin), "first mapping wins");
        assert_eq!(role(json!({"groups": "devs"})), Some(RbacRole::Team), "a string claim is one role, not characters");
        assert_eq!(role(json!({"groups": ["d", "e", "v", "s"]})), None);
        assert_eq!(role(json!({"sub": "nobody"})), None);
    }

    #[test]
    fn team_id_default_makes_every_token_a_team_token() {
        let p = jwt(json!({"team_id_default": "default-team"}));
        let id = call(&p, json!({}), CHAT, None).unwrap();
        assert_eq!(id.team_id.as_deref(), Some("default-team"));
        let c = claims(json!({}));
        assert_eq!(p.rbac_role(&c, &[]), Some(RbacRole::Team));
    }

    #[test]
    fn enforce_rbac_refuses_unmatched_tokens() {
        let p = jwt(json!({"enforce_rbac": true, "user_id_jwt_field": "uid"}));
        let e = call(&p, json!({"sub": "x"}), CHAT, None).unwrap_err();
        assert_eq!(e, AuthError::Forbidden("Unmatched token passed in. enforce_rbac is set to True. Token must belong to a proxy admin, team, or user.".into()));
        assert!(call(&p, json!({"uid": "u"}), CHAT, None).is_ok());
    }

    #[test]
    fn role_permissions_gate_models_and_routes_when_rbac_is_enforced() {
        let p = policy(json!({
            "role_permissions": [
                {"role": "team", "models": ["gpt-4o", "claude-3"], "routes": ["openai_routes"]},
                {"role": "internal_user", "routes": ["/v1/models"]}],
            "litellm_jwtauth": {"enforce_rbac": true, "team_id_jwt_field": "tid", "user_id_jwt_field": "uid"}}));
        let team = json!({"tid": "t1"});
        assert!(call(&p, team.clone(), CHAT, Some("gpt-4o")).is_ok());
        assert!(call(&p, team.clone(), CHAT, None).is_ok(), "no model: the model gate is skipped");
        let e = call(&p, team.clone(), CHAT, Some("gpt-4o-mini")).unwrap_err();
        assert_eq!(e.status(), 403);
        assert_eq!(e.message(), "The requested model 'gpt-4o-mini' is not available for this API key, or the model name is invalid. Check the models available to you and try again.");
        let e = call(&p, team.clone(), "/v1/messages", None).unwrap_err();
        assert_eq!(e, AuthError::Forbidden("Role=team not allowed to call route=/v1/messages. Allowed routes=['openai_routes']".into()));
        let user = json!({"uid": "u"});
        let e = call(&p, user.clone(), "/v1/models", None).unwrap_err();
        assert!(e.message().contains("No team id found in token"), "team_id_jwt_field makes a team required");
        assert!(p.needs_model(&claims(team)));
        assert!(!p.needs_model(&claims(user.clone())), "internal_user has no model list");

        let users = policy(json!({
            "role_permissions": [{"role": "internal_user", "routes": ["/v1/models"]}],
            "litellm_jwtauth": {"enforce_rbac": true, "user_id_jwt_field": "uid"}}));
        assert!(call(&users, user.clone(), "/v1/models", None).is_ok());
        assert!(call(&users, user, CHAT, Some("anything")).is_err());
    }

    #[test]
    fn role_permissions_are_ignored_without_enforce_rbac() {
        let p = policy(json!({"role_permissions": [{"role": "team", "models": ["gpt-4o"]}],
            "litellm_jwtauth": {"team_id_jwt_field": "tid"}}));
        assert!(call(&p, json!({"tid": "t"}), CHAT, Some("other")).is_ok());
        assert!(!p.needs_model(&claims(json!({"tid": "t"}))));
    }

    #[test]
    fn scope_mappings_gate_models() {
        let p = jwt(json!({"enforce_scope_based_access": true, "scope_mappings": [
            {"scope": "llm.basic", "models": ["gpt-4o-mini"]},
            {"scope": "llm.pro", "models": ["gpt-4o", "o1"]}]}));
        assert!(call(&p, json!({"scope": "llm.basic"}), CHAT, Some("gpt-4o-mini")).is_ok());
        assert!(call(&p, json!({"scope": "llm.basic llm.pro"}), CHAT, Some("o1")).is_ok());
        let e = call(&p, json!({"scope": "llm.basic"}), CHAT, Some("o1")).unwrap_err();
        assert_eq!(e.status(), 403);
        assert!(e.message().starts_with("The requested model 'o1' is not available"));
        assert!(call(&p, json!({}), "/v1/models", None).is_ok(), "no model requested: pass");
        assert!(p.needs_model(&claims(json!({}))));
    }

    #[test]
    fn extra_scope_claims_like_azure_scp() {
        let cfg = json!({"public_key_url": "http://idp/jwks", "scope_claims": ["scope", "scp"],
            "general_settings": {"litellm_jwtauth": {"enforce_scope_based_access": true,
                "scope_mappings": [{"scope": "LLM.Use", "models": ["gpt-4o"]}]}}});
        let p = compile(cfg.to_string().as_bytes(), &|_| None).unwrap().policy;
        assert!(call(&p, json!({"scp": "LLM.Use User.Read"}), CHAT, Some("gpt-4o")).is_ok());
        assert!(call(&jwt(json!({"enforce_scope_based_access": true,
            "scope_mappings": [{"scope": "LLM.Use", "models": ["gpt-4o"]}]})),
            json!({"scp": "LLM.Use"}), CHAT, Some("gpt-4o")).is_err(), "LiteLLM default reads only `scope`");
    }

    #[test]
    fn identity_extraction_with_email_fallback_and_object_id() {
        let p = jwt(json!({"user_email_jwt_field": "email", "org_id_jwt_field": "org.id",
            "end_user_id_jwt_field": "customer"}));
        let id = call(&p, json!({"sub": "s", "email": "a@x.io", "org": {"id": "o1"}, "customer": "c9"}), CHAT, None).unwrap();
        assert_eq!(id.user_id.as_deref(), Some("a@x.io"));
        assert_eq!(id.user_email.as_deref(), Some("a@x.io"));
        assert_eq!(id.org_id.as_deref(), Some("o1"));
        assert_eq!(id.end_user_id.as_deref(), Some("c9"));

        let p = jwt(json!({"roles_jwt_field": "roles", "object_id_jwt_field": "oid",
            "role_mappings": [{"role": "svc", "internal_role": "team"}, {"role": "human", "internal_role": "internal_user"}]}));
        let id = call(&p, json!({"roles": ["svc"], "oid": "team-42"}), CHAT, None).unwrap();
        assert_eq!(id.team_id.as_deref(), Some("team-42"));
        let id = call(&p, json!({"roles": ["human"], "oid": "user-7"}), CHAT, None).unwrap();
        assert_eq!(id.user_id.as_deref(), Some("user-7"));
        assert_eq!(id.team_id, None);
    }

    #[test]
    fn required_team_id_and_list_claims() {
        let p = jwt(json!({"team_id_jwt_field": "team"}));
        let e = call(&p, json!({"sub": "s"}), CHAT, None).unwrap_err();
        assert_eq!(e.message(), "Authentication Error, No team id found in token. Checked team_id field 'team'");
        assert_eq!(call(&p, json!({"team": ["t1", "t2"]}), CHAT, None).unwrap().team_id.as_deref(), Some("t1"));
        let with_default = jwt(json!({"team_id_jwt_field": "team", "team_id_default": "fallback"}));
        assert_eq!(call(&with_default, json!({}), CHAT, None).unwrap().team_id.as_deref(), Some("fallback"));
    }

    #[test]
    fn general_enforce_rbac_requires_a_user_or_team_id() {
        let p = policy(json!({"enforce_rbac": true, "litellm_jwtauth": {"user_id_jwt_field": "uid"}}));
        let e = call(&p, json!({"sub": "s"}), CHAT, None).unwrap_err();
        assert_eq!(e, AuthError::Forbidden("No user or team id found in token. enforce_rbac is set to True. Token must belong to a proxy admin, team, or user.".into()));
        assert!(call(&p, json!({"uid": "u"}), CHAT, None).is_ok());
        assert!(call(&p, json!({"scope": "litellm_proxy_admin"}), "/key/generate", None).is_ok(), "admins are exempt");
    }

    #[test]
    fn custom_validate_rules_must_all_hold() {
        let p = jwt(json!({"custom_validate": [
            {"claim": "tenant", "equals": "acme"},
            {"claim": "groups", "any_of": ["llm", "ml"]},
            {"claim": "amr", "all_of": ["pwd", "mfa"]}]}));
        let good = json!({"tenant": "acme", "groups": ["x", "ml"], "amr": ["mfa", "pwd"]});
        assert!(call(&p, good, CHAT, None).is_ok());
        for bad in [
            json!({"tenant": "evil", "groups": ["ml"], "amr": ["mfa", "pwd"]}),
            json!({"tenant": "acme", "groups": ["x"], "amr": ["mfa", "pwd"]}),
            json!({"tenant": "acme", "groups": ["ml"], "amr": ["pwd"]}),
            json!({"groups": ["ml"], "amr": ["mfa", "pwd"]}),
        ] {
            assert_eq!(call(&p, bad, CHAT, None), Err(AuthError::Forbidden("Invalid JWT token".into())));
        }
    }

    #[test]
    fn email_domain_is_enforced_like_newest_litellm() {
        let p = jwt(json!({"user_email_jwt_field": "email", "user_allowed_email_domain": "corp.com"}));
        assert!(call(&p, json!({"email": "a@corp.com"}), CHAT, None).is_ok());
        let e = call(&p, json!({"email": "a@evil.com"}), CHAT, None).unwrap_err();
        assert_eq!(e.message(), "Email domain not allowed. User email: a@evil.com. Allowed domain: corp.com");
        assert!(call(&p, json!({"email": "a@sub.corp.com"}), CHAT, None).is_err(), "exact domain");
    }
}
