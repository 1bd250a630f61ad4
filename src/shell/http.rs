//! One request: strip spoofable identity headers, let public routes through, extract and parse
//! the token, then move its [`Flow`] on: verify (or wait for keys), authorize (or wait for the
//! body when a rule needs the model), continue or answer.

use super::flow::{send_denial, Body, Flow, Step};
use super::host::{now_micros, now_ms};
use super::metrics::{count, Metric};
use super::worker::{authorize, pump, Caller, SharedFlow, SharedWorker, Verification};
use crate::config::{ApiKeys, Mode};
use crate::error::{AuthError, Outage};
use crate::authn::extract::{is_jwt_shaped, without_cookie, without_param, Found};
use crate::authz::route_rules::{self, RuleAction, Target};
use crate::authz::identity::{IDENTITY_HEADER_PREFIX, REASON_HEADER};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;

pub struct Request {
    context_id: u32,
    /// `route=… token=…` for debug lines; filled only when debug logging is on.
    log_ctx: Option<String>,
    worker: Option<SharedWorker>,
    flow: Option<SharedFlow>,
}

impl Request {
    pub fn new(context_id: u32, worker: Option<SharedWorker>) -> Self {
        Request { context_id, log_ctx: None, worker, flow: None }
    }

    fn deny(&self, error: &AuthError) -> Action {
        let (mode, filter_state) = self
            .worker
            .as_ref()
            .and_then(|w| w.try_borrow().ok().map(|w| (w.config.mode, w.config.filter_state)))
            .unwrap_or((Mode::Enforce, false));
        if send_denial(error, mode, filter_state, self.log_ctx.as_deref()) {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    /// Forward the request without its credential (`forward: false`).
    fn strip_credential(&self, found: Found, path: &str, headers: &[(String, String)]) {
        match found {
            Found::Header(name) => self.set_http_request_header(name, None),
            Found::Param(name) => self.set_http_request_header(":path", Some(&without_param(path, name))),
            Found::Cookie(name) => {
                let cookies: Vec<&str> = headers.iter().filter(|(n, _)| n == "cookie").map(|(_, v)| v.as_str()).collect();
                let kept = without_cookie(&cookies.join("; "), name);
                self.set_http_request_header("cookie", kept.as_deref());
            }
        }
    }

    /// Authorize and apply the step from within this request's own callback.
    fn authorize_and_apply(&self, worker: &SharedWorker, flow: &SharedFlow, now_ms: u64) -> Action {
        let step = authorize(worker, self.context_id, flow, now_ms);
        let done = !matches!(step, Step::Wait | Step::NeedRecords(_));
        if done {
            if let Ok(mut f) = flow.try_borrow_mut() {
                f.done = true;
            }
        }
        match step {
            Step::Continue => {
                count(Metric::Allowed);
                Action::Continue
            }
            Step::Deny(error) => self.deny(&error),
            Step::Wait | Step::NeedRecords(_) => Action::Pause,
        }
    }
}

// Requests dispatch nothing (fetches are the root context's), so no call responses arrive here.
impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let Some(worker) = self.worker.clone() else {
            return self.deny(&AuthError::KeysUnavailable(Outage::transient("filter is not configured")));
        };
        let Ok(config) = worker.try_borrow().map(|w| Rc::clone(&w.config)) else {
            return self.deny(&AuthError::KeysUnavailable(Outage::transient("worker busy")));
        };
        // One host call for every header this filter reads.
        let mut credentials: Vec<(String, String)> = Vec::new();
        let (mut path, mut method, mut host, mut content_type) = (String::new(), String::new(), String::new(), None);
        for (name, value) in self.get_http_request_headers() {
            if name.starts_with(IDENTITY_HEADER_PREFIX) || name == REASON_HEADER {
                self.set_http_request_header(&name, None);
            } else if config.token_locations.wants_header(&name) {
                credentials.push((name, value));
            } else {
                match name.as_str() {
                    ":path" => path = value,
                    ":method" => method = value,
                    ":authority" => host = value,
                    "content-type" => content_type = Some(value),
                    _ => {}
                }
            }
        }
        let route = path.split(['?', '#']).next().unwrap_or_default();
        if super::debug_enabled() {
            let shown: String = route.chars().filter(|c| !c.is_control()).take(200).collect();
            self.log_ctx = Some(format!("route={shown}"));
        }
        if config.public_routes.matches(route) {
            count(Metric::Public);
            return Action::Continue;
        }
        let rule = match route_rules::find(&config.rules, &Target { route, method: &method, host: &host }) {
            Some((_, RuleAction::Public)) => {
                count(Metric::Public);
                return Action::Continue;
            }
            Some((_, RuleAction::Deny)) => {
                return self.deny(&AuthError::RouteRule(format!("route {route} is closed by the gateway's rules")));
            }
            Some((i, RuleAction::Require(_))) => Some(i),
            None => None,
        };

        let (token, found) = match config.token_locations.find(&credentials, &path) {
            Ok(found) => found,
            Err(e) => return self.deny(&e),
        };
        if let Some(ctx) = self.log_ctx.as_mut() {
            ctx.push_str(" token=");
            ctx.push_str(&super::token_id(token));
        }
        if config.api_keys == ApiKeys::PassThrough && !is_jwt_shaped(token) {
            if rule.is_some() {
                // A route rule's requirements can only be checked on a verified JWT.
                return self.deny(&AuthError::RouteRule(format!("route {route} requires a JWT; API keys are not accepted here")));
            }
            // LiteLLM behind Envoy checks its own keys; this filter asserts nothing about them.
            count(Metric::ApiKeyPassThrough);
            return Action::Continue;
        }
        if !config.forward {
            self.strip_credential(found, &path, &credentials);
        }
        let now_us = now_micros();
        let now = now_us / 1000;
        let verification = match worker.try_borrow_mut() {
            Ok(mut w) => w.verify(token, now_us),
            Err(_) => Verification::Deny(AuthError::KeysUnavailable(Outage::transient("worker busy"))),
        };
        let (jws, waiting) = match verification {
            Verification::Deny(e) => return self.deny(&e),
            Verification::Verified(jws) => (jws, false),
            Verification::NeedKeys(jws) => (jws, true),
        };
        let body = if end_of_stream { Body::None } else { Body::Receiving(0) };
        let flow = Rc::new(RefCell::new(Flow::new(jws, route, content_type, body, Rc::clone(&config), rule, self.log_ctx.clone())));
        self.flow = Some(Rc::clone(&flow));
        if waiting {
            if let Ok(mut w) = worker.try_borrow_mut() {
                w.wait_for_keys(self.context_id, token, flow, now);
            }
            // The root context's next tick (≤ 100 ms; usually the keys were prefetched) fetches.
            pump(&worker, Caller::Request);
            return Action::Pause;
        }
        self.authorize_and_apply(&worker, &flow, now)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(flow), Some(worker)) = (self.flow.clone(), self.worker.clone()) else {
            return Action::Continue;
        };
        {
            let Ok(mut f) = flow.try_borrow_mut() else { return Action::Pause };
            if f.done {
                return Action::Continue;
            }
            f.body = if end_of_stream { Body::Complete(body_size) } else { Body::Receiving(body_size) };
            if end_of_stream {
                let records_enabled = worker.try_borrow().is_ok_and(|w| w.records_enabled());
                f.take_body(body_size, records_enabled);
            }
            if !f.body_seen {
                f.body_seen = true;
                if let Ok(mut w) = worker.try_borrow_mut() {
                    // Only if it was the body watch: a wait for keys or records stays.
                    if !f.waiting_for_records && f.verified {
                        w.forget(self.context_id);
                    }
                }
            }
            if !f.verified || f.waiting_for_records {
                // Waiting for keys or records: hold the body; the worker moves the request on.
                return Action::Pause;
            }
        }
        self.authorize_and_apply(&worker, &flow, now_ms())
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(worker) = &self.worker {
            if let Ok(mut w) = worker.try_borrow_mut() {
                w.forget(self.context_id);
            }
        }
    }
}
