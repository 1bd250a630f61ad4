//! Team/user/org/end-user records in the host's shared data, so every worker of an Envoy
//! process sees one copy and one fetch (spec §5's cache → DB, at the edge).
//!
//! | key                                           | value                                     |
//! |-----------------------------------------------|-------------------------------------------|
//! | `llm_jwt_auth/v1/rec/<kind>/<id>`             | JSON [`Stored`]: the record or `null` (not found), when it was fetched, until when it is fresh, until when it may be served stale |
//! | `llm_jwt_auth/v1/rec-fetch/<kind>/<id>`       | the fetch lease ([`crate::store::FetchState`]) |
//!
//! A record is *fresh* for `ttl`; after that the last good copy is still served for
//! `stale_ttl` while one worker refreshes it (or while the source is down); past that, the
//! request waits for a fetch, or gets 503 if the source is failing. "Not found" answers are
//! kept for `negative_ttl`. Static records from the configuration always win.

use crate::error::Outage;
use crate::records::{Record, RecordKey};
use crate::store::{FetchState, Lease, SharedData};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

pub const RECORD_PREFIX: &str = "llm_jwt_auth/v1/rec/";
pub const RECORD_FETCH_PREFIX: &str = "llm_jwt_auth/v1/rec-fetch/";
/// One lease per user and change `sync_user_role_and_teams` sends (see [`RecordStore::claim_sync`]).
pub const RECORD_SYNC_PREFIX: &str = "llm_jwt_auth/v1/rec-sync/";
/// Ids longer than this are refused without a lookup (they name no real record).
pub const MAX_ID_LEN: usize = 256;

/// Freshness settings (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub ttl_ms: u64,
    pub negative_ttl_ms: u64,
    pub stale_ttl_ms: u64,
}

/// What is stored in shared data for one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub fetched_ms: u64,
    pub fresh_until_ms: u64,
    pub stale_until_ms: u64,
    /// `None`: the source said the record does not exist.
    pub record: Option<Record>,
}

/// What a worker knows of one record now.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordLookup {
    Found(Rc<Record>),
    NotFound,
    /// Not known yet: a fetch is needed or under way.
    Pending,
    /// The source is failing and no servable copy exists.
    Unavailable(Outage),
}

/// `namespace` names the source the record came from (see [`RecordStore::for_source`]).
pub fn record_key(namespace: &str, key: &RecordKey) -> String {
    format!("{RECORD_PREFIX}{namespace}{}/{}", key.kind.as_str(), key.id)
}

pub fn lease(namespace: &str, key: &RecordKey) -> Lease {
    Lease::new(format!("{RECORD_FETCH_PREFIX}{namespace}{}/{}", key.kind.as_str(), key.id))
}

/// A worker's view of the record store.
pub struct RecordStore {
    statics: BTreeMap<RecordKey, Rc<Record>>,
    /// Whether an HTTP source is configured (without one, only static records exist).
    has_source: bool,
    lifetimes: Lifetimes,
    /// Parsed shared values by CAS, so unchanged values are not parsed again.
    parsed: HashMap<RecordKey, (u32, Stored)>,
    /// Keys this worker found stale or missing: refresh candidates for the next pump.
    wanted: BTreeMap<RecordKey, ()>,
    /// Shared-data key segment naming the source (empty in tests).
    namespace: String,
}

impl RecordStore {
    pub fn new(statics: Vec<Record>, has_source: bool, lifetimes: Lifetimes) -> Self {
        let statics = statics
            .into_iter()
            .map(|r| (r.key(), Rc::new(r)))
            .collect();
        RecordStore { statics, has_source, lifetimes, parsed: HashMap::new(), wanted: BTreeMap::new(), namespace: String::new() }
    }

    /// Keep this store's records apart from other sources' in the shared data: a hot reload onto
    /// another source (or another listener with its own source in the same VM) must not be
    /// answered from a copy the old source gave. `source` is any stable description of it.
    pub fn for_source(mut self, source: &str) -> Self {
        self.namespace = format!("{}/", super::sha256_hex(source, 6));
        self
    }

    /// Whether record rules apply at all (LiteLLM without a database skips nothing — it fails;
    /// here a deployment without records keeps the token-only behaviour).
    pub fn enabled(&self) -> bool {
        self.has_source || !self.statics.is_empty()
    }

    fn read(&mut self, store: &dyn SharedData, key: &RecordKey) -> Option<Stored> {
        let (value, cas) = store.get(&record_key(&self.namespace, key));
        let (value, cas) = (value?, cas?);
        if let Some((seen, stored)) = self.parsed.get(key) {
            if *seen == cas {
                return Some(stored.clone());
            }
        }
        let stored: Stored = serde_json::from_slice(&value).ok()?;
        self.parsed.insert(key.clone(), (cas, stored.clone()));
        Some(stored)
    }

    /// What is known of `key` at `now_ms`.
    pub fn lookup(&mut self, store: &dyn SharedData, key: &RecordKey, now_ms: u64) -> RecordLookup {
        if let Some(r) = self.statics.get(key) {
            return RecordLookup::Found(Rc::clone(r));
        }
        if !self.has_source || key.id.is_empty() || key.id.len() > MAX_ID_LEN {
            return RecordLookup::NotFound;
        }
        let found = |s: &Stored| match &s.record {
            Some(r) => RecordLookup::Found(Rc::new(r.clone())),
            None => RecordLookup::NotFound,
        };
        let stored = self.read(store, key);
        if let Some(s) = &stored {
            if now_ms < s.fresh_until_ms {
                return found(s);
            }
        }
        // Not fresh: somebody must fetch it.
        self.wanted.insert(key.clone(), ());
        if let Some(s) = &stored {
            if now_ms < s.stale_until_ms && s.record.is_some() {
                return found(s); // stale-while-revalidate, and the outage window
            }
        }
        match lease(&self.namespace, key).state(store) {
            FetchState::Failed { retry_ms, outage } if now_ms < retry_ms => RecordLookup::Unavailable(outage),
            _ => RecordLookup::Pending,
        }
    }

    /// Keys this worker should fetch now (taking each key's lease with CAS).
    pub fn take_fetches(&mut self, store: &dyn SharedData, now_ms: u64, lease_ms: u64) -> Vec<RecordKey> {
        let wanted = std::mem::take(&mut self.wanted);
        wanted
            .into_keys()
            .filter(|key| {
                let fresh = self.read(store, key).is_some_and(|s| now_ms < s.fresh_until_ms);
                !fresh && lease(&self.namespace, key).try_take(store, now_ms, lease_ms)
            })
            .collect()
    }

    /// Store a fetch's outcome: `Ok(Some)` found, `Ok(None)` not found, `Err` source failure
    /// (the last good copy stays; the failure is remembered for the retry interval).
    pub fn complete(&mut self, store: &dyn SharedData, key: &RecordKey, now_ms: u64, outcome: Result<Option<Record>, Outage>) {
        let l = self.lifetimes;
        match outcome {
            Ok(record) => {
                let fresh_for = if record.is_some() { l.ttl_ms } else { l.negative_ttl_ms };
                let stale_for = if record.is_some() { l.stale_ttl_ms } else { 0 };
                self.put(store, key, Stored {
                    fetched_ms: now_ms,
                    fresh_until_ms: now_ms + fresh_for,
                    stale_until_ms: now_ms + fresh_for + stale_for,
                    record,
                });
                lease(&self.namespace, key).succeeded(store);
            }
            Err(outage) => {
                lease(&self.namespace, key).failed(store, now_ms, outage);
            }
        }
    }

    /// Write a record (a fetch result or an upsert), keeping concurrent writers from losing a
    /// newer value: CAS against what was read, re-read and retry a few times.
    pub fn put(&mut self, store: &dyn SharedData, key: &RecordKey, value: Stored) {
        let Ok(bytes) = serde_json::to_vec(&value) else { return };
        for _ in 0..4 {
            let (current, cas) = store.get(&record_key(&self.namespace, key));
            let newer = current
                .and_then(|c| serde_json::from_slice::<Stored>(&c).ok())
                .is_some_and(|c| c.fetched_ms > value.fetched_ms);
            if newer {
                return; // another worker stored a later answer
            }
            if store.set(&record_key(&self.namespace, key), &bytes, cas).is_ok() {
                self.parsed.remove(key);
                return;
            }
        }
    }

    /// Whether this worker is the one to send `change` (a user's synced role and teams) to
    /// the source: the first of all workers to ask, then again only once the record's `ttl`
    /// has run out (a refetch that brings the old record back means the change did not land).
    pub fn claim_sync(&self, store: &dyn SharedData, user_id: &str, change: &str, now_ms: u64) -> bool {
        let hex = super::sha256_hex(change, 12);
        let lease = Lease::new(format!("{RECORD_SYNC_PREFIX}{}{user_id}/{hex}", self.namespace));
        lease.try_take(store, now_ms, self.lifetimes.ttl_ms.max(1000))
    }

    /// LiteLLM's upsert: an unknown id is admitted with a default, unrestricted record, stored
    /// as if fetched so other workers see it too.
    pub fn upsert(&mut self, store: &dyn SharedData, key: &RecordKey, record: Record, now_ms: u64) {
        let l = self.lifetimes;
        self.put(store, key, Stored {
            fetched_ms: now_ms,
            fresh_until_ms: now_ms + l.ttl_ms,
            stale_until_ms: now_ms + l.ttl_ms + l.stale_ttl_ms,
            record: Some(record),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Kind, Team};
    use crate::store::mock::MockShared;

    const L: Lifetimes = Lifetimes { ttl_ms: 1000, negative_ttl_ms: 100, stale_ttl_ms: 5000 };

    fn team(id: &str, models: &[&str]) -> Record {
        Record::Team(Team { team_id: id.into(), models: models.iter().map(|m| m.to_string()).collect(), ..Team::default() })
    }

    fn key(id: &str) -> RecordKey {
        RecordKey { kind: Kind::Team, id: id.into() }
    }

    #[test]
    fn a_sync_is_sent_by_one_worker_once_per_ttl() {
        let store = MockShared::default();
        let (a, b) = (RecordStore::new(vec![], true, L), RecordStore::new(vec![], true, L));
        assert!(a.claim_sync(&store, "u1", "role internal_user_viewer", 0));
        assert!(!b.claim_sync(&store, "u1", "role internal_user_viewer", 10), "another worker: already sent");
        assert!(!a.claim_sync(&store, "u1", "role internal_user_viewer", 999));
        assert!(b.claim_sync(&store, "u1", "role proxy_admin_viewer", 10), "another change is another claim");
        assert!(b.claim_sync(&store, "u2", "role internal_user_viewer", 10), "and so is another user");
        assert!(b.claim_sync(&store, "u1", "role internal_user_viewer", 1000), "again once the ttl ran out");
    }

    #[test]
    fn static_records_win_and_need_no_source() {
        let store = MockShared::default();
        let mut s = RecordStore::new(vec![team("t1", &["a"])], false, L);
        assert!(s.enabled());
        assert_eq!(s.lookup(&store, &key("t1"), 0), RecordLookup::Found(Rc::new(team("t1", &["a"]))));
        assert_eq!(s.lookup(&store, &key("t2"), 0), RecordLookup::NotFound);
        assert!(s.take_fetches(&store, 0, 100).is_empty());
        assert!(!RecordStore::new(vec![], false, L).enabled());
    }

    #[test]
    fn miss_is_pending_and_one_worker_fetches_for_all() {
        let store = MockShared::default();
        let mut a = RecordStore::new(vec![], true, L);
        let mut b = RecordStore::new(vec![], true, L);
        assert_eq!(a.lookup(&store, &key("t1"), 0), RecordLookup::Pending);
        assert_eq!(b.lookup(&store, &key("t1"), 0), RecordLookup::Pending);
        assert_eq!(a.take_fetches(&store, 0, 3000), vec![key("t1")]);
        assert!(b.take_fetches(&store, 1, 3000).is_empty(), "a holds the lease");
        a.complete(&store, &key("t1"), 10, Ok(Some(team("t1", &[]))));
        assert!(matches!(b.lookup(&store, &key("t1"), 20), RecordLookup::Found(_)));
    }

    #[test]
    fn stores_of_different_sources_do_not_share_records() {
        let store = MockShared::default();
        let mut old = RecordStore::new(vec![], true, L).for_source("http://old-source");
        let mut new = RecordStore::new(vec![], true, L).for_source("http://new-source");
        let mut same = RecordStore::new(vec![], true, L).for_source("http://old-source");
        old.complete(&store, &key("t1"), 10, Ok(Some(team("t1", &["from-old"]))));
        assert_eq!(new.lookup(&store, &key("t1"), 20), RecordLookup::Pending, "the new source is asked");
        assert_eq!(new.take_fetches(&store, 20, 3000), vec![key("t1")], "its own lease, not the old one's");
        assert!(matches!(same.lookup(&store, &key("t1"), 20), RecordLookup::Found(_)), "same source: shared");
    }

    #[test]
    fn expiry_stale_window_and_refresh() {
        let store = MockShared::default();
        let mut a = RecordStore::new(vec![], true, L);
        a.complete(&store, &key("t1"), 0, Ok(Some(team("t1", &["old"]))));
        assert!(a.take_fetches(&store, 500, 3000).is_empty(), "fresh: nothing to do");
        // After the TTL the stale copy is served while a refresh is wanted.
        assert_eq!(a.lookup(&store, &key("t1"), 1500), RecordLookup::Found(Rc::new(team("t1", &["old"]))));
        assert_eq!(a.take_fetches(&store, 1500, 3000), vec![key("t1")]);
        a.complete(&store, &key("t1"), 1600, Ok(Some(team("t1", &["new"]))));
        assert_eq!(a.lookup(&store, &key("t1"), 1700), RecordLookup::Found(Rc::new(team("t1", &["new"]))));
    }

    #[test]
    fn source_down_serves_stale_then_fails_closed() {
        let store = MockShared::default();
        let mut a = RecordStore::new(vec![], true, L);
        a.complete(&store, &key("t1"), 0, Ok(Some(team("t1", &[]))));
        assert!(matches!(a.lookup(&store, &key("t1"), 2000), RecordLookup::Found(_)));
        assert_eq!(a.take_fetches(&store, 2000, 3000), vec![key("t1")]);
        a.complete(&store, &key("t1"), 2100, Err(Outage::transient("connect refused")));
        assert!(matches!(a.lookup(&store, &key("t1"), 5999), RecordLookup::Found(_)), "within stale window");
        assert_eq!(a.lookup(&store, &key("t1"), 6000), RecordLookup::Pending, "beyond it, retry allowed: wait");
        assert_eq!(a.take_fetches(&store, 6000, 3000), vec![key("t1")]);
        a.complete(&store, &key("t1"), 6001, Err(Outage::transient("connect refused")));
        assert_eq!(a.lookup(&store, &key("t1"), 6002), RecordLookup::Unavailable(Outage::transient("connect refused")));
    }

    #[test]
    fn not_found_is_cached_briefly() {
        let store = MockShared::default();
        let mut a = RecordStore::new(vec![], true, L);
        a.complete(&store, &key("ghost"), 0, Ok(None));
        assert_eq!(a.lookup(&store, &key("ghost"), 50), RecordLookup::NotFound);
        assert!(a.take_fetches(&store, 50, 3000).is_empty());
        assert_eq!(a.lookup(&store, &key("ghost"), 100), RecordLookup::Pending, "negative TTL over");
    }

    #[test]
    fn cas_protected_writes_never_replace_a_newer_answer() {
        let store = MockShared::default();
        let mut a = RecordStore::new(vec![], true, L);
        let mut b = RecordStore::new(vec![], true, L);
        b.complete(&store, &key("t1"), 200, Ok(Some(team("t1", &["newer"]))));
        a.complete(&store, &key("t1"), 100, Ok(Some(team("t1", &["older"]))));
        assert_eq!(a.lookup(&store, &key("t1"), 300), RecordLookup::Found(Rc::new(team("t1", &["newer"]))));
    }

    #[test]
    fn upsert_is_visible_to_other_workers() {
        let store = MockShared::default();
        let mut a = RecordStore::new(vec![], true, L);
        let mut b = RecordStore::new(vec![], true, L);
        a.upsert(&store, &key("new-team"), team("new-team", &[]), 0);
        assert!(matches!(b.lookup(&store, &key("new-team"), 10), RecordLookup::Found(_)));
    }

    #[test]
    fn absurd_ids_are_not_looked_up() {
        let store = MockShared::default();
        let mut a = RecordStore::new(vec![], true, L);
        assert_eq!(a.lookup(&store, &key(&"x".repeat(MAX_ID_LEN + 1)), 0), RecordLookup::NotFound);
        assert!(a.take_fetches(&store, 0, 100).is_empty());
    }
}
