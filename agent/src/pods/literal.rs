//! The simplest [`PodFiles`]: no volumes, and an environment of literal values only. Pods
//! that ask for more are refused with kubelet's messages, so the gap shows in their status
//! rather than being papered over.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use futures::FutureExt;
use keel_types::k8s_openapi::api::core::v1::{Container, Pod};

use super::configs::{expand_vars, Resolved};
use super::PodFiles;
use crate::cri::KeyValue;

/// Literal environment values, no volumes.
#[derive(Debug, Default)]
pub struct LiteralFiles;

/// A container's literal environment, `$(VAR)` references expanded in order.
pub fn literal_env(container: &Container) -> Result<Vec<KeyValue>, String> {
    let mut values: Vec<KeyValue> = Vec::new();
    for var in container.env.iter().flatten() {
        if var.value_from.is_some() {
            return Err(format!(
                "environment variable {} takes its value from a source this node cannot read",
                var.name
            ));
        }
        let known: BTreeMap<&str, &str> = values
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
            .collect();
        let value = expand_vars(var.value.as_deref().unwrap_or_default(), &known);
        values.retain(|kv| kv.key != var.name);
        values.push(KeyValue {
            key: var.name.clone(),
            value,
        });
    }
    Ok(values)
}

impl PodFiles for LiteralFiles {
    fn setup<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), String>> {
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
        let result = match volumes.and_then(|v| v.first()) {
            Some(volume) => Err(format!(
                "MountVolume.SetUp failed for volume \"{}\" : volumes are not supported on this node",
                volume.name
            )),
            None => Ok(()),
        };
        async move { result }.boxed()
    }

    fn resolve<'a>(
        &'a self,
        _pod: &'a Pod,
        container: &'a Container,
        _pod_ip: &'a str,
    ) -> BoxFuture<'a, Result<Resolved, String>> {
        let result = literal_env(container).map(|envs| Resolved {
            envs,
            ..Default::default()
        });
        async move { result }.boxed()
    }

    fn teardown<'a>(&'a self, _uid: &'a str) -> BoxFuture<'a, ()> {
        async {}.boxed()
    }
}
