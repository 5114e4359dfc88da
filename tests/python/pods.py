"""Pods through the official Kubernetes Python client: create, list, patch, watch, delete.

Usage: pods.py <kubeconfig> <namespace>. Prints one line per step; the Rust test that runs it
checks them.
"""

import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def main():
    kubeconfig, namespace = sys.argv[1], sys.argv[2]
    config.load_kube_config(config_file=kubeconfig)
    v1 = client.CoreV1Api()

    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="py-pod", labels={"app": "py"}),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="busybox:1.36", command=["sleep", "60"])]
        ),
    )
    created = v1.create_namespaced_pod(namespace, pod)
    print(f"created {created.metadata.name} uid={bool(created.metadata.uid)}")

    listed = v1.list_namespaced_pod(namespace, label_selector="app=py")
    print(f"listed {[p.metadata.name for p in listed.items]}")

    events = []
    started = threading.Event()

    def watch_pods():
        w = watch.Watch()
        stream = w.stream(
            v1.list_namespaced_pod,
            namespace,
            label_selector="app=py",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=30,
        )
        started.set()
        for event in stream:
            events.append((event["type"], event["object"].metadata.labels.get("tier", "")))
            if event["type"] == "DELETED":
                w.stop()

    watcher = threading.Thread(target=watch_pods)
    watcher.start()
    started.wait(10)

    patched = v1.patch_namespaced_pod("py-pod", namespace, {"metadata": {"labels": {"tier": "backend"}}})
    print(f"patched tier={patched.metadata.labels['tier']}")

    v1.delete_namespaced_pod("py-pod", namespace)
    print("deleted py-pod")
    watcher.join(40)
    print("watched " + ",".join(f"{kind}:{tier}" for kind, tier in events))

    try:
        v1.read_namespaced_pod("py-pod", namespace)
        print("still there")
    except ApiException as e:
        print(f"read after delete: {e.status} {e.reason}")


if __name__ == "__main__":
    main()
