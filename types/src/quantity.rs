//! Resource quantities (`500m`, `1.5Gi`, `2e3`): Kubernetes' `resource.Quantity` grammar,
//! exact decimal values rounded up to nano units, whole and milli values as Kubernetes rounds
//! them, and the canonical string Kubernetes prints.

use std::cmp::Ordering;
use std::fmt;

/// The pattern Kubernetes names when a quantity is malformed.
const QUANTITY_PATTERN: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// Why a string is not a quantity; the texts are Kubernetes'.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantities must match the regular expression '{QUANTITY_PATTERN}'")]
    Format,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// How a quantity was written, which decides how it is printed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Ki`, `Mi`, … (powers of 1024).
    BinarySI,
    /// `m`, `k`, `M`, … or no suffix (powers of 1000).
    DecimalSI,
    /// `e3`, `E-6`.
    DecimalExponent,
}

/// An exact decimal quantity: `digits × 10^exp`, negated if `negative`. Values are rounded up
/// (away from zero) to nano units when parsed, as Kubernetes does.
#[derive(Debug, Clone)]
pub struct Quantity {
    negative: bool,
    /// Decimal digits, most significant first, no leading or trailing zeros; empty for zero.
    digits: Vec<u8>,
    exp: i64,
    format: Format,
}

/// The smallest unit a quantity keeps: 10^-9.
const NANO: i64 = -9;

impl Quantity {
    /// Parses Kubernetes' quantity grammar: an optionally signed decimal number (`1`, `1.5`,
    /// `.5`, `5.`), then an SI suffix (`n u m k M G T P E`), a binary suffix
    /// (`Ki Mi Gi Ti Pi Ei`) or an exponent (`e3`, `E-2`).
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        if s.is_empty() {
            return Err(QuantityError::Format);
        }
        let parts = split_quantity(s)?;
        let (base2, exponent, format) = interpret_suffix(parts.suffix)?;
        let mut digits: Vec<u8> = parts
            .num
            .bytes()
            .chain(parts.denom.bytes())
            .map(|b| b - b'0')
            .collect();
        let mut exp = -(parts.denom.len() as i64);
        if base2 {
            for _ in 0..exponent / 10 {
                digits = multiply_small(&digits, 1024);
            }
        } else {
            exp += exponent;
        }
        let mut q = Quantity {
            negative: !parts.positive,
            digits,
            exp,
            format,
        };
        q.normalize();
        q.round_up_to_nano();
        if format == Format::BinarySI {
            // Binary quantities are capped at the largest int64, as Kubernetes caps them.
            let max = Quantity::from_i64(i64::MAX);
            if q.cmp_magnitude(&max) == Ordering::Greater {
                q.digits = max.digits;
                q.exp = max.exp;
            }
            if !q.is_zero() && q.cmp_magnitude(&Quantity::from_i64(1)) == Ordering::Less {
                q.format = Format::DecimalSI;
            }
        }
        if q.is_zero() {
            q.negative = false;
        }
        Ok(q)
    }

    /// The integer `value`, printed in decimal SI form.
    pub fn from_i64(value: i64) -> Quantity {
        let mut q = Quantity {
            negative: value < 0,
            digits: value
                .unsigned_abs()
                .to_string()
                .bytes()
                .map(|b| b - b'0')
                .collect(),
            exp: 0,
            format: Format::DecimalSI,
        };
        q.normalize();
        q
    }

    /// `value / 1000`, printed in decimal SI form (`1500` → `1500m`).
    pub fn from_milli(value: i64) -> Quantity {
        let mut q = Quantity::from_i64(value);
        if !q.is_zero() {
            q.exp -= 3;
        }
        q
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    pub fn is_negative(&self) -> bool {
        self.negative && !self.is_zero()
    }

    /// The value in whole units, rounded up (away from zero) as Kubernetes' `Value()`;
    /// saturates at the int64 range.
    pub fn value(&self) -> i64 {
        self.scaled_value(0)
    }

    /// The value in thousandths, rounded up (away from zero) as Kubernetes' `MilliValue()`;
    /// saturates at the int64 range.
    pub fn milli_value(&self) -> i64 {
        self.scaled_value(3)
    }

    /// `self × 10^shift`, rounded away from zero to an integer, saturating.
    fn scaled_value(&self, shift: i64) -> i64 {
        if self.is_zero() {
            return 0;
        }
        let exp = self.exp + shift;
        let len = self.digits.len() as i64;
        let saturated = if self.negative { i64::MIN } else { i64::MAX };
        if len + exp > 19 {
            return saturated;
        }
        let (whole, round_up) = if exp >= 0 {
            let mut v: u128 = 0;
            for &d in &self.digits {
                v = v * 10 + u128::from(d);
            }
            (v * 10u128.pow(exp as u32), false)
        } else {
            let keep = (len + exp).max(0) as usize;
            let mut v: u128 = 0;
            for &d in &self.digits[..keep] {
                v = v * 10 + u128::from(d);
            }
            // Normalized digits end in a non-zero digit, so something was cut off.
            (v, true)
        };
        let magnitude = whole + u128::from(round_up);
        if self.negative {
            if magnitude > i64::MAX as u128 + 1 {
                return i64::MIN;
            }
            (magnitude as i128).wrapping_neg() as i64
        } else {
            i64::try_from(magnitude).unwrap_or(i64::MAX)
        }
    }

    /// The canonical form Kubernetes prints: the largest suffix of the quantity's format that
    /// keeps the number whole (`1.5` → `1500m`, `2048Ki` → `2Mi`, `1.5Gi` → `1536Mi`).
    pub fn to_canonical_string(&self) -> String {
        if self.is_zero() {
            return "0".to_string();
        }
        let sign = if self.negative { "-" } else { "" };
        if self.format == Format::BinarySI {
            let small = self.cmp_magnitude(&Quantity::from_i64(1024)) == Ordering::Less;
            if !small && self.exp >= 0 {
                let mut whole = self.digits.clone();
                whole.extend(std::iter::repeat_n(0u8, self.exp as usize));
                let mut power = 0;
                while power < 6 {
                    match divide_small_exact(&whole, 1024) {
                        Some(q) => {
                            whole = q;
                            power += 1;
                        }
                        None => break,
                    }
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
                return format!("{sign}{}{suffix}", digits_to_string(&whole));
            }
        }
        // Decimal: make the exponent a multiple of three by moving digits into the number.
        let shift = self.exp.rem_euclid(3);
        let mut number = self.digits.clone();
        number.extend(std::iter::repeat_n(0u8, shift as usize));
        let exp = self.exp - shift;
        let suffix = match (self.format, exp) {
            (_, 0) => String::new(),
            (Format::DecimalExponent, e) => format!("e{e}"),
            (_, -9) => "n".into(),
            (_, -6) => "u".into(),
            (_, -3) => "m".into(),
            (_, 3) => "k".into(),
            (_, 6) => "M".into(),
            (_, 9) => "G".into(),
            (_, 12) => "T".into(),
            (_, 15) => "P".into(),
            (_, 18) => "E".into(),
            // Past the SI suffixes: Kubernetes would drop the suffix (and so the magnitude);
            // an exponent keeps the value.
            (_, e) => format!("e{e}"),
        };
        format!("{sign}{}{suffix}", digits_to_string(&number))
    }

    fn normalize(&mut self) {
        let lead = self.digits.iter().take_while(|&&d| d == 0).count();
        self.digits.drain(..lead);
        while self.digits.last() == Some(&0) {
            self.digits.pop();
            self.exp += 1;
        }
        if self.digits.is_empty() {
            self.exp = 0;
        }
    }

    /// Kubernetes rounds any non-zero amount below a nano unit up, "so that if you ask for
    /// some resources, you get some".
    fn round_up_to_nano(&mut self) {
        if self.is_zero() || self.exp >= NANO {
            return;
        }
        let drop = (NANO - self.exp) as usize;
        if drop >= self.digits.len() {
            self.digits = vec![1];
        } else {
            self.digits.truncate(self.digits.len() - drop);
            self.digits = add_one(&self.digits);
        }
        self.exp = NANO;
        self.normalize();
    }

    fn cmp_magnitude(&self, other: &Quantity) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let top_self = self.digits.len() as i64 + self.exp;
        let top_other = other.digits.len() as i64 + other.exp;
        top_self.cmp(&top_other).then_with(|| {
            // Same leading position: compare digit by digit, missing digits being zeros.
            let n = self.digits.len().max(other.digits.len());
            (0..n)
                .map(|i| {
                    let a = self.digits.get(i).copied().unwrap_or(0);
                    let b = other.digits.get(i).copied().unwrap_or(0);
                    a.cmp(&b)
                })
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Quantities compare by value, whatever their format: `1Ki == 1024`.
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.is_negative(), other.is_negative()) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_canonical_string())
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

struct QuantityParts<'a> {
    positive: bool,
    /// Integer digits without leading zeros ("0" when there are none).
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

/// Splits `[sign]digits[.digits]suffix` as Kubernetes' `parseQuantityString` does.
fn split_quantity(s: &str) -> Result<QuantityParts<'_>, QuantityError> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    let mut parts = QuantityParts {
        positive,
        num: "0",
        denom: "",
        suffix: "",
    };
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Ok(parts);
    }
    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos > num_start {
        parts.num = &s[num_start..pos];
    }
    if pos >= end {
        return Ok(parts);
    }
    if b[pos] == b'.' {
        pos += 1;
        let denom_start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        parts.denom = &s[denom_start..pos];
        if pos >= end {
            return Ok(parts);
        }
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && matches!(b[pos], b'-' | b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(QuantityError::Format);
    }
    parts.suffix = &s[suffix_start..];
    Ok(parts)
}

/// (base is 2, exponent, format) for a suffix.
fn interpret_suffix(suffix: &str) -> Result<(bool, i64, Format), QuantityError> {
    let decimal = |e| Ok((false, e, Format::DecimalSI));
    let binary = |e| Ok((true, e, Format::BinarySI));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => s[1..]
            .parse::<i32>()
            .map(|e| (false, i64::from(e), Format::DecimalExponent))
            .map_err(|_| QuantityError::Suffix),
        _ => Err(QuantityError::Suffix),
    }
}

fn multiply_small(digits: &[u8], by: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(digits.len() + 4);
    let mut carry: u32 = 0;
    for &d in digits.iter().rev() {
        let v = u32::from(d) * by + carry;
        out.push((v % 10) as u8);
        carry = v / 10;
    }
    while carry > 0 {
        out.push((carry % 10) as u8);
        carry /= 10;
    }
    out.reverse();
    out
}

/// `digits / by` when it divides exactly.
fn divide_small_exact(digits: &[u8], by: u32) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(digits.len());
    let mut rem: u32 = 0;
    for &d in digits {
        let v = rem * 10 + u32::from(d);
        out.push((v / by) as u8);
        rem = v % by;
    }
    if rem != 0 {
        return None;
    }
    let lead = out.iter().take_while(|&&d| d == 0).count();
    out.drain(..lead);
    Some(out)
}

fn add_one(digits: &[u8]) -> Vec<u8> {
    let mut out = digits.to_vec();
    for d in out.iter_mut().rev() {
        if *d == 9 {
            *d = 0;
        } else {
            *d += 1;
            return out;
        }
    }
    out.insert(0, 1);
    out
}

fn digits_to_string(digits: &[u8]) -> String {
    if digits.is_empty() {
        return "0".to_string();
    }
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

#[cfg(test)]
#[path = "quantity_tests.rs"]
mod tests;
