//! `limits::usage::UsageScanner` over arbitrary answer bodies: never panics, and where the chunks
//! split never changes what it reads (the first byte picks the split point, the rest is the
//! body). Where the body is one JSON object with a single literal `"usage"`, a member of the top
//! level, the result is what a full parse of that member gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_jwt_auth::limits::usage::{TokenKind, Usage, UsageScanner};
use serde_json::Value;

fn scan<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Usage {
    let mut s = UsageScanner::default();
    chunks.into_iter().for_each(|c| s.feed(c));
    s.usage()
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// The usage a full parse sees, when the scanner must see exactly it: no `\u` escape could spell
/// `usage` another way, and the one literal `"usage"` is the top-level member.
fn oracle(body: &[u8]) -> Option<Usage> {
    if body.len() > 8 * 1024 || count(body, b"\"usage\"") != 1 || count(body, b"\\u") != 0 {
        return None;
    }
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else { return None };
    let usage = top.get("usage")?;
    let field = |names: &[&str]| names.iter().find_map(|n| usage.get(*n).and_then(Value::as_u64));
    Some(match usage {
        Value::Object(_) => Usage {
            input: field(&["prompt_tokens", "input_tokens"]),
            output: field(&["completion_tokens", "output_tokens"]),
            total: field(&["total_tokens"]),
        },
        _ => Usage::default(),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let whole = scan([body]);
    let at = body.len() * usize::from(pick) / 255;
    let (head, tail) = body.split_at(at);
    assert_eq!(scan([head, tail]), whole, "split at {at}");
    assert_eq!(scan(body.chunks(1 + usize::from(pick % 16))), whole, "in chunks of {}", 1 + pick % 16);
    if count(body, b"usage") == 0 {
        assert_eq!(whole, Usage::default(), "no usage member, yet {whole:?}");
    }
    if let Some(want) = oracle(body) {
        assert_eq!(whole, want, "full parse");
    }
    let total = whole.tokens(TokenKind::Total);
    assert!(whole.total.is_some() || total >= whole.tokens(TokenKind::Input).max(whole.tokens(TokenKind::Output)));
});
