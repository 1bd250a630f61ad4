//! The tokens an answer used, read from its `usage` objects as the body passes, chunk by chunk,
//! without keeping the body: JSON answers (`{"usage": {...}}` at the end of a chat
//! completion, an embedding, a response) and Server-Sent Events (the final usage chunk of a
//! chat stream with `stream_options.include_usage`, the Responses API's `response.completed`,
//! Anthropic's `message_start` / `message_delta`).
//!
//! One string-aware scanner runs over the whole byte stream: SSE framing (`data: `, `event:`
//! lines) lies outside any JSON string, and each event's JSON is balanced, so the same state
//! carries from event to event. A member named `usage` whose value is an object is captured
//! (at most [`MAX_USAGE_BYTES`]) and read when its closing brace passes; a `"usage"` inside a
//! string (a prompt echoed back, tool arguments) is text, never a member.

use serde_json::Value;

/// A `usage` object larger than this is not read (no real one comes close).
pub const MAX_USAGE_BYTES: usize = 8 * 1024;

/// Which tokens count (LiteLLM's `general_settings.token_rate_limit_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Total,
    Input,
    Output,
}

/// What the answer's `usage` said; later objects override the fields they carry (Anthropic
/// sends input tokens first, then the running output count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub total: Option<u64>,
}

impl Usage {
    pub fn tokens(&self, kind: TokenKind) -> u64 {
        match kind {
            TokenKind::Total => self.total.unwrap_or_else(|| self.input.unwrap_or(0).saturating_add(self.output.unwrap_or(0))),
            TokenKind::Input => self.input.unwrap_or(0),
            TokenKind::Output => self.output.unwrap_or(0),
        }
    }

    fn merge(&mut self, object: &Value) {
        let field = |names: &[&str]| names.iter().find_map(|n| object.get(*n).and_then(Value::as_u64));
        if let Some(n) = field(&["prompt_tokens", "input_tokens"]) {
            self.input = Some(n);
        }
        if let Some(n) = field(&["completion_tokens", "output_tokens"]) {
            self.output = Some(n);
        }
        if let Some(n) = field(&["total_tokens"]) {
            self.total = Some(n);
        }
    }
}

/// Where the scanner is, outside a captured `usage` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum After {
    #[default]
    Nothing,
    /// A string just closed; `true` when it was `"usage"`.
    String(bool),
    /// `"usage":` — the value comes next.
    UsageColon,
}

#[derive(Debug, Default)]
pub struct UsageScanner {
    in_string: bool,
    escaped: bool,
    /// The string being read, while it could still be `usage`.
    key: Vec<u8>,
    key_too_long: bool,
    after: After,
    /// The `usage` object being captured: its bytes (none once too large) and brace depth.
    capture: Option<Capture>,
    usage: Usage,
}

#[derive(Debug)]
struct Capture {
    bytes: Vec<u8>,
    too_large: bool,
    depth: usize,
}

impl UsageScanner {
    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            self.byte(b);
        }
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    fn byte(&mut self, b: u8) {
        if let Some(capture) = self.capture.as_mut() {
            if !capture.too_large {
                capture.bytes.push(b);
                if capture.bytes.len() > MAX_USAGE_BYTES {
                    capture.too_large = true;
                    capture.bytes = Vec::new();
                }
            }
        }
        if self.in_string {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => {
                    self.in_string = false;
                    let is_usage = !self.key_too_long && self.key == b"usage";
                    self.after = if self.capture.is_none() { After::String(is_usage) } else { After::Nothing };
                }
                (false, _) => {}
            }
            if self.in_string && self.capture.is_none() && !self.key_too_long {
                if self.key.len() < 8 {
                    self.key.push(b);
                } else {
                    self.key_too_long = true;
                }
            }
            return;
        }
        if b.is_ascii_whitespace() {
            return;
        }
        match b {
            b'"' => {
                self.in_string = true;
                self.key.clear();
                self.key_too_long = false;
                self.after = After::Nothing;
                return;
            }
            b'{' if self.capture.is_none() && self.after == After::UsageColon => {
                self.capture = Some(Capture { bytes: vec![b'{'], too_large: false, depth: 1 });
            }
            b'{' => {
                if let Some(c) = self.capture.as_mut() {
                    c.depth += 1;
                }
            }
            b'}' => self.close(),
            b':' if self.after == After::String(true) => {
                self.after = After::UsageColon;
                return;
            }
            _ => {}
        }
        self.after = After::Nothing;
    }

    fn close(&mut self) {
        let Some(c) = self.capture.as_mut() else { return };
        c.depth -= 1;
        if c.depth > 0 {
            return;
        }
        if let Some(done) = self.capture.take().filter(|c| !c.too_large) {
            if let Ok(object) = serde_json::from_slice::<Value>(&done.bytes) {
                self.usage.merge(&object);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn whole(body: &str) -> Usage {
        let mut s = UsageScanner::default();
        s.feed(body.as_bytes());
        s.usage()
    }

    /// Fed whole, split in two at every byte, and byte by byte: the same usage.
    fn read(body: &str) -> Usage {
        let expected = whole(body);
        let bytes = body.as_bytes();
        for at in 0..=bytes.len() {
            let mut s = UsageScanner::default();
            s.feed(&bytes[..at]);
            s.feed(&bytes[at..]);
            assert_eq!(s.usage(), expected, "split at {at}");
        }
        let mut s = UsageScanner::default();
        for b in bytes {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(s.usage(), expected, "byte by byte");
        expected
    }

    fn sse(events: &[(Option<&str>, serde_json::Value)]) -> String {
        let mut out = String::new();
        for (event, data) in events {
            if let Some(e) = event {
                out.push_str(&format!("event: {e}\n"));
            }
            out.push_str(&format!("data: {data}\n\n"));
        }
        out
    }

    fn usage(input: u64, output: u64, total: Option<u64>) -> Usage {
        Usage { input: Some(input), output: Some(output), total }
    }

    #[test]
    fn a_chat_completion_and_an_embedding() {
        let chat = json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                      "prompt_tokens_details": {"cached_tokens": 0}}});
        assert_eq!(read(&serde_json::to_string_pretty(&chat).unwrap()), usage(12, 3, Some(15)));
        let embedding = json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2]}],
            "model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}});
        let got = read(&embedding.to_string());
        assert_eq!((got.input, got.output, got.tokens(TokenKind::Total)), (Some(8), None, 8));
    }

    #[test]
    fn a_chat_stream_with_include_usage() {
        let chunk = |content: &str| json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}}], "usage": null});
        let mut events = vec![(None, chunk("Hel")), (None, chunk("lo"))];
        events.push((None, json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}})));
        let body = sse(&events) + "data: [DONE]\n\n";
        assert_eq!(read(&body), usage(9, 2, Some(11)));
        let without: String = sse(&events[..2]) + "data: [DONE]\n\n";
        assert_eq!(read(&without), Usage::default(), "usage null: nothing counted");
    }

    #[test]
    fn a_responses_api_stream() {
        let body = sse(&[
            (Some("response.created"), json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "usage": null}})),
            (Some("response.output_text.delta"), json!({"type": "response.output_text.delta", "delta": "Hi"})),
            (Some("response.completed"), json!({"type": "response.completed", "response": {"id": "resp_1", "status": "completed",
                "usage": {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                          "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 25}}})),
        ]);
        assert_eq!(read(&body), usage(20, 5, Some(25)));
    }

    #[test]
    fn an_anthropic_stream_takes_input_first_then_the_running_output() {
        let body = sse(&[
            (Some("message_start"), json!({"type": "message_start", "message": {"id": "msg_1", "role": "assistant", "content": [],
                "usage": {"input_tokens": 25, "output_tokens": 1}}})),
            (Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}})),
            (Some("message_delta"), json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}})),
            (Some("message_stop"), json!({"type": "message_stop"})),
        ]);
        let got = read(&body);
        assert_eq!(got, usage(25, 15, None));
        assert_eq!((got.tokens(TokenKind::Total), got.tokens(TokenKind::Input), got.tokens(TokenKind::Output)), (40, 25, 15));
    }

    #[test]
    fn usage_written_inside_a_string_is_text() {
        let echoed = json!({"choices": [{"message": {"content": "the \"usage\": {\"total_tokens\": 999} field", "tool_calls": [
            {"function": {"arguments": "{\"usage\":{\"prompt_tokens\":7}}"}}]}}], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}});
        assert_eq!(read(&echoed.to_string()), usage(1, 2, Some(3)));
        assert_eq!(read(&json!({"note": "usage", "x": {"usage": 5}}).to_string()), Usage::default(), "not an object");
        assert_eq!(read(&json!({"usages": {"total_tokens": 4}}).to_string()), Usage::default(), "another member");
    }

    #[test]
    fn a_huge_usage_is_skipped_and_a_later_one_still_counts() {
        let big = json!({"usage": {"total_tokens": 10, "padding": "x".repeat(MAX_USAGE_BYTES)}});
        assert_eq!(whole(&big.to_string()), Usage::default());
        let body = format!("data: {big}\n\ndata: {}\n\n", json!({"usage": {"total_tokens": 6}}));
        assert_eq!(whole(&body).total, Some(6));
    }

    #[test]
    fn an_answer_without_usage_or_cut_short_counts_nothing() {
        assert_eq!(read(&json!({"id": "x", "choices": []}).to_string()), Usage::default());
        assert_eq!(whole("{\"usage\": {\"total_tokens\": 5"), Usage::default(), "never closed");
        assert_eq!(whole("\u{0}\"\\\\\"{}}}}:::\"usage\"::{{"), Usage::default(), "garbage");
    }

    #[test]
    fn tokens_of_each_kind() {
        let u = usage(4, 6, Some(11));
        assert_eq!((u.tokens(TokenKind::Total), u.tokens(TokenKind::Input), u.tokens(TokenKind::Output)), (11, 4, 6));
        assert_eq!(Usage { input: Some(u64::MAX), output: Some(1), total: None }.tokens(TokenKind::Total), u64::MAX);
    }
}
