//! Rate limits through the shell: admitted or refused with LiteLLM's 429, the answer's
//! `x-ratelimit-*` headers, tokens read from the answer as it passes, slots given back when
//! the stream ends however it ends.

use super::*;
use crate::shell::request::{on_response_body, on_response_headers};

/// alice's token acts for team `t1` (`team_id_default`), a static record with `team`.
fn gateway(team: Value, extra: Value) -> Gateway {
    let mut config = json!({
        "general_settings": {"litellm_jwtauth": {"team_id_default": "t1"}},
        "teams": [team],
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    Gateway::ready(config)
}

impl Gateway {
    /// A chat request (no body: the model is read from none) decided in its headers callback.
    fn chat(&self, id: u32) -> Action {
        self.request(id, "POST", "/v1/chat/completions", Some(&token("RS256")), true)
    }

    /// The upstream answers request `id` with `chunks`, the last ending the stream.
    fn answered(&self, id: u32, chunks: &[&str]) {
        self.host.enter(id);
        on_response_headers(&self.host, &self.worker, id, chunks.is_empty());
        for (i, chunk) in chunks.iter().enumerate() {
            self.host.requests.borrow_mut().entry(id).or_default().response_chunks.push(chunk.as_bytes().to_vec());
            on_response_body(&self.host, &self.worker, id, chunk.len(), i + 1 == chunks.len());
        }
    }

    fn response_header(&self, id: u32, name: &str) -> Option<String> {
        self.host.with(id, |r| r.response_headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }
}

#[test]
fn requests_over_the_teams_rpm_get_litellms_429_with_its_headers() {
    let g = gateway(json!({"team_id": "t1", "rpm_limit": 2}), json!({}));
    assert_eq!(g.chat(1), Action::Continue);
    g.answered(1, &[]);
    assert_eq!(g.response_header(1, "x-ratelimit-team-remaining-requests").as_deref(), Some("1"));
    assert_eq!(g.response_header(1, "x-ratelimit-team-limit-requests").as_deref(), Some("2"));
    assert_eq!(g.chat(2), Action::Continue);
    assert_eq!(g.chat(3), Action::Pause);
    let reply = g.reply(3).unwrap();
    assert_eq!(reply.status, 429);
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "429");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Rate limit exceeded for team: t1. Limit type: requests. Current limit: 2, Remaining: 0. Limit resets at: "),
        "{message}"
    );
    let header = |name: &str| reply.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header("rate_limit_type").as_deref(), Some("requests"));
    assert_eq!(header("retry-after").as_deref(), Some("60"), "the window started this second");
    assert!(header("reset_at").unwrap().ends_with(" UTC"));
    assert_eq!(header("www-authenticate"), None, "the token was fine");
    // Other routes are not LiteLLM's LLM API: not counted.
    g.request(4, "GET", "/team/info", Some(&token("RS256")), true);
    assert_ne!(g.reply(4).map(|r| r.status), Some(429));
    g.later(60_000);
    assert_eq!(g.chat(5), Action::Continue, "a new window");
}

#[test]
fn a_parallel_slot_is_held_until_the_stream_ends_however_it_ends() {
    let g = gateway(json!({"team_id": "t1", "max_parallel_requests": 1}), json!({}));
    assert_eq!(g.chat(1), Action::Continue);
    assert_eq!(g.chat(2), Action::Pause);
    assert_eq!(g.reply(2).unwrap().status, 429);
    on_done(&g.host, &g.worker, 2); // the refused one ends: it held nothing
    assert_eq!(g.chat(3), Action::Pause, "1 still holds the slot");
    on_done(&g.host, &g.worker, 3);
    on_done(&g.host, &g.worker, 1); // reset, cut or finished: the context goes away
    assert_eq!(g.chat(4), Action::Continue);
    assert!(g.worker.borrow().answering.contains_key(&4));
    g.answered(4, &["{\"id\":\"x\"}"]);
    assert!(g.worker.borrow().answering.is_empty(), "settled at the answer's end, before the client sees it");
    assert_eq!(g.chat(5), Action::Continue, "the slot is free before the context goes away");
    on_done(&g.host, &g.worker, 4);
    assert_eq!(g.chat(6), Action::Pause, "4's late end gives back nothing twice");
}

#[test]
fn tokens_are_read_from_the_streamed_answer_and_refuse_once_used_up() {
    let g = gateway(json!({"team_id": "t1", "tpm_limit": 30}), json!({}));
    assert_eq!(g.chat(1), Action::Continue);
    let stream = [
        "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":8,\"total",
        "_tokens\":20}}\n\ndata: [DONE]\n\n",
    ];
    g.answered(1, &stream);
    assert_eq!(g.chat(2), Action::Continue, "20 of 30 used");
    assert_eq!(g.response_header(2, "x-ratelimit-team-remaining-tokens"), None, "not answered yet");
    g.answered(2, &["{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":5,\"total_tokens\":10}}"]);
    assert_eq!(g.response_header(2, "x-ratelimit-team-remaining-tokens").as_deref(), Some("10"));
    assert_eq!(g.chat(3), Action::Pause, "30 of 30 used");
    let reply = g.reply(3).unwrap();
    assert!(reply.body.contains("Limit type: tokens. Current limit: 30"), "{}", reply.body);
}

#[test]
fn input_tokens_only_when_litellm_is_told_so() {
    let g = gateway(
        json!({"team_id": "t1", "tpm_limit": 10}),
        json!({"general_settings": {"litellm_jwtauth": {"team_id_default": "t1"}, "token_rate_limit_type": "input"}}),
    );
    g.chat(1);
    g.answered(1, &["{\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":500,\"total_tokens\":504}}"]);
    assert_eq!(g.chat(2), Action::Continue, "4 input tokens of 10");
}

#[test]
fn limits_can_be_turned_off() {
    let g = gateway(json!({"team_id": "t1", "rpm_limit": 1}), json!({"rate_limits": {"enabled": false}}));
    for id in 1..4 {
        assert_eq!(g.chat(id), Action::Continue);
    }
    assert_eq!(g.header(1, "x-litellm-team-rpm-limit").as_deref(), Some("1"), "still forwarded");
}

#[test]
fn a_compressed_counted_answer_is_reported_and_its_slot_still_given_back() {
    let g = gateway(json!({"team_id": "t1", "tpm_limit": 10, "max_parallel_requests": 1}), json!({}));
    g.request_with(1, "POST", "/v1/chat/completions", Some(&token("RS256")), true, &[("accept-encoding", "gzip")]);
    assert_eq!(g.header(1, "accept-encoding"), None, "usage is read: the answer must come uncompressed");
    g.host.requests.borrow_mut().entry(1).or_default().response_headers = vec![("content-encoding".into(), "gzip".into())];
    g.answered(1, &["\u{1f}\u{8b}\"usage\":{\"total_tokens\":50}"]);
    assert!(g.host.logged(LogLevel::Critical, "arrived compressed"));
    assert_eq!(g.chat(2), Action::Continue, "the slot came back; the unreadable tokens were not counted");
}
