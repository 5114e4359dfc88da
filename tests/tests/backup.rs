//! Backups: `etcdctl snapshot save` from a running keel cluster, `keel snapshot restore` into the
//! data dirs of a new cluster, which then serves exactly the saved data. A damaged backup is
//! refused before anything is written.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context, Result};
use keel_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
use keel_tests::cluster::keel_bin;
use keel_tests::etcdctl::etcdctl;
use keel_tests::{Cluster, Flavor};

/// Every key with its value and revisions, read at `revision`.
async fn dump(cluster: &Cluster, i: usize, revision: i64) -> Result<BTreeMap<Vec<u8>, String>> {
    let resp = cluster
        .kv(i)
        .await?
        .range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(resp
        .kvs
        .into_iter()
        .map(|kv| {
            let summary = format!(
                "{} c{} m{} v{}",
                String::from_utf8_lossy(&kv.value),
                kv.create_revision,
                kv.mod_revision,
                kv.version
            );
            (kv.key, summary)
        })
        .collect())
}

fn restore(file: &std::path::Path, data_dir: &std::path::Path) -> Result<std::process::Output> {
    Ok(Command::new(keel_bin()?)
        .args(["snapshot", "restore"])
        .arg(file)
        .arg("--data-dir")
        .arg(data_dir)
        .output()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saved_snapshot_restores_into_a_cluster_that_serves_the_same_data() -> Result<()> {
    let original = Cluster::start(Flavor::KeelStore, 3).await?;
    let mut kv = original.kv(0).await?;
    for n in 0..400 {
        kv.put(PutRequest {
            key: format!("k/{n:04}").into_bytes(),
            value: format!("v{n}").into_bytes(),
            ..Default::default()
        })
        .await?;
    }
    for n in (0..400).step_by(7) {
        kv.put(PutRequest {
            key: format!("k/{n:04}").into_bytes(),
            value: b"again".to_vec(),
            ..Default::default()
        })
        .await?;
    }
    kv.delete_range(DeleteRangeRequest {
        key: b"k/0100".to_vec(),
        range_end: b"k/0150".to_vec(),
        ..Default::default()
    })
    .await?;

    let work = tempfile::tempdir()?;
    let file = work.path().join("backup.db");
    let saved = etcdctl(
        &original.endpoints()[..1],
        &["snapshot", "save", &file.display().to_string()],
        None,
    )?;
    assert_eq!(saved.status, 0, "etcdctl snapshot save: {saved:?}");
    assert!(
        saved.stdout.contains("Snapshot saved at"),
        "{}",
        saved.stdout
    );

    // What the backup must hold: everything up to the revision it was taken at.
    let at = kv
        .range(RangeRequest {
            key: b"k/".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .header
        .context("header")?
        .revision;
    let expected = dump(&original, 0, at).await?;
    let expected_hash = original.hash_kv_at(0, at).await?;
    assert_eq!(expected.len(), 400 - 50 + 1, "k/* plus the readiness key");

    // A damaged backup is refused and leaves no data dir behind.
    let bytes = std::fs::read(&file)?;
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    for (name, damaged) in [
        ("flipped.db", flipped),
        ("truncated.db", bytes[..bytes.len() - 100].to_vec()),
    ] {
        let path = work.path().join(name);
        std::fs::write(&path, damaged)?;
        let target = work.path().join(format!("{name}.data"));
        let out = restore(&path, &target)?;
        assert!(!out.status.success(), "{name} restored");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("corrupt snapshot"), "{name}: {stderr}");
        assert!(!target.exists(), "{name}: a data dir was left behind");
    }

    // Every member of a new cluster restores the same file.
    let restored =
        Cluster::start_prepared(Flavor::KeelStore, 3, &[], |_, dir| {
            let out = restore(&file, dir)?;
            anyhow::ensure!(out.status.success(), "restore: {out:?}");
            anyhow::ensure!(
                String::from_utf8_lossy(&out.stdout).contains(&format!("at revision {at}"))
            );
            Ok(())
        })
        .await?;
    for i in 0..3 {
        assert_eq!(
            restored.hash_kv_at(i, at).await?,
            expected_hash,
            "member {i}"
        );
    }
    assert_eq!(dump(&restored, 1, at).await?, expected);
    // The restored cluster goes on from the saved revision.
    let put = restored
        .kv(2)
        .await?
        .put(PutRequest {
            key: b"after".to_vec(),
            value: b"restore".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(put.header.context("header")?.revision > at);
    Ok(())
}
