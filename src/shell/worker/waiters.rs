//! Which waiting requests can move on now: their keys or records arrived (from this worker's
//! fetch or another worker's, through shared data), or their wait ran out.

use super::Worker;
use crate::authn::Decision;
use crate::error::{AuthError, Outage};
use crate::shell::flow::{Phase, Token};
use crate::shell::host::Host;
use crate::store::records::RecordLookup;

/// How long a request held for its body may go without any body callback (see
/// [`Phase::AwaitingBody`]).
pub const FIRST_BODY_CALLBACK_MS: u64 = 10_000;

/// A waiting request that can move on.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    /// Its token verified, or its records are known: authorize it (again).
    Advance,
    Deny(AuthError),
}

impl Worker {
    /// The waiting requests that can move on at `now_ms`, by context id. They stay in the wait
    /// list until they are moved on (`shell::request::move_on`).
    pub fn ready(&mut self, host: &dyn Host, now_ms: u64) -> Vec<(u32, Ready)> {
        if self.flows.is_empty() {
            return Vec::new();
        }
        let mut ids: Vec<u32> = self.flows.keys().copied().collect();
        ids.sort_unstable(); // oldest first: context ids grow
        let mut ready = Vec::new();
        for id in ids {
            let Some(phase) = self.flows.get(&id).map(|f| f.phase.clone()) else { continue };
            let outcome = match phase {
                Phase::AwaitingKeys { until_ms } => match self.keys_for(host, id, now_ms) {
                    Some(outcome) => outcome,
                    None if now_ms < until_ms => continue,
                    None => Ready::Deny(AuthError::KeysUnavailable(Outage::transient("timed out waiting for the JWKS"))),
                },
                Phase::AwaitingUserInfo { until_ms } => match self.keys_for(host, id, now_ms) {
                    Some(outcome) => outcome,
                    None if now_ms < until_ms => continue,
                    None => Ready::Deny(AuthError::UserInfoUnavailable(Outage::transient("timed out waiting for the UserInfo endpoint"))),
                },
                Phase::AwaitingBody { first_callback_by_ms: Some(by) } if now_ms >= by => {
                    Ready::Deny(AuthError::EnvoyMisconfigured(
                        "the request body never reached the filter; set allow_on_headers_stop_iteration: true \
                         in the Wasm filter's config"
                            .into(),
                    ))
                }
                Phase::AwaitingBody { .. } => continue,
                Phase::AwaitingRecords { keys, until_ms } => {
                    let shared = host.shared();
                    let known = keys.iter().all(|k| self.records.lookup(shared, k, now_ms) != RecordLookup::Pending);
                    match (known, now_ms < until_ms) {
                        (true, _) => Ready::Advance,
                        (false, true) => continue,
                        (false, false) => {
                            Ready::Deny(AuthError::RecordsUnavailable(Outage::transient("timed out waiting for the team/user source")))
                        }
                    }
                }
            };
            ready.push((id, outcome));
        }
        ready
    }

    /// Decide a request's token again with the keys (or the UserInfo answer) known now; `None`
    /// while they are not.
    fn keys_for(&mut self, host: &dyn Host, id: u32, now_ms: u64) -> Option<Ready> {
        // Out of the map while the worker decides (the decision borrows the whole worker).
        let mut flow = self.flows.remove(&id)?;
        let outcome = match &flow.token {
            Token::Verified(_) => Some(Ready::Advance),
            Token::Unverified { text, jws } => match self.authenticate(host, jws, now_ms) {
                Decision::Verified { keys_until_ms, trust } => {
                    // A clone of the parsed token, once, on the path that waited for keys.
                    let verified = self.remember(text, jws.clone(), trust, keys_until_ms);
                    flow.token = Token::Verified(verified);
                    Some(Ready::Advance)
                }
                Decision::Deny(e) => Some(Ready::Deny(e)),
                Decision::NeedKeys => None,
            },
            Token::Opaque { text, hash } => match self.userinfo_of(host, text, hash, now_ms) {
                Some(Ok(verified)) => {
                    flow.token = Token::Verified(verified);
                    Some(Ready::Advance)
                }
                Some(Err(e)) => Some(Ready::Deny(e)),
                None => None,
            },
        };
        self.flows.insert(id, flow);
        outcome
    }
}
