//! Sets of integers stored as inclusive intervals (port ranges, for example).
//!
//! [`Ranges`] keeps one canonical form: sorted, non-overlapping and non-adjacent intervals
//! (`[1-2,3-4]` becomes `[1-4]`), so equality, containment and display need no further
//! normalization. This module does not parse text (see `parse.rs`) and does not know which
//! resource or attribute the ranges belong to.

use std::fmt;

/// A normalized set of `u64` values made of inclusive `(begin, end)` intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Ranges {
    /// Sorted by `begin`; for consecutive intervals `a` and `b`, `a.1 + 1 < b.0`.
    intervals: Vec<(u64, u64)>,
}

/// An interval whose begin is greater than its end, rejected by [`Ranges::try_from_intervals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid range {begin}-{end}: begin is greater than end")]
pub struct InvertedRange {
    /// The first value of the offending interval.
    pub begin: u64,
    /// The last value of the offending interval.
    pub end: u64,
}

impl Ranges {
    /// The empty set.
    pub const fn new() -> Ranges {
        Ranges { intervals: Vec::new() }
    }

    /// The values `begin..=end`; empty when `begin > end`, because such an interval holds nothing.
    pub fn interval(begin: u64, end: u64) -> Ranges {
        if begin > end {
            return Ranges::new();
        }
        Ranges { intervals: vec![(begin, end)] }
    }

    /// Builds the union of arbitrary (unsorted, overlapping) intervals, rejecting inverted ones,
    /// which is what wire input needs: an inverted interval there is a client bug to report.
    pub fn try_from_intervals<I>(intervals: I) -> Result<Ranges, InvertedRange>
    where
        I: IntoIterator<Item = (u64, u64)>,
    {
        let mut raw = Vec::new();
        for (begin, end) in intervals {
            if begin > end {
                return Err(InvertedRange { begin, end });
            }
            raw.push((begin, end));
        }
        Ok(Ranges::normalize(raw))
    }

    /// Sorts and merges valid intervals into the canonical form.
    fn normalize(mut raw: Vec<(u64, u64)>) -> Ranges {
        raw.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(raw.len());
        for (begin, end) in raw {
            match out.last_mut() {
                // Merge overlapping and adjacent intervals; `saturating_add` keeps `u64::MAX` safe.
                Some(last) if begin <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => out.push((begin, end)),
            }
        }
        Ranges { intervals: out }
    }

    /// The canonical intervals, sorted and disjoint.
    pub fn intervals(&self) -> &[(u64, u64)] {
        &self.intervals
    }

    /// True when no value is in the set.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// The number of values in the set (saturating at `u64::MAX` for the full domain).
    pub fn len(&self) -> u64 {
        self.intervals
            .iter()
            .fold(0u64, |acc, (begin, end)| acc.saturating_add((end - begin).saturating_add(1)))
    }

    /// True when `value` is in the set.
    pub fn contains_value(&self, value: u64) -> bool {
        self.find(value).is_some()
    }

    /// Index of the interval holding `value`, if any.
    fn find(&self, value: u64) -> Option<usize> {
        // The first interval that ends at or after `value` is the only candidate.
        let idx = self.intervals.partition_point(|&(_, end)| end < value);
        match self.intervals.get(idx) {
            Some(&(begin, _)) if begin <= value => Some(idx),
            _ => None,
        }
    }

    /// True when every value of `other` is in `self` (superset test).
    pub fn contains(&self, other: &Ranges) -> bool {
        // Canonical intervals are maximal, so each interval of `other` must fit inside one
        // interval of `self`.
        other
            .intervals
            .iter()
            .all(|&(begin, end)| self.find(begin).is_some_and(|idx| self.intervals[idx].1 >= end))
    }

    /// The values in either set.
    pub fn union(&self, other: &Ranges) -> Ranges {
        let mut raw = Vec::with_capacity(self.intervals.len() + other.intervals.len());
        raw.extend_from_slice(&self.intervals);
        raw.extend_from_slice(&other.intervals);
        Ranges::normalize(raw)
    }

    /// The values of `self` that are not in `other`.
    pub fn difference(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::new();
        let mut cut = other.intervals.iter().peekable();
        for &(begin, end) in &self.intervals {
            let mut start = begin;
            let mut open = true;
            // Skip removed intervals that end before this one starts.
            while cut.next_if(|&&(_, e)| e < start).is_some() {}
            while let Some(&&(cb, ce)) = cut.peek() {
                if cb > end {
                    break;
                }
                if cb > start {
                    out.push((start, cb - 1));
                }
                if ce >= end {
                    // The removed interval may still cut into the next interval of `self`,
                    // so it stays in the iterator.
                    open = false;
                    break;
                }
                start = ce + 1;
                cut.next();
            }
            if open {
                out.push((start, end));
            }
        }
        Ranges { intervals: out }
    }

    /// The values in both sets.
    pub fn intersection(&self, other: &Ranges) -> Ranges {
        self.difference(&self.difference(other))
    }
}

impl fmt::Display for Ranges {
    /// Prints the text syntax, `[31000-32000,33000-34000]`, and `[]` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (begin, end)) in self.intervals.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{begin}-{end}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn r(intervals: &[(u64, u64)]) -> Ranges {
        Ranges::try_from_intervals(intervals.iter().copied()).expect("test intervals are valid")
    }

    #[test]
    fn normalization_sorts_and_merges() {
        type Intervals = &'static [(u64, u64)];
        let cases: &[(Intervals, Intervals)] = &[
            (&[], &[]),
            (&[(5, 5)], &[(5, 5)]),
            (&[(3, 4), (1, 2)], &[(1, 4)]),
            (&[(1, 10), (2, 3)], &[(1, 10)]),
            (&[(1, 2), (4, 5)], &[(1, 2), (4, 5)]),
            (&[(10, 20), (15, 30), (40, 41)], &[(10, 30), (40, 41)]),
            (&[(0, u64::MAX), (7, 8)], &[(0, u64::MAX)]),
        ];
        for (input, expected) in cases {
            assert_eq!(r(input).intervals(), *expected, "{input:?}");
        }
        assert_eq!(
            Ranges::try_from_intervals([(1, 2), (9, 3)]),
            Err(InvertedRange { begin: 9, end: 3 })
        );
        assert!(Ranges::interval(2, 1).is_empty());
    }

    #[test]
    fn algebra_table() {
        let a = r(&[(31000, 32000), (33000, 34000)]);
        let cases = [
            (r(&[(31500, 31600)]), r(&[(31000, 31499), (31601, 32000), (33000, 34000)])),
            (r(&[(30000, 31000)]), r(&[(31001, 32000), (33000, 34000)])),
            (r(&[(31000, 34000)]), r(&[])),
            (r(&[(32000, 33000)]), r(&[(31000, 31999), (33001, 34000)])),
            (r(&[(1, 2), (40000, 50000)]), a.clone()),
            (r(&[]), a.clone()),
        ];
        for (cut, expected) in cases {
            let diff = a.difference(&cut);
            assert_eq!(diff, expected, "{a} minus {cut}");
            assert_eq!(diff.union(&a.intersection(&cut)), a, "{a} split by {cut}");
        }
        assert_eq!(a.len(), 2002);
        assert!(a.contains(&r(&[(31000, 31000), (33500, 34000)])));
        assert!(!a.contains(&r(&[(31999, 33000)])));
        assert!(a.contains(&Ranges::new()));
        assert!(a.contains_value(32000) && !a.contains_value(32001));
        assert_eq!(r(&[(0, u64::MAX)]).len(), u64::MAX);
        assert_eq!(
            r(&[(0, u64::MAX)]).difference(&r(&[(u64::MAX, u64::MAX)])),
            r(&[(0, u64::MAX - 1)])
        );
    }

    #[test]
    fn display_uses_the_text_syntax() {
        assert_eq!(r(&[(31000, 32000), (33000, 34000)]).to_string(), "[31000-32000,33000-34000]");
        assert_eq!(r(&[(7, 7)]).to_string(), "[7-7]");
        assert_eq!(Ranges::new().to_string(), "[]");
    }

    fn small_intervals() -> impl Strategy<Value = Vec<(u64, u64)>> {
        prop::collection::vec((0u64..60, 0u64..8).prop_map(|(b, w)| (b, b + w)), 0..6)
    }

    fn as_set(intervals: &[(u64, u64)]) -> BTreeSet<u64> {
        intervals.iter().flat_map(|&(b, e)| b..=e).collect()
    }

    proptest! {
        #[test]
        fn matches_a_set_model(a in small_intervals(), b in small_intervals()) {
            let (ra, rb) = (r(&a), r(&b));
            let (sa, sb) = (as_set(&a), as_set(&b));
            prop_assert_eq!(as_set(ra.intervals()), sa.clone());
            prop_assert_eq!(as_set(ra.union(&rb).intervals()), &sa | &sb);
            prop_assert_eq!(as_set(ra.difference(&rb).intervals()), &sa - &sb);
            prop_assert_eq!(as_set(ra.intersection(&rb).intervals()), &sa & &sb);
            prop_assert_eq!(ra.contains(&rb), sb.is_subset(&sa));
            prop_assert_eq!(ra.len(), sa.len() as u64);
            // The results are canonical too: rebuilding them changes nothing.
            let diff = ra.difference(&rb);
            prop_assert_eq!(r(diff.intervals()), diff);
        }
    }
}
