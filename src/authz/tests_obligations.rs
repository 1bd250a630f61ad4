//! What an admission obliges the answer to: the rate-limit scopes (only where LiteLLM's
//! limiter runs) and, on a model list route, the models the caller may call.

use super::tests::{jwt, team, with, with_header, Table, CHAT};
use super::*;
use crate::records::{Record, Team, User};
use serde_json::json;

fn obligations(o: Outcome) -> Obligations {
    match o {
        Outcome::Allow { obligations, .. } => obligations,
        other => panic!("expected an admission, got {other:?}"),
    }
}

fn limited_team() -> Team {
    Team { rpm_limit: Some(10), ..team("t1", &["gpt-4o", "gpt-4o-mini"]) }
}

fn table() -> Table {
    Table::new(vec![
        Record::Team(limited_team()),
        Record::User(User { user_id: "alice".into(), tpm_limit: Some(99), ..User::default() }),
    ])
}

#[test]
fn limits_apply_on_llm_routes_that_call_a_model_only() {
    let p = jwt(json!({"team_id_jwt_field": "team", "user_id_jwt_field": "sub"}));
    let token = json!({"sub": "alice", "team": "t1"});
    let chat = obligations(with(&p, &mut table(), token.clone(), CHAT, Some("gpt-4o")));
    let keys: Vec<&str> = chat.limits.iter().map(|s| s.key).collect();
    assert_eq!(keys, ["user", "team"]);
    for route in ["/v1/models", "/team/info", "/v1/messages/count_tokens"] {
        assert!(obligations(with(&p, &mut table(), token.clone(), route, None)).limits.is_empty(), "{route}");
    }
}

#[test]
fn an_admin_counts_in_the_team_its_header_names_never_as_a_user() {
    let p = jwt(json!({"user_id_jwt_field": "sub", "admin_allowed_routes": ["openai_routes"]}));
    let admin = json!({"sub": "alice", "scope": "litellm_proxy_admin"});
    let attributed = obligations(with_header(&p, &mut table(), admin.clone(), CHAT, Some("gpt-4o"), Some("t1")));
    assert_eq!(attributed.limits.iter().map(|s| (s.key, s.value.as_str())).collect::<Vec<_>>(), [("team", "t1")]);
    assert!(obligations(with(&p, &mut table(), admin, CHAT, Some("gpt-4o"))).limits.is_empty());
}

#[test]
fn a_model_list_is_filtered_by_every_rule_that_limits_models() {
    let p = jwt(json!({
        "team_id_jwt_field": "team", "user_id_jwt_field": "sub",
        "enforce_scope_based_access": true,
        "scope_mappings": [{"scope": "llm.small", "models": ["gpt-4o-mini", "o3"]}],
    }));
    let token = json!({"sub": "alice", "team": "t1", "scope": "llm.small"});
    let filter = obligations(with(&p, &mut table(), token, "/v1/models", None)).models.expect("limited");
    let shown: Vec<&str> = ["gpt-4o", "gpt-4o-mini", "o3"].into_iter().filter(|m| filter.allows(m)).collect();
    assert_eq!(shown, ["gpt-4o-mini"], "the scope allows gpt-4o-mini and o3, the team gpt-4o and gpt-4o-mini");
    // Nothing limits an unrestricted team's caller without scopes: no filter at all.
    let open = jwt(json!({"team_id_jwt_field": "team", "user_id_jwt_field": "sub"}));
    let mut records = Table::new(vec![Record::Team(team("t0", &[])), Record::User(User { user_id: "alice".into(), ..User::default() })]);
    assert_eq!(obligations(with(&open, &mut records, json!({"sub": "alice", "team": "t0"}), "/v1/models", None)).models, None);
    // Not a model list: no filter, whatever limits the caller.
    assert_eq!(obligations(with(&p, &mut table(), json!({"sub": "alice", "team": "t1", "scope": "llm.small"}), CHAT, Some("gpt-4o-mini"))).models, None);
}
