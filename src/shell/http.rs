//! The request context: one per request, a thin adapter from Envoy's callbacks to
//! [`super::request`].

use super::host::ProxyWasm;
use super::metrics::Labels;
use super::request;
use super::worker::SharedWorker;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct Request {
    context_id: u32,
    host: Rc<ProxyWasm>,
    worker: Option<SharedWorker>,
}

impl Request {
    pub fn new(context_id: u32, host: Rc<ProxyWasm>, worker: Option<SharedWorker>) -> Self {
        Request { context_id, host, worker }
    }
}

// Requests dispatch nothing (fetches are the root context's), so no call responses arrive here.
impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        match &self.worker {
            Some(worker) => request::on_headers(&*self.host, worker, self.context_id, end_of_stream),
            None => request::not_ready(&*self.host, "filter is not configured", Labels::UNREAD),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &self.worker {
            Some(worker) => request::on_body(&*self.host, worker, self.context_id, body_size, end_of_stream),
            None => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if let Some(worker) = &self.worker {
            request::on_response_headers(&*self.host, worker, self.context_id, end_of_stream);
        }
        Action::Continue
    }

    // Only a model list the caller's models limit is buffered and changed; any other answer
    // is passed on chunk by chunk, read when a limit counts its tokens.
    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &self.worker {
            Some(worker) => request::on_response_body(&*self.host, worker, self.context_id, body_size, end_of_stream),
            None => Action::Continue,
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(worker) = &self.worker {
            request::on_done(&*self.host, worker, self.context_id);
        }
    }
}
