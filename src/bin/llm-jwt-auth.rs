//! `llm-jwt-auth`: the filter's decisions without Envoy (see `llm_jwt_auth::explain`).
//!
//! ```text
//! llm-jwt-auth explain --config envoy.yaml --token "$TOKEN" --jwks jwks.json --path /v1/chat/completions --model gpt-4o
//! llm-jwt-auth explain --config plugin.json --unsigned --claims '{"sub": "alice", "scope": "llm"}'
//! llm-jwt-auth explain check --config envoy.yaml
//! ```

use base64::Engine;
use clap::{Args, Parser, Subcommand};
use llm_jwt_auth::explain::envoy_config::{plugin_configs, PluginConfig};
use llm_jwt_auth::explain::{check, explain, Explanation, Question, Sources};
use llm_jwt_auth::fetch::{Answer, Call};
use p256::ecdsa::signature::Signer;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(name = "llm-jwt-auth", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("LLM_JWT_AUTH_COMMIT"), ")"))]
#[command(about = "LiteLLM's JWT rules at the edge: what the filter decides, without Envoy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What the filter would answer to one request: the decision, the stage that made it,
    /// the identity sent upstream or the exact reply.
    Explain(ExplainArgs),
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ExplainArgs {
    #[command(subcommand)]
    check: Option<CheckCommand>,
    #[command(flatten)]
    config: ConfigArgs,
    /// The token (`-` reads it from stdin).
    #[arg(long, conflicts_with = "claims")]
    token: Option<String>,
    /// Claims (JSON) for a dry run, signed here as if by one of the configured keys.
    #[arg(long, requires = "unsigned")]
    claims: Option<String>,
    /// With --claims: skip the signature (a dry run of the rules).
    #[arg(long)]
    unsigned: bool,
    /// A key set (JWKS JSON file) answering every key URL of the configuration.
    #[arg(long, conflicts_with = "fetch")]
    jwks: Option<String>,
    /// Fetch the configured key URLs (and OIDC discovery documents) for real.
    #[arg(long)]
    fetch: bool,
    /// Records standing in for the record source: {"teams": [...], "users": [...],
    /// "organizations": [...], "end_users": [...]} in LiteLLM's field names.
    #[arg(long)]
    records: Option<String>,
    #[arg(long, default_value = "/v1/chat/completions")]
    path: String,
    /// Defaults to POST with a body, else GET.
    #[arg(long)]
    method: Option<String>,
    #[arg(long, default_value = "localhost:10000")]
    host: String,
    #[arg(long, default_value = "http")]
    scheme: String,
    /// Further request headers, `name: value` (e.g. a `dpop` proof).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// The request body (a file; JSON or multipart, with --header content-type).
    #[arg(long, conflicts_with = "model")]
    body: Option<String>,
    /// Shorthand for a JSON body {"model": MODEL}.
    #[arg(long)]
    model: Option<String>,
    /// The time to decide at (seconds since the epoch); now by default.
    #[arg(long)]
    at: Option<u64>,
    /// Print the explanation as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum CheckCommand {
    /// Validate the configuration with the messages Envoy's load would log.
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// A plugin configuration (JSON or YAML), or an Envoy configuration to take it from.
    #[arg(long = "config", id = "check_config")]
    config: String,
    /// Only the Wasm filter of this listener.
    #[arg(long = "listener", id = "check_listener")]
    listener: Option<String>,
}

#[derive(Args)]
struct ConfigArgs {
    /// A plugin configuration (JSON or YAML), or an Envoy configuration to take it from
    /// (required).
    #[arg(long)]
    config: Option<String>,
    /// Which Wasm filter, by listener name, when the Envoy configuration has several.
    #[arg(long)]
    listener: Option<String>,
}

fn main() -> ExitCode {
    let Command::Explain(args) = Cli::parse().command;
    match run(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("llm-jwt-auth: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: ExplainArgs) -> Result<ExitCode, String> {
    if let Some(CheckCommand::Check(check_args)) = &args.check {
        let config = ConfigArgs { config: Some(check_args.config.clone()), listener: check_args.listener.clone() };
        let mut failed = false;
        for plugin in chosen(&config)? {
            let env = |k: &str| plugin.env.get(k).cloned().or_else(|| std::env::var(k).ok());
            match check(&plugin.json, &env) {
                Ok(()) => println!("{}: ok", label(&plugin)),
                Err(e) => {
                    failed = true;
                    println!("{}: {e}", label(&plugin));
                }
            }
        }
        return Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS });
    }
    let [plugin] = chosen(&args.config)?.try_into().map_err(|all: Vec<PluginConfig>| {
        let names: Vec<String> = all.iter().map(label).collect();
        format!("the configuration has several Wasm filters, choose one with --listener: {}", names.join(", "))
    })?;
    let (mut config_json, mut sources) = (plugin.json.clone(), Files::new(&args)?);
    let token = match (&args.token, &args.claims) {
        (Some(t), _) if t == "-" => read_stdin()?,
        (Some(t), _) => t.clone(),
        (None, Some(claims)) => {
            let claims: Value = serde_json::from_str(claims).map_err(|e| format!("--claims: not JSON: {e}"))?;
            let dry = DryRun::new()?;
            config_json = dry.trusted_by(&config_json)?;
            sources.jwks = Some(dry.jwks());
            dry.sign(&claims)
        }
        (None, None) => String::new(),
    };
    let question = question(&args, &token)?;
    let env = |k: &str| plugin.env.get(k).cloned().or_else(|| std::env::var(k).ok());
    let explanation = explain(&config_json, &question, &sources, &env)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&explanation.to_json()).unwrap_or_default());
    } else {
        print_human(&explanation);
    }
    Ok(match explanation.decision {
        "allow" | "report" => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn chosen(config: &ConfigArgs) -> Result<Vec<PluginConfig>, String> {
    let path = config.config.as_deref().ok_or("--config is required: a plugin configuration or an Envoy configuration")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("--config {path}: {e}"))?;
    let all = plugin_configs(&text).map_err(|e| format!("--config {path}: {e}"))?;
    match &config.listener {
        None => Ok(all),
        Some(name) => {
            let picked: Vec<PluginConfig> = all.iter().filter(|p| p.listener.as_deref() == Some(name)).cloned().collect();
            if picked.is_empty() {
                let names: Vec<String> = all.iter().map(label).collect();
                return Err(format!("no Wasm filter in listener {name:?}; there are: {}", names.join(", ")));
            }
            Ok(picked)
        }
    }
}

fn label(p: &PluginConfig) -> String {
    match &p.listener {
        Some(l) => format!("listener {l} ({})", p.name),
        None => p.name.clone(),
    }
}

fn question(args: &ExplainArgs, token: &str) -> Result<Question, String> {
    let mut headers = Vec::new();
    if !token.is_empty() {
        headers.push(("authorization".to_string(), format!("Bearer {token}")));
    }
    for h in &args.headers {
        let (name, value) = h.split_once(':').ok_or_else(|| format!("--header {h:?}: expected `name: value`"))?;
        let name = name.trim().to_ascii_lowercase();
        if name == "authorization" {
            headers.retain(|(n, _)| n != "authorization");
        }
        headers.push((name, value.trim().to_string()));
    }
    let body = match (&args.body, &args.model) {
        (Some(file), _) => Some(std::fs::read(file).map_err(|e| format!("--body {file}: {e}"))?),
        (None, Some(model)) => Some(json!({"model": model}).to_string().into_bytes()),
        (None, None) => None,
    };
    if body.is_some() && !headers.iter().any(|(n, _)| n == "content-type") {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    Ok(Question {
        method: args.method.clone().unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into()),
        path: args.path.clone(),
        authority: args.host.clone(),
        scheme: args.scheme.clone(),
        headers,
        body,
        now: args.at.unwrap_or(now),
    })
}

fn read_stdin() -> Result<String, String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| format!("stdin: {e}"))?;
    Ok(text.trim().to_string())
}

fn print_human(e: &Explanation) {
    println!("decision: {}", e.decision);
    if let Some(reason) = &e.reason {
        println!("reason:   {reason}");
    }
    println!("stage:    {}", e.stage);
    if !e.upstream.is_empty() {
        println!("upstream identity:");
        for (k, v) in &e.upstream {
            println!("  {k}: {v}");
        }
    }
    if let Some(reply) = &e.reply {
        println!("reply:    {}", reply["status"]);
        if let Some(headers) = reply["headers"].as_object() {
            for (k, v) in headers {
                println!("  {k}: {}", v.as_str().unwrap_or_default());
            }
        }
        println!("  {}", reply["body"]);
    }
    if !e.log.is_empty() {
        println!("log:");
        for line in &e.log {
            println!("  {line}");
        }
    }
}

/// Key sets and records from the operator's files, or fetched.
struct Files {
    jwks: Option<String>,
    fetch: bool,
    /// Record answers by kind and id, in the source's own shape.
    records: BTreeMap<(String, String), Value>,
}

impl Files {
    fn new(args: &ExplainArgs) -> Result<Self, String> {
        let jwks = match &args.jwks {
            Some(f) => Some(std::fs::read_to_string(f).map_err(|e| format!("--jwks {f}: {e}"))?),
            None => None,
        };
        let mut records = BTreeMap::new();
        if let Some(f) = &args.records {
            let text = std::fs::read_to_string(f).map_err(|e| format!("--records {f}: {e}"))?;
            let all: Value = serde_json::from_str(&text).map_err(|e| format!("--records {f}: not JSON: {e}"))?;
            for (kind, id_field) in [("teams", "team_id"), ("users", "user_id"), ("organizations", "organization_id"), ("end_users", "user_id")] {
                for record in all.get(kind).and_then(Value::as_array).into_iter().flatten() {
                    let id = record.get(id_field).and_then(Value::as_str).ok_or_else(|| format!("--records {f}: a {kind} entry without {id_field}"))?;
                    records.insert((kind.to_string(), id.to_string()), record.clone());
                }
            }
        }
        Ok(Files { jwks, fetch: args.fetch, records })
    }
}

impl Sources for Files {
    fn key_url(&self, url: &str) -> Option<Answer> {
        if let Some(jwks) = &self.jwks {
            // A discovery document names the key set this file stands in for.
            let body = match url.ends_with("/.well-known/openid-configuration") {
                true => json!({"jwks_uri": url.replace("/.well-known/openid-configuration", "/.well-known/explain-jwks.json")}).to_string(),
                false => jwks.clone(),
            };
            return Some(Answer::Response { status: "200".into(), body: Some(body.into_bytes()) });
        }
        if !self.fetch {
            return None;
        }
        match ureq::get(url).call() {
            Ok(mut response) => {
                let status = response.status().as_u16().to_string();
                let body = response.body_mut().read_to_vec().ok();
                Some(Answer::Response { status, body })
            }
            Err(ureq::Error::StatusCode(code)) => Some(Answer::Response { status: code.to_string(), body: Some(Vec::new()) }),
            Err(_) => None,
        }
    }

    fn record(&self, call: &Call) -> Option<Answer> {
        // The filter asks LiteLLM (`/team/info?team_id=…`) or a plain source (`…/{id}`): find the
        // record by the id at the end of the path, of the kind the path names.
        let id = call.path.rsplit(['=', '/']).next()?;
        let id = llm_jwt_auth::authz::model::percent_decode(id);
        let kind = ["team", "user", "organization", "customer", "end_user"].into_iter().find(|k| call.path.contains(k))?;
        let key = match kind {
            "team" => "teams",
            "user" => "users",
            "organization" => "organizations",
            _ => "end_users",
        };
        let record = self.records.get(&(key.to_string(), id))?;
        // LiteLLM's /team/info wraps the team in team_info; the others answer the record.
        let body = match (kind, call.path.contains("/info?")) {
            ("team", true) => json!({"team_id": record["team_id"], "team_info": record}),
            ("user", true) => json!({"user_id": record["user_id"], "user_info": record}),
            _ => record.clone(),
        };
        Some(Answer::Response { status: "200".into(), body: Some(body.to_string().into_bytes()) })
    }
}

/// `--unsigned`: a throwaway P-256 key (fixed, so runs repeat) that signs the claims; every key
/// URL answers with it, and it joins the inline keys, so the dry run passes the signature
/// whatever keys the configuration names and then applies every other rule.
struct DryRun {
    key: p256::ecdsa::SigningKey,
}

const DRY_RUN_KID: &str = "llm-jwt-auth-explain-unsigned";

impl DryRun {
    fn new() -> Result<Self, String> {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).map_err(|e| format!("the dry-run key: {e}"))?;
        Ok(DryRun { key })
    }

    fn jwks(&self) -> String {
        let point = self.key.verifying_key().to_sec1_point(false);
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let (x, y) = (point.x().map(|x| b64(x)).unwrap_or_default(), point.y().map(|y| b64(y)).unwrap_or_default());
        json!({"keys": [{"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": DRY_RUN_KID, "alg": "ES256", "use": "sig"}]}).to_string()
    }

    fn sign(&self, claims: &Value) -> String {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let header = b64(json!({"alg": "ES256", "kid": DRY_RUN_KID, "typ": "JWT"}).to_string().as_bytes());
        let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let signature: p256::ecdsa::Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature.to_bytes()))
    }

    /// The plugin configuration with no inline keys but the dry-run key set behind every URL:
    /// without a key URL, one is added so the token's `kid` finds the key.
    fn trusted_by(&self, plugin_json: &str) -> Result<String, String> {
        let mut config: Value = serde_json::from_str(plugin_json).map_err(|e| format!("the plugin configuration is not JSON: {e}"))?;
        let has_urls = config.get("public_key_url").is_some() || config.get("issuers").is_some()
            || config.pointer("/general_settings/litellm_jwtauth/issuers").is_some();
        if let Some(obj) = config.as_object_mut() {
            obj.remove("public_keys");
            if !has_urls {
                obj.insert("public_key_url".into(), json!("https://explain.invalid/jwks"));
            }
        }
        Ok(config.to_string())
    }
}
