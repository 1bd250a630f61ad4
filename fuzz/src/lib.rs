//! Shared pieces of the fuzz targets: the PyJWT-minted fixtures and the "structured" input
//! forms that let libFuzzer mutate the JSON inside a token instead of its base64 text.

use base64::Engine;
use llm_jwt_auth::authn::jws::B64URL;
use serde_json::Value;

/// tests/fixtures/unit_vectors.json (keys and tokens minted by PyJWT/cryptography).
pub fn vectors() -> Value {
    serde_json::from_str(include_str!("../../tests/fixtures/unit_vectors.json"))
        .expect("unit_vectors.json is JSON")
}

/// A token given as its decoded parts: `header JSON \n payload JSON \n signature bytes`.
pub struct Structured<'a> {
    pub header: &'a [u8],
    pub payload: &'a [u8],
    pub signature: &'a [u8],
}

impl<'a> Structured<'a> {
    /// Inputs starting with `{` are read this way; anything else is a raw compact token.
    pub fn split(data: &'a [u8]) -> Option<Self> {
        if data.first() != Some(&b'{') {
            return None;
        }
        let mut parts = data.splitn(3, |&b| b == b'\n');
        Some(Self {
            header: parts.next()?,
            payload: parts.next().unwrap_or_default(),
            signature: parts.next().unwrap_or_default(),
        })
    }

    pub fn compact(&self) -> String {
        format!(
            "{}.{}.{}",
            B64URL.encode(self.header),
            B64URL.encode(self.payload),
            B64URL.encode(self.signature)
        )
    }
}

/// Every byte as `%XX`: decodes back to exactly `bytes` and contains no `/` or `:`.
pub fn percent_encode_all(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}
