//! Query parameters of resource requests, read into the core's options: list and watch
//! parameters, `dryRun`, `fieldValidation`, DeleteOptions, Table's `includeObject`.

use std::time::Duration;

use axum::http::Uri;
use serde_json::Value;

use super::table::IncludeObject;
use crate::admission::FieldValidation;
use crate::error::ApiError;
use crate::list::ListOptions;
use crate::server::{DeleteOptions, WriteOptions};
use crate::watch::WatchOptions;

/// The decoded query string; a parameter given twice counts by its first value.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn from_uri(uri: &Uri) -> Result<Self, ApiError> {
        let pairs = match uri.query() {
            None => Vec::new(),
            Some(_) => {
                axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
                    .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?
                    .0
            }
        };
        Ok(Self { pairs })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn string(&self, key: &str) -> String {
        self.get(key).unwrap_or_default().to_string()
    }

    /// A boolean parameter as Kubernetes reads one (Go's ParseBool: "1", "t", "true" in any
    /// of its usual cases — the Python client sends "True"), or a bare key.
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("true" | "True" | "TRUE" | "t" | "T" | "1" | "")
        )
    }

    fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid {key}: {v:?}")))
            })
            .transpose()
    }

    pub fn is_watch(&self) -> bool {
        self.flag("watch")
    }

    pub fn list_options(&self) -> Result<ListOptions, ApiError> {
        Ok(ListOptions {
            label_selector: self.string("labelSelector"),
            field_selector: self.string("fieldSelector"),
            limit: self.int("limit")?.unwrap_or(0),
            continue_token: self.string("continue"),
            resource_version: self.string("resourceVersion"),
            resource_version_match: self.string("resourceVersionMatch"),
        })
    }

    pub fn watch_options(&self) -> WatchOptions {
        WatchOptions {
            label_selector: self.string("labelSelector"),
            field_selector: self.string("fieldSelector"),
            resource_version: self.string("resourceVersion"),
            allow_bookmarks: self.flag("allowWatchBookmarks"),
            send_initial_events: self.flag("sendInitialEvents"),
        }
    }

    /// How long a watch may run: `timeoutSeconds`, if given and positive.
    pub fn watch_timeout(&self) -> Result<Option<Duration>, ApiError> {
        Ok(self
            .int("timeoutSeconds")?
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s.unsigned_abs())))
    }

    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "Invalid dryRun value: {other:?}: supported values: \"All\""
            ))),
        }
    }

    pub fn write_options(&self) -> Result<WriteOptions, ApiError> {
        Ok(WriteOptions {
            dry_run: self.dry_run()?,
            field_validation: FieldValidation::parse(self.get("fieldValidation").unwrap_or(""))?,
            fence: None,
            field_manager: self.get("fieldManager").map(str::to_string),
            applied: false,
            requester: None,
        })
    }

    /// DeleteOptions from the body (a meta/v1 DeleteOptions, possibly empty) and the query;
    /// the query's fields win where both are given, as Kubernetes decodes them.
    pub fn delete_options(&self, body: &[u8]) -> Result<DeleteOptions, ApiError> {
        let mut opts = DeleteOptions::default();
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::BadRequest(format!("the DeleteOptions are not valid JSON: {e}"))
            })?;
            let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
            opts.uid = s("/preconditions/uid");
            opts.resource_version = s("/preconditions/resourceVersion");
            opts.propagation_policy = s("/propagationPolicy");
            opts.grace_period_seconds = v.pointer("/gracePeriodSeconds").and_then(Value::as_i64);
            if let Some(true) = v.pointer("/orphanDependents").and_then(Value::as_bool) {
                opts.propagation_policy
                    .get_or_insert_with(|| "Orphan".into());
            }
            opts.dry_run = v
                .pointer("/dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|x| x == "All"));
        }
        if let Some(policy) = self.get("propagationPolicy") {
            opts.propagation_policy = Some(policy.to_string());
        }
        if let Some(grace) = self.int("gracePeriodSeconds")? {
            opts.grace_period_seconds = Some(grace);
        }
        if self.dry_run()? {
            opts.dry_run = true;
        }
        Ok(opts)
    }

    pub fn include_object(&self) -> Result<IncludeObject, ApiError> {
        match self.get("includeObject") {
            None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("Object") => Ok(IncludeObject::Object),
            Some("None") => Ok(IncludeObject::None),
            Some(other) => Err(ApiError::BadRequest(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: &str) -> Query {
        let uri: Uri = format!("/api/v1/pods?{q}").parse().expect("uri");
        Query::from_uri(&uri).expect("query")
    }

    #[test]
    fn list_and_watch_parameters_are_decoded() {
        let q = query("labelSelector=app%3Dweb&limit=10&continue=abc&watch=1&allowWatchBookmarks=true&timeoutSeconds=30");
        let list = q.list_options().expect("list options");
        assert_eq!(list.label_selector, "app=web");
        assert_eq!(list.limit, 10);
        assert_eq!(list.continue_token, "abc");
        assert!(q.is_watch());
        assert!(q.watch_options().allow_bookmarks);
        assert_eq!(
            q.watch_timeout().expect("timeout"),
            Some(Duration::from_secs(30))
        );
        assert!(!query("watch=false").is_watch());
        assert!(
            query("watch=True").is_watch(),
            "as the Python client sends it"
        );
    }

    #[test]
    fn delete_options_come_from_body_and_query() {
        let q = query("propagationPolicy=Foreground&dryRun=All");
        let opts = q
            .delete_options(
                br#"{"kind":"DeleteOptions","gracePeriodSeconds":5,"preconditions":{"uid":"u1"}}"#,
            )
            .expect("options");
        assert_eq!(opts.propagation_policy.as_deref(), Some("Foreground"));
        assert_eq!(opts.grace_period_seconds, Some(5));
        assert_eq!(opts.uid.as_deref(), Some("u1"));
        assert!(opts.dry_run);
    }

    #[test]
    fn bad_values_are_bad_requests() {
        assert_eq!(
            query("limit=x").list_options().expect_err("limit").code(),
            400
        );
        assert_eq!(
            query("dryRun=Some")
                .write_options()
                .expect_err("dry")
                .code(),
            400
        );
        assert_eq!(
            query("fieldValidation=Loose")
                .write_options()
                .expect_err("fv")
                .code(),
            400
        );
    }
}
