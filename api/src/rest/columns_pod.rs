//! The cells whose computation is more than reading a field: a pod's READY, STATUS and
//! RESTARTS, a node's STATUS and ROLES, an event's LAST SEEN and OBJECT, a job's STATUS and
//! DURATION — as Kubernetes' printers compute them.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::columns::{format_selector, Obj};
use super::table::{human_duration, since};

/// A container's state: which of waiting/running/terminated it is in, and its reason.
fn state<'a>(status: &'a Value, which: &str) -> Option<&'a Value> {
    status.get("state").and_then(|s| s.get(which))
}

fn reason_of(v: &Value) -> &str {
    v.get("reason").and_then(Value::as_str).unwrap_or_default()
}

fn exit_reason(prefix: &str, terminated: &Value) -> String {
    let signal = terminated
        .get("signal")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let code = terminated
        .get("exitCode")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{code}")
    }
}

fn condition_true(o: &Obj<'_>, kind: &str) -> bool {
    o.array("/status/conditions").iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(kind)
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

/// NAME, READY, STATUS, RESTARTS, AGE, IP, NODE, NOMINATED NODE, READINESS GATES.
pub fn pod(o: &Obj<'_>, name: Value, age: Value, now: DateTime<Utc>) -> Vec<Value> {
    let total = o.len("/spec/containers");
    let phase = o.str("/status/phase");
    let mut reason = match o.opt_str("/status/reason").filter(|r| !r.is_empty()) {
        Some(r) => r.to_string(),
        None => phase.to_string(),
    };
    let mut restarts = 0;
    let mut last_restart: Option<String> = None;
    let mut note_restart = |status: &Value, restarts: &mut i64| {
        *restarts += status
            .get("restartCount")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if let Some(t) = status
            .pointer("/lastState/terminated/finishedAt")
            .and_then(Value::as_str)
        {
            if last_restart.as_deref().is_none_or(|l| t > l) {
                last_restart = Some(t.to_string());
            }
        }
    };

    let init_total = o.len("/spec/initContainers");
    let mut initializing = false;
    for (i, status) in o.array("/status/initContainerStatuses").iter().enumerate() {
        note_restart(status, &mut restarts);
        if let Some(t) = state(status, "terminated") {
            if t.get("exitCode").and_then(Value::as_i64) == Some(0) {
                continue;
            }
            reason = match reason_of(t) {
                "" => exit_reason("Init:", t),
                r => format!("Init:{r}"),
            };
        } else if let Some(w) = state(status, "waiting")
            .filter(|w| !reason_of(w).is_empty() && reason_of(w) != "PodInitializing")
        {
            reason = format!("Init:{}", reason_of(w));
        } else {
            reason = format!("Init:{i}/{init_total}");
        }
        initializing = true;
        break;
    }

    let mut ready = 0;
    if !initializing || condition_true(o, "Initialized") {
        let mut running = false;
        for status in o.array("/status/containerStatuses").iter().rev() {
            note_restart(status, &mut restarts);
            let waiting = state(status, "waiting").map(reason_of).unwrap_or_default();
            let terminated = state(status, "terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = match reason_of(t) {
                    "" => exit_reason("", t),
                    r => r.to_string(),
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && state(status, "running").is_some()
            {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            reason = if condition_true(o, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if o.0.pointer("/metadata/deletionTimestamp").is_some() {
        if o.str("/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if !matches!(phase, "Succeeded" | "Failed") {
            reason = "Terminating".into();
        }
    }
    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(&t), now)),
        _ => restarts.to_string(),
    };
    let ip = o
        .array("/status/podIPs")
        .first()
        .and_then(|p| p.get("ip"))
        .and_then(Value::as_str)
        .or_else(|| o.opt_str("/status/podIP"))
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let gates = o.array("/spec/readinessGates");
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let met = gates
            .iter()
            .filter_map(|g| g.get("conditionType").and_then(Value::as_str))
            .filter(|t| condition_true(o, t))
            .count();
        format!("{met}/{}", gates.len())
    };
    vec![
        name,
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        age,
        json!(ip),
        json!(o.or_none("/spec/nodeName")),
        json!(o.or_none("/status/nominatedNodeName")),
        json!(gates_cell),
    ]
}

/// NAME, STATUS, ROLES, AGE, VERSION, INTERNAL-IP, EXTERNAL-IP, OS-IMAGE, KERNEL-VERSION,
/// CONTAINER-RUNTIME.
pub fn node(o: &Obj<'_>, name: Value, age: Value) -> Vec<Value> {
    let ready = o
        .array("/status/conditions")
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .and_then(|c| c.get("status").and_then(Value::as_str));
    let mut status = vec![match ready {
        Some("True") => "Ready",
        _ => "NotReady",
    }
    .to_string()];
    if ready.is_none() {
        status = vec!["Unknown".into()];
    }
    if o.0.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> =
        o.0.pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| {
                        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                            (!role.is_empty()).then(|| role.to_string())
                        } else if k == "kubernetes.io/role" {
                            v.as_str().filter(|r| !r.is_empty()).map(str::to_string)
                        } else {
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let address = |kind: &str| {
        o.array("/status/addresses")
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .unwrap_or("<none>")
            .to_string()
    };
    vec![
        name,
        json!(status.join(",")),
        json!(roles),
        age,
        json!(o.str("/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(o.or_none("/status/nodeInfo/osImage")),
        json!(o.or_none("/status/nodeInfo/kernelVersion")),
        json!(o.or_none("/status/nodeInfo/containerRuntimeVersion")),
    ]
}

/// LAST SEEN, TYPE, REASON, OBJECT, SUBOBJECT, SOURCE, MESSAGE, FIRST SEEN, COUNT, NAME.
pub fn event(o: &Obj<'_>, name: Value, now: DateTime<Utc>) -> Vec<Value> {
    let stamp = |primary: &str| {
        o.opt_str(primary)
            .filter(|s| !s.is_empty())
            .or_else(|| o.opt_str("/eventTime"))
            .map(|t| since(Some(t), now))
            .unwrap_or_else(|| "<unknown>".into())
    };
    let first = stamp("/firstTimestamp");
    let mut last = stamp("/lastTimestamp");
    let mut count = o.int("/count");
    if let Some(series) = o.0.get("series").filter(|s| s.is_object()) {
        let observed = series.get("lastObservedTime").and_then(Value::as_str);
        last = since(observed, now);
        count = series.get("count").and_then(Value::as_i64).unwrap_or(count);
    } else if count > 1 {
        last = format!("{last} (x{count} over {first})");
    }
    let source = {
        let component = o
            .opt_str("/source/component")
            .or_else(|| o.opt_str("/reportingComponent"))
            .unwrap_or_default();
        match o.opt_str("/source/host").filter(|h| !h.is_empty()) {
            Some(host) => format!("{component}, {host}"),
            None => component.to_string(),
        }
    };
    let object = format!(
        "{}/{}",
        o.str("/involvedObject/kind").to_ascii_lowercase(),
        o.str("/involvedObject/name")
    );
    vec![
        json!(last),
        json!(o.str("/type")),
        json!(o.str("/reason")),
        json!(object),
        json!(o.str("/involvedObject/fieldPath")),
        json!(source),
        json!(o.str("/message").trim()),
        json!(first),
        json!(count.to_string()),
        name,
    ]
}

/// NAME, STATUS, COMPLETIONS, DURATION, AGE, CONTAINERS, IMAGES, SELECTOR.
pub fn job(o: &Obj<'_>, name: Value, age: Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = o.int("/status/succeeded");
    let completions = match o.0.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match o.int("/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let parse = |p: &str| {
        o.opt_str(p)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let duration = match (parse("/status/startTime"), parse("/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration((now - start).num_seconds()),
        (Some(start), Some(done)) => human_duration((done - start).num_seconds()),
    };
    let status = if condition_true(o, "Complete") {
        "Complete"
    } else if condition_true(o, "Failed") {
        "Failed"
    } else if o.0.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if condition_true(o, "FailureTarget") {
        "FailureTarget"
    } else if condition_true(o, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if condition_true(o, "Suspended") {
        "Suspended"
    } else {
        "Running"
    };
    vec![
        name,
        json!(status),
        json!(completions),
        json!(duration),
        age,
        json!(o.containers()),
        json!(o.images()),
        json!(format_selector(o.0.pointer("/spec/selector"))),
    ]
}
