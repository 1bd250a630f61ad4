//! Strict JWS compact serialization parsing (RFC 7515 §7.1) — no signature work here.
//!
//! Three base64url segments without padding (canonical: no stray bits), a JSON object header
//! and a JSON object payload, duplicate members rejected, a size limit. The header's `alg`
//! is mapped to [`Algorithm`] right here so that `none`, HMAC and unknown algorithms never
//! reach key selection.

use crate::error::AuthError;
use crate::authn::strict_json;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{Map, Value};

/// Tokens larger than this are refused before any decoding (LiteLLM has no limit; Envoy's own
/// header limit is 60 KiB). Real IdP tokens are 1–4 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// base64url, no padding accepted, non-canonical trailing bits rejected.
pub const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// The JWS algorithms this filter verifies: LiteLLM's RSA set plus the newest LiteLLM's EC/OKP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
    /// RFC 9864's fully-specified name for EdDSA with Ed25519 (same keys, same signatures).
    Ed25519,
}

impl Algorithm {
    /// `None` for `none`, HS* and anything unknown: all refused.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::RS256,
            "RS384" => Self::RS384,
            "RS512" => Self::RS512,
            "PS256" => Self::PS256,
            "PS384" => Self::PS384,
            "PS512" => Self::PS512,
            "ES256" => Self::ES256,
            "ES384" => Self::ES384,
            "ES512" => Self::ES512,
            "EdDSA" => Self::EdDSA,
            "Ed25519" => Self::Ed25519,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
            Self::EdDSA => "EdDSA",
            Self::Ed25519 => "Ed25519",
        }
    }
}

/// A parsed, not yet verified, token.
#[derive(Debug, Clone, PartialEq)]
pub struct Jws {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// The header's `typ` (RFC 7515 §4.1.9), checked against `token_types` when configured.
    pub typ: Option<String>,
    pub claims: Map<String, Value>,
    /// `base64url(header) "." base64url(payload)`, the bytes the signature covers.
    pub signing_input: String,
    pub signature: Vec<u8>,
}

fn malformed(detail: &str) -> AuthError {
    AuthError::Malformed(detail.to_string())
}

fn decode_object(segment: &str, what: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = B64URL
        .decode(segment)
        .map_err(|_| malformed(&format!("{what} is not base64url")))?;
    match strict_json::parse(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(malformed(&format!("{what} is not a JSON object"))),
        Err(_) => Err(malformed(&format!("{what} is not valid JSON"))),
    }
}

/// Parse a compact JWS. Structural problems are `Malformed`; a well-formed token with an
/// algorithm we never accept is `AlgNotAllowed` (PyJWT's wording, as LiteLLM reports it).
pub fn parse(token: &str) -> Result<Jws, AuthError> {
    parse_with_header(token).map(|(jws, _)| jws)
}

/// [`parse`], keeping the whole protected header: a DPoP proof carries its key there (`jwk`),
/// which is never read from an access token.
pub fn parse_with_header(token: &str) -> Result<(Jws, Map<String, Value>), AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("token too large"));
    }
    // The signing input is a slice of the token: no copy through the formatter.
    let segments = token.rsplit_once('.').and_then(|(input, s)| Some((input, input.split_once('.')?, s)));
    let Some((signing_input, (h, p), s)) = segments.filter(|(_, (_, p), _)| !p.contains('.')) else {
        return Err(malformed("not a JWS compact serialization (expected 3 segments)"));
    };
    let header = decode_object(h, "header")?;
    let claims = decode_object(p, "payload")?;
    let signature = B64URL.decode(s).map_err(|_| malformed("signature is not base64url"))?;

    // RFC 7515 §4.1.11: we implement no extensions, so any `crit` (e.g. `b64: false`) is refused.
    if header.contains_key("crit") {
        return Err(malformed("unsupported critical header parameter"));
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) => {
            Algorithm::from_name(name).ok_or(AuthError::AlgNotAllowed)?
        }
        Some(_) => return Err(malformed("alg is not a string")),
        None => return Err(malformed("header has no alg")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(malformed("kid is not a string")),
    };
    // Only read against `token_types`; a non-string `typ` is kept as its JSON text, which no
    // configured type equals.
    let typ = header.get("typ").map(|t| t.as_str().map_or_else(|| t.to_string(), str::to_owned));
    // `jwk`, `jku`, `x5u`, `x5c` are deliberately ignored: keys only ever come from config.
    Ok((Jws { alg, kid, typ, claims, signing_input: signing_input.to_owned(), signature }, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(json: &str) -> String {
        B64URL.encode(json)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", seg(header), seg(payload), B64URL.encode(b"sig"))
    }

    #[test]
    fn parses_header_claims_and_signing_input() {
        let t = token(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#, r#"{"sub":"alice"}"#);
        let jws = parse(&t).unwrap();
        assert_eq!(jws.alg, Algorithm::RS256);
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.claims["sub"], "alice");
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, t.rsplit_once('.').unwrap().0);
    }

    #[test]
    fn refuses_none_hmac_and_unknown_algorithms() {
        for alg in ["none", "None", "NONE", "HS256", "HS384", "HS512", "ES521", "ES256K", "ed25519", "rs256", ""] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert_eq!(parse(&t), Err(AuthError::AlgNotAllowed), "{alg}");
        }
    }

    #[test]
    fn requires_exactly_three_segments() {
        let t = token(r#"{"alg":"RS256"}"#, "{}");
        assert!(matches!(parse("a.b"), Err(AuthError::Malformed(_))));
        assert!(matches!(parse(&format!("{t}.x.y")), Err(AuthError::Malformed(_))));
        assert!(matches!(parse("sk-1234"), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn refuses_padding_standard_alphabet_and_non_canonical_base64() {
        let h = seg(r#"{"alg":"RS256"}"#);
        let p = seg("{}");
        assert!(parse(&format!("{h}=.{p}.c2ln")).is_err());
        assert!(parse(&format!("{h}.{p}.c2ln+/")).is_err());
        assert!(parse(&format!("{h}.{p}.c2lo")).is_ok());
        // "c2k" is the canonical encoding of "si"; "c2l" decodes the same but sets stray bits.
        assert!(parse(&format!("{h}.{p}.c2k")).is_ok());
        assert!(parse(&format!("{h}.{p}.c2l")).is_err());
        assert!(parse(&format!(" {h}.{p}.c2ln")).is_err());
    }

    #[test]
    fn refuses_non_object_json_duplicates_and_crit() {
        assert!(matches!(parse(&token("[1]", "{}")), Err(AuthError::Malformed(_))));
        assert!(matches!(parse(&token(r#"{"alg":"RS256"}"#, "1")), Err(AuthError::Malformed(_))));
        let dup = token(r#"{"alg":"RS256","alg":"none"}"#, "{}");
        assert!(matches!(parse(&dup), Err(AuthError::Malformed(_))));
        let dup_claim = token(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"b"}"#);
        assert!(matches!(parse(&dup_claim), Err(AuthError::Malformed(_))));
        let crit = token(r#"{"alg":"RS256","crit":["b64"],"b64":false}"#, "{}");
        assert!(matches!(parse(&crit), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn kid_must_be_a_string() {
        let t = token(r#"{"alg":"RS256","kid":7}"#, "{}");
        assert!(matches!(parse(&t), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn refuses_oversized_tokens_before_decoding() {
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(parse(&big), Err(AuthError::Malformed("token too large".into())));
    }
}
