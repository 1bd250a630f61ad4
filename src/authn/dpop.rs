//! DPoP (RFC 9449): an access token bound to a client key (`cnf.jkt`, the key's RFC 7638
//! thumbprint) is only good together with a fresh proof — a JWT the client signs with that key
//! for this one request (`htm`, `htu`, `iat`, `jti`, and `ath`, the token's hash).
//!
//! With `dpop` configured: `Authorization: DPoP <token>` needs exactly one valid `DPoP` header
//! whose key the token is bound to, and a bound token sent as `Bearer` is refused (it would
//! make the binding pointless). Without it, LiteLLM's behaviour: only `Bearer`, `cnf` unread.
//! The proof checks follow RFC 9449 §4.3 in order; server nonces (§8) are not used. A proof's
//! `jti` is remembered by the worker for the proof's lifetime (see `shell::worker`), so a proof
//! replayed to the same worker is refused.

use crate::authn::jws::{parse_with_header, Jws, B64URL};
use crate::authn::keys::jwk;
use crate::authn::verify::{verify_signature, HostCrypto};
use crate::error::{AuthError, DpopFailure};
use base64::Engine;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The compiled `dpop` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopRules {
    /// How old a proof's `iat` may be, in seconds.
    pub max_age: u64,
    /// How far in the future a proof's `iat` may be (client clock skew), in seconds.
    pub max_skew: u64,
    /// `scheme://host[:port]` the clients use, when it is not what Envoy sees (TLS or a host
    /// rewrite in front of it); `htu` is compared against this plus the path.
    pub public_origin: Option<String>,
}

pub const DEFAULT_MAX_AGE: u64 = 300;
pub const DEFAULT_MAX_SKEW: u64 = 5;

/// How the token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    Dpop,
}

/// What the request brings besides the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presentation {
    pub scheme: Scheme,
    /// Every `DPoP` header value (exactly one is accepted).
    pub proofs: Vec<String>,
    pub method: String,
    /// `scheme://authority/path` as Envoy received it (no query or fragment).
    pub url: String,
    /// What a proof's `ath` must be: the access token's base64url SHA-256.
    pub ath: String,
}

impl Presentation {
    pub fn new(scheme: Scheme, proofs: Vec<String>, method: &str, url: String, token: &str) -> Self {
        let ath = B64URL.encode(Sha256::digest(token.as_bytes()));
        Presentation { scheme, proofs, method: method.to_string(), url, ath }
    }
}

/// What a valid proof leaves to check against replays: its `jti`, until when it is fresh
/// (seconds), and the key it was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub jti: String,
    pub fresh_until: u64,
    pub jkt: String,
}

fn proof_error(detail: &'static str) -> AuthError {
    AuthError::Dpop(DpopFailure::Proof(detail))
}

/// Check a verified token's binding. `Ok(None)`: a `Bearer` token that is not bound;
/// `Ok(Some(proof))`: a bound token with a valid proof (its `jti` still to be checked for replay).
pub fn check(rules: &DpopRules, p: &Presentation, claims: &Map<String, Value>, now: u64, crypto: &dyn HostCrypto) -> Result<Option<Proof>, AuthError> {
    let bound = match claims.get("cnf").and_then(|c| c.get("jkt")) {
        None => None,
        Some(Value::String(jkt)) => Some(jkt.as_str()),
        Some(_) => return Err(AuthError::Dpop(DpopFailure::Unbound)),
    };
    let jkt = match (p.scheme, bound) {
        (Scheme::Bearer, None) => return Ok(None),
        (Scheme::Bearer, Some(_)) => return Err(AuthError::Dpop(DpopFailure::BoundAsBearer)),
        (Scheme::Dpop, None) => return Err(AuthError::Dpop(DpopFailure::Unbound)),
        (Scheme::Dpop, Some(jkt)) => jkt,
    };
    let [proof] = p.proofs.as_slice() else {
        return Err(proof_error(if p.proofs.is_empty() { "no DPoP header" } else { "more than one DPoP header" }));
    };
    let (jws, header) = parse_with_header(proof).map_err(|_| proof_error("not a well-formed signed JWT"))?;
    if !jws.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(proof_error("typ is not dpop+jwt"));
    }
    let key_jwk = match header.get("jwk") {
        Some(Value::Object(k)) => k,
        _ => return Err(proof_error("no jwk header")),
    };
    if PRIVATE_MEMBERS.iter().any(|m| key_jwk.contains_key(*m)) {
        return Err(proof_error("the jwk header holds a private key"));
    }
    let key = jwk::parse(key_jwk).map_err(|_| proof_error("the jwk header is not a usable public key"))?;
    if !key.accepts(jws.alg) {
        return Err(proof_error("alg does not fit the jwk"));
    }
    verify_signature(&jws, &key, crypto).map_err(|_| proof_error("signature does not verify"))?;
    check_claims(rules, p, &jws, now)?;
    let thumbprint = thumbprint(key_jwk).ok_or_else(|| proof_error("the jwk header is not a usable public key"))?;
    if thumbprint != jkt {
        return Err(proof_error("the proof's key is not the one the token is bound to"));
    }
    let jti = jws.claims.get("jti").and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(Some(Proof { jti, fresh_until: now + rules.max_skew + rules.max_age, jkt: thumbprint }))
}

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn check_claims(rules: &DpopRules, p: &Presentation, jws: &Jws, now: u64) -> Result<(), AuthError> {
    let claims = &jws.claims;
    let text = |name| claims.get(name).and_then(Value::as_str);
    if !text("jti").is_some_and(|j| !j.is_empty() && j.len() <= 256) {
        return Err(proof_error("jti missing or not a short string"));
    }
    if text("htm") != Some(p.method.as_str()) {
        return Err(proof_error("htm is not the request's method"));
    }
    let expected = match &rules.public_origin {
        Some(origin) => format!("{origin}{}", path_of(&p.url)),
        None => p.url.clone(),
    };
    if !text("htu").is_some_and(|htu| same_url(htu, &expected)) {
        return Err(proof_error("htu is not the request's URL"));
    }
    let iat = claims.get("iat").and_then(Value::as_f64).ok_or_else(|| proof_error("iat missing or not a number"))?;
    #[allow(clippy::cast_precision_loss)] // seconds since the epoch are far below 2^52
    let (now_f, age, skew) = (now as f64, rules.max_age as f64, rules.max_skew as f64);
    if iat < now_f - age - skew || iat > now_f + skew {
        return Err(proof_error("iat is outside the accepted window"));
    }
    if text("ath") != Some(p.ath.as_str()) {
        return Err(proof_error("ath is not the hash of the access token"));
    }
    Ok(())
}

/// The path of `scheme://authority/path`.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/")
}

/// RFC 9449 §4.3 step 9: `htu` against the request URL, ignoring query and fragment, after
/// RFC 3986 §6.2.2–6.2.3 normalisation of scheme, host and default port.
pub fn same_url(htu: &str, url: &str) -> bool {
    let strip = |u: &str| u.split(['?', '#']).next().unwrap_or_default().to_string();
    normalize(&strip(htu)).is_some_and(|a| normalize(&strip(url)).is_some_and(|b| a == b))
}

fn normalize(url: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, "/"),
    };
    let authority = authority.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let authority = authority.strip_suffix(default).unwrap_or(&authority).to_string();
    Some((scheme, authority, path.to_string()))
}

/// The JWK's RFC 7638 SHA-256 thumbprint: its required members, in lexicographic order, as
/// compact JSON.
pub fn thumbprint(key: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match key.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = Map::new();
    for m in members {
        canonical.insert((*m).to_string(), Value::String(key.get(*m)?.as_str()?.to_string()));
    }
    // serde_json's map is ordered by key: the members come out in RFC 7638's order.
    let json = Value::Object(canonical).to_string();
    Some(B64URL.encode(Sha256::digest(json.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::verify::GuestOnly;
    use crate::error::DpopFailure::{BoundAsBearer, Unbound};

    /// Proofs signed by PyJWT (`tools/gen_dpop_fixtures.py`).
    fn vectors() -> Value {
        serde_json::from_str(include_str!("../../tests/fixtures/dpop_vectors.json")).unwrap()
    }

    const RULES: DpopRules = DpopRules { max_age: DEFAULT_MAX_AGE, max_skew: DEFAULT_MAX_SKEW, public_origin: None };

    fn claims_with_jkt(jkt: &str) -> Map<String, Value> {
        serde_json::json!({"sub": "svc", "cnf": {"jkt": jkt}}).as_object().cloned().unwrap()
    }

    fn present(scheme: Scheme, proofs: &[&str]) -> Presentation {
        let v = vectors();
        let token = v["token"].as_str().unwrap();
        Presentation::new(scheme, proofs.iter().map(|p| p.to_string()).collect(), "GET", v["url"].as_str().unwrap().into(), token)
    }

    fn run(name: &str) -> Result<Option<super::Proof>, AuthError> {
        let v = vectors();
        let proof = v["proofs"][name].as_str().unwrap();
        let now = v["now"].as_u64().unwrap();
        check(&RULES, &present(Scheme::Dpop, &[proof]), &claims_with_jkt(v["jkt"].as_str().unwrap()), now, &GuestOnly)
    }

    #[test]
    fn a_good_proof_for_this_request_and_token_passes() {
        let proof = run("good").unwrap().unwrap();
        assert_eq!(proof.jkt, vectors()["jkt"].as_str().unwrap());
        assert_eq!(proof.fresh_until, 1_800_000_000 + DEFAULT_MAX_SKEW + DEFAULT_MAX_AGE);
        assert!(run("good_query_in_htu").unwrap().is_some(), "htu is compared without its query");
    }

    #[test]
    fn every_broken_proof_is_refused_for_its_own_reason() {
        for (name, why) in [
            ("wrong_htm", "htm is not the request's method"),
            ("wrong_htu", "htu is not the request's URL"),
            ("wrong_ath", "ath is not the hash of the access token"),
            ("no_ath", "ath is not the hash of the access token"),
            ("no_jti", "jti missing or not a short string"),
            ("stale_iat", "iat is outside the accepted window"),
            ("future_iat", "iat is outside the accepted window"),
            ("typ_jwt", "typ is not dpop+jwt"),
            ("private_jwk", "the jwk header holds a private key"),
            ("signed_by_other_key", "signature does not verify"),
            ("other_clients_key", "the proof's key is not the one the token is bound to"),
        ] {
            assert_eq!(run(name), Err(AuthError::Dpop(DpopFailure::Proof(why))), "{name}");
        }
    }

    #[test]
    fn an_rsa_pss_proof_verifies_in_the_guest() {
        let v = vectors();
        let proof = v["proofs"]["rsa_ps256"].as_str().unwrap();
        let claims = claims_with_jkt(v["rsa_jkt"].as_str().unwrap());
        assert!(check(&RULES, &present(Scheme::Dpop, &[proof]), &claims, v["now"].as_u64().unwrap(), &GuestOnly).unwrap().is_some());
    }

    #[test]
    fn bound_tokens_need_the_dpop_scheme_and_exactly_one_proof() {
        let v = vectors();
        let (now, good) = (v["now"].as_u64().unwrap(), v["proofs"]["good"].as_str().unwrap());
        let bound = claims_with_jkt(v["jkt"].as_str().unwrap());
        let unbound = serde_json::json!({"sub": "svc"}).as_object().cloned().unwrap();
        assert_eq!(check(&RULES, &present(Scheme::Bearer, &[]), &bound, now, &GuestOnly), Err(AuthError::Dpop(BoundAsBearer)));
        assert_eq!(check(&RULES, &present(Scheme::Bearer, &[good]), &bound, now, &GuestOnly), Err(AuthError::Dpop(BoundAsBearer)));
        assert_eq!(check(&RULES, &present(Scheme::Bearer, &[]), &unbound, now, &GuestOnly), Ok(None), "plain bearer tokens stay as they are");
        assert_eq!(check(&RULES, &present(Scheme::Dpop, &[good]), &unbound, now, &GuestOnly), Err(AuthError::Dpop(Unbound)));
        assert_eq!(check(&RULES, &present(Scheme::Dpop, &[]), &bound, now, &GuestOnly), Err(AuthError::Dpop(DpopFailure::Proof("no DPoP header"))));
        assert_eq!(check(&RULES, &present(Scheme::Dpop, &[good, good]), &bound, now, &GuestOnly), Err(AuthError::Dpop(DpopFailure::Proof("more than one DPoP header"))));
        let weird = serde_json::json!({"cnf": {"jkt": 7}}).as_object().cloned().unwrap();
        assert_eq!(check(&RULES, &present(Scheme::Bearer, &[]), &weird, now, &GuestOnly), Err(AuthError::Dpop(Unbound)), "a malformed binding is never ignored");
    }

    #[test]
    fn a_public_origin_replaces_what_envoy_sees() {
        let v = vectors();
        let mut p = present(Scheme::Dpop, &[v["proofs"]["good"].as_str().unwrap()]);
        p.url = "http://10.0.0.7:8080/v1/chat/completions".into();
        let claims = claims_with_jkt(v["jkt"].as_str().unwrap());
        let now = v["now"].as_u64().unwrap();
        assert!(check(&RULES, &p, &claims, now, &GuestOnly).is_err());
        let behind_tls = DpopRules { public_origin: Some("https://gw.example".into()), ..RULES };
        assert!(check(&behind_tls, &p, &claims, now, &GuestOnly).unwrap().is_some());
    }

    #[test]
    fn thumbprint_matches_rfc_7638_s_example() {
        // RFC 7638 §3.1.
        let key: Map<String, Value> = serde_json::from_str(r#"{
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }"#).unwrap();
        assert_eq!(thumbprint(&key).as_deref(), Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"));
        let mut no_e = key.clone();
        no_e.remove("e");
        assert_eq!(thumbprint(&no_e), None);
    }

    #[test]
    fn htu_ignores_query_fragment_case_and_default_ports_but_not_the_path() {
        assert!(same_url("https://API.example.com:443/v1/chat?x=1#f", "https://api.example.com/v1/chat"));
        assert!(same_url("HTTP://gw:80/a", "http://gw/a"));
        assert!(same_url("http://127.0.0.1:10000/v1/chat/completions", "http://127.0.0.1:10000/v1/chat/completions"));
        assert!(!same_url("http://gw/a", "https://gw/a"));
        assert!(!same_url("http://gw/a", "http://gw/A"));
        assert!(!same_url("http://gw:81/a", "http://gw/a"));
        assert!(!same_url("http://localhost:10000/a", "http://127.0.0.1:10000/a"));
        assert!(!same_url("gw/a", "gw/a"), "not a URL");
        assert_eq!(path_of("http://gw:1/v1/x"), "/v1/x");
        assert_eq!(path_of("http://gw"), "/");
    }
}
