//! RBAC escalation prevention, as kube-apiserver enforces it: a user may create or update a
//! Role or ClusterRole only if it already holds every permission the role grants (in the
//! role's namespace; cluster-wide for a ClusterRole) or may `escalate` roles, and may create or
//! update a binding only if it holds every permission of the role it refers to (in the
//! binding's namespace) or may `bind` that role. Otherwise a user allowed to write RBAC objects
//! could grant itself anything.
//!
//! [`uncovered`] is the pure heart: Kubernetes' `Covers`, breaking the requested rules down to
//! single permissions and keeping those no held rule covers.

use keel_types::k8s_openapi::api::rbac::v1::PolicyRule;

const ALL: &str = "*";

/// The permissions in `requested` that no rule in `held` covers, one per rule.
pub fn uncovered(held: &[PolicyRule], requested: &[PolicyRule]) -> Vec<PolicyRule> {
    requested
        .iter()
        .flat_map(breakdown)
        .filter(|atom| !held.iter().any(|h| covers(h, atom)))
        .collect()
}

/// One rule split into rules of one verb, group, resource (and name) or URL each.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for group in rule.api_groups.iter().flatten() {
        for resource in rule.resources.iter().flatten() {
            for verb in &rule.verbs {
                let names = rule.resource_names.clone().unwrap_or_default();
                if names.is_empty() {
                    out.push(atom(group, resource, verb, None));
                } else {
                    for name in names {
                        out.push(atom(group, resource, verb, Some(name)));
                    }
                }
            }
        }
    }
    for url in rule.non_resource_urls.iter().flatten() {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                non_resource_urls: Some(vec![url.clone()]),
                verbs: vec![verb.clone()],
                ..Default::default()
            });
        }
    }
    out
}

fn atom(group: &str, resource: &str, verb: &str, name: Option<String>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(vec![resource.to_string()]),
        verbs: vec![verb.to_string()],
        resource_names: name.map(|n| vec![n]),
        non_resource_urls: None,
    }
}

fn one(list: &Option<Vec<String>>) -> &str {
    list.as_ref()
        .and_then(|l| l.first())
        .map(String::as_str)
        .unwrap_or("")
}

/// Whether the held rule covers one broken-down permission (Kubernetes' `ruleCovers`): a
/// wildcard is covered only by a wildcard, a subresource by its own name or `*/<sub>`, a named
/// permission by a rule naming it or naming nothing.
fn covers(held: &PolicyRule, atom: &PolicyRule) -> bool {
    let verb = atom.verbs.first().map(String::as_str).unwrap_or("");
    if !held.verbs.iter().any(|v| v == ALL || v == verb) {
        return false;
    }
    if let Some(url) = atom.non_resource_urls.as_ref().and_then(|u| u.first()) {
        return held.non_resource_urls.iter().flatten().any(|h| {
            h == ALL || h == url || h.strip_suffix('*').is_some_and(|p| url.starts_with(p))
        });
    }
    let group = one(&atom.api_groups);
    if !held
        .api_groups
        .iter()
        .flatten()
        .any(|g| g == ALL || g == group)
    {
        return false;
    }
    let resource = one(&atom.resources);
    let resource_ok = held.resources.iter().flatten().any(|r| {
        r == ALL
            || r == resource
            || match (r.split_once('/'), resource.split_once('/')) {
                (Some((ALL, sub)), Some((_, wanted))) => sub == wanted,
                _ => false,
            }
    });
    if !resource_ok {
        return false;
    }
    match held.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => atom
            .resource_names
            .as_ref()
            .and_then(|n| n.first())
            .is_some_and(|wanted| names.contains(wanted)),
    }
}

/// How Kubernetes lists permissions a user tried to grant without holding them.
pub fn describe(rules: &[PolicyRule]) -> String {
    let quoted = |l: &Option<Vec<String>>| {
        l.iter()
            .flatten()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    rules
        .iter()
        .map(|r| {
            if r.non_resource_urls.is_some() {
                format!(
                    "{{NonResourceURLs:[{}], Verbs:[{}]}}",
                    quoted(&r.non_resource_urls),
                    quoted(&Some(r.verbs.clone()))
                )
            } else if r.resource_names.is_some() {
                format!(
                    "{{APIGroups:[{}], Resources:[{}], ResourceNames:[{}], Verbs:[{}]}}",
                    quoted(&r.api_groups),
                    quoted(&r.resources),
                    quoted(&r.resource_names),
                    quoted(&Some(r.verbs.clone()))
                )
            } else {
                format!(
                    "{{APIGroups:[{}], Resources:[{}], Verbs:[{}]}}",
                    quoted(&r.api_groups),
                    quoted(&r.resources),
                    quoted(&Some(r.verbs.clone()))
                )
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
            resources: Some(resources.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn held_permissions_cover_what_they_name_and_no_more() {
        let held = vec![rule(&["get", "list"], &[""], &["pods", "configmaps"])];
        assert!(uncovered(&held, &[rule(&["get"], &[""], &["pods"])]).is_empty());
        let missing = uncovered(
            &held,
            &[rule(&["get", "delete"], &[""], &["pods", "secrets"])],
        );
        assert_eq!(missing.len(), 3, "delete pods, get secrets, delete secrets");
        assert_eq!(
            describe(&missing[..1]),
            "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
        );
    }

    #[test]
    fn a_wildcard_is_covered_only_by_a_wildcard() {
        let held = vec![rule(&["get", "list", "watch"], &["*"], &["*"])];
        assert_eq!(uncovered(&held, &[rule(&["*"], &["*"], &["*"])]).len(), 1);
        let admin = vec![rule(&["*"], &["*"], &["*"])];
        assert!(uncovered(&admin, &[rule(&["*"], &["*"], &["*"])]).is_empty());
        assert!(uncovered(&admin, &[rule(&["get"], &["apps"], &["deployments/scale"])]).is_empty());
    }

    #[test]
    fn names_and_subresources_are_covered_as_kubernetes_covers_them() {
        let named = vec![PolicyRule {
            resource_names: Some(vec!["one".into()]),
            ..rule(&["get"], &[""], &["secrets"])
        }];
        let want_one = PolicyRule {
            resource_names: Some(vec!["one".into()]),
            ..rule(&["get"], &[""], &["secrets"])
        };
        assert!(uncovered(&named, std::slice::from_ref(&want_one)).is_empty());
        assert_eq!(
            uncovered(&named, &[rule(&["get"], &[""], &["secrets"])]).len(),
            1,
            "all secrets is more than one"
        );
        let any_scale = vec![rule(&["update"], &["apps"], &["*/scale"])];
        assert!(uncovered(
            &any_scale,
            &[rule(&["update"], &["apps"], &["deployments/scale"])]
        )
        .is_empty());
        assert_eq!(
            uncovered(
                &any_scale,
                &[rule(&["update"], &["apps"], &["deployments"])]
            )
            .len(),
            1
        );
    }

    #[test]
    fn non_resource_urls_are_covered_by_prefixes() {
        let held = vec![PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(vec!["/healthz/*".into()]),
            ..Default::default()
        }];
        let want = |url: &str| PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(vec![url.into()]),
            ..Default::default()
        };
        assert!(uncovered(&held, &[want("/healthz/etcd")]).is_empty());
        assert_eq!(uncovered(&held, &[want("/metrics")]).len(), 1);
    }
}
