//! The CLI's contract: JSON on stdout, and for bad input a non-zero exit with one line on
//! stderr and nothing on stdout. Settings that are unknown or invalid stop start-up, naming
//! the setting.

mod common;

use std::path::PathBuf;

use common::*;

/// Runs the CLI and expects a refusal: non-zero, one stderr line containing `needle`.
fn refused(env: &[(String, String)], dir: PathBuf, args: &[&str], needle: &str) {
    let out = cli_with_env(env, dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed to stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: one line on stderr, got: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} should mention {needle:?}"
    );
}

#[actix_web::test]
async fn bad_input_exits_non_zero_with_one_line() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let env = server.env.clone();
    let dir = || server.dir.path().to_path_buf();
    let base = ["client", "create", "--org", org.as_str(), "--name", "x"];
    let with = |extra: &[&'static str]| -> Vec<String> {
        base.iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["org".into(), "create".into(), "acme".into()],
            "already exists",
        ),
        (vec!["org".into(), "create".into(), "  ".into()], "name"),
        (
            vec![
                "client".into(),
                "create".into(),
                "--org".into(),
                "nope".into(),
                "--name".into(),
                "x".into(),
                "--grant-types".into(),
                "client_credentials".into(),
            ],
            "no organization",
        ),
        (with(&[]), "--grant-types"),
        (with(&["--grant-types", "password"]), "unknown grant type"),
        (
            with(&[
                "--grant-types",
                "client_credentials",
                "--access-token-alg",
                "HS256",
            ]),
            "access-token-alg",
        ),
        (
            with(&[
                "--grant-types",
                "client_credentials",
                "--auth-method",
                "private_key_jwt",
            ]),
            "private_key_jwt needs",
        ),
        (
            with(&[
                "--grant-types",
                "client_credentials",
                "--auth-method",
                "magic",
            ]),
            "unknown method",
        ),
        (
            with(&["--grant-types", "client_credentials", "--public"]),
            "public client cannot use client_credentials",
        ),
        (
            with(&["--grant-types", "authorization_code"]),
            "redirect URI",
        ),
        (
            with(&[
                "--grant-types",
                "authorization_code",
                "--redirect-uri",
                "http://app.example.com/cb",
            ]),
            "loopback",
        ),
        (
            with(&[
                "--grant-types",
                "authorization_code",
                "--redirect-uri",
                "https://app.example.com/cb#frag",
            ]),
            "fragment",
        ),
        (
            with(&[
                "--grant-types",
                "client_credentials",
                "--audience",
                "not a uri",
            ]),
            "audience",
        ),
        (
            with(&[
                "--grant-types",
                "client_credentials",
                "--scopes",
                "ok \"bad",
            ]),
            "scope",
        ),
        (
            with(&[
                "--grant-types",
                "client_credentials",
                "--jwks",
                "/nonexistent/jwks.json",
                "--auth-method",
                "private_key_jwt",
            ]),
            "cannot read --jwks",
        ),
        (
            with(&["--grant-types", "client_credentials", "--no-such-flag"]),
            "unexpected argument",
        ),
        (
            vec![
                "client".into(),
                "update".into(),
                "no-such-client".into(),
                "--name".into(),
                "y".into(),
            ],
            "no client",
        ),
        (
            vec![
                "keys".into(),
                "generate".into(),
                "--alg".into(),
                "HS256".into(),
            ],
            "--alg",
        ),
        (
            vec!["keys".into(), "retire".into(), "nope".into()],
            "no signing key",
        ),
        // Kids are base64url: one may start with "-" and is still a kid, not a flag.
        (
            vec![
                "keys".into(),
                "retire".into(),
                "-MrXqrvSmkhxjs8YNrLsmSfcXH1NpLdyWXeZTIGXND0".into(),
            ],
            "no signing key",
        ),
        (vec!["frobnicate".into()], "unrecognized subcommand"),
        // A missing argument is named on the one line.
        (
            vec![
                "api-key".into(),
                "create".into(),
                "--org".into(),
                org.clone(),
                "--env".into(),
                "live".into(),
            ],
            "not provided: --scopes <SCOPES>",
        ),
        (
            with(&[
                "--grant-types",
                "client_credentials",
                "--auth-method",
                "private_key_jwt",
                "--jwks-uri",
                "http://10.0.0.5/jwks",
            ]),
            "must be https",
        ),
        (
            with(&[
                "--grant-types",
                "client_credentials",
                "--auth-method",
                "private_key_jwt",
                "--jwks-uri",
                "file:///etc/passwd",
            ]),
            "must be https",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&env, dir(), &args, needle);
    }
}

#[actix_web::test]
async fn clients_are_listed_without_secrets_and_updated_in_place() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let (id, secret) = server.cc_client(&org, &[]);
    assert_eq!(secret.len(), 43);
    let list = server.cli_json(&["client", "list", "--org", "acme"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["client_id"], id.as_str());
    assert!(list[0].get("client_secret").is_none(), "never shown again");
    assert!(!server
        .cli(&["client", "list", "--org", "acme"])
        .stdout
        .windows(secret.len())
        .any(|w| w == secret.as_bytes()));

    let updated = server.cli_json(&[
        "client",
        "update",
        &id,
        "--scopes",
        "read",
        "--audience",
        "https://api.test",
    ]);
    assert_eq!(updated["scope"], "read");
    assert!(
        updated.get("client_secret").is_none(),
        "the secret is unchanged"
    );
    // The update takes effect at once and the secret still works.
    let res = server.token(&id, &secret, &[("scope", "write")]).await;
    assert_eq!(res.status(), 400);
    let jwt = server.access_token(&id, &secret, &[]).await;
    assert_eq!(jwt_payload(&jwt)["aud"], "https://api.test");

    // Switching to client_secret_jwt issues a new secret usable as an HMAC key.
    let switched = server.cli_json(&[
        "client",
        "update",
        &id,
        "--auth-method",
        "client_secret_jwt",
    ]);
    assert_eq!(switched["client_secret"].as_str().unwrap().len(), 43);
    assert_eq!(
        server.token(&id, &secret, &[]).await.status(),
        401,
        "basic no longer accepted"
    );
}

#[test]
fn unknown_and_invalid_settings_stop_start_up_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let p = || dir.path().to_path_buf();
    refused(
        &env(&[("LATCHKEY_ACCES_TOKEN_TTL", "60")]),
        p(),
        &["serve"],
        "unknown setting LATCHKEY_ACCES_TOKEN_TTL",
    );
    refused(
        &env(&[("LATCHKEY_ACCESS_TOKEN_TTL", "soon")]),
        p(),
        &["serve"],
        "invalid setting LATCHKEY_ACCESS_TOKEN_TTL",
    );
    refused(
        &env(&[("LATCHKEY_LOG_FORMAT", "xml")]),
        p(),
        &["migrate"],
        "LATCHKEY_LOG_FORMAT",
    );
    refused(
        &env(&[("LATCHKEY_SECRET", "dG9vIHNob3J0")]),
        p(),
        &["serve"],
        "LATCHKEY_SECRET",
    );
    refused(
        &env(&[("LATCHKEY_BIND", "nowhere")]),
        p(),
        &["serve"],
        "LATCHKEY_BIND",
    );
    refused(
        &env(&[("DATABASE_URL", "mysql://x")]),
        p(),
        &["serve"],
        "DATABASE_URL",
    );
    std::fs::write(
        dir.path().join("latchkey.toml"),
        "issuer = \"https://auth.example.com\"\nacess_token_ttl = 5\n",
    )
    .unwrap();
    refused(&[], p(), &["serve"], "acess_token_ttl");
    std::fs::write(dir.path().join("latchkey.toml"), "issuer = [1, 2]\n").unwrap();
    refused(&[], p(), &["serve"], "issuer");
    std::fs::write(dir.path().join("latchkey.toml"), "this is not toml").unwrap();
    refused(&[], p(), &["serve"], "latchkey.toml");
    std::fs::remove_file(dir.path().join("latchkey.toml")).unwrap();
    refused(
        &[],
        p(),
        &["--config", "/nonexistent.toml", "serve"],
        "/nonexistent.toml",
    );
}

#[actix_web::test]
async fn another_instance_secret_is_refused_by_an_existing_database() {
    let server = TestServer::start().await;
    server.org("acme");
    let mut env = server.env.clone();
    env.retain(|(k, _)| k != "LATCHKEY_SECRET");
    env.push((
        "LATCHKEY_SECRET".into(),
        "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC1vdGhlci1zZWNyZXQtMzI=".into(),
    ));
    refused(
        &env,
        server.dir.path().to_path_buf(),
        &["org", "create", "x"],
        "instance secret does not match",
    );
    // A rotated list, new secret first and the old one after it, is accepted.
    env.retain(|(k, _)| k != "LATCHKEY_SECRET");
    env.push((
        "LATCHKEY_SECRET".into(),
        format!("b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC1vdGhlci1zZWNyZXQtMzI=,{SECRET_B64}"),
    ));
    let out = cli_with_env(
        &env,
        server.dir.path().to_path_buf(),
        &["org", "create", "y"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[actix_web::test]
async fn a_private_key_jwt_client_can_move_to_a_secret() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let key = latchkey::keys::generate(latchkey::keys::Alg::ES256).unwrap();
    let path = server.dir.path().join("jwks.json");
    std::fs::write(
        &path,
        serde_json::json!({"keys": [key.public_jwk]}).to_string(),
    )
    .unwrap();
    let (id, secret) = server.cc_client(
        &org,
        &[
            "--auth-method",
            "private_key_jwt",
            "--jwks",
            path.to_str().unwrap(),
        ],
    );
    assert!(secret.is_empty(), "private_key_jwt clients get no secret");
    let moved = server.cli_json(&[
        "client",
        "update",
        &id,
        "--auth-method",
        "client_secret_basic",
    ]);
    assert!(
        moved.get("jwks").is_none(),
        "the key set goes with the method"
    );
    let secret = moved["client_secret"]
        .as_str()
        .expect("a new secret, shown once");
    assert_eq!(server.token(&id, secret, &[]).await.status(), 200);
}

#[test]
fn a_command_run_where_no_deployment_is_creates_nothing() {
    // The embedded default (./data/latchkey.db, keys/latchkey.secret) in an empty directory:
    // a command that reads refuses, naming the database, and leaves no files behind.
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["api-key", "list", "--org", "acme"][..],
        &["client", "list", "--org", "acme"][..],
        &["keys", "list"][..],
    ] {
        refused(&[], dir.path().to_path_buf(), args, "no database at");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    // Starting a deployment is still one command.
    let out = cli_with_env(&[], dir.path().to_path_buf(), &["org", "create", "acme"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("data/latchkey.db").exists());
    let out = cli_with_env(
        &[],
        dir.path().to_path_buf(),
        &["api-key", "list", "--org", "acme"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[actix_web::test]
async fn client_flags_can_be_turned_off_again() {
    let server = TestServer::start().await;
    server.org("acme");
    let made = server.cli_json(&[
        "client",
        "create",
        "--org",
        "acme",
        "--name",
        "spa",
        "--grant-types",
        "authorization_code",
        "--redirect-uri",
        "http://127.0.0.1/cb",
        "--public",
        "--native",
        "--skip-consent",
    ]);
    let id = made["client_id"].as_str().unwrap().to_string();
    assert_eq!(made["skip_consent"], true, "{made}");
    assert_eq!(made["token_endpoint_auth_method"], "none", "{made}");
    let off = server.cli_json(&[
        "client",
        "update",
        &id,
        "--skip-consent=false",
        "--native=false",
    ]);
    assert_eq!(off["skip_consent"], false, "{off}");
    assert_eq!(off["native"], false, "{off}");
    assert_eq!(
        off["token_endpoint_auth_method"], "none",
        "unchanged: {off}"
    );
    // Public → confidential: it gets an authentication method and a secret, shown once.
    let confidential = server.cli_json(&["client", "update", &id, "--public=false"]);
    assert_eq!(confidential["public"], false, "{confidential}");
    assert_ne!(confidential["token_endpoint_auth_method"], "none");
    assert_eq!(
        confidential["client_secret"].as_str().map(str::len),
        Some(43),
        "{confidential}"
    );
}

#[test]
fn a_command_group_alone_lists_its_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    for (group, subcommands) in [
        ("org", &["create", "update"][..]),
        ("keys", &["list", "generate", "rotate", "retire"][..]),
    ] {
        let out = cli_with_env(&[], dir.path().to_path_buf(), &[group]);
        assert_eq!(out.status.code(), Some(2), "{group}");
        assert!(out.stdout.is_empty(), "{group}");
        let err = String::from_utf8_lossy(&out.stderr);
        for sub in subcommands {
            assert!(err.contains(sub), "{group}: {sub} in {err}");
        }
    }
}

#[test]
fn a_usage_error_points_to_its_own_command_s_help() {
    let dir = tempfile::tempdir().unwrap();
    for (args, help) in [
        (
            &["client", "create", "--no-such-flag"][..],
            "(see latchkey client create --help)",
        ),
        (
            &["api-key", "revoke"][..],
            "(see latchkey api-key revoke --help)",
        ),
        (&["no-such-command"][..], "(see latchkey --help)"),
    ] {
        let out = cli_with_env(&[], dir.path().to_path_buf(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.trim_end().ends_with(help), "{args:?}: {err}");
    }
    // What create requires is said in its help.
    let out = cli_with_env(
        &[],
        dir.path().to_path_buf(),
        &["client", "create", "--help"],
    );
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(help.matches("required by create").count(), 2, "{help}");
}
