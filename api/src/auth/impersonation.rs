//! User impersonation, as kube-apiserver's filter does it (`kubectl --as`, `--as-group`,
//! `--as-uid`): the `Impersonate-*` headers name a user, groups, a uid and extra values; the
//! caller must be allowed the `impersonate` verb on each (`users`, or `serviceaccounts` in the
//! account's namespace, `groups`, `uids`, `userextras/<key>`), and the request then runs as
//! the impersonated user, who is `system:authenticated` (anonymous: `system:unauthenticated`) and, as a service account
//! without groups named, in its service-account groups. Extra values are authorized and then
//! dropped: this server's users carry none.

use axum::http::HeaderMap;

use super::{Attributes, UserInfo};
use crate::error::ApiError;
use crate::server::ApiServer;
use crate::storage::Storage;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";
const AUTHENTICATED: &str = "system:authenticated";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// What the headers ask to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub user: String,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    /// (key, value) pairs of `Impersonate-Extra-<key>`.
    pub extra: Vec<(String, String)>,
}

fn text(value: &axum::http::HeaderValue) -> Result<String, ApiError> {
    value
        .to_str()
        .map(str::to_string)
        .map_err(|_| ApiError::BadRequest("impersonation headers must be text".into()))
}

/// The impersonation the headers ask for, if any. Groups, a uid or extras without a user are
/// refused, as Kubernetes refuses them.
pub fn requested(headers: &HeaderMap) -> Result<Option<Requested>, ApiError> {
    let user = headers.get(USER).map(text).transpose()?;
    let groups = headers
        .get_all(GROUP)
        .iter()
        .map(text)
        .collect::<Result<Vec<_>, _>>()?;
    let uid = headers.get(UID).map(text).transpose()?;
    let mut extra = Vec::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) {
            extra.push((key.to_string(), text(value)?));
        }
    }
    match user {
        Some(user) if !user.is_empty() => Ok(Some(Requested {
            user,
            groups,
            uid,
            extra,
        })),
        _ if !groups.is_empty() || uid.is_some() || !extra.is_empty() => Err(ApiError::BadRequest(
            "requested impersonation of groups, a uid or extra values without impersonating a user"
                .into(),
        )),
        _ => Ok(None),
    }
}

/// The `impersonate` checks a request makes of its caller: one per thing it asks to be.
pub fn checks(caller: &UserInfo, requested: &Requested) -> Vec<Attributes> {
    let check = |resource: &str, subresource: &str, namespace: &str, name: &str| Attributes {
        user: caller.clone(),
        verb: "impersonate".into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..Default::default()
    };
    let mut out = vec![match service_account(&requested.user) {
        Some((namespace, name)) => check("serviceaccounts", "", namespace, name),
        None => check("users", "", "", &requested.user),
    }];
    out.extend(requested.groups.iter().map(|g| check("groups", "", "", g)));
    out.extend(requested.uid.iter().map(|u| check("uids", "", "", u)));
    out.extend(
        requested
            .extra
            .iter()
            .map(|(key, value)| check("userextras", key, "", value)),
    );
    out
}

/// `system:serviceaccount:<namespace>:<name>` split into its namespace and name.
fn service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// The user a permitted impersonation makes of the request.
pub fn impersonated(requested: &Requested) -> UserInfo {
    let mut groups = requested.groups.clone();
    if groups.is_empty() {
        if let Some((namespace, _)) = service_account(&requested.user) {
            groups = vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
            ];
        }
    }
    // Anonymous is the one user who is not authenticated.
    let implied = match requested.user.as_str() {
        "system:anonymous" => "system:unauthenticated",
        _ => AUTHENTICATED,
    };
    if !groups.iter().any(|g| g == implied) {
        groups.push(implied.into());
    }
    UserInfo {
        name: requested.user.clone(),
        uid: requested.uid.clone().unwrap_or_default(),
        groups,
    }
}

impl<S: Storage> ApiServer<S> {
    /// The user a request runs as: `caller`, or whom its headers impersonate if `caller` may.
    pub async fn impersonate(
        &self,
        caller: UserInfo,
        headers: &HeaderMap,
    ) -> Result<UserInfo, ApiError> {
        let Some(requested) = requested(headers)? else {
            return Ok(caller);
        };
        for attrs in checks(&caller, &requested) {
            self.authorize(&attrs).await?;
        }
        Ok(impersonated(&requested))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn each_thing_impersonated_is_one_impersonate_check() {
        let caller = UserInfo {
            name: "admin".into(),
            ..Default::default()
        };
        let asked = requested(&headers(&[
            ("impersonate-user", "system:serviceaccount:apps:builder"),
            ("impersonate-group", "devs"),
            ("impersonate-group", "ops"),
            ("impersonate-extra-scopes", "view"),
        ]))
        .expect("reads")
        .expect("asks");
        let checks: Vec<(String, String, String, String)> = checks(&caller, &asked)
            .into_iter()
            .map(|a| (a.resource, a.subresource, a.namespace, a.name))
            .collect();
        let s = |v: &str| v.to_string();
        assert_eq!(
            checks,
            [
                (s("serviceaccounts"), s(""), s("apps"), s("builder")),
                (s("groups"), s(""), s(""), s("devs")),
                (s("groups"), s(""), s(""), s("ops")),
                (s("userextras"), s("scopes"), s(""), s("view")),
            ]
        );
        assert_eq!(
            impersonated(&asked).groups,
            ["devs", "ops", "system:authenticated"]
        );
    }

    #[test]
    fn a_service_account_without_groups_gets_its_groups_and_a_user_is_authenticated() {
        let asked = requested(&headers(&[(
            "impersonate-user",
            "system:serviceaccount:apps:builder",
        )]))
        .expect("reads")
        .expect("asks");
        assert_eq!(
            impersonated(&asked).groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:apps",
                "system:authenticated"
            ]
        );
        let plain = requested(&headers(&[("impersonate-user", "jane")]))
            .expect("reads")
            .expect("asks");
        assert_eq!(impersonated(&plain).groups, ["system:authenticated"]);
        assert!(requested(&headers(&[])).expect("reads").is_none());
        assert_eq!(
            requested(&headers(&[("impersonate-group", "devs")]))
                .expect_err("no user")
                .code(),
            400
        );
    }
}
