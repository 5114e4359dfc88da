//! The in-memory key index: for every key, the revisions at which it was written or deleted.
//!
//! Values live on disk keyed by revision; this index answers "which revision of key K is visible
//! at revision R" without touching disk, as etcd's treeIndex does. It is rebuilt from disk at
//! start-up by replaying the stored revisions in order.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::revision::Revision;

/// What happened to a key at one revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Put {
        created: i64,
        version: i64,
        lease: i64,
    },
    Tombstone,
}

/// One visible version of a key, as the index knows it (the value itself is on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visible {
    pub modified: Revision,
    pub created: i64,
    pub version: i64,
    pub lease: i64,
}

/// The history of a single key, ordered by revision.
#[derive(Debug, Clone, Default)]
struct KeyHistory {
    changes: Vec<(Revision, Change)>,
}

impl KeyHistory {
    fn visible_at(&self, at: i64) -> Option<Visible> {
        let idx = self.changes.partition_point(|(rev, _)| rev.main <= at);
        let (rev, change) = self.changes.get(idx.checked_sub(1)?)?;
        match *change {
            Change::Put {
                created,
                version,
                lease,
            } => Some(Visible {
                modified: *rev,
                created,
                version,
                lease,
            }),
            Change::Tombstone => None,
        }
    }

    fn latest(&self) -> Option<Visible> {
        self.visible_at(i64::MAX)
    }

    /// Drops what no read at or after `at` can see. Returns the revisions that must stay on disk.
    fn compact(&mut self, at: i64, keep: &mut Vec<Revision>) {
        let idx = self.changes.partition_point(|(rev, _)| rev.main <= at);
        if idx == 0 {
            return;
        }
        match self.changes[idx - 1].1 {
            Change::Tombstone => {
                self.changes.drain(..idx);
            }
            Change::Put { .. } => {
                self.changes.drain(..idx - 1);
                keep.push(self.changes[0].0);
            }
        }
    }
}

/// Index over all keys. Pure data: no I/O, no locking.
#[derive(Debug, Default, Clone)]
pub struct KeyIndex {
    keys: BTreeMap<Vec<u8>, KeyHistory>,
}

impl KeyIndex {
    /// Records a put of `key` at `rev` and returns the version it creates.
    pub fn put(&mut self, key: &[u8], rev: Revision, lease: i64) -> Visible {
        let history = self.keys.entry(key.to_vec()).or_default();
        let (created, version) = match history.latest() {
            Some(prev) => (prev.created, prev.version + 1),
            None => (rev.main, 1),
        };
        history.changes.push((
            rev,
            Change::Put {
                created,
                version,
                lease,
            },
        ));
        Visible {
            modified: rev,
            created,
            version,
            lease,
        }
    }

    /// Replays a stored change during recovery, trusting the stored create revision and version.
    pub fn restore(&mut self, key: &[u8], rev: Revision, change: Change) {
        self.keys
            .entry(key.to_vec())
            .or_default()
            .changes
            .push((rev, change));
    }

    /// Records a delete of `key` at `rev`; returns false (and records nothing) if it is not live.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        match self.keys.get_mut(key) {
            Some(history) if history.latest().is_some() => {
                history.changes.push((rev, Change::Tombstone));
                true
            }
            _ => false,
        }
    }

    /// The version of `key` visible at main revision `at`.
    pub fn get(&self, key: &[u8], at: i64) -> Option<Visible> {
        self.keys.get(key)?.visible_at(at)
    }

    /// Keys in `[start, end)` (`end` empty means "to the end of the keyspace") visible at `at`,
    /// in key order.
    pub fn range<'a>(
        &'a self,
        start: &[u8],
        end: Option<&[u8]>,
        at: i64,
    ) -> impl Iterator<Item = (&'a [u8], Visible)> + 'a {
        let upper = match end {
            Some(end) if !end.is_empty() => Bound::Excluded(end.to_vec()),
            _ => Bound::Unbounded,
        };
        let lower = Bound::Included(start.to_vec());
        let empty_range = matches!(&upper, Bound::Excluded(end) if end.as_slice() <= start);
        let iter = if empty_range {
            None
        } else {
            Some(self.keys.range((lower, upper)))
        };
        iter.into_iter()
            .flatten()
            .filter_map(move |(k, h)| h.visible_at(at).map(|v| (k.as_slice(), v)))
    }

    /// Forgets history that no read at or after `at` can observe; returns the revisions at or
    /// below `at` that are still needed, so the caller deletes every other revision up to `at`.
    pub fn compact(&mut self, at: i64) -> Vec<Revision> {
        let mut keep = Vec::new();
        self.keys.retain(|_, history| {
            history.compact(at, &mut keep);
            !history.changes.is_empty()
        });
        keep
    }

    /// Number of keys with any retained history (live or not yet compacted).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn put_twice_bumps_version_and_keeps_create_revision() {
        let mut idx = KeyIndex::default();
        idx.put(b"a", rev(2), 0);
        let second = idx.put(b"a", rev(3), 0);
        assert_eq!(second.created, 2);
        assert_eq!(second.version, 2);
        assert_eq!(idx.get(b"a", 2).map(|v| v.version), Some(1));
    }

    #[test]
    fn tombstone_hides_key_and_a_new_put_starts_a_new_generation() {
        let mut idx = KeyIndex::default();
        idx.put(b"a", rev(2), 0);
        assert!(idx.tombstone(b"a", rev(3)));
        assert!(
            !idx.tombstone(b"a", rev(4)),
            "deleting a deleted key is not a change"
        );
        assert_eq!(idx.get(b"a", 3), None);
        let again = idx.put(b"a", rev(5), 0);
        assert_eq!((again.created, again.version), (5, 1));
        assert_eq!(idx.get(b"a", 2).map(|v| v.created), Some(2));
    }

    #[test]
    fn compact_keeps_the_version_visible_at_the_compaction_point() {
        let mut idx = KeyIndex::default();
        idx.put(b"a", rev(2), 0);
        idx.put(b"a", rev(3), 0);
        idx.put(b"b", rev(4), 0);
        idx.tombstone(b"b", rev(5));
        idx.put(b"a", rev(6), 0);
        let keep = idx.compact(5);
        assert_eq!(keep, vec![rev(3)]);
        assert_eq!(idx.get(b"a", 5).map(|v| v.modified), Some(rev(3)));
        assert_eq!(idx.get(b"b", 5), None);
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn range_respects_bounds_and_revision() {
        let mut idx = KeyIndex::default();
        for (i, k) in [b"a", b"b", b"c"].iter().enumerate() {
            idx.put(*k, rev(i as i64 + 2), 0);
        }
        let keys: Vec<_> = idx
            .range(b"a", Some(b"c"), 3)
            .map(|(k, _)| k.to_vec())
            .collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(idx.range(b"b", None, 10).count(), 2);
        assert_eq!(idx.range(b"c", Some(b"a"), 10).count(), 0);
    }
}
