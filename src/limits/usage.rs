//! The tokens an answer used, read from its `usage` objects as the body passes, chunk by chunk:
//! the body is never buffered (streams are long), only each `usage` object (≤ [`MAX_USAGE`]).
//!
//! One string- and depth-aware pass over the bytes serves plain JSON and SSE alike: SSE framing
//! (`event: …`, `data: `, `[DONE]`) lies between balanced JSON texts, outside any string. A
//! member `"usage": {…}` inside an object counts at any depth; a `"usage"` inside a string
//! (content, tool-call arguments) does not. All state is carried byte by byte, so where the
//! chunks split never changes the result.

use serde_json::Value;

/// A larger `usage` object is skipped: no provider sends one, and memory stays bounded.
pub const MAX_USAGE: usize = 8 * 1024;

/// An answer's tokens, each field as the last `usage` carrying it gave it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `prompt_tokens` (chat, embeddings) or `input_tokens` (Responses, Anthropic).
    pub input: Option<u64>,
    /// `completion_tokens` or `output_tokens`.
    pub output: Option<u64>,
    /// `total_tokens`; Anthropic sends none.
    pub total: Option<u64>,
}

/// Which tokens count toward `tpm_limit`: LiteLLM's `general_settings.token_rate_limit_type`
/// (`"total"`, `"input"`, `"output"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Total,
    Input,
    Output,
}

impl Usage {
    /// The tokens of `kind`; a missing total is input + output (Anthropic), a missing field 0.
    pub fn tokens(&self, kind: TokenKind) -> u64 {
        let input = self.input.unwrap_or(0);
        let output = self.output.unwrap_or(0);
        match kind {
            TokenKind::Total => self.total.unwrap_or_else(|| input.saturating_add(output)),
            TokenKind::Input => input,
            TokenKind::Output => output,
        }
    }

    /// A later `usage` overrides the fields it carries: Anthropic's `message_delta` carries only
    /// the (cumulative) `output_tokens`, its `message_start` the input.
    fn merge(&mut self, object: &[u8]) {
        let Ok(Value::Object(usage)) = serde_json::from_slice::<Value>(object) else { return };
        // Non-negative integers only: `as_u64` refuses floats, negatives and strings.
        let field = |names: &[&str]| names.iter().find_map(|n| usage.get(*n).and_then(Value::as_u64));
        if let Some(v) = field(&["prompt_tokens", "input_tokens"]) {
            self.input = Some(v);
        }
        if let Some(v) = field(&["completion_tokens", "output_tokens"]) {
            self.output = Some(v);
        }
        if let Some(v) = field(&["total_tokens"]) {
            self.total = Some(v);
        }
    }
}

const KEY: &[u8] = b"usage";

/// Where a `"usage"` string has got to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum After {
    #[default]
    Nothing,
    /// `"usage"` closed: a `:` makes it a member name.
    Key,
    /// `"usage":`: a `{` starts the object to capture (not `null`, OpenAI's non-final chunks).
    Colon,
}

/// A `usage` object being read.
#[derive(Debug)]
struct Capture {
    /// The nesting depth outside its `{`: back there, it is complete.
    depth: u32,
    bytes: Vec<u8>,
    /// Grew past [`MAX_USAGE`]: its bytes are dropped, its end still awaited.
    too_big: bool,
}

/// Reads the `usage` of an answer body fed chunk by chunk, in order.
#[derive(Debug, Default)]
pub struct UsageScanner {
    usage: Usage,
    /// `{`/`[` open outside strings (saturating: garbage cannot overflow it).
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// How many bytes of the current string match `usage`; `None` once it differs, or where no
    /// key is looked for (outside objects; inside a capture, where a nested `usage` is its own).
    key: Option<usize>,
    after: After,
    capture: Option<Capture>,
}

impl UsageScanner {
    /// Reads the next chunk of the body; chunks may split anywhere.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some((&b, tail)) = rest.split_first() {
            self.step(b);
            rest = tail;
            // Fast path through string content (most of an answer): those bytes change nothing.
            if self.in_string && !self.escaped && self.key.is_none() && self.capture.is_none() {
                let n = rest.iter().position(|&b| matches!(b, b'"' | b'\\' | b'\n' | b'\r')).unwrap_or(rest.len());
                rest = rest.get(n..).unwrap_or_default();
            }
        }
    }

    /// The usage found so far (complete once the body has ended).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    fn step(&mut self, b: u8) {
        if let Some(c) = self.capture.as_mut().filter(|c| !c.too_big) {
            if c.bytes.len() < MAX_USAGE {
                c.bytes.push(b);
            } else {
                c.too_big = true;
                c.bytes = Vec::new();
            }
        }
        if self.in_string {
            if matches!(b, b'\n' | b'\r') {
                // A raw line break never occurs inside a JSON string: a stray `"` in non-JSON
                // bytes (SSE framing) must not invert everything after it.
                self.in_string = false;
                self.escaped = false;
            } else if self.escaped {
                self.escaped = false;
                self.key = None;
            } else if b == b'\\' {
                self.escaped = true;
                self.key = None;
            } else if b == b'"' {
                self.in_string = false;
                if self.key == Some(KEY.len()) {
                    self.after = After::Key;
                }
            } else {
                self.key = self.key.and_then(|n| (KEY.get(n) == Some(&b)).then_some(n + 1));
            }
            return;
        }
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match (self.after, b) {
            (After::Key | After::Colon, _) if space => return,
            (After::Key, b':') => {
                self.after = After::Colon;
                return;
            }
            (After::Colon, b'{') => {
                self.after = After::Nothing;
                self.capture = Some(Capture { depth: self.depth, bytes: vec![b'{'], too_big: false });
                self.depth = self.depth.saturating_add(1);
                return;
            }
            _ => self.after = After::Nothing,
        }
        match b {
            b'"' => {
                self.in_string = true;
                self.key = (self.depth > 0 && self.capture.is_none()).then_some(0);
            }
            b'{' | b'[' => self.depth = self.depth.saturating_add(1),
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.capture.as_ref().is_some_and(|c| c.depth == self.depth) {
                    if let Some(c) = self.capture.take().filter(|c| !c.too_big) {
                        self.usage.merge(&c.bytes);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: Option<u64>, output: Option<u64>, total: Option<u64>) -> Usage {
        Usage { input, output, total }
    }

    fn scan<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Usage {
        let mut s = UsageScanner::default();
        chunks.into_iter().for_each(|c| {
            s.feed(c);
            assert!(s.capture.as_ref().is_none_or(|c| c.bytes.capacity() <= MAX_USAGE), "bounded");
        });
        s.usage()
    }

    /// Whole, split in two at every byte, and byte by byte: always `want`.
    fn check(body: &str, want: Usage) {
        let b = body.as_bytes();
        assert_eq!(scan([b]), want, "whole: {body}");
        for at in 0..=b.len() {
            let (x, y) = b.split_at(at);
            assert_eq!(scan([x, y]), want, "split at {at}: {body}");
        }
        assert_eq!(scan(b.chunks(1)), want, "byte by byte: {body}");
    }

    fn sse(events: &[(&str, &str)]) -> String {
        let event = |(e, d): &(&str, &str)| if e.is_empty() { format!("data: {d}\n\n") } else { format!("event: {e}\ndata: {d}\n\n") };
        events.iter().map(event).collect()
    }

    const CHAT: &str = r#"{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "Caf\u00e9 \"usage\" — 👋 C:\\",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
  },
  "service_tier": "default",
  "system_fingerprint": "fp_fc9f1d7035"
}
"#;

    #[test]
    fn openai_chat_json() {
        check(CHAT, usage(Some(19), Some(10), Some(29)));
    }

    #[test]
    fn openai_chat_stream_with_include_usage() {
        let chunk = |delta: &str, finish: &str| {
            format!(r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}],"usage":null}}"#)
        };
        let last = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;
        let events = [
            chunk(r#"{"role":"assistant","content":"","refusal":null}"#, "null"),
            chunk(r#"{"content":"Hé \"usage\":{\"total_tokens\":999} \\"}"#, "null"),
            chunk(r#"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"usage\": {\"total_tokens\": 999}}"}}]}"#, "null"),
            chunk("{}", r#""stop""#),
        ];
        let mut all: Vec<(&str, &str)> = events.iter().map(|e| ("", e.as_str())).collect();
        all.push(("", "[DONE]"));
        check(&sse(&all), Usage::default());
        all.insert(4, ("", last));
        check(&sse(&all), usage(Some(9), Some(4), Some(13)));
    }

    #[test]
    fn openai_responses_stream() {
        let response = |status: &str, output: &str, usage: &str| {
            format!(r#"{{"id":"resp_67c9fdcecf488190bdd9a0409de3a1ec","object":"response","created_at":1741290958,"status":"{status}","error":null,"incomplete_details":null,"instructions":"You are a helpful assistant.","max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[{output}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{{"effort":null,"summary":null}},"store":true,"temperature":1.0,"text":{{"format":{{"type":"text"}}}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{usage},"user":null,"metadata":{{}}}}"#)
        };
        let item = r#"{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","annotations":[],"text":"Hi there! \"usage\": {\"total_tokens\": 999}"}]}"#;
        let done = r#"{"input_tokens":37,"input_tokens_details":{"cached_tokens":0},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":48}"#;
        let body = sse(&[
            ("response.created", &format!(r#"{{"type":"response.created","sequence_number":0,"response":{}}}"#, response("in_progress", "", "null"))),
            ("response.in_progress", &format!(r#"{{"type":"response.in_progress","sequence_number":1,"response":{}}}"#, response("in_progress", "", "null"))),
            ("response.output_item.added", r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}}"#),
            ("response.output_text.delta", r#"{"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi there! \"usage\": {\"total_tokens\": 999}"}"#),
            ("response.output_item.done", &format!(r#"{{"type":"response.output_item.done","sequence_number":4,"output_index":0,"item":{item}}}"#)),
            ("response.completed", &format!(r#"{{"type":"response.completed","sequence_number":5,"response":{}}}"#, response("completed", item, done))),
        ]);
        check(&body, usage(Some(37), Some(11), Some(48)));
    }

    #[test]
    fn anthropic_messages_stream() {
        let body = sse(&[
            ("message_start", r#"{"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-20250514","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
            ("ping", r#"{"type": "ping"}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello \"usage\": {\"output_tokens\": 999}"}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"! \ud83d\ude00"}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
            ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ]);
        check(&body, usage(Some(25), Some(15), None));
    }

    #[test]
    fn embeddings_json() {
        let body = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[-0.006929283,-0.005336422,0.024047505,-0.01407396]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        check(body, usage(Some(8), None, Some(8)));
    }

    #[test]
    fn no_usage_or_only_in_strings() {
        for body in [
            r#"{"error":{"message":"Invalid 'messages': empty array.","type":"invalid_request_error","param":"messages","code":"empty_array"}}"#,
            r#"{"choices":[{"message":{"role":"assistant","content":"Reply with \"usage\": {\"total_tokens\": 999}"}}],"type":"usage"}"#,
            r#"{"choices":[{"message":{"content":"\\\"usage\": {\"total_tokens\": 999}"}}]}"#,
            r#"{"usage":null,"x":{"usage":7},"y":["usage",{"prompt_tokens":5}],"z":{"usage":"{\"total_tokens\":999}"},"usages":{"total_tokens":4}}"#,
            r#"{"usage":{"prompt_tokens":-1,"completion_tokens":2.5,"total_tokens":"3"}}"#,
            r#"{"usage":{"total_tokens":5"#,
            r#""usage":{"total_tokens":999}"#,
            "data: [DONE]\n\n",
            "",
        ] {
            check(body, Usage::default());
        }
    }

    #[test]
    fn escapes_and_odd_spacing() {
        // `\\` ends before the closing quote; `\u0022` is a quote inside the string.
        check("{\"a\":\"C:\\\\\",\"usage\" :\t{\"total_tokens\":5}}", usage(None, None, Some(5)));
        check(r#"{"a":"\u0022,\"usage\":{\"total_tokens\":9}","b":{"usage"  :  {"input_tokens":2}}}"#, usage(Some(2), None, None));
        check("{\"usage\"\r\n:\r\n{\"total_tokens\":6}}", usage(None, None, Some(6)));
    }

    #[test]
    fn a_stray_quote_in_framing_is_forgotten_at_the_line_end() {
        let body = "event: \"odd\n: comment \"\ndata: {\"usage\":{\"total_tokens\":3}}\n\n";
        check(body, usage(None, None, Some(3)));
    }

    #[test]
    fn usage_larger_than_the_limit_is_skipped() {
        let object = |pad: usize| format!(r#"{{"total_tokens":999,"prompt_tokens":7,"pad":"{}"}}"#, "x".repeat(pad));
        let overhead = object(0).len();
        let (fits, over) = (object(MAX_USAGE - overhead), object(MAX_USAGE - overhead + 1));
        assert_eq!(scan([format!(r#"{{"usage":{fits}}}"#).as_bytes()]), usage(Some(7), None, Some(999)), "exactly the limit");
        let body = sse(&[("", &format!(r#"{{"usage":{over}}}"#)), ("", r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#)]);
        check(&body, usage(Some(3), Some(1), None));
    }

    #[test]
    fn later_fields_override_and_a_nested_usage_is_part_of_its_own() {
        let body = "{\"usage\":{\"prompt_tokens\":1,\"total_tokens\":2,\"usage\":{\"total_tokens\":99}}}\n{\"usage\":{\"total_tokens\":4}}";
        check(body, usage(Some(1), None, Some(4)));
    }

    #[test]
    fn tokens_of_each_kind() {
        let kinds = |u: Usage| [TokenKind::Total, TokenKind::Input, TokenKind::Output].map(|k| u.tokens(k));
        assert_eq!(kinds(usage(Some(19), Some(10), Some(30))), [30, 19, 10], "total as given");
        assert_eq!(kinds(usage(Some(25), Some(15), None)), [40, 25, 15], "Anthropic: input + output");
        assert_eq!(kinds(usage(Some(8), None, Some(8))), [8, 8, 0], "embeddings");
        assert_eq!(kinds(Usage::default()), [0, 0, 0]);
        assert_eq!(usage(Some(u64::MAX), Some(1), None).tokens(TokenKind::Total), u64::MAX, "saturates");
    }
}
