//! A reflector: a watch stream that fills a cache as it goes. Each event is applied to the
//! cache before it is passed on, so whoever consumes the stream finds the cache at least as
//! new as the event in hand.

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;
use keel_types::k8s_openapi;

use crate::error::Error;
use crate::store::Writer;
use crate::watcher::Event;

pub use crate::store::{store, Store};

/// Applies every event of `events` to `writer`'s cache, then yields it unchanged. Errors pass
/// through and leave the cache as it was. The cache is only filled while the returned stream
/// is polled.
pub fn reflector<K, S>(mut writer: Writer<K>, events: S) -> impl Stream<Item = S::Item>
where
    K: Metadata<Ty = ObjectMeta> + Clone,
    S: Stream<Item = Result<Event<K>, Error>>,
{
    events.inspect(move |event| {
        if let Ok(event) = event {
            writer.apply(event);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_key::ObjectKey;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn each_event_is_in_the_cache_when_it_is_yielded() {
        let (store, writer) = store::<ConfigMap>();
        let events = futures::stream::iter(vec![
            Ok(Event::Restarted(vec![cm("a")])),
            Ok(Event::Applied(cm("b"))),
            Err(Error::Transport("broken".into())),
            Ok(Event::Deleted(cm("a"))),
        ]);
        let mut reflected = Box::pin(reflector(writer, events));

        let mut seen = Vec::new();
        while let Some(event) = reflected.next().await {
            let present = |name: &str| store.get(&ObjectKey::namespaced("default", name));
            seen.push(match event {
                Ok(Event::Restarted(_)) => ("restarted", present("a").is_some()),
                Ok(Event::Applied(_)) => ("applied", present("b").is_some()),
                Ok(Event::Deleted(_)) => ("deleted", present("a").is_none()),
                Err(_) => ("error", store.len() == 2),
            });
        }

        assert_eq!(
            seen,
            [
                ("restarted", true),
                ("applied", true),
                ("error", true),
                ("deleted", true)
            ]
        );
        assert!(store.is_ready());
    }
}
