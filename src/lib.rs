//! Latchkey: an OAuth 2.0 / OpenID Connect authorization server and API-key service in one
//! binary. See ARCHITECTURE.md for the map; `cli::main` is where the binary starts.

/// `resource!(path, GET => handler, POST => other)`: a resource taking those methods and
/// answering any other with `405` and an `Allow` header that lists them (RFC 9110 §15.5.6).
/// HEAD is answered wherever GET is (`telemetry::observe`). The `/v1` routes have their own
/// declaration (`api::v1_routes!`), with the `/v1` error envelope.
macro_rules! resource {
    ($path:expr, $( $method:ident => $handler:expr ),+ $(,)?) => {
        actix_web::web::resource($path)
            $( .route(actix_web::web::method(actix_web::http::Method::$method).to($handler)) )+
            .default_service($crate::app::not_allowed(&[$( stringify!($method) ),+]))
    };
}

pub mod api;
pub mod apikey;
pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod keys;
pub mod oauth;
pub mod pages;
pub mod people;
pub mod store;
pub mod telemetry;

/// Unix seconds as an RFC 3339 UTC timestamp (`2026-11-23T04:09:33Z`).
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}
