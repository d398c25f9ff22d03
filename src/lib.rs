//! Latchkey: an OAuth 2.0 / OpenID Connect authorization server and API-key service in one
//! binary. See ARCHITECTURE.md for the map; `cli::main` is where the binary starts.

/// `resource!(path, GET => handler, POST => other)`: a resource taking those methods and
/// answering any other with `405` and an `Allow` header that lists them (RFC 9110 §15.5.6).
/// HEAD is answered wherever GET is (`telemetry::observe`). The `/v1` routes have their own
/// declaration (`api::v1_routes!`), with the `/v1` error envelope.
macro_rules! resource {
    ($path:expr, $( $method:ident => $handler:expr ),+ $(,)?) => {
        actix_web::web::resource($path)
            $( .route(actix_web::web::method(actix_web::http::Method::$method).to($handler)) )+
            .default_service($crate::app::not_allowed(&[$( stringify!($method) ),+]))
    };
}

pub mod api;
pub mod apikey;
pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod keys;
pub mod oauth;
pub mod pages;
pub mod people;
pub mod store;
pub mod telemetry;

/// Why `s` cannot be a name shown to people (a client's name on the consent page, a person's or
/// an API key's name on the dashboard), or `None`: control characters (NUL, escape sequences,
/// newlines), the bidirectional formatting characters that can make a name read as another
/// (U+202E RIGHT-TO-LEFT OVERRIDE and its kin) and invisible ones (U+200B) are refused.
pub fn hidden_characters(s: &str) -> Option<&'static str> {
    if s.chars().any(char::is_control) {
        return Some("control characters");
    }
    let bidi = |c: char| matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if s.chars().any(bidi) {
        return Some("bidirectional formatting characters");
    }
    // Invisible: "deploy" and "de\u{200B}ploy" would read alike. (Not U+200C/U+200D, which
    // Persian words and emoji sequences need.)
    let invisible = |c: char| matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}');
    if s.chars().any(invisible) {
        return Some("invisible characters");
    }
    None
}

/// Unix seconds as an RFC 3339 UTC timestamp (`2026-11-23T04:09:33Z`).
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_with_hidden_characters_are_refused() {
        assert_eq!(super::hidden_characters("Acme Billing — prod"), None);
        assert_eq!(super::hidden_characters("Zoë's app 日本"), None);
        for bad in ["a\u{0}b", "x\u{1b}[31m", "two\nlines", "tab\there"] {
            assert_eq!(
                super::hidden_characters(bad),
                Some("control characters"),
                "{bad:?}"
            );
        }
        for bad in ["evil\u{202E}gpj.exe", "a\u{2066}b", "\u{200F}x"] {
            assert_eq!(
                super::hidden_characters(bad),
                Some("bidirectional formatting characters"),
                "{bad:?}"
            );
        }
    }
}
