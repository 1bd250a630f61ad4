//! What LiteLLM checks once the team is known, in its order: the admin path (admin routes, the
//! admin's own budget), the linked records (organization, the team's organization, the user —
//! by id, else by email — and the end user), the checks between them (organization exists,
//! email domain, user exists or is upserted, `validate_object_id`), then `common_checks`
//! (blocked team, team or user models, budgets), the organization rule and, last, the
//! non-admin route rule.

use super::identity::{record_role, Identity, Ids, ROLE_PROXY_ADMIN};
use super::model_access::can_call_model;
use super::{forbidden, Caller, Found, Lookups, Outcome, Policy, Request, Step};
use crate::error::AuthError;
use crate::pytext::{mask_user_id, py_float, py_list};
use crate::records::{EndUser, Kind, Org, Record, Team, User};
use crate::routes::checks::{is_info_route, is_llm_api_route, is_unbilled_route, route_skips_budget_checks};
use std::collections::BTreeMap;
use std::rc::Rc;

/// The records a non-admin decision reads besides the team.
pub(super) struct Linked {
    /// The token's organization: by its id, else by `org_alias_jwt_field`.
    pub org: Option<Rc<Record>>,
    /// What `org_alias_jwt_field` resolved to: the organization's id, or LiteLLM's refusal
    /// (no organization has the alias, or several do), raised in [`Policy::member_checks`].
    pub org_alias: Option<Result<String, AuthError>>,
    /// Without an org claim, the selected team's organization is the org (LiteLLM's
    /// organization budget check and its `org_id` read it from the team).
    pub team_org_id: Option<String>,
    pub team_org: Option<Rc<Record>>,
    /// The user with the token's user id, else the user with the token's email.
    pub user: Option<Rc<User>>,
    pub end_user: Option<Rc<Record>>,
}

/// A team's organization: its id and record.
pub(super) type TeamOrg = (Option<String>, Option<Rc<Record>>);

/// Which budgets apply to a request, as LiteLLM decides before reading any.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budgets {
    /// `route_skips_budget_checks`: budgets only apply on LLM routes (and a few side-effect
    /// routes); model discovery and management routes never spend.
    pub skip: bool,
    /// LiteLLM reserves the request's estimated cost on LLM routes that bill and name a model:
    /// an entity exactly at its limit is then refused. (LiteLLM skips the reservation for
    /// models without a price; the filter has no price list and reserves for every model.)
    pub reserve: bool,
    /// End-user budgets are not checked on info routes.
    pub info_route: bool,
}

impl Budgets {
    pub fn of(request: Request) -> Self {
        Budgets {
            skip: route_skips_budget_checks(request.route),
            reserve: request.model.is_some() && is_llm_api_route(request.route) && !is_unbilled_route(request.route),
            info_route: is_info_route(request.route),
        }
    }
}

/// LiteLLM's reservation refuses a counter with (almost) nothing left.
fn at_limit(spend: f64, max: f64) -> bool {
    max > 0.0 && max - spend <= 1e-12
}

/// LiteLLM's reservation refusal (`_raise_counter_budget_exceeded`). LiteLLM's "current cost"
/// includes the request's estimated cost, which the filter cannot know: it prints the spend.
fn reservation_refused(entity: &str, id: &str, spend: f64, max: f64) -> AuthError {
    AuthError::BudgetExceeded(format!(
        "Budget has been exceeded! {entity}={id} Current cost: {}, Max budget: {}",
        py_float(spend),
        py_float(max)
    ))
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

impl Policy {
    /// The admin path (by scope, not by a mapped role): LiteLLM's admin routes, then its
    /// `common_checks` for the admin's own user record (found by id, else by email: budget).
    pub(super) fn admin(&self, caller: &Caller, ids: Ids, request: Request, records: &mut Lookups) -> Result<Outcome, AuthError> {
        let route = request.route;
        if !self.admin_allowed_routes.matches(route) {
            return Err(AuthError::Denied(format!(
                "Admin not allowed to access this route. Route={route}, Allowed Routes={}",
                py_list(&self.admin_allowed_routes.entries())
            )));
        }
        let user = self.user_record(&ids, records)?;
        let team = self.admin_header_team(request, records)?;
        if let Some(keys) = records.pending() {
            return Ok(Outcome::Need(keys));
        }
        if let Some(u) = user.as_deref().filter(|u| u.scim_deactivated()) {
            return Err(super::scim_deactivated(&u.user_id));
        }
        let team = team.as_deref().and_then(|r| match r {
            Record::Team(t) => Some(t),
            _ => None,
        });
        match team {
            // LiteLLM's central `common_checks` run on the admin's result too: the team's rules
            // hold for a request an admin attributes to it.
            Some(t) => self.common_checks(Some(t), user.as_deref(), None, None, request)?,
            None => {
                if let (Some(u), false) = (user.as_deref(), Budgets::of(request).skip) {
                    user_budget(u)?;
                }
            }
        }
        let identity = Identity {
            user_id: ids.user_id.or(ids.sub),
            user_role: ROLE_PROXY_ADMIN,
            admin: true,
            user_email: ids.user_email,
            org_id: ids.org_id,
            team_id: team.map(|t| t.team_id.clone()),
            team_alias: team.and_then(|t| t.team_alias.clone()),
            team_tpm_limit: team.and_then(|t| t.tpm_limit),
            team_rpm_limit: team.and_then(|t| t.rpm_limit),
            ..Identity::default()
        };
        // LiteLLM applies no user limits to an admin; the team it attributes to counts.
        let obligations = self.obligations(caller, request, crate::limits::Subjects { team, model: request.model, ..Default::default() });
        Ok(Outcome::Allow { identity, upserts: Vec::new(), syncs: Vec::new(), obligations })
    }

    /// The team an admin's `x-litellm-team-id` header names on an LLM API route, for
    /// attribution only (newest LiteLLM): a team that cannot be found is ignored, as there.
    /// (LiteLLM would also upsert it with `team_id_upsert`; the filter does not create teams
    /// for admins.)
    fn admin_header_team(&self, request: Request, records: &mut Lookups) -> Result<Option<Rc<Record>>, AuthError> {
        let Some(header) = request.team_header.filter(|h| !h.is_empty() && is_llm_api_route(request.route)) else {
            return Ok(None);
        };
        match records.find(Kind::Team, Some(header)) {
            Ok(Found::Record(r)) => Ok(Some(r)),
            // Missing, or not known yet (noted), or the source failing: admitted all the same.
            Ok(Found::Missing | Found::Unknown) | Err(_) => Ok(None),
        }
    }

    /// LiteLLM's `get_user_object`: the user with the token's user id, else (its
    /// `_get_fuzzy_user_object`) the user whose `sso_user_id` is that id, else the first user
    /// whose email is the token's, case-insensitively. One lookup at a time, each only once the
    /// one before is known to find nothing; records not known yet are noted in `records`.
    fn user_record(&self, ids: &Ids, records: &mut Lookups) -> Result<Option<Rc<User>>, AuthError> {
        let email = ids.user_email.as_deref().map(str::to_lowercase);
        let steps = [(Kind::User, ids.user_id.as_deref()), (Kind::UserSso, ids.user_id.as_deref()), (Kind::UserEmail, email.as_deref())];
        for (kind, key) in steps {
            match records.find(kind, key)? {
                Found::Record(r) => return Ok(as_user(&r)),
                Found::Missing => continue,
                // No id (LiteLLM looks nothing up then, not even the email), or not known yet.
                Found::Unknown => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Without an org claim, the team's organization: its id and record (noted when not known
    /// yet, see [`Lookups::pending`]).
    fn team_org_lookup(&self, ids: &Ids, team: Option<&Record>, records: &mut Lookups) -> Result<TeamOrg, AuthError> {
        let team_org_id = match (&ids.org_id, &ids.org_alias, team) {
            (None, None, Some(Record::Team(t))) => t.organization_id.clone(),
            _ => None,
        };
        let team_org = records.get(Kind::Org, team_org_id.as_deref())?;
        Ok((team_org_id, team_org))
    }

    /// The team's organization alone, for a team chosen after the linked records were read.
    pub(super) fn team_org(&self, ids: &Ids, team: Option<&Record>, records: &mut Lookups) -> Result<Step<TeamOrg>, AuthError> {
        let found = self.team_org_lookup(ids, team, records)?;
        match records.pending() {
            Some(keys) => Ok(Step::Need(keys)),
            None => Ok(Step::Got(found)),
        }
    }

    /// The organization, the team's organization, the user and the end user, all at once.
    pub(super) fn linked(&self, ids: &Ids, team: Option<&Record>, records: &mut Lookups) -> Result<Step<Linked>, AuthError> {
        let mut org = records.get(Kind::Org, ids.org_id.as_deref())?;
        let alias = ids.org_alias.as_deref().filter(|_| ids.org_id.is_none());
        let by_alias = records.get(Kind::OrgAlias, alias)?;
        let (team_org_id, team_org) = self.team_org_lookup(ids, team, records)?;
        let user = self.user_record(ids, records)?;
        let end_user = records.get(Kind::EndUser, ids.end_user_id.as_deref())?;
        if let Some(keys) = records.pending() {
            return Ok(Step::Need(keys));
        }
        let mut org_alias = None;
        if let (Some(alias), true) = (alias, records.enabled) {
            let found = match by_alias.as_deref() {
                Some(Record::OrgByAlias(a)) => a.unique(),
                _ => Err(0),
            };
            org_alias = Some(match found {
                Ok(o) => {
                    org = Some(Rc::new(Record::Org(o.clone())));
                    Ok(o.organization_id.clone())
                }
                Err(0) => Err(AuthError::Denied(format!(
                    "Organization with alias '{alias}' doesn't exist in db. Create organization via `/organization/new` call."
                ))),
                Err(_) => Err(AuthError::Denied(format!(
                    "Multiple organizations found with alias '{alias}'. Please use org_id_jwt_field instead or ensure organization aliases are unique."
                ))),
            });
        }
        Ok(Step::Got(Linked { org, org_alias, team_org_id, team_org, user, end_user }))
    }

    /// Between the records and `common_checks`, in LiteLLM's order: the organization exists, the
    /// email domain (not for admins; no email is no allowed domain either), the user exists (or
    /// is upserted). `enabled`: records are configured. Returns the user record.
    pub(super) fn member_checks(
        &self,
        ids: &Ids,
        linked: &Linked,
        enabled: bool,
        upserts: &mut Vec<Record>,
    ) -> Result<Option<Rc<User>>, AuthError> {
        if let Some(Err(e)) = &linked.org_alias {
            return Err(e.clone());
        }
        if let (true, Some(id), None) = (enabled, &ids.org_id, &linked.org) {
            return Err(AuthError::Denied(format!(
                "Organization doesn't exist in db. Organization={id}. Create organization via `/organization/new` call."
            )));
        }
        if let Some(domain) = &self.user_allowed_email_domain {
            let email = ids.user_email.as_deref();
            if email.and_then(|e| e.rsplit_once('@')).map(|(_, d)| d) != Some(domain.as_str()) {
                return Err(AuthError::EmailDomain(format!(
                    "Email domain not allowed. User email: {}. Allowed domain: {domain}",
                    email.unwrap_or("None")
                )));
            }
        }
        let user = match (enabled, &ids.user_id, &linked.user) {
            (true, Some(id), None) if self.user_id_upsert => {
                let u = User { user_id: id.clone(), user_email: ids.user_email.clone(), ..User::default() };
                upserts.push(Record::User(u.clone()));
                Some(Rc::new(u))
            }
            (true, Some(id), None) => {
                return Err(AuthError::Denied(format!(
                    "User doesn't exist in db. 'user_id'={id}. Create user via `/user/new` call."
                )))
            }
            (_, _, found) => found.clone(),
        };
        Ok(user)
    }

    /// LiteLLM's `validate_object_id`, once the team is final (the user's teams may give one).
    pub(super) fn validate_object_id(&self, ids: &Ids, team_id: Option<&str>) -> Result<(), AuthError> {
        if self.general_enforce_rbac && ids.user_id.is_none() && team_id.is_none() {
            return Err(forbidden(
                "No user or team id found in token. enforce_rbac is set to True. Token must belong to a proxy admin, team, or user.".into(),
            ));
        }
        Ok(())
    }

    /// LiteLLM's `common_checks` for the selected team, the user, the organization (the token's,
    /// else the team's) and the end user: blocked team, team or user models, then the budgets
    /// in LiteLLM's order (team, organization, user, end user; then the reservation).
    pub(super) fn common_checks(
        &self,
        team: Option<&Team>,
        user: Option<&User>,
        org: Option<&Record>,
        end_user: Option<&Record>,
        request: Request,
    ) -> Result<(), AuthError> {
        if let Some(t) = team {
            if t.blocked {
                return Err(AuthError::Denied(format!(
                    "Team={} is blocked. Update via `/team/unblock` if you're an admin.",
                    t.team_id
                )));
            }
            if let Some(m) = request.model {
                if !can_call_model(m, &t.models, &t.model_aliases, &self.access_groups) {
                    return Err(AuthError::TeamModelDenied { model: m.to_string(), allowed: t.models.clone() });
                }
            }
        } else if let (Some(u), Some(m)) = (user, request.model) {
            if !can_call_model(m, &u.models, &BTreeMap::new(), &self.access_groups) {
                return Err(AuthError::UserModelDenied { model: m.to_string() });
            }
        }
        let budgets = Budgets::of(request);
        if budgets.skip {
            return Ok(());
        }
        // The user's own budget does not apply to a team's request.
        let user = user.filter(|_| team.is_none());
        let end_user = match end_user {
            Some(Record::EndUser(e)) => Some(e),
            _ => None,
        };
        if let Some(t) = team {
            if let Some(max) = t.max_budget.filter(|max| t.spend > *max) {
                return Err(AuthError::BudgetExceeded(format!(
                    "Budget has been exceeded! Team={} Current cost: {}, Max budget: {}",
                    t.team_id,
                    py_float(t.spend),
                    py_float(max)
                )));
            }
        }
        self.org_budget(org)?;
        if let Some(u) = user {
            user_budget(u)?;
        }
        if let Some(EndUser { user_id, max_budget: Some(max), spend, .. }) = end_user {
            if !budgets.info_route && spend > max {
                return Err(AuthError::BudgetExceeded(format!(
                    "ExceededBudget: End User={user_id} over budget. Spend={}, Budget={}",
                    py_float(*spend),
                    py_float(*max)
                )));
            }
        }
        if budgets.reserve {
            if let Some(t) = team {
                if let Some(max) = t.max_budget.filter(|max| at_limit(t.spend, *max)) {
                    return Err(reservation_refused("Team", &t.team_id, t.spend, max));
                }
            }
            if let Some(EndUser { user_id, max_budget: Some(max), spend, .. }) = end_user {
                if at_limit(*spend, *max) {
                    return Err(reservation_refused("EndUser", user_id, *spend, *max));
                }
            }
        }
        Ok(())
    }

    /// LiteLLM's `organization_max_budget_check`: the token's organization, else the team's.
    fn org_budget(&self, org: Option<&Record>) -> Result<(), AuthError> {
        let Some(Record::Org(Org { organization_id, max_budget: Some(max), spend, .. })) = org else { return Ok(()) };
        if spend < max {
            return Ok(());
        }
        Err(AuthError::BudgetExceeded(format!(
            "Budget has been exceeded! Organization={organization_id} Current cost: {}, Max budget: {}",
            py_float(*spend),
            py_float(*max)
        )))
    }

    /// After `common_checks`' budgets, LiteLLM's `organization_role_based_access_check` (only
    /// a user whose record says `proxy_admin` may create organizations) and then its non-admin
    /// route rule (`_is_api_route_allowed`): LLM API and info routes. The refusal names the
    /// user record's role and its id, masked as LiteLLM masks it.
    pub(super) fn route_checks(&self, user: Option<&User>, route: &str) -> Result<(), AuthError> {
        if let Some(u) = user {
            if route == "/organization/new" && u.user_role.as_deref() != Some(ROLE_PROXY_ADMIN) {
                return Err(AuthError::OrgCreationDenied(u.user_role.clone()));
            }
        }
        if is_llm_api_route(route) || is_info_route(route) {
            return Ok(());
        }
        let role = user.and_then(|u| u.user_role.as_deref()).filter(|r| !r.is_empty()).unwrap_or("unknown");
        let user_id = user.map(|u| u.user_id.as_str()).filter(|id| !id.is_empty()).unwrap_or("unknown");
        Err(AuthError::Denied(format!(
            "Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route={route}. \
             Your role={role}. Your user_id={}",
            mask_user_id(user_id)
        )))
    }

    /// The role LiteLLM's `UserAPIKeyAuth` gives a non-admin: its user record's.
    pub(super) fn user_role(user: Option<&User>) -> &'static str {
        record_role(user.and_then(|u| u.user_role.as_deref()))
    }
}

fn as_user(record: &Record) -> Option<Rc<User>> {
    match record {
        Record::User(u) => Some(Rc::new(u.clone())),
        Record::UserBySso(found) | Record::UserByEmail(found) => Some(Rc::new(found.user.clone())),
        _ => None,
    }
}
