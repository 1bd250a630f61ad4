//! A model list through the shell: buffered and filtered to the caller's models when a rule
//! limits them, passed through untouched otherwise.

use super::*;
use crate::shell::request::{on_response_body, on_response_headers};

const LIST: &str = r#"{"object":"list","data":[{"id":"gpt-4o","object":"model"},{"id":"claude-3-5-sonnet","object":"model"}]}"#;

fn gateway(models: Value) -> Gateway {
    Gateway::ready(json!({
        "general_settings": {"litellm_jwtauth": {"team_id_default": "t1"}},
        "teams": [{"team_id": "t1", "models": models}],
    }))
}

impl Gateway {
    /// Request `id` lists the models; the upstream answers `chunks` with these headers.
    fn list_models(&self, id: u32, headers: &[(&str, &str)], chunks: &[&str]) -> Vec<Action> {
        assert_eq!(self.request(id, "GET", "/v1/models", Some(&token("RS256")), true), Action::Continue);
        self.host.enter(id);
        self.host.requests.borrow_mut().entry(id).or_default().response_headers =
            headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        on_response_headers(&self.host, &self.worker, id, false);
        let mut actions = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            self.host.requests.borrow_mut().entry(id).or_default().response_chunks.push(chunk.as_bytes().to_vec());
            let buffered: usize = self.host.with(id, |r| r.response_chunks.iter().map(Vec::len).sum());
            actions.push(on_response_body(&self.host, &self.worker, id, buffered, i + 1 == chunks.len()));
        }
        actions
    }

    fn replaced_body(&self, id: u32) -> Option<String> {
        self.host.with(id, |r| r.response_body_set.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
    }
}

const JSON_200: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json"), ("content-length", "107")];

#[test]
fn the_list_is_buffered_and_filtered_to_the_teams_models() {
    let g = gateway(json!(["gpt-4o"]));
    let (head, tail) = LIST.split_at(40);
    assert_eq!(g.list_models(1, JSON_200, &[head, tail]), vec![Action::Pause, Action::Continue]);
    assert_eq!(g.replaced_body(1).as_deref(), Some(r#"{"object":"list","data":[{"id":"gpt-4o","object":"model"}]}"#));
    assert!(!g.host.with(1, |r| r.response_headers.iter().any(|(k, _)| k == "content-length")), "the length changed");
    assert!(g.worker.borrow().answering.is_empty(), "done at the end of the answer");
}

#[test]
fn an_unrestricted_caller_errors_and_streams_go_through_untouched() {
    let g = gateway(json!([]));
    assert_eq!(g.list_models(1, JSON_200, &[LIST]), vec![Action::Continue]);
    assert_eq!(g.replaced_body(1), None, "no rule limits the models: nothing to do");
    let g = gateway(json!(["gpt-4o"]));
    let error = [(":status", "500"), ("content-type", "application/json")];
    assert_eq!(g.list_models(2, &error, &["{\"error\":", "{}}"]), vec![Action::Continue, Action::Continue]);
    assert_eq!(g.replaced_body(2), None);
    let events = [(":status", "200"), ("content-type", "text/event-stream")];
    assert_eq!(g.list_models(3, &events, &["data: {}\n\n", "data: [DONE]\n\n"]), vec![Action::Continue, Action::Continue]);
    assert_eq!(g.replaced_body(3), None);
    assert_eq!(g.host.with(3, |r| r.response_headers.len()), 2, "headers untouched");
}

#[test]
fn a_list_that_cannot_be_read_shows_nothing_rather_than_everything() {
    let g = gateway(json!(["gpt-4o"]));
    let gzip = [(":status", "200"), ("content-type", "application/json"), ("content-encoding", "gzip")];
    assert_eq!(g.list_models(1, &gzip, &["\u{1f}\u{8b}\u{8}compressed"]), vec![Action::Continue]);
    let empty = String::from_utf8_lossy(crate::shell::worker::answers::EMPTY_MODEL_LIST).into_owned();
    assert_eq!(g.replaced_body(1), Some(empty.clone()));
    assert!(!g.host.with(1, |r| r.response_headers.iter().any(|(k, _)| k == "content-encoding")), "sent as is");
    assert_eq!(g.list_models(2, JSON_200, &["{\"data\": [{\"id\": \"gpt-4o\"}"]), vec![Action::Continue]);
    assert_eq!(g.replaced_body(2), Some(empty), "a list that cannot be read: nothing shown");
    assert_eq!(g.list_models(3, JSON_200, &["{\"id\": \"chatcmpl-1\", \"choices\": []}"]), vec![Action::Continue]);
    assert_eq!(g.replaced_body(3), None, "a JSON answer without `data` holds no list: it goes on as it is");
}

#[test]
fn the_clients_accept_encoding_is_not_passed_on_when_the_answer_is_read() {
    let g = gateway(json!(["gpt-4o"]));
    let gzip = [("accept-encoding", "gzip, br")];
    g.request_with(1, "GET", "/v1/models", Some(&token("RS256")), true, &gzip);
    assert_eq!(g.header(1, "accept-encoding"), None, "the list is read: it must come uncompressed");
    g.request_with(2, "GET", "/team/info", Some(&token("RS256")), true, &gzip);
    assert_eq!(g.header(2, "accept-encoding").as_deref(), Some("gzip, br"), "nothing read: untouched");
}
