//! Server-side apply and bad input through the real kubectl against a 3-master keel: apply
//! creates, re-applies without writing, conflicts with another manager until forced; invalid
//! objects, unknown fields under `--validate=strict` and bad labels are refused with the
//! messages kubectl shows against Kubernetes, and nothing is stored.

use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};

const CONFIG: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: flags
  namespace: default
  labels:
    team: core
data:
  mode: fast
  level: \"3\"
";

fn server_side_apply(k: &Kubectl) {
    let file = k.manifest("flags.yaml", CONFIG);
    let created = k.ok(&["apply", "--server-side", "-f", &file]);
    assert_eq!(created.trim(), "configmap/flags serverside-applied");
    let first = k.json(&["get", "cm", "flags", "--show-managed-fields"]);
    let managed = &first["metadata"]["managedFields"][0];
    assert_eq!(managed["manager"], "kubectl");
    assert_eq!(managed["operation"], "Apply");
    assert!(
        managed["fieldsV1"]["f:data"]["f:mode"].is_object(),
        "{managed}"
    );

    k.ok(&["apply", "--server-side", "-f", &file]);
    let second = k.json(&["get", "cm", "flags"]);
    assert_eq!(
        second["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"],
        "applying the same configuration again writes nothing"
    );

    // A field the applier drops from its configuration goes.
    let fewer = k.manifest("fewer.yaml", &CONFIG.replace("  level: \"3\"\n", ""));
    k.ok(&["apply", "--server-side", "-f", &fewer]);
    let cm = k.json(&["get", "cm", "flags"]);
    assert!(cm["data"].get("level").is_none(), "{cm}");

    let other = k.manifest("other.yaml", &CONFIG.replace("mode: fast", "mode: safe"));
    let refused = k.fails(&[
        "apply",
        "--server-side",
        "--field-manager=ops",
        "-f",
        &other,
    ]);
    assert!(
        refused.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .data.mode"),
        "{refused}"
    );
    assert!(refused.contains("--force-conflicts"), "{refused}");
    assert_eq!(k.json(&["get", "cm", "flags"])["data"]["mode"], "fast");

    let forced = k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=ops",
        "--force-conflicts",
        "-f",
        &other,
    ]);
    assert!(forced.contains("serverside-applied"), "{forced}");
    let cm = k.json(&["get", "cm", "flags", "--show-managed-fields"]);
    assert_eq!(cm["data"]["mode"], "safe");
    let managers: Vec<&str> = cm["metadata"]["managedFields"]
        .as_array()
        .map(|l| l.iter().filter_map(|e| e["manager"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        managers.contains(&"kubectl") && managers.contains(&"ops"),
        "{managers:?}"
    );

    // An update by another command takes the field it changes: the applier now conflicts.
    k.ok(&["label", "cm", "flags", "team=edge", "--overwrite"]);
    let relabel = k.fails(&["apply", "--server-side", "-f", &file]);
    assert!(
        relabel.contains("with \"kubectl-label\" using v1")
            && relabel.contains(".metadata.labels.team"),
        "{relabel}"
    );
}

fn bad_input_is_refused_and_nothing_is_stored(k: &Kubectl) {
    let no_selector = k.manifest(
        "invalid.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: broken\nspec:\n  template:\n    metadata:\n      labels: {app: x}\n    spec:\n      containers: [{name: c, image: busybox}]\n",
    );
    let invalid = k.fails(&["apply", "-f", &no_selector]);
    assert!(
        invalid.contains("The Deployment \"broken\" is invalid")
            && invalid.contains("spec.selector"),
        "{invalid}"
    );

    let unknown = k.manifest(
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\nbogus: 1\ndata: {a: b}\n",
    );
    let strict = k.fails(&["create", "--validate=strict", "-f", &unknown]);
    assert!(
        strict.contains("strict decoding error: unknown field \"bogus\""),
        "{strict}"
    );
    let ssa = k.fails(&[
        "apply",
        "--server-side",
        "--validate=strict",
        "-f",
        &unknown,
    ]);
    assert!(ssa.contains("unknown field \"bogus\""), "{ssa}");
    // Warn instead of refusing: stored, with the field dropped and a warning printed.
    let warned = k.run(&["create", "--validate=warn", "-f", &unknown]);
    assert!(warned.ok, "{}", warned.stderr);
    assert!(
        warned.stderr.contains("unknown field \"bogus\""),
        "{}",
        warned.stderr
    );
    k.ok(&["delete", "cm", "strict"]);

    k.ok(&["create", "configmap", "labelled"]);
    // kubectl checks a label itself; the server checks what other paths bring.
    let client_side = k.fails(&["label", "cm", "labelled", "tier=-bad-"]);
    assert!(client_side.contains("invalid label value"), "{client_side}");
    let bad_value = k.fails(&[
        "patch",
        "cm",
        "labelled",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"-bad-"}}}"#,
    ]);
    assert!(
        bad_value.contains("ConfigMap \"labelled\" is invalid")
            && bad_value.contains("metadata.labels: Invalid value: \"-bad-\""),
        "{bad_value}"
    );

    let garbage = k.manifest(
        "garbage.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n",
    );
    let unparsable = k.fails(&["apply", "-f", &garbage]);
    assert!(unparsable.contains("error"), "{unparsable}");

    let names = k.ok(&["get", "cm", "-o", "name"]);
    assert!(
        !names.contains("strict") && !names.contains("garbage"),
        "{names}"
    );
    assert!(k.fails(&["get", "deploy", "broken"]).contains("NotFound"));
    let labelled = k.json(&["get", "cm", "labelled"]);
    assert!(
        labelled["metadata"]["labels"].get("tier").is_none(),
        "{labelled}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_and_bad_input() -> anyhow::Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    tokio::task::block_in_place(|| {
        server_side_apply(&k);
        bad_input_is_refused_and_nothing_is_stored(&k);
    });
    Ok(())
}
