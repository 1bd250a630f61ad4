//! Registered-claim checks after the signature verified, in PyJWT's order and with its texts
//! (as LiteLLM reports them): `iat`, `nbf`, `exp`, then issuer and audience when configured.
//! Unlike PyJWT, `exp` is required by default (`require_exp`): a token without one never
//! expires. `max_token_lifetime` bounds how long a token may be valid, as Envoy's
//! `jwt_authn` `max_lifetime` does.

use crate::error::AuthError;
use serde_json::{Map, Value};

/// What the configuration asks of a token's registered claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: u64,
    /// When non-empty, `aud` is required and must equal one of these (or, when `aud` is a
    /// list, contain one). LiteLLM's global `JWT_AUDIENCE` is one value; an issuer may list several.
    pub audience: Vec<String>,
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
    /// A token must carry `exp` (default; `false` = PyJWT/LiteLLM, where `exp` is optional).
    pub require_exp: bool,
    /// Longest accepted lifetime in seconds: `exp − iat`, or `exp − now` without `iat`.
    pub max_lifetime: Option<u64>,
    /// When non-empty, the header `typ` must be one of these (normalised by [`media_type`]),
    /// e.g. `at+jwt` (RFC 9068) so that id_tokens are not taken as access tokens.
    pub token_types: Vec<String>,
}

impl Default for ClaimRules {
    fn default() -> Self {
        ClaimRules { leeway: 0, audience: Vec::new(), issuer: None, require_exp: true, max_lifetime: None, token_types: Vec::new() }
    }
}

/// A `typ` value as RFC 7515 §4.1.9 compares them: case-insensitive, with the `application/`
/// prefix optional (`application/at+JWT` is `at+jwt`).
pub fn media_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    lower.strip_prefix("application/").map_or_else(|| lower.clone(), str::to_owned)
}

/// The header `typ` against `token_types` (checked once, when the token verifies).
pub fn check_type(typ: Option<&str>, rules: &ClaimRules) -> Result<(), AuthError> {
    if rules.token_types.is_empty() || typ.is_some_and(|t| rules.token_types.contains(&media_type(t))) {
        return Ok(());
    }
    Err(AuthError::TokenType(typ.map(str::to_owned)))
}

/// A NumericDate (RFC 7519 §2): an integer or a finite number, as PyJWT accepts. Strings,
/// booleans and other types are refused with PyJWT's text.
fn numeric_date(claims: &Map<String, Value>, name: &str, label: &str) -> Result<Option<f64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| AuthError::InvalidClaim(format!("{label} must be an integer."))),
        Some(_) => Err(AuthError::InvalidClaim(format!("{label} must be an integer."))),
    }
}

/// Check the time claims against `now` (seconds since the epoch) and the configured rules.
pub fn validate(claims: &Map<String, Value>, rules: &ClaimRules, now: u64) -> Result<(), AuthError> {
    let now = now as f64;
    let leeway = rules.leeway as f64;
    if let Some(iat) = numeric_date(claims, "iat", "Issued At claim (iat)")? {
        if iat > now + leeway {
            return Err(AuthError::NotYetValid("iat"));
        }
    }
    if let Some(nbf) = numeric_date(claims, "nbf", "Not Before claim (nbf)")? {
        if nbf > now + leeway {
            return Err(AuthError::NotYetValid("nbf"));
        }
    }
    let exp = numeric_date(claims, "exp", "Expiration Time claim (exp)")?;
    match exp {
        Some(exp) if exp <= now - leeway => return Err(AuthError::Expired),
        Some(exp) => {
            if let Some(max) = rules.max_lifetime {
                let issued = numeric_date(claims, "iat", "Issued At claim (iat)")?.unwrap_or(now);
                if exp - issued > max as f64 {
                    return Err(AuthError::LifetimeTooLong(max));
                }
            }
        }
        // A token without `exp` never expires: no maximum lifetime holds for it, so setting one
        // requires `exp` even where `require_exp: false` would let it be optional.
        None if rules.require_exp || rules.max_lifetime.is_some() => return Err(AuthError::ClaimMissing("exp")),
        None => {}
    }
    if let Some(issuer) = &rules.issuer {
        match claims.get("iss") {
            None => return Err(AuthError::ClaimMissing("iss")),
            Some(iss) if iss.as_str() != Some(issuer.as_str()) => return Err(AuthError::IssuerMismatch),
            Some(_) => {}
        }
    }
    if !rules.audience.is_empty() {
        let wanted = |aud: &str| rules.audience.iter().any(|a| a == aud);
        let matches = match claims.get("aud") {
            None => return Err(AuthError::AudienceMissing),
            Some(Value::String(aud)) => wanted(aud),
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str().is_some_and(wanted)),
            Some(_) => return Err(AuthError::InvalidClaim("Invalid claim format in token".into())),
        };
        if !matches {
            return Err(AuthError::AudienceMismatch);
        }
    }
    Ok(())
}

/// The token's expiry in whole seconds, if it has a usable `exp`.
pub fn expiry(claims: &Map<String, Value>) -> Option<u64> {
    claims.get("exp").and_then(Value::as_f64).filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn check(claims: Value, rules: &ClaimRules) -> Result<(), AuthError> {
        validate(claims.as_object().unwrap(), rules, NOW)
    }

    /// Nothing required: PyJWT's rules (`exp` optional).
    fn none() -> ClaimRules {
        ClaimRules { require_exp: false, ..ClaimRules::default() }
    }

    #[test]
    fn token_types_compare_media_types_and_refuse_a_missing_typ() {
        let rules = ClaimRules { token_types: vec!["at+jwt".into()], ..ClaimRules::default() };
        for ok in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+Jwt"] {
            assert_eq!(check_type(Some(ok), &rules), Ok(()), "{ok}");
        }
        for bad in [Some("JWT"), Some("jwt"), Some("at+jwt "), Some("application/jwt"), None] {
            assert_eq!(check_type(bad, &rules), Err(AuthError::TokenType(bad.map(str::to_owned))), "{bad:?}");
        }
        assert_eq!(check_type(None, &ClaimRules::default()), Ok(()), "not configured: any typ, or none");
    }

    #[test]
    fn no_time_claims_means_nothing_to_check() {
        assert_eq!(check(json!({}), &none()), Ok(()));
    }

    #[test]
    fn exp_is_exclusive_and_leeway_extends_it() {
        assert_eq!(check(json!({"exp": NOW}), &none()), Err(AuthError::Expired));
        assert_eq!(check(json!({"exp": NOW + 1}), &none()), Ok(()));
        let lenient = ClaimRules { leeway: 30, ..none() };
        assert_eq!(check(json!({"exp": NOW - 29}), &lenient), Ok(()));
        assert_eq!(check(json!({"exp": NOW - 30}), &lenient), Err(AuthError::Expired));
    }

    #[test]
    fn nbf_and_iat_in_the_future_are_not_yet_valid() {
        assert_eq!(check(json!({"nbf": NOW + 1}), &none()), Err(AuthError::NotYetValid("nbf")));
        assert_eq!(check(json!({"iat": NOW + 1}), &none()), Err(AuthError::NotYetValid("iat")));
        assert_eq!(check(json!({"nbf": NOW, "iat": NOW}), &none()), Ok(()));
        let lenient = ClaimRules { leeway: 5, ..none() };
        assert_eq!(check(json!({"nbf": NOW + 5}), &lenient), Ok(()));
    }

    #[test]
    fn iat_is_checked_before_exp_like_pyjwt() {
        assert_eq!(check(json!({"iat": NOW + 9, "exp": NOW - 9}), &none()), Err(AuthError::NotYetValid("iat")));
    }

    #[test]
    fn time_claims_must_be_numbers() {
        for bad in [json!("1800000000"), json!(true), json!(null), json!([1]), json!({"a": 1})] {
            assert!(matches!(check(json!({"exp": bad}), &none()), Err(AuthError::InvalidClaim(_))));
        }
        assert_eq!(check(json!({"exp": (NOW as f64) + 0.5}), &none()), Ok(()));
        assert_eq!(check(json!({"exp": -1}), &none()), Err(AuthError::Expired));
        assert_eq!(check(json!({"exp": 1e300}), &none()), Ok(()));
    }

    #[test]
    fn audience_string_or_list_must_contain_the_configured_one_exactly() {
        let rules = ClaimRules { audience: vec!["api://llm".into()], ..none() };
        assert_eq!(check(json!({"aud": "api://llm"}), &rules), Ok(()));
        assert_eq!(check(json!({"aud": ["x", "api://llm"]}), &rules), Ok(()));
        for near in [json!("API://LLM"), json!("api://llm2"), json!("api://ll"), json!(["x"]), json!([])] {
            assert_eq!(check(json!({"aud": near}), &rules), Err(AuthError::AudienceMismatch));
        }
        assert_eq!(check(json!({}), &rules), Err(AuthError::AudienceMissing));
        assert!(matches!(check(json!({"aud": 5}), &rules), Err(AuthError::InvalidClaim(_))));
    }

    #[test]
    fn any_of_several_audiences_is_enough() {
        let rules = ClaimRules { audience: vec!["a".into(), "b".into()], ..none() };
        assert_eq!(check(json!({"aud": "b"}), &rules), Ok(()));
        assert_eq!(check(json!({"aud": ["x", "a"]}), &rules), Ok(()));
        assert_eq!(check(json!({"aud": ["x", "ab"]}), &rules), Err(AuthError::AudienceMismatch));
    }

    #[test]
    fn audience_is_not_checked_when_not_configured() {
        assert_eq!(check(json!({"aud": "anything"}), &none()), Ok(()));
    }

    #[test]
    fn issuer_must_match_exactly_when_configured() {
        let rules = ClaimRules { issuer: Some("https://idp".into()), ..none() };
        assert_eq!(check(json!({"iss": "https://idp"}), &rules), Ok(()));
        assert_eq!(check(json!({"iss": "https://idp/"}), &rules), Err(AuthError::IssuerMismatch));
        assert_eq!(check(json!({}), &rules), Err(AuthError::ClaimMissing("iss")), "missing, not mismatched");
        assert_eq!(AuthError::ClaimMissing("iss").message(), "Authentication Error, Validation fails: Token is missing the \"iss\" claim");
        assert_eq!(check(json!({"iss": 5}), &rules), Err(AuthError::IssuerMismatch));
    }

    #[test]
    fn exp_is_required_by_default_and_optional_as_in_pyjwt_when_asked() {
        assert_eq!(check(json!({"sub": "x"}), &ClaimRules::default()), Err(AuthError::ClaimMissing("exp")));
        assert_eq!(AuthError::ClaimMissing("exp").message(), "Authentication Error, Validation fails: Token is missing the \"exp\" claim");
        assert_eq!(check(json!({"sub": "x"}), &none()), Ok(()), "require_exp: false");
        assert_eq!(check(json!({"exp": NOW + 60}), &ClaimRules::default()), Ok(()));
    }

    #[test]
    fn max_lifetime_bounds_exp_minus_iat_or_exp_minus_now() {
        let rules = ClaimRules { max_lifetime: Some(3600), ..ClaimRules::default() };
        assert_eq!(check(json!({"iat": NOW - 10, "exp": NOW + 3590}), &rules), Ok(()), "exactly the maximum");
        assert_eq!(check(json!({"iat": NOW - 10, "exp": NOW + 3591}), &rules), Err(AuthError::LifetimeTooLong(3600)));
        assert_eq!(check(json!({"exp": NOW + 3600}), &rules), Ok(()), "no iat: from now");
        assert_eq!(check(json!({"exp": NOW + 3601}), &rules), Err(AuthError::LifetimeTooLong(3600)));
        assert_eq!(check(json!({"iat": NOW - 7200, "exp": NOW + 60}), &rules), Err(AuthError::LifetimeTooLong(3600)),
            "an old long-lived token is refused even close to its expiry");
        let optional_exp = ClaimRules { require_exp: false, ..rules };
        assert_eq!(check(json!({"iat": NOW}), &optional_exp), Err(AuthError::ClaimMissing("exp")),
            "a token that never expires is longer-lived than any maximum, require_exp or not");
        assert_eq!(check(json!({"iat": NOW}), &ClaimRules { max_lifetime: None, ..optional_exp }), Ok(()));
    }
}
