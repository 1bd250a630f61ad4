//! The team a token acts for: the object id of a `team` token (LiteLLM loads and checks it like
//! any team), else the team id claim (or `team_id_default`) — the single-team path — else the
//! groups path: the first team of `team_ids_jwt_field` (sorted) that may use the requested
//! model on this route (LiteLLM's `find_team_with_model_access`, newest).

use super::{forbidden, step, Lookups, Policy, Request, Step};
use crate::authz::claim_path::ClaimPath;
use crate::authz::model_access::can_call_model;
use crate::error::AuthError;
use crate::records::{Kind, Record, RecordKey, Team};
use crate::store::records::RecordLookup;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::rc::Rc;

/// The team id a decision goes on with, and its record (when records are configured).
pub(super) type Selected = (Option<String>, Option<Rc<Record>>);

/// LiteLLM's refusal of a team id no record has (the seed's 401 text, docs/compatibility.md).
pub(super) fn team_not_found(id: &str) -> AuthError {
    AuthError::Denied(format!("Team doesn't exist in db. Team={id}. Create team via `/team/new` call."))
}

/// LiteLLM's text when `team_id_jwt_field` is set and the token has no team (newest: it names
/// the alias field too, always `None` here, and hints at indexing syntax it does not read).
fn no_team_found(field: &str) -> String {
    let hint = match field.rsplit_once('.') {
        Some((base, last)) if !last.is_empty() && last.chars().all(|c| c.is_ascii_digit()) => format!(
            " Hint: dot-notation array indexing (e.g. '{field}') is not supported. Use '{base}' instead — LiteLLM \
             automatically uses the first element when the field value is a list."
        ),
        Some(_) => String::new(),
        None => match field.strip_suffix(']').and_then(|f| f.split_once('[')) {
            Some((base, index))
                if !base.is_empty()
                    && base.chars().all(|c| c.is_alphanumeric() || c == '_')
                    && !index.is_empty()
                    && index.chars().all(|c| c.is_ascii_digit()) =>
            {
                format!(
                    " Hint: array indexing (e.g. '{field}') is not supported in team_id_jwt_field. Use '{base}' \
                     instead — LiteLLM automatically uses the first element when the field value is a list."
                )
            }
            _ => String::new(),
        },
    };
    format!("No team found in token. Checked team_id field '{field}' and team_alias field 'None'.{hint}")
}

impl Policy {
    pub(super) fn team(
        &self,
        claims: &Map<String, Value>,
        object_team: Option<String>,
        request: Request,
        records: &mut Lookups,
        upserts: &mut Vec<Record>,
    ) -> Result<Step<Selected>, AuthError> {
        if let Some(id) = object_team {
            // LiteLLM takes the id as the team and loads it only in `common_checks`: never
            // upserted, and an unknown one is refused after the user checks (see `decide`).
            let team = step!(self.object_team(&id, records)?);
            return Ok(Step::Got((Some(id), team)));
        }
        let team_id = self.team_id(claims);
        if let (None, Some(field)) = (&team_id, &self.team_id_jwt_field) {
            return Err(AuthError::Denied(no_team_found(field.as_str())));
        }
        if let Some(id) = team_id {
            let team = step!(self.single_team(&id, records, upserts)?);
            return Ok(Step::Got((Some(id), team)));
        }
        let Some(field) = &self.team_ids_jwt_field else { return Ok(Step::Got((None, None))) };
        let team = step!(self.find_team_with_model_access(field, claims, request, records)?);
        Ok(Step::Got((team.as_ref().map(|t| t.id().to_string()), team)))
    }

    /// The team an RBAC `team` token's object id names: its record, or none when unknown.
    fn object_team(&self, id: &str, records: &mut Lookups) -> Result<Step<Option<Rc<Record>>>, AuthError> {
        if !records.enabled {
            return Ok(Step::Got(None));
        }
        let key = RecordKey { kind: Kind::Team, id: id.to_string() };
        match records.lookup(&key) {
            RecordLookup::Found(r) => Ok(Step::Got(Some(r))),
            RecordLookup::NotFound => Ok(Step::Got(None)),
            RecordLookup::Pending => Ok(Step::Need(vec![key])),
            RecordLookup::Unavailable(why) => Err(AuthError::RecordsUnavailable(why)),
        }
    }

    /// The single team's record: unknown → LiteLLM's error, or a default team with
    /// `team_id_upsert`. Without records the id goes on alone.
    fn single_team(&self, id: &str, records: &mut Lookups, upserts: &mut Vec<Record>) -> Result<Step<Option<Rc<Record>>>, AuthError> {
        if !records.enabled {
            return Ok(Step::Got(None));
        }
        let key = RecordKey { kind: Kind::Team, id: id.to_string() };
        Ok(Step::Got(Some(match records.lookup(&key) {
            RecordLookup::Found(r) => r,
            RecordLookup::NotFound if self.team_id_upsert => {
                let r = Record::Team(Team { team_id: id.to_string(), ..Team::default() });
                upserts.push(r.clone());
                Rc::new(r)
            }
            RecordLookup::NotFound => return Err(team_not_found(id)),
            RecordLookup::Pending => return Ok(Step::Need(vec![key])),
            RecordLookup::Unavailable(why) => return Err(AuthError::RecordsUnavailable(why)),
        })))
    }

    /// LiteLLM's `find_team_with_model_access` (spec §7.5, newest: sorted, real model check).
    fn find_team_with_model_access(
        &self,
        field: &ClaimPath,
        claims: &Map<String, Value>,
        request: Request,
        records: &mut Lookups,
    ) -> Result<Step<Option<Rc<Record>>>, AuthError> {
        // Newest: a string claim is not a list of teams.
        let mut ids: Vec<String> = match field.lookup(claims) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            if self.enforce_team_based_model_access {
                return Err(forbidden("No teams found in token. `enforce_team_based_model_access` is set to True. Token must belong to a team.".into()));
            }
            return Ok(Step::Got(None));
        }
        if !records.enabled {
            return Ok(Step::Got(None));
        }
        let mut found = BTreeMap::new();
        let mut need = Vec::new();
        for id in &ids {
            let key = RecordKey { kind: Kind::Team, id: id.clone() };
            match records.lookup(&key) {
                RecordLookup::Found(r) => {
                    found.insert(id.clone(), r);
                }
                RecordLookup::Pending => need.push(key),
                // Unknown teams are skipped, as in LiteLLM. A team the source cannot answer for
                // is not: skipping it could select another team or none (fail open).
                RecordLookup::NotFound => {}
                RecordLookup::Unavailable(why) => return Err(AuthError::RecordsUnavailable(why)),
            }
        }
        if !need.is_empty() {
            return Ok(Step::Need(need));
        }
        // LiteLLM goes through every team and names the last one refused for the route.
        let mut model_ok_route_not = None;
        for id in &ids {
            let Some(record) = found.get(id) else { continue };
            let Record::Team(t) = record.as_ref() else { continue };
            if let Some(model) = request.model {
                if !can_call_model(model, &t.models, &t.model_aliases, &self.access_groups) {
                    continue;
                }
            }
            if !self.team_allowed_routes.matches(request.route) {
                model_ok_route_not = Some(id.clone());
                continue;
            }
            return Ok(Step::Got(Some(Rc::clone(record))));
        }
        match (request.model, model_ok_route_not) {
            (Some(model), Some(id)) => Err(forbidden(format!(
                "Team {id} can access model {model} but route {} is not in litellm_jwtauth.team_allowed_routes",
                request.route
            ))),
            (Some(model), None) => {
                let quoted: Vec<String> = ids.iter().map(|i| format!("'{i}'")).collect();
                Err(forbidden(format!(
                    "No team has access to the requested model: {model}. Checked teams={{{}}}. Check `/models` to see all available models.",
                    quoted.join(", ")
                )))
            }
            (None, _) => Ok(Step::Got(None)),
        }
    }
}
