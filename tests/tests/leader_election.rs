//! Leader election and detection (`agora-leader`) against a real ZooKeeper: contenders
//! create Mesos's `json.info_` znodes, the lowest sequence leads, a withdrawn or expired
//! leader hands over, detectors follow, and an ensemble that loses one member carries on;
//! the leader's registry in ZooKeeper rides through a stalled server and is fenced.

use std::time::Duration;

use agora_core::master::RegistryOp;
use agora_leader::{Standing, ZkUrl, contend, detect, zk};
use agora_master::registry::RegistryError;
use agora_master::registry::zk::ZkStore;
use agora_proto::{internal, v1};
use agora_tests::zookeeper::{self, Ensemble, ZooKeeper};
use anyhow::{Context, bail};
use tokio::sync::watch;

const SESSION: Duration = Duration::from_secs(2);

fn info(name: &str, port: u16) -> v1::MasterInfo {
    v1::MasterInfo {
        id: name.into(),
        ip: u32::from_le_bytes([127, 0, 0, 1]),
        port: u32::from(port),
        pid: Some(format!("master@127.0.0.1:{port}")),
        hostname: Some(name.into()),
        version: Some("1.11.0".into()),
        address: Some(v1::Address {
            hostname: Some(name.into()),
            ip: Some("127.0.0.1".into()),
            port: i32::from(port),
        }),
        ..Default::default()
    }
}

async fn until<T: Clone>(
    rx: &mut watch::Receiver<T>,
    what: &str,
    done: impl Fn(&T) -> bool,
) -> anyhow::Result<T> {
    let wait = rx.wait_for(|value| done(value));
    match tokio::time::timeout(Duration::from_secs(30), wait).await {
        Ok(Ok(value)) => Ok(value.clone()),
        Ok(Err(_)) => bail!("{what}: the sender is gone"),
        Err(_) => bail!("{what}: not within 30 s (last: {})", std::any::type_name::<T>()),
    }
}

fn leading(standing: &Standing) -> bool {
    matches!(standing, Standing::Leading { .. })
}

fn following(port: u16) -> impl Fn(&Standing) -> bool {
    move |standing| matches!(standing, Standing::Following { leader: Some(info) } if info.port == u32::from(port))
}

fn detected(port: u16) -> impl Fn(&Option<v1::MasterInfo>) -> bool {
    move |leader| leader.as_ref().is_some_and(|info| info.port == u32::from(port))
}

#[tokio::test]
async fn the_oldest_contender_leads_and_hands_over_when_it_goes() -> anyhow::Result<()> {
    if !zookeeper::available("leader election") {
        return Ok(());
    }
    let server = ZooKeeper::start()?;
    let url: ZkUrl = server.url("/agora/test").parse()?;
    let mut detector = detect(url.clone(), SESSION);

    let (first, mut first_standing) = contend(&url, &info("m1", 5001), SESSION).await?;
    until(&mut first_standing, "m1 leads", leading).await?;
    let (second, mut second_standing) = contend(&url, &info("m2", 5002), SESSION).await?;
    until(&mut second_standing, "m2 follows m1", following(5001)).await?;
    until(&mut detector, "the detector sees m1", detected(5001)).await?;
    assert_eq!(*first_standing.borrow(), Standing::Leading { contenders: 2 });

    // The znodes are Mesos's: json.info_ and ten digits, holding MasterInfo JSON that
    // pymesos reads (address.ip, address.port).
    let client = agora_leader::connect(&url, SESSION).await?;
    let mut children = client.list_children(&url.path).await?;
    children.sort();
    assert_eq!(children.len(), 2, "{children:?}");
    assert!(first.node().ends_with(&children[0]), "{} vs {children:?}", first.node());
    assert!(children.iter().all(|c| c.len() == "json.info_".len() + 10), "{children:?}");
    let (data, _) = client.get_data(first.node()).await?;
    let json: serde_json::Value = serde_json::from_slice(&data).context("MasterInfo JSON")?;
    assert_eq!(json["address"]["ip"], "127.0.0.1");
    assert_eq!(json["address"]["port"], 5001);
    assert_eq!(json["pid"], "master@127.0.0.1:5001");

    // The leader withdraws: its session closes, its znode goes, the next one leads.
    drop(first);
    drop(first_standing);
    until(&mut second_standing, "m2 leads", leading).await?;
    until(&mut detector, "the detector sees m2", detected(5002)).await?;
    assert!(second.node().ends_with(&client.list_children(&url.path).await?[0]));
    Ok(())
}

#[tokio::test]
async fn a_leader_whose_session_is_gone_knows_and_its_fenced_writes_fail() -> anyhow::Result<()> {
    if !zookeeper::available("leader election") {
        return Ok(());
    }
    let mut server = ZooKeeper::start()?;
    let url: ZkUrl = server.url("/agora/fence").parse()?;
    let (leader, mut standing) = contend(&url, &info("m1", 5001), SESSION).await?;
    until(&mut standing, "m1 leads", leading).await?;
    let record = url.child("record");
    let client = agora_leader::connect(&url, SESSION).await?;
    client
        .create(&record, b"0", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
        .await?;
    // A write checked against the candidacy znode goes through while the candidacy lives.
    let mut writer = leader.client().new_check_writer(leader.node(), None)?;
    writer.add_set_data(&record, b"1", None)?;
    writer.commit().await?;

    // ZooKeeper goes away for longer than the session timeout: the leader must give up.
    server.kill();
    let lost = until(&mut standing, "m1 gives up", |s| matches!(s, Standing::Lost(_))).await?;
    println!("standing after ZooKeeper went away: {lost:?}");
    // A master that lost its candidacy exits; so does its session here. (Kept alive, its
    // client could bring the session back if the server returned before the client gave up.)
    let node = leader.node().to_string();
    drop((leader, standing));
    server.restart("org.apache.zookeeper.server.ZooKeeperServerMain")?;
    server.wait_serving()?;

    // The old session expired on the server: its znode is gone, so a write fenced on it
    // fails, whichever session carries it.
    let fresh = agora_leader::connect(&url, SESSION).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let children = fresh.list_children(&url.path).await?;
        if !children.iter().any(|c| node.as_str().ends_with(c.as_str())) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the old leader's znode outlived its session: {children:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut writer = fresh.new_check_writer(node.as_str(), None)?;
    writer.add_set_data(&record, b"2", None)?;
    assert!(writer.commit().await.is_err(), "a write fenced on a dead candidacy went through");
    let (data, _) = fresh.get_data(&record).await?;
    assert_eq!(data, b"1");
    Ok(())
}

#[tokio::test]
async fn an_ensemble_that_loses_one_member_keeps_its_leader() -> anyhow::Result<()> {
    if !zookeeper::available("ZooKeeper ensemble") {
        return Ok(());
    }
    let mut ensemble = Ensemble::start(3)?;
    let url: ZkUrl = ensemble.url("/agora/ensemble").parse()?;
    let (_first, mut first_standing) = contend(&url, &info("m1", 5001), SESSION * 3).await?;
    until(&mut first_standing, "m1 leads", leading).await?;
    let (_second, mut second_standing) = contend(&url, &info("m2", 5002), SESSION * 3).await?;
    until(&mut second_standing, "m2 follows", following(5001)).await?;

    // Kill each member in turn's worth of risk: here the first one, which the clients most
    // likely connected to.
    ensemble.servers[0].kill();
    // A third contender joins through the surviving members; the leader has not changed.
    let (_third, mut third_standing) = contend(&url, &info("m3", 5003), SESSION * 3).await?;
    until(&mut third_standing, "m3 follows m1", following(5001)).await?;
    tokio::time::sleep(SESSION * 4).await;
    assert_eq!(*first_standing.borrow(), Standing::Leading { contenders: 3 });
    assert!(following(5001)(&second_standing.borrow()));
    Ok(())
}

fn framework(id: &str) -> RegistryOp {
    RegistryOp::AddFramework(internal::RegistryFramework {
        framework_info: v1::FrameworkInfo {
            id: Some(v1::FrameworkId { value: id.into() }),
            name: id.into(),
            user: "nobody".into(),
            ..Default::default()
        },
        removed_time: None,
    })
}

fn signal(signal: &str, pid: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill").args([signal, pid]).status()?;
    anyhow::ensure!(status.success(), "kill {signal} {pid}: {status}");
    Ok(())
}

/// The leader's registry in ZooKeeper rides through a stalled server: a batch whose answer
/// is lost while the server does not answer is written once it is back, and no record is lost or
/// doubled. A master whose candidacy is gone cannot write at all.
#[tokio::test]
async fn registry_writes_survive_a_stalled_zookeeper_and_stop_with_the_candidacy()
-> anyhow::Result<()> {
    if !zookeeper::available("registry in ZooKeeper") {
        return Ok(());
    }
    // Long enough for a stall that breaks the connection but not the session.
    let session = Duration::from_secs(8);
    let server = ZooKeeper::start()?;
    let url: ZkUrl = server.url("/agora/registry").parse()?;
    let master = info("m1", 5001);
    let (leader, mut standing) = contend(&url, &master, session).await?;
    until(&mut standing, "m1 leads", leading).await?;
    let (store, registry) = ZkStore::open(&leader, &master).await?;
    assert!(registry.frameworks.is_empty());
    store.commit(&[framework("before")]).await?;

    // The server stops answering with the batch in flight: the client gives the connection
    // up (after 2/5 of the session timeout) and fails the request; the store must try again
    // once the server is back, within the same session.
    let pid = server.pid().context("the server runs")?.to_string();
    signal("-STOP", &pid)?;
    let pending = tokio::spawn(async move {
        let result = store.commit(&[framework("during")]).await;
        (store, result)
    });
    tokio::time::sleep(session / 2).await;
    signal("-CONT", &pid)?;
    let (store, result) = pending.await?;
    result.context("a write made while ZooKeeper stalled")?;
    store.commit(&[framework("after")]).await?;
    let (_, registry) = ZkStore::open(&leader, &master).await?;
    let mut ids: Vec<String> = registry
        .frameworks
        .iter()
        .filter_map(|f| Some(f.framework_info.id.as_ref()?.value.clone()))
        .collect();
    ids.sort();
    assert_eq!(ids, ["after", "before", "during"]);

    // The candidacy withdraws (its session closes, its znode goes): writes are refused.
    drop((leader, standing));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match store.commit(&[framework("deposed")]).await {
            Err(RegistryError::Deposed { .. }) => break,
            Ok(()) if tokio::time::Instant::now() < deadline => {
                // The znode may outlive the closing session for a moment.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => bail!("a write after the candidacy ended: {other:?}"),
        }
    }
    Ok(())
}
