//! CEL validation rules (`x-kubernetes-validations`) of custom kinds, evaluated with the `cel`
//! crate: each rule at its schema node, `self` the value there and `oldSelf` the stored one on
//! update (a rule that reads `oldSelf` is a transition rule, skipped on create and where the
//! old object has no such value), failures with Kubernetes' wording (`spec: Invalid value:
//! "object": failed rule: self.min <= self.max`, or the rule's message).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool, ValidationRule,
};
use serde_json::Value;

use crate::field::{go_quote, FieldError, Rendered};
use crate::path::FieldPath;

/// Every rule `value` (with `old`, the stored object, on update) breaks.
pub fn check(schema: &JSONSchemaProps, value: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk(schema, value, old, &FieldPath::default(), &mut errors);
    errors
}

/// Why a rule cannot be compiled, for the definition's validation.
pub fn compile_error(rule: &str) -> Option<String> {
    cel::Program::compile(rule).err().map(|e| e.to_string())
}

fn walk(
    schema: &JSONSchemaProps,
    value: &Value,
    old: Option<&Value>,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) {
    for rule in schema.x_kubernetes_validations.iter().flatten() {
        if let Some(e) = evaluate(rule, value, old, path) {
            errors.push(e);
        }
    }
    match value {
        Value::Object(map) => {
            let named = schema.properties.as_ref();
            let values = match &schema.additional_properties {
                Some(JSONSchemaPropsOrBool::Schema(s)) => Some(s.as_ref()),
                _ => None,
            };
            for (key, child) in map {
                let child_schema = named.and_then(|p| p.get(key)).or(values);
                if let Some(s) = child_schema {
                    let old_child = old.and_then(|o| o.get(key));
                    walk(s, child, old_child, &path.child(key), errors);
                }
            }
        }
        Value::Array(list) => {
            let items = match &schema.items {
                Some(JSONSchemaPropsOrArray::Schema(s)) => Some(s.as_ref()),
                Some(JSONSchemaPropsOrArray::Schemas(list)) => list.first(),
                None => None,
            };
            if let Some(s) = items {
                for (i, child) in list.iter().enumerate() {
                    let old_child = old.and_then(|o| o.get(i));
                    walk(s, child, old_child, &path.index(i), errors);
                }
            }
        }
        _ => {}
    }
}

fn evaluate(
    rule: &ValidationRule,
    value: &Value,
    old: Option<&Value>,
    path: &FieldPath,
) -> Option<FieldError> {
    let program = match cel::Program::compile(&rule.rule) {
        Ok(p) => p,
        Err(e) => {
            return Some(failure(
                rule,
                value,
                path,
                format!("compilation failed: {e}"),
            ))
        }
    };
    let transition = program.references().has_variable("oldSelf");
    if transition && old.is_none() && rule.optional_old_self != Some(true) {
        return None;
    }
    let mut context = cel::Context::default();
    context.add_variable_from_value("self", to_cel(value));
    if let Some(old) = old {
        context.add_variable_from_value("oldSelf", to_cel(old));
    }
    match program.execute(&context) {
        Ok(cel::Value::Bool(true)) => None,
        Ok(cel::Value::Bool(false)) => {
            let message = rule
                .message
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("failed rule: {}", rule.rule));
            Some(failure(rule, value, path, message))
        }
        Ok(other) => Some(failure(
            rule,
            value,
            path,
            format!("rule did not evaluate to a bool: {other:?}"),
        )),
        Err(e) => Some(failure(rule, value, path, format!("evaluation error: {e}"))),
    }
}

/// The error a failed rule gives: at the rule's fieldPath below the node, with the node's
/// type as the value shown, of the kind its `reason` names.
fn failure(rule: &ValidationRule, value: &Value, path: &FieldPath, message: String) -> FieldError {
    let mut at = path.clone();
    for step in rule
        .field_path
        .as_deref()
        .unwrap_or("")
        .split('.')
        .filter(|s| !s.is_empty())
    {
        at = at.child(step);
    }
    let shown = Rendered(go_quote(crate::crd::structural::type_name(value)));
    match rule.reason.as_deref() {
        Some("FieldValueRequired") => FieldError::required(&at, message),
        Some("FieldValueForbidden") => FieldError::forbidden(&at, message),
        Some("FieldValueDuplicate") => {
            let mut e = FieldError::duplicate(&at, shown);
            e.detail = message;
            e
        }
        _ => FieldError::invalid(&at, shown, message),
    }
}

fn to_cel(value: &Value) -> cel::Value {
    cel::to_value(value).unwrap_or(cel::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> JSONSchemaProps {
        serde_json::from_value(json!({"type": "object", "properties": {"spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max"},
                {"rule": "self.name == oldSelf.name", "message": "name is immutable"},
                {"rule": "size(self.name) > 2", "fieldPath": ".name", "reason": "FieldValueForbidden", "message": "too short"}
            ],
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}, "name": {"type": "string"}}
        }}})).expect("schema")
    }

    fn messages(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn rules_pass_fail_and_transition_rules_wait_for_an_old_object() {
        let s = schema();
        assert!(check(
            &s,
            &json!({"spec": {"min": 1, "max": 2, "name": "abc"}}),
            None
        )
        .is_empty());
        assert_eq!(
            messages(&check(
                &s,
                &json!({"spec": {"min": 3, "max": 2, "name": "ab"}}),
                None
            )),
            [
                r#"spec: Invalid value: "object": failed rule: self.min <= self.max"#,
                "spec.name: Forbidden: too short",
            ]
        );
        let old = json!({"spec": {"min": 1, "max": 2, "name": "abc"}});
        assert_eq!(
            messages(&check(
                &s,
                &json!({"spec": {"min": 1, "max": 2, "name": "abcd"}}),
                Some(&old)
            )),
            [r#"spec: Invalid value: "object": name is immutable"#]
        );
        assert!(compile_error("self.min <=").is_some());
        assert!(compile_error("self.min <= self.max").is_none());
    }
}
