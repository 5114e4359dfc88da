//! The SDK reaches a master as kubectl does: from the admin kubeconfig the master wrote, over
//! its HTTPS port, where gRPC and REST share one listener. With RBAC and no anonymous access,
//! the kubeconfig's token and client certificates authenticate gRPC calls as they do REST
//! requests, wrong or ungranted credentials are refused, and kubectl on the same port works on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::api::WatchEvent;
use keel_client::kubeconfig::ClientCertificate;
use keel_client::{Api, Client, Error, Kubeconfig, ListParams, WatchParams};
use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
};

fn cm(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), value.to_string())])),
        ..Default::default()
    }
}

fn value_of(cm: &ConfigMap) -> Option<&str> {
    cm.data.as_ref()?.get("k").map(String::as_str)
}

/// The admin kubeconfig, once the master has written it.
async fn admin_kubeconfig(cluster: &Cluster) -> anyhow::Result<PathBuf> {
    let path = cluster.members[0].kubeconfig();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        anyhow::ensure!(Instant::now() < deadline, "no kubeconfig written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(path)
}

/// The cluster's CA certificate and key, as a master keeps them in its data dir (the store
/// holds the key sealed).
async fn cluster_ca(cluster: &Cluster) -> anyhow::Result<(String, String)> {
    let cert = cluster.ca_file()?;
    let key = cert.with_file_name("ca.key");
    Ok((
        std::fs::read_to_string(&cert)?,
        std::fs::read_to_string(&key)?,
    ))
}

/// A client certificate for `user` in `group`, signed by the cluster's CA.
fn client_certificate(
    ca: &(String, String),
    user: &str,
    group: &str,
) -> anyhow::Result<ClientCertificate> {
    let issuer = Issuer::from_ca_cert_pem(&ca.0, KeyPair::from_pem(&ca.1)?)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, user);
    dn.push(DnType::OrganizationName, group);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(1);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ClientCertificate {
        cert_pem: cert.pem().into_bytes(),
        key_pem: key.serialize_pem().into_bytes(),
    })
}

/// Retries `create` while the master is still bootstrapping (namespaces, RBAC policy).
async fn create_when_ready(api: &Api<ConfigMap>, object: &ConfigMap) -> anyhow::Result<ConfigMap> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match api.create(object).await {
            Ok(created) => return Ok(created),
            Err(e) if Instant::now() < deadline => {
                eprintln!("not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn list_error(client: Client) -> Option<Error> {
    Api::<ConfigMap>::namespaced(client, "default")
        .list(&ListParams::default())
        .await
        .err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_uses_the_admin_kubeconfig_over_the_https_port_beside_kubectl() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "bob-token,bob,3\n")?;
    let cluster = Cluster::start_with(
        Flavor::Keel,
        1,
        &[
            "--authorization-mode=RBAC".to_string(),
            "--anonymous-auth=false".to_string(),
            format!("--token-auth-file={}", tokens.display()),
        ],
    )
    .await?;
    let path = admin_kubeconfig(&cluster).await?;
    let admin = Kubeconfig::read(&path)?;
    assert_eq!(
        admin.server,
        format!("https://127.0.0.1:{}", cluster.members[0].rest_port),
        "the kubeconfig names the HTTPS port, not the store's client port"
    );

    // The admin's client lists, creates, gets and watches over TLS.
    let client = Client::from_kubeconfig(&path)?;
    let cms = Api::<ConfigMap>::namespaced(client, "default");
    let created = create_when_ready(&cms, &cm("from-sdk", "1")).await?;
    let rv = created
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    assert!(rv.parse::<i64>().is_ok_and(|r| r > 0), "{created:?}");
    let listed = cms.list(&ListParams::default()).await?;
    let names: Vec<_> = listed
        .items
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    assert!(names.contains(&"from-sdk"), "{names:?}");

    // Only the ConfigMap this test makes (the controller manager publishes the root CA in
    // every namespace meanwhile).
    let only_ours = WatchParams {
        field_selector: "metadata.name=watched".into(),
        ..Default::default()
    };
    let mut events = cms.watch(&only_ours, &rv).await?;
    cms.create(&cm("watched", "2")).await?;
    let event = tokio::time::timeout(Duration::from_secs(10), events.next()).await?;
    match event {
        Some(Ok(WatchEvent::Added(cm))) => {
            assert_eq!(cm.metadata.name.as_deref(), Some("watched"));
            assert_eq!(value_of(&cm), Some("2"));
        }
        other => panic!("expected the Added event, got {other:?}"),
    }

    // kubectl, on the same port, sees what the SDK wrote and writes what the SDK reads.
    let kubectl = Kubectl::for_cluster(&cluster).await?;
    let (shown, made) = tokio::task::block_in_place(|| {
        (
            kubectl.json(&["get", "configmap", "from-sdk", "-n", "default"]),
            kubectl.ok(&[
                "create",
                "configmap",
                "from-kubectl",
                "--from-literal=k=3",
                "-n",
                "default",
            ]),
        )
    });
    assert_eq!(shown["data"]["k"], "1", "{shown}");
    assert!(made.contains("from-kubectl"), "{made}");
    let read = cms.get("from-kubectl").await?;
    assert_eq!(value_of(&read), Some("3"));

    // A wrong token is refused as unauthenticated.
    let mut wrong = admin.clone();
    wrong.token = Some("not-the-token".into());
    let refused = list_error(Client::from_config(&wrong)?).await;
    let status = match refused {
        Some(Error::Api(status)) => status,
        other => panic!("expected 401, got {other:?}"),
    };
    assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"));

    // No credentials at all: anonymous access is off.
    let mut anonymous = admin.clone();
    anonymous.token = None;
    let refused = list_error(Client::from_config(&anonymous)?).await;
    assert_eq!(refused.and_then(|e| e.code()), Some(401));

    // A known user RBAC grants nothing to is forbidden, by name.
    let mut bob = admin.clone();
    bob.token = Some("bob-token".into());
    let status = match list_error(Client::from_config(&bob)?).await {
        Some(Error::Api(status)) => status,
        other => panic!("expected 403, got {other:?}"),
    };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert!(status.message.contains("\"bob\""), "{}", status.message);

    // Client certificates from the cluster's CA authenticate gRPC calls as their subject.
    let ca = cluster_ca(&cluster).await?;
    let mut alice = admin.clone();
    alice.token = None;
    alice.client_certificate = Some(client_certificate(&ca, "alice", "dev")?);
    let status = match list_error(Client::from_config(&alice)?).await {
        Some(Error::Api(status)) => status,
        other => panic!("expected 403 for alice, got {other:?}"),
    };
    assert_eq!(status.code, 403);
    assert!(status.message.contains("\"alice\""), "{}", status.message);
    let mut root = admin.clone();
    root.token = None;
    root.client_certificate = Some(client_certificate(&ca, "root", "system:masters")?);
    assert!(list_error(Client::from_config(&root)?).await.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_open_on_the_https_port_does_not_hold_up_shutdown() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(Flavor::Keel, 1).await?;
    let path = admin_kubeconfig(&cluster).await?;
    let cms = Api::<ConfigMap>::namespaced(Client::from_kubeconfig(&path)?, "default");
    let created = create_when_ready(&cms, &cm("before", "1")).await?;
    let rv = created.metadata.resource_version.unwrap_or_default();
    let mut events = cms.watch(&WatchParams::default(), &rv).await?;
    cms.create(&cm("seen", "2")).await?;
    let first = tokio::time::timeout(Duration::from_secs(10), events.next()).await?;
    assert!(matches!(first, Some(Ok(WatchEvent::Added(_)))), "{first:?}");

    cluster.terminate(0)?;
    let status = cluster.wait_exit(0, Duration::from_secs(20)).await?;
    assert!(status.success(), "{status}");
    drop(events);
    Ok(())
}
