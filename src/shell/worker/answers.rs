//! What an admitted request's answer is subject to ([`Obligations`]), from admission to the end
//! of its stream: the rate-limit counts it holds, the `usage` read from its body, the model
//! list filtered to what the caller may call.

use crate::authz::model_list::ModelFilter;
use crate::authz::Obligations;
use crate::config::FilterConfig;
use crate::error::AuthError;
use crate::limits::usage::UsageScanner;
use crate::store::limits::{self, Admission, Refusal};
use crate::store::SharedData;

/// An admitted request whose answer the filter still has work with, until its stream ends.
#[derive(Debug, Default)]
pub struct Answering {
    /// What it holds in its rate-limit scopes.
    pub admission: Option<Admission>,
    /// Reads the answer's `usage`, when a scope limits tokens.
    pub usage: Option<UsageScanner>,
    /// The models its model list is filtered to.
    pub models: Option<ModelFilter>,
    /// The answer is a JSON model list being buffered, to be filtered at its end.
    pub rewrite: bool,
}

impl Answering {
    /// Whether the answer's body is read (its usage, or a model list): it must come
    /// uncompressed, so the client's `accept-encoding` is not passed on.
    pub fn reads_body(&self) -> bool {
        self.usage.is_some() || self.models.is_some()
    }
}

/// What a model list that cannot be read is replaced with: nothing is shown unchecked.
pub const EMPTY_MODEL_LIST: &[u8] = br#"{"object":"list","data":[]}"#;

/// Take on a request's obligations: count it in its rate-limit scopes (LiteLLM's limiter runs
/// after authentication, so a request refused for any other reason uses none of its quota).
/// `None`: its answer needs nothing. `slot_base`: this worker's slot ids (`None`: the counters
/// could not be set up, and a request with limits is refused rather than let through).
pub fn take_on(
    config: &FilterConfig,
    shared: &dyn SharedData,
    slot_base: Option<u64>,
    context_id: u32,
    obligations: Obligations,
    now_ms: u64,
) -> Result<Option<Answering>, AuthError> {
    let admission = match config.rate_limits.filter(|_| !obligations.limits.is_empty()) {
        None => None,
        Some(rl) => {
            let slot = slot_base.ok_or(Refusal::Unverifiable).map(|base| base | u64::from(context_id));
            match slot.and_then(|slot| limits::admit(shared, &obligations.limits, slot, now_ms / 1000, rl.window_s)) {
                Ok(admission) => Some(admission),
                Err(Refusal::Over(over)) => return Err(AuthError::RateLimited(Box::new(over))),
                Err(Refusal::Unverifiable) => return Err(AuthError::LimitsUnverifiable),
            }
        }
    };
    if admission.is_none() && obligations.models.is_none() {
        return Ok(None);
    }
    let usage = admission.as_ref().filter(|a| a.counts_tokens()).map(|_| UsageScanner::default());
    Ok(Some(Answering { admission, usage, models: obligations.models, rewrite: false }))
}

/// The stream ended (its last byte, a reset, the client gone): count the answer's tokens and
/// give back its parallel slots. `Err` only when the counters were too contended to update
/// (a held slot then expires by itself).
pub fn settle(config: &FilterConfig, shared: &dyn SharedData, done: Answering, now_ms: u64) -> Result<(), limits::Contended> {
    let (Some(admission), Some(rl)) = (done.admission, config.rate_limits) else { return Ok(()) };
    let tokens = done.usage.map_or(0, |u| u.usage().tokens(rl.tokens));
    limits::settle(shared, &admission, tokens, now_ms / 1000, rl.window_s)
}
