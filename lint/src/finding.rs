//! What the lint reports: one finding per mistake, with its severity, class code, object and
//! where the object was read from.

use serde::Serialize;

/// How bad a finding is. Errors are mistakes Kubernetes refuses or that leave a workload
/// unreachable; warnings are legal but probably unintended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// The kind of mistake, as a stable code machines can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// A selector that matches no pod template in its namespace.
    SelectorMatchesNothing,
    /// A workload whose selector does not match its own template's labels.
    SelectorTemplateMismatch,
    /// Two controllers whose selectors match the same pods.
    SelectorsOverlap,
    /// A Service port whose targetPort no selected container exposes.
    TargetPortNotExposed,
    /// An Ingress backend naming a Service that does not exist.
    IngressMissingService,
    /// An Ingress backend naming a port its Service does not have.
    IngressMissingPort,
    /// A workload without the selector Kubernetes requires of it.
    SelectorMissing,
    /// A selector Kubernetes cannot read (an unknown operator, a bad label key).
    SelectorInvalid,
}

impl Class {
    pub fn code(self) -> &'static str {
        match self {
            Class::SelectorMatchesNothing => "selector-matches-nothing",
            Class::SelectorTemplateMismatch => "selector-template-mismatch",
            Class::SelectorsOverlap => "selectors-overlap",
            Class::TargetPortNotExposed => "target-port-not-exposed",
            Class::IngressMissingService => "ingress-missing-service",
            Class::IngressMissingPort => "ingress-missing-port",
            Class::SelectorMissing => "selector-missing",
            Class::SelectorInvalid => "selector-invalid",
        }
    }
}

/// Where a manifest was read from: its file and its document (1 for the first) in the file.
/// Objects that come from the API rather than a file have an empty `file`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Source {
    pub file: String,
    pub document: usize,
}

/// One mistake in one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub class: Class,
    /// `kind/namespace/name`.
    pub object: String,
    pub file: String,
    pub document: usize,
    pub message: String,
}

impl std::fmt::Display for Finding {
    /// One line, as a compiler prints a diagnostic: `file#document: severity[class]: object:
    /// message`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.file.is_empty() {
            write!(f, "{}#{}: ", self.file, self.document)?;
        }
        write!(
            f,
            "{}[{}]: {}: {}",
            self.severity.as_str(),
            self.class.code(),
            self.object,
            self.message
        )
    }
}
