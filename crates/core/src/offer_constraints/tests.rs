//! Offer constraint tests: validation of the wire form and the truth table of each predicate
//! against TEXT, non-TEXT and missing attributes.

use agora_proto::scheduler as sched;
use agora_proto::scheduler::attribute_constraint::{Predicate, Selector, predicate, selector};

use super::*;

fn agent() -> AgentDescription {
    let mut text = v1::Attribute { name: "rack".into(), ..Default::default() };
    text.set_type(v1::value::Type::Text);
    text.text = Some(v1::value::Text { value: "r1".into() });
    let mut level = v1::Attribute { name: "level".into(), ..Default::default() };
    level.set_type(v1::value::Type::Scalar);
    level.scalar = Some(v1::value::Scalar { value: 3.0 });
    AgentDescription::new("node-7", &[text, level])
}

fn by_name(name: &str) -> Selector {
    Selector { selector: Some(selector::Selector::AttributeName(name.into())) }
}

fn hostname() -> Selector {
    Selector {
        selector: Some(selector::Selector::PseudoattributeType(
            selector::PseudoattributeType::Hostname as i32,
        )),
    }
}

fn c(selector: Selector, predicate: predicate::Predicate) -> sched::AttributeConstraint {
    sched::AttributeConstraint {
        selector: Some(selector),
        predicate: Some(Predicate { predicate: Some(predicate) }),
    }
}

fn constraints(
    role: &str,
    groups: Vec<Vec<sched::AttributeConstraint>>,
) -> sched::OfferConstraints {
    let mut out = sched::OfferConstraints::default();
    out.role_constraints.insert(
        role.into(),
        sched::offer_constraints::RoleConstraints {
            groups: groups
                .into_iter()
                .map(|g| sched::offer_constraints::role_constraints::Group {
                    attribute_constraints: g,
                })
                .collect(),
        },
    );
    out
}

fn allows(constraint: sched::AttributeConstraint) -> bool {
    let wire = constraints("r", vec![vec![constraint]]);
    let parsed = OfferConstraints::from_proto(&wire, &["r".into()]).expect("valid constraints");
    parsed.allows("r", &agent())
}

fn text_equals(v: &str) -> predicate::Predicate {
    predicate::Predicate::TextEquals(predicate::TextEquals { value: Some(v.into()) })
}

#[test]
fn predicates_against_text_non_text_and_missing_attributes() {
    use predicate::Predicate as P;
    let ne = |v: &str| P::TextNotEquals(predicate::TextNotEquals { value: Some(v.into()) });
    let m = |v: &str| P::TextMatches(predicate::TextMatches { value: Some(v.into()) });
    let nm = |v: &str| P::TextNotMatches(predicate::TextNotMatches { value: Some(v.into()) });
    let cases = [
        (by_name("rack"), P::Exists(predicate::Exists {}), true),
        (by_name("nope"), P::Exists(predicate::Exists {}), false),
        (by_name("nope"), P::NotExists(predicate::NotExists {}), true),
        (by_name("rack"), text_equals("r1"), true),
        (by_name("rack"), text_equals("r2"), false),
        (by_name("rack"), ne("r2"), true),
        (by_name("rack"), m("r[0-9]"), true),
        // A full match, not a substring, as RE2's FullMatch.
        (by_name("rack"), m("r"), false),
        (by_name("rack"), nm("x.*"), true),
        // The whole text must match, even where the leftmost match is shorter.
        (by_name("rack"), m("r|r1"), true),
        (by_name("rack"), nm("r|r1"), false),
        (by_name("rack"), m("r.*?"), true),
        // Text predicates pass attributes that are not TEXT.
        (by_name("level"), text_equals("anything"), true),
        (by_name("level"), nm(".*"), true),
        (by_name("nope"), text_equals("r1"), false),
        (by_name("nope"), ne("r1"), true),
        (hostname(), m("node-[0-9]+"), true),
        (hostname(), text_equals("node-8"), false),
    ];
    for (selector, predicate, expected) in cases {
        let text = format!("{selector:?} {predicate:?}");
        assert_eq!(allows(c(selector, predicate)), expected, "{text}");
    }
}

#[test]
fn groups_are_or_ed_and_constraints_and_ed() {
    let rack = |v: &str| c(by_name("rack"), text_equals(v));
    let roles = ["r".to_string(), "other".to_string()];
    let both = constraints("r", vec![vec![rack("r1"), rack("r2")]]);
    assert!(!OfferConstraints::from_proto(&both, &roles).expect("valid").allows("r", &agent()));
    let either = constraints("r", vec![vec![rack("r2")], vec![rack("r1")]]);
    let parsed = OfferConstraints::from_proto(&either, &roles).expect("valid");
    assert!(parsed.allows("r", &agent()));
    assert!(parsed.allows("other", &agent()), "roles without constraints take every agent");
}

#[test]
fn invalid_constraints_are_refused_with_a_reason() {
    use predicate::Predicate as P;
    let roles = ["r".to_string()];
    let bad_regex =
        c(by_name("rack"), P::TextMatches(predicate::TextMatches { value: Some("(".into()) }));
    let no_predicate =
        sched::AttributeConstraint { selector: Some(by_name("rack")), predicate: None };
    let exists = c(by_name("a"), P::Exists(predicate::Exists {}));
    let unbalanced =
        c(by_name("rack"), P::TextMatches(predicate::TextMatches { value: Some("a)|(b".into()) }));
    let cases = [
        (constraints("r", vec![vec![unbalanced]]), "invalid regular expression"),
        (constraints("x", vec![vec![exists]]), "not one of"),
        (constraints("r", vec![]), "no groups"),
        (constraints("r", vec![vec![]]), "empty group"),
        (constraints("r", vec![vec![bad_regex]]), "invalid regular expression"),
        (constraints("r", vec![vec![no_predicate]]), "'predicate' must be set"),
    ];
    for (constraints, expected) in cases {
        let err = OfferConstraints::from_proto(&constraints, &roles).expect_err(expected);
        assert!(err.contains(expected), "{expected}: {err}");
    }
}
