//! Signature verification. RS* and ES* go to Envoy's host `verify_signature` (BoringSSL, the
//! same speed as native `jwt_authn`, FIPS on FIPS builds) when the host has it; PS* and EdDSA,
//! which that function cannot do, and every algorithm on hosts without it, run in the guest with
//! RustCrypto. Both paths are strict: a signature is accepted only when a verifier said yes.

use crate::error::AuthError;
use crate::authn::jws::{Algorithm, Jws};
use crate::authn::keys::rsa::padding::{verify_pkcs1v15, verify_pss};
use crate::authn::keys::rsa::RsaKey;
use crate::authn::keys::{KeyMaterial, PublicKey};
use sha2::{Sha256, Sha384, Sha512};
use p256::ecdsa::signature::Verifier;

/// The digest a host verification uses, by the name Envoy's `verify_signature` expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFn {
    Sha256,
    Sha384,
    Sha512,
}

impl HashFn {
    pub fn host_name(self) -> &'static str {
        match self {
            HashFn::Sha256 => "sha256",
            HashFn::Sha384 => "sha384",
            HashFn::Sha512 => "sha512",
        }
    }
}

/// Crypto the host offers. `None` means "the host cannot answer" (no foreign function, or it
/// refused the arguments): the guest then verifies. `Some(valid)` is the host's verdict.
pub trait HostCrypto {
    fn verify(&self, hash: HashFn, spki_der: &[u8], signature: &[u8], message: &[u8]) -> Option<bool>;
}

/// No host crypto: everything in the guest. Used by native tests and non-Envoy hosts.
pub struct GuestOnly;

impl HostCrypto for GuestOnly {
    fn verify(&self, _: HashFn, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        None
    }
}

fn hash_of(alg: Algorithm) -> HashFn {
    use Algorithm::*;
    match alg {
        // EdDSA hashes internally; the host never sees it.
        RS256 | PS256 | ES256 | EdDSA | Ed25519 => HashFn::Sha256,
        RS384 | PS384 | ES384 => HashFn::Sha384,
        RS512 | PS512 | ES512 => HashFn::Sha512,
    }
}

fn verdict(valid: bool) -> Result<(), AuthError> {
    if valid {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

/// Verify `jws`' signature with `key`. The caller has already checked `key.accepts(jws.alg)`;
/// it is checked again here so that no combination of key and algorithm can slip through.
pub fn verify_signature(jws: &Jws, key: &PublicKey, host: &dyn HostCrypto) -> Result<(), AuthError> {
    verify_message(jws.alg, key, jws.signing_input.as_bytes(), &jws.signature, host)
}

/// [`verify_signature`] over any bytes. A JWS signing input is always ASCII; this form is for
/// test vectors (Wycheproof) whose messages are arbitrary bytes.
pub fn verify_message(
    alg: Algorithm,
    key: &PublicKey,
    msg: &[u8],
    sig: &[u8],
    host: &dyn HostCrypto,
) -> Result<(), AuthError> {
    if !key.accepts(alg) {
        return Err(AuthError::AlgNotAllowed);
    }
    let hash = hash_of(alg);
    match &key.material {
        KeyMaterial::Rsa { key, spki_der } => {
            let is_pss = matches!(alg, Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512);
            if !is_pss {
                if let Some(valid) = host.verify(hash, spki_der, sig, msg) {
                    return verdict(valid);
                }
            }
            verdict(rsa_guest(key, hash, is_pss, msg, sig))
        }
        KeyMaterial::P256 { key, spki_der } => {
            let sig = p256::ecdsa::Signature::from_slice(sig).map_err(|_| AuthError::BadSignature)?;
            if let Some(valid) = host.verify(hash, spki_der, sig.to_der().as_bytes(), msg) {
                return verdict(valid);
            }
            verdict(key.verify(msg, &sig).is_ok())
        }
        KeyMaterial::P384 { key, spki_der } => {
            let sig = p384::ecdsa::Signature::from_slice(sig).map_err(|_| AuthError::BadSignature)?;
            if let Some(valid) = host.verify(hash, spki_der, sig.to_der().as_bytes(), msg) {
                return verdict(valid);
            }
            verdict(key.verify(msg, &sig).is_ok())
        }
        KeyMaterial::P521 { key, spki_der } => {
            let sig = p521::ecdsa::Signature::from_slice(sig).map_err(|_| AuthError::BadSignature)?;
            if let Some(valid) = host.verify(hash, spki_der, sig.to_der().as_bytes(), msg) {
                return verdict(valid);
            }
            verdict(key.verify(msg, &sig).is_ok())
        }
        KeyMaterial::Ed25519 { key } => {
            let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| AuthError::BadSignature)?;
            verdict(key.verify_strict(msg, &sig).is_ok())
        }
    }
}

fn rsa_guest(key: &RsaKey, hash: HashFn, pss: bool, msg: &[u8], sig: &[u8]) -> bool {
    // RFC 7518 §3.5: PSS uses MGF1 with the same hash and a salt as long as the hash.
    match (hash, pss) {
        (HashFn::Sha256, false) => verify_pkcs1v15::<Sha256>(key, msg, sig),
        (HashFn::Sha384, false) => verify_pkcs1v15::<Sha384>(key, msg, sig),
        (HashFn::Sha512, false) => verify_pkcs1v15::<Sha512>(key, msg, sig),
        (HashFn::Sha256, true) => verify_pss::<Sha256>(key, msg, sig),
        (HashFn::Sha384, true) => verify_pss::<Sha384>(key, msg, sig),
        (HashFn::Sha512, true) => verify_pss::<Sha512>(key, msg, sig),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::keys::jwk;
    use crate::testkeys::{token, vectors};
    use std::cell::RefCell;

    fn key(name: &str) -> PublicKey {
        jwk::parse(vectors()["keys"][name]["jwk"].as_object().unwrap()).unwrap()
    }

    fn jws(name: &str) -> Jws {
        crate::authn::jws::parse(&token(name)).unwrap()
    }

    const ALL: [(&str, &str); 11] = [
        ("RS256", "rsa"), ("RS384", "rsa"), ("RS512", "rsa"),
        ("PS256", "rsa"), ("PS384", "rsa"), ("PS512", "rsa"),
        ("ES256", "p256"), ("ES384", "p384"), ("ES512", "p521"), ("EdDSA", "ed25519"), ("Ed25519", "ed25519"),
    ];

    #[test]
    fn guest_verifies_every_algorithm_minted_by_pyjwt() {
        for (alg, k) in ALL {
            assert_eq!(verify_signature(&jws(alg), &key(k), &GuestOnly), Ok(()), "{alg}");
        }
    }

    #[test]
    fn guest_rejects_any_flipped_bit() {
        for (alg, k) in ALL {
            let mut t = jws(alg);
            let last = t.signature.len() - 1;
            t.signature[last] ^= 1;
            assert_eq!(verify_signature(&t, &key(k), &GuestOnly), Err(AuthError::BadSignature), "{alg}");
            let mut t = jws(alg);
            t.signing_input.push('x');
            assert_eq!(verify_signature(&t, &key(k), &GuestOnly), Err(AuthError::BadSignature), "{alg}");
        }
    }

    #[test]
    fn signature_by_another_key_fails() {
        let t = jws("RS256_by_other_key");
        assert_eq!(verify_signature(&t, &key("rsa"), &GuestOnly), Err(AuthError::BadSignature));
    }

    #[test]
    fn algorithm_must_fit_the_key() {
        let mut t = jws("ES256");
        t.alg = Algorithm::RS256;
        assert_eq!(verify_signature(&t, &key("p256"), &GuestOnly), Err(AuthError::AlgNotAllowed));
        let mut t = jws("RS256");
        t.alg = Algorithm::PS256; // RS↔PS swap: same key kind, different padding
        assert_eq!(verify_signature(&t, &key("rsa"), &GuestOnly), Err(AuthError::BadSignature));
    }

    #[test]
    fn ecdsa_zero_signature_is_refused_before_any_verifier() {
        let mut t = jws("ES256");
        t.signature = vec![0u8; 64];
        let host = Recording::answering(Some(true));
        assert_eq!(verify_signature(&t, &key("p256"), &host), Err(AuthError::BadSignature));
        assert!(host.calls.borrow().is_empty(), "psychic signature must not reach the host");
    }

    /// A scripted host that records what it was asked.
    struct Recording {
        answer: Option<bool>,
        calls: RefCell<Vec<(HashFn, usize)>>,
    }
    impl Recording {
        fn answering(answer: Option<bool>) -> Self {
            Self { answer, calls: RefCell::new(vec![]) }
        }
    }
    impl HostCrypto for Recording {
        fn verify(&self, hash: HashFn, _: &[u8], sig: &[u8], _: &[u8]) -> Option<bool> {
            self.calls.borrow_mut().push((hash, sig.len()));
            self.answer
        }
    }

    #[test]
    fn rs_and_es_go_to_the_host_with_der_signatures_ps_and_eddsa_never() {
        let host = Recording::answering(Some(true));
        for (alg, k) in ALL {
            verify_signature(&jws(alg), &key(k), &host).unwrap();
        }
        let calls = host.calls.borrow();
        let hashes: Vec<HashFn> = calls.iter().map(|c| c.0).collect();
        assert_eq!(
            hashes,
            [HashFn::Sha256, HashFn::Sha384, HashFn::Sha512, HashFn::Sha256, HashFn::Sha384, HashFn::Sha512]
        );
        assert_eq!(calls[0].1, 256, "RSA-2048 signature passed as is");
        assert_eq!(calls[3].0, HashFn::Sha256);
        assert!(calls[3].1 >= 8 && calls[3].1 <= 72 && calls[3].1 != 64, "ES256 as DER");
        assert!(calls[5].1 >= 8 && calls[5].1 <= 139 && calls[5].1 != 132, "ES512 as DER");
    }

    #[test]
    fn host_verdict_is_final_and_unavailable_host_falls_back_to_guest() {
        let no = Recording::answering(Some(false));
        assert_eq!(verify_signature(&jws("RS256"), &key("rsa"), &no), Err(AuthError::BadSignature));
        let absent = Recording::answering(None);
        assert_eq!(verify_signature(&jws("RS256"), &key("rsa"), &absent), Ok(()));
        let mut forged = jws("ES256");
        forged.signing_input.push('x');
        assert_eq!(verify_signature(&forged, &key("p256"), &absent), Err(AuthError::BadSignature));
    }
}
