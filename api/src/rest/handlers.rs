//! Resource requests: the path and method name a verb, the caller is authenticated and
//! authorized for it, and the core does the rest. Each verb's handler decodes, calls the core
//! and encodes — 201 for creates, 200 otherwise, errors as Status objects.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::path::ResourcePath;
use super::query::Query;
use super::watch::Encoding;
use super::{response, scale, strategic, table, watch, Core, MAX_BODY_BYTES};
use crate::auth::Attributes;
use crate::error::ApiError;
use crate::patch::PatchType;
use crate::server::{ApiServer, Written};
use crate::storage::Storage;

/// What a resource request does, in the words authorization uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    /// The verb of `method` on `target`, as kube-apiserver names it.
    pub fn of(method: &Method, target: &ResourcePath, query: &Query) -> Result<Self, ApiError> {
        let named = target.name.is_some();
        let verb = match (method.as_str(), named) {
            ("GET" | "HEAD", true) => Verb::Get,
            ("GET" | "HEAD", false) if query.is_watch() => Verb::Watch,
            ("GET" | "HEAD", false) => Verb::List,
            ("POST", false) => Verb::Create,
            // A subresource made by POST (a ServiceAccount's token).
            ("POST", true) if target.subresource.is_some() => Verb::Create,
            ("PUT", true) => Verb::Update,
            ("PATCH", true) => Verb::Patch,
            ("DELETE", true) => Verb::Delete,
            ("DELETE", false) => Verb::DeleteCollection,
            _ => return Err(ApiError::MethodNotAllowed),
        };
        // A namespaced kind is reached without a namespace only to list or watch it across
        // every namespace.
        let across = target.info.namespaced() && target.namespace.is_none();
        if across && !matches!(verb, Verb::List | Verb::Watch) {
            return Err(if named {
                ApiError::UnknownResource
            } else {
                ApiError::MethodNotAllowed
            });
        }
        Ok(verb)
    }
}

/// The fallback route: every path that is not discovery.
pub async fn resource<S: Storage>(State(core): State<Core<S>>, request: Request) -> Response {
    match handle(&core, request).await {
        Ok(response) => response,
        Err(e) => response::error(&e),
    }
}

/// The decoded parts of a resource request.
struct Call<'a, S> {
    core: &'a ApiServer<S>,
    /// Who sent the request.
    user: crate::auth::UserInfo,
    target: ResourcePath,
    query: Query,
    headers: HeaderMap,
    body: Body,
}

impl<S> Call<'_, S> {
    /// The query's write options, on behalf of the request's user.
    fn write_options(&self) -> Result<crate::server::WriteOptions, ApiError> {
        let mut opts = self.query.write_options()?;
        opts.requester = Some(self.user.clone());
        Ok(opts)
    }

    fn namespace(&self) -> Option<&str> {
        self.target.namespace.as_deref()
    }

    fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or_default()
    }

    fn subresource(&self) -> Option<&str> {
        self.target.subresource.as_deref()
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The field manager of a write: the one asked for, else — as Kubernetes defaults it —
    /// the client's User-Agent up to its first `/`.
    fn field_manager(&self, asked: Option<String>) -> Option<String> {
        asked.or_else(|| {
            let agent = self.header(header::USER_AGENT);
            let prefix = agent.split('/').next().unwrap_or_default().trim();
            (!prefix.is_empty()).then(|| prefix.chars().take(128).collect())
        })
    }

    fn table(&self) -> Option<Encoding> {
        table::wants_table(self.header(header::ACCEPT)).then_some(Encoding::Table(
            self.query.include_object().unwrap_or_default(),
        ))
    }

    async fn bytes(self) -> Result<(Vec<u8>, Self), ApiError> {
        let too_large = || {
            ApiError::TooLarge(format!(
                "Request entity too large: limit is {MAX_BODY_BYTES}"
            ))
        };
        let declared = self
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(too_large());
        }
        let Call {
            core,
            user,
            target,
            query,
            headers,
            body,
        } = self;
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| too_large())?;
        Ok((
            bytes.to_vec(),
            Call {
                core,
                user,
                target,
                query,
                headers,
                body: Body::empty(),
            },
        ))
    }

    /// The body of a delete (DeleteOptions) as JSON bytes, whichever encoding it came in.
    async fn delete_body(self) -> Result<(Vec<u8>, Self), ApiError> {
        let protobuf = self
            .header(header::CONTENT_TYPE)
            .starts_with(super::protobuf::MEDIA_TYPE);
        let (bytes, call) = self.bytes().await?;
        if !protobuf || bytes.is_empty() {
            return Ok((bytes, call));
        }
        let options = super::protobuf::object(&bytes)?;
        let json = serde_json::to_vec(&options)
            .map_err(|e| ApiError::Internal(format!("encoding DeleteOptions: {e}")))?;
        Ok((json, call))
    }

    /// The request body as a JSON object, sent as JSON or in Kubernetes' protobuf encoding;
    /// other media types are refused.
    async fn json_body(self) -> Result<(Value, Self), ApiError> {
        let media = self.header(header::CONTENT_TYPE);
        let media = media
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let protobuf = media == super::protobuf::MEDIA_TYPE;
        let yaml = media == "application/yaml";
        if !protobuf && !yaml && !matches!(media.as_str(), "" | "application/json" | "*/*") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {media:?})"
            )));
        }
        let (bytes, call) = self.bytes().await?;
        let value = if protobuf {
            super::protobuf::object(&bytes)?
        } else if yaml {
            serde_norway::from_slice(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("the object is not valid YAML: {e}")))?
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("the object is not valid JSON: {e}")))?
        };
        Ok((value, call))
    }
}

async fn handle<S: Storage>(core: &ApiServer<S>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let user = parts
        .extensions
        .get::<crate::auth::Authenticated>()
        .map(|a| a.0.clone())
        .ok_or_else(|| ApiError::Unauthorized("Unauthorized".into()))?;
    let path = parts.uri.path();
    let target = match ResourcePath::parse(path, &core.custom_kinds_now()) {
        // A definition just stored (perhaps through another master) may define it.
        Err(ApiError::UnknownResource) if ResourcePath::may_be_custom(path) => {
            let custom = core.custom_kinds().await?;
            ResourcePath::parse(path, &custom)?
        }
        other => other?,
    };
    let query = Query::from_uri(&parts.uri)?;
    let verb = Verb::of(&parts.method, &target, &query)?;
    core.authorize(&attributes(user.clone(), verb, &target))
        .await?;
    let call = Call {
        core,
        user,
        target,
        query,
        headers: parts.headers,
        body,
    };
    if call.target.binds() {
        return bind(call, verb).await;
    }
    if call.target.evicts() {
        return evict(call, verb).await;
    }
    if call.subresource() == Some("scale") {
        let (core, target, query) = (call.core, call.target.clone(), call.query.clone());
        let body = call_body(call, verb).await?;
        return scale::handle(core, verb, &target, &query, body).await;
    }
    match verb {
        Verb::Get => get(call).await,
        Verb::List => list(call).await,
        Verb::Watch => watch_collection(call).await,
        Verb::Create => create(call).await,
        Verb::Update => update(call).await,
        Verb::Patch => patch(call).await,
        Verb::Delete => delete(call).await,
        Verb::DeleteCollection => delete_collection(call).await,
    }
}

/// The body of a scale request: a Scale for update, the patch (with its type) for patch.
async fn call_body<S>(call: Call<'_, S>, verb: Verb) -> Result<scale::Body, ApiError> {
    match verb {
        Verb::Update => Ok(scale::Body::Scale(call.json_body().await?.0)),
        Verb::Patch => {
            let patch_type = patch_type(call.header(header::CONTENT_TYPE))?;
            Ok(scale::Body::Patch(patch_type, call.bytes().await?.0))
        }
        _ => Ok(scale::Body::None),
    }
}

fn attributes(user: crate::auth::UserInfo, verb: Verb, target: &ResourcePath) -> Attributes {
    let name = target.name.clone().unwrap_or_default();
    // kube-apiserver reads /api/v1/namespaces/{name} as a request in that namespace.
    let namespace = match &target.namespace {
        Some(ns) => ns.clone(),
        None if target.info.kind == "Namespace" && target.info.group.is_empty() => name.clone(),
        None => String::new(),
    };
    Attributes {
        user,
        verb: verb.as_str().to_string(),
        api_group: target.info.group.to_string(),
        resource: target.resource.to_string(),
        subresource: target.subresource.clone().unwrap_or_default(),
        namespace,
        name,
        path: None,
    }
}

/// How a PATCH body is to be read, by its content type. Strategic merge patch is applied by
/// [`strategic`], server-side apply by [`crate::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Core(PatchType),
    Strategic,
    Apply,
}

fn patch_type(content_type: &str) -> Result<PatchKind, ApiError> {
    match content_type.split(';').next().unwrap_or_default().trim() {
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" => Ok(PatchKind::Apply),
        other => PatchType::from_content_type(other).map(PatchKind::Core),
    }
}

fn written(
    target: &ResourcePath,
    result: Result<Written, ApiError>,
    code: StatusCode,
) -> Result<Response, ApiError> {
    let mut w = result?;
    target.present(&mut w.object);
    Ok(response::json(code, &w.object, &w.warnings))
}

async fn get<S: Storage>(call: Call<'_, S>) -> Result<Response, ApiError> {
    let mut obj = call
        .core
        .get(call.target.info, call.namespace(), call.name())
        .await?;
    call.target.present(&mut obj);
    Ok(match call.table() {
        Some(Encoding::Table(include)) => response::ok(&table::single(
            &call.target.columns(),
            &obj,
            include,
            chrono::Utc::now(),
        )),
        _ => response::ok(&obj),
    })
}

async fn list<S: Storage>(call: Call<'_, S>) -> Result<Response, ApiError> {
    let mut list = call
        .core
        .list(
            call.target.info,
            call.namespace(),
            &call.query.list_options()?,
        )
        .await?;
    if let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(|item| call.target.present(item));
    }
    Ok(match call.table() {
        Some(Encoding::Table(include)) => response::ok(&table::of_list(
            &call.target.columns(),
            &list,
            include,
            chrono::Utc::now(),
        )),
        _ => response::ok(&list),
    })
}

async fn watch_collection<S: Storage>(call: Call<'_, S>) -> Result<Response, ApiError> {
    let timeout = call.query.watch_timeout()?;
    let events = call
        .core
        .watch(
            call.target.info,
            call.namespace(),
            &call.query.watch_options(),
        )
        .await?;
    let encoding = call.table().unwrap_or(Encoding::Object);
    Ok(watch::respond(
        call.target.columns(),
        events,
        encoding,
        timeout,
    ))
}

/// A pod's binding, or a Binding posted to the `bindings` collection: created, never read.
async fn bind<S: Storage>(call: Call<'_, S>, verb: Verb) -> Result<Response, ApiError> {
    if verb != Verb::Create {
        return Err(ApiError::MethodNotAllowed);
    }
    let opts = call.write_options()?;
    let namespace = call.namespace().unwrap_or_default().to_string();
    let url_name = call.target.name.clone();
    let (body, call) = call.json_body().await?;
    let status = call
        .core
        .bind(&namespace, url_name.as_deref(), body, &opts)
        .await?;
    Ok(response::json(StatusCode::CREATED, &status, &[]))
}

/// A pod's eviction: created, never read.
async fn evict<S: Storage>(call: Call<'_, S>, verb: Verb) -> Result<Response, ApiError> {
    if verb != Verb::Create {
        return Err(ApiError::MethodNotAllowed);
    }
    let opts = call.query.write_options()?;
    let namespace = call.namespace().unwrap_or_default().to_string();
    let name = call.name().to_string();
    let (body, call) = call.json_body().await?;
    let status = call.core.evict(&namespace, &name, body, &opts).await?;
    Ok(response::json(StatusCode::CREATED, &status, &[]))
}

async fn create<S: Storage>(call: Call<'_, S>) -> Result<Response, ApiError> {
    if call.subresource() == Some("token") && call.target.info.plural == "serviceaccounts" {
        let namespace = call.namespace().unwrap_or("").to_string();
        let name = call.target.name.clone().unwrap_or_default();
        let (body, call) = call.json_body().await?;
        let review = call.core.create_token(&namespace, &name, &body).await?;
        return Ok(response::json(StatusCode::CREATED, &review, &[]));
    }
    if call.subresource().is_some() {
        return Err(ApiError::MethodNotAllowed);
    }
    let mut opts = call.write_options()?;
    opts.field_manager = call.field_manager(opts.field_manager.take());
    let (body, call) = call.json_body().await?;
    let result = call
        .core
        .create(call.target.info, call.namespace(), body, &opts)
        .await;
    written(&call.target, result, StatusCode::CREATED)
}

async fn update<S: Storage>(call: Call<'_, S>) -> Result<Response, ApiError> {
    let mut opts = call.write_options()?;
    opts.field_manager = call.field_manager(opts.field_manager.take());
    let (body, call) = call.json_body().await?;
    let result = call
        .core
        .update(
            call.target.info,
            call.namespace(),
            call.name(),
            call.subresource(),
            body,
            &opts,
        )
        .await;
    written(&call.target, result, StatusCode::OK)
}

async fn patch<S: Storage>(call: Call<'_, S>) -> Result<Response, ApiError> {
    let mut opts = call.write_options()?;
    let kind = patch_type(call.header(header::CONTENT_TYPE))?;
    if kind == PatchKind::Apply {
        if call.subresource().is_some() {
            return Err(ApiError::MethodNotAllowed);
        }
        let force = call.query.flag("force");
        let (bytes, call) = call.bytes().await?;
        let config = crate::apply::parse_config(&bytes)?;
        let applied = call
            .core
            .apply(
                call.target.info,
                call.namespace(),
                call.name(),
                config,
                force,
                &opts,
            )
            .await?;
        let code = if applied.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return written(&call.target, Ok(applied.written), code);
    }
    if kind == PatchKind::Strategic && call.target.info.custom {
        // Custom kinds have no Go types to carry patch strategies, so Kubernetes refuses
        // strategic merge patches on them.
        return Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
        ));
    }
    opts.field_manager = call.field_manager(opts.field_manager.take());
    let (bytes, call) = call.bytes().await?;
    let (info, ns, name, sub) = (
        call.target.info,
        call.namespace(),
        call.name(),
        call.subresource(),
    );
    let result = match kind {
        PatchKind::Core(t) => call.core.patch(info, ns, name, sub, t, &bytes, &opts).await,
        PatchKind::Strategic => {
            strategic::patch(call.core, info, ns, name, sub, &bytes, &opts).await
        }
        PatchKind::Apply => Err(ApiError::MethodNotAllowed),
    };
    written(&call.target, result, StatusCode::OK)
}

async fn delete<S: Storage>(call: Call<'_, S>) -> Result<Response, ApiError> {
    if call.subresource().is_some() {
        return Err(ApiError::MethodNotAllowed);
    }
    let (bytes, call) = call.delete_body().await?;
    let mut opts = call.query.delete_options(&bytes)?;
    opts.requester = Some(call.user.clone());
    let result = call
        .core
        .delete(call.target.info, call.namespace(), call.name(), &opts)
        .await;
    written(&call.target, result, StatusCode::OK)
}

/// Deletes every object the list selectors match, each as a delete with the request's
/// DeleteOptions; answers with the list of what was deleted.
async fn delete_collection<S: Storage>(call: Call<'_, S>) -> Result<Response, ApiError> {
    let (bytes, call) = call.delete_body().await?;
    let mut opts = call.query.delete_options(&bytes)?;
    opts.requester = Some(call.user.clone());
    let info = call.target.info;
    let list = call
        .core
        .list(info, call.namespace(), &call.query.list_options()?)
        .await?;
    let mut deleted = Vec::new();
    for item in list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        let ns = item["metadata"]["namespace"].as_str();
        match call.core.delete(info, ns, name, &opts).await {
            Ok(w) => deleted.push(w.object),
            // Gone since the list: someone else deleted it, which is what was asked.
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(response::ok(&json!({
        "kind": info.list_kind,
        "apiVersion": info.api_version,
        "metadata": {"resourceVersion": list["metadata"]["resourceVersion"]},
        "items": deleted,
    })))
}
