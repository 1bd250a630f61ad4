//! The verified-token cache: per worker, bounded (LRU). A hit skips parsing and signature
//! verification — the expensive part — but never the time checks, which the caller re-runs on
//! every hit. Only tokens that verified are stored; an entry is dropped at the token's `exp`,
//! when the key set it was verified with expires, and whenever the worker's key sets change (a
//! rotated-out key must not keep admitting tokens it signed).
//!
//! An entry's slot is a keyed hash (SipHash, random per worker) of the token's last
//! [`TAIL_BYTES`] bytes, and a hit requires the whole token to be equal to the stored one. The
//! tail lies inside the signature of every JWS this filter accepts (86 characters at least),
//! and entries are only stored after their signature verified: nobody can choose which slot
//! a stored token takes, and a token that shares a slot with a stored one is a plain miss.
//! Hashing a fixed tail instead of the whole token (0.5–4 KiB) keeps a hit's cost flat: it
//! was two SipHash passes over the whole token per hit before (measured in bench/PROFILE.md).

use crate::authn::Verified;
use lru::LruCache;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::num::NonZeroUsize;
use std::rc::Rc;

/// How much of the token's end chooses its slot.
pub const TAIL_BYTES: usize = 32;

struct Entry {
    token: Box<str>,
    verified: Rc<Verified>,
    /// `exp` in seconds, if the token has one.
    expires: Option<u64>,
    /// The key-set generation the token was verified under.
    generation: u64,
    /// Until when (ms) the key set it was verified with may be used.
    keys_until_ms: u64,
}

/// The slot is already a keyed hash: the map uses it as is.
#[derive(Default)]
struct Slot(u64);

impl Hasher for Slot {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub struct TokenCache {
    entries: Option<LruCache<u64, Entry, BuildHasherDefault<Slot>>>,
    keys: RandomState,
    hits: u64,
    misses: u64,
}

impl TokenCache {
    /// A cache of `capacity` tokens; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            entries: NonZeroUsize::new(capacity).map(|n| LruCache::with_hasher(n, BuildHasherDefault::default())),
            keys: RandomState::new(),
            hits: 0,
            misses: 0,
        }
    }

    fn slot(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        let tail = bytes.get(bytes.len().saturating_sub(TAIL_BYTES)..).unwrap_or(bytes);
        self.keys.hash_one(tail)
    }

    /// The verified token, if cached, unexpired at `now_ms` and verified under `generation`
    /// with a key set still usable now.
    pub fn get(&mut self, token: &str, now_ms: u64, generation: u64) -> Option<Rc<Verified>> {
        let slot = self.slot(token);
        let entries = self.entries.as_mut()?;
        // One lookup: Ok(hit), Err(true) = this token's entry is stale, Err(false) = not here.
        let found = match entries.get(&slot) {
            Some(e) if *e.token == *token => {
                let usable = e.generation == generation && now_ms < e.keys_until_ms;
                if usable && e.expires.is_none_or(|exp| now_ms / 1000 < exp) {
                    Ok(Rc::clone(&e.verified))
                } else {
                    Err(true)
                }
            }
            _ => Err(false),
        };
        match found {
            Ok(verified) => {
                self.hits += 1;
                Some(verified)
            }
            Err(stale) => {
                if stale {
                    entries.pop(&slot);
                }
                self.misses += 1;
                None
            }
        }
    }

    /// Remember a token that verified under `generation` with a key set usable until
    /// `keys_until_ms`.
    pub fn insert(&mut self, token: &str, verified: Rc<Verified>, generation: u64, keys_until_ms: u64) {
        let slot = self.slot(token);
        if let Some(entries) = self.entries.as_mut() {
            let expires = crate::authn::claims::expiry(&verified.claims);
            entries.put(slot, Entry { token: token.into(), verified, expires, generation, keys_until_ms });
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
    use crate::testkeys::token;

    fn now() -> u64 {
        crate::testkeys::now() * 1000
    }

    fn verified(name: &str) -> (String, Rc<Verified>) {
        let t = token(name);
        let jws = crate::authn::jws::parse(&t).unwrap();
        let config = crate::config::compile(br#"{"public_key_url": "http://a/jwks"}"#, &|_| None).unwrap();
        (t, Rc::new(Verified::new(jws.claims, crate::authn::ClaimsFrom::Jwt, crate::authn::trust::TrustId::Global, &config)))
    }

    #[test]
    fn hit_returns_the_verified_token() {
        let mut c = TokenCache::new(4);
        let (t, jws) = verified("RS256");
        assert!(c.get(&t, now(), 1).is_none());
        c.insert(&t, jws.clone(), 1, u64::MAX);
        assert!(Rc::ptr_eq(&c.get(&t, now(), 1).unwrap(), &jws));
        assert_eq!(c.stats(), (1, 1));
    }

    #[test]
    fn entries_die_at_exp_and_on_key_set_change() {
        let mut c = TokenCache::new(4);
        let (t, jws) = verified("ES256");
        let exp = crate::authn::claims::expiry(&jws.claims).unwrap();
        c.insert(&t, jws, 1, u64::MAX);
        assert!(c.get(&t, exp * 1000 - 1, 1).is_some());
        assert!(c.get(&t, exp * 1000, 1).is_none(), "expired at exp");
        assert!(c.is_empty(), "and dropped");
        let (t, jws) = verified("ES256");
        c.insert(&t, jws, 1, u64::MAX);
        assert!(c.get(&t, now(), 2).is_none(), "key sets changed");
        assert!(c.is_empty());
    }

    #[test]
    fn entries_die_with_the_key_set_they_were_verified_with() {
        let mut c = TokenCache::new(4);
        let (t, jws) = verified("RS256");
        c.insert(&t, jws, 1, now() + 500);
        assert!(c.get(&t, now() + 499, 1).is_some());
        assert!(c.get(&t, now() + 500, 1).is_none(), "the key set expired: verify again");
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_least_recently_used_goes_first() {
        let mut c = TokenCache::new(2);
        let (a, ja) = verified("RS256");
        let (b, jb) = verified("PS256");
        let (d, jd) = verified("EdDSA");
        c.insert(&a, ja, 1, u64::MAX);
        c.insert(&b, jb, 1, u64::MAX);
        assert!(c.get(&a, now(), 1).is_some()); // a is now the most recent
        c.insert(&d, jd, 1, u64::MAX);
        assert_eq!(c.len(), 2);
        assert!(c.get(&b, now(), 1).is_none(), "b was least recently used");
        assert!(c.get(&a, now(), 1).is_some() && c.get(&d, now(), 1).is_some());
    }

    #[test]
    fn same_tail_other_token_is_a_miss_and_leaves_the_entry() {
        let mut c = TokenCache::new(4);
        let (t, jws) = verified("RS256");
        c.insert(&t, jws, 1, u64::MAX);
        // Same slot (same last TAIL_BYTES bytes), different token: never the stored entry.
        let forged = format!("x{}", &t[1..]);
        assert_eq!(c.slot(&forged), c.slot(&t));
        assert!(c.get(&forged, now(), 1).is_none());
        assert!(c.get(&t, now(), 1).is_some(), "the stored token is still there");
        let shorter = &t[t.len() - 10..];
        assert!(c.get(shorter, now(), 1).is_none(), "tokens shorter than the tail work too");
        assert_eq!(c.stats(), (1, 2));
    }

    #[test]
    fn capacity_zero_disables() {
        let mut c = TokenCache::new(0);
        let (t, jws) = verified("RS256");
        c.insert(&t, jws, 1, u64::MAX);
        assert!(c.get(&t, now(), 1).is_none());
    }
}
