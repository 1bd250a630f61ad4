//! The authentication decision for one token, pure: given the parsed token, the compiled
//! configuration, what is known of the key sets and the time, decide allow / deny / wait.


pub mod claims;
pub mod dpop;
pub mod extract;
pub mod jws;
pub mod keys;
pub mod strict_json;
pub mod trust;
pub mod verify;

use crate::config::{FilterConfig, JwksSource};
use crate::error::{AuthError, Outage};
use trust::{Trust, TrustId};
use crate::authn::jws::Jws;
use crate::authn::keys::jwks::KeySet;
use crate::authn::keys::PublicKey;
use crate::authn::verify::{verify_signature, HostCrypto};
use crate::authz::Caller;
use serde_json::{Map, Value};
use std::sync::Arc;

/// What a worker knows of one JWKS URL's keys at this moment.
#[derive(Debug, Clone)]
pub enum KeyLookup {
    /// The key set, and until when (ms since the epoch) a verification made with it may be
    /// reused: its expiry while fresh, a short while when it is a stale copy served through an
    /// outage. `u64::MAX`: no bound (keys that never change).
    Ready(Arc<KeySet>, u64),
    /// Not here yet (a fetch is needed or under way): the request must wait.
    Pending,
    /// The last fetch failed and nothing usable is cached.
    Unavailable(Outage),
}

/// What may be done about a token whose `kid` no key set has (the store answers it, see
/// `store::jwks::JwksCache::refetch_for_unknown_kid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KidRefetch {
    /// A refetch (key rotation) is under way: decide again when it lands.
    Underway,
    /// The refetch failed: the keys cannot be had now (503, not 401).
    Failed(Outage),
    /// No refetch now (one was made recently): refuse the token.
    Refused,
}

/// The key sets as the decision sees them.
pub trait KeySets {
    fn lookup(&mut self, source: &JwksSource) -> KeyLookup;
    /// The token's `kid` is in none of the key sets, `source`'s among them.
    fn refetch_for_unknown_kid(&mut self, _source: &JwksSource) -> KidRefetch {
        KidRefetch::Refused
    }
}

/// A plain lookup function never refetches (tests, and hosts without a cache).
impl KeyLookup {
    /// Keys without a reuse bound (tests, fixed key sets).
    pub fn ready(keys: Arc<KeySet>) -> Self {
        KeyLookup::Ready(keys, u64::MAX)
    }
}

impl<F: FnMut(&JwksSource) -> KeyLookup> KeySets for F {
    fn lookup(&mut self, source: &JwksSource) -> KeyLookup {
        self(source)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Signature and registered claims are good; authorization comes next. The verification
    /// may be reused (verified-token cache) until `keys_until_ms`: no cached verification
    /// outlives the key set it was made with.
    Verified { keys_until_ms: u64, trust: TrustId },
    Deny(AuthError),
    /// Keys for this token are being fetched; decide again when they arrive.
    NeedKeys,
}

/// Try inline keys that accept the token's algorithm; `None` when there are none to try.
fn try_inline(jws: &Jws, keys: &[Arc<PublicKey>], host: &dyn HostCrypto) -> Option<Result<u64, AuthError>> {
    let mut candidates = keys.iter().filter(|k| k.accepts(jws.alg)).peekable();
    candidates.peek()?;
    Some(if candidates.any(|k| verify_signature(jws, k, host).is_ok()) {
        Ok(u64::MAX) // inline keys change only with the configuration
    } else {
        Err(AuthError::BadSignature)
    })
}

/// Find the key (LiteLLM's URL order and `parse_keys` rules) and verify the signature.
fn verify_with_configured_keys(
    jws: &Jws,
    config: &Trust,
    keys: &mut dyn KeySets,
    host: &dyn HostCrypto,
) -> Result<u64, Decision> {
    let deny = |e| Decision::Deny(e);
    // Inline PEM keys have no kid: they serve tokens without one.
    if jws.kid.is_none() {
        if let Some(result) = try_inline(jws, config.inline_keys, host) {
            return result.map_err(deny);
        }
    }
    let mut unavailable = None;
    let mut known: Vec<String> = Vec::new();
    for source in config.jwks {
        match keys.lookup(source) {
            KeyLookup::Ready(set, until_ms) => match set.select(jws.kid.as_deref()) {
                Some(entry) => {
                    let key = entry.key.as_ref().map_err(|e| deny(AuthError::UnusableKey(e.clone())))?;
                    if !key.accepts(jws.alg) {
                        return Err(deny(AuthError::AlgNotAllowed));
                    }
                    return verify_signature(jws, key, host).map(|()| until_ms).map_err(deny);
                }
                None => known.extend(set.kids().map(str::to_owned)),
            },
            KeyLookup::Pending => return Err(Decision::NeedKeys),
            KeyLookup::Unavailable(why) => unavailable = unavailable.or(Some(why)),
        }
    }
    // A token with a kid no JWKS knows may still be signed by an inline key.
    if jws.kid.is_some() {
        if let Some(result) = try_inline(jws, config.inline_keys, host) {
            return result.map_err(deny);
        }
        // Or by a key the IdP has just rotated in: one rate-limited refetch.
        if unavailable.is_none() {
            let mut refetching = false;
            for source in config.jwks {
                match keys.refetch_for_unknown_kid(source) {
                    KidRefetch::Underway => refetching = true,
                    KidRefetch::Failed(why) => unavailable = unavailable.or(Some(why)),
                    KidRefetch::Refused => {}
                }
            }
            if refetching {
                return Err(Decision::NeedKeys);
            }
        }
    }
    // Can't tell "unknown key" from "the IdP is down": answer 503, never a wrong 401 or a 200.
    Err(deny(match unavailable {
        Some(why) => AuthError::KeysUnavailable(why),
        None => AuthError::NoMatchingKey { kid: jws.kid.clone(), known },
    }))
}

/// Decide one token. `now` is seconds since the epoch.
pub fn authenticate(
    jws: &Jws,
    config: &FilterConfig,
    keys: &mut dyn KeySets,
    host: &dyn HostCrypto,
    now: u64,
) -> Decision {
    // The unverified `iss` only chooses whose keys to try: a token verifies with that
    // issuer's keys or not at all.
    let id = match trust::select_id(config, &jws.claims) {
        Ok(id) => id,
        Err(e) => return Decision::Deny(e),
    };
    let trust = trust::trust(config, id);
    let keys_until_ms = match verify_with_configured_keys(jws, &trust, keys, host) {
        Ok(until) => until,
        Err(decision) => return decision,
    };
    if let Err(e) = claims::check_type(jws.typ.as_deref(), trust.claim_rules).and_then(|()| claims::validate(&jws.claims, trust.claim_rules, now)) {
        return Decision::Deny(e);
    }
    Decision::Verified { keys_until_ms, trust: id }
}

/// Where a token's claims come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsFrom {
    /// A JWT whose signature verified: its registered claims (`exp`, `nbf`, `aud`, …) are
    /// checked again on every verified-token cache hit.
    Jwt,
    /// An opaque token the IdP's OIDC UserInfo endpoint answered for (`oidc_userinfo_enabled`):
    /// the answer carries no registered claims, so only the policy (`custom_validate`
    /// included) applies, as in LiteLLM.
    UserInfo,
}

/// A token that verified, with what authorization reads from it worked out once (and kept
/// with it in the verified-token cache): its claims, whose rules it takes and its scopes and
/// role.
#[derive(Debug)]
pub struct Verified {
    pub claims: Map<String, Value>,
    pub from: ClaimsFrom,
    pub trust: TrustId,
    pub caller: Caller,
}

impl Verified {
    pub fn new(claims: Map<String, Value>, from: ClaimsFrom, trust: TrustId, config: &FilterConfig) -> Self {
        let caller = trust::trust(config, trust).policy.caller(&claims);
        Verified { claims, from, trust, caller }
    }

    /// The rules this token takes.
    pub fn trust<'c>(&self, config: &'c FilterConfig) -> Trust<'c> {
        trust::trust(config, self.trust)
    }

    /// Whether its registered claims still hold at `now` (seconds): a JWT's time claims are
    /// checked on every use; UserInfo answers have none (their cache lifetime bounds them).
    pub fn still_valid(&self, config: &FilterConfig, now: u64) -> Result<(), AuthError> {
        match self.from {
            ClaimsFrom::Jwt => claims::validate(&self.claims, self.trust(config).claim_rules, now),
            ClaimsFrom::UserInfo => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile;
    use crate::testkeys::{now, token, vectors};
    use crate::authn::verify::GuestOnly;
    use serde_json::{json, Value};

    fn config(v: Value) -> FilterConfig {
        compile(v.to_string().as_bytes(), &|_| None).unwrap()
    }

    fn jwks(names: &[&str]) -> Arc<KeySet> {
        let v = vectors();
        let keys: Vec<Value> = names.iter().map(|n| v["keys"][*n]["jwk"].clone()).collect();
        Arc::new(KeySet::parse(json!({"keys": keys}).to_string().as_bytes()).unwrap())
    }

    fn decide(cfg: &FilterConfig, tok: &str, mut lookup: impl FnMut(&JwksSource) -> KeyLookup) -> Decision {
        let jws = crate::authn::jws::parse(&token(tok)).unwrap();
        authenticate(&jws, cfg, &mut lookup, &GuestOnly, now())
    }

    fn two_urls() -> FilterConfig {
        config(json!({"public_key_url": "http://a/jwks,http://b/jwks"}))
    }

    #[test]
    fn token_types_are_checked_after_the_signature() {
        let cfg = config(json!({"public_key_url": "http://a/jwks", "token_types": ["at+jwt"]}));
        let keys = |_: &JwksSource| KeyLookup::ready(jwks(&["rsa"]));
        assert_eq!(decide(&cfg, "RS256", keys), Decision::Deny(AuthError::TokenType(Some("JWT".into()))), "the fixtures say typ JWT");
        assert_eq!(decide(&cfg, "RS256_by_other_key", keys), Decision::Deny(AuthError::BadSignature), "nothing said before the signature");
        let jwt = config(json!({"public_key_url": "http://a/jwks", "token_types": ["application/JWT"]}));
        assert!(matches!(decide(&jwt, "RS256", keys), Decision::Verified { .. }));
    }

    #[test]
    fn verifies_a_valid_token() {
        let cfg = config(json!({"public_key_url": "http://a/jwks"}));
        let d = decide(&cfg, "RS256", |_| KeyLookup::ready(jwks(&["rsa", "p256"])));
        assert_eq!(d, Decision::Verified { keys_until_ms: u64::MAX, trust: TrustId::Global });
    }

    #[test]
    fn a_verification_is_reusable_only_as_long_as_the_key_set_it_was_made_with() {
        let cfg = two_urls();
        let d = decide(&cfg, "ES256", |s| {
            let until = if s.url.starts_with("http://a") { 5_000 } else { 7_000 };
            KeyLookup::Ready(if until == 5_000 { jwks(&["rsa"]) } else { jwks(&["p256"]) }, until)
        });
        assert_eq!(d, Decision::Verified { keys_until_ms: 7_000, trust: TrustId::Global }, "the set that had the key decides");
    }

    #[test]
    fn key_in_the_second_url_is_found_in_order() {
        let mut asked = vec![];
        let d = decide(&two_urls(), "ES256", |s| {
            asked.push(s.url.clone());
            if s.url.starts_with("http://a") { KeyLookup::ready(jwks(&["rsa", "ed25519"])) } else { KeyLookup::ready(jwks(&["p256", "p384"])) }
        });
        assert!(matches!(d, Decision::Verified { .. }), "{d:?}");
        assert_eq!(asked, ["http://a/jwks", "http://b/jwks"]);
    }

    #[test]
    fn waits_when_keys_are_not_here_yet() {
        let d = decide(&two_urls(), "ES256", |s| {
            if s.url.starts_with("http://a") { KeyLookup::ready(jwks(&["rsa", "ed25519"])) } else { KeyLookup::Pending }
        });
        assert_eq!(d, Decision::NeedKeys);
    }

    #[test]
    fn found_in_first_url_does_not_wait_for_the_second() {
        let d = decide(&two_urls(), "RS256", |s| {
            if s.url.starts_with("http://a") { KeyLookup::ready(jwks(&["rsa", "ed25519"])) } else { KeyLookup::Pending }
        });
        assert!(matches!(d, Decision::Verified { .. }));
    }

    #[test]
    fn unknown_kid_lists_known_kids_and_outage_is_503_not_401() {
        let d = decide(&two_urls(), "ES384", |_| KeyLookup::ready(jwks(&["rsa", "ed25519"])));
        assert_eq!(
            d,
            Decision::Deny(AuthError::NoMatchingKey {
                kid: Some("ec-384".into()),
                known: vec!["rsa-1".into(), "ed-1".into(), "rsa-1".into(), "ed-1".into()]
            })
        );
        let d = decide(&two_urls(), "ES384", |s| {
            if s.url.starts_with("http://a") { KeyLookup::ready(jwks(&["rsa", "ed25519"])) } else { KeyLookup::Unavailable(Outage::transient("503 from IdP")) }
        });
        assert_eq!(d, Decision::Deny(AuthError::KeysUnavailable(Outage::transient("503 from IdP"))));
    }

    /// Key sets that answer an unknown kid with a refetch (`refetching`) and record who asked.
    struct Rotating {
        answer: KidRefetch,
        asked: Vec<String>,
    }

    impl KeySets for Rotating {
        fn lookup(&mut self, _: &JwksSource) -> KeyLookup {
            KeyLookup::ready(jwks(&["rsa", "ed25519"]))
        }
        fn refetch_for_unknown_kid(&mut self, source: &JwksSource) -> KidRefetch {
            self.asked.push(source.url.clone());
            self.answer.clone()
        }
    }

    #[test]
    fn unknown_kid_waits_for_a_refetch_when_one_is_under_way() {
        let jws = crate::authn::jws::parse(&token("ES384")).unwrap();
        let mut keys = Rotating { answer: KidRefetch::Underway, asked: vec![] };
        assert_eq!(authenticate(&jws, &two_urls(), &mut keys, &GuestOnly, now()), Decision::NeedKeys);
        assert_eq!(keys.asked, ["http://a/jwks", "http://b/jwks"], "every URL may have rotated");
        let mut keys = Rotating { answer: KidRefetch::Refused, asked: vec![] };
        let d = authenticate(&jws, &two_urls(), &mut keys, &GuestOnly, now());
        assert!(matches!(d, Decision::Deny(AuthError::NoMatchingKey { .. })), "{d:?}");
        let mut keys = Rotating { answer: KidRefetch::Failed(Outage::transient("down")), asked: vec![] };
        let d = authenticate(&jws, &two_urls(), &mut keys, &GuestOnly, now());
        assert_eq!(d, Decision::Deny(AuthError::KeysUnavailable(Outage::transient("down"))), "the refetch failed: 503");
        let known = crate::authn::jws::parse(&token("RS256")).unwrap();
        let mut keys = Rotating { answer: KidRefetch::Underway, asked: vec![] };
        assert_eq!(authenticate(&known, &two_urls(), &mut keys, &GuestOnly, now()), Decision::Verified { keys_until_ms: u64::MAX, trust: TrustId::Global });
        assert!(keys.asked.is_empty(), "a known kid never asks for a refetch");
    }

    #[test]
    fn key_of_another_kind_under_the_tokens_kid_is_alg_not_allowed() {
        let cfg = config(json!({"public_key_url": "http://a/jwks"}));
        let v = vectors();
        let mut ec = v["keys"]["p256"]["jwk"].clone();
        ec["kid"] = json!("rsa-1");
        let set = Arc::new(KeySet::parse(json!({"keys": [ec, v["keys"]["ed25519"]["jwk"]]}).to_string().as_bytes()).unwrap());
        let d = decide(&cfg, "RS256", |_| KeyLookup::ready(set.clone()));
        assert_eq!(d, Decision::Deny(AuthError::AlgNotAllowed));
    }

    #[test]
    fn bad_signature_and_time_claims_are_denied() {
        let cfg = config(json!({"public_key_url": "http://a/jwks"}));
        let d = decide(&cfg, "RS256_by_other_key", |_| KeyLookup::ready(jwks(&["rsa"])));
        assert_eq!(d, Decision::Deny(AuthError::BadSignature));

        let jws = crate::authn::jws::parse(&token("RS256")).unwrap();
        let mut lookup = |_: &JwksSource| KeyLookup::ready(jwks(&["rsa"]));
        let later = now() + 3600;
        assert_eq!(authenticate(&jws, &cfg, &mut lookup, &GuestOnly, later), Decision::Deny(AuthError::Expired));
    }

    #[test]
    fn audience_rule_applies_after_the_signature() {
        let cfg = config(json!({"public_key_url": "http://a/jwks", "audience": "api"}));
        let d = decide(&cfg, "RS256", |_| KeyLookup::ready(jwks(&["rsa"])));
        assert_eq!(d, Decision::Deny(AuthError::AudienceMissing));
    }

    #[test]
    fn inline_pem_and_certificate_keys_verify_tokens_without_kid() {
        let v = vectors();
        let cfg = config(json!({"public_keys": [v["keys"]["p256"]["pem"], v["keys"]["rsa"]["cert"]]}));
        let mut never = |_: &JwksSource| -> KeyLookup { panic!("no JWKS configured") };
        let jws = crate::authn::jws::parse(&token("RS256_nokid")).unwrap();
        assert!(matches!(authenticate(&jws, &cfg, &mut never, &GuestOnly, now()), Decision::Verified { .. }));
        // A kid no JWKS knows still falls back to inline keys.
        assert!(matches!(decide(&cfg, "RS256", |_| KeyLookup::Pending), Decision::Verified { .. }));
        assert_eq!(decide(&cfg, "RS256_by_other_key", |_| KeyLookup::Pending), Decision::Deny(AuthError::BadSignature));
        // No inline key of the token's kind: no key.
        assert!(matches!(decide(&cfg, "EdDSA", |_| KeyLookup::Pending), Decision::Deny(AuthError::NoMatchingKey { .. })));
    }
}
