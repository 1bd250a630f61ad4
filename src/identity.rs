//! What a verified token says about its caller, and the headers that carry it upstream.

use serde_json::{Map, Value};

/// LiteLLM user-role values (`LitellmUserRoles`) this filter assigns.
pub const ROLE_PROXY_ADMIN: &str = "proxy_admin";
pub const ROLE_INTERNAL_USER: &str = "internal_user";

/// Request headers with this prefix are identity the filter asserts; any a client sends are
/// removed before forwarding so they cannot be spoofed.
pub const IDENTITY_HEADER_PREFIX: &str = "x-litellm-";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: Option<String>,
    pub user_role: &'static str,
}

/// LiteLLM's `get_scopes` (spec §8.4): `scope` as a space-separated string or a list.
pub fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    match claims.get("scope") {
        Some(Value::String(s)) => s.split_whitespace().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

impl Identity {
    /// `sub` as the user id; `proxy_admin` when the admin scope is present, as LiteLLM decides
    /// admin-ness from the scope alone (spec §7.2 step 8).
    pub fn from_claims(claims: &Map<String, Value>, admin_jwt_scope: &str) -> Self {
        let admin = scopes(claims).contains(&admin_jwt_scope);
        Identity {
            user_id: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            user_role: if admin { ROLE_PROXY_ADMIN } else { ROLE_INTERNAL_USER },
        }
    }

    /// Headers to add to the upstream request (after all `x-litellm-*` were removed).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(2);
        if let Some(id) = &self.user_id {
            out.push(("x-litellm-user-id", id.clone()));
        }
        out.push(("x-litellm-user-role", self.user_role.to_string()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn scope_string_and_list_forms() {
        assert_eq!(scopes(&claims(json!({"scope": "a  b"}))), ["a", "b"]);
        assert_eq!(scopes(&claims(json!({"scope": ["a", 1, "b"]}))), ["a", "b"]);
        assert!(scopes(&claims(json!({"scope": 5}))).is_empty());
    }

    #[test]
    fn admin_scope_makes_proxy_admin_exactly() {
        let admin = Identity::from_claims(&claims(json!({"sub": "x", "scope": "litellm_proxy_admin"})), "litellm_proxy_admin");
        assert_eq!(admin.user_role, ROLE_PROXY_ADMIN);
        let near = Identity::from_claims(&claims(json!({"scope": "litellm_proxy_admins"})), "litellm_proxy_admin");
        assert_eq!(near.user_role, ROLE_INTERNAL_USER);
    }

    #[test]
    fn headers_carry_sub_and_role() {
        let id = Identity::from_claims(&claims(json!({"sub": "alice"})), "litellm_proxy_admin");
        assert_eq!(
            id.headers(),
            [("x-litellm-user-id", "alice".to_string()), ("x-litellm-user-role", "internal_user".to_string())]
        );
        let anon = Identity::from_claims(&claims(json!({"sub": 7})), "s");
        assert_eq!(anon.headers().len(), 1);
    }
}
