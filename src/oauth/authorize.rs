//! `GET/POST /oauth2/authorize` (RFC 6749 §4.1, RFC 7636, RFC 9207) and the consent page.
//!
//! Until the client and its redirect URI are known good, every problem is shown on an error
//! page and nothing redirects (an open redirector otherwise); after that, errors go back to
//! the client as RFC 6749 §4.1.2.1 says, with `state` and `iss` on every response.
//!
//! Written here rather than with oxide-auth: its authorization flow has no `iss` response
//! parameter (RFC 9207), no `prompt`/`max_age`, no per-organization login and no native
//! loopback port rule, and its Registrar/Authorizer would have to be wrapped around the store
//! for every one of those; the rules below are each a few lines over the store we have.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::client::{Client, GrantType};
use super::form::Form;
use super::pkce::CodeChallenge;
use super::redirect::match_redirect_uri;
use super::scope::ScopeSet;
use crate::app::AppState;
use crate::crypto::{random_base62, Purpose};
use crate::pages::{csrf_cookie, csrf_ok, csrf_token, current_session, message, page};
use crate::store::{self, clients, grants};

/// SPEC §2: codes live 60 seconds.
const CODE_TTL: i64 = 60;

/// A validated authorization request.
struct AuthRequest {
    client: Client,
    redirect_uri: String,
    state: Option<String>,
    scope: ScopeSet,
    challenge: CodeChallenge,
    nonce: Option<String>,
    prompt_none: bool,
    prompt_login: bool,
    prompt_consent: bool,
    max_age: Option<i64>,
}

enum Refusal {
    /// Shown on the error page: the client or redirect URI is not known good.
    Page(String),
    /// Sent back to the client.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

pub fn keyed_code_hash(state: &AppState, code: &str) -> String {
    state
        .secrets
        .hash(Purpose::StoredSecret, format!("code\0{code}").as_bytes())
}

/// `redirect_uri` with `params` and `iss` added to its query (RFC 9207 §2).
fn redirect_to(state: &AppState, redirect_uri: &str, params: &[(&str, &str)]) -> HttpResponse {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return message(
            state,
            StatusCode::BAD_REQUEST,
            "Cannot continue",
            "The application's redirect URI is not valid.",
        );
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        q.append_pair("iss", &state.config.issuer);
    }
    let mut res = HttpResponse::SeeOther();
    crate::pages::secure_page(&mut res);
    res.insert_header((header::LOCATION, url.to_string()))
        .finish()
}

fn refuse(state: &AppState, r: Refusal) -> HttpResponse {
    match r {
        Refusal::Page(why) => message(
            state,
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            &why,
        ),
        Refusal::Redirect {
            redirect_uri,
            state: st,
            error,
            description,
        } => {
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &st {
                params.push(("state", s.as_str()));
            }
            redirect_to(state, &redirect_uri, &params)
        }
    }
}

/// Checks a request against its client (RFC 6749 §4.1.1, §4.1.2.1; RFC 7636; OIDC §3.1.2.1).
fn validate(form: &Form, client: Option<Client>) -> Result<AuthRequest, Refusal> {
    if form.get("client_id").is_none() {
        return Err(Refusal::Page("The request names no client_id.".into()));
    }
    let client = client
        .ok_or_else(|| Refusal::Page("No application is registered with this client_id.".into()))?;
    let requested = form
        .get("redirect_uri")
        .ok_or_else(|| Refusal::Page("The request names no redirect_uri.".into()))?;
    let redirect_uri = match_redirect_uri(&client.redirect_uris, requested, client.native)
        .ok_or_else(|| {
            Refusal::Page("The redirect_uri is not registered for this application.".into())
        })?;
    // Back to the URI the client asked for (a native client's port included).
    let redirect_uri = if client.native {
        requested.to_string()
    } else {
        redirect_uri.to_string()
    };
    let state = form.get("state").map(str::to_string);
    let back = |error: &'static str, description: &str| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description: description.to_string(),
    };
    if !client.may_use(GrantType::AuthorizationCode) {
        return Err(back(
            "unauthorized_client",
            "this client may not use the authorization code flow",
        ));
    }
    match form.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(back(
                "unsupported_response_type",
                "only response_type=code is supported",
            ))
        }
        None => return Err(back("invalid_request", "response_type is required")),
    }
    // OIDC Core §6: request objects are not supported, and saying so beats ignoring one
    // (discovery says `request_parameter_supported: false`, likewise for request_uri).
    if form.get("request").is_some() {
        return Err(back(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if form.get("request_uri").is_some() {
        return Err(back(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    // Only the query response mode exists here: a client asking for another would look for
    // the code where it is not.
    if form.get("response_mode").is_some_and(|m| m != "query") {
        return Err(back(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    // RFC 8707 §2: a resource the client did not register is refused here, not only when
    // the code is redeemed.
    super::flow_client_credentials::registered_resources(&client, &form.all("resource"))
        .map_err(|e| back("invalid_target", &e))?;
    let challenge = CodeChallenge::from_request(
        form.get("code_challenge"),
        form.get("code_challenge_method"),
    )
    .map_err(|e| back("invalid_request", e))?;
    let scope = match form.get("scope") {
        None => client.scopes.clone(),
        Some(s) => {
            let scope = ScopeSet::parse(s).map_err(|e| back("invalid_scope", &e))?;
            let excess = scope.excess(&client.scopes);
            if !excess.is_empty() {
                return Err(back(
                    "invalid_scope",
                    &format!(
                        "scope {} is not registered for this client",
                        excess.join(" ")
                    ),
                ));
            }
            scope
        }
    };
    let prompts: Vec<&str> = form
        .get("prompt")
        .map(|p| p.split(' ').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    if prompts
        .iter()
        .any(|p| !matches!(*p, "none" | "login" | "consent"))
    {
        return Err(back(
            "invalid_request",
            "prompt must be none, login or consent",
        ));
    }
    let prompt_none = prompts.contains(&"none");
    if prompt_none && prompts.len() > 1 {
        return Err(back(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        ));
    }
    let max_age =
        match form.get("max_age") {
            None => None,
            Some(m) => Some(m.parse::<i64>().ok().filter(|m| *m >= 0).ok_or_else(|| {
                back("invalid_request", "max_age must be a non-negative integer")
            })?),
        };
    Ok(AuthRequest {
        nonce: form.get("nonce").map(str::to_string),
        prompt_login: prompts.contains(&"login"),
        prompt_consent: prompts.contains(&"consent"),
        prompt_none,
        max_age,
        client,
        redirect_uri,
        state,
        scope,
        challenge,
    })
}

fn back(req: &AuthRequest, error: &'static str, description: &str) -> Refusal {
    Refusal::Redirect {
        redirect_uri: req.redirect_uri.clone(),
        state: req.state.clone(),
        error,
        description: description.to_string(),
    }
}

async fn load_client(state: &AppState, form: &Form) -> Result<Option<Client>, HttpResponse> {
    let Some(id) = form.get("client_id").map(str::to_string) else {
        return Ok(None);
    };
    state
        .store
        .run(move |c| clients::find(c, &id))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "store failure at authorize");
            message(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "The service cannot reach its database right now.",
            )
        })
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    issuer: &'a str,
    app: &'a str,
    username: &'a str,
    scopes: Vec<String>,
    csrf_token: &'a str,
    params: Vec<(&'static str, String)>,
}

/// A scope in plain words for the consent page.
pub fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "Confirm who you are".into(),
        "profile" => "See your name and username".into(),
        "email" => "See your email address".into(),
        "offline_access" => "Stay connected when you are not using it".into(),
        "read" => "Read your data".into(),
        "write" => "Create and change your data".into(),
        "delete" => "Delete your data".into(),
        other => format!("Use the \u{201c}{other}\u{201d} permission"),
    }
}

pub async fn authorize_get(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let form = match Form::parse(req.query_string().as_bytes()) {
        Ok(f) => f,
        Err(e) => {
            return message(
                &state,
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                &e.description,
            )
        }
    };
    authorization_request(state, req, form).await
}

/// An authorization request, from the query (GET) or a form body (POST, OIDC Core §3.1.2.1).
async fn authorization_request(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Form,
) -> HttpResponse {
    let client = match load_client(&state, &form).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let request = match validate(&form, client) {
        Ok(r) => r,
        Err(r) => return refuse(&state, r),
    };
    let session = match current_session(&state, &req).await {
        Ok(s) => s,
        Err(_) => {
            return message(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "The service cannot reach its database right now.",
            )
        }
    };
    let now = store::now();
    let fresh_enough = |auth_time: i64| request.max_age.is_none_or(|m| now - auth_time <= m);
    let session = session.filter(|(_, s, _)| !request.prompt_login && fresh_enough(s.auth_time));
    let Some((raw, session, user)) = session else {
        if request.prompt_none {
            return refuse(
                &state,
                back(&request, "login_required", "the person is not signed in"),
            );
        }
        // Back here after login. That login satisfies `prompt=login` and `max_age`, so they are
        // dropped from the way back (else a small max_age could loop); other prompt values
        // (consent) stay.
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(req.query_string().as_bytes())
                .filter(|(k, _)| k != "max_age")
                .filter_map(|(k, v)| {
                    if k == "prompt" {
                        let rest: Vec<&str> = v
                            .split(' ')
                            .filter(|p| !p.is_empty() && *p != "login")
                            .collect();
                        return (!rest.is_empty()).then(|| (k.into_owned(), rest.join(" ")));
                    }
                    Some((k.into_owned(), v.into_owned()))
                })
                .collect();
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let return_to = format!("/oauth2/authorize?{query}");
        let login = format!(
            "{}/login?{}",
            state.config.issuer,
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return_to", &return_to)
                .finish()
        );
        let mut res = HttpResponse::SeeOther();
        crate::pages::secure_page(&mut res);
        return res.insert_header((header::LOCATION, login)).finish();
    };
    // SPEC §2: a client logs in only people of its own organization.
    if user.org_id != request.client.org_id {
        if request.prompt_none {
            return refuse(
                &state,
                back(
                    &request,
                    "login_required",
                    "the signed-in person cannot use this client",
                ),
            );
        }
        // The client and redirect URI are good, so this goes back to the client (SPEC §2).
        return refuse(
            &state,
            back(
                &request,
                "access_denied",
                "the signed-in person is not of this client's organization",
            ),
        );
    }
    let request = for_person(request, &user);
    if needs_consent(&state, &request, &user.id).await {
        if request.prompt_none {
            return refuse(
                &state,
                back(
                    &request,
                    "consent_required",
                    "the person has not consented to this client",
                ),
            );
        }
        return consent_page(&state, &req, &request, &raw, &user.username);
    }
    issue_code(&state, &request, &session.user_id, session.auth_time).await
}

/// SPEC §4: a person who is not an admin of the organization never holds `admin`, the
/// `*:manage` scopes or `audit:read`, whatever the client asks for. They are dropped from the
/// request before consent, so the consent page, the code, the tokens, their `scope` and
/// introspection all say what the person really holds. (`/v1` drops them again when a token is
/// used, for a person made non-admin after it was issued.)
fn for_person(mut request: AuthRequest, user: &crate::store::users::UserRow) -> AuthRequest {
    if user.is_admin == 0 {
        let admin_only = crate::apikey::Scopes::ADMIN_ONLY.names();
        request.scope = request.scope.without(&admin_only);
    }
    request
}

async fn needs_consent(state: &AppState, request: &AuthRequest, user_id: &str) -> bool {
    if request.client.skip_consent {
        return false;
    }
    if request.prompt_consent {
        return true;
    }
    let (user, client) = (user_id.to_string(), request.client.client_id.clone());
    match state
        .store
        .run(move |c| grants::consent(c, &user, &client))
        .await
    {
        Ok(Some(granted)) => ScopeSet::parse(&granted)
            .map(|g| !request.scope.is_subset(&g))
            .unwrap_or(true),
        _ => true,
    }
}

fn consent_page(
    state: &AppState,
    req: &HttpRequest,
    request: &AuthRequest,
    session_raw: &str,
    username: &str,
) -> HttpResponse {
    let (browser, set_cookie) = csrf_cookie(state, req);
    let token = csrf_token(state, &browser, Some(session_raw));
    let mut params: Vec<(&'static str, String)> = vec![
        ("client_id", request.client.client_id.clone()),
        ("redirect_uri", request.redirect_uri.clone()),
        ("response_type", "code".into()),
        ("scope", request.scope.to_string()),
        ("code_challenge", request.challenge.as_str().to_string()),
        ("code_challenge_method", "S256".into()),
    ];
    if let Some(s) = &request.state {
        params.push(("state", s.clone()));
    }
    if let Some(n) = &request.nonce {
        params.push(("nonce", n.clone()));
    }
    let scopes = request.scope.iter().map(describe_scope).collect();
    let mut res = page(
        StatusCode::OK,
        &ConsentPage {
            issuer: &state.config.issuer,
            app: &request.client.name,
            username,
            scopes,
            csrf_token: &token,
            params,
        },
    );
    if let Some(c) = set_cookie {
        let _ = res.add_cookie(&c);
    }
    res
}

/// A POST is the consent page's decision (SPEC §3: allow redirects with a code, deny with
/// `access_denied`) when it carries `decision`; otherwise it is an authorization request sent
/// as a form (OIDC Core §3.1.2.1: GET and POST both), handled as the GET would be.
pub async fn authorize_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let form = match Form::read(&req, payload).await {
        Ok(f) => f,
        Err(e) => {
            return message(
                &state,
                e.status,
                "That request could not be read",
                &e.description,
            )
        }
    };
    if form.get("decision").is_none() {
        return authorization_request(state, req, form).await;
    }
    let Ok(Some((raw, session, user))) = current_session(&state, &req).await else {
        return message(
            &state,
            StatusCode::FORBIDDEN,
            "Your session has ended",
            "Sign in again from the application.",
        );
    };
    if !csrf_ok(&state, &req, form.get("csrf_token"), Some(&raw)) {
        return message(
            &state,
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Go back to the application and start again.",
        );
    }
    let client = match load_client(&state, &form).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let request = match validate(&form, client) {
        Ok(r) => r,
        Err(r) => return refuse(&state, r),
    };
    if user.org_id != request.client.org_id {
        return refuse(
            &state,
            back(
                &request,
                "access_denied",
                "the signed-in person is not of this client's organization",
            ),
        );
    }
    let request = for_person(request, &user);
    match form.get("decision") {
        Some("deny") => {
            tracing::info!(user_id = %user.id, client_id = %request.client.client_id, "consent denied");
            let ctx = crate::audit::Context::request(
                &user.org_id,
                format!("user:{}", user.id),
                crate::pages::client_addr(&state, &req),
            );
            crate::audit::record_later(
                &state,
                ctx.event(
                    "consent.denied",
                    Some(&request.client.client_id),
                    serde_json::json!({"scope": request.scope.to_string()}),
                ),
            );
            refuse(
                &state,
                back(&request, "access_denied", "the person denied the request"),
            )
        }
        Some("allow") => {
            let (uid, cid) = (user.id.clone(), request.client.client_id.clone());
            let scope = request.scope.clone();
            let now = store::now();
            let event = crate::audit::Context::request(
                &user.org_id,
                format!("user:{}", user.id),
                crate::pages::client_addr(&state, &req),
            )
            .event(
                "consent.granted",
                Some(&request.client.client_id),
                serde_json::json!({"scope": request.scope.to_string()}),
            );
            let saved = state
                .store
                .run(move |c| {
                    let merged = match grants::consent(c, &uid, &cid)? {
                        Some(old) => format!("{old} {scope}"),
                        None => scope.to_string(),
                    };
                    let merged = ScopeSet::parse(&merged)
                        .map(|s| s.to_string())
                        .unwrap_or(merged);
                    grants::save_consent(c, &uid, &cid, &merged, now)?;
                    store::audit::insert(c, &event).map(|_| ())
                })
                .await;
            if saved.is_err() {
                return message(
                    &state,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again shortly",
                    "The service cannot reach its database right now.",
                );
            }
            tracing::info!(user_id = %user.id, client_id = %request.client.client_id, scope = %request.scope, "consent granted");
            issue_code(&state, &request, &session.user_id, session.auth_time).await
        }
        _ => message(
            &state,
            StatusCode::BAD_REQUEST,
            "That request could not be read",
            "Choose allow or deny.",
        ),
    }
}

async fn issue_code(
    state: &AppState,
    request: &AuthRequest,
    user_id: &str,
    auth_time: i64,
) -> HttpResponse {
    let code = random_base62(43);
    let now = store::now();
    let row = grants::CodeRow {
        code_hash: keyed_code_hash(state, &code),
        client_id: request.client.client_id.clone(),
        org_id: request.client.org_id.clone(),
        user_id: user_id.to_string(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.challenge.as_str().to_string(),
        nonce: request.nonce.clone(),
        scope: request.scope.to_string(),
        auth_time,
        expires_at: now + CODE_TTL,
        used_at: None,
        family_id: None,
        access_jti: None,
        access_exp: None,
    };
    if state
        .store
        .run(move |c| grants::insert_code(c, &row))
        .await
        .is_err()
    {
        return message(
            state,
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again shortly",
            "The service cannot reach its database right now.",
        );
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = &request.state {
        params.push(("state", s.as_str()));
    }
    redirect_to(state, &request.redirect_uri, &params)
}
