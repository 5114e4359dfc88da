//! Getting a container's image onto the node as kubelet's image manager does: by
//! imagePullPolicy (Always, IfNotPresent, Never; the default Always for `:latest` or no tag),
//! through CRI PullImage, with the Pulling/Pulled/Failed/BackOff Events and the ErrImagePull,
//! ImagePullBackOff and ErrImageNeverPull reasons a waiting container reports.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use keel_types::k8s_openapi::api::core::v1::Container;

use super::backoff::{image_key, now_nanos, Backoffs, Verdict};
use super::events::PodEvents;
use super::status::Waiting;
use crate::cri::AuthConfig;
use crate::RuntimeClient;

/// How long one pull may take.
const PULL_DEADLINE: Duration = Duration::from_secs(300);

/// Pulls images for pods, remembering failures for the back-off.
#[derive(Debug, Default)]
pub struct ImagePuller {
    backoffs: Backoffs,
    /// When each (pod, image) last failed to pull, Unix nanoseconds.
    failures: Mutex<HashMap<String, i64>>,
}

/// The pull policy Kubernetes defaults to when a container names none.
pub fn pull_policy(container: &Container) -> &str {
    if let Some(policy) = container.image_pull_policy.as_deref() {
        return policy;
    }
    let image = container.image.as_deref().unwrap_or_default();
    // A digest pins the image; otherwise the tag after the last path segment decides.
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

impl ImagePuller {
    /// Makes sure `container`'s image is present; returns the runtime's id for it, or why the
    /// container must wait.
    pub async fn ensure(
        &self,
        runtime: &RuntimeClient,
        events: &PodEvents,
        uid: &str,
        container: &Container,
        credentials: &[AuthConfig],
    ) -> Result<String, Waiting> {
        let image = container.image.clone().unwrap_or_default();
        let key = image_key(uid, &image);
        let present = match runtime.image_status(&image).await {
            Ok(present) => present.map(|i| i.id),
            Err(error) => {
                return Err(Waiting {
                    reason: "ErrImageInspect".into(),
                    message: format!("Failed to inspect image \"{image}\": {error}"),
                })
            }
        };
        let policy = pull_policy(container);
        match (policy, present) {
            ("Never", Some(id)) | ("IfNotPresent", Some(id)) => {
                events.normal(
                    Some(container),
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                );
                return Ok(id);
            }
            ("Never", None) => {
                let message =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                events.warning(Some(container), "ErrImageNeverPull", message.clone());
                return Err(Waiting {
                    reason: "ErrImageNeverPull".into(),
                    message,
                });
            }
            _ => {}
        }
        let last_failure = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied();
        if let Some(failed_at) = last_failure {
            if let Verdict::Wait { .. } = self.backoffs.check(&key, failed_at, now_nanos()) {
                let message = format!("Back-off pulling image \"{image}\"");
                events.normal(Some(container), "BackOff", message.clone());
                return Err(Waiting {
                    reason: "ImagePullBackOff".into(),
                    message,
                });
            }
        }
        events.normal(
            Some(container),
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let started = Instant::now();
        match pull(runtime, &image, credentials).await {
            Ok(image_ref) => {
                self.failures
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&key);
                self.backoffs.reset(&key);
                let took = started.elapsed().as_secs_f64();
                let size = match runtime.image_status(&image_ref).await {
                    Ok(Some(found)) => found.size,
                    _ => 0,
                };
                events.normal(
                    Some(container),
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting). Image size: {size} bytes."
                    ),
                );
                Ok(image_ref)
            }
            Err(error) => {
                let at = now_nanos();
                self.failures
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key.clone(), at);
                // The failure itself starts the back-off.
                self.backoffs.check(&key, at, at);
                let message = format!("Failed to pull image \"{image}\": {error}");
                events.warning(Some(container), "Failed", message.clone());
                events.warning(Some(container), "Failed", "Error: ErrImagePull".into());
                Err(Waiting {
                    reason: "ErrImagePull".into(),
                    message,
                })
            }
        }
    }

    /// Forgets pod `uid`'s failures.
    pub fn forget_pod(&self, uid: &str) {
        self.backoffs.forget_pod(uid);
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|key, _| !key.starts_with(uid));
    }
}

/// Pulls `image` with each credential in turn until one works (without any when there are
/// none, or after all failed), as kubelet tries its keyring.
async fn pull(
    runtime: &RuntimeClient,
    image: &str,
    credentials: &[AuthConfig],
) -> Result<String, crate::Error> {
    let mut last = None;
    for auth in credentials {
        match runtime
            .pull_image(image, Some(auth.clone()), None, PULL_DEADLINE)
            .await
        {
            Ok(image_ref) => return Ok(image_ref),
            Err(error) => last = Some(error),
        }
    }
    match last {
        Some(error) => Err(error),
        None => runtime.pull_image(image, None, None, PULL_DEADLINE).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn latest_or_untagged_images_are_always_pulled_and_tagged_ones_if_not_present() {
        assert_eq!(pull_policy(&container("busybox", None)), "Always");
        assert_eq!(pull_policy(&container("busybox:latest", None)), "Always");
        assert_eq!(
            pull_policy(&container("localhost:5000/busybox", None)),
            "Always"
        );
        assert_eq!(
            pull_policy(&container("keel.local/busybox:1", None)),
            "IfNotPresent"
        );
        assert_eq!(
            pull_policy(&container("busybox@sha256:abc", None)),
            "IfNotPresent"
        );
        assert_eq!(pull_policy(&container("busybox", Some("Never"))), "Never");
    }
}
