//! The benchmark's baseline Wasm filter: the same per-request Wasm plumbing as llm-jwt-auth
//! (an HTTP context per request, a header read, a header write) with no authentication.
//!
//! On request headers it reads `authorization` and sets `x-noop: 1`, then continues.  No
//! body callbacks, no logging, no allocations beyond what the SDK does for the header value.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
}}

struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Read the credential like an auth filter would (and discard it).
        let _authorization = self.get_http_request_header("authorization");
        self.set_http_request_header("x-noop", Some("1"));
        Action::Continue
    }
}
