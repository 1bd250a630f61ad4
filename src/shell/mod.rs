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
pub mod host_verify_proto;
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

thread_local! {
    /// Whether Envoy's `wasm` log level lets debug lines through, read on every tick: debug
    /// lines (one per decision) cost nothing when they would be dropped anyway.
    static DEBUG: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(crate) fn refresh_log_level() {
    let on = matches!(proxy_wasm::hostcalls::get_log_level(), Ok(LogLevel::Trace | LogLevel::Debug));
    DEBUG.with(|d| d.set(on));
}

pub(crate) fn debug_enabled() -> bool {
    DEBUG.with(std::cell::Cell::get)
}

/// Log through Envoy. Never pass token or key material here (see `docs/security.md`); a
/// token is named by [`token_id`].
pub(crate) fn log(level: LogLevel, message: &str) {
    if matches!(level, LogLevel::Trace | LogLevel::Debug) && !debug_enabled() {
        return;
    }
    let _ = proxy_wasm::hostcalls::log(level, message);
}

/// A short, stable name for a token in logs: the first 8 hex digits of its SHA-256. Enough to
/// follow one client's token through the log; useless for replaying it.
pub(crate) fn token_id(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect()
}
