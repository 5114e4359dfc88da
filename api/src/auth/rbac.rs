//! Role-based access control as Kubernetes' RBAC authorizer decides it: which rules the
//! bindings give a user in a namespace, whether one of them covers a request, and the
//! message a refused request is answered with.
//!
//! The authorizer is built from a snapshot of the four RBAC kinds and never changes; when
//! roles or bindings change, the owner builds a new one. Aggregated ClusterRoles get their
//! rules here, at build time, as Kubernetes' aggregation controller would have written them.

use std::collections::BTreeMap;
use std::fmt;

use keel_types::field::go_quote;
use keel_types::k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use keel_types::Selector;

use super::{Attributes, Decision, UserInfo};

/// Every verb, group, resource or non-resource URL.
const ALL: &str = "*";
/// Service account users are named `system:serviceaccount:<namespace>:<name>`.
const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// Kubernetes' RBAC authorizer over a fixed set of roles and bindings.
///
/// RBAC only grants: [`RbacAuthorizer::authorize`] answers [`Decision::Allow`] or
/// [`Decision::NoOpinion`], never [`Decision::Deny`]; refusing is left to whoever asks last.
#[derive(Debug, Clone, Default)]
pub struct RbacAuthorizer {
    /// ClusterRoleBindings: they grant in every namespace and at the cluster scope.
    cluster_grants: Vec<Grant>,
    /// RoleBindings by namespace: they grant only in their own namespace.
    namespace_grants: BTreeMap<String, Vec<Grant>>,
    /// Every ClusterRole's rules, aggregation resolved.
    cluster_role_rules: BTreeMap<String, Vec<PolicyRule>>,
    /// Every Role's rules, by namespace and name.
    role_rules: BTreeMap<(String, String), Vec<PolicyRule>>,
}

/// One binding with the rules of the role it refers to, resolved when the authorizer is built.
#[derive(Debug, Clone)]
struct Grant {
    source: GrantSource,
    subjects: Vec<Subject>,
    rules: Vec<PolicyRule>,
}

/// Where a grant came from, to say what allowed a request.
#[derive(Debug, Clone)]
enum GrantSource {
    ClusterRoleBinding {
        name: String,
        role: RoleRef,
    },
    RoleBinding {
        namespace: String,
        name: String,
        role: RoleRef,
    },
}

impl RbacAuthorizer {
    /// Resolves every binding against the roles it names. A binding whose role does not exist
    /// grants nothing (Kubernetes reports it as a resolution error and denies by default).
    pub fn new(
        roles: Vec<Role>,
        cluster_roles: Vec<ClusterRole>,
        role_bindings: Vec<RoleBinding>,
        cluster_role_bindings: Vec<ClusterRoleBinding>,
    ) -> RbacAuthorizer {
        let cluster_rules = aggregate_cluster_roles(&cluster_roles);
        let mut role_rules: BTreeMap<(String, String), Vec<PolicyRule>> = BTreeMap::new();
        for role in roles {
            let key = (
                role.metadata.namespace.unwrap_or_default(),
                role.metadata.name.unwrap_or_default(),
            );
            role_rules.insert(key, role.rules.unwrap_or_default());
        }

        let cluster_grants = cluster_role_bindings
            .into_iter()
            .filter_map(|binding| {
                // A ClusterRoleBinding can only refer to a ClusterRole.
                if binding.role_ref.kind != "ClusterRole" {
                    return None;
                }
                let rules = cluster_rules.get(&binding.role_ref.name)?.clone();
                Some(Grant {
                    source: GrantSource::ClusterRoleBinding {
                        name: binding.metadata.name.unwrap_or_default(),
                        role: binding.role_ref,
                    },
                    subjects: binding.subjects.unwrap_or_default(),
                    rules,
                })
            })
            .collect();

        let mut namespace_grants: BTreeMap<String, Vec<Grant>> = BTreeMap::new();
        for binding in role_bindings {
            let namespace = binding.metadata.namespace.unwrap_or_default();
            if namespace.is_empty() {
                continue;
            }
            let rules = match binding.role_ref.kind.as_str() {
                "Role" => role_rules.get(&(namespace.clone(), binding.role_ref.name.clone())),
                "ClusterRole" => cluster_rules.get(&binding.role_ref.name),
                _ => None,
            };
            let Some(rules) = rules.cloned() else {
                continue;
            };
            namespace_grants
                .entry(namespace.clone())
                .or_default()
                .push(Grant {
                    source: GrantSource::RoleBinding {
                        namespace,
                        name: binding.metadata.name.unwrap_or_default(),
                        role: binding.role_ref,
                    },
                    subjects: binding.subjects.unwrap_or_default(),
                    rules,
                });
        }

        RbacAuthorizer {
            cluster_grants,
            namespace_grants,
            cluster_role_rules: cluster_rules,
            role_rules,
        }
    }

    /// The rules a roleRef grants in `namespace` (a Role of that namespace, or a ClusterRole
    /// with its aggregated rules); None if the role does not exist.
    pub fn role_ref_rules(&self, role: &RoleRef, namespace: &str) -> Option<Vec<PolicyRule>> {
        match role.kind.as_str() {
            "ClusterRole" => self.cluster_role_rules.get(&role.name).cloned(),
            "Role" => self
                .role_rules
                .get(&(namespace.to_string(), role.name.clone()))
                .cloned(),
            _ => None,
        }
    }

    /// Allows the request if a rule given to the user by a ClusterRoleBinding, or by a
    /// RoleBinding in the request's namespace, covers it; otherwise has no opinion.
    pub fn authorize(&self, attrs: &Attributes) -> Decision {
        match self.allowed_by(attrs) {
            Some(_) => Decision::Allow,
            None => Decision::NoOpinion,
        }
    }

    /// What allows the request, as Kubernetes words the reason of an RBAC allow
    /// (`RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin"
    /// to Group "system:masters"`), or `None` when nothing does.
    pub fn allowed_by(&self, attrs: &Attributes) -> Option<String> {
        let namespaced = self
            .namespace_grants
            .get(&attrs.namespace)
            .filter(|_| !attrs.namespace.is_empty())
            .into_iter()
            .flatten();
        self.cluster_grants
            .iter()
            .chain(namespaced)
            .find_map(|grant| {
                let binding_namespace = match &grant.source {
                    GrantSource::ClusterRoleBinding { .. } => "",
                    GrantSource::RoleBinding { namespace, .. } => namespace.as_str(),
                };
                let subject = grant
                    .subjects
                    .iter()
                    .find(|s| subject_applies(s, &attrs.user, binding_namespace))?;
                grant
                    .rules
                    .iter()
                    .any(|rule| rule_allows(attrs, rule))
                    .then(|| {
                        format!(
                            "RBAC: allowed by {}",
                            Described {
                                source: &grant.source,
                                subject,
                            }
                        )
                    })
            })
    }

    /// Every rule the user holds in `namespace` ("" for only the cluster-wide ones), as
    /// Kubernetes' `RulesFor`: cluster-wide rules first, then the namespace's.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
        let namespaced = self
            .namespace_grants
            .get(namespace)
            .filter(|_| !namespace.is_empty())
            .into_iter()
            .flatten()
            .map(|g| (g, namespace));
        self.cluster_grants
            .iter()
            .map(|g| (g, ""))
            .chain(namespaced)
            .filter(|(g, ns)| g.subjects.iter().any(|s| subject_applies(s, user, ns)))
            .flat_map(|(g, _)| g.rules.iter().cloned())
            .collect()
    }
}

/// Whether the request is for a resource (as opposed to a non-resource URL such as
/// `/version`).
fn is_resource_request(attrs: &Attributes) -> bool {
    !(attrs.resource.is_empty() && attrs.path.is_some())
}

/// Kubernetes' `RuleAllows`.
pub fn rule_allows(attrs: &Attributes, rule: &PolicyRule) -> bool {
    if !verb_matches(rule, &attrs.verb) {
        return false;
    }
    if !is_resource_request(attrs) {
        let path = attrs.path.as_deref().unwrap_or_default();
        return non_resource_url_matches(rule, path);
    }
    api_group_matches(rule, &attrs.api_group)
        && resource_matches(rule, &attrs.resource, &attrs.subresource)
        && resource_name_matches(rule, &attrs.name)
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups
        .iter()
        .flatten()
        .any(|g| g == ALL || g == group)
}

/// `*` covers every resource and subresource; `pods/log` covers that subresource; `*/scale`
/// covers the subresource of any resource. `pods/*` is deliberately not a wildcard: Kubernetes
/// refuses to grant subresources that do not exist yet, so it matches only itself.
fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    rule.resources.iter().flatten().any(|r| {
        if r == ALL {
            return true;
        }
        if subresource.is_empty() {
            return r == resource;
        }
        match r.split_once('/') {
            Some((res, sub)) => sub == subresource && (res == resource || res == ALL),
            None => false,
        }
    })
}

/// A rule naming objects covers only requests for one of those names; a request naming no
/// object (list, create, deletecollection, …) is covered only by rules that name none.
fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => names.iter().any(|n| n == name),
    }
}

/// Exact paths, `*` for every path, or a prefix ending in `*` (`/apis/*`).
fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().flatten().any(|url| {
        url == ALL
            || url == path
            || (url.ends_with('*') && path.starts_with(url.trim_end_matches('*')))
    })
}

/// Whether a binding's subject is this user. A ServiceAccount subject without a namespace
/// means the binding's own namespace; in a ClusterRoleBinding it matches nobody.
fn subject_applies(subject: &Subject, user: &UserInfo, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.groups.contains(&subject.name),
        "ServiceAccount" => {
            let namespace = subject
                .namespace
                .as_deref()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(binding_namespace);
            if namespace.is_empty() {
                return false;
            }
            service_account_user(namespace, &subject.name) == user.name
        }
        _ => false,
    }
}

/// The user name a service account authenticates as.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

/// The rules of every ClusterRole by name, with aggregated roles given the rules of the roles
/// their selectors pick, as the aggregation controller writes them: every other selected
/// role's rules once each, roles taken in name order. Aggregation is followed through roles
/// that are themselves aggregated (`admin` picks `edit`, which picks `view`) until nothing
/// changes.
fn aggregate_cluster_roles(cluster_roles: &[ClusterRole]) -> BTreeMap<String, Vec<PolicyRule>> {
    let mut sorted: Vec<&ClusterRole> = cluster_roles.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut rules: BTreeMap<String, Vec<PolicyRule>> = sorted
        .iter()
        .map(|r| {
            let own = if r.aggregation_rule.is_some() {
                Vec::new()
            } else {
                r.rules.clone().unwrap_or_default()
            };
            (r.metadata.name.clone().unwrap_or_default(), own)
        })
        .collect();

    let aggregating: Vec<(&str, Vec<Selector>)> = sorted
        .iter()
        .filter_map(|r| {
            let rule = r.aggregation_rule.as_ref()?;
            let selectors = rule
                .cluster_role_selectors
                .iter()
                .flatten()
                // An invalid selector selects nothing rather than everything.
                .filter_map(|s| Selector::from_label_selector(Some(s)).ok())
                .collect();
            Some((r.metadata.name.as_deref().unwrap_or_default(), selectors))
        })
        .collect();

    // Each pass can only add rules, and there are finitely many, so this settles; the bound
    // is the longest possible chain of aggregations.
    for _ in 0..=aggregating.len() {
        let mut changed = false;
        for (name, selectors) in &aggregating {
            let mut merged: Vec<PolicyRule> = Vec::new();
            for role in &sorted {
                let role_name = role.metadata.name.as_deref().unwrap_or_default();
                if role_name == *name {
                    continue;
                }
                let labels = role.metadata.labels.clone().unwrap_or_default();
                if !selectors.iter().any(|s| s.matches(&labels)) {
                    continue;
                }
                for rule in rules.get(role_name).into_iter().flatten() {
                    if !merged.contains(rule) {
                        merged.push(rule.clone());
                    }
                }
            }
            if rules.get(*name) != Some(&merged) {
                rules.insert((*name).to_string(), merged);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    rules
}

/// Kubernetes' description of the binding and subject that allowed a request.
struct Described<'a> {
    source: &'a GrantSource,
    subject: &'a Subject,
}

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, name, role, binding_namespace) = match self.source {
            GrantSource::ClusterRoleBinding { name, role } => {
                ("ClusterRoleBinding", name.clone(), role, "")
            }
            GrantSource::RoleBinding {
                namespace,
                name,
                role,
            } => (
                "RoleBinding",
                format!("{name}/{namespace}"),
                role,
                namespace.as_str(),
            ),
        };
        let subject = match self.subject.kind.as_str() {
            "ServiceAccount" => {
                let namespace = self
                    .subject
                    .namespace
                    .as_deref()
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or(binding_namespace);
                format!("{}/{}", self.subject.name, namespace)
            }
            _ => self.subject.name.clone(),
        };
        write!(
            f,
            "{kind} {} of {} {} to {} {}",
            go_quote(&name),
            role.kind,
            go_quote(&role.name),
            self.subject.kind,
            go_quote(&subject)
        )
    }
}

/// The message of the Forbidden error a refused request gets, as Kubernetes' API server
/// words it:
///
/// - `pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the
///   namespace "default"`
/// - `deployments.apps "web" is forbidden: User "bob" cannot get resource "deployments" in API
///   group "apps" at the cluster scope`
/// - `forbidden: User "x" cannot get path "/version"`
///
/// `reason`, when not empty, is appended after a colon, as the API server appends the
/// authorizers' reasons.
pub fn forbidden_message(attrs: &Attributes, reason: &str) -> String {
    let user = go_quote(&attrs.user.name);
    let verb = &attrs.verb;
    let detail = if !is_resource_request(attrs) {
        let path = attrs.path.as_deref().unwrap_or_default();
        format!("User {user} cannot {verb} path {}", go_quote(path))
    } else {
        let mut resource = attrs.resource.clone();
        if !attrs.subresource.is_empty() {
            resource.push('/');
            resource.push_str(&attrs.subresource);
        }
        let scope = if attrs.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {}", go_quote(&attrs.namespace))
        };
        format!(
            "User {user} cannot {verb} resource {} in API group {} {scope}",
            go_quote(&resource),
            go_quote(&attrs.api_group)
        )
    };
    // The API server keeps the text from looking like HTML; quotes are left alone.
    let detail = sanitize(&detail);
    let err = if reason.is_empty() {
        detail
    } else {
        format!("{detail}: {reason}")
    };

    let qualified = if attrs.api_group.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}.{}", attrs.resource, attrs.api_group)
    };
    if qualified.is_empty() {
        format!("forbidden: {err}")
    } else if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {err}")
    } else {
        format!("{qualified} {} is forbidden: {err}", go_quote(&attrs.name))
    }
}

fn sanitize(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;
