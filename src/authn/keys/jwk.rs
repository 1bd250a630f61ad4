//! JSON Web Keys (RFC 7517/7518/8037) → [`PublicKey`]. RSA, EC P-256/P-384, OKP Ed25519.

use super::{KeyMaterial, PublicKey};
use crate::authn::jws::{Algorithm, B64URL};
use super::rsa::RsaKey;
use base64::Engine;
use serde_json::{Map, Value};

/// A JWK's `kid`, if it is a string (LiteLLM compares `kid`s by equality; a non-string `kid`
/// never equals the token's string `kid`).
pub fn kid_of(jwk: &Map<String, Value>) -> Option<String> {
    jwk.get("kid").and_then(Value::as_str).map(str::to_owned)
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("JWK is missing \"{name}\""))?;
    B64URL.decode(text).map_err(|_| format!("JWK \"{name}\" is not base64url"))
}

fn exact(bytes: Vec<u8>, len: usize, name: &str) -> Result<Vec<u8>, String> {
    if bytes.len() == len {
        Ok(bytes)
    } else {
        Err(format!("JWK \"{name}\" must be {len} bytes"))
    }
}

/// Build a verification key from one JWK object. The error text says why the key is unusable.
pub fn parse(jwk: &Map<String, Value>) -> Result<PublicKey, String> {
    if let Some(u) = jwk.get("use") {
        if u.as_str() != Some("sig") {
            return Err("JWK \"use\" is not \"sig\"".into());
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err("JWK \"key_ops\" does not include \"verify\"".into());
        }
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => Some(
            Algorithm::from_name(name)
                .ok_or_else(|| format!("JWK alg {name:?} is not an accepted signature algorithm"))?,
        ),
        Some(_) => return Err("JWK \"alg\" is not a string".into()),
    };
    let material = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => {
            let n = b64_member(jwk, "n")?;
            let e = b64_member(jwk, "e")?;
            let key = RsaKey::new(&n, &e).map_err(|e| format!("invalid RSA key: {e}"))?;
            KeyMaterial::rsa(key)?
        }
        Some("EC") => {
            let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or("");
            let size = match crv {
                "P-256" => 32,
                "P-384" => 48,
                "P-521" => 66,
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let mut sec1 = vec![0x04];
            sec1.extend(exact(b64_member(jwk, "x")?, size, "x")?);
            sec1.extend(exact(b64_member(jwk, "y")?, size, "y")?);
            let bad = |_| "invalid EC public key (not on the curve)".to_string();
            match size {
                32 => KeyMaterial::p256(p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(bad)?)?,
                48 => KeyMaterial::p384(p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(bad)?)?,
                _ => KeyMaterial::p521(p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(bad)?)?,
            }
        }
        Some("OKP") => {
            let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or("");
            if crv != "Ed25519" {
                return Err(format!("unsupported OKP curve {crv:?}"));
            }
            let x: [u8; 32] = exact(b64_member(jwk, "x")?, 32, "x")?
                .try_into()
                .map_err(|_| "JWK \"x\" must be 32 bytes".to_string())?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map_err(|_| "invalid Ed25519 public key".to_string())?;
            KeyMaterial::Ed25519 { key }
        }
        Some(other) => return Err(format!("unsupported key type {other:?}")),
        None => return Err("JWK has no \"kty\"".into()),
    };
    let key = PublicKey { kid: kid_of(jwk), alg, material };
    if let Some(a) = alg {
        if !key.material.fits(a) {
            return Err(format!("JWK alg {} does not fit a {} key", a.name(), key.material.kind()));
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys::vectors;

    fn obj(v: &Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parses_every_supported_key_kind() {
        let v = vectors();
        for (name, kind) in
            [("rsa", "RSA"), ("p256", "EC P-256"), ("p384", "EC P-384"), ("ed25519", "Ed25519")]
        {
            let key = parse(&obj(&v["keys"][name]["jwk"])).unwrap();
            assert_eq!(key.material.kind(), kind);
            assert!(key.kid.is_some());
        }
    }

    #[test]
    fn key_kind_decides_which_algorithms_fit() {
        let v = vectors();
        let rsa = parse(&obj(&v["keys"]["rsa"]["jwk"])).unwrap();
        assert!(rsa.accepts(Algorithm::RS256) && rsa.accepts(Algorithm::PS512));
        assert!(!rsa.accepts(Algorithm::ES256) && !rsa.accepts(Algorithm::EdDSA));
        let ec = parse(&obj(&v["keys"]["p256"]["jwk"])).unwrap();
        assert!(ec.accepts(Algorithm::ES256) && !ec.accepts(Algorithm::ES384));
        assert!(!ec.accepts(Algorithm::RS256));
    }

    #[test]
    fn jwk_alg_pins_the_token_alg() {
        let v = vectors();
        let mut jwk = obj(&v["keys"]["rsa"]["jwk"]);
        jwk.insert("alg".into(), "RS256".into());
        let key = parse(&jwk).unwrap();
        assert!(key.accepts(Algorithm::RS256));
        assert!(!key.accepts(Algorithm::PS256));
        jwk.insert("alg".into(), "ES256".into());
        assert!(parse(&jwk).unwrap_err().contains("does not fit"));
        jwk.insert("alg".into(), "HS256".into());
        assert!(parse(&jwk).is_err());
    }

    #[test]
    fn refuses_encryption_keys_and_broken_members() {
        let v = vectors();
        let mut jwk = obj(&v["keys"]["rsa"]["jwk"]);
        jwk.insert("use".into(), "enc".into());
        assert!(parse(&jwk).is_err());

        let mut ec = obj(&v["keys"]["p256"]["jwk"]);
        ec.insert("x".into(), B64URL.encode([7u8; 32]).into());
        assert!(parse(&ec).is_err(), "point not on the curve");

        let mut short = obj(&v["keys"]["p256"]["jwk"]);
        short.insert("y".into(), B64URL.encode([1u8; 31]).into());
        assert!(parse(&short).is_err());

        let oct = serde_json::json!({"kty": "oct", "k": "c2VjcmV0"});
        assert!(parse(&obj(&oct)).unwrap_err().contains("unsupported key type"));
    }

    #[test]
    fn refuses_small_rsa_moduli() {
        let tiny = serde_json::json!({"kty": "RSA", "n": B64URL.encode([0xC5u8; 64]), "e": "AQAB"});
        assert!(parse(&obj(&tiny)).is_err());
    }
}
