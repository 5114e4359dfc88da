//! Manifests the end-to-end tests over real agents share: a Deployment of HTTP servers that
//! answer with their pod's hostname, a pod with the same label whose readiness never passes, a
//! client pod to fetch from, and a NodePort Service in front of the servers; and fetching a URL
//! from inside a pod. Each function gives one YAML document; join them with [`join`].

use keel_agent::image::BUSYBOX_IMAGE;

use crate::kubectl::Kubectl;

/// The servers' command: busybox httpd serving a page that holds the pod's hostname.
const SERVE_HOSTNAME: &str =
    "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www";

/// Where a pod goes: its namespace and, optionally, the node it must run on.
#[derive(Debug, Clone, Copy)]
pub struct Spot<'a> {
    pub namespace: &'a str,
    pub node: Option<&'a str>,
}

impl<'a> Spot<'a> {
    /// Any node in `namespace`.
    pub fn anywhere(namespace: &'a str) -> Self {
        Spot {
            namespace,
            node: None,
        }
    }

    /// Node `node` in `namespace`.
    pub fn on(namespace: &'a str, node: &'a str) -> Self {
        Spot {
            namespace,
            node: Some(node),
        }
    }

    /// The pod spec's nodeSelector line at `indent`, if a node is named.
    fn node_selector(&self, indent: usize) -> String {
        self.node
            .map(|node| {
                format!(
                    "{:indent$}nodeSelector: {{kubernetes.io/hostname: {node}}}\n",
                    ""
                )
            })
            .unwrap_or_default()
    }
}

/// YAML documents as one multi-document file.
pub fn join(documents: &[String]) -> String {
    documents.join("---\n")
}

/// A Namespace.
pub fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
}

/// Deployment `web` (label app=web): HTTP servers on the port named `http` (8080), ready once
/// they serve their page.
pub fn web_deployment(spot: Spot<'_>, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
{selector}      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {BUSYBOX_IMAGE}
          command: [sh, -c, '{SERVE_HOSTNAME}']
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe:
            httpGet: {{path: /index.html, port: 8080}}
            periodSeconds: 1
"#,
        namespace = spot.namespace,
        selector = spot.node_selector(6),
    )
}

/// Pod `unready`: the same server with the same label and named port, whose readiness probe
/// always fails, so that only a proxy that honours readiness keeps it out.
pub fn unready_web_pod(spot: Spot<'_>) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: unready, namespace: {namespace}, labels: {{app: web}}}}
spec:
{selector}  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: {BUSYBOX_IMAGE}
      command: [sh, -c, '{SERVE_HOSTNAME}']
      ports: [{{name: http, containerPort: 8080}}]
      readinessProbe:
        exec: {{command: ['false']}}
        periodSeconds: 1
"#,
        namespace = spot.namespace,
        selector = spot.node_selector(2),
    )
}

/// Pod `client`, which sleeps: the place requests are made from.
pub fn client_pod(spot: Spot<'_>) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {namespace}}}
spec:
{selector}  terminationGracePeriodSeconds: 1
  containers:
    - name: client
      image: {BUSYBOX_IMAGE}
      command: [sleep, '3600']
"#,
        namespace = spot.namespace,
        selector = spot.node_selector(2),
    )
}

/// Service `web`: NodePort, port 80 to the pods' port named `http`.
pub fn web_service(namespace: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    )
}

/// `wget` of `url` from inside pod `pod`: the body, trimmed, or None if it failed.
pub fn fetch_from_pod(kubectl: &Kubectl, namespace: &str, pod: &str, url: &str) -> Option<String> {
    // (Debian's static busybox wget crashes with -T: busybox timeout bounds it instead.)
    let out = kubectl.run(&[
        "-n", namespace, "exec", pod, "--", "timeout", "5", "wget", "-qO-", url,
    ]);
    out.ok.then(|| out.stdout.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_node_becomes_a_node_selector_at_the_pod_spec_s_indent() {
        let pinned = web_deployment(Spot::on("shop", "agent-2"), 1);
        assert!(pinned.contains(
            "    spec:\n      nodeSelector: {kubernetes.io/hostname: agent-2}\n      terminationGracePeriodSeconds: 1\n"
        ));
        assert!(pinned.contains("metadata: {name: web, namespace: shop}\n"));
        let pod = unready_web_pod(Spot::on("shop", "agent-1"));
        assert!(pod.contains(
            "spec:\n  nodeSelector: {kubernetes.io/hostname: agent-1}\n  terminationGracePeriodSeconds: 1\n"
        ));
        let free = client_pod(Spot::anywhere("default"));
        assert!(!free.contains("nodeSelector"));
        assert!(free.contains("spec:\n  terminationGracePeriodSeconds: 1\n"));
        let file = join(&[namespace("shop"), web_service("shop")]);
        assert_eq!(file.matches("\n---\n").count(), 1);
    }
}
