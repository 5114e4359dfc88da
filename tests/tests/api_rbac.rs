//! Authentication and RBAC on a real keel (`--token-auth-file`, `--authorization-mode=RBAC`):
//! unknown tokens get 401, anything not granted gets 403 with Kubernetes' message, and Roles,
//! ClusterRoles and bindings grant exactly what they say, as soon as they are written.

use std::time::{Duration, Instant};

use keel_proto::keelapi::api_client::ApiClient;
use keel_proto::keelapi::{CreateRequest, GetRequest, ListRequest, ResourceRef};
use keel_tests::{Cluster, Flavor};
use serde_json::{json, Value};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Authed = ApiClient<InterceptedService<Channel, Bearer>>;

async fn as_user(cluster: &Cluster, token: Option<&str>) -> anyhow::Result<Authed> {
    let channel = cluster.channel(0).await?;
    let header = token.map(|t| format!("Bearer {t}").parse()).transpose()?;
    Ok(ApiClient::with_interceptor(channel, Bearer(header)))
}

fn reference(group: &str, resource: &str, namespace: &str, name: &str) -> Option<ResourceRef> {
    Some(ResourceRef {
        group: group.into(),
        version: "v1".into(),
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        subresource: String::new(),
    })
}

fn status_of(e: &tonic::Status) -> Value {
    serde_json::from_slice(e.details()).unwrap_or(Value::Null)
}

async fn list(api: &mut Authed, resource: &str, namespace: &str) -> Result<(), Value> {
    api.list(ListRequest {
        r#ref: reference("", resource, namespace, ""),
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| status_of(&e))
}

async fn create(
    api: &mut Authed,
    group: &str,
    resource: &str,
    namespace: &str,
    object: Value,
) -> anyhow::Result<()> {
    api.create(CreateRequest {
        r#ref: reference(group, resource, namespace, ""),
        object: serde_json::to_vec(&object)?,
        options: None,
    })
    .await?;
    Ok(())
}

/// Authorization follows the cache: wait (briefly) until `check` passes.
async fn eventually<F, Fut>(mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        anyhow::ensure!(Instant::now() < deadline, "grant never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_grants_exactly_what_bindings_say() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "admin-token,admin,1,\"system:masters\"\nalice-token,alice,2\nbob-token,bob,3\n",
    )?;
    let cluster = Cluster::start_with(
        Flavor::Keel,
        1,
        &[
            format!("--token-auth-file={}", tokens.display()),
            "--authorization-mode=RBAC".to_string(),
        ],
    )
    .await?;
    let mut admin = as_user(&cluster, Some("admin-token")).await?;
    let mut alice = as_user(&cluster, Some("alice-token")).await?;
    let mut bob = as_user(&cluster, Some("bob-token")).await?;
    let mut anonymous = as_user(&cluster, None).await?;
    let mut forged = as_user(&cluster, Some("forged")).await?;

    // The admin (system:masters) may do anything once the namespaces exist.
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin
        .get(GetRequest {
            r#ref: reference("", "namespaces", "", "default"),
            ..Default::default()
        })
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "no default namespace");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let unknown = list(&mut forged, "pods", "default").await.expect_err("401");
    assert_eq!(unknown["code"], 401);
    let anon = list(&mut anonymous, "pods", "default")
        .await
        .expect_err("403");
    assert_eq!(anon["code"], 403);
    assert_eq!(anon["reason"], "Forbidden");
    assert_eq!(
        anon["message"],
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    let denied = list(&mut alice, "pods", "default")
        .await
        .expect_err("no grant yet");
    assert_eq!(denied["code"], 403);

    // A Role and RoleBinding let alice read pods in default, and nothing else.
    create(&mut admin, "rbac.authorization.k8s.io", "roles", "default", json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    })).await?;
    create(&mut admin, "rbac.authorization.k8s.io", "rolebindings", "default", json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-reads-pods"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "Role", "name": "pod-reader", "apiGroup": "rbac.authorization.k8s.io"},
    })).await?;
    eventually(|| {
        let mut a = alice.clone();
        async move { list(&mut a, "pods", "default").await.is_ok() }
    })
    .await?;
    let other_ns = list(&mut alice, "pods", "kube-system")
        .await
        .expect_err("other namespace");
    assert_eq!(
        other_ns["message"],
        "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""
    );
    let write = create(
        &mut alice,
        "",
        "configmaps",
        "default",
        json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
    )
    .await;
    assert!(write.is_err(), "alice may not create");
    assert!(
        list(&mut bob, "pods", "default").await.is_err(),
        "bob has no grant"
    );

    // The bootstrap ClusterRole "view", bound cluster-wide: bob reads configmaps everywhere but
    // not secrets, and writes nothing.
    create(&mut admin, "rbac.authorization.k8s.io", "clusterrolebindings", "", json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "bob-views"},
        "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "ClusterRole", "name": "view", "apiGroup": "rbac.authorization.k8s.io"},
    })).await?;
    eventually(|| {
        let mut b = bob.clone();
        async move { list(&mut b, "configmaps", "kube-system").await.is_ok() }
    })
    .await?;
    let secrets = list(&mut bob, "secrets", "default")
        .await
        .expect_err("view hides secrets");
    assert_eq!(secrets["code"], 403);
    let bob_write = create(
        &mut bob,
        "",
        "configmaps",
        "default",
        json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}),
    )
    .await;
    assert!(bob_write.is_err(), "view is read-only");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_authenticate_until_the_account_goes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "admin-token,admin,1,\"system:masters\"\n")?;
    let cluster = Cluster::start_with(
        Flavor::Keel,
        1,
        &[
            format!("--token-auth-file={}", tokens.display()),
            "--authorization-mode=RBAC".to_string(),
        ],
    )
    .await?;
    let mut admin = as_user(&cluster, Some("admin-token")).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin
        .get(GetRequest {
            r#ref: reference("", "namespaces", "", "default"),
            ..Default::default()
        })
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "no default namespace");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    create(
        &mut admin,
        "",
        "serviceaccounts",
        "default",
        json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}),
    )
    .await?;

    // The token endpoint may briefly be unready while the master loads the signing key.
    let request_for = |name: &str, spec: Value| CreateRequest {
        r#ref: Some(ResourceRef {
            version: "v1".into(),
            resource: "serviceaccounts".into(),
            namespace: "default".into(),
            name: name.into(),
            subresource: "token".into(),
            ..Default::default()
        }),
        object: serde_json::to_vec(&json!({"apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest", "spec": spec}))
        .unwrap_or_default(),
        options: None,
    };
    let request = |name: &str| request_for(name, json!({"expirationSeconds": 3600}));
    let review = loop {
        match admin.create(request("robot")).await {
            Ok(r) => break serde_json::from_slice::<Value>(&r.into_inner().object)?,
            Err(e) if Instant::now() < deadline && e.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => anyhow::bail!("token request: {e}"),
        }
    };
    assert_eq!(review["kind"], "TokenRequest");
    assert_eq!(
        review["spec"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"]),
        "a token asked for without audiences is for the API server"
    );
    let token = review["status"]["token"].as_str().unwrap_or("").to_string();
    // A token minted for another audience is that audience's, not a credential here.
    let for_vault: Value = serde_json::from_slice(
        &admin
            .create(request_for("robot", json!({"audiences": ["vault"]})))
            .await?
            .into_inner()
            .object,
    )?;
    let vault_token = for_vault["status"]["token"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut vault = as_user(&cluster, Some(&vault_token)).await?;
    let refused = list(&mut vault, "pods", "default")
        .await
        .expect_err("a vault token is not an API credential");
    assert_eq!(refused["code"], 401, "{refused}");
    assert_eq!(token.split('.').count(), 3, "a JWT: {review}");
    let missing = admin
        .create(request("nobody"))
        .await
        .expect_err("no such account");
    assert_eq!(status_of(&missing)["code"], 404);

    let mut robot = as_user(&cluster, Some(&token)).await?;
    let denied = list(&mut robot, "pods", "default")
        .await
        .expect_err("no grant yet");
    assert_eq!(
        denied["message"],
        "pods is forbidden: User \"system:serviceaccount:default:robot\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    create(&mut admin, "rbac.authorization.k8s.io", "rolebindings", "default", json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "robot-views"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}],
        "roleRef": {"kind": "ClusterRole", "name": "view", "apiGroup": "rbac.authorization.k8s.io"},
    })).await?;
    eventually(|| {
        let mut r = robot.clone();
        async move { list(&mut r, "pods", "default").await.is_ok() }
    })
    .await?;

    // A deleted account's tokens stop working.
    admin
        .delete(keel_proto::keelapi::DeleteRequest {
            r#ref: reference("", "serviceaccounts", "default", "robot"),
            ..Default::default()
        })
        .await?;
    eventually(|| {
        let mut r = robot.clone();
        async move {
            list(&mut r, "pods", "default")
                .await
                .is_err_and(|s| s["code"] == 401)
        }
    })
    .await?;
    Ok(())
}
