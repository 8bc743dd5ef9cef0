//! The operator commands of the real `agora` binary against a fake master: a small axum server
//! on 127.0.0.1:0 that answers each operator call with a canned `mesos.v1.master.Response` in
//! JSON, streams canned events for SUBSCRIBE, and plays the agent's files API for the sandbox
//! of one task. The expected tables are written out here; ages come from timestamps the fake
//! sets relative to the moment it answers, so they print the same on every run.
//!
//! What the fake checks in return: the calls the CLI sends (types, reservations, quota) and
//! the sandbox paths it reads. Errors are tested against a port nothing listens on and against
//! a 501 answer. `agora execute --follow` runs against a real `agora dev`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use agora_tests::{Cluster, agora_bin};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures::StreamExt;

/// What the fake master answers and what it was asked.
#[derive(Default)]
struct Fake {
    /// Call type -> (status, body); `NOW-<n>` in a body becomes the time n seconds ago.
    answers: HashMap<String, (u16, String)>,
    /// The bodies of every operator call received, in order.
    calls: Vec<String>,
    /// The sandbox files by path; reads return at most `page` bytes, like a capped agent.
    files: HashMap<String, String>,
    page: usize,
    /// What `stdout` of the followed task grows by at the first GET_TASKS; when set, the
    /// task has finished from the second GET_TASKS on.
    grows_by: Option<(String, String)>,
    /// Whether SUBSCRIBE goes silent after SUBSCRIBED instead of sending heartbeats.
    silent: bool,
    /// How many GET_TASKS have been answered.
    task_queries: usize,
    reads: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after the epoch").as_secs_f64()
}

/// Replaces `NOW-<n>` with the epoch seconds of n seconds ago, and `NANOS-<n>` with the same
/// in nanoseconds.
fn timed(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(at) = rest.find("NOW-").or_else(|| rest.find("NANOS-")) {
        out.push_str(&rest[..at]);
        let nanos = rest[at..].starts_with("NANOS-");
        let digits_at = at + if nanos { 6 } else { 4 };
        let end = rest[digits_at..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(rest.len(), |e| digits_at + e);
        let ago: f64 = rest[digits_at..end].parse().expect("digits");
        let then = now() - ago;
        if nanos {
            out.push_str(&format!("{}", (then * 1e9) as i64));
        } else {
            out.push_str(&format!("{then:.3}"));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

async fn operator(State(fake): State<Shared>, body: Bytes) -> impl IntoResponse {
    let text = String::from_utf8_lossy(&body).into_owned();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let kind = value.get("type").and_then(|t| t.as_str()).unwrap_or("UNKNOWN").to_string();
    let mut fake = fake.lock().expect("lock");
    fake.calls.push(text);
    if kind == "GET_TASKS" {
        fake.task_queries += 1;
        if fake.task_queries == 1
            && let Some((path, more)) = fake.grows_by.clone()
        {
            fake.files.entry(path).or_default().push_str(&more);
        }
        if fake.task_queries >= 2 && fake.grows_by.is_some() {
            let finished = inline(TASKS).replace("TASK_RUNNING", "TASK_FINISHED");
            return (StatusCode::OK, timed(&finished)).into_response();
        }
    }
    if kind == "SUBSCRIBE" && fake.silent {
        // SUBSCRIBED promises heartbeats every 0.2 s, then nothing ever comes.
        let mut first = Vec::new();
        let subscribed = r#"{"type":"SUBSCRIBED","subscribed":{"heartbeat_interval_seconds":0.2}}"#;
        agora_proto::recordio::encode_into(&mut first, subscribed.as_bytes());
        let chunks =
            futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(first)) })
                .chain(futures::stream::pending());
        return axum::body::Body::from_stream(chunks).into_response();
    }
    if kind == "SUBSCRIBE" {
        let mut stream = Vec::new();
        for event in EVENTS {
            agora_proto::recordio::encode_into(&mut stream, event.as_bytes());
        }
        return ([("Content-Type", "application/json")], stream).into_response();
    }
    match fake.answers.get(&kind) {
        Some((status, body)) => {
            (StatusCode::from_u16(*status).expect("status"), timed(body)).into_response()
        }
        None => (StatusCode::NOT_IMPLEMENTED, format!("{kind} is not implemented")).into_response(),
    }
}

async fn files_read(
    State(fake): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let mut fake = fake.lock().expect("lock");
    let path = query.get("path").cloned().unwrap_or_default();
    let offset: usize = query.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    fake.reads.push(format!("{path}@{offset}"));
    let Some(content) = fake.files.get(&path) else {
        return (StatusCode::NOT_FOUND, "no such file".to_string()).into_response();
    };
    let start = offset.min(content.len());
    let end = (start + fake.page).min(content.len());
    let answer = serde_json::json!({"offset": start, "data": &content[start..end]});
    (StatusCode::OK, answer.to_string()).into_response()
}

async fn files_browse(Query(query): Query<HashMap<String, String>>) -> impl IntoResponse {
    let dir = query.get("path").cloned().unwrap_or_default();
    if dir != SANDBOX {
        return (StatusCode::NOT_FOUND, "nothing attached there".to_string()).into_response();
    }
    let entry = |name: &str, mode: &str, size: u64| {
        serde_json::json!({"path": format!("{dir}/{name}"), "nlink": 1, "size": size,
            "mtime": now() - 120.0, "mode": mode, "uid": "root", "gid": "root"})
    };
    let list = serde_json::json!([
        entry("stdout", "-rw-r--r--", 12),
        entry("data", "drwxr-xr-x", 4096),
        entry("stderr", "-rw-r--r--", 0)
    ]);
    (StatusCode::OK, list.to_string()).into_response()
}

/// Starts the fake master (also serving the sandbox files, as the task's agent) and returns
/// its address.
async fn start(fake: Fake) -> (SocketAddr, Shared) {
    let shared = Arc::new(Mutex::new(fake));
    let app = Router::new()
        .route("/api/v1", post(operator))
        .route("/files/read", get(files_read))
        .route("/files/browse", get(files_browse))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, shared)
}

/// The fake with the canned answers of a small cluster whose one agent is the fake itself.
async fn cluster() -> (SocketAddr, Shared) {
    let (addr, shared) = start(Fake { page: 5, ..Fake::default() }).await;
    {
        let mut fake = shared.lock().expect("lock");
        let state = inline(STATE).replace("AGENT_ADDRESS", &addr.to_string());
        let answers = [
            ("GET_AGENTS", AGENTS.to_string()),
            ("GET_FRAMEWORKS", FRAMEWORKS.to_string()),
            ("GET_TASKS", inline(TASKS)),
            ("GET_STATE", state),
            ("GET_QUOTA", QUOTA.to_string()),
            ("RESERVE_RESOURCES", String::new()),
            ("UNRESERVE_RESOURCES", String::new()),
            ("UPDATE_QUOTA", String::new()),
            ("TEARDOWN", String::new()),
        ];
        for (kind, body) in answers {
            let status = if kind.ends_with("RESOURCES") { 202 } else { 200 };
            fake.answers.insert(kind.to_string(), (status, body));
        }
        fake.files.insert(format!("{SANDBOX}/stdout"), "hello\nworld\n".into());
        fake.files.insert(format!("{SANDBOX}/stderr"), "oops\n".into());
    }
    (addr, shared)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `agora ARGS` with `AGORA_MASTER` unset, so only `--master` (or `env`) decides.
async fn agora(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = tokio::process::Command::new(agora_bin())
        .args(args)
        .env_remove("AGORA_MASTER")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the agora binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn ok(args: &[&str], addr: SocketAddr) -> String {
    let master = addr.to_string();
    let mut all = args.to_vec();
    all.extend(["--master", &master]);
    let run = agora(&all, &[]).await;
    assert_eq!(run.code, 0, "agora {args:?} failed: {}", run.stderr);
    assert_eq!(run.stderr, "", "agora {args:?} printed on stderr");
    run.stdout
}

const SANDBOX: &str = "/frameworks/F-1/executors/t1/runs/latest";

const AGENTS: &str = r#"{"type":"GET_AGENTS","get_agents":{"agents":[
    {"agent_info":{"hostname":"node-a","id":{"value":"A-1"},"port":5051},
     "active":true,"version":"1.11.0","pid":"slave(1)@10.0.0.1:5051",
     "registered_time":{"nanoseconds":NANOS-7200},
     "total_resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":4}},
       {"name":"mem","type":"SCALAR","scalar":{"value":4096}},
       {"name":"disk","type":"SCALAR","scalar":{"value":10240}},
       {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]}}],
     "allocated_resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":1}},
       {"name":"mem","type":"SCALAR","scalar":{"value":256}}]}]}}"#;

const FRAMEWORKS: &str = r#"{"type":"GET_FRAMEWORKS","get_frameworks":{
    "frameworks":[{"framework_info":{"user":"u","name":"batch","id":{"value":"F-1"},"roles":["eng"]},
      "active":true,"connected":true,"recovered":false,
      "registered_time":{"nanoseconds":NANOS-600}}],
    "completed_frameworks":[{"framework_info":{"user":"u","name":"old","id":{"value":"F-0"}},
      "active":false,"connected":false,"recovered":false}]}}"#;

const TASK_T1: &str = r#"{"name":"hello","task_id":{"value":"t1"},"framework_id":{"value":"F-1"},
    "agent_id":{"value":"A-1"},"state":"TASK_RUNNING",
    "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":1}},
      {"name":"mem","type":"SCALAR","scalar":{"value":256}}],
    "statuses":[{"task_id":{"value":"t1"},"state":"TASK_RUNNING","timestamp":NOW-300}]}"#;

const TASKS: &str = r#"{"type":"GET_TASKS","get_tasks":{"tasks":[TASK_T1_INLINE],
    "completed_tasks":[{"name":"done","task_id":{"value":"t0"},"framework_id":{"value":"F-0"},
      "agent_id":{"value":"A-1"},"state":"TASK_FAILED",
      "statuses":[{"task_id":{"value":"t0"},"state":"TASK_FAILED","timestamp":NOW-90000}]}]}}"#;

const STATE: &str = r#"{"type":"GET_STATE","get_state":{
    "get_tasks":{"tasks":[TASK_T1_INLINE]},
    "get_frameworks":{"frameworks":[{"framework_info":{"user":"u","name":"batch","id":{"value":"F-1"}},
      "active":true,"connected":true,"recovered":false}]},
    "get_agents":{"agents":[{"agent_info":{"hostname":"localhost","id":{"value":"A-1"}},
      "active":true,"version":"1.11.0","pid":"slave(1)@AGENT_ADDRESS"}]}}}"#;

const QUOTA: &str = r#"{"type":"GET_QUOTA","get_quota":{"status":{"configs":[
    {"role":"eng","guarantees":{"cpus":{"value":1}},"limits":{"cpus":{"value":2},"mem":{"value":1024}}}]}}}"#;

const EVENTS: [&str; 3] = [
    r#"{"type":"SUBSCRIBED","subscribed":{"heartbeat_interval_seconds":15,"get_state":{}}}"#,
    r#"{"type":"TASK_UPDATED","task_updated":{"framework_id":{"value":"F-1"},
        "status":{"task_id":{"value":"t1"},"state":"TASK_FINISHED"},"state":"TASK_FINISHED"}}"#,
    r#"{"type":"HEARTBEAT"}"#,
];

/// The canned answers with the task inlined where they name `TASK_T1_INLINE`.
fn inline(body: &str) -> String {
    body.replace("TASK_T1_INLINE", TASK_T1)
}

#[tokio::test]
async fn read_verbs_print_tables() {
    let (addr, shared) = cluster().await;
    assert_eq!(
        ok(&["agent", "list"], addr).await,
        "\
ID   HOSTNAME  ADDRESS        STATE   RESOURCES                                          ALLOCATED           AGE
A-1  node-a    10.0.0.1:5051  active  cpus 4, mem 4GiB, disk 10GiB, ports [31000-32000]  cpus 1, mem 256MiB  2h
"
    );
    assert_eq!(
        ok(&["framework", "list"], addr).await,
        "\
ID   NAME   ROLES  STATE   ALLOCATED  AGE
F-1  batch  eng    active  -          10m
"
    );
    assert!(
        ok(&["framework", "list", "--all"], addr).await.contains("\nF-0  old    *      completed")
    );
    let active = "\
ID  NAME   FRAMEWORK  AGENT  STATE    RESOURCES           AGE
t1  hello  F-1        A-1    RUNNING  cpus 1, mem 256MiB  5m
";
    assert_eq!(ok(&["task", "list"], addr).await, active);
    assert_eq!(
        ok(&["task", "list", "--all"], addr).await,
        "\
ID  NAME   FRAMEWORK  AGENT  STATE    RESOURCES           AGE
t0  done   F-0        A-1    FAILED   -                   1d
t1  hello  F-1        A-1    RUNNING  cpus 1, mem 256MiB  5m
"
    );
    let show = ok(&["task", "show", "t1"], addr).await;
    assert!(
        show.starts_with(
            "id:        t1\nname:      hello\nstate:     RUNNING\nframework: F-1 (batch)\n"
        ),
        "{show}"
    );
    assert_eq!(
        ok(&["quota", "get"], addr).await,
        "ROLE  GUARANTEES  LIMITS\neng   cpus 1      cpus 2, mem 1GiB\n"
    );
    let calls = shared.lock().expect("lock").calls.clone();
    assert!(calls.iter().all(|c| c.starts_with(r#"{"type":"GET_"#)), "{calls:?}");
}

#[tokio::test]
async fn json_is_the_responses_mesos_mapping() {
    let (addr, shared) = cluster().await;
    shared.lock().expect("lock").answers.insert(
        "GET_ROLES".into(),
        (200, r#"{"type":"GET_ROLES","get_roles":{"roles":[{"name":"eng","weight":2}]}}"#.into()),
    );
    assert_eq!(
        ok(&["role", "list", "--json"], addr).await,
        "{\n  \"get_roles\": {\n    \"roles\": [\n      {\n        \"name\": \"eng\",\n        \"weight\": 2\n      }\n    ]\n  },\n  \"type\": \"GET_ROLES\"\n}\n"
    );
    assert_eq!(
        ok(&["role", "list"], addr).await,
        "ROLE  WEIGHT  FRAMEWORKS  ALLOCATED\neng   2       0           -\n"
    );
    // Without --all the completed tasks are left out of the JSON as out of the table.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["task", "list", "--json"], addr).await).expect("JSON");
    assert_eq!(json["type"], "GET_TASKS");
    assert!(
        json["get_tasks"]
            .get("completed_tasks")
            .is_none_or(|c| c.as_array().is_some_and(Vec::is_empty))
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["task", "list", "--json", "--all"], addr).await).expect("JSON");
    assert_eq!(json["get_tasks"]["completed_tasks"][0]["task_id"]["value"], "t0");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["agent", "list", "--json"], addr).await).expect("JSON");
    assert_eq!(json["get_agents"]["agents"][0]["pid"], "slave(1)@10.0.0.1:5051");
}

#[tokio::test]
async fn task_log_and_ls_read_the_sandbox_from_the_agent() {
    let (addr, shared) = cluster().await;
    // Each read is capped at 5 bytes, so the whole file takes several pages.
    assert_eq!(ok(&["task", "log", "t1"], addr).await, "hello\nworld\n");
    assert_eq!(ok(&["task", "log", "t1", "--stderr"], addr).await, "oops\n");
    let reads = shared.lock().expect("lock").reads.clone();
    assert_eq!(
        reads[..4],
        [0, 5, 10, 12].map(|o| format!("{SANDBOX}/stdout@{o}")),
        "pages follow the offsets the agent returns"
    );
    assert_eq!(
        ok(&["task", "ls", "t1"], addr).await,
        "\
MODE        LINKS  USER  GROUP  SIZE  MODIFIED  NAME
drwxr-xr-x  1      root  root   4096  2m        data
-rw-r--r--  1      root  root   0     2m        stderr
-rw-r--r--  1      root  root   12    2m        stdout
"
    );
    let run = agora(&["task", "ls", "t1", "nowhere", "--master", &addr.to_string()], &[]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("answered 404 Not Found: nothing attached there"),
        "{}",
        run.stderr
    );
    let run = agora(&["task", "log", "nope", "--master", &addr.to_string()], &[]).await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("knows no task 'nope'"), "{}", run.stderr);
}

#[tokio::test]
async fn task_log_follow_prints_new_output_until_the_task_ends() {
    let (addr, shared) = cluster().await;
    {
        let mut fake = shared.lock().expect("lock");
        // The first GET_TASKS (after the existing output is printed) finds the task running
        // and the file grown; the second finds it finished.
        fake.grows_by = Some((format!("{SANDBOX}/stdout"), "later\n".into()));
    }
    assert_eq!(ok(&["task", "log", "t1", "--follow"], addr).await, "hello\nworld\nlater\n");
    assert_eq!(shared.lock().expect("lock").task_queries, 2);
}

#[tokio::test]
async fn changes_send_the_operator_calls() {
    let (addr, shared) = cluster().await;
    assert_eq!(
        ok(&["reserve", "A-1", "cpus:1;mem:128", "--role", "eng", "--principal", "ops"], addr)
            .await,
        "reserved cpus 1, mem 128MiB for role eng on agent A-1\n"
    );
    assert_eq!(
        ok(&["unreserve", "A-1", "cpus:1", "--role", "eng"], addr).await,
        "unreserved cpus 1 for role eng on agent A-1\n"
    );
    assert_eq!(
        ok(&["quota", "set", "eng", "--limits", "cpus:2;mem:1024", "--force"], addr).await,
        "quota of role eng: guarantees -, limits cpus 2, mem 1GiB\n"
    );
    assert_eq!(
        ok(&["framework", "teardown", "F-1"], addr).await,
        "framework F-1 torn down: the master is killing its tasks\n"
    );
    let calls: Vec<serde_json::Value> = shared
        .lock()
        .expect("lock")
        .calls
        .iter()
        .map(|c| serde_json::from_str(c).expect("the CLI sends JSON"))
        .collect();
    let reserve = &calls[0]["reserve_resources"];
    assert_eq!(reserve["agent_id"]["value"], "A-1");
    assert_eq!(reserve["resources"][0]["name"], "cpus");
    assert_eq!(
        reserve["resources"][1]["reservations"],
        serde_json::json!([{"principal": "ops", "role": "eng", "type": "DYNAMIC"}])
    );
    assert_eq!(calls[1]["type"], "UNRESERVE_RESOURCES");
    let quota = &calls[2]["update_quota"];
    assert_eq!(quota["force"], true);
    assert_eq!(quota["quota_configs"][0]["limits"]["mem"]["value"], 1024.0);
    assert_eq!(calls[3]["teardown"]["framework_id"]["value"], "F-1");
}

/// `agora task kill` against a real master: the framework hears TASK_KILLED on its own stream,
/// and an unknown id is refused with what to do.
#[tokio::test]
async fn task_kill_kills_through_the_master() -> anyhow::Result<()> {
    use agora_proto::v1::TaskState;
    use agora_tests::{launch_tasks, next_update, test_framework};

    let cluster = Cluster::start()?;
    let (session, mut events, _) = launch_tasks(
        &cluster.master,
        test_framework("kill"),
        "cpus:0.1;mem:32",
        &[("victim", "sleep 600")],
        &[("victim", TaskState::TaskRunning)],
    )
    .await?;
    let env = [("AGORA_MASTER", cluster.master.as_str())];
    let run = agora(&["task", "kill", "victim"], &env).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("task victim of framework"), "{}", run.stdout);
    let status = next_update(&session, &mut events).await?;
    session.acknowledge(&status).await?;
    assert_eq!(status.state(), TaskState::TaskKilled, "{status:?}");

    let run = agora(&["task", "kill", "victim"], &env).await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("knows no running task 'victim'"), "{}", run.stderr);
    Ok(())
}

/// `agora events` running in the background; it only ends when killed. Its stdout and stderr
/// arrive line by line.
struct Events {
    child: tokio::process::Child,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
}

impl Events {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Events {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(agora_bin())
            .arg("events")
            .args(args)
            .env_remove("AGORA_MASTER")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the agora binary runs");
        let stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let stderr = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
        Events { child, stdout, stderr }
    }

    async fn line(&mut self) -> String {
        let next =
            tokio::time::timeout(std::time::Duration::from_secs(60), self.stdout.next_line());
        next.await.expect("a line within 60s").expect("stdout readable").expect("still running")
    }

    /// The next stderr line (the spinner only draws on terminals, so these are notices).
    async fn notice(&mut self) -> String {
        let next =
            tokio::time::timeout(std::time::Duration::from_secs(60), self.stderr.next_line());
        next.await.expect("a notice within 60s").expect("stderr readable").expect("still running")
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[tokio::test]
async fn events_print_one_line_each_and_subscribe_again() {
    let (addr, _shared) = cluster().await;
    let master = addr.to_string();
    let mut run = Events::start(&["--master", &master], &[]);
    let first = [
        "SUBSCRIBED 0 agents, 0 frameworks, 0 tasks active; heartbeat every 15s",
        "TASK_UPDATED task t1 of framework F-1: FINISHED",
        "HEARTBEAT",
    ];
    for expected in first {
        assert_eq!(run.line().await, expected);
    }
    // The fake closes the stream after its events: the CLI says so and subscribes again,
    // which starts over with SUBSCRIBED.
    let notice = run.notice().await;
    assert_eq!(
        notice,
        format!("agora: the master at {master} closed the event stream; subscribing again")
    );
    assert_eq!(run.line().await, first[0]);
    run.stop().await;

    let mut run = Events::start(&["--json"], &[("AGORA_MASTER", &master)]);
    let mut lines = Vec::new();
    for _ in 0..3 {
        let line: serde_json::Value =
            serde_json::from_str(&run.line().await).expect("one JSON event per line");
        lines.push(line);
    }
    assert_eq!(lines[1]["task_updated"]["state"], "TASK_FINISHED");
    run.stop().await;
}

#[tokio::test]
async fn events_subscribe_again_when_the_master_goes_silent() {
    let (addr, shared) = cluster().await;
    shared.lock().expect("lock").silent = true;
    let mut run = Events::start(&["--master", &addr.to_string()], &[]);
    assert!(run.line().await.starts_with("SUBSCRIBED "));
    let notice = run.notice().await;
    assert!(notice.contains("sent nothing for 0.6s, three heartbeat intervals"), "{notice}");
    assert!(notice.ends_with("; subscribing again"), "{notice}");
    assert!(run.line().await.starts_with("SUBSCRIBED "));
    run.stop().await;
}

#[tokio::test]
async fn events_follow_a_master_through_its_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = agora_tests::free_port()?.to_string();
    let work_dir = dir.path().to_string_lossy().into_owned();
    let args = ["--port", port.as_str(), "--work_dir", work_dir.as_str()];
    let master = agora_tests::Daemon::master(&args)?;
    let mut run = Events::start(&["--master", &master.addr], &[]);
    assert!(run.line().await.starts_with("SUBSCRIBED "));
    master.kill()?;
    let notice = run.notice().await;
    assert!(notice.starts_with("agora: "), "{notice}");
    assert!(notice.ends_with("; subscribing again"), "{notice}");
    let master = agora_tests::Daemon::master(&args)?;
    // Attempts while the master is down may fail (each says so); the stream comes back.
    loop {
        let line = run.line().await;
        if line.starts_with("SUBSCRIBED ") {
            break;
        }
        assert_eq!(line, "HEARTBEAT", "only heartbeats may come before the new SUBSCRIBED");
    }
    // The CLI keeps printing the new stream's events.
    let register = tokio::process::Command::new(agora_bin())
        .args(["agent", "--master", &master.addr, "--port", "0", "--work_dir"])
        .arg(dir.path().join("agent"))
        .args(["--resources", "cpus:1;mem:256;disk:256"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    loop {
        let line = run.line().await;
        if line.starts_with("AGENT_ADDED") {
            break;
        }
    }
    drop(register);
    run.stop().await;
    Ok(())
}

#[tokio::test]
async fn quota_set_against_a_real_master() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let run = agora(
        &["quota", "set", "capped", "--limits", "cpus:1"],
        &[("AGORA_MASTER", &cluster.master)],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "quota of role capped: guarantees -, limits cpus 1\n");
    // A limit below the guarantee is the master's to refuse, and the CLI passes its reason on.
    let run = agora(
        &["quota", "set", "x", "--guarantees", "cpus:2", "--limits", "cpus:1"],
        &[("AGORA_MASTER", &cluster.master)],
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("answered 400 Bad Request: "), "{}", run.stderr);
    assert!(run.stderr.contains("exceeds its limit"), "{}", run.stderr);
    Ok(())
}

#[tokio::test]
async fn errors_say_what_was_tried_and_what_to_do() {
    // A port that was free a moment ago: nothing answers there.
    let port = agora_tests::free_port().expect("a free port");
    let master = format!("127.0.0.1:{port}");
    for run in [
        agora(&["agent", "list", "--master", &master], &[]).await,
        agora(&["task", "list"], &[("AGORA_MASTER", &master)]).await,
    ] {
        assert_eq!(run.code, 1);
        assert_eq!(run.stdout, "");
        let expected =
            format!("agora: the master at http://{master}/api/v1 could not be reached (");
        assert!(run.stderr.starts_with(&expected), "{}", run.stderr);
        assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
        assert!(
            run.stderr.trim_end().ends_with(&format!(
                "is the master running at {master}? Set --master or AGORA_MASTER to reach another one"
            )),
            "{}",
            run.stderr
        );
    }

    let (addr, _shared) = cluster().await;
    let run = agora(&["role", "list", "--master", &addr.to_string()], &[]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!(
            "agora: the master at http://{addr}/api/v1 answered 501 Not Implemented: GET_ROLES is \
             not implemented; this master does not serve that call (yet)\n"
        )
    );
}

#[tokio::test]
async fn completions_are_generated_for_each_shell() {
    for (shell, marker) in
        [("bash", "_agora()"), ("zsh", "#compdef agora"), ("fish", "complete -c agora")]
    {
        let run = agora(&["completions", shell], &[]).await;
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(run.stdout.contains(marker), "{shell}");
        assert!(run.stdout.contains("reserve"), "{shell} completes the operator commands");
    }
}

#[tokio::test]
async fn execute_follow_streams_the_tasks_stdout() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let run = agora(
        &["execute", "--name", "follow", "--command", "echo one; echo two", "--follow"],
        &[("AGORA_MASTER", &cluster.master)],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("one\ntwo\n"), "{}", run.stdout);
    assert!(run.stdout.contains("Received status update TASK_FINISHED"), "{}", run.stdout);
    Ok(())
}
