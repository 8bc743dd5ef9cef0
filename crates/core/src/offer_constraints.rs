//! Offer constraints (`SUBSCRIBE.offer_constraints`, `UPDATE_FRAMEWORK.offer_constraints`): per
//! role, the agents a framework wants offers from, as groups of attribute constraints (reference
//! §1.3). Groups are OR-ed, the constraints of a group AND-ed; an agent no group accepts is never
//! offered to that framework in that role.
//!
//! This module converts the wire form (validating it, compiling regular expressions under a size
//! limit, as Mesos bounds RE2) and evaluates it against an [`AgentDescription`]. It does not
//! know about offers or the allocator, which calls [`OfferConstraints::allows`] while it picks
//! frameworks. Agents carry no region or zone yet, so those pseudo-attributes never exist.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_proto::scheduler as sched;
use agora_proto::scheduler::attribute_constraint::{predicate, selector};
use agora_proto::v1;

/// Compiled size bound of one regular expression: generous enough for real patterns, small
/// enough that a framework cannot make every allocation cycle slow (Mesos caps RE2 at 4 KB).
const REGEX_SIZE_LIMIT: usize = 64 * 1024;

/// What constraints are evaluated against: the agent's hostname and its attributes, where a
/// TEXT attribute has its text and any other kind has none (text predicates match those).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentDescription {
    /// The `HOSTNAME` pseudo-attribute.
    pub hostname: String,
    /// Attribute name → `Some(text)` for TEXT attributes, `None` for other kinds. With repeated
    /// names the first one counts.
    pub attributes: BTreeMap<String, Option<String>>,
}

impl AgentDescription {
    /// From the agent's hostname and wire attributes.
    pub fn new(hostname: &str, attributes: &[v1::Attribute]) -> AgentDescription {
        let mut out = BTreeMap::new();
        for attribute in attributes {
            let text = (attribute.r#type() == v1::value::Type::Text)
                .then(|| attribute.text.as_ref().map(|t| t.value.clone()).unwrap_or_default());
            out.entry(attribute.name.clone()).or_insert(text);
        }
        AgentDescription { hostname: hostname.to_string(), attributes: out }
    }

    /// The selected value: `None` when it does not exist, `Some(None)` for a non-TEXT
    /// attribute, `Some(Some(text))` for text.
    fn select(&self, selector: &Selector) -> Option<Option<&str>> {
        match selector {
            Selector::Hostname => Some(Some(&self.hostname)),
            Selector::Region | Selector::Zone => None,
            Selector::Attribute(name) => self.attributes.get(name).map(|t| t.as_deref()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    Hostname,
    Region,
    Zone,
    Attribute(String),
}

/// A compiled regular expression, compared by its (anchored) pattern.
#[derive(Debug, Clone)]
struct Pattern(regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Predicate {
    Exists,
    NotExists,
    TextEquals(String),
    TextNotEquals(String),
    TextMatches(Pattern),
    TextNotMatches(Pattern),
}

#[derive(Debug, Clone, PartialEq)]
struct Constraint {
    selector: Selector,
    predicate: Predicate,
}

impl Constraint {
    /// Text predicates hold for attributes that are not TEXT; the positive ones need the
    /// attribute to exist, the negative ones hold when it does not.
    fn holds(&self, agent: &AgentDescription) -> bool {
        let value = agent.select(&self.selector);
        match (&self.predicate, value) {
            (Predicate::Exists, v) => v.is_some(),
            (Predicate::NotExists, v) => v.is_none(),
            (Predicate::TextEquals(_) | Predicate::TextMatches(_), None) => false,
            (Predicate::TextNotEquals(_) | Predicate::TextNotMatches(_), None) => true,
            (_, Some(None)) => true,
            (Predicate::TextEquals(want), Some(Some(text))) => text == want,
            (Predicate::TextNotEquals(want), Some(Some(text))) => text != want,
            (Predicate::TextMatches(p), Some(Some(text))) => full_match(&p.0, text),
            (Predicate::TextNotMatches(p), Some(Some(text))) => !full_match(&p.0, text),
        }
    }
}

/// RE2's FullMatch: the whole text, not a substring (patterns are compiled anchored).
fn full_match(regex: &regex::Regex, text: &str) -> bool {
    regex.is_match(text)
}

/// A framework's offer constraints by role; cheap to clone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OfferConstraints(Arc<BTreeMap<String, Vec<Vec<Constraint>>>>);

impl OfferConstraints {
    /// Validates and compiles the wire form. Every constrained role must be one of `roles`,
    /// every group non-empty, every constraint complete, every regular expression valid.
    pub fn from_proto(
        constraints: &sched::OfferConstraints,
        roles: &[String],
    ) -> Result<OfferConstraints, String> {
        let mut out = BTreeMap::new();
        for (role, role_constraints) in &constraints.role_constraints {
            if !roles.contains(role) {
                return Err(format!(
                    "Offer constraints name role '{role}', which is not one of the framework's roles"
                ));
            }
            if role_constraints.groups.is_empty() {
                return Err(format!("Offer constraints of role '{role}' have no groups"));
            }
            let mut groups = Vec::new();
            for group in &role_constraints.groups {
                if group.attribute_constraints.is_empty() {
                    return Err(format!("Offer constraints of role '{role}' have an empty group"));
                }
                let group: Result<Vec<Constraint>, String> =
                    group.attribute_constraints.iter().map(constraint).collect();
                groups.push(group.map_err(|e| format!("Offer constraint of role '{role}': {e}"))?);
            }
            out.insert(role.clone(), groups);
        }
        Ok(OfferConstraints(Arc::new(out)))
    }

    /// True when the framework has no constraints at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the framework accepts offers of `agent` in `role`: yes without constraints for
    /// the role, else when some group's constraints all hold.
    pub fn allows(&self, role: &str, agent: &AgentDescription) -> bool {
        match self.0.get(role) {
            None => true,
            Some(groups) => groups.iter().any(|g| g.iter().all(|c| c.holds(agent))),
        }
    }
}

fn constraint(c: &sched::AttributeConstraint) -> Result<Constraint, String> {
    let selector = match c.selector.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(selector::Selector::PseudoattributeType(kind)) => {
            match selector::PseudoattributeType::try_from(*kind) {
                Ok(selector::PseudoattributeType::Hostname) => Selector::Hostname,
                Ok(selector::PseudoattributeType::Region) => Selector::Region,
                Ok(selector::PseudoattributeType::Zone) => Selector::Zone,
                _ => return Err(format!("unknown pseudoattribute type {kind}")),
            }
        }
        Some(selector::Selector::AttributeName(name)) => Selector::Attribute(name.clone()),
        None => return Err("'selector' must be set".into()),
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let predicate = match c.predicate.as_ref().and_then(|p| p.predicate.as_ref()) {
        Some(predicate::Predicate::Exists(_)) => Predicate::Exists,
        Some(predicate::Predicate::NotExists(_)) => Predicate::NotExists,
        Some(predicate::Predicate::TextEquals(t)) => Predicate::TextEquals(text(&t.value)),
        Some(predicate::Predicate::TextNotEquals(t)) => Predicate::TextNotEquals(text(&t.value)),
        Some(predicate::Predicate::TextMatches(t)) => {
            Predicate::TextMatches(compile(&text(&t.value))?)
        }
        Some(predicate::Predicate::TextNotMatches(t)) => {
            Predicate::TextNotMatches(compile(&text(&t.value))?)
        }
        None => return Err("'predicate' must be set".into()),
    };
    Ok(Constraint { selector, predicate })
}

fn compile(pattern: &str) -> Result<Pattern, String> {
    // Anchored at both ends, so that alternations and lazy repetitions are tried against the
    // whole text as RE2's FullMatch does (a leftmost match that ends early would not do).
    // The pattern is checked on its own first, so that an unbalanced parenthesis cannot pair
    // with the anchoring group.
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regular expression '{pattern}': {e}"))?;
    regex::RegexBuilder::new(&format!(r"\A(?:{pattern})\z"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Pattern)
        .map_err(|e| format!("invalid regular expression '{pattern}': {e}"))
}

#[cfg(test)]
mod tests;
