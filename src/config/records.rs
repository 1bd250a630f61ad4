//! Records in the configuration: static teams, users, organizations and end users, and the
//! record source (LiteLLM's management API or a plain JSON service) with its lifetimes.

use super::fields::{err, seconds_ms};
use super::raw::{RawConfig, RawSource, SourceKind};
use super::url::locate;
use crate::records::{Aliased, Kind, Record, UserAlias, ALIAS_LIST_PAGE, USER_LIST_PAGE};
use crate::store::records::Lifetimes;
use std::collections::BTreeMap;

/// The compiled record source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSource {
    pub kind: SourceKind,
    pub cluster: String,
    pub authority: String,
    /// Path prefix from the URL (no trailing slash).
    pub base_path: String,
    /// Path template per kind (`{id}` is replaced, URL-encoded).
    pub paths: BTreeMap<Kind, String>,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    pub write_through: bool,
}

/// The kinds a source serves, by their `paths` name. When no user has the token's user id,
/// LiteLLM looks for the user whose `sso_user_id` is that id (`user_sso`), then for the user
/// with the token's email (`user_email`; `{id}` is the lower-cased email).
/// Teams and organizations are also looked up by alias (`team_alias`, `org_alias`; `{id}` is
/// the alias).
const KINDS: [(&str, Kind); 8] = [
    ("team", Kind::Team),
    ("user", Kind::User),
    ("org", Kind::Org),
    ("end_user", Kind::EndUser),
    ("user_sso", Kind::UserSso),
    ("user_email", Kind::UserEmail),
    ("team_alias", Kind::TeamAlias),
    ("org_alias", Kind::OrgAlias),
];

pub(super) fn compile_source(src: RawSource, clusters: &BTreeMap<String, String>) -> Result<(RecordSource, Lifetimes), String> {
    let parsed = locate(&src.url, "record_source.url", clusters).map_err(String::from)?;
    let base_path = parsed.path.trim_end_matches('/').to_string();
    let mut paths = BTreeMap::new();
    for (name, kind) in KINDS {
        let path = match (src.kind, src.paths.get(name)) {
            (_, Some(p)) => p.clone(),
            (SourceKind::Litellm, None) => match kind {
                Kind::Team => "/team/info?team_id={id}".to_string(),
                Kind::User => "/user/info?user_id={id}".to_string(),
                Kind::Org => "/organization/info?organization_id={id}".to_string(),
                Kind::EndUser => "/customer/info?end_user_id={id}".to_string(),
                Kind::UserSso => format!("/user/list?sso_user_ids={{id}}&page_size={USER_LIST_PAGE}"),
                Kind::UserEmail => format!("/user/list?user_email={{id}}&page_size={USER_LIST_PAGE}"),
                Kind::TeamAlias => format!("/v2/team/list?team_alias={{id}}&page_size={ALIAS_LIST_PAGE}"),
                Kind::OrgAlias => "/organization/list?org_alias={id}".to_string(),
            },
            (SourceKind::Http, None) => continue,
        };
        if !path.starts_with('/') || !path.contains("{id}") {
            return Err(err(&format!("record_source.paths.{name}"), "must start with / and contain {id}"));
        }
        paths.insert(kind, path);
    }
    if let Some(unknown) = src.paths.keys().find(|k| !KINDS.iter().any(|(name, _)| name == k)) {
        return Err(err(&format!("record_source.paths.{unknown}"), "unknown kind (team, user, org, end_user, user_sso, user_email, team_alias, org_alias)"));
    }
    if src.kind == SourceKind::Http && paths.is_empty() {
        return Err(err("record_source.paths", "an http source needs at least one path template"));
    }
    let mut headers: Vec<(String, String)> = src.headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    if let Some(key) = src.master_key.filter(|k| !k.is_empty()) {
        headers.push(("authorization".into(), format!("Bearer {key}")));
    } else if src.kind == SourceKind::Litellm {
        return Err(err("record_source.master_key", "LiteLLM's management API needs the master key"));
    }
    let timeout_ms = src.timeout_ms.unwrap_or(2000);
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(err("record_source.timeout_ms", "must be between 1 and 60000"));
    }
    if src.write_through && src.kind != SourceKind::Litellm {
        return Err(err("record_source.write_through", "only a litellm source can create records"));
    }
    let lifetimes = Lifetimes {
        ttl_ms: seconds_ms(src.ttl, 60.0, "record_source.ttl")?,
        negative_ttl_ms: seconds_ms(src.negative_ttl, 10.0, "record_source.negative_ttl")?,
        stale_ttl_ms: seconds_ms(src.stale_ttl, 300.0, "record_source.stale_ttl")?,
    };
    let source = RecordSource {
        kind: src.kind,
        cluster: src.cluster.unwrap_or(parsed.cluster),
        authority: parsed.authority,
        base_path,
        paths,
        headers,
        timeout_ms,
        write_through: src.write_through,
    };
    Ok((source, lifetimes))
}

/// The static records (`teams`, `users`, `organizations`, `end_users`), each refusing members
/// it does not read, and no id configured twice.
pub(super) fn statics(raw: &RawConfig) -> Result<Vec<Record>, String> {
    let mut statics = Vec::new();
    for (field, kind, list) in [
        ("teams", Kind::Team, &raw.teams),
        ("users", Kind::User, &raw.users),
        ("organizations", Kind::Org, &raw.organizations),
        ("end_users", Kind::EndUser, &raw.end_users),
    ] {
        for (i, v) in list.iter().enumerate() {
            let here = format!("{field}[{i}]");
            let record = Record::from_static(kind, v).map_err(|(member, what)| match member.is_empty() {
                true => err(&here, what),
                false => err(&format!("{here}.{member}"), what),
            })?;
            if record.id().is_empty() {
                return Err(err(&here, "needs its id (team_id / user_id / organization_id)"));
            }
            if statics.iter().any(|r: &Record| r.key() == record.key()) {
                // Which copy would apply is not what the operator can see: refuse.
                return Err(err(&here, format!("{} {:?} is configured twice", kind.as_str(), record.id())));
            }
            statics.push(record);
        }
    }
    // LiteLLM finds a user by SSO id or email when none has the token's user id: the first
    // configured user with that `sso_user_id` (or email, case-insensitive) answers for it.
    let aliases: Vec<Record> = [Kind::UserSso, Kind::UserEmail]
        .into_iter()
        .flat_map(|kind| {
            statics.iter().filter_map(move |r| match r {
                Record::User(u) => UserAlias::of(kind, u),
                _ => None,
            })
        })
        .collect();
    for record in aliases {
        if !statics.iter().any(|r| r.key() == record.key()) {
            statics.push(record);
        }
    }
    // Teams and organizations by alias: every record with it, so a shared alias is ambiguous.
    let mut teams: BTreeMap<String, Vec<_>> = BTreeMap::new();
    let mut orgs: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in &statics {
        match r {
            Record::Team(t) => {
                if let Some(a) = t.team_alias.clone().filter(|a| !a.is_empty()) {
                    teams.entry(a).or_default().push(t.clone());
                }
            }
            Record::Org(o) => {
                if let Some(a) = o.organization_alias.clone().filter(|a| !a.is_empty()) {
                    orgs.entry(a).or_default().push(o.clone());
                }
            }
            _ => {}
        }
    }
    statics.extend(teams.into_iter().map(|(alias, matches)| Record::TeamByAlias(Aliased { alias, matches })));
    statics.extend(orgs.into_iter().map(|(alias, matches)| Record::OrgByAlias(Aliased { alias, matches })));
    Ok(statics)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;
    use crate::records::Kind;
    use crate::store::records::Lifetimes;
    use serde_json::json;

    #[test]
    fn static_teams_and_organizations_are_found_by_alias_and_a_shared_alias_is_ambiguous() {
        let cfg = serde_json::json!({"public_key_url": "http://idp/jwks",
            "teams": [{"team_id": "a", "team_alias": "Shared"}, {"team_id": "b", "team_alias": "Shared"}, {"team_id": "c", "team_alias": "Solo"}],
            "organizations": [{"organization_id": "acme", "organization_alias": "ACME"}]});
        let c = crate::config::compile(cfg.to_string().as_bytes(), &|_| None).unwrap();
        let find = |kind: Kind, id: &str| c.statics.iter().find(|r| r.key() == crate::records::RecordKey { kind, id: id.into() }).cloned();
        use crate::records::Record;
        let Some(Record::TeamByAlias(shared)) = find(Kind::TeamAlias, "Shared") else { panic!() };
        assert_eq!(shared.matches.len(), 2);
        let Some(Record::TeamByAlias(solo)) = find(Kind::TeamAlias, "Solo") else { panic!() };
        assert_eq!(solo.unique().map(|t| t.team_id.as_str()), Ok("c"));
        assert!(matches!(find(Kind::OrgAlias, "ACME"), Some(Record::OrgByAlias(_))));
    }

    #[test]
    fn record_sources_compile_with_litellm_defaults() {
        let c = compile_json(json!({"public_key_url": "http://a/j", "record_source": {
            "type": "litellm", "url": "http://litellm:4000/", "master_key": "sk-1", "ttl": 30}})).unwrap();
        let s = c.record_source.unwrap();
        assert_eq!(s.cluster, "litellm:4000");
        assert_eq!(s.paths.get(&Kind::Team).map(String::as_str), Some("/team/info?team_id={id}"));
        assert!(s.headers.contains(&("authorization".into(), "Bearer sk-1".into())));
        assert_eq!(c.record_lifetimes, Lifetimes { ttl_ms: 30_000, negative_ttl_ms: 10_000, stale_ttl_ms: 300_000 });
        let e = compile_json(json!({"public_key_url": "http://a/j", "record_source": {"type": "litellm", "url": "http://l"}})).unwrap_err();
        assert!(e.contains("record_source.master_key"), "{e}");
        let e = compile_json(json!({"public_key_url": "http://a/j", "record_source": {"type": "http", "url": "http://l",
            "paths": {"team": "/teams"}}})).unwrap_err();
        assert!(e.contains("record_source.paths.team"), "{e}");
        let ok = compile_json(json!({"public_key_url": "http://a/j", "record_source": {"type": "http", "url": "http://l/api",
            "paths": {"team": "/teams/{id}"}, "headers": {"X-Token": "t"}}})).unwrap();
        let s = ok.record_source.unwrap();
        assert_eq!(s.base_path, "/api");
        assert!(!s.paths.contains_key(&Kind::User));
    }

    #[test]
    fn static_records_refuse_fields_they_do_not_read() {
        let e = compile_json(json!({"public_key_url": "http://a/j",
            "teams": [{"team_id": "research", "modles": ["gpt-4o"]}]})).unwrap_err();
        assert!(e.starts_with("invalid plugin configuration: teams[0].modles: unknown field of a team record (known: "), "{e}");
        assert!(e.contains("models"), "the message lists the real name: {e}");
        for (cfg, field) in [
            (json!({"users": [{"user_id": "u", "max_budgt": 1}]}), "users[0].max_budgt"),
            (json!({"organizations": [{"organization_id": "o", "model": []}]}), "organizations[0].model"),
            (json!({"end_users": [{"user_id": "c", "block": true}]}), "end_users[0].block"),
            (json!({"teams": [{"team_id": "t", "litellm_budget_table": {"max_budet": 1}}]}), "teams[0].litellm_budget_table.max_budet"),
            (json!({"teams": [{"team_id": "t", "litellm_budget_table": 5}]}), "teams[0].litellm_budget_table"),
            (json!({"end_users": [{"user_id": "c", "litellm_model_table": {}}]}), "end_users[0].litellm_model_table"),
            (json!({"teams": [{"team_id": "t"}, {"team_id": "t", "blocked": true}]}), "teams[1]: team \"t\" is configured twice"),
        ] {
            let mut cfg = cfg.clone();
            cfg["public_key_url"] = json!("http://a/j");
            let e = compile_json(cfg).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
        let ok = compile_json(json!({"public_key_url": "http://a/j", "teams": [{"team_id": "t", "models": ["m"],
            "litellm_budget_table": {"max_budget": 2}, "litellm_model_table": {"model_aliases": {"a": "m"}}}]}));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn static_records_are_typed() {
        let c = compile_json(json!({"public_key_url": "http://a/j",
            "teams": [{"team_id": "t1", "models": ["gpt-4o"], "max_budget": 5}],
            "users": [{"user_id": "u1"}], "organizations": [{"organization_id": "o1"}],
            "end_users": [{"user_id": "c1", "blocked": true}]})).unwrap();
        assert_eq!(c.statics.len(), 4);
        let e = compile_json(json!({"public_key_url": "http://a/j", "teams": [{"models": ["x"]}]})).unwrap_err();
        assert!(e.contains("teams[0]"), "{e}");
        let e = compile_json(json!({"public_key_url": "http://a/j", "teams": [{"team_id": "t", "blocked": "yes"}]})).unwrap_err();
        assert!(e.contains("teams[0]"), "{e}");
    }

    #[test]
    fn static_users_are_also_found_by_email_first_configured_first() {
        let c = compile_json(json!({"public_key_url": "http://a/j", "users": [
            {"user_id": "a", "user_email": "Same@Example.com"}, {"user_id": "b", "user_email": "same@example.com"},
            {"user_id": "c"}]})).unwrap();
        let by_email: Vec<_> = c.statics.iter().filter(|r| r.kind() == Kind::UserEmail).collect();
        assert_eq!(by_email.len(), 1);
        assert!(matches!(by_email[0], crate::records::Record::UserByEmail(u) if u.alias == "same@example.com" && u.user.user_id == "a"));
        let c = compile_json(json!({"public_key_url": "http://a/j", "users": [{"user_id": "a", "sso_user_id": "okta|1"}]})).unwrap();
        assert!(c.statics.iter().any(|r| r.key() == crate::records::RecordKey { kind: Kind::UserSso, id: "okta|1".into() }));
        let e = compile_json(json!({"public_key_url": "http://a/j", "users": [{"user_id": "a", "user_role": "superuser"}]})).unwrap_err();
        assert!(e.contains("users[0]") && e.contains("user_role"), "{e}");
    }

    #[test]
    fn sources_look_users_up_by_email() {
        let c = compile_json(json!({"public_key_url": "http://a/j", "record_source": {
            "type": "litellm", "url": "http://litellm:4000/", "master_key": "sk-1"}})).unwrap();
        let s = c.record_source.unwrap();
        assert_eq!(s.paths.get(&Kind::UserEmail).map(String::as_str), Some("/user/list?user_email={id}&page_size=100"));
        assert_eq!(s.paths.get(&Kind::UserSso).map(String::as_str), Some("/user/list?sso_user_ids={id}&page_size=100"));
        let c = compile_json(json!({"public_key_url": "http://a/j", "record_source": {"type": "http", "url": "http://l",
            "paths": {"user": "/users/{id}", "user_email": "/users/by-email/{id}"}}})).unwrap();
        assert!(c.record_source.unwrap().paths.contains_key(&Kind::UserEmail));
        let e = compile_json(json!({"public_key_url": "http://a/j", "record_source": {"type": "http", "url": "http://l",
            "paths": {"email": "/e/{id}"}}})).unwrap_err();
        assert!(e.contains("unknown kind (team, user, org, end_user, user_sso, user_email, team_alias, org_alias)"), "{e}");
    }

    #[test]
    fn record_dependent_litellm_rules_need_records() {
        let ok = compile_json(json!({"public_key_url": "http://a/j", "general_settings": {"litellm_jwtauth": {
            "team_ids_jwt_field": null, "user_id_upsert": false, "team_id_upsert": false,
            "enforce_team_based_model_access": false, "public_key_stale_ttl": 3600}}}));
        assert!(ok.is_ok(), "{ok:?}");
        for rule in [json!({"team_ids_jwt_field": "groups"}), json!({"user_id_upsert": true}),
                     json!({"team_id_upsert": true}), json!({"enforce_team_based_model_access": true}),
                     json!({"sync_user_role_and_teams": true}), json!({"fallback_to_db_teams": true}),
                     json!({"team_alias_jwt_field": "team_name"})] {
            let e = compile_json(json!({"public_key_url": "http://a/j",
                "general_settings": {"litellm_jwtauth": rule.clone()}})).unwrap_err();
            assert!(e.contains("needs team/user records"), "{e}");
            let with_teams = compile_json(json!({"public_key_url": "http://a/j", "teams": [{"team_id": "t"}],
                "general_settings": {"litellm_jwtauth": rule}}));
            assert!(with_teams.is_ok(), "{with_teams:?}");
        }
        let e = jwtauth(json!({"virtual_key_claim_field": "client_id"})).unwrap_err();
        assert!(e.contains("does not support yet"), "{e}");
        let with_records = compile_json(json!({"public_key_url": "http://a/j", "teams": [{"team_id": "t"}],
            "general_settings": {"litellm_jwtauth": {"virtual_key_claim_field": "client_id"}}})).unwrap_err();
        assert!(with_records.contains("does not support yet") && !with_records.contains("records"),
            "with records set, the message does not blame missing records: {with_records}");
    }
}
