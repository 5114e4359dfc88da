//! etcd's auth on a keel control plane's store: the operator turns it on with etcdctl through
//! the store's client certificate (whose common name, `root`, is the user a call without a
//! token acts as), the masters' own API server keeps working as `root`, and a user without
//! permissions reads nothing, even holding a valid client certificate.

use anyhow::{ensure, Result};
use keel_tests::etcdctl::etcdctl;
use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};

fn run(cluster: &Cluster, args: &[&str]) -> Result<keel_tests::etcdctl::Output> {
    let member = &cluster.members[0];
    let mut all = member.etcdctl_flags();
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    etcdctl(&[member.client_url()], &all, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_on_a_control_planes_store_keeps_the_api_working_and_refuses_others() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let kubectl = Kubectl::for_cluster(&cluster).await?;
    kubectl.ok(&["create", "configmap", "before", "--from-literal=a=b"]);
    for step in [
        &["user", "add", "root:rootpw"][..],
        &["auth", "enable"],
        &["user", "add", "bob:bobpw"],
    ] {
        let out = run(&cluster, step)?;
        ensure!(out.status == 0, "etcdctl {step:?}: {}", out.stderr);
    }

    // The API server reaches its store as root by its certificate.
    kubectl.ok(&["create", "configmap", "after", "--from-literal=a=b"]);
    kubectl.ok(&["get", "configmap", "before", "after"]);

    // So does the operator's etcdctl, by certificate or by password.
    let key = "/registry/configmaps/default/after";
    let by_certificate = run(&cluster, &["get", key, "--keys-only"])?;
    assert_eq!(by_certificate.status, 0, "{}", by_certificate.stderr);
    assert!(by_certificate.stdout.contains(key));
    let by_password = run(&cluster, &["--user=root:rootpw", "get", key, "--keys-only"])?;
    assert_eq!(by_password.status, 0, "{}", by_password.stderr);

    // A user with no role reads and writes nothing, and cannot manage auth.
    for step in [
        &["--user=bob:bobpw", "get", key][..],
        &["--user=bob:bobpw", "put", "/registry/x", "y"],
        &["--user=bob:bobpw", "user", "list"],
    ] {
        let out = run(&cluster, step)?;
        assert_ne!(out.status, 0, "{step:?}: {}", out.stdout);
        assert!(
            out.stderr.contains("etcdserver: permission denied"),
            "{step:?}: {}",
            out.stderr
        );
    }
    let wrong = run(&cluster, &["--user=bob:nope", "get", key])?;
    assert!(
        wrong
            .stderr
            .contains("authentication failed, invalid user ID or password"),
        "{}",
        wrong.stderr
    );
    Ok(())
}
