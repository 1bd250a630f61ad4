//! OIDC UserInfo answers for opaque tokens, in the host's shared data, so that every worker of an
//! Envoy process sees one answer per token and makes one call for it.
//!
//! | key                                          | value                                        |
//! |----------------------------------------------|----------------------------------------------|
//! | `llm_jwt_auth/v1/userinfo/<ns>/<slot>`       | JSON [`Stored`]: the token's SHA-256, the claims (or the IdP's refusal), until when it may be used |
//! | `llm_jwt_auth/v1/userinfo-fetch/<ns>/<slot>` | the slot's fetch lease ([`crate::store::FetchState`]) |
//!
//! Shared data has no delete, and opaque tokens come from anybody: one key per token would let a
//! client who sends random tokens grow Envoy's memory without bound. So answers live in a fixed
//! table of [`SLOTS`] slots chosen by the token's hash, each holding the full hash it is for; two
//! tokens sharing a slot cost each other a refetch, nothing else. A refusal never replaces a
//! fresh answer for another token, so refused tokens cannot push callers out. The token itself is
//! never stored: only its hash (as LiteLLM's cache key is).

use crate::error::Outage;
use crate::store::{FetchState, Lease, SharedData};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const USERINFO_PREFIX: &str = "llm_jwt_auth/v1/userinfo/";
pub const USERINFO_FETCH_PREFIX: &str = "llm_jwt_auth/v1/userinfo-fetch/";
/// Slots in the table (the bound on shared memory: at most this many answers are kept).
pub const SLOTS: u16 = 2048;
/// How long an IdP's refusal is remembered (a burst of one bad token asks once).
pub const REFUSAL_TTL_MS: u64 = 5_000;

/// A token's SHA-256, hex: LiteLLM's cache key without its prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        TokenHash(super::sha256_hex(token, 32))
    }

    fn slot(&self) -> u16 {
        // The hex digest's first four digits, modulo the table size.
        u16::from_str_radix(self.0.get(..4).unwrap_or("0"), 16).unwrap_or(0) % SLOTS
    }
}

/// What the IdP said about one token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Said {
    Claims(Map<String, Value>),
    /// Its HTTP status (401, 403, …): the token is not good.
    Refused(u16),
}

/// One slot's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub hash: String,
    pub until_ms: u64,
    pub said: Said,
}

/// What a worker knows of one token's UserInfo now.
#[derive(Debug, Clone, PartialEq)]
pub enum UserInfoLookup {
    /// The claims, usable until the time given (ms).
    Found(Map<String, Value>, u64),
    Refused(u16),
    /// Not known: a fetch is needed or under way.
    Pending,
    /// The endpoint is failing (the back-off after a failed call).
    Unavailable(Outage),
}

/// The UserInfo table of one endpoint.
pub struct UserInfoStore {
    /// Shared-data key segment naming the endpoint, so that a reload onto another IdP is never
    /// answered with the old one's claims.
    namespace: String,
}

impl UserInfoStore {
    pub fn new(endpoint: &str) -> Self {
        UserInfoStore { namespace: format!("{}/", super::sha256_hex(endpoint, 6)) }
    }

    fn key(&self, hash: &TokenHash) -> String {
        format!("{USERINFO_PREFIX}{}{}", self.namespace, hash.slot())
    }

    fn lease(&self, hash: &TokenHash) -> Lease {
        self.lease_of(hash.slot())
    }

    fn lease_of(&self, slot: u16) -> Lease {
        Lease::new(format!("{USERINFO_FETCH_PREFIX}{}{slot}", self.namespace))
    }

    /// The slot's value, if it is for this token and still usable at `now_ms`.
    fn read(&self, shared: &dyn SharedData, hash: &TokenHash, now_ms: u64) -> Option<(Said, u64)> {
        let stored = slot_value(shared, &self.key(hash))?;
        (stored.hash == hash.0 && now_ms < stored.until_ms).then_some((stored.said, stored.until_ms))
    }

    pub fn lookup(&self, shared: &dyn SharedData, hash: &TokenHash, now_ms: u64) -> UserInfoLookup {
        match self.read(shared, hash, now_ms) {
            Some((Said::Claims(claims), until_ms)) => return UserInfoLookup::Found(claims, until_ms),
            Some((Said::Refused(status), _)) => return UserInfoLookup::Refused(status),
            None => {}
        }
        match self.lease(hash).state(shared) {
            FetchState::Failed { retry_ms, outage } if now_ms < retry_ms => UserInfoLookup::Unavailable(outage),
            _ => UserInfoLookup::Pending,
        }
    }

    /// Create every slot's lease key, once per process (a later worker, or a reload onto the
    /// same endpoint, finds the last one and does nothing). Envoy's shared data compares CAS
    /// values only for keys that exist: created lazily, the first take of a slot by two workers
    /// at once could succeed for both. Here, before any request, it is a real CAS from the start.
    pub fn init(&self, shared: &dyn SharedData) {
        if shared.get(self.lease_of(SLOTS - 1).key()).1.is_some() {
            return;
        }
        for slot in 0..SLOTS {
            self.lease_of(slot).init(shared);
        }
    }

    /// Whether this worker should ask the IdP about the token now (it takes the slot's lease).
    pub fn try_take(&self, shared: &dyn SharedData, hash: &TokenHash, now_ms: u64, lease_ms: u64) -> bool {
        if self.read(shared, hash, now_ms).is_some() {
            return false;
        }
        self.lease(hash).try_take(shared, now_ms, lease_ms)
    }

    /// Store what the IdP answered (`Err`: it could not be asked; remembered for the back-off).
    pub fn complete(&self, shared: &dyn SharedData, hash: &TokenHash, now_ms: u64, ttl_ms: u64, outcome: Result<Said, Outage>) {
        let lease = self.lease(hash);
        let said = match outcome {
            Ok(said) => said,
            Err(outage) => {
                lease.failed(shared, now_ms, outage);
                return;
            }
        };
        let key = self.key(hash);
        let (current, cas) = shared.get(&key);
        let current: Option<Stored> = current.and_then(|v| serde_json::from_slice(&v).ok());
        let keeps_another = current.is_some_and(|c| c.hash != hash.0 && now_ms < c.until_ms && matches!(c.said, Said::Claims(_)));
        if matches!(said, Said::Refused(_)) && keeps_another {
            lease.succeeded(shared);
            return; // a refusal never pushes out a caller's fresh answer
        }
        let until_ms = now_ms + if matches!(said, Said::Refused(_)) { REFUSAL_TTL_MS.min(ttl_ms) } else { ttl_ms };
        let stored = Stored { hash: hash.0.clone(), until_ms, said };
        if let Ok(value) = serde_json::to_vec(&stored) {
            // A lost CAS race means another worker stored an answer for this slot just now: keep it.
            let _ = shared.set(&key, &value, cas);
        }
        lease.succeeded(shared);
    }
}

fn slot_value(shared: &dyn SharedData, key: &str) -> Option<Stored> {
    serde_json::from_slice(&shared.get(key).0?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mock::MockShared;
    use crate::store::RETRY_AFTER_FAILURE_MS;
    use serde_json::json;

    const TTL: u64 = 300_000;

    fn claims(sub: &str) -> Map<String, Value> {
        json!({"sub": sub, "email": format!("{sub}@corp.example")}).as_object().cloned().unwrap()
    }

    /// Two different tokens whose hashes share a slot.
    fn colliding() -> (TokenHash, TokenHash) {
        let first = TokenHash::of("token-0");
        let other = (1..).map(|i| TokenHash::of(&format!("token-{i}"))).find(|h| h.slot() == first.slot()).unwrap();
        (first, other)
    }

    #[test]
    fn the_hash_is_litellms_sha256_hex_and_the_token_is_never_stored() {
        let hash = TokenHash::of("opaque-token-value");
        // Python's hashlib.sha256(b"opaque-token-value").hexdigest(), as LiteLLM computes it.
        assert_eq!(hash.0, "0fdde61b3874c8ae97ab0b89a3821f7a81b9423f7686de6c98fcea9b3c16982d");
        let shared = MockShared::default();
        let store = UserInfoStore::new("http://idp/me");
        assert!(store.try_take(&shared, &hash, 0, 1000));
        store.complete(&shared, &hash, 0, TTL, Ok(Said::Claims(claims("alice"))));
        for (key, (value, _)) in shared.data.borrow().iter() {
            assert!(!key.contains("opaque-token-value") && !String::from_utf8_lossy(value).contains("opaque-token-value"));
        }
    }

    #[test]
    fn an_answer_is_found_until_its_ttl_and_one_worker_fetches_it() {
        let shared = MockShared::default();
        let store = UserInfoStore::new("http://idp/me");
        let hash = TokenHash::of("t");
        assert_eq!(store.lookup(&shared, &hash, 0), UserInfoLookup::Pending);
        assert!(store.try_take(&shared, &hash, 0, 1000));
        assert!(!store.try_take(&shared, &hash, 10, 1000), "another worker waits for the one fetch");
        store.complete(&shared, &hash, 20, TTL, Ok(Said::Claims(claims("alice"))));
        assert_eq!(store.lookup(&shared, &hash, 20 + TTL - 1), UserInfoLookup::Found(claims("alice"), 20 + TTL));
        assert!(!store.try_take(&shared, &hash, 30, 1000), "fresh: nothing to fetch");
        assert_eq!(store.lookup(&shared, &hash, 20 + TTL), UserInfoLookup::Pending, "expired: ask again");
    }

    #[test]
    fn refusals_are_remembered_briefly_and_never_push_out_a_fresh_answer() {
        let shared = MockShared::default();
        let store = UserInfoStore::new("http://idp/me");
        let (good, bad) = colliding();
        store.complete(&shared, &good, 0, TTL, Ok(Said::Claims(claims("alice"))));
        store.complete(&shared, &bad, 0, TTL, Ok(Said::Refused(401)));
        assert!(matches!(store.lookup(&shared, &good, 1), UserInfoLookup::Found(..)), "the caller keeps its answer");
        assert_eq!(store.lookup(&shared, &bad, 1), UserInfoLookup::Pending, "the refusal was not kept");
        let lone = TokenHash::of("lone");
        store.complete(&shared, &lone, 0, TTL, Ok(Said::Refused(403)));
        assert_eq!(store.lookup(&shared, &lone, REFUSAL_TTL_MS - 1), UserInfoLookup::Refused(403));
        assert_eq!(store.lookup(&shared, &lone, REFUSAL_TTL_MS), UserInfoLookup::Pending);
    }

    #[test]
    fn a_token_sharing_a_slot_is_never_answered_with_the_other_ones_claims() {
        let shared = MockShared::default();
        let store = UserInfoStore::new("http://idp/me");
        let (a, b) = colliding();
        store.complete(&shared, &a, 0, TTL, Ok(Said::Claims(claims("alice"))));
        assert_eq!(store.lookup(&shared, &b, 1), UserInfoLookup::Pending);
        assert!(store.try_take(&shared, &b, 1, 1000));
        store.complete(&shared, &b, 2, TTL, Ok(Said::Claims(claims("bob"))));
        assert!(matches!(store.lookup(&shared, &b, 3), UserInfoLookup::Found(c, _) if c == claims("bob")));
        assert_eq!(store.lookup(&shared, &a, 3), UserInfoLookup::Pending, "a refetch, never bob's claims");
    }

    #[test]
    fn an_outage_is_unavailable_for_the_back_off_then_pending() {
        let shared = MockShared::default();
        let store = UserInfoStore::new("http://idp/me");
        let hash = TokenHash::of("t");
        assert!(store.try_take(&shared, &hash, 0, 1000));
        store.complete(&shared, &hash, 5, TTL, Err(Outage::transient("HTTP 502")));
        assert!(matches!(store.lookup(&shared, &hash, 6), UserInfoLookup::Unavailable(o) if o.detail == "HTTP 502"));
        assert!(!store.try_take(&shared, &hash, 6, 1000), "backing off");
        assert_eq!(store.lookup(&shared, &hash, 5 + RETRY_AFTER_FAILURE_MS), UserInfoLookup::Pending);
        assert!(store.try_take(&shared, &hash, 5 + RETRY_AFTER_FAILURE_MS, 1000));
    }

    #[test]
    fn the_leases_exist_before_the_first_take_so_two_workers_never_both_win_it() {
        let shared = MockShared::default();
        let store = UserInfoStore::new("http://idp/me");
        store.init(&shared);
        assert_eq!(shared.data.borrow().len(), usize::from(SLOTS));
        let lease = store.lease(&TokenHash::of("t"));
        // Two workers read the idle lease, then both try to take it: only the first CAS holds.
        let (_, cas) = shared.get(lease.key());
        assert!(cas.is_some(), "created, so the CAS is compared");
        assert!(shared.set(lease.key(), b"first", cas).is_ok());
        assert!(shared.set(lease.key(), b"second", cas).is_err());
        let before = shared.data.borrow().clone();
        UserInfoStore::new("http://idp/me").init(&shared);
        assert_eq!(*shared.data.borrow(), before, "a later worker changes nothing");
    }

    #[test]
    fn endpoints_do_not_share_answers() {
        let shared = MockShared::default();
        let hash = TokenHash::of("t");
        UserInfoStore::new("http://a/me").complete(&shared, &hash, 0, TTL, Ok(Said::Claims(claims("alice"))));
        assert_eq!(UserInfoStore::new("http://b/me").lookup(&shared, &hash, 1), UserInfoLookup::Pending);
    }
}
