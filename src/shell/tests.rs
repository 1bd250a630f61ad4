//! The shell's decision paths, natively, against a scripted host: a request decided in its
//! headers callback, waits for keys, for the body and for records, how each wait ends
//! (resumed, answered, timed out, abandoned), report mode, and who dispatches. The same paths
//! run in a real Envoy in tests/e2e; here each one is a few lines and runs in microseconds.

use super::flow::Phase;
use super::metrics;
use super::request::{on_body, on_done, on_headers};
use super::root::{answer, configure, tick};
use super::scripted::{Reply, ScriptedHost};
use super::worker::SharedWorker;
use crate::authz::identity::REASON_HEADER;
use crate::fetch::Answer;
use crate::testkeys::{now, token, vectors};
use proxy_wasm::types::{Action, LogLevel};
use serde_json::{json, Value};

const JWKS_PATH: &str = "/jwks";

fn jwks() -> String {
    let keys = vectors()["keys"].as_object().unwrap().values().map(|k| k["jwk"].clone()).collect::<Vec<_>>();
    json!({ "keys": keys }).to_string()
}

struct Gateway {
    host: ScriptedHost,
    worker: SharedWorker,
}

impl Gateway {
    /// A worker configured with `config` (plus the key URL), keys not fetched yet.
    fn cold(config: Value) -> Gateway {
        metrics::reset();
        let mut config = config;
        config["public_key_url"] = json!("http://idp:8080/jwks");
        let host = ScriptedHost::default();
        host.now_ms.set(now() * 1000);
        let worker = configure(&host, config.to_string().as_bytes(), &|_| None).unwrap();
        Gateway { host, worker }
    }

    /// A worker whose root context has fetched the keys.
    fn ready(config: Value) -> Gateway {
        let g = Gateway::cold(config);
        g.tick();
        g.answer_call(JWKS_PATH, "200", &jwks());
        g
    }

    fn tick(&self) {
        tick(&self.host, &self.worker);
    }

    fn later(&self, ms: u64) {
        self.host.now_ms.set(self.host.now_ms.get() + ms);
    }

    /// Tokens of the calls dispatched so far to `path`.
    fn calls_to(&self, path: &str) -> Vec<u32> {
        self.host.calls.borrow().iter().filter(|(_, c)| c.path == path).map(|(t, _)| *t).collect()
    }

    /// Answer the last call made to `path`.
    fn answer_call(&self, path: &str, status: &str, body: &str) {
        let token = *self.calls_to(path).last().unwrap_or_else(|| panic!("no call to {path}: {:?}", self.host.calls.borrow()));
        self.answer_token(token, Answer::Response { status: status.into(), body: Some(body.as_bytes().to_vec()) });
    }

    fn answer_token(&self, token: u32, reply: Answer) {
        *self.host.answering.borrow_mut() = Some(reply);
        answer(&self.host, &self.worker, token, 1, 0);
    }

    /// Request `id`'s headers callback.
    fn request(&self, id: u32, method: &str, path: &str, bearer: Option<&str>, end_of_stream: bool) -> Action {
        self.request_with(id, method, path, bearer, end_of_stream, &[])
    }

    /// [`Gateway::request`] with more client-sent headers.
    fn request_with(&self, id: u32, method: &str, path: &str, bearer: Option<&str>, end_of_stream: bool, extra: &[(&str, &str)]) -> Action {
        self.host.enter(id);
        let mut headers = vec![(":method", method.to_string()), (":path", path.to_string()), (":authority", "gw".to_string())];
        if let Some(t) = bearer {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        headers.push(("x-litellm-user-id", "spoofed".to_string()));
        headers.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        self.host.requests.borrow_mut().entry(id).or_default().headers = headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        on_headers(&self.host, &self.worker, id, end_of_stream)
    }

    /// Request `id`'s body callback with `chunk` appended to what it has buffered.
    fn body(&self, id: u32, chunk: &str, end_of_stream: bool) -> Action {
        self.host.enter(id);
        let size = self.host.current_body_len(chunk);
        on_body(&self.host, &self.worker, id, size, end_of_stream)
    }

    fn reply(&self, id: u32) -> Option<Reply> {
        self.host.with(id, |r| {
            assert_eq!(r.extra_replies, 0, "request {id} was answered more than once");
            r.reply.clone()
        })
    }

    fn resumed(&self, id: u32) -> usize {
        self.host.with(id, |r| r.resumed)
    }

    fn header(&self, id: u32, name: &str) -> Option<String> {
        self.host.with(id, |r| r.header(name).map(str::to_string))
    }

    fn waiting(&self, id: u32) -> Option<Phase> {
        self.worker.borrow().flows.get(&id).map(|f| f.phase.clone())
    }

    fn counter(&self, name: &str) -> u64 {
        metrics::flush(&self.host);
        self.host.counter(name)
    }
}

impl ScriptedHost {
    fn current_body_len(&self, chunk: &str) -> usize {
        let id = self.current();
        let mut requests = self.requests.borrow_mut();
        let body = &mut requests.entry(id).or_default().body;
        body.extend_from_slice(chunk.as_bytes());
        body.len()
    }
}

fn error_message(reply: &Reply) -> String {
    let v: Value = serde_json::from_str(&reply.body).unwrap();
    v["error"]["message"].as_str().unwrap().to_string()
}

/// Static user records: a non-admin's model list applies, so the model is needed.
fn alice_may_use_gpt_4o() -> Value {
    json!({
        "general_settings": {"enable_jwt_auth": true, "litellm_jwtauth": {"user_id_jwt_field": "sub"}},
        "users": [{"user_id": "alice", "models": ["gpt-4o"]}],
    })
}

// ------------------------------------------------------------------------------------------
// Decided in the headers callback
// ------------------------------------------------------------------------------------------

#[test]
fn with_keys_at_hand_a_token_is_decided_in_its_headers_callback() {
    let g = Gateway::ready(json!({}));
    assert_eq!(g.request(1, "GET", "/v1/models", Some(&token("RS256")), true), Action::Continue);
    assert_eq!(g.reply(1), None);
    assert_eq!(g.header(1, "x-litellm-user-id").as_deref(), Some("alice"), "the token's, not the client's");
    assert_eq!(g.header(1, "x-litellm-user-role").as_deref(), Some("internal_user"));
    assert_eq!(g.waiting(1), None, "a decided request keeps no flow");
    assert_eq!(g.request(2, "GET", "/v1/models", Some(&token("RS256")), true), Action::Continue);
    assert_eq!((g.counter("token_cache_miss"), g.counter("token_cache_hit")), (1, 1));
    assert_eq!(g.counter("requests_allowed"), 2);
    assert_eq!(g.calls_to(JWKS_PATH).len(), 1, "one fetch, by the root context");
}

#[test]
fn a_refused_token_gets_litellm_s_error_and_stays_paused() {
    let g = Gateway::ready(json!({}));
    assert_eq!(g.request(1, "GET", "/v1/models", None, true), Action::Pause);
    let reply = g.reply(1).unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply.headers.iter().any(|(k, v)| k == "www-authenticate" && v.starts_with("Bearer")), "{reply:?}");
    assert!(reply.headers.iter().any(|(k, _)| k == REASON_HEADER));
    let forged = format!("{}x", token("RS256"));
    assert_eq!(g.request(2, "GET", "/v1/models", Some(&forged), true), Action::Pause);
    assert_eq!(g.reply(2).map(|r| r.status), Some(401));
    assert_eq!(g.counter("requests_allowed"), 0);
}

#[test]
fn public_routes_need_no_token_but_lose_spoofed_identity_headers() {
    let g = Gateway::cold(json!({"general_settings": {"public_routes": ["/health"]}}));
    assert_eq!(g.request(1, "GET", "/health", None, true), Action::Continue);
    assert_eq!(g.header(1, "x-litellm-user-id"), None);
    assert_eq!(g.counter("requests_public"), 1);
}

#[test]
fn report_mode_lets_a_denial_through_and_says_why() {
    let g = Gateway::ready(json!({"mode": "report"}));
    assert_eq!(g.request(1, "GET", "/v1/models", None, true), Action::Continue);
    assert_eq!(g.reply(1), None);
    assert_eq!(g.header(1, REASON_HEADER).as_deref(), Some("missing_token"));
    assert_eq!(g.counter("requests_reported_not_enforced"), 1);
    assert!(g.host.logged(LogLevel::Info, "decision=report_deny reason=missing_token"));
}

#[test]
fn decisions_are_counted_by_outcome_reason_route_group_and_issuer() {
    let g = Gateway::ready(json!({}));
    g.request(1, "GET", "/v1/models", Some(&token("RS256")), true);
    g.request(2, "POST", "/key/generate", None, true);
    g.request(3, "GET", "/custom/thing", Some(&format!("{}x", token("RS256"))), true);
    assert_eq!(g.counter("decisions.allowed.route_group.llm_api.issuer.default"), 1);
    assert_eq!(g.counter("decisions.denied.reason.missing_token.route_group.management.issuer.none"), 1);
    assert_eq!(g.counter("decisions.denied.reason.malformed_token.route_group.other.issuer.none"), 1);
    assert_eq!(g.counter("requests_allowed"), 1, "the unlabelled counters still count");
}

#[test]
fn a_denial_let_through_in_report_mode_is_still_a_denied_decision() {
    let g = Gateway::ready(json!({"mode": "report"}));
    assert_eq!(g.request(1, "GET", "/v1/models", None, true), Action::Continue);
    assert_eq!(g.counter("decisions.denied.reason.missing_token.route_group.llm_api.issuer.none"), 1);
    assert_eq!(g.counter("requests_reported_not_enforced"), 1);
}

#[test]
fn issuer_label_ids_mean_the_same_label_in_every_configuration_of_the_vm() {
    metrics::reset();
    let a = metrics::issuer_label_id("idp_a");
    let b = metrics::issuer_label_id("idp_b");
    assert_ne!(a, b);
    assert_eq!(metrics::issuer_label_id("idp_a"), a, "a later configuration naming idp_a again gets its id");
    assert_eq!(metrics::issuer_label_id("idp_b"), b);
}

#[test]
fn a_request_that_waited_for_its_keys_is_counted_under_the_issuer_that_verified_it() {
    let g = Gateway::cold(json!({}));
    g.request(1, "GET", "/key/info", Some(&token("ES256")), true);
    g.tick();
    g.answer_call(JWKS_PATH, "200", &jwks());
    assert_eq!(g.resumed(1), 1);
    assert_eq!(g.counter("decisions.allowed.route_group.info.issuer.default"), 1);
}

// ------------------------------------------------------------------------------------------
// Waiting for keys
// ------------------------------------------------------------------------------------------

#[test]
fn cold_keys_pause_the_request_until_the_root_fetches_them_then_resume_it() {
    let g = Gateway::cold(json!({}));
    assert_eq!(g.request(1, "GET", "/v1/models", Some(&token("RS256")), true), Action::Pause);
    assert_eq!(g.request(2, "GET", "/v1/models", Some(&token("ES256")), true), Action::Pause);
    assert!(g.host.calls.borrow().is_empty(), "request contexts dispatch nothing");
    assert!(matches!(g.waiting(1), Some(Phase::AwaitingKeys { .. })));
    g.tick();
    assert_eq!(g.calls_to(JWKS_PATH).len(), 1, "one fetch for both");
    assert_eq!((g.resumed(1), g.resumed(2)), (0, 0));
    g.answer_call(JWKS_PATH, "200", &jwks());
    assert_eq!((g.resumed(1), g.resumed(2)), (1, 1));
    assert_eq!((g.reply(1), g.reply(2)), (None, None));
    assert_eq!(g.header(2, "x-litellm-user-role").as_deref(), Some("internal_user"), "identity set on the resumed request");
    assert_eq!((g.waiting(1), g.waiting(2)), (None, None));
    g.tick();
    assert_eq!(g.resumed(1), 1, "resumed once");
}

#[test]
fn a_failed_key_fetch_answers_the_waiting_requests_with_a_503_naming_nothing_internal() {
    let g = Gateway::cold(json!({}));
    g.request(1, "GET", "/v1/models", Some(&token("RS256")), true);
    g.tick();
    g.answer_call(JWKS_PATH, "503", "upstream connect error");
    let reply = g.reply(1).unwrap();
    assert_eq!(reply.status, 503);
    assert!(reply.headers.iter().any(|(k, _)| k == "retry-after"), "{reply:?}");
    for internal in ["idp", "8080", "/jwks", "503 ", "upstream connect"] {
        assert!(!reply.body.contains(internal), "{internal:?} in {}", reply.body);
    }
    assert_eq!(g.resumed(1), 0);
    assert!(g.host.logged(LogLevel::Warn, "JWKS endpoint http://idp:8080/jwks returned status 503"), "the log has the cause");
    assert_eq!(g.counter("jwks_fetch_failure"), 1);
}

#[test]
fn a_key_fetch_that_never_answers_times_the_waiting_request_out() {
    let g = Gateway::cold(json!({"jwks_fetch_timeout_ms": 500}));
    g.request(1, "GET", "/v1/models", Some(&token("RS256")), true);
    g.tick();
    g.later(1400);
    g.tick();
    assert_eq!(g.reply(1), None, "still within the fetch timeout and the margin");
    g.later(200);
    g.tick();
    assert_eq!(g.reply(1).map(|r| r.status), Some(503));
}

#[test]
fn a_missing_cluster_is_critical_once_and_every_request_gets_a_503() {
    let g = Gateway::cold(json!({}));
    g.host.missing_clusters.borrow_mut().insert("idp:8080".into());
    g.request(1, "GET", "/v1/models", Some(&token("RS256")), true);
    g.tick();
    assert_eq!(g.reply(1).map(|r| r.status), Some(503));
    g.later(1500); // past the retry interval: tried (and refused) again
    g.tick();
    g.request(2, "GET", "/v1/models", Some(&token("RS256")), true);
    assert_eq!(g.reply(2).map(|r| r.status), Some(503));
    let critical: Vec<String> = g.host.logs.borrow().iter().filter(|(l, _)| *l == LogLevel::Critical).map(|(_, m)| m.clone()).collect();
    assert_eq!(critical.len(), 1, "{critical:?}");
    assert!(critical[0].contains("cluster \"idp:8080\"") && critical[0].contains("public_key_url"), "{critical:?}");
    assert_eq!(g.counter("misconfigured"), 2);
}

#[test]
fn a_request_whose_client_left_while_waiting_is_forgotten() {
    let g = Gateway::cold(json!({}));
    g.request(1, "GET", "/v1/models", Some(&token("RS256")), true);
    g.request(2, "GET", "/v1/models", Some(&token("RS256")), true);
    on_done(&g.host, &g.worker, 1);
    g.host.requests.borrow_mut().get_mut(&2).unwrap().gone = true; // gone without on_done yet
    g.tick();
    g.answer_call(JWKS_PATH, "200", &jwks());
    assert_eq!((g.resumed(1), g.resumed(2)), (0, 0));
    assert_eq!((g.reply(1), g.reply(2)), (None, None));
    assert!(g.worker.borrow().flows.is_empty());
}

// ------------------------------------------------------------------------------------------
// Waiting for the body
// ------------------------------------------------------------------------------------------

#[test]
fn the_body_is_awaited_when_a_rule_needs_the_model_and_read_in_its_own_callback() {
    let g = Gateway::ready(alice_may_use_gpt_4o());
    let t = token("RS256");
    assert_eq!(g.request(1, "POST", "/v1/chat/completions", Some(&t), false), Action::Pause);
    assert!(matches!(g.waiting(1), Some(Phase::AwaitingBody { first_callback_by_ms: Some(_) })));
    assert_eq!(g.body(1, r#"{"model": "#, false), Action::Pause);
    assert_eq!(g.body(1, r#""gpt-4o"}"#, true), Action::Continue);
    assert_eq!(g.reply(1), None);

    assert_eq!(g.request(2, "POST", "/v1/chat/completions", Some(&t), false), Action::Pause);
    assert_eq!(g.body(2, r#"{"model": "o1"}"#, true), Action::Pause);
    let reply = g.reply(2).unwrap();
    assert!(error_message(&reply).contains("o1"), "{reply:?}");
    assert_eq!(*g.host.body_reads.borrow(), vec![1, 2], "each body read once, in its own callback");
}

#[test]
fn a_body_larger_than_the_limit_is_refused_as_it_arrives() {
    let mut config = alice_may_use_gpt_4o();
    config["max_body_bytes"] = json!(16);
    let g = Gateway::ready(config);
    g.request(1, "POST", "/v1/chat/completions", Some(&token("RS256")), false);
    assert_eq!(g.body(1, r#"{"model": "gpt-4o", "#, false), Action::Pause);
    assert_eq!(g.reply(1).map(|r| r.status), Some(413));
    assert_eq!(g.body(1, r#""x": 1}"#, true), Action::Continue, "decided: the rest passes untouched");
}

#[test]
fn a_body_that_never_reaches_the_filter_is_answered_with_an_explanation() {
    let g = Gateway::ready(alice_may_use_gpt_4o());
    g.request(1, "POST", "/v1/chat/completions", Some(&token("RS256")), false);
    g.request(2, "POST", "/v1/chat/completions", Some(&token("RS256")), false);
    g.body(2, "{", false); // its body does arrive, slowly
    g.later(9_999);
    g.tick();
    assert_eq!(g.reply(1), None);
    g.later(1);
    g.tick();
    assert_eq!(g.reply(1).map(|r| r.status), Some(500));
    assert!(g.host.logged(LogLevel::Error, "allow_on_headers_stop_iteration"), "{:?}", g.host.logs.borrow());
    assert_eq!(g.reply(2), None, "a body that arrives is waited for");
    assert_eq!(g.body(2, r#""model": "gpt-4o"}"#, true), Action::Continue);
}

#[test]
fn a_body_that_arrives_while_keys_are_fetched_is_held_and_decides_on_resume() {
    let g = Gateway::cold(alice_may_use_gpt_4o());
    g.request(1, "POST", "/v1/chat/completions", Some(&token("RS256")), false);
    assert_eq!(g.body(1, r#"{"model": "o1"}"#, true), Action::Pause, "held until the keys arrive");
    g.tick();
    g.host.enter(99); // the root context's answer callback runs with no request current
    g.answer_call(JWKS_PATH, "200", &jwks());
    assert_eq!(g.resumed(1), 0);
    assert!(error_message(&g.reply(1).unwrap()).contains("o1"), "decided on the body model");
    assert_eq!(*g.host.body_reads.borrow(), vec![1], "read in its own body callback, not on resume");
}

// ------------------------------------------------------------------------------------------
// Routing by model
// ------------------------------------------------------------------------------------------

fn routing(extra: Value) -> Value {
    let mut config = json!({"model_routing": {"enabled": true}});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

fn cleared(g: &Gateway, id: u32) -> usize {
    g.host.with(id, |r| r.route_cache_cleared)
}

#[test]
fn routing_reads_the_body_without_a_rule_and_names_the_model_before_the_request_goes_on() {
    let g = Gateway::ready(routing(json!({})));
    let spoof = [("x-litellm-model", "claude-x")];
    assert_eq!(g.request_with(1, "POST", "/v1/chat/completions", Some(&token("RS256")), false, &spoof), Action::Pause);
    assert_eq!(g.header(1, "x-litellm-model"), None, "the client's value is gone at once");
    assert_eq!(cleared(&g, 1), 1, "Envoy chose a route with the client's value: chosen again");
    assert!(matches!(g.waiting(1), Some(Phase::AwaitingBody { .. })));
    assert_eq!(g.body(1, r#"{"model": "gpt-4o", "messages": []}"#, true), Action::Continue);
    assert_eq!(g.header(1, "x-litellm-model").as_deref(), Some("gpt-4o"));
    assert_eq!(cleared(&g, 1), 2);
    let routed_with = g.host.with(1, |r| r.headers_when_cleared.clone());
    assert!(routed_with.contains(&("x-litellm-model".into(), "gpt-4o".into())), "cleared after the header was set");
    assert_eq!(g.header(1, "x-litellm-user-id").as_deref(), Some("alice"));
    assert_eq!(*g.host.body_reads.borrow(), vec![1]);

    // Without a model anywhere: no header, and the client's value does not come back.
    g.request_with(2, "POST", "/v1/chat/completions", Some(&token("RS256")), false, &spoof);
    assert_eq!(g.body(2, r#"{"messages": []}"#, true), Action::Continue);
    assert_eq!((g.header(2, "x-litellm-model"), cleared(&g, 2)), (None, 1));
    // No body: the path's deployment, in the headers callback.
    assert_eq!(g.request(3, "GET", "/openai/deployments/gpt-4o-mini/chat/completions", Some(&token("RS256")), true), Action::Continue);
    assert_eq!(g.header(3, "x-litellm-model").as_deref(), Some("gpt-4o-mini"));
    g.request(4, "GET", "/v1/models", Some(&token("RS256")), true);
    assert_eq!((g.header(4, "x-litellm-model"), cleared(&g, 4)), (None, 0), "nothing to route by, nothing changed");
}

#[test]
fn routing_never_refuses_what_the_rules_let_through() {
    let g = Gateway::ready(routing(json!({"max_body_bytes": 32})));
    let t = token("RS256");
    g.request(1, "POST", "/v1/chat/completions", Some(&t), false);
    assert_eq!(g.body(1, "{not json", true), Action::Continue, "invalid JSON is the upstream's to answer");
    assert_eq!((g.reply(1), g.header(1, "x-litellm-model")), (None, None));
    g.request(2, "POST", "/openai/deployments/whisper/audio/transcriptions", Some(&t), false);
    assert_eq!(g.body(2, &"x".repeat(40), false), Action::Continue, "too large: on at once, by the path's model");
    assert_eq!((g.reply(2), g.header(2, "x-litellm-model").as_deref()), (None, Some("whisper")));
    g.request(3, "POST", "/v1/chat/completions", Some(&t), false);
    assert_eq!(g.body(3, r#"{"model": "a\r\nb"}"#, true), Action::Continue);
    assert_eq!(g.header(3, "x-litellm-model"), None, "not a header value: no header");
}

#[test]
fn routing_leaves_a_rules_refusal_alone_and_routes_a_request_allowed_later() {
    let mut config = alice_may_use_gpt_4o();
    config["model_routing"] = json!({"enabled": true, "header": "x-ai-eg-model"});
    let g = Gateway::ready(config);
    let t = token("RS256");
    let spoof = [("x-ai-eg-model", "gpt-4o")];
    g.request_with(1, "POST", "/v1/chat/completions", Some(&t), false, &spoof);
    assert_eq!(g.body(1, r#"{"model": "o1"}"#, true), Action::Pause);
    assert!(error_message(&g.reply(1).unwrap()).contains("o1"), "refused by the rules, as without routing");

    let g = Gateway::ready(routing(user_source()));
    g.request(1, "POST", "/v1/chat/completions", Some(&t), false);
    assert_eq!(g.body(1, r#"{"model": "gpt-4o"}"#, true), Action::Pause);
    assert_eq!(g.header(1, "x-litellm-model").as_deref(), Some("gpt-4o"), "set in its own callback, before the records");
    assert_eq!(cleared(&g, 1), 1);
    g.tick();
    g.host.enter(99);
    g.answer_call("/users/alice", "200", r#"{"user_id": "alice", "models": ["gpt-4o"]}"#);
    assert_eq!((g.resumed(1), cleared(&g, 1)), (1, 1), "resumed from the root context, nothing changed there");
}

#[test]
fn routing_holds_no_websocket_and_no_get_for_a_body() {
    let g = Gateway::ready(routing(json!({})));
    let t = token("RS256");
    let upgrade = [("upgrade", "websocket"), ("x-litellm-model", "claude-x")];
    assert_eq!(g.request_with(1, "GET", "/v1/realtime", Some(&t), false, &upgrade), Action::Continue);
    assert_eq!((g.header(1, "x-litellm-model"), cleared(&g, 1), g.waiting(1)), (None, 1, None));
    assert_eq!(g.request(2, "GET", "/openai/deployments/gpt-4o/realtime", Some(&t), false), Action::Continue);
    assert_eq!(g.header(2, "x-litellm-model").as_deref(), Some("gpt-4o"), "the path's model, at once");
    assert!(g.host.body_reads.borrow().is_empty());
}

#[test]
fn routing_off_changes_nothing() {
    let g = Gateway::ready(json!({}));
    assert_eq!(g.request_with(1, "POST", "/v1/chat/completions", Some(&token("RS256")), false, &[("x-ai-eg-model", "c")]), Action::Continue);
    assert_eq!(g.header(1, "x-ai-eg-model").as_deref(), Some("c"), "not the filter's header");
    assert_eq!(cleared(&g, 1), 0);
    assert!(g.host.body_reads.borrow().is_empty());
}

#[test]
fn public_routes_and_passed_through_keys_lose_the_clients_routing_header() {
    let g = Gateway::cold(routing(json!({"general_settings": {"public_routes": ["/health"]}, "api_keys": "pass_through"})));
    assert_eq!(g.request_with(1, "POST", "/health", None, false, &[("x-litellm-model", "c")]), Action::Continue);
    assert_eq!((g.header(1, "x-litellm-model"), cleared(&g, 1)), (None, 1));
    assert_eq!(g.request_with(2, "POST", "/v1/chat/completions", Some("sk-1"), false, &[("x-litellm-model", "c")]), Action::Continue);
    assert_eq!((g.header(2, "x-litellm-model"), cleared(&g, 2)), (None, 1));
}

// ------------------------------------------------------------------------------------------
// Waiting for records
// ------------------------------------------------------------------------------------------

fn user_source() -> Value {
    json!({
        "general_settings": {"enable_jwt_auth": true, "litellm_jwtauth": {"user_id_jwt_field": "sub"}},
        "record_source": {"type": "http", "url": "http://records:9000", "paths": {"user": "/users/{id}"}},
    })
}

#[test]
fn records_are_fetched_by_the_root_and_the_request_resumes_when_they_arrive() {
    let g = Gateway::ready(user_source());
    assert_eq!(g.request(1, "POST", "/v1/chat/completions", Some(&token("RS256")), false), Action::Pause);
    assert_eq!(g.body(1, r#"{"model": "gpt-4o"}"#, true), Action::Pause);
    assert!(matches!(g.waiting(1), Some(Phase::AwaitingRecords { .. })));
    assert!(g.calls_to("/users/alice").is_empty(), "request contexts dispatch nothing");
    g.tick();
    assert_eq!(g.calls_to("/users/alice").len(), 1);
    g.answer_call("/users/alice", "200", r#"{"user_id": "alice", "models": ["gpt-4o"]}"#);
    assert_eq!(g.resumed(1), 1);
    assert_eq!(g.header(1, "x-litellm-user-id").as_deref(), Some("alice"));
    assert_eq!(g.request(2, "GET", "/v1/models", Some(&token("RS256")), true), Action::Continue, "stored: no wait");
    assert_eq!(g.calls_to("/users/alice").len(), 1);
}

#[test]
fn a_record_source_that_fails_answers_the_waiting_request_with_a_503() {
    let g = Gateway::ready(user_source());
    g.request(1, "GET", "/v1/models", Some(&token("RS256")), true);
    g.tick();
    g.answer_call("/users/alice", "500", "boom");
    assert_eq!(g.reply(1).map(|r| r.status), Some(503));
    assert!(!g.reply(1).unwrap().body.contains("records"), "no internals");
    assert_eq!(g.counter("record_fetch_failure"), 1);
}

#[test]
fn a_record_source_that_never_answers_times_the_request_out() {
    let mut config = user_source();
    config["record_source"]["timeout_ms"] = json!(300);
    let g = Gateway::ready(config);
    g.request(1, "GET", "/v1/models", Some(&token("RS256")), true);
    g.tick();
    g.later(1299);
    g.tick();
    assert_eq!(g.reply(1), None);
    g.later(1);
    g.tick();
    assert_eq!(g.reply(1).map(|r| r.status), Some(503));
}

#[test]
fn upserted_records_are_written_through_on_the_root_s_turn() {
    let g = Gateway::ready(json!({
        "general_settings": {"enable_jwt_auth": true, "litellm_jwtauth": {"user_id_jwt_field": "sub", "user_id_upsert": true}},
        "record_source": {"type": "litellm", "url": "http://litellm:4000", "master_key": "sk-m", "write_through": true},
    }));
    g.request(1, "GET", "/v1/models", Some(&token("RS256")), true);
    g.tick();
    g.answer_call("/user/info?user_id=alice", "404", "");
    // LiteLLM's fuzzy lookup then asks for a user whose sso_user_id is the id (no email here).
    assert_eq!(g.resumed(1), 0, "not before the sso_user_id lookup has answered");
    g.tick();
    g.answer_call("/user/list?sso_user_ids=alice&page_size=100", "200", r#"{"users": []}"#);
    assert_eq!(g.resumed(1), 1, "an unknown user is upserted and admitted");
    assert!(g.calls_to("/user/new").is_empty(), "queued for the root's next turn, not dispatched while deciding");
    g.tick();
    assert_eq!(g.calls_to("/user/new").len(), 1);
    g.answer_call("/user/new", "201", "{}");
    assert!(g.host.logged(LogLevel::Info, "created user alice at LiteLLM"));
}

// ------------------------------------------------------------------------------------------
// DPoP
// ------------------------------------------------------------------------------------------

fn dpop_vectors() -> Value {
    serde_json::from_str(include_str!("../../tests/fixtures/dpop_vectors.json")).unwrap()
}

/// A gateway at the vectors' URL (`https://gw.example`), with DPoP and the vectors' issuer key.
fn dpop_gateway() -> Gateway {
    let g = Gateway::cold(json!({"dpop": {"enabled": true}}));
    g.tick();
    g.answer_call(JWKS_PATH, "200", &dpop_vectors()["issuer_jwks"].to_string());
    g
}

fn dpop_request(g: &Gateway, id: u32, scheme: &str, proof: Option<&str>) -> Action {
    let v = dpop_vectors();
    g.host.enter(id);
    let mut headers = vec![
        (":method", "GET".to_string()),
        (":scheme", "https".to_string()),
        (":authority", "gw.example".to_string()),
        (":path", "/v1/chat/completions?stream=false".to_string()),
        ("authorization", format!("{scheme} {}", v["token"].as_str().unwrap())),
    ];
    if let Some(p) = proof {
        headers.push(("dpop", v["proofs"][p].as_str().unwrap().to_string()));
    }
    g.host.requests.borrow_mut().entry(id).or_default().headers = headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    on_headers(&g.host, &g.worker, id, true)
}

#[test]
fn a_dpop_bound_token_passes_with_its_proof_once_and_never_as_bearer() {
    let g = dpop_gateway();
    assert_eq!(dpop_request(&g, 1, "DPoP", Some("good")), Action::Continue, "{:?}", g.reply(1));
    assert_eq!(g.header(1, "x-litellm-user-id").as_deref(), Some("svc"));
    assert_eq!(dpop_request(&g, 2, "DPoP", Some("good")), Action::Pause, "the same proof again: a replay");
    let replay = g.reply(2).unwrap();
    assert_eq!(replay.status, 401);
    assert!(error_message(&replay).contains("already used"), "{replay:?}");
    assert!(replay.headers.iter().any(|(k, v)| k == "www-authenticate" && v.starts_with("DPoP error=\"invalid_dpop_proof\"")), "{replay:?}");
    assert_eq!(dpop_request(&g, 3, "Bearer", None), Action::Pause);
    assert_eq!(g.header(3, REASON_HEADER), None);
    assert_eq!(g.reply(3).unwrap().headers.iter().find(|(k, _)| k == REASON_HEADER).map(|(_, v)| v.as_str()), Some("dpop_bound_token"));
    assert_eq!(dpop_request(&g, 4, "DPoP", Some("wrong_htm")), Action::Pause);
    assert_eq!(dpop_request(&g, 5, "DPoP", None), Action::Pause);
    assert_eq!(g.counter("requests_denied.invalid_dpop_proof"), 3);
}

#[test]
fn a_dpop_proof_is_checked_when_the_keys_arrive_after_a_wait() {
    let g = Gateway::cold(json!({"dpop": {"enabled": true}}));
    assert_eq!(dpop_request(&g, 1, "DPoP", Some("wrong_ath")), Action::Pause);
    assert_eq!(dpop_request(&g, 2, "DPoP", Some("good")), Action::Pause);
    g.tick();
    g.answer_call(JWKS_PATH, "200", &dpop_vectors()["issuer_jwks"].to_string());
    assert_eq!(g.reply(1).map(|r| r.status), Some(401));
    assert_eq!((g.reply(2), g.resumed(2)), (None, 1));
}

mod limits;
mod model_list;
mod userinfo;
