//! Where the token comes from: the `Authorization` header, with LiteLLM's prefix rules (spec §7.1).

use crate::error::AuthError;

/// LiteLLM strips `Bearer ` or `bearer ` (case as written; `BEARER ` is not recognised by LiteLLM
/// either). A header without a recognised prefix counts as no credential, as in LiteLLM.
const PREFIXES: [&str; 2] = ["Bearer ", "bearer "];

/// The credential from an `Authorization` header value, or `MissingToken`.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::MissingToken)?;
    let token = PREFIXES
        .iter()
        .find_map(|p| value.strip_prefix(p))
        .ok_or(AuthError::MissingToken)?
        .trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
