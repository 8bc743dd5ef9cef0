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
}

impl ExecutorEnv {
    /// Reads `MESOS_FRAMEWORK_ID`, `MESOS_EXECUTOR_ID` and `MESOS_AGENT_ENDPOINT` (required)
    /// and the optional sandbox and grace period.
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
}
