//! `keys::pem::parse`: never panics; a parsed key has no kid or alg, and re-encoding its
//! SubjectPublicKeyInfo as a `PUBLIC KEY` block gives back the same key.
//! Inputs not starting with `-` are DER (after one label-selecting byte), so libFuzzer
//! mutates the ASN.1 rather than its base64 text.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use llm_jwt_auth::authn::keys::{pem, KeyMaterial};

const LABELS: [&str; 4] = ["PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE", "PRIVATE KEY"];

fn armor(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// The key's SubjectPublicKeyInfo DER (Ed25519 keys keep only their 32 bytes).
fn spki(material: &KeyMaterial) -> Vec<u8> {
    match material {
        KeyMaterial::Rsa { spki_der, .. }
        | KeyMaterial::P256 { spki_der, .. }
        | KeyMaterial::P384 { spki_der, .. }
        | KeyMaterial::P521 { spki_der, .. } => spki_der.clone(),
        // RFC 8410: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (32 bytes) }
        KeyMaterial::Ed25519 { key } => {
            [&[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00][..], key.as_bytes()].concat()
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = match data.split_first() {
        Some((&b'-', _)) => match std::str::from_utf8(data) {
            Ok(t) => t.to_string(),
            Err(_) => return,
        },
        Some((&selector, der)) => armor(LABELS[usize::from(selector) % LABELS.len()], der),
        None => String::new(),
    };
    let Ok(key) = pem::parse(&text) else { return };
    assert_eq!((key.kid.as_deref(), key.alg), (None, None));
    assert!(
        ["PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE"].iter().any(|l| text.contains(&format!("-----BEGIN {l}-----"))),
        "accepted a block with another label"
    );
    let der = spki(&key.material);
    let again = pem::parse(&armor("PUBLIC KEY", &der)).expect("re-encoded SPKI parses");
    assert_eq!(again.material.kind(), key.material.kind());
    assert_eq!(spki(&again.material), der);
});
