//! The root context: one per worker thread. Compiles the configuration and keeps the worker
//! state; its tick starts JWKS fetches (prefetch at start, refresh after the TTL) and releases
//! requests that wait on a fetch another worker is doing.

use super::http::Request;
use super::log;
use super::worker::{on_fetch_response, pump, Caller, SharedWorker, Worker};
use crate::config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// How often a worker looks at shared data for keys another worker fetched.
const TICK: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct Root {
    worker: Option<SharedWorker>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _: usize) {
        if let Some(worker) = &self.worker {
            on_fetch_response(worker, token, num_headers, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        super::refresh_log_level();
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let env = |name: &str| std::env::var(name).ok();
        match config::compile(&raw, &env) {
            Ok(compiled) => {
                log(
                    LogLevel::Info,
                    &format!(
                        "configured: {} JWKS URL(s), {} inline key(s), {} issuer(s)",
                        compiled.jwks.len(),
                        compiled.inline_keys.len(),
                        compiled.issuers.len()
                    ),
                );
                self.worker = Some(Rc::new(RefCell::new(Worker::new(compiled))));
                self.set_tick_period(TICK);
                true
            }
            Err(message) => {
                // Envoy refuses the configuration: the listener never runs without auth.
                log(LogLevel::Critical, &message);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        super::refresh_log_level();
        if let Some(worker) = &self.worker {
            pump(worker, Caller::Root);
        }
        super::metrics::flush();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request::new(context_id, self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
