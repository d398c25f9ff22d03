//! The API-key dashboard (SPEC §3): `/dashboard/api-keys`, where an organization's admin lists,
//! creates, rotates and revokes its keys in a browser.
//!
//! The rules are those of `/v1` (`api::api_keys::{create_key, rotate_key, revoke_key}`): the
//! signed-in admin acts as a `Caller` holding every scope, in the live environment, for their
//! own organization only (`Credential::Session`, actor `user:{id}`). A person who is not an
//! admin gets 403; every form carries the session-bound CSRF token. A new key is shown once,
//! in the response to the POST that made it (never in a URL or a cookie), with `no-store`.
//! The Copy button is `assets/dashboard.js` (CSP `script-src 'self'`); without JavaScript the
//! key sits in a readonly input to select by hand.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::{csrf_cookie, csrf_ok, csrf_token, current_session, message, page};
use crate::api::api_keys::{create_key, revoke_key, rotate_key, CreateKey};
use crate::api::auth::{Caller, Credential};
use crate::api::ApiError;
use crate::apikey::{Environment, Scopes, SCOPES};
use crate::app::AppState;
use crate::oauth::form::Form;
use crate::store::{self, api_keys::ApiKeyRow, users::UserRow};

pub const PATH: &str = "/dashboard/api-keys";

/// The pages' policy, plus our own script (the Copy button): still nothing inline.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Keys listed on one page (the `/v1` list pages through more).
const LIST_LIMIT: i64 = 500;

/// The grace periods offered for a rotation, in seconds (24 hours preselected).
const GRACE_CHOICES: [(i64, &str); 4] = [
    (0, "None: the old key stops now"),
    (3_600, "1 hour"),
    (86_400, "24 hours"),
    (604_800, "7 days"),
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource!(PATH, GET => list, POST => create))
        .service(resource!(format!("{PATH}/{{id}}/rotate"), POST => rotate))
        .service(resource!(format!("{PATH}/{{id}}/revoke"), POST => revoke))
        .service(resource!("/assets/dashboard.js", GET => script));
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../assets/dashboard.js"))
}

struct KeyLine {
    id: String,
    prefix: String,
    name: String,
    environment: String,
    scopes: String,
    last_used: String,
    expires: String,
    /// "Rotated to …": the key works until `expires`, then only its successor does.
    rotated: Option<String>,
    expired: bool,
}

struct ScopeChoice {
    name: &'static str,
    id: String,
    checked: bool,
}

struct GraceChoice {
    seconds: i64,
    label: &'static str,
    selected: bool,
}

/// A key shown once.
struct Shown {
    secret: String,
    name: String,
    prefix: String,
    rotated_from: Option<String>,
}

/// What the create form holds (kept after an error).
#[derive(Default)]
struct Entered {
    name: String,
    sandbox: bool,
    scopes: Vec<&'static str>,
    allowed_ips: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage<'a> {
    issuer: &'a str,
    csrf_token: &'a str,
    username: &'a str,
    keys: Vec<KeyLine>,
    more: bool,
    shown: Option<Shown>,
    notice: Option<&'a str>,
    /// An error of a rotate or revoke form (shown at the top).
    error: Option<String>,
    /// An error of the create form (shown beside it), and the field at fault.
    form_error: Option<String>,
    form_error_field: String,
    entered: Entered,
    scope_choices: Vec<ScopeChoice>,
    grace_choices: Vec<GraceChoice>,
}

/// What a request to the dashboard is answered with when it stops early.
type Refusal = HttpResponse;

fn unavailable(state: &AppState, e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "store failure on the dashboard");
    message(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again shortly",
        "The service cannot reach its database right now.",
    )
}

/// The signed-in admin (raw session cookie and person), or the answer for anyone else:
/// signed out → the login page (and back here); not an admin → 403.
async fn admin(state: &AppState, req: &HttpRequest) -> Result<(String, UserRow), Refusal> {
    match current_session(state, req).await {
        Ok(Some((raw, _, user))) if user.is_admin != 0 => {
            // The organization's allowlist holds here as on /v1: a stolen session or password
            // used from elsewhere changes nothing.
            let org = user.org_id.clone();
            let allowed = match state
                .store
                .run(move |c| crate::store::orgs::find_by_id(c, &org))
                .await
            {
                Ok(Some(o)) => o.allowed_ips,
                Ok(None) => String::new(),
                Err(e) => return Err(unavailable(state, e)),
            };
            let ip = super::client_addr(state, req);
            if !crate::apikey::stored_list_allows(&allowed, ip) {
                let actor = format!("user:{}", user.id);
                let ctx = crate::audit::Context::request(&user.org_id, actor.clone(), ip);
                crate::audit::refused(state, &ctx, &actor, "ip_not_allowed");
                return Err(message(
                    state,
                    StatusCode::FORBIDDEN,
                    "Not from this address",
                    "Your organization allows its API keys to be managed only from its own \
                     addresses.",
                ));
            }
            Ok((raw, user))
        }
        Ok(Some((_, _, user))) => {
            tracing::info!(user_id = %user.id, "dashboard refused: not an admin");
            Err(message(
                state,
                StatusCode::FORBIDDEN,
                "Administrators only",
                &format!(
                    "You are signed in as {}, who is not an administrator of the organization. \
                     Only an administrator can manage its API keys.",
                    user.username
                ),
            ))
        }
        Ok(None) => {
            let mut res = HttpResponse::SeeOther();
            super::secure_page(&mut res);
            Err(res
                .insert_header((
                    header::LOCATION,
                    format!("{}/login?return_to={PATH}", state.config.issuer),
                ))
                .finish())
        }
        Err(e) => Err(unavailable(state, e)),
    }
}

/// The admin acts with every scope, live, for their own organization (SPEC §3).
fn caller(state: &AppState, req: &HttpRequest, user: &UserRow) -> Caller {
    Caller {
        ip: super::client_addr(state, req),
        org_id: user.org_id.clone(),
        scopes: Scopes::all(),
        environment: Environment::Live,
        credential: Credential::Session {
            user_id: user.id.clone(),
        },
    }
}

/// Reads the form of a POST and checks its CSRF token against this browser and session.
async fn checked_form(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    raw: &str,
) -> Result<Form, Refusal> {
    let form = Form::read(req, payload).await.map_err(|e| {
        message(
            state,
            e.status,
            "That request could not be read",
            &e.description,
        )
    })?;
    if !csrf_ok(state, req, form.get("csrf_token"), Some(raw)) {
        return Err(message(
            state,
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Nothing was changed. Go back, reload the page and try again.",
        ));
    }
    Ok(form)
}

/// `2026-01-31 09:30 UTC`.
fn when(t: i64) -> String {
    let s = crate::rfc3339(t);
    match (s.get(..10), s.get(11..16)) {
        (Some(day), Some(time)) if s.len() >= 16 => format!("{day} {time} UTC"),
        _ => s,
    }
}

fn lines(rows: &[ApiKeyRow], now: i64) -> Vec<KeyLine> {
    rows.iter()
        .map(|r| {
            let scopes = Scopes::from_stored(&r.scopes);
            let rotated = r
                .rotated_to
                .as_ref()
                .map(|to| match rows.iter().find(|s| &s.id == to) {
                    Some(s) => format!("Rotated to {}…", s.key_prefix),
                    None => "Rotated".to_string(),
                });
            KeyLine {
                id: r.id.clone(),
                prefix: r.key_prefix.clone(),
                name: r.name.clone(),
                environment: r.environment.clone(),
                scopes: if scopes.is_all() {
                    "all scopes".into()
                } else {
                    scopes.names().join(", ")
                },
                last_used: r.last_used_at.map_or_else(|| "never".into(), when),
                expires: r.expires_at.map_or_else(|| "never".into(), when),
                rotated,
                expired: !r.is_live(now),
            }
        })
        .collect()
}

struct View<'a> {
    status: StatusCode,
    shown: Option<Shown>,
    notice: Option<&'a str>,
    error: Option<String>,
    form_error: Option<ApiError>,
    entered: Entered,
}

impl Default for View<'_> {
    fn default() -> Self {
        View {
            status: StatusCode::OK,
            shown: None,
            notice: None,
            error: None,
            form_error: None,
            entered: Entered {
                scopes: vec!["read"],
                ..Entered::default()
            },
        }
    }
}

/// The page: the organization's unrevoked keys, the create form, and what `view` adds.
async fn render(
    state: &AppState,
    req: &HttpRequest,
    raw: &str,
    user: &UserRow,
    view: View<'_>,
) -> HttpResponse {
    let org = user.org_id.clone();
    let rows = match state
        .store
        .run(move |c| store::api_keys::list(c, &org, false, None, LIST_LIMIT))
        .await
    {
        Ok(rows) => rows.unwrap_or_default(),
        Err(e) => return unavailable(state, e),
    };
    let more = rows.len() as i64 > LIST_LIMIT;
    let rows = &rows[..rows.len().min(LIST_LIMIT as usize)];
    let (browser, set_cookie) = csrf_cookie(state, req);
    let token = csrf_token(state, &browser, Some(raw));
    let scope_choices = SCOPES
        .iter()
        .copied()
        .map(|s| ScopeChoice {
            name: s,
            id: format!("scope-{}", s.replace(':', "-")),
            checked: view.entered.scopes.contains(&s),
        })
        .collect();
    let grace_choices = GRACE_CHOICES
        .iter()
        .map(|&(seconds, label)| GraceChoice {
            seconds,
            label,
            selected: seconds == crate::api::DEFAULT_GRACE,
        })
        .collect();
    let (form_error, form_error_field) = match view.form_error {
        Some(e) => (Some(e.message), e.field.unwrap_or_default()),
        None => (None, String::new()),
    };
    let mut res = page(
        view.status,
        &DashboardPage {
            issuer: &state.config.issuer,
            csrf_token: &token,
            username: &user.username,
            keys: lines(rows, store::now()),
            more,
            shown: view.shown,
            notice: view.notice,
            error: view.error,
            form_error,
            form_error_field,
            entered: view.entered,
            scope_choices,
            grace_choices,
        },
    );
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    if let Some(c) = set_cookie {
        let _ = res.add_cookie(&c);
    }
    res
}

/// A rotate or revoke that the rules refused: another organization's key (or a revoked one)
/// is a 404 page; a conflict or bad input is shown on the dashboard; nothing changed.
async fn refused(
    state: &AppState,
    req: &HttpRequest,
    raw: &str,
    user: &UserRow,
    e: ApiError,
) -> HttpResponse {
    match e.status {
        StatusCode::NOT_FOUND => message(
            state,
            StatusCode::NOT_FOUND,
            "No such key",
            "Your organization has no such API key (it may have been revoked). Nothing was changed.",
        ),
        StatusCode::SERVICE_UNAVAILABLE => unavailable(state, e),
        status if status.is_client_error() => {
            let view = View {
                status,
                error: Some(e.message),
                ..View::default()
            };
            render(state, req, raw, user, view).await
        }
        _ => unavailable(state, e),
    }
}

pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let (raw, user) = match admin(&state, &req).await {
        Ok(a) => a,
        Err(res) => return res,
    };
    let notice = query
        .iter()
        .any(|(k, v)| k == "revoked" && v == "1")
        .then_some("The key was revoked: it no longer authenticates.");
    let view = View {
        notice,
        ..View::default()
    };
    render(&state, &req, &raw, &user, view).await
}

/// `2027-01-31` (an `<input type=date>`) → the start of that day in UTC, as RFC 3339.
fn expiry(s: &str) -> Result<Option<String>, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let parts: Vec<&str> = s.split('-').collect();
    let valid = match parts[..] {
        [y, m, d]
            if y.len() == 4
                && m.len() == 2
                && d.len() == 2
                && s.bytes().all(|b| b.is_ascii_digit() || b == b'-') =>
        {
            let (y, m, d) = (
                y.parse::<i32>().unwrap_or(0),
                m.parse::<u8>().unwrap_or(0),
                d.parse::<u8>().unwrap_or(0),
            );
            time::Month::try_from(m)
                .ok()
                .and_then(|m| time::Date::from_calendar_date(y, m, d).ok())
                .is_some()
        }
        _ => false,
    };
    if valid {
        Ok(Some(format!("{s}T00:00:00Z")))
    } else {
        Err(ApiError::invalid(
            "expires_at",
            "the expiry must be a date such as 2027-01-31",
        ))
    }
}

pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (raw, user) = match admin(&state, &req).await {
        Ok(a) => a,
        Err(res) => return res,
    };
    let form = match checked_form(&state, &req, payload, &raw).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let entered = Entered {
        name: form.get("name").unwrap_or("").to_string(),
        sandbox: form.get("environment") == Some("sandbox"),
        scopes: SCOPES
            .iter()
            .copied()
            .filter(|s| form.get(&format!("scope_{s}")).is_some())
            .collect(),
        allowed_ips: form.get("allowed_ips").unwrap_or("").to_string(),
        expires: form.get("expires_at").unwrap_or("").to_string(),
    };
    let body = expiry(&entered.expires).map(|expires_at| CreateKey {
        name: entered.name.clone(),
        environment: form.get("environment").map(str::to_string),
        scopes: entered.scopes.iter().map(|s| s.to_string()).collect(),
        allowed_ips: entered
            .allowed_ips
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        expires_at,
        rate_limit_per_minute: None,
        metadata: None,
    });
    let created = match body {
        Ok(body) => create_key(&state, &caller(&state, &req, &user), body).await,
        Err(e) => Err(e),
    };
    let view = match created {
        Ok((row, secret)) => View {
            shown: Some(Shown {
                secret,
                name: row.name,
                prefix: row.key_prefix,
                rotated_from: None,
            }),
            ..View::default()
        },
        Err(e) if e.status == StatusCode::BAD_REQUEST => View {
            status: StatusCode::BAD_REQUEST,
            form_error: Some(e),
            entered,
            ..View::default()
        },
        Err(e) => return refused(&state, &req, &raw, &user, e).await,
    };
    render(&state, &req, &raw, &user, view).await
}

pub async fn rotate(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let (raw, user) = match admin(&state, &req).await {
        Ok(a) => a,
        Err(res) => return res,
    };
    let form = match checked_form(&state, &req, payload, &raw).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    let grace = match form.get("grace_period_seconds").map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            let e = ApiError::invalid(
                "grace_period_seconds",
                "the grace period must be a number of seconds",
            );
            return refused(&state, &req, &raw, &user, e).await;
        }
    };
    let caller = caller(&state, &req, &user);
    let id = path.into_inner();
    // The old key's prefix, to say what was rotated (read under the same organization wall).
    let (org, old_id) = (user.org_id.clone(), id.clone());
    let old_prefix = state
        .store
        .run(move |c| store::api_keys::get(c, &org, &old_id))
        .await
        .ok()
        .flatten()
        .map(|r| r.key_prefix);
    match rotate_key(&state, &caller, id, grace).await {
        Ok((row, secret)) => {
            let view = View {
                shown: Some(Shown {
                    secret,
                    name: row.name,
                    prefix: row.key_prefix,
                    rotated_from: old_prefix,
                }),
                ..View::default()
            };
            render(&state, &req, &raw, &user, view).await
        }
        Err(e) => refused(&state, &req, &raw, &user, e).await,
    }
}

pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let (raw, user) = match admin(&state, &req).await {
        Ok(a) => a,
        Err(res) => return res,
    };
    if let Err(res) = checked_form(&state, &req, payload, &raw).await {
        return res;
    }
    match revoke_key(&state, &caller(&state, &req, &user), path.into_inner()).await {
        // POST-redirect-GET: nothing secret to show.
        Ok(_) => {
            let mut res = HttpResponse::SeeOther();
            super::secure_page(&mut res);
            res.insert_header((
                header::LOCATION,
                format!("{}{PATH}?revoked=1", state.config.issuer),
            ))
            .finish()
        }
        Err(e) => refused(&state, &req, &raw, &user, e).await,
    }
}
