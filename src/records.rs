//! Team, user, organization and end-user records (LiteLLM's `LiteLLM_TeamTable`, `…UserTable`,
//! `…OrganizationTable`, `…EndUserTable`, reduced to what authorization reads), and how they are
//! read from the configuration, LiteLLM's management API or a plain JSON service.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The kinds of record, with their shared-data key segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Team,
    User,
    Org,
    EndUser,
    /// A user looked up by its `sso_user_id` (the token's user id): LiteLLM's first fallback
    /// when no user has the token's user id (`_get_fuzzy_user_object`).
    UserSso,
    /// A user looked up by its email (lower-cased): LiteLLM's next fallback.
    UserEmail,
    /// The teams whose `team_alias` is the id (`team_alias_jwt_field`, the team header).
    TeamAlias,
    /// The organizations whose `organization_alias` is the id (`org_alias_jwt_field`).
    OrgAlias,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Team => "team",
            Kind::User => "user",
            Kind::Org => "org",
            Kind::EndUser => "end_user",
            Kind::UserSso => "user_sso",
            Kind::UserEmail => "user_email",
            Kind::TeamAlias => "team_alias",
            Kind::OrgAlias => "org_alias",
        }
    }
}

/// Which record a decision needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    pub kind: Kind,
    pub id: String,
}

/// The budget in the joined `litellm_budget_table` (LiteLLM keeps budgets on the row or
/// there). A number, or a numeric string as pydantic reads it; anything else makes the record
/// unreadable — ignoring a budget would admit an over-budget caller.
fn joined_budget(v: &Value) -> Result<Option<f64>, String> {
    match v.get("litellm_budget_table").and_then(|b| b.get("max_budget")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| format!("litellm_budget_table.max_budget {s:?} is not a number")),
        Some(_) => Err("litellm_budget_table.max_budget is not a number".into()),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Team {
    pub team_id: String,
    pub team_alias: Option<String>,
    pub models: Vec<String>,
    pub blocked: bool,
    pub max_budget: Option<f64>,
    pub spend: f64,
    pub organization_id: Option<String>,
    pub tpm_limit: Option<u64>,
    pub rpm_limit: Option<u64>,
    /// Requests of the team in flight at once (enforced per Envoy process; LiteLLM reads it
    /// for virtual keys only).
    pub max_parallel_requests: Option<u64>,
    /// Also carries `model_rpm_limit` / `model_tpm_limit` (`{model: limit}`), LiteLLM's
    /// per-model team limits.
    pub metadata: Value,
    /// Team model aliases: requested name → deployment name.
    pub model_aliases: BTreeMap<String, String>,
    /// The members' own limits (LiteLLM's `LiteLLM_TeamMembership` rows, which `/team/info`
    /// answers next to `team_info`).
    pub team_memberships: Vec<TeamMembership>,
}

/// One member's row of a team, as LiteLLM writes it: its limits are in its
/// `litellm_budget_table` (LiteLLM's `safe_get_team_member_rpm_limit` / `…_tpm_limit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TeamMembership {
    pub user_id: String,
    pub litellm_budget_table: Option<MemberLimits>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MemberLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<u64>,
}

impl TeamMembership {
    pub fn rpm_limit(&self) -> Option<u64> {
        self.litellm_budget_table.as_ref().and_then(|b| b.rpm_limit)
    }
    pub fn tpm_limit(&self) -> Option<u64> {
        self.litellm_budget_table.as_ref().and_then(|b| b.tpm_limit)
    }
}

/// The members of a membership row read here (a static row may have no others; the rest of a
/// source's row is ignored).
const MEMBERSHIP_FIELDS: &[&str] = &["user_id", "litellm_budget_table"];

/// `team_memberships` as LiteLLM writes them: each row's limits in its `litellm_budget_table`.
/// A row without a `user_id`, or with limits that are not non-negative integers, makes the team
/// unreadable — ignoring it would lift a member's limit.
fn memberships(v: &Value) -> Result<Vec<TeamMembership>, String> {
    let rows = match v.get("team_memberships") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(rows)) => rows,
        Some(_) => return Err("team_memberships is not a list".into()),
    };
    rows.iter()
        .map(|row| {
            let user_id = row.get("user_id").and_then(Value::as_str).ok_or("a team_memberships row has no user_id")?;
            let [tpm, rpm, _] = joined_limits(row).map_err(|e| format!("team_memberships ({user_id}): {e}"))?;
            let limits = (tpm.is_some() || rpm.is_some()).then_some(MemberLimits { tpm_limit: tpm, rpm_limit: rpm });
            Ok(TeamMembership { user_id: user_id.to_string(), litellm_budget_table: limits })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct User {
    pub user_id: String,
    pub user_email: Option<String>,
    pub models: Vec<String>,
    pub max_budget: Option<f64>,
    pub spend: f64,
    pub user_role: Option<String>,
    /// The id the user's SSO login gave it, when it differs from `user_id`.
    pub sso_user_id: Option<String>,
    /// The teams the user is a member of (LiteLLM's `LiteLLM_UserTable.teams`): a user with
    /// exactly one is acting for it when the token selects no team, and
    /// `fallback_to_db_teams` picks among them.
    pub teams: Vec<String>,
    /// Carried for `scim_active`: a user deactivated through SCIM (`false`) is refused.
    pub metadata: Value,
    pub tpm_limit: Option<u64>,
    pub rpm_limit: Option<u64>,
    pub max_parallel_requests: Option<u64>,
}

impl User {
    /// LiteLLM refuses a user whose `metadata.scim_active` is `false` (deactivated by the IdP).
    pub fn scim_deactivated(&self) -> bool {
        self.metadata.get("scim_active") == Some(&Value::Bool(false))
    }
}

/// LiteLLM's `LitellmUserRoles` values: what a user record's `user_role` may say.
pub const USER_ROLES: &[&str] =
    &["proxy_admin", "proxy_admin_viewer", "org_admin", "internal_user", "internal_user_viewer", "team", "customer"];

/// A user found by another key than its id: its `sso_user_id` ([`Kind::UserSso`], as is) or
/// its email ([`Kind::UserEmail`], lower-cased: LiteLLM compares emails case-insensitively).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserAlias {
    pub alias: String,
    pub user: User,
}

impl UserAlias {
    /// The `kind` key of a user record (`UserSso` or `UserEmail`), if it has one.
    pub fn of(kind: Kind, user: &User) -> Option<Record> {
        let (field, record): (_, fn(UserAlias) -> Record) = match kind {
            Kind::UserSso => (user.sso_user_id.clone(), Record::UserBySso),
            Kind::UserEmail => (user.user_email.as_deref().map(str::to_lowercase), Record::UserByEmail),
            _ => return None,
        };
        let alias = field.filter(|a| !a.is_empty())?;
        Some(record(UserAlias { alias, user: user.clone() }))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Org {
    pub organization_id: String,
    pub organization_alias: Option<String>,
    pub models: Vec<String>,
    pub max_budget: Option<f64>,
    pub spend: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EndUser {
    pub user_id: String,
    pub blocked: bool,
    pub max_budget: Option<f64>,
    pub spend: f64,
    /// LiteLLM keeps an end user's limits in its `litellm_budget_table`.
    pub tpm_limit: Option<u64>,
    pub rpm_limit: Option<u64>,
}

/// The records an alias names (LiteLLM looks teams and organizations up by alias): all of
/// them, so that an alias two records share is known to be ambiguous, never taken for one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aliased<T> {
    pub alias: String,
    pub matches: Vec<T>,
}

impl<T> Aliased<T> {
    /// The one record the alias names; `Err(n)` when it names `n != 1`.
    pub fn unique(&self) -> Result<&T, usize> {
        match self.matches.as_slice() {
            [only] => Ok(only),
            all => Err(all.len()),
        }
    }
}

/// Most teams (organizations) one alias search page returns (`/v2/team/list` `page_size`).
pub const ALIAS_LIST_PAGE: usize = 100;

/// One record of any kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Team(Team),
    User(User),
    Org(Org),
    EndUser(EndUser),
    UserBySso(UserAlias),
    UserByEmail(UserAlias),
    TeamByAlias(Aliased<Team>),
    OrgByAlias(Aliased<Org>),
}

/// A user row. Its `user_role` must be one of LiteLLM's roles: the role is forwarded and read
/// by the rules, and LiteLLM itself fails on any other value.
fn user(v: &Value, budget: Option<f64>) -> Result<User, String> {
    let mut u: User = parse_as(v)?;
    u.max_budget = u.max_budget.or(budget);
    if let Some(role) = u.user_role.as_deref().filter(|r| !USER_ROLES.contains(r)) {
        return Err(format!("user_role {role:?} is not one of LiteLLM's roles ({})", USER_ROLES.join(", ")));
    }
    Ok(u)
}

fn parse_as<T: for<'de> Deserialize<'de>>(v: &Value) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("record has an unexpected shape: {e}"))
}

/// LiteLLM's joined tables that records read, and the members read from each.
const JOINED_TABLES: &[(&str, &[&str])] = &[
    ("litellm_budget_table", &["max_budget", "tpm_limit", "rpm_limit", "max_parallel_requests"]),
    ("litellm_model_table", &["model_aliases"]),
];

/// The limits in the joined `litellm_budget_table`, where LiteLLM keeps them for end users
/// (and may for the others): `(tpm, rpm, max_parallel_requests)`. A limit that is not a
/// non-negative integer makes the record unreadable — ignoring it would lift the limit.
fn joined_limits(v: &Value) -> Result<[Option<u64>; 3], String> {
    let mut out = [None; 3];
    let Some(table) = v.get("litellm_budget_table").filter(|t| !t.is_null()) else { return Ok(out) };
    for (slot, field) in out.iter_mut().zip(["tpm_limit", "rpm_limit", "max_parallel_requests"]) {
        *slot = match table.get(field) {
            None | Some(Value::Null) => None,
            Some(n) => Some(n.as_u64().ok_or_else(|| format!("litellm_budget_table.{field} is not a non-negative integer"))?),
        };
    }
    Ok(out)
}

/// The members a record of `kind` has: what serde reads, and the joined tables read for it
/// (budgets for every kind, model aliases for teams).
fn known_fields(kind: Kind) -> Vec<String> {
    let blank = match kind {
        Kind::Team => serde_json::to_value(Team::default()),
        Kind::User | Kind::UserSso | Kind::UserEmail => serde_json::to_value(User::default()),
        Kind::Org | Kind::OrgAlias => serde_json::to_value(Org::default()),
        Kind::EndUser => serde_json::to_value(EndUser::default()),
        Kind::TeamAlias => serde_json::to_value(Team::default()),
    };
    let mut names: Vec<String> = match blank {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    names.push("litellm_budget_table".into());
    if matches!(kind, Kind::Team | Kind::TeamAlias) {
        names.push("litellm_model_table".into());
    }
    names
}

impl Record {
    /// Parse a record written in the configuration: as [`Record::from_plain`], but a member this
    /// filter does not read is an error naming it — a misspelt `models` would otherwise leave
    /// the team unrestricted. (Answers from a record source keep tolerating LiteLLM's other
    /// columns.)
    /// Errors are `(member, what)`; `member` is empty when the whole record is at fault.
    pub fn from_static(kind: Kind, v: &Value) -> Result<Record, (String, String)> {
        let Some(members) = v.as_object() else { return Err((String::new(), "must be a JSON object".into())) };
        let known = known_fields(kind);
        for (name, value) in members {
            if !known.iter().any(|k| k == name) {
                return Err((name.clone(), format!("unknown field of a {} record (known: {})", kind.as_str(), known.join(", "))));
            }
            if name == "team_memberships" {
                for row in value.as_array().into_iter().flatten() {
                    let Some(row) = row.as_object() else { continue };
                    if let Some(other) = row.keys().find(|k| !MEMBERSHIP_FIELDS.contains(&k.as_str())) {
                        return Err((format!("team_memberships.{other}"), format!("unknown field (allowed: {})", MEMBERSHIP_FIELDS.join(", "))));
                    }
                    if let Some(other) = row.get("litellm_budget_table").and_then(Value::as_object).and_then(|t| {
                        t.keys().find(|k| !["tpm_limit", "rpm_limit"].contains(&k.as_str()))
                    }) {
                        return Err((format!("team_memberships.litellm_budget_table.{other}"), "unknown field (allowed: tpm_limit, rpm_limit)".into()));
                    }
                }
                continue;
            }
            let Some((_, inner)) = JOINED_TABLES.iter().find(|(t, _)| t == name) else { continue };
            match value {
                Value::Null => {}
                Value::Object(table) => {
                    if let Some(other) = table.keys().find(|k| !inner.contains(&k.as_str())) {
                        return Err((format!("{name}.{other}"), format!("unknown field (known: {})", inner.join(", "))));
                    }
                }
                _ => return Err((name.clone(), "must be an object".into())),
            }
        }
        Record::from_plain(kind, v).map_err(|e| (String::new(), e))
    }

    /// Parse a record as configured statically or served by a plain JSON source: the object
    /// itself, with LiteLLM's field names.
    pub fn from_plain(kind: Kind, v: &Value) -> Result<Record, String> {
        // serde would read a struct from a JSON array ("[]" → every field defaulted).
        if !v.is_object() {
            return Err("record is not a JSON object".into());
        }
        let budget = joined_budget(v)?;
        let [tpm, rpm, parallel] = joined_limits(v)?;
        Ok(match kind {
            Kind::Team => {
                let mut without_rows = v.clone();
                if let Some(m) = without_rows.as_object_mut() {
                    m.remove("team_memberships"); // LiteLLM's shape, read by `memberships`
                }
                let mut t: Team = parse_as(&without_rows)?;
                t.team_memberships = memberships(v)?;
                t.max_budget = t.max_budget.or(budget);
                (t.tpm_limit, t.rpm_limit) = (t.tpm_limit.or(tpm), t.rpm_limit.or(rpm));
                t.max_parallel_requests = t.max_parallel_requests.or(parallel);
                if t.model_aliases.is_empty() {
                    // LiteLLM nests team aliases under `litellm_model_table.model_aliases`.
                    if let Some(a) = v.get("litellm_model_table").and_then(|m| m.get("model_aliases")) {
                        t.model_aliases = parse_as(a).unwrap_or_default();
                    }
                }
                Record::Team(t)
            }
            Kind::User => {
                let mut u = user(v, budget)?;
                (u.tpm_limit, u.rpm_limit) = (u.tpm_limit.or(tpm), u.rpm_limit.or(rpm));
                u.max_parallel_requests = u.max_parallel_requests.or(parallel);
                Record::User(u)
            }
            Kind::UserSso | Kind::UserEmail => {
                let u = user(v, budget)?;
                UserAlias::of(kind, &u).ok_or_else(|| format!("user record has no {}", alias_field(kind)))?
            }
            Kind::Org => {
                let mut o: Org = parse_as(v)?;
                o.max_budget = o.max_budget.or(budget);
                Record::Org(o)
            }
            Kind::EndUser => {
                let mut e: EndUser = parse_as(v)?;
                e.max_budget = e.max_budget.or(budget);
                (e.tpm_limit, e.rpm_limit) = (e.tpm_limit.or(tpm), e.rpm_limit.or(rpm));
                Record::EndUser(e)
            }
            Kind::TeamAlias | Kind::OrgAlias => return Err("an alias answer is a list of records".into()),
        })
    }

    /// Parse a LiteLLM management API answer (`/team/info` → `team_info`, `/user/info` →
    /// `user_info`, `/organization/info` and `/customer/info` → the row itself).
    pub fn from_litellm(kind: Kind, body: &Value) -> Result<Record, String> {
        // `/team/info` and `/user/info` always wrap the row; the top level is not a row.
        let inner = match kind {
            Kind::Team => {
                // `/team/info` answers the members' rows next to the team's.
                let team = body.get("team_info").ok_or("LiteLLM answer has no team_info")?;
                return match (team, body.get("team_memberships")) {
                    (Value::Object(row), Some(rows)) => {
                        let mut row = row.clone();
                        row.insert("team_memberships".into(), rows.clone());
                        Record::from_plain(kind, &Value::Object(row))
                    }
                    (Value::Object(_), None) => Record::from_plain(kind, team),
                    _ => Err("record is not a JSON object".into()),
                };
            }
            Kind::User => body.get("user_info").ok_or("LiteLLM answer has no user_info")?,
            Kind::Org | Kind::EndUser | Kind::UserSso | Kind::UserEmail | Kind::TeamAlias | Kind::OrgAlias => body,
        };
        if !inner.is_object() {
            return Err("record is not a JSON object".into());
        }
        Record::from_plain(kind, inner)
    }

    /// A source's 200 answer for `key` → the record, or `None` when the answer says there is
    /// none (LiteLLM's `team_info: null`, or `null`). The record must be the one asked for: an
    /// answer naming another id (or none) is refused, never taken for the requested one.
    pub fn from_answer(litellm: bool, key: &RecordKey, body: &[u8]) -> Result<Option<Record>, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| format!("source answer is not JSON: {e}"))?;
        let inner_null = value.is_null()
            || match key.kind {
                Kind::Team => value.get("team_info").is_some_and(Value::is_null),
                Kind::User => value.get("user_info").is_some_and(Value::is_null),
                _ => false,
            };
        if inner_null {
            return Ok(None);
        }
        if litellm && matches!(key.kind, Kind::UserSso | Kind::UserEmail) {
            return user_from_list(key, &value);
        }
        if matches!(key.kind, Kind::TeamAlias | Kind::OrgAlias) {
            return aliased_from_list(key, &value);
        }
        let record = if litellm { Record::from_litellm(key.kind, &value)? } else { Record::from_plain(key.kind, &value)? };
        if record.id() != key.id {
            let shown: String = record.id().chars().filter(|c| !c.is_control()).take(64).collect();
            return Err(format!("source answered with {} {shown:?} when asked for another", key.kind.as_str()));
        }
        Ok(Some(record))
    }

    pub fn kind(&self) -> Kind {
        match self {
            Record::Team(_) => Kind::Team,
            Record::User(_) => Kind::User,
            Record::Org(_) => Kind::Org,
            Record::EndUser(_) => Kind::EndUser,
            Record::UserBySso(_) => Kind::UserSso,
            Record::UserByEmail(_) => Kind::UserEmail,
            Record::TeamByAlias(_) => Kind::TeamAlias,
            Record::OrgByAlias(_) => Kind::OrgAlias,
        }
    }

    /// The key this record is stored and looked up under.
    pub fn key(&self) -> RecordKey {
        RecordKey { kind: self.kind(), id: self.id().to_string() }
    }

    pub fn id(&self) -> &str {
        match self {
            Record::Team(t) => &t.team_id,
            Record::User(u) => &u.user_id,
            Record::Org(o) => &o.organization_id,
            Record::EndUser(e) => &e.user_id,
            Record::UserBySso(u) | Record::UserByEmail(u) => &u.alias,
            Record::TeamByAlias(a) => &a.alias,
            Record::OrgByAlias(a) => &a.alias,
        }
    }
}

/// Most users one `/user/list` page returns (`page_size` of the default path).
pub const USER_LIST_PAGE: usize = 100;

/// The user member a user alias kind is looked up by.
fn alias_field(kind: Kind) -> &'static str {
    match kind {
        Kind::UserSso => "sso_user_id",
        _ => "user_email",
    }
}

/// LiteLLM's `/user/list?sso_user_ids=…` or `?user_email=…` answer (`{"users": [...]}`; the
/// email filter is a case-insensitive *partial* match) → the first user whose `sso_user_id` or
/// email is the one asked for. A full page without it could hide it on a later page: that is
/// an error, never "no such user".
fn user_from_list(key: &RecordKey, body: &Value) -> Result<Option<Record>, String> {
    let users = body.get("users").and_then(Value::as_array).ok_or("LiteLLM answer has no users list")?;
    let field = alias_field(key.kind);
    for row in users {
        let value = row.get(field).and_then(Value::as_str);
        let value = if key.kind == Kind::UserEmail { value.map(str::to_lowercase) } else { value.map(str::to_owned) };
        if value.as_deref() == Some(key.id.as_str()) {
            return Record::from_plain(key.kind, row).map(Some);
        }
    }
    if users.len() >= USER_LIST_PAGE {
        return Err(format!("more than {USER_LIST_PAGE} users partly match the {field}; none exactly on the first page"));
    }
    Ok(None)
}

/// An alias search's answer → the records whose alias is exactly the one asked for (LiteLLM's
/// `where team_alias = …`; its list endpoints match partially). LiteLLM's `/v2/team/list`
/// answers `{"teams": [...]}`, `/organization/list` a bare list; a plain source may answer
/// with either, or with the one record. No exact match is "no such alias" — unless the page
/// was full, which could hide one or a second: then an error.
fn aliased_from_list(key: &RecordKey, body: &Value) -> Result<Option<Record>, String> {
    let (base, field, list_member) = match key.kind {
        Kind::TeamAlias => (Kind::Team, "team_alias", "teams"),
        _ => (Kind::Org, "organization_alias", "organizations"),
    };
    let rows: Vec<&Value> = match body {
        Value::Array(rows) => rows.iter().collect(),
        Value::Object(m) => match m.get(list_member) {
            Some(Value::Array(rows)) => rows.iter().collect(),
            Some(_) => return Err(format!("answer's {list_member} is not a list")),
            None => vec![body],
        },
        _ => return Err("alias answer is neither a list nor a record".into()),
    };
    let full = rows.len() >= ALIAS_LIST_PAGE;
    let mut teams = Vec::new();
    let mut orgs = Vec::new();
    for row in rows.into_iter().filter(|r| r.get(field).and_then(Value::as_str) == Some(key.id.as_str())) {
        match Record::from_plain(base, row)? {
            Record::Team(t) => teams.push(t),
            Record::Org(o) => orgs.push(o),
            _ => {}
        }
    }
    if full {
        // A later page could hold the record, or a second one with the same alias.
        return Err(format!("{ALIAS_LIST_PAGE} or more records partly match the {field}: the first page cannot tell"));
    }
    let alias = key.id.clone();
    Ok(match (teams.is_empty() && orgs.is_empty(), base) {
        (true, _) => None,
        (false, Kind::Team) => Some(Record::TeamByAlias(Aliased { alias, matches: teams })),
        (false, _) => Some(Record::OrgByAlias(Aliased { alias, matches: orgs })),
    })
}

#[cfg(test)]
mod tests {

    fn team_key(id: &str) -> RecordKey {
        RecordKey { kind: Kind::Team, id: id.into() }
    }

    #[test]
    fn an_answer_must_be_the_record_asked_for() {
        let key = team_key("t1");
        let ok = serde_json::json!({"team_id": "t1", "team_info": {"team_id": "t1"}}).to_string();
        assert_eq!(Record::from_answer(true, &key, ok.as_bytes()).unwrap().unwrap().id(), "t1");
        for (litellm, body) in [
            (true, serde_json::json!({"team_info": {"team_id": "t2"}})),
            (true, serde_json::json!({"team_info": {"models": []}})),
            (false, serde_json::json!({"team_id": "t2"})),
            (false, serde_json::json!({})),
        ] {
            let e = Record::from_answer(litellm, &key, body.to_string().as_bytes()).unwrap_err();
            assert!(e.contains("when asked for another"), "{body}: {e}");
        }
        assert_eq!(Record::from_answer(true, &key, br#"{"team_info": null}"#).unwrap(), None);
        assert_eq!(Record::from_answer(false, &key, b"null").unwrap(), None);
    }

    #[test]
    fn an_answer_that_is_not_an_object_is_refused() {
        for body in [&b"[]"[..], b"[{\"team_id\": \"t1\"}]", b"\"t1\"", b"5", b"<html>"] {
            assert!(Record::from_answer(false, &team_key("t1"), body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn joined_budget_reads_numbers_and_numeric_strings_and_refuses_the_rest() {
        let team = |budget: Value| Record::from_plain(Kind::Team, &serde_json::json!({"team_id": "t", "litellm_budget_table": {"max_budget": budget}}));
        let budget = |r: Record| match r { Record::Team(t) => t.max_budget, _ => None };
        assert_eq!(budget(team(serde_json::json!(2.5)).unwrap()), Some(2.5));
        assert_eq!(budget(team(serde_json::json!("2")).unwrap()), Some(2.0));
        assert_eq!(budget(team(Value::Null).unwrap()), None);
        for bad in [serde_json::json!("lots"), serde_json::json!(true), serde_json::json!("NaN"), serde_json::json!([1])] {
            assert!(team(bad.clone()).is_err(), "{bad}");
        }
    }

    use super::*;
    use serde_json::json;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn litellm_api_answers_are_unwrapped() {
        let body = json!({"team_id": "t1", "team_info": {"team_id": "t1", "team_alias": "Team One",
            "models": ["gpt-4o"], "blocked": true, "spend": 3.5, "max_budget": null,
            "litellm_budget_table": {"max_budget": 10.0}, "tpm_limit": 1000, "rpm_limit": 10,
            "litellm_model_table": {"model_aliases": {"fast": "gpt-4o-mini"}}, "members_with_roles": []},
            "keys": []});
        let Record::Team(t) = Record::from_litellm(Kind::Team, &body).unwrap() else { panic!() };
        assert_eq!(t.team_alias.as_deref(), Some("Team One"));
        assert!(t.blocked);
        assert_eq!(t.max_budget, Some(10.0));
        assert_eq!((t.tpm_limit, t.rpm_limit), (Some(1000), Some(10)));
        assert_eq!(t.model_aliases.get("fast").map(String::as_str), Some("gpt-4o-mini"));
        let user = json!({"user_id": "u1", "user_info": {"user_id": "u1", "user_email": "a@b", "spend": 1, "max_budget": 2, "user_role": "internal_user"}});
        let Record::User(u) = Record::from_litellm(Kind::User, &user).unwrap() else { panic!() };
        assert_eq!((u.spend, u.max_budget), (1.0, Some(2.0)));
        assert!(Record::from_litellm(Kind::Team, &json!({"team_info": "nope"})).is_err());
        assert!(Record::from_plain(Kind::Team, &json!({"team_id": "t", "models": "gpt-4o"})).is_err());
    }

    #[test]
    fn team_members_limits_come_from_the_rows_team_info_answers_next_to_the_team() {
        // `/team/info`'s shape: `team_memberships` beside `team_info` (LiteLLM_TeamMembership).
        let body = json!({"team_id": "t1", "team_info": {"team_id": "t1"}, "team_memberships": [
            {"user_id": "alice", "team_id": "t1", "spend": 0.5, "budget_id": "b1",
             "litellm_budget_table": {"budget_id": "b1", "rpm_limit": 5, "tpm_limit": null, "max_budget": 3.0}},
            {"user_id": "bob", "team_id": "t1", "litellm_budget_table": null}]});
        let Record::Team(t) = Record::from_litellm(Kind::Team, &body).unwrap() else { panic!() };
        let limits: Vec<(&str, Option<u64>, Option<u64>)> =
            t.team_memberships.iter().map(|m| (m.user_id.as_str(), m.rpm_limit(), m.tpm_limit())).collect();
        assert_eq!(limits, vec![("alice", Some(5), None), ("bob", None, None)]);
        let bad = json!({"team_info": {"team_id": "t1"}, "team_memberships": [{"user_id": "a", "litellm_budget_table": {"rpm_limit": "5"}}]});
        assert!(Record::from_litellm(Kind::Team, &bad).is_err(), "a limit that cannot be read would lift it");
        assert!(Record::from_plain(Kind::Team, &json!({"team_id": "t", "team_memberships": [{"rpm_limit": 1}]})).is_err(), "no user_id");
        // Static rows name only what is read: a misspelt limit is refused, naming it.
        let typo = json!({"team_id": "t", "team_memberships": [{"user_id": "a", "litellm_budget_table": {"rpm_limt": 1}}]});
        assert_eq!(Record::from_static(Kind::Team, &typo).unwrap_err().0, "team_memberships.litellm_budget_table.rpm_limt");
        let ok = json!({"team_id": "t", "team_memberships": [{"user_id": "a", "litellm_budget_table": {"rpm_limit": 1}}]});
        assert!(Record::from_static(Kind::Team, &ok).is_ok());
    }

    #[test]
    fn users_by_email_from_a_plain_source_or_litellms_user_list() {
        let key = RecordKey { kind: Kind::UserEmail, id: "svc@example.com".into() };
        let plain = json!({"user_id": "svc-1", "user_email": "Svc@Example.com", "max_budget": 5});
        let Some(Record::UserByEmail(found)) = Record::from_answer(false, &key, plain.to_string().as_bytes()).unwrap() else { panic!() };
        assert_eq!((found.alias.as_str(), found.user.user_id.as_str(), found.user.max_budget), ("svc@example.com", "svc-1", Some(5.0)));
        let other = json!({"user_id": "x", "user_email": "x@example.com"});
        assert!(Record::from_answer(false, &key, other.to_string().as_bytes()).is_err(), "another user's email");
        // /user/list matches partially: only the exact (case-insensitive) email is the user.
        let list = json!({"users": [{"user_id": "a", "user_email": "xsvc@example.com"}, {"user_id": "svc-1", "user_email": "SVC@example.com"}], "total": 2});
        let Some(Record::UserByEmail(found)) = Record::from_answer(true, &key, list.to_string().as_bytes()).unwrap() else { panic!() };
        assert_eq!(found.user.user_id, "svc-1");
        let none = json!({"users": [{"user_id": "a", "user_email": "xsvc@example.com"}]});
        assert_eq!(Record::from_answer(true, &key, none.to_string().as_bytes()).unwrap(), None);
        let full: Vec<Value> = (0..USER_LIST_PAGE).map(|i| json!({"user_id": format!("u{i}"), "user_email": format!("{i}svc@example.com")})).collect();
        let full = json!({"users": full});
        assert!(Record::from_answer(true, &key, full.to_string().as_bytes()).is_err(), "a full page could hide the user");
        assert!(Record::from_answer(true, &key, br#"{"detail": "x"}"#).is_err());
        // By SSO id: exact, case-sensitive.
        let sso = RecordKey { kind: Kind::UserSso, id: "Okta|42".into() };
        let list = json!({"users": [{"user_id": "a", "sso_user_id": "okta|42"}, {"user_id": "b", "sso_user_id": "Okta|42"}]});
        let Some(Record::UserBySso(found)) = Record::from_answer(true, &sso, list.to_string().as_bytes()).unwrap() else { panic!() };
        assert_eq!(found.user.user_id, "b");
    }

    #[test]
    fn alias_answers_keep_only_exact_matches_and_a_full_page_is_an_error() {
        let key = RecordKey { kind: Kind::TeamAlias, id: "Research".into() };
        // LiteLLM's /v2/team/list matches partially: only the exact alias counts.
        let list = json!({"teams": [{"team_id": "a", "team_alias": "Research (old)"}, {"team_id": "b", "team_alias": "Research", "models": ["gpt-4o"]}], "total": 2});
        let Some(Record::TeamByAlias(found)) = Record::from_answer(true, &key, list.to_string().as_bytes()).unwrap() else { panic!() };
        assert_eq!(found.unique().map(|t| t.team_id.as_str()), Ok("b"));
        let twins = json!({"teams": [{"team_id": "a", "team_alias": "Research"}, {"team_id": "b", "team_alias": "Research"}]});
        let Some(Record::TeamByAlias(found)) = Record::from_answer(true, &key, twins.to_string().as_bytes()).unwrap() else { panic!() };
        assert_eq!(found.unique().map(|t| t.team_id.clone()), Err(2), "a shared alias names neither");
        assert_eq!(Record::from_answer(true, &key, br#"{"teams": [{"team_id": "a", "team_alias": "research"}]}"#).unwrap(), None, "case matters, as in the DB");
        let full: Vec<Value> = (0..ALIAS_LIST_PAGE).map(|i| json!({"team_id": format!("t{i}"), "team_alias": format!("Research {i}")})).collect();
        assert!(Record::from_answer(true, &key, json!({"teams": full}).to_string().as_bytes()).is_err(), "a full page could hide a match");
        assert!(Record::from_answer(true, &key, br#"{"teams": "x"}"#).is_err());
        // Organizations: LiteLLM answers a bare list; a plain source may answer the one record.
        let org = RecordKey { kind: Kind::OrgAlias, id: "ACME".into() };
        let Some(Record::OrgByAlias(found)) = Record::from_answer(true, &org, br#"[{"organization_id": "acme", "organization_alias": "ACME"}]"#).unwrap() else { panic!() };
        assert_eq!(found.unique().map(|o| o.organization_id.as_str()), Ok("acme"));
        let Some(Record::OrgByAlias(found)) = Record::from_answer(false, &org, br#"{"organization_id": "acme", "organization_alias": "ACME"}"#).unwrap() else { panic!() };
        assert_eq!(found.alias, "ACME");
        assert_eq!(Record::from_answer(false, &org, br#"{"organization_id": "x", "organization_alias": "Other"}"#).unwrap(), None);
    }

    #[test]
    fn a_user_role_must_be_one_of_litellms() {
        assert!(Record::from_plain(Kind::User, &json!({"user_id": "u", "user_role": "internal_user_viewer"})).is_ok());
        let e = Record::from_plain(Kind::User, &json!({"user_id": "u", "user_role": "root"})).unwrap_err();
        assert!(e.contains("user_role \"root\""), "{e}");
    }

    #[test]
    fn records_round_trip_through_json() {
        let r = Record::Team(Team { team_id: "t".into(), models: s(&["a"]), ..Team::default() });
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), r);
        let u = User { user_id: "u".into(), user_email: Some("U@x.io".into()), ..User::default() };
        let r = UserAlias::of(Kind::UserEmail, &u).unwrap();
        assert_eq!(r.key(), RecordKey { kind: Kind::UserEmail, id: "u@x.io".into() });
        assert_eq!(UserAlias::of(Kind::UserSso, &u), None, "no sso_user_id");
        assert_eq!(serde_json::from_str::<Record>(&serde_json::to_string(&r).unwrap()).unwrap(), r);
    }
}
