//! The login page, the signed-in page and logout (SPEC §3).
//!
//! A failed login shows the same page and message whether the username or the password was
//! wrong, and costs the same Argon2id verification (an unknown username is checked against a
//! fixed hash). After 5 failures for one username or 20 from one address within 15 minutes,
//! attempts answer 429 with a `Retry-After` that doubles with each further failure.

use std::sync::OnceLock;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::{
    client_ip, csrf_cookie, csrf_ok, csrf_token, current_session, message, page, safe_return_to,
    SESSION_COOKIE,
};
use crate::app::AppState;
use crate::crypto::Purpose;
use crate::oauth::form::Form;
use crate::people;
use crate::store::sessions::Attempt;
use crate::store::{self, sessions, users};

const WINDOW: i64 = 15 * 60;
const PER_USER: i32 = 5;
const PER_IP: i32 = 20;
const FAILED: &str = "The username or password is not right.";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    issuer: &'a str,
    csrf_token: &'a str,
    return_to: &'a str,
    username: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    issuer: &'a str,
    csrf_token: &'a str,
    username: &'a str,
    display_name: &'a str,
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    issuer: &'a str,
    csrf_token: &'a str,
    username: &'a str,
}

fn unavailable(state: &AppState, e: store::StoreError) -> HttpResponse {
    tracing::error!(error = %e, "store failure on a page");
    message(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again shortly",
        "The service cannot reach its database right now.",
    )
}

async fn read_form(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Form, HttpResponse> {
    Form::read(req, payload).await.map_err(|e| {
        message(
            state,
            e.status,
            "That request could not be read",
            &e.description,
        )
    })
}

fn render_login(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    return_to: &str,
    username: &str,
    error: Option<&str>,
) -> HttpResponse {
    let (browser, set_cookie) = csrf_cookie(state, req);
    let token = csrf_token(state, &browser, None);
    let mut res = page(
        status,
        &LoginPage {
            issuer: &state.config.issuer,
            csrf_token: &token,
            return_to,
            username,
            error,
        },
    );
    if let Some(c) = set_cookie {
        let _ = res.add_cookie(&c);
    }
    res
}

pub async fn login_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let return_to = safe_return_to(
        query
            .iter()
            .find(|(k, _)| k == "return_to")
            .map(|(_, v)| v.as_str()),
    );
    render_login(&state, &req, StatusCode::OK, &return_to, "", None)
}

/// A hash no password matches, verified for unknown usernames so that they cost what a
/// wrong password costs.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| people::hash_password("latchkey-dummy-password").unwrap_or_default())
}

pub async fn login_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let form = match read_form(&state, &req, payload).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    if !csrf_ok(&state, &req, form.get("csrf_token"), None) {
        return message(
            &state,
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Go back, reload the sign-in page and try again.",
        );
    }
    let return_to = safe_return_to(form.get("return_to"));
    let username = form.get("username").unwrap_or("").trim().to_string();
    let password = form.get("password").unwrap_or("").to_string();
    let ip_key = format!("ip:{}", client_ip(&state, &req));
    // The account's throttle key never holds the username in clear.
    let user_key = format!(
        "user:{}",
        state.secrets.hash(
            Purpose::StoredSecret,
            format!("throttle\0{}", people::username_key(&username)).as_bytes()
        )
    );

    // Blocked already: refused without counting. Otherwise this attempt is counted before the
    // password is checked, so parallel guesses cannot all slip under the limit; an attempt
    // over the limit only because others are still being checked waits for their outcome
    // (a person signing in from several tabs at once), for up to 5 s.
    let keys = (user_key.clone(), ip_key.clone());
    let mut busy_rounds = 0;
    let counted = loop {
        let keys = keys.clone();
        let now = store::now();
        let attempt = state
            .store
            .run(move |c| {
                if let Some(wait) = sessions::blocked_for(c, &keys.0, now)?
                    .max(sessions::blocked_for(c, &keys.1, now)?)
                {
                    return Ok(Attempt::Blocked(wait));
                }
                match sessions::count_attempt(c, &keys.0, now, WINDOW, PER_USER)? {
                    Attempt::Go => {}
                    refused => return Ok(refused),
                }
                match sessions::count_attempt(c, &keys.1, now, WINDOW, PER_IP)? {
                    Attempt::Go => Ok(Attempt::Go),
                    refused => {
                        // The account's count is taken back: this attempt is not checked.
                        sessions::forgive(c, &keys.0, PER_USER)?;
                        Ok(refused)
                    }
                }
            })
            .await;
        match attempt {
            Ok(Attempt::Busy) if busy_rounds < 100 => {
                busy_rounds += 1;
                actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Ok(Attempt::Busy) => break Ok(Some(1)),
            Ok(Attempt::Blocked(wait)) => break Ok(Some(wait)),
            Ok(Attempt::Go) => break Ok(None),
            Err(e) => break Err(e),
        }
    };
    match counted {
        Ok(Some(wait)) => {
            let mut res = message(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                &format!("Too many failed sign-ins. Wait {wait} seconds before trying again."),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
            return res;
        }
        Ok(None) => {}
        Err(e) => return unavailable(&state, e),
    }

    // Look the person up and verify the password off the worker threads (Argon2id is slow).
    let store = state.store.clone();
    let lookup = username.clone();
    let verified = web::block(
        move || -> Result<(Option<users::UserRow>, bool), store::StoreError> {
            let mut conn = store.conn()?;
            let user = if lookup.is_empty() {
                None
            } else {
                users::find_by_username(&mut conn, &lookup)?
            };
            let stored = user
                .as_ref()
                .map_or(dummy_hash(), |u| u.password_hash.as_str());
            let ok = people::verify_password(&password, stored);
            Ok((user, ok))
        },
    )
    .await;
    let ip = super::client_addr(&state, &req);
    let (user, ok) = match verified {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return unavailable(&state, e),
        Err(_) => return unavailable(&state, store::StoreError::Pool("blocking pool".into())),
    };

    // The audit log names a person whose password was wrong, never what was typed as a
    // username that matched no one (people type passwords there).
    let user = match user {
        Some(user) if ok => Some(user),
        Some(user) => {
            let ctx = crate::audit::Context::request(&user.org_id, format!("user:{}", user.id), ip);
            crate::audit::record_later(
                &state,
                ctx.failure("login.failed", Some(&user.id), "wrong_password"),
            );
            None
        }
        None => None,
    };
    let Some(user) = user else {
        // Counted above; now settled as a failure.
        let keys = (user_key.clone(), ip_key.clone());
        let settled = state
            .store
            .run(move |c| {
                let now = store::now();
                sessions::settle_failure(c, &keys.0, now, PER_USER)?;
                sessions::settle_failure(c, &keys.1, now, PER_IP)
            })
            .await;
        if let Err(e) = settled {
            return unavailable(&state, e);
        }
        tracing::info!(ip = %client_ip(&state, &req), "login failed");
        return render_login(
            &state,
            &req,
            StatusCode::UNAUTHORIZED,
            &return_to,
            &username,
            Some(FAILED),
        );
    };

    // Success: a new session id (whatever cookie the browser brought is discarded: no
    // fixation), the account's failure count cleared.
    if let Ok(Some((old, _, _))) = current_session(&state, &req).await {
        let _ = super::end_session(&state, &old).await;
    }
    // The account's attempts are cleared; the address gets this one back.
    let _ = state
        .store
        .run(move |c| {
            sessions::clear(c, &user_key)?;
            sessions::forgive(c, &ip_key, PER_IP)
        })
        .await;
    let cookie = match super::start_session(&state, &user).await {
        Ok(c) => c,
        Err(e) => return unavailable(&state, e),
    };
    tracing::info!(user_id = %user.id, org_id = %user.org_id, "login succeeded");
    let ctx = crate::audit::Context::request(&user.org_id, format!("user:{}", user.id), ip);
    crate::audit::record_later(
        &state,
        ctx.event("login.succeeded", Some(&user.id), serde_json::json!({})),
    );
    let mut res = HttpResponse::SeeOther();
    super::secure_page(&mut res);
    res.insert_header((
        header::LOCATION,
        format!("{}{}", state.config.issuer, return_to),
    ));
    res.cookie(cookie);
    res.finish()
}

pub async fn home(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match current_session(&state, &req).await {
        Ok(Some((raw, _, user))) => {
            let (browser, set_cookie) = csrf_cookie(&state, &req);
            let token = csrf_token(&state, &browser, Some(&raw));
            let display = user.name.clone().unwrap_or_else(|| user.username.clone());
            let mut res = page(
                StatusCode::OK,
                &HomePage {
                    issuer: &state.config.issuer,
                    csrf_token: &token,
                    username: &user.username,
                    display_name: &display,
                },
            );
            if let Some(c) = set_cookie {
                let _ = res.add_cookie(&c);
            }
            res
        }
        Ok(None) => {
            let mut res = HttpResponse::SeeOther();
            super::secure_page(&mut res);
            res.insert_header((header::LOCATION, format!("{}/login", state.config.issuer)))
                .finish()
        }
        Err(e) => unavailable(&state, e),
    }
}

pub async fn logout_page(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let query = match Form::parse(req.query_string().as_bytes()) {
        Ok(q) => q,
        Err(e) => {
            return message(
                &state,
                StatusCode::BAD_REQUEST,
                "That request could not be read",
                &e.description,
            )
        }
    };
    if let Some(hint) = query.get("id_token_hint") {
        let asked = super::rp_logout::LogoutRequest {
            hint,
            client_id: query.get("client_id"),
            redirect: query.get("post_logout_redirect_uri"),
            state: query.get("state"),
        };
        return super::rp_logout::logout(&state, &req, asked).await;
    }
    confirm_logout(&state, &req).await
}

/// The CSRF-protected question "Sign out?" (SPEC §2: without a valid `id_token_hint`).
pub async fn confirm_logout(state: &AppState, req: &HttpRequest) -> HttpResponse {
    match current_session(state, req).await {
        Ok(Some((raw, _, user))) => {
            let (browser, set_cookie) = csrf_cookie(state, req);
            let token = csrf_token(state, &browser, Some(&raw));
            let mut res = page(
                StatusCode::OK,
                &LogoutPage {
                    issuer: &state.config.issuer,
                    csrf_token: &token,
                    username: &user.username,
                },
            );
            if let Some(c) = set_cookie {
                let _ = res.add_cookie(&c);
            }
            res
        }
        Ok(None) => message(
            state,
            StatusCode::OK,
            "Signed out",
            "You are not signed in.",
        ),
        Err(e) => unavailable(state, e),
    }
}

pub async fn logout_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let form = match read_form(&state, &req, payload).await {
        Ok(f) => f,
        Err(res) => return res,
    };
    if let Some(hint) = form.get("id_token_hint") {
        let asked = super::rp_logout::LogoutRequest {
            hint,
            client_id: form.get("client_id"),
            redirect: form.get("post_logout_redirect_uri"),
            state: form.get("state"),
        };
        return super::rp_logout::logout(&state, &req, asked).await;
    }
    let session = match current_session(&state, &req).await {
        Ok(s) => s,
        Err(e) => return unavailable(&state, e),
    };
    let Some((raw, _, _)) = session else {
        return message(
            &state,
            StatusCode::OK,
            "Signed out",
            "You are not signed in.",
        );
    };
    if !csrf_ok(&state, &req, form.get("csrf_token"), Some(&raw)) {
        return message(
            &state,
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Go back, reload the page and try again.",
        );
    }
    if let Err(e) = super::end_session(&state, &raw).await {
        return unavailable(&state, e);
    }
    let mut res = message(&state, StatusCode::OK, "Signed out", "You are signed out.");
    let _ = res.add_removal_cookie(&super::cookie(&state, SESSION_COOKIE, String::new(), None));
    res
}
