//! The git-like operator commands of `agora` (`agent list`, `framework list|teardown`,
//! `task list|show|log|ls|kill`, `role list`, `quota get|set`, `reserve`, `unreserve`,
//! `events`): their arguments, and what they share: the master to ask (`--master`, else
//! `AGORA_MASTER`, else 127.0.0.1:5050), the spinner shown while waiting, and error messages
//! that say what was tried and what to do about it.
//!
//! Every command speaks the Mesos v1 operator API (`POST /api/v1` on the master, through
//! `agora_client::operator`) and the agents' files API, so it works against any master that
//! serves them. The daemons' own subcommands (`master`, `agent` with flags, `dev`) stay in
//! `main.rs`; tables and lines are in `views.rs`, their pieces in `render.rs`.

mod change;
mod events;
mod files;
mod render;
mod views;

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use agora_client::ClientError;
use agora_client::operator::Operator;
use agora_proto::Format;
use agora_proto::master::{Call, Response, call};
use clap::{Args, Subcommand};

/// Which master to talk to; every operator command takes it.
#[derive(Args, Clone, Debug)]
pub(crate) struct Target {
    /// The master, as host:port.
    #[arg(long, env = "AGORA_MASTER", default_value = "127.0.0.1:5050")]
    pub(crate) master: String,
}

/// The arguments of a read verb: the master, and whether to print JSON.
#[derive(Args, Clone, Debug)]
pub(crate) struct ReadArgs {
    #[command(flatten)]
    target: Target,
    /// Print the master's answer as JSON (Mesos's mapping of the operator API's Response).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Clone, Debug)]
pub(crate) enum AgentCommand {
    /// List the agents registered with the master.
    List(ReadArgs),
}

#[derive(Subcommand, Clone, Debug)]
pub(crate) enum FrameworkCommand {
    /// List the frameworks the master knows.
    List {
        #[command(flatten)]
        read: ReadArgs,
        /// Include completed frameworks.
        #[arg(long)]
        all: bool,
    },
    /// Remove a framework and kill all of its tasks (TEARDOWN).
    Teardown {
        /// The framework's id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand, Clone, Debug)]
pub(crate) enum TaskCommand {
    /// List the active tasks (with --all the completed ones too).
    List {
        #[command(flatten)]
        read: ReadArgs,
        /// Include completed tasks.
        #[arg(long)]
        all: bool,
    },
    /// Show one task: where it runs, its resources and its status updates.
    Show {
        /// The task's id.
        id: String,
        #[command(flatten)]
        target: Target,
        /// Print the task as JSON (Mesos's mapping of `Task`, as GET_STATE has it).
        #[arg(long)]
        json: bool,
    },
    /// Print a task's stdout (or stderr) from its sandbox on its agent.
    Log {
        /// The task's id.
        id: String,
        /// Print stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        /// Keep printing what the task writes until it ends.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List the files of a task's sandbox, or of PATH inside it.
    Ls {
        /// The task's id.
        id: String,
        /// A directory inside the sandbox.
        path: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Print the entries as JSON (the fields of the agent's `/files/browse`).
        #[arg(long)]
        json: bool,
    },
    /// Kill a task (not possible through the operator API: explains what to do instead).
    Kill {
        /// The task's id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand, Clone, Debug)]
pub(crate) enum RoleCommand {
    /// List the roles with their weights and allocations.
    List(ReadArgs),
}

#[derive(Subcommand, Clone, Debug)]
pub(crate) enum QuotaCommand {
    /// Show the quota of every role, or of ROLE.
    Get {
        /// Only this role.
        role: Option<String>,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Set a role's quota; a quota without guarantees and limits removes it.
    Set {
        /// The role.
        role: String,
        /// Resources the role is guaranteed, e.g. `cpus:2;mem:1024`.
        #[arg(long)]
        guarantees: Option<String>,
        /// Resources the role may use at most, e.g. `cpus:4;mem:4096`.
        #[arg(long)]
        limits: Option<String>,
        /// Apply even if the guarantees exceed the cluster or a limit is below current use.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// `agora reserve` and `agora unreserve`.
#[derive(Args, Clone, Debug)]
pub(crate) struct ReserveArgs {
    /// The agent whose resources to (un)reserve.
    agent_id: String,
    /// Resources, e.g. `cpus:1;mem:128`.
    resources: String,
    /// The role the reservation is (or was) for.
    #[arg(long)]
    role: String,
    /// The principal to record in the reservation.
    #[arg(long)]
    principal: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `agora events`.
#[derive(Args, Clone, Debug)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    target: Target,
    /// Print each event as one line of JSON (Mesos's mapping of the operator Event).
    #[arg(long)]
    json: bool,
}

/// One operator command, as `main.rs` hands it over.
pub(crate) enum Verb {
    Agent(AgentCommand),
    Framework(FrameworkCommand),
    Task(TaskCommand),
    Role(RoleCommand),
    Quota(QuotaCommand),
    Reserve(ReserveArgs),
    Unreserve(ReserveArgs),
    Events(EventsArgs),
}

/// Runs one operator command; errors come back ready to print.
pub(crate) async fn run(verb: Verb) -> anyhow::Result<ExitCode> {
    match verb {
        Verb::Agent(AgentCommand::List(read)) => {
            let response = Master::new(&read.target)?.query(call::Type::GetAgents).await?;
            print_read(&read, &response, || views::agents(&response, now()))
        }
        Verb::Framework(FrameworkCommand::List { read, all }) => {
            let mut response = Master::new(&read.target)?.query(call::Type::GetFrameworks).await?;
            if !all && let Some(got) = &mut response.get_frameworks {
                got.completed_frameworks.clear();
            }
            print_read(&read, &response, || views::frameworks(&response, all, now()))
        }
        Verb::Framework(FrameworkCommand::Teardown { id, target }) => {
            change::teardown(&Master::new(&target)?, &id).await
        }
        Verb::Task(TaskCommand::List { read, all }) => {
            let mut response = Master::new(&read.target)?.query(call::Type::GetTasks).await?;
            if !all && let Some(got) = &mut response.get_tasks {
                got.completed_tasks.clear();
            }
            print_read(&read, &response, || views::tasks(&response, all, now()))
        }
        Verb::Task(TaskCommand::Show { id, target, json }) => {
            files::show(&Master::new(&target)?, &id, json).await
        }
        Verb::Task(TaskCommand::Log { id, stderr, follow, target }) => {
            files::log(&Master::new(&target)?, &id, stderr, follow).await
        }
        Verb::Task(TaskCommand::Ls { id, path, target, json }) => {
            files::ls(&Master::new(&target)?, &id, path.as_deref(), json).await
        }
        Verb::Task(TaskCommand::Kill { id, target }) => {
            change::kill(&Master::new(&target)?, &id).await
        }
        Verb::Role(RoleCommand::List(read)) => {
            let response = Master::new(&read.target)?.query(call::Type::GetRoles).await?;
            print_read(&read, &response, || views::roles(&response))
        }
        Verb::Quota(QuotaCommand::Get { role, read }) => {
            let mut response = Master::new(&read.target)?.query(call::Type::GetQuota).await?;
            if let (Some(role), Some(quota)) = (&role, &mut response.get_quota) {
                quota.status.configs.retain(|c| &c.role == role);
            }
            print_read(&read, &response, || views::quota(&response, role.as_deref()))
        }
        Verb::Quota(QuotaCommand::Set { role, guarantees, limits, force, target }) => {
            change::set_quota(
                &Master::new(&target)?,
                &role,
                guarantees.as_deref(),
                limits.as_deref(),
                force,
            )
            .await
        }
        Verb::Reserve(args) => change::reserve(&args, true).await,
        Verb::Unreserve(args) => change::reserve(&args, false).await,
        Verb::Events(args) => events::events(&Master::new(&args.target)?, args.json).await,
    }
}

/// Prints a read verb's answer: the Response as JSON with `--json`, the table otherwise.
fn print_read(
    read: &ReadArgs,
    response: &Response,
    table: impl FnOnce() -> String,
) -> anyhow::Result<ExitCode> {
    let text = if read.json { render::json(response) } else { table() };
    out(&text);
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a closed pipe (`agora task list | head`) is not an error worth a panic.
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// Seconds since the epoch, for ages.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs `work` with a spinner saying `message` on stderr, when stderr is a terminal (never in
/// pipes, logs or tests).
pub(crate) async fn waiting<T>(message: &str, work: impl Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let spinner =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    spinner.set_style(indicatif::ProgressStyle::default_spinner());
    spinner.set_message(message.to_string());
    spinner.enable_steady_tick(Duration::from_millis(100));
    let result = work.await;
    spinner.finish_and_clear();
    result
}

/// How long a command waits for ZooKeeper to name a leading master.
const LEADER_WAIT: Duration = Duration::from_secs(15);

/// The master one command talks to: the `--master` address, or the leader ZooKeeper names for
/// a `zk://` URL, followed while the command runs (`agora events` goes on with the new leader).
pub(crate) struct Master {
    /// What `--master` said.
    source: String,
    masters: agora_client::leader::Masters,
    /// The operator client for the master last used, and its address.
    current: std::sync::Mutex<(Operator, String)>,
}

impl Master {
    fn new(target: &Target) -> anyhow::Result<Master> {
        let masters = agora_client::leader::follow(&target.master)
            .map_err(|e| anyhow::anyhow!("--master {}: {e}", target.master))?;
        let address = masters.borrow().clone().unwrap_or_else(|| target.master.clone());
        // JSON on the wire: any Mesos-compatible master speaks it, and it is what a person
        // debugging with curl sees too.
        let operator = Operator::new(&address, Format::Json);
        Ok(Master {
            source: target.master.clone(),
            masters,
            current: std::sync::Mutex::new((operator, address)),
        })
    }

    /// The operator client for the current master, once there is one.
    pub(crate) async fn operator(&self) -> anyhow::Result<Operator> {
        let mut masters = self.masters.clone();
        let wait = agora_client::leader::current(&mut masters, &self.source, LEADER_WAIT);
        let address = waiting("finding the leading master in ZooKeeper", wait).await?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.1 != address {
            *current = (Operator::new(&address, Format::Json), address);
        }
        Ok(current.0.clone())
    }

    /// The current master's address, for messages.
    pub(crate) fn address(&self) -> String {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    /// A query that expects its Response.
    pub(crate) async fn query(&self, kind: call::Type) -> anyhow::Result<Response> {
        let operator = self.operator().await?;
        let message = format!("asking the master at {} ({})", self.address(), kind.as_str_name());
        waiting(&message, operator.query(kind)).await.map_err(|e| self.explain(e))
    }

    /// Any call; mutating calls answer with no Response.
    pub(crate) async fn call(&self, message: &Call) -> anyhow::Result<Option<Response>> {
        let operator = self.operator().await?;
        let text =
            format!("asking the master at {} ({})", self.address(), message.r#type().as_str_name());
        waiting(&text, operator.call(message)).await.map_err(|e| self.explain(e))
    }

    /// An error from the master, said so that the operator knows what was tried and what to do.
    pub(crate) fn explain(&self, error: ClientError) -> anyhow::Error {
        let hint = format!(
            "is the master running at {}? Set --master or AGORA_MASTER to reach another one",
            self.address()
        );
        explain(error, "the master", &hint)
    }
}

/// Turns a client error into a message naming the URL tried, the status and message of a
/// refusal, and `hint` for a peer that cannot be reached.
pub(crate) fn explain(error: ClientError, who: &str, hint: &str) -> anyhow::Error {
    match error {
        ClientError::Http { url, source } => {
            let cause = root_cause(&source);
            let what = if source.is_timeout() { "timed out" } else { "could not be reached" };
            anyhow::anyhow!("{who} at {url} {what} ({cause}); {hint}")
        }
        ClientError::Status { url, status, body } => {
            let reason = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            let body = body.trim();
            let advice = match status {
                501 => "; this master does not serve that call (yet)",
                307 => "; this is not the leading master: point --master at the leader",
                503 => "; it is not ready (recovering or without a leader): try again shortly",
                401 | 403 => "; it refused the request's credentials",
                _ => "",
            };
            let body = if body.is_empty() { "(no message)" } else { body };
            anyhow::anyhow!("{who} at {url} answered {status} {reason}: {body}{advice}")
        }
        other => anyhow::anyhow!("{who} sent an answer that cannot be read: {other}"),
    }
}

/// The innermost cause of an error, which for a connection failure is the useful part
/// ("Connection refused").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_url_status_and_message() {
        let error = ClientError::Status {
            url: "http://m:1/api/v1".into(),
            status: 501,
            body: "GET_ROLES is not implemented\n".into(),
        };
        assert_eq!(
            explain(error, "the master", "hint").to_string(),
            "the master at http://m:1/api/v1 answered 501 Not Implemented: GET_ROLES is not \
             implemented; this master does not serve that call (yet)"
        );
        let error = ClientError::Status { url: "u".into(), status: 409, body: String::new() };
        assert_eq!(
            explain(error, "the master", "h").to_string(),
            "the master at u answered 409 Conflict: (no message)"
        );
    }
}
