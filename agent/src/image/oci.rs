//! OCI image layout archives (image-spec v1): content-addressed blobs, one manifest and config
//! per image, an index naming them, all in one tar that `ctr images import` reads.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::tar::TarBuilder;
use crate::Error;

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// The annotation containerd takes an imported image's full name from.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for a manifest's tag within the layout.
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `sha256:<hex>` of `data`, the form digests take in every OCI document.
pub fn sha256_digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for byte in hash {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// What a container of the image runs by default, and where.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
}

/// The platform images are built for: this machine's, in Go's names as OCI uses them.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// An OCI image layout being assembled: add images, then write it out with [`Self::to_tar`].
#[derive(Debug, Default)]
pub struct OciArchive {
    /// Blobs by digest; images sharing a layer store it once.
    blobs: BTreeMap<String, Vec<u8>>,
    /// The index's manifest descriptors, in the order images were added.
    manifests: Vec<Value>,
}

impl OciArchive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an image named `name` (a full reference such as `keel.local/busybox:1`) made of
    /// uncompressed tar `layers`, bottom first. Returns the manifest's digest.
    pub fn add_image(&mut self, name: &str, run: &RunConfig, layers: &[Vec<u8>]) -> String {
        let (os, architecture) = host_platform();
        let layer_descriptors: Vec<Value> = layers
            .iter()
            .map(|layer| self.add_blob(MEDIA_TYPE_LAYER_TAR, layer.clone()))
            .collect();
        // An uncompressed layer's diff_id is its own digest.
        let diff_ids: Vec<&Value> = layer_descriptors.iter().map(|d| &d["digest"]).collect();
        let config = json!({
            "architecture": architecture,
            "os": os,
            "config": {
                "Entrypoint": run.entrypoint,
                "Cmd": run.cmd,
                "Env": run.env,
                "WorkingDir": run.working_dir,
            },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let config_descriptor = self.add_blob(MEDIA_TYPE_CONFIG, to_bytes(&config));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": config_descriptor,
            "layers": layer_descriptors,
        });
        let manifest = to_bytes(&manifest);
        let digest = sha256_digest(&manifest);
        let mut descriptor = self.add_blob(MEDIA_TYPE_MANIFEST, manifest);
        let tag = tag_of(name);
        descriptor["platform"] = json!({ "os": os, "architecture": architecture });
        descriptor["annotations"] = json!({
            ANNOTATION_CONTAINERD_NAME: name,
            ANNOTATION_REF_NAME: tag,
        });
        self.manifests.push(descriptor);
        digest
    }

    /// Each image's name, as given to [`Self::add_image`], with its manifest's digest.
    pub fn images(&self) -> Vec<(String, String)> {
        self.manifests
            .iter()
            .filter_map(|m| {
                let name = m["annotations"][ANNOTATION_CONTAINERD_NAME].as_str()?;
                let digest = m["digest"].as_str()?;
                Some((name.to_owned(), digest.to_owned()))
            })
            .collect()
    }

    /// The blob `digest` (`sha256:<hex>`): a manifest, a config or a layer.
    pub fn blob(&self, digest: &str) -> Option<&[u8]> {
        self.blobs.get(digest).map(Vec::as_slice)
    }

    fn add_blob(&mut self, media_type: &str, data: Vec<u8>) -> Value {
        let digest = sha256_digest(&data);
        let descriptor = json!({ "mediaType": media_type, "digest": digest, "size": data.len() });
        self.blobs.insert(digest, data);
        descriptor
    }

    /// The layout as one tar: `oci-layout`, `index.json` and `blobs/sha256/<hex>`.
    pub fn to_tar(&self) -> Result<Vec<u8>, Error> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": self.manifests,
        });
        let mut tar = TarBuilder::new();
        tar.file(
            "oci-layout",
            0o644,
            &to_bytes(&json!({ "imageLayoutVersion": "1.0.0" })),
        )?;
        tar.file("index.json", 0o644, &to_bytes(&index))?;
        tar.dir("blobs", 0o755)?;
        tar.dir("blobs/sha256", 0o755)?;
        for (digest, data) in &self.blobs {
            let hex = digest.trim_start_matches("sha256:");
            tar.file(&format!("blobs/sha256/{hex}"), 0o644, data)?;
        }
        Ok(tar.finish())
    }
}

/// The tag of a reference (`1` of `keel.local/busybox:1`), `latest` if it has none. A colon
/// before the last slash belongs to a registry's port, not a tag.
fn tag_of(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag,
        None => "latest",
    }
}

fn to_bytes(value: &Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail: its map keys are always strings.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::tar::{read, TarBuilder};
    use super::*;

    fn layer(content: &[u8]) -> Vec<u8> {
        let mut tar = TarBuilder::new();
        tar.file("hello", 0o644, content).expect("file");
        tar.finish()
    }

    fn files(archive: &OciArchive) -> BTreeMap<String, Vec<u8>> {
        read(&archive.to_tar().expect("tar"))
            .into_iter()
            .filter(|e| e.type_flag == b'0')
            .map(|e| (e.path, e.data))
            .collect()
    }

    fn json_of(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("json")
    }

    fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &Value) -> &'a [u8] {
        let hex = digest
            .as_str()
            .and_then(|d| d.strip_prefix("sha256:"))
            .expect("sha256 digest");
        &files[&format!("blobs/sha256/{hex}")]
    }

    #[test]
    fn digests_are_sha256_in_lower_hex() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_blob_is_stored_under_the_digest_of_its_content() {
        let mut archive = OciArchive::new();
        archive.add_image("keel.local/a:1", &RunConfig::default(), &[layer(b"a")]);
        let files = files(&archive);
        let blobs: Vec<_> = files
            .iter()
            .filter(|(path, _)| path.starts_with("blobs/sha256/"))
            .collect();
        assert_eq!(blobs.len(), 3, "a layer, a config and a manifest");
        for (path, data) in blobs {
            assert_eq!(
                path.trim_start_matches("blobs/sha256/"),
                sha256_digest(data).trim_start_matches("sha256:")
            );
        }
        assert_eq!(
            json_of(&files["oci-layout"]),
            json!({ "imageLayoutVersion": "1.0.0" })
        );
    }

    #[test]
    fn index_manifest_and_config_reference_each_other_by_digest_and_size() {
        let mut archive = OciArchive::new();
        let run = RunConfig {
            entrypoint: vec!["/bin/sh".into()],
            cmd: vec!["-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            working_dir: "/".into(),
        };
        let layer = layer(b"content");
        let manifest_digest =
            archive.add_image("keel.local/busybox:1", &run, std::slice::from_ref(&layer));
        let files = files(&archive);

        let index = json_of(&files["index.json"]);
        assert_eq!(index["mediaType"], MEDIA_TYPE_INDEX);
        let entry = &index["manifests"][0];
        assert_eq!(entry["digest"], manifest_digest.as_str());
        assert_eq!(
            entry["annotations"]["io.containerd.image.name"],
            "keel.local/busybox:1"
        );
        assert_eq!(
            entry["annotations"]["org.opencontainers.image.ref.name"],
            "1"
        );
        assert_eq!(entry["platform"]["os"], "linux");
        let manifest_bytes = blob(&files, &entry["digest"]);
        assert_eq!(entry["size"], manifest_bytes.len());

        let manifest = json_of(manifest_bytes);
        assert_eq!(manifest["schemaVersion"], 2);
        let layer_descriptor = &manifest["layers"][0];
        assert_eq!(layer_descriptor["mediaType"], MEDIA_TYPE_LAYER_TAR);
        assert_eq!(blob(&files, &layer_descriptor["digest"]), layer.as_slice());
        assert_eq!(layer_descriptor["size"], layer.len());

        let config_bytes = blob(&files, &manifest["config"]["digest"]);
        assert_eq!(manifest["config"]["size"], config_bytes.len());
        let config = json_of(config_bytes);
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!([sha256_digest(&layer)]),
            "uncompressed layers: diff_id is the layer digest"
        );
        assert_eq!(config["config"]["Entrypoint"], json!(["/bin/sh"]));
        assert_eq!(config["config"]["Cmd"], json!(["-c", "true"]));
    }

    #[test]
    fn images_sharing_a_layer_store_it_once() {
        let mut archive = OciArchive::new();
        let shared = layer(b"shared");
        archive.add_image(
            "keel.local/a:1",
            &RunConfig::default(),
            std::slice::from_ref(&shared),
        );
        let other = RunConfig {
            cmd: vec!["sleep".into()],
            ..RunConfig::default()
        };
        archive.add_image("keel.local/b:1", &other, &[shared]);
        let files = files(&archive);
        let index = json_of(&files["index.json"]);
        assert_eq!(index["manifests"].as_array().map(Vec::len), Some(2));
        let blobs = files.keys().filter(|p| p.starts_with("blobs/")).count();
        assert_eq!(blobs, 5, "one layer, two configs, two manifests");
    }

    #[test]
    fn tags_come_after_the_last_slash() {
        assert_eq!(tag_of("keel.local/busybox:1"), "1");
        assert_eq!(tag_of("localhost:5000/busybox"), "latest");
        assert_eq!(tag_of("busybox"), "latest");
    }
}
