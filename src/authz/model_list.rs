//! `/v1/models` as the caller may use it: LiteLLM answers a model list with the models the
//! caller may call; at the edge the upstream's list is filtered to them. A [`ModelFilter`] is
//! what a decision found the caller limited by — the RBAC role's models, the scopes' models,
//! the team's (else the user's) models with LiteLLM's matching — and [`filter_list`] applies
//! it to an OpenAI-shaped list (`{"object": "list", "data": [{"id": …}, …]}`) or LiteLLM's
//! `/model/info` (`{"data": [{"model_name": …}, …]}`), keeping every other byte of the answer.

use super::model_access::{can_call_model, AccessGroups};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The routes whose answer is a list of models: LiteLLM's `MODEL_LIST_ROUTES` and its
/// model info routes.
pub const MODEL_LIST_ROUTES: &[&str] = &["/models", "/v1/models", "/v1/model/info", "/model/info"];

/// Which models the caller may call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelFilter {
    /// Exact names each of which sets (role permission, scope mappings) must contain.
    pub exact: Vec<Vec<String>>,
    /// The team's (else the user's) `models`, aliases and the access groups, matched as LiteLLM
    /// matches a requested model.
    pub object: Option<(Vec<String>, BTreeMap<String, String>, AccessGroups)>,
}

impl ModelFilter {
    /// No rule limits the caller's models: the list goes through as it is.
    pub fn unrestricted(&self) -> bool {
        self.exact.is_empty() && self.object.as_ref().is_none_or(|(models, _, _)| can_call_everything(models))
    }

    pub fn allows(&self, model: &str) -> bool {
        self.exact.iter().all(|names| names.iter().any(|n| n == model))
            && self.object.as_ref().is_none_or(|(models, aliases, groups)| can_call_model(model, models, aliases, groups))
    }
}

fn can_call_everything(models: &[String]) -> bool {
    models.is_empty() || models.iter().any(|m| m == "*" || m == "all-proxy-models")
}

/// One member of the answer, its value as it was written.
struct Member<'a>(&'a str, &'a RawValue);

/// A JSON object's members in their order, values unparsed (serde_json's `Map` would sort
/// them and reformat every value).
struct Members<'a>(Vec<Member<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<&'de str, &'de RawValue>()? {
                    out.push(Member(k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Ordered)
    }
}

/// What [`filter_list`] made of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// The list without the models the caller may not call.
    Filtered(Vec<u8>),
    /// A JSON object without a `data` member: no list, nothing to filter (it goes through).
    NotAList,
    /// Not JSON, or a `data` that is no array: it cannot be checked, so it is not shown.
    Unreadable,
}

/// The list without the models `filter` does not allow. An entry is kept only when its `id`
/// (`model_name` for `/model/info`) names an allowed model: an entry without one is dropped,
/// never shown unchecked.
pub fn filter_list(body: &[u8], filter: &ModelFilter) -> Listed {
    let Some(members) = std::str::from_utf8(body).ok().and_then(|text| serde_json::from_str::<Members>(text).ok()) else {
        return Listed::Unreadable;
    };
    let Some(data) = members.0.iter().find(|m| m.0 == "data").map(|m| m.1) else { return Listed::NotAList };
    let Ok(entries) = serde_json::from_str::<Vec<&RawValue>>(data.get()) else { return Listed::Unreadable };
    #[derive(Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        id: Option<&'a str>,
        #[serde(borrow)]
        model_name: Option<&'a str>,
    }
    let kept: Vec<&str> = entries
        .iter()
        .filter(|entry| {
            let named: Option<Named> = serde_json::from_str(entry.get()).ok();
            named.and_then(|n| n.id.or(n.model_name)).is_some_and(|model| filter.allows(model))
        })
        .map(|entry| entry.get())
        .collect();
    let mut out = String::with_capacity(body.len());
    out.push('{');
    for (i, Member(key, value)) in members.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let Ok(key_text) = serde_json::to_string(key) else { return Listed::Unreadable };
        out.push_str(&key_text);
        out.push(':');
        match *key {
            "data" => {
                out.push('[');
                out.push_str(&kept.join(","));
                out.push(']');
            }
            _ => out.push_str(value.get()),
        }
    }
    out.push('}');
    Listed::Filtered(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn team(models: &[&str]) -> ModelFilter {
        let mut groups = AccessGroups::new();
        groups.insert("beta".into(), vec!["o3".into()]);
        ModelFilter { exact: Vec::new(), object: Some((models.iter().map(|m| m.to_string()).collect(), BTreeMap::new(), groups)) }
    }

    fn filtered(body: &[u8], f: &ModelFilter) -> Vec<u8> {
        match filter_list(body, f) {
            Listed::Filtered(out) => out,
            other => panic!("not filtered: {other:?}"),
        }
    }

    fn ids(body: &[u8]) -> Vec<String> {
        let v: Value = serde_json::from_slice(body).unwrap();
        v["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().or(e["model_name"].as_str()).unwrap().to_string()).collect()
    }

    const OPENAI: &str = r#"{"object": "list", "data": [
        {"id": "gpt-4o", "object": "model", "created": 1, "owned_by": "openai"},
        {"id": "gpt-4o-mini", "object": "model", "created": 2, "owned_by": "openai"},
        {"id": "o3", "object": "model", "created": 3, "owned_by": "openai"},
        {"id": "claude-3-5-sonnet", "object": "model", "created": 4, "owned_by": "anthropic"},
        {"object": "model"}
    ]}"#;

    #[test]
    fn the_teams_models_with_litellms_matching() {
        let out = filtered(OPENAI.as_bytes(), &team(&["gpt-4o*", "beta"]));
        assert_eq!(ids(&out), ["gpt-4o", "gpt-4o-mini", "o3"], "wildcard and access group; no id: dropped");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"][0], json!({"id": "gpt-4o", "object": "model", "created": 1, "owned_by": "openai"}));
        assert!(String::from_utf8(out).unwrap().starts_with(r#"{"object":"list","data":[{"id": "gpt-4o", "object""#), "order and entries as written");
        assert_eq!(ids(&filtered(OPENAI.as_bytes(), &team(&["anthropic/*"]))), ["claude-3-5-sonnet"]);
    }

    #[test]
    fn every_rule_must_allow_a_model() {
        let mut f = team(&["gpt-4o*"]);
        f.exact.push(vec!["gpt-4o-mini".into(), "claude-3-5-sonnet".into()]);
        assert!(!f.unrestricted());
        assert_eq!(ids(&filtered(OPENAI.as_bytes(), &f)), ["gpt-4o-mini"]);
        assert!(team(&[]).unrestricted() && team(&["all-proxy-models"]).unrestricted() && ModelFilter::default().unrestricted());
    }

    #[test]
    fn litellms_model_info_is_filtered_by_model_name() {
        let info = r#"{"data": [{"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o"}},
                                {"model_name": "claude-3-5-sonnet", "litellm_params": {}}]}"#;
        assert_eq!(ids(&filtered(info.as_bytes(), &team(&["gpt-4o"]))), ["gpt-4o"]);
    }

    #[test]
    fn other_answers_are_no_lists_and_unreadable_ones_are_not_shown() {
        for body in ["{\"error\": {\"message\": \"x\"}}", "{\"id\": \"chatcmpl\", \"choices\": []}"] {
            assert_eq!(filter_list(body.as_bytes(), &team(&["gpt-4o"])), Listed::NotAList, "{body}");
        }
        for body in ["", "[]", "{\"data\": {}}", "not json", "{\"data\": [1,", "\u{1f}\u{8b}gzip"] {
            assert_eq!(filter_list(body.as_bytes(), &team(&["gpt-4o"])), Listed::Unreadable, "{body}");
        }
        let numbers = filtered(br#"{"data": [1, "gpt-4o", {"id": 5}]}"#, &team(&["gpt-4o"]));
        assert_eq!(numbers, br#"{"data":[]}"#, "entries that name no model are dropped");
    }
}
