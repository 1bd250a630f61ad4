//! Which team a decision goes on with: the `x-litellm-team-id` header, `team_claim_fallback`,
//! `fallback_to_db_teams` and the user's only team (newest LiteLLM's `authorize_jwt`).

use super::tests::{jwt, team, with, with_header, Table, CHAT};
use super::*;
use crate::records::{Org, Record, Team, User};
use serde_json::json;

fn user(id: &str, teams: &[&str]) -> Record {
    Record::User(User { user_id: id.into(), teams: teams.iter().map(|t| t.to_string()).collect(), ..User::default() })
}

fn allowed_team(o: Outcome) -> Option<String> {
    match o {
        Outcome::Allow { identity, .. } => identity.team_id,
        other => panic!("expected an admission, got {other:?}"),
    }
}

fn refused(o: Outcome) -> (u32, String) {
    match o {
        Outcome::Deny(e) => (e.status(), e.message()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn groups_policy(extra: serde_json::Value) -> Policy {
    let mut block = json!({"team_ids_jwt_field": "groups", "user_id_jwt_field": "sub"});
    if let (Some(b), Some(e)) = (block.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    jwt(block)
}

fn teams_table() -> Table {
    Table::new(vec![
        Record::Team(team("t1", &["gpt-4o"])),
        Record::Team(team("t2", &["claude-3-5-sonnet"])),
        Record::Team(team("t3", &[])),
        user("alice", &[]),
    ])
}

#[test]
fn the_header_picks_one_of_the_tokens_teams() {
    let p = groups_policy(json!({}));
    let c = json!({"sub": "alice", "groups": ["t1", "t2"]});
    // Without the header, the groups path takes the first team that may use the model.
    assert_eq!(allowed_team(with(&p, &mut teams_table(), c.clone(), CHAT, Some("gpt-4o"))).as_deref(), Some("t1"));
    assert_eq!(allowed_team(with_header(&p, &mut teams_table(), c.clone(), CHAT, None, Some("t2"))).as_deref(), Some("t2"));
    // The chosen team's models apply: t2 may not use gpt-4o, whatever t1 may.
    let (status, message) = refused(with_header(&p, &mut teams_table(), c, CHAT, Some("gpt-4o"), Some("t2")));
    assert_eq!(status, 401, "{message}");
    assert!(message.starts_with("team not allowed to access model. This team can only access models=['claude-3-5-sonnet']"), "{message}");
}

#[test]
fn a_header_naming_a_team_outside_the_token_is_refused_with_litellms_text() {
    let p = groups_policy(json!({}));
    let c = json!({"sub": "alice", "groups": ["t2", "t1"]});
    let (status, message) = refused(with_header(&p, &mut teams_table(), c, CHAT, None, Some("t3")));
    assert_eq!(status, 403);
    assert_eq!(
        message,
        "x-litellm-team-id 't3' does not resolve to a team id or a unique team alias in your JWT's allowed teams. \
         Allowed team ids: ['t1', 't2']"
    );
    // The single team claim is one of the allowed teams too.
    let p = jwt(json!({"team_id_jwt_field": "team"}));
    assert_eq!(allowed_team(with_header(&p, &mut teams_table(), json!({"team": "t1"}), CHAT, None, Some("t1"))).as_deref(), Some("t1"));
    let (_, message) = refused(with_header(&p, &mut teams_table(), json!({"team": "t1"}), CHAT, None, Some("t2")));
    assert!(message.ends_with("Allowed team ids: ['t1']"), "{message}");
}

#[test]
fn a_header_naming_an_allowed_team_no_record_has_is_refused() {
    let p = groups_policy(json!({}));
    let c = json!({"sub": "alice", "groups": ["t1", "t-gone"]});
    let (status, message) = refused(with_header(&p, &mut teams_table(), c, CHAT, None, Some("t-gone")));
    assert_eq!((status, message.as_str()), (401, "Authentication Error, Team doesn't exist in db. Team=t-gone. Create team via `/team/new` call."));
}

#[test]
fn an_empty_header_selects_nothing() {
    let p = groups_policy(json!({}));
    let c = json!({"sub": "alice", "groups": ["t1"]});
    assert_eq!(allowed_team(with_header(&p, &mut teams_table(), c, CHAT, Some("gpt-4o"), Some(""))).as_deref(), Some("t1"));
}

#[test]
fn fallback_to_db_teams_takes_the_users_first_team_that_may_use_the_model() {
    let p = groups_policy(json!({"fallback_to_db_teams": true}));
    let mut table = teams_table();
    table.records.push(user("bob", &["t-gone", "t2", "t1"]));
    let c = json!({"sub": "bob"});
    assert_eq!(allowed_team(with(&p, &mut table, c.clone(), CHAT, Some("gpt-4o"))).as_deref(), Some("t1"));
    assert_eq!(allowed_team(with(&p, &mut table, c.clone(), CHAT, Some("claude-3-5-sonnet"))).as_deref(), Some("t2"));
    assert_eq!(allowed_team(with(&p, &mut table, c.clone(), CHAT, None)).as_deref(), Some("t2"), "no model: the first existing team");
    // No team may use the model: the request goes on without a team, unless teams are enforced.
    assert_eq!(allowed_team(with(&p, &mut table, c.clone(), CHAT, Some("o1"))), None);
    let p = groups_policy(json!({"fallback_to_db_teams": true, "enforce_team_based_model_access": true}));
    let (status, message) = refused(with(&p, &mut table, c, CHAT, Some("o1")));
    assert_eq!(status, 403);
    assert_eq!(message, "No team you are a member of has access to the requested model: o1. Check `/models` to see the models available to you.");
    let (_, message) = refused(with(&p, &mut table, json!({"sub": "alice"}), CHAT, Some("o1")));
    assert_eq!(message, "User is not a member of any team. Add the user to a team via the LiteLLM UI or API.");
}

#[test]
fn fallback_to_db_teams_is_only_for_tokens_without_team_claims() {
    let p = groups_policy(json!({"fallback_to_db_teams": true}));
    let mut table = teams_table();
    table.records.push(user("bob", &["t2"]));
    // The token names t1: the groups path decides, the user's t2 does not come into it.
    let (status, _) = refused(with(&p, &mut table, json!({"sub": "bob", "groups": ["t1"]}), CHAT, Some("claude-3-5-sonnet")));
    assert_eq!(status, 403);
}

#[test]
fn under_fallback_to_db_teams_the_header_may_name_any_of_the_users_teams() {
    let p = groups_policy(json!({"fallback_to_db_teams": true}));
    let mut table = teams_table();
    table.records.push(user("bob", &["t2", "t3"]));
    let c = json!({"sub": "bob", "groups": ["t1"]});
    assert_eq!(allowed_team(with_header(&p, &mut table, c.clone(), CHAT, None, Some("t3"))).as_deref(), Some("t3"));
    // Not a member, or no such team: the same answer, naming only what was sent.
    let expected = |h: &str| {
        format!("x-litellm-team-id '{h}' does not resolve to a team id or a unique team alias among your team memberships.")
    };
    let mut table2 = teams_table();
    table2.records.push(user("bob", &["t2"]));
    assert_eq!(refused(with_header(&p, &mut table2, c.clone(), CHAT, None, Some("t3"))), (403, expected("t3")));
    assert_eq!(refused(with_header(&p, &mut table2, c, CHAT, None, Some("t-none"))), (403, expected("t-none")));
}

#[test]
fn a_provisional_header_team_must_be_allowed_the_route() {
    let p = groups_policy(json!({"fallback_to_db_teams": true, "team_allowed_routes": ["openai_routes"]}));
    let mut table = teams_table();
    table.records.push(user("bob", &["t3"]));
    let (status, message) = refused(with_header(&p, &mut table, json!({"sub": "bob"}), "/key/info", None, Some("t3")));
    assert_eq!(status, 403);
    assert_eq!(message, "Team 't3' (from x-litellm-team-id header) is not allowed to access route '/key/info'.");
}

#[test]
fn a_user_with_exactly_one_team_acts_for_it_when_the_token_names_none() {
    // No flag: newest LiteLLM always does this, so the team's rules must hold here too.
    let p = jwt(json!({"user_id_jwt_field": "sub"}));
    let blocked = Team { blocked: true, ..team("t-blocked", &[]) };
    let mut table = Table::new(vec![Record::Team(blocked), Record::Team(team("t1", &["gpt-4o"])), user("solo", &["t-blocked"]), user("duo", &["t1", "t-blocked"]), user("lone", &["t1"])]);
    let (status, message) = refused(with(&p, &mut table, json!({"sub": "solo"}), CHAT, Some("gpt-4o")));
    assert_eq!(status, 401);
    assert!(message.starts_with("Authentication Error, Team=t-blocked is blocked."), "{message}");
    assert_eq!(allowed_team(with(&p, &mut table, json!({"sub": "duo"}), CHAT, Some("gpt-4o"))), None, "two teams: none is chosen");
    assert_eq!(allowed_team(with(&p, &mut table, json!({"sub": "lone"}), CHAT, Some("gpt-4o"))).as_deref(), Some("t1"));
    let (status, _) = refused(with(&p, &mut table, json!({"sub": "lone"}), CHAT, Some("o1")));
    assert_eq!(status, 401, "the only team's model list applies");
}

#[test]
fn the_users_only_team_brings_its_organizations_budget() {
    let p = jwt(json!({"user_id_jwt_field": "sub"}));
    let t = Team { organization_id: Some("acme".into()), ..team("t1", &[]) };
    let org = Org { organization_id: "acme".into(), max_budget: Some(10.0), spend: 10.0, ..Org::default() };
    let mut table = Table::new(vec![Record::Team(t), Record::Org(org), user("lone", &["t1"])]);
    let (status, message) = refused(with(&p, &mut table, json!({"sub": "lone"}), CHAT, Some("gpt-4o")));
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("acme"), "{message}");
}

#[test]
fn team_claim_fallback_lets_an_unknown_claimed_team_fall_through() {
    let p = jwt(json!({"team_id_jwt_field": "team", "user_id_jwt_field": "sub"}));
    let mut table = teams_table();
    table.records.push(user("lone", &["t2"]));
    let (status, _) = refused(with(&p, &mut table, json!({"sub": "lone", "team": "t-gone"}), CHAT, None));
    assert_eq!(status, 401, "without the flag an unknown team is refused");
    let p = jwt(json!({"team_id_jwt_field": "team", "user_id_jwt_field": "sub", "team_claim_fallback": true}));
    assert_eq!(allowed_team(with(&p, &mut table, json!({"sub": "lone", "team": "t-gone"}), CHAT, None)).as_deref(), Some("t2"));
    // A claimed team that exists is still the team.
    assert_eq!(allowed_team(with(&p, &mut table, json!({"sub": "lone", "team": "t1"}), CHAT, None)).as_deref(), Some("t1"));
}

#[test]
fn team_claim_fallback_on_the_groups_path_only_when_no_claimed_team_exists() {
    let p = groups_policy(json!({"team_claim_fallback": true}));
    let mut table = teams_table();
    table.records.push(user("lone", &["t2"]));
    let gone = json!({"sub": "lone", "groups": ["t-gone"]});
    assert_eq!(allowed_team(with(&p, &mut table, gone, CHAT, Some("claude-3-5-sonnet"))).as_deref(), Some("t2"));
    // t1 exists but may not use the model: refused as without the flag.
    let (status, message) = refused(with(&p, &mut table, json!({"sub": "lone", "groups": ["t1"]}), CHAT, Some("claude-3-5-sonnet")));
    assert_eq!(status, 403);
    assert!(message.starts_with("No team has access to the requested model"), "{message}");
}

#[test]
fn enforce_team_based_model_access_refuses_a_token_without_teams_on_any_team_path() {
    // LiteLLM's groups search runs whenever no team was chosen, configured groups field or not.
    let p = jwt(json!({"user_id_jwt_field": "sub", "enforce_team_based_model_access": true}));
    let (status, message) = refused(with(&p, &mut teams_table(), json!({"sub": "alice"}), CHAT, Some("gpt-4o")));
    assert_eq!(status, 403);
    assert!(message.starts_with("No teams found in token."), "{message}");
}

#[test]
fn a_user_deactivated_through_scim_is_refused() {
    let scim_off = Record::User(User { user_id: "gone".into(), metadata: json!({"scim_active": false}), ..User::default() });
    let scim_on = Record::User(User { user_id: "here".into(), metadata: json!({"scim_active": true}), ..User::default() });
    let p = jwt(json!({"user_id_jwt_field": "sub"}));
    let mut table = Table::new(vec![scim_off, scim_on]);
    let (status, message) = refused(with(&p, &mut table, json!({"sub": "gone"}), CHAT, None));
    assert_eq!((status, message.as_str()), (401, "User=gone has been deactivated via SCIM. Keys owned by this user cannot be used."));
    assert!(matches!(with(&p, &mut table, json!({"sub": "here"}), CHAT, None), Outcome::Allow { .. }));
    // Admins too: LiteLLM checks it before the admin returns.
    let (status, _) = refused(with(&p, &mut table, json!({"sub": "gone", "scope": "litellm_proxy_admin"}), "/key/generate", None));
    assert_eq!(status, 401);
}

#[test]
fn an_admins_header_attributes_llm_requests_to_the_team_and_is_ignored_elsewhere() {
    let p = jwt(json!({"admin_allowed_routes": ["openai_routes", "management_routes"]}));
    let admin = json!({"sub": "root", "scope": "litellm_proxy_admin"});
    assert_eq!(allowed_team(with_header(&p, &mut teams_table(), admin.clone(), CHAT, None, Some("t2"))).as_deref(), Some("t2"));
    assert_eq!(allowed_team(with_header(&p, &mut teams_table(), admin.clone(), "/key/generate", None, Some("t2"))), None);
    assert_eq!(allowed_team(with_header(&p, &mut teams_table(), admin, CHAT, None, Some("t-none"))), None, "unknown: admitted without a team");
}

#[test]
fn a_pending_user_team_is_fetched_before_deciding() {
    let p = jwt(json!({"user_id_jwt_field": "sub"}));
    let mut table = Table::new(vec![Record::Team(team("t1", &["gpt-4o"])), user("lone", &["t1"])]);
    table.pending = vec!["t1".into()];
    match with(&p, &mut table, json!({"sub": "lone"}), CHAT, Some("o1")) {
        Outcome::Need(keys) => assert_eq!(keys, vec![RecordKey { kind: Kind::Team, id: "t1".into() }]),
        other => panic!("{other:?}"),
    }
    table.down = true;
    let (status, _) = refused(with(&p, &mut table, json!({"sub": "lone"}), CHAT, Some("o1")));
    assert_eq!(status, 503, "a source that cannot answer is never no team");
}

#[test]
fn a_team_an_admin_acts_for_keeps_its_rules() {
    let p = jwt(json!({"admin_allowed_routes": ["openai_routes"]}));
    let admin = json!({"sub": "root", "scope": "litellm_proxy_admin"});
    let mut table = teams_table();
    table.records.push(Record::Team(Team { blocked: true, ..team("t-blocked", &[]) }));
    let (status, message) = refused(with_header(&p, &mut table, admin.clone(), CHAT, Some("gpt-4o"), Some("t2")));
    assert_eq!(status, 401);
    assert!(message.starts_with("team not allowed to access model."), "{message}");
    let (_, message) = refused(with_header(&p, &mut table, admin.clone(), CHAT, None, Some("t-blocked")));
    assert!(message.starts_with("Authentication Error, Team=t-blocked is blocked."), "{message}");
    assert!(matches!(with_header(&p, &mut table, admin, CHAT, Some("gpt-4o"), None), Outcome::Allow { .. }));
}

fn aliased_team(alias: &str, teams: &[Team]) -> Record {
    Record::TeamByAlias(crate::records::Aliased { alias: alias.into(), matches: teams.to_vec() })
}

#[test]
fn team_alias_jwt_field_finds_the_one_team_with_that_alias() {
    let p = jwt(json!({"team_alias_jwt_field": "team_name", "user_id_jwt_field": "sub"}));
    let research = Team { team_alias: Some("Research".into()), ..team("t-r", &["gpt-4o"]) };
    let twin = Team { team_alias: Some("Shared".into()), ..team("t-s1", &[]) };
    let twin2 = Team { team_alias: Some("Shared".into()), ..team("t-s2", &[]) };
    let mut table = Table::new(vec![
        Record::Team(research.clone()), aliased_team("Research", &[research]), aliased_team("Shared", &[twin, twin2]), user("alice", &[]),
    ]);
    assert_eq!(allowed_team(with(&p, &mut table, json!({"sub": "alice", "team_name": "Research"}), CHAT, Some("gpt-4o"))).as_deref(), Some("t-r"));
    let (status, _) = refused(with(&p, &mut table, json!({"sub": "alice", "team_name": "Research"}), CHAT, Some("o1")));
    assert_eq!(status, 401, "the aliased team's models apply");
    let (_, message) = refused(with(&p, &mut table, json!({"sub": "alice", "team_name": "Nobody"}), CHAT, None));
    assert_eq!(message, "Authentication Error, Team with alias 'Nobody' doesn't exist in db. Create team via `/team/new` call.");
    let (_, message) = refused(with(&p, &mut table, json!({"sub": "alice", "team_name": "Shared"}), CHAT, None));
    assert!(message.contains("Multiple teams found with alias 'Shared'"), "{message}");
    let (_, message) = refused(with(&p, &mut table, json!({"sub": "alice"}), CHAT, None));
    assert_eq!(message, "Authentication Error, No team found in token. Checked team_id field 'None' and team_alias field 'team_name'.");
}

#[test]
fn a_team_alias_claim_wins_over_team_id_default_but_not_over_a_team_id_claim() {
    let p = jwt(json!({"team_alias_jwt_field": "team_name", "team_id_jwt_field": "team", "team_id_default": "t1", "user_id_jwt_field": "sub"}));
    let research = Team { team_alias: Some("Research".into()), ..team("t-r", &[]) };
    let mut table = teams_table();
    table.records.extend([Record::Team(research.clone()), aliased_team("Research", &[research])]);
    assert_eq!(allowed_team(with(&p, &mut table, json!({"sub": "alice", "team_name": "Research"}), CHAT, None)).as_deref(), Some("t-r"));
    assert_eq!(allowed_team(with(&p, &mut table, json!({"sub": "alice", "team_name": "Research", "team": "t2"}), CHAT, None)).as_deref(), Some("t2"));
    assert_eq!(allowed_team(with(&p, &mut table, json!({"sub": "alice"}), CHAT, None)).as_deref(), Some("t1"));
}

#[test]
fn the_header_may_name_a_team_by_its_alias() {
    let p = groups_policy(json!({}));
    let gpt = Team { team_alias: Some("GPT".into()), ..team("t1", &["gpt-4o"]) };
    let other = Team { team_alias: Some("Other".into()), ..team("t3", &[]) };
    let mut table = teams_table();
    table.records.extend([aliased_team("GPT", &[gpt]), aliased_team("Other", &[other])]);
    let c = json!({"sub": "alice", "groups": ["t1", "t2"]});
    assert_eq!(allowed_team(with_header(&p, &mut table, c.clone(), CHAT, None, Some("GPT"))).as_deref(), Some("t1"));
    // The alias of a team outside the token's is refused like any other value.
    let (status, message) = refused(with_header(&p, &mut table, c, CHAT, None, Some("Other")));
    assert_eq!(status, 403);
    assert!(message.starts_with("x-litellm-team-id 'Other' does not resolve"), "{message}");
}

#[test]
fn org_alias_jwt_field_finds_the_one_organization_with_that_alias() {
    let p = jwt(json!({"org_alias_jwt_field": "org_name", "user_id_jwt_field": "sub"}));
    let acme = Org { organization_id: "acme".into(), organization_alias: Some("ACME".into()), max_budget: Some(5.0), spend: 1.0, ..Org::default() };
    let broke = Org { organization_id: "broke".into(), organization_alias: Some("Broke".into()), max_budget: Some(5.0), spend: 5.0, ..Org::default() };
    let alias = |a: &str, orgs: &[Org]| Record::OrgByAlias(crate::records::Aliased { alias: a.into(), matches: orgs.to_vec() });
    let mut table = Table::new(vec![user("alice", &[]), alias("ACME", std::slice::from_ref(&acme)), alias("Broke", &[broke]), alias("Twin", &[acme.clone(), acme])]);
    match with(&p, &mut table, json!({"sub": "alice", "org_name": "ACME"}), CHAT, Some("gpt-4o")) {
        Outcome::Allow { identity, .. } => assert_eq!(identity.org_id.as_deref(), Some("acme")),
        other => panic!("{other:?}"),
    }
    let (status, message) = refused(with(&p, &mut table, json!({"sub": "alice", "org_name": "Broke"}), CHAT, Some("gpt-4o")));
    assert_eq!(status, 400, "the aliased organization's budget holds: {message}");
    let (_, message) = refused(with(&p, &mut table, json!({"sub": "alice", "org_name": "Nobody"}), CHAT, None));
    assert!(message.contains("Organization with alias 'Nobody' doesn't exist in db."), "{message}");
    let (_, message) = refused(with(&p, &mut table, json!({"sub": "alice", "org_name": "Twin"}), CHAT, None));
    assert!(message.contains("Multiple organizations found with alias 'Twin'"), "{message}");
}

#[test]
fn a_groups_claim_that_is_not_a_list_is_no_team_claim_for_the_db_fallback() {
    // LiteLLM 1.110 (differential run): `"groups": "t1"` leaves the token claimless.
    let p = groups_policy(json!({"fallback_to_db_teams": true}));
    let mut table = teams_table();
    table.records.push(user("bob", &["t-gone", "t2"]));
    assert_eq!(allowed_team(with(&p, &mut table, json!({"sub": "bob", "groups": "t1"}), "/v1/models", None)).as_deref(), Some("t2"));
}

fn synced(o: &Outcome) -> Vec<crate::authz::sync::UserSync> {
    match o {
        Outcome::Allow { syncs, .. } => syncs.clone(),
        other => panic!("expected an admission, got {other:?}"),
    }
}

#[test]
fn sync_user_role_and_teams_maps_roles_by_glob_and_mirrors_the_groups_claim() {
    let p = groups_policy(json!({"sync_user_role_and_teams": true, "roles_jwt_field": "roles",
        "jwt_litellm_role_map": [{"jwt_role": "llm-view*", "litellm_role": "internal_user_viewer"},
                                 {"jwt_role": "*", "litellm_role": "internal_user"}]}));
    let mut table = teams_table();
    table.records.push(user("bob", &["t3", "t2"]));
    let o = with(&p, &mut table, json!({"sub": "bob", "groups": ["t1", "t2"], "roles": ["x", "llm-viewer"]}), CHAT, Some("gpt-4o"));
    let syncs = synced(&o);
    assert_eq!(syncs.len(), 1);
    let s = &syncs[0];
    assert_eq!(s.role.as_deref(), Some("internal_user_viewer"), "the first entry matching any role");
    assert_eq!((s.add.clone(), s.remove.clone()), (vec!["t1".to_string()], vec!["t3".to_string()]));
    assert_eq!(s.user.teams, vec!["t2".to_string(), "t1".to_string()]);
    match o {
        Outcome::Allow { identity, .. } => assert_eq!(identity.user_role, "internal_user_viewer", "the decision reads the synced role"),
        other => panic!("{other:?}"),
    }
    // In sync already: nothing to send.
    let mut table = teams_table();
    let same = User { user_id: "bob".into(), user_role: Some("internal_user".into()), teams: vec!["t1".into()], ..User::default() };
    table.records.push(Record::User(same));
    let o = with(&p, &mut table, json!({"sub": "bob", "groups": ["t1"], "roles": ["other"]}), CHAT, Some("gpt-4o"));
    assert!(synced(&o).is_empty());
}

#[test]
fn synced_memberships_feed_the_users_only_team() {
    // The groups path finds no team (the route is not one teams may use, and no model is
    // named); the user's only team then decides — after the sync, the team its token names.
    let c = json!({"sub": "bob", "groups": ["t2"]});
    let mut table = teams_table();
    table.records.push(user("bob", &["t1", "t3"]));
    let without = groups_policy(json!({"team_allowed_routes": ["openai_routes"]}));
    assert_eq!(allowed_team(with(&without, &mut table, c.clone(), "/team/info", None)), None, "two teams: none");
    let with_sync = groups_policy(json!({"team_allowed_routes": ["openai_routes"], "sync_user_role_and_teams": true}));
    assert_eq!(allowed_team(with(&with_sync, &mut table, c, "/team/info", None)).as_deref(), Some("t2"));
}

#[test]
fn a_role_map_without_the_sync_or_a_roles_claim_is_refused_at_load() {
    let cfg = |block: serde_json::Value| {
        let c = json!({"public_key_url": "http://idp/jwks", "teams": [{"team_id": "t"}], "general_settings": {"litellm_jwtauth": block}});
        crate::config::compile(c.to_string().as_bytes(), &|_| None).err().unwrap_or_default()
    };
    let map = json!([{"jwt_role": "a*", "litellm_role": "internal_user"}]);
    assert!(cfg(json!({"jwt_litellm_role_map": map, "roles_jwt_field": "roles"})).contains("does nothing without sync_user_role_and_teams"));
    assert!(cfg(json!({"jwt_litellm_role_map": map, "sync_user_role_and_teams": true})).contains("needs roles_jwt_field"));
    let bad = json!([{"jwt_role": "a*", "litellm_role": "root"}]);
    assert!(cfg(json!({"jwt_litellm_role_map": bad, "sync_user_role_and_teams": true, "roles_jwt_field": "roles"})).contains("jwt_litellm_role_map[0].litellm_role"));
    assert_eq!(cfg(json!({"jwt_litellm_role_map": map, "sync_user_role_and_teams": true, "roles_jwt_field": "roles"})), "");
}
