//! LiteLLM's `auth_builder` decisions for a verified token (spec §7.2, seed order, newest
//! fixes): custom validation, RBAC role, the `enforce_rbac` gate with role permissions, the
//! scope → model gate, identity extraction, the admin path, the required team id and
//! `validate_object_id` — plus the non-admin route check of `common_checks`. Pure: the
//! caller supplies the route and, when [`Policy::needs_model`] says so, the requested model.


pub mod claim_path;
pub mod identity;
pub mod model;
pub mod route_rules;

use crate::authz::claim_path::ClaimPath;
use crate::error::AuthError;
use crate::authz::identity::{Identity, ROLE_INTERNAL_USER, ROLE_PROXY_ADMIN};
use crate::store::records::RecordLookup;
use crate::records::{can_call_model, AccessGroups, EndUser, Kind, Record, RecordKey, Team, User};
use crate::pytext::{py_float, py_list};
use crate::routes::RouteList;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
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

/// The result of an authorization.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Admitted; `upserts` are default records to store for ids LiteLLM would have created.
    Allow { identity: Identity, upserts: Vec<Record> },
    Deny(AuthError),
    /// Decide again once these records are known.
    Need(Vec<RecordKey>),
}

/// A value, or the records that must be known first.
enum Step<T> {
    Got(T),
    Need(Vec<RecordKey>),
}

macro_rules! step {
    ($e:expr) => {
        match $e {
            Step::Got(v) => v,
            Step::Need(keys) => return Ok(Outcome::Need(keys)),
        }
    };
}

/// LiteLLM's `RBAC_ROLES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacRole {
    ProxyAdmin,
    Team,
    InternalUser,
}

impl RbacRole {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "proxy_admin" => Some(Self::ProxyAdmin),
            "team" => Some(Self::Team),
            "internal_user" => Some(Self::InternalUser),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProxyAdmin => "proxy_admin",
            Self::Team => "team",
            Self::InternalUser => "internal_user",
        }
    }
}

/// One `general_settings.role_permissions` entry.
#[derive(Debug, Clone)]
pub struct RolePermission {
    pub role: RbacRole,
    pub models: Option<Vec<String>>,
    pub routes: Option<RouteList>,
}

/// A declarative `custom_validate` rule on one claim.
#[derive(Debug, Clone)]
pub enum ClaimRequirement {
    /// The claim equals this JSON value.
    Equals(ClaimPath, Value),
    /// The claim (a string, or a list of strings) contains at least one of these.
    AnyOf(ClaimPath, Vec<String>),
    /// The claim (a string, or a list of strings) contains all of these.
    AllOf(ClaimPath, Vec<String>),
}

impl ClaimRequirement {
    pub fn holds(&self, claims: &Map<String, Value>) -> bool {
        match self {
            ClaimRequirement::Equals(path, want) => path.lookup(claims) == Some(want),
            ClaimRequirement::AnyOf(path, wanted) => {
                let have = path.strings(claims);
                wanted.iter().any(|w| have.contains(w))
            }
            ClaimRequirement::AllOf(path, wanted) => {
                let have = path.strings(claims);
                wanted.iter().all(|w| have.contains(w))
            }
        }
    }
}

/// The compiled authorization policy (LiteLLM's `litellm_jwtauth` + `general_settings`).
#[derive(Debug, Clone)]
pub struct Policy {
    pub admin_jwt_scope: String,
    pub admin_allowed_routes: RouteList,
    pub team_id_jwt_field: Option<ClaimPath>,
    pub team_id_default: Option<String>,
    pub org_id_jwt_field: Option<ClaimPath>,
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
    /// Routes any non-admin token may call (LiteLLM's LLM API and info routes).
    pub non_admin_routes: RouteList,
    // Record-backed rules (need the store):
    pub team_ids_jwt_field: Option<ClaimPath>,
    pub team_id_upsert: bool,
    pub user_id_upsert: bool,
    pub enforce_team_based_model_access: bool,
    pub team_allowed_routes: RouteList,
    pub access_groups: AccessGroups,
}

/// LiteLLM's personal budget check (`_user_max_budget_check`).
fn user_budget(u: &User) -> Result<(), AuthError> {
    match u.max_budget {
        Some(max) if u.spend >= max => Err(AuthError::BudgetExceeded(format!(
            "ExceededBudget: User={} over budget. Spend={}, Budget={}",
            u.user_id,
            py_float(u.spend),
            py_float(max)
        ))),
        _ => Ok(()),
    }
}

/// What the request asks for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The path without the query string.
    pub route: &'a str,
    pub model: Option<&'a str>,
}

fn forbidden(message: String) -> AuthError {
    AuthError::Forbidden(message)
}

fn model_not_available(model: &str) -> AuthError {
    forbidden(format!(
        "The requested model '{model}' is not available for this API key, or the model name is \
         invalid. Check the models available to you and try again."
    ))
}

impl Policy {
    /// Scopes from every configured scope claim (string split on whitespace, or a list).
    pub fn scopes(&self, claims: &Map<String, Value>) -> Vec<String> {
        let mut out = Vec::new();
        for path in &self.scope_claims {
            match path.lookup(claims) {
                Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
                Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned)),
                _ => {}
            }
        }
        out
    }

    fn team_id(&self, claims: &Map<String, Value>) -> Option<String> {
        // Newest: the claim (first element of a list), else `team_id_default`.
        self.team_id_jwt_field
            .as_ref()
            .and_then(|p| p.string_or_first(claims))
            .filter(|t| !t.is_empty())
            .or_else(|| self.team_id_default.clone())
    }

    fn user_id_claim(&self, claims: &Map<String, Value>) -> Option<String> {
        self.user_id_jwt_field.as_ref().and_then(|p| p.string(claims))
    }

    /// LiteLLM's `get_rbac_role`: the first rule that applies.
    pub fn rbac_role(&self, claims: &Map<String, Value>, scopes: &[String]) -> Option<RbacRole> {
        if scopes.contains(&self.admin_jwt_scope) {
            return Some(RbacRole::ProxyAdmin);
        }
        if self.team_id(claims).is_some() {
            return Some(RbacRole::Team);
        }
        if self.user_id_claim(claims).is_some() {
            return Some(RbacRole::InternalUser);
        }
        if let Some(path) = &self.user_roles_jwt_field {
            if path.strings(claims).iter().any(|r| self.user_allowed_roles.contains(r)) {
                return Some(RbacRole::InternalUser);
            }
        }
        if let Some(path) = &self.roles_jwt_field {
            let roles = path.strings(claims);
            if let Some((_, role)) = self.role_mappings.iter().find(|(idp, _)| roles.contains(idp)) {
                return Some(*role);
            }
        }
        None
    }

    fn permission(&self, role: RbacRole) -> Option<&RolePermission> {
        self.role_permissions.as_ref()?.iter().find(|p| p.role == role)
    }

    /// Whether deciding this token needs the requested model (so the body must be read).
    /// With records, a non-admin's team or user model list may apply.
    pub fn needs_model(&self, claims: &Map<String, Value>, records_enabled: bool) -> bool {
        let scope_gate = self.enforce_scope_based_access && !self.scope_mappings.is_empty();
        if !records_enabled && !scope_gate && !self.enforce_rbac {
            // No rule reads the model: not even the token's scopes are needed.
            return false;
        }
        let scopes = self.scopes(claims);
        if records_enabled && !scopes.contains(&self.admin_jwt_scope) {
            return true;
        }
        let role_gate = self.enforce_rbac
            && self
                .rbac_role(claims, &scopes)
                .and_then(|r| self.permission(r))
                .is_some_and(|p| p.models.is_some());
        scope_gate || role_gate
    }

    /// Decide a verified token's request.
    pub fn authorize(&self, claims: &Map<String, Value>, request: Request, records: &mut dyn Records) -> Outcome {
        match self.decide(claims, request, records) {
            Ok(Outcome::Allow { identity, upserts }) => match identity.unsafe_field() {
                Some(field) => Outcome::Deny(AuthError::Malformed(format!(
                    "the value for {field} contains control characters"
                ))),
                None => Outcome::Allow { identity, upserts },
            },
            Ok(outcome) => outcome,
            Err(e) => Outcome::Deny(e),
        }
    }

    fn decide(&self, claims: &Map<String, Value>, request: Request, records: &mut dyn Records) -> Result<Outcome, AuthError> {
        let route = request.route;
        // 2. custom_validate
        if !self.custom_validate.iter().all(|rule| rule.holds(claims)) {
            return Err(forbidden("Invalid JWT token".into()));
        }
        // 3–4. RBAC role and the enforce_rbac gate.
        let scopes = self.scopes(claims);
        let rbac_role = self.rbac_role(claims, &scopes);
        if self.enforce_rbac {
            let role = rbac_role.ok_or_else(|| {
                forbidden("Unmatched token passed in. enforce_rbac is set to True. Token must belong to a proxy admin, team, or user.".into())
            })?;
            if let Some(permission) = self.permission(role) {
                if let (Some(models), Some(model)) = (&permission.models, request.model) {
                    if !models.iter().any(|m| m == model) {
                        return Err(model_not_available(model));
                    }
                }
                if let Some(routes) = &permission.routes {
                    if !routes.matches(route) {
                        return Err(forbidden(format!(
                            "Role={} not allowed to call route={route}. Allowed routes={}",
                            role.as_str(),
                            py_list(&routes.entries())
                        )));
                    }
                }
            }
        }
        // 5. scope → model gate
        if self.enforce_scope_based_access && !self.scope_mappings.is_empty() {
            if let Some(model) = request.model {
                let allowed = self
                    .scope_mappings
                    .iter()
                    .filter(|(scope, _)| scopes.contains(scope))
                    .any(|(_, models)| models.iter().any(|m| m == model));
                if !allowed {
                    return Err(model_not_available(model));
                }
            }
        }
        // 6. identity
        let user_email = self.user_email_jwt_field.as_ref().and_then(|p| p.string(claims));
        let mut user_id = self.user_id_claim(claims).or_else(|| user_email.clone());
        let org_id = self.org_id_jwt_field.as_ref().and_then(|p| p.string(claims));
        let end_user_id = self.end_user_id_jwt_field.as_ref().and_then(|p| p.string(claims));
        // 7. object_id
        let mut team_id = None;
        if let Some(object_id) = self.object_id_jwt_field.as_ref().and_then(|p| p.string(claims)) {
            match rbac_role {
                Some(RbacRole::Team) => team_id = Some(object_id),
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
        let enabled = records.enabled();
        // 8. admin (by scope, not by mapped role)
        if scopes.contains(&self.admin_jwt_scope) {
            if !self.admin_allowed_routes.matches(route) {
                return Err(AuthError::Denied(format!(
                    "Admin not allowed to access this route. Route={route}, Allowed Routes={}",
                    py_list(&self.admin_allowed_routes.entries())
                )));
            }
            // LiteLLM runs common_checks for admins too: their own user record's budget holds.
            if let (true, Some(id)) = (enabled, &user_id) {
                let key = RecordKey { kind: Kind::User, id: id.clone() };
                match records.lookup(&key) {
                    RecordLookup::Found(r) => {
                        if let Record::User(u) = r.as_ref() {
                            user_budget(u)?;
                        }
                    }
                    RecordLookup::NotFound => {}
                    RecordLookup::Pending => return Ok(Outcome::Need(vec![key])),
                    RecordLookup::Unavailable(why) => return Err(AuthError::RecordsUnavailable(why)),
                }
            }
            let identity = Identity {
                user_id: user_id.or(sub),
                user_role: ROLE_PROXY_ADMIN,
                user_email,
                org_id,
                ..Identity::default()
            };
            return Ok(Outcome::Allow { identity, upserts: Vec::new() });
        }
        let mut upserts = Vec::new();
        let mut team: Option<Rc<Record>> = None;
        // 9. single team: the object id of a `team` token (LiteLLM loads and checks it like any
        // team), else the team id claim.
        if team_id.is_none() {
            team_id = self.team_id(claims);
            if let (None, Some(field)) = (&team_id, &self.team_id_jwt_field) {
                return Err(AuthError::Denied(format!(
                    "No team id found in token. Checked team_id field '{}'",
                    field.as_str()
                )));
            }
        }
        if let (Some(id), true) = (&team_id, enabled) {
            let key = RecordKey { kind: Kind::Team, id: id.clone() };
            team = Some(match records.lookup(&key) {
                RecordLookup::Found(r) => r,
                RecordLookup::NotFound if self.team_id_upsert => {
                    let r = Record::Team(Team { team_id: id.clone(), ..Team::default() });
                    upserts.push(r.clone());
                    Rc::new(r)
                }
                RecordLookup::NotFound => {
                    return Err(AuthError::Denied(format!(
                        "Team doesn't exist in db. Team={id}. Create team via `/team/new` call."
                    )))
                }
                RecordLookup::Pending => return Ok(Outcome::Need(vec![key])),
                RecordLookup::Unavailable(why) => return Err(AuthError::RecordsUnavailable(why)),
            });
        }
        // 10. groups: the first team (sorted) that can use the model on this route
        if team_id.is_none() && team.is_none() {
            if let Some(field) = &self.team_ids_jwt_field {
                team = step!(self.find_team_with_model_access(field, claims, request, records)?);
                team_id = team.as_ref().map(|t| t.id().to_string());
            }
        }
        // 11. org, user, end user
        let mut need = Vec::new();
        let mut lookup = |kind: Kind, id: &Option<String>, need: &mut Vec<RecordKey>| -> Result<Option<Rc<Record>>, AuthError> {
            let Some(id) = id.as_ref().filter(|_| enabled) else { return Ok(None) };
            let key = RecordKey { kind, id: id.clone() };
            match records.lookup(&key) {
                RecordLookup::Found(r) => Ok(Some(r)),
                RecordLookup::NotFound => Ok(None),
                RecordLookup::Pending => {
                    need.push(key);
                    Ok(None)
                }
                RecordLookup::Unavailable(why) => Err(AuthError::RecordsUnavailable(why)),
            }
        };
        let org = lookup(Kind::Org, &org_id, &mut need)?;
        // Without an org claim, the selected team's organization is the org (LiteLLM's
        // organization budget check and its org_id read it from the team).
        let team_org_id = match (&org_id, team.as_deref()) {
            (None, Some(Record::Team(t))) => t.organization_id.clone(),
            _ => None,
        };
        let team_org = lookup(Kind::Org, &team_org_id, &mut need)?;
        let user = lookup(Kind::User, &user_id, &mut need)?;
        let end_user = lookup(Kind::EndUser, &end_user_id, &mut need)?;
        if !need.is_empty() {
            return Ok(Outcome::Need(need));
        }
        if let (true, Some(id), None) = (enabled, &org_id, &org) {
            return Err(AuthError::Denied(format!(
                "Organization doesn't exist in db. Organization={id}. Create organization via `/organization/new` call."
            )));
        }
        // LiteLLM checks the email domain here: after the team and org, before the user (and
        // not for admins). No email at all is not an allowed domain either (`User email: None`).
        if let Some(domain) = &self.user_allowed_email_domain {
            if user_email.as_deref().and_then(|e| e.rsplit_once('@')).map(|(_, d)| d) != Some(domain.as_str()) {
                return Err(AuthError::EmailDomain(format!(
                    "Email domain not allowed. User email: {}. Allowed domain: {domain}",
                    user_email.as_deref().unwrap_or("None")
                )));
            }
        }
        let user = match (enabled, &user_id, user) {
            (true, Some(id), None) if self.user_id_upsert => {
                let r = Record::User(User { user_id: id.clone(), user_email: user_email.clone(), ..User::default() });
                upserts.push(r.clone());
                Some(Rc::new(r))
            }
            (true, Some(id), None) => {
                return Err(AuthError::Denied(format!(
                    "User doesn't exist in db. 'user_id'={id}. Create user via `/user/new` call."
                )))
            }
            (_, _, found) => found,
        };
        // 12. validate_object_id (general_settings.enforce_rbac)
        if self.general_enforce_rbac && user_id.is_none() && team_id.is_none() {
            return Err(forbidden(
                "No user or team id found in token. enforce_rbac is set to True. Token must belong to a proxy admin, team, or user.".into(),
            ));
        }
        // common_checks: non-admins may call LLM API and info routes only.
        if !self.non_admin_routes.matches(route) {
            return Err(AuthError::Denied(format!(
                "Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route={route}. Your role={}. Your user_id={}",
                "unknown",
                user_id.as_deref().unwrap_or("unknown")
            )));
        }
        // common_checks on the selected records
        let team = team.as_deref().and_then(|r| match r {
            Record::Team(t) => Some(t),
            _ => None,
        });
        self.common_checks(team, user.as_deref(), end_user.as_deref(), request.model)?;
        // LiteLLM's organization_max_budget_check: the token's org, else the team's.
        if let Some(Record::Org(o)) = org.as_deref().or(team_org.as_deref()) {
            if let Some(max) = o.max_budget.filter(|max| o.spend >= *max) {
                return Err(AuthError::BudgetExceeded(format!(
                    "Budget has been exceeded! Organization={} Current cost: {}, Max budget: {}",
                    o.organization_id,
                    py_float(o.spend),
                    py_float(max)
                )));
            }
        }
        let org_id = org_id.or(team_org_id);
        let identity = Identity {
            user_id: user_id.or(sub),
            user_role: ROLE_INTERNAL_USER,
            user_email,
            team_id: team.map(|t| t.team_id.clone()).or(team_id),
            team_alias: team.and_then(|t| t.team_alias.clone()),
            team_tpm_limit: team.and_then(|t| t.tpm_limit),
            team_rpm_limit: team.and_then(|t| t.rpm_limit),
            org_id,
            end_user_id,
        };
        Ok(Outcome::Allow { identity, upserts })
    }

    /// LiteLLM's `find_team_with_model_access` (spec §7.5, newest: sorted, real model check).
    fn find_team_with_model_access(
        &self,
        field: &ClaimPath,
        claims: &Map<String, Value>,
        request: Request,
        records: &mut dyn Records,
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
        if !records.enabled() {
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

    /// LiteLLM's `common_checks` for the selected team, user and end user.
    fn common_checks(&self, team: Option<&Team>, user: Option<&Record>, end_user: Option<&Record>, model: Option<&str>) -> Result<(), AuthError> {
        if let Some(t) = team {
            if t.blocked {
                return Err(AuthError::Denied(format!(
                    "Team={} is blocked. Update via `/team/unblock` if you're an admin.",
                    t.team_id
                )));
            }
            if let Some(m) = model {
                if !can_call_model(m, &t.models, &t.model_aliases, &self.access_groups) {
                    return Err(AuthError::TeamModelDenied { model: m.to_string(), allowed: t.models.clone() });
                }
            }
            if let Some(max) = t.max_budget {
                if t.spend >= max {
                    return Err(AuthError::BudgetExceeded(format!(
                        "Budget has been exceeded! Team={} Current cost: {}, Max budget: {}",
                        t.team_id,
                        py_float(t.spend),
                        py_float(max)
                    )));
                }
            }
        } else if let Some(Record::User(u)) = user {
            if let Some(m) = model {
                if !can_call_model(m, &u.models, &BTreeMap::new(), &self.access_groups) {
                    return Err(forbidden(format!(
                        "The requested model '{m}' is not available for this API key, or the model name is \
                         invalid. Check the models available to you and try again."
                    )));
                }
            }
            user_budget(u)?;
        }
        if let Some(Record::EndUser(EndUser { user_id, blocked, max_budget, spend })) = end_user {
            if *blocked {
                return Err(forbidden(format!("End User={user_id} is blocked.")));
            }
            if let Some(max) = max_budget {
                if spend > max {
                    return Err(AuthError::BudgetExceeded(format!(
                        "ExceededBudget: End User={user_id} over budget. Spend={}, Budget={}",
                        py_float(*spend),
                        py_float(*max)
                    )));
                }
            }
        }
        // Organizations: existence only (checked above); LiteLLM applies no org rule to JWT callers.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile;
    use crate::records::{EndUser, Org, Team, User};
    use serde_json::json;

    fn policy(general_settings: Value) -> Policy {
        // A static team makes record-backed fields valid; which records exist is up to each test.
        let cfg = json!({"public_key_url": "http://idp/jwks", "teams": [{"team_id": "cfg-team"}],
                         "general_settings": general_settings});
        compile(cfg.to_string().as_bytes(), &|_| None).unwrap().policy
    }

    fn jwt(block: Value) -> Policy {
        policy(json!({"litellm_jwtauth": block}))
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn call(p: &Policy, c: Value, route: &str, model: Option<&str>) -> Result<Identity, AuthError> {
        match p.authorize(&claims(c), Request { route, model }, &mut NoRecords) {
            Outcome::Allow { identity, upserts } => {
                assert!(upserts.is_empty());
                Ok(identity)
            }
            Outcome::Deny(e) => Err(e),
            Outcome::Need(keys) => panic!("no records configured, yet {keys:?} were needed"),
        }
    }

    /// Records from a fixed table; ids listed in `pending` are not known yet.
    struct Table {
        records: Vec<Record>,
        pending: Vec<String>,
        down: bool,
        asked: Vec<RecordKey>,
    }

    impl Table {
        fn new(records: Vec<Record>) -> Self {
            Table { records, pending: vec![], down: false, asked: vec![] }
        }
    }

    impl Records for Table {
        fn enabled(&self) -> bool {
            true
        }
        fn lookup(&mut self, key: &RecordKey) -> RecordLookup {
            self.asked.push(key.clone());
            if self.down {
                return RecordLookup::Unavailable(crate::error::Outage::transient("source down"));
            }
            if self.pending.contains(&key.id) {
                return RecordLookup::Pending;
            }
            let kind_matches = |r: &Record| matches!((r, key.kind), (Record::Team(_), Kind::Team) | (Record::User(_), Kind::User) | (Record::Org(_), Kind::Org) | (Record::EndUser(_), Kind::EndUser));
            match self.records.iter().find(|r| kind_matches(r) && r.id() == key.id) {
                Some(r) => RecordLookup::Found(Rc::new(r.clone())),
                None => RecordLookup::NotFound,
            }
        }
    }

    fn team(id: &str, models: &[&str]) -> Team {
        Team { team_id: id.into(), models: models.iter().map(|m| m.to_string()).collect(), ..Team::default() }
    }

    fn with(p: &Policy, table: &mut Table, c: Value, route: &str, model: Option<&str>) -> Outcome {
        p.authorize(&claims(c), Request { route, model }, table)
    }

    const CHAT: &str = "/v1/chat/completions";

    #[test]
    fn plain_token_may_call_llm_routes_as_internal_user() {
        let id = call(&jwt(json!({})), json!({"sub": "u1"}), CHAT, Some("gpt-4o")).unwrap();
        assert_eq!(id.user_role, ROLE_INTERNAL_USER);
        assert_eq!(id.user_id.as_deref(), Some("u1"), "sub is forwarded when no user id field");
        assert!(call(&jwt(json!({})), json!({}), "/v1/models", None).is_ok());
        assert!(call(&jwt(json!({})), json!({}), "/key/info", None).is_ok(), "info routes are open");
    }

    #[test]
    fn non_admins_may_not_apply_guardrails_as_in_litellm() {
        // In `llm_api_routes`, but LiteLLM's is_llm_api_route leaves it out: admin only.
        let e = call(&jwt(json!({})), json!({"sub": "u1"}), "/guardrails/apply_guardrail", None).unwrap_err();
        assert!(e.message().contains("Only proxy admin can be used"), "{}", e.message());
        let admin = jwt(json!({"admin_allowed_routes": ["/guardrails/apply_guardrail"]}));
        assert!(call(&admin, json!({"scope": "litellm_proxy_admin"}), "/guardrails/apply_guardrail", None).is_ok());
    }

    #[test]
    fn non_admin_on_management_route_gets_litellms_401() {
        let e = call(&jwt(json!({})), json!({"sub": "u1"}), "/key/generate", None).unwrap_err();
        assert_eq!(e.status(), 401);
        assert_eq!(
            e.message(),
            "Authentication Error, Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route=/key/generate. Your role=unknown. Your user_id=unknown"
        );
    }

    #[test]
    fn admin_scope_is_admin_on_management_routes_only_by_default() {
        let p = jwt(json!({}));
        let admin = json!({"sub": "root", "scope": "openid litellm_proxy_admin"});
        let id = call(&p, admin.clone(), "/key/generate", None).unwrap();
        assert_eq!(id.user_role, ROLE_PROXY_ADMIN);
        assert!(call(&p, admin.clone(), "/global/spend/logs", None).is_ok());
        let e = call(&p, admin.clone(), CHAT, Some("gpt-4o")).unwrap_err();
        assert_eq!(e.status(), 401);
        let m = e.message();
        // Route groups by name, not their expansion (LiteLLM lists every member: ~6 KB).
        assert_eq!(m, "Authentication Error, Admin not allowed to access this route. Route=/v1/chat/completions, \
            Allowed Routes=['management_routes', 'spend_tracking_routes', 'global_spend_tracking_routes', 'info_routes']");
        let custom = jwt(json!({"admin_jwt_scope": "llm.admin", "admin_allowed_routes": ["openai_routes", "/admin/*"]}));
        let admin = json!({"scope": ["llm.admin"]});
        assert!(call(&custom, admin.clone(), CHAT, None).is_ok());
        assert!(call(&custom, admin.clone(), "/admin/x/y", None).is_ok());
        assert!(call(&custom, admin, "/key/generate", None).is_err());
    }

    #[test]
    fn rbac_role_resolution_order() {
        let p = jwt(json!({
            "team_id_jwt_field": "tid", "user_id_jwt_field": "uid",
            "user_roles_jwt_field": "realm_access.roles", "user_allowed_roles": ["llm-user"],
            "roles_jwt_field": "groups", "role_mappings": [{"role": "ops", "internal_role": "proxy_admin"}, {"role": "devs", "internal_role": "team"}]
        }));
        let scopes = |c: &Value| p.scopes(&claims(c.clone()));
        let role = |c: Value| p.rbac_role(&claims(c.clone()), &scopes(&c));
        assert_eq!(role(json!({"scope": "litellm_proxy_admin", "tid": "t"})), Some(RbacRole::ProxyAdmin));
        assert_eq!(role(json!({"tid": "t", "uid": "u"})), Some(RbacRole::Team));
        assert_eq!(role(json!({"uid": "u", "groups": ["ops"]})), Some(RbacRole::InternalUser));
        assert_eq!(role(json!({"realm_access": {"roles": ["llm-user"]}})), Some(RbacRole::InternalUser));
        assert_eq!(role(json!({"groups": ["x", "devs", "ops"]})), Some(RbacRole::ProxyAdmin), "first mapping wins");
        assert_eq!(role(json!({"groups": "devs"})), Some(RbacRole::Team), "a string claim is one role, not characters");
        assert_eq!(role(json!({"groups": ["d", "e", "v", "s"]})), None);
        assert_eq!(role(json!({"sub": "nobody"})), None);
    }

    #[test]
    fn team_id_default_makes_every_token_a_team_token() {
        let p = jwt(json!({"team_id_default": "default-team"}));
        let id = call(&p, json!({}), CHAT, None).unwrap();
        assert_eq!(id.team_id.as_deref(), Some("default-team"));
        let c = claims(json!({}));
        assert_eq!(p.rbac_role(&c, &[]), Some(RbacRole::Team));
    }

    #[test]
    fn enforce_rbac_refuses_unmatched_tokens() {
        let p = jwt(json!({"enforce_rbac": true, "user_id_jwt_field": "uid"}));
        let e = call(&p, json!({"sub": "x"}), CHAT, None).unwrap_err();
        assert_eq!(e, AuthError::Forbidden("Unmatched token passed in. enforce_rbac is set to True. Token must belong to a proxy admin, team, or user.".into()));
        assert!(call(&p, json!({"uid": "u"}), CHAT, None).is_ok());
    }

    #[test]
    fn role_permissions_gate_models_and_routes_when_rbac_is_enforced() {
        let p = policy(json!({
            "role_permissions": [
                {"role": "team", "models": ["gpt-4o", "claude-3"], "routes": ["openai_routes"]},
                {"role": "internal_user", "routes": ["/v1/models"]}],
            "litellm_jwtauth": {"enforce_rbac": true, "team_id_jwt_field": "tid", "user_id_jwt_field": "uid"}}));
        let team = json!({"tid": "t1"});
        assert!(call(&p, team.clone(), CHAT, Some("gpt-4o")).is_ok());
        assert!(call(&p, team.clone(), CHAT, None).is_ok(), "no model: the model gate is skipped");
        let e = call(&p, team.clone(), CHAT, Some("gpt-4o-mini")).unwrap_err();
        assert_eq!(e.status(), 403);
        assert_eq!(e.message(), "The requested model 'gpt-4o-mini' is not available for this API key, or the model name is invalid. Check the models available to you and try again.");
        let e = call(&p, team.clone(), "/v1/messages", None).unwrap_err();
        assert_eq!(e, AuthError::Forbidden("Role=team not allowed to call route=/v1/messages. Allowed routes=['openai_routes']".into()));
        let user = json!({"uid": "u"});
        let e = call(&p, user.clone(), "/v1/models", None).unwrap_err();
        assert!(e.message().contains("No team id found in token"), "team_id_jwt_field makes a team required");
        assert!(p.needs_model(&claims(team), false));
        assert!(!p.needs_model(&claims(user.clone()), false), "internal_user has no model list");

        let users = policy(json!({
            "role_permissions": [{"role": "internal_user", "routes": ["/v1/models"]}],
            "litellm_jwtauth": {"enforce_rbac": true, "user_id_jwt_field": "uid"}}));
        assert!(call(&users, user.clone(), "/v1/models", None).is_ok());
        assert!(call(&users, user, CHAT, Some("anything")).is_err());
    }

    #[test]
    fn role_permissions_without_enforce_rbac_are_refused_at_load_not_ignored() {
        let cfg = json!({"public_key_url": "http://idp/jwks", "general_settings": {
            "role_permissions": [{"role": "team", "models": ["gpt-4o"]}],
            "litellm_jwtauth": {"team_id_jwt_field": "tid"}}});
        let e = compile(cfg.to_string().as_bytes(), &|_| None).unwrap_err();
        assert!(e.contains("role_permissions: only applies with"), "{e}");
    }

    #[test]
    fn scope_mappings_gate_models() {
        let p = jwt(json!({"enforce_scope_based_access": true, "scope_mappings": [
            {"scope": "llm.basic", "models": ["gpt-4o-mini"]},
            {"scope": "llm.pro", "models": ["gpt-4o", "o1"]}]}));
        assert!(call(&p, json!({"scope": "llm.basic"}), CHAT, Some("gpt-4o-mini")).is_ok());
        assert!(call(&p, json!({"scope": "llm.basic llm.pro"}), CHAT, Some("o1")).is_ok());
        let e = call(&p, json!({"scope": "llm.basic"}), CHAT, Some("o1")).unwrap_err();
        assert_eq!(e.status(), 403);
        assert!(e.message().starts_with("The requested model 'o1' is not available"));
        assert!(call(&p, json!({}), "/v1/models", None).is_ok(), "no model requested: pass");
        assert!(p.needs_model(&claims(json!({})), false));
    }

    #[test]
    fn extra_scope_claims_like_azure_scp() {
        let cfg = json!({"public_key_url": "http://idp/jwks", "scope_claims": ["scope", "scp"],
            "general_settings": {"litellm_jwtauth": {"enforce_scope_based_access": true,
                "scope_mappings": [{"scope": "LLM.Use", "models": ["gpt-4o"]}]}}});
        let p = compile(cfg.to_string().as_bytes(), &|_| None).unwrap().policy;
        assert!(call(&p, json!({"scp": "LLM.Use User.Read"}), CHAT, Some("gpt-4o")).is_ok());
        assert!(call(&jwt(json!({"enforce_scope_based_access": true,
            "scope_mappings": [{"scope": "LLM.Use", "models": ["gpt-4o"]}]})),
            json!({"scp": "LLM.Use"}), CHAT, Some("gpt-4o")).is_err(), "LiteLLM default reads only `scope`");
    }

    #[test]
    fn identity_extraction_with_email_fallback_and_object_id() {
        let p = jwt(json!({"user_email_jwt_field": "email", "org_id_jwt_field": "org.id",
            "end_user_id_jwt_field": "customer"}));
        let id = call(&p, json!({"sub": "s", "email": "a@x.io", "org": {"id": "o1"}, "customer": "c9"}), CHAT, None).unwrap();
        assert_eq!(id.user_id.as_deref(), Some("a@x.io"));
        assert_eq!(id.user_email.as_deref(), Some("a@x.io"));
        assert_eq!(id.org_id.as_deref(), Some("o1"));
        assert_eq!(id.end_user_id.as_deref(), Some("c9"));

        let p = jwt(json!({"roles_jwt_field": "roles", "object_id_jwt_field": "oid",
            "role_mappings": [{"role": "svc", "internal_role": "team"}, {"role": "human", "internal_role": "internal_user"}]}));
        let id = call(&p, json!({"roles": ["svc"], "oid": "team-42"}), CHAT, None).unwrap();
        assert_eq!(id.team_id.as_deref(), Some("team-42"));
        let id = call(&p, json!({"roles": ["human"], "oid": "user-7"}), CHAT, None).unwrap();
        assert_eq!(id.user_id.as_deref(), Some("user-7"));
        assert_eq!(id.team_id, None);
    }

    #[test]
    fn an_object_id_team_is_loaded_and_checked_like_any_team() {
        let p = jwt(json!({"roles_jwt_field": "roles", "object_id_jwt_field": "oid",
            "role_mappings": [{"role": "svc", "internal_role": "team"}]}));
        let blocked = Team { blocked: true, ..team("t-blocked", &[]) };
        let broke = Team { max_budget: Some(1.0), spend: 2.0, ..team("t-broke", &[]) };
        let mut table = Table::new(vec![Record::Team(blocked), Record::Team(broke), Record::Team(team("t-mini", &["gpt-4o-mini"]))]);
        let svc = |oid: &str| json!({"roles": ["svc"], "oid": oid});
        let deny = |o: Outcome| match o { Outcome::Deny(e) => e, other => panic!("{other:?}") };
        let e = deny(with(&p, &mut table, svc("t-blocked"), CHAT, None));
        assert_eq!(e.message(), "Authentication Error, Team=t-blocked is blocked. Update via `/team/unblock` if you're an admin.");
        let e = deny(with(&p, &mut table, svc("ghost"), CHAT, None));
        assert!(e.message().contains("Team doesn't exist in db. Team=ghost."), "{}", e.message());
        let e = deny(with(&p, &mut table, svc("t-mini"), CHAT, Some("o1")));
        assert_eq!(e.error_type(), "team_model_access_denied");
        assert_eq!(deny(with(&p, &mut table, svc("t-broke"), CHAT, None)).error_type(), "budget_exceeded");
        match with(&p, &mut table, svc("t-mini"), CHAT, Some("gpt-4o-mini")) {
            Outcome::Allow { identity, .. } => assert_eq!(identity.team_id.as_deref(), Some("t-mini")),
            other => panic!("{other:?}"),
        }
        table.pending = vec!["t-new".into()];
        assert_eq!(with(&p, &mut table, svc("t-new"), CHAT, None), Outcome::Need(vec![RecordKey { kind: Kind::Team, id: "t-new".into() }]));
    }

    #[test]
    fn the_organization_budget_holds_for_the_token_org_or_the_teams() {
        let p = jwt(json!({"team_id_jwt_field": "tid", "org_id_jwt_field": "org"}));
        let broke = Org { organization_id: "globex".into(), max_budget: Some(50.0), spend: 50.0, ..Org::default() };
        let fine = Org { organization_id: "acme".into(), max_budget: Some(50.0), spend: 1.0, ..Org::default() };
        let member = Team { organization_id: Some("globex".into()), ..team("t-globex", &[]) };
        let mut table = Table::new(vec![Record::Org(broke), Record::Org(fine), Record::Team(member), Record::Team(team("t-free", &[]))]);
        let Outcome::Deny(e) = with(&p, &mut table, json!({"tid": "t-globex"}), CHAT, None) else { panic!() };
        assert_eq!(e, AuthError::BudgetExceeded("Budget has been exceeded! Organization=globex Current cost: 50.0, Max budget: 50.0".into()));
        match with(&p, &mut table, json!({"tid": "t-globex", "org": "acme"}), CHAT, None) {
            Outcome::Allow { identity, .. } => assert_eq!(identity.org_id.as_deref(), Some("acme"), "the token's org decides"),
            other => panic!("{other:?}"),
        }
        let Outcome::Deny(_) = with(&p, &mut table, json!({"tid": "t-free", "org": "globex"}), CHAT, None) else { panic!() };
        table.records.retain(|r| !matches!(r, Record::Org(o) if o.organization_id == "globex"));
        match with(&p, &mut table, json!({"tid": "t-globex"}), CHAT, None) {
            // A team's org that is not on record is no error (LiteLLM skips the check), but it
            // is forwarded as the org, as LiteLLM's org_id.
            Outcome::Allow { identity, .. } => assert_eq!(identity.org_id.as_deref(), Some("globex")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_allowed_email_domain_refuses_tokens_without_an_email() {
        let p = jwt(json!({"user_email_jwt_field": "email", "user_allowed_email_domain": "example.com"}));
        assert!(call(&p, json!({"email": "a@example.com"}), CHAT, None).is_ok());
        let e = call(&p, json!({"sub": "no-email"}), CHAT, None).unwrap_err();
        assert_eq!(e, AuthError::EmailDomain("Email domain not allowed. User email: None. Allowed domain: example.com".into()));
        assert_eq!((e.status(), e.param()), (403, Some("user_email")));
        let admin = call(&p, json!({"scope": "litellm_proxy_admin"}), "/key/generate", None);
        assert!(admin.is_ok(), "LiteLLM does not apply the domain to admins: {admin:?}");
        let e = call(&p, json!({"email": "not-an-address"}), CHAT, None).unwrap_err();
        assert_eq!(e.status(), 403);
    }

    #[test]
    fn an_admins_own_user_record_budget_holds() {
        let p = jwt(json!({"user_id_jwt_field": "uid"}));
        let broke = User { user_id: "root".into(), max_budget: Some(5.0), spend: 5.0, ..User::default() };
        let mut table = Table::new(vec![Record::User(broke)]);
        let admin = |uid: &str| json!({"uid": uid, "scope": "litellm_proxy_admin"});
        let Outcome::Deny(e) = with(&p, &mut table, admin("root"), "/key/generate", None) else { panic!() };
        assert_eq!(e, AuthError::BudgetExceeded("ExceededBudget: User=root over budget. Spend=5.0, Budget=5.0".into()));
        assert!(matches!(with(&p, &mut table, admin("other"), "/key/generate", None), Outcome::Allow { .. }), "no record: admitted");
        table.down = true;
        assert!(matches!(with(&p, &mut table, admin("root"), "/key/generate", None), Outcome::Deny(AuthError::RecordsUnavailable(_))));
    }

    #[test]
    fn sub_is_never_the_user_id_when_a_user_id_or_email_field_is_configured() {
        let p = jwt(json!({"user_id_jwt_field": "uid"}));
        assert_eq!(call(&p, json!({"sub": "s-1"}), CHAT, None).unwrap().user_id, None, "no uid claim: no user id");
        assert_eq!(call(&p, json!({"sub": "s-1", "uid": "u"}), CHAT, None).unwrap().user_id.as_deref(), Some("u"));
        let by_email = jwt(json!({"user_email_jwt_field": "email"}));
        assert_eq!(call(&by_email, json!({"sub": "s-1"}), CHAT, None).unwrap().user_id, None);
        let admin = call(&p, json!({"sub": "s-1", "scope": "litellm_proxy_admin"}), "/key/generate", None).unwrap();
        assert_eq!(admin.user_id, None, "admins alike");
        assert_eq!(call(&jwt(json!({})), json!({"sub": "s-1"}), CHAT, None).unwrap().user_id.as_deref(), Some("s-1"),
            "neither configured: sub is forwarded, as documented");
    }

    #[test]
    fn required_team_id_and_list_claims() {
        let p = jwt(json!({"team_id_jwt_field": "team"}));
        let e = call(&p, json!({"sub": "s"}), CHAT, None).unwrap_err();
        assert_eq!(e.message(), "Authentication Error, No team id found in token. Checked team_id field 'team'");
        assert_eq!(call(&p, json!({"team": ["t1", "t2"]}), CHAT, None).unwrap().team_id.as_deref(), Some("t1"));
        let with_default = jwt(json!({"team_id_jwt_field": "team", "team_id_default": "fallback"}));
        assert_eq!(call(&with_default, json!({}), CHAT, None).unwrap().team_id.as_deref(), Some("fallback"));
    }

    #[test]
    fn general_enforce_rbac_requires_a_user_or_team_id() {
        let p = policy(json!({"enforce_rbac": true, "litellm_jwtauth": {"user_id_jwt_field": "uid"}}));
        let e = call(&p, json!({"sub": "s"}), CHAT, None).unwrap_err();
        assert_eq!(e, AuthError::Forbidden("No user or team id found in token. enforce_rbac is set to True. Token must belong to a proxy admin, team, or user.".into()));
        assert!(call(&p, json!({"uid": "u"}), CHAT, None).is_ok());
        assert!(call(&p, json!({"scope": "litellm_proxy_admin"}), "/key/generate", None).is_ok(), "admins are exempt");
    }

    #[test]
    fn custom_validate_rules_must_all_hold() {
        let p = jwt(json!({"custom_validate": [
            {"claim": "tenant", "equals": "acme"},
            {"claim": "groups", "any_of": ["llm", "ml"]},
            {"claim": "amr", "all_of": ["pwd", "mfa"]}]}));
        let good = json!({"tenant": "acme", "groups": ["x", "ml"], "amr": ["mfa", "pwd"]});
        assert!(call(&p, good, CHAT, None).is_ok());
        for bad in [
            json!({"tenant": "evil", "groups": ["ml"], "amr": ["mfa", "pwd"]}),
            json!({"tenant": "acme", "groups": ["x"], "amr": ["mfa", "pwd"]}),
            json!({"tenant": "acme", "groups": ["ml"], "amr": ["pwd"]}),
            json!({"groups": ["ml"], "amr": ["mfa", "pwd"]}),
        ] {
            assert_eq!(call(&p, bad, CHAT, None), Err(AuthError::Forbidden("Invalid JWT token".into())));
        }
    }

    #[test]
    fn single_team_is_loaded_and_common_checks_apply() {
        let p = jwt(json!({"team_id_jwt_field": "tid"}));
        let mut blocked = team("t-blocked", &[]);
        blocked.blocked = true;
        let mut broke = team("t-broke", &[]);
        broke.max_budget = Some(10.0);
        broke.spend = 10.0;
        let mut rich = team("t-rich", &["gpt-4o", "openai/*"]);
        rich.team_alias = Some("Rich".into());
        rich.tpm_limit = Some(1000);
        rich.max_budget = Some(10.0);
        rich.spend = 9.99;
        let mut table = Table::new(vec![Record::Team(blocked), Record::Team(broke), Record::Team(rich)]);

        match with(&p, &mut table, json!({"tid": "t-rich"}), CHAT, Some("gpt-4o-mini")) {
            Outcome::Allow { identity, .. } => {
                assert_eq!(identity.team_id.as_deref(), Some("t-rich"));
                assert_eq!(identity.team_alias.as_deref(), Some("Rich"));
                assert_eq!(identity.team_tpm_limit, Some(1000));
            }
            other => panic!("{other:?}"),
        }
        let Outcome::Deny(e) = with(&p, &mut table, json!({"tid": "t-rich"}), CHAT, Some("claude-3")) else { panic!() };
        assert_eq!(e.status(), 401);
        assert_eq!(e.error_type(), "team_model_access_denied");
        assert_eq!(e.param(), Some("model"));
        assert_eq!(e.message(), "team not allowed to access model. This team can only access models=['gpt-4o', 'openai/*']. Tried to access claude-3");

        let Outcome::Deny(e) = with(&p, &mut table, json!({"tid": "t-blocked"}), CHAT, None) else { panic!() };
        assert_eq!(e.message(), "Authentication Error, Team=t-blocked is blocked. Update via `/team/unblock` if you're an admin.");
        let Outcome::Deny(e) = with(&p, &mut table, json!({"tid": "t-broke"}), CHAT, None) else { panic!() };
        assert_eq!((e.status(), e.error_type()), (400, "budget_exceeded"));
        assert_eq!(e.message(), "Budget has been exceeded! Team=t-broke Current cost: 10.0, Max budget: 10.0");
        let Outcome::Deny(e) = with(&p, &mut table, json!({"tid": "ghost"}), CHAT, None) else { panic!() };
        assert_eq!(e.message(), "Authentication Error, Team doesn't exist in db. Team=ghost. Create team via `/team/new` call.");
    }

    #[test]
    fn unknown_team_is_upserted_when_configured() {
        let p = jwt(json!({"team_id_jwt_field": "tid", "team_id_upsert": true}));
        let mut table = Table::new(vec![]);
        match with(&p, &mut table, json!({"tid": "fresh"}), CHAT, Some("any")) {
            Outcome::Allow { identity, upserts } => {
                assert_eq!(identity.team_id.as_deref(), Some("fresh"));
                assert_eq!(upserts, vec![Record::Team(team("fresh", &[]))]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pending_records_are_asked_for_and_outages_are_503() {
        let p = jwt(json!({"team_id_jwt_field": "tid", "user_id_jwt_field": "uid"}));
        let mut table = Table::new(vec![Record::Team(team("t1", &[]))]);
        table.pending = vec!["t1".into()];
        assert_eq!(with(&p, &mut table, json!({"tid": "t1", "uid": "u1"}), CHAT, None),
                   Outcome::Need(vec![RecordKey { kind: Kind::Team, id: "t1".into() }]));
        table.pending = vec!["u1".into()];
        assert_eq!(with(&p, &mut table, json!({"tid": "t1", "uid": "u1"}), CHAT, None),
                   Outcome::Need(vec![RecordKey { kind: Kind::User, id: "u1".into() }]));
        table.down = true;
        let Outcome::Deny(e) = with(&p, &mut table, json!({"tid": "t1"}), CHAT, None) else { panic!() };
        assert_eq!((e.status(), e.error_type()), (503, "no_db_connection"));
    }

    #[test]
    fn groups_path_picks_the_first_sorted_team_with_access() {
        let p = jwt(json!({"team_ids_jwt_field": "groups"}));
        let mut table = Table::new(vec![
            Record::Team(team("b-team", &["gpt-4o"])),
            Record::Team(team("a-team", &["claude-3"])),
            Record::Team(team("c-team", &["all-proxy-models"])),
        ]);
        let pick = |table: &mut Table, model: Option<&str>| match with(&p, table, json!({"groups": ["c-team", "b-team", "a-team", "ghost"]}), CHAT, model) {
            Outcome::Allow { identity, .. } => identity.team_id,
            other => panic!("{other:?}"),
        };
        assert_eq!(pick(&mut table, Some("gpt-4o")).as_deref(), Some("b-team"));
        assert_eq!(pick(&mut table, Some("claude-3")).as_deref(), Some("a-team"));
        assert_eq!(pick(&mut table, Some("o1")).as_deref(), Some("c-team"), "all-proxy-models");
        assert_eq!(pick(&mut table, None).as_deref(), Some("a-team"), "no model: first team on the route");

        let narrow = Table::new(vec![Record::Team(team("a", &["gpt-4o"]))]);
        let mut narrow = narrow;
        let Outcome::Deny(e) = with(&p, &mut narrow, json!({"groups": ["a", "z"]}), CHAT, Some("o1")) else { panic!() };
        assert_eq!(e.message(), "No team has access to the requested model: o1. Checked teams={'a', 'z'}. Check `/models` to see all available models.");
        assert_eq!(e.status(), 403);
    }

    #[test]
    fn groups_path_fails_closed_when_a_team_cannot_be_looked_up() {
        let p = jwt(json!({"team_ids_jwt_field": "groups"}));
        let mut table = Table::new(vec![Record::Team(team("a", &[]))]);
        table.down = true;
        for model in [Some("gpt-4o"), None] {
            let Outcome::Deny(e) = with(&p, &mut table, json!({"groups": ["a"]}), CHAT, model) else { panic!() };
            assert_eq!(e.status(), 503, "{model:?}");
        }
    }

    #[test]
    fn groups_path_route_rule_and_enforced_membership() {
        let p = jwt(json!({"team_ids_jwt_field": "groups", "enforce_team_based_model_access": true,
            "team_allowed_routes": ["/v1/chat/completions"]}));
        let mut table = Table::new(vec![Record::Team(team("a", &[]))]);
        let Outcome::Deny(e) = with(&p, &mut table, json!({}), CHAT, None) else { panic!() };
        assert!(e.message().starts_with("No teams found in token."), "{}", e.message());
        let Outcome::Deny(e) = with(&p, &mut table, json!({"groups": ["a"]}), "/v1/embeddings", Some("m")) else { panic!() };
        assert_eq!(e.message(), "Team a can access model m but route /v1/embeddings is not in litellm_jwtauth.team_allowed_routes");
        // Without a model, a disallowed route continues team-less (LiteLLM's behaviour).
        match with(&p, &mut table, json!({"groups": ["a"]}), "/v1/embeddings", None) {
            Outcome::Allow { identity, .. } => assert_eq!(identity.team_id, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn users_orgs_and_end_users() {
        let p = jwt(json!({"user_id_jwt_field": "uid", "org_id_jwt_field": "org", "end_user_id_jwt_field": "cust"}));
        let user = User { user_id: "u1".into(), models: vec!["gpt-4o".into()], max_budget: Some(1.0), spend: 0.5, ..User::default() };
        let broke = User { user_id: "u2".into(), max_budget: Some(1.0), spend: 1.0, ..User::default() };
        let end = EndUser { user_id: "c1".into(), max_budget: Some(5.0), spend: 6.0, ..EndUser::default() };
        let org = Org { organization_id: "o1".into(), ..Org::default() };
        let mut table = Table::new(vec![Record::User(user), Record::User(broke), Record::EndUser(end), Record::Org(org)]);
        assert!(matches!(with(&p, &mut table, json!({"uid": "u1", "org": "o1"}), CHAT, Some("gpt-4o")), Outcome::Allow { .. }));
        let Outcome::Deny(e) = with(&p, &mut table, json!({"uid": "u1"}), CHAT, Some("o1")) else { panic!() };
        assert_eq!(e.status(), 403);
        let Outcome::Deny(e) = with(&p, &mut table, json!({"uid": "u2"}), CHAT, None) else { panic!() };
        assert_eq!(e.error_type(), "budget_exceeded");
        let Outcome::Deny(e) = with(&p, &mut table, json!({"uid": "u1", "cust": "c1"}), CHAT, None) else { panic!() };
        assert_eq!(e.message(), "ExceededBudget: End User=c1 over budget. Spend=6.0, Budget=5.0");
        assert!(matches!(with(&p, &mut table, json!({"uid": "u1", "cust": "unknown"}), CHAT, None), Outcome::Allow { .. }), "unknown end users are fine");
        let Outcome::Deny(e) = with(&p, &mut table, json!({"uid": "ghost"}), CHAT, None) else { panic!() };
        assert_eq!(e.message(), "Authentication Error, User doesn't exist in db. 'user_id'=ghost. Create user via `/user/new` call.");
        let Outcome::Deny(e) = with(&p, &mut table, json!({"uid": "u1", "org": "nope"}), CHAT, None) else { panic!() };
        assert!(e.message().contains("Organization doesn't exist in db. Organization=nope."));
        let up = jwt(json!({"user_id_jwt_field": "uid", "user_id_upsert": true}));
        match with(&up, &mut table, json!({"uid": "newbie"}), CHAT, None) {
            Outcome::Allow { upserts, .. } => assert_eq!(upserts.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn with_records_every_non_admin_decision_needs_the_model() {
        let p = jwt(json!({}));
        assert!(p.needs_model(&claims(json!({"sub": "x"})), true));
        assert!(!p.needs_model(&claims(json!({"scope": "litellm_proxy_admin"})), true));
        assert!(!p.needs_model(&claims(json!({"sub": "x"})), false));
    }

    #[test]
    fn claims_with_control_characters_never_become_headers() {
        let e = call(&jwt(json!({})), json!({"sub": "alice\r\nx-litellm-user-role: proxy_admin"}), CHAT, None).unwrap_err();
        assert_eq!(e.status(), 401);
        assert!(e.message().contains("x-litellm-user-id contains control characters"), "{}", e.message());
    }

    #[test]
    fn email_domain_is_enforced_like_newest_litellm() {
        let p = jwt(json!({"user_email_jwt_field": "email", "user_allowed_email_domain": "corp.com"}));
        assert!(call(&p, json!({"email": "a@corp.com"}), CHAT, None).is_ok());
        let e = call(&p, json!({"email": "a@evil.com"}), CHAT, None).unwrap_err();
        assert_eq!(e.message(), "Email domain not allowed. User email: a@evil.com. Allowed domain: corp.com");
        assert!(call(&p, json!({"email": "a@sub.corp.com"}), CHAT, None).is_err(), "exact domain");
    }
}
