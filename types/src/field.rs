//! Field-level errors: what is wrong with which field of an object, rendered exactly as
//! Kubernetes' `field.Error` renders itself, with the cause reasons a Status carries.

use std::fmt;

use crate::path::FieldPath;

/// Why a field is wrong; each maps one-to-one to a Kubernetes `CauseType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    TooLong,
    TooMany,
    Forbidden,
    TypeInvalid,
    NotFound,
}

impl ErrorKind {
    /// The cause reason a Status carries for this kind of error.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::TypeInvalid => "FieldValueTypeInvalid",
            ErrorKind::NotFound => "FieldValueNotFound",
        }
    }

    /// The words that open the message ("Required value", "Invalid value", …).
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Required => "Required value",
            ErrorKind::Invalid | ErrorKind::TypeInvalid => "Invalid value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::NotFound => "Not found",
        }
    }

    /// Kubernetes never prints the value of these, even when one was recorded.
    fn omits_value(self) -> bool {
        matches!(
            self,
            ErrorKind::Required | ErrorKind::Forbidden | ErrorKind::TooLong
        )
    }
}

/// One thing wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub kind: ErrorKind,
    /// The field's path, as Kubernetes writes it: `spec.containers[0].image`.
    pub field: String,
    /// The offending value, already rendered (strings quoted as Go's `%q` quotes them).
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    fn new(kind: ErrorKind, field: &FieldPath, value: Option<String>, detail: String) -> Self {
        FieldError {
            kind,
            field: field.to_string(),
            value,
            detail,
        }
    }

    /// A value that must be given is missing (an empty string, null or empty list).
    pub fn required(field: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Required, field, None, detail.into())
    }

    /// A value that is malformed: fails a pattern, out of range, …
    pub fn invalid(field: &FieldPath, value: impl BadValue, detail: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::Invalid,
            field,
            Some(value.render()),
            detail.into(),
        )
    }

    /// A value outside an enumeration; `supported` is listed in the message, in order.
    pub fn not_supported(field: &FieldPath, value: impl BadValue, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorKind::NotSupported, field, Some(value.render()), detail)
    }

    /// A value that must be unique appears more than once.
    pub fn duplicate(field: &FieldPath, value: impl BadValue) -> Self {
        Self::new(
            ErrorKind::Duplicate,
            field,
            Some(value.render()),
            String::new(),
        )
    }

    /// A value longer than `max_bytes`; the value itself is never echoed.
    pub fn too_long(field: &FieldPath, max_bytes: usize) -> Self {
        Self::new(
            ErrorKind::TooLong,
            field,
            None,
            format!("may not be more than {max_bytes} bytes"),
        )
    }

    /// A list with `actual` items where at most `max` are allowed.
    pub fn too_many(field: &FieldPath, actual: usize, max: usize) -> Self {
        Self::new(
            ErrorKind::TooMany,
            field,
            Some(actual.to_string()),
            format!("must have at most {max} items"),
        )
    }

    /// A well-formed value that is not allowed here (policy, immutability, …).
    pub fn forbidden(field: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, field, None, detail.into())
    }

    /// A value of the wrong JSON type for the field.
    pub fn type_invalid(
        field: &FieldPath,
        value: impl BadValue,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(
            ErrorKind::TypeInvalid,
            field,
            Some(value.render()),
            detail.into(),
        )
    }

    /// A value that should refer to something that does not exist (a mount naming no volume).
    pub fn not_found(field: &FieldPath, value: impl BadValue) -> Self {
        Self::new(
            ErrorKind::NotFound,
            field,
            Some(value.render()),
            String::new(),
        )
    }

    /// The cause reason for a Status (`FieldValueInvalid`, …).
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The message without the leading `field: `, as a Status cause's `message` carries it
    /// (the field goes in the cause's `field`).
    pub fn message_without_field(&self) -> String {
        let mut out = self.kind.label().to_string();
        if let Some(value) = self.value.as_deref().filter(|_| !self.kind.omits_value()) {
            out.push_str(": ");
            out.push_str(value);
        }
        if !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        out
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message_without_field())
    }
}

impl std::error::Error for FieldError {}

/// Renders errors as Kubernetes' aggregate does: one error as itself, several as
/// `[first, second]`, repeats dropped.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let msg = e.to_string();
        if !seen.contains(&msg) {
            seen.push(msg);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen.remove(0),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// A value as an error message shows it: what Go's `%v`/`%q`/`%#v` would print for the
/// Kubernetes type holding it.
pub trait BadValue {
    fn render(&self) -> String;
}

impl BadValue for &str {
    fn render(&self) -> String {
        go_quote(self)
    }
}

impl BadValue for String {
    fn render(&self) -> String {
        go_quote(self)
    }
}

impl BadValue for &String {
    fn render(&self) -> String {
        go_quote(self)
    }
}

/// A value rendered by the caller, shown as is (Go's `%#v` of a map or struct, …).
#[derive(Debug, Clone)]
pub struct Rendered(pub String);

impl BadValue for Rendered {
    fn render(&self) -> String {
        self.0.clone()
    }
}

macro_rules! plain_bad_value {
    ($($t:ty),*) => {$(
        impl BadValue for $t {
            fn render(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

plain_bad_value!(i32, i64, u32, u64, usize, bool);

/// A list of strings, as Go's `%#v` prints a `[]string`.
impl BadValue for &[String] {
    fn render(&self) -> String {
        let items: Vec<String> = self.iter().map(|s| go_quote(s)).collect();
        format!("[]string{{{}}}", items.join(", "))
    }
}

/// A value Kubernetes would print from a structure: rendered as JSON.
impl BadValue for &serde_json::Value {
    fn render(&self) -> String {
        match self {
            serde_json::Value::String(s) => go_quote(s),
            other => other.to_string(),
        }
    }
}

/// Quotes `s` as Go's `strconv.Quote` does: double quotes, backslash escapes for quotes,
/// backslashes and control characters; printable Unicode kept as is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> FieldPath {
        FieldPath::parse_dotted(s)
    }

    #[test]
    fn invalid_value_quotes_the_string_and_appends_the_detail() {
        let e = FieldError::invalid(&path("metadata.name"), "A_b", "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')");
        assert_eq!(
            e.to_string(),
            "metadata.name: Invalid value: \"A_b\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        assert_eq!(e.reason(), "FieldValueInvalid");
    }

    #[test]
    fn required_without_detail_is_just_required_value() {
        let e = FieldError::required(&path("spec.containers"), "");
        assert_eq!(e.to_string(), "spec.containers: Required value");
        assert_eq!(e.reason(), "FieldValueRequired");
        assert_eq!(e.message_without_field(), "Required value");
    }

    #[test]
    fn not_supported_lists_the_supported_values_quoted() {
        let e = FieldError::not_supported(
            &path("spec.restartPolicy"),
            "Sometimes",
            &["Always", "Never", "OnFailure"],
        );
        assert_eq!(
            e.to_string(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\""
        );
        assert_eq!(e.reason(), "FieldValueNotSupported");
    }

    #[test]
    fn numbers_print_bare_and_lists_print_as_go_string_slices() {
        let e = FieldError::invalid(
            &path("spec.replicas"),
            -1i32,
            "must be greater than or equal to 0",
        );
        assert_eq!(
            e.to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        let values: Vec<String> = vec![];
        let e = FieldError::invalid(&path("values"), values.as_slice(), "x");
        assert_eq!(e.to_string(), "values: Invalid value: []string{}: x");
        let values = vec!["a".to_string(), "b".to_string()];
        let e = FieldError::invalid(&path("values"), values.as_slice(), "x");
        assert_eq!(
            e.to_string(),
            "values: Invalid value: []string{\"a\", \"b\"}: x"
        );
    }

    #[test]
    fn too_long_and_forbidden_never_echo_the_value() {
        let e = FieldError::too_long(&path("metadata.annotations"), 262144);
        assert_eq!(
            e.to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
        let e = FieldError::forbidden(&path("metadata.namespace"), "not allowed on this type");
        assert_eq!(
            e.to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
        assert_eq!(e.reason(), "FieldValueForbidden");
    }

    #[test]
    fn too_many_duplicate_and_type_invalid_carry_their_reasons() {
        let e = FieldError::too_many(&path("spec.items"), 5, 3);
        assert_eq!(
            e.to_string(),
            "spec.items: Too many: 5: must have at most 3 items"
        );
        assert_eq!(e.reason(), "FieldValueTooMany");
        let e = FieldError::duplicate(&path("spec.containers[1].name"), "web");
        assert_eq!(
            e.to_string(),
            "spec.containers[1].name: Duplicate value: \"web\""
        );
        assert_eq!(e.reason(), "FieldValueDuplicate");
        let e = FieldError::type_invalid(&path("spec.replicas"), "three", "must be an integer");
        assert_eq!(
            e.to_string(),
            "spec.replicas: Invalid value: \"three\": must be an integer"
        );
        assert_eq!(e.reason(), "FieldValueTypeInvalid");
    }

    #[test]
    fn strings_are_quoted_like_go() {
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(go_quote("\u{1}é"), "\"\\x01é\"");
    }

    #[test]
    fn aggregates_render_one_error_alone_and_several_in_brackets() {
        let a = FieldError::required(&path("a"), "");
        let b = FieldError::required(&path("b"), "");
        assert_eq!(
            aggregate_message(std::slice::from_ref(&a)),
            "a: Required value"
        );
        assert_eq!(
            aggregate_message(&[a.clone(), b, a]),
            "[a: Required value, b: Required value]"
        );
    }
}
