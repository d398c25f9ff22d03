//! The instance secret and what is derived from it: keyed hashes of stored secrets, the
//! encryption of private key material, and randomness.
//!
//! `LATCHKEY_SECRET` is a comma-separated list of base64 secrets, newest first. New hashes and
//! ciphertexts use the newest; verification and decryption accept any, so a deployment rotates
//! its secret by prepending a new one and dropping the old once nothing depends on it.
//! Each purpose gets its own key through HKDF-SHA-256, so a hash can never be replayed as a
//! ciphertext key or the other way round.

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

const MIN_SECRET_BYTES: usize = 32;

/// Parses the `LATCHKEY_SECRET` list; each entry must decode to at least 32 bytes.
pub fn parse_secret_list(value: &str) -> Result<Vec<Vec<u8>>, String> {
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if entries.is_empty() {
        return Err("empty; expected base64 of at least 32 random bytes".into());
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let bytes = STANDARD
                .decode(entry)
                .or_else(|_| URL_SAFE_NO_PAD.decode(entry.trim_end_matches('=')))
                .map_err(|_| format!("entry {} is not base64", i + 1))?;
            if bytes.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "entry {} decodes to {} bytes; at least {MIN_SECRET_BYTES} random bytes are required (e.g. `openssl rand -base64 32`)",
                    i + 1,
                    bytes.len()
                ));
            }
            Ok(bytes)
        })
        .collect()
}

/// Reads the instance secret from the configuration, or from the embedded default's file,
/// creating that file (mode 0600) with 32 fresh random bytes the first time.
pub fn load_or_create_secret(configured: Option<&str>, file: &Path) -> anyhow::Result<Secrets> {
    if let Some(value) = configured {
        let list = parse_secret_list(value)
            .map_err(|e| anyhow::anyhow!("invalid setting LATCHKEY_SECRET: {e}"))?;
        return Ok(Secrets::new(&list));
    }
    if file.exists() {
        if let Some(mode) = readable_by_others(file) {
            tracing::warn!(
                path = %file.display(),
                mode = format!("{mode:o}"),
                "the instance secret can be read by other users of this machine (chmod 600 it): whoever reads it can forge what it keys"
            );
        }
        let text = std::fs::read_to_string(file).map_err(|e| {
            anyhow::anyhow!("cannot read the instance secret {}: {e}", file.display())
        })?;
        let list = parse_secret_list(&text)
            .map_err(|e| anyhow::anyhow!("invalid instance secret in {}: {e}", file.display()))?;
        return Ok(Secrets::new(&list));
    }
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes);
    let encoded = STANDARD.encode(bytes);
    if let Some(dir) = file.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
    }
    // Written whole to a private temporary file, then linked into place: a process starting
    // at the same moment either wins the link or reads the winner's complete file.
    let temp = file.with_extension(format!("tmp.{}", random_base62(8)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options
        .open(&temp)
        .and_then(|mut f| writeln!(f, "{encoded}").and_then(|_| f.sync_all()))
        .map_err(|e| anyhow::anyhow!("cannot create the instance secret {}: {e}", temp.display()));
    let linked = written.and_then(|_| match std::fs::hard_link(&temp, file) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(anyhow::anyhow!(
            "cannot create the instance secret {}: {e}",
            file.display()
        )),
    });
    let _ = std::fs::remove_file(&temp);
    if !linked? {
        // Another process created it first: use theirs.
        return load_or_create_secret(None, file);
    }
    tracing::info!(path = %file.display(), "created a new instance secret");
    Ok(Secrets::new(&[bytes.to_vec()]))
}

/// The file's permission bits when its group or others may read or write it (Unix).
fn readable_by_others(file: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

/// Purposes, each with its own derived key.
#[derive(Clone, Copy)]
pub enum Purpose {
    /// Keyed hashes of client secrets, API keys, refresh tokens, codes.
    StoredSecret,
    /// A fixed check value that tells whether a secret matches the database.
    SecretCheck,
    /// CSRF tokens of the pages' forms.
    Csrf,
    /// Idempotency-Key records: their lookup hash, and the keys their responses are sealed
    /// under.
    Idempotency,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::StoredSecret => b"latchkey v1 stored-secret hmac",
            Purpose::SecretCheck => b"latchkey v1 secret-check hmac",
            Purpose::Csrf => b"latchkey v1 csrf hmac",
            Purpose::Idempotency => b"latchkey v1 idempotency hmac",
        }
    }
}

struct Derived {
    stored: hmac::Key,
    check: hmac::Key,
    csrf: hmac::Key,
    idempotency: hmac::Key,
    encryption: LessSafeKey,
}

impl Derived {
    fn hmac(&self, purpose: Purpose) -> &hmac::Key {
        match purpose {
            Purpose::StoredSecret => &self.stored,
            Purpose::SecretCheck => &self.check,
            Purpose::Csrf => &self.csrf,
            Purpose::Idempotency => &self.idempotency,
        }
    }
}

fn sealing_key(k: &Derived, purpose: Purpose, info: &[u8]) -> LessSafeKey {
    let mut input = b"seal\0".to_vec();
    input.extend_from_slice(info);
    let tag = hmac::sign(k.hmac(purpose), &input);
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, tag.as_ref()).expect("an HMAC-SHA-256 tag is 32 bytes"),
    )
}

/// The derived keys of every configured secret, newest first.
pub struct Secrets {
    keys: Vec<Derived>,
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(prk: &hkdf::Prk, label: &[u8]) -> [u8; 32] {
    let info = [label];
    let okm = prk
        .expand(&info, Len(32))
        .expect("32 bytes is within HKDF-SHA-256 limits");
    let mut out = [0u8; 32];
    okm.fill(&mut out).expect("length matches");
    out
}

impl Secrets {
    pub fn new(list: &[Vec<u8>]) -> Secrets {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"latchkey instance secret");
        let keys = list
            .iter()
            .map(|secret| {
                let prk = salt.extract(secret);
                let stored = derive(&prk, Purpose::StoredSecret.label());
                let check = derive(&prk, Purpose::SecretCheck.label());
                let csrf = derive(&prk, Purpose::Csrf.label());
                let idempotency = derive(&prk, Purpose::Idempotency.label());
                let enc = derive(&prk, b"latchkey v1 aes-256-gcm");
                Derived {
                    stored: hmac::Key::new(hmac::HMAC_SHA256, &stored),
                    check: hmac::Key::new(hmac::HMAC_SHA256, &check),
                    csrf: hmac::Key::new(hmac::HMAC_SHA256, &csrf),
                    idempotency: hmac::Key::new(hmac::HMAC_SHA256, &idempotency),
                    encryption: LessSafeKey::new(
                        UnboundKey::new(&AES_256_GCM, &enc).expect("AES-256 key is 32 bytes"),
                    ),
                }
            })
            .collect();
        Secrets { keys }
    }

    /// Keyed hash under the newest secret, base64url-encoded for storage.
    pub fn hash(&self, purpose: Purpose, data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(self.keys[0].hmac(purpose), data).as_ref())
    }

    /// The keyed hash of `data` under every configured secret, newest first: what a lookup by
    /// hash searches for while a rotated-out secret still has hashes in the store.
    pub fn hashes_all(&self, purpose: Purpose, data: &[u8]) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| URL_SAFE_NO_PAD.encode(hmac::sign(k.hmac(purpose), data).as_ref()))
            .collect()
    }

    /// Whether `stored` is the keyed hash of `data` under any configured secret (constant time).
    pub fn verify_hash(&self, purpose: Purpose, data: &[u8], stored: &str) -> bool {
        self.tags(purpose, data).matches(stored)
    }

    /// The keyed hashes of `data` under every configured secret, computed once, to check
    /// against several stored hashes (a client's secret and the one before a rotation).
    pub fn tags(&self, purpose: Purpose, data: &[u8]) -> Tags {
        Tags(
            self.keys
                .iter()
                .map(|k| hmac::sign(k.hmac(purpose), data))
                .collect(),
        )
    }

    /// Whether the newest secret produced `stored` (so that an older one can be replaced).
    pub fn is_newest_hash(&self, purpose: Purpose, data: &[u8], stored: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(stored) else {
            return false;
        };
        hmac::verify(self.keys[0].hmac(purpose), data, &tag).is_ok()
    }

    /// AES-256-GCM under the newest secret; `context` is bound as associated data so that a
    /// ciphertext cannot be moved to another row. Output: base64url(nonce ‖ ciphertext ‖ tag).
    pub fn encrypt(&self, plaintext: &[u8], context: &[u8]) -> String {
        seal(&self.keys[0].encryption, context, plaintext)
    }

    pub fn decrypt(&self, blob: &str, context: &[u8]) -> Option<Vec<u8>> {
        self.keys
            .iter()
            .find_map(|k| open(&k.encryption, context, blob))
    }

    /// `blob` encrypted again under the newest secret, when only an older one opens it; `None`
    /// when it is already under the newest, or no listed secret opens it (left as it is).
    pub fn reseal(&self, blob: &str, context: &[u8]) -> Option<String> {
        if open(&self.keys[0].encryption, context, blob).is_some() {
            return None;
        }
        let plain = self.keys[1..]
            .iter()
            .find_map(|k| open(&k.encryption, context, blob))?;
        Some(self.encrypt(&plain, context))
    }

    /// Whether more than one secret is listed (a rotation is under way).
    pub fn rotating(&self) -> bool {
        self.keys.len() > 1
    }

    /// AES-256-GCM under a key of its own: the keyed hash of `info` under `purpose` (newest
    /// secret). Whoever lacks `info` cannot open it, even with the database and its hashes.
    pub fn seal_derived(&self, purpose: Purpose, info: &[u8], plaintext: &[u8]) -> String {
        seal(&sealing_key(&self.keys[0], purpose, info), &[], plaintext)
    }

    pub fn open_derived(&self, purpose: Purpose, info: &[u8], blob: &str) -> Option<Vec<u8>> {
        self.keys
            .iter()
            .find_map(|k| open(&sealing_key(k, purpose, info), &[], blob))
    }
}

/// base64url(nonce ‖ ciphertext ‖ tag) of `plaintext` under `key`, `aad` bound.
fn seal(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .expect("AES-GCM sealing of an in-memory buffer cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    URL_SAFE_NO_PAD.encode(out)
}

fn open(key: &LessSafeKey, aad: &[u8], blob: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(blob).ok()?;
    if bytes.len() < NONCE_LEN + aead::AES_256_GCM.tag_len() {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = sealed.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?;
    Some(plain.to_vec())
}

pub fn fill_random(buf: &mut [u8]) {
    SystemRandom::new()
        .fill(buf)
        .expect("the operating system's random source failed");
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The keyed hashes of one input under each configured secret (`Secrets::tags`).
pub struct Tags(Vec<hmac::Tag>);

impl Tags {
    /// Whether `stored` (base64url, as `Secrets::hash` writes it) is one of these hashes.
    /// Every comparison runs, in constant time, whatever the outcome.
    pub fn matches(&self, stored: &str) -> bool {
        use subtle::ConstantTimeEq;
        let Ok(stored) = URL_SAFE_NO_PAD.decode(stored) else {
            return false;
        };
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |any, tag| {
                any | tag.as_ref().ct_eq(&stored)
            })
            .into()
    }
}

/// `n` characters drawn uniformly from the base62 alphabet (rejection sampling, no modulo bias).
/// The random bytes come from the operating system through a per-thread buffer, so that a
/// request id costs no system call (one `getrandom` per 4 KiB drawn).
pub fn random_base62(n: usize) -> String {
    use std::cell::RefCell;
    thread_local! {
        static POOL: RefCell<(Box<[u8; 4096]>, usize)> = RefCell::new((Box::new([0u8; 4096]), 4096));
    }
    let mut out = String::with_capacity(n);
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        while out.len() < n {
            if pool.1 == pool.0.len() {
                fill_random(&mut pool.0[..]);
                pool.1 = 0;
            }
            let i = pool.1;
            let b = pool.0[i];
            // Each byte is used once, then forgotten.
            pool.0[i] = 0;
            pool.1 += 1;
            // 248 = 4 × 62: bytes at or above it would bias the first characters.
            if b < 248 {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_secret_file_open_to_others_is_noticed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("latchkey.secret");
        load_or_create_secret(None, &file).unwrap();
        assert_eq!(readable_by_others(&file), None, "created with mode 0600");
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(readable_by_others(&file), Some(mode));
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(readable_by_others(&file), None);
    }

    #[test]
    fn reseal_moves_a_ciphertext_to_the_newest_secret() {
        let old = Secrets::new(&[vec![1u8; 32]]);
        let rotated = Secrets::new(&[vec![2u8; 32], vec![1u8; 32]]);
        let new_only = Secrets::new(&[vec![2u8; 32]]);
        let blob = old.encrypt(b"private", b"kid-1");
        assert_eq!(new_only.decrypt(&blob, b"kid-1"), None);
        let moved = rotated
            .reseal(&blob, b"kid-1")
            .expect("under the old secret only");
        assert_eq!(
            new_only.decrypt(&moved, b"kid-1").as_deref(),
            Some(&b"private"[..])
        );
        assert_eq!(
            rotated.reseal(&moved, b"kid-1"),
            None,
            "already under the newest"
        );
        assert_eq!(rotated.reseal(&blob, b"kid-2"), None, "context is bound");
        let stranger = Secrets::new(&[vec![3u8; 32]]).encrypt(b"x", b"kid-1");
        assert_eq!(
            rotated.reseal(&stranger, b"kid-1"),
            None,
            "no listed secret opens it"
        );
    }

    #[test]
    fn hashes_verify_under_any_listed_secret() {
        let old = Secrets::new(&[vec![1u8; 32]]);
        let rotated = Secrets::new(&[vec![2u8; 32], vec![1u8; 32]]);
        let h = old.hash(Purpose::StoredSecret, b"s3cret");
        assert!(rotated.verify_hash(Purpose::StoredSecret, b"s3cret", &h));
        assert!(!rotated.is_newest_hash(Purpose::StoredSecret, b"s3cret", &h));
        assert!(!rotated.verify_hash(Purpose::StoredSecret, b"other", &h));
        assert!(!rotated.verify_hash(Purpose::SecretCheck, b"s3cret", &h));
    }

    #[test]
    fn one_computation_of_tags_checks_several_stored_hashes() {
        let old = Secrets::new(&[vec![1u8; 32]]);
        let new = Secrets::new(&[vec![2u8; 32]]);
        let rotated = Secrets::new(&[vec![2u8; 32], vec![1u8; 32]]);
        let tags = rotated.tags(Purpose::StoredSecret, b"s3cret");
        // Under either listed secret, whichever stored hash it is compared with.
        assert!(tags.matches(&old.hash(Purpose::StoredSecret, b"s3cret")));
        assert!(tags.matches(&new.hash(Purpose::StoredSecret, b"s3cret")));
        assert!(!tags.matches(&new.hash(Purpose::StoredSecret, b"other")));
        assert!(!tags.matches(&new.hash(Purpose::Csrf, b"s3cret")));
        // Under a secret no longer listed, or not a hash at all.
        let stranger = Secrets::new(&[vec![3u8; 32]]).hash(Purpose::StoredSecret, b"s3cret");
        assert!(!tags.matches(&stranger));
        let h = new.hash(Purpose::StoredSecret, b"s3cret");
        assert!(!tags.matches(&h[..h.len() - 2]), "a shorter hash");
        assert!(!tags.matches("not base64!"));
        assert!(!tags.matches(""));
    }

    #[test]
    fn ciphertexts_are_bound_to_their_context() {
        let s = Secrets::new(&[vec![7u8; 32]]);
        let c = s.encrypt(b"private", b"kid-1");
        assert_eq!(s.decrypt(&c, b"kid-1").as_deref(), Some(&b"private"[..]));
        assert_eq!(s.decrypt(&c, b"kid-2"), None);
        assert_eq!(Secrets::new(&[vec![8u8; 32]]).decrypt(&c, b"kid-1"), None);
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(parse_secret_list("c2hvcnQ=").is_err());
        assert!(parse_secret_list(&STANDARD.encode([0u8; 32])).is_ok());
    }

    #[test]
    fn base62_has_the_requested_length_and_alphabet() {
        let s = random_base62(43);
        assert_eq!(s.len(), 43);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(s, random_base62(43));
    }
}
