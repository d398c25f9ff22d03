//! `Idempotency-Key` on `/v1` POSTs (SPEC §4), as a layer around the `/v1` routes.
//!
//! A POST carrying the header is authenticated here first (the key is scoped to the
//! organization and the authenticating credential), its body read, and its record claimed in
//! the database — the primary key lets one of several concurrent duplicates run, on whichever
//! nodes they land. The first response (any status below 500) is stored for 24 hours, sealed
//! under a key derived from the instance secret and the Idempotency-Key itself, and replayed
//! for the same request; the same key with another method, path or body, or while the first is
//! still running, is `409 conflict`. A 5xx that changed nothing frees the key so the client can
//! retry. The change a request makes and the mark on its record are one transaction, and the
//! routes that create something store their answer in it too ([`will_answer`]; see
//! `store::idempotency`): a request whose node died before answering is replayed when its
//! answer was stored, run once more (after a lease of `LEASE_SECS`) when it changed nothing,
//! and otherwise refused with `409` saying its change was made — never run twice.

use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};

use super::{auth, ApiError};
use crate::app::AppState;
use crate::crypto::Purpose;
use crate::store::{self, idempotency::Begin};

/// How long a first response is replayed (and kept).
pub const TTL_SECS: i64 = 24 * 3600;
const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

pub async fn layer(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if req.method() != Method::POST || !req.headers().contains_key(&HEADER) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let refuse = |req: ServiceRequest, e: ApiError| Ok(req.into_response(e.error_response()));
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return refuse(req, ApiError::unavailable());
    };
    // The credential first, as on every route: a request without one is a 401 whatever else
    // is wrong with it (a malformed key was a 400 before the credential was looked at).
    let caller = match auth::authenticate(&state, req.request()).await {
        Ok(c) => c,
        Err(e) => return refuse(req, e),
    };
    let key = match idempotency_key(&req) {
        Ok(k) => k,
        Err(e) => return refuse(req, e),
    };
    let payload = req.take_payload();
    let body = match super::read_body(req.headers(), payload).await {
        Ok(b) => b,
        Err(e) => return refuse(req, e),
    };

    // The record's name: organization, the credential itself and what it may do, and the
    // key, under a keyed hash. A replay reaches only the credential that made the request,
    // holding what it held then (a demoted or narrower credential starts afresh and meets the
    // route's own checks).
    let scope = [caller.idempotency_scope().as_bytes(), key.as_bytes()].join(&0u8);
    let key_hash = state.secrets.hash(Purpose::Idempotency, &scope);
    let fingerprint = {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(req.method().as_str().as_bytes());
        ctx.update(b"\0");
        ctx.update(req.uri().to_string().as_bytes());
        ctx.update(b"\0");
        ctx.update(&body);
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ctx.finish().as_ref(),
        )
    };
    let (hash, fp) = (key_hash.clone(), fingerprint);
    let begun = state
        .store
        .run(move |c| store::idempotency::begin(c, &hash, &fp, store::now(), TTL_SECS))
        .await;
    let stamp =
        match begun {
            Err(e) => return refuse(req, e.into()),
            Ok(Begin::Mismatch) => {
                return refuse(
                    req,
                    ApiError::conflict(
                        "this Idempotency-Key was used for another request (method, path or body)",
                    ),
                )
            }
            Ok(Begin::InFlight) => {
                let mut e = ApiError::conflict(
                    "a request with this Idempotency-Key is still running; retry shortly",
                );
                e.retry_after = Some(1);
                return refuse(req, e);
            }
            Ok(Begin::Replay(status, sealed)) => {
                let Some(body) = state
                    .secrets
                    .open_derived(Purpose::Idempotency, &scope, &sealed)
                else {
                    tracing::error!("a stored idempotent response does not open");
                    return refuse(req, ApiError::unavailable());
                };
                let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
                let res = HttpResponse::build(status)
                    .content_type("application/json")
                    .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
                    .insert_header((REPLAYED, HeaderValue::from_static("true")))
                    .body(body);
                return Ok(req.into_response(res));
            }
            Ok(Begin::Lost) => return refuse(
                req,
                ApiError::conflict(
                    "the request with this Idempotency-Key was carried out, but its answer was \
                     lost when the server stopped; look the result up instead of retrying",
                ),
            ),
            Ok(Begin::Started(stamp)) => stamp,
        };

    req.extensions_mut().insert(caller);
    req.set_payload(actix_web::dev::Payload::from(body));
    let claim = {
        let (secrets, scope) = (state.secrets.clone(), scope.clone());
        store::idempotency::Claim::new(key_hash.clone(), stamp, move |bytes| {
            secrets.seal_derived(Purpose::Idempotency, &scope, bytes)
        })
    };
    // The request runs, and its response is stored, in a task of its own: a client that hangs
    // up does not stop it halfway, between the change and the record of its response.
    // It keeps the request's id and span, so that its logs and audit events name the request.
    let task = actix_web::rt::spawn(crate::telemetry::carry(async move {
        let res = match store::idempotency::holding(claim.clone(), next.call(req)).await {
            Ok(res) => res,
            Err(e) => {
                abandon(&state, key_hash, stamp).await;
                return Err(e);
            }
        };
        let status = res.status();
        if status.is_server_error() {
            abandon(&state, key_hash, stamp).await;
            return Ok(res.map_into_boxed_body());
        }
        let (req, res) = res.into_parts();
        let (head, payload) = res.into_parts();
        let Ok(bytes) = body::to_bytes(payload).await else {
            abandon(&state, key_hash, stamp).await;
            return Ok(ServiceResponse::new(
                req,
                ApiError::unavailable().error_response(),
            ));
        };
        if !claim.recorded() {
            let sealed = state
                .secrets
                .seal_derived(Purpose::Idempotency, &scope, &bytes);
            let code = i32::from(status.as_u16());
            if let Err(e) = state
                .store
                .run(move |c| store::idempotency::finish(c, &key_hash, stamp, code, &sealed))
                .await
            {
                tracing::warn!(error = %e, "cannot store an idempotent response");
            }
        }
        Ok(ServiceResponse::new(
            req,
            head.set_body(bytes).map_into_boxed_body(),
        ))
    }));
    match task.await {
        Ok(result) => result,
        // The task panicked: its key stays taken (the outcome is unknown) until it expires.
        Err(_) => Err(actix_web::error::ErrorInternalServerError(
            "the request failed",
        )),
    }
}

/// 1 to 255 visible ASCII characters (a UUID, typically).
fn idempotency_key(req: &ServiceRequest) -> Result<String, ApiError> {
    let bad = || {
        ApiError::invalid(
            "Idempotency-Key",
            "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
        )
    };
    // Two of them would leave it to chance which one keys the request.
    if req.headers().get_all(&HEADER).count() > 1 {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "send one Idempotency-Key header, not several",
        ));
    }
    let value = req.headers().get(&HEADER).ok_or_else(bad)?;
    let s = value.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(s.to_string())
}

/// Frees the key of a request that failed on the server's side, before answering and without
/// a change, so that an immediate retry runs.
async fn abandon(state: &web::Data<AppState>, key_hash: String, stamp: i64) {
    if let Err(e) = state
        .store
        .run(move |c| store::idempotency::abandon(c, &key_hash, stamp))
        .await
    {
        tracing::warn!(error = %e, "cannot free an Idempotency-Key");
    }
}

/// The answer a route will give if its change commits, stored with the change when the
/// request holds an Idempotency-Key (so that a crash between the change and the answer loses
/// neither). Call it just before the write; the route must then answer exactly this.
pub fn will_answer(status: StatusCode, body: &serde_json::Value) {
    if let Some(claim) = store::idempotency::task_claim() {
        claim.will_answer(i32::from(status.as_u16()), body.to_string().as_bytes());
    }
}
