//! `sync_user_role_and_teams` (newest LiteLLM's `sync_user_role_and_teams`): the role
//! `jwt_litellm_role_map` gives the token's roles, and the teams its claims name, written to
//! its user record. The decision reads the synced user at once (its teams feed the team
//! fallbacks, its role is forwarded); the shell stores it and, with `write_through`, sends the
//! changes to LiteLLM — after the request is decided, never in its way.

use super::claim_path::ClaimPath;
use super::Policy;
use crate::records::User;
use serde_json::{Map, Value};
use std::rc::Rc;

/// What a sync changed in one user record: the record as it now is, and the changes to send.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSync {
    pub user: User,
    /// The new role, when it changed.
    pub role: Option<String>,
    /// Teams the user was added to, and removed from.
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

impl Policy {
    /// The user record after the sync, and what changed (`None`: nothing, or no sync).
    pub(super) fn sync_user(&self, claims: &Map<String, Value>, user: Option<Rc<User>>) -> (Option<Rc<User>>, Option<UserSync>) {
        let Some(found) = user.as_deref().filter(|_| self.sync_user_role_and_teams) else { return (user, None) };
        let mut synced = found.clone();
        let role = self.mapped_role(claims).filter(|r| found.user_role.as_deref() != Some(r.as_str()));
        if let Some(r) = &role {
            synced.user_role = Some(r.clone());
        }
        // With `fallback_to_db_teams` LiteLLM reads both claim shapes (and keeps the memberships
        // of a token that claims none); otherwise only the groups claim.
        let claimed = if self.fallback_to_db_teams { self.jwt_team_ids(claims) } else { self.group_team_ids(claims) };
        let mut existing: Vec<String> = Vec::new();
        for t in &found.teams {
            if !existing.contains(t) {
                existing.push(t.clone());
            }
        }
        let add: Vec<String> = claimed.iter().filter(|t| !existing.contains(t)).cloned().collect();
        let keep_all = self.fallback_to_db_teams && claimed.is_empty();
        let remove: Vec<String> = match keep_all {
            true => Vec::new(),
            false => existing.iter().filter(|t| !claimed.contains(t)).cloned().collect(),
        };
        if role.is_none() && add.is_empty() && remove.is_empty() {
            return (user, None);
        }
        synced.teams = existing.into_iter().filter(|t| !remove.contains(t)).chain(add.iter().cloned()).collect();
        let sync = UserSync { user: synced.clone(), role, add, remove };
        (Some(Rc::new(synced)), Some(sync))
    }

    /// The LiteLLM role of the first `jwt_litellm_role_map` entry whose glob matches one of the
    /// token's roles (`roles_jwt_field`), as LiteLLM's `map_jwt_role_to_litellm_role`.
    fn mapped_role(&self, claims: &Map<String, Value>) -> Option<String> {
        let roles = self.roles_jwt_field.as_ref().map(|f: &ClaimPath| f.strings(claims)).unwrap_or_default();
        self.jwt_litellm_role_map
            .iter()
            .find(|(pattern, _)| roles.iter().any(|r| fnmatch(pattern, r)))
            .map(|(_, role)| role.clone())
    }
}

/// Python's `fnmatch.fnmatch` on POSIX (case-sensitive): `*` any run, `?` one character,
/// `[seq]` / `[!seq]` a set (ranges `a-z`); a `[` without its `]` is itself.
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    matches_from(&p, &t)
}

fn matches_from(p: &[char], t: &[char]) -> bool {
    let Some((first, rest)) = p.split_first() else { return t.is_empty() };
    let tail = t.get(1..).unwrap_or_default();
    match first {
        '*' => (0..=t.len()).any(|skip| matches_from(rest, t.get(skip..).unwrap_or_default())),
        '?' => !t.is_empty() && matches_from(rest, tail),
        '[' => match set_end(p) {
            Some(end) => {
                let set = p.get(1..end).unwrap_or_default();
                let after = p.get(end + 1..).unwrap_or_default();
                t.first().is_some_and(|c| in_set(set, *c)) && matches_from(after, tail)
            }
            None => t.first() == Some(&'[') && matches_from(rest, tail),
        },
        c => t.first() == Some(c) && matches_from(rest, tail),
    }
}

/// The index of the `]` closing the set that starts `p` (a `]` right after `[` or `[!` is a
/// member, as in Python).
fn set_end(p: &[char]) -> Option<usize> {
    let mut i = 1;
    if p.get(i) == Some(&'!') {
        i += 1;
    }
    if p.get(i) == Some(&']') {
        i += 1;
    }
    p.iter().skip(i).position(|c| *c == ']').map(|j| i + j)
}

fn in_set(set: &[char], c: char) -> bool {
    let (negated, mut set) = match set.split_first() {
        Some(('!', rest)) => (true, rest),
        _ => (false, set),
    };
    let mut hit = false;
    while let Some((&first, rest)) = set.split_first() {
        match rest {
            ['-', last, more @ ..] => {
                hit |= first <= c && c <= *last;
                set = more;
            }
            _ => {
                hit |= first == c;
                set = rest;
            }
        }
    }
    hit != negated
}

#[cfg(test)]
mod tests {
    use super::fnmatch;

    #[test]
    fn fnmatch_as_pythons() {
        // Expected values: Python 3's fnmatch.fnmatchcase on the same pairs.
        let cases = [
            ("admin", "admin", true),
            ("Admin", "admin", false),
            ("llm-*", "llm-admin", true),
            ("llm-*", "llm", false),
            ("*admin*", "super-admin-x", true),
            ("team-?", "team-a", true),
            ("team-?", "team-ab", false),
            ("[abc]x", "bx", true),
            ("[!abc]x", "bx", false),
            ("[!abc]x", "dx", true),
            ("[a-c]1", "c1", true),
            ("[a-c]1", "d1", false),
            ("[]]", "]", true),
            ("[", "[", true),
            ("a[", "a[", true),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("**x", "abx", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(fnmatch(pattern, text), want, "{pattern:?} vs {text:?}");
        }
    }
}
