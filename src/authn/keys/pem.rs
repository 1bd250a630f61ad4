//! PEM keys from the configuration: `PUBLIC KEY` (SPKI), `RSA PUBLIC KEY` (PKCS#1) and
//! `CERTIFICATE` (X.509: its subject public key is used; validity and chain are not checked,
//! as in LiteLLM and Envoy's `local_jwks`). These keys have no `kid`.

use super::rsa::RsaKey;
use super::{KeyMaterial, PublicKey};
use spki::der::{Decode, Encode};
use spki::DecodePublicKey;

/// Parse one PEM block into a verification key.
pub fn parse(pem: &str) -> Result<PublicKey, String> {
    let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
        .map_err(|e| format!("not a PEM block: {e}"))?;
    let material = match label {
        "PUBLIC KEY" => from_spki_der(&der)?,
        "RSA PUBLIC KEY" => KeyMaterial::rsa(RsaKey::from_pkcs1_der(&der)?)?,
        "CERTIFICATE" => {
            let cert = x509_cert::Certificate::from_der(&der)
                .map_err(|e| format!("invalid X.509 certificate: {e}"))?;
            let spki = cert
                .tbs_certificate()
                .subject_public_key_info()
                .to_der()
                .map_err(|e| format!("invalid certificate public key: {e}"))?;
            from_spki_der(&spki)?
        }
        other => return Err(format!("unsupported PEM label {other:?} (want PUBLIC KEY or CERTIFICATE)")),
    };
    Ok(PublicKey { kid: None, alg: None, material })
}

fn from_spki_der(der: &[u8]) -> Result<KeyMaterial, String> {
    if let Ok(key) = RsaKey::from_spki_der(der) {
        return KeyMaterial::rsa(key);
    }
    if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
        return KeyMaterial::p256(key);
    }
    if let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_der(der) {
        return KeyMaterial::p384(key);
    }
    if let Ok(key) = p521::ecdsa::VerifyingKey::from_public_key_der(der) {
        return KeyMaterial::p521(key);
    }
    if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_der(der) {
        return Ok(KeyMaterial::Ed25519 { key });
    }
    Err("unsupported public key (want RSA ≥ 1024 bits, EC P-256/P-384/P-521 or Ed25519)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys::vectors;

    fn pem_of(name: &str, field: &str) -> String {
        vectors()["keys"][name][field].as_str().unwrap().to_string()
    }

    #[test]
    fn parses_spki_keys_of_each_kind() {
        assert_eq!(parse(&pem_of("rsa", "pem")).unwrap().material.kind(), "RSA");
        assert_eq!(parse(&pem_of("p256", "pem")).unwrap().material.kind(), "EC P-256");
        assert_eq!(parse(&pem_of("ed25519", "pem")).unwrap().material.kind(), "Ed25519");
    }

    #[test]
    fn takes_the_public_key_out_of_a_certificate() {
        let from_cert = parse(&pem_of("rsa", "cert")).unwrap();
        let from_spki = parse(&pem_of("rsa", "pem")).unwrap();
        match (from_cert.material, from_spki.material) {
            (KeyMaterial::Rsa { spki_der: a, .. }, KeyMaterial::Rsa { spki_der: b, .. }) => {
                assert_eq!(a, b)
            }
            _ => panic!("expected RSA keys"),
        }
    }

    #[test]
    fn tolerates_surrounding_whitespace_but_not_garbage() {
        let pem = format!("\n  {}  \n", pem_of("rsa", "pem"));
        assert!(parse(&pem).is_ok());
        assert!(parse("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----").is_err());
        assert!(parse("hello").is_err());
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(parse(private).is_err());
    }
}
