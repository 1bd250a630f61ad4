//! JWKS documents and LiteLLM's `parse_keys(keys, kid)` selection (spec §8.2).
//!
//! A document is `{"keys": [JWK, …]}`, or — accepted beyond LiteLLM — a bare single JWK
//! object. Anything else (HTML, an error object, `keys` not a list) is invalid and must not be
//! cached as a key set. Entries that are not usable keys stay in the set (they still take part
//! in `kid` selection, as in LiteLLM) and report why when selected.

use super::{jwk, PublicKey};
use crate::authn::strict_json;
use serde_json::Value;
use std::sync::Arc;

/// One member of a key set.
#[derive(Debug, Clone)]
pub struct JwkEntry {
    pub kid: Option<String>,
    pub key: Result<Arc<PublicKey>, String>,
}

/// A parsed key set.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// `None` for list members that are not JSON objects: they count toward the set's size
    /// (which changes `parse_keys`' rules) but never match.
    entries: Vec<Option<JwkEntry>>,
}

impl KeySet {
    /// Parse a JWKS HTTP response body.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let doc = strict_json::parse(body).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
        let Value::Object(mut doc) = doc else {
            return Err("JWKS is not a JSON object".into());
        };
        let members = match doc.remove("keys") {
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err("JWKS \"keys\" is not a list".into()),
            None if doc.contains_key("kty") => vec![Value::Object(doc)],
            None => return Err("JWKS has no \"keys\" list".into()),
        };
        let entries = members
            .iter()
            .map(|m| {
                m.as_object().map(|obj| JwkEntry {
                    kid: jwk::kid_of(obj),
                    key: jwk::parse(obj).map(Arc::new),
                })
            })
            .collect();
        Ok(Self { entries })
    }

    /// LiteLLM's `parse_keys`: a one-key set matches a token without `kid` or with the key's
    /// `kid`; a larger set needs the token's `kid` and the last entry with that `kid` wins.
    pub fn select(&self, kid: Option<&str>) -> Option<&JwkEntry> {
        match self.entries.as_slice() {
            [only] => only
                .as_ref()
                .filter(|e| kid.is_none() || e.kid.as_deref() == kid),
            many => {
                let kid = kid?;
                many.iter().rev().flatten().find(|e| e.kid.as_deref() == Some(kid))
            }
        }
    }

    /// The `kid`s in the set, for LiteLLM's "No matching public key found. keys=[…]" text.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().flatten().filter_map(|e| e.kid.as_deref())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys::vectors;
    use serde_json::json;

    fn set(v: Value) -> KeySet {
        KeySet::parse(v.to_string().as_bytes()).unwrap()
    }

    fn selected_kid(s: &KeySet, kid: Option<&str>) -> Option<Option<String>> {
        s.select(kid).map(|e| e.kid.clone())
    }

    #[test]
    fn single_key_set_matches_no_kid_or_equal_kid_only() {
        let v = vectors();
        let s = set(json!({"keys": [v["keys"]["rsa"]["jwk"]]}));
        assert_eq!(selected_kid(&s, None), Some(Some("rsa-1".into())));
        assert_eq!(selected_kid(&s, Some("rsa-1")), Some(Some("rsa-1".into())));
        assert_eq!(selected_kid(&s, Some("other")), None);
    }

    #[test]
    fn single_key_without_kid_never_matches_a_token_kid() {
        let mut k = vectors()["keys"]["rsa"]["jwk"].clone();
        k.as_object_mut().unwrap().remove("kid");
        let s = set(json!({"keys": [k]}));
        assert!(s.select(None).is_some());
        assert!(s.select(Some("rsa-1")).is_none());
    }

    #[test]
    fn multi_key_set_needs_kid_and_last_match_wins() {
        let v = vectors();
        let mut dup = v["keys"]["p256"]["jwk"].clone();
        dup["kid"] = json!("rsa-1");
        let s = set(json!({"keys": [v["keys"]["rsa"]["jwk"], v["keys"]["ed25519"]["jwk"], dup]}));
        assert!(s.select(None).is_none());
        let chosen = s.select(Some("rsa-1")).unwrap();
        assert_eq!(chosen.key.as_ref().unwrap().material.kind(), "EC P-256");
        assert!(s.select(Some("nope")).is_none());
        assert_eq!(s.kids().collect::<Vec<_>>(), ["rsa-1", "ed-1", "rsa-1"]);
    }

    #[test]
    fn bare_single_jwk_is_accepted_as_a_one_key_set() {
        let s = set(vectors()["keys"]["ed25519"]["jwk"].clone());
        assert_eq!(s.len(), 1);
        assert!(s.select(Some("ed-1")).is_some());
    }

    #[test]
    fn unusable_entries_are_selected_with_their_reason() {
        let s = set(json!({"keys": [{"kty": "oct", "kid": "h", "k": "AA"}, {"kty": "RSA", "kid": "x"}]}));
        let e = s.select(Some("h")).unwrap();
        assert!(e.key.as_ref().unwrap_err().contains("unsupported key type"));
    }

    #[test]
    fn non_object_members_count_but_never_match() {
        let v = vectors();
        let s = set(json!({"keys": ["junk", v["keys"]["rsa"]["jwk"]]}));
        assert!(s.select(None).is_none(), "two members: a kid is required");
        assert!(s.select(Some("rsa-1")).is_some());
    }

    #[test]
    fn invalid_documents_are_errors_not_empty_sets() {
        for body in [&b"<html>oops</html>"[..], b"[]", br#"{"error":"boom"}"#, br#"{"keys":{}}"#, b""] {
            assert!(KeySet::parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        assert!(KeySet::parse(br#"{"keys":[]}"#).unwrap().is_empty());
    }
}
