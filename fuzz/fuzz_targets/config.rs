//! `config::compile` (no VM environment): never panics, is deterministic, every refusal is a
//! clear "invalid plugin configuration" line, and an accepted configuration can verify
//! something and fetches only from well-formed places.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_jwt_auth::config::{compile, DEFAULT_MAX_BODY_BYTES};

fuzz_target!(|data: &[u8]| {
    let first = compile(data, &|_| None);
    let second = compile(data, &|_| None);
    match (&first, &second) {
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            assert!(a.starts_with("invalid plugin configuration"), "unclear refusal: {a}");
        }
        (Ok(_), Ok(_)) => {}
        _ => panic!("compile is not deterministic"),
    }
    let Ok(config) = first else { return };
    assert!(
        !config.jwks.is_empty() || !config.inline_keys.is_empty() || !config.issuers.is_empty(),
        "accepted a configuration without any key source"
    );
    for source in config.key_sources() {
        assert!(source.url.starts_with("http://") || source.url.starts_with("https://"), "{source:?}");
        assert!(!source.authority.is_empty() && !source.cluster.is_empty(), "{source:?}");
        assert!(!source.authority.contains(['@', ' ', '\r', '\n', '\t']), "{source:?}");
        // Findings F2/F3 (docs/fuzzing.md), fixed: a `:path` starts with `/`, and no URL
        // carries whitespace or control characters.
        assert!(source.path.starts_with('/') && !source.path.contains('#'), "{source:?}");
        assert!(!source.url.chars().any(|c| c.is_whitespace() || c.is_control()), "{source:?}");
    }
    assert!((1..=64 * 1024 * 1024).contains(&config.max_body_bytes) || config.max_body_bytes == DEFAULT_MAX_BODY_BYTES);
    assert!((1..=60_000).contains(&config.fetch_timeout_ms));
    assert!(config.claim_rules.leeway <= 86_400);
});
