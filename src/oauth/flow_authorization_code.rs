//! The token endpoint's `authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.6) and
//! `refresh_token` (RFC 6749 §6, RFC 9700 §4.14) grants, over the grant store.
//!
//! Every binding check (client, redirect URI, PKCE verifier) runs before the code is claimed,
//! so a code presented by the wrong client or with the wrong verifier is left as it was; the
//! claim itself is the store's conditional UPDATE, which also records what this redemption
//! issues so that a replay revokes it.

use actix_web::HttpResponse;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;

use super::client::{Client, GrantType};
use super::flow_client_credentials::{audience, mint_access_token, mint_access_token_as};
use super::form::Form;
use super::pkce::CodeChallenge;
use super::scope::ScopeSet;
use super::{no_store, OAuthError};
use crate::app::AppState;
use crate::crypto::{random_base62, Purpose};
use crate::keys::Alg;
use crate::store::{self, grants};

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

/// Whether `token` has a refresh token's shape (43 base62 characters, as issued), so that
/// revocation and introspection look one up only for such a string.
pub fn looks_like_refresh(token: &str) -> bool {
    token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub fn refresh_hash(state: &AppState, token: &str) -> String {
    state.secrets.hash(
        Purpose::StoredSecret,
        format!("refresh\0{token}").as_bytes(),
    )
}

#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    azp: &'a str,
    iat: i64,
    exp: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    at_hash: String,
}

/// OIDC Core §3.1.3.6: the left half of the access token's hash, with the hash of the ID
/// token's algorithm (SHA-256 for RS256/ES256, SHA-512 for Ed25519).
fn at_hash(alg: Alg, access_token: &str) -> String {
    let (algorithm, half) = match alg {
        Alg::EdDSA => (&ring::digest::SHA512, 32),
        _ => (&ring::digest::SHA256, 16),
    };
    let digest = ring::digest::digest(algorithm, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..half])
}

fn mint_id_token(
    state: &AppState,
    client: &Client,
    sub: &str,
    auth_time: i64,
    nonce: Option<&str>,
    access_token: &str,
) -> Result<String, OAuthError> {
    let now = store::now();
    let keys = state.keys.snapshot();
    let key = keys
        .signer(client.id_token_alg, now)
        .ok_or_else(OAuthError::unavailable)?;
    let claims = IdTokenClaims {
        iss: &state.config.issuer,
        sub,
        aud: &client.client_id,
        azp: &client.client_id,
        iat: now,
        exp: now + state.config.id_token_ttl.as_secs() as i64,
        auth_time,
        nonce,
        at_hash: at_hash(client.id_token_alg, access_token),
    };
    key.sign_jwt(&claims).map_err(|_| OAuthError::unavailable())
}

fn respond(body: TokenResponse) -> Result<HttpResponse, OAuthError> {
    let mut res = HttpResponse::Ok();
    no_store(&mut res);
    Ok(res.json(body))
}

pub async fn exchange(
    state: &AppState,
    client: &Client,
    form: &Form,
) -> Result<HttpResponse, OAuthError> {
    if !client.may_use(GrantType::AuthorizationCode) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the authorization_code grant",
        ));
    }
    let code = form.require("code")?;
    let redirect_uri = form.require("redirect_uri")?;
    let verifier = form.require("code_verifier")?;
    let hash = super::authorize::keyed_code_hash(state, code);
    let peek = hash.clone();
    let row = state
        .store
        .run(move |c| grants::peek_code(c, &peek))
        .await?;
    let invalid = || {
        OAuthError::invalid_grant(
            "the authorization code is invalid, expired or was issued to another client",
        )
    };
    let Some(row) = row else {
        return Err(invalid());
    };
    if row.client_id != client.client_id {
        return Err(invalid());
    }
    if row.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    if !CodeChallenge::from_stored(row.code_challenge.clone()).verify(verifier) {
        return Err(OAuthError::invalid_grant(
            "the code_verifier does not match the code_challenge",
        ));
    }
    let scope = ScopeSet::parse(&row.scope).map_err(|_| invalid())?;
    // SPEC §2: a refresh token when the client may refresh and, for OIDC, offline_access was granted.
    let with_refresh = client.may_use(GrantType::RefreshToken)
        && (!scope.contains("openid") || scope.contains("offline_access"));
    let aud = audience(state, client, &form.all("resource"))?;
    let (access_token, claims) = mint_access_token(state, client, &row.user_id, &scope, aud)?;
    let now = store::now();
    // The refresh family is created by the same transaction that claims the code.
    let refresh = with_refresh.then(|| {
        let raw = random_base62(43);
        let family = grants::NewFamily {
            family: grants::FamilyRow {
                id: format!("fam_{}", random_base62(20)),
                client_id: client.client_id.clone(),
                org_id: client.org_id.clone(),
                user_id: row.user_id.clone(),
                scope: row.scope.clone(),
                auth_time: row.auth_time,
                created_at: now,
                expires_at: now + state.config.refresh_token_ttl.as_secs() as i64,
                revoked_at: None,
            },
            token_hash: refresh_hash(state, &raw),
            idle_expires_at: now + state.config.refresh_idle_ttl.as_secs() as i64,
        };
        (raw, family)
    });
    let issued = grants::Issued {
        family_id: refresh.as_ref().map(|(_, f)| f.family.id.clone()),
        access_jti: claims.jti.clone(),
        access_exp: claims.exp,
    };
    let family = refresh.as_ref().map(|(_, f)| f.clone());
    let redemption = state
        .store
        .run(move |c| grants::redeem_code(c, &hash, now, &issued, family.as_ref()))
        .await?;
    let row = match redemption {
        grants::Redemption::Fresh(row) => row,
        grants::Redemption::Replayed { .. } => {
            tracing::warn!(client_id = %client.client_id, "authorization code replayed; its tokens are revoked");
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used; the tokens it issued are revoked",
            ));
        }
        grants::Redemption::Invalid => return Err(invalid()),
    };
    let refresh_token = refresh.map(|(raw, _)| raw);
    let id_token = if scope.contains("openid") {
        Some(mint_id_token(
            state,
            client,
            &row.user_id,
            row.auth_time,
            row.nonce.as_deref(),
            &access_token,
        )?)
    } else {
        None
    };
    state
        .metrics
        .tokens_issued
        .with_label_values(&["authorization_code"])
        .inc();
    respond(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.config.access_token_ttl.as_secs(),
        scope: claims.scope,
        refresh_token,
        id_token,
    })
}

pub async fn refresh(
    state: &AppState,
    client: &Client,
    form: &Form,
) -> Result<HttpResponse, OAuthError> {
    if !client.may_use(GrantType::RefreshToken) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the refresh_token grant",
        ));
    }
    let presented = form.require("refresh_token")?;
    let hash = refresh_hash(state, presented);
    let lookup = hash.clone();
    let family = state
        .store
        .run(move |c| grants::family_of_token(c, &lookup))
        .await?;
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    // Another client's token is refused before anything changes.
    let Some(family) = family.filter(|f| f.client_id == client.client_id) else {
        return Err(invalid());
    };
    let granted = ScopeSet::parse(&family.scope).map_err(|_| invalid())?;
    // RFC 6749 §6: a narrower scope for this access token; the family keeps its grant.
    let scope = match form.get("scope") {
        None => granted.clone(),
        Some(s) => {
            let s = ScopeSet::parse(s).map_err(OAuthError::invalid_scope)?;
            if !s.is_subset(&granted) {
                return Err(OAuthError::invalid_scope(
                    "a refresh may only narrow the granted scope",
                ));
            }
            s
        }
    };
    let aud = audience(state, client, &form.all("resource"))?;
    let new_raw = random_base62(43);
    let new_hash = refresh_hash(state, &new_raw);
    let now = store::now();
    let idle = state.config.refresh_idle_ttl.as_secs() as i64;
    let grace = state.config.refresh_reuse_grace.as_secs() as i64;
    // The access token's id and expiry are fixed now, so that the rotation records them
    // beside the new refresh token (revoking the family revokes it too).
    let jti = random_base62(22);
    let issued = (
        jti.clone(),
        now + state.config.access_token_ttl.as_secs() as i64,
    );
    let rotation = state
        .store
        .run(move |c| {
            let access = (issued.0.as_str(), issued.1);
            grants::rotate_refresh(c, &hash, &new_hash, access, now, idle, grace)
        })
        .await?;
    match rotation {
        grants::Rotation::Rotated(family) => {
            let (access_token, claims) =
                mint_access_token_as(state, client, &family.user_id, &scope, aud, jti, now)?;
            // OIDC Core §12.2: a refresh of an OpenID grant returns a new ID token with the
            // same subject and auth_time, and no nonce (as Keycloak and node-oidc-provider do).
            let id_token = if scope.contains("openid") {
                Some(mint_id_token(
                    state,
                    client,
                    &family.user_id,
                    family.auth_time,
                    None,
                    &access_token,
                )?)
            } else {
                None
            };
            state
                .metrics
                .tokens_issued
                .with_label_values(&["refresh_token"])
                .inc();
            respond(TokenResponse {
                access_token,
                token_type: "Bearer",
                expires_in: state.config.access_token_ttl.as_secs(),
                scope: claims.scope,
                refresh_token: Some(new_raw),
                id_token,
            })
        }
        grants::Rotation::Reused { family_id } => {
            tracing::warn!(client_id = %client.client_id, %family_id, "refresh token reuse; family revoked");
            Err(OAuthError::invalid_grant(
                "the refresh token was already used; its family is revoked",
            ))
        }
        grants::Rotation::Invalid => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_follows_oidc_core() {
        // OIDC Core §A.3 example: access token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y",
        // at_hash "77QmUPtjPfzWtF2AnpK9RQ" (RS256, SHA-256).
        assert_eq!(
            at_hash(Alg::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(
            at_hash(Alg::EdDSA, "x").len(),
            43,
            "half of SHA-512 for Ed25519"
        );
    }
}
