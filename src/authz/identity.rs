//! The caller's identity as decided by [`crate::authz`], and how it travels upstream.

/// LiteLLM user-role values (`LitellmUserRoles`) this filter assigns.
pub const ROLE_PROXY_ADMIN: &str = "proxy_admin";
pub const ROLE_INTERNAL_USER: &str = "internal_user";

/// The role LiteLLM's `UserAPIKeyAuth` carries for a non-admin: the user record's `user_role`
/// when it has one, else `internal_user`.
pub fn record_role(user_role: Option<&str>) -> &'static str {
    user_role
        .and_then(|r| crate::records::USER_ROLES.iter().find(|known| **known == r))
        .copied()
        .unwrap_or(ROLE_INTERNAL_USER)
}

/// Request headers with this prefix are identity the filter asserts; any a client sends are
/// removed before forwarding so they cannot be spoofed.
pub const IDENTITY_HEADER_PREFIX: &str = "x-litellm-";
/// The request header a caller picks one of its teams with (LiteLLM's); upstream, the same
/// header carries the team the filter selected.
pub const TEAM_SELECTION_HEADER: &str = "x-litellm-team-id";

/// The denial reason: on local replies, and upstream in report (shadow) mode. Stripped from
/// client requests like the identity headers.
pub const REASON_HEADER: &str = "x-llm-jwt-auth-reason";

/// Every header [`Identity::headers`] may set.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-litellm-user-id", "x-litellm-team-id", "x-litellm-team-alias", "x-litellm-team-tpm-limit",
    "x-litellm-team-rpm-limit", "x-litellm-org-id", "x-litellm-end-user-id", "x-litellm-user-email",
    "x-litellm-user-role",
];

/// The ids a token's claims name, before any record is read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ids {
    /// `user_id_jwt_field`, else the email; the object id of an `internal_user` token.
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    pub org_id: Option<String>,
    /// `org_alias_jwt_field`: the organization by its alias, when the token names no org id.
    pub org_alias: Option<String>,
    pub end_user_id: Option<String>,
    /// The object id of a `team` token: its team.
    pub object_team: Option<String>,
    /// `sub`, forwarded as the user id only when no user id or email field is configured.
    pub sub: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub user_id: Option<String>,
    pub user_role: &'static str,
    /// The token carries the admin scope (LiteLLM's admin path). Not forwarded: a user record
    /// may also say `proxy_admin` (`user_role`), which does not make the token an admin here.
    pub admin: bool,
    pub user_email: Option<String>,
    pub team_id: Option<String>,
    pub team_alias: Option<String>,
    /// The selected team's limits, for a rate-limit filter downstream.
    pub team_tpm_limit: Option<u64>,
    pub team_rpm_limit: Option<u64>,
    pub org_id: Option<String>,
    pub end_user_id: Option<String>,
}

impl Identity {
    /// Identity values become request headers: a claim carrying control characters (CR, LF,
    /// NUL, …) would be an injection attempt or an invalid header; name the first such field.
    pub fn unsafe_field(&self) -> Option<&'static str> {
        self.headers()
            .into_iter()
            .find(|(_, v)| v.chars().any(char::is_control))
            .map(|(name, _)| name)
    }

    /// `(header name, value)` for every known attribute, in a stable order. The same names
    /// (without `x-`) are published as Envoy filter state for other filters and access logs.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(6);
        let mut add = |name, value: &Option<String>| {
            if let Some(v) = value {
                out.push((name, v.clone()));
            }
        };
        add("x-litellm-user-id", &self.user_id);
        add("x-litellm-team-id", &self.team_id);
        add("x-litellm-team-alias", &self.team_alias);
        add("x-litellm-team-tpm-limit", &self.team_tpm_limit.map(|v| v.to_string()));
        add("x-litellm-team-rpm-limit", &self.team_rpm_limit.map(|v| v.to_string()));
        add("x-litellm-org-id", &self.org_id);
        add("x-litellm-end-user-id", &self.end_user_id);
        add("x-litellm-user-email", &self.user_email);
        if !self.user_role.is_empty() {
            out.push(("x-litellm-user-role", self.user_role.to_string()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_make_a_field_unsafe() {
        let ok = Identity { user_id: Some("alice é".into()), user_role: ROLE_INTERNAL_USER, ..Identity::default() };
        assert_eq!(ok.unsafe_field(), None);
        for bad in ["a\r\nx-litellm-user-role: proxy_admin", "a\nb", "a\u{0}b", "a\u{7f}"] {
            let id = Identity { team_id: Some(bad.into()), ..ok.clone() };
            assert_eq!(id.unsafe_field(), Some("x-litellm-team-id"), "{bad:?}");
        }
    }

    #[test]
    fn identity_headers_lists_every_header_set() {
        let full = Identity {
            user_id: Some("u".into()), user_role: ROLE_INTERNAL_USER, admin: false, user_email: Some("e".into()),
            team_id: Some("t".into()), team_alias: Some("a".into()), team_tpm_limit: Some(1), team_rpm_limit: Some(2),
            org_id: Some("o".into()), end_user_id: Some("x".into()),
        };
        let names: Vec<&str> = full.headers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), IDENTITY_HEADERS.len());
        assert!(names.iter().all(|n| IDENTITY_HEADERS.contains(n)), "{names:?}");
    }

    #[test]
    fn a_record_role_is_one_of_litellms_or_internal_user() {
        assert_eq!(record_role(Some("internal_user_viewer")), "internal_user_viewer");
        assert_eq!(record_role(Some("proxy_admin")), ROLE_PROXY_ADMIN);
        assert_eq!(record_role(None), ROLE_INTERNAL_USER);
        assert_eq!(record_role(Some("root")), ROLE_INTERNAL_USER);
    }

    #[test]
    fn headers_carry_only_known_attributes_in_order() {
        let id = Identity {
            user_id: Some("alice".into()),
            user_role: ROLE_INTERNAL_USER,
            team_id: Some("t1".into()),
            ..Identity::default()
        };
        assert_eq!(
            id.headers(),
            [
                ("x-litellm-user-id", "alice".to_string()),
                ("x-litellm-team-id", "t1".to_string()),
                ("x-litellm-user-role", "internal_user".to_string())
            ]
        );
    }
}
