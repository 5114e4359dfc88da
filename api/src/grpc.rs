//! The `keelapi.Api` gRPC service: thin handlers that decode a request, call the core and encode
//! the object as JSON. Errors carry the Kubernetes Status in the gRPC details.

use std::sync::Arc;

use futures::StreamExt;
use keel_proto::keelapi::api_server::Api;
use keel_proto::keelapi::{
    CreateRequest, DeleteRequest, Fence as FenceMsg, GetRequest, ListRequest, ObjectReply,
    PatchRequest, ResourceRef, UpdateRequest, WatchEvent as WatchEventMsg, WatchRequest,
};
use keel_types::ResourceInfo;
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::admission::FieldValidation;
use crate::auth::{Attributes, PeerCertificate, UserInfo};
use crate::error::ApiError;
use crate::fairness::{self, Class, Fairness, Kind, Seat};
use crate::list::ListOptions;
use crate::patch::PatchType;
use crate::server::{ApiServer, DeleteOptions, Fence, WriteOptions, Written};
use crate::storage::Storage;
use crate::watch::WatchOptions;

pub struct GrpcApi<S> {
    core: Arc<ApiServer<S>>,
    /// Where calls wait for their seats, if anywhere (see [`crate::fairness`]).
    fairness: Option<Arc<Fairness>>,
}

impl<S> GrpcApi<S> {
    pub fn new(core: Arc<ApiServer<S>>) -> Self {
        Self {
            core,
            fairness: None,
        }
    }

    /// Every call waits for a seat of its class in its user's turn, as REST requests do.
    pub fn with_fairness(self, fairness: Arc<Fairness>) -> Self {
        Self {
            fairness: Some(fairness),
            ..self
        }
    }
}

/// The served kind `r` names: a built-in one, or one a CustomResourceDefinition defines
/// (at `r`'s version, or its definition's first served version when `r` names none).
fn find(r: &ResourceRef, custom: &crate::crd::CustomKinds) -> Option<&'static ResourceInfo> {
    if let Some(info) = keel_types::kinds::by_resource(&r.group, &r.resource) {
        return (r.version.is_empty() || info.version == r.version).then_some(info);
    }
    custom
        .all()
        .iter()
        .find(|v| {
            v.info.group == r.group
                && v.info.plural == r.resource
                && (r.version.is_empty() || v.info.version == r.version)
        })
        .map(|v| v.info)
}

impl<S: Storage> GrpcApi<S> {
    async fn resolve<'a>(
        &self,
        r: &'a Option<ResourceRef>,
    ) -> Result<(&'static ResourceInfo, &'a ResourceRef), Status> {
        let r = r
            .as_ref()
            .ok_or_else(|| ApiError::BadRequest("ref is required".into()).to_grpc())?;
        if let Some(info) = find(r, &self.core.custom_kinds_now()) {
            return Ok((info, r));
        }
        // A definition just stored (perhaps through another master) may define it.
        let custom = self.core.custom_kinds().await.map_err(|e| e.to_grpc())?;
        let info = find(r, &custom).ok_or_else(|| ApiError::UnknownResource.to_grpc())?;
        Ok((info, r))
    }
}

/// What a call offers to authenticate with, taken before the request is consumed.
struct Credentials {
    /// The user a verified TLS client certificate names: the HTTPS listener attaches it to every
    /// request of the connection. Plain ports never do, and a caller cannot forge it, since
    /// extensions do not come off the wire.
    peer: Option<UserInfo>,
    /// The `authorization` metadata.
    header: Option<String>,
}

fn credentials<T>(req: &Request<T>) -> Credentials {
    Credentials {
        peer: req
            .extensions()
            .get::<PeerCertificate>()
            .and_then(|p| p.0.clone()),
        header: req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

impl<S: Storage> GrpcApi<S> {
    /// Authenticates the caller (a verified client certificate first, as the REST API does,
    /// else the bearer token) and authorizes `verb` on `r`.
    async fn check(
        &self,
        credentials: Credentials,
        verb: &str,
        info: &'static ResourceInfo,
        r: &ResourceRef,
    ) -> Result<UserInfo, Status> {
        let user = match credentials.peer {
            Some(user) => user,
            None => self
                .core
                .authenticate(credentials.header.as_deref())
                .map_err(|e| e.to_grpc())?,
        };
        let attrs = Attributes {
            user: user.clone(),
            verb: verb.to_string(),
            api_group: info.group.to_string(),
            resource: info.plural.to_string(),
            subresource: r.subresource.clone(),
            namespace: if info.namespaced() {
                r.namespace.clone()
            } else {
                String::new()
            },
            name: r.name.clone(),
            path: None,
        };
        self.core.authorize(&attrs).await.map_err(|e| e.to_grpc())?;
        Ok(user)
    }
}

impl<S: Storage> GrpcApi<S> {
    /// Waits for the call's seat; a refusal is the 429 REST gives, as ResourceExhausted.
    async fn admit(&self, user: &UserInfo, kind: Kind) -> Result<(Class, Option<Seat>), Status> {
        let class = fairness::classify(kind);
        let Some(fairness) = &self.fairness else {
            return Ok((class, None));
        };
        match fairness.admit(class, &user.name).await {
            Ok(seat) => Ok((class, seat)),
            Err(_) => Err(fairness::refusal().to_grpc()),
        }
    }
}

fn namespace(r: &ResourceRef) -> Option<&str> {
    Some(r.namespace.as_str()).filter(|n| !n.is_empty())
}

fn subresource(r: &ResourceRef) -> Option<&str> {
    Some(r.subresource.as_str()).filter(|s| !s.is_empty())
}

fn body(bytes: &[u8]) -> Result<Value, Status> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("the object is not valid JSON: {e}")).to_grpc())
}

fn fence(f: Option<FenceMsg>) -> Option<Fence> {
    f.map(|f| Fence {
        lease_namespace: f.lease_namespace,
        lease_name: f.lease_name,
        holder: f.holder,
        transitions: i64::from(f.transitions),
    })
}

fn write_options(o: Option<keel_proto::keelapi::WriteOptions>) -> Result<WriteOptions, Status> {
    let o = o.unwrap_or_default();
    Ok(WriteOptions {
        dry_run: o.dry_run,
        field_validation: FieldValidation::parse(&o.field_validation).map_err(|e| e.to_grpc())?,
        fence: fence(o.fence),
        ..Default::default()
    })
}

fn reply(object: &Value, warnings: Vec<String>) -> Result<Response<ObjectReply>, Status> {
    let object =
        serde_json::to_vec(object).map_err(|e| ApiError::Internal(e.to_string()).to_grpc())?;
    Ok(Response::new(ObjectReply { object, warnings }))
}

fn written(w: Result<Written, ApiError>) -> Result<Response<ObjectReply>, Status> {
    let w = w.map_err(|e| e.to_grpc())?;
    reply(&w.object, w.warnings)
}

fn delete_options(bytes: &[u8], fence_msg: Option<FenceMsg>) -> Result<DeleteOptions, Status> {
    let mut opts = DeleteOptions {
        fence: fence(fence_msg),
        ..Default::default()
    };
    if bytes.is_empty() {
        return Ok(opts);
    }
    let v = body(bytes)?;
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    opts.uid = s("/preconditions/uid");
    opts.resource_version = s("/preconditions/resourceVersion");
    opts.propagation_policy = s("/propagationPolicy");
    opts.grace_period_seconds = v.pointer("/gracePeriodSeconds").and_then(Value::as_i64);
    opts.dry_run = v
        .pointer("/dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|x| x == "All"));
    Ok(opts)
}

#[tonic::async_trait]
impl<S: Storage> Api for GrpcApi<S> {
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<ObjectReply>, Status> {
        let credentials = credentials(&req);
        let req = req.into_inner();
        let (info, r) = self.resolve(&req.r#ref).await?;
        let user = self.check(credentials, "get", info, r).await?;
        let _seat = self.admit(&user, Kind::Read).await?;
        let mut obj = self
            .core
            .get(info, namespace(r), &r.name)
            .await
            .map_err(|e| e.to_grpc())?;
        if let Some(version) = self.core.custom_version(info) {
            crate::crd::present(&version, &mut obj);
        }
        reply(&obj, vec![])
    }

    async fn list(&self, req: Request<ListRequest>) -> Result<Response<ObjectReply>, Status> {
        let credentials = credentials(&req);
        let req = req.into_inner();
        let (info, r) = self.resolve(&req.r#ref).await?;
        let user = self.check(credentials, "list", info, r).await?;
        let (class, _seat) = self
            .admit(
                &user,
                self.core.list_kind(info, namespace(r), false, req.limit),
            )
            .await?;
        let opts = ListOptions {
            label_selector: req.label_selector,
            field_selector: req.field_selector,
            limit: req.limit,
            continue_token: req.r#continue,
            resource_version: req.resource_version,
            resource_version_match: req.resource_version_match,
        };
        let core = self.core.clone();
        let ns = namespace(r).map(str::to_string);
        let custom = self.core.custom_version(info);
        let work = async move {
            let mut list = core
                .list(info, ns.as_deref(), &opts)
                .await
                .map_err(|e| e.to_grpc())?;
            if let (Some(version), Some(items)) = (&custom, list["items"].as_array_mut()) {
                items
                    .iter_mut()
                    .for_each(|item| crate::crd::present(version, item));
            }
            reply(&list, vec![])
        };
        match (&self.fairness, class) {
            (Some(fairness), Class::LargeRead) => fairness
                .run_large(work)
                .await
                .unwrap_or_else(|| Err(Status::internal("the list failed"))),
            _ => work.await,
        }
    }

    async fn create(&self, req: Request<CreateRequest>) -> Result<Response<ObjectReply>, Status> {
        let credentials = credentials(&req);
        let req = req.into_inner();
        let (info, r) = self.resolve(&req.r#ref).await?;
        let user = self.check(credentials, "create", info, r).await?;
        let _seat = self.admit(&user, Kind::Write).await?;
        if r.subresource == "token" && info.plural == "serviceaccounts" {
            let review = self
                .core
                .create_token(&r.namespace, &r.name, &body(&req.object)?)
                .await
                .map_err(|e| e.to_grpc())?;
            return reply(&review, vec![]);
        }
        let mut opts = write_options(req.options)?;
        opts.requester = Some(user);
        if r.subresource == "binding" && info.plural == "pods" {
            // The ref's name is the pod's; without one the Binding names it.
            let url_name = Some(r.name.as_str()).filter(|n| !n.is_empty());
            let status = self
                .core
                .bind(&r.namespace, url_name, body(&req.object)?, &opts)
                .await
                .map_err(|e| e.to_grpc())?;
            return reply(&status, vec![]);
        }
        if r.subresource == "eviction" && info.plural == "pods" {
            let status = self
                .core
                .evict(&r.namespace, &r.name, body(&req.object)?, &opts)
                .await
                .map_err(|e| e.to_grpc())?;
            return reply(&status, vec![]);
        }
        written(
            self.core
                .create(info, namespace(r), body(&req.object)?, &opts)
                .await,
        )
    }

    async fn update(&self, req: Request<UpdateRequest>) -> Result<Response<ObjectReply>, Status> {
        let credentials = credentials(&req);
        let req = req.into_inner();
        let (info, r) = self.resolve(&req.r#ref).await?;
        let user = self.check(credentials, "update", info, r).await?;
        let _seat = self.admit(&user, Kind::Write).await?;
        let mut opts = write_options(req.options)?;
        opts.requester = Some(user);
        written(
            self.core
                .update(
                    info,
                    namespace(r),
                    &r.name,
                    subresource(r),
                    body(&req.object)?,
                    &opts,
                )
                .await,
        )
    }

    async fn patch(&self, req: Request<PatchRequest>) -> Result<Response<ObjectReply>, Status> {
        let credentials = credentials(&req);
        let req = req.into_inner();
        let (info, r) = self.resolve(&req.r#ref).await?;
        let user = self.check(credentials, "patch", info, r).await?;
        let _seat = self.admit(&user, Kind::Write).await?;
        let mut opts = write_options(req.options)?;
        opts.requester = Some(user);
        let patch_type = PatchType::from_content_type(&req.patch_type).map_err(|e| e.to_grpc())?;
        written(
            self.core
                .patch(
                    info,
                    namespace(r),
                    &r.name,
                    subresource(r),
                    patch_type,
                    &req.patch,
                    &opts,
                )
                .await,
        )
    }

    async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<ObjectReply>, Status> {
        let credentials = credentials(&req);
        let req = req.into_inner();
        let (info, r) = self.resolve(&req.r#ref).await?;
        let user = self.check(credentials, "delete", info, r).await?;
        let _seat = self.admit(&user, Kind::Write).await?;
        let mut opts = delete_options(&req.options, req.fence)?;
        opts.requester = Some(user);
        written(self.core.delete(info, namespace(r), &r.name, &opts).await)
    }

    type WatchStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<WatchEventMsg, Status>> + Send>>;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let credentials = credentials(&req);
        let req = req.into_inner();
        let (info, r) = self.resolve(&req.r#ref).await?;
        let user = self.check(credentials, "watch", info, r).await?;
        let kind = match req.resource_version.as_str() {
            "" | "0" => self.core.list_kind(info, namespace(r), true, 0),
            _ => Kind::Watch,
        };
        let (_, seat) = self.admit(&user, kind).await?;
        let opts = WatchOptions {
            label_selector: req.label_selector,
            field_selector: req.field_selector,
            resource_version: req.resource_version,
            allow_bookmarks: req.allow_bookmarks,
            send_initial_events: req.send_initial_events,
        };
        let events = self
            .core
            .watch(info, namespace(r), &opts)
            .await
            .map_err(|e| e.to_grpc())?;
        let custom = self.core.custom_version(info);
        let out = events.map(move |ev| {
            let object = match &custom {
                // A custom kind's objects, stored at their storage version, shown at this one.
                Some(version) => {
                    let mut object = ev.object.into_value();
                    crate::crd::present(version, &mut object);
                    serde_json::to_vec(&object).unwrap_or_default()
                }
                None => ev.object.into_json(),
            };
            Ok(WatchEventMsg {
                r#type: ev.kind.to_string(),
                object,
            })
        });
        Ok(Response::new(Box::pin(fairness::hold_until_idle(
            out, seat,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authn::{Authenticator, TokenFile, AUTHENTICATED};
    use crate::auth::{AuthConfig, AuthorizationMode};
    use crate::storage::memory::MemoryStorage;

    /// RBAC with its bootstrap policy, no anonymous access, and token "admin" in system:masters.
    async fn rbac_api() -> GrpcApi<MemoryStorage> {
        let tokens = TokenFile::parse("admin,admin,1,system:masters").expect("tokens");
        let auth = AuthConfig {
            authenticator: Authenticator::new(tokens, false),
            mode: AuthorizationMode::RBAC,
            ..Default::default()
        };
        let core = Arc::new(ApiServer::new(MemoryStorage::new()).with_auth(auth));
        crate::bootstrap::ensure_namespaces(&core).await;
        crate::bootstrap::ensure_rbac(&core).await;
        GrpcApi::new(core)
    }

    fn list_pods() -> Request<ListRequest> {
        Request::new(ListRequest {
            r#ref: Some(ResourceRef {
                version: "v1".into(),
                resource: "pods".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn with_certificate(
        mut req: Request<ListRequest>,
        name: &str,
        group: &str,
    ) -> Request<ListRequest> {
        req.extensions_mut().insert(PeerCertificate(Some(UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: vec![group.into(), AUTHENTICATED.into()],
        })));
        req
    }

    #[tokio::test]
    async fn a_verified_client_certificate_authenticates_a_call() {
        let api = rbac_api().await;
        let root = api
            .list(with_certificate(list_pods(), "root", "system:masters"))
            .await;
        assert!(root.is_ok(), "{root:?}");
        let alice = api
            .list(with_certificate(list_pods(), "alice", "dev"))
            .await
            .expect_err("alice has no grants");
        assert_eq!(alice.code(), tonic::Code::PermissionDenied);
        assert!(alice.message().contains("\"alice\""), "{}", alice.message());
    }

    #[tokio::test]
    async fn without_a_certificate_the_bearer_token_decides() {
        let api = rbac_api().await;
        let none = api.list(list_pods()).await.expect_err("no credentials");
        assert_eq!(none.code(), tonic::Code::Unauthenticated);
        let mut wrong = list_pods();
        wrong
            .metadata_mut()
            .insert("authorization", "Bearer nope".parse().expect("ascii"));
        let wrong = api.list(wrong).await.expect_err("unknown token");
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        let mut admin = list_pods();
        admin
            .metadata_mut()
            .insert("authorization", "Bearer admin".parse().expect("ascii"));
        assert!(api.list(admin).await.is_ok());
    }

    #[tokio::test]
    async fn a_call_finding_its_class_full_is_refused_as_resource_exhausted() {
        let fairness = Arc::new(
            Fairness::new(crate::fairness::Limits {
                read_only: 1,
                queue_length: 0,
                ..Default::default()
            })
            .expect("runtime"),
        );
        let api = rbac_api().await.with_fairness(fairness.clone());
        let held = fairness
            .admit(Class::ReadOnly, "root")
            .await
            .expect("free seat");
        let refused = api
            .list(with_certificate(list_pods(), "root", "system:masters"))
            .await
            .expect_err("no seat");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            "Too many requests, please try again later."
        );
        drop(held);
        let served = api
            .list(with_certificate(list_pods(), "root", "system:masters"))
            .await;
        assert!(served.is_ok(), "{served:?}");
    }
}
