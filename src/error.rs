//! Denials and how they are answered: LiteLLM's OpenAI-style JSON error shape (spec §7.6).
//!
//! `{"error": {"message": str, "type": str, "param": null, "code": "<status>"}}`, with an RFC 6750
//! `WWW-Authenticate` challenge on 401. Message texts follow LiteLLM (which wraps PyJWT's texts
//! in `Authentication Error, Validation fails: …`), so clients that parse LiteLLM errors keep working.

use serde_json::json;

/// Why a request was refused. Each variant maps to one status, `type` and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header, or an empty credential.
    MissingToken,
    /// The credential is not a JWS compact token (detail says why).
    Malformed(String),
    /// `alg` is `none`, HMAC, unknown, or does not fit the selected key.
    AlgNotAllowed,
    /// The signature does not verify with the selected key.
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` or `iat` is in the future; the field names which claim.
    NotYetValid(&'static str),
    /// A registered claim has the wrong JSON type (e.g. `exp` as a string).
    InvalidClaim(String),
    /// Audience configured, token's `aud` does not contain it.
    AudienceMismatch,
    /// Audience configured, token has no `aud`.
    AudienceMissing,
    /// Issuer configured, token's `iss` differs.
    IssuerMismatch,
    /// Only configured issuers are trusted and the token's `iss` names none of them.
    UnknownIssuer,
    /// No configured key matches the token's `kid` (LiteLLM's `parse_keys` found nothing).
    NoMatchingKey { kid: Option<String>, known: Vec<String> },
    /// The selected JWK could not be used (unsupported type, bad encoding, `use: enc`).
    UnusableKey(String),
    /// No keys could be had: the JWKS endpoint failed and nothing usable is cached.
    KeysUnavailable(String),
    /// A LiteLLM authorization rule refused the request (LiteLLM's `HTTPException(403)`);
    /// the text is LiteLLM's `detail`.
    Forbidden(String),
    /// A LiteLLM check that raises a plain exception (rendered as 401 `Authentication Error, …`).
    Denied(String),
    /// The body had to be inspected (a rule needs the model) but is larger than the limit.
    BodyTooLarge(usize),
    /// The body had to be inspected but is not what its content type says.
    InvalidBody(String),
    /// Team/user records are needed but the source is failing and no servable copy exists.
    RecordsUnavailable(String),
    /// LiteLLM's `team_model_access_denied` (401, param `model`).
    TeamModelDenied { model: String, allowed: Vec<String> },
    /// LiteLLM's `BudgetExceededError` (400, type `budget_exceeded`).
    BudgetExceeded(String),
    /// The Envoy configuration around the filter keeps it from deciding (500).
    EnvoyMisconfigured(String),
    /// A per-route rule of this filter's configuration refused the request (403).
    RouteRule(String),
}

/// A rendered local reply: what the shell hands to `send_http_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl AuthError {
    pub fn status(&self) -> u32 {
        match self {
            AuthError::KeysUnavailable(_) | AuthError::RecordsUnavailable(_) => 503,
            AuthError::BudgetExceeded(_) => 400,
            AuthError::EnvoyMisconfigured(_) => 500,
            AuthError::Forbidden(_) | AuthError::RouteRule(_) => 403,
            AuthError::BodyTooLarge(_) => 413,
            AuthError::InvalidBody(_) => 400,
            _ => 401,
        }
    }

    /// LiteLLM's `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            AuthError::Expired => "expired_key",
            AuthError::KeysUnavailable(_) => "auth_provider_unavailable",
            AuthError::BodyTooLarge(_) | AuthError::InvalidBody(_) => "invalid_request_error",
            AuthError::RecordsUnavailable(_) => "no_db_connection",
            AuthError::TeamModelDenied { .. } => "team_model_access_denied",
            AuthError::BudgetExceeded(_) => "budget_exceeded",
            AuthError::EnvoyMisconfigured(_) => "configuration_error",
            _ => "auth_error",
        }
    }

    /// The user-visible message, LiteLLM's text where LiteLLM has one.
    pub fn message(&self) -> String {
        const AUTH: &str = "Authentication Error, ";
        const FAILS: &str = "Authentication Error, Validation fails: ";
        match self {
            AuthError::MissingToken => format!("{AUTH}No api key passed in."),
            AuthError::Malformed(detail) => format!("{AUTH}Invalid JWT: {detail}"),
            AuthError::AlgNotAllowed => format!("{FAILS}The specified alg value is not allowed"),
            AuthError::BadSignature => format!("{FAILS}Signature verification failed"),
            AuthError::Expired => "Token Expired".to_string(),
            AuthError::NotYetValid(claim) => {
                format!("{FAILS}The token is not yet valid ({claim})")
            }
            AuthError::InvalidClaim(detail) => format!("{FAILS}{detail}"),
            AuthError::AudienceMismatch => format!("{FAILS}Audience doesn't match"),
            AuthError::AudienceMissing => format!("{FAILS}Token is missing the \"aud\" claim"),
            AuthError::IssuerMismatch => format!("{FAILS}Invalid issuer"),
            AuthError::UnknownIssuer => format!("{FAILS}Token issuer is not a configured issuer"),
            AuthError::NoMatchingKey { kid, known } => {
                // Bounded: the kid is attacker-chosen and must not make the answer large.
                let mut kids: Vec<&str> = known.iter().take(20).map(String::as_str).collect();
                if known.len() > 20 {
                    kids.push("…");
                }
                let kid: String = kid.as_deref().unwrap_or("None").chars().take(128).collect();
                format!("{AUTH}No matching public key found. keys=[{}], kid={kid}", kids.join(", "))
            }
            AuthError::UnusableKey(detail) => format!("{AUTH}{detail}"),
            AuthError::KeysUnavailable(detail) => format!(
                "Service Unavailable, the identity provider's JWKS endpoint is temporarily \
                 unreachable ({detail}). Please retry."
            ),
            AuthError::Forbidden(detail) => detail.clone(),
            AuthError::Denied(detail) => format!("{AUTH}{detail}"),
            AuthError::BodyTooLarge(limit) => {
                format!("Request body too large to inspect: the limit is {limit} bytes")
            }
            AuthError::InvalidBody(detail) => format!("Invalid request body: {detail}"),
            AuthError::RecordsUnavailable(detail) => format!(
                "Service Unavailable, the team/user source is temporarily unreachable ({detail}). Please retry."
            ),
            AuthError::TeamModelDenied { model, allowed } => {
                let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
                format!(
                    "team not allowed to access model. This team can only access models={}. Tried to access {model}",
                    crate::routes::py_list(&allowed)
                )
            }
            AuthError::BudgetExceeded(detail) => detail.clone(),
            AuthError::EnvoyMisconfigured(detail) => format!("llm-jwt-auth cannot decide: {detail}"),
            AuthError::RouteRule(detail) => detail.clone(),
        }
    }

    /// A stable, short reason code for logs and (later) metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::Malformed(_) => "malformed_token",
            AuthError::AlgNotAllowed => "alg_not_allowed",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid(_) => "not_yet_valid",
            AuthError::InvalidClaim(_) => "invalid_claim",
            AuthError::AudienceMismatch | AuthError::AudienceMissing => "audience",
            AuthError::IssuerMismatch => "issuer",
            AuthError::UnknownIssuer => "unknown_issuer",
            AuthError::NoMatchingKey { .. } => "unknown_kid",
            AuthError::UnusableKey(_) => "unusable_key",
            AuthError::KeysUnavailable(_) => "keys_unavailable",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::Denied(_) => "denied",
            AuthError::BodyTooLarge(_) => "body_too_large",
            AuthError::InvalidBody(_) => "invalid_body",
            AuthError::RecordsUnavailable(_) => "records_unavailable",
            AuthError::TeamModelDenied { .. } => "forbidden_model",
            AuthError::BudgetExceeded(_) => "budget",
            AuthError::EnvoyMisconfigured(_) => "envoy_misconfigured",
            AuthError::RouteRule(_) => "route_rule",
        }
    }

    /// LiteLLM's `error.param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            AuthError::TeamModelDenied { .. } => Some("model"),
            _ => None,
        }
    }

    pub fn to_response(&self) -> ErrorResponse {
        let status = self.status();
        let message = self.message();
        let body = json!({
            "error": {
                "message": message,
                "type": self.error_type(),
                "param": self.param(),
                "code": status.to_string(),
            }
        });
        let mut headers = vec![("content-type", "application/json".to_string())];
        match status {
            401 => headers.push(("www-authenticate", self.challenge())),
            403 => headers.push((
                "www-authenticate",
                format!("Bearer error=\"insufficient_scope\", error_description=\"{}\"", quoted_safe(&self.message())),
            )),
            _ => {}
        }
        ErrorResponse { status, headers, body: body.to_string().into_bytes() }
    }

    /// RFC 6750 §3: no error code when the request carried no credential at all.
    fn challenge(&self) -> String {
        match self {
            AuthError::MissingToken => "Bearer".to_string(),
            other => {
                let message = other.message();
                let description = quoted_safe(message.strip_prefix("Authentication Error, ").unwrap_or(&message));
                format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")
            }
        }
    }
}

/// RFC 6750 `error_description`: visible ASCII except `"` and `\`, kept short.
fn quoted_safe(text: &str) -> String {
    text.chars().filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\').take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(e: &AuthError) -> serde_json::Value {
        serde_json::from_slice(&e.to_response().body).unwrap()
    }

    #[test]
    fn renders_litellm_shape_with_status_as_string_code() {
        let v = body_json(&AuthError::BadSignature);
        assert_eq!(
            v,
            json!({"error": {
                "message": "Authentication Error, Validation fails: Signature verification failed",
                "type": "auth_error", "param": null, "code": "401"}})
        );
    }

    #[test]
    fn expired_uses_newest_litellm_type_and_text() {
        let v = body_json(&AuthError::Expired);
        assert_eq!(v["error"]["type"], "expired_key");
        assert_eq!(v["error"]["message"], "Token Expired");
    }

    #[test]
    fn keys_unavailable_is_503_without_challenge() {
        let r = AuthError::KeysUnavailable("connection refused".into()).to_response();
        assert_eq!(r.status, 503);
        assert!(r.headers.iter().all(|(k, _)| *k != "www-authenticate"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["type"], "auth_provider_unavailable");
        assert_eq!(v["error"]["code"], "503");
    }

    #[test]
    fn challenge_omits_error_code_without_credential() {
        let r = AuthError::MissingToken.to_response();
        assert!(r.headers.contains(&("www-authenticate", "Bearer".to_string())));
    }

    #[test]
    fn challenge_description_is_a_safe_quoted_string() {
        let r = AuthError::AudienceMissing.to_response();
        let (_, v) = r.headers.iter().find(|(k, _)| *k == "www-authenticate").unwrap();
        assert_eq!(
            v,
            "Bearer error=\"invalid_token\", error_description=\"Validation fails: Token is missing the aud claim\""
        );
    }

    #[test]
    fn forbidden_is_403_with_litellm_detail_and_insufficient_scope() {
        let r = AuthError::Forbidden("Invalid JWT token".into()).to_response();
        assert_eq!(r.status, 403);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["message"], "Invalid JWT token");
        assert_eq!(v["error"]["code"], "403");
        let (_, c) = r.headers.iter().find(|(k, _)| *k == "www-authenticate").unwrap();
        assert!(c.starts_with("Bearer error=\"insufficient_scope\""), "{c}");
    }

    #[test]
    fn body_errors_are_413_and_400_without_challenge() {
        let big = AuthError::BodyTooLarge(1024).to_response();
        assert_eq!(big.status, 413);
        assert!(big.headers.iter().all(|(k, _)| *k != "www-authenticate"));
        assert_eq!(AuthError::InvalidBody("x".into()).to_response().status, 400);
        assert_eq!(AuthError::Denied("Admin not allowed".into()).message(), "Authentication Error, Admin not allowed");
    }

    #[test]
    fn no_matching_key_message_is_bounded() {
        let e = AuthError::NoMatchingKey { kid: Some("k".repeat(10_000)), known: vec!["a".into(); 50] };
        assert!(e.message().len() < 400, "{}", e.message().len());
    }

    #[test]
    fn no_matching_key_lists_kids_like_litellm() {
        let e = AuthError::NoMatchingKey { kid: Some("k9".into()), known: vec!["a".into(), "b".into()] };
        assert_eq!(
            e.message(),
            "Authentication Error, No matching public key found. keys=[a, b], kid=k9"
        );
    }
}
