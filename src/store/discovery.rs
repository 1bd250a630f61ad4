//! OIDC discovery: a key URL ending in `/.well-known/openid-configuration` names a discovery
//! document whose `jwks_uri` holds the keys (newest LiteLLM resolves such URLs the same way).
//!
//! The discovered `jwks_uri` is remembered in shared data, so a key refresh costs one fetch
//! (the key set) rather than two, and all workers agree on it:
//!
//! | key                              | value                       |
//! |----------------------------------|-----------------------------|
//! | `llm_jwt_auth/v1/oidc/<url>`     | `<expires_ms>\n<jwks_uri>`  |
//!
//! The key set itself is cached under the discovery URL (see [`crate::store::jwks`]), so
//! lookups do not depend on what the document said.

use crate::store::SharedData;
use serde_json::Value;

pub const KEY_PREFIX: &str = "llm_jwt_auth/v1/oidc/";

/// `jwks_uri` from a discovery document: an object whose `jwks_uri` is an http(s) URL.
pub fn jwks_uri(body: &[u8]) -> Result<String, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| "discovery document is not JSON".to_string())?;
    let uri = doc
        .as_object()
        .ok_or("discovery document is not a JSON object")?
        .get("jwks_uri")
        .ok_or("discovery document has no jwks_uri")?
        .as_str()
        .ok_or("discovery document's jwks_uri is not a string")?;
    if !(uri.starts_with("https://") || uri.starts_with("http://")) || uri.len() > 2048 {
        return Err("discovery document's jwks_uri is not an http(s) URL".to_string());
    }
    Ok(uri.to_string())
}

/// The remembered `jwks_uri` for a discovery URL, while it is fresh.
pub fn remembered(store: &dyn SharedData, url: &str, now_ms: u64) -> Option<String> {
    let value = store.get(&format!("{KEY_PREFIX}{url}")).0?;
    let text = String::from_utf8(value).ok()?;
    let (expires, uri) = text.split_once('\n')?;
    (now_ms < expires.parse::<u64>().ok()?).then(|| uri.to_string())
}

pub fn remember(store: &dyn SharedData, url: &str, jwks_uri: &str, expires_ms: u64) {
    let _ = store.set(&format!("{KEY_PREFIX}{url}"), format!("{expires_ms}\n{jwks_uri}").as_bytes(), None);
}

/// Drop the remembered `jwks_uri` (its keys could not be had): the next try reads the document.
pub fn forget(store: &dyn SharedData, url: &str) {
    remember(store, url, "", 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mock::MockShared;

    #[test]
    fn takes_jwks_uri_from_the_document() {
        let doc = br#"{"issuer": "https://idp", "jwks_uri": "https://idp/keys", "token_endpoint": "x"}"#;
        assert_eq!(jwks_uri(doc), Ok("https://idp/keys".to_string()));
    }

    #[test]
    fn refuses_documents_without_a_usable_jwks_uri() {
        for bad in [
            &b"<html>"[..],
            b"[]",
            b"{}",
            br#"{"jwks_uri": 5}"#,
            br#"{"jwks_uri": "file:///etc/passwd"}"#,
            br#"{"jwks_uri": "/relative"}"#,
        ] {
            assert!(jwks_uri(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn remembered_until_it_expires() {
        let store = MockShared::default();
        assert_eq!(remembered(&store, "https://idp/.well-known/openid-configuration", 0), None);
        remember(&store, "https://idp/.well-known/openid-configuration", "https://idp/keys", 100);
        assert_eq!(remembered(&store, "https://idp/.well-known/openid-configuration", 99).as_deref(), Some("https://idp/keys"));
        assert_eq!(remembered(&store, "https://idp/.well-known/openid-configuration", 100), None);
        remember(&store, "https://idp/.well-known/openid-configuration", "https://idp/keys", 1000);
        forget(&store, "https://idp/.well-known/openid-configuration");
        assert_eq!(remembered(&store, "https://idp/.well-known/openid-configuration", 101), None);
    }
}
