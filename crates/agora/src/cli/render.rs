//! How the CLI writes things for people: aligned borderless tables, resources as
//! `cpus 2, mem 1GiB, ports [31000-32000]`, task states without their `TASK_` prefix, ages as
//! `45s`/`12m`/`3h`/`5d`, and `--json` as the pretty-printed Mesos JSON mapping.
//!
//! Everything here is a pure function of its inputs (the current time included), so the
//! output can be pinned by tests; nothing here talks to a server or a terminal.

use std::collections::BTreeMap;

use agora_proto::v1;
use comfy_table::{ContentArrangement, Table, presets};

/// A table with the given headers and rows: columns separated by two spaces, no borders, no
/// wrapping (the terminal's width is not ours to guess when the output is piped), and no
/// trailing blanks.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    table.set_header(headers.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key: value` lines with the values aligned, for one object (`agora task show`).
pub(crate) fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    pairs.iter().map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:"))).collect()
}

/// A message as the pretty-printed Mesos JSON mapping, with a final newline.
pub(crate) fn json<M: prost::Message + prost::Name>(message: &M) -> String {
    let value = agora_proto::to_json_value(message);
    let mut text = serde_json::to_string_pretty(&value).expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// The order resource names are shown in: the well-known ones first, the rest by name.
fn rank(name: &str) -> (usize, &str) {
    let known = ["cpus", "gpus", "mem", "disk", "ports"];
    (known.iter().position(|k| *k == name).unwrap_or(known.len()), name)
}

/// What one resource name adds up to across entries (reservations and roles merged: the
/// tables show quantities, `--json` shows everything).
#[derive(Default)]
struct Amount {
    scalar: f64,
    ranges: Vec<(u64, u64)>,
    items: Vec<String>,
}

/// Resources as `cpus 2, mem 1GiB, disk 10GiB, ports [31000-32000]`; `-` for none.
pub(crate) fn resources(list: &[v1::Resource]) -> String {
    let mut amounts: BTreeMap<String, Amount> = BTreeMap::new();
    for resource in list {
        let amount = amounts.entry(resource.name.clone()).or_default();
        if let Some(scalar) = &resource.scalar {
            amount.scalar += scalar.value;
        }
        if let Some(ranges) = &resource.ranges {
            amount.ranges.extend(ranges.range.iter().map(|r| (r.begin, r.end)));
        }
        if let Some(set) = &resource.set {
            amount.items.extend(set.item.iter().cloned());
        }
    }
    let mut names: Vec<&String> = amounts.keys().collect();
    names.sort_by(|a, b| rank(a).cmp(&rank(b)));
    let parts: Vec<String> = names
        .into_iter()
        .map(|name| {
            let amount = &amounts[name];
            if !amount.ranges.is_empty() {
                format!("{name} {}", ranges_text(&amount.ranges))
            } else if !amount.items.is_empty() {
                let mut items = amount.items.clone();
                items.sort();
                format!("{name} {{{}}}", items.join(","))
            } else {
                format!("{name} {}", scalar_text(name, amount.scalar))
            }
        })
        .collect();
    if parts.is_empty() { "-".to_string() } else { parts.join(", ") }
}

/// Scalars by name (quota guarantees and limits), in the same style as [`resources`].
pub(crate) fn scalars<'a>(
    map: impl IntoIterator<Item = (&'a String, &'a v1::value::Scalar)>,
) -> String {
    let mut entries: Vec<(&String, f64)> = map.into_iter().map(|(k, v)| (k, v.value)).collect();
    entries.sort_by(|a, b| rank(a.0).cmp(&rank(b.0)));
    let parts: Vec<String> = entries
        .into_iter()
        .map(|(name, value)| format!("{name} {}", scalar_text(name, value)))
        .collect();
    if parts.is_empty() { "-".to_string() } else { parts.join(", ") }
}

/// Merged, sorted ranges as `[1-2,5-9]`.
fn ranges_text(ranges: &[(u64, u64)]) -> String {
    // The core's normal form: sorted, adjacent ones merged (inverted ones are dropped).
    let valid = ranges.iter().copied().filter(|(begin, end)| begin <= end);
    let merged = agora_core::resources::Ranges::try_from_intervals(valid).unwrap_or_default();
    let parts: Vec<String> = merged.intervals().iter().map(|(b, e)| format!("{b}-{e}")).collect();
    format!("[{}]", parts.join(","))
}

/// `mem` and `disk` are megabytes in Mesos; they read better in binary units. Everything
/// else is a plain number with at most three decimals (Mesos keeps three).
fn scalar_text(name: &str, value: f64) -> String {
    if name == "mem" || name == "disk" {
        return megabytes(value);
    }
    number(value, 3)
}

fn megabytes(mb: f64) -> String {
    if mb >= 1024.0 * 1024.0 {
        format!("{}TiB", number(mb / (1024.0 * 1024.0), 1))
    } else if mb >= 1024.0 {
        format!("{}GiB", number(mb / 1024.0, 1))
    } else {
        format!("{}MiB", number(mb, 1))
    }
}

/// A number with at most `decimals` decimals and no trailing zeros.
pub(crate) fn number(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// A task state without its `TASK_` prefix (`RUNNING`).
pub(crate) fn state(state: v1::TaskState) -> String {
    let name = state.as_str_name();
    name.strip_prefix("TASK_").unwrap_or(name).to_string()
}

/// How long ago `then` (seconds since the epoch) was, at `now`: `45s`, `12m`, `3h`, `5d`;
/// `-` when unknown.
pub(crate) fn age(then: Option<f64>, now: f64) -> String {
    let Some(then) = then else { return "-".to_string() };
    let seconds = (now - then).max(0.0) as u64;
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Seconds since the epoch of a `TimeInfo`.
pub(crate) fn seconds(time: Option<&v1::TimeInfo>) -> Option<f64> {
    time.map(|t| t.nanoseconds as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(name: &str, value: f64) -> v1::Resource {
        v1::Resource {
            name: name.into(),
            scalar: Some(v1::value::Scalar { value }),
            ..Default::default()
        }
    }

    #[test]
    fn resources_read_as_quantities_in_a_fixed_order() {
        let ports = v1::Resource {
            name: "ports".into(),
            r#type: v1::value::Type::Ranges as i32,
            ranges: Some(v1::value::Ranges {
                range: vec![
                    v1::value::Range { begin: 31005, end: 32000 },
                    v1::value::Range { begin: 31000, end: 31004 },
                ],
            }),
            ..Default::default()
        };
        let list = [
            scalar("mem", 1024.0),
            ports,
            scalar("cpus", 1.5),
            scalar("cpus", 0.5),
            scalar("disk", 512.0),
            scalar("zeta", 0.1234),
        ];
        assert_eq!(
            resources(&list),
            "cpus 2, mem 1GiB, disk 512MiB, ports [31000-32000], zeta 0.123"
        );
        assert_eq!(resources(&[]), "-");
        assert_eq!(megabytes(1536.0), "1.5GiB");
        assert_eq!(megabytes(3.0 * 1024.0 * 1024.0), "3TiB");
    }

    #[test]
    fn ages_round_down_to_one_unit() {
        assert_eq!(age(Some(100.0), 145.9), "45s");
        assert_eq!(age(Some(0.0), 750.0), "12m");
        assert_eq!(age(Some(0.0), 3.0 * 3600.0 + 5.0), "3h");
        assert_eq!(age(Some(0.0), 5.0 * 86_400.0), "5d");
        assert_eq!(age(None, 5.0), "-");
        assert_eq!(age(Some(10.0), 5.0), "0s");
    }

    #[test]
    fn tables_align_columns_without_borders_or_trailing_blanks() {
        let out = table(
            &["ID", "NAME"],
            vec![vec!["a".into(), "first".into()], vec!["longer-id".into(), "x".into()]],
        );
        assert_eq!(out, "ID         NAME\na          first\nlonger-id  x\n");
    }

    #[test]
    fn fields_align_their_values() {
        let out = fields(&[("id", "t1".into()), ("state", "RUNNING".into())]);
        assert_eq!(out, "id:    t1\nstate: RUNNING\n");
    }
}
