//! The command line of SPEC §1. Commands print JSON on stdout and human messages on stderr;
//! bad input exits non-zero with one line on stderr.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::apikey::AllowedIps;
use crate::config::Config;
use crate::crypto::{self, Secrets};
use crate::keys::Alg;
use crate::oauth::client::{apply_spec, Client, ClientSpec, ClientView};
use crate::store::{self, clients, orgs, Store, StoreError};

#[derive(Parser)]
#[command(
    name = "latchkey",
    version,
    about = "OAuth 2.0 / OpenID Connect authorization server and API-key service"
)]
struct Cli {
    /// Configuration file (default: ./latchkey.toml when it exists).
    #[arg(long, global = true, env = "LATCHKEY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Run pending database migrations and exit.
    Migrate,
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(Box<ClientCommand>),
    /// Manage people who log in.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage an organization's API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Mint a key; prints it once.
    Create {
        #[arg(long)]
        org: String,
        /// live or sandbox.
        #[arg(long)]
        env: String,
        /// Comma- or space-separated: read, write, delete, admin, keys:manage,
        /// clients:manage, users:manage, audit:read (all of them make an sk_ key).
        #[arg(long)]
        scopes: String,
        #[arg(long)]
        name: Option<String>,
        /// Comma-separated CIDRs or addresses the key may be used from.
        #[arg(long)]
        allowed_ips: Option<String>,
        /// A lifetime: 3600, 90m, 12h, 30d.
        #[arg(long)]
        expires_in: Option<String>,
        #[arg(long)]
        rate_limit_per_minute: Option<i64>,
    },
    /// List an organization's keys (never the keys themselves).
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a key at once, on every node.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a person; the password is read from standard input, never from an argument.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// May manage the organization in the dashboard.
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List every signing key with its status.
    List,
    /// Add a key; it is published now and signs after the pre-publication window.
    Generate {
        /// ES256, RS256 or EdDSA.
        #[arg(long)]
        alg: String,
    },
    /// Add a key per algorithm (or for --alg) and retire the current one when it activates.
    Rotate {
        /// ES256, RS256 or EdDSA (default: every algorithm).
        #[arg(long)]
        alg: Option<String>,
    },
    /// Stop a key signing now; it stays published until its last token has expired.
    Retire {
        /// A kid is base64url and may start with "-".
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization.
    Create { name: String },
    /// Change an organization's settings.
    Update {
        org: String,
        /// Comma-separated CIDRs or addresses that the organization's API keys, and access
        /// tokens presented to /v1, are held to ("" allows every address).
        #[arg(long)]
        allowed_ips: String,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client; prints its client_secret once.
    Create {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Change a client's registration (only the options given).
    Update {
        client_id: String,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// List an organization's clients.
    List {
        #[arg(long)]
        org: String,
    },
}

#[derive(Args)]
struct ClientOptions {
    /// The application's name, shown on the consent page (required by create).
    #[arg(long)]
    name: Option<String>,
    /// Comma-separated: client_credentials, authorization_code, refresh_token (required by
    /// create).
    #[arg(long)]
    grant_types: Option<String>,
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// Space- or comma-separated scopes the client may request.
    #[arg(long)]
    scopes: Option<String>,
    /// A public client (no secret; auth method none); `--public=false` makes it confidential.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    public: Option<bool>,
    /// A native app (its loopback redirect URIs may differ in port, RFC 8252 §7.3);
    /// `--native=false` undoes it.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    native: Option<bool>,
    #[arg(long)]
    auth_method: Option<String>,
    /// A file holding the client's public JWKS (private_key_jwt).
    #[arg(long, conflicts_with = "jwks_uri")]
    jwks: Option<PathBuf>,
    #[arg(long)]
    jwks_uri: Option<String>,
    #[arg(long = "audience")]
    audiences: Vec<String>,
    #[arg(long)]
    access_token_alg: Option<String>,
    #[arg(long)]
    id_token_alg: Option<String>,
    /// A first-party client that never asks for consent; `--skip-consent=false` undoes it.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    skip_consent: Option<bool>,
}

impl ClientOptions {
    fn to_spec(&self, creating: bool) -> anyhow::Result<ClientSpec> {
        let jwks = match &self.jwks {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --jwks {}", path.display()))?;
                Some(
                    serde_json::from_str::<Value>(&text)
                        .with_context(|| format!("--jwks {} is not JSON", path.display()))?,
                )
            }
            None => None,
        };
        // Given: that value; not given: false when creating, unchanged when updating.
        let flag = |given: Option<bool>| given.or(creating.then_some(false));
        let list = |v: &Vec<String>| {
            if v.is_empty() && !creating {
                None
            } else {
                Some(v.clone())
            }
        };
        Ok(ClientSpec {
            name: self.name.clone(),
            grant_types: self.grant_types.as_ref().map(|g| vec![g.clone()]),
            redirect_uris: list(&self.redirect_uris),
            post_logout_redirect_uris: list(&self.post_logout_redirect_uris),
            scopes: self.scopes.clone(),
            public: flag(self.public),
            native: flag(self.native),
            auth_method: self.auth_method.clone(),
            jwks,
            jwks_uri: self.jwks_uri.clone(),
            audiences: list(&self.audiences),
            access_token_alg: self.access_token_alg.clone(),
            id_token_alg: self.id_token_alg.clone(),
            skip_consent: flag(self.skip_consent),
        })
    }
}

/// The command a clap error's usage line names (`latchkey client create`), so that the error
/// points to that command's help; `latchkey` when there is none.
fn command_of_usage(rendered: &str) -> String {
    let words: Vec<&str> = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
        .map(|usage| {
            usage
                .split_whitespace()
                .take_while(|w| !w.starts_with(['[', '<', '-', '{']))
                .collect()
        })
        .unwrap_or_default();
    if words.first() == Some(&"latchkey") {
        words.join(" ")
    } else {
        "latchkey".to_string()
    }
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return 0;
            }
            // `latchkey org` alone: the group's help (its subcommands) on stderr, exit 2.
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                eprint!("{}", e.render());
                return 2;
            }
            // One line: clap's message up to its usage block, so that a missing argument's
            // name (on the lines after "not provided:") is kept.
            let rendered = e.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let line = match message.join(" ") {
                m if m.is_empty() => "error: invalid arguments".to_string(),
                m => m,
            };
            eprintln!("{line} (see {} --help)", command_of_usage(&rendered));
            return 2;
        }
    };
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            crate::telemetry::init_logging(&config);
            return_large_allocations_to_the_system();
            let result = actix_rt::System::new().block_on(crate::app::serve(config));
            if result.is_ok() {
                exit_without_library_cleanup();
            }
            result
        }
        command => run_command(command, config).and_then(|out| {
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut stdout, &out)?;
            writeln!(stdout)?;
            Ok(())
        }),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            1
        }
    }
}

/// Every Argon2id verification allocates 19 MiB. glibc serves an allocation that large with
/// mmap, but after the first free it raises its mmap threshold to that size, so later ones
/// come from per-thread heaps that keep the memory: 16 parallel sign-ins left the server at
/// 400 MiB resident. A fixed threshold of 1 MiB keeps large blocks on mmap, returned on free.
fn return_large_allocations_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before the server's threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Ends the server process once it has drained, without running the C libraries' `atexit`
/// handlers. libpq's OpenSSL registers a cleanup that frees its global state at exit; a
/// thread still inside libpq at that moment (a pooled connection being opened or closed by a
/// pool thread) makes that cleanup crash: a SIGSEGV in libcrypto.so.3 on the main thread was
/// seen after SIGTERM, once, at the end of a three-minute PostgreSQL load. Nothing is left to
/// flush: logs go to stderr unbuffered, and the server writes nothing to stdout.
fn exit_without_library_cleanup() -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; no Rust state is used after it.
    unsafe { libc::_exit(0) }
}

/// Opens the store for a one-shot command: migrations run, the instance secret must match,
/// and the signing keys exist (as `serve` would leave them). Only a command that starts a
/// deployment (`org create`) may create a SQLite database, and with it a secret file; any
/// other refuses when the file is missing, naming it, rather than leave a new empty deployment
/// behind in the directory it was run from.
fn open(config: &Config, may_create: bool) -> anyhow::Result<(Store, Secrets)> {
    if let crate::config::DatabaseUrl::Sqlite(path) = &config.database_url {
        if !may_create && !path.exists() {
            return Err(anyhow!(
                "no database at {} (run this where Latchkey serves, or set DATABASE_URL)",
                path.display()
            ));
        }
    }
    let secrets = crypto::load_or_create_secret(config.secret.as_deref(), &config.secret_file)?;
    let store = Store::open_for_command(&config.database_url)?;
    store.setup(&secrets)?;
    Ok((store, secrets))
}

fn store_err(e: StoreError) -> anyhow::Error {
    anyhow!("{e}")
}

fn run_command(command: Command, config: Config) -> anyhow::Result<Value> {
    match command {
        Command::Serve => unreachable_serve(),
        Command::Migrate => {
            let store = Store::open_for_command(&config.database_url)?;
            let applied = store.migrate()?;
            eprintln!("{applied} migration(s) applied");
            Ok(json!({ "applied": applied }))
        }
        Command::Keys(k) => keys_command(k, &config),
        Command::Org(OrgCommand::Create { name }) => {
            let (store, _) = open(&config, true)?;
            let mut conn = store.conn().map_err(store_err)?;
            let row = orgs::create(&mut conn, &name, store::now()).map_err(store_err)?;
            Ok(serde_json::to_value(orgs::OrgView::of(&row))?)
        }
        Command::Org(OrgCommand::Update { org, allowed_ips }) => {
            let allowed = AllowedIps::parse(cidr_list(&allowed_ips))
                .map_err(|e| anyhow!("--allowed-ips: {e}"))?;
            let (store, _) = open(&config, false)?;
            let mut conn = store.conn().map_err(store_err)?;
            let found = orgs::find(&mut conn, &org).map_err(store_err)?;
            let event = crate::audit::Context::cli(&found.id).event(
                "organization.updated",
                Some(&found.id),
                serde_json::json!({"allowed_ips": allowed.names()}),
            );
            let row = orgs::set_allowed_ips(&mut conn, &found.id, &allowed.to_stored(), &event)
                .map_err(store_err)?
                .ok_or_else(|| anyhow!("no organization {org:?}"))?;
            Ok(serde_json::to_value(orgs::OrgView::of(&row))?)
        }
        Command::Client(c) => client_command(*c, &config),
        Command::User(u) => user_command(u, &config),
        Command::ApiKey(k) => api_key_command(k, &config),
    }
}

fn api_key_command(command: ApiKeyCommand, config: &Config) -> anyhow::Result<Value> {
    use crate::api::api_keys::{mint, view, view_with_secret, CreateKey, KeySpec};
    let (store, secrets) = open(config, false)?;
    let mut conn = store.conn().map_err(store_err)?;
    let now = store::now();
    match command {
        ApiKeyCommand::Create {
            org,
            env,
            scopes,
            name,
            allowed_ips,
            expires_in,
            rate_limit_per_minute,
        } => {
            let org = orgs::find(&mut conn, &org).map_err(store_err)?;
            let expires_at = match expires_in {
                Some(s) => {
                    let d = crate::config::parse_duration(&s)
                        .map_err(|e| anyhow!("--expires-in {s:?}: {e}"))?;
                    if d.as_secs() == 0 {
                        return Err(anyhow!("--expires-in must be at least 1 second"));
                    }
                    Some(crate::rfc3339(now + d.as_secs() as i64))
                }
                None => None,
            };
            let body = CreateKey {
                name: name.unwrap_or_else(|| "CLI key".into()),
                environment: Some(env),
                scopes: scopes
                    .split([',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                allowed_ips: allowed_ips
                    .map(|s| cidr_list(&s).map(str::to_string).collect())
                    .unwrap_or_default(),
                expires_at,
                rate_limit_per_minute,
                metadata: None,
            };
            let spec =
                KeySpec::parse(body, crate::apikey::Environment::Live, now).map_err(|e| match e
                    .field
                {
                    Some(f) => anyhow!("--{}: {}", f.replace('_', "-"), e.message),
                    None => anyhow!("{}", e.message),
                })?;
            let (row, secret) = mint(
                &secrets,
                config.key_prefix.as_deref(),
                &org.id,
                &spec,
                "cli",
                now,
            );
            let event = crate::audit::Context::cli(&org.id).event(
                "api_key.created",
                Some(&row.id),
                crate::api::api_keys::key_summary(&row),
            );
            store::api_keys::insert(&mut conn, &row, &event).map_err(store_err)?;
            eprintln!("Copy the key now: it is shown only once.");
            Ok(view_with_secret(&row, &secret))
        }
        ApiKeyCommand::List { org } => {
            let org = orgs::find(&mut conn, &org).map_err(store_err)?;
            let mut out = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store::api_keys::list(&mut conn, &org.id, false, after.as_deref(), 100)
                    .map_err(store_err)?
                    .unwrap_or_default();
                let more = page.len() > 100;
                out.extend(page.iter().take(100).map(view));
                after = page.get(99).map(|r| r.id.clone());
                if !more {
                    break;
                }
            }
            Ok(Value::Array(out))
        }
        ApiKeyCommand::Revoke { id } => {
            let row = store::api_keys::revoke_any(&mut conn, &id, now)
                .map_err(store_err)?
                .ok_or_else(|| anyhow!("no unrevoked API key {id:?}"))?;
            eprintln!("Revoked: refused on every node from the next request.");
            Ok(json!({"id": row.id, "object": "api_key", "deleted": true}))
        }
    }
}

fn unreachable_serve() -> anyhow::Result<Value> {
    bail!("serve is not a one-shot command")
}

fn parse_alg(s: &str) -> anyhow::Result<Alg> {
    Alg::parse(s).ok_or_else(|| anyhow!("--alg {s:?} is not ES256, RS256 or EdDSA"))
}

/// The entries of a comma-separated `--allowed-ips`: "" (or blanks) is the empty list, which
/// allows every address; an empty entry inside a list ("10.0.0.0/8,") stays, to be refused.
fn cidr_list(s: &str) -> impl Iterator<Item = &str> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.split(',')).into_iter().flatten()
}

fn keys_command(command: KeysCommand, config: &Config) -> anyhow::Result<Value> {
    let (store, secrets) = open(config, false)?;
    let mut conn = store.conn().map_err(store_err)?;
    let now = store::now();
    let reload = config.key_reload_interval().as_secs_f64().ceil() as i64;
    // Activation waits for the pre-publication window plus one key reload of every node.
    let delay = config.key_prepublish.as_secs() as i64 + reload;
    // A retired key stays published while any token it signed may live: the longest token
    // lifetime, plus one reload (other nodes sign until they re-read) and clock skew.
    let grace = config.longest_token_ttl().as_secs() as i64 + reload + CLOCK_SKEW;
    match command {
        KeysCommand::List => {
            let rows = store::keys::list_all(&mut conn).map_err(store_err)?;
            Ok(Value::Array(key_views(&rows, now)))
        }
        KeysCommand::Generate { alg } => {
            let alg = parse_alg(&alg)?;
            let (row, retiring) = store::keys::rotate(&mut conn, &secrets, alg, now, delay, grace)
                .map_err(store_err)?;
            eprintln!("{}", rotation_message(alg, &row, &retiring));
            Ok(key_view(&row, now, false))
        }
        KeysCommand::Rotate { alg } => {
            let algs = match alg {
                Some(a) => vec![parse_alg(&a)?],
                None => Alg::ALL.to_vec(),
            };
            let mut out = Vec::new();
            for alg in algs {
                let (row, retiring) =
                    store::keys::rotate(&mut conn, &secrets, alg, now, delay, grace)
                        .map_err(store_err)?;
                eprintln!("{}", rotation_message(alg, &row, &retiring));
                out.push(json!({ "key": key_view(&row, now, false), "retiring": retiring }));
            }
            Ok(Value::Array(out))
        }
        KeysCommand::Retire { kid } => {
            let (row, successor) =
                store::keys::retire(&mut conn, &kid, now, grace).map_err(store_err)?;
            eprintln!(
                "key {kid} no longer signs{}; it leaves the JWKS at {}",
                successor
                    .as_ref()
                    .map(|s| format!(" ({s} signs from now)"))
                    .unwrap_or_default(),
                crate::rfc3339(row.publish_until.unwrap_or(now))
            );
            let mut view = key_view(&row, now, false);
            view["successor"] = json!(successor);
            Ok(view)
        }
    }
}

/// Seconds of clock difference between nodes that key retirement tolerates.
const CLOCK_SKEW: i64 = 5;

fn rotation_message(alg: Alg, row: &store::keys::KeyRow, retiring: &[String]) -> String {
    format!(
        "{alg}: key {} is published now and signs from {}; {} retire then",
        row.kid,
        crate::rfc3339(row.activates_at),
        if retiring.is_empty() {
            "no keys".to_string()
        } else {
            retiring.join(", ")
        }
    )
}

fn key_views(rows: &[store::keys::KeyRow], now: i64) -> Vec<Value> {
    let mut seen_signer: Vec<&str> = Vec::new();
    rows.iter()
        .map(|r| {
            // Rows come newest activation first: the first signing-capable key per alg signs.
            let capable = r.activates_at <= now && r.retired_at.is_none_or(|t| now < t);
            let newest = capable && !seen_signer.contains(&r.alg.as_str());
            if newest {
                seen_signer.push(&r.alg);
            }
            key_view(r, now, newest)
        })
        .collect()
}

fn key_view(r: &store::keys::KeyRow, now: i64, newest_signer: bool) -> Value {
    json!({
        "kid": r.kid,
        "alg": r.alg,
        "status": r.status(now, newest_signer),
        "created_at": crate::rfc3339(r.created_at),
        "activates_at": crate::rfc3339(r.activates_at),
        "retired_at": r.retired_at.map(crate::rfc3339),
        "published_until": r.publish_until.map(crate::rfc3339),
    })
}

fn client_command(command: ClientCommand, config: &Config) -> anyhow::Result<Value> {
    let (store, secrets) = open(config, false)?;
    let mut conn = store.conn().map_err(store_err)?;
    let now = store::now();
    match command {
        ClientCommand::Create { org, options } => {
            let org = orgs::find(&mut conn, &org).map_err(store_err)?;
            let spec = options.to_spec(true)?;
            if spec.name.is_none() {
                bail!("--name is required");
            }
            if spec.grant_types.is_none() {
                bail!("--grant-types is required");
            }
            let blank = Client::blank(&org.id, now);
            let mut client = apply_spec(blank, &spec).map_err(|e| anyhow!("{e}"))?;
            let secret = client.issue_secret(&secrets);
            let event = crate::audit::Context::cli(&client.org_id).event(
                "client.created",
                Some(&client.client_id),
                serde_json::json!({"client_name": client.name, "scope": client.scopes.to_string()}),
            );
            clients::insert(&mut conn, &client, &event).map_err(store_err)?;
            eprintln!(
                "client {} created{}",
                client.client_id,
                if secret.is_some() {
                    "; copy its client_secret now, it is not shown again"
                } else {
                    ""
                }
            );
            Ok(serde_json::to_value(ClientView::of(&client, secret))?)
        }
        ClientCommand::Update { client_id, options } => {
            let existing = clients::find(&mut conn, &client_id)
                .map_err(store_err)?
                .ok_or_else(|| anyhow!("no client {client_id:?}"))?;
            let spec = options.to_spec(false)?;
            let (client, secret) = existing
                .updated(&spec, &secrets, now)
                .map_err(|e| anyhow!("{e}"))?;
            let event = crate::audit::Context::cli(&client.org_id).event(
                "client.updated",
                Some(&client.client_id),
                serde_json::json!({"client_name": client.name, "scope": client.scopes.to_string()}),
            );
            clients::update(&mut conn, &client, &event).map_err(store_err)?;
            Ok(serde_json::to_value(ClientView::of(&client, secret))?)
        }
        ClientCommand::List { org } => {
            let org = orgs::find(&mut conn, &org).map_err(store_err)?;
            let list = clients::list_for_org(&mut conn, &org.id).map_err(store_err)?;
            Ok(serde_json::to_value(
                list.iter()
                    .map(|c| ClientView::of(c, None))
                    .collect::<Vec<_>>(),
            )?)
        }
    }
}

fn user_command(command: UserCommand, config: &Config) -> anyhow::Result<Value> {
    let UserCommand::Create {
        org,
        username,
        email,
        name,
        admin,
        password_stdin,
    } = command;
    if !password_stdin {
        bail!("--password-stdin is required: passwords are read from standard input, never from arguments");
    }
    let person = crate::people::NewPerson::check(&username, email, name, admin)
        .map_err(|(_, e)| anyhow!("{e}"))?;
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .map_err(|e| anyhow!("cannot read the password from standard input: {e}"))?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    crate::people::validate_password(password).map_err(|e| anyhow!("{e}"))?;

    let (store, _) = open(config, false)?;
    let mut conn = store.conn().map_err(store_err)?;
    let org = orgs::find(&mut conn, &org).map_err(store_err)?;
    let hash = crate::people::hash_password(password).map_err(|e| anyhow!("{e}"))?;
    let row = person.into_row(&org.id, hash, store::now());
    let event = crate::audit::Context::cli(&row.org_id).event(
        "user.created",
        Some(&row.id),
        serde_json::json!({"username": row.username, "admin": row.is_admin != 0}),
    );
    store::users::insert(&mut conn, &row, &event).map_err(store_err)?;
    eprintln!("user {} created", row.username);
    Ok(serde_json::to_value(store::users::UserView::of(&row))?)
}
