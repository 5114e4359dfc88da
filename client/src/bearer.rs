//! The bearer token sent as `authorization` metadata on every call: none, a fixed token, or a
//! token file read again once a minute, since whoever writes such a file (a projected
//! ServiceAccount token, say) replaces the token before it expires.

use std::path::PathBuf;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;

use crate::error::Error;

/// How long a token read from a file is used before the file is read again (kubectl's client
/// waits the same).
const REREAD: Duration = Duration::from_secs(60);

/// Adds `authorization: Bearer <token>` to every call, when there is a token. Cloning shares
/// the token (and, for a file, what was last read from it).
#[derive(Clone, Default)]
pub struct Bearer(Option<Arc<Source>>);

enum Source {
    Fixed(AsciiMetadataValue),
    File {
        path: PathBuf,
        reread: Duration,
        /// When the file was last read, and the header it gave.
        last: Mutex<(Instant, AsciiMetadataValue)>,
    },
}

fn header(token: &str) -> Result<AsciiMetadataValue, Error> {
    format!("Bearer {}", token.trim())
        .parse()
        .map_err(|_| Error::InvalidToken)
}

impl Bearer {
    /// Sends no credentials: the server decides whether anonymous calls are allowed.
    pub fn none() -> Self {
        Self(None)
    }

    pub fn fixed(token: &str) -> Result<Self, Error> {
        Ok(Self(Some(Arc::new(Source::Fixed(header(token)?)))))
    }

    /// `token`, as just read from `path`, and from then on whatever `path` holds.
    pub fn from_file(path: PathBuf, token: &str) -> Result<Self, Error> {
        Self::rereading(path, token, REREAD)
    }

    fn rereading(path: PathBuf, token: &str, reread: Duration) -> Result<Self, Error> {
        Ok(Self(Some(Arc::new(Source::File {
            path,
            reread,
            last: Mutex::new((Instant::now(), header(token)?)),
        }))))
    }

    /// The header to send now.
    fn value(&self) -> Option<AsciiMetadataValue> {
        match self.0.as_deref()? {
            Source::Fixed(value) => Some(value.clone()),
            Source::File { path, reread, last } => {
                let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
                if last.0.elapsed() >= *reread {
                    // A file being rewritten, or briefly absent, keeps the token that worked
                    // until the next look.
                    let read = std::fs::read_to_string(path)
                        .map_err(|e| e.to_string())
                        .and_then(|t| header(&t).map_err(|e| e.to_string()));
                    match read {
                        Ok(value) => last.1 = value,
                        Err(error) => {
                            tracing::warn!(path = %path.display(), %error, "token file unusable")
                        }
                    }
                    last.0 = Instant::now();
                }
                Some(last.1.clone())
            }
        }
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = self.value() {
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(bearer: &mut Bearer) -> Option<String> {
        let request = bearer.call(tonic::Request::new(())).expect("never refuses");
        request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    #[test]
    fn a_fixed_token_rides_on_every_call() {
        let mut bearer = Bearer::fixed("s3cret").expect("ascii");
        assert_eq!(sent(&mut bearer).as_deref(), Some("Bearer s3cret"));
        assert_eq!(sent(&mut bearer).as_deref(), Some("Bearer s3cret"));
    }

    #[test]
    fn without_a_token_no_header_is_sent() {
        assert_eq!(sent(&mut Bearer::none()), None);
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused() {
        assert!(matches!(Bearer::fixed("a\nb"), Err(Error::InvalidToken)));
    }

    #[test]
    fn a_token_file_is_read_again_and_a_bad_read_keeps_the_last_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").expect("write");
        let mut bearer = Bearer::rereading(path.clone(), "first", Duration::ZERO).expect("ascii");
        assert_eq!(sent(&mut bearer).as_deref(), Some("Bearer first"));
        std::fs::write(&path, "second\n").expect("write");
        assert_eq!(sent(&mut bearer).as_deref(), Some("Bearer second"));
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(sent(&mut bearer).as_deref(), Some("Bearer second"));
    }

    #[test]
    fn a_token_file_is_not_read_again_within_the_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "first").expect("write");
        let mut bearer = Bearer::from_file(path.clone(), "first").expect("ascii");
        std::fs::write(&path, "second").expect("write");
        assert_eq!(sent(&mut bearer).as_deref(), Some("Bearer first"));
    }
}
