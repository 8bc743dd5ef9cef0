//! Broker and topic expressions of the Kafka-on-Mesos CLI: `0`, `0,1`, `0..2`, `*`, with an
//! optional attribute filter `*[rack=r1,hostname=slave*]`; topics `t0`, `t0,t1`, `*`, `t*`.
//!
//! An expression selects among existing brokers (`select`) or names new ones (`new_ids`, which
//! refuses `*` and filters). Attribute filters look at the host a broker runs on, so a broker
//! that is not running matches no filter. `*` in a value or topic name matches any text.

use std::collections::BTreeMap;

use crate::model::{Broker, InputError, bad};

/// A parsed broker expression.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerExpr {
    /// `None` is `*`; otherwise inclusive id ranges.
    ids: Option<Vec<(u32, u32)>>,
    filters: Vec<(String, String)>,
}

impl BrokerExpr {
    pub fn parse(text: &str) -> Result<BrokerExpr, InputError> {
        let text = text.trim();
        let invalid = |why: &str| bad(format!("invalid broker expression {text:?}: {why}"));
        let (head, filters) = match text.find('[') {
            Some(open) => {
                let rest = &text[open + 1..];
                let inner = rest.strip_suffix(']').ok_or_else(|| invalid("missing ]"))?;
                let mut filters = Vec::new();
                for item in inner.split(',') {
                    let (k, v) = item
                        .split_once('=')
                        .ok_or_else(|| invalid("filters are attribute=value"))?;
                    if k.trim().is_empty() {
                        return Err(invalid("empty attribute in filter"));
                    }
                    filters.push((k.trim().to_string(), v.trim().to_string()));
                }
                (&text[..open], filters)
            }
            None => (text, Vec::new()),
        };
        if head.is_empty() {
            return Err(invalid("empty"));
        }
        let ids = if head == "*" {
            None
        } else {
            let mut ranges = Vec::new();
            for part in head.split(',') {
                let id = |t: &str| {
                    t.trim()
                        .parse::<u32>()
                        .map_err(|_| invalid(&format!("{t:?} is not a broker id")))
                };
                let range = match part.split_once("..") {
                    Some((a, b)) => (id(a)?, id(b)?),
                    None => (id(part)?, id(part)?),
                };
                if range.0 > range.1 {
                    return Err(invalid("range start > end"));
                }
                if range.1 - range.0 > 10_000 {
                    return Err(invalid("range too large"));
                }
                ranges.push(range);
            }
            Some(ranges)
        };
        Ok(BrokerExpr { ids, filters })
    }

    /// Ids of new brokers: plain ids and ranges only.
    pub fn new_ids(&self) -> Result<Vec<u32>, InputError> {
        match (&self.ids, self.filters.is_empty()) {
            (Some(ranges), true) => Ok(expand(ranges)),
            _ => Err(bad("new brokers need explicit ids (e.g. 0, 0,1 or 0..2), not * or filters")),
        }
    }

    /// The existing brokers selected, in id order. Ids named explicitly must exist.
    pub fn select(&self, brokers: &BTreeMap<u32, Broker>) -> Result<Vec<u32>, InputError> {
        let candidates = match &self.ids {
            None => brokers.keys().copied().collect(),
            Some(ranges) => {
                let ids = expand(ranges);
                if let Some(missing) = ids.iter().find(|id| !brokers.contains_key(id)) {
                    return Err(bad(format!("broker {missing} not found")));
                }
                ids
            }
        };
        Ok(candidates.into_iter().filter(|id| self.filters_match(&brokers[id])).collect())
    }

    /// Whether the expression selects `broker` (which need not be named explicitly to exist).
    pub fn covers(&self, broker: &Broker) -> bool {
        let named = match &self.ids {
            None => true,
            Some(ranges) => ranges.iter().any(|(a, b)| (*a..=*b).contains(&broker.id)),
        };
        named && self.filters_match(broker)
    }

    fn filters_match(&self, broker: &Broker) -> bool {
        self.filters.iter().all(|(attr, pattern)| {
            let Some(task) = &broker.task else { return false };
            let value =
                if attr == "hostname" { Some(&task.hostname) } else { task.attributes.get(attr) };
            value.is_some_and(|v| glob(pattern, v))
        })
    }
}

fn expand(ranges: &[(u32, u32)]) -> Vec<u32> {
    let mut ids: Vec<u32> = ranges.iter().flat_map(|(a, b)| *a..=*b).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// `*` matches any text, everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// A topic expression: names and globs, comma separated.
pub fn parse_topics(text: &str) -> Result<Vec<String>, InputError> {
    let names: Vec<String> =
        text.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect();
    if names.is_empty() {
        return Err(bad("empty topic expression"));
    }
    for name in &names {
        let plain = name.replace('*', "");
        if !plain.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            || name.len() > 249
        {
            return Err(bad(format!("invalid topic name {name:?}: use letters, digits, . _ -")));
        }
    }
    Ok(names)
}

/// Whether `topic` is selected by the parsed expression.
pub fn topic_selected(expr: &[String], topic: &str) -> bool {
    expr.iter().any(|pattern| glob(pattern, topic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Task;

    fn brokers() -> BTreeMap<u32, Broker> {
        (0..4)
            .map(|id| {
                let mut b = Broker::new(id);
                if id < 3 {
                    b.task = Some(Task {
                        id: format!("t{id}"),
                        slave_id: "s".into(),
                        executor_id: "e".into(),
                        hostname: format!("slave{id}"),
                        endpoint: None,
                        state: "running".into(),
                        attributes: [("rack".to_string(), format!("r{}", id % 2))].into(),
                    });
                }
                (id, b)
            })
            .collect()
    }

    #[test]
    fn expressions_select_brokers() {
        let b = brokers();
        let cases = [
            ("0", vec![0]),
            ("0,1", vec![0, 1]),
            ("1..3", vec![1, 2, 3]),
            ("*", vec![0, 1, 2, 3]),
            ("*[rack=r0]", vec![0, 2]),
            ("*[hostname=slave*]", vec![0, 1, 2]),
            ("0..3[rack=r1,hostname=slave1]", vec![1]),
        ];
        for (text, ids) in cases {
            assert_eq!(BrokerExpr::parse(text).expect(text).select(&b).expect(text), ids, "{text}");
        }
        let e = BrokerExpr::parse("7").expect("valid").select(&b).expect_err("unknown");
        assert_eq!(e.0, "broker 7 not found");
    }

    #[test]
    fn malformed_expressions_are_errors() {
        for text in ["", "a", "1..", "3..1", "*[rack]", "*[rack=r1", "-1", "0..99999999"] {
            let e = BrokerExpr::parse(text).expect_err(text);
            assert!(e.0.starts_with("invalid broker expression"), "{text}: {e}");
        }
        assert!(BrokerExpr::parse("*").expect("valid").new_ids().is_err());
        assert_eq!(
            BrokerExpr::parse("0..2,5").expect("valid").new_ids().expect("ids"),
            [0, 1, 2, 5]
        );
    }

    #[test]
    fn globs_and_topics() {
        assert!(glob("t*", "t1"));
        assert!(glob("*", ""));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c", "ab"));
        assert!(!glob("t1", "t10"));
        let t = parse_topics("t0, x*").expect("valid");
        assert!(topic_selected(&t, "t0") && topic_selected(&t, "xy") && !topic_selected(&t, "t1"));
        assert!(parse_topics("").is_err());
        assert!(parse_topics("a b").is_err());
    }
}
