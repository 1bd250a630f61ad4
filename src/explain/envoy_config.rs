//! The plugin configurations of an Envoy configuration: every Wasm HTTP filter's
//! `config.configuration` (a `StringValue` of JSON, as this filter takes it), with the
//! listener it sits in and the environment variables its VM gets.

use serde_json::Value;
use std::collections::BTreeMap;

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// One Wasm filter's plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// The listener it belongs to (`static_resources.listeners[].name`), if any.
    pub listener: Option<String>,
    /// The plugin's `name` (or `root_id`).
    pub name: String,
    /// The plugin configuration (JSON text).
    pub json: String,
    /// `vm_config.environment_variables.key_values`.
    pub env: BTreeMap<String, String>,
}

/// Every plugin configuration in `text`: a plugin configuration itself (JSON), or an Envoy
/// configuration (YAML or JSON) to take them from.
pub fn plugin_configs(text: &str) -> Result<Vec<PluginConfig>, String> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML or JSON: {e}"))?;
    let looks_like_envoy = doc.get("static_resources").is_some() || doc.get("admin").is_some() || doc.get("node").is_some();
    if !looks_like_envoy {
        // A plugin configuration: keep the operator's own text (duplicate keys are its business).
        return Ok(vec![PluginConfig { listener: None, name: "plugin configuration".into(), json: plain_json(text, &doc), env: BTreeMap::new() }]);
    }
    let mut found = Vec::new();
    walk(&doc, None, &mut found);
    if found.is_empty() {
        return Err("no Wasm HTTP filter (envoy.extensions.filters.http.wasm.v3.Wasm) in this Envoy configuration".into());
    }
    Ok(found)
}

/// The JSON text of a plugin configuration read as YAML: the text itself when it is JSON.
fn plain_json(text: &str, doc: &Value) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(_) => text.to_string(),
        Err(_) => doc.to_string(),
    }
}

fn walk(v: &Value, listener: Option<&str>, found: &mut Vec<PluginConfig>) {
    match v {
        Value::Object(map) => {
            let here = match (map.get("address"), map.get("name").and_then(Value::as_str)) {
                (Some(_), Some(name)) if map.contains_key("filter_chains") => Some(name),
                _ => listener,
            };
            if map.get("@type").and_then(Value::as_str) == Some(WASM_FILTER) {
                if let Some(config) = map.get("config") {
                    found.push(plugin(config, here));
                }
                return;
            }
            for child in map.values() {
                walk(child, here, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, listener, found)),
        _ => {}
    }
}

fn plugin(config: &Value, listener: Option<&str>) -> PluginConfig {
    let name = config
        .get("name")
        .or_else(|| config.get("root_id"))
        .and_then(Value::as_str)
        .unwrap_or("wasm")
        .to_string();
    let json = match config.pointer("/configuration/value") {
        Some(Value::String(text)) => text.clone(),
        _ => String::new(),
    };
    let env = config
        .pointer("/vm_config/environment_variables/key_values")
        .and_then(Value::as_object)
        .map(|kv| kv.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    PluginConfig { listener: listener.map(str::to_owned), name, json, env }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_s_envoy_yaml_has_two_gateways() {
        let found = plugin_configs(include_str!("../../envoy.yaml")).unwrap();
        let listeners: Vec<Option<&str>> = found.iter().map(|p| p.listener.as_deref()).collect();
        assert_eq!(found.len(), 2, "{listeners:?}");
        assert!(listeners.iter().all(Option::is_some), "{listeners:?}");
        for p in &found {
            crate::config::compile(p.json.as_bytes(), &|k| p.env.get(k).cloned()).unwrap();
        }
    }

    #[test]
    fn a_plugin_configuration_is_taken_as_it_is() {
        let found = plugin_configs(r#"{"public_key_url": "https://idp/jwks"}"#).unwrap();
        assert_eq!(found[0].json, r#"{"public_key_url": "https://idp/jwks"}"#);
        let yaml = plugin_configs("public_key_url: https://idp/jwks\n").unwrap();
        assert_eq!(serde_json::from_str::<Value>(&yaml[0].json).unwrap()["public_key_url"], "https://idp/jwks");
        assert!(plugin_configs("static_resources: {}\n").unwrap_err().contains("no Wasm HTTP filter"));
        assert!(plugin_configs("{nope").is_err());
    }
}
