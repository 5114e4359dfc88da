//! Who is asking and what they may do: the authenticated user, the attributes of a request as
//! authorization sees them, and the decision.

pub mod authn;
pub mod authorize;
pub mod bootstrap_roles;
pub mod escalation;
pub mod impersonation;
pub mod node;
pub mod rbac;
pub mod service_accounts;

/// An authenticated user, as Kubernetes' user.Info.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// The user a verified TLS client certificate names, attached by the HTTPS listener to every
/// request of the connection (None without a certificate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCertificate(pub Option<UserInfo>);

/// The user a REST request was authenticated as, attached once per request before any
/// handler runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authenticated(pub UserInfo);

/// What a request does, in the terms RBAC rules are written in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    /// get, list, watch, create, update, patch, delete, deletecollection (resource requests), or
    /// the HTTP verb in lower case for non-resource requests.
    pub verb: String,
    /// "" for the core group.
    pub api_group: String,
    /// Plural resource name ("pods"); empty for non-resource requests.
    pub resource: String,
    pub subresource: String,
    /// Empty for cluster-scoped resources and for requests across all namespaces.
    pub namespace: String,
    /// Empty when the request names no object (list, create, …).
    pub name: String,
    /// The URL path, for non-resource requests (`/version`, `/healthz`, …).
    pub path: Option<String>,
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Explicitly refused, with the reason to report.
    Deny(String),
    /// This authorizer has no rule for the request (the next one, or denial, decides).
    NoOpinion,
}

/// How requests are authorized (kube-apiserver's `--authorization-mode`): a comma-separated
/// chain of `Node`, `RBAC` and `AlwaysAllow`, asked in turn until one allows. None of them
/// denies outright, so the order does not change a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorizationMode {
    /// The Node authorizer: node agents' credentials reach their own node's objects.
    pub node: bool,
    /// Roles, ClusterRoles and their bindings.
    pub rbac: bool,
    /// Every authenticated request is allowed.
    pub always_allow: bool,
}

impl AuthorizationMode {
    /// Everything allowed: for in-process tests and for servers started with it on purpose.
    pub const ALWAYS_ALLOW: Self = Self {
        node: false,
        rbac: false,
        always_allow: true,
    };
    pub const RBAC: Self = Self {
        node: false,
        rbac: true,
        always_allow: false,
    };
    /// `Node,RBAC`: what `keel server` runs with unless told otherwise, as a kubeadm cluster.
    pub const NODE_RBAC: Self = Self {
        node: true,
        rbac: true,
        always_allow: false,
    };
}

/// The library's default is [`AuthorizationMode::ALWAYS_ALLOW`], for API servers built in
/// process by tests; `keel server`'s flag defaults to `Node,RBAC`.
impl Default for AuthorizationMode {
    fn default() -> Self {
        Self::ALWAYS_ALLOW
    }
}

impl std::str::FromStr for AuthorizationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut mode = Self {
            node: false,
            rbac: false,
            always_allow: false,
        };
        for part in s.split(',').map(str::trim) {
            let slot = match part {
                "Node" => &mut mode.node,
                "RBAC" => &mut mode.rbac,
                "AlwaysAllow" => &mut mode.always_allow,
                other => {
                    return Err(format!(
                        "unsupported authorization mode {other:?}: use Node, RBAC, AlwaysAllow or a comma-separated list of them"
                    ))
                }
            };
            if *slot {
                return Err(format!("authorization mode {part:?} given twice"));
            }
            *slot = true;
        }
        Ok(mode)
    }
}

/// The members of this group may do anything, whatever the authorizer says (as Kubernetes'
/// system:masters).
pub const MASTERS: &str = "system:masters";

/// How an API server authenticates and authorizes.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub authenticator: authn::Authenticator,
    pub mode: AuthorizationMode,
    /// The audiences ServiceAccount tokens must name to authenticate here, and the default
    /// of a TokenRequest (kube-apiserver's `--api-audiences`); empty means the issuer.
    pub api_audiences: Vec<String>,
}
