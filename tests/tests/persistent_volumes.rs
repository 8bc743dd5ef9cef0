//! Dynamic reservations and persistent volumes end to end against a real `agora dev`: one
//! ACCEPT reserves resources for the framework's role, creates a volume on the reserved disk
//! and launches a task that writes into it; a later task on a later offer finds the data.

use agora_client::Subscription;
use agora_client::scheduler::SchedulerSession;
use agora_core::convert;
use agora_core::resources::{DiskInfo, Reservation, Resource, Resources, Scalar, Value};
use agora_proto::scheduler::{Call, Event, call};
use agora_proto::{Format, v1};
use agora_tests::{Cluster, ClusterOptions, command_task, next_offers, next_update};
use anyhow::bail;

fn reserved(name: &str, amount: f64) -> Resource {
    Resource::new(name, "*", Value::Scalar(Scalar::from_f64(amount)))
        .pushed(Reservation::new_dynamic("web", None))
}

fn volume() -> Resource {
    reserved("disk", 100.0).with_disk(DiskInfo::persistent_volume("vol1", None, "data"))
}

fn operation(kind: v1::offer::operation::Type, resources: Vec<Resource>) -> v1::offer::Operation {
    use v1::offer::operation as o;
    let wire = convert::resources_to_proto(&resources.into_iter().collect(), None);
    let mut op = v1::offer::Operation::default();
    op.set_type(kind);
    match kind {
        o::Type::Reserve => op.reserve = Some(o::Reserve { resources: wire, source: vec![] }),
        _ => op.create = Some(o::Create { volumes: wire }),
    }
    op
}

fn volume_task(id: &str, agent: &v1::AgentId, command: &str) -> v1::TaskInfo {
    let mut task = command_task(id, agent, "cpus:0.1", command);
    let resources: Resources =
        [reserved("cpus", 0.5), reserved("mem", 64.0), volume()].into_iter().collect();
    task.resources = convert::resources_to_proto(&resources, None);
    task
}

async fn accept(
    session: &SchedulerSession,
    offer: &v1::Offer,
    operations: Vec<v1::offer::Operation>,
) -> anyhow::Result<()> {
    let mut c = Call {
        accept: Some(call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations,
            filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
        }),
        ..Default::default()
    };
    c.set_type(call::Type::Accept);
    Ok(session.call(c).await?)
}

async fn finish(
    session: &SchedulerSession,
    events: &mut Subscription<Event>,
) -> anyhow::Result<()> {
    loop {
        let status = next_update(session, events).await?;
        session.acknowledge(&status).await?;
        match status.state() {
            v1::TaskState::TaskFinished => return Ok(()),
            s if agora_core::status::is_terminal(s) => bail!("task ended {s:?}: {status:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_volume_keeps_its_data_between_tasks() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(ClusterOptions {
        resources: "cpus:2;mem:1024;disk:1000".into(),
        ..Default::default()
    })?;
    let mut info =
        v1::FrameworkInfo { user: "root".into(), name: "volumes".into(), ..Default::default() };
    #[expect(deprecated, reason = "a single-role framework names its role this way")]
    {
        info.role = Some("web".into());
    }
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, info, Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let writer = volume_task("writer", &offer.agent_id, "echo persisted > data/file");
    let mut launch = v1::offer::Operation::default();
    launch.set_type(v1::offer::operation::Type::Launch);
    launch.launch = Some(v1::offer::operation::Launch { task_infos: vec![writer] });
    use v1::offer::operation::Type as T;
    let operations = vec![
        operation(
            T::Reserve,
            vec![reserved("cpus", 0.5), reserved("mem", 64.0), reserved("disk", 100.0)],
        ),
        operation(T::Create, vec![volume()]),
        launch,
    ];
    accept(&session, &offer, operations).await?;
    finish(&session, &mut events).await?;

    // The reservation and the volume come back in a later offer, with the data in it.
    let offer = loop {
        let offer = next_offers(&mut events).await?.remove(0);
        let offered = convert::resources_from_proto(&offer.resources)?;
        if offered.persistence_ids().contains("vol1") {
            break offer;
        }
        session.decline(vec![offer.id.clone()], Some(0.0)).await?;
    };
    let reader = volume_task("reader", &offer.agent_id, "test \"$(cat data/file)\" = persisted");
    let mut launch = v1::offer::Operation::default();
    launch.set_type(v1::offer::operation::Type::Launch);
    launch.launch = Some(v1::offer::operation::Launch { task_infos: vec![reader] });
    accept(&session, &offer, vec![launch]).await?;
    finish(&session, &mut events).await
}
