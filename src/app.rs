//! Wiring: the shared state, the actix-web application (one function that `serve` and the
//! tests both call), background tasks, and graceful shutdown.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header::HeaderValue;
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;

use crate::config::Config;
use crate::crypto::{self, Secrets};
use crate::keys::KeyRing;
use crate::oauth::{self, client_auth::JwksCache};
use crate::store::{self, Store};
use crate::telemetry::{self, Metrics};

pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub secrets: Arc<Secrets>,
    pub keys: KeyRing,
    pub metrics: Metrics,
    pub jwks_cache: JwksCache,
    /// `rate_limit_per_minute` of API keys, counted on this node.
    pub rate_limiter: crate::api::rate_limit::RateLimiter,
    /// Refused credentials recorded in the audit log in the last minute, on this node.
    pub refusals: crate::audit::Refusals,
    /// The RFC 8414 document, serialized once.
    pub metadata: String,
    /// The OpenID Provider document, serialized once.
    pub openid_metadata: String,
    pub token_endpoint: String,
    pub jwks_cache_control: HeaderValue,
}

/// Opens the store, runs migrations, checks the instance secret against the database, creates
/// the signing keys when there are none, and loads them.
pub fn prepare(config: Config) -> anyhow::Result<AppState> {
    let secrets = Arc::new(crypto::load_or_create_secret(
        config.secret.as_deref(),
        &config.secret_file,
    )?);
    let store = Store::open(&config.database_url, config.db_pool_size)?;
    let (applied, created) = store.setup(&secrets)?;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    for kid in created {
        tracing::info!(%kid, "created a signing key");
    }
    let keys = KeyRing::new();
    {
        let mut conn = store.conn().map_err(|e| anyhow::anyhow!("{e}"))?;
        let rows = store::keys::list_published(&mut conn, store::now())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        keys.replace(&rows, &secrets)?;
    }
    // Resource servers may cache the key set, but never past the pre-publication window:
    // a rotated-in key must reach them before it signs.
    let max_age = (config.key_prepublish.as_secs() / 2).min(300);
    let jwks_cache_control =
        HeaderValue::from_str(&format!("public, max-age={max_age}")).expect("ascii header");
    Ok(AppState {
        metadata: oauth::discovery::metadata_document(&config).to_string(),
        openid_metadata: oauth::discovery::openid_document(&config).to_string(),
        token_endpoint: config.endpoint("/oauth2/token"),
        jwks_cache_control,
        config,
        store,
        secrets,
        keys,
        metrics: Metrics::new(),
        jwks_cache: JwksCache::new()?,
        rate_limiter: crate::api::rate_limit::RateLimiter::new(),
        refusals: crate::audit::Refusals::default(),
    })
}

/// The routes and middleware of the whole application.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource!("/healthz", GET => healthz))
        .service(resource!("/readyz", GET => readyz))
        .service(resource!("/metrics", GET => telemetry::metrics))
        .configure(oauth::routes)
        .configure(crate::api::routes)
        .configure(crate::pages::routes);
}

/// Builds the HTTP server on an already bound listener (tests bind port 0).
pub fn server(state: web::Data<AppState>, listener: TcpListener) -> std::io::Result<Server> {
    let workers = state.config.workers;
    // Every store call runs on a worker's blocking pool and needs a pooled connection: threads
    // beyond the connections only queue on the pool's lock. tokio's default (up to 512
    // threads) put ~60 threads behind 8 SQLite connections under load, and the server spent
    // a third of its time switching between them.
    let blocking = (state.store.max_connections() / workers).max(1);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(telemetry::observe))
            .wrap(
                DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "no-referrer")),
            )
            .configure(configure)
            .default_service(web::to(not_found))
    })
    .workers(workers)
    .worker_max_blocking_threads(blocking)
    .listen(listener)?
    // actix treats SIGINT as a forced stop; Latchkey drains in-flight requests on both SIGINT
    // and SIGTERM, so it handles the signals itself (`serve`).
    .disable_signals()
    .shutdown_timeout(30)
    .run();
    Ok(server)
}

/// Background work of a node: re-read the signing keys (so rotations made by the CLI or
/// another node are seen), and purge expired revocations and used assertions.
pub fn spawn_background(state: web::Data<AppState>) -> Vec<actix_rt::task::JoinHandle<()>> {
    let reload_state = state.clone();
    let reload = actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(reload_state.config.key_reload_interval());
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = reload_keys(&reload_state).await {
                tracing::warn!(error = %e, "cannot reload signing keys; keeping the current set");
            }
        }
    });
    let purge = actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            match state
                .store
                .run(|c| {
                    let now = store::now();
                    Ok(store::tokens::purge_expired(c, now)?
                        + store::sessions::purge_expired(c, now, 15 * 60)?
                        + store::idempotency::purge(c, now)?
                        + store::audit::purge(c, now - crate::audit::RETENTION_SECS)?)
                })
                .await
            {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "expired token state purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot purge expired token state"),
            }
        }
    });
    vec![reload, purge]
}

pub async fn reload_keys(state: &web::Data<AppState>) -> anyhow::Result<()> {
    let rows = state
        .store
        .run(|c| store::keys::list_published(c, store::now()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let state = state.clone();
    // Parsing an RSA key is slow enough to keep off the worker thread.
    web::block(move || state.keys.replace(&rows, &state.secrets))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
}

/// `latchkey serve`: binds, serves, and on SIGTERM or Ctrl-C stops accepting, lets in-flight
/// requests finish (up to 30 s), and exits.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let bind = config.bind.clone();
    let issuer = config.issuer.clone();
    let database = format!("{:?}", config.database_url);
    for notice in &config.notices {
        tracing::warn!("{notice}");
    }
    Store::wait_until_reachable(&config.database_url, config.database_wait)?;
    let state = web::Data::new(prepare(config)?);
    let listener =
        TcpListener::bind(&bind).map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
    let server = server(state.clone(), listener)?;
    let handle = server.handle();
    let tasks = spawn_background(state);
    actix_rt::spawn(stop_on_signal(handle));
    tracing::info!(%bind, %issuer, %database, "latchkey serving");
    server.await?;
    for t in tasks {
        t.abort();
    }
    tracing::info!("latchkey stopped");
    Ok(())
}

async fn stop_on_signal(handle: ServerHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down: finishing in-flight requests");
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    handle.stop(true).await;
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the database answers and every algorithm has a key that signs now.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = {
        let store = state.store.clone();
        web::block(move || store.ping())
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    };
    let keys = state.keys.snapshot().complete(store::now());
    let body = json!({
        "status": if db && keys { "ready" } else { "unavailable" },
        "database": if db { "ok" } else { "unreachable" },
        "keys": if keys { "ok" } else { "missing" },
    });
    if db && keys {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// The `Allow` header of a resource taking `methods` (upper or lower case): HEAD goes with
/// GET, since `telemetry::observe` answers HEAD as GET without the body.
pub fn allow_header(methods: &[&str]) -> String {
    let mut allow: Vec<String> = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
    if allow.iter().any(|m| m == "GET") {
        allow.push("HEAD".into());
    }
    allow.join(", ")
}

/// A resource's answer to a method it does not take (`resource!`): 405 with `Allow`.
pub fn not_allowed(methods: &[&str]) -> actix_web::Route {
    let allow = allow_header(methods);
    web::to(move || {
        let allow = allow.clone();
        async move {
            HttpResponse::MethodNotAllowed()
                .insert_header((actix_web::http::header::ALLOW, allow.as_str()))
                .json(json!({
                    "error": "method_not_allowed",
                    "error_description": format!("this endpoint takes {allow}"),
                }))
        }
    })
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .json(json!({"error": "not_found", "error_description": "no such endpoint"}))
}
