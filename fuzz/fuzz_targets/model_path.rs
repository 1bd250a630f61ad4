//! `model::from_path`: never panics; a model is only found under the routes that carry one,
//! is never empty, and any percent-encoded name in those routes comes back exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_jwt_auth::authz::model::from_path;
use llm_jwt_auth_fuzz::percent_encode_all;

const PREFIXES: [&str; 6] =
    ["/openai/deployments/", "/engines/", "/v1/engines/", "/v1beta/models/", "/v1/models/", "/models/"];

fuzz_target!(|data: &[u8]| {
    if let Ok(route) = std::str::from_utf8(data) {
        if let Some(model) = from_path(route) {
            assert!(!model.is_empty());
            assert!(PREFIXES.iter().any(|p| route.starts_with(p)), "model {model:?} from {route:?}");
            if !route.contains('%') {
                assert!(route.contains(model.as_str()), "model {model:?} is not in {route:?}");
            }
        }
    }
    if let Ok(name) = std::str::from_utf8(data) {
        if !name.is_empty() {
            let enc = percent_encode_all(data);
            for route in [
                format!("/openai/deployments/{enc}/chat/completions"),
                format!("/engines/{enc}/completions"),
                format!("/v1beta/models/{enc}:generateContent"),
                format!("/models/{enc}:streamGenerateContent"),
            ] {
                assert_eq!(from_path(&route).as_deref(), Some(name), "{route}");
            }
        }
    }
});
