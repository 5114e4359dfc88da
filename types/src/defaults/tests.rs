//! Specification of the defaults each kind receives, stated field by field.

use super::*;
use crate::kinds::by_kind;
use serde_json::json;

fn defaulted(api_version: &str, kind: &str, mut object: Value) -> Value {
    let info = by_kind(api_version, kind).expect("kind is served");
    default_object(info, &mut object).expect("defaults apply");
    object
}

fn minimal_pod_spec() -> Value {
    json!({
        "containers": [{
            "name": "web", "image": "nginx",
            "ports": [{"containerPort": 80}],
            "livenessProbe": {"httpGet": {"port": 80}},
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}}
        }],
        "initContainers": [{"name": "init", "image": "busybox:1.36"}],
        "volumes": [
            {"name": "scratch"},
            {"name": "cfg", "configMap": {"name": "c"}},
            {"name": "sec", "secret": {"secretName": "s"}},
            {"name": "host", "hostPath": {"path": "/var/log"}}
        ]
    })
}

#[test]
fn pods_get_kubernetes_spec_defaults() {
    let pod = defaulted(
        "v1",
        "Pod",
        json!({"metadata": {"name": "p"}, "spec": minimal_pod_spec()}),
    );
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["enableServiceLinks"], true);
}

#[test]
fn containers_get_pull_policy_termination_message_ports_and_probe_defaults() {
    let pod = defaulted("v1", "Pod", json!({"spec": minimal_pod_spec()}));
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "Always", "untagged image");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    let probe = &c["livenessProbe"];
    assert_eq!(probe["timeoutSeconds"], 1);
    assert_eq!(probe["periodSeconds"], 10);
    assert_eq!(probe["successThreshold"], 1);
    assert_eq!(probe["failureThreshold"], 3);
    assert_eq!(probe["httpGet"]["path"], "/");
    assert_eq!(probe["httpGet"]["scheme"], "HTTP");
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["imagePullPolicy"], "IfNotPresent", "tagged image");
    assert_eq!(init["terminationMessagePolicy"], "File");
}

#[test]
fn pod_requests_default_to_limits_where_unset() {
    let pod = defaulted("v1", "Pod", json!({"spec": minimal_pod_spec()}));
    let requests = &pod["spec"]["containers"][0]["resources"]["requests"];
    assert_eq!(requests["cpu"], "100m", "an explicit request is kept");
    assert_eq!(
        requests["memory"], "128Mi",
        "a missing request takes the limit"
    );
}

#[test]
fn volumes_default_to_empty_dir_and_mode_0644() {
    let pod = defaulted("v1", "Pod", json!({"spec": minimal_pod_spec()}));
    let volumes = &pod["spec"]["volumes"];
    assert_eq!(volumes[0]["emptyDir"], json!({}));
    assert_eq!(volumes[1]["configMap"]["defaultMode"], 420);
    assert_eq!(volumes[2]["secret"]["defaultMode"], 420);
    assert_eq!(volumes[3]["hostPath"]["type"], "");
}

#[test]
fn host_network_pods_expose_container_ports_on_the_host() {
    let pod = defaulted(
        "v1",
        "Pod",
        json!({"spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 9100}]}]}}),
    );
    assert_eq!(pod["spec"]["containers"][0]["ports"][0]["hostPort"], 9100);
}

#[test]
fn set_fields_are_kept() {
    let pod = defaulted(
        "v1",
        "Pod",
        json!({"spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
                        "containers": [{"name": "a", "image": "x:latest", "imagePullPolicy": "Never"}]}}),
    );
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 5);
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
}

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}})
}

#[test]
fn deployments_get_replicas_strategy_history_and_deadline() {
    let d = defaulted(
        "apps/v1",
        "Deployment",
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()}}),
    );
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], "25%");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert!(
        pod.get("enableServiceLinks").is_none(),
        "a pod-only default"
    );
}

#[test]
fn recreate_deployments_get_no_rolling_update_parameters() {
    let d = defaulted(
        "apps/v1",
        "Deployment",
        json!({"spec": {"strategy": {"type": "Recreate"}, "template": template()}}),
    );
    assert!(d["spec"]["strategy"].get("rollingUpdate").is_none());
}

#[test]
fn replica_sets_default_to_one_replica() {
    let rs = defaulted(
        "apps/v1",
        "ReplicaSet",
        json!({"spec": {"template": template()}}),
    );
    assert_eq!(rs["spec"]["replicas"], 1);
    assert_eq!(rs["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
}

#[test]
fn stateful_sets_get_ordering_updates_retention_and_claim_defaults() {
    let s = defaulted(
        "apps/v1",
        "StatefulSet",
        json!({"spec": {"serviceName": "db", "template": template(), "volumeClaimTemplates": [
            {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
        ]}}),
    );
    let spec = &s["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(spec["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(spec["updateStrategy"]["rollingUpdate"]["partition"], 0);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Retain"
    );
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"],
        "Retain"
    );
    assert_eq!(
        spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
        "Filesystem"
    );
    assert_eq!(
        spec["volumeClaimTemplates"][0]["status"]["phase"],
        "Pending"
    );
}

#[test]
fn daemon_sets_roll_one_pod_at_a_time_without_surge() {
    let d = defaulted(
        "apps/v1",
        "DaemonSet",
        json!({"spec": {"template": template()}}),
    );
    let strategy = &d["spec"]["updateStrategy"];
    assert_eq!(strategy["type"], "RollingUpdate");
    assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 1);
    assert_eq!(strategy["rollingUpdate"]["maxSurge"], 0);
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
}

#[test]
fn jobs_run_once_with_six_retries_by_default() {
    let mut t = template();
    t["spec"]["restartPolicy"] = json!("Never");
    let j = defaulted(
        "batch/v1",
        "Job",
        json!({"metadata": {"name": "j"}, "spec": {"template": t}}),
    );
    let spec = &j["spec"];
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert_eq!(
        spec["template"]["spec"]["restartPolicy"], "Never",
        "kept as given"
    );
    assert_eq!(
        j["metadata"]["labels"]["app"], "web",
        "labels come from the template"
    );
}

#[test]
fn jobs_with_parallelism_leave_completions_unset() {
    let j = defaulted(
        "batch/v1",
        "Job",
        json!({"spec": {"parallelism": 3, "template": template()}}),
    );
    assert_eq!(j["spec"]["parallelism"], 3);
    assert!(j["spec"].get("completions").is_none());
}

#[test]
fn a_job_template_without_restart_policy_is_defaulted_to_always_for_validation_to_reject() {
    // Kubernetes defaults the template's restartPolicy like any pod spec; validation then
    // rejects Always for jobs, which is why clients must state OnFailure or Never.
    let j = defaulted("batch/v1", "Job", json!({"spec": {"template": template()}}));
    assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Always");
}

#[test]
fn cron_jobs_allow_concurrency_and_keep_three_successes_and_one_failure() {
    let cj = defaulted(
        "batch/v1",
        "CronJob",
        json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template()}}}}),
    );
    let spec = &cj["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Allow");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 1);
    assert_eq!(
        spec["jobTemplate"]["spec"]["template"]["spec"]["schedulerName"],
        "default-scheduler"
    );
    assert!(
        spec["jobTemplate"]["spec"].get("backoffLimit").is_none(),
        "job defaults apply to jobs"
    );
}

#[test]
fn services_get_type_affinity_ports_and_policies() {
    let s = defaulted(
        "v1",
        "Service",
        json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}}),
    );
    let spec = &s["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["ports"][0]["protocol"], "TCP");
    assert_eq!(spec["ports"][0]["targetPort"], 80);
    assert_eq!(spec["ports"][1]["targetPort"], "https");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert!(spec.get("externalTrafficPolicy").is_none());
}

#[test]
fn externally_reachable_services_get_external_policies() {
    let s = defaulted(
        "v1",
        "Service",
        json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}),
    );
    let spec = &s["spec"];
    assert_eq!(spec["externalTrafficPolicy"], "Cluster");
    assert_eq!(spec["allocateLoadBalancerNodePorts"], true);
    assert_eq!(
        spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        10800
    );
    let external = defaulted(
        "v1",
        "Service",
        json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
    );
    assert!(external["spec"].get("internalTrafficPolicy").is_none());
    assert!(external["spec"].get("ipFamilyPolicy").is_none());
}

#[test]
fn secrets_are_opaque_and_string_data_is_merged_into_data() {
    let s = defaulted(
        "v1",
        "Secret",
        json!({"metadata": {"name": "s"}, "data": {"user": "YWRtaW4=", "password": "b2xk"}, "stringData": {"password": "new"}}),
    );
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"]["user"], "YWRtaW4=");
    assert_eq!(
        s["data"]["password"], "bmV3",
        "base64 of \"new\" replaces the old value"
    );
    assert!(s.get("stringData").is_none());
}

#[test]
fn namespaces_are_labelled_with_their_name_and_created_active_with_the_finalizer() {
    let info = by_kind("v1", "Namespace").expect("namespaces");
    let mut ns = json!({"metadata": {"name": "prod"}});
    prepare_for_create(info, &mut ns).expect("prepares");
    default_object(info, &mut ns).expect("defaults");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "prod"
    );
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");

    let mut finalized = json!({"metadata": {"name": "prod"}, "spec": {"finalizers": []}});
    default_object(info, &mut finalized).expect("defaults");
    assert_eq!(
        finalized["spec"]["finalizers"],
        json!([]),
        "update does not restore the finalizer"
    );
}

#[test]
fn claims_volumes_bindings_and_policies_get_their_defaults() {
    let pvc = defaulted(
        "v1",
        "PersistentVolumeClaim",
        json!({"spec": {"accessModes": ["ReadWriteOnce"]}}),
    );
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc["status"]["phase"], "Pending");
    let pv = defaulted(
        "v1",
        "PersistentVolume",
        json!({"spec": {"hostPath": {"path": "/data"}}}),
    );
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["status"]["phase"], "Pending");
    let rb = defaulted(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        json!({"roleRef": {"apiGroup": "", "kind": "Role", "name": "r"},
               "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "default", "namespace": "ns"}]}),
    );
    assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(
        rb["subjects"][1].get("apiGroup"),
        None,
        "omitted when empty"
    );
    let np = defaulted(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}}),
    );
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
    let node = defaulted("v1", "Node", json!({"status": {"capacity": {"cpu": "4"}}}));
    assert_eq!(node["status"]["allocatable"]["cpu"], "4");
}

#[test]
fn kinds_without_defaults_are_left_alone() {
    let before = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
    assert_eq!(defaulted("v1", "ConfigMap", before.clone()), before);
}

#[test]
fn priority_classes_preempt_lower_priorities_unless_told_never() {
    let pc = |policy: Value| {
        let mut pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "high"}, "value": 1000});
        if !policy.is_null() {
            pc["preemptionPolicy"] = policy;
        }
        defaulted("scheduling.k8s.io/v1", "PriorityClass", pc)
    };
    assert_eq!(pc(Value::Null)["preemptionPolicy"], "PreemptLowerPriority");
    assert_eq!(pc(json!("Never"))["preemptionPolicy"], "Never");
}

#[test]
fn a_new_job_selects_its_pods_by_uid_and_labels_them_with_its_name_and_uid() {
    let info = by_kind("batch/v1", "Job").expect("jobs");
    let mut job = json!({"metadata": {"name": "pi", "uid": "u-1"},
        "spec": {"template": {"metadata": {"labels": {"app": "pi"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl"}]}}}});
    prepare_for_create(info, &mut job).expect("prepares");
    default_object(info, &mut job).expect("defaults");
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
    );
    let labels = &job["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["app"], "pi");
    assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
    assert_eq!(labels["job-name"], "pi");
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], "u-1");
    assert_eq!(labels["controller-uid"], "u-1");

    let mut manual = json!({"metadata": {"name": "m", "uid": "u-2"},
        "spec": {"manualSelector": true, "selector": {"matchLabels": {"app": "m"}},
            "template": {"metadata": {"labels": {"app": "m"}}}}});
    prepare_for_create(info, &mut manual).expect("prepares");
    assert_eq!(
        manual["spec"]["selector"],
        json!({"matchLabels": {"app": "m"}})
    );
    assert_eq!(
        manual["spec"]["template"]["metadata"]["labels"],
        json!({"app": "m"})
    );
}
