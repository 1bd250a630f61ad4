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
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Team => "team",
            Kind::User => "user",
            Kind::Org => "org",
            Kind::EndUser => "end_user",
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
    pub metadata: Value,
    /// Team model aliases: requested name → deployment name.
    pub model_aliases: BTreeMap<String, String>,
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
}

/// One record of any kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Team(Team),
    User(User),
    Org(Org),
    EndUser(EndUser),
}

fn parse_as<T: for<'de> Deserialize<'de>>(v: &Value) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("record has an unexpected shape: {e}"))
}

/// LiteLLM's joined tables that records read, and the members read from each.
const JOINED_TABLES: &[(&str, &[&str])] =
    &[("litellm_budget_table", &["max_budget"]), ("litellm_model_table", &["model_aliases"])];

/// The members a record of `kind` has: what serde reads, and the joined tables read for it
/// (budgets for every kind, model aliases for teams).
fn known_fields(kind: Kind) -> Vec<String> {
    let blank = match kind {
        Kind::Team => serde_json::to_value(Team::default()),
        Kind::User => serde_json::to_value(User::default()),
        Kind::Org => serde_json::to_value(Org::default()),
        Kind::EndUser => serde_json::to_value(EndUser::default()),
    };
    let mut names: Vec<String> = match blank {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    names.push("litellm_budget_table".into());
    if kind == Kind::Team {
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
        Ok(match kind {
            Kind::Team => {
                let mut t: Team = parse_as(v)?;
                t.max_budget = t.max_budget.or(budget);
                if t.model_aliases.is_empty() {
                    // LiteLLM nests team aliases under `litellm_model_table.model_aliases`.
                    if let Some(a) = v.get("litellm_model_table").and_then(|m| m.get("model_aliases")) {
                        t.model_aliases = parse_as(a).unwrap_or_default();
                    }
                }
                Record::Team(t)
            }
            Kind::User => {
                let mut u: User = parse_as(v)?;
                u.max_budget = u.max_budget.or(budget);
                Record::User(u)
            }
            Kind::Org => {
                let mut o: Org = parse_as(v)?;
                o.max_budget = o.max_budget.or(budget);
                Record::Org(o)
            }
            Kind::EndUser => {
                let mut e: EndUser = parse_as(v)?;
                e.max_budget = e.max_budget.or(budget);
                Record::EndUser(e)
            }
        })
    }

    /// Parse a LiteLLM management API answer (`/team/info` → `team_info`, `/user/info` →
    /// `user_info`, `/organization/info` and `/customer/info` → the row itself).
    pub fn from_litellm(kind: Kind, body: &Value) -> Result<Record, String> {
        // `/team/info` and `/user/info` always wrap the row; the top level is not a row.
        let inner = match kind {
            Kind::Team => body.get("team_info").ok_or("LiteLLM answer has no team_info")?,
            Kind::User => body.get("user_info").ok_or("LiteLLM answer has no user_info")?,
            Kind::Org | Kind::EndUser => body,
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
        }
    }
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
    fn records_round_trip_through_json() {
        let r = Record::Team(Team { team_id: "t".into(), models: s(&["a"]), ..Team::default() });
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), r);
    }
}
