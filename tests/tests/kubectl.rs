//! The real kubectl against a 3-master keel, with nothing but the admin kubeconfig keel wrote:
//! discovery (from the aggregated documents alone), apply (create, then unchanged, then a
//! change), get in its output formats and with selectors, label/annotate/patch/scale, auth
//! can-i, delete, and bad manifests refused with kubectl's usual messages and nothing stored.

use std::time::{Duration, Instant};

use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};

const APP: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: web
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: web
  labels:
    app: web
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: busybox:1.36
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
";

/// The path of the request a `-v=6` log line reports, as in
/// `... GET https://127.0.0.1:6443/apis?timeout=32s 200 OK in 3 milliseconds`.
fn requested_path(line: &str) -> Option<&str> {
    let url = line.split_whitespace().skip_while(|w| *w != "GET").nth(1)?;
    let after_scheme = url.split_once("://")?.1;
    let path = &after_scheme[after_scheme.find('/')?..];
    path.split('?').next()
}

/// With an empty cache, kubectl learns every resource from the aggregated `/api` and `/apis`
/// alone and never asks for a group version's own resource list.
fn discovery_reads_only_the_aggregated_documents(k: &Kubectl) {
    let cache = k.dir.path().join("fresh-discovery-cache");
    let cache_dir = format!("--cache-dir={}", cache.display());
    let out = k.run(&["api-resources", "--no-headers", "-v=6", &cache_dir]);
    assert!(out.ok, "{}", out.stderr);
    let fetched: Vec<&str> = out.stderr.lines().filter_map(requested_path).collect();
    assert!(
        fetched.contains(&"/api") && fetched.contains(&"/apis"),
        "{fetched:?}\n{}",
        out.stderr
    );
    let per_group_version: Vec<&&str> = fetched
        .iter()
        .filter(|p| p.starts_with("/api/") || p.starts_with("/apis/"))
        .collect();
    assert!(
        per_group_version.is_empty(),
        "fetched {per_group_version:?} besides the aggregated documents"
    );

    let columns = |name: &str| -> Vec<String> {
        out.stdout
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|c| c.first().is_some_and(|n| n == name))
            .unwrap_or_default()
    };
    // NAME SHORTNAMES APIVERSION NAMESPACED KIND
    assert_eq!(columns("pods"), ["pods", "po", "v1", "true", "Pod"]);
    assert_eq!(
        columns("deployments"),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(
        columns("namespaces"),
        ["namespaces", "ns", "v1", "false", "Namespace"]
    );
    assert_eq!(
        columns("cronjobs"),
        ["cronjobs", "cj", "batch/v1", "true", "CronJob"]
    );
    assert_eq!(
        columns("selfsubjectaccessreviews"),
        [
            "selfsubjectaccessreviews",
            "authorization.k8s.io/v1",
            "false",
            "SelfSubjectAccessReview"
        ]
    );
    // The legacy lists are still served to whoever asks for them.
    let apps = k.ok(&["get", "--raw", "/apis/apps/v1", &cache_dir]);
    assert!(apps.contains("deployments/scale"), "{apps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_works_with_the_admin_kubeconfig() -> anyhow::Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    let k = tokio::task::block_in_place(|| -> anyhow::Result<Kubectl> {
        // Discovery.
        let version = k.json(&["version"]);
        assert_eq!(version["serverVersion"]["major"], "1", "{version}");
        assert_eq!(version["serverVersion"]["minor"], "32", "{version}");
        discovery_reads_only_the_aggregated_documents(&k);
        let resources = k.ok(&["api-resources", "--no-headers"]);
        for want in ["pods", "deployments", "configmaps", "rolebindings"] {
            assert!(
                resources.lines().any(|l| l.starts_with(want)),
                "{want} missing from api-resources:\n{resources}"
            );
        }
        let namespaces = k.ok(&["get", "namespaces", "-o", "name"]);
        assert!(namespaces.contains("namespace/default"), "{namespaces}");
        assert!(namespaces.contains("namespace/kube-system"), "{namespaces}");

        // apply: created, then unchanged.
        let file = k.manifest("app.yaml", APP);
        let first = k.ok(&["apply", "-f", &file]);
        for line in [
            "namespace/web created",
            "configmap/web-config created",
            "deployment.apps/web created",
            "service/web created",
        ] {
            assert!(first.contains(line), "{first}");
        }
        let again = k.ok(&["apply", "-f", &file]);
        assert!(
            again.lines().all(|l| l.ends_with("unchanged")),
            "re-apply is a no-op:\n{again}"
        );
        // A changed manifest is patched in.
        let changed = k.manifest("app2.yaml", &APP.replace("greeting: hello", "greeting: hi"));
        let patched = k.ok(&["apply", "-f", &changed]);
        assert!(
            patched.contains("configmap/web-config configured"),
            "{patched}"
        );
        let cm = k.json(&["get", "configmap", "web-config", "-n", "web"]);
        assert_eq!(cm["data"]["greeting"], "hi");

        // get in its formats, with selectors.
        let names = k.ok(&[
            "get",
            "deploy",
            "-n",
            "web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        assert_eq!(names, "web");
        let by_label = k.ok(&["get", "cm", "-n", "web", "-l", "app=web", "-o", "name"]);
        assert_eq!(by_label.trim(), "configmap/web-config");
        let none = k.ok(&["get", "cm", "-n", "web", "-l", "app=other", "-o", "name"]);
        assert_eq!(none.trim(), "");
        let yaml = k.ok(&["get", "svc", "web", "-n", "web", "-o", "yaml"]);
        assert!(yaml.contains("targetPort: 8080"), "{yaml}");
        let table = k.ok(&["get", "deploy", "-n", "web"]);
        assert!(table.starts_with("NAME"), "{table}");
        assert!(table.contains("READY"), "{table}");

        // label / annotate / patch / scale.
        k.ok(&["label", "cm", "web-config", "-n", "web", "tier=front"]);
        k.ok(&["annotate", "cm", "web-config", "-n", "web", "owner=team-a"]);
        k.ok(&[
            "patch",
            "cm",
            "web-config",
            "-n",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"extra":"1"}}"#,
        ]);
        let cm = k.json(&["get", "cm", "web-config", "-n", "web"]);
        assert_eq!(cm["metadata"]["labels"]["tier"], "front");
        assert_eq!(cm["metadata"]["annotations"]["owner"], "team-a");
        assert_eq!(cm["data"]["extra"], "1");
        k.ok(&["scale", "deployment", "web", "-n", "web", "--replicas=3"]);
        let deploy = k.json(&["get", "deploy", "web", "-n", "web"]);
        assert_eq!(deploy["spec"]["replicas"], 3);
        assert_eq!(
            deploy["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%",
            "defaulted"
        );

        // auth can-i as the admin.
        assert_eq!(k.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");

        // Bad manifests: refused as Kubernetes refuses them, nothing stored.
        let bad_name = k.manifest(
            "bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n  namespace: web\n",
        );
        let refused = k.run(&["apply", "-f", &bad_name]);
        assert!(!refused.ok);
        assert!(
            refused.stderr.contains("is invalid") && refused.stderr.contains("metadata.name"),
            "{}",
            refused.stderr
        );
        let unknown = k.manifest(
            "unknown.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\n  namespace: web\nbogus: 1\n",
        );
        let strict = k.run(&["apply", "--validate=strict", "-f", &unknown]);
        assert!(!strict.ok);
        assert!(strict.stderr.contains("unknown field"), "{}", strict.stderr);
        let bad_label = k.run(&["label", "cm", "web-config", "-n", "web", "bad label=x"]);
        assert!(!bad_label.ok);
        let cms = k.ok(&["get", "cm", "-n", "web", "-o", "name"]);
        assert!(
            !cms.contains("strict") && !cms.to_lowercase().contains("bad_name"),
            "{cms}"
        );

        // delete: the namespace comes first in the file, and its termination may remove the
        // rest before kubectl reaches it.
        let deleted = k.ok(&["delete", "-f", &file, "--ignore-not-found"]);
        assert!(deleted.contains("namespace \"web\" deleted"), "{deleted}");
        Ok(k)
    })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = k.run(&["get", "namespace", "web"]);
        if !out.ok && out.stderr.contains("NotFound") {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "namespace web never went: {}",
            out.stdout
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
