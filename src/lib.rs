//! llm-jwt-auth: LiteLLM's JWT authentication and authorization as an Envoy proxy-wasm filter.
//!
//! The request flows through the modules in this order:
//! [`extract`] (where the token comes from) → [`jws`] (strict compact parsing) →
//! [`keys`] (JWK / JWKS / PEM, `parse_keys` selection) → [`verify`] (signature, host or guest
//! crypto) → [`claims`] (time, audience, issuer) → [`authn`] (the whole decision, pure) →
//! [`identity`] (what is forwarded upstream) or [`error`] (LiteLLM's JSON error shape).
//!
//! [`config`] compiles the plugin configuration once; [`jwks_cache`] is the shared-data record
//! format and fetch coordination. Everything above is plain Rust, unit-tested natively.
//! [`shell`] is the thin proxy-wasm layer that wires it to Envoy.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod authn;
pub mod authz;
pub mod config;
pub mod error;
pub mod pytext;
pub mod records;
pub mod routes;
pub mod shell;
pub mod store;

#[cfg(test)]
pub(crate) mod testkeys;
