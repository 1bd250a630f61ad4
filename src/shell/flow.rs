//! One request's way through the filter after its token parsed: verification (possibly after
//! waiting for keys), then authorization (possibly after waiting for the body, when a rule
//! needs the requested model). Shared between the request context and the worker, so that a
//! JWKS response handled by any context of the worker can move a waiting request on.

use super::log;
use super::worker::WorkerRecords;
use crate::authz::{Caller, Outcome, Request as AuthzRequest};
use crate::records::RecordKey;
use crate::config::{FilterConfig, Mode};
use crate::error::AuthError;
use crate::authz::identity::Identity;
use crate::authn::jws::Jws;
use crate::authz::model;
use crate::authz::route_rules::RuleAction;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};
use std::rc::Rc;

/// What has been seen of the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The request has no body (headers ended the stream).
    None,
    /// Body bytes are arriving; this many are buffered so far.
    Receiving(usize),
    /// The whole body is buffered.
    Complete(usize),
}

/// What to do with the request next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Continue,
    Deny(AuthError),
    /// Waiting for the rest of the body (or for records: the worker parked the request).
    Wait,
    /// Decide again once these records are known.
    NeedRecords(Vec<RecordKey>),
}

pub struct Flow {
    pub jws: Rc<Jws>,
    route: String,
    path_model: Option<String>,
    content_type: Option<String>,
    pub verified: bool,
    /// Parked by the worker until team/user records arrive.
    pub waiting_for_records: bool,
    pub body: Body,
    /// A body callback has arrived (so Envoy delivers the body to the filter).
    pub body_seen: bool,
    /// Decided and applied: later callbacks let the request through untouched.
    pub done: bool,
    config: Rc<FilterConfig>,
    /// The per-route rule (index into `config.rules`) whose requirements apply after LiteLLM's.
    rule: Option<usize>,
    /// `route=… token=…` for debug lines (only when debug logging is on).
    pub log_ctx: Option<String>,
    /// The model read from the complete body, read once in the request's own body callback:
    /// the body buffer is only read there, never from another context's callback.
    body_model: Option<Result<Option<String>, AuthError>>,
    /// The token's scopes and role, worked out once.
    caller: Option<Caller>,
}

impl Flow {
    pub fn new(jws: Rc<Jws>, route: &str, content_type: Option<String>, body: Body, config: Rc<FilterConfig>, rule: Option<usize>, log_ctx: Option<String>) -> Self {
        Flow {
            jws,
            path_model: model::from_path(route),
            route: route.to_string(),
            content_type,
            verified: false,
            waiting_for_records: false,
            body,
            body_seen: false,
            done: false,
            config,
            rule,
            log_ctx,
            body_model: None,
            caller: None,
        }
    }

    /// The token's policy and what it reads of the token (worked out on first use).
    fn policy_and_caller(&mut self) -> Result<(Rc<FilterConfig>, Caller), AuthError> {
        let config = Rc::clone(&self.config);
        let policy = crate::authn::trust::select(&config, &self.jws.claims).map(|t| t.policy)?;
        let caller = self.caller.get_or_insert_with(|| policy.caller(&self.jws.claims)).clone();
        Ok((config, caller))
    }

    fn policy<'c>(&self, config: &'c FilterConfig) -> &'c crate::authz::Policy {
        crate::authn::trust::select(config, &self.jws.claims).map_or(&config.policy, |t| t.policy)
    }

    /// In the request's body callback, once the body is complete: read the model now if a
    /// rule may need it, so that later decisions (after keys or records arrive, from another
    /// context's callback) do not touch the body buffer.
    pub fn take_body(&mut self, size: usize, records_enabled: bool) {
        let needs = self.policy_and_caller().is_ok_and(|(config, c)| self.policy(&config).needs_model(&c, records_enabled));
        if self.body_model.is_none() && size <= self.config.max_body_bytes && needs {
            self.body_model = Some(self.requested_model(size));
        }
    }

    /// The request's model: from the buffered body when there is one, else from the path.
    fn requested_model(&self, size: usize) -> Result<Option<String>, AuthError> {
        let bytes = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let boundary = self.content_type.as_deref().and_then(model::multipart_boundary);
        let from_body = match boundary {
            Some(b) => model::from_multipart(&bytes, &b),
            None => model::from_json(&bytes),
        };
        match from_body {
            Ok(found) => Ok(found.or_else(|| self.path_model.clone())),
            Err(model::BodyError::Invalid(why)) => Err(AuthError::InvalidBody(why)),
        }
    }

    /// Authorize a verified token; reads the body when a rule needs the model.
    pub fn authorize(&mut self, records: &mut WorkerRecords, records_enabled: bool) -> Step {
        let (config, caller) = match self.policy_and_caller() {
            Ok(found) => found,
            Err(e) => return Step::Deny(e),
        };
        let policy = self.policy(&config);
        let model = if policy.needs_model(&caller, records_enabled) {
            match self.body {
                Body::Receiving(size) if size > self.config.max_body_bytes => {
                    return Step::Deny(AuthError::BodyTooLarge(self.config.max_body_bytes));
                }
                Body::Receiving(_) => return Step::Wait,
                Body::Complete(size) if size > self.config.max_body_bytes => {
                    return Step::Deny(AuthError::BodyTooLarge(self.config.max_body_bytes));
                }
                Body::Complete(size) => match self.body_model.clone().unwrap_or_else(|| self.requested_model(size)) {
                    Ok(model) => model,
                    Err(e) => return Step::Deny(e),
                },
                Body::None => self.path_model.clone(),
            }
        } else {
            self.path_model.clone()
        };
        let request = AuthzRequest { route: &self.route, model: model.as_deref() };
        match policy.authorize(&self.jws.claims, &caller, request, records) {
            Outcome::Allow { identity, upserts } => {
                if let Some(RuleAction::Require(required)) = self.rule.and_then(|i| self.config.rules.get(i)).map(|r| &r.action) {
                    if let Err(e) = required.check(&self.route, &identity, &self.jws.claims, &caller.scopes) {
                        return Step::Deny(e);
                    }
                }
                records.upsert(upserts);
                if super::debug_enabled() {
                    let none = || "-".to_string();
                    log(LogLevel::Debug, &format!(
                        "decision=allow {} user_id={} team_id={} role={}",
                        self.log_ctx.as_deref().unwrap_or_default(),
                        identity.user_id.clone().unwrap_or_else(none),
                        identity.team_id.clone().unwrap_or_else(none),
                        identity.user_role,
                    ));
                }
                forward_identity(&identity, self.config.filter_state);
                Step::Continue
            }
            Outcome::Deny(e) => Step::Deny(e),
            Outcome::Need(keys) => Step::NeedRecords(keys),
        }
    }
}

/// Add the verified identity as `x-litellm-*` request headers and, with `filter_state`, as
/// filter state (`wasm.llm_jwt_auth.<name>`, e.g. `%FILTER_STATE(wasm.llm_jwt_auth.user_id:PLAIN)%`).
/// Filter state is opt-in: each value is a host call that creates a filter-state object, which
/// measured at ~7% of the cached-token request path per value.
pub fn forward_identity(identity: &Identity, filter_state: bool) {
    for (header, value) in identity.headers() {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, header, Some(&value));
        if filter_state {
            let name = header.trim_start_matches("x-litellm-").replace('-', "_");
            let _ = hostcalls::set_property(vec![&format!("llm_jwt_auth.{name}")], Some(value.as_bytes()));
        }
    }
}

/// Refuse a request: LiteLLM's JSON error as a local reply — or, in report mode, only record
/// the denial. Returns `true` when a reply was sent (the request must stay paused), `false`
/// when the request may go on.
pub fn send_denial(error: &AuthError, mode: Mode, filter_state: bool, log_ctx: Option<&str>) -> bool {
    super::metrics::count(super::metrics::Metric::Denied(error.reason()));
    if filter_state {
        let _ = hostcalls::set_property(vec!["llm_jwt_auth.denial_reason"], Some(error.reason().as_bytes()));
    }
    if mode == Mode::Report {
        super::metrics::count(super::metrics::Metric::ReportedNotEnforced);
        log(LogLevel::Info, &format!(
            "decision=report_deny reason={} status={} {}", error.reason(), error.status(), log_ctx.unwrap_or_default()
        ));
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, crate::authz::identity::REASON_HEADER, Some(error.reason()));
        return false;
    }
    let response = error.to_response();
    // The client's body names no cluster, URL or field; the log has the cause.
    if let AuthError::EnvoyMisconfigured(detail) = error {
        log(LogLevel::Error, &format!("cannot decide a request: {detail}"));
    } else if super::debug_enabled() {
        let detail = error.detail().map(|d| format!(" detail={d:?}")).unwrap_or_default();
        log(LogLevel::Debug, &format!(
            "decision=deny reason={} status={} {}{detail}", error.reason(), response.status, log_ctx.unwrap_or_default()
        ));
    }
    let mut headers: Vec<(&str, &str)> = response.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    headers.push((crate::authz::identity::REASON_HEADER, error.reason()));
    let _ = hostcalls::send_http_response(response.status, headers, Some(&response.body));
    true
}
