//! JWKS in the host's shared data: one copy per Envoy process, one fetch at a time.
//!
//! Shared data is a process-wide key/value store (per `vm_id`) with compare-and-swap and no TTL,
//! so both freshness and fetch coordination live in the values:
//!
//! | key                                  | value                                            |
//! |--------------------------------------|--------------------------------------------------|
//! | `llm_jwt_auth/v1/jwks/<url>`         | `<fetched_ms> <expires_ms> <stale_until_ms>\n<JWKS body>` |
//! | `llm_jwt_auth/v1/jwks-fetch/<url>`   | empty (idle), `fetching <until_ms>`, or `failed <retry_ms> <why>` |
//! | `llm_jwt_auth/v1/jwks-kid/<url>`     | `<requested_ms>`: a token's `kid` was unknown then (key rotation?) |
//!
//! A worker that needs keys takes the fetch lease with CAS (`fetching`); every other worker
//! sees the lease and waits for the record. A failed fetch is remembered until `retry_ms`, so an
//! outage costs at most one fetch per retry interval per process, not one per request. A refresh
//! starts at nine tenths of the TTL, so while the IdP answers the next key set is there before
//! `expires_ms`; a key set is never used past `expires_ms` plus one fetch timeout unless the
//! source is *failing* (its last fetch failed, or the fetch under way retries one): then the
//! last good copy is served until `stale_until_ms` (newest LiteLLM's `public_key_stale_ttl`).
//! Only bodies that parse as a key set are ever written as records. Each worker keeps the
//! parsed key set locally until its expiry, and every tick adopts a newer shared copy
//! ([`JwksCache::sync`]), so that its verified-token cache — whose entries are bound to the key
//! set's generation and expiry — never admits a token with a key the IdP has retired.
//!
//! A token whose `kid` is in no key set may be signed with a key the IdP just rotated in. It asks
//! for one refetch (the `jwks-kid` stamp, CAS-written) and waits for it — at most one per
//! `kid_refetch_interval` per URL per Envoy process, and never within that interval of the last
//! fetch, so a flood of made-up kids costs no more than one fetch per interval.

use crate::authn::{KeyLookup, KidRefetch};
use crate::error::Outage;
use crate::authn::keys::jwks::KeySet;
pub use crate::store::{FetchState, Lease, SharedData, RETRY_AFTER_FAILURE_MS};
use std::collections::HashMap;
use std::sync::Arc;

pub const KEY_PREFIX: &str = "llm_jwt_auth/v1/jwks/";
pub const FETCH_PREFIX: &str = "llm_jwt_auth/v1/jwks-fetch/";
pub const KID_PREFIX: &str = "llm_jwt_auth/v1/jwks-kid/";

/// The fetch lease of `url`'s key set.
fn lease(url: &str) -> Lease {
    Lease::new(format!("{FETCH_PREFIX}{url}"))
}

/// The shared record of one URL's key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub fetched_ms: u64,
    pub expires_ms: u64,
    /// Served until then when a refresh is under way or failing.
    pub stale_until_ms: u64,
    pub body: Vec<u8>,
}

impl Record {
    /// When a background refresh is due: at nine tenths of the TTL.
    pub fn refresh_at_ms(&self) -> u64 {
        self.expires_ms.saturating_sub(self.expires_ms.saturating_sub(self.fetched_ms) / 10)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\n", self.fetched_ms, self.expires_ms, self.stale_until_ms).into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let newline = bytes.iter().position(|b| *b == b'\n')?;
        let (head, body) = bytes.split_at(newline);
        let head = std::str::from_utf8(head).ok()?;
        let mut fields = head.split(' ').map(str::parse::<u64>);
        let (Some(Ok(fetched_ms)), Some(Ok(expires_ms)), Some(Ok(stale_until_ms)), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        Some(Record { fetched_ms, expires_ms, stale_until_ms, body: body.get(1..)?.to_vec() })
    }
}

struct Local {
    cas: Option<u32>,
    fetched_ms: u64,
    expires_ms: u64,
    refresh_at_ms: u64,
    keys: Arc<KeySet>,
}

/// A worker's view of the shared key sets.
#[derive(Default)]
pub struct JwksCache {
    local: HashMap<String, Local>,
    /// Bumped whenever this worker's view of any key set changes; verified-token cache
    /// entries from an older generation are not used.
    generation: u64,
    /// How long past its expiry a key set may still be used while its refresh is under way
    /// and the source has not failed (one fetch timeout).
    grace_ms: u64,
}

/// What a worker should do about one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    Nothing,
    /// No fresh keys and nobody is fetching: try to take the lease and fetch.
    Fetch,
}

impl JwksCache {
    /// `grace_ms`: one fetch timeout (see the field).
    pub fn new(grace_ms: u64) -> Self {
        JwksCache { grace_ms, ..JwksCache::default() }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What is known of `url`'s keys now, adopting a fresher shared copy when there is one.
    ///
    /// While the source answers, no key set is used past its expiry plus one fetch timeout
    /// (the refresh starts at nine tenths of the TTL, so normally the next set is there before
    /// that). A stale copy is served longer only while the source is failing, up to
    /// `public_key_stale_ttl`; a verification made with it may be reused for one retry interval.
    pub fn lookup(&mut self, store: &dyn SharedData, url: &str, now_ms: u64) -> KeyLookup {
        if let Some(local) = self.local.get(url) {
            if now_ms < local.expires_ms {
                return KeyLookup::Ready(local.keys.clone(), local.expires_ms);
            }
        }
        let (value, cas) = store.get(&format!("{KEY_PREFIX}{url}"));
        let Some(record) = value.as_deref().and_then(Record::decode) else {
            return self.fetch_state_lookup(store, url, now_ms);
        };
        let until_ms = if now_ms < record.expires_ms {
            record.expires_ms
        } else if now_ms < record.stale_until_ms
            && (now_ms < record.expires_ms.saturating_add(self.grace_ms) || fetch_state(store, url).failing())
        {
            record.stale_until_ms.min(now_ms + RETRY_AFTER_FAILURE_MS)
        } else {
            return self.fetch_state_lookup(store, url, now_ms);
        };
        match self.adopt(url, &record, cas) {
            Some(keys) => KeyLookup::Ready(keys, until_ms),
            // Records are validated before they are written; a bad one is a concurrent
            // writer's garbage: treat as missing.
            None => self.fetch_state_lookup(store, url, now_ms),
        }
    }

    /// Make `record` (read with `cas`) this worker's copy of `url`'s keys, parsing it unless it
    /// is the copy already held. A new key set starts a new generation.
    fn adopt(&mut self, url: &str, record: &Record, cas: Option<u32>) -> Option<Arc<KeySet>> {
        let keys = match self.local.get(url) {
            Some(l) if l.cas.is_some() && l.cas == cas => l.keys.clone(),
            _ => {
                let set = Arc::new(KeySet::parse(&record.body).ok()?);
                self.generation += 1;
                set
            }
        };
        self.local.insert(url.to_string(), Local {
            cas,
            fetched_ms: record.fetched_ms,
            expires_ms: record.expires_ms,
            refresh_at_ms: record.refresh_at_ms(),
            keys: keys.clone(),
        });
        Some(keys)
    }

    /// Adopt a key set another worker stored for `url` since this worker last looked, so that
    /// verified-token cache entries made under the old one stop at once (called every tick:
    /// a worker whose cached tokens keep hitting would otherwise never look).
    pub fn sync(&mut self, store: &dyn SharedData, url: &str) {
        let Some(held) = self.local.get(url).map(|l| l.cas) else { return };
        let (value, cas) = store.get(&format!("{KEY_PREFIX}{url}"));
        if cas == held {
            return;
        }
        if let Some(record) = value.as_deref().and_then(Record::decode) {
            if self.adopt(url, &record, cas).is_some() {
                return;
            }
        }
        // Gone or unreadable: forget the copy, and every verification made with it.
        self.local.remove(url);
        self.generation += 1;
    }

    fn fetch_state_lookup(&self, store: &dyn SharedData, url: &str, now_ms: u64) -> KeyLookup {
        match fetch_state(store, url) {
            FetchState::Failed { retry_ms, outage } if now_ms < retry_ms => KeyLookup::Unavailable(outage),
            _ => KeyLookup::Pending,
        }
    }

    /// Whether `url` needs a fetch that nobody has started: its keys are missing or in the
    /// last tenth of their TTL (refreshed in the background before they expire, so requests
    /// neither wait nor see stale keys in normal operation), and no fetch is under way or
    /// backing off.
    pub fn need(&mut self, store: &dyn SharedData, url: &str, now_ms: u64, kid_interval_ms: u64) -> Need {
        let record = || store.get(&format!("{KEY_PREFIX}{url}")).0.as_deref().and_then(Record::decode);
        // An unknown kid asked for a refetch that has not happened yet (still wanted for one interval).
        let requested = kid_stamp(store, url);
        // Tried once: after a failure the next try waits for the next stamp (one per interval),
        // not for the retry interval — one unknown kid must not start a fetch every second.
        let kid_refetch = requested.is_some_and(|at| {
            now_ms < at.saturating_add(kid_interval_ms)
                && record().is_some_and(|r| r.fetched_ms < at)
                && failed_since(store, url, at).is_none()
        });
        if !kid_refetch && self.local.get(url).is_some_and(|l| now_ms < l.refresh_at_ms) {
            return Need::Nothing;
        }
        let fresh = record().is_some_and(|r| now_ms < r.refresh_at_ms());
        if fresh && !kid_refetch {
            return Need::Nothing;
        }
        match fetch_state(store, url) {
            FetchState::Fetching { until_ms, .. } if now_ms < until_ms => Need::Nothing,
            FetchState::Failed { retry_ms, .. } if now_ms < retry_ms => Need::Nothing,
            _ => Need::Fetch,
        }
    }

    /// A token's `kid` is in none of the key sets, `url`'s among them: ask for one refetch
    /// (rate-limited, see the module docs). [`KidRefetch::Underway`]: decide again when it
    /// lands (or a newer key set is already there); [`KidRefetch::Failed`]: the refetch this kid
    /// asked for failed — the IdP may have rotated while down, which cannot be told from an
    /// unknown key: 503, never a wrong 401; [`KidRefetch::Refused`]: the kid is unknown.
    pub fn refetch_for_unknown_kid(&mut self, store: &dyn SharedData, url: &str, now_ms: u64, interval_ms: u64, lease_ms: u64) -> KidRefetch {
        let Some(local_fetched) = self.local.get(url).map(|l| l.fetched_ms) else { return KidRefetch::Refused };
        if interval_ms == 0 {
            return KidRefetch::Refused;
        }
        let shared_fetched = store.get(&format!("{KEY_PREFIX}{url}")).0.as_deref().and_then(Record::decode).map(|r| r.fetched_ms);
        if shared_fetched.is_some_and(|f| f > local_fetched) {
            // Another worker fetched a newer set: adopt it at the next lookup.
            self.local.remove(url);
            self.generation += 1;
            return KidRefetch::Underway;
        }
        let key = format!("{KID_PREFIX}{url}");
        let (value, cas) = store.get(&key);
        let requested = value.as_deref().and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse::<u64>().ok());
        let recently = |t: u64| now_ms < t.saturating_add(interval_ms);
        if let Some(at) = requested.filter(|at| *at > local_fetched) {
            if let Some(outage) = failed_since(store, url, at) {
                // Failing since the refetch was asked for: until the interval allows the next
                // one, every unknown kid is a 503.
                return match recently(at) {
                    true => KidRefetch::Failed(outage),
                    false => self.ask_refetch(store, &key, cas, now_ms),
                };
            }
            if now_ms < at + lease_ms {
                return KidRefetch::Underway;
            }
        }
        if recently(local_fetched) || requested.is_some_and(recently) {
            return KidRefetch::Refused;
        }
        self.ask_refetch(store, &key, cas, now_ms)
    }

    /// Stamp the refetch request. Losing the CAS means another worker asked just now: its
    /// refetch serves this token too.
    fn ask_refetch(&self, store: &dyn SharedData, key: &str, cas: Option<u32>, now_ms: u64) -> KidRefetch {
        let _ = store.set(key, now_ms.to_string().as_bytes(), cas);
        KidRefetch::Underway
    }

    /// Take the fetch lease for `url` (CAS). `true`: this worker must fetch now.
    pub fn try_begin_fetch(store: &dyn SharedData, url: &str, now_ms: u64, lease_ms: u64) -> bool {
        lease(url).try_take(store, now_ms, lease_ms)
    }

    /// Record a fetch's outcome. A body that is not a key set is a failure and is not cached.
    pub fn complete_fetch(
        &mut self,
        store: &dyn SharedData,
        url: &str,
        now_ms: u64,
        (ttl_ms, stale_ms): (u64, u64),
        outcome: Result<Vec<u8>, Outage>,
    ) -> Result<(), Outage> {
        let parsed = outcome.and_then(|body| KeySet::parse(&body).map(|set| (body, set)).map_err(Outage::transient));
        match parsed {
            Ok((body, set)) => {
                let expires_ms = now_ms + ttl_ms;
                let record = Record { fetched_ms: now_ms, expires_ms, stale_until_ms: expires_ms + stale_ms, body };
                let _ = store.set(&format!("{KEY_PREFIX}{url}"), &record.encode(), None);
                let cas = store.get(&format!("{KEY_PREFIX}{url}")).1;
                self.generation += 1;
                self.local.insert(url.to_string(), Local {
                    cas,
                    fetched_ms: record.fetched_ms,
                    expires_ms: record.expires_ms,
                    refresh_at_ms: record.refresh_at_ms(),
                    keys: Arc::new(set),
                });
                lease(url).succeeded(store);
                Ok(())
            }
            Err(outage) => Err(lease(url).failed(store, now_ms, outage)),
        }
    }

    /// Make sure the coordination key exists (see [`Lease::init`]).
    pub fn init_fetch_key(store: &dyn SharedData, url: &str) {
        lease(url).init(store);
    }
}

fn fetch_state(store: &dyn SharedData, url: &str) -> FetchState {
    lease(url).state(store)
}

/// The outage of `url`'s last fetch, if it failed at or after `since_ms`.
fn failed_since(store: &dyn SharedData, url: &str, since_ms: u64) -> Option<Outage> {
    match fetch_state(store, url) {
        FetchState::Failed { retry_ms, outage } if retry_ms.saturating_sub(RETRY_AFTER_FAILURE_MS) >= since_ms => Some(outage),
        _ => None,
    }
}

/// When an unknown kid last asked for a refetch of `url`.
fn kid_stamp(store: &dyn SharedData, url: &str) -> Option<u64> {
    let value = store.get(&format!("{KID_PREFIX}{url}")).0?;
    std::str::from_utf8(&value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use crate::store::mock::MockShared;
    use super::*;
    use KidRefetch::*;
    use crate::testkeys::vectors;
    use serde_json::json;

    const URL: &str = "http://idp/jwks";

    fn body() -> Vec<u8> {
        json!({"keys": [vectors()["keys"]["rsa"]["jwk"]]}).to_string().into_bytes()
    }

    #[test]
    fn record_round_trip() {
        let r = Record { fetched_ms: 5, expires_ms: 10, stale_until_ms: 20, body: b"{\n}".to_vec() };
        assert_eq!(Record::decode(&r.encode()), Some(r));
    }

    #[test]
    fn cold_cache_is_pending_and_only_one_worker_gets_the_lease() {
        let store = MockShared::default();
        JwksCache::init_fetch_key(&store, URL);
        let mut a = JwksCache::new(0);
        let mut b = JwksCache::new(0);
        assert!(matches!(a.lookup(&store, URL, 0), KeyLookup::Pending));
        assert_eq!(a.need(&store, URL, 0, 30_000), Need::Fetch);
        assert!(JwksCache::try_begin_fetch(&store, URL, 0, 6000));
        assert!(!JwksCache::try_begin_fetch(&store, URL, 1, 6000), "second worker must not fetch");
        assert_eq!(b.need(&store, URL, 1, 30_000), Need::Nothing, "b waits for a's fetch");
        assert!(matches!(b.lookup(&store, URL, 1), KeyLookup::Pending));
    }

    #[test]
    fn fetched_keys_are_shared_with_other_workers_until_ttl() {
        let store = MockShared::default();
        let mut a = JwksCache::new(0);
        let mut b = JwksCache::new(0);
        assert!(JwksCache::try_begin_fetch(&store, URL, 0, 6000));
        a.complete_fetch(&store, URL, 100, (1000, 0), Ok(body())).unwrap();
        assert!(matches!(b.lookup(&store, URL, 200), KeyLookup::Ready(..)));
        assert_eq!(b.need(&store, URL, 200, 30_000), Need::Nothing);
        assert!(matches!(b.lookup(&store, URL, 1099), KeyLookup::Ready(..)));
        assert!(matches!(b.lookup(&store, URL, 1100), KeyLookup::Pending), "expired at fetched + ttl");
        assert_eq!(b.need(&store, URL, 1100, 30_000), Need::Fetch);
    }

    #[test]
    fn refresh_is_due_in_the_last_tenth_of_the_ttl_while_keys_stay_ready() {
        let store = MockShared::default();
        let mut a = JwksCache::new(0);
        a.complete_fetch(&store, URL, 0, (1000, 0), Ok(body())).unwrap();
        assert_eq!(a.need(&store, URL, 899, 30_000), Need::Nothing);
        assert_eq!(a.need(&store, URL, 900, 30_000), Need::Fetch, "background refresh before expiry");
        assert!(matches!(a.lookup(&store, URL, 950), KeyLookup::Ready(..)), "and requests are not held");
        let mut b = JwksCache::new(0);
        assert_eq!(b.need(&store, URL, 950, 30_000), Need::Fetch, "other workers agree from the shared record");
    }

    #[test]
    fn past_expiry_keys_are_used_for_one_fetch_timeout_at_most_while_the_source_answers() {
        let store = MockShared::default();
        let mut a = JwksCache::new(300);
        let mut b = JwksCache::new(300);
        a.complete_fetch(&store, URL, 0, (1000, 5000), Ok(body())).unwrap();
        assert!(matches!(b.lookup(&store, URL, 500), KeyLookup::Ready(_, 1000)), "fresh: reusable until expiry");
        assert_eq!(b.need(&store, URL, 1100, 30_000), Need::Fetch, "a refresh is due");
        assert!(JwksCache::try_begin_fetch(&store, URL, 1100, 6000));
        assert!(matches!(b.lookup(&store, URL, 1200), KeyLookup::Ready(..)), "within one fetch timeout of expiry");
        assert!(matches!(b.lookup(&store, URL, 1300), KeyLookup::Pending), "then wait for the refresh, not a stale copy");
        assert!(matches!(a.lookup(&store, URL, 1300), KeyLookup::Pending), "every worker alike");
    }

    #[test]
    fn stale_keys_are_served_only_while_the_source_is_failing_then_not() {
        let store = MockShared::default();
        let mut a = JwksCache::new(0);
        let mut b = JwksCache::new(0);
        a.complete_fetch(&store, URL, 0, (1000, 5000), Ok(body())).unwrap();
        assert!(JwksCache::try_begin_fetch(&store, URL, 1500, 6000));
        assert_eq!(a.need(&store, URL, 1600, 30_000), Need::Nothing, "one refresh at a time");
        b.complete_fetch(&store, URL, 1700, (1000, 5000), Err(Outage::transient("IdP down"))).unwrap_err();
        let KeyLookup::Ready(_, until) = a.lookup(&store, URL, 2000) else { panic!("outage: the stale copy") };
        assert_eq!(until, 2000 + RETRY_AFTER_FAILURE_MS, "verifications with it are reused for one retry interval");
        assert!(JwksCache::try_begin_fetch(&store, URL, 2700, 6000), "the retry");
        assert!(matches!(a.lookup(&store, URL, 2800), KeyLookup::Ready(..)), "still failing while the retry runs");
        assert!(matches!(a.lookup(&store, URL, 5999), KeyLookup::Ready(..)), "outage: still the stale copy");
        assert!(matches!(a.lookup(&store, URL, 6000), KeyLookup::Unavailable(_) | KeyLookup::Pending), "window over");
        let mut c = JwksCache::new(0);
        assert!(matches!(c.lookup(&store, URL, 6000), KeyLookup::Pending), "retry allowed: wait for it");
    }

    #[test]
    fn a_key_set_stored_by_another_worker_is_adopted_at_the_next_sync() {
        let store = MockShared::default();
        let (mut a, mut b) = (JwksCache::new(0), JwksCache::new(0));
        a.complete_fetch(&store, URL, 0, (10_000, 0), Ok(body())).unwrap();
        assert!(matches!(b.lookup(&store, URL, 10), KeyLookup::Ready(..)));
        let before = b.generation();
        b.sync(&store, URL);
        assert_eq!(b.generation(), before, "same shared copy: nothing to do");
        a.complete_fetch(&store, URL, 1000, (10_000, 0), Ok(body())).unwrap();
        b.sync(&store, URL);
        assert_eq!(b.generation(), before + 1, "another worker's refresh ends b's cached verifications");
        let KeyLookup::Ready(_, until) = b.lookup(&store, URL, 1001) else { panic!() };
        assert_eq!(until, 11_000, "and b uses the new copy's expiry");
        let mut fresh = JwksCache::new(0);
        fresh.sync(&store, URL);
        assert_eq!(fresh.generation(), 0, "nothing held, nothing to invalidate");
    }

    #[test]
    fn generation_changes_only_when_a_new_key_set_is_adopted() {
        let store = MockShared::default();
        let mut a = JwksCache::new(0);
        let mut b = JwksCache::new(0);
        a.complete_fetch(&store, URL, 0, (1000, 0), Ok(body())).unwrap();
        assert_eq!(a.generation(), 1);
        assert!(matches!(b.lookup(&store, URL, 10), KeyLookup::Ready(..)));
        assert!(matches!(b.lookup(&store, URL, 20), KeyLookup::Ready(..)));
        assert_eq!(b.generation(), 1, "adopted once, then served locally");
        a.complete_fetch(&store, URL, 2000, (1000, 0), Ok(body())).unwrap();
        assert!(matches!(b.lookup(&store, URL, 2001), KeyLookup::Ready(..)));
        assert_eq!(b.generation(), 2, "refreshed record adopted after local expiry");
    }

    #[test]
    fn failures_are_not_cached_as_keys_and_retry_after_the_backoff() {
        let store = MockShared::default();
        let mut a = JwksCache::new(0);
        assert!(JwksCache::try_begin_fetch(&store, URL, 0, 6000));
        let e = a.complete_fetch(&store, URL, 10, (1000, 0), Ok(b"<html>502</html>".to_vec())).unwrap_err();
        assert!(e.detail.contains("not valid JSON"));
        assert!(store.get(&format!("{KEY_PREFIX}{URL}")).0.is_none());
        assert!(matches!(a.lookup(&store, URL, 20), KeyLookup::Unavailable(_)));
        assert!(!JwksCache::try_begin_fetch(&store, URL, 20, 6000), "no refetch during backoff");
        let retry = 10 + RETRY_AFTER_FAILURE_MS;
        assert!(matches!(a.lookup(&store, URL, retry), KeyLookup::Pending));
        assert!(JwksCache::try_begin_fetch(&store, URL, retry, 6000));
    }

    #[test]
    fn transport_errors_are_sanitised_for_the_client_message() {
        let store = MockShared::default();
        let mut a = JwksCache::new(0);
        let e = a.complete_fetch(&store, URL, 0, (1000, 0), Err(Outage::transient("line1\nline2"))).unwrap_err();
        assert_eq!(e.detail, "line1line2");
    }

    #[test]
    fn unknown_kid_asks_for_one_refetch_per_interval_and_waits_for_it() {
        let store = MockShared::default();
        let (mut a, mut b) = (JwksCache::new(0), JwksCache::new(0));
        let (interval, lease) = (30_000, 6000);
        a.complete_fetch(&store, URL, 0, (600_000, 0), Ok(body())).unwrap();
        assert!(matches!(b.lookup(&store, URL, 1), KeyLookup::Ready(..)));
        assert_eq!(a.refetch_for_unknown_kid(&store, URL, 10_000, interval, lease), Refused, "keys fetched moments ago: refuse");
        assert_eq!(a.need(&store, URL, 40_000, interval), Need::Nothing);
        assert_eq!(a.refetch_for_unknown_kid(&store, URL, 40_000, interval, lease), Underway, "first unknown kid asks and waits");
        assert_eq!(b.refetch_for_unknown_kid(&store, URL, 40_001, interval, lease), Underway, "other workers wait for the same refetch");
        assert_eq!(b.need(&store, URL, 40_001, interval), Need::Fetch, "any worker's tick fetches it");
        assert!(JwksCache::try_begin_fetch(&store, URL, 40_001, lease));
        b.complete_fetch(&store, URL, 40_050, (600_000, 0), Ok(body())).unwrap();
        assert_eq!(a.need(&store, URL, 40_060, interval), Need::Nothing, "done: no second fetch");
        assert_eq!(a.refetch_for_unknown_kid(&store, URL, 40_060, interval, lease), Underway, "a adopts the newer set first");
        assert!(matches!(a.lookup(&store, URL, 40_061), KeyLookup::Ready(..)));
        assert_eq!(a.refetch_for_unknown_kid(&store, URL, 40_062, interval, lease), Refused, "still unknown after the refetch: refuse");
        assert_eq!(a.refetch_for_unknown_kid(&store, URL, 70_000, interval, lease), Refused, "the interval is per URL and process");
        assert_eq!(a.refetch_for_unknown_kid(&store, URL, 70_100, interval, lease), Underway, "next interval: one more");
    }

    #[test]
    fn unknown_kid_refetch_that_fails_is_unavailable_and_not_retried_until_the_next_interval() {
        let store = MockShared::default();
        let mut a = JwksCache::new(0);
        let interval = 30_000;
        a.complete_fetch(&store, URL, 0, (600_000, 600_000), Ok(body())).unwrap();
        assert_eq!(a.refetch_for_unknown_kid(&store, URL, 100_000, 0, 6000), Refused, "0 = off");
        assert_eq!(a.refetch_for_unknown_kid(&store, URL, 100_000, interval, 6000), Underway);
        assert_eq!(a.need(&store, URL, 100_000, interval), Need::Fetch);
        assert!(JwksCache::try_begin_fetch(&store, URL, 100_000, 6000));
        a.complete_fetch(&store, URL, 100_100, (600_000, 600_000), Err(Outage::transient("down"))).unwrap_err();
        let failed = a.refetch_for_unknown_kid(&store, URL, 100_200, interval, 6000);
        assert_eq!(failed, Failed(Outage::transient("down")), "the IdP may have rotated while down: 503, not unknown kid");
        assert!(matches!(a.lookup(&store, URL, 100_200), KeyLookup::Ready(..)), "known kids still served");
        for t in [101_200, 110_000, 129_999] {
            assert_eq!(a.need(&store, URL, t, interval), Need::Nothing, "no retry loop at {t}");
            assert!(matches!(a.refetch_for_unknown_kid(&store, URL, t, interval, 6000), Failed(_)));
        }
        assert_eq!(a.refetch_for_unknown_kid(&store, URL, 130_000, interval, 6000), Underway, "next interval: one more try");
        assert_eq!(a.need(&store, URL, 130_000, interval), Need::Fetch);
    }

    #[test]
    fn expired_lease_of_a_dead_fetcher_can_be_taken_over() {
        let store = MockShared::default();
        let mut a = JwksCache::new(0);
        assert!(JwksCache::try_begin_fetch(&store, URL, 0, 6000));
        assert_eq!(a.need(&store, URL, 5999, 30_000), Need::Nothing);
        assert_eq!(a.need(&store, URL, 6000, 30_000), Need::Fetch);
        assert!(JwksCache::try_begin_fetch(&store, URL, 6000, 6000));
    }
}
