//! PKCE (RFC 7636), `S256` only: SPEC §2 requires it of every client and refuses `plain`
//! (RFC 9700 §2.1.1), so a stolen authorization code is useless without the verifier.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
fn is_verifier_syntax(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A code challenge as the authorization request states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// Checks `code_challenge` and `code_challenge_method` from an authorization request.
    /// Errors are `invalid_request` descriptions.
    pub fn from_request(
        challenge: Option<&str>,
        method: Option<&str>,
    ) -> Result<CodeChallenge, &'static str> {
        let challenge = challenge.ok_or("code_challenge is required (PKCE with S256)")?;
        match method {
            Some("S256") => {}
            Some("plain") => return Err("code_challenge_method plain is not allowed; use S256"),
            Some(_) => return Err("code_challenge_method must be S256"),
            // RFC 7636 §4.3 would default to plain, which SPEC §2 refuses.
            None => return Err("code_challenge_method is required and must be S256"),
        }
        // base64url of a SHA-256 digest: 43 characters, no padding.
        let ok = challenge.len() == 43
            && URL_SAFE_NO_PAD
                .decode(challenge)
                .is_ok_and(|d| d.len() == 32);
        if !ok {
            return Err(
                "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
            );
        }
        Ok(CodeChallenge(challenge.to_string()))
    }

    pub fn from_stored(s: String) -> CodeChallenge {
        CodeChallenge(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, compared in constant time.
    pub fn verify(&self, verifier: &str) -> bool {
        if !is_verifier_syntax(verifier) {
            return false;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        let computed = URL_SAFE_NO_PAD.encode(digest.as_ref());
        let expected = self.0.as_bytes();
        computed.len() == expected.len()
            && computed
                .bytes()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn the_rfc_7636_example_verifies_and_nothing_else_does() {
        let c = CodeChallenge::from_request(Some(CHALLENGE), Some("S256")).unwrap();
        assert!(c.verify(VERIFIER));
        assert!(
            !c.verify("dBjftJeZ4CVP-mJ92K9TiqGX2Z6XWDBfb8njV7ma3Ay"),
            "one character off"
        );
        assert!(!c.verify(CHALLENGE), "the challenge itself (plain)");
        assert!(!c.verify("short"), "too short");
        assert!(!c.verify(&"a".repeat(129)), "too long");
        assert!(!c.verify(&format!("{VERIFIER}!")), "bad characters");
    }

    #[test]
    fn only_s256_challenges_are_accepted() {
        assert!(CodeChallenge::from_request(Some(CHALLENGE), Some("plain")).is_err());
        assert!(
            CodeChallenge::from_request(Some(CHALLENGE), None).is_err(),
            "a challenge without a method"
        );
        assert!(
            CodeChallenge::from_request(None, Some("S256")).is_err(),
            "no challenge"
        );
        assert!(
            CodeChallenge::from_request(Some("abc"), Some("S256")).is_err(),
            "not a SHA-256"
        );
        assert!(
            CodeChallenge::from_request(Some(CHALLENGE), Some("s256")).is_err(),
            "case matters"
        );
    }
}
