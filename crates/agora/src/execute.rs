//! `agora execute`, the mesos-execute of Agora: subscribe as a framework, launch one command
//! task on the first offer that fits, print each state change and the task's stdout, and exit
//! with the task's exit status.
//!
//! It is a plain scheduler built on `agora-client`; it acknowledges every update and tears the
//! framework down when the task ends. With `--follow` it streams the task's stdout while the
//! task runs, polling the agent's files API, instead of printing it all at the end.

use std::time::Duration;

use agora_client::operator::{AgentFiles, escape};
use agora_client::scheduler::SchedulerSession;
use agora_core::convert;
use agora_core::resources::Resources;
use agora_proto::scheduler::event::Type as EventType;
use agora_proto::{Format, v1};
use anyhow::{Context, bail};
use clap::Args;

/// How long `agora execute` waits for a new leading master after its stream ended.
const FAILOVER_PATIENCE: Duration = Duration::from_secs(120);

#[derive(Args, Clone)]
pub(crate) struct ExecuteFlags {
    /// The master, as `host:port`, or `zk://host:port/path` to follow the leading master
    /// (the command then rides through a master failover).
    #[arg(long, env = "AGORA_MASTER", default_value = "127.0.0.1:5050")]
    master: String,
    /// Task name, also used as the task id.
    #[arg(long)]
    name: String,
    /// Shell command to run.
    #[arg(long)]
    command: String,
    /// Resources of the task.
    #[arg(long, default_value = "cpus:0.1;mem:32")]
    resources: String,
    /// Role to subscribe with.
    #[arg(long, default_value = "*")]
    role: String,
    /// Wire format to talk to the master in: `json` or `protobuf`.
    #[arg(long = "content_type", alias = "content-type", default_value = "protobuf")]
    content_type: String,
    /// Print the task's stdout as it is written, not only once the task has ended.
    #[arg(long, short)]
    follow: bool,
}

/// How often `--follow` asks the agent for new output.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// Streams a file of the task's sandbox to stdout, from where it left off.
struct Follower {
    files: AgentFiles,
    path: String,
    offset: u64,
}

impl Follower {
    /// The stdout of `task_id` run by framework `framework_id` on the agent of `offer`.
    fn new(offer: &v1::Offer, framework_id: &str, task_id: &str) -> Option<Follower> {
        let address = agent_address(offer)?;
        Some(Follower {
            files: AgentFiles::new(&address),
            path: format!("/frameworks/{framework_id}/executors/{task_id}/runs/latest/stdout"),
            offset: 0,
        })
    }

    /// Prints whatever was written since the last poll. Failures are left for the next poll:
    /// the sandbox does not exist until the agent has started the executor.
    async fn poll(&mut self) {
        use std::io::Write;
        while let Ok((at, data)) = self.files.read(&self.path, Some(self.offset)).await {
            if data.is_empty() {
                return;
            }
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(data.as_bytes()).and_then(|()| out.flush());
            self.offset = at + data.len() as u64;
        }
    }
}

/// `host:port` of the agent an offer came from.
fn agent_address(offer: &v1::Offer) -> Option<String> {
    let url = offer.url.as_ref()?;
    let host = url.address.ip.clone().or_else(|| url.address.hostname.clone())?;
    Some(format!("{host}:{}", url.address.port))
}

/// Runs the task; the result is the process exit code.
pub(crate) async fn run(flags: ExecuteFlags) -> anyhow::Result<i32> {
    let wanted = Resources::parse(&flags.resources).context("invalid --resources")?;
    let format = match flags.content_type.as_str() {
        "json" => Format::Json,
        "protobuf" => Format::Protobuf,
        other => bail!("--content_type must be json or protobuf, not '{other}'"),
    };
    #[expect(deprecated, reason = "a single-role framework names its role in `role`")]
    let info = v1::FrameworkInfo {
        user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        name: format!("agora-execute ({})", flags.name),
        role: Some(flags.role.clone()),
        ..Default::default()
    };
    let waiting = format!("subscribing to the master at {}", flags.master);
    let (mut session, mut events) =
        crate::cli::waiting(&waiting, SchedulerSession::subscribe(&flags.master, info, format))
            .await
            .with_context(|| {
                format!(
                    "cannot subscribe to the master at {}; is it running? Set --master or \
                     AGORA_MASTER to reach another one",
                    flags.master
                )
            })?;
    println!("Subscribed with ID {}", session.framework_id.value);

    let mut launched: Option<v1::Offer> = None;
    let mut follower: Option<Follower> = None;
    let mut told_waiting = false;
    let mut tick = tokio::time::interval(FOLLOW_POLL);
    // A slow poll should not be followed by a burst of catch-up polls.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The event stream is read with `select!`: a poll of the sandbox in between loses
        // nothing, as the subscription keeps any partial record it has buffered.
        let event = tokio::select! {
            event = events.next() => match event {
                Ok(Some(event)) => Some(event),
                // With ZooKeeper another master takes over: subscribe again with the same
                // framework id, as a Mesos framework does after a failover, and go on.
                Ok(None) | Err(_) if agora_leader::ZkUrl::is_zk(&flags.master) => {
                    eprintln!("agora: the master's stream ended; subscribing to the leading master again");
                    (session, events) = session
                        .resubscribe(FAILOVER_PATIENCE)
                        .await
                        .context("cannot subscribe again after the master's stream ended")?;
                    continue;
                }
                Ok(None) => None,
                Err(e) => return Err(e.into()),
            },
            _ = tick.tick(), if follower.is_some() => {
                if let Some(follower) = &mut follower {
                    follower.poll().await;
                }
                continue;
            }
        };
        let Some(event) = event else {
            bail!("the master closed the subscription stream");
        };
        match event.r#type() {
            EventType::Offers => {
                for offer in event.offers.map(|o| o.offers).unwrap_or_default() {
                    let available =
                        convert::resources_from_proto(&offer.resources).unwrap_or_default();
                    if launched.is_some() || !available.contains(&wanted) {
                        if launched.is_none() && !told_waiting {
                            println!("Waiting for an offer with {wanted} (got {available})");
                            told_waiting = true;
                        }
                        session.decline(vec![offer.id.clone()], None).await?;
                        continue;
                    }
                    let task = v1::TaskInfo {
                        name: flags.name.clone(),
                        task_id: v1::TaskId { value: flags.name.clone() },
                        agent_id: offer.agent_id.clone(),
                        resources: convert::resources_to_proto(&wanted, None),
                        command: Some(v1::CommandInfo {
                            value: Some(flags.command.clone()),
                            shell: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    session.launch(vec![offer.id.clone()], vec![task], None).await?;
                    println!("Submitted task '{}' to agent '{}'", flags.name, offer.agent_id.value);
                    if flags.follow {
                        follower = Follower::new(&offer, &session.framework_id.value, &flags.name);
                    }
                    launched = Some(offer);
                }
            }
            EventType::Update => {
                let Some(status) = event.update.and_then(|u| u.status) else {
                    continue;
                };
                let state = status.state();
                match status.message.as_deref().filter(|m| !m.is_empty()) {
                    Some(message) => println!(
                        "Received status update {} for task '{}': {message}",
                        state.as_str_name(),
                        status.task_id.value
                    ),
                    None => println!(
                        "Received status update {} for task '{}'",
                        state.as_str_name(),
                        status.task_id.value
                    ),
                }
                session.acknowledge(&status).await?;
                if agora_core::status::is_terminal(state) {
                    if let Some(follower) = &mut follower {
                        follower.poll().await;
                    } else if let Some(offer) = &launched {
                        print_stdout(offer, &session.framework_id.value, &flags.name).await;
                    }
                    let _ = session.teardown().await;
                    return Ok(exit_status(&status));
                }
            }
            EventType::Error => {
                let message = event.error.map(|e| e.message).unwrap_or_default();
                bail!("the master sent an error: {message}");
            }
            _ => {}
        }
    }
}

/// The task's exit status as the command executor reported it; 1 for anything else that is not
/// TASK_FINISHED.
fn exit_status(status: &v1::TaskStatus) -> i32 {
    if status.state() == v1::TaskState::TaskFinished {
        return 0;
    }
    status
        .message
        .as_deref()
        .and_then(|m| m.strip_prefix("Command exited with status "))
        .and_then(|n| n.trim().parse().ok())
        .filter(|&n| n != 0)
        .unwrap_or(1)
}

/// Prints the task's stdout, downloaded through the agent's files API (a download has no
/// per-request cap, unlike `/files/read`, and keeps the bytes as they are).
async fn print_stdout(offer: &v1::Offer, framework_id: &str, task_id: &str) {
    let Some(address) = agent_address(offer) else { return };
    let path = format!("/frameworks/{framework_id}/executors/{task_id}/runs/latest/stdout");
    let client = agora_client::http::client();
    let request = client
        .get(format!("http://{address}/files/download?path={}", escape(&path)))
        .timeout(Duration::from_secs(10));
    let body = match request.send().await {
        Ok(response) if response.status().is_success() => response.bytes().await.ok(),
        _ => None,
    };
    match body {
        Some(bytes) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
                eprintln!("agora execute: could not write the task's stdout");
            }
        }
        None => eprintln!("agora execute: could not read the task's stdout from the agent"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_comes_from_the_command_executor_message() {
        let status = |state: v1::TaskState, message: &str| {
            let mut s = v1::TaskStatus { message: Some(message.into()), ..Default::default() };
            s.set_state(state);
            exit_status(&s)
        };
        assert_eq!(status(v1::TaskState::TaskFinished, "Command exited with status 0"), 0);
        assert_eq!(status(v1::TaskState::TaskFailed, "Command exited with status 42"), 42);
        assert_eq!(status(v1::TaskState::TaskFailed, "Command terminated with signal SIGKILL"), 1);
        assert_eq!(status(v1::TaskState::TaskKilled, ""), 1);
    }
}
