//! `strict_json::parse` is serde_json minus duplicate members: same values where both accept,
//! a rejection of what serde_json accepts only for a duplicate, and a lossless round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_jwt_auth::authn::strict_json;
use serde_json::Value;

/// Equal values, except that a float may move by a few ULPs: serde_json (without its
/// `float_roundtrip` feature) parses long decimals with its fast, not correctly rounded, path.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            x == y || (x - y).abs() <= x.abs().max(y.abs()) * 1e-15
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let strict = strict_json::parse(data);
    let lax = serde_json::from_slice::<Value>(data);
    match (&strict, &lax) {
        (Ok(s), Ok(l)) => {
            assert_eq!(s, l);
            let text = serde_json::to_vec(s).expect("a parsed value serialises");
            let again = strict_json::parse(&text).expect("serialised value parses");
            assert!(same(s, &again), "round trip changed {s:?} into {again:?}");
        }
        (Ok(s), Err(e)) => panic!("strict accepted {s:?} that serde_json refuses: {e}"),
        (Err(e), Ok(_)) => assert!(e.to_string().contains("duplicate member"), "strict refused with: {e}"),
        (Err(_), Err(_)) => {}
    }
});
