//! The login page and the browser session over real HTTP with a cookie jar, from the
//! attacker's side: CSRF, session fixation, throttling, open redirects, framing, Host.

mod common;

use common::*;

async fn server_with_people() -> TestServer {
    let server = TestServer::start().await;
    server.org("acme");
    for (user, pw) in [("ada", "analytical engine"), ("grace", "cobol forever")] {
        server.person("acme", user, pw, &[]);
    }
    server
}

#[actix_web::test]
async fn the_login_page_is_a_plain_labelled_form_that_refuses_to_be_framed() {
    let server = server_with_people().await;
    let (status, headers, html) = Browser::new().get(&server.url("/login")).await;
    assert_eq!(status, 200);
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    let csrf = set_cookie(&headers, "lk_csrf").expect("a CSRF cookie");
    assert!(
        csrf.contains("HttpOnly") && csrf.contains("SameSite=Lax"),
        "{csrf}"
    );
    assert!(html.contains(r#"<input id="username" name="username""#));
    assert!(html.contains(r#"name="password" type="password""#));
    assert!(
        html.contains(r#"<label for="username">"#) && html.contains(r#"<label for="password">"#),
        "labelled for screen readers"
    );
    assert!(html.contains(r#"<button type="submit">"#));
    assert!(!html.contains("<script"), "no JavaScript needed");
    let css = http()
        .get(server.url("/assets/latchkey.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
}

#[actix_web::test]
async fn a_person_logs_in_with_a_new_session_and_logs_out() {
    let server = server_with_people().await;
    let browser = Browser::new();
    let (status, headers, _) = browser.login(&server, "ADA", "analytical engine").await;
    assert_eq!(status, 303, "usernames are case-insensitive");
    assert_eq!(headers["location"], format!("{}/", server.issuer));
    let session = set_cookie(&headers, "lk_session").expect("a new session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    let raw = session.split(';').next().unwrap().to_string();

    let (status, _, html) = browser.get(&server.url("/")).await;
    assert_eq!(status, 200);
    assert!(html.contains("signed in as <strong>ada</strong>"), "{html}");

    // Logout needs this session's CSRF token: a missing or login-page token is refused.
    let (status, _, _) = browser
        .post(&server.url("/logout"), &[("csrf_token", "nope")])
        .await;
    assert_eq!(status, 403);
    let token = browser.login_token(&server).await;
    assert_eq!(
        browser
            .post(&server.url("/logout"), &[("csrf_token", &token)])
            .await
            .0,
        403,
        "a token of the signed-out state"
    );
    let (_, _, page) = browser.get(&server.url("/logout")).await;
    let token = field(&page, "csrf_token");
    let (status, _, html) = browser
        .post(&server.url("/logout"), &[("csrf_token", &token)])
        .await;
    assert_eq!(status, 200);
    assert!(html.contains("You are signed out"));
    assert_eq!(
        browser.get(&server.url("/")).await.0,
        303,
        "back to the login page"
    );
    // The old cookie, replayed by someone who copied it, is dead on the server.
    let res = http()
        .get(server.url("/"))
        .header("cookie", raw)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
}

#[actix_web::test]
async fn a_failed_login_never_says_which_field_was_wrong() {
    let server = server_with_people().await;
    let (s1, h1, wrong_password) = Browser::new()
        .login(&server, "ada", "not the password")
        .await;
    let (s2, _, unknown_user) = Browser::new()
        .login(&server, "nobody", "not the password")
        .await;
    assert_eq!((s1, s2), (401, 401));
    assert!(set_cookie(&h1, "lk_session").is_none());
    let message = |html: &str| {
        html.split("role=\"alert\"")
            .nth(1)
            .map(|s| s.split("</p>").next().unwrap().to_string())
    };
    assert_eq!(message(&wrong_password), message(&unknown_user));
    assert!(message(&wrong_password)
        .unwrap()
        .contains("username or password"));
    assert!(
        !wrong_password.contains("not the password"),
        "the password is never echoed"
    );
}

#[actix_web::test]
async fn login_csrf_is_refused() {
    let server = server_with_people().await;
    let victim = Browser::new();
    let attacker = Browser::new();
    let attackers_token = attacker.login_token(&server).await;
    let _ = victim.login_token(&server).await;
    for (token, why) in [
        (None, "missing"),
        (Some("forged"), "forged"),
        (Some(attackers_token.as_str()), "another browser's"),
    ] {
        let mut form = vec![("username", "ada"), ("password", "analytical engine")];
        if let Some(t) = token {
            form.push(("csrf_token", t));
        }
        let (status, headers, _) = victim.post(&server.url("/login"), &form).await;
        assert_eq!(status, 403, "{why} CSRF token");
        assert!(
            set_cookie(&headers, "lk_session").is_none(),
            "{why}: no session"
        );
    }
}

#[actix_web::test]
async fn brute_force_against_one_account_is_throttled() {
    let server = server_with_people().await;
    let browser = Browser::new();
    for _ in 0..5 {
        assert_eq!(browser.login(&server, "ada", "guess guess").await.0, 401);
    }
    let (status, headers, html) = browser.login(&server, "ada", "analytical engine").await;
    assert_eq!(status, 429, "even the right password waits");
    let wait: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert!(html.contains("Wait"), "the page says to wait");
    // Another account from the same address is not locked out by this one.
    assert_eq!(
        browser.login(&server, "grace", "cobol forever").await.0,
        303
    );
}

/// Moves every throttle's block to a second ago: the wait the server announced is over.
fn wait_is_over(server: &TestServer) {
    use diesel::prelude::*;
    use latchkey::store::schema::login_throttle::dsl as t;
    let mut conn = server.state.store.conn().unwrap();
    diesel::update(t::login_throttle.filter(t::blocked_until.is_not_null()))
        .set(t::blocked_until.eq(latchkey::store::now() - 1))
        .execute(&mut conn)
        .unwrap();
}

#[actix_web::test]
async fn the_announced_wait_is_the_real_one_and_it_doubles_with_each_failure() {
    let server = server_with_people().await;
    let browser = Browser::new();
    let retry_after = |h: &reqwest::header::HeaderMap| -> i64 {
        h["retry-after"].to_str().unwrap().parse().unwrap()
    };
    for _ in 0..5 {
        assert_eq!(browser.login(&server, "ada", "guess guess").await.0, 401);
    }
    let (status, headers, _) = browser.login(&server, "ada", "analytical engine").await;
    assert_eq!(status, 429);
    let first = retry_after(&headers);
    assert!((1..=30).contains(&first), "{first}");
    // Asking again while blocked is refused and does not lengthen the wait.
    let (status, headers, _) = browser.login(&server, "ada", "another guess").await;
    assert_eq!(status, 429);
    assert!(retry_after(&headers) <= first);

    // The wait is over: the next attempt is checked. A wrong password is a failure (401, not
    // 429), and the wait after it is twice as long.
    wait_is_over(&server);
    assert_eq!(browser.login(&server, "ada", "one more guess").await.0, 401);
    let (status, headers, _) = browser.login(&server, "ada", "analytical engine").await;
    assert_eq!(status, 429);
    assert!((31..=60).contains(&retry_after(&headers)), "{headers:?}");
    // Only one attempt goes through when a wait ends.
    wait_is_over(&server);
    assert_eq!(browser.login(&server, "ada", "guess again").await.0, 401);
    let (status, headers, _) = browser.login(&server, "ada", "guess again!").await;
    assert_eq!(status, 429);
    assert!((61..=120).contains(&retry_after(&headers)), "{headers:?}");

    // Waiting as told and then typing the right password signs in.
    wait_is_over(&server);
    let (status, headers, _) = browser.login(&server, "ada", "analytical engine").await;
    assert_eq!(status, 303, "{headers:?}");
    assert!(set_cookie(&headers, "lk_session").is_some());
    // And the account starts afresh.
    assert_eq!(browser.login(&server, "ada", "guess guess").await.0, 401);
}

#[actix_web::test]
async fn no_open_redirect_and_no_host_poisoning() {
    let server = server_with_people().await;
    let browser = Browser::new();
    for evil in ["https://evil.example/", "//evil.example", "/\\evil.example"] {
        let token = browser.login_token(&server).await;
        let (status, headers, _) = browser
            .post(
                &server.url("/login"),
                &[
                    ("csrf_token", &token),
                    ("username", "grace"),
                    ("password", "cobol forever"),
                    ("return_to", evil),
                ],
            )
            .await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], format!("{}/", server.issuer), "{evil}");
    }
    let html = http()
        .get(server.url("/login"))
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("evil.example"), "{html}");
    assert!(html.contains(&format!("action=\"{}/login\"", server.issuer)));
}

#[actix_web::test]
async fn a_planted_session_id_never_becomes_the_victims_session() {
    let server = server_with_people().await;
    // The attacker signs in as themselves and keeps the session id.
    let (_, headers, _) = Browser::new()
        .login(&server, "grace", "cobol forever")
        .await;
    let planted = set_cookie(&headers, "lk_session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    // The victim's browser carries the planted cookie when it signs in (no cookie jar here:
    // every cookie is sent by hand).
    let page = http().get(server.url("/login")).send().await.unwrap();
    let csrf = set_cookie(page.headers(), "lk_csrf")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = field(&page.text().await.unwrap(), "csrf_token");
    let res = http()
        .post(server.url("/login"))
        .header("cookie", format!("{csrf}; {planted}"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", "ada"),
            ("password", "analytical engine"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let issued = set_cookie(res.headers(), "lk_session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(issued, planted, "a new id on login");
    // The planted id gives the attacker nothing of the victim's.
    let html = http()
        .get(server.url("/"))
        .header("cookie", planted)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("ada"), "{html}");
    let html = http()
        .get(server.url("/"))
        .header("cookie", issued)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("signed in as <strong>ada</strong>"));
}

#[actix_web::test]
async fn parallel_guesses_cannot_slip_under_the_throttle() {
    let server = server_with_people().await;
    let browser = Browser::new();
    let token = browser.login_token(&server).await;
    let url = server.url("/login");
    let attempts = (0..10).map(|i| {
        let (http, url, token) = (browser.http.clone(), url.clone(), token.clone());
        async move {
            let form = [
                ("csrf_token", token.as_str()),
                ("username", "ada"),
                ("password", &*format!("guess number {i}")),
            ];
            http.post(&url)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        checked <= 5,
        "at most 5 guesses reach the password check: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        10 - checked,
        "{statuses:?}"
    );
}

#[actix_web::test]
async fn a_control_character_in_return_to_is_not_a_500() {
    let server = server_with_people().await;
    let browser = Browser::new();
    let token = browser.login_token(&server).await;
    let (status, headers, _) = browser
        .post(
            &server.url("/login"),
            &[
                ("csrf_token", &token),
                ("username", "ada"),
                ("password", "analytical engine"),
                ("return_to", "/\u{1}x"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], format!("{}/", server.issuer));
}

#[actix_web::test]
async fn a_person_signing_in_from_many_tabs_at_once_is_not_throttled() {
    // Attempts are counted before the password is checked; those over the limit only because
    // others are still in flight wait for them instead of being refused.
    let server = server_with_people().await;
    let tabs: Vec<Browser> = (0..12).map(|_| Browser::new()).collect();
    let mut tokens = Vec::new();
    for tab in &tabs {
        tokens.push(tab.login_token(&server).await);
    }
    let url = server.url("/login");
    let attempts = tabs.iter().zip(&tokens).map(|(tab, token)| {
        let (http, url, token) = (tab.http.clone(), url.clone(), token.clone());
        async move {
            let form = [
                ("csrf_token", token.as_str()),
                ("username", "ada"),
                ("password", "analytical engine"),
            ];
            http.post(&url)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    assert!(statuses.iter().all(|s| *s == 303), "{statuses:?}");
    // And the account is not left throttled: a wrong password is an ordinary failure.
    assert_eq!(tabs[0].login(&server, "ada", "guess").await.0, 401);
}
