//! `model::multipart_boundary` + `model::from_multipart`: never panic; a found model is text of
//! the body; and a well-formed form built from the fuzzed boundary and value yields exactly it.
//! Input: `content-type \n boundary \n value \n filler` (the last three for the built form).
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_jwt_auth::authz::model::{from_multipart, multipart_boundary, BodyError};

fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return vec![];
    }
    haystack.windows(needle.len()).enumerate().filter(|(_, w)| w == &needle).map(|(i, _)| i).collect()
}

fuzz_target!(|data: &[u8]| {
    // As received: the first line is the Content-Type, the rest the body.
    let (ct, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (data.get(..i).unwrap_or_default(), data.get(i + 1..).unwrap_or_default()),
        None => (data, &b""[..]),
    };
    if let Ok(ct) = std::str::from_utf8(ct) {
        if let Some(boundary) = multipart_boundary(ct) {
            assert!(ct.to_ascii_lowercase().contains("boundary"));
            if let Ok(Some(model)) = from_multipart(body, &boundary) {
                assert!(occurrences(body, format!("--{boundary}").as_bytes()).len() >= 2);
                assert!(model.is_empty() || !occurrences(body, model.as_bytes()).is_empty());
            }
        }
    }
    built_form(body);
});

fn built_form(spec: &[u8]) {
    let mut fields = spec.splitn(3, |&b| b == b'\n');
    let (Some(boundary), Some(value)) = (fields.next(), fields.next()) else { return };
    let filler = fields.next().unwrap_or_default();
    let Ok(boundary) = std::str::from_utf8(boundary) else { return };
    let delimiter = format!("--{boundary}");
    let mut body = Vec::new();
    let mut at = Vec::new();
    at.push(body.len());
    body.extend_from_slice(delimiter.as_bytes());
    body.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n");
    body.extend_from_slice(b"Content-Type: audio/wav\r\n\r\n");
    body.extend_from_slice(filler);
    body.extend_from_slice(b"\r\n");
    at.push(body.len());
    body.extend_from_slice(format!("{delimiter}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n").as_bytes());
    body.extend_from_slice(value);
    body.extend_from_slice(b"\r\n");
    at.push(body.len());
    body.extend_from_slice(format!("{delimiter}--\r\n").as_bytes());
    // Only where the boundary occurs exactly where we put it is the form unambiguous.
    if occurrences(&body, delimiter.as_bytes()) != at {
        return;
    }
    let want = match std::str::from_utf8(value) {
        Ok(v) => Ok(Some(v.to_string())),
        Err(_) => Err(BodyError::Invalid("multipart \"model\" is not UTF-8".into())),
    };
    assert_eq!(from_multipart(&body, boundary), want);
    if !boundary.is_empty() && boundary.trim() == boundary && !boundary.contains(['"', ';']) {
        let ct = format!("multipart/form-data; boundary=\"{boundary}\"");
        assert_eq!(multipart_boundary(&ct).as_deref(), Some(boundary));
    }
}
