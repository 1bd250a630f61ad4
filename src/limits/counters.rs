//! The counters, as they live in shared data: scopes are hashed into [`BUCKETS`] buckets, one
//! shared-data value each, updated with CAS (see `store::limits`). A bucket holds the counters
//! of the scopes active in it; a counter whose window has passed and that holds no parallel
//! slot is dropped the next time its bucket is written, so memory follows the identities
//! active in the last window, not every identity ever seen (shared data has no delete).
//!
//! The window is LiteLLM's: it starts at a scope's first request and lasts the window size; the
//! first request after that starts a new one. A request is admitted when every limit holds
//! *after* it (`requests + 1 ≤ rpm`, `tokens < tpm` — tokens are only known once it is
//! answered — and `slots < max_parallel_requests`).

use super::{Dimension, Over, Scope, Status, SLOT_TTL_SECONDS};

/// How many shared-data values the counters are spread over. More buckets mean less CAS
/// contention between scopes and smaller values to rewrite; each is created at start (CAS
/// needs the key to exist).
pub const BUCKETS: u32 = 1024;

/// The bucket of a counter (FNV-1a: stable across workers and builds of one binary; a
/// collision only makes two scopes share a value, never a counter).
pub fn bucket_of(counter: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in counter.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(BUCKETS)) as u32
}

/// One scope's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counter {
    name: String,
    window_start: u64,
    requests: u64,
    tokens: u64,
    /// Parallel slots held: `(slot id, since)`.
    slots: Vec<(u64, u64)>,
}

/// One bucket's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    counters: Vec<Counter>,
}

/// What a request holds in one scope, to refund or settle it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub counter: String,
    /// The window its request was counted in.
    pub window_start: u64,
    pub slot: Option<u64>,
    /// Its answer's tokens are counted here (the scope has a `tpm`).
    pub counts_tokens: bool,
}

impl Bucket {
    /// An unreadable value reads as empty: only this filter writes these keys, in this format,
    /// under a versioned prefix.
    pub fn decode(bytes: Option<&[u8]>) -> Bucket {
        let mut r = Reader(bytes.unwrap_or_default());
        let mut counters = Vec::new();
        while !r.0.is_empty() {
            match r.counter() {
                Some(c) => counters.push(c),
                None => return Bucket::default(),
            }
        }
        Bucket { counters }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.counters.len() * 48);
        for c in &self.counters {
            let name = c.name.as_bytes();
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
            for n in [c.window_start, c.requests, c.tokens] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&(c.slots.len() as u16).to_le_bytes());
            for (id, since) in &c.slots {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&since.to_le_bytes());
            }
        }
        out
    }

    /// Drop leaked slots and counters that no longer count anything.
    fn prune(&mut self, now: u64, window: u64) {
        for c in &mut self.counters {
            c.slots.retain(|(_, since)| now.saturating_sub(*since) < SLOT_TTL_SECONDS);
        }
        self.counters.retain(|c| !c.slots.is_empty() || now.saturating_sub(c.window_start) < window);
    }

    /// Take out the scope's counter, in a window that holds `now` (a new one when the last has
    /// passed); [`Bucket::put`] it back.
    fn take(&mut self, name: &str, now: u64, window: u64) -> Counter {
        let mut c = match self.counters.iter().position(|c| c.name == name) {
            Some(at) => self.counters.swap_remove(at),
            None => Counter { name: name.to_string(), window_start: now, requests: 0, tokens: 0, slots: Vec::new() },
        };
        if now.saturating_sub(c.window_start) >= window {
            c.window_start = now;
            c.requests = 0;
            c.tokens = 0;
        }
        c
    }

    fn put(&mut self, c: Counter) {
        self.counters.push(c);
    }

    /// Count a request in `scope` if every one of its limits holds with it; `slot` is the id
    /// its parallel slot gets. `Ok`: what it holds and the remaining counts.
    pub fn admit(&mut self, scope: &Scope, slot: u64, now: u64, window: u64) -> Result<(Held, Vec<Status>), Over> {
        self.prune(now, window);
        let name = scope.counter();
        let mut c = self.take(&name, now, window);
        let over = |dimension, limit, remaining, reset_at| Over {
            key: scope.key,
            value: scope.value.clone(),
            dimension,
            limit,
            remaining,
            reset_at,
            now,
        };
        let window_end = c.window_start + window;
        let refused = if let Some(rpm) = scope.rpm.filter(|rpm| c.requests >= *rpm) {
            Some(over(Dimension::Requests, rpm, 0, window_end))
        } else if let Some(tpm) = scope.tpm.filter(|tpm| c.tokens >= *tpm) {
            Some(over(Dimension::Tokens, tpm, 0, window_end))
        } else {
            scope.parallel.filter(|p| c.slots.len() as u64 >= *p).map(|p| over(Dimension::Parallel, p, 0, now + 1))
        };
        if let Some(refused) = refused {
            self.put(c);
            return Err(refused);
        }
        c.requests += 1;
        let held_slot = scope.parallel.map(|_| slot);
        if let Some(id) = held_slot {
            c.slots.push((id, now));
        }
        let mut statuses = Vec::with_capacity(3);
        if let Some(rpm) = scope.rpm {
            statuses.push(Status { key: scope.key, dimension: Dimension::Requests, limit: rpm, remaining: rpm.saturating_sub(c.requests) });
        }
        if let Some(tpm) = scope.tpm {
            statuses.push(Status { key: scope.key, dimension: Dimension::Tokens, limit: tpm, remaining: tpm.saturating_sub(c.tokens) });
        }
        if let Some(parallel) = scope.parallel {
            let remaining = parallel.saturating_sub(c.slots.len() as u64);
            statuses.push(Status { key: scope.key, dimension: Dimension::Parallel, limit: parallel, remaining });
        }
        let held = Held { counter: name, window_start: c.window_start, slot: held_slot, counts_tokens: scope.tpm.is_some() };
        self.put(c);
        Ok((held, statuses))
    }

    /// Take back an admission (the request was refused in another scope): its request, if its
    /// window is still the current one, and its slot.
    pub fn refund(&mut self, held: &Held) {
        if let Some(c) = self.counters.iter_mut().find(|c| c.name == held.counter) {
            if c.window_start == held.window_start {
                c.requests = c.requests.saturating_sub(1);
            }
            c.slots.retain(|(id, _)| Some(*id) != held.slot);
        }
    }

    /// The request ended: give its slot back and count the `tokens` its answer used, in the
    /// window current now.
    pub fn settle(&mut self, held: &Held, tokens: u64, now: u64, window: u64) {
        self.prune(now, window);
        if held.counts_tokens && tokens > 0 {
            let mut c = self.take(&held.counter, now, window);
            c.tokens = c.tokens.saturating_add(tokens);
            self.put(c);
        }
        if let Some(c) = self.counters.iter_mut().find(|c| c.name == held.counter) {
            c.slots.retain(|(id, _)| Some(*id) != held.slot);
        }
        self.prune(now, window);
    }

    /// How many scopes the bucket counts.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.counters.len()
    }

    #[cfg(test)]
    fn counter(&self, name: &str) -> Option<(u64, u64, usize)> {
        self.counters.iter().find(|c| c.name == name).map(|c| (c.requests, c.tokens, c.slots.len()))
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<usize> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn counter(&mut self) -> Option<Counter> {
        let len = self.u16()?;
        let name = std::str::from_utf8(self.take(len)?).ok()?.to_string();
        let (window_start, requests, tokens) = (self.u64()?, self.u64()?, self.u64()?);
        let n = self.u16()?;
        let mut slots = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            slots.push((self.u64()?, self.u64()?));
        }
        Some(Counter { name, window_start, requests, tokens, slots })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(rpm: Option<u64>, tpm: Option<u64>, parallel: Option<u64>) -> Scope {
        Scope { key: "team", value: "t1".into(), rpm, tpm, parallel }
    }

    #[test]
    fn requests_are_admitted_up_to_the_limit_in_a_window_that_starts_at_the_first() {
        let mut b = Bucket::default();
        let s = scope(Some(2), None, None);
        let (_, st) = b.admit(&s, 1, 100, 60).unwrap();
        assert_eq!(st, vec![Status { key: "team", dimension: Dimension::Requests, limit: 2, remaining: 1 }]);
        assert!(b.admit(&s, 2, 130, 60).is_ok());
        let over = b.admit(&s, 3, 159, 60).unwrap_err();
        assert_eq!((over.dimension, over.limit, over.remaining, over.reset_at), (Dimension::Requests, 2, 0, 160));
        assert_eq!(b.counter("team:t1"), Some((2, 0, 0)), "a refusal is not counted");
        assert!(b.admit(&s, 4, 160, 60).is_ok(), "a new window at 160");
        assert_eq!(b.counter("team:t1"), Some((1, 0, 0)));
    }

    #[test]
    fn tokens_refuse_once_the_window_used_them_up() {
        let mut b = Bucket::default();
        let s = scope(None, Some(100), None);
        let (held, _) = b.admit(&s, 1, 0, 60).unwrap();
        b.settle(&held, 99, 5, 60);
        let (held, st) = b.admit(&s, 2, 6, 60).unwrap();
        assert_eq!(st[0].remaining, 1);
        b.settle(&held, 1, 7, 60);
        let over = b.admit(&s, 3, 8, 60).unwrap_err();
        assert_eq!((over.dimension, over.limit, over.reset_at), (Dimension::Tokens, 100, 60));
        assert!(b.admit(&s, 4, 60, 60).is_ok(), "the next window starts empty");
    }

    #[test]
    fn parallel_slots_are_held_until_settled_and_leaked_ones_expire() {
        let mut b = Bucket::default();
        let s = scope(None, None, Some(2));
        let (a, _) = b.admit(&s, 1, 0, 60).unwrap();
        let (_, st) = b.admit(&s, 2, 0, 60).unwrap();
        assert_eq!(st[0].remaining, 0);
        assert_eq!(b.admit(&s, 3, 1, 60).unwrap_err().dimension, Dimension::Parallel);
        b.settle(&a, 0, 2, 60);
        assert!(b.admit(&s, 4, 3, 60).is_ok(), "slot 1 was given back");
        assert!(b.admit(&s, 5, 4, 60).is_err());
        assert!(b.admit(&s, 6, SLOT_TTL_SECONDS, 60).is_ok(), "slot 2 leaked: expired");
        // A window passing never frees a slot.
        let mut b = Bucket::default();
        b.admit(&s, 1, 0, 60).unwrap();
        b.admit(&s, 2, 0, 60).unwrap();
        assert!(b.admit(&s, 3, 61, 60).is_err());
    }

    #[test]
    fn a_refund_takes_back_the_request_and_the_slot() {
        let mut b = Bucket::default();
        let s = scope(Some(1), None, Some(1));
        let (held, _) = b.admit(&s, 9, 0, 60).unwrap();
        b.refund(&held);
        assert_eq!(b.counter("team:t1"), Some((0, 0, 0)));
        assert!(b.admit(&s, 10, 1, 60).is_ok());
    }

    #[test]
    fn settling_in_a_later_window_counts_there_and_idle_counters_are_dropped() {
        let mut b = Bucket::default();
        let s = scope(Some(10), Some(50), None);
        let (held, _) = b.admit(&s, 1, 0, 60).unwrap();
        b.settle(&held, 30, 70, 60);
        assert_eq!(b.counter("team:t1"), Some((0, 30, 0)), "a stream that ended in the next window");
        let other = Scope { value: "t2".into(), ..s.clone() };
        b.admit(&other, 2, 200, 60).unwrap();
        assert_eq!(b.counter("team:t1"), None, "dropped: its window passed, no slot");
        assert_eq!(b.counter("team:t2"), Some((1, 0, 0)));
    }

    #[test]
    fn encoding_round_trips_and_garbage_reads_as_empty() {
        let mut b = Bucket::default();
        b.admit(&scope(Some(3), Some(4), Some(5)), 77, 10, 60).unwrap();
        b.admit(&Scope { key: "user", value: "ü".into(), rpm: Some(1), tpm: None, parallel: None }, 78, 11, 60).unwrap();
        assert_eq!(Bucket::decode(Some(&b.encode())), b);
        assert_eq!(Bucket::decode(None), Bucket::default());
        let mut cut = b.encode();
        cut.pop();
        assert_eq!(Bucket::decode(Some(&cut)), Bucket::default());
    }

    #[test]
    fn buckets_spread_and_are_stable() {
        assert_eq!(bucket_of("team:t1"), bucket_of("team:t1"));
        let used: std::collections::HashSet<u32> = (0..4096).map(|i| bucket_of(&format!("user:u{i}"))).collect();
        assert!(used.len() > 900, "{}", used.len());
        assert!(used.iter().all(|b| *b < BUCKETS));
    }
}
