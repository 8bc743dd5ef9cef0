//! Criterion bench of one allocation cycle on Mesos's DeclineOffers grid (agents ×
//! frameworks = 1k×100, 5k×500, 10k×1k, 20k×2k, 50k×6k). Each measured iteration is one round:
//! the previous round's offers are declined with a long filter (untimed), then one cycle runs
//! (timed). Offers per cycle are printed once per grid point. Set `AGORA_BENCH_GRID` (e.g.
//! `1000x100,10000x1000`) to run fewer points; the table with Mesos's published numbers is
//! printed by `cargo run --release -p agora-core --example allocator_bench`.

#[path = "support/decline_offers.rs"]
mod decline_offers;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use decline_offers::DeclineOffers;

fn grid() -> Vec<(usize, usize)> {
    let default =
        vec![(1_000, 100), (5_000, 500), (10_000, 1_000), (20_000, 2_000), (50_000, 6_000)];
    let Ok(text) = std::env::var("AGORA_BENCH_GRID") else { return default };
    text.split(',')
        .filter_map(|p| p.split_once('x'))
        .filter_map(|(a, f)| Some((a.trim().parse().ok()?, f.trim().parse().ok()?)))
        .collect()
}

fn decline_offers(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocator/decline_offers");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    for (agents, frameworks) in grid() {
        let mut scenario = DeclineOffers::new(agents, frameworks);
        let mut offers = Vec::new();
        let id = BenchmarkId::from_parameter(format!("{agents}x{frameworks}"));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let now = scenario.decline_all();
                    let start = Instant::now();
                    offers.push(scenario.cycle(now));
                    timed += start.elapsed();
                }
                timed
            })
        });
        offers.sort_unstable();
        let median = offers.get(offers.len() / 2).copied().unwrap_or(0);
        println!(
            "{agents}x{frameworks}: {} cycles, offers per cycle min {} / median {median} / max {}",
            offers.len(),
            offers.first().copied().unwrap_or(0),
            offers.last().copied().unwrap_or(0),
        );
    }
    group.finish();
}

criterion_group!(benches, decline_offers);
criterion_main!(benches);
