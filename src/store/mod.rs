//! The host's shared key/value store (proxy-wasm shared data: process-wide per `vm_id`, CAS,
//! no TTL, no delete) and the fetch lease every cached thing uses so that one worker of an
//! Envoy process fetches while the others wait.


pub mod discovery;
pub mod jwks;
pub mod limits;
pub mod records;
pub mod token_cache;
pub mod userinfo;

use crate::error::Outage;

/// The first `bytes` bytes of `text`'s SHA-256, in lowercase hex (`bytes` ≥ 32: all of it): the
/// one way the filter names a token, an endpoint or a source without writing it down.
pub fn sha256_hex(text: &str, bytes: usize) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes()).iter().take(bytes).map(|b| format!("{b:02x}")).collect()
}

/// The host's shared key/value store, as the cache needs it.
pub trait SharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// `Err(())` on CAS mismatch.
    #[allow(clippy::result_unit_err)]
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()>;
}

/// The state of the fetch coordination key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchState {
    Idle,
    /// A fetch is under way until `until_ms` (then the lease may be taken over).
    /// `after_failure`: it retries a failed one, so the source counts as failing meanwhile.
    Fetching { until_ms: u64, after_failure: bool },
    /// The last fetch failed; no new one before `retry_ms`.
    Failed { retry_ms: u64, outage: Outage },
}

impl FetchState {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            FetchState::Idle => Vec::new(),
            FetchState::Fetching { until_ms, after_failure: false } => format!("fetching {until_ms}").into_bytes(),
            FetchState::Fetching { until_ms, after_failure: true } => format!("retrying {until_ms}").into_bytes(),
            FetchState::Failed { retry_ms, outage } => {
                let state = if outage.misconfigured { "misconfigured" } else { "failed" };
                format!("{state} {retry_ms} {}", outage.detail).into_bytes()
            }
        }
    }

    /// Whether the source is failing: its last fetch failed, or the fetch under way retries one.
    /// Stale copies are served only then.
    pub fn failing(&self) -> bool {
        matches!(self, FetchState::Failed { .. } | FetchState::Fetching { after_failure: true, .. })
    }

    /// Unreadable values count as idle: the worst case is one extra fetch.
    pub fn decode(bytes: Option<&[u8]>) -> Self {
        let Some(text) = bytes.and_then(|b| std::str::from_utf8(b).ok()) else {
            return FetchState::Idle;
        };
        let mut parts = text.splitn(3, ' ');
        match (parts.next(), parts.next().and_then(|t| t.parse().ok())) {
            (Some("fetching"), Some(until_ms)) => FetchState::Fetching { until_ms, after_failure: false },
            (Some("retrying"), Some(until_ms)) => FetchState::Fetching { until_ms, after_failure: true },
            (Some(state @ ("failed" | "misconfigured")), Some(retry_ms)) => FetchState::Failed {
                retry_ms,
                outage: Outage { detail: parts.next().unwrap_or("").to_string(), misconfigured: state == "misconfigured" },
            },
            _ => FetchState::Idle,
        }
    }
}

/// How long a failed fetch is remembered before another is tried (keys and records alike).
pub const RETRY_AFTER_FAILURE_MS: u64 = 1000;

/// The fetch lease of one cached thing (a key URL, a record): a shared-data key holding its
/// [`FetchState`], taken with CAS so that one worker of an Envoy process fetches while the
/// others wait, and holding the last failure for the retry interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease(String);

impl Lease {
    pub fn new(key: String) -> Self {
        Lease(key)
    }

    pub fn key(&self) -> &str {
        &self.0
    }

    /// The state now (an unreadable or missing value counts as idle).
    pub fn state(&self, store: &dyn SharedData) -> FetchState {
        FetchState::decode(store.get(&self.0).0.as_deref())
    }

    /// Take the lease. `true`: the caller must fetch now and then call [`Lease::succeeded`] or
    /// [`Lease::failed`]. Busy while another fetch's lease runs, and during the back-off after a
    /// failure.
    pub fn try_take(&self, store: &dyn SharedData, now_ms: u64, lease_ms: u64) -> bool {
        let (value, cas) = store.get(&self.0);
        let state = FetchState::decode(value.as_deref());
        let busy = match state {
            FetchState::Fetching { until_ms, .. } => now_ms < until_ms,
            FetchState::Failed { retry_ms, .. } => now_ms < retry_ms,
            FetchState::Idle => false,
        };
        if busy {
            return false;
        }
        // A lease that lapsed (its fetcher died) counts as a failure too.
        let after_failure = !matches!(state, FetchState::Idle);
        let lease = FetchState::Fetching { until_ms: now_ms + lease_ms, after_failure }.encode();
        store.set(&self.0, &lease, cas).is_ok()
    }

    pub fn succeeded(&self, store: &dyn SharedData) {
        let _ = store.set(&self.0, &FetchState::Idle.encode(), None);
    }

    /// Remember a failure until the retry interval has passed; returns the outage as stored
    /// (one line: the state is one value, read back by its spaces).
    pub fn failed(&self, store: &dyn SharedData, now_ms: u64, outage: Outage) -> Outage {
        let detail: String = outage.detail.chars().filter(|c| !c.is_control()).take(200).collect();
        let outage = Outage { detail, ..outage };
        let failed = FetchState::Failed { retry_ms: now_ms + RETRY_AFTER_FAILURE_MS, outage: outage.clone() };
        let _ = store.set(&self.0, &failed.encode(), None);
        outage
    }

    /// Make sure the key exists, so that the first CAS on it is a real CAS (Envoy's shared
    /// data only compares CAS values for keys that exist).
    pub fn init(&self, store: &dyn SharedData) {
        if store.get(&self.0).1.is_none() {
            let _ = store.set(&self.0, &FetchState::Idle.encode(), None);
        }
    }
}

#[cfg(any(test, feature = "cli"))]
pub mod mock {
    //! An in-memory shared data store with Envoy's CAS semantics, for tests and `explain`.
    use super::SharedData;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    pub struct MockShared {
        pub data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next_cas: RefCell<u32>,
    }

    impl SharedData for MockShared {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            match self.data.borrow().get(key) {
                Some((v, cas)) if v.is_empty() => (None, Some(*cas)),
                Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                None => (None, None),
            }
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
            let mut data = self.data.borrow_mut();
            if let (Some(want), Some((_, have))) = (cas, data.get(key)) {
                if want != 0 && want != *have {
                    return Err(());
                }
            }
            let mut next = self.next_cas.borrow_mut();
            *next += 1;
            data.insert(key.to_string(), (value.to_vec(), *next));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mock::MockShared;
    use super::*;

    #[test]
    fn fetch_states_round_trip() {
        for s in [
            FetchState::Idle,
            FetchState::Fetching { until_ms: 9, after_failure: false },
            FetchState::Fetching { until_ms: 9, after_failure: true },
            FetchState::Failed { retry_ms: 7, outage: Outage::transient("HTTP 500 from idp") },
            FetchState::Failed { retry_ms: 7, outage: Outage::misconfigured("no cluster") },
        ] {
            assert_eq!(FetchState::decode(Some(&s.encode())), s);
        }
        assert_eq!(FetchState::decode(Some(b"garbage")), FetchState::Idle);
    }

    #[test]
    fn a_lease_has_one_holder_until_it_ends_and_a_failure_holds_it_for_the_retry_interval() {
        let store = MockShared::default();
        let lease = Lease::new("k".into());
        lease.init(&store);
        assert!(lease.try_take(&store, 0, 500));
        assert!(!lease.try_take(&store, 10, 500), "held");
        assert!(lease.try_take(&store, 500, 500), "lapsed: taken over");
        assert!(lease.state(&store).failing(), "a lapsed lease counts as a failure");
        let stored = lease.failed(&store, 600, Outage::transient("line\nbreak"));
        assert_eq!(stored.detail, "linebreak", "one line");
        assert!(!lease.try_take(&store, 600 + RETRY_AFTER_FAILURE_MS - 1, 500), "backing off");
        assert!(lease.try_take(&store, 600 + RETRY_AFTER_FAILURE_MS, 500));
        assert_eq!(lease.state(&store), FetchState::Fetching { until_ms: 1600 + 500, after_failure: true });
        lease.succeeded(&store);
        assert_eq!(lease.state(&store), FetchState::Idle);
        assert!(!lease.state(&store).failing());
    }

    #[test]
    fn a_cas_race_on_the_lease_has_one_winner() {
        let store = MockShared::default();
        let lease = Lease::new("k".into());
        lease.init(&store);
        let (_, cas) = store.get(lease.key());
        assert!(store.set(lease.key(), b"fetching 99", cas).is_ok());
        assert!(store.set(lease.key(), b"fetching 99", cas).is_err());
    }
}
