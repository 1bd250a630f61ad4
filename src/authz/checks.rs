//! What LiteLLM checks once the team is known: the admin path (admin routes, the admin's own
//! budget), the linked records (organization, the team's organization, user, end user), the
//! checks between them in LiteLLM's order (organization exists, email domain, user exists or is
//! upserted, `validate_object_id`, the non-admin route rule), and `common_checks` (blocked team,
//! team or user models, budgets, end user, organization budget).

use super::identity::{Identity, Ids, ROLE_PROXY_ADMIN};
use super::model_access::can_call_model;
use super::{forbidden, model_not_available, Lookups, Outcome, Policy, Step};
use crate::error::AuthError;
use crate::pytext::{py_float, py_list};
use crate::records::{EndUser, Kind, Org, Record, Team, User};
use std::collections::BTreeMap;
use std::rc::Rc;

/// The records a non-admin decision reads besides the team.
pub(super) struct Linked {
    pub org: Option<Rc<Record>>,
    /// Without an org claim, the selected team's organization is the org (LiteLLM's
    /// organization budget check and its `org_id` read it from the team).
    pub team_org_id: Option<String>,
    pub team_org: Option<Rc<Record>>,
    pub user: Option<Rc<Record>>,
    pub end_user: Option<Rc<Record>>,
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
    /// `common_checks` for the admin's own user record (budget).
    pub(super) fn admin(&self, ids: Ids, route: &str, records: &mut Lookups) -> Result<Outcome, AuthError> {
        if !self.admin_allowed_routes.matches(route) {
            return Err(AuthError::Denied(format!(
                "Admin not allowed to access this route. Route={route}, Allowed Routes={}",
                py_list(&self.admin_allowed_routes.entries())
            )));
        }
        let user = records.get(Kind::User, ids.user_id.as_deref())?;
        if let Some(keys) = records.pending() {
            return Ok(Outcome::Need(keys));
        }
        if let Some(Record::User(u)) = user.as_deref() {
            user_budget(u)?;
        }
        let identity = Identity {
            user_id: ids.user_id.or(ids.sub),
            user_role: ROLE_PROXY_ADMIN,
            user_email: ids.user_email,
            org_id: ids.org_id,
            ..Identity::default()
        };
        Ok(Outcome::Allow { identity, upserts: Vec::new() })
    }

    /// The organization, the team's organization, the user and the end user, all at once.
    pub(super) fn linked(&self, ids: &Ids, team: Option<&Record>, records: &mut Lookups) -> Result<Step<Linked>, AuthError> {
        let org = records.get(Kind::Org, ids.org_id.as_deref())?;
        let team_org_id = match (&ids.org_id, team) {
            (None, Some(Record::Team(t))) => t.organization_id.clone(),
            _ => None,
        };
        let team_org = records.get(Kind::Org, team_org_id.as_deref())?;
        let user = records.get(Kind::User, ids.user_id.as_deref())?;
        let end_user = records.get(Kind::EndUser, ids.end_user_id.as_deref())?;
        if let Some(keys) = records.pending() {
            return Ok(Step::Need(keys));
        }
        Ok(Step::Got(Linked { org, team_org_id, team_org, user, end_user }))
    }

    /// Between the records and `common_checks`, in LiteLLM's order: the organization exists, the
    /// email domain (not for admins; no email is no allowed domain either), the user exists (or
    /// is upserted), `validate_object_id`, the non-admin route rule. `enabled`: records are
    /// configured. Returns the user record.
    pub(super) fn member_checks(
        &self,
        ids: &Ids,
        team_id: Option<&str>,
        linked: &Linked,
        enabled: bool,
        route: &str,
        upserts: &mut Vec<Record>,
    ) -> Result<Option<Rc<Record>>, AuthError> {
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
                let r = Record::User(User { user_id: id.clone(), user_email: ids.user_email.clone(), ..User::default() });
                upserts.push(r.clone());
                Some(Rc::new(r))
            }
            (true, Some(id), None) => {
                return Err(AuthError::Denied(format!(
                    "User doesn't exist in db. 'user_id'={id}. Create user via `/user/new` call."
                )))
            }
            (_, _, found) => found.clone(),
        };
        if self.general_enforce_rbac && ids.user_id.is_none() && team_id.is_none() {
            return Err(forbidden(
                "No user or team id found in token. enforce_rbac is set to True. Token must belong to a proxy admin, team, or user.".into(),
            ));
        }
        // common_checks: non-admins may call LLM API and info routes only.
        if !self.non_admin_routes.matches(route) {
            return Err(AuthError::Denied(format!(
                "Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route={route}. Your role={}. Your user_id={}",
                "unknown",
                ids.user_id.as_deref().unwrap_or("unknown")
            )));
        }
        Ok(user)
    }

    /// LiteLLM's `common_checks` for the selected team, user and end user.
    pub(super) fn common_checks(&self, team: Option<&Team>, user: Option<&Record>, end_user: Option<&Record>, model: Option<&str>) -> Result<(), AuthError> {
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
                    return Err(model_not_available(m));
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
        Ok(())
    }

    /// LiteLLM's `organization_max_budget_check`: the token's organization, else the team's.
    pub(super) fn org_budget(&self, org: Option<&Record>) -> Result<(), AuthError> {
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
}
