//! Specification of quantity parsing, rounding, comparison and canonical printing.

use super::*;
use proptest::prelude::*;

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

#[test]
fn canonical_forms_match_kubernetes() {
    for (input, canonical) in [
        ("0", "0"),
        ("0Mi", "0"),
        ("-0", "0"),
        ("1", "1"),
        ("1500m", "1500m"),
        ("1.5", "1500m"),
        ("0.1", "100m"),
        (".5", "500m"),
        ("5.", "5"),
        ("1000m", "1"),
        ("10k", "10k"),
        ("1000", "1k"),
        ("1200", "1200"),
        ("1e3", "1e3"),
        ("1.5e3", "1500"),
        ("12e2", "1200"),
        ("1E-3", "1e-3"),
        ("100e3", "100e3"),
        ("1536Mi", "1536Mi"),
        ("2048Ki", "2Mi"),
        ("1.5Gi", "1536Mi"),
        ("1Ki", "1Ki"),
        ("0.5Ki", "512"),
        ("1023", "1023"),
        ("100Mi", "100Mi"),
        ("1Ei", "1Ei"),
        ("-1Ki", "-1Ki"),
        ("-1.5", "-1500m"),
        ("+2", "2"),
        ("1n", "1n"),
        ("0.5n", "1n"),
        ("1u", "1u"),
        ("5G", "5G"),
        ("1E", "1E"),
        ("1000E", "1e21"),
        ("0.0000000001", "1n"),
        ("007", "7"),
        ("1.0Gi", "1Gi"),
        ("1.1Ki", "1126400m"),
    ] {
        assert_eq!(q(input).to_string(), canonical, "canonical form of {input}");
    }
}

#[test]
fn values_round_up_as_kubernetes_does() {
    assert_eq!(q("1500m").milli_value(), 1500);
    assert_eq!(q("1500m").value(), 2);
    assert_eq!(q("0.1").milli_value(), 100);
    assert_eq!(q("0.1").value(), 1);
    assert_eq!(q("1.0001m").milli_value(), 2);
    assert_eq!(q("1Gi").value(), 1 << 30);
    assert_eq!(q("1Gi").milli_value(), 1000 << 30);
    assert_eq!(q("-1500m").value(), -2);
    assert_eq!(q("2").milli_value(), 2000);
    assert_eq!(q("1n").milli_value(), 1);
    assert_eq!(q("0").value(), 0);
}

#[test]
fn values_beyond_int64_saturate() {
    assert_eq!(q("1e30").value(), i64::MAX);
    assert_eq!(q("-1e30").value(), i64::MIN);
    assert_eq!(q("9Ei").milli_value(), i64::MAX);
    assert_eq!(q("16Ei").value(), i64::MAX, "binary quantities are capped");
}

#[test]
fn quantities_compare_by_value_across_formats() {
    assert_eq!(q("1Ki"), q("1024"));
    assert_eq!(q("1"), q("1000m"));
    assert_eq!(q("1k"), q("1e3"));
    assert!(q("500m") < q("1"));
    assert!(q("1Gi") > q("1G"));
    assert!(q("-1") < q("0"));
    assert!(q("-2") < q("-1"));
    assert!(q("0.5") < q("0.51"));
    assert_eq!(q("0").cmp(&q("-0")), Ordering::Equal);
}

#[test]
fn malformed_quantities_are_rejected_with_kubernetes_messages() {
    let format = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
    for bad in ["", "abc", "1.5.5", "1 Gi", "5e3Ki", "1Gi ", "x1"] {
        assert_eq!(
            Quantity::parse(bad).expect_err(bad).to_string(),
            format,
            "{bad:?}"
        );
    }
    for bad in ["1ki", "1Kii", "1e", "1mi", "1e-", "1MM"] {
        assert_eq!(
            Quantity::parse(bad).expect_err(bad).to_string(),
            "unable to parse quantity's suffix",
            "{bad:?}"
        );
    }
}

#[test]
fn the_format_follows_the_suffix() {
    assert_eq!(q("1Ki").format(), Format::BinarySI);
    assert_eq!(q("0.5Ki").format(), Format::BinarySI);
    assert_eq!(q("0.0001Ki").format(), Format::DecimalSI);
    assert_eq!(q("1k").format(), Format::DecimalSI);
    assert_eq!(q("1e3").format(), Format::DecimalExponent);
    assert_eq!(Quantity::from_milli(1500).to_string(), "1500m");
    assert_eq!(Quantity::from_i64(2048).to_string(), "2048");
}

fn quantity_text() -> impl Strategy<Value = String> {
    let sign = prop_oneof![Just(""), Just("-"), Just("+")];
    let number = prop_oneof![
        "[0-9]{1,8}",
        "[0-9]{1,6}\\.[0-9]{1,6}",
        "\\.[0-9]{1,4}",
        "[0-9]{1,4}\\.",
    ];
    let suffix = prop_oneof![
        Just(String::new()),
        "(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)",
        "[eE][+-]?[0-9]{1,2}",
    ];
    (sign, number, suffix).prop_map(|(s, n, x)| format!("{s}{n}{x}"))
}

proptest! {
    #[test]
    fn generated_quantities_parse(text in quantity_text()) {
        prop_assert!(Quantity::parse(&text).is_ok(), "{}", text);
    }

    #[test]
    fn the_canonical_form_parses_to_the_same_value(text in quantity_text()) {
        let first = q(&text);
        let printed = first.to_string();
        let second = q(&printed);
        prop_assert_eq!(&second, &first, "{} printed as {}", text, printed);
        prop_assert_eq!(second.to_string(), printed);
        prop_assert_eq!(second.milli_value(), first.milli_value());
    }

    #[test]
    fn milli_values_agree_with_integer_arithmetic(n in -1_000_000_000i64..1_000_000_000) {
        prop_assert_eq!(Quantity::from_milli(n).milli_value(), n);
        prop_assert_eq!(q(&format!("{n}m")).milli_value(), n);
        prop_assert_eq!(q(&n.to_string()).value(), n);
    }

    #[test]
    fn a_foreign_character_anywhere_is_rejected(
        text in quantity_text(), junk in "[/ _#%xyzXYZ@!]", at in 0usize..20,
    ) {
        let at = at.min(text.len());
        let input = format!("{}{}{}", &text[..at], junk, &text[at..]);
        prop_assert!(Quantity::parse(&input).is_err(), "{:?} parsed", input);
    }
}
