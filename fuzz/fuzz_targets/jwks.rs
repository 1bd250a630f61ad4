//! `KeySet::parse` and `jwk::parse`: never panic; a key set keeps every member, selection
//! follows LiteLLM's `parse_keys` rules, and a parsed key is the key the JWK describes.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use llm_jwt_auth::authn::jws::{Algorithm, B64URL};
use llm_jwt_auth::authn::keys::jwks::KeySet;
use llm_jwt_auth::authn::keys::{jwk, KeyMaterial};
use llm_jwt_auth::authn::strict_json;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let doc = strict_json::parse(data);
    let set = KeySet::parse(data);
    let members: Option<Vec<Value>> = match &doc {
        Ok(Value::Object(m)) => match m.get("keys") {
            Some(Value::Array(keys)) => Some(keys.clone()),
            Some(_) => None,
            None if m.contains_key("kty") => Some(vec![Value::Object(m.clone())]),
            None => None,
        },
        _ => None,
    };
    let (set, members) = match (set, members) {
        (Ok(set), Some(members)) => (set, members),
        (Err(_), None) => return,
        (set, members) => panic!("KeySet::parse {:?} but document members {members:?}", set.map(|s| s.len())),
    };
    assert_eq!(set.len(), members.len());

    let objects: Vec<&Map<String, Value>> = members.iter().filter_map(Value::as_object).collect();
    for obj in &objects {
        check_jwk(obj);
    }
    let kids: Vec<Option<String>> = objects.iter().map(|o| jwk::kid_of(o)).collect();
    assert_eq!(set.kids().map(str::to_owned).collect::<Vec<_>>(), kids.iter().flatten().cloned().collect::<Vec<_>>());

    // parse_keys: one member matches no kid or its own kid; several need a kid, last one wins.
    let probe: Vec<Option<&str>> =
        std::iter::once(None).chain(kids.iter().map(Option::as_deref)).chain([Some("no-such-kid")]).collect();
    for kid in probe {
        let chosen = set.select(kid).map(|e| (e.kid.clone(), e.key.is_ok()));
        let want = if members.len() == 1 {
            objects.first().filter(|o| kid.is_none() || jwk::kid_of(o).as_deref() == kid)
        } else {
            kid.and_then(|k| objects.iter().rev().find(|o| jwk::kid_of(o).as_deref() == Some(k)))
        };
        let want = want.map(|o| (jwk::kid_of(o), jwk::parse(o).is_ok()));
        assert_eq!(chosen, want, "select({kid:?})");
    }
});

fn check_jwk(obj: &Map<String, Value>) {
    let Ok(key) = jwk::parse(obj) else { return };
    assert_eq!(key.kid, jwk::kid_of(obj));
    if let Some(u) = obj.get("use") {
        assert_eq!(u.as_str(), Some("sig"), "accepted a key whose use is not sig");
    }
    match obj.get("alg") {
        None => assert_eq!(key.alg, None),
        Some(v) => {
            let pinned = key.alg.expect("a JWK alg is kept");
            assert_eq!(v.as_str(), Some(pinned.name()));
            assert!(key.material.fits(pinned));
        }
    }
    let text = |name: &str| obj.get(name).and_then(Value::as_str).unwrap_or_default();
    let bytes = |name: &str| B64URL.decode(text(name)).expect("accepted member is base64url");
    match (&key.material, text("kty"), text("crv")) {
        (KeyMaterial::Rsa { spki_der, .. }, "RSA", _) => {
            let n = bytes("n");
            let n = n.get(n.iter().take_while(|&&b| b == 0).count()..).unwrap_or_default();
            assert!(!n.is_empty() && spki_der.windows(n.len()).any(|w| w == n), "SPKI does not carry the JWK's modulus");
        }
        (KeyMaterial::P256 { spki_der, .. }, "EC", "P-256")
        | (KeyMaterial::P384 { spki_der, .. }, "EC", "P-384")
        | (KeyMaterial::P521 { spki_der, .. }, "EC", "P-521") => {
            let point = [vec![4u8], bytes("x"), bytes("y")].concat();
            assert!(spki_der.ends_with(&point), "SPKI does not carry the JWK's point");
        }
        (KeyMaterial::Ed25519 { key: ed }, "OKP", "Ed25519") => assert_eq!(ed.as_bytes().as_slice(), bytes("x")),
        (material, kty, crv) => panic!("{kty}/{crv} JWK became a {} key", material.kind()),
    }
    for alg in [Algorithm::RS256, Algorithm::PS512, Algorithm::ES256, Algorithm::ES384, Algorithm::ES512, Algorithm::EdDSA, Algorithm::Ed25519] {
        assert_eq!(key.accepts(alg), key.material.fits(alg) && key.alg.is_none_or(|a| a == alg));
    }
}
