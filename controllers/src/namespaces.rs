//! What the namespace-wide controllers (ServiceAccounts, the root CA ConfigMap) ask of a
//! Namespace before writing into it: that it is active. Pure.

use keel_client::k8s_openapi::api::core::v1::Namespace;

/// Whether objects may be created in the namespace: it is not being deleted (Kubernetes'
/// controllers skip a namespace whose phase is not Active; an unset phase is taken as Active,
/// the API server's default).
pub fn is_active(namespace: &Namespace) -> bool {
    let phase = namespace.status.as_ref().and_then(|s| s.phase.as_deref());
    namespace.metadata.deletion_timestamp.is_none() && matches!(phase, None | Some("Active"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::core::v1::NamespaceStatus;

    #[test]
    fn only_a_namespace_not_terminating_is_active() {
        let mut ns = Namespace::default();
        assert!(is_active(&ns));
        ns.status = Some(NamespaceStatus {
            phase: Some("Terminating".into()),
            ..Default::default()
        });
        assert!(!is_active(&ns));
    }
}
