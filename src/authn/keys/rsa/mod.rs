//! RSA public keys, prepared once for guest-side verification.
//!
//! A key is checked and its Montgomery context (the modulus, `R mod n`, `R² mod n` and
//! `−n⁻¹ mod 2^w`) is computed when the JWK or PEM is loaded, never per request. Moduli of
//! 1537–2048, 2561–3072 and 3585–4096 bits use crypto-bigint's fixed-width
//! [`FixedMontyForm`] (`U2048`/`U3072`/`U4096`: no allocation, loops of known length); other
//! sizes within 1024–8192 bits use its heap-backed [`BoxedMontyForm`]. Both give the same
//! exact result; only the speed differs.
//!
//! What this module owns is the public-key operation, RSAVP1 with I2OSP (RFC 8017 §5.2.2,
//! §4.1): `m = s^e mod n` by square-and-multiply over the bits of `e` (65537: 16 squarings
//! and one multiplication). The padding checks that use it are in [`padding`]. Nothing here
//! needs to be constant-time: the key and the signature are public.
//!
//! The keys accepted are those RustCrypto's `rsa` 0.10 accepts with `PublicKey::new`, which
//! this module replaced: a modulus of 1024 to 8192 bits, odd; a public exponent that is odd
//! and between 3 and 2³³ − 1 (larger exponents are a denial-of-service vector, RustCrypto/RSA#155,
//! and no key in use has one).

pub mod padding;

use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams, FixedMontyForm, FixedMontyParams};
use crypto_bigint::{BoxedUint, Integer, Limb, MontyForm, Odd, Uint, Unsigned, Word, Zero, U2048, U3072, U4096};
use spki::der::asn1::{AnyRef, BitStringRef, UintRef};
use spki::der::{Decode, Encode};
use spki::{AlgorithmIdentifierRef, ObjectIdentifier, SubjectPublicKeyInfoRef};

/// Smallest modulus accepted, in bits.
pub const MIN_BITS: u32 = 1024;
/// Largest modulus accepted, in bits.
pub const MAX_BITS: u32 = 8192;
/// Largest public exponent accepted.
pub const MAX_EXPONENT: u64 = (1 << 33) - 1;

/// `id-RSASSA-PSS` (RFC 4055): an SPKI with this algorithm and no parameters is an RSA key too.
const ID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// An RSA public key, ready to verify.
#[derive(Clone)]
pub struct RsaKey {
    /// The modulus, big-endian, without leading zero bytes: its length is `k`, the length of
    /// a signature.
    n: Box<[u8]>,
    e: u64,
    bits: u32,
    monty: Monty,
}

/// The Montgomery context of the modulus, at the width chosen for its size.
#[derive(Clone)]
enum Monty {
    W2048(Box<FixedMontyParams<{ U2048::LIMBS }>>),
    W3072(Box<FixedMontyParams<{ U3072::LIMBS }>>),
    W4096(Box<FixedMontyParams<{ U4096::LIMBS }>>),
    Boxed(BoxedMontyParams),
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey").field("bits", &self.bits).field("e", &self.e).finish_non_exhaustive()
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.get(zeros..).unwrap_or_default()
}

impl RsaKey {
    /// A key from its modulus and public exponent, big-endian (leading zero bytes allowed, as
    /// `rsa` allowed them in a JWK). The error says what is wrong with the key.
    pub fn new(n: &[u8], e: &[u8]) -> Result<Self, String> {
        let n = strip_leading_zeros(n);
        let bits = match n.first() {
            // `len - 1` whole bytes below the top one, which has `8 - leading_zeros` bits.
            Some(top) => u32::try_from(n.len())
                .ok()
                .and_then(|len| len.checked_mul(8))
                .map_or(u32::MAX, |b| b - top.leading_zeros()),
            None => 0,
        };
        if bits < MIN_BITS {
            return Err(format!("modulus of {bits} bits is too small (at least {MIN_BITS})"));
        }
        if bits > MAX_BITS {
            return Err(format!("modulus of {bits} bits is too large (at most {MAX_BITS})"));
        }
        if n.last().is_none_or(|low| low & 1 == 0) {
            return Err("modulus is even".into());
        }
        let e_bytes = strip_leading_zeros(e);
        if e_bytes.len() > 8 {
            return Err(format!("public exponent is too large (at most {MAX_EXPONENT})"));
        }
        let e = e_bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if e < 3 {
            return Err(format!("public exponent {e} is too small (at least 3)"));
        }
        if e > MAX_EXPONENT {
            return Err(format!("public exponent {e} is too large (at most {MAX_EXPONENT})"));
        }
        if e & 1 == 0 {
            return Err(format!("public exponent {e} is even"));
        }
        // e ≤ 2³³ − 1 < n, since n has at least 1024 bits.
        let monty = match bits {
            1537..=2048 => Monty::W2048(Box::new(fixed_params(n)?)),
            2561..=3072 => Monty::W3072(Box::new(fixed_params(n)?)),
            3585..=4096 => Monty::W4096(Box::new(fixed_params(n)?)),
            _ => {
                let odd = BoxedUint::from_be_slice_vartime(n).to_odd().into_option().ok_or("modulus is even")?;
                Monty::Boxed(BoxedMontyParams::new_vartime(odd))
            }
        };
        Ok(Self { n: n.into(), e, bits, monty })
    }

    /// A PKCS#1 `RSAPublicKey` (the body of a `RSA PUBLIC KEY` PEM block).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, String> {
        let key = pkcs1::RsaPublicKeyRef::from_der(der).map_err(|e| format!("invalid PKCS#1 key: {e}"))?;
        Self::new(key.modulus.as_bytes(), key.public_exponent.as_bytes())
            .map_err(|e| format!("invalid RSA key: {e}"))
    }

    /// A `SubjectPublicKeyInfo` holding an RSA key: algorithm `rsaEncryption` with NULL
    /// parameters, or `id-RSASSA-PSS` without parameters (a PSS key restricted by parameters
    /// is refused). The same SPKIs `rsa` 0.10 accepted.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        let info = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| format!("invalid SPKI: {e}"))?;
        let params_ok = match info.algorithm.oid {
            pkcs1::ALGORITHM_OID => info.algorithm.parameters == Some(AnyRef::NULL),
            ID_RSASSA_PSS => info.algorithm.parameters.is_none(),
            other => return Err(format!("not an RSA key (algorithm {other})")),
        };
        if !params_ok {
            return Err("unsupported RSA key algorithm parameters".into());
        }
        let body = info.subject_public_key.as_bytes().ok_or("invalid SPKI: unused bits in the key")?;
        Self::from_pkcs1_der(body)
    }

    /// The key as an X.509 `SubjectPublicKeyInfo` (`rsaEncryption`, NULL parameters), DER:
    /// what Envoy's `verify_signature` takes.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, String> {
        let bad = |e: spki::der::Error| format!("cannot encode public key: {e}");
        let e_bytes = self.e.to_be_bytes();
        let pkcs1 = pkcs1::RsaPublicKeyRef {
            modulus: UintRef::new(&self.n).map_err(bad)?,
            public_exponent: UintRef::new(strip_leading_zeros(&e_bytes)).map_err(bad)?,
        }
        .to_der()
        .map_err(bad)?;
        SubjectPublicKeyInfoRef {
            algorithm: AlgorithmIdentifierRef { oid: pkcs1::ALGORITHM_OID, parameters: Some(AnyRef::NULL) },
            subject_public_key: BitStringRef::from_bytes(&pkcs1).map_err(bad)?,
        }
        .to_der()
        .map_err(bad)
    }

    /// Modulus length in bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// `k`: the modulus length in bytes, which is the length of every signature.
    pub fn size(&self) -> usize {
        self.n.len()
    }

    pub fn modulus(&self) -> &[u8] {
        &self.n
    }

    pub fn exponent(&self) -> u64 {
        self.e
    }

    /// RSAVP1 then I2OSP to `k` bytes (RFC 8017 §5.2.2, §8.1.2 step 2, §8.2.2 step 2): the
    /// message representative `s^e mod n` of a signature `s` of exactly `k` bytes. `None`
    /// when the signature is not `k` bytes long or not below `n`.
    pub fn public_op(&self, sig: &[u8]) -> Option<Vec<u8>> {
        if sig.len() != self.size() {
            return None;
        }
        let mut em = vec![0u8; self.size()];
        let ok = match &self.monty {
            Monty::W2048(p) => rsavp1::<FixedMontyForm<{ U2048::LIMBS }>>(p, self.e, sig, &mut em),
            Monty::W3072(p) => rsavp1::<FixedMontyForm<{ U3072::LIMBS }>>(p, self.e, sig, &mut em),
            Monty::W4096(p) => rsavp1::<FixedMontyForm<{ U4096::LIMBS }>>(p, self.e, sig, &mut em),
            Monty::Boxed(p) => rsavp1::<BoxedMontyForm>(p, self.e, sig, &mut em),
        };
        ok.then_some(em)
    }
}

fn fixed_params<const LIMBS: usize>(n: &[u8]) -> Result<FixedMontyParams<LIMBS>, String> {
    let mut limbs = [Limb::ZERO; LIMBS];
    if !load_be(n, &mut limbs) {
        return Err("modulus does not fit its width".into());
    }
    let odd: Odd<Uint<LIMBS>> = Uint::new(limbs).to_odd().into_option().ok_or("modulus is even")?;
    Ok(FixedMontyParams::new_vartime(odd))
}

/// `m = s^e mod n` for the big-endian `sig`, written big-endian to all of `em`. `false` when
/// `sig` is not below `n` (or `m` does not fit `em`, which cannot happen for `em` of `k` bytes).
fn rsavp1<M>(params: &M::Params, e: u64, sig: &[u8], em: &mut [u8]) -> bool
where
    M: MontyForm,
    M::Integer: Unsigned,
{
    let n = params.as_ref().modulus().as_ref();
    let mut s = M::Integer::zero_like(n);
    if !load_be(sig, s.as_mut_limbs()) || !less_than(s.as_limbs(), n.as_limbs()) {
        return false;
    }
    let m = pow(&M::new(s, params), e).retrieve();
    store_be(m.as_limbs(), em)
}

/// `x^e`, left-to-right square-and-multiply (variable time in `e`, which is public). `e ≥ 2`.
fn pow<M: MontyForm>(x: &M, e: u64) -> M {
    let mut acc = x.clone();
    let below_top = (u64::BITS - e.leading_zeros()).saturating_sub(1);
    for i in (0..below_top).rev() {
        acc = acc.square();
        if (e >> i) & 1 == 1 {
            acc *= x;
        }
    }
    acc
}

/// Big-endian bytes into little-endian limbs (all of them written). `false` if they do not fit.
fn load_be(bytes: &[u8], limbs: &mut [Limb]) -> bool {
    if bytes.len() > limbs.len() * Limb::BYTES {
        return false;
    }
    limbs.fill(Limb::ZERO);
    for (limb, chunk) in limbs.iter_mut().zip(bytes.rchunks(Limb::BYTES)) {
        *limb = Limb(chunk.iter().fold(0, |acc: Word, &b| (acc << 8) | Word::from(b)));
    }
    true
}

/// Little-endian limbs into exactly `out.len()` big-endian bytes. `false` if the value needs more.
fn store_be(limbs: &[Limb], out: &mut [u8]) -> bool {
    let mut bytes = limbs.iter().flat_map(|limb| limb.0.to_le_bytes());
    for byte in out.iter_mut().rev() {
        *byte = bytes.next().unwrap_or(0);
    }
    bytes.all(|b| b == 0)
}

/// `a < b` for limbs of equal length (variable time).
fn less_than(a: &[Limb], b: &[Limb]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x.0 != y.0 {
            return x.0 < y.0;
        }
    }
    false
}

/// Cross-checks against RustCrypto's `rsa` 0.10 (a dev-dependency, the verifier this module
/// replaced): the key checks, the SPKI encoding, the public-key operation on random moduli,
/// exponents and inputs, and PSS / PKCS#1 v1.5 signatures made by `rsa` with random keys.
#[cfg(test)]
mod tests {
    use super::padding::{verify_pkcs1v15, verify_pss};
    use super::*;
    use ::rsa::rand_core::{TryCryptoRng, TryRng};
    use ::rsa::traits::PublicKeyParts;
    use sha2::{Digest, Sha256, Sha384, Sha512};
    use std::convert::Infallible;

    /// Deterministic test randomness: SHA-256 in counter mode.
    struct TestRng(u64);

    impl TryRng for TestRng {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            let mut b = [0u8; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }
        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            let mut b = [0u8; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            for chunk in dst.chunks_mut(32) {
                self.0 += 1;
                let block = Sha256::digest(self.0.to_le_bytes());
                chunk.copy_from_slice(&block[..chunk.len()]);
            }
            Ok(())
        }
    }
    impl TryCryptoRng for TestRng {}

    impl TestRng {
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            let mut v = vec![0u8; len];
            self.try_fill_bytes(&mut v).unwrap();
            v
        }
        fn below(&mut self, bound: u64) -> u64 {
            self.try_next_u64().unwrap() % bound
        }
        /// A random odd number of exactly `bits` bits, big-endian.
        fn odd_modulus(&mut self, bits: u32) -> Vec<u8> {
            let mut n = self.bytes(bits.div_ceil(8) as usize);
            let top_bits = bits - 8 * (n.len() as u32 - 1);
            n[0] &= 0xff >> (8 - top_bits);
            n[0] |= 1 << (top_bits - 1);
            *n.last_mut().unwrap() |= 1;
            n
        }
        /// A random number below `n` (same length, big-endian).
        fn below_n(&mut self, n: &[u8]) -> Vec<u8> {
            loop {
                let mut s = self.bytes(n.len());
                s[0] &= n[0] | (n[0] >> 1) | (n[0] >> 2) | (n[0] >> 4);
                if s.as_slice() < n {
                    return s;
                }
            }
        }
    }

    fn oracle_key(n: &[u8], e: u64) -> ::rsa::PublicKey {
        ::rsa::PublicKey::new_unchecked(BoxedUint::from_be_slice_vartime(n), BoxedUint::from(e))
    }

    /// `s^e mod n` by `rsa`, as `k` bytes.
    fn oracle_op(n: &[u8], e: u64, s: &[u8]) -> Vec<u8> {
        let key = oracle_key(n, e);
        let s = BoxedUint::from_be_slice(s, key.n_bits_precision()).unwrap();
        let m = ::rsa::hazmat::rsa_encrypt(&key, &s).unwrap().to_be_bytes();
        let m = strip_leading_zeros(&m);
        let mut out = vec![0u8; n.len() - m.len()];
        out.extend_from_slice(m);
        out
    }

    fn width(key: &RsaKey) -> &'static str {
        match key.monty {
            Monty::W2048(_) => "U2048",
            Monty::W3072(_) => "U3072",
            Monty::W4096(_) => "U4096",
            Monty::Boxed(_) => "boxed",
        }
    }

    #[test]
    fn accepts_and_refuses_the_keys_rsa_accepted_and_refused() {
        let mut rng = TestRng(1);
        let n2048 = rng.odd_modulus(2048);
        let mut even = n2048.clone();
        *even.last_mut().unwrap() &= 0xfe;
        let with_zeros = [vec![0, 0], n2048.clone()].concat();
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (n2048.clone(), vec![1, 0, 1]),
            (with_zeros, vec![0, 1, 0, 1]),
            (rng.odd_modulus(1023), vec![1, 0, 1]),
            (rng.odd_modulus(1024), vec![3]),
            (rng.odd_modulus(8192), vec![1, 0, 1]),
            (rng.odd_modulus(8193), vec![1, 0, 1]),
            (even, vec![1, 0, 1]),
            (n2048.clone(), vec![1]),
            (n2048.clone(), vec![2]),
            (n2048.clone(), vec![4]),
            (n2048.clone(), vec![]),
            (n2048.clone(), (MAX_EXPONENT).to_be_bytes().to_vec()),
            (n2048.clone(), (MAX_EXPONENT + 2).to_be_bytes().to_vec()),
            (n2048.clone(), vec![1; 9]),
            (n2048.clone(), [vec![0; 20], vec![1, 0, 1]].concat()),
            (vec![], vec![1, 0, 1]),
        ];
        for (n, e) in cases {
            let ours = RsaKey::new(&n, &e);
            let theirs = ::rsa::PublicKey::new(BoxedUint::from_be_slice_vartime(&n), BoxedUint::from_be_slice_vartime(&e));
            assert_eq!(ours.is_ok(), theirs.is_ok(), "n: {} bytes, e: {e:?}: {ours:?} vs {theirs:?}", n.len());
        }
        let err = RsaKey::new(&n2048, &[1]).unwrap_err();
        assert!(err.contains("public exponent 1 is too small"), "{err}");
        let err = RsaKey::new(&rng.odd_modulus(1000), &[1, 0, 1]).unwrap_err();
        assert!(err.contains("1000 bits is too small"), "{err}");
    }

    #[test]
    fn spki_der_is_what_rsa_encoded_and_parses_back() {
        use spki::EncodePublicKey;
        let mut rng = TestRng(2);
        for bits in [1024, 2047, 2048, 4096] {
            for e in [3u64, 65537, MAX_EXPONENT] {
                let n = rng.odd_modulus(bits);
                let key = RsaKey::new(&n, &e.to_be_bytes()).unwrap();
                let der = key.to_spki_der().unwrap();
                assert_eq!(der, oracle_key(&n, e).to_public_key_der().unwrap().as_bytes(), "{bits} bits, e {e}");
                let back = RsaKey::from_spki_der(&der).unwrap();
                assert_eq!((back.modulus(), back.exponent(), back.bits()), (&n[..], e, bits));
            }
        }
    }

    #[test]
    fn public_op_matches_rsa_on_random_moduli_exponents_and_inputs() {
        let mut rng = TestRng(3);
        let sizes = [1024, 1025, 1536, 1537, 2047, 2048, 2049, 2560, 2561, 3071, 3072, 3585, 4095, 4096, 4097, 8192];
        for bits in sizes {
            let random_e = (rng.below(MAX_EXPONENT / 2) * 2 + 3).min(MAX_EXPONENT);
            for e in [3, 5, 17, 65537, random_e, MAX_EXPONENT] {
                let n = rng.odd_modulus(bits);
                let key = RsaKey::new(&n, &e.to_be_bytes()).unwrap();
                assert_eq!(key.size(), n.len());
                let mut n_minus_1 = n.clone();
                *n_minus_1.last_mut().unwrap() -= 1;
                let mut one = vec![0u8; n.len()];
                *one.last_mut().unwrap() = 1;
                for s in [rng.below_n(&n), rng.below_n(&n), n_minus_1, one, vec![0u8; n.len()]] {
                    assert_eq!(key.public_op(&s), Some(oracle_op(&n, e, &s)), "{bits} bits ({}), e {e}", width(&key));
                }
                // Not below n, or not k bytes: no representative.
                assert_eq!(key.public_op(&n), None);
                assert_eq!(key.public_op(&vec![0xff; n.len()]), None);
                assert_eq!(key.public_op(&[vec![0], rng.below_n(&n)].concat()), None);
                assert_eq!(key.public_op(&n[1..]), None);
                assert_eq!(key.public_op(&[]), None);
            }
        }
    }

    #[test]
    fn the_width_follows_the_modulus_size() {
        let mut rng = TestRng(4);
        for (bits, want) in [(1024, "boxed"), (1536, "boxed"), (1537, "U2048"), (2048, "U2048"), (2049, "boxed"),
            (2561, "U3072"), (3072, "U3072"), (3585, "U4096"), (4096, "U4096"), (4097, "boxed"), (8192, "boxed")]
        {
            assert_eq!(width(&RsaKey::new(&rng.odd_modulus(bits), &[1, 0, 1]).unwrap()), want, "{bits}");
        }
    }

    fn sign_and_verify<D: JoseDigest>(rng: &mut TestRng, key: &::rsa::PrivateKey, ours: &RsaKey) -> usize {
        let public = ::rsa::PublicKey::from(key);
        let h_len = <D as Digest>::output_size();
        let mut signed = 0;
        for round in 0..4 {
            let msg = rng.bytes(round * 37);
            let digest = D::digest(&msg);
            // PSS with the salt JOSE requires, then with other salt lengths (refused).
            for salt in [h_len, 0, h_len - 1, h_len + 1, 20] {
                let Ok(sig) = key.sign_with_rng(rng, ::rsa::Pss::<D>::new_with_salt(salt), &digest) else {
                    assert!(salt != h_len || ours.bits() < 8 * (2 * h_len as u32 + 2) + 1, "rsa could not sign");
                    continue;
                };
                let ok = public.verify(::rsa::Pss::<D>::new_with_salt(salt), &digest, &sig).is_ok();
                assert!(ok, "rsa's own PSS signature");
                assert_eq!(verify_pss::<D>(ours, &msg, &sig), salt == h_len, "PSS salt {salt}, {} bits", ours.bits());
                if salt == h_len {
                    signed += 1;
                    let mut bad = sig.clone();
                    bad[rng.below(sig.len() as u64) as usize] ^= 1 << rng.below(8);
                    assert!(!verify_pss::<D>(ours, &msg, &bad));
                    assert!(!verify_pss::<D>(ours, &[msg.as_slice(), b"x"].concat(), &sig));
                    assert!(!verify_pkcs1v15::<D>(ours, &msg, &sig), "a PSS signature is no PKCS#1 v1.5 one");
                }
            }
            let sig = key.sign(::rsa::Pkcs1v15Sign::new::<D>(), &digest).unwrap();
            assert!(verify_pkcs1v15::<D>(ours, &msg, &sig), "PKCS#1 v1.5, {} bits", ours.bits());
            assert!(!verify_pss::<D>(ours, &msg, &sig));
            let mut bad = sig.clone();
            bad[rng.below(sig.len() as u64) as usize] ^= 1 << rng.below(8);
            assert!(!verify_pkcs1v15::<D>(ours, &msg, &bad));
            signed += 1;
        }
        signed
    }

    trait JoseDigest: super::padding::JoseHash + spki::der::oid::AssociatedOid + sha2::digest::FixedOutputReset {}
    impl JoseDigest for Sha256 {}
    impl JoseDigest for Sha384 {}
    impl JoseDigest for Sha512 {}

    /// Keys of every width class, including moduli whose bit length is 1 mod 8 (the encoded
    /// message is then one byte shorter than the signature) and 7 mod 8.
    #[test]
    fn pss_and_pkcs1v15_signatures_by_rsa_with_random_keys() {
        let mut rng = TestRng(5);
        for (bits, e) in [(1024, 65537u64), (1025, 3), (2047, 65537), (2048, 65537), (2048, 3), (2049, 17), (3072, 65537), (4096, 65537)] {
            let key = ::rsa::PrivateKey::new_with_exp(&mut rng, bits, BoxedUint::from(e)).unwrap();
            let n = key.n().to_be_bytes_trimmed_vartime();
            let ours = RsaKey::new(&n, &e.to_be_bytes()).unwrap();
            assert_eq!(ours.bits(), key.n().bit_width_vartime(), "{bits}");
            let signed = sign_and_verify::<Sha256>(&mut rng, &key, &ours)
                + sign_and_verify::<Sha384>(&mut rng, &key, &ours)
                + sign_and_verify::<Sha512>(&mut rng, &key, &ours);
            assert!(signed >= 20, "{bits} bits: only {signed} signatures checked");
        }
    }
}
