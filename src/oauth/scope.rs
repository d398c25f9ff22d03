//! Scopes (RFC 6749 §3.3) and resource indicators (RFC 8707), parsed once at the edge.

use std::collections::BTreeSet;
use std::fmt;

/// A set of scope tokens, kept sorted so that equal sets print equally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<String>);

impl ScopeSet {
    /// RFC 6749 §3.3: space-delimited tokens of `%x21 / %x23-5B / %x5D-7E`.
    pub fn parse(s: &str) -> Result<ScopeSet, String> {
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            if !token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
            {
                return Err(format!(
                    "{token:?} is not a valid scope token (RFC 6749 §3.3)"
                ));
            }
            set.insert(token.to_string());
        }
        Ok(ScopeSet(set))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// `self` without the tokens in `names`.
    pub fn without(&self, names: &[&str]) -> ScopeSet {
        ScopeSet(
            self.0
                .iter()
                .filter(|s| !names.contains(&s.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// The tokens of `self` that `allowed` does not hold.
    pub fn excess<'a>(&'a self, allowed: &ScopeSet) -> Vec<&'a str> {
        self.0
            .iter()
            .filter(|s| !allowed.0.contains(*s))
            .map(String::as_str)
            .collect()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

/// RFC 3986 §2: a URI is printable ASCII without spaces, quotes, angle brackets, braces,
/// backslash, caret, backtick or bar (anything else is percent-encoded). The URL parser would
/// quietly encode them instead; refusing them keeps each registered URI one token, as stored
/// and as compared.
pub fn uri_characters(s: &str) -> Result<(), String> {
    match s
        .chars()
        .find(|&c| !c.is_ascii_graphic() || "\"<>\\^`{|}".contains(c))
    {
        Some(c) => Err(format!(
            "{s:?} holds {c:?}, which a URI cannot hold (RFC 3986 §2; percent-encode it)"
        )),
        None => Ok(()),
    }
}

/// RFC 8707 §2: a resource indicator is an absolute URI without a fragment. Registered
/// audiences follow the same rule, so that a requested `resource` compares to them exactly.
pub fn validate_resource(s: &str) -> Result<(), String> {
    uri_characters(s)?;
    let url = url::Url::parse(s).map_err(|_| format!("{s:?} is not an absolute URI"))?;
    if url.fragment().is_some() || s.contains('#') {
        return Err(format!("{s:?} has a fragment (RFC 8707 §2)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_dedupe_and_compare() {
        let s = ScopeSet::parse("write read  read").unwrap();
        assert_eq!(s.to_string(), "read write");
        assert!(ScopeSet::parse("read").unwrap().is_subset(&s));
        assert_eq!(
            ScopeSet::parse("read admin").unwrap().excess(&s),
            vec!["admin"]
        );
        assert!(ScopeSet::parse("bad\"quote").is_err());
        assert!(ScopeSet::parse("tab\there").is_err());
    }

    #[test]
    fn resources_are_absolute_uris_without_fragments() {
        assert!(validate_resource("https://api.example.com").is_ok());
        assert!(validate_resource("urn:example:api").is_ok());
        assert!(validate_resource("/relative").is_err());
        assert!(validate_resource("https://api.example.com/#x").is_err());
        assert!(validate_resource("https://api.example.com/a https://evil.example").is_err());
        assert!(validate_resource("https://api.example.com/\t").is_err());
        assert!(validate_resource("https://api.example.com/é").is_err());
        assert!(validate_resource("https://api.example.com/a%20b").is_ok());
    }
}
