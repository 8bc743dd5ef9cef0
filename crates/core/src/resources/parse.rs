//! The `--resources` text syntax: `name(role):value;name:value;...`.
//!
//! Values are scalars (`24`, `1.5`), inclusive range lists (`[31000-32000,33000-34000]`) or
//! sets (`{a,b,c}`). Every error names the offending `;`-separated token and says why it is
//! wrong, because an operator reads these messages when an agent refuses to start. The range
//! and value helpers are shared with the attribute parser. The JSON array form of the flag is
//! not handled here: it arrives as wire-format resources and is converted at the proto boundary.

use std::collections::BTreeMap;

use super::{Ranges, Resource, Resources, Scalar, Set, UNRESERVED, Value, ValueKind};

/// Why a `--resources` string was rejected; each variant names the token at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A token is malformed as a whole, or its value is.
    #[error("invalid resource '{token}': {problem}")]
    Resource {
        /// The `;`-separated token, trimmed.
        token: String,
        /// What is wrong with it.
        problem: ResourceProblem,
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

/// What is wrong with a resource token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceProblem {
    /// No `:` separates the name from the value.
    #[error("missing ':' between name and value")]
    MissingColon,
    /// Nothing precedes the `:` (or the `(`).
    #[error("empty name")]
    EmptyName,
    /// The name holds a character that the syntax reserves.
    #[error("name '{name}' contains {ch:?}")]
    BadName {
        /// The name as written.
        name: String,
        /// The first forbidden character.
        ch: char,
    },
    /// The role part is not exactly one `(role)` at the end of the name.
    #[error("unbalanced parentheses in '{0}'")]
    UnbalancedParens(String),
    /// The role between the parentheses is not a valid role name.
    #[error("invalid role '{role}': {reason}")]
    BadRole {
        /// The role as written.
        role: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// The value is malformed.
    #[error(transparent)]
    Value(#[from] ValueProblem),
    /// The name appeared earlier in the string with another value type.
    #[error("'{name}' was given as {earlier} before and as {now} here")]
    TypeConflict {
        /// The resource name.
        name: String,
        /// The kind of the earlier occurrence.
        earlier: ValueKind,
        /// The kind of this occurrence.
        now: ValueKind,
    },
}

/// What is wrong with a value text (shared with attributes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueProblem {
    /// Nothing follows the `:`.
    #[error("empty value")]
    Empty,
    /// The value is neither a number, nor `[...]`, nor `{...}`.
    #[error("'{0}' is not a number, a range list or a set")]
    NotAValue(String),
    /// NaN or an infinity.
    #[error("'{0}' is not a finite number")]
    NotFinite(String),
    /// Resources cannot be negative.
    #[error("'{0}' is negative")]
    Negative(String),
    /// Beyond [`Scalar::MAX_WHOLE`].
    #[error("'{0}' is too large (at most 1e15)")]
    TooLarge(String),
    /// A range list without its closing `]` or with stray brackets.
    #[error("unbalanced brackets in '{0}'")]
    UnbalancedBrackets(String),
    /// A set without its closing `}` or with stray braces.
    #[error("unbalanced braces in '{0}'")]
    UnbalancedBraces(String),
    /// `{a,,b}`: a set item is empty.
    #[error("empty item in set '{0}'")]
    EmptySetItem(String),
}

/// What is wrong with one interval of a range list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeProblem {
    /// `[1-2,]`: nothing between two commas or after the last one.
    #[error("empty range")]
    Empty,
    /// A bound is not a `u64`.
    #[error("'{0}' is not a non-negative integer")]
    NotAnInteger(String),
    /// `32000-31000`.
    #[error("begin is greater than end")]
    Inverted,
}

/// A value-text failure before the caller attaches its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TextValueError {
    /// The value as a whole.
    Value(ValueProblem),
    /// One interval, with its text.
    Range { range: String, problem: RangeProblem },
}

/// Parses a whole `--resources` string.
pub(super) fn parse_resources(text: &str) -> Result<Resources, ParseError> {
    let mut out = Resources::new();
    // The kind of each name as first written, so that a later token of another kind is
    // reported even when the earlier value was zero and therefore dropped.
    let mut kinds: BTreeMap<String, ValueKind> = BTreeMap::new();
    // Empty tokens come from a trailing or doubled `;`, which operators write by accident and
    // which carry no meaning, so they are skipped.
    for token in text.split(';').map(str::trim).filter(|t| !t.is_empty()) {
        let resource = parse_token(token)?;
        let kind = resource.value.kind();
        match kinds.get(&resource.name) {
            Some(&earlier) if earlier != kind => {
                return Err(ParseError::Resource {
                    token: token.to_string(),
                    problem: ResourceProblem::TypeConflict {
                        name: resource.name,
                        earlier,
                        now: kind,
                    },
                });
            }
            Some(_) => {}
            None => {
                kinds.insert(resource.name.clone(), kind);
            }
        }
        // Repeated names with the same kind add up, like two `cpus(ads)` lines in a config.
        out.insert(&resource);
    }
    Ok(out)
}

/// Parses one `name(role):value` token (already trimmed and non-empty).
fn parse_token(token: &str) -> Result<Resource, ParseError> {
    let fail =
        |problem: ResourceProblem| ParseError::Resource { token: token.to_string(), problem };
    let (head, value) = token.split_once(':').ok_or_else(|| fail(ResourceProblem::MissingColon))?;
    let (name, role) = split_role(head.trim()).map_err(fail)?;
    let value = parse_value(value.trim()).map_err(|err| match err {
        TextValueError::Value(problem) => fail(problem.into()),
        TextValueError::Range { range, problem } => {
            ParseError::Range { token: token.to_string(), range, problem }
        }
    })?;
    Ok(Resource::new(name, role, value))
}

/// Splits `name` or `name(role)` and validates both parts.
fn split_role(head: &str) -> Result<(&str, &str), ResourceProblem> {
    let (name, role) = match head.find('(') {
        None if head.contains(')') => return Err(ResourceProblem::UnbalancedParens(head.into())),
        None => (head, UNRESERVED),
        Some(open) => {
            let rest = &head[open + 1..];
            let role = rest
                .strip_suffix(')')
                .filter(|role| !role.contains('(') && !role.contains(')'))
                .ok_or_else(|| ResourceProblem::UnbalancedParens(head.into()))?;
            (head[..open].trim_end(), role.trim())
        }
    };
    check_name(name)?;
    check_role(role)?;
    Ok((name, role))
}

/// Resource names are non-empty and avoid the characters the syntax uses.
fn check_name(name: &str) -> Result<(), ResourceProblem> {
    if name.is_empty() {
        return Err(ResourceProblem::EmptyName);
    }
    match name.chars().find(|&c| c.is_whitespace() || c.is_control() || "():;".contains(c)) {
        Some(ch) => Err(ResourceProblem::BadName { name: name.into(), ch }),
        None => Ok(()),
    }
}

/// Roles follow the Mesos rules that matter for the text syntax: `*` alone means unreserved,
/// and a role may not be empty, `.`, `..`, start with `-`, or hold whitespace or syntax
/// characters.
fn check_role(role: &str) -> Result<(), ResourceProblem> {
    if role == UNRESERVED {
        return Ok(());
    }
    match role_problem(role) {
        Some(reason) => Err(ResourceProblem::BadRole { role: role.into(), reason }),
        None => Ok(()),
    }
}

/// Why `role` (other than `*`) is not a valid role name, if it is not; shared with the
/// validation of reservation stacks.
pub(super) fn role_problem(role: &str) -> Option<&'static str> {
    if role.is_empty() {
        Some("empty role")
    } else if role == "." || role == ".." {
        Some("'.' and '..' are not roles")
    } else if role.starts_with('-') {
        Some("a role cannot start with '-'")
    } else if role.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("a role cannot contain whitespace")
    } else if role.chars().any(|c| "():;*".contains(c)) {
        Some("a role cannot contain '(', ')', ':', ';' or '*'")
    } else {
        None
    }
}

/// Parses a trimmed resource value: `[...]`, `{...}` or a non-negative scalar.
fn parse_value(text: &str) -> Result<Value, TextValueError> {
    if text.is_empty() {
        return Err(TextValueError::Value(ValueProblem::Empty));
    }
    if text.starts_with('[') || text.ends_with(']') {
        return parse_ranges_text(text).map(Value::Ranges);
    }
    if text.starts_with('{') || text.ends_with('}') {
        return parse_set_text(text).map(Value::Set).map_err(TextValueError::Value);
    }
    parse_scalar_text(text).map(Value::Scalar).map_err(TextValueError::Value)
}

/// Parses a non-negative, finite scalar and rounds it to thousandths.
fn parse_scalar_text(text: &str) -> Result<Scalar, ValueProblem> {
    let number: f64 = text.parse().map_err(|_| ValueProblem::NotAValue(text.into()))?;
    if !number.is_finite() {
        return Err(ValueProblem::NotFinite(text.into()));
    }
    if number < 0.0 {
        return Err(ValueProblem::Negative(text.into()));
    }
    if number > Scalar::MAX_WHOLE {
        return Err(ValueProblem::TooLarge(text.into()));
    }
    Ok(Scalar::from_f64(number))
}

/// Parses `[b-e,b-e,...]` (a lone `n` means `n-n`); `[]` is the empty list.
pub(crate) fn parse_ranges_text(text: &str) -> Result<Ranges, TextValueError> {
    let unbalanced = || TextValueError::Value(ValueProblem::UnbalancedBrackets(text.into()));
    let inner = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).ok_or_else(unbalanced)?;
    if inner.contains(['[', ']']) {
        return Err(unbalanced());
    }
    if inner.trim().is_empty() {
        return Ok(Ranges::new());
    }
    let mut intervals = Vec::new();
    for item in inner.split(',').map(str::trim) {
        let fail = |problem| TextValueError::Range { range: item.into(), problem };
        if item.is_empty() {
            return Err(fail(RangeProblem::Empty));
        }
        let (begin, end) = item.split_once('-').unwrap_or((item, item));
        let bound = |s: &str| {
            let s = s.trim();
            // `u64::from_str` would accept a leading `+`; the syntax has only digits.
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RangeProblem::NotAnInteger(s.into()));
            }
            s.parse::<u64>().map_err(|_| RangeProblem::NotAnInteger(s.into()))
        };
        let begin = bound(begin).map_err(fail)?;
        let end = bound(end).map_err(fail)?;
        if begin > end {
            return Err(fail(RangeProblem::Inverted));
        }
        intervals.push((begin, end));
    }
    Ok(Ranges::try_from_intervals(intervals).expect("every interval was checked to be ordered"))
}

/// Parses `{a,b,c}`; items are trimmed, `{}` is the empty set.
fn parse_set_text(text: &str) -> Result<Set, ValueProblem> {
    let unbalanced = || ValueProblem::UnbalancedBraces(text.into());
    let inner = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')).ok_or_else(unbalanced)?;
    if inner.contains(['{', '}']) {
        return Err(unbalanced());
    }
    if inner.trim().is_empty() {
        return Ok(Set::new());
    }
    let mut items = Set::new();
    for item in inner.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(ValueProblem::EmptySetItem(text.into()));
        }
        items.insert(item.to_string());
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `input` and compares the error message with `expected`.
    fn check_err(input: &str, expected: &str) {
        match Resources::parse(input) {
            Ok(parsed) => panic!("{input:?} parsed as {parsed} but should fail with {expected:?}"),
            Err(err) => assert_eq!(err.to_string(), expected, "input {input:?}"),
        }
    }

    #[test]
    fn error_messages_name_the_token_and_the_reason() {
        let cases = [
            (
                "cpus:abc",
                "invalid resource 'cpus:abc': 'abc' is not a number, a range list or a set",
            ),
            (
                "cpus:1;ports:[32000-31000]",
                "invalid range '32000-31000' in 'ports:[32000-31000]': begin is greater than end",
            ),
            ("cpus:-1", "invalid resource 'cpus:-1': '-1' is negative"),
            ("cpus:NaN", "invalid resource 'cpus:NaN': 'NaN' is not a finite number"),
            ("mem:inf", "invalid resource 'mem:inf': 'inf' is not a finite number"),
            ("mem:1e16", "invalid resource 'mem:1e16': '1e16' is too large (at most 1e15)"),
            ("cpus4", "invalid resource 'cpus4': missing ':' between name and value"),
            (" :4", "invalid resource ':4': empty name"),
            ("(ads):4", "invalid resource '(ads):4': empty name"),
            ("cp us:4", "invalid resource 'cp us:4': name 'cp us' contains ' '"),
            ("cpus:", "invalid resource 'cpus:': empty value"),
            ("cpus(ads:4", "invalid resource 'cpus(ads:4': unbalanced parentheses in 'cpus(ads'"),
            ("cpusads):4", "invalid resource 'cpusads):4': unbalanced parentheses in 'cpusads)'"),
            (
                "cpus(a)(b):4",
                "invalid resource 'cpus(a)(b):4': unbalanced parentheses in 'cpus(a)(b)'",
            ),
            ("cpus():4", "invalid resource 'cpus():4': invalid role '': empty role"),
            (
                "cpus(-x):4",
                "invalid resource 'cpus(-x):4': invalid role '-x': a role cannot start with '-'",
            ),
            (
                "cpus(..):4",
                "invalid resource 'cpus(..):4': invalid role '..': '.' and '..' are not roles",
            ),
            ("ports:[1-2", "invalid resource 'ports:[1-2': unbalanced brackets in '[1-2'"),
            ("ports:1-2]", "invalid resource 'ports:1-2]': unbalanced brackets in '1-2]'"),
            ("ports:[[1-2]]", "invalid resource 'ports:[[1-2]]': unbalanced brackets in '[[1-2]]'"),
            ("ports:[1-2,]", "invalid range '' in 'ports:[1-2,]': empty range"),
            (
                "ports:[a-2]",
                "invalid range 'a-2' in 'ports:[a-2]': 'a' is not a non-negative integer",
            ),
            (
                "ports:[+1-2]",
                "invalid range '+1-2' in 'ports:[+1-2]': '+1' is not a non-negative integer",
            ),
            (
                "ports:[1-2-3]",
                "invalid range '1-2-3' in 'ports:[1-2-3]': '2-3' is not a non-negative integer",
            ),
            ("disks:{a,b", "invalid resource 'disks:{a,b': unbalanced braces in '{a,b'"),
            ("disks:{a,,b}", "invalid resource 'disks:{a,,b}': empty item in set '{a,,b}'"),
            (
                "cpus:1;cpus(ads):[1-2]",
                "invalid resource 'cpus(ads):[1-2]': 'cpus' was given as a scalar before and as ranges here",
            ),
            (
                "disks:{a};disks:0",
                "invalid resource 'disks:0': 'disks' was given as a set before and as a scalar here",
            ),
        ];
        for (input, expected) in cases {
            check_err(input, expected);
        }
    }

    #[test]
    fn valid_strings_parse_into_normalized_resources() {
        let cases = [
            ("", ""),
            ("  ;  ", ""),
            ("cpus:4;mem:1024;ports:[31000-32000]", "cpus:4;mem:1024;ports:[31000-32000]"),
            (" mem : 1024 ; cpus:4 ;", "cpus:4;mem:1024"),
            ("cpus(ads):8;cpus:2", "cpus:2;cpus(ads):8"),
            ("cpus(*):2;cpus:1", "cpus:3"),
            ("cpus:0.1;cpus:0.2", "cpus:0.3"),
            ("cpus:1.23456", "cpus:1.235"),
            ("cpus:0;mem:0.0004", ""),
            ("ports:[33000-34000, 31000-32000,32001-32002]", "ports:[31000-32002,33000-34000]"),
            ("ports:[5];ports:[6-7]", "ports:[5-7]"),
            ("ports:[]", ""),
            ("disks:{ sdb , sda,sda}", "disks:{sda,sdb}"),
            ("gpus(ml/team):1", "gpus(ml/team):1"),
        ];
        for (input, displayed) in cases {
            let parsed = Resources::parse(input).expect("case is valid");
            assert_eq!(parsed.to_string(), displayed, "input {input:?}");
            let again = Resources::parse(&parsed.to_string()).expect("display output parses");
            assert_eq!(again, parsed, "round trip of {input:?}");
        }
    }

    #[test]
    fn errors_carry_structured_context() {
        let err = Resources::parse("cpus:1; ports:[9-3] ").expect_err("inverted range");
        assert_eq!(
            err,
            ParseError::Range {
                token: "ports:[9-3]".into(),
                range: "9-3".into(),
                problem: RangeProblem::Inverted,
            }
        );
    }
}
