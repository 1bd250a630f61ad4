//! The filter's outgoing calls, pure: what to ask for (a key set, an OIDC discovery document, a
//! team/user record, a LiteLLM write-through) and what each answer means. The shell only sends
//! the [`Call`] and hands back the [`Answer`]; everything that can be decided about either is
//! decided here, where native tests reach it.

use crate::config::{JwksSource, RecordSource, SourceKind};
use crate::authz::sync::UserSync;
use crate::records::{Record, RecordKey};

/// Answers larger than this are refused: a key set or a record is a few KiB.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// One HTTP call through an Envoy cluster (`dispatch_http_call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub cluster: String,
    pub method: &'static str,
    pub authority: String,
    pub path: String,
    /// Beyond the pseudo-headers, `accept` and `content-type`.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

impl Call {
    /// GET a key set or a discovery document.
    pub fn key_set(at: &JwksSource, timeout_ms: u64) -> Call {
        Call {
            cluster: at.cluster.clone(),
            method: "GET",
            authority: at.authority.clone(),
            path: at.path.clone(),
            headers: Vec::new(),
            body: None,
            timeout_ms,
        }
    }

    /// GET the claims of an opaque token from the IdP's UserInfo endpoint (OIDC Core §5.3), the
    /// token as the bearer credential, as LiteLLM's `get_oidc_userinfo` sends it. Never logged:
    /// the call holds the token.
    pub fn userinfo(at: &JwksSource, token: &str, timeout_ms: u64) -> Call {
        Call { headers: vec![("authorization".into(), format!("Bearer {token}"))], ..Call::key_set(at, timeout_ms) }
    }

    /// GET one record, or `None` when the source serves no records of that kind (then they
    /// do not exist).
    pub fn record(source: &RecordSource, key: &RecordKey) -> Option<Call> {
        let template = source.paths.get(&key.kind)?;
        let path = format!("{}{}", source.base_path, template.replace("{id}", &url_encode(&key.id)));
        Some(Call { path, ..Self::to_source(source, "GET", None) })
    }

    /// Update at LiteLLM what `sync_user_role_and_teams` changed in a user record: its role
    /// (`/user/update`), the teams it joined (`/team/member_add`, as a `user` member) and left
    /// (`/team/member_delete`). None unless the source is LiteLLM and writes through.
    pub fn sync_writes(source: &RecordSource, sync: &UserSync) -> Vec<Call> {
        if !source.write_through || source.kind != SourceKind::Litellm {
            return Vec::new();
        }
        let user_id = &sync.user.user_id;
        let mut bodies = Vec::new();
        if let Some(role) = &sync.role {
            bodies.push(("/user/update", serde_json::json!({"user_id": user_id, "user_role": role})));
        }
        for team in &sync.add {
            bodies.push(("/team/member_add", serde_json::json!({"team_id": team, "member": {"user_id": user_id, "role": "user"}})));
        }
        for team in &sync.remove {
            bodies.push(("/team/member_delete", serde_json::json!({"team_id": team, "user_id": user_id})));
        }
        bodies
            .into_iter()
            .map(|(path, body)| Call {
                path: format!("{}{path}", source.base_path),
                ..Self::to_source(source, "POST", Some(body.to_string().into_bytes()))
            })
            .collect()
    }

    /// Create at LiteLLM a record this filter upserted (`team_id_upsert`, `user_id_upsert`
    /// with `write_through`); `None` when the source is not LiteLLM, does not write through,
    /// or LiteLLM has no such creation.
    pub fn write_through(source: &RecordSource, record: &Record) -> Option<Call> {
        if !source.write_through || source.kind != SourceKind::Litellm {
            return None;
        }
        let (path, body) = match record {
            Record::Team(t) => ("/team/new", serde_json::json!({"team_id": t.team_id})),
            Record::User(u) => ("/user/new", serde_json::json!({"user_id": u.user_id, "user_email": u.user_email})),
            _ => return None,
        };
        let body = Some(body.to_string().into_bytes());
        Some(Call { path: format!("{}{path}", source.base_path), ..Self::to_source(source, "POST", body) })
    }

    fn to_source(source: &RecordSource, method: &'static str, body: Option<Vec<u8>>) -> Call {
        Call {
            cluster: source.cluster.clone(),
            method,
            authority: source.authority.clone(),
            path: String::new(),
            headers: source.headers.clone(),
            body,
            timeout_ms: source.timeout_ms,
        }
    }

    /// Every header of the call, pseudo-headers first, as `dispatch_http_call` takes them.
    pub fn header_list(&self) -> Vec<(&str, &str)> {
        let mut headers =
            vec![(":method", self.method), (":path", self.path.as_str()), (":authority", self.authority.as_str()), ("accept", "application/json")];
        if self.body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        headers.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        headers
    }
}

/// A call's answer as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Timeout, connection failure or reset: Envoy delivered no response headers.
    Nothing,
    /// `:status` and the body; `body` is `None` when it is larger than [`MAX_RESPONSE_BYTES`]
    /// (and was not read).
    Response { status: String, body: Option<Vec<u8>> },
}

impl Answer {
    /// The answer of a call whose body (`body_size` bytes) is read by `read` if not too large.
    pub fn read(status: Option<String>, body_size: usize, read: impl FnOnce() -> Vec<u8>) -> Answer {
        match status {
            None => Answer::Nothing,
            Some(status) => Answer::Response { status, body: (body_size <= MAX_RESPONSE_BYTES).then(read) },
        }
    }

    /// The status for a log line.
    pub fn status(&self) -> &str {
        match self {
            Answer::Nothing => "none",
            Answer::Response { status, .. } => status,
        }
    }

    /// The body of a 200 answer, or why there is none.
    fn ok_body(&self) -> Result<&[u8], Failure<'_>> {
        match self {
            Answer::Nothing => Err(Failure::NoResponse),
            Answer::Response { status, .. } if status != "200" => Err(Failure::Status(status)),
            Answer::Response { body: None, .. } => Err(Failure::TooLarge),
            Answer::Response { body: Some(body), .. } => Ok(body),
        }
    }
}

enum Failure<'a> {
    NoResponse,
    Status(&'a str),
    TooLarge,
}

const NO_RESPONSE: &str = "(timeout or connection failure)";
const TOO_LARGE: &str = "response larger than 1048576 bytes";

/// A key set's answer from `from` (the key URL, or the `jwks_uri` a discovery document named):
/// the document to parse, or why the fetch failed (for the log; never for a client).
pub fn key_set<'a>(from: &str, answer: &'a Answer) -> Result<&'a [u8], String> {
    answer.ok_body().map_err(|failure| match failure {
        Failure::NoResponse => format!("no response from {from} {NO_RESPONSE}"),
        Failure::Status(status) => format!("JWKS endpoint {from} returned status {status}"),
        Failure::TooLarge => format!("JWKS from {from}: {TOO_LARGE}"),
    })
}

/// The most of a UserInfo answer that is kept (it is stored per token in shared data).
pub const MAX_USERINFO_BYTES: usize = 8 * 1024;

/// A UserInfo answer: the claims object, the IdP's refusal of the token (a 4xx other than 408
/// and 429: the token's fault), or why the IdP could not be asked (for the log, never for a
/// client).
pub fn userinfo(answer: &Answer) -> Result<crate::store::userinfo::Said, String> {
    use crate::store::userinfo::Said;
    if let Answer::Response { status, .. } = answer {
        if let Ok(code @ 400..=499) = status.parse::<u16>() {
            if code != 408 && code != 429 {
                return Ok(Said::Refused(code));
            }
        }
    }
    let body = answer.ok_body().map_err(|failure| match failure {
        Failure::NoResponse => format!("UserInfo endpoint: no response {NO_RESPONSE}"),
        Failure::Status(status) => format!("UserInfo endpoint returned status {status}"),
        Failure::TooLarge => format!("UserInfo endpoint: {TOO_LARGE}"),
    })?;
    if body.len() > MAX_USERINFO_BYTES {
        return Err(format!("UserInfo endpoint: answer larger than {MAX_USERINFO_BYTES} bytes"));
    }
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(claims)) => Ok(Said::Claims(claims)),
        _ => Err("UserInfo endpoint: the answer is not a JSON object".to_string()),
    }
}

/// A discovery document's answer: the document, or why there is none.
pub fn discovery_document(answer: &Answer) -> Result<&[u8], String> {
    answer.ok_body().map_err(|failure| match failure {
        Failure::NoResponse => format!("no response {NO_RESPONSE}"),
        Failure::Status(status) => format!("returned status {status}"),
        Failure::TooLarge => TOO_LARGE.to_string(),
    })
}

/// A record's answer: the record, `Ok(None)` when the source says it does not exist (404, or
/// LiteLLM's empty answer), or why the fetch failed.
pub fn record(source: SourceKind, key: &RecordKey, answer: &Answer) -> Result<Option<Record>, String> {
    let what = format!("{} {}", key.kind.as_str(), key.id);
    if matches!(answer, Answer::Response { status, .. } if status == "404") {
        return Ok(None);
    }
    let body = answer.ok_body().map_err(|failure| match failure {
        Failure::NoResponse => format!("no response for {what} {NO_RESPONSE}"),
        Failure::Status(status) => format!("source returned status {status} for {what}"),
        Failure::TooLarge => format!("{what}: {TOO_LARGE}"),
    })?;
    Record::from_answer(source == SourceKind::Litellm, key, body)
}

/// Whether LiteLLM created the written-through record.
pub fn write_through_accepted(answer: &Answer) -> bool {
    matches!(answer, Answer::Response { status, .. } if status == "200" || status == "201")
}

/// Percent-encode an id for a URL path or query (RFC 3986 unreserved characters stay).
pub fn url_encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(b)),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::compile_json;
    use crate::records::Kind;
    use serde_json::json;

    fn source(kind: &str, write_through: bool) -> RecordSource {
        let cfg = compile_json(json!({
            "public_key_url": "http://idp/jwks",
            "record_source": {"type": kind, "url": "http://litellm:4000/base/", "master_key": "sk-1",
                              "write_through": write_through, "paths": {"team": "/teams/{id}"}},
        }));
        cfg.unwrap().record_source.unwrap()
    }

    fn ok(body: &str) -> Answer {
        Answer::Response { status: "200".into(), body: Some(body.as_bytes().to_vec()) }
    }

    fn key(kind: Kind, id: &str) -> RecordKey {
        RecordKey { kind, id: id.into() }
    }

    #[test]
    fn a_userinfo_answer_is_claims_a_refusal_of_the_token_or_an_outage() {
        use crate::store::userinfo::Said;
        let answer = |status: &str, body: &str| Answer::Response { status: status.into(), body: Some(body.as_bytes().to_vec()) };
        assert_eq!(userinfo(&ok(r#"{"sub": "alice"}"#)), Ok(Said::Claims(json!({"sub": "alice"}).as_object().unwrap().clone())));
        for status in ["400", "401", "403", "404"] {
            assert_eq!(userinfo(&answer(status, "nope")), Ok(Said::Refused(status.parse().unwrap())), "{status}: the token's fault");
        }
        for status in ["408", "429", "500", "502", "503", "302"] {
            assert!(userinfo(&answer(status, "")).is_err(), "{status}: the endpoint's fault, never the token's");
        }
        for body in ["[1]", "\"alice\"", "<html>", ""] {
            assert!(userinfo(&ok(body)).is_err(), "{body:?} is no claims object");
        }
        let big = format!(r#"{{"sub": "{}"}}"#, "a".repeat(MAX_USERINFO_BYTES));
        assert!(userinfo(&ok(&big)).is_err(), "too large to keep per token");
        assert!(userinfo(&Answer::Nothing).is_err());
    }

    #[test]
    fn record_calls_encode_the_id_into_the_template_under_the_base_path() {
        let src = source("litellm", false);
        let call = Call::record(&src, &key(Kind::Team, "a b/c?d")).unwrap();
        assert_eq!(call.path, "/base/teams/a%20b%2Fc%3Fd");
        assert_eq!((call.method, call.cluster.as_str(), call.authority.as_str()), ("GET", "litellm:4000", "litellm:4000"));
        let headers = call.header_list();
        assert!(headers.contains(&("authorization", "Bearer sk-1")), "{headers:?}");
        assert!(!headers.iter().any(|(k, _)| *k == "content-type"), "a GET has no body");
        let user = Call::record(&src, &key(Kind::User, "bob")).unwrap();
        assert_eq!(user.path, "/base/user/info?user_id=bob", "LiteLLM's endpoint by default");
    }

    #[test]
    fn a_plain_source_without_a_template_for_a_kind_serves_none_of_it() {
        let src = source("http", false);
        assert!(Call::record(&src, &key(Kind::Team, "t")).is_some());
        assert!(Call::record(&src, &key(Kind::User, "u")).is_none());
    }

    #[test]
    fn write_through_only_to_litellm_when_asked_and_only_teams_and_users() {
        let team = Record::from_answer(false, &key(Kind::Team, "t1"), br#"{"team_id": "t1"}"#).unwrap().unwrap();
        let org = Record::from_answer(false, &key(Kind::Org, "o1"), br#"{"organization_id": "o1"}"#).unwrap().unwrap();
        assert!(Call::write_through(&source("litellm", false), &team).is_none());
        let plain = RecordSource { write_through: true, ..source("http", false) };
        assert!(Call::write_through(&plain, &team).is_none(), "only LiteLLM has /team/new");
        let src = source("litellm", true);
        assert!(Call::write_through(&src, &org).is_none());
        let call = Call::write_through(&src, &team).unwrap();
        assert_eq!((call.method, call.path.as_str()), ("POST", "/base/team/new"));
        assert_eq!(serde_json::from_slice::<serde_json::Value>(call.body.as_deref().unwrap()).unwrap(), json!({"team_id": "t1"}));
        assert!(call.header_list().contains(&("content-type", "application/json")));
    }

    #[test]
    fn key_set_answers() {
        assert_eq!(key_set("http://idp/jwks", &ok("{}")), Ok(&b"{}"[..]));
        let status = Answer::Response { status: "503".into(), body: Some(Vec::new()) };
        assert_eq!(key_set("http://idp/jwks", &status), Err("JWKS endpoint http://idp/jwks returned status 503".into()));
        assert!(key_set("u", &Answer::Nothing).unwrap_err().contains("no response from u"));
        let big = Answer::read(Some("200".into()), MAX_RESPONSE_BYTES + 1, || panic!("a too large body is never read"));
        assert!(key_set("u", &big).unwrap_err().contains("larger than"));
        assert!(discovery_document(&big).is_err());
        assert_eq!(Answer::read(None, 10, Vec::new), Answer::Nothing);
    }

    #[test]
    fn record_answers_404_is_not_found_errors_are_failures() {
        let k = key(Kind::Team, "t1");
        let not_found = Answer::Response { status: "404".into(), body: None };
        assert_eq!(record(SourceKind::Http, &k, &not_found), Ok(None));
        let found = record(SourceKind::Http, &k, &ok(r#"{"team_id": "t1", "models": ["gpt-4o"]}"#)).unwrap().unwrap();
        assert_eq!(found.key(), k);
        let failed = Answer::Response { status: "500".into(), body: Some(Vec::new()) };
        assert_eq!(record(SourceKind::Http, &k, &failed), Err("source returned status 500 for team t1".into()));
        assert!(record(SourceKind::Http, &k, &ok("not json")).is_err());
        assert!(record(SourceKind::Http, &k, &Answer::Nothing).unwrap_err().contains("no response for team t1"));
    }

    #[test]
    fn write_through_accepts_200_and_201() {
        assert!(write_through_accepted(&ok("{}")));
        assert!(write_through_accepted(&Answer::Response { status: "201".into(), body: None }));
        assert!(!write_through_accepted(&Answer::Response { status: "409".into(), body: None }));
        assert!(!write_through_accepted(&Answer::Nothing));
    }

    #[test]
    fn url_encoding_keeps_unreserved_characters_only() {
        assert_eq!(url_encode("Az09-_.~"), "Az09-_.~");
        assert_eq!(url_encode("a@b.c/é"), "a%40b.c%2F%C3%A9");
    }
}
