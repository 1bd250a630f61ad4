//! Verification keys: one type per key kind, so a key can only verify the algorithms of its kind.
//!
//! Keys come from JWKs ([`jwk`]), JWKS documents with LiteLLM's `kid` selection ([`jwks`]) and
//! PEM public keys / X.509 certificates in the configuration ([`pem`]). Everything a verification
//! needs (the SPKI DER the host wants, the parsed guest key) is prepared once, when the key is
//! loaded, never per request.

pub mod jwk;
pub mod jwks;
pub mod pem;
pub mod rsa;

use crate::authn::jws::Algorithm;
use rsa::RsaKey;
use spki::EncodePublicKey;

/// The key itself, by kind. Host crypto gets `spki_der`; guest crypto uses the parsed key.
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    Rsa { key: RsaKey, spki_der: Vec<u8> },
    P256 { key: p256::ecdsa::VerifyingKey, spki_der: Vec<u8> },
    P384 { key: p384::ecdsa::VerifyingKey, spki_der: Vec<u8> },
    P521 { key: p521::ecdsa::VerifyingKey, spki_der: Vec<u8> },
    Ed25519 { key: ed25519_dalek::VerifyingKey },
}

impl KeyMaterial {
    pub fn rsa(key: RsaKey) -> Result<Self, String> {
        let spki_der = key.to_spki_der()?;
        Ok(Self::Rsa { key, spki_der })
    }
    pub fn p256(key: p256::ecdsa::VerifyingKey) -> Result<Self, String> {
        let spki_der = der_of(&key)?;
        Ok(Self::P256 { key, spki_der })
    }
    pub fn p384(key: p384::ecdsa::VerifyingKey) -> Result<Self, String> {
        let spki_der = der_of(&key)?;
        Ok(Self::P384 { key, spki_der })
    }
    pub fn p521(key: p521::ecdsa::VerifyingKey) -> Result<Self, String> {
        let spki_der = der_of(&key)?;
        Ok(Self::P521 { key, spki_der })
    }

    /// The algorithms a key of this kind can verify (RFC 7518 §3.1, RFC 8037, RFC 9864).
    pub fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Self::Rsa { .. } => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::P256 { .. } => alg == ES256,
            Self::P384 { .. } => alg == ES384,
            Self::P521 { .. } => alg == ES512,
            Self::Ed25519 { .. } => matches!(alg, EdDSA | Ed25519),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rsa { .. } => "RSA",
            Self::P256 { .. } => "EC P-256",
            Self::P384 { .. } => "EC P-384",
            Self::P521 { .. } => "EC P-521",
            Self::Ed25519 { .. } => "Ed25519",
        }
    }
}

fn der_of(key: &impl EncodePublicKey) -> Result<Vec<u8>, String> {
    key.to_public_key_der()
        .map(|doc| doc.into_vec())
        .map_err(|e| format!("cannot encode public key: {e}"))
}

/// A usable verification key with the constraints its source put on it.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it names one: the token's `alg` must then be exactly this.
    pub alg: Option<Algorithm>,
    pub material: KeyMaterial,
}

impl PublicKey {
    /// Whether a token signed with `alg` may be verified with this key at all.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.material.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}
