//! The Kafka-on-Mesos CLI verbs (`broker ...`, `topic ...`): each one POSTs its parameters,
//! with the REST API's camelCase names, to `<api>/api/<group>/<verb>` and prints the answer.
//!
//! The API URL comes from `--api`, `KM_API`, or `api=` in `kafka-mesos.properties` in the
//! working directory. Errors from the API (400 with a message) are printed as they are and make
//! the command fail; nothing here knows the broker model beyond how to show it.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde_json::Value;

/// `key=value` lines of a Kafka-on-Mesos properties file; `#` starts a comment.
pub fn read_properties(path: &std::path::Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect())
}

/// The API URL: the flag (or `KM_API`, which clap folds into it), else the properties file.
pub fn api_url(flag: Option<String>) -> anyhow::Result<String> {
    if let Some(api) = flag {
        return Ok(api);
    }
    let file = std::path::Path::new("kafka-mesos.properties");
    if file.exists()
        && let Some(api) = read_properties(file)?.get("api")
    {
        return Ok(api.clone());
    }
    bail!("no API URL: pass --api, set KM_API, or put api=... in kafka-mesos.properties")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// POSTs `params` as a form to `<api>/api/<path>` and returns the JSON answer.
pub async fn call(api: &str, path: &str, params: &[(&str, String)]) -> anyhow::Result<Value> {
    let body = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let url = format!("{}/api/{path}", api.trim_end_matches('/'));
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("http client")?
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach the scheduler at {url}"))?;
    let status = response.status();
    let text = response.text().await.context("reading the answer")?;
    if !status.is_success() {
        bail!("{text}");
    }
    serde_json::from_str(&text).with_context(|| format!("the scheduler answered {text:?}"))
}

/// A broker as `broker list` prints it.
pub fn format_broker(b: &Value) -> String {
    let s = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    let mut out =
        format!("id: {}\nactive: {}\nstate: {}", s(&b["id"]), b["active"], s(&b["state"]));
    if b["needsRestart"] == true {
        out.push_str(" (modified, needs restart)");
    }
    let port = if b["port"].is_null() { "auto".to_string() } else { s(&b["port"]) };
    out.push_str(&format!(
        "\nresources: cpus:{:.2}, mem:{}, heap:{}, port:{port}",
        b["cpus"].as_f64().unwrap_or_default(),
        b["mem"],
        b["heap"]
    ));
    if let Some(addr) = b["bindAddress"].as_str() {
        out.push_str(&format!("\nbind-address: {addr}"));
    }
    for (key, name) in [("options", "options"), ("constraints", "constraints")] {
        if let Some(v) = b[key].as_str().filter(|v| !v.is_empty()) {
            out.push_str(&format!("\n{name}: {v}"));
        }
    }
    let f = &b["failover"];
    out.push_str(&format!("\nfailover: delay:{}, max-delay:{}", s(&f["delay"]), s(&f["maxDelay"])));
    if let Some(tries) = f["maxTries"].as_u64() {
        out.push_str(&format!(", max-tries:{tries}"));
    }
    if f["failures"].as_u64().unwrap_or(0) > 0 {
        out.push_str(&format!(", failures:{}", f["failures"]));
    }
    if let Some(error) = f["lastError"].as_str() {
        out.push_str(&format!("\nlast-error: {error}"));
    }
    let st = &b["stickiness"];
    out.push_str(&format!("\nstickiness: period:{}", s(&st["period"])));
    if let Some(host) = st["hostname"].as_str() {
        out.push_str(&format!(", hostname:{host}"));
    }
    if let Some(reason) = b["reason"].as_str() {
        out.push_str(&format!("\nwaiting: {reason}"));
    }
    let t = &b["task"];
    if t.is_object() {
        out.push_str(&format!("\ntask:\n  id: {}\n  state: {}", s(&t["id"]), s(&t["state"])));
        if let Some(e) = t["endpoint"].as_str() {
            out.push_str(&format!("\n  endpoint: {e}"));
        }
        out.push_str(&format!("\n  hostname: {}", s(&t["hostname"])));
    }
    let m = &b["metrics"];
    if m.is_object() {
        out.push_str(&format!(
            "\nmetrics:\n  collected: {}\n  topics: {}, partitions: {}\n  rss: {:.1} MB, cpu: {:.2} s",
            m["timestamp"],
            m["topics"],
            m["partitions"],
            m["rssBytes"].as_f64().unwrap_or_default() / 1e6,
            m["cpuSeconds"].as_f64().unwrap_or_default()
        ));
    }
    out
}

pub fn print_brokers(title: &str, answer: &Value) {
    let brokers = answer["brokers"].as_array().cloned().unwrap_or_default();
    if brokers.is_empty() {
        println!("no brokers");
        return;
    }
    println!("{title}");
    for b in &brokers {
        println!();
        for line in format_broker(b).lines() {
            println!("  {line}");
        }
    }
}

pub fn print_topics(title: &str, answer: &Value) {
    let topics = answer["topics"].as_array().cloned().unwrap_or_default();
    if topics.is_empty() {
        println!("no topics");
        return;
    }
    println!("{title}");
    for t in &topics {
        println!();
        println!("  name: {}", t["name"].as_str().unwrap_or_default());
        if let Some(p) = t["partitions"].as_object() {
            let parts: Vec<String> = p
                .iter()
                .map(|(k, v)| format!("{k}:[{}]", v.as_str().unwrap_or_default()))
                .collect();
            println!("  partitions: {}", parts.join(", "));
        } else if !t["partitions"].is_null() {
            println!("  partitions: {}", t["partitions"]);
        }
        if let Some(options) = t["options"].as_object().filter(|o| !o.is_empty()) {
            let text: Vec<String> = options
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            println!("  options: {}", text.join(","));
        }
        if let Some(b) = t["brokers"].as_str() {
            println!("  brokers: {b}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_encoded() {
        assert_eq!(encode("a=1,b=x y"), "a%3D1%2Cb%3Dx%20y");
        assert_eq!(encode("*[rack=r1]"), "*%5Brack%3Dr1%5D");
    }

    #[test]
    fn brokers_print_as_blocks() {
        let b = serde_json::json!({
            "id": "0", "active": true, "state": "running", "cpus": 1.0, "mem": 2048, "heap": 1024,
            "port": null, "options": "", "constraints": "hostname=unique",
            "failover": {"delay": "1m", "maxDelay": "10m", "failures": 0},
            "stickiness": {"period": "10m"},
            "task": {"id": "kafka-0-x", "state": "running", "endpoint": "h1:31000", "hostname": "h1"}
        });
        let text = format_broker(&b);
        assert!(text.contains("resources: cpus:1.00, mem:2048, heap:1024, port:auto"), "{text}");
        assert!(text.contains("constraints: hostname=unique"), "{text}");
        assert!(text.contains("endpoint: h1:31000"), "{text}");
    }
}
