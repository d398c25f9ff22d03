//! What the audit log records (SPEC §4) and how: changes to keys, clients, people and the
//! organization (in the same transaction as the change), logins, consents, and refused
//! credentials that identify a key or a client.
//!
//! A refused credential is recorded at most once a minute per credential and reason: a node
//! first checks its own memory (so a flood of refusals costs no write), then the insert
//! carries a `dedup_key` of credential, reason and minute that the database keeps unique, so
//! several nodes still record one. Garbage that identifies nothing is only counted in
//! metrics. No event ever holds a secret, and no event names a username that matched no one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use serde_json::Value;

use crate::app::AppState;
use crate::crypto::random_base62;
use crate::store::{self, audit::AuditEvent};

/// Audit events are kept this long.
pub const RETENTION_SECS: i64 = 365 * 86_400;

/// Who did something, from where, in which request.
#[derive(Debug, Clone)]
pub struct Context {
    pub org_id: String,
    pub actor: String,
    pub ip: Option<IpAddr>,
    pub request_id: Option<String>,
}

impl Context {
    /// The request being served (its id comes from the telemetry middleware).
    pub fn request(org_id: &str, actor: String, ip: Option<IpAddr>) -> Context {
        let id = crate::telemetry::current_request_id();
        Context {
            org_id: org_id.to_string(),
            actor,
            ip,
            request_id: (!id.is_empty()).then_some(id),
        }
    }

    /// The administration CLI, run by an operator of the server.
    pub fn cli(org_id: &str) -> Context {
        Context {
            org_id: org_id.to_string(),
            actor: "cli".into(),
            ip: None,
            request_id: None,
        }
    }

    /// A successful `action` on `target`, with non-secret `detail`.
    pub fn event(&self, action: &str, target: Option<&str>, detail: Value) -> AuditEvent {
        AuditEvent {
            id: format!("evt_{}", random_base62(20)),
            seq: store::seq_now(),
            org_id: self.org_id.clone(),
            actor: self.actor.clone(),
            action: action.to_string(),
            target: target.map(str::to_string),
            outcome: "success".into(),
            reason: None,
            ip: self.ip.map(|ip| ip.to_string()),
            request_id: self.request_id.clone(),
            detail: if detail.is_null() {
                "{}".into()
            } else {
                detail.to_string()
            },
            dedup_key: None,
            created_at: store::now(),
        }
    }

    /// A refused `action`, and why.
    pub fn failure(&self, action: &str, target: Option<&str>, reason: &str) -> AuditEvent {
        AuditEvent {
            outcome: "failure".into(),
            reason: Some(reason.to_string()),
            ..self.event(action, target, Value::Null)
        }
    }
}

/// Records `event` off the request's path; a failure to write it is logged, never the
/// request's failure (the change it describes, when there is one, was recorded with it).
pub fn record_later(state: &AppState, event: AuditEvent) {
    let store = state.store.clone();
    actix_web::rt::spawn(async move {
        if let Err(e) = store.run(move |c| store::audit::insert(c, &event)).await {
            tracing::warn!(error = %e, "cannot write an audit event");
        }
    });
}

/// This node's memory of refusals recorded in the last minute: credential and reason → time.
#[derive(Default)]
pub struct Refusals {
    recent: Mutex<HashMap<(String, &'static str), i64>>,
}

impl Refusals {
    /// Whether a refusal of `credential` for `reason` at `now` is the first this minute here.
    fn first_this_minute(&self, credential: &str, reason: &'static str, now: i64) -> bool {
        let Ok(mut recent) = self.recent.lock() else {
            return true;
        };
        if recent.len() > 10_000 {
            recent.retain(|_, at| *at > now - 60);
        }
        match recent.get_mut(&(credential.to_string(), reason)) {
            Some(at) if *at > now - 60 => false,
            Some(at) => {
                *at = now;
                true
            }
            None => {
                recent.insert((credential.to_string(), reason), now);
                true
            }
        }
    }
}

/// Records that `credential` (a key id, `client:…` or `user:…`) of `ctx.org_id` was refused
/// for `reason` — at most once a minute per credential and reason, across nodes.
pub fn refused(state: &AppState, ctx: &Context, credential: &str, reason: &'static str) {
    let now = store::now();
    if !state.refusals.first_this_minute(credential, reason, now) {
        return;
    }
    let mut event = ctx.failure("credential.refused", Some(credential), reason);
    event.dedup_key = Some(format!("{credential}|{reason}|{}", now / 60));
    record_later(state, event);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_recorded_once_a_minute_per_credential_and_reason() {
        let r = Refusals::default();
        assert!(r.first_this_minute("key_a", "revoked", 1000));
        assert!(!r.first_this_minute("key_a", "revoked", 1059));
        assert!(r.first_this_minute("key_a", "expired", 1059));
        assert!(r.first_this_minute("key_b", "revoked", 1059));
        assert!(r.first_this_minute("key_a", "revoked", 1060));
    }
}
