//! The [`Link`] against a fake agent on 127.0.0.1: a checkpointing executor whose event stream
//! breaks subscribes again with what the agent has not acknowledged, and the update sender
//! does not send again what that SUBSCRIBE carried; without checkpointing, or once the recovery
//! timeout runs out, the link reports the agent lost.
//!
//! The fake speaks just enough of the executor API: it records every call, answers UPDATE with
//! 202, and answers SUBSCRIBE with a stream that starts with SUBSCRIBED and that the test then
//! writes to and closes. The agent's own behaviour is tested on the agent's side.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agora_proto::executor::{Call, Event, call, event};
use agora_proto::recordio;
use agora_proto::v1::TaskState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::*;
use crate::recovery::Recovery;

/// How long a test waits for something that should happen at once.
const SOON: Duration = Duration::from_secs(5);

struct Fake {
    calls: mpsc::UnboundedSender<Call>,
    /// The write end of each SUBSCRIBE's event stream; dropping it closes the stream.
    streams: mpsc::UnboundedSender<mpsc::UnboundedSender<Bytes>>,
    /// Answer SUBSCRIBE with 400, as an agent that lost the executor does.
    refuse: AtomicBool,
}

struct Agent {
    endpoint: String,
    calls: mpsc::UnboundedReceiver<Call>,
    streams: mpsc::UnboundedReceiver<mpsc::UnboundedSender<Bytes>>,
    fake: Arc<Fake>,
}

impl Agent {
    async fn start() -> Self {
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let (streams_tx, streams) = mpsc::unbounded_channel();
        let fake =
            Arc::new(Fake { calls: calls_tx, streams: streams_tx, refuse: AtomicBool::new(false) });
        let app = axum::Router::new()
            .route("/api/v1/executor", axum::routing::post(answer))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, calls, streams, fake }
    }

    fn env(&self) -> ExecutorEnv {
        ExecutorEnv {
            framework_id: "f".into(),
            executor_id: "e".into(),
            agent_endpoint: self.endpoint.clone(),
            sandbox: None,
            shutdown_grace_period: None,
            checkpoint: true,
            recovery_timeout: None,
            subscription_backoff_max: None,
        }
    }

    async fn call(&mut self) -> Call {
        tokio::time::timeout(SOON, self.calls.recv()).await.expect("a call").expect("the fake runs")
    }

    async fn stream(&mut self) -> mpsc::UnboundedSender<Bytes> {
        tokio::time::timeout(SOON, self.streams.recv())
            .await
            .expect("a subscription")
            .expect("the fake runs")
    }
}

async fn answer(State(fake): State<Arc<Fake>>, body: Bytes) -> Response {
    let Ok(call) = Format::Protobuf.decode::<Call>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let subscribe = call.r#type() == call::Type::Subscribe;
    let _ = fake.calls.send(call);
    if !subscribe {
        return StatusCode::ACCEPTED.into_response();
    }
    if fake.refuse.load(Ordering::SeqCst) {
        return (StatusCode::BAD_REQUEST, "Executor cannot be found").into_response();
    }
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let mut subscribed = Event::default();
    subscribed.set_type(event::Type::Subscribed);
    subscribed.subscribed = Some(event::Subscribed::default());
    let _ = tx.send(record(&subscribed));
    let _ = fake.streams.send(tx);
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    ([(header::CONTENT_TYPE, Format::Protobuf.media_type())], Body::from_stream(body))
        .into_response()
}

fn record(event: &Event) -> Bytes {
    Bytes::from(recordio::encode(&Format::Protobuf.encode(event)))
}

fn launch(task_id: &str) -> (Event, v1::TaskInfo) {
    let task = v1::TaskInfo {
        name: "a task".into(),
        task_id: v1::TaskId { value: task_id.into() },
        ..Default::default()
    };
    let mut event = Event::default();
    event.set_type(event::Type::Launch);
    event.launch = Some(event::Launch { task: task.clone() });
    (event, task)
}

fn acknowledged(task_id: &str, uuid: u8) -> Event {
    let mut event = Event::default();
    event.set_type(event::Type::Acknowledged);
    event.acknowledged = Some(event::Acknowledged {
        task_id: v1::TaskId { value: task_id.into() },
        uuid: Bytes::from(vec![uuid; 16]),
    });
    event
}

fn update(task_id: &str, uuid: u8, state: TaskState) -> Update {
    Update {
        uuid: [uuid; 16],
        task_id: task_id.into(),
        state,
        message: None,
        healthy: None,
        check_status: None,
        reason: None,
    }
}

async fn next(link: &mut Link) -> Incoming {
    tokio::time::timeout(SOON, link.next()).await.expect("the link answers")
}

async fn expect_event(link: &mut Link, expected: &str) -> AgentEvent {
    match next(link).await {
        Incoming::Event(event) => event,
        Incoming::Disconnected(reason) => panic!("expected {expected}, lost the agent: {reason}"),
    }
}

fn uuids_of(updates: &[call::Update]) -> Vec<u8> {
    updates.iter().map(|u| u.status.uuid.as_ref().map_or(0, |b| b[0])).collect()
}

#[tokio::test]
async fn a_checkpointing_executor_resubscribes_with_what_is_unacknowledged() {
    let mut agent = Agent::start().await;
    let recovery =
        Recovery { timeout: Duration::from_secs(10), backoff_max: Duration::from_millis(200) };
    let mut link = Link::open(&agent.env(), Some(recovery)).await.expect("subscribes");
    let first = agent.call().await;
    assert_eq!(first.r#type(), call::Type::Subscribe);
    assert_eq!(first.subscribe, Some(call::Subscribe::default()));
    let stream = agent.stream().await;
    assert!(matches!(expect_event(&mut link, "SUBSCRIBED").await, AgentEvent::Subscribed { .. }));

    let (event, task) = launch("t");
    stream.send(record(&event)).expect("the stream is open");
    assert!(matches!(expect_event(&mut link, "LAUNCH").await, AgentEvent::Launch(_)));
    link.send(update("t", 1, TaskState::TaskStarting));
    let sent = agent.call().await;
    assert_eq!(sent.r#type(), call::Type::Update);
    let starting = sent.update.expect("an update").status;

    // The agent restarts: the stream ends, and the next thing the core sees is the second
    // SUBSCRIBED, once the link has subscribed again with the task and its update.
    drop(stream);
    assert!(matches!(expect_event(&mut link, "SUBSCRIBED").await, AgentEvent::Subscribed { .. }));
    let again = agent.call().await;
    assert_eq!(again.r#type(), call::Type::Subscribe);
    let subscribe = again.subscribe.expect("a subscribe payload");
    assert_eq!(subscribe.unacknowledged_tasks, [task]);
    assert_eq!(subscribe.unacknowledged_updates, [call::Update { status: starting }]);
    let stream = agent.stream().await;

    // The update the SUBSCRIBE carried is not sent again; a new one is.
    link.send(update("t", 2, TaskState::TaskRunning));
    let sent = agent.call().await;
    assert_eq!(sent.r#type(), call::Type::Update);
    assert_eq!(uuids_of(&[sent.update.expect("an update")]), [2]);

    // An ack settles the task and its update; the next SUBSCRIBE carries only what is left.
    stream.send(record(&acknowledged("t", 1))).expect("the stream is open");
    assert_eq!(
        expect_event(&mut link, "ACKNOWLEDGED").await,
        AgentEvent::Acknowledged { uuid: vec![1; 16] }
    );
    drop(stream);
    assert!(matches!(expect_event(&mut link, "SUBSCRIBED").await, AgentEvent::Subscribed { .. }));
    let subscribe = agent.call().await.subscribe.expect("a subscribe payload");
    assert!(subscribe.unacknowledged_tasks.is_empty());
    assert_eq!(uuids_of(&subscribe.unacknowledged_updates), [2]);
    link.close().await;
}

#[tokio::test]
async fn updates_queued_while_the_agent_is_away_follow_the_subscribe_in_order() {
    let mut agent = Agent::start().await;
    let recovery =
        Recovery { timeout: Duration::from_secs(10), backoff_max: Duration::from_millis(100) };
    let mut link = Link::open(&agent.env(), Some(recovery)).await.expect("subscribes");
    agent.call().await;
    let stream = agent.stream().await;
    expect_event(&mut link, "SUBSCRIBED").await;

    // The agent refuses the executor while it recovers; the link keeps trying meanwhile.
    agent.fake.refuse.store(true, Ordering::SeqCst);
    drop(stream);
    let lost = tokio::time::timeout(Duration::from_millis(500), link.next()).await;
    assert!(lost.is_err(), "the link must keep trying, not report the agent lost");
    let refused = agent.call().await;
    assert_eq!(refused.r#type(), call::Type::Subscribe);

    // Updates queued now wait for the new subscription rather than racing it.
    link.send(update("t", 1, TaskState::TaskRunning));
    link.send(update("t", 2, TaskState::TaskFinished));
    agent.fake.refuse.store(false, Ordering::SeqCst);
    expect_event(&mut link, "SUBSCRIBED").await;
    let mut subscribes = Vec::new();
    let mut updates = Vec::new();
    // The refused SUBSCRIBEs before the good one; then nothing but the SUBSCRIBE carried them.
    while let Ok(Some(call)) =
        tokio::time::timeout(Duration::from_millis(300), agent.calls.recv()).await
    {
        match call.r#type() {
            call::Type::Subscribe => subscribes.push(call.subscribe.expect("a payload")),
            _ => updates.push(call.update.expect("a payload")),
        }
    }
    let last = subscribes.last().expect("a successful SUBSCRIBE");
    // Each attempt carries what was unacknowledged when it started; the last one has both.
    assert_eq!(uuids_of(&last.unacknowledged_updates), [1, 2]);
    assert_eq!(uuids_of(&updates), Vec::<u8>::new());
    link.close().await;
}

#[tokio::test]
async fn the_agent_is_lost_without_checkpointing_or_after_the_recovery_timeout() {
    let mut agent = Agent::start().await;
    let mut link = Link::open(&agent.env(), None).await.expect("subscribes");
    agent.call().await;
    let stream = agent.stream().await;
    expect_event(&mut link, "SUBSCRIBED").await;
    drop(stream);
    assert!(matches!(next(&mut link).await, Incoming::Disconnected(_)));
    // It stays lost, and never subscribed again.
    assert!(matches!(next(&mut link).await, Incoming::Disconnected(_)));
    assert!(agent.calls.try_recv().is_err());
    link.close().await;

    let recovery =
        Recovery { timeout: Duration::from_millis(600), backoff_max: Duration::from_millis(100) };
    let mut link = Link::open(&agent.env(), Some(recovery)).await.expect("subscribes");
    agent.call().await;
    let stream = agent.stream().await;
    expect_event(&mut link, "SUBSCRIBED").await;
    agent.fake.refuse.store(true, Ordering::SeqCst);
    drop(stream);
    let Incoming::Disconnected(reason) = next(&mut link).await else {
        panic!("the recovery timeout ends the link");
    };
    assert!(reason.contains("did not come back"), "{reason}");
    // It tried more than once, quickly at first.
    let mut attempts = 0;
    while agent.calls.try_recv().is_ok() {
        attempts += 1;
    }
    assert!(attempts >= 3, "{attempts} attempts");
    link.close().await;
}
