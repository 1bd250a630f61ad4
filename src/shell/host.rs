//! The one boundary between the filter and Envoy: every host call the shell makes goes
//! through [`Host`]. [`ProxyWasm`] is Envoy (the proxy-wasm ABI); the shell's native tests
//! script a host instead (`shell::scripted`), as Kuadrant's wasm-shim does.

use crate::authn::verify::{HashFn, HostCrypto};
use crate::fetch::{Answer, Call};
use crate::shell::host_verify_proto::{decode_result, encode_arguments};
use crate::store::SharedData;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};
use std::cell::Cell;
use std::time::{Duration, UNIX_EPOCH};

/// What the shell asks of the host. The request calls act on the *current* request: the one
/// whose callback is running, or the one [`Host::enter_request`] chose (the root context
/// moving a waiting request on).
pub trait Host {
    // The current request.
    fn request_headers(&self) -> Vec<(String, String)>;
    /// Set (`Some`) or remove (`None`) a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    /// Make Envoy pick the request's route again (from its headers as they are when the router
    /// asks): after a change to a header routes may match on.
    fn clear_route_cache(&self);
    /// The first `size` bytes of the buffered request body. Only valid in the request's own
    /// body callback.
    fn request_body(&self, size: usize) -> Vec<u8>;
    /// Add a header to the answer (in the request's response-headers callback).
    fn add_response_header(&self, name: &str, value: &str);
    /// An answer header (`:status` included), in the response-headers callback.
    fn response_header(&self, name: &str) -> Option<String>;
    /// Set (`Some`) or remove (`None`) an answer header, in the response-headers callback.
    fn set_response_header(&self, name: &str, value: Option<&str>);
    /// The response body bytes of the current body callback (the chunk it delivers, or all
    /// that is buffered).
    fn response_body(&self, size: usize) -> Vec<u8>;
    /// Replace the buffered response body (in its last body callback).
    fn set_response_body(&self, body: &[u8]);
    /// Filter state `wasm.<name>` (`%FILTER_STATE(wasm.<name>:PLAIN)%`).
    fn set_filter_state(&self, name: &str, value: &[u8]);
    /// Answer the request locally (it must then stay paused).
    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// Let a paused request go on.
    fn resume_request(&self);
    /// Make `context_id` the current request; `false` when it is gone (the client hung up).
    fn enter_request(&self, context_id: u32) -> bool;

    // Outgoing calls: only the root context makes them (see `shell::worker::fetches`).
    /// The call's token, or why Envoy refused it (it has no such cluster).
    fn dispatch(&self, call: &Call) -> Result<u32, String>;
    /// The answer of the call whose response callback is running.
    fn call_answer(&self, num_headers: usize, body_size: usize) -> Answer;

    // Services.
    /// Microseconds since the epoch.
    fn now_us(&self) -> u64;
    fn now_ms(&self) -> u64 {
        self.now_us() / 1000
    }
    /// Log through Envoy. Never pass token or key material (see `docs/security.md`).
    fn log(&self, level: LogLevel, message: &str);
    /// Whether debug lines would be printed: building them is skipped otherwise.
    fn debug_enabled(&self) -> bool;
    fn shared(&self) -> &dyn SharedData;
    fn crypto(&self) -> &dyn HostCrypto;
    /// Define a metric; `None` if the host refuses it (that metric is then lost, nothing else).
    fn define_metric(&self, kind: MetricType, name: &str) -> Option<u32>;
    /// Add to a counter, or record a histogram sample.
    fn add_to_metric(&self, id: u32, kind: MetricType, value: u64);
}

/// Envoy, through the proxy-wasm ABI. One per worker, shared by its contexts.
pub struct ProxyWasm {
    debug: Cell<bool>,
    verifier: HostVerifier,
}

impl Default for ProxyWasm {
    fn default() -> Self {
        let host = ProxyWasm { debug: Cell::new(false), verifier: HostVerifier::default() };
        host.refresh_log_level();
        host
    }
}

impl ProxyWasm {
    /// Read Envoy's `wasm` log level (on every tick): debug lines cost nothing when they would
    /// be dropped anyway.
    pub fn refresh_log_level(&self) {
        let on = matches!(hostcalls::get_log_level(), Ok(LogLevel::Trace | LogLevel::Debug));
        self.debug.set(on);
    }
}

impl Host for ProxyWasm {
    fn request_headers(&self) -> Vec<(String, String)> {
        hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn clear_route_cache(&self) {
        // Envoy's `clear_route_cache` foreign function (Envoy 1.33+). On Envoy 1.36 and 1.40 the
        // router matched the headers as the filter left them even without it (the e2e test of
        // routing by model passes with this call removed); the filter does not rely on that
        // implicit behaviour, which Envoy has moved away from. The shell calls it from the request's own
        // callbacks only: before Envoy 1.37 a foreign function called from the root context
        // acted on the root context, not the request it entered (envoy#42227).
        let _ = hostcalls::call_foreign_function("clear_route_cache", None);
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok().flatten().unwrap_or_default()
    }

    fn add_response_header(&self, name: &str, value: &str) {
        let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value);
    }

    fn response_header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpResponseHeaders, name).ok().flatten()
    }

    fn set_response_header(&self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value);
    }

    fn response_body(&self, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size).ok().flatten().unwrap_or_default()
    }

    fn set_response_body(&self, body: &[u8]) {
        // Everything buffered (`usize::MAX`) is replaced.
        let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, usize::MAX, body);
    }

    fn set_filter_state(&self, name: &str, value: &[u8]) {
        let _ = hostcalls::set_property(vec![name], Some(value));
    }

    fn send_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(status, headers.to_vec(), Some(body));
    }

    fn resume_request(&self) {
        let _ = hostcalls::resume_http_request();
    }

    fn enter_request(&self, context_id: u32) -> bool {
        hostcalls::set_effective_context(context_id).is_ok()
    }

    fn dispatch(&self, call: &Call) -> Result<u32, String> {
        let timeout = Duration::from_millis(call.timeout_ms);
        hostcalls::dispatch_http_call(&call.cluster, call.header_list(), call.body.as_deref(), vec![], timeout)
            .map_err(|status| format!("{status:?}"))
    }

    fn call_answer(&self, num_headers: usize, body_size: usize) -> Answer {
        let status = if num_headers == 0 {
            None
        } else {
            hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten()
        };
        Answer::read(status, body_size, || {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default()
        })
    }

    fn now_us(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or(Duration::ZERO)
            .as_micros() as u64
    }

    fn log(&self, level: LogLevel, message: &str) {
        if matches!(level, LogLevel::Trace | LogLevel::Debug) && !self.debug.get() {
            return;
        }
        let _ = hostcalls::log(level, message);
    }

    fn debug_enabled(&self) -> bool {
        self.debug.get()
    }

    fn shared(&self) -> &dyn SharedData {
        self
    }

    fn crypto(&self) -> &dyn HostCrypto {
        &self.verifier
    }

    fn define_metric(&self, kind: MetricType, name: &str) -> Option<u32> {
        hostcalls::define_metric(kind, name).ok()
    }

    fn add_to_metric(&self, id: u32, kind: MetricType, value: u64) {
        let _ = match kind {
            MetricType::Histogram => hostcalls::record_metric(id, value),
            _ => hostcalls::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX)),
        };
    }
}

/// Envoy's shared data (process-wide per `vm_id`).
impl SharedData for ProxyWasm {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|_| ())
    }
}

/// Envoy's `verify_signature` foreign function (1.30+). Remembers when the host lacks it.
struct HostVerifier {
    available: Cell<bool>,
    announced: Cell<bool>,
}

impl Default for HostVerifier {
    fn default() -> Self {
        Self { available: Cell::new(true), announced: Cell::new(false) }
    }
}

impl HostVerifier {
    /// Say once per worker which crypto is in use: operators (and the tests) can check it.
    fn announce(&self) {
        if !self.announced.replace(true) {
            let _ = hostcalls::log(LogLevel::Info, "RS*/ES* signatures verified by the host's verify_signature");
        }
    }
}

impl HostCrypto for HostVerifier {
    fn verify(&self, hash: HashFn, spki_der: &[u8], signature: &[u8], message: &[u8]) -> Option<bool> {
        if !self.available.get() {
            return None;
        }
        let args = encode_arguments(hash.host_name(), spki_der, signature, message);
        match hostcalls::call_foreign_function("verify_signature", Some(&args)) {
            // proto3 leaves `result=false, error=""` empty on the wire: an empty answer is "invalid".
            Ok(None) => {
                self.announce();
                Some(false)
            }
            Ok(Some(bytes)) => {
                self.announce();
                decode_result(&bytes).map(|(valid, _)| valid)
            }
            Err(Status::NotFound) => {
                self.available.set(false);
                let _ = hostcalls::log(LogLevel::Info, "host has no verify_signature; verifying in the guest");
                None
            }
            Err(status) => {
                let _ = hostcalls::log(LogLevel::Debug, &format!("verify_signature refused ({status:?}); verifying in the guest"));
                None
            }
        }
    }
}
