//! Client authentication at the token, introspection and revocation endpoints (SPEC §2):
//! `client_secret_basic`, `client_secret_post`, `client_secret_jwt` and `private_key_jwt`
//! (RFC 7523), and `none` for public clients. A client uses the one method it registered;
//! credentials in two places at once are `invalid_request`; every other failure is
//! `401 invalid_client` with the same description, so that a caller cannot tell an unknown
//! client from a wrong secret.
//!
//! It runs in two steps so that an endpoint can fetch the client together with whatever else
//! it needs in one database round trip: `Presented::from_request` reads what the caller sent
//! (no I/O), `Presented::verify` checks it against the stored client.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::client::{AuthMethod, Client};
use super::form::Form;
use super::OAuthError;
use crate::app::AppState;
use crate::crypto::Purpose;
use crate::store::{self, tokens};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// SPEC §2: an assertion's `exp` at most 5 minutes ahead.
const MAX_ASSERTION_LIFETIME: i64 = 300;
/// Clock skew tolerated on an assertion's `exp` and `nbf`.
const LEEWAY: u64 = 30;
const FAILED: &str = "client authentication failed";

/// The algorithms accepted on client assertions (also listed in the metadata).
pub const SECRET_JWT_ALGS: &[&str] = &["HS256"];
pub const PRIVATE_KEY_JWT_ALGS: &[&str] = &["RS256", "PS256", "ES256", "EdDSA"];

/// Keyed-hash input for a client secret: bound to the client, so that one client's secret
/// hash can never authenticate another.
pub fn secret_hash_input(client_id: &str, secret: &str) -> Vec<u8> {
    format!("client-secret\0{client_id}\0{secret}").into_bytes()
}

/// What the caller presented, before any lookup.
#[derive(Debug)]
pub enum Presented {
    Basic {
        client_id: String,
        secret: String,
    },
    Post {
        client_id: String,
        secret: String,
    },
    Assertion {
        client_id: String,
        assertion: String,
    },
    None {
        client_id: String,
    },
}

#[derive(Deserialize)]
struct PeekClaims {
    sub: Option<String>,
}

impl Presented {
    pub fn from_request(req: &HttpRequest, form: &Form) -> Result<Presented, OAuthError> {
        let presented = Presented::parse(req, form)?;
        // Client ids are Latchkey's own (base62): one with a control character names no
        // client, and PostgreSQL refuses a NUL in a query parameter outright — which, in a
        // batch of key lookups, would fail the requests beside it.
        if presented.client_id().chars().any(char::is_control) {
            return Err(OAuthError::invalid_client(FAILED));
        }
        Ok(presented)
    }

    fn parse(req: &HttpRequest, form: &Form) -> Result<Presented, OAuthError> {
        let sent = super::one_authorization(req).map_err(|_| {
            OAuthError::invalid_request("send one Authorization header, not several")
        })?;
        let basic = match sent {
            None => None,
            Some(value) => {
                let value = value
                    .to_str()
                    .map_err(|_| OAuthError::invalid_client(FAILED))?;
                let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
                if !scheme.eq_ignore_ascii_case("basic") {
                    return Err(OAuthError::invalid_client(
                        "only the Basic scheme authenticates clients here",
                    ));
                }
                Some(
                    parse_basic(rest.trim())
                        .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?,
                )
            }
        };
        let body_id = form.get("client_id");
        let body_secret = form.get("client_secret");
        let assertion = form.get("client_assertion");
        let assertion_type = form.get("client_assertion_type");

        let places =
            basic.is_some() as u8 + body_secret.is_some() as u8 + assertion.is_some() as u8;
        if places > 1 {
            return Err(OAuthError::invalid_request(
                "client credentials were sent in more than one place; use the one method the client registered",
            ));
        }
        if let Some((id, secret)) = basic {
            if body_id.is_some_and(|b| b != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the Authorization header",
                ));
            }
            return Ok(Presented::Basic {
                client_id: id,
                secret,
            });
        }
        if let Some(secret) = body_secret {
            let id = body_id
                .ok_or_else(|| OAuthError::invalid_request("client_secret without client_id"))?;
            return Ok(Presented::Post {
                client_id: id.to_string(),
                secret: secret.to_string(),
            });
        }
        if let Some(assertion) = assertion {
            if assertion_type != Some(ASSERTION_TYPE) {
                return Err(OAuthError::invalid_request(format!(
                    "client_assertion_type must be {ASSERTION_TYPE}"
                )));
            }
            // The subject names the client (RFC 7523 §3); the signature is checked once the
            // client, and so its key, is known.
            let sub = peek_claims(assertion).and_then(|c| c.sub).ok_or_else(|| {
                OAuthError::invalid_client("the client assertion is not a JWT with a sub claim")
            })?;
            if body_id.is_some_and(|b| b != sub) {
                return Err(OAuthError::invalid_client(FAILED));
            }
            return Ok(Presented::Assertion {
                client_id: sub,
                assertion: assertion.to_string(),
            });
        }
        if assertion_type.is_some() {
            return Err(OAuthError::invalid_request(
                "client_assertion_type without client_assertion",
            ));
        }
        match body_id {
            Some(id) => Ok(Presented::None {
                client_id: id.to_string(),
            }),
            None => Err(OAuthError::invalid_client(
                "client authentication is required",
            )),
        }
    }

    pub fn client_id(&self) -> &str {
        match self {
            Presented::Basic { client_id, .. }
            | Presented::Post { client_id, .. }
            | Presented::Assertion { client_id, .. }
            | Presented::None { client_id } => client_id,
        }
    }

    fn method(&self) -> &'static str {
        match self {
            Presented::Basic { .. } => "client_secret_basic",
            Presented::Post { .. } => "client_secret_post",
            Presented::Assertion { .. } => "a client assertion",
            Presented::None { .. } => "none",
        }
    }

    /// Checks the presented credentials against the stored client (`None`: no such client).
    /// Every refusal answers the same description — whether the client exists, which method
    /// it uses and what was wrong stay with the operator (a debug log line, never a secret).
    pub async fn verify(
        self,
        state: &AppState,
        client: Option<Client>,
        req: &actix_web::HttpRequest,
    ) -> Result<Client, OAuthError> {
        let claimed = self.client_id().to_string();
        let org = client.as_ref().map(|c| c.org_id.clone());
        match self.check(state, client).await {
            Ok(client) => Ok(client),
            Err(Refusal::Store(e)) => Err(e.into()),
            Err(Refusal::Invalid(reason)) => {
                tracing::debug!(client_id = %claimed, %reason, "client authentication refused");
                // A refusal that names a real client goes to its organization's audit log.
                if let Some(org) = org {
                    let credential = format!("client:{claimed}");
                    let ip = crate::pages::client_addr(state, req);
                    let ctx = crate::audit::Context::request(&org, credential.clone(), ip);
                    crate::audit::refused(state, &ctx, &credential, "invalid_client");
                }
                Err(OAuthError::invalid_client(FAILED))
            }
        }
    }

    async fn check(self, state: &AppState, client: Option<Client>) -> Result<Client, Refusal> {
        let Some(client) = client else {
            // The same keyed hash a real secret check computes, so that timing does not tell
            // an unknown client from a wrong secret.
            if let Presented::Basic { client_id, secret } | Presented::Post { client_id, secret } =
                &self
            {
                // Compared twice, as for a known client (its secret and a previous one).
                let tags = state
                    .secrets
                    .tags(Purpose::StoredSecret, &secret_hash_input(client_id, secret));
                let _ = tags.matches(UNKNOWN_CLIENT_HASH) | tags.matches(UNKNOWN_CLIENT_HASH);
            }
            return Err(Refusal::Invalid("no such client".into()));
        };
        let method_matches = matches!(
            (&self, client.auth_method),
            (Presented::Basic { .. }, AuthMethod::ClientSecretBasic)
                | (Presented::Post { .. }, AuthMethod::ClientSecretPost)
                | (
                    Presented::Assertion { .. },
                    AuthMethod::ClientSecretJwt | AuthMethod::PrivateKeyJwt
                )
                | (Presented::None { .. }, AuthMethod::None)
        );
        if !method_matches {
            return Err(Refusal::Invalid(format!(
                "registered for {}, presented {}",
                client.auth_method,
                self.method()
            )));
        }
        match self {
            Presented::Basic { secret, .. } | Presented::Post { secret, .. } => {
                // The keyed hash of what was presented, computed once and compared with both
                // stored hashes.
                let tags = state.secrets.tags(
                    Purpose::StoredSecret,
                    &secret_hash_input(&client.client_id, &secret),
                );
                // The secret before a rotation works until its grace period ends. Both
                // comparisons always run (against a hash that matches nothing when there is no
                // previous secret), so the cost does not tell which clients are mid-rotation.
                let previous = client
                    .previous_secret_live(crate::store::now())
                    .then_some(client.prev_secret_hash.as_deref())
                    .flatten()
                    .unwrap_or(UNKNOWN_CLIENT_HASH);
                let current = client.secret_hash.as_deref().unwrap_or(UNKNOWN_CLIENT_HASH);
                let ok = tags.matches(current) | tags.matches(previous);
                if ok {
                    Ok(client)
                } else {
                    Err(Refusal::Invalid("wrong secret".into()))
                }
            }
            Presented::None { .. } => Ok(client),
            Presented::Assertion { assertion, .. } => {
                let (jti, exp) = verify_assertion(state, &client, &assertion)
                    .await
                    .map_err(Refusal::Invalid)?;
                let client_id = client.client_id.clone();
                // Kept until the assertion could no longer be accepted: its exp plus the skew.
                let keep_until = exp + LEEWAY as i64;
                let fresh = state
                    .store
                    .run(move |c| tokens::use_assertion(c, &client_id, &jti, keep_until))
                    .await
                    .map_err(Refusal::Store)?;
                if !fresh {
                    return Err(Refusal::Invalid("assertion jti replayed".into()));
                }
                Ok(client)
            }
        }
    }
}

enum Refusal {
    Invalid(String),
    Store(crate::store::StoreError),
}

/// A well-formed keyed hash that matches nothing, for the unknown-client path.
const UNKNOWN_CLIENT_HASH: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// RFC 6749 §2.3.1: the id and secret are form-urlencoded before Base64.
fn parse_basic(b64: &str) -> Option<(String, String)> {
    let decoded = STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| -> Option<String> {
        let plus = s.replace('+', " ");
        percent_encoding::percent_decode_str(&plus)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    let (id, secret) = (decode(id)?, decode(secret)?);
    if id.is_empty() {
        return None;
    }
    Some((id, secret))
}

fn peek_claims(jwt: &str) -> Option<PeekClaims> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

#[derive(Deserialize)]
struct AssertionClaims {
    exp: i64,
    jti: Option<String>,
}

/// RFC 7523 §3 with SPEC §2's limits; returns the assertion's `jti` and `exp`, or why not.
async fn verify_assertion(
    state: &AppState,
    client: &Client,
    assertion: &str,
) -> Result<(String, i64), String> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| "assertion header invalid".to_string())?;
    let alg = format!("{:?}", header.alg);
    let keys: Vec<DecodingKey> = match client.auth_method {
        AuthMethod::ClientSecretJwt => {
            if !SECRET_JWT_ALGS.contains(&alg.as_str()) {
                return Err(format!("client_secret_jwt assertion signed with {alg}"));
            }
            let decrypt = |enc: Option<&str>| {
                enc.and_then(|enc| state.secrets.decrypt(enc, client.client_id.as_bytes()))
            };
            let secret =
                decrypt(client.secret_enc.as_deref()).ok_or("client secret cannot be decrypted")?;
            let mut keys = vec![DecodingKey::from_secret(&secret)];
            // The secret before a rotation signs too, until its grace period ends.
            if client.previous_secret_live(crate::store::now()) {
                if let Some(previous) = decrypt(client.prev_secret_enc.as_deref()) {
                    keys.push(DecodingKey::from_secret(&previous));
                }
            }
            keys
        }
        AuthMethod::PrivateKeyJwt => {
            if !PRIVATE_KEY_JWT_ALGS.contains(&alg.as_str()) {
                return Err(format!("private_key_jwt assertion signed with {alg}"));
            }
            let jwks = match (&client.jwks, &client.jwks_uri) {
                (Some(jwks), _) => jwks.clone(),
                (None, Some(uri)) => state.jwks_cache.get(uri, header.kid.as_deref()).await?,
                (None, None) => return Err("no registered key set".into()),
            };
            candidate_keys(&jwks, header.kid.as_deref(), header.alg)
        }
        _ => return Err("not an assertion client".into()),
    };
    if keys.is_empty() {
        return Err("no registered key fits the assertion's kid and alg".into());
    }
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY;
    validation.set_issuer(&[&client.client_id]);
    validation.sub = Some(client.client_id.clone());
    validation.set_audience(&[state.config.issuer.as_str(), state.token_endpoint.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.validate_nbf = true;
    let claims = keys
        .iter()
        .find_map(|key| jsonwebtoken::decode::<AssertionClaims>(assertion, key, &validation).ok())
        .ok_or("assertion signature, issuer, subject, audience or expiry invalid")?
        .claims;
    if claims.exp > store::now() + MAX_ASSERTION_LIFETIME {
        return Err("assertion expires more than 5 minutes ahead".into());
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or("assertion jti missing or over 256 characters")?;
    Ok((jti, claims.exp))
}

fn candidate_keys(jwks: &Value, kid: Option<&str>, alg: Algorithm) -> Vec<DecodingKey> {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .take(MAX_CLIENT_KEYS)
        .filter_map(|k| serde_json::from_value::<jsonwebtoken::jwk::Jwk>(k.clone()).ok())
        .filter(|k| kid.is_none() || k.common.key_id.as_deref() == kid)
        .filter(|k| k.is_supported() && kty_fits(k, alg))
        .filter_map(|k| DecodingKey::from_jwk(&k).ok())
        .collect()
}

fn kty_fits(jwk: &jsonwebtoken::jwk::Jwk, alg: Algorithm) -> bool {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    matches!(
        (&jwk.algorithm, alg),
        (P::RSA(_), Algorithm::RS256 | Algorithm::PS256)
            | (P::EllipticCurve(_), Algorithm::ES256)
            | (P::OctetKeyPair(_), Algorithm::EdDSA)
    )
}

/// Client key sets fetched from `jwks_uri`, kept briefly: they are public keys the client
/// publishes. A URI is fetched at most once per 10 s whatever happens — a failure, a `kid`
/// the set lacks, many requests at once — so that requests naming a client cannot turn
/// Latchkey into a load generator against its `jwks_uri`.
pub struct JwksCache {
    http: reqwest::Client,
    entries: Mutex<HashMap<String, JwksEntry>>,
}

struct JwksEntry {
    /// The last set fetched, and when.
    jwks: Option<(Instant, Value)>,
    last_attempt: Instant,
}

/// At most this many keys of a client's set are tried (a huge set must not turn one request
/// into thousands of signature checks).
const MAX_CLIENT_KEYS: usize = 16;
const JWKS_TTL: Duration = Duration::from_secs(300);
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);
const JWKS_MAX_BYTES: usize = 256 * 1024;

impl JwksCache {
    pub fn new() -> anyhow::Result<JwksCache> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client for jwks_uri: {e}"))?;
        Ok(JwksCache {
            http,
            entries: Mutex::new(HashMap::new()),
        })
    }

    async fn get(&self, uri: &str, kid: Option<&str>) -> Result<Value, String> {
        let cached = {
            let mut entries = self
                .entries
                .lock()
                .map_err(|_| "jwks cache poisoned".to_string())?;
            let entry = entries.entry(uri.to_string()).or_insert(JwksEntry {
                jwks: None,
                last_attempt: Instant::now() - JWKS_MIN_REFETCH,
            });
            let cached = entry.jwks.clone();
            let fresh = cached
                .as_ref()
                .is_some_and(|(at, jwks)| at.elapsed() < JWKS_TTL && has_kid(jwks, kid));
            if fresh || entry.last_attempt.elapsed() < JWKS_MIN_REFETCH {
                return cached
                    .map(|(_, j)| j)
                    .ok_or_else(|| "jwks_uri not fetched (retry later)".to_string());
            }
            entry.last_attempt = Instant::now();
            cached
        };
        match self.fetch(uri).await {
            Ok(jwks) => {
                if let Ok(mut entries) = self.entries.lock() {
                    if let Some(entry) = entries.get_mut(uri) {
                        entry.jwks = Some((Instant::now(), jwks.clone()));
                    }
                }
                Ok(jwks)
            }
            Err(reason) => {
                tracing::warn!(jwks_uri = uri, %reason, "cannot fetch a client's JWKS");
                cached
                    .map(|(_, j)| j)
                    .ok_or_else(|| format!("jwks_uri cannot be fetched: {reason}"))
            }
        }
    }

    async fn fetch(&self, uri: &str) -> Result<Value, String> {
        let mut res = self.http.get(uri).send().await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("status {}", res.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > JWKS_MAX_BYTES {
                return Err("larger than 256 KiB".into());
            }
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }
}

fn has_kid(jwks: &Value, kid: Option<&str>) -> bool {
    kid.is_none_or(|kid| {
        jwks.get("keys")
            .and_then(Value::as_array)
            .is_some_and(|keys| {
                keys.iter()
                    .any(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let enc = STANDARD.encode("my%20id:p%3Ass+word");
        assert_eq!(
            parse_basic(&enc),
            Some(("my id".into(), "p:ss word".into()))
        );
        assert_eq!(parse_basic("%%%"), None);
        assert_eq!(parse_basic(&STANDARD.encode("no-colon")), None);
    }
}
