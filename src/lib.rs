//! llm-jwt-auth: LiteLLM's JWT authentication and authorization as an Envoy proxy-wasm filter.
//!
//! The modules, in the order a request meets them:
//!
//! - [`shell`]: the only code that talks to Envoy — [`shell::root`] (one per worker: config,
//!   ticks, fetch answers) and [`shell::http`] (one per request) adapt Envoy's callbacks to
//!   [`shell::request`]: [`shell::admission`] (headers: spoofed identity, public routes, route
//!   rules, the credential) → verify and authorize through [`shell::worker`] (waiting in a
//!   [`shell::flow`] phase for keys, body or records) → [`shell::reply`]. Every host call goes
//!   through [`shell::host::Host`], so all of it unit-tests natively against a scripted host.
//! - [`authn`]: is the token good — [`authn::extract`] (where it is) → [`authn::jws`] (strict
//!   compact parsing, [`authn::strict_json`]) → [`authn::trust`] (which issuer's rules) →
//!   [`authn::keys`] (JWK, JWKS, PEM) → [`authn::verify`] (signature: host or guest crypto) →
//!   [`authn::claims`] (exp, nbf, iat, aud, iss).
//! - [`authz`]: may it do this — LiteLLM's rules in LiteLLM's order (see its module map),
//!   with [`routes`] (LiteLLM's route groups, generated) and [`records`] (teams, users, orgs,
//!   end users as LiteLLM stores them).
//! - [`limits`]: after admission, LiteLLM's rate limits (counted in [`store::limits`]), and the
//!   tokens read from the answer; [`authz::model_list`] filters a model list to the caller's.
//! - [`error`]: denials as LiteLLM's JSON errors; [`pytext`] prints values as Python does.
//! - [`store`]: what workers share through Envoy's shared data — key sets
//!   ([`store::jwks`], [`store::discovery`]), records ([`store::records`]), rate-limit
//!   counters ([`store::limits`]), one fetch lease
//!   type — and the per-worker verified-token cache ([`store::token_cache`]).
//! - [`fetch`]: the outgoing calls (key sets, discovery, records, write-through) and what their
//!   answers mean, pure.
//! - [`config`]: the plugin configuration (LiteLLM's `general_settings` included), compiled
//!   once at load; a mistake is refused there, naming the field.
//!
//! Everything but [`shell`] is plain Rust with no host calls.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

/// The crate's version (`Cargo.toml`), logged when the filter starts.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit it was built from (`build.rs`): `abc123def456`, `…-dirty`, or `unknown`.
pub const COMMIT: &str = env!("LLM_JWT_AUTH_COMMIT");

pub mod authn;
pub mod authz;
pub mod config;
pub mod error;
#[cfg(feature = "cli")]
pub mod explain;
pub mod fetch;
pub mod limits;
pub mod pytext;
pub mod records;
pub mod routes;
pub mod shell;
pub mod store;

#[cfg(test)]
pub(crate) mod testkeys;
