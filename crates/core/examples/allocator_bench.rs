//! The allocator's DeclineOffers grid as a plain program that prints a table.
//!
//! It mirrors Mesos's `HierarchicalAllocator_BENCHMARK_Test.DeclineOffers`: every agent has
//! `cpus:24;mem:4096;disk:4096;ports:[31000-32000]`, of which `cpus:16;mem:2014;disk:1024` and
//! 16 ports are already used by one framework (round-robin over the frameworks); all frameworks
//! subscribe to role `*`; before each cycle every offer of the previous cycle is declined with
//! a filter of `INT_MAX` seconds. Only `allocate()` is timed, as in Mesos. Everything runs in
//! this process on one thread; the agents and frameworks are the allocator's own records, no
//! protocol is involved.
//!
//! `cargo run --release -p agora-core --example allocator_bench -- [--rounds N|full] [POINT...]`
//! where a point is `AGENTSxFRAMEWORKS` (default: the five points of the grid). By default
//! each point runs 10 cycles, the phase in which every cycle still offers every agent (the
//! phase Mesos's published numbers describe); `full` runs Mesos's `2 × frameworks` cycles.

#[path = "../benches/support/decline_offers.rs"]
mod decline_offers;

use std::time::{Duration, Instant};

use decline_offers::DeclineOffers;

/// Mesos 1.8's published cycle time in seconds (blog chart, reference anchors §2a).
fn mesos_seconds(agents: usize, frameworks: usize) -> Option<f64> {
    match (agents, frameworks) {
        (1_000, 100) => Some(0.1),
        (5_000, 500) => Some(0.4),
        (10_000, 1_000) => Some(1.1),
        (20_000, 2_000) => Some(3.8),
        _ => None,
    }
}

/// What one grid point measured.
struct Point {
    agents: usize,
    frameworks: usize,
    cycles: Vec<Duration>,
    /// On-CPU time of each cycle, when the kernel reports it.
    cpu: Vec<Duration>,
    offers: Vec<usize>,
}

fn run(agents: usize, frameworks: usize, rounds: usize) -> Point {
    let mut scenario = DeclineOffers::new(agents, frameworks);
    let mut point =
        Point { agents, frameworks, cycles: Vec::new(), cpu: Vec::new(), offers: Vec::new() };
    for _ in 0..rounds {
        let now = scenario.decline_all();
        let (start, cpu_start) = (Instant::now(), cpu_time());
        let offers = scenario.cycle(now);
        point.cycles.push(start.elapsed());
        if let (Some(a), Some(b)) = (cpu_start, cpu_time()) {
            point.cpu.push(b.saturating_sub(a));
        }
        point.offers.push(offers);
    }
    point
}

/// This thread's time on a CPU so far (`/proc/thread-self/schedstat`, Linux): on a shared
/// machine the wall clock also counts the time other processes held the core.
fn cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let mut rounds: Option<usize> = Some(10);
    let mut grid = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--rounds" {
            let value = args.next().unwrap_or_default();
            rounds = if value == "full" { None } else { value.parse().ok() };
        } else if let Some((a, f)) = arg.split_once('x') {
            match (a.parse(), f.parse()) {
                (Ok(a), Ok(f)) => grid.push((a, f)),
                _ => eprintln!("ignoring '{arg}': expected AGENTSxFRAMEWORKS"),
            }
        } else if arg != "--bench" {
            eprintln!("ignoring '{arg}'");
        }
    }
    if grid.is_empty() {
        grid = vec![(1_000, 100), (5_000, 500), (10_000, 1_000), (20_000, 2_000), (50_000, 6_000)];
    }
    println!(
        "| agents × frameworks | cycles | wall ms per cycle (min / median / max) | on-CPU ms \
         (median) | offers per cycle (first / last) | Mesos 1.8 | Mesos ÷ ours (wall median) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (agents, frameworks) in grid {
        let rounds = rounds.unwrap_or(2 * frameworks).max(1);
        let point = run(agents, frameworks, rounds);
        let mut sorted = point.cycles.clone();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        let mut cpu = point.cpu.clone();
        cpu.sort();
        let cpu = cpu.get(cpu.len() / 2).map_or("n/a".to_string(), |d| format!("{:.2}", ms(*d)));
        let (mesos, ratio) = match mesos_seconds(point.agents, point.frameworks) {
            Some(s) => (format!("≈{:.0} ms", s * 1e3), format!("{:.0}×", s / median.as_secs_f64())),
            None => ("not published".to_string(), "—".to_string()),
        };
        println!(
            "| {}k × {} | {} | {:.2} / {:.2} / {:.2} | {} | {} / {} | {} | {} |",
            point.agents / 1000,
            point.frameworks,
            rounds,
            ms(sorted[0]),
            ms(median),
            ms(sorted[sorted.len() - 1]),
            cpu,
            point.offers[0],
            point.offers[point.offers.len() - 1],
            mesos,
            ratio,
        );
    }
}
