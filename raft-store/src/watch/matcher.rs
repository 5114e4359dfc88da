//! What one watcher wants: its key range, filters and position. Pure: no I/O.

use keel_proto::etcdserverpb::watch_create_request::FilterType;
use keel_proto::etcdserverpb::WatchCreateRequest;
use keel_proto::mvccpb::event::EventType;
use keel_proto::mvccpb::Event;

use crate::mvcc::key_in_range;

/// One registered watcher.
#[derive(Debug, Clone)]
pub struct Watcher {
    pub id: i64,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub progress_notify: bool,
    /// The lowest revision not yet delivered.
    pub next_rev: i64,
}

impl Watcher {
    pub fn new(id: i64, req: &WatchCreateRequest, next_rev: i64) -> Self {
        let has = |f: FilterType| req.filters.contains(&(f as i32));
        Self {
            id,
            key: req.key.clone(),
            range_end: req.range_end.clone(),
            prev_kv: req.prev_kv,
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            progress_notify: req.progress_notify,
            next_rev,
        }
    }

    /// Whether this watcher should receive `event`.
    pub fn wants(&self, event: &Event) -> bool {
        let Some(kv) = &event.kv else { return false };
        let filtered = match EventType::try_from(event.r#type) {
            Ok(EventType::Put) => self.no_put,
            Ok(EventType::Delete) => self.no_delete,
            Err(_) => true,
        };
        !filtered && key_in_range(&kv.key, &self.key, &self.range_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::mvccpb::KeyValue;

    fn ev(t: EventType, key: &str) -> Event {
        Event {
            r#type: t as i32,
            kv: Some(KeyValue {
                key: key.into(),
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn prefix_watcher_matches_keys_under_the_prefix_only() {
        let req = WatchCreateRequest {
            key: b"a/".to_vec(),
            range_end: b"a0".to_vec(),
            ..Default::default()
        };
        let w = Watcher::new(0, &req, 1);
        assert!(w.wants(&ev(EventType::Put, "a/x")));
        assert!(!w.wants(&ev(EventType::Put, "b")));
    }

    #[test]
    fn noput_filter_drops_puts_but_not_deletes() {
        let req = WatchCreateRequest {
            key: b"k".to_vec(),
            filters: vec![FilterType::Noput as i32],
            ..Default::default()
        };
        let w = Watcher::new(0, &req, 1);
        assert!(!w.wants(&ev(EventType::Put, "k")));
        assert!(w.wants(&ev(EventType::Delete, "k")));
    }
}
