//! etcd's simple tokens: an opaque random string handed out by Authenticate and kept by the
//! member that issued it, naming the user for a while (five minutes, renewed on every use, as
//! etcd's `--auth-token-ttl`). A client whose token expired, or who reaches another member,
//! is told the token is invalid and authenticates again (clientv3 and etcdctl do so by
//! themselves).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};

/// How long a token lives without use.
pub const TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Entry {
    user: String,
    expires: Instant,
}

/// The tokens this member issued.
#[derive(Debug, Default)]
pub struct Tokens {
    issued: Mutex<HashMap<String, Entry>>,
}

impl Tokens {
    fn issued(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Every update is one insert or remove: a panic elsewhere leaves nothing half-done.
        self.issued.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new token's text, as etcd's simple token: random text and the auth revision.
    pub fn fresh(revision: u64) -> String {
        format!(
            "{}.{revision}",
            Alphanumeric.sample_string(&mut rand::rng(), 16)
        )
    }

    /// Makes `token` name `user` from `now` for [`TTL`].
    pub fn insert(&self, token: &str, user: &str, now: Instant) {
        let mut issued = self.issued();
        issued.retain(|_, e| e.expires > now);
        issued.insert(
            token.to_string(),
            Entry {
                user: user.to_string(),
                expires: now + TTL,
            },
        );
    }

    /// The user `token` names, renewing it; None if unknown or expired.
    pub fn user(&self, token: &str, now: Instant) -> Option<String> {
        let mut issued = self.issued();
        let entry = issued.get_mut(token)?;
        if entry.expires <= now {
            issued.remove(token);
            return None;
        }
        entry.expires = now + TTL;
        Some(entry.user.clone())
    }

    /// Forgets every token of `user` (deleted, or its password changed).
    pub fn revoke_user(&self, user: &str) {
        self.issued().retain(|_, e| e.user != user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_user_until_it_expires_unused() {
        let tokens = Tokens::default();
        let t0 = Instant::now();
        let token = Tokens::fresh(3);
        assert!(token.ends_with(".3"));
        tokens.insert(&token, "alice", t0);
        assert_eq!(tokens.user(&token, t0), Some("alice".into()));
        // Used within its lifetime, it lives on.
        assert_eq!(tokens.user(&token, t0 + TTL / 2), Some("alice".into()));
        assert_eq!(tokens.user(&token, t0 + TTL), Some("alice".into()));
        assert_eq!(tokens.user(&token, t0 + TTL * 3), None);
        assert_eq!(tokens.user("made-up.1", t0), None);
    }

    #[test]
    fn revoking_a_user_forgets_its_tokens_only() {
        let tokens = Tokens::default();
        let now = Instant::now();
        let (a, b) = (Tokens::fresh(1), Tokens::fresh(1));
        tokens.insert(&a, "alice", now);
        tokens.insert(&b, "bob", now);
        tokens.revoke_user("alice");
        assert_eq!(tokens.user(&a, now), None);
        assert_eq!(tokens.user(&b, now), Some("bob".into()));
    }
}
