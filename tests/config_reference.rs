//! `docs/configuration.md` cannot drift from the code.
//!
//! The page's field tables (each after a `<!-- fields: <level> -->` marker) are compared with
//! what `config::compile` accepts, level by level, in both directions. The real field set comes
//! from the code itself: an unknown field makes `compile` list every expected one (serde's
//! `deny_unknown_fields`, or the filter's own "allowed:" / "supported:" lists), LiteLLM's block
//! is checked against `LITELLM_JWTAUTH_FIELDS`, and record fields are those a record serializes.
//! Every row's example must compile (with the fields its "Needs …" sentence names), and stated
//! defaults must change nothing when written out explicitly.
// Test code: a failed expectation should stop the test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use llm_jwt_auth::config::{compile, FilterConfig, LITELLM_JWTAUTH_FIELDS};
use llm_jwt_auth::records::{EndUser, Org, Record, Team, User};
use llm_jwt_auth::authz::route_rules::RuleAction;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

const DOC: &str = include_str!("../docs/configuration.md");
const KEY_URL: &str = "https://idp.example.com/.well-known/jwks.json";
const NOT_A_FIELD: &str = "zz_not_a_field";

/// One table row: cell text by lower-cased column header.
#[derive(Debug, Clone)]
struct Row {
    field: String,
    cells: BTreeMap<String, String>,
}

impl Row {
    fn cell(&self, column: &str) -> &str {
        self.cells.get(column).map(String::as_str).unwrap_or("")
    }

    fn example(&self) -> Value {
        let span = code_spans(self.cell("example")).into_iter().next();
        let span = span.unwrap_or_else(|| panic!("{}: the Example column has no `json` value", self.field));
        serde_json::from_str(&span).unwrap_or_else(|e| panic!("{}: example {span} is not JSON: {e}", self.field))
    }

    /// The default as a JSON literal, when the Default column is one code span that parses.
    fn default_literal(&self) -> Option<Value> {
        let cell = self.cell("default");
        let spans = code_spans(cell);
        match spans.as_slice() {
            [only] if cell.trim() == format!("`{only}`") => serde_json::from_str(only).ok(),
            _ => None,
        }
    }

    /// What the row says must be set with it ("Needs `x`", "Needs `a`, `b` or `c`": the first),
    /// and whether it needs records.
    fn needs(&self) -> (Vec<String>, bool) {
        let what = self.cell("what it does");
        let mut fields = Vec::new();
        let mut records = false;
        for sentence in what.split(". ") {
            let Some(at) = sentence.find("Needs ") else { continue };
            let rest = &sentence[at..];
            let spans = code_spans(rest);
            if rest.contains(" or ") {
                fields.extend(spans.into_iter().take(1));
            } else {
                fields.extend(spans);
            }
            records |= rest.starts_with("Needs records");
        }
        (fields, records)
    }

    /// "Instead of `x`": fields the base must not have with this one.
    fn instead_of(&self) -> Vec<String> {
        let what = self.cell("what it does");
        what.find("Instead of ").map(|at| code_spans(&what[at..]).into_iter().take(1).collect()).unwrap_or_default()
    }
}

fn code_spans(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Cells of a Markdown table line; `\|` is a literal pipe.
fn split_row(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut current = String::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                current.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut current).trim().to_string()),
            other => current.push(other),
        }
    }
    cells.push(current.trim().to_string());
    // The line starts and ends with a pipe: drop the empty outer cells.
    cells.into_iter().skip(1).collect::<Vec<_>>().split_last().map(|(_, c)| c.to_vec()).unwrap_or_default()
}

/// Every marked table of the page: level → rows.
fn tables() -> BTreeMap<String, Vec<Row>> {
    let mut out = BTreeMap::new();
    let mut lines = DOC.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(level) = line.trim().strip_prefix("<!-- fields: ").and_then(|r| r.strip_suffix(" -->")) else {
            continue;
        };
        while lines.peek().is_some_and(|l| l.trim().is_empty()) {
            lines.next();
        }
        let header: Vec<String> =
            split_row(lines.next().unwrap_or_default()).iter().map(|h| h.to_lowercase()).collect();
        assert!(header.first().is_some_and(|h| h == "field"), "table {level}: first column must be Field");
        lines.next(); // |---|---|
        let mut rows = Vec::new();
        while let Some(l) = lines.next_if(|l| l.trim_start().starts_with('|')) {
            let cells: BTreeMap<String, String> = header.iter().cloned().zip(split_row(l)).collect();
            let field = code_spans(cells.get("field").map(String::as_str).unwrap_or("")).into_iter().next();
            let field = field.unwrap_or_else(|| panic!("table {level}: a row without a `field`: {l}"));
            rows.push(Row { field, cells });
        }
        assert!(!rows.is_empty(), "table {level} has no rows");
        assert!(out.insert(level.to_string(), rows).is_none(), "table {level} appears twice");
    }
    out
}

fn table(level: &str) -> Vec<Row> {
    tables().remove(level).unwrap_or_else(|| panic!("docs/configuration.md has no <!-- fields: {level} --> table"))
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn merged(mut base: Map<String, Value>, entries: &Map<String, Value>, remove: &[String]) -> Value {
    for (k, v) in entries {
        base.insert(k.clone(), v.clone());
    }
    for k in remove {
        base.remove(k);
    }
    Value::Object(base)
}

/// A whole configuration with `entries` at `level` (over that level's minimal object, minus
/// `remove`).
fn config_at(level: &str, entries: &Map<String, Value>, remove: &[String]) -> Value {
    let top = |inner: Map<String, Value>| {
        let mut c = obj(json!({"public_key_url": KEY_URL}));
        c.extend(inner);
        Value::Object(c)
    };
    // A rule needs one matcher and one action: the minimal ones stand in until a row sets its own.
    let has_any = |keys: &[&str]| keys.iter().any(|k| entries.contains_key(*k));
    let acts = |k: &str| entries.get(k).is_some_and(|v| v != &json!(false));
    let mut rule_base = obj(json!({"match": {"prefix": "/internal/"}}));
    if !(acts("public") || acts("deny") || acts("require")) {
        let taken = |k: &str| entries.contains_key(k) || remove.iter().any(|r| r == k);
        let free = ["deny", "public"].into_iter().find(|k| !taken(k)).unwrap_or("deny");
        rule_base.insert(free.to_string(), json!(true));
    }
    let match_base = if has_any(&["path", "prefix", "routes"]) { json!({}) } else { json!({"prefix": "/"}) };
    // A `require` must ask for something: a scope stands in, or a claim when the row is `scopes`.
    let taken = |k: &str| entries.contains_key(k) || remove.iter().any(|r| r == k);
    let require_base = if taken("scopes") { json!({"claims": [{"claim": "tier", "equals": "gold"}]}) } else { json!({"scopes": ["stand-in"]}) };
    match level {
        "top" => merged(obj(json!({"public_key_url": KEY_URL})), entries, remove),
        "model_routing" => top(obj(json!({"model_routing": merged(obj(json!({"enabled": true})), entries, remove)}))),
        "record_source" => top(obj(json!({"record_source": merged(
            obj(json!({"type": "litellm", "url": "http://litellm:4000", "master_key": "sk-1"})), entries, remove)}))),
        "general_settings" => top(obj(json!({"general_settings": merged(Map::new(), entries, remove)}))),
        "litellm_jwtauth" | "litellm_jwtauth_not_enforced" => {
            top(obj(json!({"general_settings": {"litellm_jwtauth": merged(Map::new(), entries, remove)}})))
        }
        "issuer" => top(obj(json!({"issuers": [merged(
            obj(json!({"issuer": "https://login.example.com", "audience": "api://llm-gateway"})), entries, remove)]}))),
        "rule" => top(obj(json!({"rules": [merged(rule_base, entries, remove)]}))),
        "rule_match" => top(obj(json!({"rules": [{"match": merged(obj(match_base), entries, remove), "public": true}]}))),
        "rule_require" => top(obj(json!({"rules": [{"match": {"prefix": "/"}, "require": merged(obj(require_base), entries, remove)}]}))),
        "team" => top(obj(json!({"teams": [merged(obj(json!({"team_id": "t"})), entries, remove)]}))),
        "user" => top(obj(json!({"users": [merged(obj(json!({"user_id": "u"})), entries, remove)]}))),
        "organization" => top(obj(json!({"organizations": [merged(obj(json!({"organization_id": "o"})), entries, remove)]}))),
        "end_user" => top(obj(json!({"end_users": [merged(obj(json!({"user_id": "e"})), entries, remove)]}))),
        other => panic!("no configuration layout for level {other}"),
    }
}

fn compile_value(v: &Value) -> Result<FilterConfig, String> {
    compile(v.to_string().as_bytes(), &|_| None)
}

/// The configuration for one row, with what the row needs, and the field set to `value`
/// (absent with `None`). `instead`: also leave out what the row replaces ("Instead of").
fn row_config(level: &str, row: &Row, rows: &[Row], value: Option<Value>, instead: bool) -> Value {
    let (companions, records) = row.needs();
    // Left at its default (or out), the field also leaves out the companions that need it back
    // (`enforce_scope_based_access` ⇄ `scope_mappings`): they are only valid together.
    let at_default = value.is_none() || value == row.default_literal();
    let mut entries = Map::new();
    for name in &companions {
        let other = rows.iter().find(|r| &r.field == name);
        let other = other.unwrap_or_else(|| panic!("{level}.{}: needs `{name}`, which is not a row of its table", row.field));
        if at_default && other.needs().0.contains(&row.field) {
            continue;
        }
        entries.insert(name.clone(), other.example());
    }
    let mut remove = if instead { row.instead_of() } else { Vec::new() };
    match value {
        Some(v) => {
            entries.insert(row.field.clone(), v);
        }
        // Also keeps the level's stand-ins (a rule's action) off this field.
        None => remove.push(row.field.clone()),
    }
    let mut cfg = config_at(level, &entries, &remove);
    if records && !["team", "user", "organization", "end_user"].contains(&level) {
        cfg["teams"] = json!([{"team_id": "t"}]);
    }
    cfg
}

/// Names the code lists in the error for an unknown field (serde: "expected one of `a`, `b`";
/// the filter: "(allowed: a, b)" / "(supported: a, b)").
fn listed_names(error: &str) -> BTreeSet<String> {
    if let Some(at) = error.find("expected") {
        return code_spans(&error[at..]).into_iter().collect();
    }
    for marker in ["(allowed: ", "(supported: "] {
        if let Some(at) = error.find(marker) {
            let rest = &error[at + marker.len()..];
            let list = rest.split(')').next().unwrap_or_default();
            return list.split(", ").map(str::to_owned).collect();
        }
    }
    panic!("the error lists no expected fields: {error}")
}

/// What the code accepts at `level`, by asking it about a field that does not exist.
fn real_fields(level: &str) -> BTreeSet<String> {
    let record_fields = |v: Value| obj(v).keys().filter(|k| *k != "kind").cloned().collect();
    match level {
        "team" => record_fields(serde_json::to_value(Team::default()).unwrap()),
        "user" => record_fields(serde_json::to_value(User::default()).unwrap()),
        "organization" => record_fields(serde_json::to_value(Org::default()).unwrap()),
        "end_user" => record_fields(serde_json::to_value(EndUser::default()).unwrap()),
        _ => {
            let cfg = config_at(level, &obj(json!({NOT_A_FIELD: 1})), &[]);
            let e = compile_value(&cfg).err().unwrap_or_else(|| panic!("{level}: an unknown field was accepted"));
            assert!(e.contains(NOT_A_FIELD), "{level}: the error does not name the unknown field: {e}");
            listed_names(&e)
        }
    }
}

fn documented(level: &str) -> BTreeSet<String> {
    let rows = table(level);
    let names: BTreeSet<String> = rows.iter().map(|r| r.field.clone()).collect();
    assert_eq!(names.len(), rows.len(), "table {level} lists a field twice");
    names
}

fn assert_same_fields(level: &str, real: &BTreeSet<String>, doc: &BTreeSet<String>) {
    let undocumented: Vec<_> = real.difference(doc).collect();
    let unknown: Vec<_> = doc.difference(real).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/configuration.md, table `{level}`: accepted by the code but not documented: {undocumented:?}; \
         documented but not accepted by the code: {unknown:?}"
    );
}

const STRUCT_LEVELS: &[&str] = &[
    "top", "model_routing", "record_source", "general_settings", "issuer", "rule", "rule_match", "rule_require",
    "team", "user", "organization", "end_user",
];
const EXAMPLE_LEVELS: &[&str] = &[
    "top", "model_routing", "record_source", "general_settings", "litellm_jwtauth", "issuer", "rule", "rule_match", "rule_require", "team", "user", "organization", "end_user",
];

#[test]
fn every_accepted_field_is_documented_and_every_documented_field_is_accepted() {
    for level in STRUCT_LEVELS {
        assert_same_fields(level, &real_fields(level), &documented(level));
    }
    let enforced = documented("litellm_jwtauth");
    let not_enforced = documented("litellm_jwtauth_not_enforced");
    let both: Vec<_> = enforced.intersection(&not_enforced).collect();
    assert!(both.is_empty(), "litellm_jwtauth fields documented as enforced and as not enforced: {both:?}");
    let real: BTreeSet<String> = LITELLM_JWTAUTH_FIELDS.iter().map(|s| s.to_string()).collect();
    assert_same_fields("litellm_jwtauth (both tables)", &real, &enforced.union(&not_enforced).cloned().collect());
}

#[test]
fn every_example_compiles() {
    let all = tables();
    for level in EXAMPLE_LEVELS {
        let rows = all.get(*level).unwrap_or_else(|| panic!("no table {level}"));
        for row in rows {
            let cfg = row_config(level, row, rows, Some(row.example()), true);
            if let Err(e) = compile_value(&cfg) {
                panic!("{level}.{}: the documented example is refused: {e}\nconfiguration: {cfg}", row.field);
            }
        }
    }
}

/// Each record example is read into the record (not silently ignored).
#[test]
fn record_examples_end_up_in_the_record() {
    for level in ["team", "user", "organization", "end_user"] {
        for row in table(level) {
            let example = row.example();
            let cfg = compile_value(&config_at(level, &obj(json!({row.field.clone(): example.clone()})), &[])).unwrap();
            let record = record_json(cfg.statics.first().unwrap());
            assert!(same_json(&record[&row.field], &example), "{level}.{}: example {example} became {}", row.field, record[&row.field]);
        }
    }
}

/// A record as JSON, without the `kind` tag.
fn record_json(record: &Record) -> Value {
    let mut v = serde_json::to_value(record).unwrap();
    if let Some(m) = v.as_object_mut() {
        m.remove("kind");
    }
    v
}

/// JSON equality with numbers compared by value (`100` equals `100.0`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn not_enforced_litellm_fields_take_only_do_nothing_values() {
    for row in table("litellm_jwtauth_not_enforced") {
        let accepted = row.cell("accepted values");
        let mut values: Vec<Value> =
            code_spans(accepted).iter().map(|s| serde_json::from_str(s).unwrap_or_else(|_| panic!("{}: {s}", row.field))).collect();
        let takes_numbers = accepted.contains("a number");
        if takes_numbers {
            values.push(json!(30));
        }
        for v in &values {
            let cfg = config_at("litellm_jwtauth", &obj(json!({row.field.clone(): v.clone()})), &[]);
            assert!(compile_value(&cfg).is_ok(), "litellm_jwtauth.{}: documented as accepting {v}, refused", row.field);
        }
        let mut refused = vec![json!(true), json!("x")];
        if !takes_numbers {
            refused.push(json!(30));
        }
        for v in refused {
            let cfg = config_at("litellm_jwtauth", &obj(json!({row.field.clone(): v.clone()})), &[]);
            match compile_value(&cfg) {
                Ok(_) => panic!("litellm_jwtauth.{}: documented as not enforced, but {v} is accepted", row.field),
                Err(e) => assert!(
                    e.contains(&format!("litellm_jwtauth.{}", row.field)) && e.contains("does not support yet"),
                    "litellm_jwtauth.{}: {v} refused for another reason: {e}",
                    row.field
                ),
            }
        }
    }
}

/// Where a default can be read back from the compiled configuration: whether `a` and `b` agree
/// on `field`. `None`: not observable cheaply (the default is then only checked to compile).
fn same(level: &str, field: &str, a: &FilterConfig, b: &FilterConfig) -> Option<bool> {
    let (pa, pb) = (&a.policy, &b.policy);
    let src = |c: &FilterConfig| c.record_source.clone();
    let iss = |c: &FilterConfig| c.issuers.first().cloned();
    Some(match (level, field) {
        ("top", "public_key_url") => a.jwks == b.jwks,
        ("top", "clusters") => a.clusters == b.clusters,
        ("top", "public_keys") => a.inline_keys.len() == b.inline_keys.len(),
        ("top", "audience") => a.claim_rules.audience == b.claim_rules.audience,
        ("top", "issuer") => a.claim_rules.issuer == b.claim_rules.issuer,
        ("top", "issuers") => a.issuers.len() == b.issuers.len(),
        ("top", "leeway") => a.claim_rules.leeway == b.claim_rules.leeway,
        ("top", "jwks_fetch_timeout_ms") => a.fetch_timeout_ms == b.fetch_timeout_ms,
        ("top", "kid_refetch_interval") => a.kid_refetch_interval_ms == b.kid_refetch_interval_ms,
        ("top", "scope_claims") => pa.scope_claims == pb.scope_claims,
        ("top", "max_body_bytes") => a.max_body_bytes == b.max_body_bytes,
        ("top", "token_cache_size") => a.token_cache_size == b.token_cache_size,
        ("top", "mode") => a.mode == b.mode,
        ("top", "filter_state") => a.filter_state == b.filter_state,
        ("top", "teams" | "users" | "organizations" | "end_users") => a.statics == b.statics,
        ("top", "model_access_groups") => pa.access_groups == pb.access_groups,
        ("top", "record_source") => a.record_source == b.record_source,
        ("top", "from_headers" | "from_params" | "from_cookies") => a.token_locations == b.token_locations,
        ("top", "forward") => a.forward == b.forward,
        ("top", "api_keys") => a.api_keys == b.api_keys,
        ("top", "rules") => a.rules.len() == b.rules.len(),
        ("top", "model_routing") | ("model_routing", _) => a.model_routing == b.model_routing,
        ("record_source", "ttl") => a.record_lifetimes.ttl_ms == b.record_lifetimes.ttl_ms,
        ("record_source", "negative_ttl") => a.record_lifetimes.negative_ttl_ms == b.record_lifetimes.negative_ttl_ms,
        ("record_source", "stale_ttl") => a.record_lifetimes.stale_ttl_ms == b.record_lifetimes.stale_ttl_ms,
        ("record_source", "timeout_ms") => src(a).map(|s| s.timeout_ms) == src(b).map(|s| s.timeout_ms),
        ("record_source", "write_through") => src(a).map(|s| s.write_through) == src(b).map(|s| s.write_through),
        ("record_source", "headers") => src(a).map(|s| s.headers) == src(b).map(|s| s.headers),
        ("record_source", "paths") => src(a).map(|s| s.paths) == src(b).map(|s| s.paths),
        ("record_source", "cluster") => src(a).map(|s| s.cluster) == src(b).map(|s| s.cluster),
        ("general_settings", "enforce_rbac") => pa.general_enforce_rbac == pb.general_enforce_rbac,
        ("general_settings", "public_routes") => a.public_routes == b.public_routes,
        ("general_settings", "role_permissions") => {
            pa.role_permissions.as_ref().map(Vec::len) == pb.role_permissions.as_ref().map(Vec::len)
        }
        ("litellm_jwtauth", f) => match f {
            "admin_jwt_scope" => pa.admin_jwt_scope == pb.admin_jwt_scope,
            "admin_allowed_routes" => pa.admin_allowed_routes == pb.admin_allowed_routes,
            "team_allowed_routes" => pa.team_allowed_routes == pb.team_allowed_routes,
            "team_id_jwt_field" => pa.team_id_jwt_field == pb.team_id_jwt_field,
            "team_ids_jwt_field" => pa.team_ids_jwt_field == pb.team_ids_jwt_field,
            "team_id_default" => pa.team_id_default == pb.team_id_default,
            "team_id_upsert" => pa.team_id_upsert == pb.team_id_upsert,
            "user_id_upsert" => pa.user_id_upsert == pb.user_id_upsert,
            "enforce_team_based_model_access" => pa.enforce_team_based_model_access == pb.enforce_team_based_model_access,
            "org_id_jwt_field" => pa.org_id_jwt_field == pb.org_id_jwt_field,
            "user_id_jwt_field" => pa.user_id_jwt_field == pb.user_id_jwt_field,
            "user_email_jwt_field" => pa.user_email_jwt_field == pb.user_email_jwt_field,
            "user_allowed_email_domain" => pa.user_allowed_email_domain == pb.user_allowed_email_domain,
            "end_user_id_jwt_field" => pa.end_user_id_jwt_field == pb.end_user_id_jwt_field,
            "enforce_rbac" => pa.enforce_rbac == pb.enforce_rbac,
            "roles_jwt_field" => pa.roles_jwt_field == pb.roles_jwt_field,
            "role_mappings" => pa.role_mappings == pb.role_mappings,
            "object_id_jwt_field" => pa.object_id_jwt_field == pb.object_id_jwt_field,
            "enforce_scope_based_access" => pa.enforce_scope_based_access == pb.enforce_scope_based_access,
            "scope_mappings" => pa.scope_mappings == pb.scope_mappings,
            "custom_validate" => pa.custom_validate.len() == pb.custom_validate.len(),
            "public_key_ttl" => a.public_key_ttl_ms == b.public_key_ttl_ms,
            "public_key_stale_ttl" => a.public_key_stale_ttl_ms == b.public_key_stale_ttl_ms,
            "oidc_userinfo_enabled" | "oidc_userinfo_endpoint" | "oidc_userinfo_cache_ttl" => a.userinfo == b.userinfo,
            _ => return None,
        },
        ("rule", "public" | "deny" | "require") => {
            let action = |c: &FilterConfig| c.rules.first().map(|r| std::mem::discriminant(&r.action));
            action(a) == action(b)
        }
        ("rule_match", "methods") => a.rules.first().map(|r| r.methods.clone()) == b.rules.first().map(|r| r.methods.clone()),
        ("rule_match", "hosts") => a.rules.first().map(|r| r.hosts.clone()) == b.rules.first().map(|r| r.hosts.clone()),
        ("rule_require", f @ ("admin" | "team" | "scopes")) => {
            let required = |c: &FilterConfig| match c.rules.first().map(|r| &r.action) {
                Some(RuleAction::Require(r)) => Some(match f {
                    "admin" => json!(r.admin),
                    "team" => json!(r.team),
                    _ => json!(r.scopes),
                }),
                _ => None,
            };
            required(a) == required(b)
        }
        ("issuer", "audience") => iss(a).map(|i| i.claim_rules.audience) == iss(b).map(|i| i.claim_rules.audience),
        ("issuer", "jwks_url") => iss(a).map(|i| i.jwks) == iss(b).map(|i| i.jwks),
        _ => return None,
    })
}

fn env_of<'a>(name: &'a str, value: &'a str) -> impl Fn(&str) -> Option<String> + 'a {
    move |k: &str| (k == name).then(|| value.to_string())
}

#[test]
fn stated_defaults_hold() {
    for level in EXAMPLE_LEVELS {
        let rows = table(level);
        for row in &rows {
            let default_cell = row.cell("default");
            let f = &row.field;
            if default_cell.starts_with("required") {
                let e = compile_value(&config_at(level, &Map::new(), std::slice::from_ref(f)));
                let e = e.err().unwrap_or_else(|| panic!("{level}.{f}: documented as required, but the configuration loads without it"));
                assert!(e.contains(f.as_str()), "{level}.{f}: refused without it, but the error does not say so: {e}");
                continue;
            }
            if let Some(var) = default_cell.strip_prefix("env ").map(code_spans).and_then(|s| s.into_iter().next()) {
                let example = row.example();
                let text = example.as_str().unwrap_or_else(|| panic!("{level}.{f}: env default needs a string example"));
                let written = compile_value(&config_at(level, &obj(json!({f.clone(): example.clone()})), &[])).unwrap();
                let from_env = compile(config_at(level, &Map::new(), std::slice::from_ref(f)).to_string().as_bytes(), &env_of(&var, text));
                let from_env = from_env.unwrap_or_else(|e| panic!("{level}.{f}: {var}={text} in the VM environment is refused: {e}"));
                assert_eq!(same(level, f, &written, &from_env), Some(true), "{level}.{f}: {var} does not stand in for the field");
                continue;
            }
            let Some(default) = row.default_literal() else { continue };
            if ["team", "user", "organization", "end_user"].contains(level) {
                let cfg = compile_value(&config_at(level, &Map::new(), &[])).unwrap();
                let record = record_json(cfg.statics.first().unwrap());
                assert!(same_json(&record[f], &default), "{level}.{f}: documented default {default}, the code gives {}", record[f]);
                continue;
            }
            let build = |value: Option<Value>| compile_value(&row_config(level, row, &rows, value, false));
            let base = build(None).unwrap_or_else(|e| panic!("{level}.{f}: the configuration without it is refused: {e}"));
            let with_default = build(Some(default.clone()));
            let with_default = with_default.unwrap_or_else(|e| panic!("{level}.{f}: the documented default {default} is refused: {e}"));
            if let Some(agrees) = same(level, f, &base, &with_default) {
                assert!(agrees, "{level}.{f}: writing the documented default {default} changes the configuration");
                // The comparison must be able to see the field at all.
                let example = row.example();
                if example != default {
                    let with_example = build(Some(example.clone())).unwrap();
                    assert_eq!(same(level, f, &base, &with_example), Some(false), "{level}.{f}: example {example} looks like the default");
                }
            }
        }
    }
}

/// `{a, b}` shapes in the Type column are the members the code allows in those objects.
#[test]
fn documented_object_members_match_the_code() {
    let mut checked = 0;
    for level in EXAMPLE_LEVELS {
        for row in table(level) {
            let ty = row.cell("type");
            let Some(shape) = code_spans(ty).into_iter().find(|s| s.starts_with('{') && serde_json::from_str::<Value>(s).is_err()) else {
                continue;
            };
            let members: BTreeSet<String> =
                shape.trim_matches(['{', '}']).split(',').map(|m| m.trim().trim_end_matches('?').to_string()).collect();
            let probe = if ty.starts_with("list of") { json!([{NOT_A_FIELD: 1}]) } else { json!({NOT_A_FIELD: 1}) };
            let e = compile_value(&config_at(level, &obj(json!({row.field.clone(): probe})), &[]));
            let e = e.err().unwrap_or_else(|| panic!("{level}.{}: an unknown member was accepted", row.field));
            assert_same_fields(&format!("{level}.{} members", row.field), &listed_names(&e), &members);
            checked += 1;
        }
    }
    assert!(checked >= 4, "expected the object shapes of role_permissions, role_mappings, scope_mappings, custom_validate");
}
