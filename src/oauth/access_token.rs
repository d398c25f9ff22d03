//! RFC 9068 access tokens: the claims Latchkey mints and the checks it applies when it reads
//! one back (introspection, revocation, and later `/v1` and `userinfo`).

use jsonwebtoken::Validation;
use serde::{Deserialize, Serialize};

use crate::keys::{KeySet, LoadedKey};

/// `aud`: one audience as a string, several as an array (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn from_list(mut list: Vec<String>) -> Audience {
        if list.len() == 1 {
            Audience::One(list.remove(0))
        } else {
            Audience::Many(list)
        }
    }

    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(list) => list.iter().any(|a| a == aud),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scope: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub org_id: String,
}

/// Longest token accepted for parsing; Latchkey's own are far shorter.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Checks a presented token: our `kid`, the key's own algorithm (so `alg: none` and an HMAC
/// keyed with a public key both fail), `typ: at+jwt` (RFC 9068 §4), signature, issuer and
/// expiry. Revocation is the caller's check (it needs the store).
pub fn verify<'k>(
    keys: &'k KeySet,
    token: &str,
    issuer: &str,
) -> Option<(AccessTokenClaims, &'k LoadedKey)> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let header = jsonwebtoken::decode_header(token).ok()?;
    let typ = header.typ.as_deref()?;
    if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
        return None;
    }
    let key = keys.by_kid(header.kid.as_deref()?)?;
    if header.alg != key.alg.jwt() {
        return None;
    }
    let mut validation = Validation::new(key.alg.jwt());
    validation.leeway = 0;
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    let data = jsonwebtoken::decode::<AccessTokenClaims>(token, &key.decoding, &validation).ok()?;
    Some((data.claims, key))
}
