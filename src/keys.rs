//! Signing keys: generation (ES256, RS256, EdDSA), their public JWKs and RFC 7638 `kid`s, the
//! key set each node holds in memory, and JWS signing and verification with it.
//!
//! Signing goes through ring directly with key pairs parsed once per reload: jsonwebtoken 9
//! re-parses (and, for ECDSA and RSA, re-validates) the PKCS#8 document on every `encode`, which
//! costs as much as the signature itself on the token hot path. Verification, where there is no
//! private key to parse, goes through jsonwebtoken (`DecodingKey` built once per key).
//!
//! Lifecycle (SPEC §1): a key is stored with `activates_at`; it is published in the JWKS from
//! the moment it is stored, signs from `activates_at` until `retired_at`, and stays published
//! until `publish_until` (its retirement plus the longest token lifetime), so every token it
//! signed can be verified until it expires.

use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{jwk::Jwk, Algorithm, DecodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde::Serialize;
use serde_json::{json, Value};

use crate::crypto::Secrets;
use crate::store::keys::KeyRow;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    ES256,
    RS256,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::ES256, Alg::RS256, Alg::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "ES256" => Some(Alg::ES256),
            "RS256" => Some(Alg::RS256),
            "EdDSA" => Some(Alg::EdDSA),
            _ => None,
        }
    }

    pub fn jwt(self) -> Algorithm {
        match self {
            Alg::ES256 => Algorithm::ES256,
            Alg::RS256 => Algorithm::RS256,
            Alg::EdDSA => Algorithm::EdDSA,
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A freshly generated key: its PKCS#8 private document and its public JWK.
pub struct GeneratedKey {
    pub kid: String,
    pub alg: Alg,
    pub public_jwk: Value,
    pub pkcs8: Vec<u8>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638 §3: SHA-256 over the required members in lexicographic order, no whitespace.
pub fn thumbprint(jwk: &Value) -> Option<String> {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str);
    let canonical = match s("kty")? {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv")?,
            s("x")?,
            s("y")?
        ),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e")?, s("n")?),
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, s("crv")?, s("x")?),
        _ => return None,
    };
    Some(b64(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    )
    .as_ref()))
}

pub fn generate(alg: Alg) -> anyhow::Result<GeneratedKey> {
    let rng = SystemRandom::new();
    let (pkcs8, mut jwk) = match alg {
        Alg::ES256 => {
            let doc =
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| anyhow::anyhow!("ECDSA key generation failed"))?;
            let pair = EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                doc.as_ref(),
                &rng,
            )
            .map_err(|e| anyhow::anyhow!("generated ECDSA key rejected: {e}"))?;
            // Uncompressed point: 0x04 ‖ x ‖ y.
            let point = pair.public_key().as_ref();
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
            (doc.as_ref().to_vec(), jwk)
        }
        Alg::EdDSA => {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| anyhow::anyhow!("Ed25519 key generation failed"))?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|e| anyhow::anyhow!("generated Ed25519 key rejected: {e}"))?;
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
            (doc.as_ref().to_vec(), jwk)
        }
        Alg::RS256 => {
            // ring cannot generate RSA keys; the rsa crate generates, ring signs.
            use rsa::pkcs8::EncodePrivateKey;
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(|e| anyhow::anyhow!("RSA key generation failed: {e}"))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| anyhow::anyhow!("RSA key encoding failed: {e}"))?;
            let jwk = json!({"kty": "RSA", "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())});
            (der.as_bytes().to_vec(), jwk)
        }
    };
    let kid =
        thumbprint(&jwk).ok_or_else(|| anyhow::anyhow!("cannot compute the key's thumbprint"))?;
    if let Value::Object(map) = &mut jwk {
        map.insert("use".into(), json!("sig"));
        map.insert("alg".into(), json!(alg.as_str()));
        map.insert("kid".into(), json!(kid));
    }
    Ok(GeneratedKey {
        kid,
        alg,
        public_jwk: jwk,
        pkcs8,
    })
}

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A key as a node holds it: parsed once, used for every token until the next reload.
pub struct LoadedKey {
    pub kid: String,
    pub alg: Alg,
    pub public_jwk: Value,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
    pub publish_until: Option<i64>,
    pub decoding: DecodingKey,
    signer: Signer,
    /// base64url of `{"alg":…,"kid":…,"typ":"at+jwt"}` (RFC 9068 §2.1), computed once.
    access_token_header: String,
}

impl LoadedKey {
    fn from_row(row: &KeyRow, secrets: &Secrets) -> anyhow::Result<LoadedKey> {
        let alg = Alg::parse(&row.alg)
            .ok_or_else(|| anyhow::anyhow!("key {} has an unknown alg {}", row.kid, row.alg))?;
        let pkcs8 = secrets
            .decrypt(&row.private_key, row.kid.as_bytes())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "key {} cannot be decrypted with the configured instance secret",
                    row.kid
                )
            })?;
        let rng = SystemRandom::new();
        let signer = match alg {
            Alg::ES256 => Signer::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
                    .map_err(|e| anyhow::anyhow!("key {}: {e}", row.kid))?,
            ),
            Alg::RS256 => Signer::Rsa(
                RsaKeyPair::from_pkcs8(&pkcs8)
                    .map_err(|e| anyhow::anyhow!("key {}: {e}", row.kid))?,
            ),
            Alg::EdDSA => Signer::Ed(
                Ed25519KeyPair::from_pkcs8(&pkcs8)
                    .map_err(|e| anyhow::anyhow!("key {}: {e}", row.kid))?,
            ),
        };
        let public_jwk: Value = serde_json::from_str(&row.public_jwk)?;
        let jwk: Jwk = serde_json::from_value(public_jwk.clone())?;
        let decoding = DecodingKey::from_jwk(&jwk)?;
        let header = json!({"alg": alg.as_str(), "kid": row.kid, "typ": "at+jwt"});
        Ok(LoadedKey {
            kid: row.kid.clone(),
            alg,
            public_jwk,
            activates_at: row.activates_at,
            retired_at: row.retired_at,
            publish_until: row.publish_until,
            decoding,
            signer,
            access_token_header: b64(header.to_string().as_bytes()),
        })
    }

    pub fn signs_at(&self, now: i64) -> bool {
        self.activates_at <= now && self.retired_at.is_none_or(|r| now < r)
    }

    pub fn published_at(&self, now: i64) -> bool {
        self.publish_until.is_none_or(|p| now < p)
    }

    fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Ecdsa(pair) => Ok(pair.sign(&rng, message)?.as_ref().to_vec()),
            Signer::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Signer::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)?;
                Ok(sig)
            }
        }
    }

    /// A compact JWS with `typ: at+jwt` (RFC 9068 access tokens).
    pub fn sign_access_token(
        &self,
        claims: &impl Serialize,
    ) -> Result<String, ring::error::Unspecified> {
        self.sign_with_header(&self.access_token_header, claims)
    }

    /// A compact JWS with `typ: JWT` (ID tokens and other plain JWTs).
    pub fn sign_jwt(&self, claims: &impl Serialize) -> Result<String, ring::error::Unspecified> {
        let header = json!({"alg": self.alg.as_str(), "kid": self.kid, "typ": "JWT"});
        self.sign_with_header(&b64(header.to_string().as_bytes()), claims)
    }

    fn sign_with_header(
        &self,
        header_b64: &str,
        claims: &impl Serialize,
    ) -> Result<String, ring::error::Unspecified> {
        let payload = serde_json::to_vec(claims).map_err(|_| ring::error::Unspecified)?;
        let mut token = String::with_capacity(header_b64.len() + payload.len() * 4 / 3 + 400);
        token.push_str(header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let sig = self.sign_bytes(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut token);
        Ok(token)
    }
}

/// The key set one node holds, newest activation first.
pub struct KeySet {
    keys: Vec<Arc<LoadedKey>>,
}

impl KeySet {
    pub fn empty() -> KeySet {
        KeySet { keys: Vec::new() }
    }

    /// The key that signs for `alg` now: the newest activated, unretired one.
    pub fn signer(&self, alg: Alg, now: i64) -> Option<&Arc<LoadedKey>> {
        self.keys.iter().find(|k| k.alg == alg && k.signs_at(now))
    }

    pub fn by_kid(&self, kid: &str) -> Option<&Arc<LoadedKey>> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Whether every algorithm has a key that signs now (readiness).
    pub fn complete(&self, now: i64) -> bool {
        Alg::ALL.iter().all(|&alg| self.signer(alg, now).is_some())
    }

    /// SPEC §2: the keys that sign now, will sign within the pre-publication window, or signed
    /// a token that has not yet expired.
    pub fn jwks(&self, now: i64) -> Value {
        let keys: Vec<&Value> = self
            .keys
            .iter()
            .filter(|k| k.published_at(now))
            .map(|k| &k.public_jwk)
            .collect();
        json!({ "keys": keys })
    }
}

/// The node's current key set, swapped whole on reload.
#[derive(Clone)]
pub struct KeyRing {
    current: Arc<RwLock<Arc<KeySet>>>,
}

impl Default for KeyRing {
    fn default() -> Self {
        KeyRing::new()
    }
}

impl KeyRing {
    pub fn new() -> KeyRing {
        KeyRing {
            current: Arc::new(RwLock::new(Arc::new(KeySet::empty()))),
        }
    }

    pub fn snapshot(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Rebuilds the set from stored rows, reusing already parsed keys (parsing an RSA key pair
    /// is the slow part) and taking each row's current timestamps.
    pub fn replace(&self, rows: &[KeyRow], secrets: &Secrets) -> anyhow::Result<()> {
        let old = self.snapshot();
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            match old.by_kid(&row.kid) {
                Some(k)
                    if k.activates_at == row.activates_at
                        && k.retired_at == row.retired_at
                        && k.publish_until == row.publish_until =>
                {
                    keys.push(k.clone())
                }
                _ => keys.push(Arc::new(LoadedKey::from_row(row, secrets)?)),
            }
        }
        keys.sort_by(|a, b| {
            b.activates_at
                .cmp(&a.activates_at)
                .then_with(|| a.kid.cmp(&b.kid))
        });
        let set = Arc::new(KeySet { keys });
        match self.current.write() {
            Ok(mut guard) => *guard = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn every_algorithm_signs_what_its_public_key_verifies() {
        let secrets = Secrets::new(&[vec![3u8; 32]]);
        for alg in Alg::ALL {
            let key = generate(alg).unwrap();
            let row = KeyRow {
                kid: key.kid.clone(),
                alg: alg.as_str().into(),
                public_jwk: key.public_jwk.to_string(),
                private_key: secrets.encrypt(&key.pkcs8, key.kid.as_bytes()),
                created_at: 0,
                activates_at: 0,
                retired_at: None,
                publish_until: None,
            };
            let loaded = LoadedKey::from_row(&row, &secrets).unwrap();
            let token = loaded
                .sign_access_token(&json!({"sub": "x", "exp": 4102444800u64}))
                .unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            let mut v = jsonwebtoken::Validation::new(alg.jwt());
            v.required_spec_claims.clear();
            let data = jsonwebtoken::decode::<Value>(&token, &loaded.decoding, &v).unwrap();
            assert_eq!(data.claims["sub"], "x");
            // A flipped signature bit fails.
            let mut bad = token.clone().into_bytes();
            let i = bad.len() - 3;
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            assert!(jsonwebtoken::decode::<Value>(
                std::str::from_utf8(&bad).unwrap(),
                &loaded.decoding,
                &v
            )
            .is_err());
        }
    }
}
