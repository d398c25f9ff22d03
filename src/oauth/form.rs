//! `application/x-www-form-urlencoded` bodies of the OAuth endpoints, read with the limits of
//! SPEC §2: a body over 64 KiB is 413, a parameter over 4 KiB, a repeated parameter (RFC 6749
//! §3.2), a body that is not a form or not UTF-8 are `invalid_request`.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;

use super::OAuthError;

pub const MAX_BODY: usize = 64 * 1024;
pub const MAX_PARAM: usize = 4 * 1024;
/// How long a body may take to arrive once its head has (every body Latchkey reads, here and
/// at `/v1`): 64 KiB in 10 s is 6.4 KB/s. A client trickling a body holds a connection no
/// longer than this, and gets 408.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Parameters that RFC 8707 §2 lets a client repeat.
const REPEATABLE: &[&str] = &["resource"];

/// Why a body could not be read whole.
pub enum BodyError {
    /// Over `MAX_BODY` (413).
    TooLarge,
    /// The connection failed or the framing was broken.
    Unreadable,
    /// Not all there within `BODY_DEADLINE` (408).
    TimedOut,
}

/// A request body — every body Latchkey reads, here and at `/v1` — of at most `MAX_BODY`
/// (refused before reading when Content-Length says more), arriving within `BODY_DEADLINE`.
pub async fn read_limited<E>(
    headers: &header::HeaderMap,
    mut payload: impl futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
) -> Result<web::Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(BodyError::TooLarge);
    }
    let read = async {
        let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(BodyError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    actix_rt::time::timeout(BODY_DEADLINE, read)
        .await
        .map_err(|_| BodyError::TimedOut)?
}

pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub async fn read(req: &HttpRequest, payload: web::Payload) -> Result<Form, OAuthError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let body = read_limited(req.headers(), payload)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => too_large(),
                BodyError::Unreadable => OAuthError::invalid_request("the body could not be read"),
                BodyError::TimedOut => {
                    OAuthError::request_timeout("the body did not arrive within 10 s")
                }
            })?;
        Form::parse(&body)
    }

    pub fn parse(body: &[u8]) -> Result<Form, OAuthError> {
        // form_urlencoded passes a broken escape through literally; a form that has one is
        // malformed, not a value to act on.
        let broken_escape = body.iter().enumerate().any(|(i, &b)| {
            b == b'%'
                && !(body.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && body.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        });
        if broken_escape {
            return Err(OAuthError::invalid_request(
                "the parameters have an invalid percent-encoding",
            ));
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(body) {
            // Invalid UTF-8 decodes to U+FFFD; a real form never sends it.
            if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
                return Err(OAuthError::invalid_request(
                    "the parameters are not valid UTF-8",
                ));
            }
            // No OAuth parameter, username or password holds a NUL (RFC 6749 Appendix A: visible
            // characters and spaces), and PostgreSQL cannot compare a text with one: a lookup
            // of such a username failed with 503.
            if name.contains('\0') || value.contains('\0') {
                return Err(OAuthError::invalid_request(
                    "the parameters hold a NUL character",
                ));
            }
            if name.len() > MAX_PARAM || value.len() > MAX_PARAM {
                let shown: String = name.chars().take(40).collect();
                return Err(OAuthError::invalid_request(format!(
                    "parameter {shown} is longer than 4 KiB"
                )));
            }
            // RFC 6749 §3.1: a parameter without a value is treated as omitted.
            if value.is_empty() {
                continue;
            }
            if !REPEATABLE.contains(&name.as_ref()) && pairs.iter().any(|(n, _)| n == &name) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {name} is repeated (each may appear once)"
                )));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Form { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter {name} is required")))
    }
}

fn too_large() -> OAuthError {
    OAuthError::payload_too_large("the body is larger than 64 KiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused_but_resource_may_repeat() {
        assert!(Form::parse(b"a=1&a=2").is_err());
        let f = Form::parse(b"resource=urn%3Ax&resource=urn%3Ay&scope=").unwrap();
        assert_eq!(f.all("resource"), vec!["urn:x", "urn:y"]);
        assert_eq!(f.get("scope"), None);
    }

    #[test]
    fn invalid_utf8_and_long_parameters_are_refused() {
        assert!(Form::parse(b"a=%FF").is_err());
        assert!(Form::parse(b"a=%zz").is_err());
        assert!(Form::parse(b"a=%4").is_err());
        assert!(Form::parse(b"a=%41").is_ok());
        assert!(Form::parse(b"username=a%00b").is_err());
        assert!(Form::parse(b"a\0=1").is_err());
        let long = format!("a={}", "x".repeat(MAX_PARAM + 1));
        assert!(Form::parse(long.as_bytes()).is_err());
    }
}
