//! Per-worker state, shared by the root context and the request contexts of one worker thread:
//! the compiled configuration, the views of the shared key sets and records, the
//! verified-token cache, the undecided requests ([`Flow`]s) and the fetches in flight.
//!
//! - this module: verify a token, move a request's flow on ([`Worker::advance`]);
//! - [`fetches`]: start the key and record fetches (root context only) and take their answers;
//! - [`waiters`]: which waiting requests can move on now.
//!
//! Borrow discipline: the `RefCell` around a worker is never held across a host call that can
//! re-enter the VM (`resume_request`, `send_reply`). Steps are computed under the borrow and
//! applied after it is released (`shell::request`).

pub mod answers;
pub mod fetches;
pub mod waiters;

use super::flow::{Flow, Phase, Token, Wanted};
use super::host::Host;
use super::metrics::{self, count, record, IssuerTag, Labels, Metric};
use crate::authn::extract::is_jwt_shaped;
use crate::authn::jws::{self, Jws};
use crate::authn::dpop::{self, Proof};
use crate::authn::trust::TrustId;
use crate::authn::{authenticate, ClaimsFrom, Decision, KeyLookup, KeySets, Verified};
use crate::authz::identity::Identity;
use crate::authz::route_rules::RuleAction;
use crate::authz::sync::UserSync;
use crate::authz::{Outcome, Records, Request as AuthzRequest};
use crate::config::{FilterConfig, JwksSource};
use crate::error::{AuthError, DpopFailure};
use crate::records::{Record, RecordKey};
use crate::authn::KidRefetch;
use crate::store::jwks::JwksCache;
use crate::store::records::{RecordLookup, RecordStore};
use crate::store::token_cache::TokenCache;
use crate::store::userinfo::{TokenHash, UserInfoLookup, UserInfoStore};
use crate::store::SharedData;
use answers::Answering;
use fetches::Fetch;
use proxy_wasm::types::LogLevel;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// Extra time a paused request waits beyond the fetch timeout before it gets a 503.
pub const WAIT_MARGIN_MS: u64 = 1000;

/// Whether a non-JWT token is an API key (LiteLLM's virtual keys, OpenAI's and Anthropic's keys
/// all start with `sk-`): a secret meant for LiteLLM or a provider, never sent to the IdP's
/// UserInfo endpoint. It is refused as any non-JWT is without `oidc_userinfo_enabled`.
fn is_api_key(token: &str) -> bool {
    token.starts_with("sk-")
}

/// The longest opaque token sent to the UserInfo endpoint (longer ones are no access token any
/// IdP issues, and would only make the IdP's answer the client's to choose: refused at once).
pub const MAX_OPAQUE_TOKEN_BYTES: usize = 4096;

pub type SharedWorker = Rc<RefCell<Worker>>;

/// What to do with a request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Allow(Identity),
    Deny(AuthError),
    /// Its flow's [`Phase`] says what it waits for.
    Wait,
}

/// The outcome of verifying a token with what the worker knows now.
pub enum Verification {
    Verified(Rc<Verified>),
    Deny(AuthError),
    /// Parsed, but its keys are not here yet.
    NeedKeys(Jws),
    /// An opaque token whose UserInfo answer is not here yet.
    NeedUserInfo(TokenHash),
}

pub struct Worker {
    pub config: Rc<FilterConfig>,
    keys: JwksCache,
    records: RecordStore,
    /// The UserInfo answers for opaque tokens, when `oidc_userinfo_enabled`.
    userinfo: Option<UserInfoStore>,
    tokens: TokenCache,
    /// Undecided requests, by context id.
    pub flows: HashMap<u32, Flow>,
    in_flight: HashMap<u32, Fetch>,
    /// Records this worker upserted, to create at LiteLLM on the root context's next turn.
    writes: Vec<Record>,
    /// User records `sync_user_role_and_teams` changed, to update at LiteLLM likewise.
    syncs: Vec<UserSync>,
    /// DPoP proofs seen by this worker while they are fresh (replays are refused).
    proofs_seen: SeenProofs,
    /// Configuration faults already logged as critical (see [`Worker::report_misconfigured`]).
    reported: HashSet<String>,
    /// `issuers[i]`'s label id in the VM's metric label table.
    issuer_label_ids: Vec<usize>,
    /// Admitted requests whose answers have obligations, by context id, until they end.
    pub answering: HashMap<u32, Answering>,
    /// This worker's number, the high half of its parallel-slot ids; `None` when the counters
    /// could not be set up (a request with limits then gets 503).
    slot_base: Option<u64>,
}

impl Worker {
    pub fn new(config: FilterConfig, shared: &dyn SharedData) -> Self {
        for source in config.key_sources() {
            JwksCache::init_fetch_key(shared, &source.url);
        }
        let userinfo = config.userinfo.as_ref().map(|u| UserInfoStore::new(&u.endpoint.url));
        if let Some(store) = &userinfo {
            store.init(shared);
        }
        let grace_ms = config.fetch_timeout_ms;
        crate::routes::checks::prepare();
        let issuer_label_ids = config.issuers.iter().map(|i| metrics::issuer_label_id(&i.label)).collect();
        // Limits are read from records: without any, nothing is ever counted, and the 1024
        // buckets are not created.
        let records = config.record_source.is_some() || !config.statics.is_empty();
        let slot_base = match (config.rate_limits, records) {
            (Some(_), true) => crate::store::limits::init(shared).ok().map(|n| u64::from(n) << 32),
            _ => None,
        };
        Worker {
            answering: HashMap::new(),
            slot_base,
            issuer_label_ids,
            tokens: TokenCache::new(config.token_cache_size),
            userinfo,
            records: RecordStore::new(config.statics.clone(), config.record_source.is_some(), config.record_lifetimes)
                .for_source(&format!("{:?}", config.record_source)),
            config: Rc::new(config),
            keys: JwksCache::new(grace_ms),
            flows: HashMap::new(),
            in_flight: HashMap::new(),
            writes: Vec::new(),
            syncs: Vec::new(),
            proofs_seen: SeenProofs::new(),
            reported: HashSet::new(),
        }
    }

    /// The decision metrics' labels of a request (its token's trust, once verified).
    pub fn labels(&self, flow: &Flow) -> Labels {
        let issuer = flow.verified().map_or(IssuerTag::None, |v| IssuerTag::of(v.trust, &self.issuer_label_ids));
        Labels { group: flow.group, issuer }
    }

    /// Whether team/user records exist at all (a source or static records).
    pub fn records_enabled(&self) -> bool {
        self.records.enabled()
    }

    /// Verify a token: from the verified-token cache (time claims re-checked), or by parsing and
    /// verifying it, remembering it when it verifies. `now_us` is the request's clock reading,
    /// reused for the latency figure.
    pub fn verify(&mut self, host: &dyn Host, token: &str, now_us: u64) -> Verification {
        let now_ms = now_us / 1000;
        if let Some(verified) = self.tokens.get(token, now_ms, self.keys.generation()) {
            count(Metric::TokenCacheHit);
            return match verified.still_valid(&self.config, now_ms / 1000) {
                Ok(()) => Verification::Verified(verified),
                Err(e) => Verification::Deny(e),
            };
        }
        count(Metric::TokenCacheMiss);
        if self.userinfo.is_some() && !is_jwt_shaped(token) && !is_api_key(token) {
            return self.opaque(host, token, now_ms);
        }
        let jws = match jws::parse(token) {
            Ok(parsed) => parsed,
            Err(e) => return Verification::Deny(e),
        };
        let decision = self.authenticate(host, &jws, now_ms);
        if decision != Decision::NeedKeys {
            record(Metric::VerifyMicros, host.now_us().saturating_sub(now_us));
        }
        match decision {
            Decision::Verified { keys_until_ms, trust } => Verification::Verified(self.remember(token, jws, trust, keys_until_ms)),
            Decision::Deny(e) => Verification::Deny(e),
            Decision::NeedKeys => Verification::NeedKeys(jws),
        }
    }

    /// Remember a token that verified (in the verified-token cache, for as long as the key set
    /// it verified with), with what authorization reads of it worked out once.
    fn remember(&mut self, token: &str, jws: Jws, trust: TrustId, keys_until_ms: u64) -> Rc<Verified> {
        let verified = Rc::new(Verified::new(jws.claims, ClaimsFrom::Jwt, trust, &self.config));
        self.tokens.insert(token, Rc::clone(&verified), self.keys.generation(), keys_until_ms);
        verified
    }

    /// An opaque token, with `oidc_userinfo_enabled`: its claims are what the IdP's UserInfo
    /// endpoint answered for it (from shared data when any worker asked already).
    fn opaque(&mut self, host: &dyn Host, token: &str, now_ms: u64) -> Verification {
        if token.len() > MAX_OPAQUE_TOKEN_BYTES {
            return Verification::Deny(AuthError::Malformed("the token is too long".into()));
        }
        let hash = TokenHash::of(token);
        match self.userinfo_of(host, token, &hash, now_ms) {
            Some(Ok(verified)) => Verification::Verified(verified),
            Some(Err(e)) => Verification::Deny(e),
            None => Verification::NeedUserInfo(hash),
        }
    }

    /// An opaque token's UserInfo as the worker knows it now: its claims (remembered in the
    /// verified-token cache until the answer expires), the IdP's refusal, or `None` while it
    /// is not known.
    pub(super) fn userinfo_of(&mut self, host: &dyn Host, token: &str, hash: &TokenHash, now_ms: u64) -> Option<Result<Rc<Verified>, AuthError>> {
        let store = self.userinfo.as_ref()?;
        match store.lookup(host.shared(), hash, now_ms) {
            UserInfoLookup::Found(claims, until_ms) => {
                // The answer is the IdP's word for the token: it takes the global rules (an
                // issuer's would be picked by an `iss` nobody signed).
                let verified = Rc::new(Verified::new(claims, ClaimsFrom::UserInfo, TrustId::Global, &self.config));
                self.tokens.insert(token, Rc::clone(&verified), self.keys.generation(), until_ms);
                Some(Ok(verified))
            }
            UserInfoLookup::Refused(status) => Some(Err(AuthError::UserInfoRefused(status))),
            UserInfoLookup::Unavailable(outage) => Some(Err(AuthError::UserInfoUnavailable(outage))),
            UserInfoLookup::Pending => None,
        }
    }

    /// Decide a parsed token with the keys this worker knows now.
    fn authenticate(&mut self, host: &dyn Host, jws: &Jws, now_ms: u64) -> Decision {
        let config = Rc::clone(&self.config);
        let mut keys = CachedKeys { cache: &mut self.keys, config: &config, shared: host.shared(), now_ms };
        authenticate(jws, &config, &mut keys, host.crypto(), now_ms / 1000)
    }

    /// Move a request on: authorize its verified token with the records known now, reading
    /// the model when a rule needs it. A `Step::Wait` keeps the flow, in the phase it waits in;
    /// any other step decides the request and the flow is dropped.
    pub fn advance(&mut self, host: &dyn Host, context_id: u32, mut flow: Flow, now_ms: u64) -> Step {
        let step = self.authorize(host, context_id, &mut flow, now_ms);
        if step == Step::Wait {
            self.flows.insert(context_id, flow);
        }
        step
    }

    /// [`Worker::advance`] a waiting request; `None` if it is not waiting (decided, or gone).
    pub fn advance_waiting(&mut self, host: &dyn Host, context_id: u32, now_ms: u64) -> Option<Step> {
        let flow = self.flows.remove(&context_id)?;
        Some(self.advance(host, context_id, flow, now_ms))
    }

    fn authorize(&mut self, host: &dyn Host, context_id: u32, flow: &mut Flow, now_ms: u64) -> Step {
        let records_enabled = self.records.enabled();
        let Worker { config, records, writes, syncs: sync_writes, proofs_seen, answering, slot_base, .. } = self;
        let Some(verified) = flow.verified().cloned() else {
            return Step::Wait; // still awaiting keys
        };
        if let (Some(presented), Some(rules)) = (flow.binding.take(), config.dpop.as_ref()) {
            let now = now_ms / 1000;
            let checked = dpop::check(rules, &presented, &verified.claims, now, host.crypto());
            if let Err(e) = checked.and_then(|proof| proof.map_or(Ok(()), |p| proofs_seen.first_use(p, now))) {
                return Step::Deny(e);
            }
        }
        let policy = verified.trust(config).policy;
        let needs_model = policy.needs_model(&verified.caller, records_enabled, flow.team_header.is_some());
        // Routing by model waits for the body too, until the routing header is decided (set
        // before the request goes on), but decides nothing: without a rule that needs it, the
        // decision is the one it would be without routing, the path's model, and a body that
        // cannot be read is no refusal.
        let routing_waits = config.model_routing.is_some() && !flow.routed;
        let model = if needs_model || routing_waits {
            match flow.model(config.max_body_bytes) {
                Ok(Wanted::Wait) => {
                    let first_callback_by_ms = (!flow.body_seen).then_some(now_ms + waiters::FIRST_BODY_CALLBACK_MS);
                    flow.phase = Phase::AwaitingBody { first_callback_by_ms };
                    return Step::Wait;
                }
                Ok(Wanted::Model(model)) if needs_model => model,
                Err(e) if needs_model => return Step::Deny(e),
                Ok(Wanted::Model(_)) | Err(_) => flow.path_model.clone(),
            }
        } else {
            flow.path_model.clone()
        };
        let request = AuthzRequest { route: &flow.route, model: model.as_deref(), team_header: flow.team_header.as_deref() };
        let mut view = RecordsView { store: records, shared: host.shared(), now_ms };
        let step = match policy.authorize(&verified.claims, &verified.caller, request, &mut view) {
            Outcome::Allow { identity, upserts, syncs, obligations } => {
                let rule = flow.rule.and_then(|i| config.rules.get(i)).map(|r| &r.action);
                let required = match rule {
                    Some(RuleAction::Require(required)) => required.check(&flow.route, &identity, &verified.claims, &verified.caller.scopes),
                    _ => Ok(()),
                };
                match required {
                    Ok(()) => {
                        let write_through = config.record_source.as_ref().is_some_and(|s| s.write_through);
                        for record in upserts {
                            if write_through {
                                writes.push(record.clone());
                            }
                            view.upsert(record);
                        }
                        // The synced user is what the next decisions read, so each change is
                        // sent once (until a refetch brings back a record without it).
                        for sync in syncs {
                            view.upsert(Record::User(sync.user.clone()));
                            let change = format!("{:?} {:?} {:?}", sync.role, sync.add, sync.remove);
                            if write_through && view.store.claim_sync(view.shared, &sync.user.user_id, &change, now_ms) {
                                sync_writes.push(sync);
                            }
                        }
                        match answers::take_on(config, host.shared(), *slot_base, context_id, obligations, now_ms) {
                            Ok(work) => {
                                if work.as_ref().is_some_and(Answering::reads_body) {
                                    host.set_request_header("accept-encoding", None);
                                }
                                answering.extend(work.map(|w| (context_id, w)));
                                Step::Allow(identity)
                            }
                            Err(e) => Step::Deny(e),
                        }
                    }
                    Err(e) => Step::Deny(e),
                }
            }
            Outcome::Deny(e) => Step::Deny(e),
            Outcome::Need(keys) => {
                let timeout = config.record_source.as_ref().map_or(0, |s| s.timeout_ms);
                flow.phase = Phase::AwaitingRecords { keys, until_ms: now_ms + timeout + WAIT_MARGIN_MS };
                Step::Wait
            }
        };
        step
    }

    /// Whether deciding this request may need its model (so its complete body is read). A token
    /// still waiting for its keys may: its body is only readable now, in its own callback.
    pub fn may_need_model(&self, flow: &Flow) -> bool {
        flow.verified().is_none_or(|v| v.trust(&self.config).policy.needs_model(&v.caller, self.records.enabled(), flow.team_header.is_some()))
    }

    /// Keep a request whose token is not verified yet, until its keys (or its UserInfo answer)
    /// arrive or the wait times out.
    pub fn await_token(&mut self, context_id: u32, mut flow: Flow, now_ms: u64) {
        let until_ms = now_ms + self.config.fetch_timeout_ms + WAIT_MARGIN_MS;
        flow.phase = match flow.token {
            Token::Opaque { .. } => Phase::AwaitingUserInfo { until_ms },
            _ => Phase::AwaitingKeys { until_ms },
        };
        self.flows.insert(context_id, flow);
    }

    /// The request is gone (finished, reset, or the client hung up), or decided: its flow.
    pub fn forget(&mut self, context_id: u32) -> Option<Flow> {
        self.flows.remove(&context_id)
    }

    /// The request's stream ended (complete, reset, or the client went away): count its
    /// answer's tokens and give back its parallel slots.
    pub fn settle(&mut self, host: &dyn Host, context_id: u32) {
        let Some(done) = self.answering.remove(&context_id) else { return };
        if answers::settle(&self.config, host.shared(), done, host.now_ms()).is_err() {
            host.log(LogLevel::Warn, "rate-limit counters were too contended to settle a request (its slot expires by itself)");
        }
    }

    /// A configuration fault found at run time (a missing cluster): `critical`, once per worker
    /// and fault (every retry would repeat it), and counted.
    pub(crate) fn report_misconfigured(&mut self, host: &dyn Host, detail: &str) {
        count(Metric::Misconfigured);
        if self.reported.insert(detail.to_string()) {
            host.log(LogLevel::Critical, detail);
        }
    }
}

/// The shared key sets as the decision sees them, at one instant.
struct CachedKeys<'a> {
    cache: &'a mut JwksCache,
    config: &'a FilterConfig,
    shared: &'a dyn SharedData,
    now_ms: u64,
}

impl KeySets for CachedKeys<'_> {
    fn lookup(&mut self, source: &JwksSource) -> KeyLookup {
        self.cache.lookup(self.shared, &source.url, self.now_ms)
    }

    fn refetch_for_unknown_kid(&mut self, source: &JwksSource) -> KidRefetch {
        let lease_ms = self.config.fetch_timeout_ms + WAIT_MARGIN_MS;
        let interval = self.config.kid_refetch_interval_ms;
        self.cache.refetch_for_unknown_kid(self.shared, &source.url, self.now_ms, interval, lease_ms)
    }
}

/// The record store as the decision sees it: lookups at one instant, upserts stored.
struct RecordsView<'a> {
    store: &'a mut RecordStore,
    shared: &'a dyn SharedData,
    now_ms: u64,
}

impl Records for RecordsView<'_> {
    fn enabled(&self) -> bool {
        self.store.enabled()
    }

    fn lookup(&mut self, key: &RecordKey) -> RecordLookup {
        let found = self.store.lookup(self.shared, key, self.now_ms);
        match found {
            RecordLookup::Found(_) | RecordLookup::NotFound => count(Metric::RecordStoreHit),
            RecordLookup::Pending => count(Metric::RecordStoreMiss),
            RecordLookup::Unavailable(_) => {}
        }
        found
    }
}

impl RecordsView<'_> {
    /// Store one of LiteLLM's upserted default records.
    fn upsert(&mut self, record: Record) {
        let key = record.key();
        self.store.upsert(self.shared, &key, record, self.now_ms);
    }
}

/// The DPoP proofs this worker accepted, by key and `jti`, until they are too old to be
/// accepted anyway. Bounded: past [`SeenProofs::CAPACITY`] fresh proofs the oldest are
/// forgotten (a replay of one of those is then caught only by its `iat` window).
struct SeenProofs(lru::LruCache<String, u64>);

impl SeenProofs {
    const CAPACITY: usize = 16_384;

    fn new() -> Self {
        SeenProofs(lru::LruCache::new(std::num::NonZeroUsize::MIN.saturating_add(Self::CAPACITY - 1)))
    }

    /// `Ok` the first time a fresh proof is used; a replay is refused.
    fn first_use(&mut self, proof: Proof, now: u64) -> Result<(), AuthError> {
        let key = format!("{} {}", proof.jkt, proof.jti);
        if self.0.get(&key).is_some_and(|until| now < *until) {
            return Err(AuthError::Dpop(DpopFailure::Proof("the proof was already used")));
        }
        self.0.put(key, proof.fresh_until);
        Ok(())
    }
}
