//! kube-apiserver's audit Policy (`audit.k8s.io/v1`): rules checked in order, the first that
//! matches a request deciding its level (None, Metadata, Request, RequestResponse) and which
//! stages are left out; a request no rule matches is not audited.

use serde::Deserialize;

/// How much of a request is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// A request as the policy sees it.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub user: String,
    pub groups: Vec<String>,
    pub verb: String,
    /// For resource requests: API group, resource (`pods` or `pods/log`), namespace, name.
    pub resource: Option<ResourceAttributes>,
    /// For other requests: the path.
    pub path: String,
}

#[derive(Debug, Clone, Default)]
pub struct ResourceAttributes {
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    api_version: String,
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

/// A parsed policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    omit_stages: Vec<String>,
}

/// What the policy decides for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    pub omit_stages: Vec<String>,
}

impl Policy {
    /// Parses a policy file (YAML or JSON); errors say what is wrong.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let file: File =
            serde_norway::from_str(text).map_err(|e| format!("invalid audit Policy: {e}"))?;
        if file.kind != "Policy" || !file.api_version.starts_with("audit.k8s.io/") {
            return Err(format!(
                "expected kind Policy of audit.k8s.io/v1, got {} of {}",
                file.kind, file.api_version
            ));
        }
        Ok(Policy {
            rules: file.rules,
            omit_stages: file.omit_stages,
        })
    }

    /// The level and omitted stages for `request`.
    pub fn decide(&self, request: &Attributes) -> Decision {
        let matched = self.rules.iter().find(|rule| rule.matches(request));
        match matched {
            Some(rule) => Decision {
                level: rule.level,
                omit_stages: self
                    .omit_stages
                    .iter()
                    .chain(rule.omit_stages.iter())
                    .cloned()
                    .collect(),
            },
            None => Decision {
                level: Level::None,
                omit_stages: Vec::new(),
            },
        }
    }

    /// Whether managed fields are left out of logged objects (false unless a rule says so).
    pub fn omits_managed_fields(&self, request: &Attributes) -> bool {
        self.rules
            .iter()
            .find(|rule| rule.matches(request))
            .and_then(|rule| rule.omit_managed_fields)
            .unwrap_or(false)
    }
}

fn any_or(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|v| v == value)
}

impl Rule {
    fn matches(&self, request: &Attributes) -> bool {
        if !any_or(&self.users, &request.user) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !request.groups.iter().any(|g| self.user_groups.contains(g))
        {
            return false;
        }
        if !any_or(&self.verbs, &request.verb) {
            return false;
        }
        match &request.resource {
            Some(resource) => {
                if !self.non_resource_urls.is_empty() {
                    return false;
                }
                if !self.namespaces.is_empty() && !self.namespaces.contains(&resource.namespace) {
                    return false;
                }
                self.resources.is_empty() || self.resources.iter().any(|g| g.matches(resource))
            }
            None => {
                if !self.resources.is_empty() || !self.namespaces.is_empty() {
                    return false;
                }
                self.non_resource_urls.is_empty()
                    || self.non_resource_urls.iter().any(|pattern| {
                        match pattern.strip_suffix('*') {
                            Some(prefix) => request.path.starts_with(prefix),
                            None => &request.path == pattern,
                        }
                    })
            }
        }
    }
}

impl GroupResources {
    fn matches(&self, resource: &ResourceAttributes) -> bool {
        if self.group != resource.group {
            return false;
        }
        let full = if resource.subresource.is_empty() {
            resource.resource.clone()
        } else {
            format!("{}/{}", resource.resource, resource.subresource)
        };
        let resource_ok = self.resources.is_empty()
            || self.resources.iter().any(|r| {
                r == &full
                    || r == "*"
                    || r == "*/*"
                    || (r.starts_with("*/") && resource.subresource == r[2..])
                    || (r.ends_with("/*") && resource.resource == r[..r.len() - 2])
            });
        resource_ok && any_or(&self.resource_names, &resource.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: ["system:kube-scheduler"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps"]
  - level: Request
    verbs: ["create", "update", "patch"]
    resources:
      - group: "apps"
  - level: None
    nonResourceURLs: ["/healthz*", "/version"]
  - level: Metadata
"#;

    fn request(user: &str, verb: &str, group: &str, resource: &str) -> Attributes {
        Attributes {
            user: user.into(),
            verb: verb.into(),
            resource: Some(ResourceAttributes {
                group: group.into(),
                resource: resource.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_first_matching_rule_decides_the_level() {
        let policy = Policy::parse(POLICY).expect("policy");
        let level = |r: &Attributes| policy.decide(r).level;
        assert_eq!(
            level(&request("system:kube-scheduler", "get", "", "secrets")),
            Level::None
        );
        assert_eq!(
            level(&request("admin", "get", "", "secrets")),
            Level::Metadata
        );
        assert_eq!(
            level(&request("admin", "create", "apps", "deployments")),
            Level::Request
        );
        assert_eq!(
            level(&request("admin", "get", "apps", "deployments")),
            Level::Metadata
        );
        let health = Attributes {
            user: "admin".into(),
            verb: "get".into(),
            path: "/healthz/ready".into(),
            ..Default::default()
        };
        assert_eq!(level(&health), Level::None);
        assert_eq!(policy.decide(&health).omit_stages, ["RequestReceived"]);
    }

    #[test]
    fn a_request_no_rule_matches_is_not_audited() {
        let policy = Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n")
            .expect("policy");
        assert_eq!(
            policy.decide(&request("a", "get", "", "pods")).level,
            Level::None
        );
    }

    #[test]
    fn a_file_that_is_not_a_policy_is_refused() {
        assert!(Policy::parse("apiVersion: v1\nkind: ConfigMap\n").is_err());
        assert!(Policy::parse(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Loud\n"
        )
        .is_err());
    }
}
