//! One undecided request, as the worker keeps it between callbacks: its token (verified or
//! waiting for keys), what it asks for, what has been seen of its body, and the one [`Phase`]
//! it waits in. A decided request has no flow: later callbacks let it through untouched.

use crate::authn::dpop::Presentation;
use crate::authn::jws::Jws;
use crate::authn::Verified;
use crate::authz::model;
use crate::error::AuthError;
use crate::records::RecordKey;
use crate::routes::group_label::RouteGroupLabel;
use crate::store::userinfo::TokenHash;
use std::rc::Rc;

/// What the request waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Its token parsed; the keys to verify it are being fetched (until `until_ms`, then 503).
    AwaitingKeys { until_ms: u64 },
    /// Its opaque token is being asked about at the UserInfo endpoint (until `until_ms`, then 503).
    AwaitingUserInfo { until_ms: u64 },
    /// Verified; a rule needs the requested model and the body is still arriving.
    /// `first_callback_by_ms`: no body callback has come yet, and one must come by then — Envoy
    /// only delivers the body after a headers pause with `allow_on_headers_stop_iteration`,
    /// and without it the request would hang (it is answered with an explanation instead).
    AwaitingBody { first_callback_by_ms: Option<u64> },
    /// Verified; team/user records it needs are being fetched (until `until_ms`, then 503).
    AwaitingRecords { keys: Vec<RecordKey>, until_ms: u64 },
}

/// What has been seen of the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The request has no body (headers ended the stream).
    None,
    /// Body bytes are arriving; this many are buffered so far.
    Receiving(usize),
    /// The whole body is buffered.
    Complete(usize),
}

/// The request's token.
#[derive(Debug)]
pub enum Token {
    /// Parsed, not verified yet (its keys are being fetched). The token text is kept to
    /// remember the verification in the verified-token cache.
    Unverified { text: Box<str>, jws: Jws },
    /// Opaque (`oidc_userinfo_enabled`), its UserInfo answer not here yet. The text is kept to
    /// remember the answer in the verified-token cache, and for the root context to send.
    Opaque { text: Box<str>, hash: TokenHash },
    Verified(Rc<Verified>),
}

#[derive(Debug)]
pub struct Flow {
    pub token: Token,
    pub phase: Phase,
    /// The path without the query string.
    pub route: String,
    /// The model named by the path (`/openai/deployments/{model}/…`), if any.
    pub path_model: Option<String>,
    pub content_type: Option<String>,
    pub body: Body,
    /// A body callback has arrived.
    pub body_seen: bool,
    /// The model read from the complete body, read once in the request's own body callback:
    /// the body buffer is only valid there, never in another context's callback.
    pub body_model: Option<Result<Option<String>, AuthError>>,
    /// The route rule (index into `config.rules`) whose requirements apply after LiteLLM's.
    pub rule: Option<usize>,
    /// `route=… token=…` for debug lines (only when debug logging is on).
    pub log_ctx: Option<String>,
    /// The request's route group, for the decision metrics (`Worker::labels`).
    pub group: RouteGroupLabel,
    /// How the token was presented, when DPoP is configured: checked once, after it verifies.
    pub binding: Option<Presentation>,
    /// The team the caller asked to act for (`x-litellm-team-id`).
    pub team_header: Option<String>,
    /// The routing header (`model_routing`) has been decided: set, or left out.
    pub routed: bool,
}

impl Flow {
    pub fn new(token: Token, route: &str, content_type: Option<String>, end_of_stream: bool) -> Self {
        Flow {
            token,
            phase: Phase::AwaitingBody { first_callback_by_ms: None },
            path_model: model::from_path(route),
            route: route.to_string(),
            content_type,
            body: if end_of_stream { Body::None } else { Body::Receiving(0) },
            body_seen: false,
            body_model: None,
            rule: None,
            log_ctx: None,
            group: RouteGroupLabel::Other,
            binding: None,
            team_header: None,
            routed: false,
        }
    }

    pub fn verified(&self) -> Option<&Rc<Verified>> {
        match &self.token {
            Token::Verified(v) => Some(v),
            Token::Unverified { .. } | Token::Opaque { .. } => None,
        }
    }

    /// The requested model from the complete body `bytes` (JSON or multipart), else the path's.
    pub fn read_model(&mut self, bytes: &[u8]) {
        let boundary = self.content_type.as_deref().and_then(model::multipart_boundary);
        let from_body = match boundary {
            Some(b) => model::from_multipart(bytes, &b),
            None => model::from_json(bytes),
        };
        self.body_model = Some(match from_body {
            Ok(found) => Ok(found.or_else(|| self.path_model.clone())),
            Err(model::BodyError::Invalid(why)) => Err(AuthError::InvalidBody(why)),
        });
    }

    /// The model to authorize when a rule needs it, `Err` to refuse, `Ok(Wait)` while the body
    /// is still arriving.
    pub fn model(&self, max_body_bytes: usize) -> Result<Wanted, AuthError> {
        match self.body {
            Body::Receiving(size) | Body::Complete(size) if size > max_body_bytes => Err(AuthError::BodyTooLarge(max_body_bytes)),
            Body::Receiving(_) => Ok(Wanted::Wait),
            Body::Complete(_) => match &self.body_model {
                Some(Ok(model)) => Ok(Wanted::Model(model.clone())),
                Some(Err(e)) => Err(e.clone()),
                // Read in the body callback whenever a rule may need it: not reached.
                None => Err(AuthError::InvalidBody("the request body could not be read".into())),
            },
            Body::None => Ok(Wanted::Model(self.path_model.clone())),
        }
    }
}

impl Flow {
    /// The model the routing header names, once that is known (`None` while the body is still
    /// arriving): the complete body's (else the path's); the path's when the body is larger than
    /// `max_body_bytes` or is not what it should be — routing never refuses a request, the rules
    /// decide (a rule that needs the model refuses such a body itself).
    pub fn route_model(&self, max_body_bytes: usize) -> Option<Option<&str>> {
        match (self.body, &self.body_model) {
            (Body::Receiving(size) | Body::Complete(size), _) if size > max_body_bytes => Some(self.path_model.as_deref()),
            (Body::Receiving(_), _) => None,
            (Body::Complete(_), Some(Ok(model))) => Some(model.as_deref()),
            (Body::Complete(_), _) | (Body::None, _) => Some(self.path_model.as_deref()),
        }
    }
}

/// The requested model, when it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Model(Option<String>),
    /// The body is still arriving.
    Wait,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys::token;

    fn flow(end_of_stream: bool) -> Flow {
        let text = token("RS256");
        let jws = crate::authn::jws::parse(&text).unwrap();
        Flow::new(Token::Unverified { text: text.into(), jws }, "/openai/deployments/gpt-4o/chat/completions", None, end_of_stream)
    }

    #[test]
    fn the_model_comes_from_the_body_else_the_path() {
        let mut f = flow(false);
        assert_eq!(f.model(100), Ok(Wanted::Wait));
        f.body = Body::Complete(20);
        f.read_model(br#"{"model": "o1"}"#);
        assert_eq!(f.model(100), Ok(Wanted::Model(Some("o1".into()))));
        f.read_model(br#"{"messages": []}"#);
        assert_eq!(f.model(100), Ok(Wanted::Model(Some("gpt-4o".into()))), "the path's deployment");
        assert_eq!(flow(true).model(100), Ok(Wanted::Model(Some("gpt-4o".into()))));
    }

    #[test]
    fn the_routed_model_is_the_bodys_else_the_paths_and_never_waits_past_the_limit() {
        let mut f = flow(false);
        assert_eq!(f.route_model(100), None, "the body is still arriving");
        f.body = Body::Complete(20);
        f.read_model(br#"{"model": "claude-3-5-sonnet"}"#);
        assert_eq!(f.route_model(100), Some(Some("claude-3-5-sonnet")));
        f.read_model(br#"{"messages": []}"#);
        assert_eq!(f.route_model(100), Some(Some("gpt-4o")), "the path's deployment");
        f.read_model(b"{nope");
        assert_eq!(f.route_model(100), Some(Some("gpt-4o")), "an unreadable body routes by the path");
        f.body = Body::Receiving(101);
        assert_eq!(f.route_model(100), Some(Some("gpt-4o")), "too large to read: the path's, at once");
        assert_eq!(flow(true).route_model(100), Some(Some("gpt-4o")), "no body");
        let text = token("RS256");
        let jws = crate::authn::jws::parse(&text).unwrap();
        let mut plain = Flow::new(Token::Unverified { text: text.into(), jws }, "/v1/chat/completions", None, false);
        plain.body = Body::Complete(2);
        plain.read_model(b"{}");
        assert_eq!(plain.route_model(100), Some(None), "no model anywhere: no header");
    }

    #[test]
    fn too_large_or_invalid_bodies_are_refused() {
        let mut f = flow(false);
        f.body = Body::Receiving(101);
        assert_eq!(f.model(100), Err(AuthError::BodyTooLarge(100)), "refused before it is complete");
        f.body = Body::Complete(5);
        f.read_model(b"{nope");
        assert!(matches!(f.model(100), Err(AuthError::InvalidBody(_))));
        f.body_model = None;
        assert!(matches!(f.model(100), Err(AuthError::InvalidBody(_))), "an unread body is never a pass");
    }
}
