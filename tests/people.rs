//! People: `latchkey user create` with a password from standard input, Argon2id at rest,
//! usernames unique across the whole server.

mod common;

use common::*;

#[actix_web::test]
async fn a_person_is_created_with_an_argon2id_password_read_from_stdin() {
    let server = TestServer::start().await;
    let org = server.org("acme");
    let out = cli_with_stdin(
        &server.env,
        server.dir.path().to_path_buf(),
        &[
            "user",
            "create",
            "--org",
            "acme",
            "--username",
            "Ada",
            "--email",
            "ada@acme.test",
            "--name",
            "Ada Lovelace",
            "--admin",
            "--password-stdin",
        ],
        "analytical engine\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(user["id"].as_str().unwrap().starts_with("usr_"));
    assert_eq!(user["org_id"], org.as_str());
    assert_eq!(user["username"], "Ada");
    assert_eq!(user["email"], "ada@acme.test");
    assert_eq!(user["email_verified"], false);
    assert_eq!(user["admin"], true);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !printed.contains("argon2") && !printed.contains("analytical"),
        "no hash or password printed"
    );

    // Stored as Argon2id, verifiable, found case-insensitively.
    let url = latchkey::config::DatabaseUrl::parse(&server.db.url).unwrap();
    let store = latchkey::store::Store::open_for_command(&url).unwrap();
    let mut conn = store.conn().unwrap();
    let row = latchkey::store::users::find_by_username(&mut conn, "ADA")
        .unwrap()
        .expect("found by any case");
    assert!(
        row.password_hash.starts_with("$argon2id$"),
        "{}",
        row.password_hash
    );
    assert!(latchkey::people::verify_password(
        "analytical engine",
        &row.password_hash
    ));
    assert!(
        !latchkey::people::verify_password("analytical engine\n", &row.password_hash),
        "the newline is not part of it"
    );
    assert!(
        latchkey::store::users::find_in_org(&mut conn, "org_other", &row.id)
            .unwrap()
            .is_none(),
        "org walls"
    );
}

#[actix_web::test]
async fn bad_people_input_is_refused_with_one_line() {
    let server = TestServer::start().await;
    server.org("acme");
    server.org("globex");
    let run = |args: &[&str], input: &str| {
        cli_with_stdin(&server.env, server.dir.path().to_path_buf(), args, input)
    };
    let ok = run(
        &[
            "user",
            "create",
            "--org",
            "acme",
            "--username",
            "grace",
            "--password-stdin",
        ],
        "cobol forever\n",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec![
                "user",
                "create",
                "--org",
                "globex",
                "--username",
                "GRACE",
                "--password-stdin",
            ],
            "another password\n",
            "taken",
        ),
        (
            vec!["user", "create", "--org", "acme", "--username", "linus"],
            "",
            "--password-stdin is required",
        ),
        (
            vec![
                "user",
                "create",
                "--org",
                "acme",
                "--username",
                "linus",
                "--password-stdin",
            ],
            "short\n",
            "at least 8",
        ),
        (
            vec![
                "user",
                "create",
                "--org",
                "acme",
                "--username",
                "linus",
                "--password-stdin",
            ],
            "",
            "at least 8",
        ),
        (
            vec![
                "user",
                "create",
                "--org",
                "nope",
                "--username",
                "linus",
                "--password-stdin",
            ],
            "long enough pw\n",
            "no organization",
        ),
        (
            vec![
                "user",
                "create",
                "--org",
                "acme",
                "--username",
                "two words",
                "--password-stdin",
            ],
            "long enough pw\n",
            "username",
        ),
        (
            vec![
                "user",
                "create",
                "--org",
                "acme",
                "--username",
                "linus",
                "--email",
                "nope",
                "--password-stdin",
            ],
            "long enough pw\n",
            "email",
        ),
    ];
    for (args, input, needle) in cases {
        let out = run(&args, input);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: {err:?} should mention {needle:?}"
        );
    }
}
