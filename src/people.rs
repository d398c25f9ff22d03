//! People: usernames, and passwords hashed with Argon2id (SPEC §3). Hashing is deliberately
//! slow, so it never sits on a token or API-key path; only the login form and `user create`
//! reach it.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

pub const MIN_PASSWORD: usize = 8;
/// Long enough for any passphrase, short enough that hashing cannot be abused.
pub const MAX_PASSWORD: usize = 1024;

/// 1 to 64 characters, no whitespace or control characters. Compared case-insensitively
/// server-wide through `username_key`.
pub fn validate_username(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 64 {
        return Err("username: 1 to 64 characters".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("username: no spaces or control characters".into());
    }
    Ok(s.to_string())
}

pub fn username_key(username: &str) -> String {
    username.trim().to_lowercase()
}

pub fn validate_password(p: &str) -> Result<(), String> {
    let n = p.chars().count();
    if n < MIN_PASSWORD {
        return Err(format!("password: at least {MIN_PASSWORD} characters"));
    }
    if p.len() > MAX_PASSWORD {
        return Err(format!("password: at most {MAX_PASSWORD} bytes"));
    }
    Ok(())
}

/// Argon2id with the crate's defaults (RFC 9106 / OWASP: m = 19 MiB, t = 2, p = 1), salt from
/// the operating system's random source.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    crate::crypto::fill_random(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches `stored` (an Argon2id PHC string); constant time in the password.
pub fn verify_password(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    match PasswordHash::new(stored) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// A new person's details, checked (the CLI's `user create` and `POST /v1/users`). Errors
/// name the field at fault: `(field, message)`.
pub struct NewPerson {
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub admin: bool,
}

impl NewPerson {
    pub fn check(
        username: &str,
        email: Option<String>,
        name: Option<String>,
        admin: bool,
    ) -> Result<NewPerson, (&'static str, String)> {
        let username = validate_username(username).map_err(|e| ("username", e))?;
        if let Some(e) = &email {
            if !e.contains('@')
                || e.chars().any(char::is_whitespace)
                || crate::hidden_characters(e).is_some()
                || e.len() > 254
            {
                return Err(("email", format!("email: {e:?} is not an email address")));
            }
        }
        let name = match name {
            Some(n) if n.trim().is_empty() || n.chars().count() > 200 => {
                return Err(("name", "name: 1 to 200 characters".into()))
            }
            Some(n) => {
                if let Some(what) = crate::hidden_characters(&n) {
                    return Err(("name", format!("name: must not contain {what}")));
                }
                Some(n.trim().to_string())
            }
            None => None,
        };
        Ok(NewPerson {
            username,
            email,
            name,
            admin,
        })
    }

    /// The row to store, with the password's Argon2id hash.
    pub fn into_row(
        self,
        org_id: &str,
        password_hash: String,
        now: i64,
    ) -> crate::store::users::UserRow {
        crate::store::users::UserRow {
            id: format!("usr_{}", crate::crypto::random_base62(20)),
            org_id: org_id.to_string(),
            username_key: username_key(&self.username),
            username: self.username,
            email: self.email,
            email_verified: 0,
            name: self.name,
            is_admin: self.admin as i32,
            password_hash,
            created_at: now,
            updated_at: now,
            created_seq: crate::store::seq_now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse battery!", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn usernames_and_passwords_are_checked() {
        assert_eq!(validate_username("  Ada ").unwrap(), "Ada");
        assert_eq!(username_key("Ada"), "ada");
        assert!(validate_username("a b").is_err());
        assert!(validate_username("").is_err());
        assert!(validate_password("short").is_err());
        assert!(validate_password(&"x".repeat(2000)).is_err());
        assert!(validate_password("long enough").is_ok());
    }
}
