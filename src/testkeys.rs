//! Test vectors minted by PyJWT/cryptography (`tools/gen_unit_fixtures.py`), never by this crate.

pub fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../tests/fixtures/unit_vectors.json")).unwrap()
}

pub fn now() -> u64 {
    vectors()["now"].as_u64().unwrap()
}

pub fn token(name: &str) -> String {
    vectors()["tokens"][name].as_str().unwrap().to_string()
}
