//! Per-worker state shared by the root context and the request contexts of one worker thread:
//! the JWKS cache view, the record store view, the verified-token cache, requests paused until
//! keys or records arrive, and fetches in flight.
//!
//! Borrow discipline: the `RefCell` is never held across a host call that can re-enter the VM
//! (`resume_http_request`, `send_http_response`). Decisions are computed under the borrow and
//! applied after it is released.

use super::flow::{send_denial, Body, Flow, Step};
use super::host::{now_ms, HostShared, HostVerifier};
use super::log;
use super::metrics::{count, record, Metric};
use crate::authn::{authenticate, Decision, KeyLookup, KeySets};
use crate::authz::Records;
use crate::config::{FilterConfig, JwksSource, RecordSource, SourceKind};
use crate::store::discovery;
use crate::error::{AuthError, Outage};
use crate::store::jwks::{JwksCache, Need};
use crate::authn::jws::{self, Jws};
use crate::store::records::{RecordLookup, RecordStore};
use crate::records::{Record, RecordKey};
use crate::store::token_cache::TokenCache;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

/// JWKS and record responses larger than this are refused.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Extra time a paused request waits beyond the fetch timeout before it gets a 503.
const WAIT_MARGIN_MS: u64 = 1000;

pub type SharedFlow = Rc<RefCell<Flow>>;
pub type SharedWorker = Rc<RefCell<Worker>>;

/// How long a request held for its body may go without any body callback. Envoy only
/// delivers the body after a headers pause with `allow_on_headers_stop_iteration: true`;
/// without it the request would hang, so it is answered with an explanation instead.
const FIRST_BODY_CALLBACK_MS: u64 = 10_000;

/// What a paused request waits for.
enum Awaiting {
    /// Keys for this token (kept to remember it in the verified-token cache once it verifies).
    Keys(Box<str>),
    Records(Vec<RecordKey>),
    /// The first body callback (see [`FIRST_BODY_CALLBACK_MS`]).
    Body,
}

struct Waiter {
    flow: SharedFlow,
    awaiting: Awaiting,
    deadline_ms: u64,
}

/// The outcome of verifying a token with what the worker knows now.
pub enum Verification {
    Verified(Rc<Jws>),
    Deny(AuthError),
    /// Parsed, but its keys are not here yet.
    NeedKeys(Rc<Jws>),
}

/// A waiting request that can move on now.
enum Ready {
    Verified,
    Deny(AuthError),
    /// Its records are known now: authorize again.
    Records,
}

enum Target {
    /// The key set cached under this key URL.
    Jwks(String),
    /// The key set of a discovery URL (`key_url`), from the `jwks_uri` its document named.
    DiscoveredJwks { key_url: String, jwks_uri: String },
    /// The OIDC discovery document at this key URL.
    Discovery(String),
    Record(RecordKey),
    WriteThrough(RecordKey),
}

struct Fetch {
    target: Target,
    started_ms: u64,
}

pub struct Worker {
    pub config: Rc<FilterConfig>,
    cache: JwksCache,
    records: RecordStore,
    tokens: TokenCache,
    waiters: BTreeMap<u32, Waiter>,
    in_flight: HashMap<u32, Fetch>,
    crypto: HostVerifier,
    /// Configuration faults already logged as critical (see [`Worker::report_misconfigured`]).
    reported: HashSet<String>,
}

/// The shared key sets as the decision sees them, at one instant.
struct CachedKeys<'a> {
    cache: &'a mut JwksCache,
    config: &'a FilterConfig,
    now_ms: u64,
}

impl KeySets for CachedKeys<'_> {
    fn lookup(&mut self, source: &JwksSource) -> KeyLookup {
        self.cache.lookup(&HostShared, &source.url, self.now_ms)
    }

    fn refetch_for_unknown_kid(&mut self, source: &JwksSource) -> bool {
        let lease_ms = self.config.fetch_timeout_ms + WAIT_MARGIN_MS;
        let interval = self.config.kid_refetch_interval_ms;
        self.cache.refetch_for_unknown_kid(&HostShared, &source.url, self.now_ms, interval, lease_ms)
    }
}

/// The record store as the decision sees it: lookups at one instant, upserts applied.
pub struct WorkerRecords<'a> {
    store: &'a mut RecordStore,
    source: Option<&'a RecordSource>,
    in_flight: &'a mut HashMap<u32, Fetch>,
    now_ms: u64,
}

impl Records for WorkerRecords<'_> {
    fn enabled(&self) -> bool {
        self.store.enabled()
    }
    fn lookup(&mut self, key: &RecordKey) -> RecordLookup {
        let found = self.store.lookup(&HostShared, key, self.now_ms);
        match found {
            RecordLookup::Found(_) | RecordLookup::NotFound => count(Metric::RecordStoreHit),
            RecordLookup::Pending => count(Metric::RecordStoreMiss),
            RecordLookup::Unavailable(_) => {}
        }
        found
    }
}

impl WorkerRecords<'_> {
    /// Store LiteLLM's upserted default records, and create them at LiteLLM when configured.
    pub fn upsert(&mut self, records: Vec<Record>) {
        for record in records {
            let key = record.key();
            if let Some(source) = self.source.filter(|s| s.write_through && s.kind == SourceKind::Litellm) {
                write_through(source, &record, &key, self.in_flight, self.now_ms);
            }
            self.store.upsert(&HostShared, &key, record, self.now_ms);
        }
    }
}

fn url_encode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `dispatch_http_call`. Envoy refuses it (BadArgument) when it has no such cluster: the
/// gateway's configuration is incomplete, which retrying will not fix.
fn dispatch(source_cluster: &str, method: &str, authority: &str, path: &str, extra: &[(String, String)], body: Option<&[u8]>, timeout_ms: u64) -> Result<u32, Outage> {
    let mut headers: Vec<(&str, &str)> =
        vec![(":method", method), (":path", path), (":authority", authority), ("accept", "application/json")];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    hostcalls::dispatch_http_call(source_cluster, headers, body, vec![], Duration::from_millis(timeout_ms))
        .map_err(|status| {
            Outage::misconfigured(format!(
                "Envoy refused to call cluster \"{source_cluster}\" ({status:?}): define that cluster, or map the URL's \
                 host:port to an existing one in `clusters`"
            ))
        })
}

fn write_through(source: &RecordSource, record: &Record, key: &RecordKey, in_flight: &mut HashMap<u32, Fetch>, now_ms: u64) {
    let (path, body) = match record {
        Record::Team(t) => ("/team/new", serde_json::json!({"team_id": t.team_id})),
        Record::User(u) => ("/user/new", serde_json::json!({"user_id": u.user_id, "user_email": u.user_email})),
        _ => return,
    };
    let path = format!("{}{path}", source.base_path);
    let body = body.to_string();
    match dispatch(&source.cluster, "POST", &source.authority, &path, &source.headers, Some(body.as_bytes()), source.timeout_ms) {
        Ok(token) => {
            in_flight.insert(token, Fetch { target: Target::WriteThrough(key.clone()), started_ms: now_ms });
        }
        Err(o) => log(LogLevel::Warn, &format!("write-through of {} {} failed: {}", key.kind.as_str(), key.id, o.detail)),
    }
}

impl Worker {
    pub fn new(config: FilterConfig) -> Self {
        for source in config.key_sources() {
            JwksCache::init_fetch_key(&HostShared, &source.url);
        }
        let grace_ms = config.fetch_timeout_ms;
        Worker {
            tokens: TokenCache::new(config.token_cache_size),
            records: RecordStore::new(config.statics.clone(), config.record_source.is_some(), config.record_lifetimes)
                .for_source(&format!("{:?}", config.record_source)),
            config: Rc::new(config),
            cache: JwksCache::new(grace_ms),
            waiters: BTreeMap::new(),
            in_flight: HashMap::new(),
            crypto: HostVerifier::default(),
            reported: HashSet::new(),
        }
    }

    pub fn records_enabled(&self) -> bool {
        self.records.enabled()
    }

    /// The record store for one decision at `now_ms`.
    pub fn records(&mut self, now_ms: u64) -> WorkerRecords<'_> {
        WorkerRecords {
            store: &mut self.records,
            source: self.config.record_source.as_ref(),
            in_flight: &mut self.in_flight,
            now_ms,
        }
    }

    /// Verify a token: from the verified-token cache (time claims re-checked), or by parsing and
    /// verifying it, remembering it when it verifies.
    /// `now_us` is the request's clock reading (microseconds), reused for the latency figure.
    pub fn verify(&mut self, token: &str, now_us: u64) -> Verification {
        let now_ms = now_us / 1000;
        let now = now_ms / 1000;
        if let Some(jws) = self.tokens.get(token, now_ms, self.cache.generation()) {
            count(Metric::TokenCacheHit);
            let rules = crate::authn::trust::select(&self.config, &jws.claims).map(|t| t.claim_rules);
            return match rules.and_then(|rules| crate::authn::claims::validate(&jws.claims, rules, now)) {
                Ok(()) => Verification::Verified(jws),
                Err(e) => Verification::Deny(e),
            };
        }
        count(Metric::TokenCacheMiss);
        let started = now_us;
        let jws = match jws::parse(token) {
            Ok(parsed) => Rc::new(parsed),
            Err(e) => return Verification::Deny(e),
        };
        let decision = self.decide(&jws, now_ms);
        if decision != Decision::NeedKeys {
            record(Metric::VerifyMicros, super::host::now_micros().saturating_sub(started));
        }
        match decision {
            Decision::Verified { keys_until_ms } => {
                self.tokens.insert(token, Rc::clone(&jws), self.cache.generation(), keys_until_ms);
                Verification::Verified(jws)
            }
            Decision::Deny(e) => Verification::Deny(e),
            Decision::NeedKeys => Verification::NeedKeys(jws),
        }
    }

    /// Decide a parsed token with the keys this worker knows now.
    fn decide(&mut self, jws: &Jws, now_ms: u64) -> Decision {
        let config = Rc::clone(&self.config);
        let mut keys = CachedKeys { cache: &mut self.cache, config: &config, now_ms };
        authenticate(jws, &config, &mut keys, &self.crypto, now_ms / 1000)
    }

    /// Park a request until its keys arrive (or the wait times out).
    pub fn wait_for_keys(&mut self, context_id: u32, token: &str, flow: SharedFlow, now_ms: u64) {
        let deadline_ms = now_ms + self.config.fetch_timeout_ms + WAIT_MARGIN_MS;
        self.waiters.insert(context_id, Waiter { flow, awaiting: Awaiting::Keys(token.into()), deadline_ms });
    }

    /// Park a request until these records are known (or the wait times out).
    pub fn wait_for_records(&mut self, context_id: u32, keys: Vec<RecordKey>, flow: SharedFlow, now_ms: u64) {
        let timeout = self.config.record_source.as_ref().map_or(0, |s| s.timeout_ms);
        let deadline_ms = now_ms + timeout + WAIT_MARGIN_MS;
        self.waiters.insert(context_id, Waiter { flow, awaiting: Awaiting::Records(keys), deadline_ms });
    }

    /// Watch a request held for its body until the first body callback arrives.
    pub fn wait_for_body(&mut self, context_id: u32, flow: SharedFlow, now_ms: u64) {
        let deadline_ms = now_ms + FIRST_BODY_CALLBACK_MS;
        self.waiters.insert(context_id, Waiter { flow, awaiting: Awaiting::Body, deadline_ms });
    }

    pub fn forget(&mut self, context_id: u32) {
        self.waiters.remove(&context_id);
    }

    /// Start the fetches nobody else has started (this worker wins the CAS lease).
    fn start_fetches(&mut self, now_ms: u64) {
        let config = Rc::clone(&self.config);
        let jwks_lease_ms = config.fetch_timeout_ms + WAIT_MARGIN_MS;
        let record_timeout = config.record_source.as_ref().map_or(0, |s| s.timeout_ms);
        let longest = jwks_lease_ms.max(record_timeout + WAIT_MARGIN_MS);
        self.in_flight.retain(|_, f| now_ms < f.started_ms + longest);
        for source in config.key_sources() {
            self.cache.sync(&HostShared, &source.url);
            if self.cache.need(&HostShared, &source.url, now_ms, config.kid_refetch_interval_ms) != Need::Fetch
                || !JwksCache::try_begin_fetch(&HostShared, &source.url, now_ms, jwks_lease_ms)
            {
                continue;
            }
            let started = match source.discovery {
                false => self.fetch(source, Target::Jwks(source.url.clone()), now_ms),
                true => match discovery::remembered(&HostShared, &source.url, now_ms) {
                    Some(uri) => crate::config::locate(&uri, &format!("the jwks_uri of {}", source.url), &config.clusters)
                        .map_err(Outage::transient)
                        .and_then(|at| self.fetch_discovered(&at, &source.url, now_ms)),
                    None => self.fetch(source, Target::Discovery(source.url.clone()), now_ms),
                },
            };
            if let Err(outage) = started {
                self.jwks_failed(&source.url, outage, now_ms);
            }
        }
        let Some(source) = config.record_source.as_ref() else { return };
        for key in self.records.take_fetches(&HostShared, now_ms, record_timeout + WAIT_MARGIN_MS) {
            let Some(template) = source.paths.get(&key.kind) else {
                // This source serves no records of that kind: they do not exist.
                self.records.complete(&HostShared, &key, now_ms, Ok(None));
                continue;
            };
            let path = format!("{}{}", source.base_path, template.replace("{id}", &url_encode(&key.id)));
            match dispatch(&source.cluster, "GET", &source.authority, &path, &source.headers, None, source.timeout_ms) {
                Ok(token) => {
                    log(LogLevel::Debug, &format!("fetching {} {}", key.kind.as_str(), key.id));
                    self.in_flight.insert(token, Fetch { target: Target::Record(key), started_ms: now_ms });
                }
                Err(o) => {
                    let outage = Outage { detail: format!("record_source.url: {}", o.detail), ..o };
                    self.report_misconfigured(&outage);
                    self.records.complete(&HostShared, &key, now_ms, Err(outage));
                }
            }
        }
    }

    /// GET the keys of the discovery URL `key_url` from the `jwks_uri` its document named.
    fn fetch_discovered(&mut self, at: &JwksSource, key_url: &str, now_ms: u64) -> Result<(), Outage> {
        let target = Target::DiscoveredJwks { key_url: key_url.to_string(), jwks_uri: at.url.clone() };
        self.fetch(at, target, now_ms)
    }

    fn fetch(&mut self, at: &JwksSource, target: Target, now_ms: u64) -> Result<(), Outage> {
        let token = dispatch(&at.cluster, "GET", &at.authority, &at.path, &[], None, self.config.fetch_timeout_ms)
            .map_err(|o| Outage { detail: format!("{} {}: {}", at.field, at.url, o.detail), ..o })?;
        log(LogLevel::Debug, &format!("fetching {}", at.url));
        self.in_flight.insert(token, Fetch { target, started_ms: now_ms });
        Ok(())
    }

    /// A key fetch (or its discovery step) failed: remember it so requests get a 503 and the
    /// next try waits for the back-off.
    fn jwks_failed(&mut self, url: &str, outage: Outage, now_ms: u64) {
        count(Metric::JwksFetchFailure);
        if outage.misconfigured {
            self.report_misconfigured(&outage);
        } else {
            log(LogLevel::Warn, &format!("JWKS fetch failed: {}", outage.detail));
        }
        let ttls = (self.config.public_key_ttl_ms, self.config.public_key_stale_ttl_ms);
        let _ = self.cache.complete_fetch(&HostShared, url, now_ms, ttls, Err(outage));
    }

    /// A configuration fault found at run time (a missing cluster): `critical`, once per worker
    /// and fault (every retry would repeat it), and counted.
    fn report_misconfigured(&mut self, outage: &Outage) {
        count(Metric::Misconfigured);
        if self.reported.insert(outage.detail.clone()) {
            log(LogLevel::Critical, &outage.detail);
        }
    }

    /// A key set for `key_url` arrived from `from`; `true` if it was stored.
    fn keys_arrived(&mut self, key_url: &str, from: &str, status: Option<&str>, body: impl FnOnce() -> Result<Vec<u8>, String>, now_ms: u64) -> bool {
        let outcome = match status {
            None => Err(format!("no response from {from} (timeout or connection failure)")),
            Some("200") => body().map_err(|e| format!("JWKS from {from}: {e}")),
            Some(other) => Err(format!("JWKS endpoint {from} returned status {other}")),
        }
        .map_err(Outage::transient);
        let ttls = (self.config.public_key_ttl_ms, self.config.public_key_stale_ttl_ms);
        match self.cache.complete_fetch(&HostShared, key_url, now_ms, ttls, outcome) {
            Ok(()) => {
                count(Metric::JwksFetchSuccess);
                log(LogLevel::Info, &format!("JWKS {from} loaded"));
                true
            }
            Err(outage) => {
                count(Metric::JwksFetchFailure);
                log(LogLevel::Warn, &format!("JWKS fetch failed: {}", outage.detail));
                false
            }
        }
    }

    /// A discovery document arrived: remember its `jwks_uri` and fetch the keys from there.
    fn discovered(&mut self, url: &str, body: Result<Vec<u8>, String>, now_ms: u64) {
        let config = Rc::clone(&self.config);
        let started = body
            .and_then(|b| discovery::jwks_uri(&b))
            .and_then(|uri| {
                discovery::remember(&HostShared, url, &uri, now_ms + config.public_key_ttl_ms);
                crate::config::locate(&uri, &format!("the jwks_uri of {url}"), &config.clusters)
            })
            .map_err(|why| Outage::transient(format!("OIDC discovery {url}: {why}")))
            .and_then(|at| self.fetch_discovered(&at, url, now_ms));
        if let Err(outage) = started {
            // Read the document again next time: it may name another jwks_uri by then.
            discovery::forget(&HostShared, url);
            self.jwks_failed(url, outage, now_ms);
        }
    }

    /// Waiting requests that can move on now (removed from the wait list).
    fn ready_waiters(&mut self, now_ms: u64) -> Vec<(u32, SharedFlow, Ready)> {
        if self.waiters.is_empty() {
            return Vec::new();
        }
        let ids: Vec<u32> = self.waiters.keys().copied().collect();
        let mut ready = Vec::new();
        for id in ids {
            let Some(waiter) = self.waiters.get(&id) else { continue };
            let deadline = waiter.deadline_ms;
            let flow = Rc::clone(&waiter.flow);
            let outcome = match &waiter.awaiting {
                Awaiting::Keys(token) => {
                    let token = token.clone();
                    let Ok(jws) = flow.try_borrow().map(|f| Rc::clone(&f.jws)) else { continue };
                    match self.decide(&jws, now_ms) {
                        Decision::Verified { keys_until_ms } => {
                            self.tokens.insert(&token, jws, self.cache.generation(), keys_until_ms);
                            Ready::Verified
                        }
                        Decision::Deny(e) => Ready::Deny(e),
                        Decision::NeedKeys if now_ms < deadline => continue,
                        Decision::NeedKeys => Ready::Deny(AuthError::KeysUnavailable(Outage::transient("timed out waiting for the JWKS"))),
                    }
                }
                Awaiting::Body if now_ms < deadline => continue,
                Awaiting::Body => Ready::Deny(AuthError::EnvoyMisconfigured(
                    "the request body never reached the filter; set allow_on_headers_stop_iteration: true \
                     in the Wasm filter's config"
                        .into(),
                )),
                Awaiting::Records(keys) => {
                    let keys = keys.clone();
                    let known = keys.iter().all(|k| self.records.lookup(&HostShared, k, now_ms) != RecordLookup::Pending);
                    match (known, now_ms < deadline) {
                        (true, _) => Ready::Records,
                        (false, true) => continue,
                        (false, false) => Ready::Deny(AuthError::RecordsUnavailable(Outage::transient("timed out waiting for the team/user source"))),
                    }
                }
            };
            self.waiters.remove(&id);
            ready.push((id, flow, outcome));
        }
        ready
    }

    /// Handle a fetch response for `token`; `false` if the token was not ours.
    fn complete(&mut self, token: u32, num_headers: usize, body_size: usize, now_ms: u64) -> bool {
        let Some(fetch) = self.in_flight.remove(&token) else { return false };
        let status = if num_headers == 0 {
            None
        } else {
            hostcalls::get_map(MapType::HttpCallResponseHeaders)
                .ok()
                .and_then(|h| h.into_iter().find(|(k, _)| k == ":status").map(|(_, v)| v))
        };
        let body = || -> Result<Vec<u8>, String> {
            if body_size > MAX_RESPONSE_BYTES {
                return Err(format!("response larger than {MAX_RESPONSE_BYTES} bytes"));
            }
            Ok(hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default())
        };
        match fetch.target {
            Target::Jwks(url) => {
                self.keys_arrived(&url, &url, status.as_deref(), body, now_ms);
            }
            Target::DiscoveredJwks { key_url, jwks_uri } => {
                if !self.keys_arrived(&key_url, &jwks_uri, status.as_deref(), body, now_ms) {
                    // The document may have moved its keys: read it again at the next try.
                    discovery::forget(&HostShared, &key_url);
                }
            }
            Target::Discovery(url) => {
                let doc = match status.as_deref() {
                    None => Err("no response (timeout or connection failure)".to_string()),
                    Some("200") => body(),
                    Some(other) => Err(format!("returned status {other}")),
                };
                self.discovered(&url, doc, now_ms);
            }
            Target::Record(key) => {
                let kind = self.config.record_source.as_ref().map(|s| s.kind);
                let what = format!("{} {}", key.kind.as_str(), key.id);
                let outcome = match status.as_deref() {
                    None => Err(format!("no response for {what} (timeout or connection failure)")),
                    Some("404") => Ok(None),
                    Some("200") => body().and_then(|b| Record::from_answer(kind == Some(SourceKind::Litellm), &key, &b)),
                    Some(other) => Err(format!("source returned status {other} for {what}")),
                };
                match &outcome {
                    Ok(Some(_)) => count(Metric::RecordFetchSuccess),
                    Ok(None) => count(Metric::RecordFetchNotFound),
                    Err(why) => {
                        count(Metric::RecordFetchFailure);
                        log(LogLevel::Warn, &format!("record fetch failed: {why}"));
                    }
                }
                self.records.complete(&HostShared, &key, now_ms, outcome.map_err(Outage::transient));
            }
            Target::WriteThrough(key) => {
                let ok = matches!(status.as_deref(), Some("200") | Some("201"));
                let level = if ok { LogLevel::Info } else { LogLevel::Warn };
                log(level, &format!("created {} {} at LiteLLM: status {}", key.kind.as_str(), key.id, status.as_deref().unwrap_or("none")));
            }
        }
        true
    }
}

/// Who is running [`pump`]: only the root context starts fetches. The proxy-wasm SDK routes a
/// fetch's response to the context that dispatched it; a request context can finish (and be
/// deleted) before a fetch it started returns, and the response would be lost with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Root,
    Request,
}

/// Start what needs starting (root only) and settle what can be settled. Called on every tick,
/// after a fetch response, and when a request starts waiting.
pub fn pump(worker: &SharedWorker, caller: Caller) {
    let now = now_ms();
    let ready = match worker.try_borrow_mut() {
        Ok(mut w) => {
            if caller == Caller::Root {
                w.start_fetches(now);
            }
            w.ready_waiters(now)
        }
        Err(_) => return,
    };
    for (context_id, flow, outcome) in ready {
        // The request may be gone (client hung up); then there is nothing to answer.
        if hostcalls::set_effective_context(context_id).is_ok() {
            resume(worker, context_id, &flow, outcome, now);
        }
    }
}

/// Route a dispatch response (always to the root context) to the worker; `true` if it was
/// one of its fetches.
pub fn on_fetch_response(worker: &SharedWorker, token: u32, num_headers: usize, body_size: usize) -> bool {
    let handled = match worker.try_borrow_mut() {
        Ok(mut w) => w.complete(token, num_headers, body_size, now_ms()),
        Err(_) => false,
    };
    if handled {
        pump(worker, Caller::Root);
    }
    handled
}

/// Authorize a verified flow with the worker's records. Waiting for records registers the
/// flow. The caller applies the returned step (outside any borrow).
pub fn authorize(worker: &SharedWorker, context_id: u32, flow: &SharedFlow, now: u64) -> Step {
    let (Ok(mut w), Ok(mut f)) = (worker.try_borrow_mut(), flow.try_borrow_mut()) else {
        return Step::Deny(AuthError::KeysUnavailable(Outage::transient("worker busy")));
    };
    f.verified = true;
    f.waiting_for_records = false;
    let records_enabled = w.records_enabled();
    let step = f.authorize(&mut w.records(now), records_enabled);
    match step {
        Step::Wait if f.body == Body::Receiving(0) && !f.body_seen => {
            w.wait_for_body(context_id, Rc::clone(flow), now);
            Step::Wait
        }
        Step::NeedRecords(keys) => {
            f.waiting_for_records = true;
            w.wait_for_records(context_id, keys, Rc::clone(flow), now);
            drop(w);
            drop(f);
            pump(worker, Caller::Request); // the root's next tick starts the fetches
            Step::Wait
        }
        other => other,
    }
}

/// Move a waiting request on, then resume or answer it.
fn resume(worker: &SharedWorker, context_id: u32, flow: &SharedFlow, ready: Ready, now: u64) {
    let step = match ready {
        Ready::Verified | Ready::Records => authorize(worker, context_id, flow, now),
        Ready::Deny(error) => Step::Deny(error),
    };
    match step {
        Step::Continue => {
            if let Ok(mut f) = flow.try_borrow_mut() {
                f.done = true;
            }
            count(Metric::Allowed);
            let _ = hostcalls::resume_http_request();
        }
        Step::Deny(error) => {
            let (mode, filter_state) = worker
                .try_borrow()
                .map_or((crate::config::Mode::Enforce, false), |w| (w.config.mode, w.config.filter_state));
            let log_ctx = flow.try_borrow_mut().ok().and_then(|mut f| {
                f.done = true;
                f.log_ctx.clone()
            });
            if !send_denial(&error, mode, filter_state, log_ctx.as_deref()) {
                let _ = hostcalls::resume_http_request();
            }
        }
        Step::Wait | Step::NeedRecords(_) => {}
    }
}
