//! Events about one pod as kubelet writes them: component "kubelet", the node as the source
//! host, and a container's events pointing at it with kubelet's field path
//! (`spec.containers{name}`, `spec.initContainers{name}`).

use std::sync::Arc;

use keel_client::events::{self, Recorder};
use keel_types::k8s_openapi::api::core::v1::{Container, Pod};

/// kubelet's component name on its Events.
pub const COMPONENT: &str = "kubelet";

/// The events of one pod.
pub struct PodEvents {
    recorder: Arc<Recorder>,
    pod: Arc<Pod>,
}

impl PodEvents {
    pub fn new(recorder: Arc<Recorder>, pod: Arc<Pod>) -> Self {
        Self { recorder, pod }
    }

    pub fn normal(&self, container: Option<&Container>, reason: &str, message: String) {
        self.record(container, events::NORMAL, reason, message);
    }

    pub fn warning(&self, container: Option<&Container>, reason: &str, message: String) {
        self.record(container, events::WARNING, reason, message);
    }

    fn record(
        &self,
        container: Option<&Container>,
        type_: &'static str,
        reason: &str,
        message: String,
    ) {
        let mut reference = events::reference(self.pod.as_ref());
        reference.field_path = container.map(|c| field_path(&self.pod, &c.name));
        self.recorder
            .event(COMPONENT, reference, type_, reason, message);
    }
}

/// kubelet's field path of container `name` in `pod`.
pub fn field_path(pod: &Pod, name: &str) -> String {
    let init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|inits| inits.iter().any(|c| c.name == name));
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}
