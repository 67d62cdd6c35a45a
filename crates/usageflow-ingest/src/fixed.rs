//! Exact decimal numbers as `i128` counts of 10^-8, parsed straight from event text.
//!
//! Quantities and amounts never pass through a float: `"12.5"`, `12.5`, `1e3` and `"-0.25"`
//! are read digit by digit. Values with more than eight significant decimal places, or
//! beyond ±10^20, are refused.

use std::fmt;

/// 10^8.
pub const ONE: i128 = 100_000_000;
const SCALE: u32 = 8;
const LIMIT: i128 = 100_000_000_000_000_000_000 * ONE; // 10^20 units

/// A parsed number: its value in 10^-8 units and how many decimals it really uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixed {
    /// Value × 10^8.
    pub units: i128,
    /// Significant decimal places (trailing zeros not counted).
    pub decimals: u32,
}

/// Why a number was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixedError {
    /// Not a decimal number.
    NotANumber,
    /// More than eight decimal places.
    TooPrecise(u32),
    /// Beyond ±10^20.
    TooLarge,
}

impl fmt::Display for FixedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FixedError::NotANumber => f.write_str("is not a decimal number"),
            FixedError::TooPrecise(d) => write!(f, "has {d} decimal places; at most 8 are supported"),
            FixedError::TooLarge => f.write_str("is beyond ±10^20"),
        }
    }
}

/// Parses JSON number text or a JSON string holding one (`12.5`, `"12.5"`, `1.5e3`).
pub fn parse(text: &str) -> Result<Fixed, FixedError> {
    let text = text.trim();
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text).trim();
    let bytes = text.as_bytes();
    let mut i = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    // The digits in a `u64` while they fit (integer arithmetic on `i128` is a library call
    // for division and remainder), then in an `i128`.
    let mut small: u64 = 0;
    let mut large: Option<i128> = None;
    let mut frac_digits: u32 = 0;
    let mut seen_digit = false;
    let mut in_frac = false;
    let mut exponent: i32 = 0;
    while i < bytes.len() {
        match bytes[i] {
            b @ b'0'..=b'9' => {
                seen_digit = true;
                let digit = b - b'0';
                match &mut large {
                    None => match small.checked_mul(10).and_then(|d| d.checked_add(u64::from(digit))) {
                        Some(d) => small = d,
                        None => large = Some(i128::from(small) * 10 + i128::from(digit)),
                    },
                    Some(d) => {
                        *d = d
                            .checked_mul(10)
                            .and_then(|d| d.checked_add(i128::from(digit)))
                            .ok_or(FixedError::TooLarge)?
                    }
                }
                if in_frac {
                    frac_digits += 1;
                }
            }
            b'.' if !in_frac => in_frac = true,
            b'e' | b'E' if seen_digit => {
                exponent = text[i + 1..].parse().map_err(|_| FixedError::NotANumber)?;
                i = bytes.len();
                break;
            }
            _ => return Err(FixedError::NotANumber),
        }
        i += 1;
    }
    debug_assert_eq!(i, bytes.len());
    if !seen_digit {
        return Err(FixedError::NotANumber);
    }
    // value = digits × 10^(exponent − frac_digits); strip trailing zeros from the fraction.
    let mut shift = exponent - frac_digits as i32;
    let digits = match large {
        None => {
            while shift < 0 && small != 0 && small.is_multiple_of(10) {
                small /= 10;
                shift += 1;
            }
            i128::from(small)
        }
        Some(mut digits) => {
            while shift < 0 && digits != 0 && digits % 10 == 0 {
                digits /= 10;
                shift += 1;
            }
            digits
        }
    };
    if digits == 0 {
        return Ok(Fixed { units: 0, decimals: 0 });
    }
    let decimals = u32::try_from(-shift).unwrap_or(0);
    if decimals > SCALE {
        return Err(FixedError::TooPrecise(decimals));
    }
    let scale = shift + SCALE as i32;
    if scale > 38 {
        return Err(FixedError::TooLarge);
    }
    let units = digits.checked_mul(10i128.pow(scale as u32)).ok_or(FixedError::TooLarge)?;
    if units > LIMIT {
        return Err(FixedError::TooLarge);
    }
    Ok(Fixed { units: if negative { -units } else { units }, decimals })
}

/// Formats `units` (10^-8) as a plain decimal with no trailing zeros.
pub fn format(units: i128) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    let int = abs / ONE as u128;
    let frac = abs % ONE as u128;
    if frac == 0 {
        return format!("{sign}{int}");
    }
    let frac = format!("{frac:08}");
    format!("{sign}{int}.{}", frac.trim_end_matches('0'))
}

/// `units` as a `rust_decimal::Decimal`.
pub fn to_decimal(units: i128) -> rust_decimal::Decimal {
    rust_decimal::Decimal::from_i128_with_scale(units, SCALE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(text: &str) -> (i128, u32) {
        let f = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (f.units, f.decimals)
    }

    #[test]
    fn parses_exactly() {
        assert_eq!(ok("12.5"), (1_250_000_000, 1));
        assert_eq!(ok("\"12.50\""), (1_250_000_000, 1));
        assert_eq!(ok("-0.25"), (-25_000_000, 2));
        assert_eq!(ok("7"), (700_000_000, 0));
        assert_eq!(ok("1.5e3"), (150_000_000_000, 0));
        assert_eq!(ok("25E-2"), (25_000_000, 2));
        assert_eq!(ok("0.00000001"), (1, 8));
        assert_eq!(ok("0.000"), (0, 0));
        assert_eq!(ok("0.1"), (10_000_000, 1));
        assert_eq!(parse("0.000000001"), Err(FixedError::TooPrecise(9)));
        assert_eq!(parse("1e21"), Err(FixedError::TooLarge));
        // More digits than a u64 holds (the i128 path), with and without trailing zeros.
        assert_eq!(ok("99999999999999999999.99999999"), (9_999_999_999_999_999_999_999_999_999, 8));
        assert_eq!(ok("12345678901234567890.1000000000"), (1_234_567_890_123_456_789_010_000_000, 1));
        assert_eq!(ok("0.00000000000000000000000010e25"), (100_000_000, 0));
        assert_eq!(parse("123456789012345678901"), Err(FixedError::TooLarge));
        assert_eq!(parse(&"9".repeat(60)), Err(FixedError::TooLarge));
        for bad in ["", "abc", "1.2.3", "--1", "e5", "1e", "\"\"", "1,5", "NaN"] {
            assert_eq!(parse(bad), Err(FixedError::NotANumber), "{bad}");
        }
    }

    #[test]
    fn formats_without_trailing_zeros() {
        assert_eq!(format(1_250_000_000), "12.5");
        assert_eq!(format(-25_000_000), "-0.25");
        assert_eq!(format(700_000_000), "7");
        assert_eq!(format(1), "0.00000001");
    }

    proptest! {
        #[test]
        fn agrees_with_rust_decimal_in_any_notation(
            int in 0u64..1_000_000_000_000,
            frac in "[0-9]{0,10}",
            exponent in proptest::option::of(-12i32..12),
            neg: bool,
        ) {
            let mut text = format!("{}{int}", if neg { "-" } else { "" });
            if !frac.is_empty() {
                text = format!("{text}.{frac}");
            }
            let mut expected: rust_decimal::Decimal = text.parse().unwrap();
            if let Some(e) = exponent {
                text = format!("{text}e{e}");
                let ten = rust_decimal::Decimal::TEN;
                for _ in 0..e.unsigned_abs() {
                    expected = if e > 0 { expected * ten } else { expected / ten };
                }
            }
            let expected = expected.normalize();
            match parse(&text) {
                Ok(got) => {
                    prop_assert_eq!(to_decimal(got.units), expected, "{}", text);
                    prop_assert_eq!(got.decimals, expected.scale(), "{}", text);
                }
                Err(FixedError::TooPrecise(d)) => {
                    prop_assert!(expected.scale() > SCALE, "{}", text);
                    prop_assert_eq!(d, expected.scale(), "{}", text);
                }
                Err(FixedError::TooLarge) => {
                    prop_assert!(expected.abs() > rust_decimal::Decimal::from(100_000_000_000_000_000_000u128), "{}", text);
                }
                Err(e) => prop_assert!(false, "{}: {}", text, e),
            }
        }

        #[test]
        fn agrees_with_rust_decimal(int in 0i64..1_000_000_000_000, frac in 0u32..100_000_000, neg: bool) {
            let text = format!("{}{int}.{frac:08}", if neg { "-" } else { "" });
            let expected: rust_decimal::Decimal = text.parse().unwrap();
            let got = parse(&text).unwrap();
            prop_assert_eq!(to_decimal(got.units), expected);
            prop_assert_eq!(got.decimals, expected.normalize().scale());
            prop_assert_eq!(format(got.units).parse::<rust_decimal::Decimal>().unwrap(), expected);
        }
    }
}
