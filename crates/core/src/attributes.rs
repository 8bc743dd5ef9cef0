//! Agent attributes: free-form labels such as `rack:r1;zone:a;level:3` that frameworks use for
//! placement constraints.
//!
//! Unlike resources, attributes are never added up or consumed: [`Attributes`] keeps the
//! operator's order and allows repeated names (discouraged, but accepted by Mesos). This module
//! owns the `--attributes` text syntax and its error messages; it does not evaluate placement
//! constraints (frameworks do) and does not convert to or from wire types.

use std::fmt;
use std::str::FromStr;

use crate::resources::{
    RangeProblem, Ranges, Scalar, TextValueError, ValueProblem, parse_ranges_text,
};

/// The value of an attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttributeValue {
    /// A number (`level:3`, `weight:-0.5`).
    Scalar(Scalar),
    /// A range list (`ports:[1-2]`).
    Ranges(Ranges),
    /// Any other text (`rack:r1`).
    Text(String),
}

impl fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeValue::Scalar(s) => s.fmt(f),
            AttributeValue::Ranges(r) => r.fmt(f),
            AttributeValue::Text(t) => f.write_str(t),
        }
    }
}

/// One `name:value` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// The attribute name.
    pub name: String,
    /// Its value.
    pub value: AttributeValue,
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.value)
    }
}

/// Why an `--attributes` string was rejected; each variant names the token at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeParseError {
    /// A token is malformed as a whole, or its value is.
    #[error("invalid attribute '{token}': {problem}")]
    Attribute {
        /// The `;`-separated token, trimmed.
        token: String,
        /// What is wrong with it.
        problem: AttributeProblem,
    },
    /// One interval of a range list is malformed.
    #[error("invalid range '{range}' in '{token}': {problem}")]
    Range {
        /// The `;`-separated token, trimmed.
        token: String,
        /// The offending interval text, trimmed.
        range: String,
        /// What is wrong with it.
        problem: RangeProblem,
    },
}

/// What is wrong with an attribute token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeProblem {
    /// No `:` separates the name from the value.
    #[error("missing ':' between name and value")]
    MissingColon,
    /// Nothing precedes the `:`.
    #[error("empty name")]
    EmptyName,
    /// The name holds whitespace or a control character, which no constraint syntax can quote.
    #[error("name '{name}' contains {ch:?}")]
    BadName {
        /// The name as written.
        name: String,
        /// The first forbidden character.
        ch: char,
    },
    /// The value is malformed.
    #[error(transparent)]
    Value(#[from] ValueProblem),
}

/// Attributes in the operator's order; repeated names are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Attributes(pub Vec<Attribute>);

impl Attributes {
    /// No attributes.
    pub const fn new() -> Attributes {
        Attributes(Vec::new())
    }

    /// Parses `name:value;name:value;...`: a number becomes a scalar, a value starting with `[`
    /// a range list, anything else text. Empty tokens (a trailing `;`) are skipped.
    pub fn parse(text: &str) -> Result<Attributes, AttributeParseError> {
        text.split(';')
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .map(parse_token)
            .collect::<Result<Vec<_>, _>>()
            .map(Attributes)
    }

    /// The attributes in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Attribute> {
        self.0.iter()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first attribute called `name`, since constraints conventionally use the first.
    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.0.iter().find(|a| a.name == name).map(|a| &a.value)
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = &'a Attribute;
    type IntoIter = std::slice::Iter<'a, Attribute>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Display for Attributes {
    /// Prints the text syntax that [`Attributes::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, attribute) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            attribute.fmt(f)?;
        }
        Ok(())
    }
}

impl FromStr for Attributes {
    type Err = AttributeParseError;
    fn from_str(text: &str) -> Result<Attributes, AttributeParseError> {
        Attributes::parse(text)
    }
}

/// Parses one trimmed, non-empty `name:value` token.
fn parse_token(token: &str) -> Result<Attribute, AttributeParseError> {
    let fail =
        |problem: AttributeProblem| AttributeParseError::Attribute { token: token.into(), problem };
    let (name, value) =
        token.split_once(':').ok_or_else(|| fail(AttributeProblem::MissingColon))?;
    let (name, value) = (name.trim(), value.trim());
    if name.is_empty() {
        return Err(fail(AttributeProblem::EmptyName));
    }
    if let Some(ch) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(fail(AttributeProblem::BadName { name: name.into(), ch }));
    }
    if value.is_empty() {
        return Err(fail(ValueProblem::Empty.into()));
    }
    let value = if value.starts_with('[') {
        let ranges = parse_ranges_text(value).map_err(|err| match err {
            TextValueError::Value(problem) => fail(problem.into()),
            TextValueError::Range { range, problem } => {
                AttributeParseError::Range { token: token.into(), range, problem }
            }
        })?;
        AttributeValue::Ranges(ranges)
    } else {
        match value.parse::<f64>() {
            // Only finite numbers are scalars: `inf` or `nan` as a zone name stays text.
            Ok(number) if number.is_finite() => {
                if number.abs() > Scalar::MAX_WHOLE {
                    return Err(fail(ValueProblem::TooLarge(value.into()).into()));
                }
                AttributeValue::Scalar(Scalar::from_f64(number))
            }
            _ => AttributeValue::Text(value.into()),
        }
    };
    Ok(Attribute { name: name.into(), value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> AttributeValue {
        AttributeValue::Text(s.into())
    }

    #[test]
    fn values_are_typed_by_their_shape() {
        let parsed =
            Attributes::parse(" rack:r1; zone:a ;level:3;weight:-0.5;ports:[1-2, 5];zone:b;")
                .expect("valid attributes");
        let expected = [
            ("rack", text("r1")),
            ("zone", text("a")),
            ("level", AttributeValue::Scalar(Scalar::from_int(3))),
            ("weight", AttributeValue::Scalar(Scalar::from_milli(-500))),
            (
                "ports",
                AttributeValue::Ranges(Ranges::try_from_intervals([(1, 2), (5, 5)]).expect("ok")),
            ),
            ("zone", text("b")),
        ];
        let got: Vec<_> = parsed.iter().map(|a| (a.name.as_str(), a.value.clone())).collect();
        assert_eq!(got, expected);
        assert_eq!(parsed.get("zone"), Some(&text("a")));
        assert_eq!(parsed.to_string(), "rack:r1;zone:a;level:3;weight:-0.5;ports:[1-2,5-5];zone:b");
    }

    #[test]
    fn display_then_parse_is_identity() {
        let cases =
            ["", "rack:r1", "a:1.25;b:[3-4,9-10];c:x-y;c:inf;os:ubuntu 24.04", "url:http://x"];
        for case in cases {
            let parsed = Attributes::parse(case).expect("valid attributes");
            assert_eq!(parsed.to_string(), case);
            assert_eq!(Attributes::parse(&parsed.to_string()).expect("round trip"), parsed);
        }
        assert_eq!(Attributes::parse("c:inf").expect("text").get("c"), Some(&text("inf")));
        assert_eq!(
            Attributes::parse("url:http://x").expect("text").get("url"),
            Some(&text("http://x"))
        );
    }

    #[test]
    fn error_messages_name_the_token_and_the_reason() {
        let cases = [
            ("rack", "invalid attribute 'rack': missing ':' between name and value"),
            ("rack:r1; :x", "invalid attribute ':x': empty name"),
            ("my rack:r1", "invalid attribute 'my rack:r1': name 'my rack' contains ' '"),
            ("rack:", "invalid attribute 'rack:': empty value"),
            ("ports:[1-2", "invalid attribute 'ports:[1-2': unbalanced brackets in '[1-2'"),
            ("ports:[2-1]", "invalid range '2-1' in 'ports:[2-1]': begin is greater than end"),
            ("ports:[x]", "invalid range 'x' in 'ports:[x]': 'x' is not a non-negative integer"),
            ("big:1e300", "invalid attribute 'big:1e300': '1e300' is too large (at most 1e15)"),
        ];
        for (input, expected) in cases {
            let err = Attributes::parse(input).expect_err(input);
            assert_eq!(err.to_string(), expected, "input {input:?}");
        }
    }
}
