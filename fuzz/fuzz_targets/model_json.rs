//! `model::from_json` reads only the top-level `model` of a JSON object without building the
//! tree: never panics, and agrees with a full (duplicate-refusing) parse of the same body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_jwt_auth::authz::model::from_json;
use llm_jwt_auth::authn::strict_json;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let got = from_json(data);
    if data.iter().all(u8::is_ascii_whitespace) {
        assert_eq!(got, Ok(None));
        return;
    }
    // Where the whole body is valid JSON without duplicates, the answer is fully determined.
    match strict_json::parse(data) {
        Ok(Value::Object(body)) => {
            let want = match body.get("model") {
                None | Some(Value::Null) => Some(None),
                Some(Value::String(m)) => Some(Some(m.clone())),
                Some(_) => None,
            };
            assert_eq!(got.clone().ok(), want, "model of {body:?}");
        }
        Ok(other) => assert!(got.is_err(), "{other:?} is not an object but gave {got:?}"),
        Err(_) => {}
    }
    // Whatever it accepted, a last-wins parser sees the same model (a repeated `model` is refused).
    if let (Ok(model), Ok(Value::Object(body))) = (&got, serde_json::from_slice::<Value>(data)) {
        let seen = match body.get("model") {
            Some(Value::String(m)) => Some(m.clone()),
            _ => None,
        };
        assert_eq!(model, &seen);
    }
});
