//! The rate-limit counters in the host's shared data (see [`crate::limits::counters`]).
//!
//! | key                                   | value                                             |
//! |---------------------------------------|---------------------------------------------------|
//! | `llm_jwt_auth/v1/limits/<bucket>`     | the bucket's counters ([`Bucket::encode`])        |
//! | `llm_jwt_auth/v1/limits-seq`          | the last worker number handed out (slot ids)      |
//!
//! Every change is a read, a change and a CAS write, retried when another worker wrote in
//! between: exact across the workers of one Envoy process, with no lost update.

use crate::limits::counters::{bucket_of, Bucket, Held, BUCKETS};
use crate::limits::{Over, Scope, Status};
use crate::store::SharedData;

pub const LIMITS_PREFIX: &str = "llm_jwt_auth/v1/limits/";
const SEQUENCE_KEY: &str = "llm_jwt_auth/v1/limits-seq";
/// CAS attempts before a change is given up. Each attempt is a few microseconds; losing this
/// many in a row means the counters cannot be kept exact right now.
const ATTEMPTS: usize = 64;

/// The counters could not be updated (CAS lost [`ATTEMPTS`] times in a row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contended;

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Over(Over),
    Unverifiable,
}

/// A request admitted in every scope: what it holds, and the remaining counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    pub held: Vec<Held>,
    pub statuses: Vec<Status>,
}

impl Admission {
    /// Whether its answer's tokens must be read.
    pub fn counts_tokens(&self) -> bool {
        self.held.iter().any(|h| h.counts_tokens)
    }
}

fn key(bucket: u32) -> String {
    format!("{LIMITS_PREFIX}{bucket}")
}

/// Create every bucket that does not exist yet, so that the first CAS on it is a real CAS
/// (Envoy's shared data only compares CAS values for keys that exist), and hand this worker
/// its number (the high half of its slot ids, so that slots of different workers never share
/// an id).
pub fn init(shared: &dyn SharedData) -> Result<u32, Contended> {
    for bucket in 0..BUCKETS {
        let key = key(bucket);
        if shared.get(&key).1.is_none() {
            let _ = shared.set(&key, &[], None);
        }
    }
    if shared.get(SEQUENCE_KEY).1.is_none() {
        let _ = shared.set(SEQUENCE_KEY, b"0", None);
    }
    for _ in 0..ATTEMPTS {
        let (value, cas) = shared.get(SEQUENCE_KEY);
        let last: u32 = value.and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()).unwrap_or(0);
        let next = last.wrapping_add(1);
        if shared.set(SEQUENCE_KEY, next.to_string().as_bytes(), cas).is_ok() {
            return Ok(next);
        }
    }
    Err(Contended)
}

/// Apply `change` to a bucket with CAS, retrying on a concurrent write.
fn update<R>(shared: &dyn SharedData, bucket: u32, mut change: impl FnMut(&mut Bucket) -> R) -> Result<R, Contended> {
    let key = key(bucket);
    for _ in 0..ATTEMPTS {
        let (value, cas) = shared.get(&key);
        let mut b = Bucket::decode(value.as_deref());
        let out = change(&mut b);
        if shared.set(&key, &b.encode(), cas).is_ok() {
            return Ok(out);
        }
    }
    Err(Contended)
}

/// Count a request in every one of `scopes`, or in none: a refusal in one scope refunds the
/// scopes counted before it.
pub fn admit(shared: &dyn SharedData, scopes: &[Scope], slot: u64, now: u64, window: u64) -> Result<Admission, Refusal> {
    let mut admission = Admission::default();
    for scope in scopes {
        let bucket = bucket_of(&scope.counter());
        match update(shared, bucket, |b| b.admit(scope, slot, now, window)) {
            Ok(Ok((held, statuses))) => {
                admission.held.push(held);
                admission.statuses.extend(statuses);
            }
            refused => {
                refund(shared, &admission);
                return Err(match refused {
                    Ok(Err(over)) => Refusal::Over(over),
                    _ => Refusal::Unverifiable,
                });
            }
        }
    }
    Ok(admission)
}

fn refund(shared: &dyn SharedData, admission: &Admission) {
    for held in &admission.held {
        // A refund that loses every CAS leaves one request too many counted: stricter, never
        // looser.
        let _ = update(shared, bucket_of(&held.counter), |b| b.refund(held));
    }
}

/// The request ended: count its answer's `tokens` and give its slots back.
pub fn settle(shared: &dyn SharedData, admission: &Admission, tokens: u64, now: u64, window: u64) -> Result<(), Contended> {
    let mut result = Ok(());
    for held in &admission.held {
        if update(shared, bucket_of(&held.counter), |b| b.settle(held, tokens, now, window)).is_err() {
            result = Err(Contended);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Dimension;
    use crate::store::mock::MockShared;

    fn scope(key: &'static str, value: &str, rpm: Option<u64>, parallel: Option<u64>) -> Scope {
        Scope { key, value: value.into(), rpm, tpm: None, parallel }
    }

    #[test]
    fn workers_get_distinct_numbers_and_buckets_exist_after_init() {
        let shared = MockShared::default();
        assert_eq!(init(&shared), Ok(1));
        assert_eq!(init(&shared), Ok(2));
        assert!(shared.get(&key(BUCKETS - 1)).1.is_some());
    }

    #[test]
    fn a_refusal_in_one_scope_refunds_the_others() {
        let shared = MockShared::default();
        init(&shared).unwrap();
        let scopes = [scope("team", "t", Some(5), None), scope("user", "u", Some(1), None)];
        assert!(admit(&shared, &scopes, 1, 0, 60).is_ok());
        let Err(Refusal::Over(over)) = admit(&shared, &scopes, 2, 1, 60) else { panic!("user over") };
        assert_eq!((over.key, over.dimension), ("user", Dimension::Requests));
        // The team counted one request, not two: four more fit.
        for i in 0..4 {
            assert!(admit(&shared, &scopes[..1], 10 + i, 2, 60).is_ok(), "{i}");
        }
        assert!(admit(&shared, &scopes[..1], 20, 2, 60).is_err());
    }

    #[test]
    fn settling_gives_the_slot_back_in_every_scope() {
        let shared = MockShared::default();
        init(&shared).unwrap();
        let scopes = [scope("team", "t", None, Some(1)), scope("user", "u", None, Some(1))];
        let a = admit(&shared, &scopes, 1, 0, 60).unwrap();
        assert!(admit(&shared, &scopes, 2, 0, 60).is_err());
        settle(&shared, &a, 0, 1, 60).unwrap();
        assert!(admit(&shared, &scopes, 3, 1, 60).is_ok());
    }

    fn stored_bytes(shared: &MockShared) -> usize {
        shared.data.borrow().iter().filter(|(k, _)| k.starts_with(LIMITS_PREFIX)).map(|(_, (v, _))| v.len()).sum()
    }

    #[test]
    fn memory_follows_the_identities_of_the_last_window_not_every_one_seen() {
        let shared = MockShared::default();
        init(&shared).unwrap();
        let user = |i: usize| scope("user", &format!("u{i}"), Some(100), None);
        for i in 0..100_000 {
            admit(&shared, &[user(i)], i as u64, 0, 60).unwrap();
        }
        let full = stored_bytes(&shared);
        assert!(full > 100_000 * 30, "{full}");
        // A window later, other identities come: every bucket they touch drops the old ones.
        for i in 0..20_000 {
            admit(&shared, &[user(1_000_000 + i)], i as u64, 61, 60).unwrap();
        }
        let after = stored_bytes(&shared);
        assert!(after < full / 3, "{after} of {full}: old counters were not dropped");
        let kept: usize = (0..BUCKETS).map(|b| Bucket::decode(shared.get(&key(b)).0.as_deref()).len()).sum();
        assert_eq!(kept, 20_000, "only this window's identities are kept");
    }

    /// A store whose every write loses its CAS (another worker always wins).
    struct AlwaysContended;
    impl SharedData for AlwaysContended {
        fn get(&self, _: &str) -> (Option<Vec<u8>>, Option<u32>) {
            (None, Some(1))
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), ()> {
            Err(())
        }
    }

    #[test]
    fn counters_that_cannot_be_updated_refuse_never_admit() {
        let got = admit(&AlwaysContended, &[scope("team", "t", Some(5), None)], 1, 0, 60);
        assert_eq!(got, Err(Refusal::Unverifiable));
        assert_eq!(init(&AlwaysContended), Err(Contended));
    }
}
