//! OAuth clients: the registered facts about an application or service, and the rules a
//! registration must satisfy (used by the CLI now and by `/v1/clients` later).

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::client_auth::secret_hash_input;
use super::scope::{validate_resource, ScopeSet};
use crate::crypto::{Purpose, Secrets};
use crate::keys::Alg;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    ClientSecretJwt,
    PrivateKeyJwt,
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretJwt => "client_secret_jwt",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<AuthMethod> {
        Some(match s {
            "client_secret_basic" => AuthMethod::ClientSecretBasic,
            "client_secret_post" => AuthMethod::ClientSecretPost,
            "client_secret_jwt" => AuthMethod::ClientSecretJwt,
            "private_key_jwt" => AuthMethod::PrivateKeyJwt,
            "none" => AuthMethod::None,
            _ => return None,
        })
    }

    /// Whether the method uses a client secret that Latchkey issues.
    pub fn has_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic
                | AuthMethod::ClientSecretPost
                | AuthMethod::ClientSecretJwt
        )
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    ClientCredentials,
    AuthorizationCode,
    RefreshToken,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
        }
    }

    pub fn parse(s: &str) -> Option<GrantType> {
        Some(match s {
            "client_credentials" => GrantType::ClientCredentials,
            "authorization_code" => GrantType::AuthorizationCode,
            "refresh_token" => GrantType::RefreshToken,
            _ => return None,
        })
    }
}

/// A registered client as the protocol code sees it.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub org_id: String,
    pub name: String,
    pub auth_method: AuthMethod,
    /// Keyed hash of the secret (`client_secret_basic`, `client_secret_post`).
    pub secret_hash: Option<String>,
    /// The secret encrypted (`client_secret_jwt`: it must be usable as an HMAC key).
    pub secret_enc: Option<String>,
    pub grant_types: Vec<GrantType>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: ScopeSet,
    pub audiences: Vec<String>,
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    pub access_token_alg: Alg,
    pub id_token_alg: Alg,
    pub public: bool,
    pub native: bool,
    pub skip_consent: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// The secret before the last rotation, accepted until `prev_secret_expires_at`.
    pub prev_secret_hash: Option<String>,
    pub prev_secret_enc: Option<String>,
    pub prev_secret_expires_at: Option<i64>,
    /// Creation order (microseconds) for lists.
    pub created_seq: i64,
    /// Bumped by every stored change (optimistic concurrency).
    pub version: i64,
}

impl Client {
    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

impl Client {
    /// A client to register: `apply_spec` fills in what the registration asks for.
    pub fn blank(org_id: &str, now: i64) -> Client {
        Client {
            client_id: crate::crypto::random_base62(24),
            org_id: org_id.to_string(),
            name: String::new(),
            auth_method: AuthMethod::ClientSecretBasic,
            secret_hash: None,
            secret_enc: None,
            grant_types: vec![GrantType::ClientCredentials],
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            scopes: ScopeSet::default(),
            audiences: vec![],
            jwks: None,
            jwks_uri: None,
            access_token_alg: Alg::ES256,
            id_token_alg: Alg::RS256,
            public: false,
            native: false,
            skip_consent: false,
            created_at: now,
            updated_at: now,
            prev_secret_hash: None,
            prev_secret_enc: None,
            prev_secret_expires_at: None,
            created_seq: crate::store::seq_now(),
            version: 0,
        }
    }

    /// Issues a new secret for a client that uses one (returned, to be shown once): a keyed
    /// hash for the secret methods, the secret itself encrypted for `client_secret_jwt` (it
    /// must serve as the HMAC key). A client without a secret method keeps no secret.
    pub fn issue_secret(&mut self, secrets: &Secrets) -> Option<String> {
        if !self.auth_method.has_secret() {
            self.secret_hash = None;
            self.secret_enc = None;
            self.prev_secret_hash = None;
            self.prev_secret_enc = None;
            self.prev_secret_expires_at = None;
            return None;
        }
        let secret = crate::crypto::random_base62(43);
        if self.auth_method == AuthMethod::ClientSecretJwt {
            self.secret_enc = Some(secrets.encrypt(secret.as_bytes(), self.client_id.as_bytes()));
            self.secret_hash = None;
        } else {
            self.secret_hash = Some(secrets.hash(
                Purpose::StoredSecret,
                &secret_hash_input(&self.client_id, &secret),
            ));
            self.secret_enc = None;
        }
        Some(secret)
    }

    /// Rotation: a new secret, and the current one kept working until `grace_until` (not at
    /// all when that is now). A secret kept by an earlier rotation is dropped.
    pub fn rotate_secret(
        &mut self,
        secrets: &Secrets,
        now: i64,
        grace_until: i64,
    ) -> Option<String> {
        let (hash, enc) = (self.secret_hash.take(), self.secret_enc.take());
        let secret = self.issue_secret(secrets)?;
        if grace_until > now {
            self.prev_secret_hash = hash;
            self.prev_secret_enc = enc;
            self.prev_secret_expires_at = Some(grace_until);
        } else {
            self.prev_secret_hash = None;
            self.prev_secret_enc = None;
            self.prev_secret_expires_at = None;
        }
        self.updated_at = now;
        Some(secret)
    }

    /// Applies an update; a change of method that needs another form of secret issues a new
    /// one (returned, to be shown once), a method without a secret drops it.
    pub fn updated(
        self,
        spec: &ClientSpec,
        secrets: &Secrets,
        now: i64,
    ) -> Result<(Client, Option<String>), String> {
        let had_secret = self.auth_method.has_secret();
        let was_jwt = self.auth_method == AuthMethod::ClientSecretJwt;
        let mut client = apply_spec(self, spec)?;
        client.updated_at = now;
        let is_jwt = client.auth_method == AuthMethod::ClientSecretJwt;
        let secret = if client.auth_method.has_secret() && (!had_secret || was_jwt != is_jwt) {
            client.prev_secret_hash = None;
            client.prev_secret_enc = None;
            client.prev_secret_expires_at = None;
            client.issue_secret(secrets)
        } else {
            if !client.auth_method.has_secret() {
                client.issue_secret(secrets);
            }
            None
        };
        Ok((client, secret))
    }

    /// The previous secret, while its grace period lasts.
    pub fn previous_secret_live(&self, now: i64) -> bool {
        self.prev_secret_expires_at.is_some_and(|t| t > now)
    }
}

/// What a registration or an update asks for; every field optional so that `client update`
/// changes only what it names.
#[derive(Debug, Clone, Default)]
pub struct ClientSpec {
    pub name: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub scopes: Option<String>,
    pub public: Option<bool>,
    pub native: Option<bool>,
    pub auth_method: Option<String>,
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub access_token_alg: Option<String>,
    pub id_token_alg: Option<String>,
    pub skip_consent: Option<bool>,
}

/// Applies `spec` over `base` (a blank client for a registration) and checks the whole
/// result. The error names the field at fault.
pub fn apply_spec(mut c: Client, spec: &ClientSpec) -> Result<Client, String> {
    if let Some(name) = &spec.name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err("name: 1 to 200 characters".into());
        }
        if let Some(what) = crate::hidden_characters(name) {
            return Err(format!("name: must not contain {what}"));
        }
        c.name = name.to_string();
    }
    if let Some(grants) = &spec.grant_types {
        let mut parsed = Vec::new();
        for g in grants
            .iter()
            .flat_map(|g| g.split(','))
            .map(str::trim)
            .filter(|g| !g.is_empty())
        {
            let grant = GrantType::parse(g).ok_or_else(|| {
                format!("grant-types: unknown grant type {g:?} (client_credentials, authorization_code, refresh_token)")
            })?;
            if !parsed.contains(&grant) {
                parsed.push(grant);
            }
        }
        c.grant_types = parsed;
    }
    if let Some(uris) = &spec.redirect_uris {
        for u in uris {
            validate_redirect_uri(u).map_err(|e| format!("redirect-uri: {e}"))?;
        }
        c.redirect_uris = uris.clone();
    }
    if let Some(uris) = &spec.post_logout_redirect_uris {
        for u in uris {
            validate_redirect_uri(u).map_err(|e| format!("post-logout-redirect-uri: {e}"))?;
        }
        c.post_logout_redirect_uris = uris.clone();
    }
    if let Some(scopes) = &spec.scopes {
        c.scopes =
            ScopeSet::parse(&scopes.replace(',', " ")).map_err(|e| format!("scopes: {e}"))?;
    }
    if let Some(p) = spec.public {
        c.public = p;
    }
    if let Some(n) = spec.native {
        c.native = n;
    }
    if let Some(s) = spec.skip_consent {
        c.skip_consent = s;
    }
    if let Some(m) = &spec.auth_method {
        c.auth_method = AuthMethod::parse(m).ok_or_else(|| {
            format!("auth-method: unknown method {m:?} (client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt, none)")
        })?;
    } else if spec.public == Some(true) {
        c.auth_method = AuthMethod::None;
    } else if spec.public == Some(false) && c.auth_method == AuthMethod::None {
        // A public client made confidential without naming a method gets the default one
        // (and, from the caller, a secret).
        c.auth_method = AuthMethod::ClientSecretBasic;
    }
    if let Some(jwks) = &spec.jwks {
        validate_jwks(jwks).map_err(|e| format!("jwks: {e}"))?;
        c.jwks = Some(jwks.clone());
        c.jwks_uri = None;
    }
    if let Some(uri) = &spec.jwks_uri {
        validate_jwks_uri(uri).map_err(|e| format!("jwks-uri: {e}"))?;
        c.jwks_uri = Some(uri.clone());
        c.jwks = None;
    }
    // Leaving private_key_jwt drops the key set that only that method uses.
    if spec.auth_method.is_some()
        && c.auth_method != AuthMethod::PrivateKeyJwt
        && spec.jwks.is_none()
        && spec.jwks_uri.is_none()
    {
        c.jwks = None;
        c.jwks_uri = None;
    }
    if let Some(auds) = &spec.audiences {
        for a in auds {
            validate_resource(a).map_err(|e| format!("audience: {e}"))?;
        }
        c.audiences = auds.clone();
    }
    if let Some(a) = &spec.access_token_alg {
        c.access_token_alg = Alg::parse(a)
            .ok_or_else(|| format!("access-token-alg: {a:?} is not ES256, RS256 or EdDSA"))?;
    }
    if let Some(a) = &spec.id_token_alg {
        c.id_token_alg = Alg::parse(a)
            .ok_or_else(|| format!("id-token-alg: {a:?} is not RS256, ES256 or EdDSA"))?;
    }
    check_consistency(&c)?;
    Ok(c)
}

fn check_consistency(c: &Client) -> Result<(), String> {
    if c.grant_types.is_empty() {
        return Err("grant-types: at least one grant type is required".into());
    }
    if c.public != (c.auth_method == AuthMethod::None) {
        return Err(if c.public {
            format!(
                "auth-method: a public client authenticates with none, not {}",
                c.auth_method
            )
        } else {
            "auth-method: none is only for public clients".into()
        });
    }
    if c.public && c.may_use(GrantType::ClientCredentials) {
        return Err(
            "grant-types: a public client cannot use client_credentials (it has no credentials)"
                .into(),
        );
    }
    if c.may_use(GrantType::AuthorizationCode) && c.redirect_uris.is_empty() {
        return Err(
            "redirect-uri: the authorization_code grant needs at least one redirect URI".into(),
        );
    }
    if c.may_use(GrantType::RefreshToken) && !c.may_use(GrantType::AuthorizationCode) {
        return Err("grant-types: refresh_token comes with authorization_code".into());
    }
    if c.auth_method == AuthMethod::PrivateKeyJwt && c.jwks.is_none() && c.jwks_uri.is_none() {
        return Err(
            "auth-method: private_key_jwt needs the client's public keys: a JWKS or a JWKS URI"
                .into(),
        );
    }
    if c.auth_method != AuthMethod::PrivateKeyJwt && (c.jwks.is_some() || c.jwks_uri.is_some()) {
        return Err("jwks: a JWKS is only used by private_key_jwt clients".into());
    }
    Ok(())
}

/// RFC 6749 §3.1.2: absolute, no fragment. Web clients use https or http on loopback;
/// native clients may also use a private-use scheme (RFC 8252 §7.1).
pub fn validate_redirect_uri(s: &str) -> Result<(), String> {
    super::scope::uri_characters(s)?;
    let url = url::Url::parse(s).map_err(|_| format!("{s:?} is not an absolute URI"))?;
    if s.contains('#') {
        return Err(format!("{s:?} has a fragment (RFC 6749 §3.1.2)"));
    }
    // Redirect URIs are compared exactly (RFC 9700 §4.1.3): a `*` would match only itself,
    // which is never what its author meant.
    if s.contains('*') {
        return Err(format!(
            "{s:?}: wildcards are not supported; register every redirect URI in full"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{s:?} carries user information (user:password@)"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Domain("localhost")) => Ok(()),
            _ => Err(format!(
                "{s:?}: http is only allowed on loopback; use https"
            )),
        },
        "javascript" | "data" | "file" | "vbscript" => Err(format!("{s:?}: scheme not allowed")),
        _ if s.contains(':') && url.scheme().contains('.') => Ok(()),
        other => Err(format!(
            "{s:?}: scheme {other} not allowed (private-use schemes look like com.example.app)"
        )),
    }
}

/// Latchkey fetches this URI itself, so it must not become a way to reach internal services:
/// https only, or http on loopback for development.
fn validate_jwks_uri(s: &str) -> Result<(), String> {
    super::scope::uri_characters(s)?;
    let url = url::Url::parse(s).map_err(|_| format!("{s:?} is not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("{s:?}: must be https (http only on loopback)")),
    }
}

fn validate_jwks(jwks: &Value) -> Result<(), String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("expected a JSON Web Key Set: {\"keys\": [...]}")?;
    if keys.is_empty() {
        return Err("the key set is empty".into());
    }
    for key in keys {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone())
            .map_err(|e| format!("a key does not parse: {e}"))?;
        // A client's assertion is checked with its public keys; a shared key has no place in a
        // key set that /v1 and the CLI show back (client_secret_jwt uses the client secret).
        if key.get("kty").and_then(Value::as_str) == Some("oct") || key.get("k").is_some() {
            return Err(
                "the key set holds a symmetric key (kty oct); register public keys only".into(),
            );
        }
        if key.get("d").is_some() || key.get("p").is_some() {
            return Err("the key set holds a private key; register the public keys only".into());
        }
        jsonwebtoken::DecodingKey::from_jwk(&jwk)
            .map_err(|e| format!("a key is not usable: {e}"))?;
    }
    Ok(())
}

/// The client as printed by the CLI and returned by the API: never a secret (but the one shown
/// at creation, added by the caller).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    pub client_id: String,
    /// `client`.
    pub object: &'static str,
    /// Only in the response that issued it: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub org_id: String,
    pub client_name: String,
    pub grant_types: Vec<&'static str>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scope: String,
    pub token_endpoint_auth_method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    pub audiences: Vec<String>,
    pub access_token_alg: &'static str,
    pub id_token_alg: &'static str,
    pub public: bool,
    pub native: bool,
    pub skip_consent: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Until when the secret before the last rotation still works, if it does.
    pub previous_secret_expires_at: Option<String>,
}

impl ClientView {
    pub fn of(c: &Client, secret: Option<String>) -> ClientView {
        ClientView {
            client_id: c.client_id.clone(),
            object: "client",
            client_secret: secret,
            org_id: c.org_id.clone(),
            client_name: c.name.clone(),
            grant_types: c.grant_types.iter().map(|g| g.as_str()).collect(),
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            scope: c.scopes.to_string(),
            token_endpoint_auth_method: c.auth_method.as_str(),
            jwks: c.jwks.clone(),
            jwks_uri: c.jwks_uri.clone(),
            audiences: c.audiences.clone(),
            access_token_alg: c.access_token_alg.as_str(),
            id_token_alg: c.id_token_alg.as_str(),
            public: c.public,
            native: c.native,
            skip_consent: c.skip_consent,
            created_at: crate::rfc3339(c.created_at),
            updated_at: crate::rfc3339(c.updated_at),
            previous_secret_expires_at: c
                .previous_secret_live(crate::store::now())
                .then(|| c.prev_secret_expires_at.map(crate::rfc3339))
                .flatten(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_follow_rfc_6749_and_8252() {
        assert!(validate_redirect_uri("https://app.example.com/cb").is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:9999/cb").is_ok());
        assert!(validate_redirect_uri("com.example.app:/cb").is_ok());
        assert!(validate_redirect_uri("http://app.example.com/cb").is_err());
        assert!(validate_redirect_uri("https://app.example.com/cb#x").is_err());
        assert!(validate_redirect_uri("javascript:alert(1)").is_err());
        assert!(validate_redirect_uri("/cb").is_err());
        // One entry, one URI: a space would make two once stored (the lists are
        // space-separated), the second never validated.
        assert!(validate_redirect_uri("https://app.example/x http://evil.example/cb").is_err());
        assert!(validate_redirect_uri("https://app.example/x javascript:alert(1)").is_err());
        assert!(validate_redirect_uri("https://app.example/cb\n").is_err());
        assert!(validate_redirect_uri("https://*.example.com/cb").is_err());
        assert!(validate_redirect_uri("https://app.example.com/*").is_err());
        assert!(validate_redirect_uri("https://user:pw@app.example.com/cb").is_err());
        assert!(validate_redirect_uri("https://app.example.com/cb?x=a%20b").is_ok());
    }
}
