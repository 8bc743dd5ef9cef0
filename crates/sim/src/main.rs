//! `agora-sim`: runs seeded simulations of a whole Agora cluster under faults, one seed, a
//! range of seeds, or as many seeds as fit in a wall-clock budget, and prints the command that
//! replays the first failing seed. It only parses arguments and reports; the simulation is the
//! library's.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use agora_sim::{Options, run};

const USAGE: &str = "usage: agora-sim [--seed N] [--seeds N] [--seconds S] [--steps N] [--masters N] [--trace]
  --seed N     the first (or only) seed (default 1)
  --seeds N    run N seeds from --seed on
  --seconds S  run seeds from --seed on for S seconds of wall time
  --steps N    fail a run that takes more than N steps
  --masters N  N masters in a leader election with a fenced registry (default 1: one master)
  --trace      print every step
  --non-checkpointing  half the schedulers do not checkpoint (known core bug 1)
  --kills      schedulers kill some tasks (known core bug 2)
  --strict-reconciliation  reconciliation answers must follow the update stream's order
  --duplicate-accepts      the network may duplicate ACCEPT calls too
  --strict-lost            TASK_LOST for an unreachable agent must be final
  --strict-announcements   a returning agent's task announcements must follow the stream (core bug 3)
  --duplicate-updates      agents' and executors' status updates may arrive twice";

struct Args {
    seed: u64,
    seeds: Option<u64>,
    seconds: Option<f64>,
    steps: Option<u64>,
    masters: usize,
    trace: bool,
    non_checkpointing: bool,
    kills: bool,
    strict_reconciliation: bool,
    duplicate_accepts: bool,
    strict_lost: bool,
    strict_announcements: bool,
    duplicate_updates: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seed: 1,
        seeds: None,
        seconds: None,
        steps: None,
        masters: 1,
        trace: false,
        non_checkpointing: false,
        kills: false,
        strict_reconciliation: false,
        duplicate_accepts: false,
        strict_lost: false,
        strict_announcements: false,
        duplicate_updates: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--seed" => args.seed = value("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--seeds" => {
                args.seeds = Some(value("--seeds")?.parse().map_err(|e| format!("--seeds: {e}"))?)
            }
            "--seconds" => {
                let s: f64 = value("--seconds")?.parse().map_err(|e| format!("--seconds: {e}"))?;
                args.seconds = Some(s);
            }
            "--steps" => {
                args.steps = Some(value("--steps")?.parse().map_err(|e| format!("--steps: {e}"))?)
            }
            "--masters" => {
                args.masters =
                    value("--masters")?.parse().map_err(|e| format!("--masters: {e}"))?;
                if args.masters == 0 {
                    return Err("--masters: at least one".into());
                }
            }
            "--trace" => args.trace = true,
            "--non-checkpointing" => args.non_checkpointing = true,
            "--kills" => args.kills = true,
            "--strict-reconciliation" => args.strict_reconciliation = true,
            "--duplicate-accepts" => args.duplicate_accepts = true,
            "--strict-lost" => args.strict_lost = true,
            "--strict-announcements" => args.strict_announcements = true,
            "--duplicate-updates" => args.duplicate_updates = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let budget = args.seconds.map(Duration::from_secs_f64);
    let count = match (args.seeds, budget) {
        (Some(n), _) => n,
        (None, Some(_)) => u64::MAX,
        (None, None) => 1,
    };
    let mut done = 0u64;
    let mut steps = 0u64;
    // With several masters: what the failovers did, over all seeds.
    let (mut elections, mut refused, mut fenced, mut deposed) = (0u64, 0u64, 0u64, 0u64);
    for seed in args.seed..args.seed.saturating_add(count) {
        if budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        let mut options = Options::new(seed);
        options.trace = args.trace;
        options.masters = args.masters;
        options.non_checkpointing = args.non_checkpointing;
        options.kills = args.kills;
        options.strict_reconciliation = args.strict_reconciliation;
        options.duplicate_accepts = args.duplicate_accepts;
        options.strict_lost = args.strict_lost;
        options.strict_announcements = args.strict_announcements;
        options.duplicate_updates = args.duplicate_updates;
        if let Some(max) = args.steps {
            options.max_steps = max;
        }
        match run(&options) {
            Ok(summary) => {
                done += 1;
                steps += summary.steps;
                elections += summary.elections;
                refused += summary.refused_writes;
                fenced += summary.fenced_writes;
                deposed += summary.deposed_messages;
                if count == 1 {
                    println!("seed {seed}: ok {summary:?}");
                }
            }
            Err(violation) => {
                eprintln!("VIOLATION {violation}");
                return ExitCode::FAILURE;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{done} seeds ok in {secs:.1}s: {:.2} seeds/s, {:.0} steps/s",
        done as f64 / secs.max(1e-9),
        steps as f64 / secs.max(1e-9)
    );
    if args.masters > 1 {
        println!(
            "{elections} elections, {refused} registry writes refused ({fenced} by the fence), \
             {deposed} messages sent by deposed leaders"
        );
    }
    ExitCode::SUCCESS
}
