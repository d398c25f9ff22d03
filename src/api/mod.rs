//! The management API (`/v1`, SPEC §4): what every route shares — the error envelope,
//! bearer authentication (`auth`), JSON bodies and paginated lists — and the routes.
//!
//! Every error is `{"error", "message", "request_id"}` (plus `field` for a 400 naming the
//! input at fault), rendered in one place (`ApiError`). The request id is the one the
//! telemetry middleware gave the request (`X-Request-Id`).

pub mod api_keys;
pub mod audit_events;
pub mod auth;
pub mod clients;
pub mod idempotency;
pub mod openapi;
pub mod organization;
pub mod rate_limit;
pub mod users;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::store::StoreError;
use crate::telemetry;

/// How long a rotated credential (an API key, a client secret) keeps working when the caller
/// does not say: one day.
pub const DEFAULT_GRACE: i64 = 86_400;
/// The longest grace period a rotation may give: 30 days.
pub const MAX_GRACE: i64 = 30 * 86_400;

/// A rotation's `grace_period_seconds`, checked: default one day, 0 to 30 days.
pub fn grace_period(asked: Option<i64>) -> Result<i64, ApiError> {
    match asked {
        None => Ok(DEFAULT_GRACE),
        Some(n) if (0..=MAX_GRACE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "grace_period_seconds",
            "grace_period_seconds must be 0 to 2592000 (30 days)",
        )),
    }
}

/// An optional whole number of a body (`grace_period_seconds`): a JSON integer, or a number
/// with no fraction such as `3600.0`, which JSON Schema's `integer` (the document's type for it)
/// also is. serde's `i64` took only the first and answered 400 to the second.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(n) = <Option<serde_json::Number> as serde::Deserialize>::deserialize(d)? else {
        return Ok(None);
    };
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= 9.007_199_254_740_992e15)
                .map(|f| f as i64)
        })
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("invalid value: {n}, expected a whole number")))
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    pub fn insufficient_scope(scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this route needs the {scope} scope, which the credential does not hold"),
        )
    }
    pub fn scope_grant_forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "scope_grant_forbidden", m)
    }
    pub fn environment_forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "environment_forbidden", m)
    }
    pub fn ip_not_allowed() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "ip_not_allowed",
            "requests from this IP address are not allowed for this credential",
        )
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }
    pub fn invalid(field: &str, m: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_string()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request", m)
        }
    }
    pub fn invalid_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", m)
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("this key is over its rate limit; retry in {retry_after} s"),
            )
        }
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", m)
    }
    pub fn unavailable() -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the server cannot reach its database; retry shortly",
            )
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => ApiError::invalid_request(m),
            StoreError::Conflict(m) => ApiError::conflict(m),
            e => {
                tracing::error!(error = %e, "store failure");
                ApiError::unavailable()
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({
            "error": self.code,
            "message": self.message,
            "request_id": telemetry::current_request_id(),
        });
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: a 401 names the scheme.
            res.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"latchkey\""),
            ));
        }
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.json(body)
    }
}

/// Reads a JSON body of at most 64 KiB into `T` (whose unknown fields are refused), whatever
/// the Content-Type. An empty body reads as `{}`. Errors name the field at fault.
pub async fn json_body<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    // The body must be JSON whatever its Content-Type says (`curl -d` sends a form type):
    // the syntax decides. A cross-site form cannot abuse this: /v1 takes only a bearer
    // credential in the Authorization header, which no form can set.
    let body = read_body(req.headers(), payload).await?;
    let bytes: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    // Every /v1 body is an object. serde would also fill a struct from an array, by position:
    // not a documented form, and one whose errors name internal types.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid_request(
            "the body must be a JSON object ({\"field\": value, …})",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::invalid_request(format!("the body is not valid JSON: {inner}"));
        }
        let message = inner.to_string();
        // An unknown, missing or repeated field is reported at its parent's path; name the
        // field itself. serde writes it between backticks, and a name sent may hold backticks
        // (or be empty), so it runs to the backtick before serde's own words.
        let named = message
            .strip_prefix("unknown field `")
            .and_then(|rest| {
                let end = rest
                    .rfind("`, expected ")
                    .or_else(|| rest.rfind("`, there are no fields"))?;
                Some(&rest[..end])
            })
            .or_else(|| {
                let rest = message
                    .strip_prefix("missing field `")
                    .or_else(|| message.strip_prefix("duplicate field `"))?;
                rest.rfind("` at line ")
                    .map(|end| &rest[..end])
                    .or_else(|| rest.strip_suffix('`'))
            });
        let field = match named {
            Some(name) => Some(name.to_string()),
            None if path == "." => None,
            None => Some(path),
        };
        let message = without_type_names(message.split(" at line ").next().unwrap_or(&message));
        match field {
            Some(field) => ApiError::invalid(&field, message),
            None => ApiError::invalid_request(message),
        }
    })?;
    // One JSON text and nothing after it (RFC 8259): `{…}{…}` or `{…} xyz` is not a body.
    de.end()
        .map_err(|e| ApiError::invalid_request(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// serde's "expected struct ClientBody" names a type of this program; the caller needs
/// "expected a JSON object".
fn without_type_names(message: &str) -> String {
    match message.find("struct ") {
        Some(at) => {
            let rest = &message[at + "struct ".len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            format!("{}a JSON object{}", &message[..at], &rest[end..])
        }
        None => message.to_string(),
    }
}

/// A request body (`oauth::form::read_limited`: at most 64 KiB, within 10 s) or its error in
/// the `/v1` envelope: 413, 400 or 408.
pub async fn read_body<E>(
    headers: &header::HeaderMap,
    payload: impl futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
) -> Result<web::Bytes, ApiError> {
    use crate::oauth::form::{read_limited, BodyError};
    read_limited(headers, payload).await.map_err(|e| match e {
        BodyError::TooLarge => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the body is over 64 KiB",
        ),
        BodyError::Unreadable => ApiError::invalid_request("the body could not be read"),
        BodyError::TimedOut => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request",
            "the body did not arrive within 10 s",
        ),
    })
}

/// `?limit=&starting_after=` of a list (SPEC §4): limit 1–100, default 10. (The struct is
/// the OpenAPI description; `from_request` reads the query.)
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// 1 to 100 (default 10).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The id of the last object of the previous page.
    pub starting_after: Option<String>,
}

impl Page {
    /// The limit and cursor; an unknown or repeated parameter is a 400 naming it.
    pub fn from_request(req: &HttpRequest) -> Result<(i64, Option<String>), ApiError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|e| {
                ApiError::invalid_request(format!("the query string cannot be read: {e}"))
            })?
            .into_inner();
        let (mut limit, mut after) = (None, None);
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "limit" => &mut limit,
                "starting_after" => &mut after,
                _ => {
                    let message = format!("unknown query parameter {name:?}");
                    return Err(ApiError::invalid(
                        &name,
                        message + ": a list takes limit and starting_after",
                    ));
                }
            };
            if slot.replace(value).is_some() {
                return Err(ApiError::invalid(
                    &name,
                    format!("{name} is given more than once"),
                ));
            }
        }
        // A NUL is in no id, and PostgreSQL refuses to compare a text holding one (the
        // lookup failed with 503).
        if after.as_deref().is_some_and(|a| a.contains('\0')) {
            return Err(ApiError::invalid(
                "starting_after",
                "starting_after is not an id: it holds a NUL character",
            ));
        }
        let limit = match limit.as_deref() {
            None => 10,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => return Err(ApiError::invalid("limit", "limit must be 1 to 100")),
            },
        };
        Ok((limit, after))
    }
}

/// A list route's answer: the page `fetch` reads (given `starting_after` and `limit`; `None`
/// when `starting_after` names no `what` of the organization) as `{"data", "has_more"}`.
pub async fn paged<T, F>(
    state: &crate::app::AppState,
    req: &HttpRequest,
    what: &str,
    fetch: F,
    view: impl Fn(&T) -> Value,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(
            &mut crate::store::AnyConnection,
            Option<&str>,
            i64,
        ) -> Result<Option<Vec<T>>, StoreError>
        + Send
        + 'static,
    T: Send + 'static,
{
    let (limit, after) = Page::from_request(req)?;
    let rows = state
        .store
        .run(move |c| fetch(c, after.as_deref(), limit))
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "starting_after",
                format!("starting_after names no {what} of this organization"),
            )
        })?;
    Ok(list_response(rows, limit, view))
}

/// `{"data": [...], "has_more": bool}` from up to `limit + 1` rows.
pub fn list_response<T>(mut rows: Vec<T>, limit: i64, view: impl Fn(&T) -> Value) -> HttpResponse {
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    ok_no_store(
        StatusCode::OK,
        json!({ "data": rows.iter().map(view).collect::<Vec<_>>(), "has_more": has_more }),
    )
}

/// A JSON response that no cache keeps (it may hold a secret shown once).
pub fn ok_no_store(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(body)
}

#[utoipa::path(
    get,
    path = "/v1/utils/authtest",
    tag = "utils",
    summary = "Check a credential",
    responses(
        (status = 200, description = "Check a credential", body = openapi::AuthTest),
    ),
    security(("bearer" = [])),
)]
async fn authtest(_caller: auth::Caller) -> HttpResponse {
    // A fixed answer, written as it goes out (no JSON value built per request: this route is
    // the key-verification benchmark's).
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .content_type("application/json")
        .body(r#"{"msg":"Auth successful"}"#)
}

async fn no_such_route() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("route"))
}

/// A `/v1` route's answer to a method it does not take: 405 in the envelope, with `Allow`.
fn method_not_allowed(methods: &[&str]) -> actix_web::Route {
    let allow = crate::app::allow_header(methods);
    web::to(move || {
        let allow = allow.clone();
        async move {
            let mut res = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                format!("this route takes {allow}"),
            )
            .error_response();
            if let Ok(v) = HeaderValue::from_str(&allow) {
                res.headers_mut().insert(header::ALLOW, v);
            }
            res
        }
    })
}

/// Declares the `/v1` routes once: `register` adds them to the scope, `ROUTES` lists them
/// (method, path) for the OpenAPI document's test, so neither can name a route the other lacks.
macro_rules! v1_routes {
    ($( $path:literal => { $( $method:ident => $handler:path ),+ $(,)? } ),+ $(,)?) => {
        /// Every `/v1` route as (method, path under `/v1`).
        pub const ROUTES: &[(&str, &str)] = &[ $( $( (stringify!($method), $path) ),+ ),+ ];

        fn register(scope: actix_web::Scope) -> actix_web::Scope {
            scope $(
                .service(
                    web::resource($path)
                        $( .route(web::$method().to($handler)) )+
                        .default_service(method_not_allowed(&[$( stringify!($method) ),+])),
                )
            )+
        }
    };
}

v1_routes! {
    "/utils/authtest" => { get => authtest },
    "/api-keys" => { post => api_keys::create, get => api_keys::list },
    "/api-keys/{id}" => { get => api_keys::get, delete => api_keys::delete },
    "/api-keys/{id}/rotate" => { post => api_keys::rotate },
    "/clients" => { post => clients::create, get => clients::list },
    "/clients/{id}" => {
        get => clients::get,
        patch => clients::update,
        delete => clients::delete,
    },
    "/clients/{id}/secret" => { post => clients::rotate_secret },
    "/users" => { post => users::create, get => users::list },
    "/users/{id}" => { get => users::get, delete => users::delete },
    "/organization" => { get => organization::get, patch => organization::update },
    "/audit-events" => { get => audit_events::list },
    "/openapi.json" => { get => openapi::document },
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        register(web::scope("/v1"))
            .default_service(web::to(no_such_route))
            .wrap(actix_web::middleware::from_fn(idempotency::layer)),
    );
}
