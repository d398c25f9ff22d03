//! `POST /oauth2/revoke` (RFC 7009). Revoking an access token records its `jti` until the
//! token would have expired, so introspection reports it inactive on every node; revoking a
//! refresh token revokes its family. A client
//! revokes only its own tokens; anything else — another client's token, an unknown or
//! malformed one — is left alone and still answers 200 (RFC 7009 §2.2).

use actix_web::{web, HttpRequest, HttpResponse};

use super::access_token;
use super::client_auth::Presented;
use super::form::Form;
use super::{no_store, OAuthError};
use crate::app::AppState;
use crate::store::{clients, grants, tokens};

pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let form = Form::read(&req, payload).await?;
    let presented = Presented::from_request(&req, &form)?;
    let token = form.require("token")?.to_string();
    let id = presented.client_id().to_string();
    let client = state.store.run(move |c| clients::find(c, &id)).await?;
    let client = presented.verify(&state, client, &req).await?;

    let keys = state.keys.snapshot();
    if let Some((claims, _)) = access_token::verify(&keys, &token, &state.config.issuer) {
        if claims.client_id == client.client_id {
            let jti = claims.jti.clone();
            state
                .store
                .run(move |c| tokens::revoke(c, &claims.jti, claims.exp))
                .await?;
            tracing::info!(client_id = %client.client_id, %jti, "access token revoked");
        }
    } else if super::flow_authorization_code::looks_like_refresh(&token) {
        // A refresh token: revoking it revokes its whole family (SPEC §2).
        let hash = super::flow_authorization_code::refresh_hash(&state, &token);
        let (cid, now) = (client.client_id.clone(), crate::store::now());
        let revoked = state
            .store
            .run(move |c| grants::revoke_by_token(c, &hash, &cid, now))
            .await?;
        if revoked {
            tracing::info!(client_id = %client.client_id, "refresh family revoked");
        }
    }
    let mut res = HttpResponse::Ok();
    no_store(&mut res);
    Ok(res.finish())
}
