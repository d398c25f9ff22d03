//! Redirect URI matching for the authorization endpoint (RFC 6749 §3.1.2.3, RFC 9700 §4.1.3):
//! the requested URI must equal a registered one exactly, character for character — no
//! normalisation, no prefix or pattern matching. The one exception is RFC 8252 §7.3: a native
//! client's loopback redirect URI (`http://127.0.0.1`, `http://[::1]`) may use any port,
//! because the app picks a free port at run time; everything else about it must still match.

use url::Url;

/// The registered URI that `requested` matches, if any.
pub fn match_redirect_uri<'r>(
    registered: &'r [String],
    requested: &str,
    native: bool,
) -> Option<&'r str> {
    if let Some(exact) = registered.iter().find(|r| r.as_str() == requested) {
        return Some(exact.as_str());
    }
    if !native {
        return None;
    }
    let req = loopback_without_port(requested)?;
    registered
        .iter()
        .find(|r| loopback_without_port(r).is_some_and(|reg| reg == req))
        .map(String::as_str)
}

/// For `http://127.0.0.1:PORT/path?query` or `http://[::1]:PORT/…`: the URI without its port.
/// Only spellings the URL parser gives back unchanged count, so that no other way of writing
/// an address (`2130706433`, dot segments, user info) slips through; `localhost` is not a
/// loopback literal here (RFC 8252 §8.3: it may resolve elsewhere).
fn loopback_without_port(uri: &str) -> Option<String> {
    let mut url = Url::parse(uri).ok()?;
    if url.as_str() != uri
        || url.scheme() != "http"
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
        // Port 0 is no port a browser can be sent to.
        || url.port() == Some(0)
    {
        return None;
    }
    match url.host()? {
        url::Host::Ipv4(ip) if ip == std::net::Ipv4Addr::LOCALHOST => {}
        url::Host::Ipv6(ip) if ip == std::net::Ipv6Addr::LOCALHOST => {}
        _ => return None,
    }
    url.set_port(None).ok()?;
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_the_exact_registered_uri_matches() {
        let r = reg(&["https://app.example.com/cb"]);
        assert_eq!(
            match_redirect_uri(&r, "https://app.example.com/cb", false),
            Some("https://app.example.com/cb")
        );
        for attack in [
            "https://app.example.com/cb/",             // trailing slash
            "https://app.example.com:8443/cb",         // other port
            "https://app.example.com/cb/extra",        // extra path
            "https://app.example.com/cbx",             // longer path
            "https://evil@app.example.com/cb",         // user info
            "https://app.example.com@evil.example/cb", // user info the other way
            "https://APP.example.com/cb",              // other case
            "https://app.example.com/CB",
            "https://app.example.com/cb?x=1",   // added query
            "https://app.example.com/cb#frag",  // fragment
            "http://app.example.com/cb",        // downgrade
            "https://app.example.com/cb/../cb", // dot segments
            "https://app.example.com/%63b",     // percent-encoded
            "https://app.example.com.evil.example/cb",
            " https://app.example.com/cb",
            "",
        ] {
            assert_eq!(match_redirect_uri(&r, attack, false), None, "{attack:?}");
            assert_eq!(
                match_redirect_uri(&r, attack, true),
                None,
                "{attack:?} (native)"
            );
        }
    }

    #[test]
    fn native_loopback_uris_may_differ_in_port_only() {
        let r = reg(&["http://127.0.0.1/callback", "http://[::1]:7000/cb?x=1"]);
        assert!(match_redirect_uri(&r, "http://127.0.0.1:51004/callback", true).is_some());
        assert!(match_redirect_uri(&r, "http://127.0.0.1/callback", true).is_some());
        assert!(match_redirect_uri(&r, "http://[::1]:40001/cb?x=1", true).is_some());
        assert_eq!(
            match_redirect_uri(&r, "http://127.0.0.1:51004/callback", false),
            None,
            "web clients: exact only"
        );
        for attack in [
            "http://127.0.0.1:51004/callback/",
            "http://127.0.0.1:51004/other",
            "http://127.0.0.1:51004/callback?x=1",
            "http://127.0.0.1:51004/callback#f",
            "http://localhost:51004/callback",
            "http://127.0.0.2:51004/callback",
            "http://user@127.0.0.1:51004/callback",
            "https://127.0.0.1:51004/callback",
            "http://127.0.0.1:abc/callback",
            "http://127.0.0.1:0/callback",
            "http://2130706433:51004/callback",
            "http://[::1]:40001/cb",
        ] {
            assert_eq!(match_redirect_uri(&r, attack, true), None, "{attack:?}");
        }
    }
}
