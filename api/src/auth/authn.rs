//! Authentication: who a request comes from. Bearer tokens from a static token file (the
//! format of kube-apiserver's `--token-auth-file`), or anonymous when no credential is given
//! and anonymous requests are allowed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::PoisonError;

use super::UserInfo;
use crate::error::ApiError;

pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const AUTHENTICATED: &str = "system:authenticated";

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("token file line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// The users of a static token file: `token,user,uid[,"group1,group2"]` per line.
#[derive(Debug, Clone, Default)]
pub struct TokenFile {
    users: HashMap<String, UserInfo>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            let err = |reason: &str| TokenFileError::Line {
                line: i + 1,
                reason: reason.to_string(),
            };
            if fields.len() < 3 {
                return Err(err("expected token,user,uid[,groups]"));
            }
            if fields[0].is_empty() || fields[1].is_empty() {
                return Err(err("token and user must not be empty"));
            }
            let mut groups: Vec<String> = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            groups.push(AUTHENTICATED.to_string());
            if users
                .insert(
                    fields[0].clone(),
                    UserInfo {
                        name: fields[1].clone(),
                        uid: fields[2].clone(),
                        groups,
                    },
                )
                .is_some()
            {
                return Err(err("duplicate token"));
            }
        }
        Ok(Self { users })
    }
}

/// Splits one CSV line: commas separate fields, double quotes group a field with commas.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    fields.push(cur.trim().to_string());
    fields
}

/// Turns a request's credential into a user.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// The token file's users, and tokens the server issues itself (the admin's).
    tokens: std::sync::Arc<std::sync::RwLock<TokenFile>>,
    anonymous: bool,
}

impl Default for Authenticator {
    /// No token file; anonymous requests allowed.
    fn default() -> Self {
        Self::new(TokenFile::default(), true)
    }
}

impl Authenticator {
    pub fn new(tokens: TokenFile, anonymous: bool) -> Self {
        Self {
            tokens: std::sync::Arc::new(std::sync::RwLock::new(tokens)),
            anonymous,
        }
    }

    /// Recognises `token` as `user` from now on (the cluster's admin credential, read from the
    /// store at start).
    pub fn add_token(&self, token: &str, user: UserInfo) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .users
            .insert(token.to_string(), user);
    }

    /// The user behind `authorization` (the header's value, if any). A credential that is
    /// given but not recognised is refused even when anonymous requests are allowed, as
    /// Kubernetes does.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<UserInfo, ApiError> {
        let unauthorized = || ApiError::Unauthorized("Unauthorized".into());
        match authorization {
            Some(header) => {
                let token = header
                    .strip_prefix("Bearer ")
                    .or_else(|| header.strip_prefix("bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(unauthorized)?;
                self.tokens
                    .read()
                    .ok()
                    .and_then(|t| t.users.get(token).cloned())
                    .ok_or_else(unauthorized)
            }
            None if self.anonymous => Ok(UserInfo {
                name: ANONYMOUS.to_string(),
                uid: String::new(),
                groups: vec![UNAUTHENTICATED.to_string()],
            }),
            None => Err(unauthorized()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_lines_name_users_and_groups() {
        let file =
            TokenFile::parse("# comment\nt1,alice,1\nt2,bob,2,\"dev,ops\"\n").expect("parses");
        let auth = Authenticator::new(file, false);
        let alice = auth.authenticate(Some("Bearer t1")).expect("alice");
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, [AUTHENTICATED]);
        let bob = auth.authenticate(Some("Bearer t2")).expect("bob");
        assert_eq!(bob.groups, ["dev", "ops", AUTHENTICATED]);
    }

    #[test]
    fn unknown_tokens_are_refused_even_when_anonymous_is_allowed() {
        let auth = Authenticator::new(TokenFile::parse("t1,alice,1").expect("parses"), true);
        let err = auth.authenticate(Some("Bearer nope")).expect_err("refused");
        assert_eq!(err.code(), 401);
        assert_eq!(auth.authenticate(None).expect("anonymous").name, ANONYMOUS);
        let strict = Authenticator::new(TokenFile::default(), false);
        assert_eq!(
            strict.authenticate(None).expect_err("no anonymous").code(),
            401
        );
    }

    #[test]
    fn malformed_token_files_are_refused() {
        assert!(TokenFile::parse("onlytoken").is_err());
        assert!(TokenFile::parse("t,alice,1\nt,bob,2").is_err());
    }
}
