//! Denials and how they are answered: LiteLLM's OpenAI-style JSON error shape (spec §7.6).
//!
//! `{"error": {"message": str, "type": str, "param": null, "code": "<status>"}}`, with an RFC 6750
//! `WWW-Authenticate` challenge on 401. Message texts follow LiteLLM (which wraps PyJWT's texts
//! in `Authentication Error, Validation fails: …`), so clients that parse LiteLLM errors keep working.

use serde_json::json;

/// The `algs` a `DPoP` challenge offers (RFC 9449 §7.1): every asymmetric algorithm this filter
/// verifies.
pub const DPOP_ALGS: &str = "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA Ed25519";

/// Why a dependency (the IdP's keys, the record source) could not be had. The detail is for the
/// log and the counters; a client only learns whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub detail: String,
    /// The gateway's configuration is at fault (e.g. no Envoy cluster for the URL): retrying
    /// will not help until an operator fixes it.
    pub misconfigured: bool,
}

impl Outage {
    pub fn transient(detail: impl Into<String>) -> Self {
        Outage { detail: detail.into(), misconfigured: false }
    }
    pub fn misconfigured(detail: impl Into<String>) -> Self {
        Outage { detail: detail.into(), misconfigured: true }
    }
}

/// Why DPoP refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopFailure {
    /// The `DPoP` proof is missing, malformed, or does not fit this request or token.
    Proof(&'static str),
    /// A `cnf.jkt`-bound token sent as `Bearer`.
    BoundAsBearer,
    /// `Authorization: DPoP` with a token that is not bound to a key.
    Unbound,
}

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
    /// A required registered claim (`exp`, or `iss` with an issuer configured) is absent.
    ClaimMissing(&'static str),
    /// `exp` lies further from `iat` (or now) than `max_token_lifetime` seconds.
    LifetimeTooLong(u64),
    /// Only configured issuers are trusted and the token's `iss` names none of them.
    UnknownIssuer,
    /// `token_types` is set and the token's header `typ` (shown, bounded) is not one of them.
    TokenType(Option<String>),
    /// DPoP (RFC 9449) refused the token's presentation.
    Dpop(DpopFailure),
    /// No configured key matches the token's `kid` (LiteLLM's `parse_keys` found nothing).
    NoMatchingKey { kid: Option<String>, known: Vec<String> },
    /// The selected JWK could not be used (unsupported type, bad encoding, `use: enc`).
    UnusableKey(String),
    /// No keys could be had: the JWKS endpoint failed and nothing usable is cached.
    KeysUnavailable(Outage),
    /// The IdP's UserInfo endpoint refused the opaque token (its HTTP status, as LiteLLM
    /// reports it; the IdP's body is for nobody).
    UserInfoRefused(u16),
    /// The UserInfo endpoint could not be asked, or answered something that is no claims
    /// object (an outage, never the token's fault).
    UserInfoUnavailable(Outage),
    /// A LiteLLM authorization rule refused the request (LiteLLM's `HTTPException(403)`);
    /// the text is LiteLLM's `detail`.
    Forbidden(String),
    /// A LiteLLM check that raises a plain exception (rendered as 401 `Authentication Error, …`).
    Denied(String),
    /// A LiteLLM 401 raised as an `HTTPException` (its text without the prefix): a user the IdP
    /// deactivated through SCIM.
    Deactivated(String),
    /// `user_allowed_email_domain` refused the token's email (403, LiteLLM's param `user_email`).
    EmailDomain(String),
    /// The body had to be inspected (a rule needs the model) but is larger than the limit.
    BodyTooLarge(usize),
    /// The body had to be inspected but is not what its content type says.
    InvalidBody(String),
    /// Team/user records are needed but the source is failing and no servable copy exists.
    RecordsUnavailable(Outage),
    /// LiteLLM's `team_model_access_denied` (401, param `model`).
    TeamModelDenied { model: String, allowed: Vec<String> },
    /// LiteLLM's `user_model_access_denied`: the user record's models do not include the
    /// requested one (403, param `model`, the generic "not available" text).
    UserModelDenied { model: String },
    /// `organization_role_based_access_check`: only a user whose record says `proxy_admin` may
    /// call `/organization/new` (401, param `user_role`); the value is the record's role.
    OrgCreationDenied(Option<String>),
    /// LiteLLM's `BudgetExceededError` (400, type `budget_exceeded`).
    BudgetExceeded(String),
    /// The Envoy configuration around the filter keeps it from deciding (500). The detail is
    /// for the log.
    EnvoyMisconfigured(String),
    /// A per-route rule of this filter's configuration refused the request (403).
    RouteRule(String),
    /// Over a record's `rpm_limit`, `tpm_limit` or `max_parallel_requests` (LiteLLM's 429).
    RateLimited(Box<crate::limits::Over>),
    /// The rate-limit counters could not be updated (503: never admitted unchecked).
    LimitsUnverifiable,
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
            AuthError::KeysUnavailable(_)
            | AuthError::UserInfoUnavailable(_)
            | AuthError::RecordsUnavailable(_)
            | AuthError::LimitsUnverifiable => 503,
            AuthError::RateLimited(_) => 429,
            AuthError::BudgetExceeded(_) => 400,
            AuthError::EnvoyMisconfigured(_) => 500,
            AuthError::Forbidden(_) | AuthError::RouteRule(_) | AuthError::EmailDomain(_) | AuthError::UserModelDenied { .. } => 403,
            AuthError::BodyTooLarge(_) => 413,
            AuthError::InvalidBody(_) => 400,
            _ => 401,
        }
    }

    /// LiteLLM's `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            AuthError::Expired => "expired_key",
            AuthError::KeysUnavailable(_) | AuthError::UserInfoUnavailable(_) => "auth_provider_unavailable",
            AuthError::BodyTooLarge(_) | AuthError::InvalidBody(_) => "invalid_request_error",
            AuthError::RecordsUnavailable(_) => "no_db_connection",
            AuthError::TeamModelDenied { .. } => "team_model_access_denied",
            AuthError::UserModelDenied { .. } => "user_model_access_denied",
            AuthError::BudgetExceeded(_) => "budget_exceeded",
            AuthError::EnvoyMisconfigured(_) => "configuration_error",
            AuthError::RateLimited(_) => "rate_limit_error",
            AuthError::LimitsUnverifiable => "internal_server_error",
            _ => "auth_error",
        }
    }

    /// The user-visible message, LiteLLM's text where LiteLLM has one, at most
    /// [`MAX_MESSAGE_CHARS`] long (lists in some texts come from the token or a record).
    pub fn message(&self) -> String {
        let full = self.text();
        match full.char_indices().nth(MAX_MESSAGE_CHARS) {
            Some((cut, _)) => format!("{}…", full.get(..cut).unwrap_or_default()),
            None => full,
        }
    }

    /// What the log may say beyond the message: the cause of an outage or misconfiguration.
    pub fn detail(&self) -> Option<&str> {
        match self {
            AuthError::KeysUnavailable(o) | AuthError::UserInfoUnavailable(o) | AuthError::RecordsUnavailable(o) => Some(&o.detail),
            AuthError::EnvoyMisconfigured(d) => Some(d),
            _ => None,
        }
    }

    /// Whether the token itself was accepted and only the request was refused (authorization):
    /// such refusals must not call the token invalid (RFC 6750 §3.1).
    pub fn token_accepted(&self) -> bool {
        matches!(
            self,
            AuthError::Forbidden(_)
                | AuthError::EmailDomain(_)
                | AuthError::Denied(_)
                | AuthError::Deactivated(_)
                | AuthError::TeamModelDenied { .. }
                | AuthError::UserModelDenied { .. }
                | AuthError::OrgCreationDenied(_)
                | AuthError::BudgetExceeded(_)
                | AuthError::RouteRule(_)
                | AuthError::RecordsUnavailable(_)
                | AuthError::BodyTooLarge(_)
                | AuthError::InvalidBody(_)
                | AuthError::RateLimited(_)
                | AuthError::LimitsUnverifiable
        )
    }

    fn text(&self) -> String {
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
            AuthError::ClaimMissing(claim) => format!("{FAILS}Token is missing the \"{claim}\" claim"),
            AuthError::LifetimeTooLong(max) => {
                format!("{FAILS}The token is valid for longer than the allowed maximum of {max} seconds")
            }
            AuthError::UnknownIssuer => format!("{FAILS}Token issuer is not a configured issuer"),
            AuthError::Dpop(DpopFailure::Proof(why)) => format!("{AUTH}Invalid DPoP proof: {why}"),
            AuthError::Dpop(DpopFailure::BoundAsBearer) => {
                format!("{AUTH}This token is bound to a DPoP key: send it as Authorization: DPoP, with a DPoP proof")
            }
            AuthError::Dpop(DpopFailure::Unbound) => format!("{AUTH}Authorization: DPoP needs a DPoP-bound token (cnf.jkt)"),
            AuthError::TokenType(typ) => {
                // Bounded and printable: the header is the client's.
                let shown: String = typ.as_deref().unwrap_or("none").chars().filter(|c| !c.is_control()).take(64).collect();
                format!("{FAILS}Token type (typ) {shown:?} is not accepted here")
            }
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
            AuthError::KeysUnavailable(o) if o.misconfigured => "Service Unavailable, the gateway cannot fetch \
                 the identity provider's keys: it is misconfigured (its log says what to fix)."
                .to_string(),
            AuthError::KeysUnavailable(_) => {
                "Service Unavailable, the identity provider's JWKS endpoint is temporarily unreachable. Please retry."
                    .to_string()
            }
            // LiteLLM's `Failed to fetch OIDC UserInfo: OIDC UserInfo endpoint returned status …`,
            // without the IdP's body.
            AuthError::UserInfoRefused(status) => {
                format!("{AUTH}Failed to fetch OIDC UserInfo: OIDC UserInfo endpoint returned status {status}")
            }
            AuthError::UserInfoUnavailable(o) if o.misconfigured => "Service Unavailable, the gateway cannot reach \
                 the identity provider's UserInfo endpoint: it is misconfigured (its log says what to fix)."
                .to_string(),
            AuthError::UserInfoUnavailable(_) => {
                "Service Unavailable, the identity provider's UserInfo endpoint is temporarily unreachable. Please retry."
                    .to_string()
            }
            AuthError::Forbidden(detail) | AuthError::EmailDomain(detail) | AuthError::Deactivated(detail) => detail.clone(),
            AuthError::Denied(detail) => format!("{AUTH}{detail}"),
            AuthError::BodyTooLarge(limit) => {
                format!("Request body too large to inspect: the limit is {limit} bytes")
            }
            AuthError::InvalidBody(detail) => format!("Invalid request body: {detail}"),
            AuthError::RecordsUnavailable(o) if o.misconfigured => "Service Unavailable, the gateway cannot reach \
                 the team/user source: it is misconfigured (its log says what to fix)."
                .to_string(),
            AuthError::RecordsUnavailable(_) => {
                "Service Unavailable, the team/user source is temporarily unreachable. Please retry.".to_string()
            }
            AuthError::TeamModelDenied { model, allowed } => {
                let mut allowed: Vec<&str> = allowed.iter().take(MAX_LISTED).map(String::as_str).collect();
                if allowed.len() == MAX_LISTED {
                    allowed.push("…");
                }
                format!(
                    "team not allowed to access model. This team can only access models={}. Tried to access {model}",
                    crate::pytext::py_list(&allowed)
                )
            }
            AuthError::UserModelDenied { model } => model_not_available(model),
            AuthError::OrgCreationDenied(role) => {
                format!("Only proxy admins can create new organizations. You are {}", role.as_deref().unwrap_or("None"))
            }
            AuthError::BudgetExceeded(detail) => detail.clone(),
            AuthError::EnvoyMisconfigured(_) => {
                "llm-jwt-auth cannot decide this request: the gateway is misconfigured (its log says what to fix)."
                    .to_string()
            }
            AuthError::RouteRule(detail) => detail.clone(),
            AuthError::RateLimited(over) => over.message(),
            // LiteLLM's `RATE_LIMIT_UNVERIFIABLE_MESSAGE`, without its Redis.
            AuthError::LimitsUnverifiable => "Rate limit enforcement unavailable: request counters could not be verified, \
                 so the request was rejected to avoid exceeding the configured rate limit. Retry shortly."
                .to_string(),
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
            AuthError::IssuerMismatch | AuthError::ClaimMissing("iss") => "issuer",
            AuthError::ClaimMissing(_) => "missing_claim",
            AuthError::LifetimeTooLong(_) => "lifetime_too_long",
            AuthError::UnknownIssuer => "unknown_issuer",
            AuthError::TokenType(_) => "token_type",
            AuthError::Dpop(DpopFailure::Proof(_)) => "invalid_dpop_proof",
            AuthError::Dpop(DpopFailure::BoundAsBearer) => "dpop_bound_token",
            AuthError::Dpop(DpopFailure::Unbound) => "dpop_unbound_token",
            AuthError::NoMatchingKey { .. } => "unknown_kid",
            AuthError::UnusableKey(_) => "unusable_key",
            AuthError::KeysUnavailable(_) => "keys_unavailable",
            AuthError::UserInfoRefused(_) => "userinfo_refused",
            AuthError::UserInfoUnavailable(_) => "userinfo_unavailable",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::EmailDomain(_) => "email_domain",
            AuthError::Denied(_) | AuthError::Deactivated(_) => "denied",
            AuthError::BodyTooLarge(_) => "body_too_large",
            AuthError::InvalidBody(_) => "invalid_body",
            AuthError::RecordsUnavailable(_) => "records_unavailable",
            AuthError::TeamModelDenied { .. } | AuthError::UserModelDenied { .. } => "forbidden_model",
            AuthError::OrgCreationDenied(_) => "denied",
            AuthError::BudgetExceeded(_) => "budget",
            AuthError::EnvoyMisconfigured(_) => "envoy_misconfigured",
            AuthError::RouteRule(_) => "route_rule",
            AuthError::RateLimited(_) => "rate_limited",
            AuthError::LimitsUnverifiable => "limits_unverifiable",
        }
    }

    /// LiteLLM's `error.param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            AuthError::TeamModelDenied { .. } | AuthError::UserModelDenied { .. } => Some("model"),
            AuthError::OrgCreationDenied(_) => Some("user_role"),
            AuthError::EmailDomain(_) => Some("user_email"),
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
        if let Some(challenge) = self.challenge() {
            headers.push(("www-authenticate", challenge));
        }
        match self {
            // Seconds until a retry can help: the fetch back-off, or (misconfigured) much later.
            AuthError::KeysUnavailable(o) | AuthError::UserInfoUnavailable(o) | AuthError::RecordsUnavailable(o) => {
                headers.push(("retry-after", if o.misconfigured { "60" } else { "1" }.to_string()))
            }
            AuthError::LimitsUnverifiable => headers.push(("retry-after", "1".to_string())),
            // LiteLLM's three (`ProxyRateLimitError`); `retry-after` is the time left in the
            // window, where LiteLLM always says the window size.
            AuthError::RateLimited(over) => {
                headers.push(("retry-after", over.retry_after().to_string()));
                headers.push(("rate_limit_type", over.dimension.as_str().to_string()));
                headers.push(("reset_at", over.reset_at_text()));
            }
            _ => {}
        }
        ErrorResponse { status, headers, body: body.to_string().into_bytes() }
    }

    /// RFC 6750 §3 challenges: `invalid_token` only when the token itself failed; no error
    /// code without a credential or when the token was fine but the request was refused with a
    /// 401 (LiteLLM's status for several authorization rules); `insufficient_scope` on 403.
    fn challenge(&self) -> Option<String> {
        let described = |code: &str| {
            let message = self.message();
            let description = quoted_safe(message.strip_prefix("Authentication Error, ").unwrap_or(&message));
            format!("Bearer error=\"{code}\", error_description=\"{description}\"")
        };
        // RFC 9449 §7.1: a DPoP request is answered with a DPoP challenge.
        let dpop = |code: &str| {
            let message = self.message();
            let description = quoted_safe(message.strip_prefix("Authentication Error, ").unwrap_or(&message));
            format!("DPoP error=\"{code}\", error_description=\"{description}\", algs=\"{}\"", DPOP_ALGS)
        };
        match self {
            AuthError::Dpop(DpopFailure::Proof(_)) => return Some(dpop("invalid_dpop_proof")),
            AuthError::Dpop(DpopFailure::Unbound) => return Some(dpop("invalid_token")),
            _ => {}
        }
        match self.status() {
            401 if matches!(self, AuthError::MissingToken) || self.token_accepted() => Some("Bearer".to_string()),
            401 => Some(described("invalid_token")),
            403 => Some(described("insufficient_scope")),
            _ => None,
        }
    }
}

/// LiteLLM's `model_access_denied_client_message`: a model refusal that does not reveal what is
/// allowed.
pub fn model_not_available(model: &str) -> String {
    format!(
        "The requested model '{model}' is not available for this API key, or the model name is invalid. Check the \
         models available to you and try again."
    )
}

/// Longest client-facing message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 512;
/// Most entries of a list (models, teams) a message names.
const MAX_LISTED: usize = 20;
/// Longest `error_description`, in characters.
const MAX_DESCRIPTION_CHARS: usize = 200;

/// RFC 6750 `error_description`: visible ASCII except `"` and `\`, cut at a word with `...`
/// when long, so the header stays short and well formed.
fn quoted_safe(text: &str) -> String {
    let clean: String = text.chars().filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\').collect();
    if clean.len() <= MAX_DESCRIPTION_CHARS {
        return clean;
    }
    let head = clean.get(..MAX_DESCRIPTION_CHARS - 3).unwrap_or_default();
    let cut = head.rfind(' ').filter(|at| *at > MAX_DESCRIPTION_CHARS / 2).unwrap_or(head.len());
    format!("{}...", head.get(..cut).unwrap_or_default().trim_end_matches([',', ' ']))
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

    fn header<'a>(r: &'a ErrorResponse, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn keys_unavailable_is_503_with_retry_after_and_without_challenge_or_internals() {
        let cause = "public_key_url https://login.example.com/jwks: Envoy refused to call cluster \"login.example.com:443\"";
        for (outage, retry, says) in [
            (Outage::transient(cause), "1", "temporarily unreachable"),
            (Outage::misconfigured(cause), "60", "misconfigured"),
        ] {
            let e = AuthError::KeysUnavailable(outage);
            let r = e.to_response();
            assert_eq!(r.status, 503);
            assert_eq!(header(&r, "www-authenticate"), None);
            assert_eq!(header(&r, "retry-after"), Some(retry));
            let body = String::from_utf8(r.body.clone()).unwrap();
            for internal in ["login.example.com", "cluster", "public_key_url", "https://"] {
                assert!(!body.contains(internal), "{internal} reaches the client: {body}");
            }
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["error"]["type"], "auth_provider_unavailable");
            assert!(v["error"]["message"].as_str().unwrap().contains(says));
            assert_eq!(e.detail(), Some(cause), "the log still has it");
        }
        let userinfo = AuthError::UserInfoUnavailable(Outage::transient("UserInfo endpoint returned status 502")).to_response();
        assert_eq!((userinfo.status, header(&userinfo, "retry-after")), (503, Some("1")));
        assert!(!String::from_utf8_lossy(&userinfo.body).contains("502"), "the cause stays in the log");
        let records = AuthError::RecordsUnavailable(Outage::transient("source returned status 500 for team t")).to_response();
        assert_eq!(header(&records, "retry-after"), Some("1"));
        assert!(!String::from_utf8(records.body).unwrap().contains("status 500"));
    }

    #[test]
    fn authorization_refusals_do_not_call_a_valid_token_invalid() {
        for e in [
            AuthError::Denied("Admin not allowed to access this route.".into()),
            AuthError::Denied("No team id found in token. Checked team_id field 'team'".into()),
            AuthError::TeamModelDenied { model: "o1".into(), allowed: vec!["gpt-4o".into()] },
        ] {
            assert_eq!(header(&e.to_response(), "www-authenticate"), Some("Bearer"), "{e:?}");
        }
        let c = AuthError::Expired.to_response();
        assert!(header(&c, "www-authenticate").unwrap().starts_with("Bearer error=\"invalid_token\""));
        let f = AuthError::RouteRule("closed".into()).to_response();
        assert!(header(&f, "www-authenticate").unwrap().starts_with("Bearer error=\"insufficient_scope\""));
        assert_eq!(header(&AuthError::BudgetExceeded("x".into()).to_response(), "www-authenticate"), None);
    }

    #[test]
    fn messages_and_descriptions_are_bounded_and_well_formed() {
        let models: Vec<String> = (0..500).map(|i| format!("model-{i}")).collect();
        let e = AuthError::TeamModelDenied { model: "o1".into(), allowed: models };
        assert!(e.message().contains("'model-19', '…']"), "{}", e.message());
        let long = AuthError::Denied("x".repeat(5000));
        assert_eq!(long.message().chars().count(), MAX_MESSAGE_CHARS + 1, "cut, with an ellipsis");
        let listy = AuthError::Denied(format!("Allowed Routes={}", (0..200).map(|i| format!("'/r{i}'")).collect::<Vec<_>>().join(", ")));
        let r = listy.to_response();
        let challenge = header(&r, "www-authenticate").unwrap();
        assert_eq!(challenge, "Bearer", "token accepted: no description at all");
        let bad = AuthError::Malformed(format!("bad {}", "word ".repeat(100))).to_response();
        let challenge = header(&bad, "www-authenticate").unwrap();
        assert!(challenge.len() < 280 && challenge.ends_with("...\""), "{challenge}");
        assert!(challenge.bytes().all(|b| (b' '..=b'~').contains(&b)));
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
    fn user_model_and_organization_refusals_carry_litellms_type_and_param() {
        let v = body_json(&AuthError::UserModelDenied { model: "o1".into() });
        assert_eq!(v, json!({"error": {"message": "The requested model 'o1' is not available for this API key, or the model \
            name is invalid. Check the models available to you and try again.", "type": "user_model_access_denied",
            "param": "model", "code": "403"}}));
        let e = AuthError::OrgCreationDenied(Some("internal_user".into()));
        assert_eq!(body_json(&e), json!({"error": {"message": "Only proxy admins can create new organizations. You are internal_user",
            "type": "auth_error", "param": "user_role", "code": "401"}}));
        assert_eq!(AuthError::OrgCreationDenied(None).message(), "Only proxy admins can create new organizations. You are None");
        assert_eq!(header(&e.to_response(), "www-authenticate"), Some("Bearer"), "the token was fine");
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
