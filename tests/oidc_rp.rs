//! A real relying-party library (the `openidconnect` crate) runs the whole flow from discovery:
//! authorize through the login and consent pages, code exchange with PKCE, ID-token
//! verification (signature against the JWKS, nonce, at_hash), then userinfo. Also the
//! userinfo endpoint's refusals.

mod common;

use common::*;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;

const CB: &str = "https://rp.acme.test/callback";

#[actix_web::test]
async fn the_openidconnect_crate_signs_a_person_in_and_reads_userinfo() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let c = server.cli_json(&[
        "client",
        "create",
        "--org",
        &org,
        "--name",
        "Acme RP",
        "--grant-types",
        "authorization_code,refresh_token",
        "--redirect-uri",
        CB,
        "--scopes",
        "openid profile email offline_access",
    ]);
    server.person(
        "acme",
        "ada",
        "analytical engine",
        &["--name", "Ada Lovelace", "--email", "ada@acme.test"],
    );

    let http_client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let provider = CoreProviderMetadata::discover_async(
        IssuerUrl::new(server.issuer.clone()).unwrap(),
        &http_client,
    )
    .await
    .expect("OpenID discovery");
    let client = CoreClient::from_provider_metadata(
        provider,
        ClientId::new(c["client_id"].as_str().unwrap().into()),
        Some(ClientSecret::new(
            c["client_secret"].as_str().unwrap().into(),
        )),
    )
    .set_redirect_uri(RedirectUrl::new(CB.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf_state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();

    // The person: login page, then consent, in a cookie-keeping browser.
    let browser = Browser::new();
    let (status, headers, _) = browser.get(auth_url.as_str()).await;
    assert_eq!(status, 303);
    let (_, _, login) = browser.get(headers["location"].to_str().unwrap()).await;
    let (status, headers, _) = browser
        .post(
            &server.url("/login"),
            &[
                ("csrf_token", &field(&login, "csrf_token")),
                ("return_to", &field(&login, "return_to")),
                ("username", "ada"),
                ("password", "analytical engine"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (_, _, consent) = browser.get(headers["location"].to_str().unwrap()).await;
    let mut form: Vec<(String, String)> = [
        "csrf_token",
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "code_challenge",
        "code_challenge_method",
        "state",
        "nonce",
    ]
    .iter()
    .map(|n| (n.to_string(), field(&consent, n)))
    .collect();
    form.push(("decision".into(), "allow".into()));
    let res = browser
        .http
        .post(server.url("/oauth2/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let redirect = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = redirect.query_pairs().into_owned().collect();
    assert_eq!(&q["state"], csrf_state.secret());
    assert_eq!(q["iss"], server.issuer);

    // The library exchanges the code and verifies the ID token.
    let token = client
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http_client)
        .await
        .expect("code exchange");
    let id_token = token.id_token().expect("an ID token");
    let id_verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&id_verifier, &nonce)
        .expect("the ID token verifies");
    let expected = claims.access_token_hash().expect("at_hash");
    let actual = AccessTokenHash::from_token(
        token.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&id_verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(&actual, expected);
    assert!(claims.auth_time().is_some());
    assert!(
        token.refresh_token().is_some(),
        "offline_access: a refresh token"
    );

    // A refresh through the library: a rotated refresh token and a new ID token for the same
    // person and sign-in, without a nonce (OIDC Core §12.2), which the library verifies.
    let refreshed = client
        .exchange_refresh_token(token.refresh_token().unwrap())
        .unwrap()
        .request_async(&http_client)
        .await
        .expect("refresh");
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        token.refresh_token().unwrap().secret(),
        "rotated"
    );
    let new_id = refreshed.id_token().expect("an ID token on refresh");
    let new_claims = new_id
        .claims(&id_verifier, |n: Option<&Nonce>| {
            n.is_none()
                .then_some(())
                .ok_or_else(|| "a refreshed ID token carries no nonce".to_string())
        })
        .expect("the refreshed ID token verifies");
    assert_eq!(new_claims.subject(), claims.subject());
    assert_eq!(new_claims.auth_time(), claims.auth_time());

    // userinfo through the library, with the subject the ID token named.
    let info: CoreUserInfoClaims = client
        .user_info(token.access_token().clone(), Some(claims.subject().clone()))
        .unwrap()
        .request_async(&http_client)
        .await
        .expect("userinfo");
    assert_eq!(info.preferred_username().unwrap().as_str(), "ada");
    assert_eq!(info.email().unwrap().as_str(), "ada@acme.test");
    assert_eq!(info.email_verified(), Some(false));
    assert_eq!(
        info.name().unwrap().get(None).unwrap().as_str(),
        "Ada Lovelace"
    );

    // The endpoint's refusals: a token in the query string, a client_credentials token, a
    // revoked one, none at all.
    let access = token.access_token().secret().clone();
    let res = http()
        .get(server.url(&format!("/userinfo?access_token={access}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = http()
        .post(server.url("/userinfo"))
        .bearer_auth(&access)
        .form(&[("access_token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "two places");
    let res = http()
        .post(server.url("/userinfo"))
        .form(&[("access_token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a form body is fine");
    let svc = server.cli_json(&[
        "client",
        "create",
        "--org",
        &org,
        "--name",
        "svc",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "openid",
    ]);
    let (svc, svc_secret) = (
        svc["client_id"].as_str().unwrap(),
        svc["client_secret"].as_str().unwrap(),
    );
    let cc = server.access_token(svc, svc_secret, &[]).await;
    let res = http()
        .get(server.url("/userinfo"))
        .bearer_auth(&cc)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        401,
        "no person behind a client_credentials token"
    );
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    let res = http()
        .post(server.url("/oauth2/revoke"))
        .basic_auth(
            c["client_id"].as_str().unwrap(),
            Some(c["client_secret"].as_str().unwrap()),
        )
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        http()
            .get(server.url("/userinfo"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "revoked"
    );
    assert_eq!(
        http()
            .get(server.url("/userinfo"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let doc: Value = get_json(&server.url("/.well-known/openid-configuration")).await;
    assert_eq!(doc["issuer"], server.issuer);
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
}
