//! How fast the agent can make status updates durable: the checkpoint store's commits (one
//! task record per update, as the agent writes them) one at a time and group-committed in
//! batches, next to the physical limit measured in the same run on the same disk (a small
//! write plus `fdatasync` of a plain file).
//!
//! `cargo run --release -p agora-agent --example checkpoint_bench [DIR]` (default: a temporary
//! directory; point it at the disk the agent's `--work_dir` lives on).

use std::io::Write;
use std::time::{Duration, Instant};

use agora_agent::checkpoint::Store;
use agora_core::agent::{CheckpointKey, CheckpointRecord};
use agora_proto::internal;
use agora_proto::v1::{self, TaskState};

/// A task record of the size the agent writes: one pending update, a few seen uuids.
fn record(task: usize) -> (CheckpointKey, Option<CheckpointRecord>) {
    let mut status = v1::TaskStatus {
        task_id: v1::TaskId { value: format!("task-{task}") },
        uuid: Some(vec![7; 16].into()),
        message: Some("Command exited with status 0".into()),
        ..Default::default()
    };
    status.set_state(TaskState::TaskRunning);
    let mut record = internal::TaskCheckpoint {
        framework_id: "bench-framework".into(),
        task_id: format!("task-{task}"),
        executor_id: Some(format!("task-{task}")),
        task_info: Some(v1::TaskInfo {
            name: format!("task-{task}"),
            task_id: v1::TaskId { value: format!("task-{task}") },
            ..Default::default()
        }),
        latest: Some(status.clone()),
        pending: vec![status],
        seen: vec![vec![7; 16].into(), vec![8; 16].into()],
        ..Default::default()
    };
    record.set_state(TaskState::TaskRunning);
    (
        CheckpointKey::Task("bench-framework".into(), format!("task-{task}")),
        Some(CheckpointRecord::Task(record)),
    )
}

/// Runs `body` repeatedly for about `budget`; returns operations per second.
fn rate(budget: Duration, mut body: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < budget {
        body(n);
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args().nth(1).map_or_else(|| temp.path().to_path_buf(), Into::into);
    let budget = Duration::from_secs(3);

    let mut file = std::fs::File::create(dir.join("fsync-probe"))?;
    let fsyncs = rate(budget, |_| {
        file.write_all(&[0u8; 512]).expect("write");
        file.sync_data().expect("fdatasync");
    });
    println!("physical limit: {fsyncs:.0} fdatasync/s (512-byte appends)");

    let store = Store::open(&dir.join("agent"))?;
    let single = rate(budget, |n| store.commit(&[record(n % 1000)]).expect("commit"));
    println!(
        "one update per commit: {single:.0} updates/s ({:.2}x the fsync rate)",
        single / fsyncs
    );
    for batch in [16, 64, 256] {
        let commits = rate(budget, |n| {
            let records: Vec<_> = (0..batch).map(|i| record((n * batch + i) % 1000)).collect();
            store.commit(&records).expect("commit");
        });
        let updates = commits * batch as f64;
        println!(
            "group commit of {batch}: {updates:.0} updates/s ({:.1}x one per commit)",
            updates / single
        );
    }
    Ok(())
}
