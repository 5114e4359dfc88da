//! The checks, over a set of manifests: each reads the kind table (`crate::kinds`) for where a
//! kind keeps its selector and template.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use keel_types::Selector;
use serde_json::Value;

use crate::finding::{Class, Finding, Severity, Source};
use crate::kinds::{rule_for, KindRule, SelectorForm, SelectorRule, WhenEmpty};

/// One object and where it was read from.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Shared: the API server lints the same stored objects on many writes.
    pub object: Arc<Value>,
    pub source: Source,
}

/// How to read the set.
#[derive(Debug, Clone)]
pub struct Options {
    /// The namespace of objects that name none.
    pub default_namespace: String,
    /// Only report findings about this manifest (by index), and check only what concerns it:
    /// the API server lints the object being written against its namespace's objects.
    pub subject: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            default_namespace: "default".into(),
            subject: None,
        }
    }
}

/// A manifest with what the checks need read out of it once.
struct Obj<'a> {
    index: usize,
    manifest: &'a Manifest,
    rule: Option<&'static KindRule>,
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
}

impl Obj<'_> {
    fn id(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }

    /// The kind and name of the controller that owns this object, if any.
    fn controller_owner(&self) -> Option<(&str, &str)> {
        self.manifest
            .object
            .pointer("/metadata/ownerReferences")?
            .as_array()?
            .iter()
            .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            .and_then(|r| Some((r.get("kind")?.as_str()?, r.get("name")?.as_str()?)))
    }

    fn finding(&self, severity: Severity, class: Class, message: String) -> Finding {
        Finding {
            severity,
            class,
            object: self.id(),
            file: self.manifest.source.file.clone(),
            document: self.manifest.source.document,
            message,
        }
    }
}

/// A pod template (or a Pod): its labels and the pod spec its containers are in.
struct Template<'a> {
    owner: usize,
    namespace: &'a str,
    labels: BTreeMap<String, String>,
    spec: Option<&'a Value>,
}

/// What an object's selector turned out to be.
enum Resolved {
    /// Nothing to check (no selector on purpose, a generated selector).
    Unchecked,
    /// Selects every pod of the namespace.
    All,
    /// Selects no pod at all.
    Nothing,
    /// Absent or empty where Kubernetes requires one.
    Refused,
    Invalid(String),
    Selector(Selector),
}

fn resolve(object: &Value, rule: &SelectorRule) -> Resolved {
    if let Some(flag) = rule.only_if {
        if object.pointer(flag).and_then(Value::as_bool) != Some(true) {
            return Resolved::Unchecked;
        }
    }
    let when = |w: WhenEmpty| match w {
        WhenEmpty::Unchecked => Resolved::Unchecked,
        WhenEmpty::SelectsAll => Resolved::All,
        WhenEmpty::SelectsNothing => Resolved::Nothing,
        WhenEmpty::Refused => Resolved::Refused,
    };
    let raw = match object.pointer(rule.pointer) {
        None | Some(Value::Null) => return when(rule.when_absent),
        Some(raw) => raw,
    };
    match rule.form {
        SelectorForm::Map => {
            let Some(map) = raw.as_object() else {
                return Resolved::Invalid("the selector is not a map of labels".into());
            };
            if map.is_empty() {
                return when(rule.when_empty);
            }
            let mut set = BTreeMap::new();
            for (k, v) in map {
                let Some(v) = v.as_str() else {
                    return Resolved::Invalid(format!("the value of label {k:?} is not a string"));
                };
                set.insert(k.clone(), v.to_string());
            }
            Resolved::Selector(Selector::from_set(&set))
        }
        SelectorForm::LabelSelector => {
            let typed: LabelSelector = match serde_json::from_value(raw.clone()) {
                Ok(s) => s,
                Err(e) => return Resolved::Invalid(format!("the selector cannot be read: {e}")),
            };
            if typed.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                && typed.match_expressions.as_ref().is_none_or(Vec::is_empty)
            {
                return when(rule.when_empty);
            }
            match Selector::from_label_selector(Some(&typed)) {
                Ok(s) => Resolved::Selector(s),
                Err(e) => Resolved::Invalid(e.message),
            }
        }
    }
}

fn labels_at(object: &Value, pointer: &str) -> BTreeMap<String, String> {
    object
        .pointer(&format!("{pointer}/metadata/labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "none".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Lints the set: every finding, each mistake once, ordered by file, document and class.
pub fn lint(manifests: &[Manifest], options: &Options) -> Vec<Finding> {
    let objects: Vec<Obj> = manifests
        .iter()
        .enumerate()
        .map(|(index, manifest)| {
            let o = &manifest.object;
            let str_at = |p: &str| o.pointer(p).and_then(Value::as_str);
            Obj {
                index,
                manifest,
                rule: rule_for(o),
                kind: str_at("/kind").unwrap_or(""),
                namespace: str_at("/metadata/namespace")
                    .filter(|n| !n.is_empty())
                    .unwrap_or(&options.default_namespace),
                name: str_at("/metadata/name")
                    .or_else(|| str_at("/metadata/generateName"))
                    .unwrap_or(""),
            }
        })
        .collect();
    let templates: Vec<Template> = objects
        .iter()
        .filter_map(|o| {
            let pointer = o.rule?.template?;
            let object = &o.manifest.object;
            Some(Template {
                owner: o.index,
                namespace: o.namespace,
                labels: labels_at(object, pointer),
                spec: object.pointer(&format!("{pointer}/spec")),
            })
        })
        .collect();
    let mut lint = Lint {
        options,
        objects: &objects,
        templates: &templates,
        selectors: HashMap::new(),
        findings: Vec::new(),
    };
    lint.selectors();
    lint.overlaps();
    lint.service_ports();
    lint.ingresses();
    let mut findings = lint.findings;
    findings.sort_by(|a, b| {
        (&a.file, a.document, a.class, &a.object).cmp(&(&b.file, b.document, b.class, &b.object))
    });
    findings
}

struct Lint<'a> {
    options: &'a Options,
    objects: &'a [Obj<'a>],
    templates: &'a [Template<'a>],
    /// The selectors that passed their own checks, by object index: the later checks (overlap,
    /// ports) build on them and stay quiet about objects already reported.
    selectors: HashMap<usize, Selector>,
    findings: Vec<Finding>,
}

impl Lint<'_> {
    fn wanted(&self, index: usize) -> bool {
        self.options.subject.is_none_or(|s| s == index)
    }

    fn matched<'t>(
        &'t self,
        namespace: &'t str,
        selector: &'t Selector,
    ) -> impl Iterator<Item = &'t Template<'t>> + 't {
        self.templates
            .iter()
            .filter(move |t| t.namespace == namespace && selector.matches(&t.labels))
    }

    /// Selectors Kubernetes refuses, selectors that disagree with their own template, and
    /// selectors that match nothing.
    fn selectors(&mut self) {
        for o in self.objects {
            let Some(rule) = o.rule.and_then(|r| r.selector) else {
                continue;
            };
            let object = &o.manifest.object;
            let is_service = o.rule.is_some_and(|r| r.service);
            // An ExternalName Service's selector is ignored by Kubernetes.
            if is_service
                && object.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName")
            {
                continue;
            }
            let own_template = o.rule.and_then(|r| r.template);
            // Other objects' selectors are still read: the overlap check pairs them with the
            // subject.
            if !self.wanted(o.index) && !o.rule.is_some_and(|r| r.controller) {
                continue;
            }
            let selector = match resolve(object, &rule) {
                Resolved::Unchecked | Resolved::All => continue,
                Resolved::Nothing => {
                    self.report(
                        o,
                        Severity::Error,
                        Class::SelectorMatchesNothing,
                        format!(
                            "has no selector, so it selects no pod (an empty {} selects every pod of the namespace)",
                            rule.pointer.trim_start_matches('/').replace('/', ".")
                        ),
                    );
                    continue;
                }
                Resolved::Refused => {
                    self.report(
                        o,
                        Severity::Error,
                        Class::SelectorMissing,
                        format!(
                            "{}: Required value: a non-empty selector is required (Kubernetes refuses the object)",
                            rule.pointer.trim_start_matches('/').replace('/', ".")
                        ),
                    );
                    continue;
                }
                Resolved::Invalid(why) => {
                    self.report(
                        o,
                        Severity::Error,
                        Class::SelectorInvalid,
                        format!("invalid selector: {why}"),
                    );
                    continue;
                }
                Resolved::Selector(s) => s,
            };
            if let Some(pointer) = own_template {
                let labels = labels_at(object, pointer);
                if !selector.matches(&labels) {
                    self.report(
                        o,
                        Severity::Error,
                        Class::SelectorTemplateMismatch,
                        format!(
                            "{}.metadata.labels: Invalid value: {}: `selector` does not match template `labels` (selector {selector})",
                            pointer.trim_start_matches('/').replace('/', "."),
                            show_labels(&labels)
                        ),
                    );
                    continue;
                }
            } else if self.wanted(o.index) && self.matched(o.namespace, &selector).next().is_none()
            {
                self.report(
                    o,
                    Severity::Error,
                    Class::SelectorMatchesNothing,
                    format!(
                        "selector {selector} matches no pod template in namespace {} (no Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job or CronJob there carries these labels)",
                        o.namespace
                    ),
                );
                continue;
            }
            self.selectors.insert(o.index, selector);
        }
    }

    /// Pairs of controllers in one namespace that match a common template. A controller owned
    /// by another controller of the set (a Deployment's ReplicaSet) shares its owner's pods by
    /// design and is left out.
    fn overlaps(&mut self) {
        let controller_ids: BTreeSet<(&str, &str, &str)> = self
            .objects
            .iter()
            .filter(|c| c.rule.is_some_and(|r| r.controller))
            .map(|c| (c.kind, c.namespace, c.name))
            .collect();
        let controllers: Vec<&Obj> = self
            .objects
            .iter()
            .filter(|o| {
                o.rule.is_some_and(|r| r.controller) && self.selectors.contains_key(&o.index)
            })
            .filter(|o| {
                o.controller_owner()
                    .is_none_or(|(kind, name)| !controller_ids.contains(&(kind, o.namespace, name)))
            })
            .collect();
        // The templates each wanted controller's selector matches, found once: a pair is
        // then checked over the wanted side's templates only (with a subject, one list of a
        // few templates against every other controller, not every pair against every
        // template of the namespace).
        let matched: HashMap<usize, Vec<&Template>> = controllers
            .iter()
            .filter(|o| self.wanted(o.index))
            .filter_map(|o| {
                let selector = self.selectors.get(&o.index)?;
                Some((o.index, self.matched(o.namespace, selector).collect()))
            })
            .collect();
        let mut found = Vec::new();
        for (j, later) in controllers.iter().enumerate() {
            for earlier in &controllers[..j] {
                if earlier.namespace != later.namespace
                    || !(self.wanted(earlier.index) || self.wanted(later.index))
                {
                    continue;
                }
                let (Some(a), Some(b)) = (
                    self.selectors.get(&earlier.index),
                    self.selectors.get(&later.index),
                ) else {
                    continue;
                };
                let (candidates, other) =
                    match (matched.get(&earlier.index), matched.get(&later.index)) {
                        (Some(templates), _) => (templates, b),
                        (None, Some(templates)) => (templates, a),
                        (None, None) => continue,
                    };
                let mut common = candidates
                    .iter()
                    .copied()
                    .filter(|t| other.matches(&t.labels))
                    .peekable();
                let Some(&first) = common.peek() else {
                    continue;
                };
                // Name one of the pair's own templates when it is shared: clearer than a pod.
                let common = common
                    .find(|t| t.owner == earlier.index || t.owner == later.index)
                    .unwrap_or(first);
                let owner = &self.objects[common.owner];
                found.push(later.finding(
                    Severity::Error,
                    Class::SelectorsOverlap,
                    format!(
                        "selector {b} overlaps the selector {a} of {}: both match the pod template of {} (labels {}), so the two controllers would fight over its pods",
                        earlier.id(),
                        owner.id(),
                        show_labels(&common.labels)
                    ),
                ));
            }
        }
        self.findings.extend(found);
    }

    /// Each Service port's targetPort against the containers of the templates it selects.
    fn service_ports(&mut self) {
        let mut found = Vec::new();
        for o in self.objects {
            if !o.rule.is_some_and(|r| r.service) || !self.wanted(o.index) {
                continue;
            }
            let Some(selector) = self.selectors.get(&o.index) else {
                continue;
            };
            let selected: Vec<&Template> = self.matched(o.namespace, selector).collect();
            let owners: BTreeSet<String> = selected
                .iter()
                .map(|t| self.objects[t.owner].id())
                .collect();
            let owners = owners.into_iter().collect::<Vec<_>>().join(", ");
            let ports = o
                .manifest
                .object
                .pointer("/spec/ports")
                .and_then(Value::as_array);
            for port in ports.into_iter().flatten() {
                let protocol = port
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP");
                let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
                let label = match port.get("name").and_then(Value::as_str) {
                    Some(name) if !name.is_empty() => format!("port {number} ({name})"),
                    _ => format!("port {number}"),
                };
                let target = port.get("targetPort").filter(|t| !t.is_null());
                let exposes = |want: &dyn Fn(&Value) -> bool| {
                    selected.iter().any(|t| {
                        container_ports(t.spec).any(|p| {
                            p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == protocol
                                && want(p)
                        })
                    })
                };
                match target.map(|t| (t.as_str(), t.as_i64())) {
                    Some((Some(name), _)) => {
                        if !exposes(&|p| p.get("name").and_then(Value::as_str) == Some(name)) {
                            found.push(o.finding(
                                Severity::Error,
                                Class::TargetPortNotExposed,
                                format!(
                                    "{label} targets the container port named {name:?} ({protocol}), which no container of the selected pods ({owners}) declares: the Service has no endpoints for it"
                                ),
                            ));
                        }
                    }
                    other => {
                        let n = other.and_then(|(_, n)| n).unwrap_or(number);
                        if !exposes(&|p| p.get("containerPort").and_then(Value::as_i64) == Some(n))
                        {
                            found.push(o.finding(
                                Severity::Warning,
                                Class::TargetPortNotExposed,
                                format!(
                                    "{label} targets port {n} ({protocol}), which no container of the selected pods ({owners}) declares as a containerPort; traffic still reaches an undeclared port in Kubernetes, so check the number is right and declare it"
                                ),
                            ));
                        }
                    }
                }
            }
        }
        self.findings.extend(found);
    }

    /// Each Ingress backend against the Services of the set.
    fn ingresses(&mut self) {
        let services: HashMap<(&str, &str), &Obj> = self
            .objects
            .iter()
            .filter(|o| o.rule.is_some_and(|r| r.service))
            .map(|o| ((o.namespace, o.name), o))
            .collect();
        let mut found = Vec::new();
        for o in self.objects {
            if !o.rule.is_some_and(|r| r.ingress) || !self.wanted(o.index) {
                continue;
            }
            let mut reported = BTreeSet::new();
            for backend in ingress_backends(&o.manifest.object) {
                let Some(name) = backend.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let Some(service) = services.get(&(o.namespace, name)) else {
                    if reported.insert((name.to_string(), String::new())) {
                        found.push(o.finding(
                            Severity::Error,
                            Class::IngressMissingService,
                            format!(
                                "a backend names the Service {name:?}, which is not in namespace {} of the set",
                                o.namespace
                            ),
                        ));
                    }
                    continue;
                };
                let ports = service
                    .manifest
                    .object
                    .pointer("/spec/ports")
                    .and_then(Value::as_array);
                let ports = ports.into_iter().flatten();
                let (wanted, present) = match (
                    backend.pointer("/port/number").and_then(Value::as_i64),
                    backend.pointer("/port/name").and_then(Value::as_str),
                ) {
                    (Some(n), _) => (
                        format!("port {n}"),
                        ports
                            .clone()
                            .any(|p| p.get("port").and_then(Value::as_i64) == Some(n)),
                    ),
                    (None, Some(port)) => (
                        format!("a port named {port:?}"),
                        ports
                            .clone()
                            .any(|p| p.get("name").and_then(Value::as_str) == Some(port)),
                    ),
                    (None, None) => continue,
                };
                if !present && reported.insert((name.to_string(), wanted.clone())) {
                    found.push(o.finding(
                        Severity::Error,
                        Class::IngressMissingPort,
                        format!(
                            "a backend asks {} for {wanted}, which it does not have",
                            service.id()
                        ),
                    ));
                }
            }
        }
        self.findings.extend(found);
    }

    fn report(&mut self, o: &Obj, severity: Severity, class: Class, message: String) {
        if self.wanted(o.index) {
            self.findings.push(o.finding(severity, class, message));
        }
    }
}

/// The ports of a pod spec's containers, and of its sidecars (init containers that keep
/// running), which serve too.
fn container_ports(spec: Option<&Value>) -> impl Iterator<Item = &Value> {
    let list = |field: &'static str| {
        spec.and_then(|s| s.get(field))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    list("containers")
        .chain(
            list("initContainers")
                .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always")),
        )
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
}

/// The `service` of every backend of a networking.k8s.io/v1 Ingress.
fn ingress_backends(ingress: &Value) -> impl Iterator<Item = &Value> {
    let default = ingress.pointer("/spec/defaultBackend/service");
    let rules = ingress
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let paths = rules
        .filter_map(|r| r.pointer("/http/paths").and_then(Value::as_array))
        .flatten()
        .filter_map(|p| p.pointer("/backend/service"));
    default.into_iter().chain(paths)
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
