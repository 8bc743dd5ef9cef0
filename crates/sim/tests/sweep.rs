//! The simulation tier in CI: runs seeds one after the other for a bounded wall time
//! (`AGORA_SIM_SECONDS`, 20 by default; seeds from `AGORA_SIM_SEED`, 1 by default) and fails
//! with the replay command of the first seed that breaks an invariant. Known core bugs are
//! kept out of this sweep by the options that expose them and pinned in `regressions.rs`.

use std::time::{Duration, Instant};

use agora_sim::{Options, run};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn seeds_sweep_without_violations() {
    let budget = Duration::from_secs(env_number("AGORA_SIM_SECONDS", 20));
    let first = env_number("AGORA_SIM_SEED", 1);
    let started = Instant::now();
    let mut seed = first;
    // At least one seed, however small the budget.
    loop {
        // The workloads whose core bugs are fixed (see `regressions.rs`) run in the sweep, and
        // so do duplicated status updates.
        let mut options = Options::new(seed);
        options.non_checkpointing = true;
        options.kills = true;
        options.strict_announcements = true;
        options.duplicate_updates = true;
        if let Err(violation) = run(&options) {
            panic!("{violation}");
        }
        seed += 1;
        if started.elapsed() >= budget {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeds {first}..{seed} ok in {secs:.1}s ({:.2} seeds/s)",
        (seed - first) as f64 / secs.max(1e-9)
    );
}

#[test]
fn a_seed_replays_exactly() {
    let mut options = Options::new(3);
    options.fault_time = Duration::from_secs(60);
    options.quiet_time = Duration::from_secs(200);
    let a = run(&options).map_err(|v| v.to_string());
    let b = run(&options).map_err(|v| v.to_string());
    match (a, b) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.steps, b.steps);
            assert_eq!(a.updates_seen, b.updates_seen);
            assert_eq!(a.tasks_launched, b.tasks_launched);
        }
        (a, b) => assert_eq!(a.err(), b.err()),
    }
}
