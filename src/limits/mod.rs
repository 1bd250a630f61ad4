//! Rate limits at the edge: LiteLLM's `rpm_limit`, `tpm_limit` and `max_parallel_requests` of
//! the records a request acts for (its team, user, end user, and the team's per-model limits),
//! counted per Envoy process in shared data as LiteLLM's limiter (`parallel_request_limiter_v3`)
//! counts them per proxy instance.
//!
//! - this module: which counters a request is counted in ([`scopes`]), and how a refusal and
//!   the `x-ratelimit-*` answer headers read;
//! - [`counters`]: the counters themselves, one shared-data value per bucket of scopes, and the
//!   three operations on them (admit, refund, settle);
//! - [`usage`]: the tokens an answer used, read from its `usage` as the bytes pass.
//!
//! The request's order: authorization admits → [`counters::Bucket::admit`] in every scope (all
//! or none: a refusal in one scope refunds the others) → the answer's headers get the
//! remaining counts → its body is read for `usage` → at the end of the stream (complete, reset
//! or cut) the tokens are added and the parallel slot is given back
//! ([`counters::Bucket::settle`]).

pub mod counters;
pub mod usage;

use crate::records::{EndUser, Team, User};

/// LiteLLM's default window (`LITELLM_RATE_LIMIT_WINDOW_SIZE`, seconds).
pub const DEFAULT_WINDOW_SECONDS: u64 = 60;
/// A parallel slot held longer than this is taken for leaked and no longer counted
/// (LiteLLM's `PARALLEL_REQUEST_SLOT_TTL_SECONDS`): a VM that died mid-request cannot hold
/// a slot forever.
pub const SLOT_TTL_SECONDS: u64 = 3600;

/// What is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Requests,
    Tokens,
    Parallel,
}

impl Dimension {
    /// LiteLLM's `rate_limit_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::Tokens => "tokens",
            Dimension::Parallel => "max_parallel_requests",
        }
    }
}

/// One thing counted and its limits (LiteLLM's rate-limit descriptor): `key` is LiteLLM's
/// descriptor key (`team`, `user`, `end_user`, `model_per_team`), `value` the id counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub key: &'static str,
    pub value: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub parallel: Option<u64>,
}

impl Scope {
    /// The counter's name in its bucket.
    pub fn counter(&self) -> String {
        format!("{}:{}", self.key, self.value)
    }

    fn limited(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.parallel.is_some()
    }
}

/// What the request acts for, as authorization found it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subjects<'a> {
    pub team: Option<&'a Team>,
    /// Not given for an admin: LiteLLM applies no user limits to the admin path.
    pub user: Option<&'a User>,
    pub user_id: Option<&'a str>,
    pub end_user: Option<&'a EndUser>,
    /// The requested model, for the team's `metadata.model_rpm_limit` / `model_tpm_limit`.
    pub model: Option<&'a str>,
}

/// The scopes a request is counted in, in LiteLLM's order (user, team, the user's membership
/// of the team, end user, per-model team limits). `max_parallel_requests` of a user or team record is enforced too: LiteLLM
/// reads it for virtual keys only (docs/compatibility.md).
pub fn scopes(subjects: Subjects) -> Vec<Scope> {
    let mut out = Vec::new();
    let mut push = |scope: Scope| {
        if scope.limited() {
            out.push(scope);
        }
    };
    if let (Some(user), Some(id)) = (subjects.user, subjects.user_id) {
        push(Scope { key: "user", value: id.to_string(), rpm: user.rpm_limit, tpm: user.tpm_limit, parallel: user.max_parallel_requests });
    }
    if let Some(team) = subjects.team {
        push(Scope {
            key: "team",
            value: team.team_id.clone(),
            rpm: team.rpm_limit,
            tpm: team.tpm_limit,
            parallel: team.max_parallel_requests,
        });
    }
    if let (Some(team), Some(id)) = (subjects.team, subjects.user_id) {
        if let Some(member) = team.team_memberships.iter().find(|m| m.user_id == id) {
            let value = format!("{}:{id}", team.team_id);
            push(Scope { key: "team_member", value, rpm: member.rpm_limit(), tpm: member.tpm_limit(), parallel: None });
        }
    }
    if let Some(end_user) = subjects.end_user {
        push(Scope { key: "end_user", value: end_user.user_id.clone(), rpm: end_user.rpm_limit, tpm: end_user.tpm_limit, parallel: None });
    }
    if let (Some(team), Some(model)) = (subjects.team, subjects.model) {
        let per_model = |field: &str| team.metadata.get(field).and_then(|m| m.get(model)).and_then(serde_json::Value::as_u64);
        push(Scope {
            key: "model_per_team",
            value: format!("{}:{model}", team.team_id),
            rpm: per_model("model_rpm_limit"),
            tpm: per_model("model_tpm_limit"),
            parallel: None,
        });
    }
    out
}

/// How much of one limit is left, for the `x-ratelimit-*` answer headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub key: &'static str,
    pub dimension: Dimension,
    pub limit: u64,
    pub remaining: u64,
}

impl Status {
    /// LiteLLM's headers: `x-ratelimit-{key}-remaining-{type}` and `x-ratelimit-{key}-limit-{type}`.
    pub fn headers(&self) -> [(String, String); 2] {
        let prefix = format!("x-ratelimit-{}", self.key);
        let kind = self.dimension.as_str();
        [
            (format!("{prefix}-remaining-{kind}"), self.remaining.to_string()),
            (format!("{prefix}-limit-{kind}"), self.limit.to_string()),
        ]
    }
}

/// A request over one of its limits (LiteLLM's 429).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Over {
    pub key: &'static str,
    pub value: String,
    pub dimension: Dimension,
    pub limit: u64,
    pub remaining: u64,
    /// When the counter starts again (epoch seconds): the window's end; for parallel requests,
    /// a second from now (a slot frees when any request ends).
    pub reset_at: u64,
    pub now: u64,
}

impl Over {
    /// LiteLLM's text (`_handle_rate_limit_error`).
    pub fn message(&self) -> String {
        format!(
            "Rate limit exceeded for {}: {}. Limit type: {}. Current limit: {}, Remaining: {}. Limit resets at: {}",
            self.key,
            self.value,
            self.dimension.as_str(),
            self.limit,
            self.remaining,
            utc(self.reset_at)
        )
    }

    pub fn retry_after(&self) -> u64 {
        self.reset_at.saturating_sub(self.now).max(1)
    }

    /// LiteLLM's 429 headers besides `retry-after`: `rate_limit_type` and `reset_at`.
    pub fn reset_at_text(&self) -> String {
        utc(self.reset_at)
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` of epoch seconds (the civil-from-days algorithm of
/// H. Hinnant's `chrono`-compatible date library, proleptic Gregorian).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn utc_matches_pythons_strftime() {
        // datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        for (t, want) in [
            (0, "1970-01-01 00:00:00 UTC"),
            (951_782_400, "2000-02-29 00:00:00 UTC"),
            (1_796_214_659, "2026-12-02 12:30:59 UTC"),
            (4_107_542_399, "2100-02-28 23:59:59 UTC"),
        ] {
            assert_eq!(utc(t), want, "{t}");
        }
    }

    #[test]
    fn litellms_429_text() {
        let over = Over { key: "team", value: "t1".into(), dimension: Dimension::Requests, limit: 2, remaining: 0, reset_at: 1_796_214_659, now: 1_796_214_600 };
        assert_eq!(
            over.message(),
            "Rate limit exceeded for team: t1. Limit type: requests. Current limit: 2, Remaining: 0. Limit resets at: 2026-12-02 12:30:59 UTC"
        );
        assert_eq!(over.retry_after(), 59);
        assert_eq!(Over { reset_at: 10, now: 10, ..over }.retry_after(), 1, "never 0");
    }

    #[test]
    fn scopes_in_litellms_order_only_where_a_limit_is_set() {
        let team = Team {
            team_id: "t".into(),
            rpm_limit: Some(5),
            metadata: json!({"model_rpm_limit": {"gpt-4o": 2}, "model_tpm_limit": {"other": 9}}),
            ..Team::default()
        };
        let user = User { user_id: "u".into(), tpm_limit: Some(100), max_parallel_requests: Some(1), ..User::default() };
        let end_user = EndUser { user_id: "e".into(), ..EndUser::default() };
        let all = scopes(Subjects { team: Some(&team), user: Some(&user), user_id: Some("u"), end_user: Some(&end_user), model: Some("gpt-4o") });
        let scope = |key, value: &str, rpm, tpm, parallel| Scope { key, value: value.into(), rpm, tpm, parallel };
        assert_eq!(
            all,
            vec![
                scope("user", "u", None, Some(100), Some(1)),
                scope("team", "t", Some(5), None, None),
                scope("model_per_team", "t:gpt-4o", Some(2), None, None)
            ],
            "the end user has no limit; the per-model tpm names another model"
        );
        let member = Team {
            team_memberships: vec![crate::records::TeamMembership {
                user_id: "u".into(),
                litellm_budget_table: Some(crate::records::MemberLimits { rpm_limit: Some(3), tpm_limit: None }),
            }],
            ..team.clone()
        };
        let with_member = scopes(Subjects { team: Some(&member), user_id: Some("u"), ..Subjects::default() });
        assert_eq!(with_member.get(1), Some(&scope("team_member", "t:u", Some(3), None, None)), "after the team, LiteLLM's order");
        let other = scopes(Subjects { team: Some(&member), user_id: Some("v"), ..Subjects::default() });
        assert!(other.iter().all(|s| s.key != "team_member"), "another user's row");
        let no_user = scopes(Subjects { team: Some(&team), user: None, user_id: Some("u"), model: Some("o"), ..Subjects::default() });
        assert_eq!(no_user.iter().map(|s| s.key).collect::<Vec<_>>(), vec!["team"], "admins: no user scope");
    }

    #[test]
    fn status_headers_are_litellms() {
        let s = Status { key: "team", dimension: Dimension::Parallel, limit: 3, remaining: 2 };
        assert_eq!(
            s.headers(),
            [
                ("x-ratelimit-team-remaining-max_parallel_requests".to_string(), "2".to_string()),
                ("x-ratelimit-team-limit-max_parallel_requests".to_string(), "3".to_string())
            ]
        );
    }
}
