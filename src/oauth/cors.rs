//! CORS for the endpoints a single-page app calls from the browser (SPEC §2): token,
//! revocation and userinfo answer the origins of registered redirect URIs (discovery and the
//! JWKS answer any origin, in `discovery.rs`). No credentials mode: the app sends tokens in
//! the body or the Authorization header, never cookies.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::store::clients;

/// The request's `Origin`, when it is one a registered redirect URI lives at.
async fn allowed_origin(state: &AppState, req: &HttpRequest) -> Option<HeaderValue> {
    let origin = req
        .headers()
        .get(header::ORIGIN)?
        .to_str()
        .ok()?
        .to_string();
    let parsed = url::Url::parse(&origin).ok()?;
    // An origin is scheme://host[:port] and nothing else.
    if parsed.origin().ascii_serialization() != origin {
        return None;
    }
    let lookup = origin.clone();
    let known = state
        .store
        .run(move |c| clients::origin_is_registered(c, &lookup))
        .await
        .ok()?;
    known.then(|| HeaderValue::from_str(&origin).ok()).flatten()
}

/// Adds `Access-Control-Allow-Origin` to responses for registered origins.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let allowed = match (
        req.headers().contains_key(header::ORIGIN),
        req.app_data::<web::Data<AppState>>(),
    ) {
        (true, Some(state)) => allowed_origin(state, req.request()).await,
        _ => None,
    };
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("WWW-Authenticate"),
        );
    }
    Ok(res)
}

/// The preflight: what a registered origin may send.
pub async fn preflight(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match allowed_origin(&state, &req).await {
        Some(origin) => HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .insert_header((header::VARY, "Origin"))
            .finish(),
        None => HttpResponse::Forbidden()
            .insert_header((header::VARY, "Origin"))
            .finish(),
    }
}
