//! The worker's fetches: key sets (directly, or through an OIDC discovery document), team/user
//! records, and LiteLLM write-throughs. Only the root context starts them: the proxy-wasm SDK
//! routes a call's answer to the context that dispatched it, and a request context can finish
//! (and be deleted) before its answer returns. What to ask and what an answer means is
//! `crate::fetch`; this module sends, records and hands the answers to the stores.

use super::{Worker, WAIT_MARGIN_MS};
use crate::config::JwksSource;
use crate::error::Outage;
use crate::fetch::{self, Answer, Call};
use crate::records::{Kind, RecordKey};
use crate::shell::host::Host;
use crate::shell::metrics::{count, Metric};
use crate::store::discovery;
use crate::store::jwks::{JwksCache, Need};
use crate::store::userinfo::TokenHash;
use crate::shell::flow::{Phase, Token};
use std::collections::BTreeMap;
use proxy_wasm::types::LogLevel;
use std::rc::Rc;

/// What a fetch in flight was for.
pub(super) enum Target {
    /// The key set cached under this key URL.
    Jwks(String),
    /// The key set of a discovery URL (`key_url`), from the `jwks_uri` its document named.
    DiscoveredJwks { key_url: String, jwks_uri: String },
    /// The OIDC discovery document at this key URL.
    Discovery(String),
    Record(RecordKey),
    WriteThrough(RecordKey),
    /// An update `sync_user_role_and_teams` sent for this user (the call's path).
    SyncWrite(RecordKey, String),
    /// The UserInfo of the opaque token with this hash.
    UserInfo(TokenHash),
}

/// The most UserInfo calls one worker has in flight: a flood of new opaque tokens waits (and
/// times out with a 503) rather than turning the filter into an amplifier against the IdP.
pub const MAX_USERINFO_IN_FLIGHT: usize = 64;

pub(super) struct Fetch {
    target: Target,
    started_ms: u64,
}

impl Worker {
    /// Start the fetches nobody else has started (this worker wins the shared lease), and the
    /// write-throughs of records upserted since the last turn. Root context only.
    pub fn start_fetches(&mut self, host: &dyn Host, now_ms: u64) {
        let config = Rc::clone(&self.config);
        let jwks_lease_ms = config.fetch_timeout_ms + WAIT_MARGIN_MS;
        let record_timeout = config.record_source.as_ref().map_or(0, |s| s.timeout_ms);
        let longest = jwks_lease_ms.max(record_timeout + WAIT_MARGIN_MS);
        self.in_flight.retain(|_, f| now_ms < f.started_ms + longest);
        let shared = host.shared();
        for source in config.key_sources() {
            self.keys.sync(shared, &source.url);
            if self.keys.need(shared, &source.url, now_ms, config.kid_refetch_interval_ms) != Need::Fetch
                || !JwksCache::try_begin_fetch(shared, &source.url, now_ms, jwks_lease_ms)
            {
                continue;
            }
            let started = match source.discovery {
                false => self.send_key_fetch(host, source, Target::Jwks(source.url.clone()), now_ms),
                true => match discovery::remembered(shared, &source.url, now_ms) {
                    Some(uri) => self.fetch_discovered(host, &uri, &source.url, now_ms),
                    None => self.send_key_fetch(host, source, Target::Discovery(source.url.clone()), now_ms),
                },
            };
            if let Err(outage) = started {
                self.jwks_failed(host, &source.url, outage, now_ms);
            }
        }
        self.start_userinfo_fetches(host, now_ms);
        let Some(source) = config.record_source.as_ref() else { return };
        for key in self.records.take_fetches(shared, now_ms, record_timeout + WAIT_MARGIN_MS) {
            let Some(call) = Call::record(source, &key) else {
                // This source serves no records of that kind: they do not exist.
                self.records.complete(shared, &key, now_ms, Ok(None));
                continue;
            };
            match self.send(host, &call, "record_source.url") {
                Ok(token) => {
                    host.log(LogLevel::Debug, &format!("fetching {} {}", key.kind.as_str(), key.id));
                    self.in_flight.insert(token, Fetch { target: Target::Record(key), started_ms: now_ms });
                }
                Err(outage) => self.records.complete(shared, &key, now_ms, Err(outage)),
            }
        }
        for sync in std::mem::take(&mut self.syncs) {
            let key = RecordKey { kind: Kind::User, id: sync.user.user_id.clone() };
            for call in Call::sync_writes(source, &sync) {
                match self.send(host, &call, "record_source.url") {
                    Ok(token) => {
                        self.in_flight.insert(token, Fetch { target: Target::SyncWrite(key.clone(), call.path.clone()), started_ms: now_ms });
                    }
                    Err(o) => host.log(LogLevel::Warn, &format!("sync of user {} failed: {}", key.id, o.detail)),
                }
            }
        }
        for record in std::mem::take(&mut self.writes) {
            let key = record.key();
            let Some(call) = Call::write_through(source, &record) else { continue };
            match self.send(host, &call, "record_source.url") {
                Ok(token) => {
                    self.in_flight.insert(token, Fetch { target: Target::WriteThrough(key), started_ms: now_ms });
                }
                Err(o) => host.log(LogLevel::Warn, &format!("write-through of {} {} failed: {}", key.kind.as_str(), key.id, o.detail)),
            }
        }
    }

    /// Ask the UserInfo endpoint about the opaque tokens requests wait for, once per token per
    /// process (the slot's shared lease), at most [`MAX_USERINFO_IN_FLIGHT`] at a time.
    fn start_userinfo_fetches(&mut self, host: &dyn Host, now_ms: u64) {
        let Some(ui) = self.config.userinfo.clone() else { return };
        let mut waiting: BTreeMap<&TokenHash, &str> = BTreeMap::new();
        for flow in self.flows.values() {
            if let (Phase::AwaitingUserInfo { .. }, Token::Opaque { text, hash }) = (&flow.phase, &flow.token) {
                waiting.insert(hash, text);
            }
        }
        let asking: Vec<&TokenHash> = self.in_flight.values().filter_map(|f| match &f.target {
            Target::UserInfo(h) => Some(h),
            _ => None,
        }).collect();
        let room = MAX_USERINFO_IN_FLIGHT.saturating_sub(asking.len());
        let lease_ms = self.config.fetch_timeout_ms + WAIT_MARGIN_MS;
        let Some(store) = self.userinfo.as_ref() else { return };
        let shared = host.shared();
        let mut to_ask: Vec<(TokenHash, String)> = Vec::new();
        for (hash, text) in waiting {
            if to_ask.len() == room {
                break;
            }
            // The lease is taken only for a call that is sent now.
            if !asking.contains(&hash) && store.try_take(shared, hash, now_ms, lease_ms) {
                to_ask.push((hash.clone(), text.to_string()));
            }
        }
        for (hash, text) in to_ask {
            let call = Call::userinfo(&ui.endpoint, &text, self.config.fetch_timeout_ms);
            match self.send(host, &call, &ui.endpoint.field) {
                Ok(token) => {
                    self.in_flight.insert(token, Fetch { target: Target::UserInfo(hash), started_ms: now_ms });
                }
                Err(outage) => {
                    count(Metric::UserInfoFetchFailure);
                    if let Some(store) = self.userinfo.as_ref() {
                        store.complete(host.shared(), &hash, now_ms, ui.cache_ttl_ms, Err(outage));
                    }
                }
            }
        }
    }

    /// Dispatch a call. Envoy refuses it when it has no such cluster: the gateway's
    /// configuration is incomplete, which retrying will not fix (reported as critical once).
    fn send(&mut self, host: &dyn Host, call: &Call, field: &str) -> Result<u32, Outage> {
        host.dispatch(call).map_err(|status| {
            let outage = Outage::misconfigured(format!(
                "{field}: Envoy refused to call cluster \"{}\" ({status}): define that cluster, or map the URL's \
                 host:port to an existing one in `clusters`",
                call.cluster
            ));
            self.report_misconfigured(host, &outage.detail);
            outage
        })
    }

    fn send_key_fetch(&mut self, host: &dyn Host, at: &JwksSource, target: Target, now_ms: u64) -> Result<(), Outage> {
        let call = Call::key_set(at, self.config.fetch_timeout_ms);
        let token = self.send(host, &call, &format!("{} {}", at.field, at.url))?;
        host.log(LogLevel::Debug, &format!("fetching {}", at.url));
        self.in_flight.insert(token, Fetch { target, started_ms: now_ms });
        Ok(())
    }

    /// GET the keys of the discovery URL `key_url` from the `jwks_uri` its document named.
    fn fetch_discovered(&mut self, host: &dyn Host, jwks_uri: &str, key_url: &str, now_ms: u64) -> Result<(), Outage> {
        let field = format!("the jwks_uri of {key_url}");
        let at = crate::config::locate(jwks_uri, &field, &self.config.clusters).map_err(|e| Outage::transient(e.to_string()))?;
        let target = Target::DiscoveredJwks { key_url: key_url.to_string(), jwks_uri: at.url.clone() };
        self.send_key_fetch(host, &at, target, now_ms)
    }

    /// A key fetch (or its discovery step) failed: remember it so requests get a 503 and the
    /// next try waits for the back-off.
    fn jwks_failed(&mut self, host: &dyn Host, url: &str, outage: Outage, now_ms: u64) {
        count(Metric::JwksFetchFailure);
        if !outage.misconfigured {
            host.log(LogLevel::Warn, &format!("JWKS fetch failed: {}", outage.detail));
        }
        let ttls = (self.config.public_key_ttl_ms, self.config.public_key_stale_ttl_ms);
        let _ = self.keys.complete_fetch(host.shared(), url, now_ms, ttls, Err(outage));
    }

    /// The answer of the call `token`; `false` if the call was not this worker's.
    pub fn take_answer(&mut self, host: &dyn Host, token: u32, answer: &Answer, now_ms: u64) -> bool {
        let Some(fetch) = self.in_flight.remove(&token) else { return false };
        match fetch.target {
            Target::Jwks(url) => {
                self.keys_arrived(host, &url, &url, answer, now_ms);
            }
            Target::DiscoveredJwks { key_url, jwks_uri } => {
                if !self.keys_arrived(host, &key_url, &jwks_uri, answer, now_ms) {
                    // The document may have moved its keys: read it again at the next try.
                    discovery::forget(host.shared(), &key_url);
                }
            }
            Target::Discovery(url) => self.discovered(host, &url, answer, now_ms),
            Target::Record(key) => self.record_arrived(host, &key, answer, now_ms),
            Target::UserInfo(hash) => self.userinfo_arrived(host, &hash, answer, now_ms),
            Target::SyncWrite(key, path) => {
                let (level, verb) = match fetch::write_through_accepted(answer) {
                    true => (LogLevel::Info, "synced"),
                    false => (LogLevel::Warn, "could not sync"),
                };
                host.log(level, &format!("{verb} user {} at LiteLLM ({path}): status {}", key.id, answer.status()));
            }
            Target::WriteThrough(key) => {
                let (level, verb) = match fetch::write_through_accepted(answer) {
                    true => (LogLevel::Info, "created"),
                    false => (LogLevel::Warn, "could not create"),
                };
                let status = answer.status();
                host.log(level, &format!("{verb} {} {} at LiteLLM: status {status}", key.kind.as_str(), key.id));
            }
        }
        true
    }

    /// A key set for `key_url` arrived from `from`; `true` if it was stored.
    fn keys_arrived(&mut self, host: &dyn Host, key_url: &str, from: &str, answer: &Answer, now_ms: u64) -> bool {
        let outcome = fetch::key_set(from, answer).map(<[u8]>::to_vec).map_err(Outage::transient);
        let ttls = (self.config.public_key_ttl_ms, self.config.public_key_stale_ttl_ms);
        match self.keys.complete_fetch(host.shared(), key_url, now_ms, ttls, outcome) {
            Ok(()) => {
                count(Metric::JwksFetchSuccess);
                host.log(LogLevel::Info, &format!("JWKS {from} loaded"));
                true
            }
            Err(outage) => {
                count(Metric::JwksFetchFailure);
                host.log(LogLevel::Warn, &format!("JWKS fetch failed: {}", outage.detail));
                false
            }
        }
    }

    /// A discovery document arrived: remember its `jwks_uri` and fetch the keys from there.
    fn discovered(&mut self, host: &dyn Host, url: &str, answer: &Answer, now_ms: u64) {
        let shared = host.shared();
        let uri = fetch::discovery_document(answer)
            .and_then(discovery::jwks_uri)
            .map_err(|why| Outage::transient(format!("OIDC discovery {url}: {why}")));
        let started = uri.and_then(|uri| {
            discovery::remember(shared, url, &uri, now_ms + self.config.public_key_ttl_ms);
            self.fetch_discovered(host, &uri, url, now_ms)
                .map_err(|o| Outage { detail: format!("OIDC discovery {url}: {}", o.detail), ..o })
        });
        if let Err(outage) = started {
            // Read the document again next time: it may name another jwks_uri by then.
            discovery::forget(shared, url);
            self.jwks_failed(host, url, outage, now_ms);
        }
    }

    fn userinfo_arrived(&mut self, host: &dyn Host, hash: &TokenHash, answer: &Answer, now_ms: u64) {
        let (Some(store), Some(ui)) = (self.userinfo.as_ref(), self.config.userinfo.as_ref()) else { return };
        let outcome = fetch::userinfo(answer);
        match &outcome {
            Ok(crate::store::userinfo::Said::Claims(_)) => count(Metric::UserInfoFetchSuccess),
            Ok(crate::store::userinfo::Said::Refused(_)) => count(Metric::UserInfoFetchRefused),
            Err(why) => {
                count(Metric::UserInfoFetchFailure);
                host.log(LogLevel::Warn, &format!("UserInfo fetch failed: {why}"));
            }
        }
        store.complete(host.shared(), hash, now_ms, ui.cache_ttl_ms, outcome.map_err(Outage::transient));
    }

    fn record_arrived(&mut self, host: &dyn Host, key: &RecordKey, answer: &Answer, now_ms: u64) {
        let Some(kind) = self.config.record_source.as_ref().map(|s| s.kind) else { return };
        let outcome = fetch::record(kind, key, answer);
        match &outcome {
            Ok(Some(_)) => count(Metric::RecordFetchSuccess),
            Ok(None) => count(Metric::RecordFetchNotFound),
            Err(why) => {
                count(Metric::RecordFetchFailure);
                host.log(LogLevel::Warn, &format!("record fetch failed: {why}"));
            }
        }
        self.records.complete(host.shared(), key, now_ms, outcome.map_err(Outage::transient));
    }
}
