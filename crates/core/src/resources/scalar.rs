//! Fixed-point scalar quantities (CPUs, MB of memory or disk, GPUs).
//!
//! Mesos defines scalar resource values as fixed-point numbers with three decimal digits, so that
//! repeated arithmetic such as `0.1 + 0.2` cpus never drifts away from `0.3`.
//! [`Scalar`] stores thousandths in an `i64` and does all arithmetic on integers; `f64` only
//! appears at the edges (`from_f64`, `as_f64`). This module does not parse text (see `parse.rs`)
//! and does not forbid negative values: [`super::Resources`] keeps its entries non-negative.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub, SubAssign};

/// A scalar quantity in thousandths (`Scalar::from_milli(1500)` is 1.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scalar(i64);

impl Scalar {
    /// Zero of every resource.
    pub const ZERO: Scalar = Scalar(0);

    /// How many stored units make one whole unit.
    pub const UNITS_PER_ONE: i64 = 1000;

    /// The largest whole value the text syntax accepts. It keeps every sum of a realistic
    /// cluster (millions of agents) far away from `i64::MAX` thousandths.
    pub const MAX_WHOLE: f64 = 1e15;

    /// Builds a scalar from thousandths.
    pub const fn from_milli(milli: i64) -> Scalar {
        Scalar(milli)
    }

    /// Builds a scalar from a whole number.
    pub const fn from_int(value: i64) -> Scalar {
        Scalar(value.saturating_mul(Self::UNITS_PER_ONE))
    }

    /// Rounds `value` to the nearest thousandth.
    ///
    /// This never panics: NaN becomes zero and values beyond the `i64` range saturate, because
    /// callers that must reject such input (the text and wire parsers) check it before.
    pub fn from_f64(value: f64) -> Scalar {
        // `as` from f64 to i64 saturates and maps NaN to 0, which is the documented behaviour.
        Scalar((value * Self::UNITS_PER_ONE as f64).round() as i64)
    }

    /// The value in thousandths.
    pub const fn milli(self) -> i64 {
        self.0
    }

    /// The value as a float, for the wire format and for share computations.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / Self::UNITS_PER_ONE as f64
    }

    /// True for exactly zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// True for values strictly above zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Subtraction that stops at zero, for "remove what is there" arithmetic.
    pub fn saturating_sub_to_zero(self, other: Scalar) -> Scalar {
        Scalar(self.0.saturating_sub(other.0).max(0))
    }
}

// Saturating integer arithmetic: an overflow can only come from absurd input, and saturating
// keeps the allocator running instead of panicking on it.
impl Add for Scalar {
    type Output = Scalar;
    fn add(self, rhs: Scalar) -> Scalar {
        Scalar(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Scalar {
    fn add_assign(&mut self, rhs: Scalar) {
        *self = *self + rhs;
    }
}

impl Sub for Scalar {
    type Output = Scalar;
    fn sub(self, rhs: Scalar) -> Scalar {
        Scalar(self.0.saturating_sub(rhs.0))
    }
}

impl SubAssign for Scalar {
    fn sub_assign(&mut self, rhs: Scalar) {
        *self = *self - rhs;
    }
}

impl Sum for Scalar {
    fn sum<I: Iterator<Item = Scalar>>(iter: I) -> Scalar {
        iter.fold(Scalar::ZERO, Add::add)
    }
}

impl fmt::Display for Scalar {
    /// Prints the shortest exact decimal form: `0.5`, `4`, `1024`, `0.001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let per = Self::UNITS_PER_ONE.unsigned_abs();
        let whole = abs / per;
        let frac = abs % per;
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let digits = format!("{frac:03}");
        write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_shortest_exact_form() {
        let cases = [
            (0, "0"),
            (500, "0.5"),
            (4000, "4"),
            (1_024_000, "1024"),
            (1, "0.001"),
            (10, "0.01"),
            (1_250, "1.25"),
            (-500, "-0.5"),
            (-2_000, "-2"),
        ];
        for (milli, text) in cases {
            assert_eq!(Scalar::from_milli(milli).to_string(), text, "{milli} thousandths");
        }
    }

    #[test]
    fn from_f64_rounds_to_thousandths() {
        let cases = [
            (0.1, 100),
            (0.0004, 0),
            (0.0005, 1),
            (1.2345, 1235),
            (2.0, 2000),
            (-0.25, -250),
            (f64::NAN, 0),
        ];
        for (value, milli) in cases {
            assert_eq!(Scalar::from_f64(value).milli(), milli, "{value}");
        }
        assert_eq!(Scalar::from_f64(f64::INFINITY).milli(), i64::MAX);
    }

    #[test]
    fn point_one_plus_point_two_is_point_three() {
        let sum = Scalar::from_f64(0.1) + Scalar::from_f64(0.2);
        assert_eq!(sum, Scalar::from_f64(0.3));
        assert_eq!(sum.to_string(), "0.3");
        let mut acc = Scalar::ZERO;
        for _ in 0..1000 {
            acc += Scalar::from_f64(0.001);
        }
        assert_eq!(acc, Scalar::from_int(1));
    }

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        let big = Scalar::from_milli(i64::MAX);
        assert_eq!(big + Scalar::from_int(1), big);
        assert_eq!(
            Scalar::from_milli(i64::MIN) - Scalar::from_int(1),
            Scalar::from_milli(i64::MIN)
        );
        assert_eq!(Scalar::from_int(1).saturating_sub_to_zero(Scalar::from_int(3)), Scalar::ZERO);
        assert_eq!(Scalar::from_int(3) - Scalar::from_int(1), Scalar::from_int(2));
        assert!(Scalar::from_int(1) < Scalar::from_f64(1.001));
        let total: Scalar = [1, 2, 3].into_iter().map(Scalar::from_int).sum();
        assert_eq!(total.as_f64(), 6.0);
    }
}
