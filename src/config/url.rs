//! Key and record URLs: checked at load (scheme, `host[:port]`, no spaces, control characters,
//! user info or fragment) and turned into what `dispatch_http_call` needs — the Envoy cluster,
//! `:authority` and `:path`.

use super::fields::err;
use super::raw::OneOrMany;
use std::collections::BTreeMap;

/// One JWKS endpoint and the Envoy cluster `dispatch_http_call` reaches it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    pub url: String,
    pub cluster: String,
    /// `:authority` for the fetch: the URL's `host[:port]` as written.
    pub authority: String,
    /// `:path` for the fetch, with the query string.
    pub path: String,
    /// An OIDC discovery document (`…/.well-known/openid-configuration`): its `jwks_uri`
    /// is fetched for the keys.
    pub discovery: bool,
    /// Where the operator wrote the URL (`public_key_url`, `issuers[0].jwks_url`, …), for logs.
    pub field: String,
}

/// LiteLLM's `JWT_PUBLIC_KEY_URL` form: comma-separated, each entry trimmed, empties dropped.
pub(super) fn split_urls(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
}

/// `(authority as written, path)` of an http(s) URL, or `None`.
pub(super) fn split_url(url: &str) -> Option<(&str, &str, u16)> {
    let (rest, default_port) = if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, 80)
    } else {
        return None;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    Some((authority, path, default_port))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with a non-empty host and a numeric port.
pub(super) fn valid_authority(authority: &str) -> bool {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let Some((v6, after)) = rest.split_once(']') else { return false };
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return false,
                },
            };
            (!v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'), port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            (!host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || "-._~%".contains(c)), port)
        }
    };
    host_ok && port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok())
}

/// The default cluster name for a URL: its `host:port`, with the scheme's port filled in.
pub(super) fn cluster_default(url: &str) -> Option<String> {
    let (authority, _, default_port) = split_url(url)?;
    let has_port = match authority.rfind(']') {
        Some(bracket) => authority.get(bracket + 1..).is_some_and(|r| r.starts_with(':')),
        None => authority.contains(':'),
    };
    Some(if has_port { authority.to_string() } else { format!("{authority}:{default_port}") })
}

/// Newest LiteLLM treats a key URL with this path as an OIDC discovery document.
pub(super) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// A URL this filter cannot fetch from, and why. Formatted where it is reported: at load it
/// is a configuration error naming the field; at run time (a discovered `jwks_uri`) a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    /// Where the URL was written (`public_key_url`, `issuers[0].jwks_url`, …).
    pub field: String,
    pub url: String,
    pub problem: &'static str,
}

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}: {}", self.field, self.url, self.problem)
    }
}

impl From<UrlError> for String {
    /// At load: the configuration error, in the same words as every other field's.
    fn from(e: UrlError) -> String {
        super::fields::err(&e.field, format!("{:?}: {}", e.url, e.problem))
    }
}

/// Where a URL is fetched from: the Envoy cluster (`clusters` by authority, else the URL's
/// `host:port`), `:authority` and `:path`. `field` is where the URL was written; errors name it.
pub fn locate(url: &str, field: &str, clusters: &BTreeMap<String, String>) -> Result<JwksSource, UrlError> {
    let bad = |problem: &'static str| UrlError { field: field.to_string(), url: url.to_string(), problem };
    let (authority, path, _) = split_url(url).ok_or_else(|| bad("must start with http:// or https://"))?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain spaces or control characters"));
    }
    if authority.contains('@') || !valid_authority(authority) {
        return Err(bad("needs a host, optionally :port (and no user info)"));
    }
    if path.contains('#') {
        return Err(bad("must not contain a fragment"));
    }
    // `http://idp?x=1` asks for `/?x=1`: a `:path` always starts with `/`.
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    let default_cluster = cluster_default(url).ok_or_else(|| bad("cannot derive a cluster name"))?;
    let cluster = clusters
        .get(authority)
        .or_else(|| clusters.get(&default_cluster))
        .cloned()
        .unwrap_or(default_cluster);
    let path = if path.is_empty() { "/".to_string() } else { path };
    let discovery = path.split('?').next().is_some_and(|p| p.ends_with(DISCOVERY_PATH));
    Ok(JwksSource { url: url.to_string(), cluster, authority: authority.to_string(), path, discovery, field: field.to_string() })
}

/// The global key URLs: `public_key_url` (one, LiteLLM's comma-separated form, or a list),
/// else `JWT_PUBLIC_KEY_URL` from the VM's environment.
pub(super) fn key_urls(
    configured: Option<OneOrMany>,
    env: &dyn Fn(&str) -> Option<String>,
    clusters: &BTreeMap<String, String>,
) -> Result<Vec<JwksSource>, String> {
    let urls: Vec<String> = match configured {
        Some(OneOrMany::One(s)) => split_urls(&s),
        Some(OneOrMany::Many(list)) => list.iter().flat_map(|s| split_urls(s)).collect(),
        None => env("JWT_PUBLIC_KEY_URL").map(|s| split_urls(&s)).unwrap_or_default(),
    };
    urls.iter().map(|url| locate(url, "public_key_url", clusters).map_err(String::from)).collect()
}

/// Every `clusters` entry must route a URL of the configuration (a key URL or the record
/// source's): a stray one is a typo whose URL would go to the default cluster name instead. With
/// OIDC discovery any host may be needed (a discovered `jwks_uri` can name one).
pub(super) fn check_clusters_used(
    clusters: &BTreeMap<String, String>,
    sources: &[&JwksSource],
    record_url: Option<&str>,
) -> Result<(), String> {
    if sources.iter().any(|s| s.discovery) {
        return Ok(());
    }
    let names = |url: &str, authority: &str| {
        split_url(url).is_some_and(|(a, _, _)| a == authority) || cluster_default(url).as_deref() == Some(authority)
    };
    for authority in clusters.keys() {
        let used = sources.iter().any(|s| names(&s.url, authority)) || record_url.is_some_and(|u| names(u, authority));
        if !used {
            return Err(err(
                &format!("clusters.{authority}"),
                "names no host:port of a key URL (public_key_url, issuers), of oidc_userinfo_endpoint or of record_source.url",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;
    use serde_json::json;

    #[test]
    fn key_urls_must_be_well_formed() {
        let c = compile_json(json!({"public_key_url": ["http://idp?x=1", "https://[::1]:8443/k", "http://idp:9090"]})).unwrap();
        assert_eq!(c.jwks[0].path, "/?x=1", "a :path starts with /");
        assert_eq!(c.jwks[1].cluster, "[::1]:8443");
        assert_eq!(c.jwks[2].path, "/");
        for bad in ["http://idp/a b", "http://idp/a\r\nx", "http://idp/\u{0}", "http://idp:", "http://[::1", "http://:80/k",
                    "http://idp:99999/k", "http://idp:8x/k", "http://[::1]x/k", "http://id p/k", "http://user@idp/k"] {
            assert!(compile_json(json!({"public_key_url": bad})).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn discovery_urls_are_recognised_with_or_without_a_query() {
        let c = compile_json(json!({"public_key_url": [
            "https://idp/.well-known/openid-configuration",
            "https://idp/realms/x/.well-known/openid-configuration?appid=1",
            "https://idp/.well-known/openid-configuration/keys",
        ]}))
        .unwrap();
        assert_eq!(c.jwks.iter().map(|s| s.discovery).collect::<Vec<_>>(), [true, true, false]);
    }

    #[test]
    fn comma_separated_and_list_urls_like_jwt_public_key_url() {
        let c = compile_json(json!({"public_key_url": " http://a:8080/j?x=1 , ,http://b/j"})).unwrap();
        let names: Vec<_> = c.jwks.iter().map(|s| (s.cluster.as_str(), s.path.as_str())).collect();
        assert_eq!(names, [("a:8080", "/j?x=1"), ("b:80", "/j")]);
        let c = compile_json(json!({"public_key_url": ["http://a/1", "http://c/2,http://d/3"]})).unwrap();
        assert_eq!(c.jwks.len(), 3);
    }

    #[test]
    fn clusters_override_by_authority_and_must_be_used() {
        let c = compile_json(json!({
            "public_key_url": "https://idp.example.com/keys",
            "clusters": {"idp.example.com:443": "outbound|443||idp.example.com"}
        }))
        .unwrap();
        assert_eq!(c.jwks[0].cluster, "outbound|443||idp.example.com");
        let e = compile_json(json!({"public_key_url": "http://a/j", "clusters": {"b:80": "x"}})).unwrap_err();
        assert!(e.contains("clusters.b:80"), "{e}");
        let c = compile_json(json!({"public_key_url": "http://a/j", "clusters": {"litellm:4000": "outbound|4000||litellm"},
            "record_source": {"type": "litellm", "url": "http://litellm:4000", "master_key": "sk"}})).unwrap();
        assert_eq!(c.record_source.unwrap().cluster, "outbound|4000||litellm", "clusters routes the record source too");
    }
}
