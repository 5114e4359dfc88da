//! kubelet's token manager: each projected token is requested once and kept until 80 % of
//! its life has passed (or a day, whichever is first), then requested again; a token still
//! valid is kept when the renewal fails.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

use super::{SourceError, Sources, Token, TokenSpec};

/// The longest a token is kept before renewal, whatever its lifetime.
const MAX_TTL_SECONDS: i64 = 24 * 60 * 60;

/// Whether `token`, asked for with `expiration_seconds` of life, is due for renewal at `now`.
pub fn requires_refresh(now: DateTime<Utc>, token: &Token, expiration_seconds: i64) -> bool {
    let issued = token.expiration - Duration::seconds(expiration_seconds);
    if now > issued + Duration::seconds(MAX_TTL_SECONDS) {
        return true;
    }
    now > token.expiration - Duration::seconds(expiration_seconds * 20 / 100)
}

/// The tokens of the node's pods, by what they asked for.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<TokenSpec, Token>>,
}

impl TokenCache {
    /// The token for `spec`: the kept one unless due for renewal, else a new one.
    pub async fn get<S: Sources>(
        &self,
        sources: &S,
        spec: &TokenSpec,
    ) -> Result<String, SourceError> {
        let now = Utc::now();
        let kept = self
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(spec)
            .cloned();
        if let Some(token) = &kept {
            if !requires_refresh(now, token, spec.expiration_seconds) {
                return Ok(token.token.clone());
            }
        }
        match sources.token(spec).await {
            Ok(fresh) => {
                let value = fresh.token.clone();
                self.tokens
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(spec.clone(), fresh);
                Ok(value)
            }
            Err(error) => match kept {
                Some(token) if token.expiration > now => {
                    tracing::warn!(service_account = %spec.service_account, %error, "couldn't renew a token; keeping the current one");
                    Ok(token.token)
                }
                Some(_) => Err(SourceError::Failed(format!(
                    "token {}/{} expired and refresh failed: {error}",
                    spec.namespace, spec.service_account
                ))),
                None => Err(error),
            },
        }
    }

    /// Forgets the tokens of the pod with `uid`.
    pub fn forget_pod(&self, uid: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|spec, _| spec.pod_uid != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_in: i64, now: DateTime<Utc>) -> Token {
        Token {
            token: "t".into(),
            expiration: now + Duration::seconds(expires_in),
        }
    }

    #[test]
    fn a_token_is_renewed_past_eighty_percent_of_its_life() {
        let now = Utc::now();
        // An hour-long token: renewed from 48 minutes on, i.e. with 12 minutes left.
        assert!(!requires_refresh(now, &token(3600, now), 3600));
        assert!(!requires_refresh(now, &token(13 * 60, now), 3600));
        assert!(requires_refresh(now, &token(11 * 60, now), 3600));
        assert!(requires_refresh(now, &token(-1, now), 3600));
    }

    #[test]
    fn a_long_lived_token_is_renewed_after_a_day() {
        let now = Utc::now();
        let week = 7 * 24 * 3600;
        assert!(!requires_refresh(now, &token(week, now), week));
        assert!(requires_refresh(
            now,
            &token(week - MAX_TTL_SECONDS - 1, now),
            week
        ));
    }
}
