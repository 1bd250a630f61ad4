//! Opaque tokens through the shell (`oidc_userinfo_enabled`): the root context asks the
//! UserInfo endpoint once per token, the answer decides every request waiting for it and those
//! that come while it is fresh; a refusal is a 401, a failing endpoint a 503.

use super::*;

const USERINFO_PATH: &str = "/userinfo";
const OPAQUE: &str = "opaque-access-token-0123456789";

fn config(extra: Value) -> Value {
    let mut jwtauth = json!({
        "oidc_userinfo_enabled": true,
        "oidc_userinfo_endpoint": "http://idp:8080/userinfo",
        "user_id_jwt_field": "sub",
    });
    jwtauth.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"general_settings": {"enable_jwt_auth": true, "litellm_jwtauth": jwtauth}, "public_key_url": "http://idp:8080/jwks"})
}

fn gateway(extra: Value) -> Gateway {
    Gateway::ready(config(extra))
}

fn reason(reply: &Reply) -> Option<&str> {
    reply.headers.iter().find(|(k, _)| k == REASON_HEADER).map(|(_, v)| v.as_str())
}

#[test]
fn one_call_per_token_answers_every_request_waiting_for_it_and_the_next_ones_from_the_cache() {
    let g = gateway(json!({}));
    assert_eq!(g.request(1, "GET", "/v1/models", Some(OPAQUE), true), Action::Pause);
    assert_eq!(g.request(2, "GET", "/v1/models", Some(OPAQUE), true), Action::Pause);
    assert!(matches!(g.waiting(1), Some(Phase::AwaitingUserInfo { .. })));
    g.tick();
    g.tick();
    let calls = g.calls_to(USERINFO_PATH);
    assert_eq!(calls.len(), 1, "one call for both requests");
    let call = g.host.calls.borrow().iter().find(|(t, _)| *t == calls[0]).map(|(_, c)| c.clone()).unwrap();
    assert!(call.headers.contains(&("authorization".into(), format!("Bearer {OPAQUE}"))), "{call:?}");
    g.answer_call(USERINFO_PATH, "200", r#"{"sub": "alice", "email": "alice@example.com"}"#);
    assert_eq!((g.resumed(1), g.resumed(2)), (1, 1));
    assert_eq!((g.reply(1), g.reply(2)), (None, None));
    assert_eq!(g.header(2, "x-litellm-user-id").as_deref(), Some("alice"), "the UserInfo subject, not the spoofed header");
    assert_eq!(g.request(3, "GET", "/v1/models", Some(OPAQUE), true), Action::Continue, "from the cache, at once");
    g.tick();
    assert_eq!(g.calls_to(USERINFO_PATH).len(), 1);
    assert_eq!(g.counter("userinfo_fetch_success"), 1);
    for (_, (value, _)) in g.host.shared.data.borrow().iter() {
        assert!(!String::from_utf8_lossy(value).contains(OPAQUE), "the token is never stored");
    }
}

#[test]
fn another_worker_s_answer_in_shared_data_decides_without_a_call() {
    let g = gateway(json!({}));
    g.request(1, "GET", "/v1/models", Some(OPAQUE), true);
    g.tick();
    g.answer_call(USERINFO_PATH, "200", r#"{"sub": "alice"}"#);
    // A second worker of the same process: its own caches, the same shared data.
    let other = configure(&g.host, config(json!({})).to_string().as_bytes(), &|_| None).unwrap();
    g.host.enter(2);
    g.host.requests.borrow_mut().entry(2).or_default().headers =
        vec![(":method".into(), "GET".into()), (":path".into(), "/v1/models".into()), ("authorization".into(), format!("Bearer {OPAQUE}"))];
    assert_eq!(on_headers(&g.host, &other, 2, true), Action::Continue);
    assert_eq!(g.calls_to(USERINFO_PATH).len(), 1);
}

#[test]
fn the_idp_s_refusal_is_a_401_with_litellm_s_text_and_is_remembered_briefly() {
    let g = gateway(json!({}));
    g.request(1, "GET", "/v1/models", Some(OPAQUE), true);
    g.tick();
    g.answer_call(USERINFO_PATH, "401", r#"{"error": "invalid_token", "error_description": "secret detail"}"#);
    let reply = g.reply(1).unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(reason(&reply), Some("userinfo_refused"));
    assert_eq!(
        error_message(&reply),
        "Authentication Error, Failed to fetch OIDC UserInfo: OIDC UserInfo endpoint returned status 401"
    );
    assert!(!reply.body.contains("secret detail"), "the IdP's body is for nobody: {}", reply.body);
    assert_eq!(g.request(2, "GET", "/v1/models", Some(OPAQUE), true), Action::Pause, "refused at once");
    assert_eq!(g.reply(2).map(|r| r.status), Some(401));
    g.later(5_001);
    assert_eq!(g.request(3, "GET", "/v1/models", Some(OPAQUE), true), Action::Pause);
    g.tick();
    assert_eq!(g.calls_to(USERINFO_PATH).len(), 2, "asked again once the refusal is old");
}

#[test]
fn a_failing_endpoint_is_a_503_naming_nothing_internal_never_a_pass() {
    for (status, body) in [("503", "upstream connect error"), ("200", "<html>login</html>"), ("200", "[1, 2]"), ("429", "slow down")] {
        let g = gateway(json!({}));
        g.request(1, "GET", "/v1/models", Some(OPAQUE), true);
        g.tick();
        g.answer_call(USERINFO_PATH, status, body);
        let reply = g.reply(1).unwrap_or_else(|| panic!("{status} {body}: not answered"));
        assert_eq!((reply.status, reason(&reply)), (503, Some("userinfo_unavailable")), "{status} {body}");
        assert!(reply.headers.iter().any(|(k, _)| k == "retry-after"));
        for internal in ["idp", "8080", USERINFO_PATH, body] {
            assert!(!reply.body.contains(internal), "{internal:?} in {}", reply.body);
        }
        assert_eq!(g.resumed(1), 0);
        assert_eq!(g.counter("userinfo_fetch_failure"), 1);
    }
}

#[test]
fn an_endpoint_that_never_answers_times_the_request_out_with_a_503() {
    let g = gateway(json!({}));
    g.request(1, "GET", "/v1/models", Some(OPAQUE), true);
    g.tick();
    g.later(5_000 + 900);
    g.tick();
    assert_eq!(g.reply(1), None, "within the fetch timeout and the margin");
    g.later(200);
    g.tick();
    assert_eq!(g.reply(1).map(|r| (r.status, reason(&r).map(str::to_string))), Some((503, Some("userinfo_unavailable".into()))));
}

#[test]
fn an_answer_is_used_for_the_cache_ttl_then_asked_again() {
    let g = gateway(json!({"oidc_userinfo_cache_ttl": 60}));
    g.request(1, "GET", "/v1/models", Some(OPAQUE), true);
    g.tick();
    g.answer_call(USERINFO_PATH, "200", r#"{"sub": "alice"}"#);
    g.later(59_000);
    assert_eq!(g.request(2, "GET", "/v1/models", Some(OPAQUE), true), Action::Continue);
    g.later(1_001);
    assert_eq!(g.request(3, "GET", "/v1/models", Some(OPAQUE), true), Action::Pause, "expired: asked again");
    g.tick();
    assert_eq!(g.calls_to(USERINFO_PATH).len(), 2);
}

#[test]
fn the_claims_go_through_litellm_s_rules_like_a_token_s() {
    let g = gateway(json!({"admin_jwt_scope": "litellm_proxy_admin"}));
    let admin = "opaque-admin-token-0123456789";
    g.request(1, "GET", "/key/generate", Some(OPAQUE), true);
    g.request(2, "GET", "/key/generate", Some(admin), true);
    g.tick();
    for (bearer, claims) in [(OPAQUE, r#"{"sub": "alice", "scope": "openid"}"#), (admin, r#"{"sub": "root", "scope": "openid litellm_proxy_admin"}"#)] {
        let auth = ("authorization".to_string(), format!("Bearer {bearer}"));
        let call = g.host.calls.borrow().iter().find(|(_, c)| c.headers.contains(&auth)).map(|(t, _)| *t).unwrap();
        g.answer_token(call, Answer::Response { status: "200".into(), body: Some(claims.as_bytes().to_vec()) });
    }
    let refused = g.reply(1).expect("not an admin: a management route is refused");
    assert!(matches!(refused.status, 401 | 403) && reason(&refused) != Some("userinfo_refused"), "{refused:?}");
    assert_eq!((g.reply(2), g.resumed(2)), (None, 1));
    assert_eq!(g.header(2, "x-litellm-user-role").as_deref(), Some("proxy_admin"), "the admin scope read from the answer");
}

#[test]
fn jwts_still_verify_by_signature_and_over_long_opaque_tokens_are_refused_unasked() {
    let g = gateway(json!({}));
    assert_eq!(g.request(1, "GET", "/v1/models", Some(&token("RS256")), true), Action::Continue);
    let long = "x".repeat(4097);
    assert_eq!(g.request(2, "GET", "/v1/models", Some(&long), true), Action::Pause);
    assert_eq!(g.reply(2).map(|r| r.status), Some(401));
    g.tick();
    assert!(g.calls_to(USERINFO_PATH).is_empty());
}

#[test]
fn a_flood_of_new_tokens_is_asked_about_at_most_64_at_a_time() {
    let g = gateway(json!({}));
    for id in 1..=70 {
        g.request(id, "GET", "/v1/models", Some(&format!("flood-token-{id:04}")), true);
    }
    g.tick();
    g.tick();
    assert_eq!(g.calls_to(USERINFO_PATH).len(), crate::shell::worker::fetches::MAX_USERINFO_IN_FLIGHT);
    g.answer_call(USERINFO_PATH, "401", "");
    g.tick();
    assert_eq!(g.calls_to(USERINFO_PATH).len(), 65, "one answer makes room for one more");
}

#[test]
fn api_keys_are_never_sent_to_the_idp() {
    let g = gateway(json!({}));
    for key in ["sk-1234", "sk-proj-abcdef", "sk-ant-api03-xyz"] {
        g.request(1, "GET", "/v1/models", Some(key), true);
        assert_eq!(g.reply(1).map(|r| (r.status, reason(&r).map(str::to_string))), Some((401, Some("malformed_token".into()))), "{key}");
        g.host.requests.borrow_mut().remove(&1);
    }
    g.tick();
    assert!(g.calls_to(USERINFO_PATH).is_empty(), "a LiteLLM or provider key stays with its owner");
}
