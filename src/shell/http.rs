//! One request: strip spoofable identity headers, extract and parse the token, decide — or
//! pause until the keys are here. The decision itself is [`crate::authn::authenticate`].

use super::host::now_ms;
use super::worker::{forward_identity, on_fetch_response, pump, send_denial, SharedWorker};
use crate::authn::Decision;
use crate::error::AuthError;
use crate::extract::bearer_token;
use crate::identity::IDENTITY_HEADER_PREFIX;
use crate::jws;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

pub struct Request {
    context_id: u32,
    worker: Option<SharedWorker>,
}

impl Request {
    pub fn new(context_id: u32, worker: Option<SharedWorker>) -> Self {
        Request { context_id, worker }
    }

    fn deny(&self, error: &AuthError) -> Action {
        send_denial(error);
        Action::Pause
    }
}

impl Context for Request {
    // A JWKS fetch this request started (it was the first to need the keys) answers here.
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _: usize) {
        if let Some(worker) = &self.worker {
            on_fetch_response(worker, token, num_headers, body_size);
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(worker) = self.worker.clone() else {
            return self.deny(&AuthError::KeysUnavailable("filter is not configured".into()));
        };
        for (name, _) in self.get_http_request_headers() {
            if name.starts_with(IDENTITY_HEADER_PREFIX) {
                self.set_http_request_header(&name, None);
            }
        }
        let header = self.get_http_request_header("authorization");
        let token = match bearer_token(header.as_deref()) {
            Ok(token) => token,
            Err(e) => return self.deny(&e),
        };
        let parsed = match jws::parse(token) {
            Ok(parsed) => parsed,
            Err(e) => return self.deny(&e),
        };
        let now = now_ms();
        let decision = match worker.try_borrow_mut() {
            Ok(mut w) => match w.decide(&parsed, now) {
                Decision::NeedKeys => {
                    w.wait(self.context_id, parsed, now);
                    Decision::NeedKeys
                }
                other => other,
            },
            Err(_) => Decision::Deny(AuthError::KeysUnavailable("worker busy".into())),
        };
        match decision {
            Decision::Allow(identity) => {
                forward_identity(&identity);
                Action::Continue
            }
            Decision::Deny(e) => self.deny(&e),
            Decision::NeedKeys => {
                // Start the fetch now rather than at the next tick.
                pump(&worker);
                Action::Pause
            }
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(worker) = &self.worker {
            if let Ok(mut w) = worker.try_borrow_mut() {
                w.forget(self.context_id);
            }
        }
    }
}
