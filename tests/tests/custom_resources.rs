//! CustomResourceDefinitions through the real kubectl and the Rust SDK: a definition with a
//! structural schema, defaults, a CEL rule, a status subresource and printer columns serves
//! its kind (discovery, `kubectl get` with its columns, `explain`, watch, server-side apply);
//! objects are pruned, defaulted and refused with Kubernetes' field paths; a controller
//! written with the SDK reconciles the kind; deleting the definition deletes its objects
//! (and no object is created while it terminates); server-side apply merges lists as their
//! list types say; a default added to a definition shows on objects stored before it; the
//! OpenAPI v2 document carries custom and built-in kinds. Each check is what kubectl shows
//! against Kubernetes 1.32.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use keel_client::runtime::{Action, Controller};
use keel_client::{Api, DynamicObject, Error, Patch, WatchParams};
use keel_tests::kubectl::api_only_cluster;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const DEFINITION: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Ready, type: boolean, jsonPath: .status.ready}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [size]
            x-kubernetes-validations:
            - rule: self.size <= self.maxSize
              message: size may not exceed maxSize
            properties:
              size:
                type: integer
                minimum: 1
                description: How many parts the widget has.
              maxSize: {type: integer, default: 10}
              color: {type: string, enum: [red, blue], default: red}
              tags:
                type: array
                items: {type: string}
          status:
            type: object
            properties:
              ready: {type: boolean}
              observedSize: {type: integer}
";

const WIDGET: &str = "apiVersion: example.com/v1
kind: Widget
metadata:
  name: small
spec:
  size: 3
";

async fn until(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        anyhow::ensure!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_serves_its_kind_as_kubernetes_does() -> anyhow::Result<()> {
    let (_cluster, k) = api_only_cluster().await?;
    let definition = k.manifest("crd.yaml", DEFINITION);
    k.ok(&["apply", "-f", &definition]);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
    let crd = k.json(&["get", "crd", "widgets.example.com"]);
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget", "{crd}");
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    let resources = k.ok(&["api-resources", "--api-group=example.com"]);
    assert!(
        resources.contains("widgets") && resources.contains("wd"),
        "{resources}"
    );

    // A valid object: defaults filled, stored, shown with the definition's columns (also
    // under its short name and its category).
    let widget = k.manifest("widget.yaml", WIDGET);
    k.ok(&["apply", "-f", &widget]);
    let small = k.json(&["get", "widget", "small"]);
    assert_eq!(
        small["spec"],
        json!({"size": 3, "maxSize": 10, "color": "red"})
    );
    assert_eq!(small["metadata"]["generation"], 1);
    let table = k.ok(&["get", "wd"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "COLOR", "READY"], "{table}");
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(row, ["small", "3", "red"], "{table}");
    assert!(k.ok(&["get", "all"]).contains("widget.example.com/small"));
    let again = k.ok(&["apply", "-f", &widget]);
    assert!(
        again.contains("widget.example.com/small unchanged"),
        "{again}"
    );
    assert!(k.run(&["diff", "-f", &widget]).ok, "diff exits 0");

    // Unknown fields: refused under kubectl's default strict validation, pruned otherwise.
    let extra = k.manifest(
        "extra.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: extra}\nspec: {size: 2, shiny: true}\n",
    );
    let strict = k.fails(&["apply", "-f", &extra]);
    assert!(strict.contains("unknown field \"spec.shiny\""), "{strict}");
    k.ok(&["apply", "--validate=false", "-f", &extra]);
    let pruned = k.json(&["get", "widget", "extra"]);
    assert_eq!(pruned["spec"].get("shiny"), None, "{pruned}");

    // Invalid objects: 422 with Kubernetes' field paths, from the schema and the CEL rule.
    let bad = k.manifest(
        "bad.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {size: 0, color: pink, tags: oops}\n",
    );
    let refused = k.fails(&["apply", "-f", &bad]);
    for expected in [
        "The Widget \"bad\" is invalid",
        "spec.color: Unsupported value: \"pink\": supported values: \"red\", \"blue\"",
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
        "spec.tags: Invalid value: \"string\": spec.tags in body must be of type array: \"string\"",
    ] {
        assert!(refused.contains(expected), "{expected}\n{refused}");
    }
    let too_big = k.manifest(
        "big.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: big}\nspec: {size: 12}\n",
    );
    let rule = k.fails(&["apply", "-f", &too_big]);
    assert!(
        rule.contains("spec: Invalid value: \"object\": size may not exceed maxSize"),
        "{rule}"
    );
    let empty = k.manifest(
        "empty.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: empty}\nspec: {color: blue}\n",
    );
    let required = k.fails(&["apply", "--dry-run=server", "-f", &empty]);
    assert!(required.contains("spec.size: Required value"), "{required}");

    // The status subresource: status only through it, spec never through it.
    k.ok(&[
        "patch",
        "widget",
        "small",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true}}"#,
    ]);
    k.ok(&[
        "patch",
        "widget",
        "small",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":4},"status":{"ready":false}}"#,
    ]);
    let patched = k.json(&["get", "widget", "small"]);
    assert_eq!(patched["status"]["ready"], true, "{patched}");
    assert_eq!(patched["spec"]["size"], 4);
    assert_eq!(patched["metadata"]["generation"], 2);
    let row = k.ok(&["get", "wd", "small", "--no-headers"]);
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["small", "4", "red", "true"]
    );

    // kubectl explain reads the definition's schema.
    let explained = k.ok(&["explain", "widget.spec.size"]);
    assert!(
        explained.contains("How many parts the widget has."),
        "{explained}"
    );
    assert!(explained.contains("<integer>"), "{explained}");

    // Watch: a change shows as an event.
    let watch = k
        .command(&[
            "get",
            "widgets",
            "--watch-only",
            "--output-watch-events",
            "-o",
            "name",
            "--request-timeout=8s",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    k.ok(&[
        "patch",
        "widget",
        "small",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ]);
    let output = tokio::task::spawn_blocking(move || watch.wait_with_output()).await??;
    let events = String::from_utf8_lossy(&output.stdout);
    // With --watch-only, only the change is printed.
    assert_eq!(events.trim(), "widget.example.com/small", "{events}");

    // Server-side apply: fields have managers, and another manager's change conflicts.
    let ssa = k.manifest(
        "ssa.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: applied}\nspec: {size: 2, tags: [a]}\n",
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=first",
        "-f",
        &ssa,
    ]);
    let other = k.manifest(
        "other.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: applied}\nspec: {size: 3}\n",
    );
    let conflict = k.fails(&[
        "apply",
        "--server-side",
        "--field-manager=second",
        "-f",
        &other,
    ]);
    assert!(
        conflict.contains("conflict") && conflict.contains(".spec.size"),
        "{conflict}"
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=second",
        "-f",
        &other,
    ]);
    let applied = k.json(&["get", "widget", "applied"]);
    assert_eq!(applied["spec"]["size"], 3);
    assert_eq!(
        applied["spec"]["tags"],
        json!(["a"]),
        "first still owns its tags"
    );

    // Deleting the definition: objects held by a finalizer keep it Terminating, and no new
    // object may be created meanwhile; once they go, so does the definition, with every
    // object of the kind.
    k.ok(&[
        "patch",
        "widget",
        "extra",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    k.ok(&["delete", "crd", "widgets.example.com", "--wait=false"]);
    until("the definition terminating", || {
        let crd = k.json(&["get", "crd", "widgets.example.com"]);
        crd["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Terminating" && c["status"] == "True")
    })
    .await?;
    until("every unheld widget deleted", || {
        k.ok(&["get", "widgets", "-o", "name"]).trim() == "widget.example.com/extra"
    })
    .await?;
    let late = k.manifest(
        "late.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: late}\nspec: {size: 1}\n",
    );
    let refused = k.fails(&["create", "-f", &late]);
    assert!(
        refused.contains("create not allowed while custom resource definition is terminating"),
        "{refused}"
    );
    k.ok(&[
        "patch",
        "widget",
        "extra",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    until("the definition gone", || {
        !k.run(&["get", "crd", "widgets.example.com"]).ok
    })
    .await?;
    k.ok(&["apply", "-f", &definition]);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
    let left = k.ok(&["get", "widgets", "-A", "-o", "name"]);
    assert!(
        left.trim().is_empty(),
        "objects outlived their definition: {left}"
    );
    Ok(())
}

struct Ctx {
    widgets: Api<DynamicObject>,
}

/// Reports in each widget's status the size it saw.
async fn reconcile(widget: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let size = widget.data["spec"]["size"].clone();
    if widget
        .data
        .get("status")
        .and_then(|s| s.get("observedSize"))
        != Some(&size)
    {
        let name = widget.metadata.name.clone().unwrap_or_default();
        let patch = Patch::Merge(json!({"status": {"observedSize": size, "ready": true}}));
        ctx.widgets.patch_status(&name, &patch).await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_written_with_the_sdk_reconciles_a_custom_kind() -> anyhow::Result<()> {
    let (cluster, k) = api_only_cluster().await?;
    let definition = k.manifest("crd.yaml", DEFINITION);
    k.ok(&["apply", "-f", &definition]);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
    let client = cluster.client()?;
    let widgets =
        Api::<DynamicObject>::for_resource(client, "example.com", "v1", "widgets", "default");

    let shutdown = CancellationToken::new();
    let outcomes = Controller::new(widgets.clone(), WatchParams::default()).run(
        reconcile,
        |_w: &Arc<DynamicObject>, _e: &Error, _ctx: &Ctx| {
            Action::requeue(Duration::from_millis(200))
        },
        Arc::new(Ctx {
            widgets: widgets.clone(),
        }),
        shutdown.clone(),
    );
    let runner = tokio::spawn(async move { outcomes.count().await });

    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "sdk"}, "spec": {"size": 2}
    }))?;
    let created = widgets.create(&widget).await?;
    assert_eq!(
        created.data["spec"]["color"], "red",
        "defaulted through the SDK too"
    );
    until("status observed", || {
        k.ok(&[
            "get",
            "widget",
            "sdk",
            "-o",
            "jsonpath={.status.observedSize}",
        ])
        .trim()
            == "2"
    })
    .await?;
    k.ok(&[
        "patch",
        "widget",
        "sdk",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":7}}"#,
    ]);
    until("the change reconciled", || {
        k.ok(&[
            "get",
            "widget",
            "sdk",
            "-o",
            "jsonpath={.status.observedSize}",
        ])
        .trim()
            == "7"
    })
    .await?;
    // The SDK gets Kubernetes' errors for custom kinds as for built-ins.
    let mut invalid = widget.clone();
    invalid.metadata.name = Some("too-big".into());
    invalid.data.insert("spec".into(), json!({"size": 20}));
    let err = widgets.create(&invalid).await.expect_err("over maxSize");
    assert!(
        err.to_string().contains("size may not exceed maxSize"),
        "{err}"
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), runner).await??;
    Ok(())
}

const GADGETS: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Cluster
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1beta1
    served: true
    storage: false
    deprecated: true
    deprecationWarning: example.com/v1beta1 Gadget is deprecated; use example.com/v1
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas: {type: integer, minimum: 0}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_convert_and_the_scale_subresource_works_on_custom_kinds() -> anyhow::Result<()> {
    let (_cluster, k) = api_only_cluster().await?;
    let definition = k.manifest("gadgets.yaml", GADGETS);
    k.ok(&["apply", "-f", &definition]);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.com",
        "--timeout=20s",
    ]);
    let groups =
        serde_json::from_str::<serde_json::Value>(&k.ok(&["get", "--raw", "/apis/example.com"]))?;
    assert_eq!(
        groups["preferredVersion"]["version"], "v1",
        "GA before beta: {groups}"
    );

    // Written at the deprecated version (with its warning), stored and read at v1.
    let old = k.manifest(
        "old.yaml",
        "apiVersion: example.com/v1beta1\nkind: Gadget\nmetadata: {name: g}\nspec: {replicas: 1}\n",
    );
    let out = k.run(&["apply", "-f", &old]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("example.com/v1beta1 Gadget is deprecated; use example.com/v1"),
        "{}",
        out.stderr
    );
    let at_v1 = k.json(&["get", "gadgets.v1.example.com", "g"]);
    assert_eq!(at_v1["apiVersion"], "example.com/v1");
    assert_eq!(at_v1["spec"]["replicas"], 1);
    let at_beta = k.json(&["get", "gadgets.v1beta1.example.com", "g"]);
    assert_eq!(at_beta["apiVersion"], "example.com/v1beta1");

    // Scale: kubectl scale writes the definition's replicas path; the Scale reads both.
    k.ok(&[
        "patch",
        "gadget",
        "g",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":1,"selector":"app=g"}}"#,
    ]);
    k.ok(&["scale", "gadget", "g", "--replicas=3"]);
    let scale = serde_json::from_str::<serde_json::Value>(&k.ok(&[
        "get",
        "--raw",
        "/apis/example.com/v1/gadgets/g/scale",
    ]))?;
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=g");
    assert_eq!(k.json(&["get", "gadget", "g"])["spec"]["replicas"], 3);
    Ok(())
}

const ROUTERS: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: routers.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: routers, singular: router, kind: Router}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer, description: The port a route listens on.}
              tags:
                type: array
                x-kubernetes-list-type: set
                items: {type: string}
              args:
                type: array
                items: {type: string}
";

fn router(ports: &str, tags: &str, args: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Router\nmetadata: {{name: r}}\nspec: {{ports: {ports}, tags: {tags}, args: {args}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_merge_by_their_list_types_defaults_show_on_read_and_rbac_and_impersonation_apply(
) -> anyhow::Result<()> {
    let (_cluster, k) = api_only_cluster().await?;
    let definition = k.manifest("routers.yaml", ROUTERS);
    k.ok(&["apply", "-f", &definition]);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/routers.example.com",
        "--timeout=20s",
    ]);
    let apply = |manager: &str, file: &str, text: &str| {
        let path = k.manifest(file, text);
        k.run(&[
            "apply",
            "--server-side",
            &format!("--field-manager={manager}"),
            "-f",
            &path,
        ])
    };

    // Two managers, each with its own port and tag: the keyed list and the set merge; the
    // list with no list type is atomic, so the second manager's args conflict.
    let first = apply(
        "one",
        "one.yaml",
        &router("[{name: http, port: 80}]", "[a]", "[--x]"),
    );
    assert!(first.ok, "{}", first.stderr);
    let second = apply(
        "two",
        "two.yaml",
        &router("[{name: metrics, port: 9090}]", "[b]", "[--y]"),
    );
    assert!(!second.ok, "args are one atomic value");
    assert!(
        second.stderr.contains("conflict") && second.stderr.contains(".spec.args"),
        "{}",
        second.stderr
    );
    assert!(!second.stderr.contains(".spec.ports"), "{}", second.stderr);
    let second = apply(
        "two",
        "two.yaml",
        "apiVersion: example.com/v1\nkind: Router\nmetadata: {name: r}\nspec: {ports: [{name: metrics, port: 9090}], tags: [b]}\n",
    );
    assert!(second.ok, "{}", second.stderr);
    let merged = k.json(&["get", "router", "r"]);
    assert_eq!(
        merged["spec"]["ports"],
        json!([{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]),
        "{merged}"
    );
    assert_eq!(merged["spec"]["tags"], json!(["a", "b"]));
    assert_eq!(merged["spec"]["args"], json!(["--x"]));

    // The first manager drops its port: only its element goes.
    let dropped = apply("one", "one.yaml", &router("[]", "[a]", "[--x]"));
    assert!(dropped.ok, "{}", dropped.stderr);
    let after = k.json(&["get", "router", "r"]);
    assert_eq!(
        after["spec"]["ports"],
        json!([{"name": "metrics", "port": 9090}]),
        "{after}"
    );

    // Strategic merge patch is refused on custom kinds, as Kubernetes refuses it.
    let strategic = k.fails(&[
        "patch",
        "router",
        "r",
        "--type=strategic",
        "-p",
        r#"{"spec":{"tags":["c"]}}"#,
    ]);
    assert!(
        strategic.contains("the body of the request was in an unknown format")
            && strategic.contains("application/merge-patch+json"),
        "{strategic}"
    );

    // OpenAPI v2 carries the custom kind and the built-ins: kubectl explain reads it.
    let v2 = k.ok(&[
        "explain",
        "router.spec.ports",
        "--output=plaintext-openapiv2",
    ]);
    assert!(v2.contains("The port a route listens on."), "{v2}");
    let pods = k.ok(&[
        "explain",
        "pods.spec.containers.image",
        "--output=plaintext-openapiv2",
    ]);
    assert!(pods.contains("Container image name"), "{pods}");

    // A default added to the definition shows on the object stored before it.
    let with_default = ROUTERS.replace(
        "              args:\n",
        "              mode: {type: string, default: fast}\n              args:\n",
    );
    let definition = k.manifest("routers.yaml", &with_default);
    k.ok(&["apply", "-f", &definition]);
    until("the new default read on the stored object", || {
        k.json(&["get", "router", "r"])["spec"]["mode"] == "fast"
    })
    .await?;

    // RBAC grants on a custom resource as on a built-in one.
    k.ok(&[
        "create",
        "role",
        "router-reader",
        "--verb=get,list",
        "--resource=routers.example.com",
    ]);
    k.ok(&[
        "create",
        "rolebinding",
        "router-reader",
        "--role=router-reader",
        "--user=reader",
    ]);
    until("the binding in force", || {
        k.run(&["get", "routers", "--as=reader"]).ok
    })
    .await?;
    let denied = k.fails(&["delete", "router", "r", "--as=reader"]);
    assert!(
        denied.contains("routers.example.com \"r\" is forbidden")
            && denied.contains("cannot delete resource \"routers\" in API group \"example.com\""),
        "{denied}"
    );
    // Impersonating takes the `impersonate` verb, which a plain account lacks.
    k.ok(&["create", "serviceaccount", "plain"]);
    let token = k.ok(&["create", "token", "plain"]);
    let refused = k.fails(&[
        &format!("--token={}", token.trim()),
        "get",
        "routers",
        "--as=reader",
    ]);
    assert!(
        refused.contains(
            "users \"reader\" is forbidden: User \"system:serviceaccount:default:plain\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        ),
        "{refused}"
    );
    Ok(())
}
