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

impl Policy {
    pub(super) fn team(
        &self,
        claims: &Map<String, Value>,
        object_team: Option<String>,
        request: Request,
        records: &mut Lookups,
        upserts: &mut Vec<Record>,
    ) -> Result<Step<Selected>, AuthError> {
        let team_id = match object_team {
            Some(id) => Some(id),
            None => {
                let id = self.team_id(claims);
                if let (None, Some(field)) = (&id, &self.team_id_jwt_field) {
                    return Err(AuthError::Denied(format!(
                        "No team id found in token. Checked team_id field '{}'",
                        field.as_str()
                    )));
                }
                id
            }
        };
        if let Some(id) = team_id {
            let team = step!(self.single_team(&id, records, upserts)?);
            return Ok(Step::Got((Some(id), team)));
        }
        let Some(field) = &self.team_ids_jwt_field else { return Ok(Step::Got((None, None))) };
        let team = step!(self.find_team_with_model_access(field, claims, request, records)?);
        Ok(Step::Got((team.as_ref().map(|t| t.id().to_string()), team)))
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
            RecordLookup::NotFound => {
                return Err(AuthError::Denied(format!(
                    "Team doesn't exist in db. Team={id}. Create team via `/team/new` call."
                )))
            }
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
                model_ok_route_not = model_ok_route_not.or(Some(id.clone()));
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
