//! `jws::parse`: never panics; what it accepts re-serialises to the same three segments, and
//! for tokens assembled from fuzzed JSON its verdict matches RFC 7515's rules restated here.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use llm_jwt_auth::error::AuthError;
use llm_jwt_auth::authn::jws::{self, Algorithm, B64URL, MAX_TOKEN_BYTES};
use llm_jwt_auth::authn::strict_json;
use llm_jwt_auth_fuzz::Structured;
use serde_json::Value;

const ACCEPTED: [&str; 11] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"];

fuzz_target!(|data: &[u8]| {
    if let Some(parts) = Structured::split(data) {
        structured(&parts);
    }
    if let Ok(token) = std::str::from_utf8(data) {
        raw(token);
    }
});

/// Any string: if it parses, its segments are canonical base64url of what was parsed.
fn raw(token: &str) {
    let Ok(jws) = jws::parse(token) else { return };
    assert!(token.len() <= MAX_TOKEN_BYTES);
    let segments: Vec<&str> = token.split('.').collect();
    let [h, p, s] = segments.as_slice() else { panic!("accepted a token without 3 segments") };
    assert_eq!(jws.signing_input, format!("{h}.{p}"));
    assert_eq!(B64URL.encode(&jws.signature), *s, "signature segment is not canonical");
    let header = B64URL.decode(h).expect("accepted header decodes");
    let payload = B64URL.decode(p).expect("accepted payload decodes");
    assert_eq!(B64URL.encode(&header), *h, "header segment is not canonical");
    assert_eq!(B64URL.encode(&payload), *p, "payload segment is not canonical");
    assert_eq!(strict_json::parse(&payload).ok(), Some(Value::Object(jws.claims.clone())));
    let header = match strict_json::parse(&header) {
        Ok(Value::Object(m)) => m,
        other => panic!("accepted a header that is not a strict JSON object: {other:?}"),
    };
    assert_eq!(header.get("alg").and_then(Value::as_str), Some(jws.alg.name()));
    assert_eq!(header.get("kid").and_then(Value::as_str), jws.kid.as_deref());
    assert!(!header.contains_key("crit"));
}

#[derive(Debug, PartialEq)]
enum Expected {
    Ok { alg: Algorithm, kid: Option<String> },
    Malformed,
    AlgNotAllowed,
}

/// RFC 7515 §7.1 / RFC 7518 §3.1 as this filter applies them, restated independently.
fn expected(token: &str, parts: &Structured) -> Expected {
    if token.len() > MAX_TOKEN_BYTES {
        return Expected::Malformed;
    }
    let (Ok(Value::Object(header)), Ok(Value::Object(_))) =
        (strict_json::parse(parts.header), strict_json::parse(parts.payload))
    else {
        return Expected::Malformed;
    };
    if header.contains_key("crit") {
        return Expected::Malformed;
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) if ACCEPTED.contains(&name.as_str()) => {
            Algorithm::from_name(name).expect("accepted names map to an algorithm")
        }
        Some(Value::String(_)) => return Expected::AlgNotAllowed,
        _ => return Expected::Malformed,
    };
    match header.get("kid") {
        None => Expected::Ok { alg, kid: None },
        Some(Value::String(k)) => Expected::Ok { alg, kid: Some(k.clone()) },
        Some(_) => Expected::Malformed,
    }
}

fn structured(parts: &Structured) {
    let token = parts.compact();
    let got = match jws::parse(&token) {
        Ok(jws) => {
            assert_eq!(jws.signature, parts.signature);
            assert_eq!(strict_json::parse(parts.payload).ok(), Some(Value::Object(jws.claims)));
            Expected::Ok { alg: jws.alg, kid: jws.kid }
        }
        Err(AuthError::Malformed(_)) => Expected::Malformed,
        Err(AuthError::AlgNotAllowed) => Expected::AlgNotAllowed,
        Err(other) => panic!("jws::parse returned {other:?}"),
    };
    assert_eq!(got, expected(&token, parts));
}
