//! The browser pages (SPEC §3), rendered with askama from `templates/`: what they share —
//! security headers, CSRF tokens, the stored browser session, the client's address.
//!
//! Sessions are stored rows, not self-contained cookies: the cookie holds 256 random bits,
//! the store keeps their keyed hash, so logout and deleting a person end a session on every
//! node at the next request (a signed cookie could only expire). CSRF tokens are an HMAC of a
//! per-browser random cookie (and, once signed in, of the session), so a token taken from one
//! browser or session is worthless in another.

pub mod dashboard;
pub mod login;
pub mod rp_logout;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use crate::app::AppState;
use crate::crypto::{random_base62, Purpose};
use crate::store::{self, sessions::SessionRow, users::UserRow};

pub const SESSION_COOKIE: &str = "lk_session";
pub const CSRF_COOKIE: &str = "lk_csrf";

/// SPEC §3: no framing, nothing but our own stylesheet, no referrer, no caching.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource!("/", GET => login::home))
        .service(resource!(
            "/login",
            GET => login::login_page,
            POST => login::login_submit,
        ))
        .service(resource!(
            "/logout",
            GET => login::logout_page,
            POST => login::logout_submit,
        ))
        .service(resource!("/assets/latchkey.css", GET => stylesheet))
        .configure(dashboard::routes);
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../assets/latchkey.css"))
}

/// An HTML page with the headers every page carries.
pub fn page(status: StatusCode, template: &impl Template) -> HttpResponse {
    let body = match template.render() {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            return HttpResponse::InternalServerError().body("internal error");
        }
    };
    let mut res = HttpResponse::build(status);
    secure_page(&mut res);
    res.content_type("text/html; charset=utf-8").body(body)
}

pub fn secure_page(res: &mut actix_web::HttpResponseBuilder) {
    res.insert_header((
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    ))
    .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
    .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct Message<'a> {
    pub issuer: &'a str,
    pub heading: &'a str,
    pub message: &'a str,
    pub alert: bool,
}

pub fn message(state: &AppState, status: StatusCode, heading: &str, message: &str) -> HttpResponse {
    page(
        status,
        &Message {
            issuer: &state.config.issuer,
            heading,
            message,
            alert: status.is_client_error() || status.is_server_error(),
        },
    )
}

/// A cookie with the attributes of SPEC §3: HttpOnly, SameSite=Lax, Secure on https.
pub fn cookie(
    state: &AppState,
    name: &'static str,
    value: String,
    max_age: Option<i64>,
) -> Cookie<'static> {
    let mut c = Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.issuer.starts_with("https://"))
        .finish();
    if let Some(secs) = max_age {
        c.set_max_age(actix_web::cookie::time::Duration::seconds(secs));
    }
    c
}

/// The browser's CSRF cookie, and the cookie to set when it has none yet.
pub fn csrf_cookie(state: &AppState, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
    match req.cookie(CSRF_COOKIE) {
        Some(c)
            if c.value().len() == 43 && c.value().bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            (c.value().to_string(), None)
        }
        _ => {
            let value = random_base62(43);
            (value.clone(), Some(cookie(state, CSRF_COOKIE, value, None)))
        }
    }
}

fn csrf_input(browser: &str, session: Option<&str>) -> Vec<u8> {
    format!("csrf\0{browser}\0{}", session.unwrap_or("")).into_bytes()
}

pub fn csrf_token(state: &AppState, browser: &str, session: Option<&str>) -> String {
    state
        .secrets
        .hash(Purpose::Csrf, &csrf_input(browser, session))
}

/// Whether `token` was issued to this browser (and session), in constant time.
pub fn csrf_ok(
    state: &AppState,
    req: &HttpRequest,
    token: Option<&str>,
    session: Option<&str>,
) -> bool {
    let (Some(browser), Some(token)) = (req.cookie(CSRF_COOKIE), token) else {
        return false;
    };
    state
        .secrets
        .verify_hash(Purpose::Csrf, &csrf_input(browser.value(), session), token)
}

fn session_hash(state: &AppState, raw: &str) -> String {
    state
        .secrets
        .hash(Purpose::StoredSecret, format!("session\0{raw}").as_bytes())
}

/// The signed-in session of this browser: (raw cookie value, session, person).
pub async fn current_session(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Option<(String, SessionRow, UserRow)>, store::StoreError> {
    let Some(raw) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()) else {
        return Ok(None);
    };
    if raw.len() != 43 || !raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    let hash = session_hash(state, &raw);
    let found = state
        .store
        .run(move |c| store::sessions::find(c, &hash, store::now()))
        .await?;
    Ok(found.map(|(s, u)| (raw, s, u)))
}

/// Starts a new session for `user` (a fresh id on every login: no fixation); returns the
/// cookie to set.
pub async fn start_session(
    state: &AppState,
    user: &UserRow,
) -> Result<Cookie<'static>, store::StoreError> {
    let raw = random_base62(43);
    let now = store::now();
    let ttl = state.config.session_ttl.as_secs() as i64;
    let row = SessionRow {
        id_hash: session_hash(state, &raw),
        user_id: user.id.clone(),
        org_id: user.org_id.clone(),
        auth_time: now,
        created_at: now,
        expires_at: now + ttl,
    };
    state
        .store
        .run(move |c| store::sessions::insert(c, &row))
        .await?;
    Ok(cookie(state, SESSION_COOKIE, raw, Some(ttl)))
}

pub async fn end_session(state: &AppState, raw: &str) -> Result<(), store::StoreError> {
    let hash = session_hash(state, raw);
    state
        .store
        .run(move |c| store::sessions::delete(c, &hash))
        .await
}

/// The client's address: the connection's peer, or the first untrusted hop of
/// `X-Forwarded-For` when the peer is one of `LATCHKEY_TRUSTED_PROXIES`.
pub fn client_ip(state: &AppState, req: &HttpRequest) -> String {
    client_addr(state, req).map_or_else(|| "unknown".into(), |ip| ip.to_string())
}

/// `client_ip` as an address (`None` only when the connection has no peer address).
pub fn client_addr(state: &AppState, req: &HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip())?;
    let trusted = |ip: &std::net::IpAddr| {
        state
            .config
            .trusted_proxies
            .iter()
            .any(|net| net.contains(ip))
    };
    if !trusted(&peer) {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Walk from the nearest hop back: the first address that is not a trusted proxy.
    for hop in forwarded.rsplit(',').map(str::trim) {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) if trusted(&ip) => continue,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(peer)
}

/// A same-site path to go back to after login; anything else (another host, `//host`,
/// `/\host`, a scheme) becomes `/` — the login page is no open redirector.
pub fn safe_return_to(s: Option<&str>) -> String {
    match s {
        // Visible ASCII only (a control character would break the Location header), and long
        // enough for any authorization request the endpoint accepts.
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && p.len() <= 16 * 1024
                && p.bytes().all(|b| (0x21..=0x7e).contains(&b)) =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_return_to;

    #[test]
    fn return_to_stays_on_this_site() {
        assert_eq!(
            safe_return_to(Some("/oauth2/authorize?client_id=x")),
            "/oauth2/authorize?client_id=x"
        );
        for evil in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "evil",
            "/a\r\nSet-Cookie: x=1",
            "/\u{1}",
            "/a b",
        ] {
            assert_eq!(safe_return_to(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_return_to(None), "/");
    }
}
