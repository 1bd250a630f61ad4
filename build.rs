//! Stamps the commit the filter is built from into it (`LLM_JWT_AUTH_COMMIT`), so that the
//! start-up log line says which build runs. `make build` passes the commit; a plain `cargo
//! build` asks git; outside a checkout it is `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LLM_JWT_AUTH_COMMIT");
    let commit = std::env::var("LLM_JWT_AUTH_COMMIT").ok().filter(|c| !c.is_empty()).or_else(git_commit);
    println!("cargo:rustc-env=LLM_JWT_AUTH_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}

fn git_commit() -> Option<String> {
    let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if !out.status.success() || commit.is_empty() {
        return None;
    }
    let dirty = Command::new("git").args(["status", "--porcelain", "--untracked-files=no"]).output().ok()?;
    Some(if dirty.stdout.is_empty() { commit } else { format!("{commit}-dirty") })
}
