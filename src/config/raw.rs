//! The JSON the operator writes, as serde reads it, and serde's errors in the operator's words.

use super::fields::err;
use super::{ApiKeys, Mode};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `public_key_url`: one URL (LiteLLM's comma-separated form included) or a list of them.
#[derive(Debug)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(OneOrMany::One(s)),
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(serde::de::Error::custom("expected a URL, a list of URLs or a comma-separated string")),
                })
                .collect::<Result<_, _>>()
                .map(OneOrMany::Many),
            _ => Err(serde::de::Error::custom("expected a URL, a list of URLs or a comma-separated string")),
        }
    }
}

/// The JSON the operator writes in the Wasm filter's `configuration`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) public_key_url: Option<OneOrMany>,
    #[serde(default)]
    pub(super) clusters: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) public_keys: Vec<String>,
    pub(super) audience: Option<String>,
    pub(super) issuer: Option<String>,
    #[serde(default)]
    pub(super) leeway: u64,
    /// Refuse tokens without `exp` (default). `false`: PyJWT's (and LiteLLM's) rule.
    pub(super) require_exp: Option<bool>,
    /// Longest accepted token lifetime in seconds (`exp − iat`, or `exp − now` without `iat`).
    pub(super) max_token_lifetime: Option<u64>,
    /// Accepted header `typ` values (RFC 9068 `at+jwt`); any when absent.
    pub(super) token_types: Option<Vec<String>>,
    pub(super) jwks_fetch_timeout_ms: Option<u64>,
    /// Seconds between refetches a token with an unknown `kid` may cause (per URL and Envoy
    /// process); 0: never refetch early (LiteLLM: keys change only when the TTL runs out).
    pub(super) kid_refetch_interval: Option<f64>,
    /// Claims scopes are read from (LiteLLM: `scope`; Azure AD access tokens use `scp`).
    pub(super) scope_claims: Option<Vec<String>>,
    /// Largest body read when a rule needs the requested model.
    pub(super) max_body_bytes: Option<usize>,
    /// Verified tokens remembered per worker (0 disables).
    pub(super) token_cache_size: Option<usize>,
    /// `enforce` (default) or `report` (shadow mode: decide and record, let everything through).
    #[serde(default)]
    pub(super) mode: Mode,
    /// Also publish the identity and denial reason as Envoy filter state (costs two or more
    /// host calls per request; the same values are in the forwarded headers anyway).
    #[serde(default)]
    pub(super) filter_state: bool,
    /// Static records (LiteLLM field names).
    #[serde(default)]
    pub(super) teams: Vec<Value>,
    #[serde(default)]
    pub(super) users: Vec<Value>,
    #[serde(default)]
    pub(super) organizations: Vec<Value>,
    #[serde(default)]
    pub(super) end_users: Vec<Value>,
    /// Model access groups: name → models (LiteLLM's `model_info.access_groups`).
    #[serde(default)]
    pub(super) model_access_groups: BTreeMap<String, Vec<String>>,
    /// Where records not in the configuration come from.
    pub(super) record_source: Option<RawSource>,
    /// Several identity providers (LiteLLM's `litellm_jwtauth.issuers`; either place, not both).
    pub(super) issuers: Option<Value>,
    /// Token locations (Envoy `jwt_authn` names). None set: `Authorization: Bearer`, as LiteLLM.
    #[serde(default)]
    pub(super) from_headers: Vec<RawHeaderLocation>,
    #[serde(default)]
    pub(super) from_params: Vec<String>,
    #[serde(default)]
    pub(super) from_cookies: Vec<String>,
    /// Keep the credential in the request sent upstream (default) or remove it.
    pub(super) forward: Option<bool>,
    /// What to do with a credential that is not a JWT (`sk-…` virtual keys).
    #[serde(default)]
    pub(super) api_keys: ApiKeys,
    /// DPoP-bound tokens (RFC 9449).
    pub(super) dpop: Option<RawDpop>,
    /// Name the requested model in a request header for Envoy's routes (off when absent).
    pub(super) model_routing: Option<RawModelRouting>,
    /// The records' rate limits (on when absent).
    pub(super) rate_limits: Option<RawRateLimits>,
    /// Per-route policy, first match wins.
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
    #[serde(default)]
    pub(super) general_settings: Map<String, Value>,
}

/// Enums written as one word in the configuration, read as a string so that any other JSON
/// value gets "expected one of …" rather than serde's internal words.
macro_rules! word_enum {
    ($ty:ident { $($word:literal => $variant:ident),+ $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                const WORDS: &[&str] = &[$($word),+];
                struct Words;
                impl serde::de::Visitor<'_> for Words {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        write!(f, "one of {}", WORDS.join(", "))
                    }
                    fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<$ty, E> {
                        match word {
                            $($word => Ok($ty::$variant),)+
                            other => Err(E::custom(format!("{other:?} is not one of {}", WORDS.join(", ")))),
                        }
                    }
                }
                d.deserialize_str(Words)
            }
        }
    };
}

word_enum!(Mode { "enforce" => Enforce, "report" => Report });
word_enum!(ApiKeys { "refuse" => Refuse, "pass_through" => PassThrough });
/// What kind of record source `record_source.type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// LiteLLM's management API: `/team/info?team_id=…` etc., with the master key.
    Litellm,
    /// Any JSON service: one URL path template per kind, `{id}` replaced (URL-encoded).
    Http,
}
word_enum!(SourceKind { "litellm" => Litellm, "http" => Http });

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDpop {
    pub(super) enabled: bool,
    pub(super) max_age: Option<u64>,
    pub(super) max_skew: Option<u64>,
    pub(super) public_origin: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModelRouting {
    pub(super) enabled: bool,
    pub(super) header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimits {
    pub(super) enabled: bool,
    pub(super) window_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaderLocation {
    pub(super) name: String,
    #[serde(default)]
    pub(super) value_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(rename = "match")]
    pub(super) matcher: RawMatch,
    #[serde(default)]
    pub(super) public: bool,
    #[serde(default)]
    pub(super) deny: bool,
    pub(super) require: Option<RawRequire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub(super) path: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) routes: Option<Vec<String>>,
    #[serde(default)]
    pub(super) methods: Vec<String>,
    #[serde(default)]
    pub(super) hosts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequire {
    #[serde(default)]
    pub(super) admin: bool,
    #[serde(default)]
    pub(super) team: bool,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    pub(super) claims: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    #[serde(rename = "type")]
    pub(super) kind: SourceKind,
    pub(super) url: String,
    pub(super) cluster: Option<String>,
    pub(super) master_key: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) paths: BTreeMap<String, String>,
    pub(super) ttl: Option<f64>,
    pub(super) negative_ttl: Option<f64>,
    pub(super) stale_ttl: Option<f64>,
    pub(super) timeout_ms: Option<u64>,
    #[serde(default)]
    pub(super) write_through: bool,
}

/// A JSON error in the operator's words: syntax errors with their line and column, type errors
/// as "expected …, got …" without Rust's type names.
pub(super) fn read_error(path: &str, e: &serde_json::Error) -> String {
    let at = format!("line {}, column {}", e.line(), e.column());
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or_default();
    if e.is_syntax() || e.is_eof() || path == "?" || path == "." {
        return format!("invalid plugin configuration: not valid JSON at {at}: {text}");
    }
    let plain = |t: &str| -> String {
        let t = t.trim();
        if let Some(rest) = t.strip_prefix("struct ") {
            return format!("an object ({rest})").replace(" (Raw", " (").replace("(Config)", "(the configuration)");
        }
        match t {
            "u64" | "u32" | "u16" | "u8" | "usize" => "a whole number (0 or more)".into(),
            "f64" | "f32" => "a number".into(),
            "a sequence" => "a list".into(),
            "a map" => "an object".into(),
            "a boolean" => "true or false".into(),
            other => other.to_string(),
        }
    };
    let got = |t: &str| -> String {
        let t = t.trim();
        for (serde_word, ours) in [("string ", "the string "), ("integer ", "the number "), ("floating point ", "the number "), ("boolean ", "")] {
            if let Some(v) = t.strip_prefix(serde_word) {
                return format!("{ours}{}", v.trim_matches('`'));
            }
        }
        match t {
            "map" => "an object".into(),
            "sequence" => "a list".into(),
            "unit value" | "null" => "null".into(),
            other => other.to_string(),
        }
    };
    let what = match text.split_once(", expected ") {
        // "unknown field `x`, expected one of `a`, `b`" already says it in the operator's words.
        Some(_) if text.starts_with("unknown field") => text.to_string(),
        Some((found, expected)) => {
            let found = found.strip_prefix("invalid type: ").or_else(|| found.strip_prefix("invalid value: ")).unwrap_or(found);
            format!("expected {}, got {}", plain(expected), got(found))
        }
        None => text.to_string(),
    };
    err(path, format!("{what} ({at})"))
}

/// The configuration JSON as written: an object, or nothing at all (then everything comes from
/// the environment). Errors name the member, or the line and column of a syntax error.
pub(super) fn read(json: &[u8]) -> Result<RawConfig, String> {
    match json.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(RawConfig::default()),
        Some(b'{') => {
            let mut de = serde_json::Deserializer::from_slice(json);
            let raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                read_error(&path, e.inner())
            })?;
            de.end().map_err(|e| read_error(".", &e))?;
            Ok(raw)
        }
        Some(_) => Err("invalid plugin configuration: must be a JSON object ({…})".into()),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;
    use crate::config::{compile, Mode};
    use serde_json::json;

    #[test]
    fn errors_read_as_the_operator_wrote_the_config() {
        for (cfg, says) in [
            (r#"{"public_key_url": 5}"#, "public_key_url: expected a URL, a list of URLs or a comma-separated string"),
            (r#"{"public_key_url": ["http://a/j", 5]}"#, "public_key_url: expected a URL, a list of URLs or a comma-separated string"),
            (r#"{"public_key_url": "http://a/j", "leeway": "30"}"#, "leeway: expected a whole number (0 or more), got the string \"30\""),
            (r#"{"public_key_url": "http://a/j", "forward": "no"}"#, "forward: expected true or false, got the string \"no\""),
            (r#"{"public_key_url": "http://a/j", "teams": {}}"#, "teams: expected a list, got an object"),
            (r#"{"public_key_url": "http://a/j", "mode": 3}"#, "mode: expected one of enforce, report"),
            (r#"{"public_key_url": "http://a/j", "api_keys": "allow"}"#, "api_keys: \"allow\" is not one of refuse, pass_through"),
            ("{\n \"public_key_url\": \"http://a/j\"\n \"x\": 1}", "not valid JSON at line 3, column 2: expected `,` or `}`"),
            (r#"{"public_key_url": "http://a/j",}"#, "not valid JSON at line 1, column 33: trailing comma"),
            ("[1]", "must be a JSON object"),
        ] {
            let e = compile(cfg.as_bytes(), &no_env).unwrap_err();
            assert!(e.contains(says), "{cfg}: {e}");
            for rust in ["u64", "OneOrMany", "untagged", "?:", "sequence", "a map"] {
                assert!(!e.contains(rust), "{cfg}: {e}");
            }
        }
    }

    #[test]
    fn unknown_and_invalid_fields_are_named() {
        let e = compile_json(json!({"public_key_url": "http://a/j", "audiance": "x"})).unwrap_err();
        assert!(e.contains("audiance"), "{e}");
        for (cfg, field) in [
            (json!({"public_key_url": "ftp://a/j"}), "public_key_url"),
            (json!({"public_key_url": "http://u:p@a/j"}), "public_key_url"),
            (json!({"public_key_url": "http://a/j", "leeway": -1}), "leeway"),
            (json!({"public_key_url": "http://a/j", "jwks_fetch_timeout_ms": 0}), "jwks_fetch_timeout_ms"),
            (json!({"public_keys": ["nope"]}), "public_keys[0]"),
            (json!({"public_key_url": "http://a/j", "general_settings": {"master_key": "sk"}}), "general_settings.master_key"),
        ] {
            let e = compile_json(cfg).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn mode_defaults_to_enforce_and_takes_report() {
        assert_eq!(compile_json(json!({"public_key_url": "http://a/j"})).unwrap().mode, Mode::Enforce);
        assert_eq!(compile_json(json!({"public_key_url": "http://a/j", "mode": "report"})).unwrap().mode, Mode::Report);
        assert!(compile_json(json!({"public_key_url": "http://a/j", "mode": "off"})).unwrap_err().contains("mode"));
    }
}
