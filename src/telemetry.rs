//! Logs, request ids and metrics.
//!
//! One middleware does the per-request work with one clock read: it gives every request an id
//! (`req_…`, returned as `X-Request-Id` and used by the `/v1` error envelope), runs the request
//! inside a tracing span carrying that id, and records Prometheus counters and latency
//! histograms labelled by route pattern (never the raw path: no unbounded label values).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use tracing::Instrument;

use crate::app::AppState;
use crate::config::{Config, LogFormat};

/// Logs go to stderr (stdout is the CLI's JSON); `LATCHKEY_LOG` filters, `LATCHKEY_LOG_FORMAT`
/// picks text or JSON lines.
pub fn init_logging(config: &Config) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match config.log_format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[derive(Clone)]
pub struct RequestId(pub String);

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pub tokens_issued: IntCounterVec,
    /// Store lookups of API keys: a key refused for its shape or checksum costs none.
    pub api_key_lookups: prometheus::IntCounter,
    /// Reads of the store that answered API-key lookups: lookups that arrive together share
    /// one (`store::key_lookups`), so lookups ÷ batches is the mean batch size.
    pub api_key_lookup_batches: prometheus::IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "latchkey_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "latchkey_http_request_duration_seconds",
                "HTTP request latency by route and status",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route", "status"],
        )
        .expect("valid metric");
        let tokens_issued = IntCounterVec::new(
            Opts::new(
                "latchkey_tokens_issued_total",
                "Access tokens issued by grant type",
            ),
            &["grant"],
        )
        .expect("valid metric");
        let api_key_lookups = prometheus::IntCounter::new(
            "latchkey_api_key_lookups_total",
            "API keys looked up in the store (malformed keys are refused without one)",
        )
        .expect("valid metric");
        let api_key_lookup_batches = prometheus::IntCounter::new(
            "latchkey_api_key_lookup_batches_total",
            "Reads of the store that answered API-key lookups (lookups arriving together share one)",
        )
        .expect("valid metric");
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(tokens_issued.clone()),
            Box::new(api_key_lookups.clone()),
            Box::new(api_key_lookup_batches.clone()),
        ] {
            registry.register(m).expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            latency,
            tokens_issued,
            api_key_lookups,
            api_key_lookup_batches,
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

tokio::task_local! {
    /// The id of the request being handled: the handler runs inside `observe`'s future, so
    /// error renderers that never see the request (the `/v1` envelope) can still name it.
    static CURRENT_REQUEST_ID: String;
}

/// The current request's id (`req_…`), or an empty string outside a request.
pub fn current_request_id() -> String {
    CURRENT_REQUEST_ID
        .try_with(String::clone)
        .unwrap_or_default()
}

/// `fut` with the current request's id and tracing span, for work a request spawns as a task
/// of its own (which would otherwise lose both: its logs and audit events would name no
/// request).
pub fn carry<F: std::future::Future>(fut: F) -> impl std::future::Future<Output = F::Output> {
    CURRENT_REQUEST_ID.scope(
        current_request_id(),
        fut.instrument(tracing::Span::current()),
    )
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub async fn observe(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let start = Instant::now();
    let id = format!("req_{}", crate::crypto::random_base62(20));
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    // HEAD is GET without the body (RFC 9110 §9.3.2): routed as GET, while actix's encoder,
    // which saw HEAD on the wire, sends the headers (Content-Length included) and no body.
    if method == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    // actix accepts any method token; only the standard ones become label values.
    let method_label = match method.as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m,
        _ => "OTHER",
    };
    let span =
        tracing::info_span!("request", request_id = %id, method = %method, path = %req.path());
    let metrics = req.app_data::<web::Data<AppState>>().cloned();
    let result = CURRENT_REQUEST_ID
        .scope(id.clone(), next.call(req).instrument(span.clone()))
        .await;
    let mut res = result?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let status = res.status();
    if let Some(state) = metrics {
        let code = status.as_str();
        state
            .metrics
            .requests
            .with_label_values(&[&route, method_label, code])
            .inc();
        state
            .metrics
            .latency
            .with_label_values(&[&route, code])
            .observe(start.elapsed().as_secs_f64());
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    span.in_scope(|| {
        tracing::debug!(status = status.as_u16(), elapsed_us = start.elapsed().as_micros() as u64, route = %route, "request finished")
    });
    Ok(res)
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
