//! A scripted [`Host`]: requests with headers and bodies, calls answered by the caller, shared
//! data in memory, a clock the caller moves. It records what the shell did — replies, resumes,
//! header changes, calls, logs, metrics. The shell's native tests assert on it; `explain` runs
//! the real shell against it to say what the filter would do with one request.

use super::host::Host;
use crate::authn::verify::{GuestOnly, HostCrypto};
use crate::fetch::{Answer, Call};
use crate::store::mock::MockShared;
use crate::store::SharedData;
use proxy_wasm::types::{LogLevel, MetricType};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Default)]
pub struct ScriptedRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub reply: Option<Reply>,
    /// How often the shell resumed it.
    pub resumed: usize,
    pub filter_state: BTreeMap<String, String>,
    /// The client went away: entering it fails.
    pub gone: bool,
    /// Replies after the first (never, unless the shell is wrong).
    pub extra_replies: usize,
    /// How often the shell cleared its route cache, and the headers at the last time.
    pub route_cache_cleared: usize,
    pub headers_when_cleared: Vec<(String, String)>,
    /// The answer's headers (the test sets the upstream's; the shell adds and removes).
    pub response_headers: Vec<(String, String)>,
    /// The answer's body chunks, delivered one per body callback (the test pushes them).
    pub response_chunks: Vec<Vec<u8>>,
    /// What the shell replaced the buffered answer body with.
    pub response_body_set: Option<Vec<u8>>,
}

impl ScriptedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct ScriptedHost {
    pub now_ms: Cell<u64>,
    current: Cell<u32>,
    pub requests: RefCell<BTreeMap<u32, ScriptedRequest>>,
    pub shared: MockShared,
    /// Every call dispatched, with its token.
    pub calls: RefCell<Vec<(u32, Call)>>,
    /// The answer the next `call_answer` returns.
    pub answering: RefCell<Option<Answer>>,
    /// Clusters Envoy does not have: dispatching to them is refused.
    pub missing_clusters: RefCell<HashSet<String>>,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    pub debug: Cell<bool>,
    metric_names: RefCell<Vec<String>>,
    /// Counter totals and histogram samples, by metric name.
    pub metrics: RefCell<BTreeMap<String, Vec<u64>>>,
    /// Body reads, by request: the body may only be read in the request's own callback.
    pub body_reads: RefCell<Vec<u32>>,
}

impl ScriptedHost {
    /// The request `context_id` becomes current (as when Envoy calls its callbacks).
    pub fn enter(&self, context_id: u32) {
        self.current.set(context_id);
        self.requests.borrow_mut().entry(context_id).or_default();
    }

    pub fn current(&self) -> u32 {
        self.current.get()
    }

    pub fn with<T>(&self, context_id: u32, f: impl FnOnce(&ScriptedRequest) -> T) -> T {
        f(self.requests.borrow().get(&context_id).unwrap_or(&ScriptedRequest::default()))
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.metrics.borrow().get(&format!("llm_jwt_auth.{name}")).map_or(0, |v| v.iter().sum())
    }

    pub fn logged(&self, level: LogLevel, needle: &str) -> bool {
        self.logs.borrow().iter().any(|(l, m)| *l == level && m.contains(needle))
    }

    fn current_mut<T>(&self, f: impl FnOnce(&mut ScriptedRequest) -> T) -> T {
        f(self.requests.borrow_mut().entry(self.current.get()).or_default())
    }
}

impl Host for ScriptedHost {
    fn request_headers(&self) -> Vec<(String, String)> {
        self.current_mut(|r| r.headers.clone())
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.current_mut(|r| {
            r.headers.retain(|(k, _)| k != name);
            if let Some(v) = value {
                r.headers.push((name.to_string(), v.to_string()));
            }
        });
    }

    fn clear_route_cache(&self) {
        self.current_mut(|r| {
            r.route_cache_cleared += 1;
            r.headers_when_cleared = r.headers.clone();
        });
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        self.body_reads.borrow_mut().push(self.current.get());
        self.current_mut(|r| r.body.iter().take(size).copied().collect())
    }

    fn add_response_header(&self, name: &str, value: &str) {
        self.current_mut(|r| r.response_headers.push((name.to_string(), value.to_string())));
    }

    fn response_header(&self, name: &str) -> Option<String> {
        self.current_mut(|r| r.response_headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    fn set_response_header(&self, name: &str, value: Option<&str>) {
        self.current_mut(|r| {
            r.response_headers.retain(|(k, _)| k != name);
            if let Some(v) = value {
                r.response_headers.push((name.to_string(), v.to_string()));
            }
        });
    }

    /// The chunks pushed since the last read, up to `size` bytes (Envoy hands a paused body
    /// callback everything buffered).
    fn response_body(&self, size: usize) -> Vec<u8> {
        self.current_mut(|r| r.response_chunks.drain(..).flatten().take(size).collect())
    }

    fn set_response_body(&self, body: &[u8]) {
        self.current_mut(|r| r.response_body_set = Some(body.to_vec()));
    }

    fn set_filter_state(&self, name: &str, value: &[u8]) {
        self.current_mut(|r| r.filter_state.insert(name.to_string(), String::from_utf8_lossy(value).into_owned()));
    }

    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let reply = Reply {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: String::from_utf8_lossy(body).into_owned(),
        };
        // A request is answered once: a second reply would be a shell bug, kept visible.
        self.current_mut(|r| match r.reply {
            None => r.reply = Some(reply),
            Some(_) => r.extra_replies += 1,
        });
    }

    fn resume_request(&self) {
        self.current_mut(|r| r.resumed += 1);
    }

    fn enter_request(&self, context_id: u32) -> bool {
        let known = self.requests.borrow().get(&context_id).is_some_and(|r| !r.gone);
        if known {
            self.current.set(context_id);
        }
        known
    }

    fn dispatch(&self, call: &Call) -> Result<u32, String> {
        if self.missing_clusters.borrow().contains(&call.cluster) {
            return Err("BadArgument".into());
        }
        let mut calls = self.calls.borrow_mut();
        let token = u32::try_from(calls.len()).unwrap_or(u32::MAX) + 1;
        calls.push((token, call.clone()));
        Ok(token)
    }

    fn call_answer(&self, _num_headers: usize, _body_size: usize) -> Answer {
        self.answering.borrow_mut().take().unwrap_or(Answer::Nothing)
    }

    fn now_us(&self) -> u64 {
        self.now_ms.get() * 1000
    }

    fn log(&self, level: LogLevel, message: &str) {
        if matches!(level, LogLevel::Trace | LogLevel::Debug) && !self.debug.get() {
            return;
        }
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn debug_enabled(&self) -> bool {
        self.debug.get()
    }

    fn shared(&self) -> &dyn SharedData {
        &self.shared
    }

    fn crypto(&self) -> &dyn HostCrypto {
        &GuestOnly
    }

    fn define_metric(&self, _kind: MetricType, name: &str) -> Option<u32> {
        let mut names = self.metric_names.borrow_mut();
        names.push(name.to_string());
        u32::try_from(names.len() - 1).ok()
    }

    fn add_to_metric(&self, id: u32, _kind: MetricType, value: u64) {
        let name = self.metric_names.borrow().get(id as usize).cloned().unwrap_or_default();
        self.metrics.borrow_mut().entry(name).or_default().push(value);
    }
}
