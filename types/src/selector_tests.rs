//! Specification of label selector parsing, matching, printing and typed conversion.

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use proptest::prelude::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(s: &str) -> Selector {
    Selector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn parse_err(s: &str) -> String {
    match Selector::parse(s) {
        Ok(sel) => panic!("{s:?} should not parse, got {sel}"),
        Err(e) => e.message,
    }
}

#[test]
fn equality_requirements_match_only_the_given_value() {
    let sel = parse("app=web");
    assert!(sel.matches(&labels(&[("app", "web"), ("x", "y")])));
    assert!(!sel.matches(&labels(&[("app", "db")])));
    assert!(!sel.matches(&labels(&[])));
    assert!(parse("app==web").matches(&labels(&[("app", "web")])));
}

#[test]
fn inequality_and_notin_match_when_the_label_is_absent() {
    assert!(parse("app!=web").matches(&labels(&[])));
    assert!(!parse("app!=web").matches(&labels(&[("app", "web")])));
    assert!(parse("app notin (a,b)").matches(&labels(&[("app", "c")])));
    assert!(parse("app notin (a,b)").matches(&labels(&[])));
    assert!(!parse("app notin (a,b)").matches(&labels(&[("app", "b")])));
}

#[test]
fn set_and_existence_requirements() {
    let sel = parse("tier in (web, db),  env , !legacy");
    assert!(sel.matches(&labels(&[("tier", "db"), ("env", "")])));
    assert!(!sel.matches(&labels(&[("tier", "db")])));
    assert!(!sel.matches(&labels(&[("tier", "db"), ("env", "p"), ("legacy", "1")])));
    assert!(!sel.matches(&labels(&[("tier", "cache"), ("env", "p")])));
}

#[test]
fn greater_and_less_than_compare_integers() {
    assert!(parse("gen>1").matches(&labels(&[("gen", "2")])));
    assert!(!parse("gen>1").matches(&labels(&[("gen", "1")])));
    assert!(parse("gen<10").matches(&labels(&[("gen", "-3")])));
    assert!(!parse("gen<10").matches(&labels(&[("gen", "x")])));
    assert!(!parse("gen<10").matches(&labels(&[])));
}

#[test]
fn the_empty_selector_matches_everything() {
    let sel = parse("");
    assert!(sel.is_empty());
    assert!(sel.matches(&labels(&[("a", "b")])));
    assert!(parse("  ").is_empty());
    assert!(!parse("a").is_empty());
}

#[test]
fn printing_sorts_requirements_by_key_and_values() {
    let sel = parse("z=1, b in (y,x), !a, c notin (q), d, e!=f, g==h, n>3, m<4");
    assert_eq!(
        sel.to_string(),
        "!a,b in (x,y),c notin (q),d,e!=f,g==h,m<4,n>3,z=1"
    );
}

#[test]
fn in_and_notin_are_plain_values_inside_a_value_list() {
    let sel = parse("x in (in,notin)");
    assert_eq!(sel.requirements()[0].values(), ["in", "notin"]);
    assert!(parse("in=notin").matches(&labels(&[("in", "notin")])));
}

#[test]
fn empty_values_are_allowed() {
    assert!(parse("a=").matches(&labels(&[("a", "")])));
    assert_eq!(parse("a in (,b)").requirements()[0].values(), ["", "b"]);
    assert_eq!(parse("a in ()").requirements()[0].values(), [""]);
}

#[test]
fn syntax_errors_use_kubernetes_messages() {
    assert_eq!(
        parse_err("a b"),
        "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
    );
    assert_eq!(
        parse_err(",a"),
        "found ',', expected: !, identifier, or 'end of string'"
    );
    assert_eq!(parse_err("a,"), "found '', expected: identifier after ','");
    assert_eq!(
        parse_err("a in (b"),
        "unable to parse requirement: found '', expected: ',' or ')'"
    );
    assert_eq!(
        parse_err("a in b"),
        "unable to parse requirement: found 'b' expected: '('"
    );
    assert_eq!(
        parse_err("a=b=c"),
        "found '=', expected: ',' or 'end of string'"
    );
}

#[test]
fn invalid_keys_and_values_are_rejected_with_field_messages() {
    assert_eq!(
        parse_err("a_=b"),
        "unable to parse requirement: <nil>: Invalid value: \"a_\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    );
    assert_eq!(
        parse_err("a=b_"),
        "unable to parse requirement: values[0][a]: Invalid value: \"b_\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    );
    assert_eq!(
        parse_err("a>x"),
        "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
    );
}

fn expr(key: &str, op: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_string(),
        operator: op.to_string(),
        values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
    }
}

#[test]
fn typed_selectors_combine_match_labels_and_expressions() {
    let typed = LabelSelector {
        match_labels: Some(labels(&[("app", "web")])),
        match_expressions: Some(vec![
            expr("tier", "In", Some(&["b", "a"])),
            expr("legacy", "DoesNotExist", None),
            expr("env", "Exists", Some(&[])),
        ]),
    };
    let sel = Selector::from_label_selector(Some(&typed)).expect("valid");
    assert_eq!(sel.to_string(), "app=web,env,!legacy,tier in (a,b)");
    assert!(sel.matches(&labels(&[("app", "web"), ("tier", "a"), ("env", "x")])));
    assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "a")])));
}

#[test]
fn an_absent_typed_selector_matches_nothing_and_an_empty_one_everything() {
    let none = Selector::from_label_selector(None).expect("valid");
    assert!(none.is_nothing());
    assert!(!none.matches(&labels(&[])));
    let empty = Selector::from_label_selector(Some(&LabelSelector::default())).expect("valid");
    assert!(empty.is_empty());
    assert!(empty.matches(&labels(&[("a", "b")])));
}

#[test]
fn typed_selectors_with_wrong_values_are_rejected() {
    let in_without_values = LabelSelector {
        match_expressions: Some(vec![expr("tier", "In", None)]),
        ..Default::default()
    };
    assert_eq!(
        Selector::from_label_selector(Some(&in_without_values))
            .expect_err("invalid")
            .message,
        "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
    );
    let exists_with_values = LabelSelector {
        match_expressions: Some(vec![expr("tier", "Exists", Some(&["x"]))]),
        ..Default::default()
    };
    assert_eq!(
        Selector::from_label_selector(Some(&exists_with_values))
            .expect_err("invalid")
            .message,
        "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
    );
    let bad_op = LabelSelector {
        match_expressions: Some(vec![expr("tier", "Near", None)]),
        ..Default::default()
    };
    assert_eq!(
        Selector::from_label_selector(Some(&bad_op))
            .expect_err("invalid")
            .message,
        "\"Near\" is not a valid label selector operator"
    );
}

#[test]
fn from_set_requires_every_label() {
    let sel = Selector::from_set(&labels(&[("a", "1"), ("b", "2")]));
    assert_eq!(sel.to_string(), "a=1,b=2");
    assert!(sel.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
    assert!(!sel.matches(&labels(&[("a", "1")])));
}

/// A requirement as generated for property tests, evaluated independently of `Requirement`.
#[derive(Debug, Clone)]
enum Gen {
    Eq(String, String),
    DoubleEq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    Gt(String, i64),
    Lt(String, i64),
}

impl Gen {
    fn text(&self) -> String {
        match self {
            Gen::Eq(k, v) => format!("{k} = {v}"),
            Gen::DoubleEq(k, v) => format!("{k}=={v}"),
            Gen::NotEq(k, v) => format!("{k} !={v}"),
            Gen::In(k, vs) => format!("{k} in ( {} )", vs.join(" , ")),
            Gen::NotIn(k, vs) => format!("{k}  notin({})", vs.join(",")),
            Gen::Exists(k) => k.clone(),
            Gen::NotExists(k) => format!("! {k}"),
            Gen::Gt(k, n) => format!("{k}>{n}"),
            Gen::Lt(k, n) => format!("{k} < {n}"),
        }
    }

    fn holds(&self, l: &BTreeMap<String, String>) -> bool {
        match self {
            Gen::Eq(k, v) | Gen::DoubleEq(k, v) => l.get(k) == Some(v),
            Gen::NotEq(k, v) => l.get(k) != Some(v),
            Gen::In(k, vs) => l.get(k).is_some_and(|x| vs.contains(x)),
            Gen::NotIn(k, vs) => !l.get(k).is_some_and(|x| vs.contains(x)),
            Gen::Exists(k) => l.contains_key(k),
            Gen::NotExists(k) => !l.contains_key(k),
            Gen::Gt(k, n) => l
                .get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            Gen::Lt(k, n) => l
                .get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        }
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("app".to_string()),
        Just("tier".to_string()),
        Just("example.com/role".to_string()),
        Just("n".to_string()),
        "[a-z][a-z0-9._-]{0,6}[a-z0-9]",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("web".to_string()),
        Just("db".to_string()),
        Just("1".to_string()),
        Just("7".to_string()),
        "[A-Za-z0-9]([A-Za-z0-9._-]{0,5}[A-Za-z0-9])?",
    ]
}

fn requirement() -> impl Strategy<Value = Gen> {
    let values = || prop::collection::vec(value(), 1..4);
    prop_oneof![
        (key(), value()).prop_map(|(k, v)| Gen::Eq(k, v)),
        (key(), value()).prop_map(|(k, v)| Gen::DoubleEq(k, v)),
        (key(), value()).prop_map(|(k, v)| Gen::NotEq(k, v)),
        (key(), values()).prop_map(|(k, v)| Gen::In(k, v)),
        (key(), values()).prop_map(|(k, v)| Gen::NotIn(k, v)),
        key().prop_map(Gen::Exists),
        key().prop_map(Gen::NotExists),
        (key(), 0i64..9).prop_map(|(k, n)| Gen::Gt(k, n)),
        (key(), 0i64..9).prop_map(|(k, n)| Gen::Lt(k, n)),
    ]
}

/// Label maps as `matches` may be handed them: values need not be valid label values.
fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    let any_value = prop_oneof![value(), Just("-2".to_string()), Just("".to_string())];
    prop::collection::btree_map(key(), any_value, 0..5)
}

proptest! {
    #[test]
    fn printing_then_parsing_gives_the_same_selector(reqs in prop::collection::vec(requirement(), 0..6)) {
        let text: Vec<String> = reqs.iter().map(Gen::text).collect();
        let sel = parse(&text.join(" , "));
        let again = parse(&sel.to_string());
        prop_assert_eq!(&again, &sel);
        prop_assert_eq!(again.to_string(), sel.to_string());
    }

    #[test]
    fn matching_agrees_with_a_direct_evaluation(
        reqs in prop::collection::vec(requirement(), 0..6),
        l in label_map(),
    ) {
        let text: Vec<String> = reqs.iter().map(Gen::text).collect();
        let sel = parse(&text.join(","));
        prop_assert_eq!(sel.matches(&l), reqs.iter().all(|r| r.holds(&l)));
    }

    #[test]
    fn trailing_garbage_is_rejected(
        reqs in prop::collection::vec(requirement(), 1..4),
        junk in prop_oneof![Just(","), Just("("), Just(")"), Just("!"), Just(",,"), Just(" in"), Just(" notin"), Just("=x=")],
    ) {
        let text: Vec<String> = reqs.iter().map(Gen::text).collect();
        let input = format!("{}{}", text.join(","), junk);
        prop_assert!(Selector::parse(&input).is_err(), "{:?} parsed", input);
    }
}
