//! A pod's inter-pod affinity and anti-affinity terms with their selectors parsed once, and the
//! question every use asks of a term: does it select this other pod?

use std::collections::{BTreeMap, HashMap, HashSet};

use keel_types::k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};
use keel_types::Selector;

/// One term: pods matching `selector` in the term's namespaces, within `topology_key`.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    /// Namespaces named by the term (the pod's own when it names none and has no
    /// namespaceSelector).
    pub namespaces: HashSet<String>,
    /// Namespaces selected by labels; `Some(empty)` selects every namespace.
    pub namespace_selector: Option<Selector>,
    pub selector: Selector,
    pub topology_key: String,
    /// For preferred terms, 1..=100; 0 for required ones.
    pub weight: i64,
}

impl AffinityTerm {
    fn parse(owner_namespace: &str, term: &PodAffinityTerm, weight: i64) -> Result<Self, String> {
        // A term without a label selector selects no pod, as Kubernetes'.
        let selector = Selector::from_label_selector(term.label_selector.as_ref())
            .map_err(|e| e.to_string())?;
        let namespace_selector = match &term.namespace_selector {
            Some(s) => Some(Selector::from_label_selector(Some(s)).map_err(|e| e.to_string())?),
            None => None,
        };
        let mut namespaces: HashSet<String> = term.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.insert(owner_namespace.to_string());
        }
        Ok(AffinityTerm {
            namespaces,
            namespace_selector,
            selector,
            topology_key: term.topology_key.clone(),
            weight,
        })
    }

    /// The term in a canonical text: equal for terms that select the same pods in the same
    /// topology with the same weight.
    pub fn fingerprint(&self) -> String {
        let mut namespaces: Vec<&String> = self.namespaces.iter().collect();
        namespaces.sort();
        format!(
            "{namespaces:?}|{:?}|{:?}|{}|{}",
            self.namespace_selector, self.selector, self.topology_key, self.weight
        )
    }

    /// Whether the term selects a pod in `namespace` with `labels`, given every namespace's
    /// labels.
    pub fn matches(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        namespace_labels: &HashMap<String, BTreeMap<String, String>>,
    ) -> bool {
        self.namespace_matches(namespace, namespace_labels) && self.selector.matches(labels)
    }

    pub fn namespace_matches(
        &self,
        namespace: &str,
        namespace_labels: &HashMap<String, BTreeMap<String, String>>,
    ) -> bool {
        if self.namespaces.contains(namespace) {
            return true;
        }
        match &self.namespace_selector {
            None => false,
            Some(s) if s.is_empty() => true,
            Some(s) => namespace_labels
                .get(namespace)
                .is_some_and(|l| s.matches(l)),
        }
    }
}

/// Every inter-pod term of one pod.
#[derive(Debug, Clone, Default)]
pub struct AffinityTerms {
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<AffinityTerm>,
    pub preferred_anti_affinity: Vec<AffinityTerm>,
    /// A term that could not be parsed (admission refuses these; one stored before that is
    /// unschedulable rather than silently ignored).
    pub parse_error: Option<String>,
}

impl AffinityTerms {
    /// Whether the pod has any inter-pod term.
    pub fn any(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    /// Whether the pod's terms weigh in on where other pods go when they are scored: its
    /// required affinity (kube-scheduler's hardPodAffinityWeight) and its preferred terms.
    /// Required anti-affinity only filters.
    pub fn scores_others(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }
}

/// Parses the inter-pod terms of `pod`.
pub fn parse(pod: &Pod) -> AffinityTerms {
    let mut out = AffinityTerms::default();
    let Some(affinity) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return out;
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut errors = Vec::new();
    let mut collect = |list: &mut Vec<AffinityTerm>, term: &PodAffinityTerm, weight: i64| {
        let term = fold_label_keys(term, &labels);
        match AffinityTerm::parse(namespace, &term, weight) {
            Ok(t) => list.push(t),
            Err(e) => errors.push(e),
        }
    };
    if let Some(a) = &affinity.pod_affinity {
        for t in a
            .required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            collect(&mut out.required_affinity, t, 0);
        }
        for w in a
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            collect(
                &mut out.preferred_affinity,
                &w.pod_affinity_term,
                i64::from(w.weight),
            );
        }
    }
    if let Some(a) = &affinity.pod_anti_affinity {
        for t in a
            .required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            collect(&mut out.required_anti_affinity, t, 0);
        }
        for w in a
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            collect(
                &mut out.preferred_anti_affinity,
                &w.pod_affinity_term,
                i64::from(w.weight),
            );
        }
    }
    out.parse_error = errors.into_iter().next();
    out
}

/// Folds `matchLabelKeys` (key In the pod's value) and `mismatchLabelKeys` (key NotIn) into the
/// term's label selector, as the API server does for pods created with them.
fn fold_label_keys(term: &PodAffinityTerm, labels: &BTreeMap<String, String>) -> PodAffinityTerm {
    use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, LabelSelectorRequirement,
    };
    let match_keys = term.match_label_keys.iter().flatten();
    let mismatch_keys = term.mismatch_label_keys.iter().flatten();
    let mut extra = Vec::new();
    for (keys, op) in [(match_keys, "In"), (mismatch_keys, "NotIn")] {
        for key in keys {
            if let Some(v) = labels.get(key) {
                extra.push(LabelSelectorRequirement {
                    key: key.clone(),
                    operator: op.to_string(),
                    values: Some(vec![v.clone()]),
                });
            }
        }
    }
    if extra.is_empty() || term.label_selector.is_none() {
        return term.clone();
    }
    let mut t = term.clone();
    let selector = t.label_selector.get_or_insert_with(LabelSelector::default);
    selector
        .match_expressions
        .get_or_insert_with(Vec::new)
        .extend(extra);
    t
}
