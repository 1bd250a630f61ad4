//! One request's callbacks, in the order Envoy makes them: headers (admission, then verify and
//! authorize, or wait), body (the model, when a rule or routing by model needs it), and the end. Waiting requests
//! are moved on by the root context ([`move_on`]). Every step is applied in one place,
//! `apply`, outside the worker's borrow.

use super::admission::{admit, without_credential, Admission, Headers};
use super::flow::{Body, Flow, Phase, Token};
use super::host::Host;
use super::metrics::{count, Labels, Metric};
use super::reply;
use super::worker::waiters::Ready;
use super::worker::{SharedWorker, Step, Verification};
use crate::authn::dpop::Presentation;
use crate::authz::model;
use crate::config::{FilterConfig, Mode};
use super::worker::answers::EMPTY_MODEL_LIST;
use crate::authz::model_list::{filter_list, Listed};
use crate::error::{AuthError, Outage};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// The request's headers arrived.
pub fn on_headers(host: &dyn Host, worker: &SharedWorker, context_id: u32, end_of_stream: bool) -> Action {
    let Ok(config) = worker.try_borrow().map(|w| Rc::clone(&w.config)) else { return busy(host, Labels::UNREAD) };
    let headers = Headers::read(host.request_headers(), &config);
    for name in &headers.spoofed {
        host.set_request_header(name, None);
    }
    if headers.spoofed_route {
        host.clear_route_cache(); // Envoy chose the route with the client's value
    }
    let route = headers.route();
    let mut log_ctx = host.debug_enabled().then(|| {
        let shown: String = route.chars().filter(|c| !c.is_control()).take(200).collect();
        format!("route={shown}")
    });
    let (token, found, rule, scheme) = match admit(&config, &headers) {
        Admission::Public => {
            count(Metric::Public);
            return Action::Continue;
        }
        Admission::ApiKey => {
            count(Metric::ApiKeyPassThrough);
            return Action::Continue;
        }
        Admission::Deny(e) => {
            let labels = Labels::unverified(config.route_group_labels.of(route));
            return apply(host, &config, Step::Deny(e), labels, log_ctx.as_deref());
        }
        Admission::Token { token, found, rule, scheme } => (token, found, rule, scheme),
    };
    // Public routes and passed-through keys are not decisions: only now is the group needed.
    let unverified = Labels::unverified(config.route_group_labels.of(route));
    if let Some(ctx) = log_ctx.as_mut() {
        ctx.push_str(" token=");
        ctx.push_str(&super::token_id(token));
    }
    if !config.forward {
        let (name, value) = without_credential(&found, &headers);
        host.set_request_header(name, value.as_deref());
    }
    let now_us = host.now_us();
    let now_ms = now_us / 1000;
    let (step, labels) = {
        let Ok(mut w) = worker.try_borrow_mut() else { return busy(host, unverified) };
        let held = match w.verify(host, token, now_us) {
            Verification::Verified(verified) => Token::Verified(verified),
            Verification::NeedKeys(jws) => Token::Unverified { text: token.into(), jws },
            Verification::NeedUserInfo(hash) => Token::Opaque { text: token.into(), hash },
            Verification::Deny(e) => {
                drop(w);
                return apply(host, &config, Step::Deny(e), unverified, log_ctx.as_deref());
            }
        };
        let mut flow = Flow::new(held, route, headers.content_type.clone(), end_of_stream);
        flow.rule = rule;
        flow.log_ctx = log_ctx.clone();
        flow.group = unverified.group;
        flow.team_header = headers.team_header.clone();
        let labels = w.labels(&flow);
        if config.dpop.is_some() {
            flow.binding = Some(Presentation::new(scheme, headers.dpop_proofs.clone(), &headers.method, headers.url(), token));
        }
        // Without a body (or with a stream that is none, a WebSocket's), the path's model is
        // known now and routing waits for nothing.
        route_by_model(host, &config, &mut flow, !headers.may_carry_model());
        if flow.verified().is_none() {
            // The root context's next tick (≤ 100 ms; usually the keys were prefetched) fetches.
            w.await_token(context_id, flow, now_ms);
            return Action::Pause;
        }
        (w.advance(host, context_id, flow, now_ms), labels)
    };
    apply(host, &config, step, labels, log_ctx.as_deref())
}

/// Body bytes arrived (`size` buffered so far).
pub fn on_body(host: &dyn Host, worker: &SharedWorker, context_id: u32, size: usize, end_of_stream: bool) -> Action {
    let (step, config, labels, log_ctx) = {
        let Ok(mut w) = worker.try_borrow_mut() else { return Action::Pause };
        let Some(mut flow) = w.forget(context_id) else {
            return Action::Continue; // decided (or public): the body passes untouched
        };
        flow.body = if end_of_stream { Body::Complete(size) } else { Body::Receiving(size) };
        flow.body_seen = true;
        let wants_model = w.may_need_model(&flow) || w.config.model_routing.is_some();
        if end_of_stream && size <= w.config.max_body_bytes && flow.body_model.is_none() && wants_model {
            flow.read_model(&host.request_body(size));
        }
        route_by_model(host, &w.config, &mut flow, false);
        if !matches!(flow.phase, Phase::AwaitingBody { .. }) {
            // Waiting for keys or records: hold the body; the root context moves the request on.
            w.flows.insert(context_id, flow);
            return Action::Pause;
        }
        let (log_ctx, labels) = (flow.log_ctx.clone(), w.labels(&flow));
        let now_ms = host.now_ms();
        (w.advance(host, context_id, flow, now_ms), Rc::clone(&w.config), labels, log_ctx)
    };
    apply(host, &config, step, labels, log_ctx.as_deref())
}

/// The answer's headers: a request counted in rate limits gets LiteLLM's `x-ratelimit-*`
/// headers (what was left of each limit when it was admitted); a model list whose caller's
/// models are limited is taken to be filtered (a JSON `200` only: anything else goes through
/// as it is).
pub fn on_response_headers(host: &dyn Host, worker: &SharedWorker, context_id: u32, end_of_stream: bool) {
    let Ok(mut w) = worker.try_borrow_mut() else { return };
    let Some(answer) = w.answering.get_mut(&context_id) else { return };
    for status in answer.admission.iter().flat_map(|a| &a.statuses) {
        for (name, value) in status.headers() {
            host.add_response_header(&name, &value);
        }
    }
    let encoded = host.response_header("content-encoding").is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
    if answer.models.is_some() && !end_of_stream {
        let json = host.response_header("content-type").is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("application/json"));
        if json && host.response_header(":status").as_deref() == Some("200") {
            answer.rewrite = true;
            host.set_response_header("content-length", None); // the filtered list is shorter
            if encoded {
                // Compressed despite the removed accept-encoding: unreadable, so it is replaced
                // by an empty list, sent as is.
                host.set_response_header("content-encoding", None);
                answer.models = None;
            }
        }
    }
    let unreadable_usage = encoded && answer.usage.take().is_some();
    if unreadable_usage {
        w.report_misconfigured(host, "an answer whose tokens count toward a tpm_limit arrived compressed (the upstream \
            ignores the removed accept-encoding): its usage cannot be read, so its tokens are not counted");
    }
    if end_of_stream {
        w.settle(host, context_id);
    }
}

/// A chunk of the answer, passed on as it is unless the answer is a model list to filter
/// (buffered until its end, then replaced by the filtered list). Read for its `usage` when a
/// limit counts tokens. The last chunk settles the request before it reaches the client, so
/// that a client that has seen the end of an answer finds its tokens counted and its slot
/// free.
pub fn on_response_body(host: &dyn Host, worker: &SharedWorker, context_id: u32, body_size: usize, end_of_stream: bool) -> Action {
    let Ok(mut w) = worker.try_borrow_mut() else { return Action::Continue };
    let Some(answer) = w.answering.get_mut(&context_id) else { return Action::Continue };
    if answer.rewrite {
        if !end_of_stream {
            return Action::Pause; // Envoy buffers it
        }
        let list = host.response_body(body_size);
        match answer.models.as_ref().map(|m| filter_list(&list, m)) {
            Some(Listed::Filtered(kept)) => host.set_response_body(&kept),
            Some(Listed::NotAList) => {} // no `data`: nothing to filter, it goes on as it is
            // Not readable (or compressed): nothing is shown rather than everything.
            Some(Listed::Unreadable) | None => host.set_response_body(EMPTY_MODEL_LIST),
        }
    } else if let (Some(usage), true) = (answer.usage.as_mut(), body_size > 0) {
        usage.feed(&host.response_body(body_size));
    }
    if end_of_stream {
        w.settle(host, context_id);
    }
    Action::Continue
}

/// The request is done (answered, reset, or the client went away): one that had not settled
/// (its answer was cut, or never came) settles now.
pub fn on_done(host: &dyn Host, worker: &SharedWorker, context_id: u32) {
    if let Ok(mut w) = worker.try_borrow_mut() {
        w.forget(context_id);
        w.settle(host, context_id);
    }
}

/// Move waiting requests on (from the root context): authorize those whose keys or records
/// arrived, answer those whose wait ran out, and let each go on or keep it paused.
pub fn move_on(host: &dyn Host, worker: &SharedWorker, ready: Vec<(u32, Ready)>, now_ms: u64) {
    for (context_id, ready) in ready {
        let entered = host.enter_request(context_id);
        let (step, config, labels, log_ctx) = {
            let Ok(mut w) = worker.try_borrow_mut() else { return };
            if !entered {
                w.forget(context_id); // the client hung up: nothing to answer
                continue;
            }
            let Some((labels, log_ctx)) = w.flows.get(&context_id).map(|f| (w.labels(f), f.log_ctx.clone())) else { continue };
            let step = match ready {
                Ready::Advance => w.advance_waiting(host, context_id, now_ms),
                Ready::Deny(e) => w.forget(context_id).map(|_| Step::Deny(e)),
            };
            let Some(step) = step else { continue };
            (step, Rc::clone(&w.config), labels, log_ctx)
        };
        if apply(host, &config, step, labels, log_ctx.as_deref()) == Action::Continue {
            host.resume_request();
        }
    }
}

/// With `model_routing`, once the requested model is known: name it in the routing header and
/// have Envoy pick the route again, so the router (which runs after this filter lets the
/// request go on) matches routes on it. Once per request, and always in the request's own
/// callback, where Envoy's route cache can be cleared. No model, or one that cannot be a header
/// value: no header (any the client sent is already gone), Envoy's routes without a model apply.
/// Set whatever the decision: a refused request is answered here and never routed, and in
/// report mode it goes upstream as if allowed.
/// `bodiless`: the request's model is the path's whatever follows the headers.
fn route_by_model(host: &dyn Host, config: &FilterConfig, flow: &mut Flow, bodiless: bool) {
    let Some(routing) = &config.model_routing else { return };
    if flow.routed {
        return;
    }
    let model = if bodiless { Some(flow.path_model.as_deref()) } else { flow.route_model(config.max_body_bytes) };
    let Some(model) = model else { return };
    if let Some(value) = model.and_then(model::routing_value) {
        host.set_request_header(&routing.header, Some(value));
        host.clear_route_cache();
    }
    flow.routed = true;
}

/// Apply a step to the current request: forward the identity, answer (or, in report mode,
/// record) the denial, or keep waiting. The one place a decision takes effect.
fn apply(host: &dyn Host, config: &FilterConfig, step: Step, labels: Labels, log_ctx: Option<&str>) -> Action {
    match step {
        Step::Allow(identity) => {
            reply::allow(host, &identity, config.filter_state, labels, log_ctx);
            Action::Continue
        }
        Step::Deny(error) => match reply::deny(host, &error, config.mode, config.filter_state, labels, log_ctx) {
            true => Action::Pause,
            false => Action::Continue,
        },
        Step::Wait => Action::Pause,
    }
}

/// The worker is borrowed by a callback further up the stack (a re-entered VM): never a pass.
fn busy(host: &dyn Host, labels: Labels) -> Action {
    not_ready(host, "worker busy", labels)
}

/// A request that cannot be decided now gets a 503.
pub fn not_ready(host: &dyn Host, why: &str, labels: Labels) -> Action {
    let error = AuthError::KeysUnavailable(Outage::transient(why));
    match reply::deny(host, &error, Mode::Enforce, false, labels, None) {
        true => Action::Pause,
        false => Action::Continue,
    }
}
