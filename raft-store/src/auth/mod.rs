//! etcd's authentication and role-based access control: users with passwords and roles, roles
//! with key-range permissions, and a switch that turns checking on. The state is replicated:
//! every change is a raft command applied here in log order, so every member holds the same
//! users and roles at the same index, and it is kept in the store's metadata (and so in
//! snapshots). Requests are checked against it by the servers (see `server::guard`).
//!
//! Semantics follow etcd's auth store: `root` is the user that may enable auth and must hold the
//! `root` role, which grants everything (including the Auth, Cluster and Maintenance admin
//! calls); other roles grant READ, WRITE or READWRITE on a key, a range `[key, range_end)`, or
//! every key from `key` on (`range_end` = `"\0"`).

pub mod password;
pub mod tokens;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The user and the role that hold every permission.
pub const ROOT: &str = "root";

/// Why an auth call or check failed, with etcd's messages (clients match on them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AuthError {
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: password is empty")]
    PasswordEmpty,
}

/// What a permission allows, as authpb's `Permission.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    /// From authpb's number (0 READ, 1 WRITE, 2 READWRITE).
    pub fn from_i32(n: i32) -> Option<Self> {
        match n {
            0 => Some(Access::Read),
            1 => Some(Access::Write),
            2 => Some(Access::ReadWrite),
            _ => None,
        }
    }

    pub fn as_i32(self) -> i32 {
        match self {
            Access::Read => 0,
            Access::Write => 1,
            Access::ReadWrite => 2,
        }
    }

    fn allows(self, write: bool) -> bool {
        matches!(
            (self, write),
            (Access::ReadWrite, _) | (Access::Read, false) | (Access::Write, true)
        )
    }
}

/// A role's permission on a key or a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub access: Access,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct User {
    /// The password's hash ([`password::hash`]); None for a user that may not log in with one.
    pub password: Option<String>,
    pub roles: BTreeSet<String>,
}

/// One change to the auth state: what the Auth service proposes through raft. Passwords travel
/// hashed, so the log never holds them in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthOp {
    Enable,
    Disable,
    UserAdd {
        name: String,
        password: Option<String>,
    },
    UserDelete {
        name: String,
    },
    UserChangePassword {
        name: String,
        password: Option<String>,
    },
    UserGrantRole {
        user: String,
        role: String,
    },
    UserRevokeRole {
        user: String,
        role: String,
    },
    RoleAdd {
        name: String,
    },
    RoleDelete {
        name: String,
    },
    RoleGrantPermission {
        role: String,
        permission: Permission,
    },
    RoleRevokePermission {
        role: String,
        key: Vec<u8>,
        range_end: Vec<u8>,
    },
    /// A user authenticated on one member: every member learns its token, so the client may
    /// use it wherever its next call lands (etcd assigns simple tokens through raft the same
    /// way). Changes nothing in the state; the token lives in memory.
    IssueToken {
        user: String,
        token: String,
    },
}

/// The replicated auth state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuthState {
    pub enabled: bool,
    /// Bumped by every change, as etcd's auth revision.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    /// Role name → its permissions, sorted by key then range end.
    pub roles: BTreeMap<String, Vec<Permission>>,
}

/// The end of the keys a request or permission covers: a point, a range, or everything from
/// its key on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Point,
    Before(Vec<u8>),
    Open,
}

fn end_of(range_end: &[u8]) -> End {
    match range_end {
        [] => End::Point,
        [0] => End::Open,
        end => End::Before(end.to_vec()),
    }
}

/// The first key after `key` in byte order.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// `[start, end)` with `None` as no end.
type Interval = (Vec<u8>, Option<Vec<u8>>);

fn interval(key: &[u8], range_end: &[u8]) -> Interval {
    match end_of(range_end) {
        End::Point => (key.to_vec(), Some(successor(key))),
        End::Before(end) => (key.to_vec(), Some(end)),
        End::Open => (key.to_vec(), None),
    }
}

/// Whether the union of `grants` covers `want`.
fn covered(want: &Interval, mut grants: Vec<Interval>) -> bool {
    grants.sort();
    let (mut at, end) = (want.0.clone(), want.1.clone());
    if end.as_ref().is_some_and(|e| *e <= at) {
        // An empty range asks for nothing.
        return true;
    }
    for (start, stop) in grants {
        if start > at {
            continue;
        }
        match stop {
            None => return true,
            Some(stop) if stop > at => {
                if end.as_ref().is_some_and(|e| stop >= *e) {
                    return true;
                }
                at = stop;
            }
            Some(_) => {}
        }
    }
    false
}

impl AuthState {
    fn user_mut(&mut self, name: &str) -> Result<&mut User, AuthError> {
        self.users.get_mut(name).ok_or(AuthError::UserNotFound)
    }

    /// Applies `op`, as etcd's auth store does; the state is unchanged on an error.
    pub fn apply(&mut self, op: &AuthOp) -> Result<(), AuthError> {
        match op {
            AuthOp::Enable => {
                if self.enabled {
                    return Ok(());
                }
                let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                if !root.roles.contains(ROOT) {
                    return Err(AuthError::RootRoleNotExist);
                }
                self.enabled = true;
            }
            AuthOp::Disable => {
                if !self.enabled {
                    return Ok(());
                }
                self.enabled = false;
            }
            AuthOp::UserAdd { name, password } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                self.users.insert(
                    name.clone(),
                    User {
                        password: password.clone(),
                        roles: BTreeSet::new(),
                    },
                );
            }
            AuthOp::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.users.remove(name).ok_or(AuthError::UserNotFound)?;
            }
            AuthOp::UserChangePassword { name, password } => {
                self.user_mut(name)?.password = password.clone();
            }
            AuthOp::UserGrantRole { user, role } => {
                if role != ROOT && !self.roles.contains_key(role) {
                    self.user_mut(user)?;
                    return Err(AuthError::RoleNotFound);
                }
                self.user_mut(user)?.roles.insert(role.clone());
            }
            AuthOp::UserRevokeRole { user, role } => {
                if self.enabled && user == ROOT && role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                if !self.user_mut(user)?.roles.remove(role) {
                    return Err(AuthError::RoleNotGranted);
                }
            }
            AuthOp::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.roles.insert(name.clone(), Vec::new());
            }
            AuthOp::RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.roles.remove(name).ok_or(AuthError::RoleNotFound)?;
                for user in self.users.values_mut() {
                    user.roles.remove(name);
                }
            }
            AuthOp::RoleGrantPermission { role, permission } => {
                let perms = self.roles.get_mut(role).ok_or(AuthError::RoleNotFound)?;
                match perms
                    .iter_mut()
                    .find(|p| p.key == permission.key && p.range_end == permission.range_end)
                {
                    Some(existing) => existing.access = permission.access,
                    None => {
                        perms.push(permission.clone());
                        perms.sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
                    }
                }
            }
            AuthOp::IssueToken { user, .. } => {
                if !self.users.contains_key(user) {
                    return Err(AuthError::AuthFailed);
                }
                // Nothing changes: no new revision.
                return Ok(());
            }
            AuthOp::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                let perms = self.roles.get_mut(role).ok_or(AuthError::RoleNotFound)?;
                let before = perms.len();
                perms.retain(|p| !(p.key == *key && p.range_end == *range_end));
                if perms.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
            }
        }
        self.revision += 1;
        Ok(())
    }

    /// Whether `user` holds the root role (may call the admin APIs and reach every key).
    pub fn is_root(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.contains(ROOT))
    }

    /// Checks that `user` may read (or write) `[key, range_end)` (etcd's range conventions).
    pub fn check(
        &self,
        user: &str,
        key: &[u8],
        range_end: &[u8],
        write: bool,
    ) -> Result<(), AuthError> {
        let account = self.users.get(user).ok_or(AuthError::UserNotFound)?;
        if account.roles.contains(ROOT) {
            return Ok(());
        }
        let grants: Vec<Interval> = account
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flatten()
            .filter(|p| p.access.allows(write))
            .map(|p| interval(&p.key, &p.range_end))
            .collect();
        if covered(&interval(key, range_end), grants) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Checks that a call may read (or write) `[key, range_end)`: any call while auth is off
    /// or for a call that carried no auth (`caller` None), else `caller`'s roles decide, and an
    /// unknown user is simply denied, as etcd answers.
    pub fn permits(
        &self,
        caller: Option<&str>,
        key: &[u8],
        range_end: &[u8],
        write: bool,
    ) -> Result<(), AuthError> {
        match caller {
            Some(user) if self.enabled => self
                .check(user, key, range_end, write)
                .map_err(|_| AuthError::PermissionDenied),
            _ => Ok(()),
        }
    }

    /// Checks `user`'s password against its hash.
    pub fn authenticate(&self, user: &str, given: &str) -> Result<(), AuthError> {
        match self.users.get(user).and_then(|u| u.password.as_deref()) {
            Some(hash) if password::verify(hash, given) => Ok(()),
            _ => Err(AuthError::AuthFailed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_root() -> AuthState {
        let mut s = AuthState::default();
        s.apply(&AuthOp::UserAdd {
            name: ROOT.into(),
            password: Some(password::hash("pw")),
        })
        .expect("root");
        s.apply(&AuthOp::RoleAdd { name: ROOT.into() })
            .expect("root role");
        s.apply(&AuthOp::UserGrantRole {
            user: ROOT.into(),
            role: ROOT.into(),
        })
        .expect("grant");
        s
    }

    fn grant(s: &mut AuthState, role: &str, access: Access, key: &[u8], end: &[u8]) {
        s.apply(&AuthOp::RoleGrantPermission {
            role: role.into(),
            permission: Permission {
                access,
                key: key.to_vec(),
                range_end: end.to_vec(),
            },
        })
        .expect("grant permission");
    }

    #[test]
    fn enabling_needs_a_root_user_holding_the_root_role() {
        let mut s = AuthState::default();
        assert_eq!(s.apply(&AuthOp::Enable), Err(AuthError::RootUserNotExist));
        s.apply(&AuthOp::UserAdd {
            name: ROOT.into(),
            password: None,
        })
        .expect("root");
        assert_eq!(s.apply(&AuthOp::Enable), Err(AuthError::RootRoleNotExist));
        // The root role need not exist as a role to be granted.
        s.apply(&AuthOp::UserGrantRole {
            user: ROOT.into(),
            role: ROOT.into(),
        })
        .expect("grant root");
        s.apply(&AuthOp::Enable).expect("enable");
        assert!(s.enabled);
        // Root cannot be removed or stripped while enabled.
        assert_eq!(
            s.apply(&AuthOp::UserDelete { name: ROOT.into() }),
            Err(AuthError::InvalidAuthMgmt)
        );
        assert_eq!(
            s.apply(&AuthOp::UserRevokeRole {
                user: ROOT.into(),
                role: ROOT.into()
            }),
            Err(AuthError::InvalidAuthMgmt)
        );
    }

    #[test]
    fn users_and_roles_refuse_duplicates_and_unknown_names_as_etcd() {
        let mut s = with_root();
        let before = s.clone();
        assert_eq!(
            s.apply(&AuthOp::UserAdd {
                name: ROOT.into(),
                password: None
            }),
            Err(AuthError::UserAlreadyExist)
        );
        assert_eq!(
            s.apply(&AuthOp::UserAdd {
                name: String::new(),
                password: None
            }),
            Err(AuthError::UserEmpty)
        );
        assert_eq!(
            s.apply(&AuthOp::RoleAdd { name: ROOT.into() }),
            Err(AuthError::RoleAlreadyExist)
        );
        assert_eq!(
            s.apply(&AuthOp::UserGrantRole {
                user: ROOT.into(),
                role: "nope".into()
            }),
            Err(AuthError::RoleNotFound)
        );
        assert_eq!(
            s.apply(&AuthOp::UserRevokeRole {
                user: "ghost".into(),
                role: ROOT.into()
            }),
            Err(AuthError::UserNotFound)
        );
        assert_eq!(
            s.apply(&AuthOp::RoleRevokePermission {
                role: ROOT.into(),
                key: b"a".to_vec(),
                range_end: Vec::new()
            }),
            Err(AuthError::PermissionNotGranted)
        );
        assert_eq!(s, before, "refusals change nothing");
    }

    #[test]
    fn permissions_cover_keys_ranges_and_prefixes_and_their_unions() {
        let mut s = with_root();
        s.apply(&AuthOp::UserAdd {
            name: "alice".into(),
            password: None,
        })
        .expect("alice");
        s.apply(&AuthOp::RoleAdd { name: "app".into() })
            .expect("role");
        s.apply(&AuthOp::UserGrantRole {
            user: "alice".into(),
            role: "app".into(),
        })
        .expect("grant");
        grant(&mut s, "app", Access::Read, b"/app/", b"/app0");
        grant(
            &mut s,
            "app",
            Access::ReadWrite,
            b"/app/cache/",
            b"/app/cache0",
        );
        grant(&mut s, "app", Access::Read, b"/b", b"/c");
        grant(&mut s, "app", Access::Read, b"/c", b"/d");
        grant(&mut s, "app", Access::Write, b"/log", b"");

        assert!(s.check("alice", b"/app/x", b"", false).is_ok());
        assert!(s.check("alice", b"/app/", b"/app0", false).is_ok());
        assert_eq!(
            s.check("alice", b"/app/x", b"", true),
            Err(AuthError::PermissionDenied)
        );
        assert!(s.check("alice", b"/app/cache/k", b"", true).is_ok());
        // Two adjacent grants together cover a range neither covers alone.
        assert!(s.check("alice", b"/b", b"/d", false).is_ok());
        assert!(s.check("alice", b"/b", b"/e", false).is_err());
        // A single key, and nothing past it.
        assert!(s.check("alice", b"/log", b"", true).is_ok());
        assert!(s.check("alice", b"/log", b"", false).is_err());
        assert!(s.check("alice", b"/log", b"/loh", true).is_err());
        // Everything from a key on is covered only by an open grant.
        assert!(s.check("alice", b"/app/", b"\0", false).is_err());
        grant(&mut s, "app", Access::Read, b"/z", b"\0");
        assert!(s.check("alice", b"/z/any", b"\0", false).is_ok());
        // Root reaches everything; strangers nothing.
        assert!(s.check(ROOT, b"\0", b"\0", true).is_ok());
        assert_eq!(
            s.check("ghost", b"/app/x", b"", false),
            Err(AuthError::UserNotFound)
        );
    }

    #[test]
    fn deleting_a_role_takes_it_from_every_user_and_revoking_a_permission_removes_it() {
        let mut s = with_root();
        s.apply(&AuthOp::UserAdd {
            name: "bob".into(),
            password: None,
        })
        .expect("bob");
        s.apply(&AuthOp::RoleAdd { name: "r".into() })
            .expect("role");
        grant(&mut s, "r", Access::Read, b"k", b"");
        s.apply(&AuthOp::UserGrantRole {
            user: "bob".into(),
            role: "r".into(),
        })
        .expect("grant");
        assert!(s.check("bob", b"k", b"", false).is_ok());
        s.apply(&AuthOp::RoleRevokePermission {
            role: "r".into(),
            key: b"k".to_vec(),
            range_end: Vec::new(),
        })
        .expect("revoke");
        assert!(s.check("bob", b"k", b"", false).is_err());
        s.apply(&AuthOp::RoleDelete { name: "r".into() })
            .expect("delete");
        assert!(s.users["bob"].roles.is_empty());
    }

    #[test]
    fn passwords_are_checked_against_their_hash() {
        let s = with_root();
        assert!(s.authenticate(ROOT, "pw").is_ok());
        assert_eq!(s.authenticate(ROOT, "wrong"), Err(AuthError::AuthFailed));
        assert_eq!(s.authenticate("ghost", "pw"), Err(AuthError::AuthFailed));
    }

    #[test]
    fn every_change_bumps_the_revision_and_refusals_do_not() {
        let mut s = AuthState::default();
        s.apply(&AuthOp::RoleAdd { name: "a".into() }).expect("add");
        assert_eq!(s.revision, 1);
        let _ = s.apply(&AuthOp::RoleAdd { name: "a".into() });
        assert_eq!(s.revision, 1);
    }
}
