//! Exact arithmetic on quantities and on resource lists, as Kubernetes' quota helpers do it:
//! sums and differences keep the format of the left operand (or take the right one's when the
//! left is zero), so that `512Mi + 512Mi` prints as `1Gi` and `500m + 1` as `1500m`.
//!
//! Every quantity is a whole number of nano units (parsing rounds up to them), so sums are
//! exact in nano units. Values past what an int64 of whole units holds saturate there; no quota
//! counts that far.

use std::collections::BTreeMap;

use keel_types::quantity::Format;
use keel_types::Quantity;

/// A named set of quantities: a quota's hard limits, its usage, or what an object uses.
pub type ResourceList = BTreeMap<String, Quantity>;

const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// The largest magnitude kept, in nano units: int64's largest number of whole units.
const MAX_NANOS: i128 = i64::MAX as i128 * NANOS_PER_UNIT;

/// The quantity in nano units, saturating at ±[`MAX_NANOS`].
fn nanos(q: &Quantity) -> i128 {
    let text = q.to_canonical_string();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let split = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(split);
    let (powers_of_1024, exponent) = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (1, 0),
        "Mi" => (2, 0),
        "Gi" => (3, 0),
        "Ti" => (4, 0),
        "Pi" => (5, 0),
        "Ei" => (6, 0),
        other => (
            0,
            other
                .trim_start_matches(['e', 'E'])
                .parse::<i64>()
                .unwrap_or(0),
        ),
    };
    let magnitude = scale(number, powers_of_1024, exponent + 9);
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// `number × 1024^powers_of_1024 × 10^exponent`, saturating at [`MAX_NANOS`]. The exponent is
/// never negative for a quantity already rounded to nano units.
fn scale(number: &str, powers_of_1024: u32, exponent: i64) -> i128 {
    let Ok(mut value) = number.parse::<i128>() else {
        return MAX_NANOS;
    };
    for _ in 0..powers_of_1024 {
        value = value.saturating_mul(1024);
    }
    if exponent >= 0 {
        for _ in 0..exponent {
            value = value.saturating_mul(10);
            if value > MAX_NANOS {
                return MAX_NANOS;
            }
        }
    } else {
        for _ in 0..-exponent {
            value /= 10;
        }
    }
    value.min(MAX_NANOS)
}

/// The quantity of `nanos` nano units, in `format`.
fn from_nanos(nanos: i128, format: Format) -> Quantity {
    let nanos = nanos.clamp(-MAX_NANOS, MAX_NANOS);
    let text = match format {
        Format::DecimalSI => format!("{nanos}n"),
        Format::DecimalExponent => format!("{nanos}e-9"),
        Format::BinarySI => {
            // Written in Ki so that parsing keeps the binary format: nanos / (1024 × 10^9) is
            // nanos × 5^10 / 10^19, a decimal with at most 19 places.
            let scaled = nanos * 9_765_625;
            let sign = if scaled < 0 { "-" } else { "" };
            let magnitude = scaled.unsigned_abs();
            let unit = 10u128.pow(19);
            format!("{sign}{}.{:019}Ki", magnitude / unit, magnitude % unit)
        }
    };
    Quantity::parse(&text).unwrap_or_else(|_| {
        // Unreachable for the texts above; whole units keep the value if it ever happens.
        Quantity::from_i64((nanos / NANOS_PER_UNIT) as i64)
    })
}

/// `a + b`, in `a`'s format unless `a` is zero (as Kubernetes' `Quantity.Add`).
pub fn add(a: &Quantity, b: &Quantity) -> Quantity {
    let format = if a.is_zero() { b.format() } else { a.format() };
    from_nanos(nanos(a) + nanos(b), format)
}

/// `a - b`, in `a`'s format unless `a` is zero (as Kubernetes' `Quantity.Sub`).
pub fn sub(a: &Quantity, b: &Quantity) -> Quantity {
    let format = if a.is_zero() { b.format() } else { a.format() };
    from_nanos(nanos(a) - nanos(b), format)
}

/// The quantity rounded up (away from zero) to whole units, in its own format.
pub fn round_up_to_whole(q: &Quantity) -> Quantity {
    if nanos(q) % NANOS_PER_UNIT == 0 {
        return q.clone();
    }
    from_nanos(i128::from(q.value()) * NANOS_PER_UNIT, q.format())
}

/// Zero, printed in decimal SI form.
pub fn zero() -> Quantity {
    Quantity::from_i64(0)
}

/// Every resource of either list; those in both summed (Kubernetes' `quota.Add`).
pub fn add_lists(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (name, value) in b {
        let sum = match out.get(name) {
            Some(existing) => add(existing, value),
            None => value.clone(),
        };
        out.insert(name.clone(), sum);
    }
    out
}

/// Adds `b` into `a` in place.
pub fn add_into(a: &mut ResourceList, b: &ResourceList) {
    *a = add_lists(a, b);
}

/// For every resource of either list, `a - b`, or zero where that would be negative
/// (Kubernetes' `quota.SubtractWithNonNegativeResult`): what an update adds to what the old
/// object already used.
pub fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    for (name, value) in a {
        let difference = match b.get(name) {
            Some(other) => sub(value, other),
            None => value.clone(),
        };
        let kept = if difference.is_zero() || difference.is_negative() {
            zero()
        } else {
            difference
        };
        out.insert(name.clone(), kept);
    }
    for name in b.keys() {
        out.entry(name.clone()).or_insert_with(zero);
    }
    out
}

/// Only the resources named in `names`.
pub fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names
        .into_iter()
        .filter_map(|name| list.get(name).map(|q| (name.clone(), q.clone())))
        .collect()
}

/// The list without its zero entries.
pub fn remove_zeros(list: &ResourceList) -> ResourceList {
    list.iter()
        .filter(|(_, q)| !q.is_zero())
        .map(|(n, q)| (n.clone(), q.clone()))
        .collect()
}

/// For each resource of `b`, the larger of the two (Kubernetes' `maxResourceList`).
pub fn max_into(a: &mut ResourceList, b: &ResourceList) {
    for (name, value) in b {
        match a.get(name) {
            Some(existing) if existing >= value => {}
            _ => {
                a.insert(name.clone(), value.clone());
            }
        }
    }
}

/// `name=value` pairs in name order, comma-separated, as quota errors print resource lists.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(name, q)| format!("{name}={q}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn sums_keep_the_left_format() {
        assert_eq!(add(&q("512Mi"), &q("512Mi")).to_string(), "1Gi");
        assert_eq!(add(&q("500m"), &q("1")).to_string(), "1500m");
        assert_eq!(add(&q("1"), &q("1")).to_string(), "2");
        assert_eq!(add(&q("1Gi"), &q("1G")).to_string(), "2073741824");
        assert_eq!(add(&q("1G"), &q("1Gi")).to_string(), "2073741824");
        assert_eq!(add(&q("1e3"), &q("1e3")).to_string(), "2e3");
        assert_eq!(add(&q("100Mi"), &q("0.5")).to_string(), "104857600500m");
    }

    #[test]
    fn a_zero_left_operand_takes_the_right_format() {
        assert_eq!(add(&zero(), &q("1Gi")).to_string(), "1Gi");
        assert_eq!(sub(&zero(), &q("1Gi")).to_string(), "-1Gi");
    }

    #[test]
    fn differences_are_exact() {
        assert_eq!(sub(&q("1Gi"), &q("512Mi")).to_string(), "512Mi");
        assert_eq!(sub(&q("1"), &q("1m")).to_string(), "999m");
        assert_eq!(sub(&q("1n"), &q("1n")).to_string(), "0");
        assert_eq!(sub(&q("2"), &q("3")).to_string(), "-1");
    }

    #[test]
    fn small_binary_values_stay_exact() {
        assert_eq!(add(&q("1Ki"), &q("1")).to_string(), "1025");
        assert_eq!(add(&q("3Ki"), &q("1Ki")).to_string(), "4Ki");
        assert_eq!(add(&q("1.5Gi"), &q("512Mi")).to_string(), "2Gi");
    }

    #[test]
    fn rounding_up_to_whole_units_keeps_the_format() {
        assert_eq!(round_up_to_whole(&q("1500m")).to_string(), "2");
        assert_eq!(round_up_to_whole(&q("1Gi")).to_string(), "1Gi");
        assert_eq!(round_up_to_whole(&q("0.5Ki")).to_string(), "512");
        assert_eq!(
            round_up_to_whole(&q("1.0000000001Gi")).format(),
            Format::BinarySI
        );
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let huge = add(&q("9E"), &q("9E"));
        assert_eq!(huge.value(), i64::MAX);
    }

    #[test]
    fn list_sums_take_the_union() {
        let a = ResourceList::from([("cpu".into(), q("1")), ("pods".into(), q("1"))]);
        let b = ResourceList::from([("cpu".into(), q("500m")), ("memory".into(), q("1Gi"))]);
        assert_eq!(pretty(&add_lists(&a, &b)), "cpu=1500m,memory=1Gi,pods=1");
    }

    #[test]
    fn non_negative_subtraction_floors_at_zero_and_keeps_every_name() {
        let new = ResourceList::from([("cpu".into(), q("1")), ("memory".into(), q("1Gi"))]);
        let old = ResourceList::from([("cpu".into(), q("2")), ("pods".into(), q("1"))]);
        assert_eq!(
            pretty(&subtract_non_negative(&new, &old)),
            "cpu=0,memory=1Gi,pods=0"
        );
    }

    #[test]
    fn max_takes_the_larger_of_each() {
        let mut a = ResourceList::from([("cpu".into(), q("1")), ("memory".into(), q("1Gi"))]);
        let b = ResourceList::from([("cpu".into(), q("2")), ("memory".into(), q("1G"))]);
        max_into(&mut a, &b);
        assert_eq!(pretty(&a), "cpu=2,memory=1Gi");
    }
}
