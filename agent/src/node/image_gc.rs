//! Image garbage collection, as kubelet's image manager does it: every period the images the
//! runtime holds are recorded (first seen, last used by a container); when the image
//! filesystem is at or above the high threshold, unused images are removed, least recently
//! used first, until usage is back to the low threshold. The sandbox image and images the
//! runtime pins are never removed, nor images seen for less than the minimum age.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use keel_client::events::{Recorder, WARNING};
use tokio_util::sync::CancellationToken;

use super::config::NodeConfig;
use super::host::{fs_stats, FsStats};
use super::node_reference;
use crate::cri::{Container, Image};
use crate::RuntimeClient;

const COMPONENT: &str = "kubelet";

/// What is known of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub first_detected: Instant,
    /// When a container last used it (its first detection if never).
    pub last_used: Instant,
    pub size: u64,
    pub pinned: bool,
}

/// The image records by image id.
#[derive(Debug, Clone, Default)]
pub struct ImageRecords {
    records: HashMap<String, ImageRecord>,
}

impl ImageRecords {
    /// Records what the runtime holds at `now`: new images are first seen, images in use
    /// were used now, images gone are forgotten.
    pub fn detect(&mut self, images: &[Image], in_use: &HashSet<String>, now: Instant) {
        let present: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.records.retain(|id, _| present.contains(id.as_str()));
        for image in images {
            let record = self
                .records
                .entry(image.id.clone())
                .or_insert_with(|| ImageRecord {
                    first_detected: now,
                    last_used: now,
                    size: image.size,
                    pinned: image.pinned,
                });
            if in_use.contains(&image.id) {
                record.last_used = now;
            }
            record.size = image.size;
            record.pinned = image.pinned;
        }
    }

    pub fn get(&self, id: &str) -> Option<&ImageRecord> {
        self.records.get(id)
    }

    /// The images to remove to free `bytes_to_free` at `now`, least recently used first (then
    /// first detected), and the bytes they free. Images in use, pinned, used at `now` or
    /// younger than `min_age` are kept, so the bytes freed may fall short.
    pub fn select(
        &self,
        in_use: &HashSet<String>,
        bytes_to_free: u64,
        now: Instant,
        min_age: Duration,
    ) -> (Vec<String>, u64) {
        let mut candidates: Vec<(&String, &ImageRecord)> = self
            .records
            .iter()
            .filter(|(id, record)| !in_use.contains(*id) && !record.pinned)
            .collect();
        candidates.sort_by(|(a_id, a), (b_id, b)| {
            (a.last_used, a.first_detected, *a_id).cmp(&(b.last_used, b.first_detected, *b_id))
        });
        let mut chosen = Vec::new();
        let mut freed = 0u64;
        for (id, record) in candidates {
            if freed >= bytes_to_free {
                break;
            }
            if record.last_used >= now || now.duration_since(record.first_detected) < min_age {
                continue;
            }
            chosen.push(id.clone());
            freed = freed.saturating_add(record.size);
        }
        (chosen, freed)
    }
}

/// The ids of the images in use: those of every container the runtime holds (running or not),
/// and the sandbox image.
pub fn images_in_use(
    images: &[Image],
    containers: &[Container],
    sandbox_image: &str,
) -> HashSet<String> {
    let id_of = |reference: &str| -> Option<String> {
        images
            .iter()
            .find(|i| {
                i.id == reference
                    || i.repo_tags.iter().any(|t| t == reference)
                    || i.repo_digests.iter().any(|d| d == reference)
            })
            .map(|i| i.id.clone())
    };
    let mut in_use: HashSet<String> = containers
        .iter()
        .flat_map(|c| {
            let spec = c.image.as_ref().map(|s| s.image.as_str()).unwrap_or("");
            [id_of(&c.image_ref), id_of(spec)]
        })
        .flatten()
        .collect();
    in_use.extend(id_of(sandbox_image));
    in_use
}

/// How many bytes to free on an image filesystem, as kubelet reckons: nothing below
/// `high` percent used, else down to `low` percent. A filesystem of no size is an error.
pub fn bytes_to_free(fs: FsStats, high: u8, low: u8) -> Result<Option<u64>, String> {
    let capacity = u128::from(fs.capacity_bytes);
    if capacity == 0 {
        return Err("invalid capacity 0 on image filesystem".into());
    }
    let available = u128::from(fs.available_bytes).min(capacity);
    let usage_percent = 100 - available * 100 / capacity;
    if usage_percent < u128::from(high) {
        return Ok(None);
    }
    let target_available = capacity * u128::from(100 - low.min(100)) / 100;
    let amount = target_available.saturating_sub(available);
    Ok(Some(u64::try_from(amount).unwrap_or(u64::MAX)))
}

/// The image garbage collector of one node.
pub struct ImageGc {
    pub runtime: RuntimeClient,
    pub config: NodeConfig,
    pub records: ImageRecords,
    /// Whether the previous collection failed: kubelet reports ImageGCFailed only on a
    /// second failure in a row.
    pub previous_failed: bool,
}

impl ImageGc {
    pub fn new(runtime: RuntimeClient, config: NodeConfig) -> Self {
        Self {
            runtime,
            config,
            records: ImageRecords::default(),
            previous_failed: false,
        }
    }

    /// Records the images now, then collects every period until `stop`.
    pub async fn run(mut self, recorder: &Recorder, stop: CancellationToken) {
        if let Err(error) = self.detect(Instant::now()).await {
            tracing::warn!(%error, "listing images for image GC");
        }
        let period = self.config.image_gc_period;
        loop {
            if stop
                .run_until_cancelled(tokio::time::sleep(period))
                .await
                .is_none()
            {
                return;
            }
            match self.collect(recorder).await {
                Ok(()) => self.previous_failed = false,
                Err(error) => {
                    if self.previous_failed {
                        recorder.event(
                            COMPONENT,
                            node_reference(&self.config.node_name),
                            WARNING,
                            "ImageGCFailed",
                            error.clone(),
                        );
                    }
                    tracing::warn!(%error, "image garbage collection failed");
                    self.previous_failed = true;
                }
            }
        }
    }

    async fn detect(&mut self, now: Instant) -> Result<HashSet<String>, String> {
        let images = self
            .runtime
            .list_images()
            .await
            .map_err(|e| e.to_string())?;
        let containers = self
            .runtime
            .list_containers(None)
            .await
            .map_err(|e| e.to_string())?;
        let in_use = images_in_use(&images, &containers, &self.config.sandbox_image);
        self.records.detect(&images, &in_use, now);
        Ok(in_use)
    }

    /// The image filesystem's size and free space: where the runtime says its images are,
    /// else containerd's root.
    async fn image_fs(&self) -> Result<FsStats, String> {
        let mountpoint = match self.runtime.image_fs_info().await {
            Ok(filesystems) => filesystems
                .into_iter()
                .find_map(|fs| fs.fs_id.map(|id| id.mountpoint))
                .filter(|m| !m.is_empty()),
            Err(error) => {
                tracing::debug!(%error, "ImageFsInfo; measuring containerd's root instead");
                None
            }
        };
        let path = mountpoint
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| self.config.containerd_root.clone());
        fs_stats(&path).ok_or_else(|| format!("cannot measure the image filesystem at {path:?}"))
    }

    /// One collection.
    pub async fn collect(&mut self, recorder: &Recorder) -> Result<(), String> {
        let now = Instant::now();
        let in_use = self.detect(now).await?;
        let fs = self.image_fs().await?;
        let Some(amount) = bytes_to_free(
            fs,
            self.config.image_gc_high_threshold,
            self.config.image_gc_low_threshold,
        )?
        else {
            return Ok(());
        };
        let (chosen, _) =
            self.records
                .select(&in_use, amount, now, self.config.image_minimum_gc_age);
        let mut freed = 0u64;
        let mut errors = Vec::new();
        for id in chosen {
            let size = self.records.get(&id).map_or(0, |r| r.size);
            tracing::info!(image = %id, size, "removing unused image");
            match self.runtime.remove_image(&id).await {
                Ok(()) => freed = freed.saturating_add(size),
                Err(error) => errors.push(format!("removing image {id}: {error}")),
            }
        }
        if !errors.is_empty() {
            return Err(errors.join(", "));
        }
        if freed < amount {
            let message = format!(
                "Failed to garbage collect required amount of images. Attempted to free {amount} \
                 bytes, but only found {freed} bytes eligible to free."
            );
            recorder.event(
                COMPONENT,
                node_reference(&self.config.node_name),
                WARNING,
                "FreeDiskSpaceFailed",
                message.clone(),
            );
            return Err(message);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::ImageSpec;

    fn image(id: &str, size: u64, tag: &str) -> Image {
        Image {
            id: id.into(),
            size,
            repo_tags: vec![tag.into()],
            ..Image::default()
        }
    }

    fn container(image_ref: &str) -> Container {
        Container {
            image_ref: image_ref.into(),
            image: Some(ImageSpec {
                image: image_ref.into(),
                ..ImageSpec::default()
            }),
            ..Container::default()
        }
    }

    const MIN_AGE: Duration = Duration::from_secs(120);

    #[test]
    fn nothing_is_freed_below_the_high_threshold_and_down_to_the_low_one_above_it() {
        let fs = |available| FsStats {
            capacity_bytes: 1000,
            available_bytes: available,
        };
        assert_eq!(bytes_to_free(fs(200), 85, 80), Ok(None), "80 % used");
        assert_eq!(bytes_to_free(fs(150), 85, 80), Ok(Some(50)), "85 % used");
        assert_eq!(bytes_to_free(fs(50), 85, 80), Ok(Some(150)));
        assert_eq!(bytes_to_free(fs(5000), 85, 80), Ok(None), "clamped");
        assert!(bytes_to_free(FsStats::default(), 85, 80).is_err());
    }

    #[test]
    fn unused_images_go_least_recently_used_first_until_enough_is_freed() {
        let start = Instant::now();
        let images = [
            image("sha256:a", 100, "a:1"),
            image("sha256:b", 100, "b:1"),
            image("sha256:c", 100, "c:1"),
        ];
        let mut records = ImageRecords::default();
        let all: HashSet<String> = images.iter().map(|i| i.id.clone()).collect();
        records.detect(&images, &all, start);
        // b was last used later than a and c, which were last used together.
        let b_only: HashSet<String> = HashSet::from(["sha256:b".to_owned()]);
        records.detect(&images, &b_only, start + Duration::from_secs(60));
        let now = start + Duration::from_secs(600);

        let (chosen, freed) = records.select(&HashSet::new(), 150, now, MIN_AGE);
        assert_eq!(chosen, ["sha256:a", "sha256:c"]);
        assert_eq!(freed, 200);
        let (chosen, _) = records.select(&HashSet::new(), 250, now, MIN_AGE);
        assert_eq!(chosen, ["sha256:a", "sha256:c", "sha256:b"]);
    }

    #[test]
    fn images_in_use_pinned_or_too_young_are_kept() {
        let start = Instant::now();
        let mut pinned = image("sha256:p", 100, "p:1");
        pinned.pinned = true;
        let old = [
            image("sha256:used", 100, "u:1"),
            image("sha256:sandbox", 100, "keel.local/pause:1"),
            pinned,
        ];
        let mut records = ImageRecords::default();
        records.detect(&old, &HashSet::new(), start);
        let mut all = old.to_vec();
        all.push(image("sha256:young", 100, "y:1"));
        let later = start + Duration::from_secs(300);
        let in_use = images_in_use(&all, &[container("sha256:used")], "keel.local/pause:1");
        assert_eq!(
            in_use,
            HashSet::from(["sha256:used".to_owned(), "sha256:sandbox".to_owned()])
        );
        records.detect(&all, &in_use, later);

        let (chosen, freed) =
            records.select(&in_use, 1000, later + Duration::from_secs(1), MIN_AGE);
        assert!(chosen.is_empty(), "{chosen:?}");
        assert_eq!(freed, 0);
    }

    #[test]
    fn containers_naming_an_image_by_tag_keep_it_in_use_and_vanished_images_are_forgotten() {
        let images = [image("sha256:x", 10, "docker.io/library/x:1")];
        let by_tag = Container {
            image: Some(ImageSpec {
                image: "docker.io/library/x:1".into(),
                ..ImageSpec::default()
            }),
            ..Container::default()
        };
        assert!(images_in_use(&images, &[by_tag], "").contains("sha256:x"));

        let mut records = ImageRecords::default();
        records.detect(&images, &HashSet::new(), Instant::now());
        records.detect(&[], &HashSet::new(), Instant::now());
        assert!(records.get("sha256:x").is_none());
    }
}
