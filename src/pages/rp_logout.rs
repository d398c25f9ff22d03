//! OpenID Connect RP-Initiated Logout 1.0 at `GET/POST /logout` (the `end_session_endpoint`).
//!
//! With a valid `id_token_hint` (an ID token Latchkey signed, for this issuer; expired ones are
//! accepted, as §2 allows) naming the signed-in person, the session ends and the browser goes
//! to the client's registered `post_logout_redirect_uri` with `state`. A hint that does not
//! verify, or names someone else, gets the CSRF-protected confirmation page instead; a
//! `post_logout_redirect_uri` the client did not register is refused without redirecting.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{current_session, end_session, message, secure_page, SESSION_COOKIE};
use crate::app::AppState;
use crate::store::clients;

#[derive(Deserialize)]
struct HintClaims {
    sub: String,
    aud: String,
}

/// Checks an ID token Latchkey signed: our key (by `kid`) with its own algorithm, our issuer,
/// `typ: JWT`. Expiry is not checked (a hint may be old).
fn verify_hint(state: &AppState, hint: &str) -> Option<HintClaims> {
    if hint.len() > 8192 {
        return None;
    }
    let header = jsonwebtoken::decode_header(hint).ok()?;
    if header.typ.as_deref() != Some("JWT") {
        return None;
    }
    let keys = state.keys.snapshot();
    let key = keys.by_kid(header.kid.as_deref()?)?;
    if header.alg != key.alg.jwt() {
        return None;
    }
    let mut v = jsonwebtoken::Validation::new(key.alg.jwt());
    v.validate_exp = false;
    v.validate_aud = false;
    v.set_issuer(&[&state.config.issuer]);
    v.set_required_spec_claims(&["iss", "sub", "aud"]);
    jsonwebtoken::decode::<HintClaims>(hint, &key.decoding, &v)
        .ok()
        .map(|d| d.claims)
}

/// What the relying party sent with the hint.
pub struct LogoutRequest<'a> {
    pub hint: &'a str,
    pub client_id: Option<&'a str>,
    pub redirect: Option<&'a str>,
    pub state: Option<&'a str>,
}

pub async fn logout(state: &AppState, req: &HttpRequest, asked: LogoutRequest<'_>) -> HttpResponse {
    let LogoutRequest {
        hint,
        client_id,
        redirect,
        state: rp_state,
    } = asked;
    let Some(claims) = verify_hint(state, hint) else {
        return super::login::confirm_logout(state, req).await;
    };
    // §2: with both, the client must be the one the ID token was issued to; nothing ends and
    // no one is sent anywhere otherwise.
    if client_id.is_some_and(|id| id != claims.aud) {
        return message(
            state,
            StatusCode::BAD_REQUEST,
            "The logout request is not valid",
            "The client_id is not the application the ID token was issued to.",
        );
    }
    let client_id = claims.aud.clone();
    let client = match state.store.run(move |c| clients::find(c, &client_id)).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return message(
                state,
                StatusCode::BAD_REQUEST,
                "The logout request is not valid",
                "The application is not registered.",
            )
        }
        Err(_) => {
            return message(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "The service cannot reach its database right now.",
            )
        }
    };
    if let Some(uri) = redirect {
        if !client.post_logout_redirect_uris.iter().any(|r| r == uri) {
            return message(
                state,
                StatusCode::BAD_REQUEST,
                "The logout request is not valid",
                "The post_logout_redirect_uri is not registered for this application.",
            );
        }
    }
    match current_session(state, req).await {
        Ok(Some((raw, _, user))) if user.id == claims.sub => {
            if end_session(state, &raw).await.is_err() {
                return message(
                    state,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again shortly",
                    "The service cannot reach its database right now.",
                );
            }
        }
        // Someone else is signed in here: ask them rather than end their session.
        Ok(Some(_)) => return super::login::confirm_logout(state, req).await,
        Ok(None) => {}
        Err(_) => {
            return message(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "The service cannot reach its database right now.",
            )
        }
    }
    let removal = super::cookie(state, SESSION_COOKIE, String::new(), None);
    let mut res = match redirect.and_then(|u| url::Url::parse(u).ok()) {
        Some(mut url) => {
            if let Some(s) = rp_state {
                url.query_pairs_mut().append_pair("state", s);
            }
            let mut b = HttpResponse::SeeOther();
            secure_page(&mut b);
            b.insert_header((header::LOCATION, url.to_string()))
                .finish()
        }
        None => message(state, StatusCode::OK, "Signed out", "You are signed out."),
    };
    let _ = res.add_removal_cookie(&removal);
    res
}
