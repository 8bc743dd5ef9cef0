//! Placement constraints of Kafka-on-Mesos: `attr=op[:value]` with the operators `like`,
//! `unlike`, `unique`, `cluster` and `groupBy`, over `hostname` and an agent's text attributes.
//!
//! A constraint judges one offered value against the values of the same attribute on the hosts
//! where the other brokers already run; which brokers count is the caller's business. A missing
//! attribute never matches. Patterns are full-match regular expressions, so `like:r1` means
//! "equals r1".

use std::fmt;

use regex::Regex;

use crate::model::{InputError, bad};

#[derive(Debug, Clone)]
pub enum Constraint {
    Like(Regex),
    Unlike(Regex),
    /// Every broker on a distinct value.
    Unique,
    /// All brokers on the same value: the given one, or that of the first placed broker.
    Cluster(Option<String>),
    /// `groupBy` alone is `cluster`; `groupBy:n` spreads brokers evenly over n values.
    GroupBy(Option<u32>),
}

impl PartialEq for Constraint {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Constraint {
    /// One operator with its value, e.g. `like:r1`, `unique`, `groupBy:3`.
    pub fn parse(text: &str) -> Result<Constraint, InputError> {
        let (op, value) = match text.split_once(':') {
            Some((op, value)) => (op, Some(value)),
            None => (text, None),
        };
        let pattern = |value: Option<&str>| -> Result<Regex, InputError> {
            let value = value
                .ok_or_else(|| bad(format!("invalid constraint {text:?}: {op} needs a value")))?;
            Regex::new(&format!("^(?:{value})$"))
                .map_err(|e| bad(format!("invalid constraint {text:?}: bad pattern: {e}")))
        };
        match op {
            "like" => Ok(Constraint::Like(pattern(value)?)),
            "unlike" => Ok(Constraint::Unlike(pattern(value)?)),
            "unique" if value.is_none() => Ok(Constraint::Unique),
            "cluster" => Ok(Constraint::Cluster(value.map(str::to_string))),
            "groupBy" => match value {
                None => Ok(Constraint::GroupBy(None)),
                Some(n) => match n.parse::<u32>() {
                    Ok(n) if n > 0 => Ok(Constraint::GroupBy(Some(n))),
                    _ => Err(bad(format!(
                        "invalid constraint {text:?}: groupBy needs a positive count"
                    ))),
                },
            },
            _ => Err(bad(format!(
                "invalid constraint {text:?}: operator must be like, unlike, unique, cluster or groupBy"
            ))),
        }
    }

    /// `attr=op[:value],...` into a map from attribute to constraint.
    pub fn parse_all(
        text: &str,
    ) -> Result<std::collections::BTreeMap<String, Constraint>, InputError> {
        let mut map = std::collections::BTreeMap::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((attr, op)) = item.split_once('=') else {
                return Err(bad(format!(
                    "invalid constraint {item:?}: expected attribute=operator[:value]"
                )));
            };
            if attr.trim().is_empty() {
                return Err(bad(format!("invalid constraint {item:?}: empty attribute")));
            }
            map.insert(attr.trim().to_string(), Constraint::parse(op.trim())?);
        }
        Ok(map)
    }

    /// Whether `value` (the offer's, `None` if the agent lacks the attribute) is acceptable
    /// given `others`, the values of the brokers already placed.
    pub fn matches(&self, value: Option<&str>, others: &[&str]) -> bool {
        let Some(value) = value else { return false };
        match self {
            Constraint::Like(re) => re.is_match(value),
            Constraint::Unlike(re) => !re.is_match(value),
            Constraint::Unique => !others.contains(&value),
            Constraint::Cluster(Some(v)) => v == value,
            Constraint::Cluster(None) | Constraint::GroupBy(None) => {
                others.first().is_none_or(|first| *first == value)
            }
            Constraint::GroupBy(Some(groups)) => {
                let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
                for other in others {
                    *counts.entry(other).or_default() += 1;
                }
                if counts.len() < *groups as usize {
                    // Fill every group before doubling up on one.
                    !counts.contains_key(value)
                } else {
                    let min = counts.values().copied().min().unwrap_or(0);
                    counts.get(value).is_some_and(|count| *count == min)
                }
            }
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The stored pattern is wrapped in `^(?:...)$`; show what the user wrote.
        let unwrap = |re: &Regex| {
            let s = re.as_str();
            s.strip_prefix("^(?:").and_then(|s| s.strip_suffix(")$")).unwrap_or(s).to_string()
        };
        match self {
            Constraint::Like(re) => write!(f, "like:{}", unwrap(re)),
            Constraint::Unlike(re) => write!(f, "unlike:{}", unwrap(re)),
            Constraint::Unique => write!(f, "unique"),
            Constraint::Cluster(None) => write!(f, "cluster"),
            Constraint::Cluster(Some(v)) => write!(f, "cluster:{v}"),
            Constraint::GroupBy(None) => write!(f, "groupBy"),
            Constraint::GroupBy(Some(n)) => write!(f, "groupBy:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str) -> Constraint {
        Constraint::parse(text).expect(text)
    }

    #[test]
    fn operators_judge_values() {
        let cases: &[(&str, Option<&str>, &[&str], bool)] = &[
            ("like:r1", Some("r1"), &[], true),
            ("like:r1", Some("r10"), &[], false),
            ("like:slave.*", Some("slave3"), &[], true),
            ("like:r1", None, &[], false),
            ("unlike:r1", Some("r2"), &[], true),
            ("unlike:r1", Some("r1"), &[], false),
            ("unique", Some("a"), &["b", "c"], true),
            ("unique", Some("a"), &["b", "a"], false),
            ("cluster", Some("a"), &[], true),
            ("cluster", Some("a"), &["a"], true),
            ("cluster", Some("b"), &["a"], false),
            ("cluster:dc1", Some("dc1"), &["dc2"], true),
            ("cluster:dc1", Some("dc2"), &[], false),
            ("groupBy", Some("b"), &["a"], false),
            ("groupBy:2", Some("a"), &["a"], false),
            ("groupBy:2", Some("b"), &["a"], true),
            ("groupBy:2", Some("a"), &["a", "b"], true),
            ("groupBy:2", Some("a"), &["a", "b", "a"], false),
            ("groupBy:2", Some("b"), &["a", "b", "a"], true),
        ];
        for (text, value, others, expected) in cases {
            assert_eq!(c(text).matches(*value, others), *expected, "{text} {value:?} {others:?}");
        }
    }

    #[test]
    fn constraint_lists_parse_and_print() {
        let all = Constraint::parse_all("hostname=unique, rack=like:r1|r2").expect("valid");
        assert_eq!(all["hostname"], Constraint::Unique);
        assert_eq!(all["rack"].to_string(), "like:r1|r2");
        assert!(Constraint::parse_all("").expect("empty").is_empty());
    }

    #[test]
    fn malformed_constraints_are_errors() {
        for text in [
            "hostname",
            "=unique",
            "rack=near",
            "rack=like",
            "rack=like:(",
            "rack=groupBy:0",
            "rack=unique:x",
        ] {
            let e = Constraint::parse_all(text).expect_err(text);
            assert!(e.0.contains("invalid constraint"), "{text}: {e}");
        }
    }
}
