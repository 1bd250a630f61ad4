//! LiteLLM's RBAC: the role a token resolves to (`get_rbac_role`), the `enforce_rbac` gate with
//! `role_permissions` (models and routes per role), and the scope → model gate
//! (`enforce_scope_based_access` with `scope_mappings`).

use super::{forbidden, model_not_available, Policy, Request};
use crate::error::AuthError;
use crate::pytext::py_list;
use crate::routes::RouteList;
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

impl Policy {
    /// Scopes from every configured scope claim (string split on whitespace, or a list).
    pub(super) fn scopes(&self, claims: &Map<String, Value>) -> Vec<String> {
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

    /// The team id claim (its first element when a list), else `team_id_default` (newest).
    pub(super) fn team_id(&self, claims: &Map<String, Value>) -> Option<String> {
        self.team_id_jwt_field
            .as_ref()
            .and_then(|p| p.string_or_first(claims))
            .filter(|t| !t.is_empty())
            .or_else(|| self.team_id_default.clone())
    }

    /// LiteLLM's `get_rbac_role`: the first rule that applies. `admin`: the token has the admin
    /// scope.
    pub(super) fn rbac_role(&self, claims: &Map<String, Value>, admin: bool) -> Option<RbacRole> {
        if admin {
            return Some(RbacRole::ProxyAdmin);
        }
        if self.team_id(claims).is_some() {
            return Some(RbacRole::Team);
        }
        if self.user_id_jwt_field.as_ref().and_then(|p| p.string(claims)).is_some() {
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

    pub(super) fn permission(&self, role: RbacRole) -> Option<&RolePermission> {
        self.role_permissions.as_ref()?.iter().find(|p| p.role == role)
    }

    /// `enforce_rbac`: the token must have a role, and its `role_permissions` hold.
    pub(super) fn role_gate(&self, role: Option<RbacRole>, request: Request) -> Result<(), AuthError> {
        if !self.enforce_rbac {
            return Ok(());
        }
        let role = role.ok_or_else(|| {
            forbidden("Unmatched token passed in. enforce_rbac is set to True. Token must belong to a proxy admin, team, or user.".into())
        })?;
        let Some(permission) = self.permission(role) else { return Ok(()) };
        if let (Some(models), Some(model)) = (&permission.models, request.model) {
            if !models.iter().any(|m| m == model) {
                return Err(model_not_available(model));
            }
        }
        if let Some(routes) = &permission.routes {
            if !routes.matches(request.route) {
                return Err(forbidden(format!(
                    "Role={} not allowed to call route={}. Allowed routes={}",
                    role.as_str(),
                    request.route,
                    py_list(&routes.entries())
                )));
            }
        }
        Ok(())
    }

    /// `enforce_scope_based_access`: a request naming a model needs a scope mapped to it.
    pub(super) fn scope_gate(&self, scopes: &[String], model: Option<&str>) -> Result<(), AuthError> {
        let (true, Some(model)) = (self.enforce_scope_based_access && !self.scope_mappings.is_empty(), model) else {
            return Ok(());
        };
        let allowed = self
            .scope_mappings
            .iter()
            .filter(|(scope, _)| scopes.contains(scope))
            .any(|(_, models)| models.iter().any(|m| m == model));
        if allowed {
            Ok(())
        } else {
            Err(model_not_available(model))
        }
    }
}
