//! `POST /oauth2/introspect` (RFC 7662) for Latchkey's access tokens. The caller is a
//! confidential client; a token is active only when its signature, issuer and expiry check
//! out, it is not revoked, and it belongs to the caller's organization. Anything else is
//! `{"active": false}` — the response never says why.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::access_token;
use super::client_auth::Presented;
use super::form::Form;
use super::{no_store, OAuthError};
use crate::app::AppState;
use crate::store::clients;

pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let form = Form::read(&req, payload).await?;
    let presented = Presented::from_request(&req, &form)?;
    let token = form.require("token")?;

    // Signature checks need no I/O; done first, so that the client and the revocation
    // state come back in one database round trip.
    let keys = state.keys.snapshot();
    let verified =
        access_token::verify(&keys, token, &state.config.issuer).map(|(claims, _)| claims);

    let id = presented.client_id().to_string();
    let jti = verified.as_ref().map(|c| c.jti.clone());
    let (client, revoked) = state
        .store
        .run(move |c| clients::find_with_revocation(c, &id, jti.as_deref()))
        .await?;
    let client = presented.verify(&state, client).await?;
    if client.public {
        return Err(OAuthError::invalid_client(
            "introspection is for confidential clients",
        ));
    }

    let body = match verified {
        Some(claims) if !revoked && claims.org_id == client.org_id => {
            let mut body = json!({
                "active": true,
                "token_type": "Bearer",
                "client_id": claims.client_id,
                "sub": claims.sub,
                "aud": claims.aud,
                "iss": claims.iss,
                "iat": claims.iat,
                "exp": claims.exp,
                "jti": claims.jti,
                "org_id": claims.org_id,
            });
            // RFC 7662 §2.2: scope is a string; a token without one has no member.
            if let Some(scope) = claims.scope {
                body["scope"] = json!(scope);
            }
            body
        }
        _ => json!({ "active": false }),
    };
    let mut res = HttpResponse::Ok();
    no_store(&mut res);
    Ok(res.json(body))
}
