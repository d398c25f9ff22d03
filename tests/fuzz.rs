//! Property-based fuzzing of every parser that reads hostile input, on stable Rust (proptest):
//!
//! 1. the OAuth form parser (`oauth::form::Form::parse`),
//! 2. HTTP Basic client credentials (`oauth::client_auth::Presented::from_request`),
//! 3. JWT client assertions (`client_secret_jwt`, `private_key_jwt`) at `POST /oauth2/token`
//!    of a real server: garbage, truncated, wrong `alg`, mutated signatures, near-valid claims,
//! 4. API keys (`apikey::parse`, `apikey::generate`, the checksum),
//! 5. redirect-URI matching (`oauth::redirect::match_redirect_uri`),
//! 6. scope strings (`oauth::scope::ScopeSet`),
//! 7. the `/v1` JSON bodies (`api::json_body` into every request body type),
//! 8. the configuration (`config::Config::from_sources`, `config::parse_duration`).
//!
//! Each property feeds arbitrary bytes or strings and structured near-valid inputs (valid ones,
//! mutated) and checks that nothing panics, that what is refused is refused with the documented
//! error, and that what round-trips does.
//!
//! CI runs a bounded number of cases (the defaults below: the file runs in well under a minute
//! in the debug test profile). `PROPTEST_CASES` overrides every property's count; the long mode
//! is
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test --release --test fuzz
//! ```
//!
//! A failure prints the minimal (shrunk) input; such an input is kept below as an explicit
//! `#[test]` once the defect is fixed. No regression files are written.

mod common;

use actix_web::http::header::{HeaderValue, AUTHORIZATION};
use actix_web::test::TestRequest;
use actix_web::FromRequest;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{json, Value};

use latchkey::oauth::client_auth::Presented;
use latchkey::oauth::form::{Form, MAX_PARAM};

/// `cases` from `PROPTEST_CASES` when set, else `default` (proptest's own default of 256 is
/// too many for the properties that go through HTTP and a database).
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Failing inputs become explicit regression tests here, not files in the tree.
        failure_persistence: None,
        // Some strategies filter (a value must not be a known field, …): enough room for the
        // long mode's counts.
        max_local_rejects: 65_536u32.max(cases.saturating_mul(8)),
        max_global_rejects: 1_024u32.max(cases),
        ..ProptestConfig::default()
    }
}

/// Any string, control characters and all non-ASCII included.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// Strings made mostly of the characters that matter to a parser.
fn syntax_text(alphabet: &'static str, max: usize) -> impl Strategy<Value = String> {
    let chars: Vec<char> = alphabet.chars().collect();
    prop::collection::vec(prop::sample::select(chars), 0..max).prop_map(String::from_iter)
}

/// `s` with its `at`-th character replaced by `with` (`None` when that changes nothing).
fn replace_char(s: &str, at: Index, with: char) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    let i = at.index(chars.len());
    if chars[i] == with {
        return None;
    }
    let mut out = chars;
    out[i] = with;
    Some(out.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// 1. The form parser.

mod form {
    use super::*;

    fn form_value() -> impl Strategy<Value = String> {
        // Any non-empty text: a value without one is "omitted" (RFC 6749 §3.1). Not U+FFFD,
        // which is what the parser reads invalid UTF-8 as, so it refuses that character, nor
        // NUL, which no parameter holds (RFC 6749 Appendix A).
        prop::collection::vec(
            any::<char>().prop_map(|c| {
                if matches!(c, '\u{FFFD}' | '\0') {
                    'x'
                } else {
                    c
                }
            }),
            1..48,
        )
        .prop_map(String::from_iter)
    }

    fn distinct_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::btree_map("[a-z_]{1,12}", form_value(), 0..8).prop_map(|m| {
            m.into_iter()
                .filter(|(name, _)| name != "resource")
                .collect()
        })
    }

    fn encode(pairs: &[(String, String)]) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (n, v) in pairs {
            s.append_pair(n, v);
        }
        s.finish()
    }

    proptest! {
        #![proptest_config(config(2048))]

        /// Arbitrary bytes: a form or `invalid_request` (400), never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..600)) {
            if let Err(e) = Form::parse(&body) {
                prop_assert_eq!(e.error, "invalid_request");
                prop_assert_eq!(e.status.as_u16(), 400);
                prop_assert!(!e.description.is_empty());
            }
        }

        /// Bytes from the form's own syntax (`=`, `&`, `%`, hex digits, `+`): the same.
        #[test]
        fn syntax_soup_never_panics(body in syntax_text("=&%+;aZ09fF\u{e9} ", 80)) {
            match Form::parse(body.as_bytes()) {
                Ok(form) => {
                    // A broken escape is refused, never passed through literally.
                    prop_assert!(!has_broken_escape(body.as_bytes()), "{body:?} accepted");
                    // What was read back is decoded: no value holds a raw broken `%`.
                    for (name, _) in form_urlencoded::parse(body.as_bytes()) {
                        prop_assert!(form.get(&name).is_none_or(|v| !v.is_empty()));
                    }
                }
                Err(e) => prop_assert_eq!(e.error, "invalid_request"),
            }
        }

        /// What `application/x-www-form-urlencoded` encodes, the parser reads back exactly.
        #[test]
        fn encoded_pairs_round_trip(pairs in distinct_pairs()) {
            let body = encode(&pairs);
            let form = Form::parse(body.as_bytes())
                .map_err(|e| TestCaseError::fail(format!("{body:?}: {e}")))?;
            for (name, value) in &pairs {
                prop_assert_eq!(form.get(name), Some(value.as_str()), "{}", name);
                prop_assert_eq!(form.all(name), vec![value.as_str()]);
            }
        }

        /// A parameter given twice (RFC 6749 §3.2) is refused wherever the copies are;
        /// `resource` (RFC 8707) may repeat and keeps its order.
        #[test]
        fn repeated_parameters_are_refused(
            pairs in distinct_pairs().prop_filter("some", |p| !p.is_empty()),
            which in any::<Index>(),
            again in form_value(),
            at in any::<Index>(),
            resources in prop::collection::vec(form_value(), 2..5),
        ) {
            let name = pairs[which.index(pairs.len())].0.clone();
            let mut with_copy = pairs.clone();
            with_copy.insert(at.index(pairs.len() + 1), (name.clone(), again));
            let e = Form::parse(encode(&with_copy).as_bytes()).err();
            prop_assert!(e.is_some(), "{name} twice accepted");
            let e = e.unwrap();
            prop_assert_eq!(e.error, "invalid_request");
            prop_assert!(e.description.contains(&name));

            let mut with_resources = pairs.clone();
            with_resources.extend(resources.iter().map(|r| ("resource".to_string(), r.clone())));
            let form = Form::parse(encode(&with_resources).as_bytes())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(form.all("resource"), resources.iter().map(String::as_str).collect::<Vec<_>>());
        }

        /// A valid form with a broken escape, or invalid UTF-8, inserted anywhere is refused.
        #[test]
        fn broken_escapes_and_invalid_utf8_are_refused(
            pairs in distinct_pairs().prop_filter("some", |p| !p.is_empty()),
            at in any::<Index>(),
            junk in prop_oneof![
                Just("%".to_string()),
                "%[g-zG-Z%&=+]".prop_map(String::from),
                "%[0-9a-fA-F][g-zG-Z%&=+]".prop_map(String::from),
                // Percent-encoded bytes that are no UTF-8: a lone continuation byte, a lead
                // byte without its continuation, an overlong encoding, a surrogate.
                prop::sample::select(vec!["%80", "%FF", "%C3", "%C0%AF", "%ED%A0%80", "%F8%88%80%80%80"])
                    .prop_map(String::from),
            ],
        ) {
            let body = encode(&pairs);
            // Inside a value (after its `=`), so that the junk is part of a parameter.
            let eqs: Vec<usize> = body.match_indices('=').map(|(i, _)| i + 1).collect();
            let i = eqs[at.index(eqs.len())];
            // A lone `%` at the end of the body (elsewhere it may meet two hex digits).
            let i = if junk == "%" { body.len() } else { i };
            let bad = format!("{}{}{}", &body[..i], junk, &body[i..]);
            let e = Form::parse(bad.as_bytes()).err();
            prop_assert!(e.is_some(), "{bad:?} accepted");
            prop_assert_eq!(e.unwrap().error, "invalid_request");
        }

        /// SPEC §2: a parameter over 4 KiB is `invalid_request`; 4 KiB exactly is fine.
        #[test]
        fn the_parameter_limit_is_exact(
            len in (MAX_PARAM - 3)..(MAX_PARAM + 4),
            c in prop::sample::select(vec!['a', 'é', '€', '😀', ' ', '&']),
            in_name in any::<bool>(),
        ) {
            let big: String = std::iter::repeat_n(c, len.div_ceil(c.len_utf8())).collect();
            let bytes = big.len();
            let pair = if in_name { (big, "v".to_string()) } else { ("n".to_string(), big) };
            let result = Form::parse(encode(&[pair]).as_bytes());
            prop_assert_eq!(result.is_ok(), bytes <= MAX_PARAM, "{} bytes", bytes);
        }
    }

    fn has_broken_escape(body: &[u8]) -> bool {
        body.iter().enumerate().any(|(i, &b)| {
            b == b'%'
                && !(body.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && body.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// 2. HTTP Basic client credentials.

mod basic {
    use super::*;

    fn presented(authorization: Option<&[u8]>, body: &[(&str, &str)]) -> Option<PresentedResult> {
        let mut req = TestRequest::default();
        if let Some(value) = authorization {
            // Bytes no header can carry never reach the parser.
            req = req.insert_header((AUTHORIZATION, HeaderValue::from_bytes(value).ok()?));
        }
        let req = req.to_http_request();
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (n, v) in body {
            s.append_pair(n, v);
        }
        let form = Form::parse(s.finish().as_bytes()).expect("a valid form");
        Some(Presented::from_request(&req, &form).map_err(|e| (e.status.as_u16(), e.error)))
    }

    type PresentedResult = Result<Presented, (u16, &'static str)>;

    /// RFC 6749 §2.3.1: each part form-urlencoded, then `id:secret` in Base64.
    fn basic_value(scheme: &str, id: &str, secret: &str) -> String {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "{scheme} {}",
            STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
        )
    }

    fn client_id() -> impl Strategy<Value = String> {
        // Client ids are base62, but Basic decoding must give back any id without control
        // characters (those are refused: they name no client).
        prop::collection::vec(
            any::<char>().prop_map(|c| if c.is_control() { 'c' } else { c }),
            1..40,
        )
        .prop_map(String::from_iter)
    }

    proptest! {
        #![proptest_config(config(2048))]

        /// Whatever an id and secret are, encoded per RFC 6749 §2.3.1 they decode back.
        #[test]
        fn credentials_round_trip(
            id in client_id(),
            secret in any_text(60),
            scheme in prop::sample::select(vec!["Basic", "basic", "BASIC", "bAsIc"]),
        ) {
            let value = basic_value(scheme, &id, &secret);
            match presented(Some(value.as_bytes()), &[]) {
                Some(Ok(Presented::Basic { client_id, secret: s })) => {
                    prop_assert_eq!(client_id, id);
                    prop_assert_eq!(s, secret);
                }
                other => prop_assert!(false, "{value:?}: {other:?}"),
            }
        }

        /// Any header value: a Basic credential or `401 invalid_client`, never a panic.
        #[test]
        fn arbitrary_headers_are_401_invalid_client(
            value in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..80),
                "(Basic|basic|Bearer|Digest)?[ ]{0,2}[A-Za-z0-9+/=:% ]{0,60}".prop_map(String::into_bytes),
                (prop::collection::vec(any::<u8>(), 0..60)).prop_map(|b| format!("Basic {}", STANDARD.encode(b)).into_bytes()),
            ],
        ) {
            let Some(result) = presented(Some(&value), &[]) else { return Ok(()) };
            match result {
                Ok(Presented::Basic { client_id, .. }) => {
                    prop_assert!(!client_id.is_empty());
                    prop_assert!(!client_id.chars().any(char::is_control));
                    // Only a Base64 text that decodes to `id:secret` in UTF-8 gets here.
                    let text = String::from_utf8_lossy(&value);
                    let (_, rest) = text.split_once(' ').unwrap_or((&text, ""));
                    let decoded = STANDARD.decode(rest.trim());
                    prop_assert!(decoded.is_ok_and(|d| String::from_utf8(d).is_ok_and(|t| t.contains(':'))));
                }
                Ok(other) => prop_assert!(false, "{other:?} from a header alone"),
                Err(e) => prop_assert_eq!(e, (401, "invalid_client")),
            }
        }

        /// A valid credential with one character of its Base64 changed: a credential (the
        /// decoding may still work) or 401, never anything else.
        #[test]
        fn mutated_credentials_are_401_or_decode(
            id in client_id(),
            secret in any_text(30),
            at in any::<Index>(),
            with in prop::sample::select("A+/=:%_- \u{e9}".chars().collect::<Vec<_>>()),
        ) {
            let value = basic_value("Basic", &id, &secret);
            let Some(mutated) = replace_char(&value, at, with) else { return Ok(()) };
            if let Some(Err(e)) = presented(Some(mutated.as_bytes()), &[]) {
                prop_assert_eq!(e, (401, "invalid_client"));
            }
        }

        /// SPEC §2: credentials in two places at once are `invalid_request`; a body
        /// `client_id` that differs from the header's too.
        #[test]
        fn credentials_in_two_places_are_invalid_request(
            id in "[A-Za-z0-9]{1,24}",
            secret in "[A-Za-z0-9]{1,43}",
            other in "[A-Za-z0-9]{1,24}",
            second in prop::sample::select(vec!["client_secret", "client_assertion", "client_id"]),
        ) {
            prop_assume!(second != "client_id" || other != id);
            let value = basic_value("Basic", &id, &secret);
            let body = [(second, other.as_str())];
            let got = presented(Some(value.as_bytes()), &body).unwrap();
            prop_assert_eq!(got.err(), Some((400, "invalid_request")));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. JWT client assertions, against a real server.

mod assertions {
    use super::common::{now, TestServer};
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    struct Harness {
        server: TestServer,
        http: reqwest::Client,
        /// A `client_secret_jwt` client and its secret.
        secret_client: (String, String),
        /// A `private_key_jwt` client, its ES256 signing key and kid, and its public JWK.
        key_client: (String, EncodingKey, String, Value),
    }

    impl Harness {
        async fn start() -> Harness {
            let server = TestServer::start().await;
            let org = server.org("fuzz");
            let secret_client = server.cc_client(&org, &["--auth-method", "client_secret_jwt"]);
            let key = latchkey::keys::generate(latchkey::keys::Alg::ES256).unwrap();
            let path = server.dir.path().join("jwks.json");
            std::fs::write(&path, json!({"keys": [key.public_jwk]}).to_string()).unwrap();
            let (key_id, _) = server.cc_client(
                &org,
                &[
                    "--auth-method",
                    "private_key_jwt",
                    "--jwks",
                    path.to_str().unwrap(),
                ],
            );
            Harness {
                http: super::common::http(),
                secret_client,
                key_client: (
                    key_id,
                    EncodingKey::from_ec_der(&key.pkcs8),
                    key.kid.clone(),
                    key.public_jwk,
                ),
                server,
            }
        }

        fn token_endpoint(&self) -> String {
            self.server.url("/oauth2/token")
        }

        /// The status, `error` and whether `WWW-Authenticate` came, for a token request with
        /// this assertion.
        async fn send(&self, assertion: &str, client_id: Option<&str>) -> (u16, String, bool) {
            let mut form = vec![
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion),
            ];
            if let Some(id) = client_id {
                form.push(("client_id", id));
            }
            let res = self
                .http
                .post(self.token_endpoint())
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let challenge = res.headers().contains_key("www-authenticate");
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let error = body["error"].as_str().unwrap_or("").to_string();
            (status, error, challenge)
        }

        fn claims(&self, client_id: &str, exp_in: i64, jti: &str) -> Value {
            json!({
                "iss": client_id, "sub": client_id, "aud": self.token_endpoint(),
                "exp": now() + exp_in, "iat": now(), "jti": jti,
            })
        }

        /// A valid `client_secret_jwt` assertion (HS256, the client secret).
        fn secret_assertion(&self, claims: &Value) -> String {
            let key = EncodingKey::from_secret(self.secret_client.1.as_bytes());
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
        }

        /// A valid `private_key_jwt` assertion (ES256, the registered key).
        fn key_assertion(&self, claims: &Value) -> String {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(self.key_client.2.clone());
            jsonwebtoken::encode(&header, claims, &self.key_client.1).unwrap()
        }

        fn assertion(&self, private_key: bool, claims: &Value) -> String {
            if private_key {
                self.key_assertion(claims)
            } else {
                self.secret_assertion(claims)
            }
        }

        fn id(&self, private_key: bool) -> &str {
            if private_key {
                &self.key_client.0
            } else {
                &self.secret_client.0
            }
        }
    }

    /// SPEC §2: every refused assertion is `401 invalid_client` with `WWW-Authenticate`.
    fn refused(got: &(u16, String, bool)) -> bool {
        got.0 == 401 && got.1 == "invalid_client" && got.2
    }

    fn run<S: Strategy>(
        sys: &actix_rt::SystemRunner,
        name: &str,
        cases: u32,
        strategy: S,
        test: impl Fn(
            S::Value,
        )
            -> futures_util::future::LocalBoxFuture<'static, Result<(), TestCaseError>>,
    ) where
        S::Value: std::fmt::Debug,
    {
        let mut runner = TestRunner::new(config(cases));
        if let Err(e) = runner.run(&strategy, |v| sys.block_on(test(v))) {
            panic!("{name}: {e}");
        }
    }

    fn b64url(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    /// One server for every assertion property (starting one takes a while).
    #[test]
    fn client_assertions() {
        let sys = actix_rt::System::new();
        let h = std::rc::Rc::new(sys.block_on(Harness::start()));
        // The server must be dropped inside the runtime, a failed property or not.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| properties(&sys, h.clone())));
        sys.block_on(async move { drop(h) });
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    fn properties(sys: &actix_rt::SystemRunner, h: std::rc::Rc<Harness>) {
        let jti = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let fresh = {
            let jti = jti.clone();
            move || {
                jti.set(jti.get() + 1);
                format!("fuzz-{}-{}", std::process::id(), jti.get())
            }
        };

        // Control: the valid assertions are accepted (else every refusal below proves nothing).
        for private_key in [false, true] {
            let a = h.assertion(private_key, &h.claims(h.id(private_key), 60, &fresh()));
            let got = sys.block_on(h.send(&a, None));
            assert_eq!(
                got.0, 200,
                "valid assertion (private_key={private_key}): {got:?}"
            );
        }

        // Garbage: arbitrary text, and three Base64url parts of random JSON naming the client.
        // (Not U+FFFD, which is what the form parser reads invalid UTF-8 as, nor NUL: the form
        // parser refuses them as `invalid_request` before any client authentication — SPEC §2,
        // and `form` above.)
        let garbage = prop_oneof![
            any_text(200)
                .prop_filter("no U+FFFD or NUL", |s| !s.contains(['\u{FFFD}', '\0']))
                .prop_map(Garbage::Text),
            syntax_text("eyJ.-_AZaz09=+/ ", 200).prop_map(Garbage::Text),
            (
                prop::sample::select(vec![
                    "HS256", "HS384", "RS256", "ES256", "PS256", "EdDSA", "none", "", "hs256",
                ]),
                any_text(30),
                prop::collection::vec(any::<u8>(), 0..80),
                any::<bool>(),
            )
                .prop_map(|(alg, extra, sig, private_key)| Garbage::Jwt {
                    alg,
                    extra,
                    sig,
                    private_key,
                }),
        ];
        {
            let h = h.clone();
            let fresh = fresh.clone();
            run(sys, "garbage assertions", 256, garbage, move |garbage| {
                let h = h.clone();
                let text = match garbage {
                    Garbage::Text(text) => text,
                    Garbage::Jwt {
                        alg,
                        extra,
                        sig,
                        private_key,
                    } => {
                        let id = h.id(private_key).to_string();
                        let header = json!({"alg": alg, "typ": "JWT", "kid": extra});
                        let claims = json!({"iss": id, "sub": id, "aud": h.token_endpoint(),
                            "exp": now() + 60, "jti": fresh(), "x": extra});
                        format!(
                            "{}.{}.{}",
                            b64url(&header.to_string()),
                            b64url(&claims.to_string()),
                            URL_SAFE_NO_PAD.encode(sig)
                        )
                    }
                };
                Box::pin(async move {
                    // An empty value is an omitted parameter (another error, tested elsewhere).
                    if text.is_empty() {
                        return Ok(());
                    }
                    let got = h.send(&text, None).await;
                    prop_assert!(refused(&got), "{text:?}: {got:?}");
                    Ok(())
                })
            });
        }

        // Truncated and mutated valid assertions, of both kinds.
        {
            let h = h.clone();
            let fresh = fresh.clone();
            let strategy = (
                any::<bool>(),
                prop_oneof![
                    any::<Index>().prop_map(Mutation::Truncate),
                    any::<Index>().prop_map(Mutation::InSignature),
                    (
                        any::<Index>(),
                        prop::sample::select("AQgw_-.=+/ é0".chars().collect::<Vec<_>>())
                    )
                        .prop_map(|(i, c)| Mutation::Anywhere(i, c)),
                    any::<Index>().prop_map(Mutation::DropChar),
                    Just(Mutation::SwapSignatures),
                ],
            );
            run(
                sys,
                "mutated assertions",
                256,
                strategy,
                move |(private_key, mutation)| {
                    let h = h.clone();
                    let id = h.id(private_key).to_string();
                    let valid = h.assertion(private_key, &h.claims(&id, 60, &fresh()));
                    let other = h.assertion(private_key, &h.claims(&id, 60, &fresh()));
                    Box::pin(async move {
                        let Some(bad) = mutation.apply(&valid, &other) else {
                            return Ok(());
                        };
                        if bad.is_empty() || bad == valid {
                            return Ok(());
                        }
                        let got = h.send(&bad, Some(&id)).await;
                        prop_assert!(
                            refused(&got),
                            "{mutation:?} of {valid:?} = {bad:?}: {got:?}"
                        );
                        // The refused copy did not use up the jti: the original still works.
                        let got = h.send(&valid, Some(&id)).await;
                        prop_assert_eq!(got.0, 200, "original after {:?}: {:?}", mutation, got);
                        Ok(())
                    })
                },
            );
        }

        // Wrong algorithms, signed with whatever key material the attacker has: the secret
        // (for the secret client), the public JWK (the RS256/HS256 confusion), or nothing.
        {
            let h = h.clone();
            let fresh = fresh.clone();
            let strategy = (
                any::<bool>(),
                prop::sample::select(vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]),
                prop::sample::select(vec![
                    "none", "None", "HS256", "RS256", "ES384", "EdDSA", "PS256",
                ]),
                any::<bool>(),
            );
            run(
                sys,
                "wrong algorithms",
                192,
                strategy,
                move |(private_key, hs, named, relabel)| {
                    let h = h.clone();
                    let id = h.id(private_key).to_string();
                    let claims = h.claims(&id, 60, &fresh());
                    let assertion = if relabel {
                        // A header naming another alg over the valid signature, or `none`.
                        let valid = h.assertion(private_key, &claims);
                        let mut parts = valid.split('.');
                        let (_, body, sig) = (
                            parts.next().unwrap(),
                            parts.next().unwrap(),
                            parts.next().unwrap(),
                        );
                        let header = b64url(
                            &json!({"alg": named, "typ": "JWT", "kid": h.key_client.2}).to_string(),
                        );
                        let sig = if named.eq_ignore_ascii_case("none") {
                            ""
                        } else {
                            sig
                        };
                        format!("{header}.{body}.{sig}")
                    } else {
                        // HMAC with the key material the attacker has.
                        let material = if private_key {
                            h.key_client.3.to_string()
                        } else {
                            h.secret_client.1.clone()
                        };
                        if !private_key && hs == Algorithm::HS256 {
                            return Box::pin(async { Ok(()) });
                        }
                        let mut header = Header::new(hs);
                        header.kid = Some(h.key_client.2.clone());
                        jsonwebtoken::encode(
                            &header,
                            &claims,
                            &EncodingKey::from_secret(material.as_bytes()),
                        )
                        .unwrap()
                    };
                    Box::pin(async move {
                        // (A relabelled header is never the original's bytes: serde_json orders
                        // its keys, jsonwebtoken writes typ first.)
                        let got = h.send(&assertion, None).await;
                        prop_assert!(refused(&got), "{assertion:?}: {got:?}");
                        Ok(())
                    })
                },
            );
        }

        // Near-valid claims, correctly signed: only the documented window, audiences, issuer
        // and jti are accepted (SPEC §2, RFC 7523 §3).
        {
            let h = h.clone();
            let fresh = fresh.clone();
            let strategy = (any::<bool>(), claim_change());
            run(
                sys,
                "near-valid claims",
                256,
                strategy,
                move |(private_key, change)| {
                    let h = h.clone();
                    let id = h.id(private_key).to_string();
                    let mut claims = h.claims(&id, 60, &fresh());
                    let accept = change.apply(&mut claims, &h.server.issuer, &h.token_endpoint());
                    let assertion = h.assertion(private_key, &claims);
                    Box::pin(async move {
                        let got = h.send(&assertion, None).await;
                        if accept {
                            prop_assert_eq!(got.0, 200, "{:?}: {:?}", change, got);
                            // And only once (the jti is single use).
                            let again = h.send(&assertion, None).await;
                            prop_assert!(refused(&again), "replay of {change:?}: {again:?}");
                        } else {
                            prop_assert!(refused(&got), "{change:?}: {got:?}");
                        }
                        Ok(())
                    })
                },
            );
        }
        drop(jti);
    }

    #[derive(Debug, Clone)]
    enum Garbage {
        Text(String),
        /// A JWT's shape, naming the client, under any `alg`, with a random signature.
        Jwt {
            alg: &'static str,
            extra: String,
            sig: Vec<u8>,
            private_key: bool,
        },
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        /// Keep only the first characters.
        Truncate(Index),
        /// Change one character of the signature (to another Base64url character).
        InSignature(Index),
        /// Change any one character to this one.
        Anywhere(Index, char),
        /// Remove one character.
        DropChar(Index),
        /// Another valid assertion's signature over this one's header and claims.
        SwapSignatures,
    }

    impl Mutation {
        fn apply(&self, valid: &str, other: &str) -> Option<String> {
            match self {
                Mutation::Truncate(i) => Some(valid[..i.index(valid.len())].to_string()),
                Mutation::InSignature(i) => {
                    let start = valid.rfind('.')? + 1;
                    let sig = &valid[start..];
                    let pos = i.index(sig.len());
                    let old = sig.as_bytes()[pos];
                    let alphabet =
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                    let new = alphabet[(alphabet.iter().position(|&b| b == old)? + 1 + pos) % 64];
                    let new = if new == old {
                        alphabet[(pos + 7) % 64]
                    } else {
                        new
                    };
                    let mut bytes = valid.as_bytes().to_vec();
                    bytes[start + pos] = new;
                    String::from_utf8(bytes).ok()
                }
                Mutation::Anywhere(i, c) => replace_char(valid, *i, *c),
                Mutation::DropChar(i) => {
                    let pos = i.index(valid.len());
                    Some(format!("{}{}", &valid[..pos], &valid[pos + 1..]))
                }
                Mutation::SwapSignatures => {
                    let head = &valid[..valid.rfind('.')?];
                    let sig = &other[other.rfind('.')? + 1..];
                    Some(format!("{head}.{sig}"))
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    enum ClaimChange {
        /// `exp` this many seconds from now.
        Exp(i64),
        /// `aud`: the issuer, the token endpoint, or near misses.
        Aud(AudChoice),
        /// `iss` other than the client.
        Iss(String),
        /// `jti` of this many characters (0: absent).
        JtiLen(usize),
        /// `nbf` this many seconds from now.
        Nbf(i64),
    }

    #[derive(Debug, Clone)]
    enum AudChoice {
        Issuer,
        TokenEndpoint,
        ListWithEndpoint,
        Mutated(Index, char),
        TrailingSlash,
        Other(String),
    }

    fn claim_change() -> impl Strategy<Value = ClaimChange> {
        prop_oneof![
            // Away from the edges (a second of clock between signing and checking).
            prop_oneof![1i64..290, 310i64..100_000, -100_000i64..-40].prop_map(ClaimChange::Exp),
            prop_oneof![
                Just(AudChoice::Issuer),
                Just(AudChoice::TokenEndpoint),
                Just(AudChoice::ListWithEndpoint),
                (
                    any::<Index>(),
                    prop::sample::select("xX/:.0é".chars().collect::<Vec<_>>())
                )
                    .prop_map(|(i, c)| AudChoice::Mutated(i, c)),
                Just(AudChoice::TrailingSlash),
                any_text(20).prop_map(AudChoice::Other),
            ]
            .prop_map(ClaimChange::Aud),
            any_text(20).prop_map(ClaimChange::Iss),
            prop_oneof![Just(0usize), 12usize..=256, 257usize..400].prop_map(ClaimChange::JtiLen),
            prop_oneof![-10_000i64..-40, 40i64..10_000].prop_map(ClaimChange::Nbf),
        ]
    }

    thread_local! {
        static JTI: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    impl ClaimChange {
        /// Applies the change; whether the assertion must then be accepted.
        fn apply(&self, claims: &mut Value, issuer: &str, endpoint: &str) -> bool {
            match self {
                ClaimChange::Exp(secs) => {
                    claims["exp"] = json!(now() + secs);
                    (1..=290).contains(secs)
                }
                ClaimChange::Aud(aud) => {
                    let (value, ok) = match aud {
                        AudChoice::Issuer => (json!(issuer), true),
                        AudChoice::TokenEndpoint => (json!(endpoint), true),
                        AudChoice::ListWithEndpoint => {
                            (json!(["https://elsewhere.example", endpoint]), true)
                        }
                        AudChoice::Mutated(i, c) => match replace_char(endpoint, *i, *c) {
                            Some(m) => (json!(m), m == issuer),
                            None => (json!(endpoint), true),
                        },
                        AudChoice::TrailingSlash => (json!(format!("{endpoint}/")), false),
                        AudChoice::Other(s) => (json!(s), s == issuer || s == endpoint),
                    };
                    claims["aud"] = value;
                    ok
                }
                ClaimChange::Iss(iss) => {
                    let ok = Some(iss.as_str()) == claims["sub"].as_str();
                    claims["iss"] = json!(iss);
                    ok
                }
                ClaimChange::JtiLen(n) => {
                    if *n == 0 {
                        claims.as_object_mut().unwrap().remove("jti");
                        return false;
                    }
                    // Unique (a counter), and exactly n characters.
                    JTI.with(|c| c.set(c.get() + 1));
                    let count = JTI.with(std::cell::Cell::get);
                    claims["jti"] = json!(format!("{count:0>n$}"));
                    *n <= 256
                }
                ClaimChange::Nbf(secs) => {
                    claims["nbf"] = json!(now() + secs);
                    *secs < 0
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. API keys.

mod api_keys {
    use super::*;
    use latchkey::apikey::{
        checksum_of, generate, looks_like_key, parse, valid_prefix, Environment, KeyType,
        CHECKSUM_LEN, MAX_KEY_LEN, SECRET_LEN,
    };

    fn kind() -> impl Strategy<Value = KeyType> {
        prop::sample::select(vec![KeyType::Secret, KeyType::Restricted])
    }

    fn env() -> impl Strategy<Value = Environment> {
        prop::sample::select(vec![Environment::Live, Environment::Sandbox])
    }

    fn prefix() -> impl Strategy<Value = Option<String>> {
        prop::option::of("[a-z][a-z0-9]{0,15}")
    }

    /// A key written out from SPEC §4's format: `[{prefix}_]{type}_{env}_{secret}{checksum}`.
    fn spec_key() -> impl Strategy<Value = String> {
        (prefix(), kind(), env(), "[A-Za-z0-9]{43}").prop_map(|(p, k, e, secret)| {
            let head = match p {
                Some(p) => format!("{p}_{}_{}_", k.as_str(), e.key_segment()),
                None => format!("{}_{}_", k.as_str(), e.key_segment()),
            };
            let checked = format!("{head}{secret}");
            let checksum = checksum_of(&checked);
            format!("{checked}{checksum}")
        })
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Replace(Index, char),
        Insert(Index, char),
        Delete(Index),
        SwapAdjacent(Index),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let c = prop_oneof![
            4 => prop::sample::select("abcxyzABCXYZ0189_-".chars().collect::<Vec<_>>()),
            1 => any::<char>(),
        ];
        prop_oneof![
            (any::<Index>(), c.clone()).prop_map(|(i, c)| Edit::Replace(i, c)),
            (any::<Index>(), c).prop_map(|(i, c)| Edit::Insert(i, c)),
            any::<Index>().prop_map(Edit::Delete),
            any::<Index>().prop_map(Edit::SwapAdjacent),
        ]
    }

    impl Edit {
        fn apply(&self, key: &str) -> Option<String> {
            let mut chars: Vec<char> = key.chars().collect();
            match self {
                Edit::Replace(i, c) => return replace_char(key, *i, *c),
                Edit::Insert(i, c) => chars.insert(i.index(chars.len() + 1), *c),
                Edit::Delete(i) => {
                    chars.remove(i.index(chars.len()));
                }
                Edit::SwapAdjacent(i) => {
                    let i = i.index(chars.len() - 1);
                    if chars[i] == chars[i + 1] {
                        return None;
                    }
                    chars.swap(i, i + 1);
                }
            }
            Some(chars.into_iter().collect())
        }
    }

    proptest! {
        #![proptest_config(config(2048))]

        /// generate → parse gives back the type and environment, for any vendor prefix.
        #[test]
        fn generated_keys_round_trip(p in prefix(), k in kind(), e in env()) {
            let key = generate(p.as_deref(), k, e);
            let parsed = parse(&key.secret);
            prop_assert!(parsed.is_some(), "{} does not parse", key.secret);
            let parsed = parsed.unwrap();
            prop_assert_eq!((parsed.kind, parsed.environment, parsed.raw), (k, e, key.secret.as_str()));
            prop_assert!(key.secret.starts_with(&key.display_prefix));
            prop_assert!(key.secret.len() <= MAX_KEY_LEN);
        }

        /// A key written from SPEC §4 parses (the format is the documented one), and any one
        /// typo — a changed, added or dropped character, two neighbours swapped — does not.
        #[test]
        fn any_single_edit_of_a_key_is_refused(key in spec_key(), edit in edit()) {
            prop_assert!(parse(&key).is_some(), "the SPEC format {key} does not parse");
            let Some(typo) = edit.apply(&key) else { return Ok(()) };
            prop_assume!(typo != key);
            prop_assert!(parse(&typo).is_none(), "{edit:?}: {typo} parses");
            prop_assert!(!looks_like_key(&typo));
        }

        /// Any string: no panic, and whatever parses has the documented shape and checksum.
        #[test]
        fn arbitrary_strings_never_pass_unchecked(
            s in prop_oneof![
                any_text(120),
                syntax_text("_skrliveto ABz09", 90),
                // Keys' shape with any checksum (mostly wrong) and any segments.
                ("[a-z0-9A-Z]{0,3}", prop::sample::select(vec!["sk", "rk", "pk", "SK"]),
                 prop::sample::select(vec!["live", "test", "prod", "sandbox"]),
                 "[A-Za-z0-9]{40,52}")
                    .prop_map(|(p, k, e, b)| format!("{p}_{k}_{e}_{b}")),
            ],
        ) {
            let Some(p) = parse(&s) else { return Ok(()) };
            prop_assert!(s.is_ascii() && s.len() <= MAX_KEY_LEN);
            let (checked, checksum) = s.split_at(s.len() - CHECKSUM_LEN);
            prop_assert_eq!(checksum, checksum_of(checked));
            let parts: Vec<&str> = s.rsplitn(4, '_').collect();
            prop_assert_eq!(parts[0].len(), SECRET_LEN + CHECKSUM_LEN);
            prop_assert_eq!(parts[2], p.kind.as_str());
            prop_assert_eq!(parts[1], p.environment.key_segment());
            if let Some(prefix) = parts.get(3) {
                prop_assert!(valid_prefix(prefix));
            }
        }

        /// Structured near-keys: they parse exactly when every part is valid and the
        /// checksum is right (the oracle is SPEC §4, written out again here).
        #[test]
        fn near_keys_parse_exactly_when_valid(
            p in prop::option::of("[a-zA-Z0-9]{0,18}"),
            k in "[a-z]{2}",
            e in prop::sample::select(vec!["live", "test", "sandbox", "Live"]),
            secret in "[A-Za-z0-9]{41,45}",
            right_checksum in any::<bool>(),
            wrong in "[A-Za-z0-9]{6}",
        ) {
            let head = match &p {
                Some(p) => format!("{p}_{k}_{e}_"),
                None => format!("{k}_{e}_"),
            };
            let checked = format!("{head}{secret}");
            let checksum = if right_checksum { checksum_of(&checked) } else { wrong.clone() };
            let key = format!("{checked}{checksum}");
            let valid = p.as_deref().is_none_or(valid_prefix)
                && (k == "sk" || k == "rk")
                && (e == "live" || e == "test")
                && secret.len() == SECRET_LEN
                && checksum == checksum_of(&checked);
            prop_assert_eq!(parse(&key).is_some(), valid, "{}", key);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Redirect URIs.

mod redirect {
    use super::*;
    use latchkey::oauth::redirect::match_redirect_uri;

    const SEGMENT: &str = "[a-zA-Z0-9_~-]{1,8}";

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(SEGMENT, 1..4).prop_map(|s| format!("/{}", s.join("/")))
    }

    fn query() -> impl Strategy<Value = String> {
        prop::option::of("[a-z]{1,5}=[a-z0-9]{1,5}")
            .prop_map(|q| q.map(|q| format!("?{q}")).unwrap_or_default())
    }

    /// A web client's redirect URI: `https://host[:port]/path[?query]`.
    fn web_uri() -> impl Strategy<Value = String> {
        (
            "[a-z]{1,10}(\\.[a-z]{1,10}){1,2}",
            prop::option::of(1u16..=65535),
            path(),
            query(),
        )
            .prop_map(|(host, port, path, query)| match port {
                Some(p) if p != 443 => format!("https://{host}:{p}{path}{query}"),
                _ => format!("https://{host}{path}{query}"),
            })
    }

    /// A native client's loopback redirect URI, with or without a port (RFC 8252 §7.3).
    fn loopback_uri() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["127.0.0.1", "[::1]"]),
            prop::option::of(1024u16..=65535),
            path(),
            query(),
        )
            .prop_map(|(host, port, path, query)| match port {
                Some(p) => format!("http://{host}:{p}{path}{query}"),
                None => format!("http://{host}{path}{query}"),
            })
    }

    #[derive(Debug, Clone)]
    enum Change {
        AppendPath(String),
        TrailingSlash,
        AddQuery(String),
        Fragment(String),
        UserInfo(String),
        FlipCaseInPath(Index),
        FlipCaseInHost(Index),
        /// A port other than the registered one (1024 and up: what an app binds).
        Port(u16),
        Downgrade,
        PercentEncode(Index),
        DotSegment,
        Whitespace(char, bool),
        Host(String),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            SEGMENT.prop_map(Change::AppendPath),
            Just(Change::TrailingSlash),
            "[a-z]{1,5}=[a-z0-9]{0,5}".prop_map(Change::AddQuery),
            "[a-z0-9]{0,6}".prop_map(Change::Fragment),
            "[a-z]{1,6}(:[a-z]{0,6})?".prop_map(Change::UserInfo),
            any::<Index>().prop_map(Change::FlipCaseInPath),
            any::<Index>().prop_map(Change::FlipCaseInHost),
            (1024u16..=65535).prop_map(Change::Port),
            Just(Change::Downgrade),
            any::<Index>().prop_map(Change::PercentEncode),
            Just(Change::DotSegment),
            (
                prop::sample::select(vec![' ', '\t', '\n', '\u{0}']),
                any::<bool>()
            )
                .prop_map(|(c, front)| Change::Whitespace(c, front)),
            prop::sample::select(vec![
                "localhost",
                "127.0.0.2",
                "2130706433",
                "127.1",
                "0x7f.0.0.1",
                "[::ffff:127.0.0.1]",
                "[0:0:0:0:0:0:0:1]",
                "evil.example",
            ])
            .prop_map(|h| Change::Host(h.to_string())),
        ]
    }

    /// (scheme, authority, rest) of the URIs generated above.
    fn split(uri: &str) -> (&str, &str, &str) {
        let (scheme, after) = uri.split_once("://").unwrap();
        let end = after.find('/').unwrap_or(after.len());
        (scheme, &after[..end], &after[end..])
    }

    fn flip_case(s: &str, at: Index) -> Option<String> {
        let letters: Vec<usize> = s
            .char_indices()
            .filter(|(_, c)| c.is_ascii_alphabetic())
            .map(|(i, _)| i)
            .collect();
        if letters.is_empty() {
            return None;
        }
        let i = letters[at.index(letters.len())];
        let mut b = s.as_bytes().to_vec();
        b[i] ^= 0x20;
        String::from_utf8(b).ok()
    }

    impl Change {
        /// The mutated URI, and whether it is a port change only.
        fn apply(&self, uri: &str) -> Option<(String, bool)> {
            let (scheme, authority, rest) = split(uri);
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()) => {
                    (h, Some(p))
                }
                _ => (authority, None),
            };
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            let q = |query: Option<&str>| query.map(|q| format!("?{q}")).unwrap_or_default();
            let with_port = |h: &str| match port {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            };
            let out = match self {
                Change::AppendPath(seg) => {
                    format!("{scheme}://{authority}{path}/{seg}{}", q(query))
                }
                Change::TrailingSlash => format!("{scheme}://{authority}{path}/{}", q(query)),
                Change::AddQuery(extra) => match query {
                    Some(existing) => format!("{scheme}://{authority}{path}?{existing}&{extra}"),
                    None => format!("{scheme}://{authority}{path}?{extra}"),
                },
                Change::Fragment(f) => format!("{uri}#{f}"),
                Change::UserInfo(u) => format!("{scheme}://{u}@{authority}{rest}"),
                Change::FlipCaseInPath(i) => {
                    format!("{scheme}://{authority}{}{}", flip_case(path, *i)?, q(query))
                }
                Change::FlipCaseInHost(i) => {
                    format!("{scheme}://{}{rest}", with_port(&flip_case(host, *i)?))
                }
                Change::Port(p) => {
                    if port == Some(p.to_string().as_str()) {
                        return None;
                    }
                    return Some((format!("{scheme}://{host}:{p}{rest}"), true));
                }
                Change::Downgrade => {
                    let other = if scheme == "https" { "http" } else { "https" };
                    format!("{other}://{authority}{rest}")
                }
                Change::PercentEncode(i) => {
                    let chars: Vec<char> = path.chars().collect();
                    let at = i.index(chars.len() - 1) + 1; // never the leading slash
                    let encoded = format!("%{:02X}", chars[at] as u32);
                    let path: String = chars[..at].iter().collect::<String>()
                        + &encoded
                        + &chars[at + 1..].iter().collect::<String>();
                    format!("{scheme}://{authority}{path}{}", q(query))
                }
                Change::DotSegment => format!("{scheme}://{authority}/x/..{path}{}", q(query)),
                Change::Whitespace(c, true) => format!("{c}{uri}"),
                Change::Whitespace(c, false) => format!("{uri}{c}"),
                Change::Host(h) => format!("{scheme}://{}{rest}", with_port(h)),
            };
            Some((out, false))
        }
    }

    proptest! {
        #![proptest_config(config(2048))]

        /// A registered URI matches itself, for every kind of client.
        #[test]
        fn a_registered_uri_matches_itself(
            uri in prop_oneof![web_uri(), loopback_uri()],
            others in prop::collection::vec(web_uri(), 0..3),
            native in any::<bool>(),
        ) {
            let mut registered = others;
            registered.push(uri.clone());
            prop_assert_eq!(match_redirect_uri(&registered, &uri, native), Some(uri.as_str()));
        }

        /// RFC 6749 §3.1.2.3 / RFC 9700 §4.1.3: a web client's URI changed in any way —
        /// path, query, fragment, user info, case, port, scheme, encoding — never matches,
        /// whether or not the client is native.
        #[test]
        fn changed_web_uris_never_match(uri in web_uri(), change in change(), native in any::<bool>()) {
            let Some((changed, _)) = change.apply(&uri) else { return Ok(()) };
            prop_assume!(changed != uri);
            let registered = vec![uri.clone()];
            prop_assert_eq!(match_redirect_uri(&registered, &changed, native), None, "{:?}", change);
        }

        /// RFC 8252 §7.3 (SPEC §2): a native client's loopback URI may differ in port only;
        /// any other change never matches, and a web client gets no port leeway.
        #[test]
        fn loopback_uris_differ_in_port_only(uri in loopback_uri(), change in change()) {
            let Some((changed, port_only)) = change.apply(&uri) else { return Ok(()) };
            prop_assume!(changed != uri);
            let registered = vec![uri.clone()];
            let native = match_redirect_uri(&registered, &changed, true);
            if port_only {
                prop_assert_eq!(native, Some(uri.as_str()), "{:?}", change);
            } else {
                prop_assert_eq!(native, None, "{:?}", change);
            }
            prop_assert_eq!(match_redirect_uri(&registered, &changed, false), None, "web: {:?}", change);
        }

        /// Any requested string: a match is the string itself, or — for a native client — a
        /// loopback URI equal but for the port.
        #[test]
        fn arbitrary_requests_match_only_by_the_rules(
            registered in prop::collection::vec(prop_oneof![web_uri(), loopback_uri()], 1..4),
            requested in prop_oneof![
                any_text(60),
                syntax_text("http:/[]127.0.1:8a?#@%", 50),
                loopback_uri(),
            ],
            native in any::<bool>(),
        ) {
            match match_redirect_uri(&registered, &requested, native) {
                None => {}
                Some(r) if r == requested => {}
                Some(r) => {
                    prop_assert!(native, "{requested:?} matched {r:?} for a web client");
                    let strip = |u: &str| -> Option<String> {
                        let (scheme, authority, rest) = split(u);
                        let host = match authority.rsplit_once(':') {
                            Some((h, p)) if !h.ends_with(':') && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
                            _ => authority,
                        };
                        (scheme == "http" && (host == "127.0.0.1" || host == "[::1]"))
                            .then(|| format!("{host}{rest}"))
                    };
                    prop_assert!(strip(&requested).is_some() && strip(&requested) == strip(r),
                        "{requested:?} matched {r:?}");
                }
            }
        }
    }

    /// Found while writing the properties, and kept: the port 80 an app cannot usually bind
    /// is refused when written out (`:80` is not how the URL parser gives the URI back), and
    /// port 0 is no port at all. The default spelling without a port matches.
    #[test]
    fn loopback_port_80_written_out_and_port_0_are_refused() {
        let r = vec!["http://127.0.0.1:5000/cb".to_string()];
        assert_eq!(match_redirect_uri(&r, "http://127.0.0.1:80/cb", true), None);
        assert_eq!(match_redirect_uri(&r, "http://127.0.0.1:0/cb", true), None);
        assert!(match_redirect_uri(&r, "http://127.0.0.1/cb", true).is_some());
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Scope strings.

mod scopes {
    use super::*;
    use latchkey::oauth::scope::ScopeSet;
    use std::collections::BTreeSet;

    /// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
    fn token_byte(b: u8) -> bool {
        b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
    }

    fn scope_token() -> impl Strategy<Value = String> {
        "[!#-\\[\\]-~]{1,16}"
    }

    fn invalid_char() -> impl Strategy<Value = char> {
        prop_oneof![
            prop::sample::select(vec![
                '"', '\\', '\u{7f}', '\t', '\n', '\r', '\u{0}', '\u{1f}'
            ]),
            any::<char>().prop_filter("not a token char or space", |c| {
                *c != ' ' && !(c.is_ascii() && token_byte(*c as u8))
            }),
        ]
    }

    proptest! {
        #![proptest_config(config(2048))]

        /// Tokens, joined by any number of spaces, parse to the set of them; it prints
        /// sorted with single spaces and reads back the same.
        #[test]
        fn scope_strings_round_trip(
            tokens in prop::collection::vec(scope_token(), 0..8),
            gaps in prop::collection::vec(1usize..4, 8),
            lead in 0usize..3,
        ) {
            let mut s = " ".repeat(lead);
            for (i, t) in tokens.iter().enumerate() {
                s.push_str(t);
                s.push_str(&" ".repeat(gaps[i]));
            }
            let set = ScopeSet::parse(&s).map_err(TestCaseError::fail)?;
            let expected: BTreeSet<&str> = tokens.iter().map(String::as_str).collect();
            prop_assert_eq!(set.iter().collect::<BTreeSet<_>>(), expected.clone());
            let printed = set.to_string();
            prop_assert_eq!(&printed, &expected.iter().copied().collect::<Vec<_>>().join(" "));
            prop_assert_eq!(ScopeSet::parse(&printed), Ok(set));
        }

        /// One character outside the grammar anywhere in a token refuses the whole string.
        #[test]
        fn invalid_characters_are_refused(
            tokens in prop::collection::vec(scope_token(), 1..6),
            which in any::<Index>(),
            at in any::<Index>(),
            bad in invalid_char(),
        ) {
            let mut tokens = tokens;
            let t = which.index(tokens.len());
            let mut chars: Vec<char> = tokens[t].chars().collect();
            chars.insert(at.index(chars.len() + 1), bad);
            tokens[t] = chars.into_iter().collect();
            let s = tokens.join(" ");
            let e = ScopeSet::parse(&s);
            prop_assert!(e.is_err(), "{s:?} accepted");
            prop_assert!(e.unwrap_err().contains("RFC 6749"));
        }

        /// Any string: accepted exactly when every space-separated token is in the grammar.
        #[test]
        fn arbitrary_strings_follow_the_grammar(s in prop_oneof![any_text(60), syntax_text("ab \"\\\t~!#[]{}é\u{7f}", 40)]) {
            let valid = s.split(' ').all(|t| t.bytes().all(token_byte));
            prop_assert_eq!(ScopeSet::parse(&s).is_ok(), valid, "{:?}", s);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 7. The /v1 JSON bodies.

mod v1_bodies {
    use super::*;
    use latchkey::api::{json_body, ApiError};
    use serde::de::DeserializeOwned;
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;

    /// Reads `body` as `T` the way a `/v1` handler does.
    fn read<T: DeserializeOwned>(
        rt: &tokio::runtime::Runtime,
        body: Vec<u8>,
    ) -> Result<T, ApiError> {
        rt.block_on(async {
            let (req, mut payload) = TestRequest::post()
                .insert_header(("content-type", "application/json"))
                .set_payload(body)
                .to_http_parts();
            let payload = actix_web::web::Payload::from_request(&req, &mut payload)
                .await
                .expect("a payload");
            json_body::<T>(&req, payload).await
        })
    }

    /// The documented fields of a body (its OpenAPI schema) and the required ones.
    fn fields<T: utoipa::PartialSchema>() -> (Vec<String>, Vec<String>) {
        match T::schema() {
            RefOr::T(Schema::Object(o)) => {
                (o.properties.keys().cloned().collect(), o.required.clone())
            }
            _ => panic!("not an object schema"),
        }
    }

    /// A body's type, its name (which no message may leak) and its documented fields.
    struct Body {
        name: &'static str,
        read: fn(&tokio::runtime::Runtime, Vec<u8>) -> Result<(), ApiError>,
        fields: (Vec<String>, Vec<String>),
    }

    fn body<T: DeserializeOwned + utoipa::PartialSchema>(name: &'static str) -> Body {
        Body {
            name,
            read: |rt, bytes| read::<T>(rt, bytes).map(|_| ()),
            fields: fields::<T>(),
        }
    }

    fn bodies() -> Vec<Body> {
        use latchkey::api::{api_keys, clients, organization, users};
        vec![
            body::<api_keys::CreateKey>("CreateKey"),
            body::<api_keys::Rotate>("Rotate"),
            body::<clients::ClientBody>("ClientBody"),
            body::<clients::RotateSecret>("RotateSecret"),
            body::<organization::UpdateOrg>("UpdateOrg"),
            body::<users::CreateUser>("CreateUser"),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
                .map(Value::Number)),
            prop_oneof![Just(3600.0), Just(0.5), Just(-1.0), Just(1e300)].prop_map(|f| json!(f)),
            any_text(12).prop_map(Value::from),
            prop::sample::select(vec![
                "live",
                "sandbox",
                "read",
                "10.0.0.0/8",
                "2030-01-01T00:00:00Z",
                ""
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(any_text(6), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// An object whose keys are mostly a body's own fields.
    fn object_for(fields: Vec<String>) -> impl Strategy<Value = serde_json::Map<String, Value>> {
        let key = prop_oneof![
            4 => prop::sample::select(fields),
            1 => any_text(8),
        ];
        prop::collection::btree_map(key, json_value(), 0..6).prop_map(|m| m.into_iter().collect())
    }

    /// SPEC §4: a 400 `invalid_request`; its message names no type of this program.
    fn check_error(b: &Body, e: &ApiError) -> Result<(), TestCaseError> {
        prop_assert_eq!(e.status.as_u16(), 400, "{}: {:?}", b.name, e);
        prop_assert_eq!(e.code, "invalid_request");
        prop_assert!(!e.message.is_empty());
        prop_assert!(!e.message.contains(b.name), "{}: {}", b.name, e.message);
        prop_assert!(!e.message.contains("struct "), "{}", e.message);
        Ok(())
    }

    fn run<S: Strategy>(
        name: &str,
        cases: u32,
        strategy: S,
        test: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) where
        S::Value: std::fmt::Debug,
    {
        let mut runner = TestRunner::new(config(cases));
        if let Err(e) = runner.run(&strategy, test) {
            panic!("{name}: {e}");
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Random bytes, and JSON texts cut short or with junk after: 400, never a panic.
    #[test]
    fn arbitrary_bytes_are_400() {
        let rt = runtime();
        for b in bodies() {
            let strategy = prop_oneof![
                prop::collection::vec(any::<u8>(), 0..300),
                syntax_text("{}[]\":,0-9.eE+ \\ntrufalsn", 80).prop_map(String::into_bytes),
                (json_value(), any::<Index>(), any_text(4)).prop_map(|(v, at, junk)| {
                    let text = v.to_string();
                    let mut cut = at.index(text.len() + 1);
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    format!("{{\"x\":{}{junk}", &text[..cut]).into_bytes()
                }),
            ];
            run(b.name, 512, strategy, |bytes| {
                if let Err(e) = (b.read)(&rt, bytes) {
                    check_error(&b, &e)?;
                }
                Ok(())
            });
        }
    }

    /// Arbitrary JSON objects over a body's fields: accepted only with documented fields
    /// (and the required ones); a refusal is a 400 naming a field of the body — one that
    /// was sent, or one that is required.
    #[test]
    fn arbitrary_objects_are_refused_with_a_field() {
        let rt = runtime();
        for b in bodies() {
            let (known, required) = b.fields.clone();
            run(b.name, 768, object_for(known.clone()), |object| {
                let text = Value::Object(object.clone()).to_string();
                match (b.read)(&rt, text.clone().into_bytes()) {
                    Ok(()) => {
                        prop_assert!(
                            object.keys().all(|k| known.contains(k)),
                            "{}: {text} accepted",
                            b.name
                        );
                        prop_assert!(
                            required.iter().all(|r| object.contains_key(r)),
                            "{}: {text} accepted",
                            b.name
                        );
                    }
                    Err(e) => {
                        check_error(&b, &e)?;
                        let field = e.field.clone().unwrap_or_default();
                        let names_a_key = object.keys().any(|k| {
                            field == *k
                                || field.starts_with(&format!("{k}."))
                                || field.starts_with(&format!("{k}["))
                        });
                        prop_assert!(
                            names_a_key || required.contains(&field),
                            "{}: {text}: field {field:?} ({})",
                            b.name,
                            e.message
                        );
                    }
                }
                Ok(())
            });
        }
    }

    /// One unknown field, whatever its name: a 400 naming exactly it.
    #[test]
    fn an_unknown_field_is_named_exactly() {
        let rt = runtime();
        for b in bodies() {
            let (known, _) = b.fields.clone();
            run(
                b.name,
                1024,
                (any_text(12), json_value()),
                |(key, value)| {
                    prop_assume!(!known.contains(&key));
                    let text = json!({ key.as_str(): value }).to_string();
                    let e = (b.read)(&rt, text.clone().into_bytes()).err();
                    prop_assert!(e.is_some(), "{}: {text} accepted", b.name);
                    let e = e.unwrap();
                    check_error(&b, &e)?;
                    prop_assert_eq!(
                        e.field.as_deref(),
                        Some(key.as_str()),
                        "{}: {}",
                        text,
                        e.message
                    );
                    Ok(())
                },
            );
        }
    }

    /// Defect found by `arbitrary_objects_are_refused_with_a_field`: the field of an unknown
    /// or repeated field was read up to the first backtick of serde's message, so a name with
    /// a backtick was cut short (`` {"a`b": 1} `` named `a`) and an empty or backtick name
    /// gave a 400 without any field.
    #[test]
    fn field_names_with_backticks_or_empty_are_named_whole() {
        let rt = runtime();
        let cases = [
            (r#"{"`": null}"#, "`"),
            (r#"{"a`b": 1}"#, "a`b"),
            (r#"{"": null}"#, ""),
            (r#"{"x`, expected `y": 1}"#, "x`, expected `y"),
            (r#"{"scopes": [], "scopes": []}"#, "scopes"),
        ];
        for (body, field) in cases {
            let e =
                read::<latchkey::api::api_keys::CreateKey>(&rt, body.into()).expect_err("refused");
            assert_eq!(e.status.as_u16(), 400, "{body}");
            assert_eq!(e.field.as_deref(), Some(field), "{body}: {}", e.message);
        }
        let e = read::<latchkey::api::users::CreateUser>(&rt, b"{}".to_vec())
            .err()
            .unwrap();
        assert_eq!(e.field.as_deref(), Some("username"), "{}", e.message);
    }

    /// Any body with one of its fields given twice is a 400 naming that field.
    #[test]
    fn repeated_fields_are_refused_by_name() {
        let rt = runtime();
        for b in bodies() {
            let (known, _) = b.fields.clone();
            let strategy = (
                object_for(known.clone()),
                prop::sample::select(known),
                json_value(),
            );
            run(b.name, 256, strategy, |(object, twice, value)| {
                let mut text = Value::Object(object).to_string();
                text.pop(); // the closing brace
                if text.len() > 1 {
                    text.push(',');
                }
                let second = json!({ twice.as_str(): value }).to_string();
                let second = &second[1..second.len() - 1];
                let text = format!("{text}{second},{second}}}");
                let e = (b.read)(&rt, text.clone().into_bytes()).err();
                prop_assert!(e.is_some(), "{}: {text} accepted", b.name);
                let e = e.unwrap();
                check_error(&b, &e)?;
                // The first error may be another field's (serde reads in order); a field
                // is always named.
                prop_assert!(e.field.is_some(), "{}: {text}: {}", b.name, e.message);
                Ok(())
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 8. The configuration.

mod configuration {
    use super::*;
    use latchkey::config::{parse_duration, Config, ConfigError};

    const SETTINGS: &[&str] = &[
        "LATCHKEY_ISSUER",
        "LATCHKEY_BIND",
        "DATABASE_URL",
        "LATCHKEY_DB_POOL_SIZE",
        "LATCHKEY_DATABASE_WAIT",
        "LATCHKEY_WORKERS",
        "LATCHKEY_SECRET",
        "LATCHKEY_KEY_PREFIX",
        "LATCHKEY_ACCESS_TOKEN_TTL",
        "LATCHKEY_ID_TOKEN_TTL",
        "LATCHKEY_REFRESH_TOKEN_TTL",
        "LATCHKEY_REFRESH_IDLE_TTL",
        "LATCHKEY_REFRESH_REUSE_GRACE",
        "LATCHKEY_SESSION_TTL",
        "LATCHKEY_KEY_PREPUBLISH",
        "LATCHKEY_TRUSTED_PROXIES",
        "LATCHKEY_LOG",
        "LATCHKEY_LOG_FORMAT",
    ];

    fn file_key(env: &str) -> String {
        env.trim_start_matches("LATCHKEY_").to_lowercase()
    }

    fn setting_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any_text(40),
            syntax_text("0123456789smhdy ,./:_-abc", 24),
            // Tracing filters: directives, spaces, non-ASCII targets.
            syntax_text(" ,=é日[]{}a:_", 24),
            prop::sample::select(vec![
                "",
                "0",
                "60",
                "61",
                "900s",
                "15m",
                "30d",
                "1y",
                "11y",
                "99999999999999999999",
                "1.5s",
                "-1",
                "http://x",
                "https://a.example/",
                "postgres://u:p@h/db",
                ":memory:",
                "sqlite://",
                "127.0.0.1:0",
                "10.0.0.0/8",
                "::1",
                "info,latchkey=debug",
                "text",
                "json",
            ])
            .prop_map(String::from),
        ]
    }

    /// Defect found by `structured_files_are_checked`: a `LATCHKEY_LOG` directive with a space
    /// before it panicked inside tracing-subscriber when a non-ASCII character followed (its
    /// parser cuts the untrimmed text at offsets into the trimmed one), and with ASCII it
    /// quietly filtered another target (`info, latchkey=debug` set " latchke" to debug).
    #[test]
    fn log_directives_with_spaces_are_read_whole() {
        for value in [
            " é=debug",
            "info, é=debug",
            ":&`\u{171c5})`x\n *9`f`{\u{fffd}=%",
        ] {
            let env = vec![("LATCHKEY_LOG".to_string(), value.to_string())];
            let result = std::panic::catch_unwind(|| Config::from_sources(None, &env).map(|_| ()));
            assert!(result.is_ok(), "{value:?} panicked");
        }
        let env = vec![(
            "LATCHKEY_LOG".to_string(),
            " info , latchkey=debug ,".to_string(),
        )];
        let c = Config::from_sources(None, &env).unwrap();
        assert_eq!(c.log, "info,latchkey=debug");
        let file = "log = \"warn,  latchkey::oauth=trace\"\n";
        assert_eq!(
            Config::from_sources(Some(file), &[]).unwrap().log,
            "warn,latchkey::oauth=trace"
        );
    }

    proptest! {
        #![proptest_config(config(1024))]

        /// Any text as `latchkey.toml`: a configuration or an error with a message.
        #[test]
        fn arbitrary_files_never_panic(text in prop_oneof![
            any_text(120),
            syntax_text("=\"'[]{}\n#.,:0-9abc_ ", 100),
        ]) {
            if let Err(e) = Config::from_sources(Some(&text), &[]) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        /// Near-valid files: known keys (and a few unknown), any TOML value. An unknown key or
        /// a value that is no string, number or list of strings is refused.
        #[test]
        fn structured_files_are_checked(
            entries in prop::collection::btree_map(
                prop_oneof![4 => prop::sample::select(SETTINGS).prop_map(file_key), 1 => "[a-z_]{1,10}"],
                prop_oneof![
                    setting_value().prop_map(toml::Value::String),
                    any::<i64>().prop_map(toml::Value::Integer),
                    any::<bool>().prop_map(toml::Value::Boolean),
                    any::<f64>().prop_map(toml::Value::Float),
                    prop::collection::vec(setting_value().prop_map(toml::Value::String), 0..3).prop_map(toml::Value::Array),
                ],
                0..6,
            ),
        ) {
            let table: toml::Table = entries.clone().into_iter().collect();
            let text = toml::to_string(&table).unwrap();
            let known: Vec<String> = SETTINGS.iter().map(|s| file_key(s)).collect();
            let result = Config::from_sources(Some(&text), &[]);
            let unknown = entries.keys().any(|k| !known.contains(k));
            let untyped = entries.values().any(|v| matches!(v, toml::Value::Boolean(_) | toml::Value::Float(_)));
            match result {
                Ok(_) => prop_assert!(!unknown && !untyped, "{text:?} accepted"),
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(!message.is_empty());
                    if let ConfigError::Invalid { name, .. } = &e {
                        prop_assert!(name.ends_with("(in latchkey.toml)"), "{}", message);
                    }
                }
            }
        }

        /// Any value of any one setting: accepted, or refused naming that setting.
        #[test]
        fn any_setting_value_is_accepted_or_named(
            setting in prop::sample::select(SETTINGS),
            value in setting_value(),
        ) {
            let env = vec![(setting.to_string(), value.clone())];
            match Config::from_sources(None, &env) {
                Ok(_) => {}
                Err(ConfigError::Invalid { name, reason }) => {
                    prop_assert_eq!(name, setting, "{:?}: {}", value, reason);
                    prop_assert!(!reason.is_empty());
                }
                Err(e) => prop_assert!(false, "{setting}={value:?}: {e}"),
            }
        }

        /// An unknown `LATCHKEY_*` variable stops start-up, whatever its value.
        #[test]
        fn unknown_settings_are_refused(suffix in "[A-Z_]{1,12}", value in any_text(10)) {
            let name = format!("LATCHKEY_{suffix}");
            prop_assume!(!SETTINGS.contains(&name.as_str()) && name != "LATCHKEY_CONFIG");
            let result = Config::from_sources(None, &[(name.clone(), value)]);
            prop_assert!(matches!(&result, Err(ConfigError::Unknown(n)) if *n == name), "{result:?}");
        }

        /// Durations: whole seconds written either way read back, up to ten years.
        #[test]
        fn durations_round_trip(secs in prop_oneof![0u64..100_000, 0u64..(10 * 366 * 86400 + 10)]) {
            const TEN_YEARS: u64 = 10 * 366 * 86400;
            for text in [secs.to_string(), format!("{secs}s"), format!(" {secs} ")] {
                let got = parse_duration(&text);
                if secs <= TEN_YEARS {
                    prop_assert_eq!(got, Ok(std::time::Duration::from_secs(secs)), "{:?}", text);
                } else {
                    prop_assert!(got.is_err(), "{text:?}");
                }
            }
            if secs % 60 == 0 && secs <= TEN_YEARS {
                prop_assert_eq!(parse_duration(&format!("{}m", secs / 60)), Ok(std::time::Duration::from_secs(secs)));
            }
        }
    }
}
