//! Where the token comes from: by default the `Authorization` header with LiteLLM's prefix rules
//! (spec §7.1); where configured, other headers (with a prefix), query parameters or cookies —
//! the locations Envoy's `jwt_authn` offers (`from_headers`, `from_params`, `from_cookies`).
//!
//! A credential found in more than one place, or twice in one place, is refused: two proxies
//! could each pick a different one (token smuggling).

use crate::error::AuthError;

/// The credential from an `Authorization` header value, or `MissingToken`. The `Bearer` scheme
/// is matched without regard to case (RFC 7235 §2.1; LiteLLM knows only `Bearer` and `bearer`).
/// A header with another scheme counts as no credential, as in LiteLLM.
///
/// Envoy joins repeated headers with `,` — a character no JWS (and no API key) contains — so a
/// comma means two credentials were sent: refused, whichever one a later hop would read.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::MissingToken)?;
    let token = strip_prefix_ignore_case(value, "Bearer ").ok_or(AuthError::MissingToken)?.trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    if token.contains(',') {
        return Err(smuggled("more than one Authorization header"));
    }
    Ok(token)
}

/// With DPoP configured: the token of an `Authorization: DPoP <token>` header (RFC 9449 §7.1);
/// `None` when no `Authorization` header uses that scheme (then [`Locations::find`] decides).
pub fn dpop_token(headers: &[(String, String)]) -> Option<Result<&str, AuthError>> {
    let mut values = headers.iter().filter(|(n, _)| n == "authorization");
    let first = values.next()?;
    let token = strip_prefix_ignore_case(&first.1, "DPoP ")?;
    if values.next().is_some() || token.contains(',') {
        return Some(Err(smuggled("more than one Authorization header")));
    }
    Some(Ok(token))
}

/// A header the token may arrive in, and the prefix its value must start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLocation {
    /// Lower case, as Envoy hands header names to filters.
    pub name: String,
    /// Matched ignoring ASCII case, then removed with the spaces after it; empty: the whole value.
    pub value_prefix: String,
}

/// Every place a token is looked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Locations {
    /// Empty together with `params` and `cookies`: the `Authorization` header, LiteLLM's way.
    pub headers: Vec<HeaderLocation>,
    pub params: Vec<String>,
    pub cookies: Vec<String>,
}

/// Where a token was found (to strip it before forwarding when configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    Header(&'a str),
    Param(&'a str),
    Cookie(&'a str),
}

impl Locations {
    pub fn is_default(&self) -> bool {
        self.headers.is_empty() && self.params.is_empty() && self.cookies.is_empty()
    }

    /// Whether the shell must hand this request header to [`Locations::find`].
    pub fn wants_header(&self, name: &str) -> bool {
        if self.is_default() {
            return name == "authorization";
        }
        self.headers.iter().any(|h| h.name == name) || (!self.cookies.is_empty() && name == "cookie")
    }

    /// The one token in this request. `headers` holds the request headers [`wants_header`]
    /// picked (repeats included, in order); `path` is the `:path` with its query.
    ///
    /// [`wants_header`]: Locations::wants_header
    pub fn find<'a>(&'a self, headers: &'a [(String, String)], path: &'a str) -> Result<(&'a str, Found<'a>), AuthError> {
        if self.is_default() {
            let mut values = headers.iter().filter(|(n, _)| n == "authorization");
            let first = values.next().map(|(_, v)| v.as_str());
            if values.next().is_some() {
                return Err(smuggled("more than one Authorization header"));
            }
            return bearer_token(first).map(|t| (t, Found::Header("authorization")));
        }
        let mut found: Option<(&'a str, Found<'a>)> = None;
        let mut take = |token: &'a str, at: Found<'a>| -> Result<(), AuthError> {
            if found.is_some() {
                return Err(smuggled("a credential in more than one place"));
            }
            if token.contains(',') {
                // Repeated headers reach the filter joined by `,`, which no JWS contains.
                return Err(smuggled("more than one value in one place"));
            }
            found = Some((token, at));
            Ok(())
        };
        for location in &self.headers {
            let mut values = headers.iter().filter(|(n, _)| *n == location.name);
            let Some((_, value)) = values.next() else { continue };
            if values.next().is_some() {
                return Err(smuggled(&format!("more than one {} header", location.name)));
            }
            if let Some(token) = strip_prefix_ignore_case(value, &location.value_prefix) {
                take(token, Found::Header(&location.name))?;
            }
        }
        let query = path.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or_default());
        for name in &self.params {
            let mut values = query.into_iter().flat_map(|q| q.split('&')).filter_map(|pair| match pair.split_once('=') {
                Some((k, v)) if k == name => Some(v),
                None if pair == name => Some(""),
                _ => None,
            });
            let Some(value) = values.next() else { continue };
            if values.next().is_some() {
                return Err(smuggled(&format!("query parameter {name} more than once")));
            }
            if !value.is_empty() {
                take(value, Found::Param(name))?;
            }
        }
        for name in &self.cookies {
            let mut values = headers
                .iter()
                .filter(|(n, _)| n == "cookie")
                .flat_map(|(_, v)| v.split(';'))
                .filter_map(|c| c.trim().split_once('=').filter(|(k, _)| k == name).map(|(_, v)| v));
            let Some(value) = values.next() else { continue };
            if values.next().is_some() {
                return Err(smuggled(&format!("cookie {name} more than once")));
            }
            let value = value.trim_matches('"');
            if !value.is_empty() {
                take(value, Found::Cookie(name))?;
            }
        }
        found.ok_or(AuthError::MissingToken)
    }
}

fn smuggled(what: &str) -> AuthError {
    AuthError::Malformed(format!("{what}: send exactly one credential"))
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let token = value.get(prefix.len()..)?.trim_matches(' ');
    (!token.is_empty()).then_some(token)
}

/// LiteLLM's test for a JWT: three dot-separated parts. Anything else (`sk-…` virtual keys)
/// is an API key for LiteLLM's own key check.
pub fn is_jwt_shaped(token: &str) -> bool {
    token.split('.').count() == 3
}

/// `path` without the query parameter `name` (for forwarding without the credential).
pub fn without_param(path: &str, name: &str) -> String {
    let Some((base, rest)) = path.split_once('?') else { return path.to_string() };
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    let mut out = base.to_string();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// A `cookie` header value without the cookie `name`; `None` when nothing is left.
pub fn without_cookie(value: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split_once('=').map_or(*c, |(k, _)| k) != name)
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn custom() -> Locations {
        Locations {
            headers: vec![
                HeaderLocation { name: "authorization".into(), value_prefix: "Bearer ".into() },
                HeaderLocation { name: "x-api-token".into(), value_prefix: String::new() },
            ],
            params: vec!["access_token".into()],
            cookies: vec!["session".into()],
        }
    }

    #[test]
    fn takes_bearer_in_either_case_litellm_accepts() {
        assert_eq!(bearer_token(Some("Bearer a.b.c")), Ok("a.b.c"));
        assert_eq!(bearer_token(Some("bearer a.b.c")), Ok("a.b.c"));
    }

    #[test]
    fn missing_empty_or_unprefixed_is_no_credential() {
        assert_eq!(bearer_token(None), Err(AuthError::MissingToken));
        assert_eq!(bearer_token(Some("")), Err(AuthError::MissingToken));
        assert_eq!(bearer_token(Some("Bearer ")), Err(AuthError::MissingToken));
        assert_eq!(bearer_token(Some("Bearer    ")), Err(AuthError::MissingToken));
        assert_eq!(bearer_token(Some("a.b.c")), Err(AuthError::MissingToken));
        assert_eq!(bearer_token(Some("Token a.b.c")), Err(AuthError::MissingToken));
    }

    #[test]
    fn surrounding_spaces_are_not_part_of_the_token() {
        assert_eq!(bearer_token(Some("Bearer  a.b.c ")), Ok("a.b.c"));
    }

    #[test]
    fn default_is_one_authorization_header() {
        let d = Locations::default();
        assert!(d.wants_header("authorization") && !d.wants_header("cookie"));
        let headers = h(&[("authorization", "Bearer a.b.c")]);
        assert_eq!(d.find(&headers, "/x?access_token=z").unwrap(), ("a.b.c", Found::Header("authorization")));
        let two = h(&[("authorization", "Bearer a.b.c"), ("authorization", "Bearer d.e.f")]);
        assert!(matches!(d.find(&two, "/"), Err(AuthError::Malformed(_))));
        assert_eq!(d.find(&[], "/?access_token=a.b.c"), Err(AuthError::MissingToken));
        // Envoy hands repeated headers over joined with a comma.
        let joined = h(&[("authorization", "Bearer a.b.c,Bearer d.e.f")]);
        assert_eq!(d.find(&joined, "/"), Err(smuggled("more than one Authorization header")));
        assert!(smuggled("x").message().ends_with("send exactly one credential"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer a.b.c", "bearer a.b.c", "BEARER a.b.c", "bEaReR   a.b.c  "] {
            assert_eq!(bearer_token(Some(value)), Ok("a.b.c"), "{value:?}");
        }
        for value in ["Basic a.b.c", "Bearer", "Bearer   ", "Bearera.b.c", "Token a.b.c"] {
            assert_eq!(bearer_token(Some(value)), Err(AuthError::MissingToken), "{value:?}");
        }
    }

    #[test]
    fn each_configured_location_is_found() {
        let c = custom();
        assert!(c.wants_header("x-api-token") && c.wants_header("cookie") && !c.wants_header("x-other"));
        assert_eq!(c.find(&h(&[("authorization", "bearer a.b.c")]), "/").unwrap().0, "a.b.c");
        assert_eq!(c.find(&h(&[("x-api-token", "a.b.c")]), "/").unwrap().1, Found::Header("x-api-token"));
        assert_eq!(c.find(&[], "/v1/x?a=1&access_token=a.b.c#f").unwrap(), ("a.b.c", Found::Param("access_token")));
        let cookie = h(&[("cookie", "theme=dark; session=a.b.c; x=y")]);
        assert_eq!(c.find(&cookie, "/").unwrap(), ("a.b.c", Found::Cookie("session")));
        assert_eq!(c.find(&h(&[("authorization", "Basic abc")]), "/"), Err(AuthError::MissingToken));
        assert_eq!(c.find(&[], "/?access_token="), Err(AuthError::MissingToken));
    }

    #[test]
    fn a_credential_in_two_places_or_twice_in_one_is_refused() {
        let c = custom();
        for (headers, path) in [
            (h(&[("authorization", "Bearer a.b.c"), ("x-api-token", "a.b.c")]), "/"),
            (h(&[("authorization", "Bearer a.b.c")]), "/?access_token=a.b.c"),
            (h(&[("cookie", "session=a.b.c")]), "/?access_token=d.e.f"),
            (h(&[]), "/?access_token=a.b.c&access_token=d.e.f"),
            (h(&[("cookie", "session=a.b.c"), ("cookie", "session=d.e.f")]), "/"),
            (h(&[("x-api-token", "a"), ("x-api-token", "b")]), "/"),
        ] {
            assert!(matches!(c.find(&headers, path), Err(AuthError::Malformed(_))), "{headers:?} {path}");
        }
    }

    #[test]
    fn jwt_shape_is_three_parts() {
        assert!(is_jwt_shaped("a.b.c"));
        assert!(!is_jwt_shaped("sk-1234"));
        assert!(!is_jwt_shaped("a.b.c.d.e"));
    }

    #[test]
    fn credential_is_stripped_from_query_and_cookies() {
        assert_eq!(without_param("/v1/x?a=1&access_token=t&b=2", "access_token"), "/v1/x?a=1&b=2");
        assert_eq!(without_param("/v1/x?access_token=t", "access_token"), "/v1/x");
        assert_eq!(without_param("/v1/x?access_token=t#frag", "access_token"), "/v1/x#frag");
        assert_eq!(without_param("/v1/x", "access_token"), "/v1/x");
        assert_eq!(without_param("/v1/x?access_tokenx=1", "access_token"), "/v1/x?access_tokenx=1");
        assert_eq!(without_cookie("a=1; session=t; b=2", "session").as_deref(), Some("a=1; b=2"));
        assert_eq!(without_cookie("session=t", "session"), None);
    }
}
