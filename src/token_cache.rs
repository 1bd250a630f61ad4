//! The verified-token cache: per worker, bounded (LRU), keyed by the token text. A hit skips
//! parsing and signature verification — the expensive part — but never the time checks, which
//! the caller re-runs on every hit. Only tokens that verified are stored; an entry is dropped
//! at the token's `exp` and whenever the worker's key sets change (a rotated-out key must not
//! keep admitting tokens it signed).

use crate::jws::Jws;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::rc::Rc;

pub const DEFAULT_CAPACITY: usize = 4096;

struct Entry {
    jws: Rc<Jws>,
    /// `exp` in seconds, if the token has one.
    expires: Option<u64>,
    /// The key-set generation the token was verified under.
    generation: u64,
}

pub struct TokenCache {
    entries: Option<LruCache<Box<str>, Entry>>,
    hits: u64,
    misses: u64,
}

impl TokenCache {
    /// A cache of `capacity` tokens; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        TokenCache { entries: NonZeroUsize::new(capacity).map(LruCache::new), hits: 0, misses: 0 }
    }

    /// The verified token, if cached, unexpired at `now` and verified under `generation`.
    pub fn get(&mut self, token: &str, now: u64, generation: u64) -> Option<Rc<Jws>> {
        let entries = self.entries.as_mut()?;
        let usable = match entries.get(token) {
            Some(e) => e.generation == generation && e.expires.is_none_or(|exp| now < exp),
            None => {
                self.misses += 1;
                return None;
            }
        };
        if !usable {
            entries.pop(token);
            self.misses += 1;
            return None;
        }
        self.hits += 1;
        entries.get(token).map(|e| Rc::clone(&e.jws))
    }

    /// Remember a token that verified under `generation`.
    pub fn insert(&mut self, token: &str, jws: Rc<Jws>, generation: u64) {
        if let Some(entries) = self.entries.as_mut() {
            let expires = crate::claims::expiry(&jws.claims);
            entries.put(token.into(), Entry { jws, expires, generation });
        }
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, LruCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(hits, misses)` since start.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys::{now, token};

    fn verified(name: &str) -> (String, Rc<Jws>) {
        let t = token(name);
        let jws = Rc::new(crate::jws::parse(&t).unwrap());
        (t, jws)
    }

    #[test]
    fn hit_returns_the_verified_token() {
        let mut c = TokenCache::new(4);
        let (t, jws) = verified("RS256");
        assert!(c.get(&t, now(), 1).is_none());
        c.insert(&t, jws.clone(), 1);
        assert_eq!(c.get(&t, now(), 1).as_deref(), Some(&*jws));
        assert_eq!(c.stats(), (1, 1));
    }

    #[test]
    fn entries_die_at_exp_and_on_key_set_change() {
        let mut c = TokenCache::new(4);
        let (t, jws) = verified("ES256");
        let exp = crate::claims::expiry(&jws.claims).unwrap();
        c.insert(&t, jws, 1);
        assert!(c.get(&t, exp - 1, 1).is_some());
        assert!(c.get(&t, exp, 1).is_none(), "expired at exp");
        assert!(c.is_empty(), "and dropped");
        let (t, jws) = verified("ES256");
        c.insert(&t, jws, 1);
        assert!(c.get(&t, now(), 2).is_none(), "key sets changed");
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_least_recently_used_goes_first() {
        let mut c = TokenCache::new(2);
        let (a, ja) = verified("RS256");
        let (b, jb) = verified("PS256");
        let (d, jd) = verified("EdDSA");
        c.insert(&a, ja, 1);
        c.insert(&b, jb, 1);
        assert!(c.get(&a, now(), 1).is_some()); // a is now the most recent
        c.insert(&d, jd, 1);
        assert_eq!(c.len(), 2);
        assert!(c.get(&b, now(), 1).is_none(), "b was least recently used");
        assert!(c.get(&a, now(), 1).is_some() && c.get(&d, now(), 1).is_some());
    }

    #[test]
    fn capacity_zero_disables() {
        let mut c = TokenCache::new(0);
        let (t, jws) = verified("RS256");
        c.insert(&t, jws, 1);
        assert!(c.get(&t, now(), 1).is_none());
    }
}
