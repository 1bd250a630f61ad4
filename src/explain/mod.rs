//! `llm-jwt-auth explain`: what the filter would do with one request, without Envoy.
//!
//! Not a second implementation: the configuration is compiled by [`crate::shell::root::configure`]
//! and the request runs through the shell's own callbacks ([`crate::shell::request`]) against a
//! scripted host ([`crate::shell::scripted`]), whose outgoing calls are answered from the
//! operator's files — key sets (or fetched from the real URLs), records — exactly as a key set
//! or record source would answer them. What comes back is what Envoy would have been told: the
//! local reply (status, headers, body) or the request sent upstream with its identity headers.

pub mod envoy_config;

use crate::fetch::{Answer, Call};
use crate::shell::request::{on_body, on_headers};
use crate::shell::root::{answer, configure, tick};
use crate::shell::scripted::ScriptedHost;
use crate::shell::worker::SharedWorker;
use proxy_wasm::types::{Action, LogLevel};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Where the answers to the filter's outgoing calls come from.
pub trait Sources {
    /// The answer to a key-set or discovery GET of `url` (`None`: no answer, as a timeout).
    fn key_url(&self, url: &str) -> Option<Answer>;
    /// The record the call asks for, as the source would answer (`None`: 404).
    fn record(&self, call: &Call) -> Option<Answer>;
}

/// One request to explain.
#[derive(Debug, Clone, Default)]
pub struct Question {
    pub method: String,
    /// `:path`, with the query.
    pub path: String,
    pub authority: String,
    pub scheme: String,
    /// Further request headers (`authorization`, `dpop`, `content-type`, …), lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Seconds since the epoch.
    pub now: u64,
}

/// What the filter would do.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// `allow`, `deny`, `report` (a denial let through in report mode) or `undecided`.
    pub decision: &'static str,
    /// The stable reason of a denial (`x-llm-jwt-auth-reason`).
    pub reason: Option<String>,
    /// Where in the filter's order the decision was made, in LiteLLM's terms.
    pub stage: &'static str,
    /// The local reply, for a denial.
    pub reply: Option<Value>,
    /// The identity headers sent upstream, for an admitted request.
    pub upstream: BTreeMap<String, String>,
    /// The filter's log lines (warnings and errors; every line with `debug`).
    pub log: Vec<String>,
}

impl Explanation {
    pub fn to_json(&self) -> Value {
        json!({
            "decision": self.decision,
            "reason": self.reason,
            "stage": self.stage,
            "reply": self.reply,
            "upstream_identity": self.upstream,
            "log": self.log,
        })
    }
}

/// `explain check`: the configuration error Envoy would refuse the filter with, if any.
pub fn check(plugin_config: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    crate::config::compile(plugin_config.as_bytes(), env).map(|_| ())
}

/// Run `question` through the filter configured with `plugin_config`.
pub fn explain(plugin_config: &str, question: &Question, sources: &dyn Sources, env: &dyn Fn(&str) -> Option<String>) -> Result<Explanation, String> {
    let host = ScriptedHost::default();
    host.now_ms.set(question.now.saturating_mul(1000));
    host.debug.set(true);
    let Some(worker) = configure(&host, plugin_config.as_bytes(), env) else {
        return Err(crate::config::compile(plugin_config.as_bytes(), env).err().unwrap_or_default());
    };
    serve_calls(&host, &worker, sources); // the key sets, fetched at start
    const ID: u32 = 1;
    host.enter(ID);
    host.requests.borrow_mut().entry(ID).or_default().headers = request_headers(question);
    let mut action = on_headers(&host, &worker, ID, question.body.is_none());
    if let (Action::Pause, Some(body)) = (action, question.body.as_ref()) {
        if host.with(ID, |r| r.reply.is_none()) {
            host.enter(ID);
            host.requests.borrow_mut().entry(ID).or_default().body = body.clone();
            action = on_body(&host, &worker, ID, body.len(), true);
        }
    }
    // Waiting for keys or records: let the root context fetch them and move the request on.
    for _ in 0..4 {
        if action == Action::Continue || host.with(ID, |r| r.reply.is_some() || r.resumed > 0) {
            break;
        }
        serve_calls(&host, &worker, sources);
    }
    let (reply, resumed, headers) = host.with(ID, |r| (r.reply.clone(), r.resumed, r.headers.clone()));
    let upstream: BTreeMap<String, String> =
        headers.iter().filter(|(k, _)| k.starts_with("x-litellm-")).cloned().collect();
    let reported = headers.iter().find(|(k, _)| k == crate::authz::identity::REASON_HEADER).map(|(_, v)| v.clone());
    let log = host
        .logs
        .borrow()
        .iter()
        .filter(|(level, m)| !matches!(level, LogLevel::Trace) && !m.starts_with("fetching ") && !m.ends_with(" loaded"))
        .map(|(level, m)| format!("{level:?}: {m}"))
        .collect();
    let explanation = match reply {
        Some(reply) => {
            let reason = reply.headers.iter().find(|(k, _)| k == crate::authz::identity::REASON_HEADER).map(|(_, v)| v.clone());
            let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::String(reply.body.clone()));
            let headers: Map<String, Value> = reply.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            Explanation {
                decision: "deny",
                stage: stage(reason.as_deref()),
                reason,
                reply: Some(json!({"status": reply.status, "headers": headers, "body": body})),
                upstream: BTreeMap::new(),
                log,
            }
        }
        None if action == Action::Continue || resumed > 0 => Explanation {
            decision: if reported.is_some() { "report" } else { "allow" },
            stage: if reported.is_some() { stage(reported.as_deref()) } else { "admitted: every rule passed" },
            reason: reported,
            reply: None,
            upstream,
            log,
        },
        None => Explanation { decision: "undecided", reason: None, stage: "still waiting (for keys, records or the body)", reply: None, upstream, log },
    };
    Ok(explanation)
}

fn request_headers(q: &Question) -> Vec<(String, String)> {
    let mut headers = vec![
        (":method".to_string(), q.method.clone()),
        (":path".to_string(), q.path.clone()),
        (":authority".to_string(), q.authority.clone()),
        (":scheme".to_string(), q.scheme.clone()),
    ];
    headers.extend(q.headers.iter().cloned());
    headers
}

/// Let the root context start its fetches, and answer every call it made.
fn serve_calls(host: &ScriptedHost, worker: &SharedWorker, sources: &dyn Sources) {
    for _ in 0..8 {
        let before = host.calls.borrow().len();
        tick(host, worker);
        let calls: Vec<(u32, Call)> = host.calls.borrow().iter().skip(before).cloned().collect();
        if calls.is_empty() {
            return;
        }
        for (token, call) in calls {
            let reply = match call.method {
                "GET" if is_record_call(worker, &call) => sources.record(&call).or(Some(not_found())),
                "GET" => sources.key_url(&url_of(worker, &call)),
                _ => Some(Answer::Response { status: "201".into(), body: Some(b"{}".to_vec()) }),
            };
            *host.answering.borrow_mut() = reply;
            answer(host, worker, token, 1, 0);
        }
    }
}

fn not_found() -> Answer {
    Answer::Response { status: "404".into(), body: Some(Vec::new()) }
}

fn is_record_call(worker: &SharedWorker, call: &Call) -> bool {
    worker.borrow().config.record_source.as_ref().is_some_and(|s| s.cluster == call.cluster && s.authority == call.authority && call.path.starts_with(&s.base_path))
        && !worker.borrow().config.key_sources().any(|k| k.authority == call.authority && k.path == call.path)
}

/// The URL a key call fetches (scheme from the configured URL with that authority).
fn url_of(worker: &SharedWorker, call: &Call) -> String {
    let w = worker.borrow();
    let scheme = w
        .config
        .key_sources()
        .find(|k| k.authority == call.authority)
        .and_then(|k| k.url.split_once("://").map(|(s, _)| s.to_string()))
        .unwrap_or_else(|| "https".to_string());
    format!("{scheme}://{}{}", call.authority, call.path)
}

/// The filter's stages, in the order a request meets them, by the denial reasons each gives.
pub fn stage(reason: Option<&str>) -> &'static str {
    match reason.unwrap_or_default() {
        "route_rule" => "gateway rules (rules: deny / require), before or after LiteLLM's",
        "missing_token" | "malformed_token" => "1. the credential (Authorization: Bearer, or token_locations)",
        "alg_not_allowed" | "bad_signature" | "unknown_kid" | "unusable_key" | "unknown_issuer" => "2. the signature (issuer, key, algorithm)",
        "keys_unavailable" => "2. the signature: the identity provider's keys could not be had",
        "userinfo_refused" => "2. an opaque token: the identity provider's UserInfo endpoint refused it",
        "userinfo_unavailable" => "2. an opaque token: the identity provider's UserInfo endpoint could not be asked",
        "expired" | "not_yet_valid" | "invalid_claim" | "audience" | "issuer" | "missing_claim" | "lifetime_too_long" | "token_type" => {
            "3. the registered claims (exp, nbf, iat, aud, iss, typ)"
        }
        "invalid_dpop_proof" | "dpop_bound_token" | "dpop_unbound_token" => "4. DPoP: the token's binding and its proof",
        "forbidden" => "5./7. LiteLLM's 403 rules: custom_validate, the RBAC role and scope gates, role permissions, user model access (the message says which)",
        "body_too_large" | "invalid_body" => "5. reading the requested model from the body",
        "denied" => "6. LiteLLM auth_builder: admin routes, the team, the user, the organization (401 rules)",
        "email_domain" => "7. LiteLLM: user_allowed_email_domain",
        "forbidden_model" => "7. LiteLLM common_checks: team / user model access",
        "budget" => "7. LiteLLM common_checks: team, user, end-user or organization budget",
        "records_unavailable" => "6. the team/user source could not be reached",
        "envoy_misconfigured" => "the Envoy configuration around the filter",
        _ => "the filter's rules",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys::{now, token, vectors};

    struct Files {
        jwks: String,
        records: BTreeMap<String, String>,
    }

    impl Sources for Files {
        fn key_url(&self, _: &str) -> Option<Answer> {
            Some(Answer::Response { status: "200".into(), body: Some(self.jwks.as_bytes().to_vec()) })
        }
        fn record(&self, call: &Call) -> Option<Answer> {
            self.records.get(&call.path).map(|b| Answer::Response { status: "200".into(), body: Some(b.as_bytes().to_vec()) })
        }
    }

    fn files() -> Files {
        let keys: Vec<Value> = vectors()["keys"].as_object().unwrap().values().map(|k| k["jwk"].clone()).collect();
        Files { jwks: json!({"keys": keys}).to_string(), records: BTreeMap::new() }
    }

    fn ask(config: Value, path: &str, token_name: Option<&str>, body: Option<&str>, sources: &Files) -> Explanation {
        let mut headers = Vec::new();
        if let Some(t) = token_name {
            headers.push(("authorization".to_string(), format!("Bearer {}", token(t))));
        }
        let q = Question {
            method: if body.is_some() { "POST" } else { "GET" }.into(),
            path: path.into(),
            authority: "gw".into(),
            scheme: "http".into(),
            headers,
            body: body.map(|b| b.as_bytes().to_vec()),
            now: now(),
        };
        explain(&config.to_string(), &q, sources, &|_| None).unwrap()
    }

    #[test]
    fn an_allowed_request_shows_the_identity_sent_upstream() {
        let e = ask(json!({"public_key_url": "https://idp/jwks"}), "/v1/models", Some("RS256"), None, &files());
        assert_eq!((e.decision, e.reason.as_deref()), ("allow", None), "{e:?}");
        assert_eq!(e.upstream.get("x-litellm-user-id").map(String::as_str), Some("alice"));
    }

    #[test]
    fn a_denial_shows_the_exact_reply_and_its_stage() {
        let e = ask(json!({"public_key_url": "https://idp/jwks"}), "/v1/models", None, None, &files());
        assert_eq!((e.decision, e.reason.as_deref()), ("deny", Some("missing_token")));
        let reply = e.reply.unwrap();
        assert_eq!(reply["status"], 401);
        assert_eq!(reply["headers"]["www-authenticate"], "Bearer");
        assert!(reply["body"]["error"]["message"].as_str().unwrap().contains("Authentication Error"));
        assert!(e.stage.starts_with("1."));
    }

    #[test]
    fn the_body_and_records_are_used_as_the_filter_uses_them() {
        let config = json!({
            "public_key_url": "https://idp/jwks",
            "general_settings": {"enable_jwt_auth": true, "litellm_jwtauth": {"user_id_jwt_field": "sub"}},
            "record_source": {"type": "http", "url": "http://records:9000", "paths": {"user": "/users/{id}"}},
        });
        let mut sources = files();
        sources.records.insert("/users/alice".into(), r#"{"user_id": "alice", "models": ["gpt-4o"]}"#.into());
        let ok = ask(config.clone(), "/v1/chat/completions", Some("RS256"), Some(r#"{"model": "gpt-4o"}"#), &sources);
        assert_eq!(ok.decision, "allow", "{ok:?}");
        let refused = ask(config.clone(), "/v1/chat/completions", Some("RS256"), Some(r#"{"model": "o1"}"#), &sources);
        assert_eq!((refused.decision, refused.reason.as_deref()), ("deny", Some("forbidden_model")), "{refused:?}");
        assert!(refused.reply.unwrap()["body"]["error"]["message"].as_str().unwrap().contains("'o1' is not available"));
        let unknown = ask(config, "/v1/chat/completions", Some("RS256"), Some(r#"{"model": "gpt-4o"}"#), &files());
        assert_eq!(unknown.reason.as_deref(), Some("denied"), "no such user at the source: {unknown:?}");
    }

    #[test]
    fn keys_that_cannot_be_had_are_a_503_and_a_bad_config_is_its_load_error() {
        struct Down;
        impl Sources for Down {
            fn key_url(&self, _: &str) -> Option<Answer> {
                None
            }
            fn record(&self, _: &Call) -> Option<Answer> {
                None
            }
        }
        let q = Question { method: "GET".into(), path: "/v1/models".into(), authority: "gw".into(), scheme: "http".into(),
            headers: vec![("authorization".into(), format!("Bearer {}", token("RS256")))], body: None, now: now() };
        let e = explain(&json!({"public_key_url": "https://idp/jwks"}).to_string(), &q, &Down, &|_| None).unwrap();
        assert_eq!(e.reason.as_deref(), Some("keys_unavailable"), "{e:?}");
        let bad = explain(r#"{"public_key_url": "https://idp/jwks", "leeway": "soon"}"#, &q, &Down, &|_| None).unwrap_err();
        assert!(bad.contains("leeway"), "{bad}");
        assert_eq!(check(r#"{"public_key_url": "https://idp/jwks", "leeway": "soon"}"#, &|_| None).unwrap_err(), bad);
    }
}
