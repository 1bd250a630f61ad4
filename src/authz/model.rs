//! The model a request asks for: the JSON body's top-level `model`, a `model` field of a
//! `multipart/form-data` upload (audio transcriptions), or the path of routes that carry it
//! (`/openai/deployments/{model}/…`, `/engines/{model}/…`, Gemini's `/v1beta/models/{model}:…`).
//! The body is read without building a JSON tree and is never modified.

use serde::de::IgnoredAny;
use serde::Deserialize;

/// Why a body that had to be inspected could not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not valid JSON, or `model` has the wrong type; the text says which.
    Invalid(String),
}

#[derive(Deserialize)]
struct ModelOnly<'a> {
    #[serde(borrow, default)]
    model: Option<ModelValue<'a>>,
    // Every other member is skipped by serde without being materialised; a repeated
    // `model` is serde's "duplicate field" error.
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ModelValue<'a> {
    Str(std::borrow::Cow<'a, str>),
    Null(()),
    Other(IgnoredAny),
}

/// `model` from a JSON request body; `Ok(None)` when absent, null, or the body is empty.
pub fn from_json(body: &[u8]) -> Result<Option<String>, BodyError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Ok(None),
        // serde would read `["x"]` as a struct by position: only objects name a model.
        Some(b'{') => {}
        Some(_) => return Err(BodyError::Invalid("request body is not a JSON object".into())),
    }
    let parsed: ModelOnly = serde_json::from_slice(body)
        .map_err(|e| BodyError::Invalid(format!("request body is not a valid JSON object: {e}")))?;
    match parsed.model {
        None | Some(ModelValue::Null(())) => Ok(None),
        Some(ModelValue::Str(s)) => Ok(Some(s.into_owned())),
        Some(ModelValue::Other(_)) => Err(BodyError::Invalid("\"model\" must be a string".into())),
    }
}

/// The boundary of a `multipart/form-data` content type, if that is what it is.
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// The `model` form field of a multipart body (RFC 7578).
pub fn from_multipart(body: &[u8], boundary: &str) -> Result<Option<String>, BodyError> {
    let delimiter = format!("--{boundary}");
    let mut pos = find(body, delimiter.as_bytes(), 0)
        .ok_or_else(|| BodyError::Invalid("multipart body without its boundary".into()))?;
    loop {
        let part_start = pos + delimiter.len();
        if body.get(part_start..part_start + 2) == Some(b"--") {
            return Ok(None); // closing delimiter
        }
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), part_start)
            .ok_or_else(|| BodyError::Invalid("unterminated multipart body".into()))?;
        let part = body.get(part_start..next).unwrap_or_default();
        let Some(split) = find(part, b"\r\n\r\n", 0) else {
            return Err(BodyError::Invalid("multipart part without headers".into()));
        };
        let headers = String::from_utf8_lossy(part.get(..split).unwrap_or_default());
        let named_model = headers.lines().any(|line| {
            let lower = line.to_ascii_lowercase();
            lower.starts_with("content-disposition:")
                && lower.split(';').any(|p| matches!(p.trim(), "name=\"model\"" | "name=model"))
        });
        if named_model {
            let value = part.get(split + 4..).unwrap_or_default();
            let value = std::str::from_utf8(value)
                .map_err(|_| BodyError::Invalid("multipart \"model\" is not UTF-8".into()))?;
            return Ok(Some(value.to_string()));
        }
        pos = next + 2;
    }
}

/// `%XX` escapes decoded (anything else as it is; invalid UTF-8 replaced): a path segment as
/// LiteLLM's router sees it. Also `llm-jwt-auth explain`'s reading of record ids in URLs.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Longest model name the routing header carries (LiteLLM's longest names, Bedrock ARNs and
/// `provider/org/model` paths, are well under it).
pub const MAX_ROUTING_VALUE_BYTES: usize = 1024;

/// The requested model as the routing header (`model_routing`) carries it, or `None` when it
/// cannot be a header value that routes exactly the model asked for: empty, longer than
/// [`MAX_ROUTING_VALUE_BYTES`], with control characters (CR, LF, NUL: header injection) or with
/// whitespace around it (dropped from header values, so it would route another model's name).
pub fn routing_value(model: &str) -> Option<&str> {
    let fits = !model.is_empty() && model.len() <= MAX_ROUTING_VALUE_BYTES;
    let clean = !model.chars().any(char::is_control) && model.trim() == model;
    (fits && clean).then_some(model)
}

/// The model named by the path of routes that carry one.
pub fn from_path(route: &str) -> Option<String> {
    for prefix in ["/openai/deployments/", "/engines/", "/v1/engines/"] {
        if let Some(rest) = route.strip_prefix(prefix) {
            let (model, tail) = rest.split_once('/')?;
            return (!model.is_empty() && !tail.is_empty()).then(|| percent_decode(model));
        }
    }
    for prefix in ["/v1beta/models/", "/v1/models/", "/models/"] {
        if let Some(rest) = route.strip_prefix(prefix) {
            // Gemini: `/v1beta/models/{model:path}:generateContent`; the method follows the last ':'.
            let (model, _method) = rest.rsplit_once(':')?;
            return (!model.is_empty()).then(|| percent_decode(model));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_model_is_read_and_everything_else_skipped() {
        let body = br#"{"messages":[{"role":"user","content":"hi \"model\": x"}],"model":"gpt-4o","stream":true}"#;
        assert_eq!(from_json(body), Ok(Some("gpt-4o".into())));
        assert_eq!(from_json(br#"{"model":"a\u00e9"}"#), Ok(Some("aé".into())));
        assert_eq!(from_json(br#"{"input":"x"}"#), Ok(None));
        assert_eq!(from_json(br#"{"model":null}"#), Ok(None));
        assert_eq!(from_json(b"  "), Ok(None));
    }

    #[test]
    fn nested_model_members_are_not_the_model() {
        assert_eq!(from_json(br#"{"metadata":{"model":"evil"}}"#), Ok(None));
    }

    #[test]
    fn invalid_json_duplicates_and_wrong_types_are_errors() {
        assert!(from_json(b"{not json").is_err());
        assert!(from_json(b"[1,2]").is_err());
        assert!(from_json(br#"["o1"]"#).is_err(), "an array is not a positional struct");
        assert!(from_json(br#"{"model":"a"} trailing"#).is_err());
        assert!(from_json(br#"{"model":5}"#).is_err());
        assert!(from_json(br#"{"model":"a","model":"b"}"#).is_err(), "duplicate model must not pick one");
    }

    #[test]
    fn multipart_model_field() {
        let ct = "multipart/form-data; boundary=----X1";
        let b = multipart_boundary(ct).unwrap();
        assert_eq!(b, "----X1");
        let body = b"------X1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF..model..\r\n------X1\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n------X1--\r\n";
        assert_eq!(from_multipart(body, &b), Ok(Some("whisper-1".into())));
        let no_model = b"------X1\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n------X1--\r\n";
        assert_eq!(from_multipart(no_model, &b), Ok(None));
        assert!(from_multipart(b"garbage", &b).is_err());
        assert_eq!(multipart_boundary("application/json"), None);
        assert_eq!(multipart_boundary("multipart/form-data; boundary=\"q q\"").as_deref(), Some("q q"));
    }

    #[test]
    fn routing_values_are_exactly_the_model_or_nothing() {
        assert_eq!(routing_value("gpt-4o"), Some("gpt-4o"));
        assert_eq!(routing_value("bedrock/anthropic.claude-3 é"), Some("bedrock/anthropic.claude-3 é"));
        for bad in ["", " gpt-4o", "gpt-4o ", "gpt\r\nx-litellm-user-role: proxy_admin", "a\u{0}b", "a\tb"] {
            assert_eq!(routing_value(bad), None, "{bad:?}");
        }
        assert_eq!(routing_value(&"m".repeat(MAX_ROUTING_VALUE_BYTES)).map(str::len), Some(MAX_ROUTING_VALUE_BYTES));
        assert_eq!(routing_value(&"m".repeat(MAX_ROUTING_VALUE_BYTES + 1)), None);
    }

    #[test]
    fn path_models() {
        assert_eq!(from_path("/openai/deployments/gpt-4o/chat/completions").as_deref(), Some("gpt-4o"));
        assert_eq!(from_path("/engines/text-davinci/completions").as_deref(), Some("text-davinci"));
        assert_eq!(from_path("/v1beta/models/gemini-1.5-pro:generateContent").as_deref(), Some("gemini-1.5-pro"));
        assert_eq!(from_path("/v1beta/models/tunedModels%2Fmine:streamGenerateContent").as_deref(), Some("tunedModels/mine"));
        assert_eq!(from_path("/v1/models"), None);
        assert_eq!(from_path("/v1/chat/completions"), None);
        assert_eq!(from_path("/openai/deployments/x"), None);
    }
}
