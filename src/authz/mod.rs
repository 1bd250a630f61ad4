//! LiteLLM's authorization of a verified token (`auth_builder` and the JWT side of
//! `common_checks`), pure: the shell supplies the route, the requested model when
//! [`Policy::needs_model`] says a rule reads it, and the record store.
//!
//! A decision reads in LiteLLM's order, one file per stage:
//! [`rbac`] (custom validation, the RBAC role, the `enforce_rbac` gate, the scope → model gate)
//! → [`identity`] (the ids the claims name) → the admin path ([`checks`]) → the team
//! ([`teams`]: the object id's team, the single team, else the groups path) → the linked
//! records and LiteLLM's `common_checks` ([`checks`]: organization, email domain, user,
//! blocked, models, budgets, then the organization rule and the non-admin routes).
//! [`model_access`] is LiteLLM's model matching (wildcards, providers, aliases, access
//! groups); [`claim_path`] reads claims; [`model`] reads the requested model from a body;
//! [`route_rules`] are this filter's own per-route rules, checked after LiteLLM's.

pub mod checks;
pub mod claim_path;
pub mod identity;
pub mod model;
pub mod model_access;
pub mod model_list;
pub mod rbac;
pub mod route_rules;
pub mod sync;
pub mod teams;

pub use claim_path::ClaimRequirement;
pub use rbac::{RbacRole, RolePermission};

use crate::authz::claim_path::ClaimPath;
use crate::authz::identity::{Identity, Ids};
use crate::authz::model_access::AccessGroups;
use crate::error::AuthError;
use crate::records::{Kind, Record, RecordKey};
use crate::routes::checks::{is_llm_api_route, is_unbilled_route};
use crate::routes::RouteList;
use crate::store::records::RecordLookup;
use serde_json::{Map, Value};
use std::rc::Rc;

/// The record store as a decision sees it.
pub trait Records {
    /// Whether team/user records exist at all (a source or static records are configured).
    fn enabled(&self) -> bool;
    fn lookup(&mut self, key: &RecordKey) -> RecordLookup;
}

/// No records configured: the token-only behaviour.
pub struct NoRecords;

impl Records for NoRecords {
    fn enabled(&self) -> bool {
        false
    }
    fn lookup(&mut self, _: &RecordKey) -> RecordLookup {
        RecordLookup::NotFound
    }
}

/// The result of an authorization. (Returned once per decision and taken apart at once, never
/// stored: boxing the large variant would only add an allocation per request.)
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Admitted; `upserts` are default records to store for ids LiteLLM would have created,
    /// `syncs` user records `sync_user_role_and_teams` changed, `obligations` what the answer
    /// is subject to.
    Allow { identity: Identity, upserts: Vec<Record>, syncs: Vec<sync::UserSync>, obligations: Obligations },
    Deny(AuthError),
    /// Decide again once these records are known.
    Need(Vec<RecordKey>),
}

/// What an admitted request's answer is subject to, besides being let through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Obligations {
    /// The rate-limit scopes the request counts in (only where LiteLLM's limiter runs:
    /// [`counts_toward_limits`]).
    pub limits: Vec<crate::limits::Scope>,
    /// On a model list route, the models the caller may call, when some rule limits them:
    /// the list is filtered to them.
    pub models: Option<model_list::ModelFilter>,
}

/// A stage's value, or the records it must see first.
pub(crate) enum Step<T> {
    Got(T),
    Need(Vec<RecordKey>),
}

impl From<Vec<RecordKey>> for Outcome {
    fn from(keys: Vec<RecordKey>) -> Self {
        Outcome::Need(keys)
    }
}

impl<T> From<Vec<RecordKey>> for Step<T> {
    fn from(keys: Vec<RecordKey>) -> Self {
        Step::Need(keys)
    }
}

/// The value of a [`Step`], or return "these records first" from the enclosing stage (as an
/// [`Outcome`] or a [`Step`], whichever it returns).
macro_rules! step {
    ($e:expr) => {
        match $e {
            $crate::authz::Step::Got(v) => v,
            $crate::authz::Step::Need(keys) => return Ok(keys.into()),
        }
    };
}
pub(crate) use step;

/// The compiled authorization policy (LiteLLM's `litellm_jwtauth` + `general_settings`).
#[derive(Debug, Clone)]
pub struct Policy {
    pub admin_jwt_scope: String,
    pub admin_allowed_routes: RouteList,
    pub team_id_jwt_field: Option<ClaimPath>,
    pub team_id_default: Option<String>,
    /// Newest LiteLLM: the team by its alias, when the token names no team id.
    pub team_alias_jwt_field: Option<ClaimPath>,
    pub org_id_jwt_field: Option<ClaimPath>,
    /// Newest LiteLLM: the organization by its alias, when the token names no org id.
    pub org_alias_jwt_field: Option<ClaimPath>,
    pub user_id_jwt_field: Option<ClaimPath>,
    pub user_email_jwt_field: Option<ClaimPath>,
    /// Newest LiteLLM: a token whose email is in another domain is refused (403).
    pub user_allowed_email_domain: Option<String>,
    pub user_roles_jwt_field: Option<ClaimPath>,
    pub user_allowed_roles: Vec<String>,
    pub end_user_id_jwt_field: Option<ClaimPath>,
    pub enforce_rbac: bool,
    pub roles_jwt_field: Option<ClaimPath>,
    pub role_mappings: Vec<(String, RbacRole)>,
    pub object_id_jwt_field: Option<ClaimPath>,
    pub scope_mappings: Vec<(String, Vec<String>)>,
    pub enforce_scope_based_access: bool,
    /// `general_settings.role_permissions`; `None` when the key is absent.
    pub role_permissions: Option<Vec<RolePermission>>,
    /// `general_settings.enforce_rbac` (read by `validate_object_id`, spec §10.4).
    pub general_enforce_rbac: bool,
    pub custom_validate: Vec<ClaimRequirement>,
    /// Claims scopes are read from. LiteLLM: `scope` only; Azure AD also uses `scp`.
    pub scope_claims: Vec<ClaimPath>,
    // Record-backed rules (need the store):
    pub team_ids_jwt_field: Option<ClaimPath>,
    pub team_id_upsert: bool,
    pub user_id_upsert: bool,
    pub enforce_team_based_model_access: bool,
    /// Newest LiteLLM: a claimed team no record has is not an error; the fallbacks choose.
    pub team_claim_fallback: bool,
    /// Newest LiteLLM: a token without team claims acts for one of its user's teams (and the
    /// `x-litellm-team-id` header may name any of them).
    pub fallback_to_db_teams: bool,
    /// Newest LiteLLM: the token's roles and teams are written to its user record.
    pub sync_user_role_and_teams: bool,
    /// `jwt_litellm_role_map`: IdP role glob → LiteLLM user role (first match), for the sync.
    pub jwt_litellm_role_map: Vec<(String, String)>,
    pub team_allowed_routes: RouteList,
    pub access_groups: AccessGroups,
}

/// What the request asks for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The path without the query string.
    pub route: &'a str,
    pub model: Option<&'a str>,
    /// The `x-litellm-team-id` request header: which of its teams the caller acts for.
    pub team_header: Option<&'a str>,
}

/// What authorization reads from a verified token beyond its claims, worked out once per token
/// (and kept with it in the verified-token cache): its scopes, whether they make it an admin,
/// and its RBAC role.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub scopes: Vec<String>,
    /// The admin scope is among the scopes (LiteLLM's admin path; a role mapped to
    /// `proxy_admin` is a role for `role_permissions`, not this).
    pub admin: bool,
    pub role: Option<RbacRole>,
}

pub(crate) fn forbidden(message: String) -> AuthError {
    AuthError::Forbidden(message)
}

/// LiteLLM refuses a user its IdP deactivated through SCIM (`metadata.scim_active: false`).
pub(crate) fn scim_deactivated(user_id: &str) -> AuthError {
    AuthError::Deactivated(format!("User={user_id} has been deactivated via SCIM. Keys owned by this user cannot be used."))
}

pub(crate) fn model_not_available(model: &str) -> AuthError {
    forbidden(crate::error::model_not_available(model))
}

/// What the store says of one record.
pub(crate) enum Found {
    Record(Rc<Record>),
    /// No such record.
    Missing,
    /// Not asked (no id, or no records configured), or not known yet (noted, see
    /// [`Lookups::pending`]).
    Unknown,
}

/// Record lookups of one decision. Unknown records not fetched yet are collected, so that a
/// stage asks for everything it needs at once.
pub(crate) struct Lookups<'a> {
    records: &'a mut dyn Records,
    pub enabled: bool,
    need: Vec<RecordKey>,
}

impl<'a> Lookups<'a> {
    fn new(records: &'a mut dyn Records) -> Self {
        let enabled = records.enabled();
        Lookups { records, enabled, need: Vec::new() }
    }

    /// What the store knows of `key` (every answer, pending ones too).
    pub fn lookup(&mut self, key: &RecordKey) -> RecordLookup {
        self.records.lookup(key)
    }

    /// What is known of the record of `kind` and `id`, when records are enabled. A record not
    /// known yet is noted (see [`Lookups::pending`]); a failing source is an error.
    pub fn find(&mut self, kind: Kind, id: Option<&str>) -> Result<Found, AuthError> {
        let Some(id) = id.filter(|_| self.enabled) else { return Ok(Found::Unknown) };
        let key = RecordKey { kind, id: id.to_string() };
        match self.records.lookup(&key) {
            RecordLookup::Found(r) => Ok(Found::Record(r)),
            RecordLookup::NotFound => Ok(Found::Missing),
            RecordLookup::Pending => {
                self.need.push(key);
                Ok(Found::Unknown)
            }
            RecordLookup::Unavailable(why) => Err(AuthError::RecordsUnavailable(why)),
        }
    }

    /// The record of `kind` and `id`, when records are enabled and it exists (see [`Lookups::find`]).
    pub fn get(&mut self, kind: Kind, id: Option<&str>) -> Result<Option<Rc<Record>>, AuthError> {
        Ok(match self.find(kind, id)? {
            Found::Record(r) => Some(r),
            Found::Missing | Found::Unknown => None,
        })
    }

    /// The records noted since the last call, if any: the decision waits for them.
    pub fn pending(&mut self) -> Option<Vec<RecordKey>> {
        (!self.need.is_empty()).then(|| std::mem::take(&mut self.need))
    }
}

impl Policy {
    /// The scopes, the admin flag and the RBAC role of a token with these claims.
    pub fn caller(&self, claims: &Map<String, Value>) -> Caller {
        let scopes = self.scopes(claims);
        let admin = scopes.contains(&self.admin_jwt_scope);
        let role = self.rbac_role(claims, admin);
        Caller { scopes, admin, role }
    }

    /// Whether deciding this token needs the requested model (so the body must be read).
    /// With records, a non-admin's team or user model list may apply, and so may the team an
    /// admin names in the `x-litellm-team-id` header (`team_header`).
    pub fn needs_model(&self, caller: &Caller, records_enabled: bool, team_header: bool) -> bool {
        let scope_gate = self.enforce_scope_based_access && !self.scope_mappings.is_empty();
        if records_enabled && (!caller.admin || team_header) {
            return true;
        }
        let role_gate = self.enforce_rbac
            && caller.role.and_then(|r| self.permission(r)).is_some_and(|p| p.models.is_some());
        scope_gate || role_gate
    }

    /// Decide a verified token's request.
    pub fn authorize(&self, claims: &Map<String, Value>, caller: &Caller, request: Request, records: &mut dyn Records) -> Outcome {
        match self.decide(claims, caller, request, &mut Lookups::new(records)) {
            Ok(Outcome::Allow { identity, upserts, syncs, obligations }) => match identity.unsafe_field() {
                Some(field) => Outcome::Deny(AuthError::Malformed(format!(
                    "the value for {field} contains control characters"
                ))),
                None => Outcome::Allow { identity, upserts, syncs, obligations },
            },
            Ok(outcome) => outcome,
            Err(e) => Outcome::Deny(e),
        }
    }

    fn decide(&self, claims: &Map<String, Value>, caller: &Caller, request: Request, records: &mut Lookups) -> Result<Outcome, AuthError> {
        if !self.custom_validate.iter().all(|rule| rule.holds(claims)) {
            return Err(forbidden("Invalid JWT token".into()));
        }
        self.role_gate(caller.role, request)?;
        self.scope_gate(&caller.scopes, request.model)?;
        let ids = self.ids(claims, caller.role);
        if caller.admin {
            return self.admin(caller, ids, request, records);
        }
        let mut upserts = Vec::new();
        let selection = step!(self.team(claims, ids.object_team.clone(), request, records, &mut upserts)?);
        let chosen_before_user = selection.team_id.clone();
        let linked = step!(self.linked(&ids, selection.team.as_deref(), records)?);
        let user = self.member_checks(&ids, &linked, records.enabled, &mut upserts)?;
        let (user, sync) = self.sync_user(claims, user);
        let object_team_missing = records.enabled && ids.object_team.is_some() && selection.team.is_none();
        let (team_id, team) = step!(self.team_fallbacks(selection, user.as_deref(), request, records, &mut upserts)?);
        // A team the user's memberships gave: its organization was not looked up with the rest.
        let (team_org_id, team_org) = match team_id != chosen_before_user {
            true => step!(self.team_org(&ids, team.as_deref(), records)?),
            false => (linked.team_org_id, linked.team_org),
        };
        self.validate_object_id(&ids, team_id.as_deref())?;
        if let Some(u) = user.as_deref().filter(|u| u.scim_deactivated()) {
            return Err(scim_deactivated(&u.user_id));
        }
        if let (true, Some(id)) = (object_team_missing, &ids.object_team) {
            // LiteLLM loads an object id's team only now (common_checks), after the user.
            return Err(teams::team_not_found(id));
        }
        let team = match team.as_deref() {
            Some(Record::Team(t)) => Some(t),
            _ => None,
        };
        let user = user.as_deref();
        let org = linked.org.as_deref().or(team_org.as_deref());
        self.common_checks(team, user, org, linked.end_user.as_deref(), request)?;
        self.route_checks(user, request.route)?;
        // Beyond LiteLLM (docs/compatibility.md): a blocked end user is refused, after every
        // refusal LiteLLM itself would give.
        if let Some(Record::EndUser(e)) = linked.end_user.as_deref() {
            if e.blocked {
                return Err(forbidden(format!("End User={} is blocked.", e.user_id)));
            }
        }
        let identity = Identity {
            // LiteLLM's user id is the record's when one was found (by email, it may differ).
            user_id: user.map(|u| u.user_id.clone()).or(ids.user_id).or(ids.sub),
            user_role: Self::user_role(user),
            admin: false,
            user_email: user.and_then(|u| u.user_email.clone()).filter(|e| !e.is_empty()).or(ids.user_email),
            team_id: team.map(|t| t.team_id.clone()).or(team_id),
            team_alias: team.and_then(|t| t.team_alias.clone()),
            team_tpm_limit: team.and_then(|t| t.tpm_limit),
            team_rpm_limit: team.and_then(|t| t.rpm_limit),
            org_id: ids.org_id.or(linked.org_alias.and_then(Result::ok)).or(team_org_id),
            end_user_id: ids.end_user_id,
        };
        let end_user = match linked.end_user.as_deref() {
            Some(Record::EndUser(e)) => Some(e),
            _ => None,
        };
        let subjects = crate::limits::Subjects { team, user, user_id: identity.user_id.as_deref(), end_user, model: request.model };
        let obligations = self.obligations(caller, request, subjects);
        Ok(Outcome::Allow { identity, upserts, syncs: sync.into_iter().collect(), obligations })
    }

    /// The rate-limit scopes of a request where LiteLLM's limiter runs, and on a model list
    /// route the models the caller may call (as the role gate, the scope gate and the team's
    /// or user's models would decide a request for each).
    pub(crate) fn obligations(&self, caller: &Caller, request: Request, subjects: crate::limits::Subjects) -> Obligations {
        let limits = match counts_toward_limits(request.route) {
            true => crate::limits::scopes(subjects),
            false => Vec::new(),
        };
        let models = model_list::MODEL_LIST_ROUTES.contains(&request.route).then(|| {
            let mut exact = Vec::new();
            if let Some(models) = caller.role.filter(|_| self.enforce_rbac).and_then(|r| self.permission(r)).and_then(|p| p.models.clone()) {
                exact.push(models);
            }
            if self.enforce_scope_based_access && !self.scope_mappings.is_empty() {
                let scoped = self.scope_mappings.iter().filter(|(scope, _)| caller.scopes.contains(scope));
                exact.push(scoped.flat_map(|(_, models)| models.iter().cloned()).collect());
            }
            let object = match (subjects.team, subjects.user) {
                (Some(t), _) => Some((t.models.clone(), t.model_aliases.clone())),
                (None, Some(u)) => Some((u.models.clone(), Default::default())),
                (None, None) => None,
            };
            let object = object.map(|(models, aliases)| (models, aliases, self.access_groups.clone()));
            model_list::ModelFilter { exact, object }
        });
        Obligations { limits, models: models.filter(|m| !m.unrestricted()) }
    }

    /// The ids the claims name (LiteLLM's `get_user_info`, org, end user, and the object id,
    /// which is the team of a `team` token or the user of an `internal_user` one).
    fn ids(&self, claims: &Map<String, Value>, role: Option<RbacRole>) -> Ids {
        let string = |field: &Option<ClaimPath>| field.as_ref().and_then(|p| p.string(claims));
        let user_email = string(&self.user_email_jwt_field);
        let mut user_id = string(&self.user_id_jwt_field).or_else(|| user_email.clone());
        let mut object_team = None;
        if let Some(object_id) = string(&self.object_id_jwt_field) {
            match role {
                Some(RbacRole::Team) => object_team = Some(object_id),
                Some(RbacRole::InternalUser) => user_id = Some(object_id),
                _ => {}
            }
        }
        // `sub` stands in for the user id only when no user id or email field is configured:
        // with one configured, a token without that claim has no user id (as in LiteLLM), and
        // forwarding `sub` would attribute the request to whoever has that id in the other field.
        let sub = match (&self.user_id_jwt_field, &self.user_email_jwt_field) {
            (None, None) => claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        Ids {
            user_id,
            user_email,
            org_id: string(&self.org_id_jwt_field),
            org_alias: string(&self.org_alias_jwt_field).filter(|a| !a.is_empty()),
            end_user_id: string(&self.end_user_id_jwt_field),
            object_team,
            sub,
        }
    }
}

/// Where LiteLLM's limiter runs: the LLM API routes that call a model (not model lists or
/// token counters).
pub fn counts_toward_limits(route: &str) -> bool {
    is_llm_api_route(route) && !is_unbilled_route(route)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_obligations;
#[cfg(test)]
mod tests_team_selection;
