//! A scheduler session: SUBSCRIBE, wait for SUBSCRIBED, then send calls with the stream id and
//! framework id filled in.
//!
//! Builders for the calls a simple framework needs (launch, decline, acknowledge, kill,
//! teardown) keep callers short. `resubscribe` subscribes again with the session's
//! FrameworkID, waiting for the master to come back, which is how a scheduler survives a
//! master restart or a broken stream; when to call it is the caller's business.

use std::time::Duration;

use agora_proto::codec::Format;
use agora_proto::scheduler::{Call, Event, call, event};
use agora_proto::v1;
use bytes::Bytes;

use crate::http::{self, ClientError, Subscription};

/// A subscribed framework.
pub struct SchedulerSession {
    client: reqwest::Client,
    url: String,
    format: Format,
    /// `host:port` of the master, and the FrameworkInfo to subscribe again with.
    master: String,
    info: v1::FrameworkInfo,
    pub stream_id: String,
    pub framework_id: v1::FrameworkId,
    pub master_info: Option<v1::MasterInfo>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the master refused the subscription: {0}")]
    Refused(String),
    #[error("the master closed the stream before SUBSCRIBED")]
    Closed,
    #[error("the master sent no Mesos-Stream-Id header")]
    NoStreamId,
    #[error(transparent)]
    Leader(#[from] crate::leader::LookupError),
}

/// How long a subscription waits for ZooKeeper to name a leading master.
const LEADER_WAIT: Duration = Duration::from_secs(15);

impl SchedulerSession {
    /// Subscribes `info` at `master` (`host:port`, or a `zk://` URL: then at the master
    /// ZooKeeper names as leader, looked up again by every `resubscribe`) and returns the
    /// session and its event stream, positioned after SUBSCRIBED.
    pub async fn subscribe(
        master: &str,
        info: v1::FrameworkInfo,
        format: Format,
    ) -> Result<(Self, Subscription<Event>), SubscribeError> {
        let address = crate::leader::leading_master(master, LEADER_WAIT).await?;
        Self::subscribe_at(&address, master, info, format).await
    }

    /// Subscribes at `address` (`host:port`); `master` is what the session keeps to find its
    /// master again.
    async fn subscribe_at(
        address: &str,
        master: &str,
        info: v1::FrameworkInfo,
        format: Format,
    ) -> Result<(Self, Subscription<Event>), SubscribeError> {
        let client = http::client();
        let url = format!("http://{address}/api/v1/scheduler");
        let mut subscribe = Call {
            framework_id: info.id.clone(),
            subscribe: Some(call::Subscribe { framework_info: info.clone(), ..Default::default() }),
            ..Default::default()
        };
        subscribe.set_type(call::Type::Subscribe);
        let mut events = Subscription::<Event>::open(&client, &url, format, &subscribe).await?;
        let stream_id = events.stream_id.clone().ok_or(SubscribeError::NoStreamId)?;
        let first = events.next().await?.ok_or(SubscribeError::Closed)?;
        match (first.r#type(), first.subscribed, first.error) {
            (event::Type::Subscribed, Some(subscribed), _) => Ok((
                Self {
                    client,
                    url,
                    format,
                    master: master.to_string(),
                    info,
                    stream_id,
                    framework_id: subscribed.framework_id,
                    master_info: subscribed.master_info,
                },
                events,
            )),
            (_, _, Some(error)) => Err(SubscribeError::Refused(error.message)),
            (other, _, _) => Err(SubscribeError::Refused(format!(
                "expected SUBSCRIBED, got {}",
                other.as_str_name()
            ))),
        }
    }

    /// Subscribes again with this session's FrameworkID and FrameworkInfo: after a master
    /// restart or a broken stream, the framework keeps its tasks. While the master cannot be
    /// reached it retries with a backoff from 100 ms up to 5 s, for `patience` at most; a
    /// refusal (for instance of a framework that was removed) ends it at once.
    pub async fn resubscribe(
        &self,
        patience: Duration,
    ) -> Result<(Self, Subscription<Event>), SubscribeError> {
        let mut info = self.info.clone();
        info.id = Some(self.framework_id.clone());
        let deadline = tokio::time::Instant::now() + patience;
        let mut wait = Duration::from_millis(100);
        // With ZooKeeper, a new leader is tried the moment it is elected rather than after
        // the backoff.
        let mut masters =
            crate::leader::follow(&self.master).map_err(crate::leader::LookupError::from)?;
        loop {
            let master = crate::leader::current(&mut masters, &self.master, LEADER_WAIT).await;
            let attempt = match master {
                Ok(master) => {
                    Self::subscribe_at(&master, &self.master, info.clone(), self.format).await
                }
                Err(e) => Err(e.into()),
            };
            match attempt {
                Err(e @ (SubscribeError::Client(_) | SubscribeError::Leader(_)))
                    if tokio::time::Instant::now() + wait < deadline =>
                {
                    tracing::debug!(error = %e, "the master is not back yet");
                    masters.mark_unchanged();
                    tokio::select! {
                        () = tokio::time::sleep(wait) => wait = (wait * 2).min(Duration::from_secs(5)),
                        // A new leader starts a new backoff: it may answer 503 for a moment
                        // while it recovers.
                        _ = masters.changed() => wait = Duration::from_millis(100),
                    }
                }
                other => return other,
            }
        }
    }

    /// Sends a call with this session's framework id and stream id.
    pub async fn call(&self, mut message: Call) -> Result<(), ClientError> {
        message.framework_id = Some(self.framework_id.clone());
        http::call(&self.client, &self.url, self.format, Some(&self.stream_id), &message)
            .await
            .map(|_| ())
    }

    pub async fn launch(
        &self,
        offer_ids: Vec<v1::OfferId>,
        tasks: Vec<v1::TaskInfo>,
        refuse_seconds: Option<f64>,
    ) -> Result<(), ClientError> {
        let mut operation = v1::offer::Operation {
            launch: Some(v1::offer::operation::Launch { task_infos: tasks }),
            ..Default::default()
        };
        operation.set_type(v1::offer::operation::Type::Launch);
        self.accept(offer_ids, operation, refuse_seconds).await
    }

    /// ACCEPT with one LAUNCH_GROUP: `tasks` run together on `executor` (reference §2.8).
    pub async fn launch_group(
        &self,
        offer_ids: Vec<v1::OfferId>,
        executor: v1::ExecutorInfo,
        tasks: Vec<v1::TaskInfo>,
        refuse_seconds: Option<f64>,
    ) -> Result<(), ClientError> {
        let mut operation = v1::offer::Operation {
            launch_group: Some(v1::offer::operation::LaunchGroup {
                executor,
                task_group: v1::TaskGroupInfo { tasks },
            }),
            ..Default::default()
        };
        operation.set_type(v1::offer::operation::Type::LaunchGroup);
        self.accept(offer_ids, operation, refuse_seconds).await
    }

    /// ACCEPT of `offer_ids` with one operation.
    async fn accept(
        &self,
        offer_ids: Vec<v1::OfferId>,
        operation: v1::offer::Operation,
        refuse_seconds: Option<f64>,
    ) -> Result<(), ClientError> {
        let mut message = Call {
            accept: Some(call::Accept {
                offer_ids,
                operations: vec![operation],
                filters: refuse_seconds.map(|s| v1::Filters { refuse_seconds: Some(s) }),
            }),
            ..Default::default()
        };
        message.set_type(call::Type::Accept);
        self.call(message).await
    }

    pub async fn decline(
        &self,
        offer_ids: Vec<v1::OfferId>,
        refuse_seconds: Option<f64>,
    ) -> Result<(), ClientError> {
        let mut message = Call {
            decline: Some(call::Decline {
                offer_ids,
                filters: refuse_seconds.map(|s| v1::Filters { refuse_seconds: Some(s) }),
            }),
            ..Default::default()
        };
        message.set_type(call::Type::Decline);
        self.call(message).await
    }

    /// Acknowledges an update if it carries a uuid (updates without one need no answer).
    pub async fn acknowledge(&self, status: &v1::TaskStatus) -> Result<(), ClientError> {
        let (Some(uuid), Some(agent_id)) = (&status.uuid, &status.agent_id) else {
            return Ok(());
        };
        let mut message = Call {
            acknowledge: Some(call::Acknowledge {
                agent_id: agent_id.clone(),
                task_id: status.task_id.clone(),
                uuid: Bytes::clone(uuid),
            }),
            ..Default::default()
        };
        message.set_type(call::Type::Acknowledge);
        self.call(message).await
    }

    /// RECONCILE: the latest state of the tasks named, or of every task the master knows for
    /// this framework when `tasks` is empty (implicit reconciliation).
    pub async fn reconcile(
        &self,
        tasks: Vec<(v1::TaskId, Option<v1::AgentId>)>,
    ) -> Result<(), ClientError> {
        let mut message = Call {
            reconcile: Some(call::Reconcile {
                tasks: tasks
                    .into_iter()
                    .map(|(task_id, agent_id)| call::reconcile::Task {
                        task_id: Some(task_id),
                        agent_id,
                    })
                    .collect(),
            }),
            ..Default::default()
        };
        message.set_type(call::Type::Reconcile);
        self.call(message).await
    }

    pub async fn kill(&self, task_id: v1::TaskId) -> Result<(), ClientError> {
        let mut message = Call {
            kill: Some(call::Kill { task_id, agent_id: None, kill_policy: None }),
            ..Default::default()
        };
        message.set_type(call::Type::Kill);
        self.call(message).await
    }

    pub async fn teardown(&self) -> Result<(), ClientError> {
        let mut message = Call::default();
        message.set_type(call::Type::Teardown);
        self.call(message).await
    }

    /// MESSAGE: opaque `data` for one of this framework's executors (delivered at most once).
    pub async fn message(
        &self,
        agent_id: v1::AgentId,
        executor_id: v1::ExecutorId,
        data: Vec<u8>,
    ) -> Result<(), ClientError> {
        let mut message = Call {
            message: Some(call::Message {
                agent_id: Some(agent_id),
                executor_id: Some(executor_id),
                data: Some(data.into()),
            }),
            ..Default::default()
        };
        message.set_type(call::Type::Message);
        self.call(message).await
    }

    /// REVIVE: lift the filters of earlier declines, for a framework that has new work.
    pub async fn revive(&self) -> Result<(), ClientError> {
        let mut message = Call::default();
        message.set_type(call::Type::Revive);
        self.call(message).await
    }
}
