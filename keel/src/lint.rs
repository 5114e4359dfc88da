//! `keel lint`: reads manifests from files and directories and prints what the selector lint
//! (`keel-lint`) finds in them.

use std::path::{Path, PathBuf};

use keel_lint::{lint, Manifest, Options, Severity, Source};
use serde::Deserialize;
use serde_json::Value;

/// What the exit status means, for scripts and CI.
const EXIT_CLEAN: i32 = 0;
const EXIT_FINDINGS: i32 = 1;
const EXIT_BAD_INPUT: i32 = 2;

const HELP: &str = "\
Checks, across the whole set of manifests given:
  selector-matches-nothing    (error)   a Service, Deployment, ReplicaSet, StatefulSet, DaemonSet,
                                        Job with a manual selector, NetworkPolicy or
                                        PodDisruptionBudget whose selector matches no pod template
                                        (Pods, and the templates of Deployments, ReplicaSets,
                                        StatefulSets, DaemonSets, Jobs and CronJobs) in its namespace;
                                        an empty podSelector or PDB selector selects all and passes
  selector-template-mismatch  (error)   a workload whose selector does not match its own template's
                                        labels (Kubernetes refuses it)
  selectors-overlap           (error)   two controllers in one namespace matching a common template:
                                        they would fight over its pods (reported once per pair)
  target-port-not-exposed     (error)   a Service targetPort name no selected container declares
                              (warning) a numeric targetPort no selected container declares as a
                                        containerPort (undeclared ports still receive traffic)
  ingress-missing-service     (error)   an Ingress backend naming a Service not in the set
  ingress-missing-port        (error)   an Ingress backend naming a port its Service lacks
  selector-missing            (error)   a workload without the selector Kubernetes requires
  selector-invalid            (error)   a selector Kubernetes cannot read

A directory means every *.yaml, *.yml and *.json in it, recursively; multi-document YAML and
kind: List are read. Objects without a namespace are in --namespace.

Exit status: 0 when nothing of error level is found (warnings are printed but pass, unless
--strict), 1 when something is, 2 when an input cannot be read or is not a manifest.";

#[derive(clap::Args)]
#[command(after_help = HELP)]
pub struct LintArgs {
    /// A manifest file or a directory of them (repeatable); `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// The namespace of objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// `text`: one line per finding, as a compiler prints them; `json`: a JSON array.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    strict: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Runs the lint and returns the process's exit status.
pub fn run(args: LintArgs) -> i32 {
    let manifests = match load(&args.files) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("keel lint: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let options = Options {
        default_namespace: args.namespace,
        subject: None,
    };
    let findings = lint(&manifests, &options);
    let text = match args.output {
        Output::Json => match serde_json::to_string_pretty(&findings) {
            Ok(text) => text + "\n",
            Err(e) => {
                eprintln!("keel lint: encoding the findings: {e}");
                return EXIT_BAD_INPUT;
            }
        },
        Output::Text => findings.iter().map(|f| format!("{f}\n")).collect(),
    };
    // A reader that went away (`keel lint … | head`) is no reason to panic, and the exit
    // status still tells the verdict.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    if matches!(args.output, Output::Text) {
        eprintln!(
            "keel lint: {} objects, {errors} errors, {warnings} warnings",
            manifests.len()
        );
    }
    if errors > 0 || (args.strict && warnings > 0) {
        EXIT_FINDINGS
    } else {
        EXIT_CLEAN
    }
}

/// Every object of every file named or found under a directory named, in a stable order.
fn load(paths: &[PathBuf]) -> Result<Vec<Manifest>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            files.push(path.clone());
        } else if path.is_dir() {
            walk(path, &mut files)?;
        } else {
            // A file named on the command line is read whatever its extension, as kubectl does.
            files.push(path.clone());
        }
    }
    let mut manifests = Vec::new();
    for file in files {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(&file)
        }
        .map_err(|e| format!("{}: {e}", file.display()))?;
        manifests.extend(parse(&file, &text)?);
    }
    Ok(manifests)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    // Sorted, so findings come out in the same order on every machine.
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, files)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            files.push(path);
        }
    }
    Ok(())
}

/// The objects of one file: each document (numbered from 1), `kind: List` items expanded.
fn parse(file: &Path, text: &str) -> Result<Vec<Manifest>, String> {
    let name = file.display().to_string();
    let documents: Vec<Value> = if file.extension().is_some_and(|e| e == "json") {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .enumerate()
            .map(|(i, v)| v.map_err(|e| format!("{name}: document {}: {e}", i + 1)))
            .collect::<Result<_, _>>()?
    } else {
        serde_norway::Deserializer::from_str(text)
            .enumerate()
            .map(|(i, d)| {
                Value::deserialize(d).map_err(|e| format!("{name}: document {}: {e}", i + 1))
            })
            .collect::<Result<_, _>>()?
    };
    let mut manifests = Vec::new();
    for (i, document) in documents.into_iter().enumerate() {
        let source = Source {
            file: name.clone(),
            document: i + 1,
        };
        let at = format!("{name}: document {}", i + 1);
        match document {
            // An empty document (a trailing `---`) holds nothing.
            Value::Null => {}
            Value::Object(_) => expand(document, &source, &at, &mut manifests)?,
            _ => {
                return Err(format!(
                    "{at}: not an object: a manifest is a mapping with apiVersion and kind"
                ))
            }
        }
    }
    Ok(manifests)
}

fn expand(object: Value, source: &Source, at: &str, out: &mut Vec<Manifest>) -> Result<(), String> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(format!("{at}: the object has no kind"));
    }
    if object
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(format!("{at}: the {kind} has no apiVersion"));
    }
    if kind == "List" || (kind.ends_with("List") && object.get("items").is_some()) {
        let Some(items) = object.get("items").and_then(Value::as_array) else {
            return Err(format!("{at}: the {kind} has no items list"));
        };
        for (j, item) in items.iter().enumerate() {
            if !item.is_object() {
                return Err(format!("{at}: item {j} of the {kind} is not an object"));
            }
            expand(item.clone(), source, &format!("{at}, item {j}"), out)?;
        }
        return Ok(());
    }
    out.push(Manifest {
        object: std::sync::Arc::new(object),
        source: source.clone(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_numbered_from_one_and_lists_are_expanded() {
        let text = "\
apiVersion: v1
kind: Service
metadata: {name: a}
---
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Pod, metadata: {name: p}}
- {apiVersion: v1, kind: Pod, metadata: {name: q}}
";
        let manifests = parse(Path::new("x.yaml"), text).unwrap();
        let seen: Vec<(usize, &str)> = manifests
            .iter()
            .map(|m| {
                (
                    m.source.document,
                    m.object["metadata"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(seen, vec![(1, "a"), (3, "p"), (3, "q")]);
    }

    #[test]
    fn a_malformed_document_is_named_with_its_file_and_index() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\nkind: [unclosed\n";
        let err = parse(Path::new("bad.yaml"), text).unwrap_err();
        assert!(err.starts_with("bad.yaml: document 2:"), "{err}");
        let err = parse(Path::new("bad.yaml"), "- 1\n- 2\n").unwrap_err();
        assert!(err.contains("document 1: not an object"), "{err}");
        let err = parse(Path::new("bad.json"), "{\"kind\": \"Pod\"}").unwrap_err();
        assert!(err.contains("has no apiVersion"), "{err}");
    }
}
