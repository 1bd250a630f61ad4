//! Every metric the filter publishes, in one place. They are Envoy stats named
//! `wasmcustom.llm_jwt_auth.<name>` (in `/stats` and `/stats/prometheus`), shared by all
//! workers. Defined lazily, once per VM; a host that refuses a metric only loses that metric.
//!
//! Counters are added up in the worker and handed to Envoy on the root context's tick (every
//! 100 ms): a host call per request per counter would be a measurable part of the hot path.

use super::host::Host;
use crate::authn::trust::TrustId;
use crate::routes::group_label::RouteGroupLabel;
use proxy_wasm::types::MetricType;
use std::cell::RefCell;
use std::collections::HashMap;

/// The metrics, by name (without the `llm_jwt_auth.` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Requests let through after authentication and authorization.
    Allowed,
    /// Requests on public routes (no token needed).
    Public,
    /// Non-JWT API keys let through untouched (`api_keys: pass_through`).
    ApiKeyPassThrough,
    /// Requests refused, by stable reason (`denied.<reason>`; see `AuthError::reason`).
    Denied(&'static str),
    /// Denials let through because the filter runs in report (shadow) mode.
    ReportedNotEnforced,
    JwksFetchSuccess,
    JwksFetchFailure,
    TokenCacheHit,
    TokenCacheMiss,
    /// A record lookup answered from the store (found, or known not to exist).
    RecordStoreHit,
    /// A record lookup that needs a fetch first.
    RecordStoreMiss,
    RecordFetchSuccess,
    RecordFetchNotFound,
    RecordFetchFailure,
    /// UserInfo answers for opaque tokens: claims, the IdP's refusal, no usable answer.
    UserInfoFetchSuccess,
    UserInfoFetchRefused,
    UserInfoFetchFailure,
    /// Time to verify a token that was not in the cache, in microseconds (histogram).
    VerifyMicros,
    /// Fetches Envoy refused because the gateway's configuration is incomplete (a missing
    /// cluster); the critical log line names the cluster and the field.
    Misconfigured,
    /// Every decision once more, with what operators graph it by: `decisions.allowed` or
    /// `decisions.denied.reason.<reason>`, then `.route_group.<group>.issuer.<issuer>` (Envoy's
    /// `stats_tags` in envoy.yaml turn the parts into labels of one `decisions` series).
    Decision { denied: Option<&'static str>, labels: Labels },
}

/// What a decision is labelled with besides its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Labels {
    pub group: RouteGroupLabel,
    pub issuer: IssuerTag,
}

impl Labels {
    /// A request answered before its headers were read (the filter is not configured).
    pub const UNREAD: Labels = Labels { group: RouteGroupLabel::Other, issuer: IssuerTag::None };

    /// A request on this route group whose token did not authenticate (or has not yet).
    pub fn unverified(group: RouteGroupLabel) -> Labels {
        Labels { group, issuer: IssuerTag::None }
    }
}

/// Which trust authenticated the request's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssuerTag {
    /// No token authenticated (missing, malformed, refused before or by verification).
    None,
    /// The global keys (`public_key_url`, `public_keys`).
    Default,
    /// One of `issuers`, by its label's id in this VM's label table ([`issuer_label_id`]).
    Configured(usize),
}

impl IssuerTag {
    /// The tag of a verified token's trust; `label_ids[i]` is `issuers[i]`'s label id.
    pub fn of(trust: TrustId, label_ids: &[usize]) -> IssuerTag {
        match trust {
            TrustId::Global => IssuerTag::Default,
            TrustId::Issuer(i) => label_ids.get(i).map_or(IssuerTag::None, |id| IssuerTag::Configured(*id)),
        }
    }
}

impl Metric {
    pub fn name(self) -> String {
        let name = match self {
            Metric::Allowed => "requests_allowed",
            Metric::Public => "requests_public",
            Metric::ApiKeyPassThrough => "requests_api_key_pass_through",
            Metric::Denied(reason) => return format!("llm_jwt_auth.requests_denied.{reason}"),
            Metric::Decision { denied, labels } => return decision_name(denied, labels),
            Metric::ReportedNotEnforced => "requests_reported_not_enforced",
            Metric::JwksFetchSuccess => "jwks_fetch_success",
            Metric::JwksFetchFailure => "jwks_fetch_failure",
            Metric::TokenCacheHit => "token_cache_hit",
            Metric::TokenCacheMiss => "token_cache_miss",
            Metric::RecordStoreHit => "record_store_hit",
            Metric::RecordStoreMiss => "record_store_miss",
            Metric::RecordFetchSuccess => "record_fetch_success",
            Metric::RecordFetchNotFound => "record_fetch_not_found",
            Metric::RecordFetchFailure => "record_fetch_failure",
            Metric::UserInfoFetchSuccess => "userinfo_fetch_success",
            Metric::UserInfoFetchRefused => "userinfo_fetch_refused",
            Metric::UserInfoFetchFailure => "userinfo_fetch_failure",
            Metric::VerifyMicros => "verify_us",
            Metric::Misconfigured => "misconfigured",
        };
        format!("llm_jwt_auth.{name}")
    }

    fn kind(self) -> MetricType {
        match self {
            Metric::VerifyMicros => MetricType::Histogram,
            _ => MetricType::Counter,
        }
    }
}

fn decision_name(denied: Option<&str>, labels: Labels) -> String {
    let outcome = match denied {
        None => "allowed".to_string(),
        Some(reason) => format!("denied.reason.{reason}"),
    };
    let issuer = match labels.issuer {
        IssuerTag::None => "none".to_string(),
        IssuerTag::Default => "default".to_string(),
        IssuerTag::Configured(id) => ISSUER_LABELS.with(|l| l.try_borrow().ok().and_then(|l| l.get(id).cloned())).unwrap_or_else(|| "none".into()),
    };
    format!("llm_jwt_auth.decisions.{outcome}.route_group.{}.issuer.{issuer}", labels.group.label())
}

/// The id of an issuer label in this VM's table, added on first use. The table only grows
/// (by the distinct labels ever configured in the VM, a handful): every configuration that
/// shares the VM — several listeners with one `vm_id`, or the old and the new configuration
/// while a listener update drains — keeps meaning the same label by the same id.
pub fn issuer_label_id(label: &str) -> usize {
    ISSUER_LABELS.with(|l| {
        let Ok(mut l) = l.try_borrow_mut() else { return usize::MAX }; // never re-entered; "none" if it were
        match l.iter().position(|known| known == label) {
            Some(id) => id,
            None => {
                l.push(label.to_string());
                l.len() - 1
            }
        }
    })
}

thread_local! {
    static ISSUER_LABELS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static IDS: RefCell<HashMap<Metric, Option<u32>>> = RefCell::new(HashMap::new());
    /// Counts since the last flush. A few dozen metrics at most move per tick (the decision
    /// series add one per reason × route group × issuer seen), so a linear scan is still
    /// cheaper than hashing on the per-request path.
    static PENDING: RefCell<Vec<(Metric, u64)>> = const { RefCell::new(Vec::new()) };
    static SAMPLES: RefCell<Vec<(Metric, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Histogram samples kept between two flushes; beyond that, samples are dropped (the
/// histogram stays representative, memory stays bounded).
const MAX_SAMPLES_PER_FLUSH: usize = 2048;

fn id(host: &dyn Host, metric: Metric) -> Option<u32> {
    IDS.with(|ids| {
        let mut ids = ids.try_borrow_mut().ok()?;
        *ids.entry(metric).or_insert_with(|| host.define_metric(metric.kind(), &metric.name()))
    })
}

/// Count one event (published at the next [`flush`]).
pub fn count(metric: Metric) {
    PENDING.with(|pending| {
        if let Ok(mut pending) = pending.try_borrow_mut() {
            match pending.iter_mut().find(|(m, _)| *m == metric) {
                Some((_, n)) => *n += 1,
                None => pending.push((metric, 1)),
            }
        }
    });
}

/// Hand the counted events to Envoy.
pub fn flush(host: &dyn Host) {
    let counts: Vec<(Metric, u64)> = PENDING.with(|pending| match pending.try_borrow_mut() {
        Ok(mut pending) => std::mem::take(&mut *pending),
        Err(_) => Vec::new(),
    });
    for (metric, n) in counts {
        if let Some(id) = id(host, metric) {
            host.add_to_metric(id, metric.kind(), n);
        }
    }
    let samples: Vec<(Metric, u64)> = SAMPLES.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => std::mem::take(&mut *s),
        Err(_) => Vec::new(),
    });
    for (metric, value) in samples {
        if let Some(id) = id(host, metric) {
            host.add_to_metric(id, metric.kind(), value);
        }
    }
}

/// Record a value in a histogram (published at the next [`flush`]).
pub fn record(metric: Metric, value: u64) {
    SAMPLES.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.len() < MAX_SAMPLES_PER_FLUSH {
                s.push((metric, value));
            }
        }
    });
}

/// Forget metric ids and pending counts: each test's scripted host is a new Envoy.
#[cfg(test)]
pub fn reset() {
    IDS.with(|ids| ids.borrow_mut().clear());
    ISSUER_LABELS.with(|l| l.borrow_mut().clear());
    PENDING.with(|p| p.borrow_mut().clear());
    SAMPLES.with(|s| s.borrow_mut().clear());
}
