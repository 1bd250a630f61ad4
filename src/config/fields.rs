//! Reading plugin-configuration values: the error format every message uses, and typed reads
//! of JSON members (strings, flags, lists, objects, seconds) that name the field on failure.

use crate::authz::claim_path::ClaimPath;
use serde_json::{Map, Value};

/// Where LiteLLM's JWT settings are, as the operator writes the path.
pub(super) const JWTAUTH: &str = "general_settings.litellm_jwtauth";


pub(super) fn err(field: &str, what: impl std::fmt::Display) -> String {
    format!("invalid plugin configuration: {field}: {what}")
}

pub(super) fn seconds_ms(v: Option<f64>, default_s: f64, field: &str) -> Result<u64, String> {
    let s = v.unwrap_or(default_s);
    if !(s.is_finite() && (0.0..=86_400.0 * 30.0).contains(&s)) {
        return Err(err(field, "must be a number of seconds, 0 to 2592000"));
    }
    Ok((s * 1000.0) as u64)
}

pub(super) fn field_err(name: &str, what: impl std::fmt::Display) -> String {
    err(&format!("{JWTAUTH}.{name}"), what)
}

pub(super) fn opt_string(jwt: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match jwt.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(field_err(name, "must be a non-empty string")),
    }
}

pub(super) fn opt_path(jwt: &Map<String, Value>, name: &str) -> Result<Option<ClaimPath>, String> {
    Ok(opt_string(jwt, name)?.and_then(|p| ClaimPath::parse(&p)))
}

pub(super) fn flag(map: &Map<String, Value>, name: &str, field: &str) -> Result<bool, String> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(err(field, "must be a boolean")),
    }
}

pub(super) fn string_list(value: Option<&Value>, field: &str) -> Result<Option<Vec<String>>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| err(field, "must be a list of strings")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(err(field, "must be a list of strings")),
    }
}

pub(super) fn objects<'a>(value: Option<&'a Value>, field: &str) -> Result<Vec<&'a Map<String, Value>>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_object().ok_or_else(|| err(field, "entries must be objects")))
            .collect(),
        Some(_) => Err(err(field, "must be a list")),
    }
}

/// Refuse members other than `allowed` (pydantic's `extra = "forbid"`).
pub(super) fn only_keys(obj: &Map<String, Value>, allowed: &[&str], field: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(err(field, format!("unknown member {k:?} (allowed: {})", allowed.join(", ")))),
        None => Ok(()),
    }
}
