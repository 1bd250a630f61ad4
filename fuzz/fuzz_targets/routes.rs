//! `RouteList::compile` + `matches`: never panic; every exact entry matches itself, a `*` entry
//! matches what starts with it, and the verdict equals an independent oracle — literal and
//! prefix comparison, and for LiteLLM's route groups Starlette's own reading of the templates
//! as regular expressions (`{x}` = `[^/]+`, `{x:path}` = `.*`).
//! Input: entries, one a line, then an empty line, then routes; without an empty line the
//! entries are also the routes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_jwt_auth::routes::groups;
use llm_jwt_auth::routes::RouteList;
use regex::Regex;
use std::collections::HashMap;
use std::sync::OnceLock;

fn template_regex(template: &str) -> Regex {
    let mut pattern = String::from("^");
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map(|c| c + open).expect("group members close their braces");
        pattern.push_str(&regex::escape(&rest[..open]));
        pattern.push_str(if rest[open + 1..close].ends_with(":path") { "(?s:.*)" } else { "[^/]+" });
        rest = &rest[close + 1..];
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    Regex::new(&pattern).expect("template regex compiles")
}

/// Every group's members, as regexes (templates) or plain text, built once.
fn groups() -> &'static HashMap<&'static str, Vec<Result<Regex, &'static str>>> {
    static GROUPS: OnceLock<HashMap<&'static str, Vec<Result<Regex, &'static str>>>> = OnceLock::new();
    GROUPS.get_or_init(|| {
        groups::GROUP_NAMES
            .iter()
            .map(|&name| {
                let members = groups::members(name).expect("listed group has members");
                let compiled =
                    members.iter().map(|&m| if m.contains('{') { Ok(template_regex(m)) } else { Err(m) }).collect();
                (name, compiled)
            })
            .collect()
    })
}

fn oracle(entries: &[&str], route: &str) -> bool {
    entries.iter().any(|entry| match groups().get(entry) {
        Some(members) => members.iter().any(|m| match m {
            Ok(re) => re.is_match(route),
            Err(text) => *text == route,
        }),
        None => match entry.strip_suffix('*') {
            Some(prefix) => route.starts_with(prefix),
            None => *entry == route,
        },
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines: Vec<&str> = text.split('\n').collect();
    let (entries, routes) = match lines.iter().position(|l| l.is_empty()) {
        Some(i) => (&lines[..i], &lines[i + 1..]),
        None => (&lines[..], &lines[..]),
    };
    let list = RouteList::compile(entries);
    assert_eq!(list.entries(), entries);
    for entry in entries {
        match (groups::members(entry), entry.strip_suffix('*')) {
            (Some(members), _) => {
                for m in members.iter().filter(|m| !m.contains('{')) {
                    assert!(list.matches(m), "group {entry} does not match its member {m}");
                }
            }
            (None, Some(prefix)) => {
                assert!(list.matches(prefix) && list.matches(&format!("{prefix}/x")), "{entry}");
            }
            (None, None) => assert!(list.matches(entry), "exact entry {entry:?} does not match itself"),
        }
    }
    for route in routes {
        assert_eq!(list.matches(route), oracle(entries, route), "entries {entries:?} route {route:?}");
    }
});
