//! The proxy-wasm shell: the only code that talks to Envoy. It stays thin — read headers, call
//! the pure core, apply its decision — so the behaviour lives where native tests reach it.
//!
//! In the order a request meets them:
//! - [`root`]: one per worker; compiles the configuration, owns the worker, ticks, takes
//!   fetch answers; [`http`]: one per request. Both are thin adapters to Envoy's callbacks.
//! - [`request`]: a request's callbacks — [`admission`] (headers: public routes, rules, the
//!   credential), verify and authorize through the [`worker`], wait in a [`flow`] phase, and
//!   [`reply`] (forward the identity, or LiteLLM's error), applied in one place.
//! - [`worker`]: per-worker state — key sets, records, the verified-token cache, waiting
//!   flows — with its fetches and waiters.
//! - [`host`]: the one boundary to Envoy ([`host::Host`]); [`metrics`] are published through it.

pub mod admission;
pub mod flow;
pub mod host;
pub mod host_verify_proto;
pub mod http;
pub mod metrics;
pub mod reply;
pub mod request;
pub mod root;
pub mod worker;
#[cfg(any(test, feature = "cli"))]
pub mod scripted;
#[cfg(test)]
mod tests;

proxy_wasm::main! {{
    // Envoy filters by its own `wasm` log component level; let everything through to it.
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}

/// A short, stable name for a token in logs: the first 8 hex digits of its SHA-256. Enough to
/// follow one client's token through the log; useless for replaying it.
pub(crate) fn token_id(token: &str) -> String {
    crate::store::sha256_hex(token, 4)
}
