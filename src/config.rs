//! Configuration: one typed struct, read once at start-up from the environment and an optional
//! `latchkey.toml`, validated before anything else runs.
//!
//! Every setting of SPEC §1 has an environment variable (`LATCHKEY_ISSUER`, `DATABASE_URL`, …)
//! and a key of the same name in lower case without the `LATCHKEY_` prefix in `latchkey.toml`
//! (`issuer`, `database_url`, …). The environment wins over the file. An unknown `LATCHKEY_*`
//! variable, an unknown key in the file, or a value that does not parse stops start-up with one
//! line naming it: a typo in a security setting must never be silently ignored.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

/// One setting: its environment name, its file key, and its default (as text, parsed like any
/// other value so that defaults and user input go through the same validation).
struct Setting {
    env: &'static str,
    key: &'static str,
    default: Option<&'static str>,
}

const SETTINGS: &[Setting] = &[
    Setting {
        env: "LATCHKEY_ISSUER",
        key: "issuer",
        default: Some("http://127.0.0.1:8080"),
    },
    Setting {
        env: "LATCHKEY_BIND",
        key: "bind",
        default: Some("127.0.0.1:8080"),
    },
    Setting {
        env: "DATABASE_URL",
        key: "database_url",
        default: Some("./data/latchkey.db"),
    },
    Setting {
        env: "LATCHKEY_DB_POOL_SIZE",
        key: "db_pool_size",
        default: None,
    },
    Setting {
        env: "LATCHKEY_DATABASE_WAIT",
        key: "database_wait",
        default: Some("60s"),
    },
    Setting {
        env: "LATCHKEY_WORKERS",
        key: "workers",
        default: None,
    },
    Setting {
        env: "LATCHKEY_SECRET",
        key: "secret",
        default: None,
    },
    Setting {
        env: "LATCHKEY_KEY_PREFIX",
        key: "key_prefix",
        default: None,
    },
    Setting {
        env: "LATCHKEY_ACCESS_TOKEN_TTL",
        key: "access_token_ttl",
        default: Some("900s"),
    },
    Setting {
        env: "LATCHKEY_ID_TOKEN_TTL",
        key: "id_token_ttl",
        default: Some("3600s"),
    },
    Setting {
        env: "LATCHKEY_REFRESH_TOKEN_TTL",
        key: "refresh_token_ttl",
        default: Some("30d"),
    },
    Setting {
        env: "LATCHKEY_REFRESH_IDLE_TTL",
        key: "refresh_idle_ttl",
        default: Some("7d"),
    },
    Setting {
        env: "LATCHKEY_REFRESH_REUSE_GRACE",
        key: "refresh_reuse_grace",
        default: Some("0s"),
    },
    Setting {
        env: "LATCHKEY_SESSION_TTL",
        key: "session_ttl",
        default: Some("12h"),
    },
    Setting {
        env: "LATCHKEY_KEY_PREPUBLISH",
        key: "key_prepublish",
        default: Some("10m"),
    },
    Setting {
        env: "LATCHKEY_TRUSTED_PROXIES",
        key: "trusted_proxies",
        default: Some(""),
    },
    Setting {
        env: "LATCHKEY_LOG",
        key: "log",
        default: Some("info"),
    },
    Setting {
        env: "LATCHKEY_LOG_FORMAT",
        key: "log_format",
        default: Some("text"),
    },
];

/// Variables with the `LATCHKEY_` prefix that are not settings but are still ours.
const NOT_SETTINGS: &[&str] = &["LATCHKEY_CONFIG"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown setting {0} (known: {known})", known = known_names(|s| s.env))]
    Unknown(String),
    #[error("unknown key {0} in latchkey.toml (known: {known})", known = known_names(|s| s.key))]
    UnknownKey(String),
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("cannot read configuration file {path}: {reason}")]
    File { path: String, reason: String },
}

/// The settings' names, as environment variables or as file keys.
fn known_names(name: fn(&Setting) -> &'static str) -> String {
    SETTINGS.iter().map(name).collect::<Vec<_>>().join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the store lives: SQLite (a file path) or PostgreSQL (a `postgres://` URL).
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl fmt::Debug for DatabaseUrl {
    // Never print a PostgreSQL password into a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            DatabaseUrl::Postgres(u) => match Url::parse(u) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    write!(f, "{url}")
                }
                Err(_) => write!(f, "postgres://…"),
            },
        }
    }
}

impl DatabaseUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty".into());
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Url::parse(s).map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
            return Ok(DatabaseUrl::Postgres(s.to_string()));
        }
        if s.contains("://") && !s.starts_with("sqlite://") {
            return Err("expected a SQLite path, sqlite://PATH, or postgres://…".into());
        }
        // `sqlite://PATH` and `sqlite:PATH` (the two spellings Rust tools use), or a bare path.
        let path = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
            .unwrap_or(s);
        if path.is_empty() {
            return Err("empty SQLite path".into());
        }
        if path.trim_start_matches(':') == "memory:" {
            return Err(
                "an in-memory SQLite database would lose everything at exit; give a file path"
                    .into(),
            );
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, DatabaseUrl::Postgres(_))
    }
}

/// The validated configuration. Durations are whole seconds.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LATCHKEY_ISSUER` without a trailing slash; every URL Latchkey emits starts with it.
    pub issuer: String,
    pub bind: String,
    pub database_url: DatabaseUrl,
    /// Database connections per node (default: 4 per core).
    pub db_pool_size: u32,
    /// How long `serve` waits for an unreachable PostgreSQL at start, retrying, before it
    /// exits (`0s`: exit at once).
    pub database_wait: Duration,
    /// HTTP worker threads per node (default: one per core).
    pub workers: usize,
    /// The raw `LATCHKEY_SECRET` value (a comma-separated list, newest first), if set.
    pub secret: Option<String>,
    pub key_prefix: Option<String>,
    pub access_token_ttl: Duration,
    pub id_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub refresh_idle_ttl: Duration,
    pub refresh_reuse_grace: Duration,
    pub session_ttl: Duration,
    pub key_prepublish: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub log: String,
    pub log_format: LogFormat,
    /// Where the embedded default keeps the instance secret when `LATCHKEY_SECRET` is unset.
    pub secret_file: PathBuf,
    /// Settings that were taken, but not as written: `serve` logs each as a warning.
    pub notices: Vec<String>,
}

impl Config {
    /// Reads `latchkey.toml` (the given path, else `./latchkey.toml` when it exists) and the
    /// process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut env: Vec<(String, String)> = Vec::new();
        for (k, v) in std::env::vars_os() {
            let Ok(k) = k.into_string() else { continue };
            match v.into_string() {
                Ok(v) => env.push((k, v)),
                // A setting we cannot read must not be silently skipped.
                Err(_) if k.starts_with("LATCHKEY_") || k == "DATABASE_URL" => {
                    return Err(ConfigError::Invalid {
                        name: k,
                        reason: "not valid UTF-8".into(),
                    });
                }
                Err(_) => {}
            }
        }
        let file_text = match file {
            Some(path) => Some(read_file(path)?),
            None => {
                let default = Path::new("latchkey.toml");
                if default.exists() {
                    Some(read_file(default)?)
                } else {
                    None
                }
            }
        };
        Config::from_sources(file_text.as_deref(), &env)
    }

    /// Builds the configuration from a file's text and an environment (pure, for tests).
    pub fn from_sources(
        file: Option<&str>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut values: Vec<Option<(String, String)>> = SETTINGS
            .iter()
            .map(|s| s.default.map(|d| (s.env.to_string(), d.to_string())))
            .collect();

        if let Some(text) = file {
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::File {
                        path: "latchkey.toml".into(),
                        reason: e.message().to_string(),
                    })?;
            for (key, value) in table {
                let index = SETTINGS
                    .iter()
                    .position(|s| s.key == key)
                    .ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
                let text = toml_value_text(&value).ok_or_else(|| ConfigError::Invalid {
                    name: format!("{key} (in latchkey.toml)"),
                    reason: "expected a string, a number or a list of strings".into(),
                })?;
                values[index] = Some((format!("{key} (in latchkey.toml)"), text));
            }
        }

        for (name, value) in env {
            if let Some(index) = SETTINGS.iter().position(|s| s.env == name) {
                values[index] = Some((name.clone(), value.clone()));
            } else if name.starts_with("LATCHKEY_") && !NOT_SETTINGS.contains(&name.as_str()) {
                return Err(ConfigError::Unknown(name.clone()));
            }
        }

        let get = |env: &str| -> Option<(String, String)> {
            let index = SETTINGS
                .iter()
                .position(|s| s.env == env)
                .expect("known setting");
            values[index].clone()
        };
        let required =
            |env: &str| -> (String, String) { get(env).expect("setting with a default") };
        let invalid = |name: &str, reason: String| ConfigError::Invalid {
            name: name.to_string(),
            reason,
        };

        let mut notices = Vec::new();
        let (name, written) = required("LATCHKEY_ISSUER");
        let issuer = parse_issuer(&written).map_err(|r| invalid(&name, r))?;
        if issuer != written {
            // OpenID Connect Discovery §4.3 and RFC 8414 §3.3: relying parties compare the
            // issuer exactly, so one configured with the slash would refuse this server's.
            notices.push(format!(
                "{name} {written:?} is used without its trailing slash, as {issuer:?}: every token's iss and the discovery documents say {issuer:?}, and relying parties must be configured with exactly that"
            ));
        }

        let (name, bind) = required("LATCHKEY_BIND");
        if bind.parse::<std::net::SocketAddr>().is_err() && !looks_like_host_port(&bind) {
            return Err(invalid(&name, format!("{bind:?} is not HOST:PORT")));
        }

        let (name, db) = required("DATABASE_URL");
        let database_url = DatabaseUrl::parse(&db).map_err(|r| invalid(&name, r))?;

        let db_pool_size = match get("LATCHKEY_DB_POOL_SIZE") {
            Some((name, value)) => match value.trim().parse::<u32>() {
                Ok(n) if (1..=256).contains(&n) => n,
                _ => {
                    return Err(invalid(
                        &name,
                        format!("{value:?} is not a number from 1 to 256"),
                    ))
                }
            },
            None => std::thread::available_parallelism().map_or(8, |n| 4 * n.get() as u32),
        };

        let workers = match get("LATCHKEY_WORKERS") {
            Some((name, value)) => match value.trim().parse::<usize>() {
                Ok(n) if (1..=256).contains(&n) => n,
                _ => {
                    return Err(invalid(
                        &name,
                        format!("{value:?} is not a number from 1 to 256"),
                    ))
                }
            },
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };

        let secret = match get("LATCHKEY_SECRET") {
            Some((name, value)) => {
                crate::crypto::parse_secret_list(&value).map_err(|r| invalid(&name, r))?;
                Some(value)
            }
            None => None,
        };

        let key_prefix = match get("LATCHKEY_KEY_PREFIX") {
            Some((name, value)) if !value.is_empty() => {
                let ok = value.len() <= 16
                    && value
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && value.chars().next().is_some_and(|c| c.is_ascii_lowercase());
                if !ok {
                    return Err(invalid(
                        &name,
                        "expected 1-16 lowercase letters or digits, starting with a letter".into(),
                    ));
                }
                Some(value)
            }
            _ => None,
        };

        let duration = |env: &str| -> Result<Duration, ConfigError> {
            let (name, value) = required(env);
            parse_duration(&value).map_err(|r| invalid(&name, r))
        };
        let access_token_ttl = duration("LATCHKEY_ACCESS_TOKEN_TTL")?;
        let id_token_ttl = duration("LATCHKEY_ID_TOKEN_TTL")?;
        let refresh_token_ttl = duration("LATCHKEY_REFRESH_TOKEN_TTL")?;
        let refresh_idle_ttl = duration("LATCHKEY_REFRESH_IDLE_TTL")?;
        let refresh_reuse_grace = duration("LATCHKEY_REFRESH_REUSE_GRACE")?;
        let session_ttl = duration("LATCHKEY_SESSION_TTL")?;
        let database_wait = duration("LATCHKEY_DATABASE_WAIT")?;
        let key_prepublish = duration("LATCHKEY_KEY_PREPUBLISH")?;
        for (env, d) in [
            ("LATCHKEY_ACCESS_TOKEN_TTL", access_token_ttl),
            ("LATCHKEY_ID_TOKEN_TTL", id_token_ttl),
            ("LATCHKEY_REFRESH_TOKEN_TTL", refresh_token_ttl),
            ("LATCHKEY_REFRESH_IDLE_TTL", refresh_idle_ttl),
            ("LATCHKEY_SESSION_TTL", session_ttl),
        ] {
            if d.is_zero() {
                return Err(invalid(
                    &required(env).0,
                    "must be at least 1 second".into(),
                ));
            }
        }
        if refresh_reuse_grace > Duration::from_secs(60) {
            let name = required("LATCHKEY_REFRESH_REUSE_GRACE").0;
            return Err(invalid(
                &name,
                "at most 60 seconds (RFC 9700 §4.14: a longer window invites replay)".into(),
            ));
        }

        let (name, proxies) = required("LATCHKEY_TRUSTED_PROXIES");
        let trusted_proxies = proxies
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| parse_cidr(s).map_err(|r| invalid(&name, r)))
            .collect::<Result<Vec<_>, _>>()?;

        let (name, log) = required("LATCHKEY_LOG");
        // Each directive without the spaces around it: tracing-subscriber 0.3 finds a
        // directive's parts in its trimmed text but cuts them from the untrimmed one, so
        // `info, latchkey=debug` filtered the target " latchke", and a space before a non-ASCII
        // character (` é=debug`) panicked at start-up.
        let log = log
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .collect::<Vec<_>>()
            .join(",");
        tracing_subscriber::EnvFilter::try_new(&log)
            .map_err(|e| invalid(&name, format!("not a tracing filter: {e}")))?;

        let (name, format) = required("LATCHKEY_LOG_FORMAT");
        let log_format = match format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    &name,
                    format!("{other:?} is neither text nor json"),
                ))
            }
        };

        Ok(Config {
            issuer,
            bind,
            database_url,
            db_pool_size,
            database_wait,
            workers,
            secret,
            key_prefix,
            access_token_ttl,
            id_token_ttl,
            refresh_token_ttl,
            refresh_idle_ttl,
            refresh_reuse_grace,
            session_ttl,
            key_prepublish,
            trusted_proxies,
            log,
            log_format,
            secret_file: PathBuf::from("keys/latchkey.secret"),
            notices,
        })
    }

    /// The longest a token signed now can stay valid: a retired key stays published this long.
    pub fn longest_token_ttl(&self) -> Duration {
        self.access_token_ttl.max(self.id_token_ttl)
    }

    /// How often a node re-reads the signing-key set. A rotated-in key activates this much
    /// after the pre-publication window, so that every node has published it for the whole
    /// window before any node signs with it.
    pub fn key_reload_interval(&self) -> Duration {
        (self.key_prepublish / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn toml_value_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        _ => None,
    }
}

fn looks_like_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

/// RFC 8414 §2: the issuer is a URL with no query or fragment. `https` is expected in
/// production; `http` is accepted so that the embedded default works on loopback.
fn parse_issuer(s: &str) -> Result<String, String> {
    let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err("must be an http or https URL".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must have no query or fragment (RFC 8414 §2)".into());
    }
    if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err("must name a host and carry no credentials".into());
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// Durations: a number of seconds (`900`) or a humantime value (`900s`, `15m`, `12h`, `30d`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return check_duration_bound(s, Duration::from_secs(secs));
    }
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); use e.g. 900s, 15m, 12h, 30d"))?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{s:?} is not a whole number of seconds"));
    }
    check_duration_bound(s, d)
}

/// No lifetime or window in Latchkey needs more than ten years; a larger value is a typo that
/// would overflow timestamps.
fn check_duration_bound(s: &str, d: Duration) -> Result<Duration, String> {
    const TEN_YEARS: u64 = 10 * 366 * 86400;
    if d.as_secs() > TEN_YEARS {
        return Err(format!("{s:?} is longer than ten years"));
    }
    Ok(d)
}

/// A CIDR, or a bare address meaning that one host.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a CIDR (e.g. 10.0.0.0/8) or an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_embedded_default() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert_eq!(c.issuer, "http://127.0.0.1:8080");
        assert_eq!(
            c.database_url,
            DatabaseUrl::Sqlite("./data/latchkey.db".into())
        );
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.refresh_token_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(c.key_prepublish, Duration::from_secs(600));
    }

    #[test]
    fn a_trailing_slash_in_the_issuer_is_dropped_and_said() {
        let c =
            Config::from_sources(None, &env(&[("LATCHKEY_ISSUER", "https://a.example/")])).unwrap();
        assert_eq!(c.issuer, "https://a.example");
        assert_eq!(c.notices.len(), 1);
        assert!(
            c.notices[0].contains("LATCHKEY_ISSUER") && c.notices[0].contains("trailing slash"),
            "{:?}",
            c.notices
        );
        let c = Config::from_sources(None, &env(&[("LATCHKEY_ISSUER", "https://a.example/t")]))
            .unwrap();
        assert_eq!(c.issuer, "https://a.example/t");
        assert!(c.notices.is_empty(), "{:?}", c.notices);
    }

    #[test]
    fn workers_default_to_the_cores_and_are_bounded() {
        let c = Config::from_sources(None, &[]).unwrap();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert_eq!(c.workers, cores);
        let c = Config::from_sources(None, &env(&[("LATCHKEY_WORKERS", "1")])).unwrap();
        assert_eq!(c.workers, 1);
        for bad in ["0", "257", "two", "-1"] {
            let e = Config::from_sources(None, &env(&[("LATCHKEY_WORKERS", bad)])).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("invalid setting LATCHKEY_WORKERS"),
                "{bad}: {e}"
            );
        }
        let c = Config::from_sources(Some("workers = 3"), &[]).unwrap();
        assert_eq!(c.workers, 3);
    }

    #[test]
    fn an_unknown_variable_is_named() {
        let e = Config::from_sources(None, &env(&[("LATCHKEY_ACCES_TOKEN_TTL", "5")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unknown setting LATCHKEY_ACCES_TOKEN_TTL"),
            "{e}"
        );
    }

    #[test]
    fn an_invalid_value_is_named() {
        let e =
            Config::from_sources(None, &env(&[("LATCHKEY_ACCESS_TOKEN_TTL", "soon")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid setting LATCHKEY_ACCESS_TOKEN_TTL"),
            "{e}"
        );
        let e = Config::from_sources(None, &env(&[("LATCHKEY_REFRESH_REUSE_GRACE", "61")]))
            .unwrap_err();
        assert!(
            e.to_string().contains("LATCHKEY_REFRESH_REUSE_GRACE"),
            "{e}"
        );
        let e = Config::from_sources(None, &env(&[("LATCHKEY_ISSUER", "https://a.example/?x=1")]))
            .unwrap_err();
        assert!(e.to_string().contains("LATCHKEY_ISSUER"), "{e}");
        let e = Config::from_sources(None, &env(&[("LATCHKEY_TRUSTED_PROXIES", "10.0.0.0/33")]))
            .unwrap_err();
        assert!(e.to_string().contains("LATCHKEY_TRUSTED_PROXIES"), "{e}");
        let e = Config::from_sources(None, &env(&[("LATCHKEY_SECRET", "c2hvcnQ=")])).unwrap_err();
        assert!(e.to_string().contains("LATCHKEY_SECRET"), "{e}");
    }

    #[test]
    fn durations_have_a_sane_bound() {
        let e = Config::from_sources(None, &env(&[("LATCHKEY_ACCESS_TOKEN_TTL", "99999999999")]))
            .unwrap_err();
        assert!(e.to_string().contains("ten years"), "{e}");
        let e =
            Config::from_sources(None, &env(&[("LATCHKEY_KEY_PREPUBLISH", "20000d")])).unwrap_err();
        assert!(e.to_string().contains("LATCHKEY_KEY_PREPUBLISH"), "{e}");
    }

    #[test]
    fn sqlite_urls_in_both_spellings_name_the_same_file() {
        for url in ["sqlite://data/x.db", "sqlite:data/x.db", "data/x.db"] {
            assert_eq!(
                DatabaseUrl::parse(url).unwrap(),
                DatabaseUrl::Sqlite(PathBuf::from("data/x.db")),
                "{url}"
            );
        }
        for url in ["sqlite::memory:", ":memory:", "sqlite://:memory:"] {
            let e = DatabaseUrl::parse(url).unwrap_err();
            assert!(e.contains("in-memory"), "{url}: {e}");
        }
    }

    #[test]
    fn the_file_is_read_and_the_environment_wins() {
        let file = "issuer = \"https://auth.example.com/\"\naccess_token_ttl = 60\ntrusted_proxies = [\"10.0.0.0/8\"]\n";
        let c =
            Config::from_sources(Some(file), &env(&[("LATCHKEY_ACCESS_TOKEN_TTL", "2m")])).unwrap();
        assert_eq!(c.issuer, "https://auth.example.com");
        assert_eq!(c.access_token_ttl, Duration::from_secs(120));
        assert_eq!(c.trusted_proxies.len(), 1);
        let e = Config::from_sources(Some("isuer = \"x\""), &[]).unwrap_err();
        let e = e.to_string();
        assert!(e.starts_with("unknown key isuer in latchkey.toml"), "{e}");
        // The file's own spellings are offered, not the environment's.
        assert!(
            e.contains("issuer, bind") && !e.contains("LATCHKEY_"),
            "{e}"
        );
    }
}
