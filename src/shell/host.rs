//! Host services behind the core's traits.

use crate::shell::host_verify_proto::{decode_result, encode_arguments};
use crate::store::SharedData;
use crate::authn::verify::{HashFn, HostCrypto};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, Status};
use std::cell::Cell;
use std::time::{Duration, UNIX_EPOCH};

/// Envoy's shared data (process-wide per `vm_id`).
pub struct HostShared;

impl SharedData for HostShared {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|_| ())
    }
}

/// Envoy's `verify_signature` foreign function (1.30+). Remembers when the host lacks it.
pub struct HostVerifier {
    available: Cell<bool>,
    announced: Cell<bool>,
}

impl Default for HostVerifier {
    fn default() -> Self {
        Self { available: Cell::new(true), announced: Cell::new(false) }
    }
}

impl HostVerifier {
    /// Say once per worker which crypto is in use: operators (and the tests) can check it.
    fn announce(&self) {
        if !self.announced.replace(true) {
            super::log(LogLevel::Info, "RS*/ES* signatures verified by the host's verify_signature");
        }
    }
}

impl HostCrypto for HostVerifier {
    fn verify(&self, hash: HashFn, spki_der: &[u8], signature: &[u8], message: &[u8]) -> Option<bool> {
        if !self.available.get() {
            return None;
        }
        let args = encode_arguments(hash.host_name(), spki_der, signature, message);
        match hostcalls::call_foreign_function("verify_signature", Some(&args)) {
            // proto3 leaves `result=false, error=""` empty on the wire: an empty answer is "invalid".
            Ok(None) => {
                self.announce();
                Some(false)
            }
            Ok(Some(bytes)) => {
                self.announce();
                decode_result(&bytes).map(|(valid, _)| valid)
            }
            Err(Status::NotFound) => {
                self.available.set(false);
                super::log(LogLevel::Info, "host has no verify_signature; verifying in the guest");
                None
            }
            Err(status) => {
                super::log(LogLevel::Debug, &format!("verify_signature refused ({status:?}); verifying in the guest"));
                None
            }
        }
    }
}

/// Microseconds since the epoch, from the host's clock (for latency figures).
pub fn now_micros() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or(Duration::ZERO)
        .as_micros() as u64
}

/// Milliseconds since the epoch, from the host's clock.
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}
