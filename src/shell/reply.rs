//! What a decision does to the request: an admitted request goes upstream with its identity;
//! a refused one gets LiteLLM's JSON error as a local reply, or, in report mode, goes upstream
//! with the denial only recorded.

use super::host::Host;
use super::metrics::{count, Labels, Metric};
use crate::authz::identity::{Identity, REASON_HEADER};
use crate::config::Mode;
use crate::error::AuthError;
use proxy_wasm::types::LogLevel;

/// Add the verified identity as `x-litellm-*` request headers and, with `filter_state`, as
/// filter state (`wasm.llm_jwt_auth.<name>`, e.g. `%FILTER_STATE(wasm.llm_jwt_auth.user_id:PLAIN)%`).
/// Filter state is opt-in: each value is a host call that creates a filter-state object, which
/// measured at ~7% of the cached-token request path per value.
pub fn allow(host: &dyn Host, identity: &Identity, filter_state: bool, labels: Labels, log_ctx: Option<&str>) {
    count(Metric::Allowed);
    count(Metric::Decision { denied: None, labels });
    if host.debug_enabled() {
        let none = || "-".to_string();
        host.log(LogLevel::Debug, &format!(
            "decision=allow {} user_id={} team_id={} role={}",
            log_ctx.unwrap_or_default(),
            identity.user_id.clone().unwrap_or_else(none),
            identity.team_id.clone().unwrap_or_else(none),
            identity.user_role,
        ));
    }
    for (header, value) in identity.headers() {
        host.set_request_header(header, Some(&value));
        if filter_state {
            let name = header.trim_start_matches("x-litellm-").replace('-', "_");
            host.set_filter_state(&format!("llm_jwt_auth.{name}"), value.as_bytes());
        }
    }
}

/// Refuse a request: LiteLLM's JSON error as a local reply — or, in report mode, only record
/// the denial. `true` when a reply was sent (the request must stay paused), `false` when the
/// request may go on.
pub fn deny(host: &dyn Host, error: &AuthError, mode: Mode, filter_state: bool, labels: Labels, log_ctx: Option<&str>) -> bool {
    count(Metric::Denied(error.reason()));
    count(Metric::Decision { denied: Some(error.reason()), labels });
    if filter_state {
        host.set_filter_state("llm_jwt_auth.denial_reason", error.reason().as_bytes());
    }
    if mode == Mode::Report {
        count(Metric::ReportedNotEnforced);
        host.log(LogLevel::Info, &format!(
            "decision=report_deny reason={} status={} {}", error.reason(), error.status(), log_ctx.unwrap_or_default()
        ));
        host.set_request_header(REASON_HEADER, Some(error.reason()));
        return false;
    }
    let response = error.to_response();
    // The client's body names no cluster, URL or field; the log has the cause.
    if let AuthError::EnvoyMisconfigured(detail) = error {
        host.log(LogLevel::Error, &format!("cannot decide a request: {detail}"));
    } else if host.debug_enabled() {
        let detail = error.detail().map(|d| format!(" detail={d:?}")).unwrap_or_default();
        host.log(LogLevel::Debug, &format!(
            "decision=deny reason={} status={} {}{detail}", error.reason(), response.status, log_ctx.unwrap_or_default()
        ));
    }
    let mut headers: Vec<(&str, &str)> = response.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    headers.push((REASON_HEADER, error.reason()));
    host.send_reply(response.status, &headers, &response.body);
    true
}
