//! LiteLLM's model matching (`_can_object_call_model`, spec §4.2): may an object (team, user)
//! whose `models` list is this call the requested model? Wildcards (with LiteLLM's `.`
//! quirk), provider wildcards for bare names, `*` / `all-proxy-models`, aliases and access
//! groups.

use std::collections::BTreeMap;

/// Model access groups declared in the configuration: group name → models in it (what
/// LiteLLM's router knows from `model_info.access_groups`).
pub type AccessGroups = BTreeMap<String, Vec<String>>;

/// Provider of a bare model name, as LiteLLM's provider resolver would say for the common
/// families (used for `openai/*`-style team entries).
fn provider_of(model: &str) -> Option<&'static str> {
    let m = model.to_ascii_lowercase();
    let starts = |p: &[&str]| p.iter().any(|x| m.starts_with(x));
    if starts(&["gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-", "dall-e", "whisper", "tts-", "davinci", "babbage", "omni-moderation", "text-moderation"]) {
        Some("openai")
    } else if starts(&["claude"]) {
        Some("anthropic")
    } else if starts(&["gemini"]) {
        Some("gemini")
    } else if starts(&["command"]) {
        Some("cohere")
    } else if starts(&["mistral", "mixtral", "codestral", "pixtral"]) {
        Some("mistral")
    } else {
        None
    }
}

/// LiteLLM's wildcard: `*` → `.*`, everything else literal except `.`, which LiteLLM leaves
/// as a regex wildcard (spec §10.12) — reproduced here: `.` matches any one character.
fn wildcard_matches(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| t.get(i..).is_some_and(|tail| go(rest, tail))),
            Some(('.', rest)) => t.split_first().is_some_and(|(_, tail)| go(rest, tail)),
            Some((c, rest)) => t.split_first().is_some_and(|(tc, tail)| tc == c && go(rest, tail)),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// `_can_object_call_model`: may an object with `allowed` models call `model`?
pub fn can_call_model(
    model: &str,
    allowed: &[String],
    aliases: &BTreeMap<String, String>,
    groups: &AccessGroups,
) -> bool {
    if allowed.is_empty() || allowed.iter().any(|m| m == "*" || m == "all-proxy-models") {
        return true;
    }
    // Access groups: an allowed entry naming a group that contains the model.
    if allowed.iter().any(|entry| groups.get(entry).is_some_and(|members| members.iter().any(|m| m == model))) {
        return true;
    }
    if aliases.contains_key(model) {
        return true;
    }
    let wildcards: Vec<&String> = allowed.iter().filter(|m| m.contains('*')).collect();
    if wildcards.iter().any(|p| wildcard_matches(p, model)) {
        return true;
    }
    if !model.contains('/') {
        if let Some(provider) = provider_of(model) {
            let qualified = format!("{provider}/{model}");
            if wildcards.iter().any(|p| wildcard_matches(p, &qualified)) {
                return true;
            }
        }
    }
    allowed.iter().any(|m| m == model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn can(model: &str, allowed: &[&str]) -> bool {
        can_call_model(model, &s(allowed), &BTreeMap::new(), &AccessGroups::new())
    }

    #[test]
    fn empty_list_star_and_all_proxy_models_allow_everything() {
        assert!(can("anything", &[]));
        assert!(can("anything", &["gpt-4o", "*"]));
        assert!(can("anything", &["all-proxy-models"]));
    }

    #[test]
    fn exact_and_wildcards_including_provider_prefixes() {
        assert!(can("gpt-4o", &["gpt-4o"]));
        assert!(!can("gpt-4o-mini", &["gpt-4o"]));
        assert!(can("gpt-4o-mini", &["gpt-4o*"]));
        assert!(can("bedrock/claude-3", &["bedrock/*"]));
        assert!(!can("bedrockz/claude-3", &["bedrock/*"]));
        assert!(can("gpt-4", &["openai/*"]), "bare model resolved to its provider");
        assert!(can("claude-3-5-sonnet", &["anthropic/*"]));
        assert!(!can("claude-3-5-sonnet", &["openai/*"]));
        assert!(can("gpt-4xo-mini", &["gpt-4.o*"]), "`.` is a regex wildcard in LiteLLM patterns");
        assert!(!can("gpt-4xo", &["gpt-4.o"]), "entries without `*` are exact");
    }

    #[test]
    fn aliases_and_access_groups() {
        let mut aliases = BTreeMap::new();
        aliases.insert("fast".to_string(), "gpt-4o-mini".to_string());
        assert!(can_call_model("fast", &s(&["gpt-4o"]), &aliases, &AccessGroups::new()));
        let mut groups = AccessGroups::new();
        groups.insert("beta-models".into(), s(&["o3", "gemini-2.5-pro"]));
        assert!(can_call_model("o3", &s(&["beta-models"]), &BTreeMap::new(), &groups));
        assert!(!can_call_model("gpt-4o", &s(&["beta-models"]), &BTreeMap::new(), &groups));
    }
}
