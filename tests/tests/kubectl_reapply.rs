//! Manifests as public repositories write them, through the real kubectl on a default keel:
//! quantities written as YAML numbers are accepted and kept in Kubernetes' canonical form (a
//! re-apply of them writes nothing), a RoleBinding to a ServiceAccount re-applies as
//! `unchanged` (no empty `apiGroup` appears), and only kinds Kubernetes tracks carry
//! `metadata.generation`. Each check is what kubectl shows against Kubernetes 1.32.

use keel_tests::kubectl::{api_only_cluster, Kubectl};

const APP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: readers
subjects:
- kind: ServiceAccount
  name: default
  namespace: default
- kind: User
  name: alice
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: ClusterRole
  name: view
  apiGroup: rbac.authorization.k8s.io
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox
        resources:
          requests:
            cpu: 500m
            memory: 64Mi
";

/// The same Deployment's resources as many manifests write them: numbers, and quantities in a
/// form other than Kubernetes' canonical one.
const NUMBERS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: sized
spec:
  replicas: 1
  selector:
    matchLabels: {app: sized}
  template:
    metadata:
      labels: {app: sized}
    spec:
      containers:
      - name: web
        image: busybox
        resources:
          requests:
            cpu: 0.5
            memory: 64Mi
          limits:
            cpu: 2000m
            memory: 1024Mi
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_manifests_apply_and_reapply_as_on_kubernetes() -> anyhow::Result<()> {
    let (_cluster, k) = api_only_cluster().await?;
    let file = k.manifest("app.yaml", APP);
    let created = k.ok(&["apply", "-f", &file]);
    assert!(created.contains("deployment.apps/web created"), "{created}");

    // Numbers read as quantities, stored canonical. kubectl keeps sending the manifest's form,
    // so it prints `configured` on every apply, as against Kubernetes, but nothing is written.
    let numbers = k.manifest("numbers.yaml", NUMBERS);
    k.ok(&["apply", "-f", &numbers]);
    let sized = k.json(&["get", "deployment", "sized"]);
    let resources = &sized["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "500m");
    assert_eq!(resources["limits"]["cpu"], "2");
    assert_eq!(resources["limits"]["memory"], "1Gi");
    k.ok(&["apply", "-f", &numbers]);
    let again = k.json(&["get", "deployment", "sized"]);
    assert_eq!(
        again["metadata"]["resourceVersion"], sized["metadata"]["resourceVersion"],
        "a patch that changes nothing writes nothing"
    );
    assert_eq!(again["metadata"]["generation"], 1);

    // The ServiceAccount subject keeps no empty group; the user gets RBAC's.
    let binding = k.json(&["get", "rolebinding", "readers"]);
    assert_eq!(binding["subjects"][0].get("apiGroup"), None, "{binding}");
    assert_eq!(
        binding["subjects"][1]["apiGroup"],
        "rbac.authorization.k8s.io"
    );

    // Generation only where Kubernetes keeps one.
    assert_eq!(binding["metadata"].get("generation"), None, "{binding}");
    let config = k.json(&["get", "configmap", "settings"]);
    assert_eq!(config["metadata"].get("generation"), None, "{config}");
    let deployment = k.json(&["get", "deployment", "web"]);
    assert_eq!(deployment["metadata"]["generation"], 1);

    // Applying the same file again changes nothing, and kubectl diff agrees.
    let versions = |k: &Kubectl| {
        [
            "configmap/settings",
            "rolebinding/readers",
            "deployment/web",
        ]
        .map(|o| k.ok(&["get", o, "-o", "jsonpath={.metadata.resourceVersion}"]))
    };
    let before = versions(&k);
    let again = k.ok(&["apply", "-f", &file]);
    for line in again.lines() {
        assert!(line.ends_with(" unchanged"), "{again}");
    }
    assert_eq!(versions(&k), before, "a no-op apply writes nothing");
    let diff = k.run(&["diff", "-f", &file]);
    assert!(
        diff.ok,
        "kubectl diff exits 0: {}{}",
        diff.stdout, diff.stderr
    );
    // Server-side apply over the client-side applied objects takes over without conflicts.
    let ssa = k.run(&["apply", "--server-side", "-f", &file]);
    assert!(ssa.ok, "{}{}", ssa.stdout, ssa.stderr);
    Ok(())
}

/// One object of each kind that installs and charts write and keel now serves (stored as
/// Kubernetes stores them; what acts on them is noted in ARCHITECTURE.md).
const INSTALLS: &str = "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
provisioner: example.com/fast
reclaimPolicy: Retain
volumeBindingMode: WaitForFirstConsumer
parameters: {tier: gold}
---
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata:
  name: fast.example.com
spec:
  attachRequired: false
  podInfoOnMount: true
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: edge
spec:
  controller: example.com/ingress-controller
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 80}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: policy
webhooks:
- name: check.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig:
    url: https://policy.example.com/check
  # The server defaults `scope` into the atomic `rules` list, as Kubernetes does: without it
  # a re-apply prints `configured` there too (see tests/corpus/EXPECTED).
  rules:
  - apiGroups: ['']
    apiVersions: [v1]
    operations: [CREATE]
    resources: [configmaps]
    scope: '*'
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.example.com
spec:
  group: metrics.example.com
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {name: metrics, namespace: kube-system, port: 443}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_ingress_autoscaling_webhook_and_aggregation_kinds_apply_and_reapply(
) -> anyhow::Result<()> {
    let (_cluster, k) = api_only_cluster().await?;
    let file = k.manifest("installs.yaml", INSTALLS);
    let dry = k.ok(&["apply", "--dry-run=server", "-f", &file]);
    assert_eq!(dry.lines().count(), 6, "{dry}");
    let created = k.ok(&["apply", "-f", &file]);
    for expected in [
        "storageclass.storage.k8s.io/fast created",
        "csidriver.storage.k8s.io/fast.example.com created",
        "ingressclass.networking.k8s.io/edge created",
        "horizontalpodautoscaler.autoscaling/web created",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/policy created",
        "apiservice.apiregistration.k8s.io/v1beta1.metrics.example.com created",
    ] {
        assert!(created.contains(expected), "{created}");
    }
    let again = k.ok(&["apply", "-f", &file]);
    for line in again.lines() {
        assert!(line.ends_with(" unchanged"), "{again}");
    }
    let diff = k.run(&["diff", "-f", &file]);
    assert!(diff.ok, "kubectl diff finds nothing: {}", diff.stdout);
    let server_side = k.run(&["apply", "--server-side", "-f", &file]);
    assert!(server_side.ok, "{}", server_side.stderr);

    // Short names and what kubectl reads back.
    let class = k.json(&["get", "sc", "fast"]);
    assert_eq!(class["provisioner"], "example.com/fast");
    assert_eq!(class["parameters"]["tier"], "gold");
    let hpa = k.json(&["get", "hpa", "web"]);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
    let webhook = k.json(&["get", "validatingwebhookconfiguration", "policy"]);
    assert_eq!(webhook["metadata"]["generation"], 1, "{webhook}");
    let explained = k.ok(&["explain", "storageclass.provisioner"]);
    assert!(explained.contains("provisioner"), "{explained}");
    let resources = k.ok(&["api-resources", "--api-group=storage.k8s.io", "-o", "name"]);
    for name in [
        "storageclasses",
        "csidrivers",
        "csinodes",
        "volumeattachments",
    ] {
        assert!(
            resources.lines().any(|l| l.starts_with(name)),
            "{resources}"
        );
    }

    // Invalid objects are refused as Kubernetes refuses them.
    let bad = k.manifest(
        "bad.yaml",
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: Bad_Name}\nprovisioner: x\n",
    );
    let refused = k.run(&["apply", "-f", &bad]);
    assert!(
        !refused.ok && refused.stderr.contains("Invalid"),
        "{}",
        refused.stderr
    );

    let deleted = k.ok(&["delete", "-f", &file]);
    assert_eq!(deleted.lines().count(), 6, "{deleted}");
    Ok(())
}
