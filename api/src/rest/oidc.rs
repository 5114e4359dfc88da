//! Service account issuer discovery, as kube-apiserver serves it: the OpenID provider
//! configuration and the JSON Web Key Set that verifies ServiceAccount tokens, for services
//! outside the cluster that accept those tokens (`system:service-account-issuer-discovery`
//! grants both to service accounts).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Extension;

use super::{authorize_path, response, Core};
use crate::auth::service_accounts::openid_configuration;
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::storage::Storage;

/// `GET /.well-known/openid-configuration`.
pub async fn configuration<S: Storage>(
    State(core): State<Core<S>>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    match authorize_path(&core, &user, &Method::GET, uri.path()).await {
        Ok(_) => response::ok(&openid_configuration()),
        Err(e) => response::error(&e),
    }
}

/// `GET /openid/v1/jwks`, as `application/jwk-set+json`.
pub async fn jwks<S: Storage>(
    State(core): State<Core<S>>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    let keys = async {
        authorize_path(&core, &user, &Method::GET, uri.path()).await?;
        core.service_account_jwks()
            .ok_or_else(|| ApiError::Unavailable("service account keys are not ready".into()))
    }
    .await;
    match keys {
        Ok(keys) => {
            let mut response = Response::new(Body::from(keys.to_string()));
            *response.status_mut() = StatusCode::OK;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            );
            response
        }
        Err(e) => response::error(&e),
    }
}
