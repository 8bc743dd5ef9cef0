//! An executor session against the agent's executor API: the environment contract of reference
//! §3.4, SUBSCRIBE, and UPDATE calls.
//!
//! The executor API has no stream id; the framework and executor ids identify the caller.

use agora_proto::codec::Format;
use agora_proto::executor::{Call, Event, call};
use agora_proto::v1;

use crate::http::{self, ClientError, Subscription};

/// What the agent tells an executor through its environment.
#[derive(Debug, Clone)]
pub struct ExecutorEnv {
    pub framework_id: String,
    pub executor_id: String,
    pub agent_endpoint: String,
    pub sandbox: Option<String>,
    pub shutdown_grace_period: Option<String>,
    /// `MESOS_CHECKPOINT` is "1": the framework checkpoints, so the agent may restart under the
    /// executor, which then subscribes again instead of exiting.
    pub checkpoint: bool,
    /// `MESOS_RECOVERY_TIMEOUT` (a duration string; the agent sets it only when checkpointing):
    /// how long to keep trying to subscribe again after losing the agent.
    pub recovery_timeout: Option<String>,
    /// `MESOS_SUBSCRIPTION_BACKOFF_MAX` (a duration string; only when checkpointing): the
    /// longest pause between two of those tries.
    pub subscription_backoff_max: Option<String>,
}

impl ExecutorEnv {
    /// Reads `MESOS_FRAMEWORK_ID`, `MESOS_EXECUTOR_ID` and `MESOS_AGENT_ENDPOINT` (required)
    /// and the optional sandbox, grace period and checkpointing settings. Durations stay strings:
    /// the executor parses them and decides what a bad one means.
    pub fn from_env() -> Result<Self, String> {
        let required = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("environment variable {name} is not set"))
        };
        Ok(Self {
            framework_id: required("MESOS_FRAMEWORK_ID")?,
            executor_id: required("MESOS_EXECUTOR_ID")?,
            agent_endpoint: required("MESOS_AGENT_ENDPOINT")?,
            sandbox: std::env::var("MESOS_SANDBOX").ok(),
            shutdown_grace_period: std::env::var("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD").ok(),
            // The agent writes "1" or "0"; anything else is not a promise that it checkpoints.
            checkpoint: std::env::var("MESOS_CHECKPOINT").is_ok_and(|v| v == "1"),
            recovery_timeout: std::env::var("MESOS_RECOVERY_TIMEOUT").ok(),
            subscription_backoff_max: std::env::var("MESOS_SUBSCRIPTION_BACKOFF_MAX").ok(),
        })
    }
}

/// A connection to the agent's executor API.
pub struct ExecutorSession {
    client: reqwest::Client,
    url: String,
    format: Format,
    framework_id: v1::FrameworkId,
    executor_id: v1::ExecutorId,
}

impl ExecutorSession {
    pub fn new(env: &ExecutorEnv, format: Format) -> Self {
        Self {
            client: http::client(),
            url: format!("http://{}/api/v1/executor", env.agent_endpoint),
            format,
            framework_id: v1::FrameworkId { value: env.framework_id.clone() },
            executor_id: v1::ExecutorId { value: env.executor_id.clone() },
        }
    }

    fn call_of(&self, kind: call::Type) -> Call {
        let mut message = Call {
            executor_id: self.executor_id.clone(),
            framework_id: self.framework_id.clone(),
            ..Default::default()
        };
        message.set_type(kind);
        message
    }

    /// Opens the event stream, resending what the agent has not acknowledged.
    pub async fn subscribe(
        &self,
        unacknowledged_tasks: Vec<v1::TaskInfo>,
        unacknowledged_updates: Vec<call::Update>,
    ) -> Result<Subscription<Event>, ClientError> {
        let mut message = self.call_of(call::Type::Subscribe);
        message.subscribe = Some(call::Subscribe { unacknowledged_tasks, unacknowledged_updates });
        Subscription::open(&self.client, &self.url, self.format, &message).await
    }

    pub async fn update(&self, status: v1::TaskStatus) -> Result<(), ClientError> {
        let mut message = self.call_of(call::Type::Update);
        message.update = Some(call::Update { status });
        http::call(&self.client, &self.url, self.format, None, &message).await.map(|_| ())
    }

    /// MESSAGE: opaque `data` for the framework's scheduler (delivered at most once).
    pub async fn message(&self, data: Vec<u8>) -> Result<(), ClientError> {
        let mut message = self.call_of(call::Type::Message);
        message.message = Some(call::Message { data: data.into() });
        http::call(&self.client, &self.url, self.format, None, &message).await.map(|_| ())
    }
}
