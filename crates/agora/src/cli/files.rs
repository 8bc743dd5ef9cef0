//! The commands about one task: `task show`, and `task log` and `task ls`, which look into the
//! task's sandbox on its agent.
//!
//! The master's GET_STATE names the task's framework, agent (with the address it serves on) and
//! executor; the sandbox is then the agent's virtual path
//! `/frameworks/<framework>/executors/<executor>/runs/latest` (a command task's executor id is
//! its task id; a task of the default executor lives in `tasks/<task>` below it), read through
//! the agent's files API (`/files/read`, `/files/browse`). Nothing here is cached: every command
//! asks afresh.

use std::process::ExitCode;
use std::time::Duration;

use agora_client::operator::AgentFiles;
use agora_proto::master::{Response, call, response};
use agora_proto::v1;
use anyhow::bail;

use super::{Master, explain, now, out, render, views, waiting};

/// How often `task log --follow` asks the agent for new bytes.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// A task found in the master's state, with what is known of where it ran.
pub(crate) struct Located {
    pub(crate) task: v1::Task,
    pub(crate) framework: Option<v1::FrameworkInfo>,
    pub(crate) agent: Option<response::get_agents::Agent>,
    pub(crate) executor: Option<v1::ExecutorInfo>,
}

/// Finds task `id` in a GET_STATE answer: an active or unreachable one before a completed one
/// (a framework may reuse an id once the first task ended).
pub(crate) fn locate(state: &Response, id: &str) -> Option<Located> {
    let state = state.get_state.as_ref()?;
    let tasks = state.get_tasks.as_ref()?;
    let task = tasks
        .pending_tasks
        .iter()
        .chain(&tasks.tasks)
        .chain(&tasks.unreachable_tasks)
        .chain(&tasks.completed_tasks)
        .find(|t| views::task_id(t) == id)?
        .clone();
    let framework = state.get_frameworks.as_ref().and_then(|f| {
        f.frameworks
            .iter()
            .chain(&f.completed_frameworks)
            .map(|f| &f.framework_info)
            .find(|info| {
                info.id.as_ref().is_some_and(|fid| fid.value == views::task_framework(&task))
            })
            .cloned()
    });
    let agent = state.get_agents.as_ref().and_then(|a| {
        a.agents
            .iter()
            .find(|a| {
                a.agent_info.id.as_ref().is_some_and(|aid| aid.value == views::task_agent(&task))
            })
            .cloned()
    });
    let executor = task.executor_id.as_ref().and_then(|eid| {
        state.get_executors.as_ref().and_then(|e| {
            e.executors
                .iter()
                .map(|e| &e.executor_info)
                .find(|info| {
                    info.executor_id == *eid
                        && info
                            .framework_id
                            .as_ref()
                            .is_none_or(|f| f.value == views::task_framework(&task))
                })
                .cloned()
        })
    });
    Some(Located { task, framework, agent, executor })
}

/// The task's sandbox as a path of its agent's files API.
pub(crate) fn sandbox(found: &Located) -> String {
    let task_id = views::task_id(&found.task);
    let executor = found.task.executor_id.as_ref().map_or(task_id, |e| e.value.as_str());
    let mut dir = format!(
        "/frameworks/{}/executors/{executor}/runs/latest",
        views::task_framework(&found.task)
    );
    let default = v1::executor_info::Type::Default as i32;
    if found.executor.as_ref().is_some_and(|e| e.r#type == Some(default)) {
        dir.push_str(&format!("/tasks/{task_id}"));
    }
    dir
}

async fn find(master: &Master, id: &str) -> anyhow::Result<Located> {
    let state = master.query(call::Type::GetState).await?;
    match locate(&state, id) {
        Some(found) => Ok(found),
        None => bail!(
            "the master at {} knows no task '{id}'; `agora task list --all` lists the tasks it knows",
            master.address()
        ),
    }
}

/// The files API of the agent the task ran on, or why it cannot be reached.
fn agent_files(found: &Located) -> anyhow::Result<(AgentFiles, String)> {
    match &found.agent {
        Some(agent) => {
            let address = views::agent_address(agent);
            Ok((AgentFiles::new(&address), address))
        }
        None => bail!(
            "task '{}' ran on agent {}, which the master no longer knows; its sandbox cannot be reached",
            views::task_id(&found.task),
            views::task_agent(&found.task)
        ),
    }
}

fn agent_error(found: &Located, address: &str, error: agora_client::ClientError) -> anyhow::Error {
    let hint = format!(
        "is agent {} still running at {address}? The sandbox is only readable from its agent",
        views::task_agent(&found.task)
    );
    explain(error, "the agent", &hint)
}

/// `agora task show ID`.
pub(crate) async fn show(master: &Master, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let found = find(master, id).await?;
    if json {
        out(&render::json(&found.task));
    } else {
        out(&views::task(&found.task, found.framework.as_ref(), found.agent.as_ref(), now()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `agora task log ID [--stderr] [--follow]`: prints the file from its start, page by page
/// (the agent caps each read), and with `--follow` keeps polling for new bytes until the task
/// has ended and nothing more is there.
pub(crate) async fn log(
    master: &Master,
    id: &str,
    stderr: bool,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let found = find(master, id).await?;
    let (files, address) = agent_files(&found)?;
    let path = format!("{}/{}", sandbox(&found), if stderr { "stderr" } else { "stdout" });
    let mut offset = 0u64;
    let mut ended = !follow;
    loop {
        let (at, data) = match files.read(&path, Some(offset)).await {
            Ok(read) => read,
            // A task that has not started yet has no sandbox: following waits for it.
            Err(agora_client::ClientError::Status { status: 404, .. }) if !ended => {
                (offset, String::new())
            }
            Err(e) => return Err(agent_error(&found, &address, e)),
        };
        if !data.is_empty() {
            out(&data);
            // The files API sends text; an agent that replaced invalid UTF-8 may make this
            // drift by a few bytes in binary output, which a log reader can live with.
            offset = at + data.len() as u64;
            continue;
        }
        // The task was known to have ended before this read found nothing: all is printed.
        if ended {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(FOLLOW_POLL).await;
        ended = task_ended(master, id).await?;
    }
}

/// Whether the master counts task `id` as ended (or no longer knows it).
async fn task_ended(master: &Master, id: &str) -> anyhow::Result<bool> {
    // No spinner: this runs every poll, and a spinner flashing once a second beside the
    // task's output would only distract.
    let tasks = master
        .operator()
        .await?
        .query(call::Type::GetTasks)
        .await
        .map_err(|e| master.explain(e))?;
    let running = tasks
        .get_tasks
        .iter()
        .flat_map(|t| t.pending_tasks.iter().chain(&t.tasks))
        .any(|t| views::task_id(t) == id && !agora_core::status::is_terminal(t.state()));
    Ok(!running)
}

/// `agora task ls ID [PATH]`.
pub(crate) async fn ls(
    master: &Master,
    id: &str,
    path: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let found = find(master, id).await?;
    let (files, address) = agent_files(&found)?;
    let root = sandbox(&found);
    let dir = match path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        Some(p) => format!("{root}/{p}"),
        None => root.clone(),
    };
    let entries = waiting(&format!("listing {dir} on {address}"), files.browse(&dir))
        .await
        .map_err(|e| agent_error(&found, &address, e))?;
    if json {
        let items: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({"path": e.path, "size": e.size, "mtime": e.mtime, "mode": e.mode,
                    "nlink": e.nlink, "uid": e.uid, "gid": e.gid})
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&items).expect("JSON values always serialize");
        text.push('\n');
        out(&text);
        return Ok(ExitCode::SUCCESS);
    }
    out(&listing(&entries, &dir, now()));
    Ok(ExitCode::SUCCESS)
}

/// The `ls -l`-like table of a browse answer, names relative to `dir`.
pub(crate) fn listing(
    entries: &[agora_client::operator::FileEntry],
    dir: &str,
    now: f64,
) -> String {
    let rows = entries
        .iter()
        .map(|e| {
            let name = e.path.strip_prefix(dir).unwrap_or(&e.path).trim_start_matches('/');
            vec![
                e.mode.clone(),
                e.nlink.to_string(),
                e.uid.clone(),
                e.gid.clone(),
                e.size.to_string(),
                render::age(Some(e.mtime as f64), now),
                name.to_string(),
            ]
        })
        .collect();
    render::table(&["MODE", "LINKS", "USER", "GROUP", "SIZE", "MODIFIED", "NAME"], rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> Response {
        agora_proto::from_json(json.as_bytes()).expect("a canned GET_STATE")
    }

    const TWO_RUNS: &str = r#"{"type":"GET_STATE","get_state":{
        "get_tasks":{
          "tasks":[{"task_id":{"value":"t"},"framework_id":{"value":"F-2"},"agent_id":{"value":"A"},
            "executor_id":{"value":"group"},"state":"TASK_RUNNING"}],
          "completed_tasks":[{"task_id":{"value":"t"},"framework_id":{"value":"F-1"},
            "agent_id":{"value":"A"},"state":"TASK_FINISHED"}]},
        "get_executors":{"executors":[{"agent_id":{"value":"A"},"executor_info":{
          "executor_id":{"value":"group"},"framework_id":{"value":"F-2"},"type":"DEFAULT"}}]},
        "get_agents":{"agents":[{"agent_info":{"hostname":"h","id":{"value":"A"},"port":5052},
          "active":true,"version":"1"}]}}}"#;

    #[test]
    fn an_active_task_wins_over_a_completed_one_with_the_same_id() {
        let found = locate(&state(TWO_RUNS), "t").expect("found");
        assert_eq!(views::task_framework(&found.task), "F-2");
        assert!(found.framework.is_none(), "the state names no frameworks");
        assert_eq!(found.agent.as_ref().map(views::agent_address).as_deref(), Some("h:5052"));
        assert!(locate(&state(TWO_RUNS), "other").is_none());
    }

    #[test]
    fn sandboxes_of_command_tasks_and_task_groups() {
        let found = locate(&state(TWO_RUNS), "t").expect("found");
        assert_eq!(sandbox(&found), "/frameworks/F-2/executors/group/runs/latest/tasks/t");
        let mut command = Located { executor: None, ..found };
        command.task.executor_id = None;
        assert_eq!(sandbox(&command), "/frameworks/F-2/executors/t/runs/latest");
    }

    #[test]
    fn listings_name_entries_relative_to_the_directory() {
        let entry = agora_client::operator::FileEntry {
            path: "/d/sub/file".into(),
            size: 3,
            mtime: 40,
            mode: "-rw-r--r--".into(),
            nlink: 1,
            uid: "u".into(),
            gid: "g".into(),
        };
        assert_eq!(
            listing(&[entry], "/d/sub", 100.0),
            "MODE        LINKS  USER  GROUP  SIZE  MODIFIED  NAME\n-rw-r--r--  1      u     g      3     1m        file\n"
        );
    }
}
