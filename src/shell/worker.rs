//! Per-worker state shared by the root context and the request contexts of one worker thread:
//! the JWKS cache view, requests paused until keys arrive, and fetches in flight.
//!
//! Borrow discipline: the `RefCell` is never held across a host call that can re-enter the VM
//! (`resume_http_request`, `send_http_response`). Decisions are computed under the borrow and
//! applied after it is released.

use super::flow::{send_denial, Flow, Step};
use super::host::{now_ms, HostShared, HostVerifier};
use super::log;
use crate::authn::{authenticate, Decision, KeyLookup};
use crate::config::{FilterConfig, JwksSource};
use crate::error::AuthError;
use crate::jwks_cache::{JwksCache, Need};
use crate::jws::{self, Jws};
use crate::token_cache::TokenCache;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};
use std::cell::RefCell as FlowCell;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

/// JWKS responses larger than this are refused (a JWKS is a few KiB).
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Extra time a paused request waits beyond the fetch timeout before it gets a 503.
const WAIT_MARGIN_MS: u64 = 1000;

pub type SharedFlow = Rc<FlowCell<Flow>>;

struct Waiter {
    token: Box<str>,
    flow: SharedFlow,
    deadline_ms: u64,
}

/// The outcome of verifying a token with what the worker knows now.
pub enum Verification {
    Verified(Rc<Jws>),
    Deny(AuthError),
    /// Parsed, but its keys are not here yet.
    NeedKeys(Rc<Jws>),
}

struct Fetch {
    url: String,
    started_ms: u64,
}

pub struct Worker {
    pub config: Rc<FilterConfig>,
    cache: JwksCache,
    tokens: TokenCache,
    waiters: BTreeMap<u32, Waiter>,
    in_flight: HashMap<u32, Fetch>,
    crypto: HostVerifier,
}

pub type SharedWorker = Rc<RefCell<Worker>>;

impl Worker {
    pub fn new(config: FilterConfig) -> Self {
        for source in &config.jwks {
            JwksCache::init_fetch_key(&HostShared, &source.url);
        }
        Worker {
            tokens: TokenCache::new(config.token_cache_size),
            config: Rc::new(config),
            cache: JwksCache::default(),
            waiters: BTreeMap::new(),
            in_flight: HashMap::new(),
            crypto: HostVerifier::default(),
        }
    }

    /// Verify a token: from the verified-token cache (time claims re-checked), or by parsing and
    /// verifying it, remembering it when it verifies.
    pub fn verify(&mut self, token: &str, now_ms: u64) -> Verification {
        let now = now_ms / 1000;
        if let Some(jws) = self.tokens.get(token, now, self.cache.generation()) {
            return match crate::claims::validate(&jws.claims, &self.config.claim_rules, now) {
                Ok(()) => Verification::Verified(jws),
                Err(e) => Verification::Deny(e),
            };
        }
        let jws = match jws::parse(token) {
            Ok(parsed) => Rc::new(parsed),
            Err(e) => return Verification::Deny(e),
        };
        match self.decide(&jws, now_ms) {
            Decision::Verified => {
                self.tokens.insert(token, Rc::clone(&jws), self.cache.generation());
                Verification::Verified(jws)
            }
            Decision::Deny(e) => Verification::Deny(e),
            Decision::NeedKeys => Verification::NeedKeys(jws),
        }
    }

    /// Decide a parsed token with the keys this worker knows now.
    fn decide(&mut self, jws: &Jws, now_ms: u64) -> Decision {
        let config = Rc::clone(&self.config);
        let cache = &mut self.cache;
        let mut lookup = |s: &JwksSource| -> KeyLookup { cache.lookup(&HostShared, &s.url, now_ms) };
        authenticate(jws, &config, &mut lookup, &self.crypto, now_ms / 1000)
    }

    /// Park a request until its keys arrive (or the wait times out).
    pub fn wait(&mut self, context_id: u32, token: &str, flow: SharedFlow, now_ms: u64) {
        let deadline_ms = now_ms + self.config.fetch_timeout_ms + WAIT_MARGIN_MS;
        self.waiters.insert(context_id, Waiter { token: token.into(), flow, deadline_ms });
    }

    pub fn forget(&mut self, context_id: u32) {
        self.waiters.remove(&context_id);
    }

    /// Start the JWKS fetches nobody else has started (this worker wins the CAS lease).
    fn start_fetches(&mut self, now_ms: u64) {
        let lease_ms = self.config.fetch_timeout_ms + WAIT_MARGIN_MS;
        self.in_flight.retain(|_, f| now_ms < f.started_ms + lease_ms);
        let config = Rc::clone(&self.config);
        for source in &config.jwks {
            if self.cache.need(&HostShared, &source.url, now_ms) != Need::Fetch
                || !JwksCache::try_begin_fetch(&HostShared, &source.url, now_ms, lease_ms)
            {
                continue;
            }
            let headers = vec![
                (":method", "GET"),
                (":path", source.path.as_str()),
                (":authority", source.authority.as_str()),
                ("accept", "application/json"),
            ];
            let timeout = Duration::from_millis(config.fetch_timeout_ms);
            match hostcalls::dispatch_http_call(&source.cluster, headers, None, vec![], timeout) {
                Ok(token) => {
                    log(LogLevel::Debug, &format!("fetching JWKS {}", source.url));
                    self.in_flight.insert(token, Fetch { url: source.url.clone(), started_ms: now_ms });
                }
                Err(status) => {
                    let why = format!(
                        "cannot call cluster \"{}\" for {} ({status:?}); is the cluster defined?",
                        source.cluster, source.url
                    );
                    log(LogLevel::Error, &why);
                    let ttl = config.public_key_ttl_ms;
                    let _ = self.cache.complete_fetch(&HostShared, &source.url, now_ms, ttl, Err(why));
                }
            }
        }
    }

    /// Verification outcomes for every waiting request whose keys are now here.
    fn resolve_waiters(&mut self, now_ms: u64) -> Vec<(u32, SharedFlow, Decision)> {
        if self.waiters.is_empty() {
            return Vec::new();
        }
        let ids: Vec<u32> = self.waiters.keys().copied().collect();
        let mut decided = Vec::new();
        for id in ids {
            let Some(waiter) = self.waiters.get(&id) else { continue };
            let deadline = waiter.deadline_ms;
            let flow = Rc::clone(&waiter.flow);
            let token = waiter.token.clone();
            let Ok(jws) = flow.try_borrow().map(|f| Rc::clone(&f.jws)) else { continue };
            let decision = match self.decide(&jws, now_ms) {
                Decision::Verified => {
                    self.tokens.insert(&token, jws, self.cache.generation());
                    Decision::Verified
                }
                Decision::NeedKeys if now_ms < deadline => continue,
                Decision::NeedKeys => Decision::Deny(AuthError::KeysUnavailable(
                    "timed out waiting for the JWKS".into(),
                )),
                other => other,
            };
            self.waiters.remove(&id);
            decided.push((id, flow, decision));
        }
        decided
    }

    /// Handle a JWKS response for `token`; `false` if the token was not a JWKS fetch.
    fn complete(&mut self, token: u32, num_headers: usize, body_size: usize, now_ms: u64) -> bool {
        let Some(fetch) = self.in_flight.remove(&token) else { return false };
        let outcome = if num_headers == 0 {
            Err(format!("no response from {} (timeout or connection failure)", fetch.url))
        } else {
            let status = hostcalls::get_map(MapType::HttpCallResponseHeaders)
                .ok()
                .and_then(|h| h.into_iter().find(|(k, _)| k == ":status").map(|(_, v)| v))
                .unwrap_or_default();
            if status != "200" {
                Err(format!("JWKS endpoint {} returned status {status}", fetch.url))
            } else if body_size > MAX_JWKS_BYTES {
                Err(format!("JWKS from {} is larger than {MAX_JWKS_BYTES} bytes", fetch.url))
            } else {
                Ok(hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                    .ok()
                    .flatten()
                    .unwrap_or_default())
            }
        };
        let ttl = self.config.public_key_ttl_ms;
        match self.cache.complete_fetch(&HostShared, &fetch.url, now_ms, ttl, outcome) {
            Ok(()) => log(LogLevel::Info, &format!("JWKS {} loaded", fetch.url)),
            Err(why) => log(LogLevel::Warn, &format!("JWKS fetch failed: {why}")),
        }
        true
    }
}

/// Start what needs starting and settle what can be settled. Called on every tick, after a
/// JWKS response, and when a request starts waiting.
pub fn pump(worker: &SharedWorker) {
    let now = now_ms();
    let decided = match worker.try_borrow_mut() {
        Ok(mut w) => {
            w.start_fetches(now);
            w.resolve_waiters(now)
        }
        Err(_) => return,
    };
    for (context_id, flow, decision) in decided {
        // The request may be gone (client hung up); then there is nothing to answer.
        if hostcalls::set_effective_context(context_id).is_ok() {
            resume(&flow, decision);
        }
    }
}

/// Route a dispatch response to the worker; `true` if it was a JWKS fetch.
pub fn on_fetch_response(worker: &SharedWorker, token: u32, num_headers: usize, body_size: usize) -> bool {
    let handled = match worker.try_borrow_mut() {
        Ok(mut w) => w.complete(token, num_headers, body_size, now_ms()),
        Err(_) => false,
    };
    if handled {
        pump(worker);
    }
    handled
}

/// Move a request on after its keys arrived: authorize (unless the body is still coming, in
/// which case the body callback will) and resume or answer it.
fn resume(flow: &SharedFlow, decision: Decision) {
    let Ok(mut flow) = flow.try_borrow_mut() else { return };
    let step = match decision {
        Decision::Verified => {
            flow.verified = true;
            flow.authorize()
        }
        Decision::Deny(error) => Step::Deny(error),
        Decision::NeedKeys => Step::Deny(AuthError::KeysUnavailable("keys not available".into())),
    };
    match step {
        Step::Continue => {
            flow.done = true;
            drop(flow);
            let _ = hostcalls::resume_http_request();
        }
        Step::Deny(error) => {
            flow.done = true;
            drop(flow);
            send_denial(&error);
        }
        Step::Wait => {}
    }
}
