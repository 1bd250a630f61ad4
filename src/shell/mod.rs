//! The proxy-wasm shell: the only code that talks to Envoy. It stays thin — read headers, call
//! the pure core, apply its decision — so the behaviour lives where native tests reach it.
//!
//! - [`root`]: one per worker; compiles the configuration, owns the worker state, ticks.
//! - [`http`]: one per request; extracts and parses the token, decides or waits.
//! - [`worker`]: per-worker state shared by both — the JWKS cache view, requests waiting for
//!   keys, fetches in flight — and the code that resumes waiting requests.
//! - [`host`]: the host services behind the core's traits (shared data, `verify_signature`).

pub mod flow;
pub mod host;
pub mod http;
pub mod metrics;
pub mod root;
pub mod worker;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // Envoy filters by its own `wasm` log component level; let everything through to it.
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}

/// Log through Envoy. Never pass token or key material here (see `docs/security.md`).
pub(crate) fn log(level: LogLevel, message: &str) {
    let _ = proxy_wasm::hostcalls::log(level, message);
}
