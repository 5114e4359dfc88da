//! The [`Storage`] contract, checked on [`MemoryStorage`].

use futures::StreamExt;

use super::*;
use crate::storage::prefix_end;

fn put(key: &str, value: &str, expect: Expect) -> WriteOp {
    WriteOp {
        key: key.as_bytes().to_vec(),
        change: Change::Put(value.as_bytes().to_vec()),
        expect,
    }
}

fn delete(key: &str, expect: Expect) -> WriteOp {
    WriteOp {
        key: key.as_bytes().to_vec(),
        change: Change::Delete,
        expect,
    }
}

async fn value_of(s: &MemoryStorage, key: &str) -> Option<String> {
    s.get(key.as_bytes())
        .await
        .expect("get")
        .map(|v| String::from_utf8_lossy(&v.value).into_owned())
}

#[tokio::test]
async fn each_write_takes_the_next_revision_and_versions_its_keys() {
    let s = MemoryStorage::new();
    assert_eq!(s.revision().await.expect("revision"), 1);
    let r1 = s
        .write(vec![put("/a", "1", Expect::Absent)], vec![])
        .await
        .expect("create");
    assert_eq!(r1, 2);
    let r2 = s
        .write(vec![put("/a", "2", Expect::Revision(r1))], vec![])
        .await
        .expect("update");
    assert_eq!(r2, 3);
    let got = s.get(b"/a").await.expect("get").expect("present");
    assert_eq!(got.value, b"2");
    assert_eq!(got.mod_revision, r2);
    assert_eq!(got.create_revision, r1);
    assert_eq!(s.revision().await.expect("revision"), 3);
}

#[tokio::test]
async fn failed_expectations_are_reported_and_change_nothing() {
    let s = MemoryStorage::new();
    let rev = s
        .write(vec![put("/a", "1", Expect::Absent)], vec![])
        .await
        .expect("create");
    let exists = s
        .write(
            vec![
                put("/b", "x", Expect::Absent),
                put("/a", "2", Expect::Absent),
            ],
            vec![],
        )
        .await;
    assert_eq!(
        exists,
        Err(StorageError::AlreadyExists {
            key: b"/a".to_vec()
        })
    );
    assert_eq!(value_of(&s, "/b").await, None, "all or nothing");
    let conflict = s
        .write(vec![put("/a", "2", Expect::Revision(rev + 7))], vec![])
        .await;
    assert_eq!(
        conflict,
        Err(StorageError::Conflict {
            key: b"/a".to_vec(),
            expected: rev + 7,
            found: rev
        })
    );
    let missing = s
        .write(vec![delete("/zz", Expect::Revision(3))], vec![])
        .await;
    assert_eq!(
        missing,
        Err(StorageError::NotFound {
            key: b"/zz".to_vec()
        })
    );
    assert_eq!(s.revision().await.expect("revision"), rev);
    assert_eq!(value_of(&s, "/a").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn guards_fence_writes_on_a_keys_value() {
    let s = MemoryStorage::new();
    s.write(vec![put("/fence", "holder-1", Expect::Any)], vec![])
        .await
        .expect("fence");
    let guard = |v: &str| Guard {
        key: b"/fence".to_vec(),
        value: v.as_bytes().to_vec(),
    };
    s.write(vec![put("/x", "1", Expect::Any)], vec![guard("holder-1")])
        .await
        .expect("guard holds");
    let refused = s
        .write(vec![put("/x", "2", Expect::Any)], vec![guard("holder-0")])
        .await;
    assert_eq!(
        refused,
        Err(StorageError::GuardFailed {
            key: b"/fence".to_vec()
        })
    );
    assert_eq!(value_of(&s, "/x").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn lists_page_in_key_order_and_read_past_revisions() {
    let s = MemoryStorage::new();
    let first = s
        .write(
            vec![
                put("/p/b", "b1", Expect::Absent),
                put("/p/a", "a1", Expect::Absent),
                put("/q/c", "c1", Expect::Absent),
            ],
            vec![],
        )
        .await
        .expect("create");
    s.write(vec![put("/p/a", "a2", Expect::Any)], vec![])
        .await
        .expect("update");
    s.write(vec![delete("/p/b", Expect::Any)], vec![])
        .await
        .expect("delete");
    let end = prefix_end(b"/p/");

    let now = s.list(b"/p/", &end, 0, 0).await.expect("list");
    assert_eq!(now.items.len(), 1);
    assert_eq!(now.items[0].value, b"a2");
    assert_eq!(now.revision, first + 2);

    let then = s.list(b"/p/", &end, 1, first).await.expect("list at first");
    assert_eq!(then.revision, first);
    assert_eq!(then.items.len(), 1);
    assert_eq!(then.items[0].key, b"/p/a");
    assert_eq!(then.items[0].value, b"a1");
    assert!(then.more);
    assert_eq!(then.remaining, 1);

    let future = s.list(b"/p/", &end, 0, first + 100).await;
    assert_eq!(future, Err(StorageError::FutureRevision));
}

#[tokio::test]
async fn compaction_forgets_history_but_keeps_the_present() {
    let s = MemoryStorage::new();
    let r1 = s
        .write(vec![put("/a", "1", Expect::Absent)], vec![])
        .await
        .expect("create");
    let r2 = s
        .write(vec![put("/a", "2", Expect::Any)], vec![])
        .await
        .expect("update");
    s.compact(r2).expect("compact");
    let end = prefix_end(b"/");
    assert_eq!(
        s.list(b"/", &end, 0, r1).await,
        Err(StorageError::Compacted { compacted: r2 })
    );
    assert!(matches!(
        s.watch(b"/", &end, r1, ProgressRequests::default())
            .await
            .err(),
        Some(StorageError::Compacted { compacted }) if compacted == r2
    ));
    let at = s.list(b"/", &end, 0, r2).await.expect("list at compaction");
    assert_eq!(at.items[0].value, b"2");
}

#[tokio::test]
async fn watches_replay_history_then_follow_changes_in_their_range() {
    let s = MemoryStorage::new();
    let r1 = s
        .write(vec![put("/w/a", "1", Expect::Absent)], vec![])
        .await
        .expect("create");
    let r2 = s
        .write(vec![put("/w/a", "2", Expect::Any)], vec![])
        .await
        .expect("update");
    let progress = ProgressRequests::default();
    let mut events = s
        .watch(b"/w/", &prefix_end(b"/w/"), r1, progress.clone())
        .await
        .expect("watch");
    s.write(vec![put("/elsewhere", "x", Expect::Any)], vec![])
        .await
        .expect("outside the range");
    let r4 = s
        .write(vec![delete("/w/a", Expect::Any)], vec![])
        .await
        .expect("delete");
    s.notify_progress().expect("progress");

    let replayed = events.next().await.expect("event").expect("ok");
    assert_eq!(
        replayed,
        StoreEvent::Put {
            key: b"/w/a".to_vec(),
            value: b"2".to_vec(),
            prev: Some(b"1".to_vec()),
            mod_revision: r2,
            create_revision: r1,
        }
    );
    let deleted = events.next().await.expect("event").expect("ok");
    assert_eq!(
        deleted,
        StoreEvent::Delete {
            key: b"/w/a".to_vec(),
            prev: Some(b"2".to_vec()),
            mod_revision: r4,
        }
    );
    let notified = events.next().await.expect("event").expect("ok");
    assert_eq!(notified, StoreEvent::Progress { revision: r4 });

    // Asked for, progress names the latest revision, even one outside the range, and comes
    // after every change it covers.
    let r5 = s
        .write(vec![put("/elsewhere", "y", Expect::Any)], vec![])
        .await
        .expect("outside the range");
    let r6 = s
        .write(vec![put("/w/b", "1", Expect::Any)], vec![])
        .await
        .expect("in the range");
    progress.request();
    let created = events.next().await.expect("event").expect("ok");
    assert!(matches!(created, StoreEvent::Put { mod_revision, .. } if mod_revision == r6));
    let asked = events.next().await.expect("event").expect("ok");
    assert_eq!(asked, StoreEvent::Progress { revision: r6 });
    assert!(r6 > r5);
}

#[tokio::test]
async fn deleting_nothing_takes_no_revision() {
    let s = MemoryStorage::new();
    let before = s.revision().await.expect("revision");
    let rev = s
        .write(vec![delete("/nothing", Expect::Any)], vec![])
        .await
        .expect("no-op delete");
    assert_eq!(rev, before);
    assert_eq!(s.revision().await.expect("revision"), before);
}
