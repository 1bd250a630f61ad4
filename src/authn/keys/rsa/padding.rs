//! The two RSA signature encodings JOSE uses, checked exactly (RFC 8017):
//!
//! - **RSASSA-PSS** (PS256/384/512, RFC 7518 §3.5): EMSA-PSS-VERIFY (§9.1.2) with MGF1 over
//!   the same hash and a salt exactly as long as the hash. RFC 8017 lets a verifier take the
//!   salt length as a parameter; RFC 7518 fixes it ("the size of the salt value is the same
//!   size as the hash function output"), and so do PyJWT (LiteLLM's verifier:
//!   `salt_length=digest_size`), `jsonwebtoken` (ring: `s_len = h_len`), `jwt-simple` and
//!   Envoy's `jwt_authn` (BoringSSL's default salt length is the digest's: checked on Envoy
//!   1.40, which answers 401 to PS256 tokens with salts of 0, 20, 31, 33, 64 and 222 bytes or
//!   MGF1-SHA-1, 200 to 32 bytes). A signature with any other salt length is refused here too,
//!   also when it would otherwise be consistent.
//! - **RSASSA-PKCS1-v1_5** (RS256/384/512, RFC 7518 §3.3): the encoded message is rebuilt
//!   (EMSA-PKCS1-v1_5, §9.2, DigestInfo with the NULL parameters) and compared whole, which is
//!   the comparison RFC 8017 §8.2.2 prescribes.

use super::RsaKey;
use sha2::digest::{Digest, OutputSizeUser};
use sha2::{Sha256, Sha384, Sha512};

/// A hash JOSE pairs with RSA, with the DER `DigestInfo` prefix of PKCS#1 v1.5 (RFC 8017 §9.2
/// note 1: `AlgorithmIdentifier` with NULL parameters, then the OCTET STRING header).
pub trait JoseHash: Digest {
    const DIGEST_INFO: &'static [u8];
}

impl JoseHash for Sha256 {
    const DIGEST_INFO: &'static [u8] =
        &[0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];
}

impl JoseHash for Sha384 {
    const DIGEST_INFO: &'static [u8] =
        &[0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30];
}

impl JoseHash for Sha512 {
    const DIGEST_INFO: &'static [u8] =
        &[0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40];
}

/// RSASSA-PSS-VERIFY (RFC 8017 §8.1.2) of `sig` over `msg`, MGF1 with `D`, salt length = hash length.
pub fn verify_pss<D: Digest>(key: &RsaKey, msg: &[u8], sig: &[u8]) -> bool {
    // Steps 1–2b: length, s < n, m = s^e mod n as k bytes.
    let Some(m) = key.public_op(sig) else { return false };
    // Step 2c: EM = I2OSP(m, emLen), emBits = modBits − 1. emLen is k − 1 when modBits − 1 is
    // a multiple of 8: m's top byte must then be zero ("integer too large" otherwise).
    let em_bits = key.bits() - 1;
    let em: &[u8] = if em_bits % 8 == 0 {
        match m.split_first() {
            Some((0, rest)) => rest,
            _ => return false,
        }
    } else {
        &m
    };
    emsa_pss_verify::<D>(&D::digest(msg), em, em_bits)
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with `sLen = hLen`; steps 1–2 (hashing `M`) done by the caller.
fn emsa_pss_verify<D: Digest>(m_hash: &[u8], em: &[u8], em_bits: u32) -> bool {
    let h_len = <D as OutputSizeUser>::output_size();
    let s_len = h_len;
    // Step 3.
    let Some(ps_len) = em.len().checked_sub(h_len + s_len + 2) else { return false };
    // Step 4: the trailer.
    let Some((&0xbc, rest)) = em.split_last() else { return false };
    // Step 5: maskedDB (emLen − hLen − 1 bytes), then H (hLen bytes).
    let Some((masked_db, h)) = rest.split_at_checked(rest.len().saturating_sub(h_len)) else { return false };
    // Step 6: the 8·emLen − emBits leftmost bits of maskedDB must be zero.
    let unused_bits = u32::try_from(em.len() * 8).unwrap_or(u32::MAX).saturating_sub(em_bits);
    let top_mask = 0xffu8.checked_shr(unused_bits).unwrap_or(0);
    match masked_db.first() {
        Some(first) if first & !top_mask == 0 => {}
        _ => return false,
    }
    // Steps 7–9: DB = maskedDB ⊕ MGF1(H), leftmost bits cleared.
    let mut db = masked_db.to_vec();
    mgf1_xor::<D>(h, &mut db);
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    // Step 10: PS (zeros), then 0x01, then the salt.
    let Some((ps, rest)) = db.split_at_checked(ps_len) else { return false };
    if ps.iter().any(|&b| b != 0) {
        return false;
    }
    let Some((&0x01, salt)) = rest.split_first() else { return false };
    // Steps 11–14: H' = Hash(0x00 × 8 || mHash || salt) must equal H.
    let h_prime = D::new().chain_update([0u8; 8]).chain_update(m_hash).chain_update(salt).finalize();
    salt.len() == s_len && h_prime.as_slice() == h
}

/// `out ^= MGF1(seed, out.len())` (RFC 8017 §B.2.1).
fn mgf1_xor<D: Digest>(seed: &[u8], out: &mut [u8]) {
    let h_len = <D as OutputSizeUser>::output_size();
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(h_len)) {
        let t = D::new().chain_update(seed).chain_update(counter.to_be_bytes()).finalize();
        for (o, m) in chunk.iter_mut().zip(t.iter()) {
            *o ^= m;
        }
    }
}

/// RSASSA-PKCS1-V1_5-VERIFY (RFC 8017 §8.2.2) of `sig` over `msg` with `D`.
pub fn verify_pkcs1v15<D: JoseHash>(key: &RsaKey, msg: &[u8], sig: &[u8]) -> bool {
    let Some(em) = key.public_op(sig) else { return false };
    // EMSA-PKCS1-v1_5 (§9.2): 0x00 0x01 PS(0xff, at least 8) 0x00 DigestInfo(H).
    let digest = D::digest(msg);
    let t_len = D::DIGEST_INFO.len() + digest.len();
    let Some(ps_len) = em.len().checked_sub(t_len + 3).filter(|&len| len >= 8) else { return false };
    let mut expected = Vec::with_capacity(em.len());
    expected.extend_from_slice(&[0x00, 0x01]);
    expected.resize(2 + ps_len, 0xff);
    expected.push(0x00);
    expected.extend_from_slice(D::DIGEST_INFO);
    expected.extend_from_slice(&digest);
    em == expected
}
