//! The team a token acts for, in newest LiteLLM's order: the team the `x-litellm-team-id`
//! header names (one of the token's teams, or under `fallback_to_db_teams` one of its user's),
//! else the object id of a `team` token (LiteLLM loads and checks it like any team), else the
//! team id claim (or `team_id_default`) — the single-team path — else the groups path: the first
//! team of `team_ids_jwt_field` (sorted) that may use the requested model on this route
//! (LiteLLM's `find_team_with_model_access`). Once the user is known, [`Policy::team_fallbacks`]
//! may still choose one of the user's teams.

use super::{forbidden, step, Lookups, Policy, Request, Step};
use crate::authz::claim_path::ClaimPath;
use crate::authz::model_access::can_call_model;
use crate::error::AuthError;
use crate::records::{Kind, Record, RecordKey, Team, User};
use crate::store::records::RecordLookup;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// The team id a decision goes on with, and its record (when records are configured).
pub(super) type Selected = (Option<String>, Option<Rc<Record>>);

/// The team chosen before the user is known, and what the later stages owe it.
#[derive(Default)]
pub(super) struct Selection {
    pub team_id: Option<String>,
    pub team: Option<Rc<Record>>,
    /// The header's value, when it named a team outside the token's (accepted under
    /// `fallback_to_db_teams` only if the user turns out to be a member).
    pub provisional_header: Option<String>,
    /// The token names no team and `fallback_to_db_teams` is on: the user's teams decide.
    pub db_fallback: bool,
}

/// What a team alias names.
enum AliasMatch {
    One(Rc<Record>),
    None,
    /// Several teams share it: it names none of them.
    Many,
}

/// The refusal of a header naming a team outside the token's (LiteLLM's text).
fn header_team_not_allowed(header: &str, allowed: &BTreeSet<String>) -> AuthError {
    let quoted: Vec<String> = allowed.iter().map(|i| format!("'{i}'")).collect();
    forbidden(format!(
        "x-litellm-team-id '{header}' does not resolve to a team id or a unique team alias in your JWT's allowed \
         teams. Allowed team ids: [{}]",
        quoted.join(", ")
    ))
}

/// The refusal of a header naming no team the user is a member of: the same for a team that
/// does not exist, so the answer reveals neither (LiteLLM's text).
fn header_team_not_a_membership(header: &str) -> AuthError {
    forbidden(format!(
        "x-litellm-team-id '{header}' does not resolve to a team id or a unique team alias among your team memberships."
    ))
}

/// LiteLLM's refusal of a team id no record has (the seed's 401 text, docs/compatibility.md).
pub(super) fn team_not_found(id: &str) -> AuthError {
    AuthError::Denied(format!("Team doesn't exist in db. Team={id}. Create team via `/team/new` call."))
}

/// LiteLLM's text when `team_id_jwt_field` (or `team_alias_jwt_field`) is set and the token has
/// no team (newest: it names both fields, and hints at indexing syntax it does not read).
fn no_team_found(field: &str, alias_field: &str) -> String {
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
    format!("No team found in token. Checked team_id field '{field}' and team_alias field '{alias_field}'.{hint}")
}

impl Policy {
    /// The team chosen from the token and the request (see the module doc).
    pub(super) fn team(
        &self,
        claims: &Map<String, Value>,
        object_team: Option<String>,
        request: Request,
        records: &mut Lookups,
        upserts: &mut Vec<Record>,
    ) -> Result<Step<Selection>, AuthError> {
        let groups = self.group_team_ids(claims);
        let alias = self.team_alias_jwt_field.as_ref().and_then(|f| f.string(claims)).filter(|a| !a.is_empty());
        // `team_id_default` stands in for a missing team id claim, but not for a team alias.
        let specific = match (&alias, self.has_team_claim(claims)) {
            (Some(_), false) => None,
            _ => self.team_id(claims),
        };
        // Only a token without any team claim (`team_id_default` is not one) falls back to
        // the user's teams; an RBAC `team` token already has its team.
        let db_fallback =
            self.fallback_to_db_teams && !self.has_team_claim(claims) && alias.is_none() && object_team.is_none();
        let mut allowed: BTreeSet<String> = groups.iter().cloned().collect();
        if let (Some(id), false) = (&specific, db_fallback) {
            allowed.insert(id.clone());
        }
        if let Some(header) = request.team_header.filter(|h| !h.is_empty()) {
            let header_db_fallback = self.fallback_to_db_teams && object_team.is_none();
            let mut selection = step!(self.header_team(header, &allowed, header_db_fallback, records, upserts)?);
            selection.db_fallback = db_fallback;
            return Ok(Step::Got(selection));
        }
        if let Some(id) = object_team {
            // LiteLLM takes the id as the team and loads it only in `common_checks`: never
            // upserted, and an unknown one is refused after the user checks (see `decide`).
            let team = step!(self.object_team(&id, records)?);
            return Ok(Step::Got(Selection { team_id: Some(id), team, ..Selection::default() }));
        }
        if db_fallback {
            return Ok(Step::Got(Selection { db_fallback, ..Selection::default() }));
        }
        match (&specific, &alias) {
            (Some(id), _) => {
                // With `team_claim_fallback`, an unknown claimed team leaves the choice to the
                // groups path and the fallbacks.
                if let Some(team) = step!(self.single_team(id, records, upserts)?) {
                    return Ok(Step::Got(Selection { team_id: Some(id.clone()), team, ..Selection::default() }));
                }
            }
            (None, Some(alias)) => {
                let team = step!(self.team_by_alias(alias, records)?);
                return Ok(Step::Got(Selection { team_id: Some(team.id().to_string()), team: Some(team), ..Selection::default() }));
            }
            (None, None) => {
                if self.team_id_jwt_field.is_some() || self.team_alias_jwt_field.is_some() {
                    let name = |f: &Option<ClaimPath>| f.as_ref().map_or("None".to_string(), |f| f.as_str().to_string());
                    return Err(AuthError::Denied(no_team_found(&name(&self.team_id_jwt_field), &name(&self.team_alias_jwt_field))));
                }
            }
        }
        // LiteLLM's groups path runs whenever no team was chosen (so
        // `enforce_team_based_model_access` refuses a token without teams).
        let ids: Vec<String> = allowed.into_iter().collect();
        let team = step!(self.find_team_with_model_access(&ids, request, records)?);
        Ok(Step::Got(Selection { team_id: team.as_ref().map(|t| t.id().to_string()), team, ..Selection::default() }))
    }

    /// The one team whose alias the token's `team_alias_jwt_field` names (LiteLLM's
    /// `get_team_object_by_alias`): none, or several sharing it, is an error.
    fn team_by_alias(&self, alias: &str, records: &mut Lookups) -> Result<Step<Rc<Record>>, AuthError> {
        match step!(Self::alias_lookup(alias, records)?) {
            AliasMatch::One(team) => Ok(Step::Got(team)),
            AliasMatch::None => Err(AuthError::Denied(format!(
                "Team with alias '{alias}' doesn't exist in db. Create team via `/team/new` call."
            ))),
            AliasMatch::Many => Err(AuthError::Denied(format!(
                "Multiple teams found with alias '{alias}'. Please use team_id_jwt_field instead or ensure team aliases are unique."
            ))),
        }
    }

    /// What the records say of a team alias.
    fn alias_lookup(alias: &str, records: &mut Lookups) -> Result<Step<AliasMatch>, AuthError> {
        if !records.enabled {
            return Ok(Step::Got(AliasMatch::None));
        }
        let key = RecordKey { kind: Kind::TeamAlias, id: alias.to_string() };
        Ok(Step::Got(match records.lookup(&key) {
            RecordLookup::Found(r) => match r.as_ref() {
                Record::TeamByAlias(a) => match a.unique() {
                    Ok(team) => AliasMatch::One(Rc::new(Record::Team(team.clone()))),
                    Err(0) => AliasMatch::None,
                    Err(_) => AliasMatch::Many,
                },
                _ => AliasMatch::None,
            },
            RecordLookup::NotFound => AliasMatch::None,
            RecordLookup::Pending => return Ok(Step::Need(vec![key])),
            RecordLookup::Unavailable(why) => return Err(AuthError::RecordsUnavailable(why)),
        }))
    }

    /// LiteLLM's `get_all_jwt_team_ids`: the groups list, then the team id claim (a string, or
    /// the strings of a list), without repeats; never `team_id_default`.
    pub(super) fn jwt_team_ids(&self, claims: &Map<String, Value>) -> Vec<String> {
        let mut ids = self.group_team_ids(claims);
        let singular = match self.team_id_jwt_field.as_ref().and_then(|f| f.lookup(claims)) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        for id in singular.into_iter().filter(|s| !s.is_empty()) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// The ids of `team_ids_jwt_field` (newest: a string claim is not a list of teams).
    pub(super) fn group_team_ids(&self, claims: &Map<String, Value>) -> Vec<String> {
        match self.team_ids_jwt_field.as_ref().and_then(|f| f.lookup(claims)) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the token claims any team id itself (LiteLLM's `get_all_jwt_team_ids` is not
    /// empty: the groups list or the team id claim, never `team_id_default`). A groups claim
    /// that is not a list names no team (as LiteLLM 1.110 behaves, and as the groups path reads
    /// it); a team id claim of another type than a string counts (LiteLLM reads it as one).
    fn has_team_claim(&self, claims: &Map<String, Value>) -> bool {
        !self.group_team_ids(claims).is_empty()
            || match self.team_id_jwt_field.as_ref().and_then(|f| f.lookup(claims)) {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) => !s.is_empty(),
                Some(Value::Array(items)) => items.iter().any(|i| !i.is_null() && i.as_str() != Some("")),
                Some(_) => true,
            }
    }

    /// The team the `x-litellm-team-id` header names. One of the token's teams is taken (and
    /// loaded like the single team); under `fallback_to_db_teams` another existing team is
    /// taken provisionally, for [`Policy::team_fallbacks`] to check against the user's teams.
    /// A value that is no such team id may be a team's alias (unique among teams).
    fn header_team(
        &self,
        header: &str,
        allowed: &BTreeSet<String>,
        db_fallback: bool,
        records: &mut Lookups,
        upserts: &mut Vec<Record>,
    ) -> Result<Step<Selection>, AuthError> {
        if allowed.contains(header) {
            let team = step!(self.load_team(header, self.team_id_upsert, records, upserts)?);
            if records.enabled && team.is_none() {
                return Err(team_not_found(header));
            }
            return Ok(Step::Got(Selection { team_id: Some(header.to_string()), team, ..Selection::default() }));
        }
        if !db_fallback || !records.enabled {
            // Not one of the token's team ids: perhaps the alias of one (and only one) team.
            return match step!(Self::alias_lookup(header, records)?) {
                AliasMatch::One(team) if allowed.contains(team.id()) => {
                    Ok(Step::Got(Selection { team_id: Some(team.id().to_string()), team: Some(team), ..Selection::default() }))
                }
                _ => Err(header_team_not_allowed(header, allowed)),
            };
        }
        let key = RecordKey { kind: Kind::Team, id: header.to_string() };
        let team = match records.lookup(&key) {
            RecordLookup::Found(team) => team,
            RecordLookup::NotFound => match step!(Self::alias_lookup(header, records)?) {
                AliasMatch::One(team) => team,
                AliasMatch::None | AliasMatch::Many => return Err(header_team_not_a_membership(header)),
            },
            RecordLookup::Pending => return Ok(Step::Need(vec![key])),
            RecordLookup::Unavailable(why) => return Err(AuthError::RecordsUnavailable(why)),
        };
        Ok(Step::Got(Selection {
            team_id: Some(team.id().to_string()),
            team: Some(team),
            provisional_header: Some(header.to_string()),
            db_fallback: false,
        }))
    }

    /// The team record of `id`: found, a default one upserted (`upsert`), or none. Without
    /// records, none.
    fn load_team(&self, id: &str, upsert: bool, records: &mut Lookups, upserts: &mut Vec<Record>) -> Result<Step<Option<Rc<Record>>>, AuthError> {
        if !records.enabled {
            return Ok(Step::Got(None));
        }
        let key = RecordKey { kind: Kind::Team, id: id.to_string() };
        Ok(Step::Got(match records.lookup(&key) {
            RecordLookup::Found(r) => Some(r),
            RecordLookup::NotFound if upsert => {
                let r = Record::Team(Team { team_id: id.to_string(), ..Team::default() });
                upserts.push(r.clone());
                Some(Rc::new(r))
            }
            RecordLookup::NotFound => None,
            RecordLookup::Pending => return Ok(Step::Need(vec![key])),
            RecordLookup::Unavailable(why) => return Err(AuthError::RecordsUnavailable(why)),
        }))
    }

    /// The team an RBAC `team` token's object id names: its record, or none when unknown.
    fn object_team(&self, id: &str, records: &mut Lookups) -> Result<Step<Option<Rc<Record>>>, AuthError> {
        self.load_team(id, false, records, &mut Vec::new())
    }

    /// The single team's record: unknown → LiteLLM's error (or, with `team_claim_fallback`,
    /// `None`: no team yet), or a default team with `team_id_upsert`. Without records the id
    /// goes on alone (`Some(None)`).
    fn single_team(&self, id: &str, records: &mut Lookups, upserts: &mut Vec<Record>) -> Result<Step<Option<Option<Rc<Record>>>>, AuthError> {
        if !records.enabled {
            return Ok(Step::Got(Some(None)));
        }
        match step!(self.load_team(id, self.team_id_upsert, records, upserts)?) {
            Some(team) => Ok(Step::Got(Some(Some(team)))),
            None if self.team_claim_fallback => Ok(Step::Got(None)),
            None => Err(team_not_found(id)),
        }
    }

    /// LiteLLM's `find_team_with_model_access` (spec §7.5, newest: sorted, real model check).
    fn find_team_with_model_access(&self, ids: &[String], request: Request, records: &mut Lookups) -> Result<Step<Option<Rc<Record>>>, AuthError> {
        if ids.is_empty() {
            if self.enforce_team_based_model_access && !self.fallback_to_db_teams {
                return Err(forbidden("No teams found in token. `enforce_team_based_model_access` is set to True. Token must belong to a team.".into()));
            }
            return Ok(Step::Got(None));
        }
        if !records.enabled {
            return Ok(Step::Got(None));
        }
        let found = step!(Self::teams_of(ids, records)?);
        // LiteLLM goes through every team and names the last one refused for the route.
        let mut model_ok_route_not = None;
        for id in ids {
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
        // Newest: with `team_claim_fallback` and none of the claimed teams existing, the
        // fallbacks choose.
        let fall_back = self.team_claim_fallback && found.is_empty();
        match (request.model, model_ok_route_not) {
            (Some(_), _) if fall_back => Ok(Step::Got(None)),
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

    /// The team records of `ids` that exist, all asked for at once. Unknown teams are left
    /// out, as LiteLLM skips them; a team the source cannot answer for is an error: skipping
    /// it could select another team or none (fail open).
    fn teams_of(ids: &[String], records: &mut Lookups) -> Result<Step<BTreeMap<String, Rc<Record>>>, AuthError> {
        let mut found = BTreeMap::new();
        let mut need = Vec::new();
        for id in ids {
            let key = RecordKey { kind: Kind::Team, id: id.clone() };
            match records.lookup(&key) {
                RecordLookup::Found(r) => {
                    found.insert(id.clone(), r);
                }
                RecordLookup::Pending => need.push(key),
                RecordLookup::NotFound => {}
                RecordLookup::Unavailable(why) => return Err(AuthError::RecordsUnavailable(why)),
            }
        }
        if !need.is_empty() {
            return Ok(Step::Need(need));
        }
        Ok(Step::Got(found))
    }

    /// Once the user is known (newest LiteLLM, after its objects): a provisional header team
    /// must be one of the user's teams (and the route one teams may use); a token that
    /// selected no team acts for one of its user's teams — under `fallback_to_db_teams` the
    /// first that may use the model on this route, otherwise the user's only team, if it has
    /// exactly one.
    pub(super) fn team_fallbacks(
        &self,
        selection: Selection,
        user: Option<&User>,
        request: Request,
        records: &mut Lookups,
        upserts: &mut Vec<Record>,
    ) -> Result<Step<Selected>, AuthError> {
        let memberships: &[String] = user.map_or(&[], |u| &u.teams);
        if let Some(header) = &selection.provisional_header {
            let member = selection.team_id.as_ref().is_some_and(|id| memberships.contains(id));
            if !member {
                return Err(header_team_not_a_membership(header));
            }
            if !self.team_allowed_routes.matches(request.route) {
                return Err(forbidden(format!(
                    "Team '{header}' (from x-litellm-team-id header) is not allowed to access route '{}'.",
                    request.route
                )));
            }
        }
        if selection.team_id.is_some() || !records.enabled {
            return Ok(Step::Got((selection.team_id, selection.team)));
        }
        if selection.db_fallback {
            return self.db_team_fallback(memberships, request, records, upserts);
        }
        let [only] = memberships else { return Ok(Step::Got((None, None))) };
        let team = step!(self.load_team(only, self.team_id_upsert, records, upserts)?);
        Ok(Step::Got((team.as_ref().map(|_| only.clone()), team)))
    }

    /// `fallback_to_db_teams`: the first of the user's teams (in the user record's order) that
    /// exists, may use the requested model and whose callers may use this route.
    fn db_team_fallback(&self, memberships: &[String], request: Request, records: &mut Lookups, upserts: &mut Vec<Record>) -> Result<Step<Selected>, AuthError> {
        let mut found = step!(Self::teams_of(memberships, records)?);
        if self.team_id_upsert {
            let missing: Vec<&String> = memberships.iter().filter(|id| !found.contains_key(*id)).collect();
            for id in missing {
                let r = Record::Team(Team { team_id: id.clone(), ..Team::default() });
                upserts.push(r.clone());
                found.insert(id.clone(), Rc::new(r));
            }
        }
        let route_ok = self.team_allowed_routes.matches(request.route);
        for id in memberships {
            let Some(record) = found.get(id) else { continue };
            let Record::Team(t) = record.as_ref() else { continue };
            if let Some(model) = request.model {
                if !can_call_model(model, &t.models, &t.model_aliases, &self.access_groups) {
                    continue;
                }
            }
            if route_ok {
                return Ok(Step::Got((Some(id.clone()), Some(Rc::clone(record)))));
            }
        }
        if !self.enforce_team_based_model_access {
            return Ok(Step::Got((None, None)));
        }
        match request.model {
            Some(model) if !found.is_empty() => Err(forbidden(format!(
                "No team you are a member of has access to the requested model: {model}. Check `/models` to see the \
                 models available to you."
            ))),
            _ => Err(forbidden("User is not a member of any team. Add the user to a team via the LiteLLM UI or API.".into())),
        }
    }
}
