//! The columns `kubectl get` shows for each kind and how each cell is computed, after
//! Kubernetes' printers (pkg/printers/internalversion). Kinds without their own columns get
//! NAME and AGE.

use chrono::{DateTime, Utc};
use keel_types::ResourceInfo;
use serde_json::{json, Value};

use super::table::{since, Column};

const NAME: Column =
    Column::new("Name", "string", "Name must be unique within a namespace.").name_format();
const AGE: Column = Column::new(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);
const CONTAINERS: Column = Column::new(
    "Containers",
    "string",
    "Names of each container in the template.",
)
.wide();
const IMAGES: Column = Column::new(
    "Images",
    "string",
    "Images referenced by each container in the template.",
)
.wide();
const SELECTOR: Column = Column::new("Selector", "string", "Label selector of the pods.").wide();

const GENERIC: &[Column] = &[NAME, AGE];

const PODS: &[Column] = &[
    NAME,
    Column::new("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    Column::new("Status", "string", "The aggregate status of the containers in this pod."),
    Column::new("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    AGE,
    Column::new("IP", "string", "podIP address allocated to the pod.").wide(),
    Column::new("Node", "string", "NodeName is the node the pod is scheduled on.").wide(),
    Column::new("Nominated Node", "string", "nominatedNodeName is set when this pod preempts other pods on the node.").wide(),
    Column::new("Readiness Gates", "string", "The readiness gates of the pod that are true.").wide(),
];

const DEPLOYMENTS: &[Column] = &[
    NAME,
    Column::new("Ready", "string", "Number of the pod with ready state"),
    Column::new("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    Column::new("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const REPLICA_SETS: &[Column] = &[
    NAME,
    Column::new(
        "Desired",
        "integer",
        "Replicas is the number of desired pods.",
    ),
    Column::new(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    Column::new(
        "Ready",
        "integer",
        "The number of pods targeted by this ReplicaSet with a Ready Condition.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const STATEFUL_SETS: &[Column] = &[
    NAME,
    Column::new("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

const DAEMON_SETS: &[Column] = &[
    NAME,
    Column::new("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
    Column::new("Current", "integer", "The number of nodes that are running at least one daemon pod and are supposed to run the daemon pod."),
    Column::new("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
    Column::new("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod."),
    Column::new("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
    Column::new("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const JOBS: &[Column] = &[
    NAME,
    Column::new("Status", "string", "Status of the job."),
    Column::new(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    Column::new("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const CRON_JOBS: &[Column] = &[
    NAME,
    Column::new("Schedule", "string", "The schedule in Cron format."),
    Column::new(
        "Timezone",
        "string",
        "The time zone name for the given schedule.",
    ),
    Column::new(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions.",
    ),
    Column::new(
        "Active",
        "integer",
        "A list of pointers to currently running jobs.",
    ),
    Column::new(
        "Last Schedule",
        "string",
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const SERVICES: &[Column] = &[
    NAME,
    Column::new("Type", "string", "type determines how the Service is exposed."),
    Column::new("Cluster-IP", "string", "clusterIP is the IP address of the service."),
    Column::new("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    Column::new("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    Column::new("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.").wide(),
];

const NAMESPACES: &[Column] = &[
    NAME,
    Column::new("Status", "string", "The status of the namespace"),
    AGE,
];

const NODES: &[Column] = &[
    NAME,
    Column::new("Status", "string", "The status of the node"),
    Column::new("Roles", "string", "The roles of the node"),
    AGE,
    Column::new("Version", "string", "Kubelet Version reported by the node."),
    Column::new(
        "Internal-IP",
        "string",
        "List of addresses reachable to the node.",
    )
    .wide(),
    Column::new(
        "External-IP",
        "string",
        "List of addresses reachable to the node.",
    )
    .wide(),
    Column::new("OS-Image", "string", "OS Image reported by the node.").wide(),
    Column::new(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node.",
    )
    .wide(),
    Column::new(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node.",
    )
    .wide(),
];

const CONFIG_MAPS: &[Column] = &[
    NAME,
    Column::new("Data", "string", "Data contains the configuration data."),
    AGE,
];

const SECRETS: &[Column] = &[
    NAME,
    Column::new(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    Column::new("Data", "string", "Data contains the secret data."),
    AGE,
];

const EVENTS: &[Column] = &[
    Column::new("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    Column::new("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    Column::new("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    Column::new("Object", "string", "The object that this event is about."),
    Column::new("Subobject", "string", "The field of the object the event is about.").wide(),
    Column::new("Source", "string", "The component reporting this event.").wide(),
    Column::new("Message", "string", "A human-readable description of the status of this operation."),
    Column::new("First Seen", "string", "The time at which the event was first recorded.").wide(),
    Column::new("Count", "string", "The number of times this event has occurred.").wide(),
    NAME.wide(),
];

const PRIORITY_CLASSES: &[Column] = &[
    NAME,
    Column::new("Value", "integer", "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."),
    Column::new("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority."),
    AGE,
    Column::new("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."),
];

const POD_DISRUPTION_BUDGETS: &[Column] = &[
    NAME,
    Column::new(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    Column::new(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    Column::new(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

/// The columns of `info`'s Table.
pub fn columns(info: &ResourceInfo) -> &'static [Column] {
    match (info.group, info.kind) {
        ("", "Pod") => PODS,
        ("", "Service") => SERVICES,
        ("", "Namespace") => NAMESPACES,
        ("", "Node") => NODES,
        ("", "ConfigMap") => CONFIG_MAPS,
        ("", "Secret") => SECRETS,
        ("", "Event") => EVENTS,
        ("apps", "Deployment") => DEPLOYMENTS,
        ("apps", "ReplicaSet") | ("", "ReplicationController") => REPLICA_SETS,
        ("apps", "StatefulSet") => STATEFUL_SETS,
        ("apps", "DaemonSet") => DAEMON_SETS,
        ("batch", "Job") => JOBS,
        ("batch", "CronJob") => CRON_JOBS,
        ("scheduling.k8s.io", "PriorityClass") => PRIORITY_CLASSES,
        ("policy", "PodDisruptionBudget") => POD_DISRUPTION_BUDGETS,
        _ => GENERIC,
    }
}

/// The cells of `obj`'s row, one per column of [`columns`].
pub fn cells(info: &ResourceInfo, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let o = Obj(obj);
    let name = json!(o.str("/metadata/name"));
    let age = json!(since(o.opt_str("/metadata/creationTimestamp"), now));
    match (info.group, info.kind) {
        ("", "Pod") => super::columns_pod::pod(&o, name, age, now),
        ("", "Service") => service(&o, name, age),
        ("", "Namespace") => vec![name, json!(o.str("/status/phase")), age],
        ("", "Node") => super::columns_pod::node(&o, name, age),
        ("", "ConfigMap") => {
            let n = o.len("/data") + o.len("/binaryData");
            vec![name, json!(n), age]
        }
        ("", "Secret") => {
            vec![name, json!(o.str("/type")), json!(o.len("/data")), age]
        }
        ("", "Event") => super::columns_pod::event(&o, name, now),
        ("apps", "Deployment") => vec![
            name,
            json!(format!(
                "{}/{}",
                o.int("/status/readyReplicas"),
                o.replicas()
            )),
            json!(o.int("/status/updatedReplicas")),
            json!(o.int("/status/availableReplicas")),
            age,
            json!(o.containers()),
            json!(o.images()),
            json!(o.selector()),
        ],
        ("apps", "ReplicaSet") => vec![
            name,
            json!(o.replicas()),
            json!(o.int("/status/replicas")),
            json!(o.int("/status/readyReplicas")),
            age,
            json!(o.containers()),
            json!(o.images()),
            json!(o.selector()),
        ],
        // A ReplicationController's selector is a plain label map.
        ("", "ReplicationController") => vec![
            name,
            json!(o.replicas()),
            json!(o.int("/status/replicas")),
            json!(o.int("/status/readyReplicas")),
            age,
            json!(o.containers()),
            json!(o.images()),
            json!(format_selector(
                obj.pointer("/spec/selector")
                    .map(|labels| json!({ "matchLabels": labels }))
                    .as_ref()
            )),
        ],
        ("apps", "StatefulSet") => vec![
            name,
            json!(format!(
                "{}/{}",
                o.int("/status/readyReplicas"),
                o.replicas()
            )),
            age,
            json!(o.containers()),
            json!(o.images()),
        ],
        ("apps", "DaemonSet") => vec![
            name,
            json!(o.int("/status/desiredNumberScheduled")),
            json!(o.int("/status/currentNumberScheduled")),
            json!(o.int("/status/numberReady")),
            json!(o.int("/status/updatedNumberScheduled")),
            json!(o.int("/status/numberAvailable")),
            json!(format_labels(
                o.0.pointer("/spec/template/spec/nodeSelector")
            )),
            age,
            json!(o.containers()),
            json!(o.images()),
            json!(o.selector()),
        ],
        ("batch", "Job") => super::columns_pod::job(&o, name, age, now),
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name,
            json!(o.int("/value")),
            json!(o
                .0
                .get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            age,
            json!(o.str("/preemptionPolicy")),
        ],
        ("policy", "PodDisruptionBudget") => vec![
            name,
            json!(int_or_string(o.0.pointer("/spec/minAvailable"))),
            json!(int_or_string(o.0.pointer("/spec/maxUnavailable"))),
            json!(o.int("/status/disruptionsAllowed")),
            age,
        ],
        ("batch", "CronJob") => vec![
            name,
            json!(o.str("/spec/schedule")),
            json!(o.or_none("/spec/timeZone")),
            json!(o
                .0
                .pointer("/spec/suspend")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            json!(o.len("/status/active")),
            json!(match o.opt_str("/status/lastScheduleTime") {
                Some(t) => since(Some(t), now),
                None => "<none>".into(),
            }),
            age,
            json!(o.containers_at("/spec/jobTemplate/spec/template/spec/containers", "name")),
            json!(o.containers_at("/spec/jobTemplate/spec/template/spec/containers", "image")),
            json!(format_selector(
                o.0.pointer("/spec/jobTemplate/spec/selector")
            )),
        ],
        _ => vec![name, age],
    }
}

/// An int-or-string bound as Kubernetes prints it, or N/A when unset.
fn int_or_string(value: Option<&Value>) -> String {
    match value {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "N/A".into(),
    }
}

fn service(o: &Obj<'_>, name: Value, age: Value) -> Vec<Value> {
    let kind = o.opt_str("/spec/type").unwrap_or("ClusterIP");
    let cluster_ip = o.opt_str("/spec/clusterIP").filter(|s| !s.is_empty());
    let mut external: Vec<String> = o
        .array("/status/loadBalancer/ingress")
        .iter()
        .filter_map(|i| i.get("ip").or_else(|| i.get("hostname")))
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    external.extend(
        o.array("/spec/externalIPs")
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string),
    );
    let external = match kind {
        "ExternalName" => o.str("/spec/externalName").to_string(),
        "LoadBalancer" if external.is_empty() => "<pending>".into(),
        _ if external.is_empty() => "<none>".into(),
        _ => external.join(","),
    };
    let ports: Vec<String> = o
        .array("/spec/ports")
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                Some(node_port) => format!("{port}:{node_port}/{protocol}"),
                None => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        name,
        json!(kind),
        json!(cluster_ip.unwrap_or("<none>")),
        json!(external),
        json!(ports),
        age,
        json!(format_labels(o.0.pointer("/spec/selector"))),
    ]
}

/// Labels as `k=v,k2=v2`, sorted by key; "<none>" when there are none.
pub fn format_labels(labels: Option<&Value>) -> String {
    let Some(map) = labels.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// A LabelSelector as its string form (`app=web,tier in (a,b)`); "<none>" for none.
pub fn format_selector(selector: Option<&Value>) -> String {
    let Some(sel) = selector.filter(|s| s.is_object()) else {
        return "<none>".into();
    };
    let mut parts: Vec<(String, String)> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())))
                .collect()
        })
        .unwrap_or_default();
    for expr in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
        let mut values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        values.sort_unstable();
        let text = match expr.get("operator").and_then(Value::as_str) {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_string(),
            Some("DoesNotExist") => format!("!{key}"),
            _ => continue,
        };
        parts.push((key.to_string(), text));
    }
    if parts.is_empty() {
        return "<none>".into();
    }
    parts.sort();
    parts
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads fields of an object for its cells.
pub struct Obj<'a>(pub &'a Value);

impl Obj<'_> {
    pub fn opt_str(&self, pointer: &str) -> Option<&str> {
        self.0.pointer(pointer).and_then(Value::as_str)
    }

    pub fn str(&self, pointer: &str) -> &str {
        self.opt_str(pointer).unwrap_or_default()
    }

    /// The string at `pointer`, or "<none>" where it is missing or empty.
    pub fn or_none(&self, pointer: &str) -> String {
        match self.opt_str(pointer) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => "<none>".into(),
        }
    }

    pub fn int(&self, pointer: &str) -> i64 {
        self.0.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
    }

    pub fn array(&self, pointer: &str) -> &[Value] {
        self.0
            .pointer(pointer)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// How many entries the object or array at `pointer` has.
    pub fn len(&self, pointer: &str) -> usize {
        match self.0.pointer(pointer) {
            Some(Value::Object(m)) => m.len(),
            Some(Value::Array(a)) => a.len(),
            _ => 0,
        }
    }

    /// spec.replicas, which defaults to 1.
    pub fn replicas(&self) -> i64 {
        self.0
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    }

    pub fn containers_at(&self, pointer: &str, field: &str) -> String {
        let names: Vec<&str> = self
            .array(pointer)
            .iter()
            .filter_map(|c| c.get(field).and_then(Value::as_str))
            .collect();
        names.join(",")
    }

    pub fn containers(&self) -> String {
        self.containers_at("/spec/template/spec/containers", "name")
    }

    pub fn images(&self) -> String {
        self.containers_at("/spec/template/spec/containers", "image")
    }

    pub fn selector(&self) -> String {
        format_selector(self.0.pointer("/spec/selector"))
    }
}
