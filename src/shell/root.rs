//! The root context: one per worker thread. Compiles the configuration and keeps the worker;
//! its tick starts fetches (key sets at start and after their TTL, records requests wait
//! for) and moves on requests that wait on a fetch, this worker's or another's.

use super::host::{Host, ProxyWasm};
use super::http::Request;
use super::request::move_on;
use super::worker::{SharedWorker, Worker};
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
    host: Rc<ProxyWasm>,
    worker: Option<SharedWorker>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _: usize) {
        if let Some(worker) = &self.worker {
            answer(&*self.host, worker, token, num_headers, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.host.refresh_log_level();
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match configure(&*self.host, &raw, &|name| std::env::var(name).ok()) {
            Some(worker) => {
                self.worker = Some(worker);
                self.set_tick_period(TICK);
                true
            }
            // Envoy refuses the configuration: the listener never runs without auth.
            None => false,
        }
    }

    fn on_tick(&mut self) {
        self.host.refresh_log_level();
        if let Some(worker) = &self.worker {
            tick(&*self.host, worker);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request::new(context_id, Rc::clone(&self.host), self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Compile the plugin configuration into a worker, or log why it is refused.
pub fn configure(host: &dyn Host, raw: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Option<SharedWorker> {
    match config::compile(raw, env) {
        Ok(compiled) => {
            host.log(
                LogLevel::Info,
                &format!(
                    "llm-jwt-auth {} ({}) configured: {} JWKS URL(s), {} inline key(s), {} issuer(s)",
                    crate::VERSION,
                    crate::COMMIT,
                    compiled.jwks.len(),
                    compiled.inline_keys.len(),
                    compiled.issuers.len()
                ),
            );
            Some(Rc::new(RefCell::new(Worker::new(compiled, host.shared()))))
        }
        Err(message) => {
            host.log(LogLevel::Critical, &message);
            None
        }
    }
}

/// The worker's turn (every `TICK`): start fetches, move waiting requests on, publish metrics.
pub fn tick(host: &dyn Host, worker: &SharedWorker) {
    turn(host, worker);
    super::metrics::flush(host);
}

/// A fetch's answer (always to the root context, which made every call).
pub fn answer(host: &dyn Host, worker: &SharedWorker, token: u32, num_headers: usize, body_size: usize) {
    let answer = host.call_answer(num_headers, body_size);
    let taken = match worker.try_borrow_mut() {
        Ok(mut w) => w.take_answer(host, token, &answer, host.now_ms()),
        Err(_) => false,
    };
    if taken {
        turn(host, worker);
    }
}

fn turn(host: &dyn Host, worker: &SharedWorker) {
    let now_ms = host.now_ms();
    let ready = match worker.try_borrow_mut() {
        Ok(mut w) => {
            w.start_fetches(host, now_ms);
            w.ready(host, now_ms)
        }
        Err(_) => return,
    };
    move_on(host, worker, ready, now_ms);
}
