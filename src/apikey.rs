//! API keys (SPEC §4): the key format and its checksum, the scopes a key may hold, its
//! environment, and the IP allowlists of keys and organizations. No HTTP, no SQL.
//!
//! A key is `[{prefix}_]{type}_{env}_{secret}{checksum}`: an optional vendor prefix
//! (`LATCHKEY_KEY_PREFIX`), `sk` (every scope) or `rk` (restricted), `live` or `test`
//! (sandbox), 43 base62 characters of randomness (256 bits) and the CRC32 of everything
//! before the checksum as 6 base62 characters, zero-padded. The checksum lets a mistyped or
//! truncated key be refused before any lookup, and lets secret scanners recognise a key
//! offline; it is no secret and proves nothing about the key's validity.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::crypto::random_base62;

/// Characters of randomness in a key: 43 × log2(62) ≈ 256 bits.
pub const SECRET_LEN: usize = 43;
/// Characters of the base62 CRC32 checksum: 62^6 > 2^32.
pub const CHECKSUM_LEN: usize = 6;
/// Longest key accepted for parsing: a 16-character prefix and the rest.
pub const MAX_KEY_LEN: usize = 16 + 1 + 2 + 1 + 4 + 1 + SECRET_LEN + CHECKSUM_LEN;

/// Every scope of SPEC §4, in the order they are listed.
pub const SCOPES: [&str; 8] = [
    "read",
    "write",
    "delete",
    "admin",
    "keys:manage",
    "clients:manage",
    "users:manage",
    "audit:read",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `sk`: holds every scope.
    Secret,
    /// `rk`: holds fewer.
    Restricted,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Secret => "sk",
            KeyType::Restricted => "rk",
        }
    }

    /// `sk` for a key with every scope, `rk` for anything less.
    pub fn for_scopes(scopes: &Scopes) -> KeyType {
        if scopes.is_all() {
            KeyType::Secret
        } else {
            KeyType::Restricted
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Live,
    Sandbox,
}

impl Environment {
    /// The name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Sandbox => "sandbox",
        }
    }

    /// The segment in the key itself (`sk_test_…` is a sandbox key, as vendors spell it).
    pub fn key_segment(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Sandbox => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Environment> {
        match s {
            "live" => Some(Environment::Live),
            "sandbox" | "test" => Some(Environment::Sandbox),
            _ => None,
        }
    }
}

/// A set of SPEC §4 scopes, as a bit set (cheap to copy and compare on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u16);

impl Scopes {
    /// What a person who is not an admin of the organization never holds at `/v1` (SPEC §4),
    /// whatever the client asked for: `admin` and the four after it in `SCOPES`.
    pub const ADMIN_ONLY: Scopes = Scopes(0b1111_1000);

    pub fn all() -> Scopes {
        Scopes((1 << SCOPES.len()) - 1)
    }

    pub fn is_all(self) -> bool {
        self == Scopes::all()
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn bit(name: &str) -> Option<u16> {
        SCOPES.iter().position(|s| *s == name).map(|i| 1 << i)
    }

    /// Parses names; `Err(name)` names the first unknown one.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, String> {
        let mut bits = 0;
        for name in names {
            bits |= Scopes::bit(name).ok_or_else(|| name.to_string())?;
        }
        Ok(Scopes(bits))
    }

    /// The known scopes among space-separated names (an access token's `scope` claim);
    /// others (`openid`, a resource server's own) grant nothing here.
    pub fn from_claim(claim: &str) -> Scopes {
        Scopes(
            claim
                .split(' ')
                .filter_map(Scopes::bit)
                .fold(0, |acc, b| acc | b),
        )
    }

    /// The stored form: names separated by spaces, in SPEC order.
    pub fn to_stored(self) -> String {
        self.names().join(" ")
    }

    pub fn from_stored(s: &str) -> Scopes {
        Scopes::from_claim(s)
    }

    pub fn names(self) -> Vec<&'static str> {
        SCOPES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, s)| *s)
            .collect()
    }

    pub fn contains(self, scope: &str) -> bool {
        Scopes::bit(scope).is_some_and(|b| self.0 & b != 0)
    }

    /// `self` less every scope of `other`.
    pub fn without(self, other: Scopes) -> Scopes {
        Scopes(self.0 & !other.0)
    }

    /// Whether every scope of `other` is in `self` (no escalation).
    pub fn covers(self, other: Scopes) -> bool {
        other.0 & !self.0 == 0
    }
}

/// A presented key that has the right shape and checksum. Nothing about it is known to be
/// valid until the store has found its hash.
#[derive(Debug, Clone, Copy)]
pub struct WellFormed<'a> {
    pub raw: &'a str,
    pub kind: KeyType,
    pub environment: Environment,
}

/// Whether `s` looks like an API key at all (so introspection knows which verifier to use).
pub fn looks_like_key(s: &str) -> bool {
    parse(s).is_some()
}

/// Checks the shape and the checksum; `None` for anything else. Costs no lookup.
pub fn parse(raw: &str) -> Option<WellFormed<'_>> {
    if raw.len() > MAX_KEY_LEN || !raw.is_ascii() {
        return None;
    }
    let mut parts = raw.rsplitn(4, '_');
    let body = parts.next()?;
    let env = parts.next()?;
    let kind = parts.next()?;
    if let Some(prefix) = parts.next() {
        if !valid_prefix(prefix) {
            return None;
        }
    }
    if body.len() != SECRET_LEN + CHECKSUM_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let kind = match kind {
        "sk" => KeyType::Secret,
        "rk" => KeyType::Restricted,
        _ => return None,
    };
    let environment = match env {
        "live" => Environment::Live,
        "test" => Environment::Sandbox,
        _ => return None,
    };
    let (checked, checksum) = raw.split_at(raw.len() - CHECKSUM_LEN);
    if checksum != checksum_of(checked) {
        return None;
    }
    Some(WellFormed {
        raw,
        kind,
        environment,
    })
}

/// A vendor prefix: 1 to 16 lowercase letters or digits, starting with a letter (what
/// `LATCHKEY_KEY_PREFIX` accepts).
pub fn valid_prefix(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 16
        && p.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// CRC32 of `s` as 6 base62 characters, zero-padded.
pub fn checksum_of(s: &str) -> String {
    let crc = crc32fast::hash(s.as_bytes());
    format!("{:0>width$}", base62::encode(crc), width = CHECKSUM_LEN)
}

/// A fresh key: the full secret (shown once) and its display prefix.
pub struct NewKey {
    pub secret: String,
    pub display_prefix: String,
}

pub fn generate(vendor_prefix: Option<&str>, kind: KeyType, env: Environment) -> NewKey {
    let head = match vendor_prefix {
        Some(p) => format!("{p}_{}_{}_", kind.as_str(), env.key_segment()),
        None => format!("{}_{}_", kind.as_str(), env.key_segment()),
    };
    let body = random_base62(SECRET_LEN);
    let checked = format!("{head}{body}");
    let checksum = checksum_of(&checked);
    NewKey {
        display_prefix: format!("{head}{}", &body[..4]),
        secret: format!("{checked}{checksum}"),
    }
}

/// What the store hashes: the whole key, under its own label.
pub fn hash_input(raw: &str) -> Vec<u8> {
    format!("api key\0{raw}").into_bytes()
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it maps
/// (`10.0.0.0/8`): addresses are compared as IPv4 (`AllowedIps::allows`), so the entries are
/// too, or `::ffff:127.0.0.1` would never match the connection it names.
fn mapped_to_v4(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .addr()
            .to_ipv4_mapped()
            .and_then(|v4| ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(net, |v4| IpNet::V4(v4.trunc())),
        _ => net,
    }
}

/// An allowlist of networks (SPEC §4 `allowed_ips`); empty allows every address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedIps(Vec<IpNet>);

impl AllowedIps {
    /// At most 100 entries, each a CIDR (`10.0.0.0/8`) or a single address. `Err` names the
    /// entry at fault. A blank entry is an error, not "no restriction": `[""]` must never
    /// quietly turn an allowlist into "every address" (an empty list says that).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<AllowedIps, String> {
        let mut nets = Vec::new();
        for e in entries {
            let e = e.trim();
            if e.is_empty() {
                return Err(
                    "an entry is empty; an empty list (not an empty entry) allows every address"
                        .into(),
                );
            }
            let net = IpNet::from_str(e)
                .map(|n| n.trunc())
                .or_else(|_| IpAddr::from_str(e).map(IpNet::from))
                .map(mapped_to_v4)
                .map_err(|_| format!("{e:?} is not an IP address or CIDR"))?;
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        if nets.len() > 100 {
            return Err("at most 100 entries".into());
        }
        Ok(AllowedIps(nets))
    }

    /// The stored form: comma-separated CIDRs.
    pub fn from_stored(s: &str) -> AllowedIps {
        AllowedIps(
            s.split(',')
                .filter_map(|e| IpNet::from_str(e.trim()).ok())
                .map(mapped_to_v4)
                .collect(),
        )
    }

    pub fn to_stored(&self) -> String {
        self.names().join(",")
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|n| n.to_string()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` may use the credential (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// Whether `stored` (comma-separated CIDRs) allows `ip`, without building the list when it
/// is empty (the common case on the hot path).
pub fn stored_list_allows(stored: &str, ip: Option<IpAddr>) -> bool {
    if stored.is_empty() {
        return true;
    }
    match ip {
        Some(ip) => AllowedIps::from_stored(stored).allows(ip),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_one_changed_character_does_not() {
        for (prefix, kind, env) in [
            (None, KeyType::Secret, Environment::Live),
            (Some("acme"), KeyType::Restricted, Environment::Sandbox),
        ] {
            let k = generate(prefix, kind, env);
            let p = parse(&k.secret).expect("a generated key parses");
            assert_eq!((p.kind, p.environment), (kind, env));
            assert!(k.secret.starts_with(&k.display_prefix));
            let body_len = SECRET_LEN + CHECKSUM_LEN;
            assert_eq!(k.secret.rsplit('_').next().unwrap().len(), body_len);
            // Every single-character typo in the secret or checksum is caught.
            let start = k.secret.len() - body_len;
            for i in start..k.secret.len() {
                let mut bytes = k.secret.clone().into_bytes();
                bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
                let typo = String::from_utf8(bytes).unwrap();
                assert!(parse(&typo).is_none(), "typo at {i} passed");
            }
        }
        let k = generate(None, KeyType::Secret, Environment::Live).secret;
        assert!(parse(&k[..k.len() - 1]).is_none(), "truncated");
        assert!(parse(&format!("{k}0")).is_none(), "extended");
        assert!(
            parse(&k.replacen("sk_live", "sk_test", 1)).is_none(),
            "env swapped"
        );
        assert!(
            parse(&k.replacen("sk_", "xk_", 1)).is_none(),
            "unknown type"
        );
        assert!(parse(&format!("ACME_{k}")).is_none(), "upper-case prefix");
        assert!(parse("").is_none());
        assert!(parse("sk_live_").is_none());
    }

    #[test]
    fn the_checksum_is_crc32_in_six_zero_padded_base62_digits() {
        // CRC32("123456789") = 0xCBF43926 (the standard check value) = 3421780262.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(checksum_of("123456789"), "3jZRME");
        assert_eq!(checksum_of("").len(), CHECKSUM_LEN);
        assert_eq!(checksum_of(""), "000000");
    }

    #[test]
    fn scopes_parse_compare_and_print_in_spec_order() {
        let s = Scopes::parse(["write", "read"]).unwrap();
        assert_eq!(s.to_stored(), "read write");
        assert_eq!(Scopes::parse(["read", "root"]), Err("root".into()));
        assert!(Scopes::all().covers(s));
        assert!(!s.covers(Scopes::all()));
        assert!(s.covers(Scopes::parse(["read"]).unwrap()));
        assert_eq!(KeyType::for_scopes(&Scopes::all()), KeyType::Secret);
        assert_eq!(
            Scopes::ADMIN_ONLY,
            Scopes::parse([
                "admin",
                "keys:manage",
                "clients:manage",
                "users:manage",
                "audit:read"
            ])
            .unwrap()
        );
        assert_eq!(KeyType::for_scopes(&s), KeyType::Restricted);
        assert_eq!(
            Scopes::from_claim("openid keys:manage read"),
            Scopes::parse(["read", "keys:manage"]).unwrap()
        );
    }

    #[test]
    fn allowlists_take_cidrs_and_addresses() {
        let a = AllowedIps::parse(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]).unwrap();
        assert!(a.allows("10.1.2.3".parse().unwrap()));
        assert!(a.allows("192.168.1.7".parse().unwrap()));
        assert!(a.allows("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!a.allows("192.168.1.8".parse().unwrap()));
        assert!(a.allows("2001:db8::1".parse().unwrap()));
        assert_eq!(
            AllowedIps::from_stored(&a.to_stored()),
            a,
            "the stored form reads back"
        );
        assert!(AllowedIps::parse(["10.0.0.0/33"]).is_err());
        assert!(AllowedIps::parse(["example.com"]).is_err());
        assert!(AllowedIps::default().allows("8.8.8.8".parse().unwrap()));
        assert!(stored_list_allows("", None));
        assert!(!stored_list_allows("10.0.0.0/8", None));
    }

    #[test]
    fn ipv4_mapped_entries_are_the_ipv4_networks_they_map() {
        // A connection from 127.0.0.1 must match an entry written ::ffff:127.0.0.1, as a
        // presented ::ffff:10.1.2.3 matches 10.0.0.0/8.
        let a = AllowedIps::parse(["::ffff:127.0.0.1", "::ffff:10.0.0.0/104"]).unwrap();
        assert_eq!(a.names(), ["127.0.0.1/32", "10.0.0.0/8"]);
        assert!(a.allows("127.0.0.1".parse().unwrap()));
        assert!(a.allows("10.200.0.1".parse().unwrap()));
        assert!(a.allows("::ffff:10.200.0.1".parse().unwrap()));
        assert!(!a.allows("11.0.0.1".parse().unwrap()));
        // Written both ways, one entry.
        let b = AllowedIps::parse(["10.0.0.0/8", "::ffff:10.0.0.0/104"]).unwrap();
        assert_eq!(b.names(), ["10.0.0.0/8"]);
        // Entries stored before the change read the same way.
        assert!(stored_list_allows(
            "::ffff:127.0.0.1/128",
            Some("127.0.0.1".parse().unwrap())
        ));
        // Other IPv6 networks stay IPv6.
        let c = AllowedIps::parse(["2001:db8::/32", "::1"]).unwrap();
        assert_eq!(c.names(), ["2001:db8::/32", "::1/128"]);
        assert!(!c.allows("127.0.0.1".parse().unwrap()));
    }
}
