//! The whole decision, through `Policy::authorize`, on configurations compiled from JSON.

use super::*;
use crate::authz::identity::{ROLE_INTERNAL_USER, ROLE_PROXY_ADMIN};
use crate::config::compile;
use crate::records::{EndUser, Kind, Org, Record, RecordKey, Team, User};
use crate::store::records::RecordLookup;
use serde_json::{Map, Value};
use std::rc::Rc;
use serde_json::json;

pub(super) fn policy(general_settings: Value) -> Policy {
    // A static team makes record-backed fields valid; which records exist is up to each test.
    let cfg = json!({"public_key_url": "http://idp/jwks", "teams": [{"team_id": "cfg-team"}],
                     "general_settings": general_settings});
    compile(cfg.to_string().as_bytes(), &|_| None).unwrap().policy
}

pub(super) fn jwt(block: Value) -> Policy {
    policy(json!({"litellm_jwtauth": block}))
}

pub(super) fn claims(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn call(p: &Policy, c: Value, route: &str, model: Option<&str>) -> Result<Identity, AuthError> {
    let c = claims(c);
    match p.authorize(&c, &p.caller(&c), Request { route, model, team_header: None }, &mut NoRecords) {
        Outcome::Allow { identity, upserts, .. } => {
            assert!(upserts.is_empty());
            Ok(identity)
        }
        Outcome::Deny(e) => Err(e),
        Outcome::Need(keys) => panic!("no records configured, yet {keys:?} were needed"),
    }
}

/// Records from a fixed table; ids listed in `pending` are not known yet.
pub(super) struct Table {
    pub records: Vec<Record>,
    pub pending: Vec<String>,
    pub down: bool,
    pub asked: Vec<RecordKey>,
}

impl Table {
    pub fn new(records: Vec<Record>) -> Self {
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
        let kind_matches = |r: &Record| r.kind() == key.kind;
        match self.records.iter().find(|r| kind_matches(r) && r.id() == key.id) {
            Some(r) => RecordLookup::Found(Rc::new(r.clone())),
            None => RecordLookup::NotFound,
        }
    }
}

fn by_email(u: &User) -> Record {
    crate::records::UserAlias::of(Kind::UserEmail, u).unwrap()
}

pub(super) fn team(id: &str, models: &[&str]) -> Team {
    Team { team_id: id.into(), models: models.iter().map(|m| m.to_string()).collect(), ..Team::default() }
}

pub(super) fn with(p: &Policy, table: &mut Table, c: Value, route: &str, model: Option<&str>) -> Outcome {
    with_header(p, table, c, route, model, None)
}

/// As [`with`], with an `x-litellm-team-id` header.
pub(super) fn with_header(p: &Policy, table: &mut Table, c: Value, route: &str, model: Option<&str>, team_header: Option<&str>) -> Outcome {
    let c = claims(c);
    p.authorize(&c, &p.caller(&c), Request { route, model, team_header }, table)
}

pub(super) const CHAT: &str = "/v1/chat/completions";

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
    // Without a user record LiteLLM prints `unknown`, masked like an id.
    assert_eq!(
        e.message(),
        "Authentication Error, Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route=/key/generate. Your role=unknown. Your user_id=*******"
    );
}

#[test]
fn the_route_refusal_names_the_user_records_role_and_masked_id() {
    let p = jwt(json!({"user_id_jwt_field": "uid"}));
    let viewer = User { user_id: "carol.smith".into(), user_role: Some("internal_user_viewer".into()), ..User::default() };
    let mut table = Table::new(vec![Record::User(viewer), Record::User(User { user_id: "bob".into(), ..User::default() })]);
    let Outcome::Deny(e) = with(&p, &mut table, json!({"uid": "carol.smith"}), "/some/unknown/route", None) else { panic!() };
    assert_eq!(e.message(), "Authentication Error, Only proxy admin can be used to generate, delete, update info for new \
        keys/users/teams. Route=/some/unknown/route. Your role=internal_user_viewer. Your user_id=carol.***th");
    let Outcome::Deny(e) = with(&p, &mut table, json!({"uid": "bob"}), "/key/generate", None) else { panic!() };
    assert!(e.message().ends_with("Your role=unknown. Your user_id=***"), "{}", e.message());
}

#[test]
fn only_proxy_admin_records_may_create_organizations() {
    let p = jwt(json!({"user_id_jwt_field": "uid"}));
    let mut table = Table::new(vec![
        Record::User(User { user_id: "u1".into(), user_role: Some("internal_user".into()), ..User::default() }),
        Record::User(User { user_id: "u2".into(), ..User::default() }),
    ]);
    let Outcome::Deny(e) = with(&p, &mut table, json!({"uid": "u1"}), "/organization/new", None) else { panic!() };
    assert_eq!(e, AuthError::OrgCreationDenied(Some("internal_user".into())));
    let Outcome::Deny(e) = with(&p, &mut table, json!({"uid": "u2"}), "/organization/new", None) else { panic!() };
    assert_eq!(e.message(), "Only proxy admins can create new organizations. You are None");
    let e = call(&p, json!({}), "/organization/new", None).unwrap_err();
    assert!(e.message().contains("Only proxy admin can be used"), "without a user record, the route rule: {}", e.message());
}

#[test]
fn the_route_rule_comes_after_models_and_budgets_as_in_litellm() {
    let p = jwt(json!({"team_id_jwt_field": "tid"}));
    let mut table = Table::new(vec![Record::Team(Team { blocked: true, ..team("t-blocked", &[]) })]);
    let Outcome::Deny(e) = with(&p, &mut table, json!({"tid": "t-blocked"}), "/key/generate", None) else { panic!() };
    assert!(e.message().contains("Team=t-blocked is blocked"), "{}", e.message());
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
    let role = |c: Value| p.caller(&claims(c)).role;
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
    assert_eq!(p.caller(&c).role, Some(RbacRole::Team));
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
    assert!(e.message().contains("No team found in token"), "team_id_jwt_field makes a team required");
    assert!(p.needs_model(&p.caller(&claims(team)), false, false));
    assert!(!p.needs_model(&p.caller(&claims(user.clone())), false, false), "internal_user has no model list");

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
    assert!(p.needs_model(&p.caller(&claims(json!({}))), false, false));
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
fn an_admins_own_user_record_budget_holds_on_llm_routes() {
    let p = jwt(json!({"user_id_jwt_field": "uid", "user_email_jwt_field": "email",
        "admin_allowed_routes": ["openai_routes", "management_routes"]}));
    let broke = User { user_id: "root".into(), user_email: Some("Root@Example.com".into()), max_budget: Some(5.0), spend: 5.0, ..User::default() };
    let mut table = Table::new(vec![Record::User(broke.clone()), by_email(&broke)]);
    let admin = |uid: &str| json!({"uid": uid, "email": "root@example.com", "scope": "litellm_proxy_admin"});
    let Outcome::Deny(e) = with(&p, &mut table, admin("root"), CHAT, None) else { panic!() };
    assert_eq!(e, AuthError::BudgetExceeded("ExceededBudget: User=root over budget. Spend=5.0, Budget=5.0".into()));
    // LiteLLM reads the admin's record by email too, and keeps the token's user id.
    let Outcome::Deny(e) = with(&p, &mut table, admin("root-sso"), CHAT, None) else { panic!() };
    assert_eq!(e.error_type(), "budget_exceeded");
    // Management routes spend nothing: LiteLLM skips budgets there.
    match with(&p, &mut table, admin("root"), "/key/generate", None) {
        Outcome::Allow { identity, .. } => {
            assert_eq!((identity.user_id.as_deref(), identity.user_role, identity.admin), (Some("root"), ROLE_PROXY_ADMIN, true));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(with(&p, &mut table, json!({"uid": "other", "scope": "litellm_proxy_admin"}), CHAT, None), Outcome::Allow { .. }),
        "no record: admitted");
    table.down = true;
    assert!(matches!(with(&p, &mut table, admin("root"), CHAT, None), Outcome::Deny(AuthError::RecordsUnavailable(_))));
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
    assert_eq!(e.message(), "Authentication Error, No team found in token. Checked team_id field 'team' and team_alias field 'None'.");
    for (field, hint) in [
        ("roles.0", " Hint: dot-notation array indexing (e.g. 'roles.0') is not supported. Use 'roles' instead — LiteLLM \
            automatically uses the first element when the field value is a list."),
        ("roles[0]", " Hint: array indexing (e.g. 'roles[0]') is not supported in team_id_jwt_field. Use 'roles' instead — \
            LiteLLM automatically uses the first element when the field value is a list."),
        ("org.team", ""),
    ] {
        let e = call(&jwt(json!({"team_id_jwt_field": field})), json!({}), CHAT, None).unwrap_err();
        assert_eq!(e.message(), format!("Authentication Error, No team found in token. Checked team_id field '{field}' and \
            team_alias field 'None'.{hint}"));
    }
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
    // At its limit, a team is refused when a model is named (LiteLLM reserves the request's
    // estimated cost) and admitted without one; over it, always.
    let Outcome::Deny(e) = with(&p, &mut table, json!({"tid": "t-broke"}), CHAT, Some("gpt-4o")) else { panic!() };
    assert_eq!((e.status(), e.error_type()), (400, "budget_exceeded"));
    assert_eq!(e.message(), "Budget has been exceeded! Team=t-broke Current cost: 10.0, Max budget: 10.0");
    assert!(matches!(with(&p, &mut table, json!({"tid": "t-broke"}), CHAT, None), Outcome::Allow { .. }));
    assert!(matches!(with(&p, &mut table, json!({"tid": "t-broke"}), "/v1/models", None), Outcome::Allow { .. }));
    assert!(matches!(with(&p, &mut table, json!({"tid": "t-broke"}), "/v1/messages/count_tokens", Some("gpt-4o")), Outcome::Allow { .. }),
        "token counting bills nothing: no reservation");
    let Outcome::Deny(e) = with(&p, &mut table, json!({"tid": "ghost"}), CHAT, None) else { panic!() };
    assert_eq!(e.message(), "Authentication Error, Team doesn't exist in db. Team=ghost. Create team via `/team/new` call.");
}

#[test]
fn unknown_team_is_upserted_when_configured() {
    let p = jwt(json!({"team_id_jwt_field": "tid", "team_id_upsert": true}));
    let mut table = Table::new(vec![]);
    match with(&p, &mut table, json!({"tid": "fresh"}), CHAT, Some("any")) {
        Outcome::Allow { identity, upserts, .. } => {
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
    assert!(p.needs_model(&p.caller(&claims(json!({"sub": "x"}))), true, false));
    assert!(!p.needs_model(&p.caller(&claims(json!({"scope": "litellm_proxy_admin"}))), true, false));
    assert!(p.needs_model(&p.caller(&claims(json!({"scope": "litellm_proxy_admin"}))), true, true), "an admin's header team may have a model list");
    assert!(!p.needs_model(&p.caller(&claims(json!({"sub": "x"}))), false, false));
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

#[test]
fn a_user_is_found_by_email_when_no_user_has_the_id() {
    // LiteLLM's `_get_fuzzy_user_object`: the id (here the email itself) is unknown, the email
    // matches a user case-insensitively: that user's record applies and its id is forwarded.
    let p = jwt(json!({"user_email_jwt_field": "email", "user_id_upsert": true}));
    let svc = User { user_id: "svc-1".into(), user_email: Some("Svc@Example.com".into()), models: vec!["gpt-4o".into()],
        user_role: Some("internal_user_viewer".into()), ..User::default() };
    let mut table = Table::new(vec![Record::User(svc.clone()), by_email(&svc)]);
    match with(&p, &mut table, json!({"email": "svc@example.COM"}), CHAT, Some("gpt-4o")) {
        Outcome::Allow { identity, upserts, .. } => {
            assert_eq!(identity.user_id.as_deref(), Some("svc-1"));
            assert_eq!(identity.user_email.as_deref(), Some("Svc@Example.com"), "the record's email, as LiteLLM's");
            assert_eq!(identity.user_role, "internal_user_viewer", "the record's role");
            assert!(upserts.is_empty(), "found by email: nothing to create");
        }
        other => panic!("{other:?}"),
    }
    let Outcome::Deny(e) = with(&p, &mut table, json!({"email": "svc@example.com"}), CHAT, Some("o1")) else { panic!() };
    assert_eq!(e, AuthError::UserModelDenied { model: "o1".into() }, "the email user's models apply");
    assert_eq!((e.status(), e.error_type(), e.param()), (403, "user_model_access_denied", Some("model")));
    // The id lookup comes first; the email one only once the id is known to be missing.
    table.asked.clear();
    table.pending = vec!["svc@example.com".into()];
    assert_eq!(with(&p, &mut table, json!({"email": "svc@example.com"}), CHAT, None),
               Outcome::Need(vec![RecordKey { kind: Kind::User, id: "svc@example.com".into() }]));
    table.pending.clear();
    match with(&p, &mut table, json!({"email": "new@example.com"}), CHAT, None) {
        Outcome::Allow { identity, upserts, .. } => {
            assert_eq!(identity.user_id.as_deref(), Some("new@example.com"));
            assert_eq!(upserts.len(), 1, "neither id nor email known: upserted");
        }
        other => panic!("{other:?}"),
    }
    assert!(table.asked.contains(&RecordKey { kind: Kind::UserEmail, id: "new@example.com".into() }));
}

#[test]
fn a_user_found_by_email_keeps_its_budget() {
    let p = jwt(json!({"user_id_jwt_field": "sub", "user_email_jwt_field": "email", "user_id_upsert": true}));
    let carol = User { user_id: "carol".into(), user_email: Some("carol@other.org".into()), max_budget: Some(50.0), spend: 51.0, ..User::default() };
    let mut table = Table::new(vec![Record::User(carol.clone()), by_email(&carol)]);
    let Outcome::Deny(e) = with(&p, &mut table, json!({"sub": "alice", "email": "carol@other.org"}), CHAT, Some("o1")) else { panic!() };
    assert_eq!(e.message(), "ExceededBudget: User=carol over budget. Spend=51.0, Budget=50.0",
        "never a fresh upserted user without the budget");
}

#[test]
fn an_unknown_object_id_team_is_refused_after_the_user_and_never_upserted() {
    let p = jwt(json!({"roles_jwt_field": "roles", "object_id_jwt_field": "oid", "team_id_jwt_field": "tid",
        "team_id_upsert": true, "user_id_jwt_field": "uid", "role_mappings": [{"role": "svc", "internal_role": "team"}]}));
    let mut table = Table::new(vec![Record::Team(team("t1", &[])), Record::User(User { user_id: "u1".into(), ..User::default() })]);
    let Outcome::Deny(e) = with(&p, &mut table, json!({"tid": "t1", "oid": "ghost", "uid": "u1"}), CHAT, None) else { panic!() };
    assert_eq!(e.message(), "Authentication Error, Team doesn't exist in db. Team=ghost. Create team via `/team/new` call.");
    let Outcome::Deny(e) = with(&p, &mut table, json!({"tid": "t1", "oid": "ghost", "uid": "nobody"}), CHAT, None) else { panic!() };
    assert!(e.message().contains("User doesn't exist in db. 'user_id'=nobody."), "the user first: {}", e.message());
}

#[test]
fn groups_path_names_the_last_team_refused_for_the_route() {
    let p = jwt(json!({"team_ids_jwt_field": "groups", "team_allowed_routes": ["/v1/chat/completions"]}));
    let mut table = Table::new(vec![Record::Team(team("t2", &[])), Record::Team(team("t3", &[]))]);
    let Outcome::Deny(e) = with(&p, &mut table, json!({"groups": ["t3", "t2"]}), "/v1/messages", Some("m")) else { panic!() };
    assert_eq!(e.message(), "Team t3 can access model m but route /v1/messages is not in litellm_jwtauth.team_allowed_routes");
}

#[test]
fn budgets_only_apply_where_litellm_checks_them_and_in_its_order() {
    let p = jwt(json!({"team_id_jwt_field": "tid", "user_id_jwt_field": "uid", "org_id_jwt_field": "org", "end_user_id_jwt_field": "cust"}));
    let over = |id: &str| Team { max_budget: Some(1.0), spend: 2.0, organization_id: Some("broke-org".into()), ..team(id, &[]) };
    let mut table = Table::new(vec![
        Record::Team(over("t-over")),
        Record::Team(team("t-ok", &[])),
        Record::Org(Org { organization_id: "broke-org".into(), max_budget: Some(5.0), spend: 5.0, ..Org::default() }),
        Record::Org(Org { organization_id: "ok-org".into(), ..Org::default() }),
        Record::User(User { user_id: "u".into(), ..User::default() }),
        Record::EndUser(EndUser { user_id: "c-at".into(), max_budget: Some(3.0), spend: 3.0, ..EndUser::default() }),
        Record::EndUser(EndUser { user_id: "c-over".into(), max_budget: Some(3.0), spend: 4.0, ..EndUser::default() }),
    ]);
    let outcome = |table: &mut Table, c: Value, route: &str, model: Option<&str>| with(&p, table, c, route, model);
    let message = |o: Outcome| match o { Outcome::Deny(e) => e.message(), other => panic!("{other:?}") };
    // Team first, then the organization (here the team's).
    assert!(message(outcome(&mut table, json!({"tid": "t-over", "uid": "u", "cust": "c-over"}), CHAT, None)).contains("Team=t-over"));
    let m = message(outcome(&mut table, json!({"tid": "t-ok", "uid": "u", "org": "broke-org", "cust": "c-over"}), CHAT, None));
    assert!(m.contains("Organization=broke-org"), "{m}");
    // No budget on management, info or model-discovery routes (the route rule answers there).
    for route in ["/v1/models", "/model/info", "/key/info"] {
        assert!(matches!(outcome(&mut table, json!({"tid": "t-over", "uid": "u"}), route, None), Outcome::Allow { .. }), "{route}");
    }
    let m = message(outcome(&mut table, json!({"tid": "t-over", "uid": "u"}), "/key/generate", None));
    assert!(m.contains("Only proxy admin"), "{m}");
    // End users: over is refused, at the limit only when a model is named; never on info routes.
    let end = |c: &str| json!({"tid": "t-ok", "uid": "u", "org": "ok-org", "cust": c});
    assert_eq!(message(outcome(&mut table, end("c-over"), CHAT, None)), "ExceededBudget: End User=c-over over budget. Spend=4.0, Budget=3.0");
    assert!(matches!(outcome(&mut table, end("c-at"), CHAT, None), Outcome::Allow { .. }));
    assert_eq!(message(outcome(&mut table, end("c-at"), CHAT, Some("gpt-4o"))), "Budget has been exceeded! EndUser=c-at Current cost: 3.0, Max budget: 3.0");
    assert!(matches!(outcome(&mut table, end("c-over"), "/health", None), Outcome::Allow { .. }), "an info route, though budgets apply there");
}

#[test]
fn a_user_records_role_is_forwarded() {
    let p = jwt(json!({"user_id_jwt_field": "uid"}));
    let mut table = Table::new(vec![
        Record::User(User { user_id: "v".into(), user_role: Some("proxy_admin_viewer".into()), ..User::default() }),
        Record::User(User { user_id: "a".into(), user_role: Some("proxy_admin".into()), ..User::default() }),
        Record::User(User { user_id: "n".into(), ..User::default() }),
    ]);
    let role = |table: &mut Table, uid: &str| match with(&p, table, json!({"uid": uid}), CHAT, None) {
        Outcome::Allow { identity, .. } => (identity.user_role, identity.admin),
        other => panic!("{other:?}"),
    };
    assert_eq!(role(&mut table, "v"), ("proxy_admin_viewer", false));
    assert_eq!(role(&mut table, "a"), (ROLE_PROXY_ADMIN, false), "forwarded as LiteLLM's, but not the admin scope");
    assert_eq!(role(&mut table, "n"), (ROLE_INTERNAL_USER, false));
    let Outcome::Deny(e) = with(&p, &mut table, json!({"uid": "a"}), "/key/generate", None) else { panic!() };
    assert!(e.message().contains("Your role=proxy_admin."), "record roles open no routes here: {}", e.message());
}

#[test]
fn pass_through_provider_routes_are_llm_routes_for_everyone() {
    let p = jwt(json!({}));
    assert!(call(&p, json!({"sub": "u"}), "/bedrock/model/claude/invoke", None).is_ok());
    assert!(call(&p, json!({"sub": "u"}), "/anthropic/v1/messages", None).is_ok());
    assert!(call(&p, json!({"sub": "u"}), "/model_group/info", None).is_ok(), "an info route");
    assert!(call(&p, json!({"sub": "u"}), "/bedrockx/y", None).is_err());
}

#[test]
fn the_sso_id_is_tried_before_the_email() {
    let p = jwt(json!({"user_id_jwt_field": "sub", "user_email_jwt_field": "email", "user_id_upsert": true}));
    let sso = User { user_id: "u-sso".into(), sso_user_id: Some("okta|7".into()), max_budget: Some(1.0), spend: 1.0, ..User::default() };
    let mail = User { user_id: "u-mail".into(), user_email: Some("a@x.io".into()), ..User::default() };
    let alias = |kind, u: &User| crate::records::UserAlias::of(kind, u).unwrap();
    let mut table = Table::new(vec![Record::User(sso.clone()), alias(Kind::UserSso, &sso), Record::User(mail.clone()), alias(Kind::UserEmail, &mail)]);
    let Outcome::Deny(e) = with(&p, &mut table, json!({"sub": "okta|7", "email": "a@x.io"}), CHAT, Some("m")) else { panic!() };
    assert_eq!(e.message(), "ExceededBudget: User=u-sso over budget. Spend=1.0, Budget=1.0", "the SSO match wins, and is never upserted over");
    match with(&p, &mut table, json!({"sub": "okta|8", "email": "A@X.io"}), CHAT, Some("m")) {
        Outcome::Allow { identity, upserts, .. } => assert_eq!((identity.user_id.as_deref(), upserts.len()), (Some("u-mail"), 0)),
        other => panic!("{other:?}"),
    }
    table.asked.clear();
    // Without the id claim, the email is the id (LiteLLM's `get_user_id` default): all three.
    let _ = with(&p, &mut table, json!({"email": "b@x.io"}), CHAT, None);
    assert_eq!(table.asked.iter().map(|k| (k.kind, k.id.as_str())).collect::<Vec<_>>(),
        [(Kind::User, "b@x.io"), (Kind::UserSso, "b@x.io"), (Kind::UserEmail, "b@x.io")]);
}
