//! The whole authentication decision (`jws::parse` → key selection → guest verification →
//! claims) with a fixed configuration: inline PEM keys plus one JWKS holding every fixture key.
//! Never panics, never asks for keys it already has, and never says `Verified` for a message
//! the fixtures' signer did not sign: a fuzzer cannot forge a signature, so anything else
//! verified would be a fail-open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_jwt_auth::authn::{authenticate, Decision, KeyLookup};
use llm_jwt_auth::authn::claims::{self, ClaimRules};
use llm_jwt_auth::config::{compile, FilterConfig};
use llm_jwt_auth::authn::jws;
use llm_jwt_auth::authn::keys::jwks::KeySet;
use llm_jwt_auth::authn::verify::GuestOnly;
use llm_jwt_auth_fuzz::{vectors, Structured};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

struct Fixture {
    config: FilterConfig,
    keys: Arc<KeySet>,
    signed: HashSet<String>,
    now: u64,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let v = vectors();
        let pems: Vec<&Value> = ["rsa", "p256", "ed25519"].iter().map(|k| &v["keys"][*k]["pem"]).collect();
        let cfg = json!({"public_key_url": "http://idp/jwks", "public_keys": pems});
        let config = compile(cfg.to_string().as_bytes(), &|_| None).expect("fixture config compiles");
        let jwks: Vec<&Value> =
            ["rsa", "rsa_other", "p256", "p384", "ed25519"].iter().map(|k| &v["keys"][*k]["jwk"]).collect();
        let keys = KeySet::parse(json!({"keys": jwks}).to_string().as_bytes()).expect("fixture JWKS parses");
        let signed = v["tokens"]
            .as_object()
            .expect("tokens")
            .values()
            .filter_map(|t| t.as_str()?.rsplit_once('.').map(|(input, _)| input.to_string()))
            .collect();
        Fixture { config, keys: Arc::new(keys), signed, now: v["now"].as_u64().expect("now") }
    })
}

fn decide(token: &str) {
    let f = fixture();
    let Ok(jws) = jws::parse(token) else { return };
    let mut lookup = |_: &_| KeyLookup::ready(f.keys.clone());
    let decision = authenticate(&jws, &f.config, &mut lookup, &GuestOnly, f.now);
    assert_ne!(decision, Decision::NeedKeys, "every key set is ready");
    if matches!(decision, Decision::Verified { .. }) {
        assert!(f.signed.contains(&jws.signing_input), "verified a message nobody signed: {token}");
        assert_eq!(claims::validate(&jws.claims, &f.config.claim_rules, f.now), Ok(()));
    }
    assert_eq!(authenticate(&jws, &f.config, &mut lookup, &GuestOnly, f.now), decision, "not deterministic");

    // Claims with an audience and issuer required: what passes names them.
    let rules = ClaimRules { leeway: 30, audience: vec!["api".into(), "litellm".into()], issuer: Some("idp".into()), ..ClaimRules::default() };
    if claims::validate(&jws.claims, &rules, f.now).is_ok() {
        assert_eq!(jws.claims.get("iss"), Some(&json!("idp")));
        let aud = jws.claims.get("aud").expect("audience required");
        let named = |a: &Value| a == "api" || a == "litellm";
        assert!(named(aud) || aud.as_array().is_some_and(|l| l.iter().any(named)), "aud {aud}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(parts) = Structured::split(data) {
        decide(&parts.compact());
    }
    if let Ok(token) = std::str::from_utf8(data) {
        decide(token);
    }
});
