//! The canary benchmark: every scenario of the simulation, 1 000 seeds each, through
//! airlock's judge and the Flagger, Argo and Kayenta rules, printed as one table.
//!
//! `cargo bench -p airlock-judge --bench canary`; `JUDGE_BENCH_SEEDS=200` for a quicker
//! look. Times are simulated seconds, so the figures do not depend on the machine.

use std::time::Instant;

use airlock_judge::sim::{self, JudgeKind, Reference, RunOutcome, Scenario};

/// One scenario's outcomes: per judge, one outcome per seed.
fn run_scenario(scenario: &Scenario, judges: &[JudgeKind], seeds: u64) -> Vec<Vec<RunOutcome>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let mut per_thread: Vec<Vec<(u64, Vec<RunOutcome>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    (0..seeds)
                        .filter(|seed| seed % threads == thread)
                        .map(|seed| {
                            let ticks = sim::generate(scenario, seed);
                            let outcomes = judges
                                .iter()
                                .map(|judge| sim::run(judge, scenario, &ticks))
                                .collect();
                            (seed, outcomes)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a simulation thread panicked"))
            .collect()
    });
    let mut by_seed: Vec<(u64, Vec<RunOutcome>)> = per_thread.drain(..).flatten().collect();
    by_seed.sort_by_key(|(seed, _)| *seed);
    (0..judges.len())
        .map(|j| by_seed.iter().map(|(_, outcomes)| outcomes[j]).collect())
        .collect()
}

/// The q-quantile of times where None counts as never (beyond every time); None if the
/// quantile is never.
fn quantile(times: &[Option<f64>], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = times.iter().map(|t| t.unwrap_or(f64::INFINITY)).collect();
    sorted.sort_by(f64::total_cmp);
    let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    let value = sorted[index];
    value.is_finite().then_some(value)
}

fn seconds(time: Option<f64>, horizon: f64) -> String {
    match time {
        Some(t) => format!("{t:.0} s"),
        None => format!("> {:.0} min", horizon / 60.0),
    }
}

fn main() {
    let seeds: u64 = std::env::var("JUDGE_BENCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let scenarios = Scenario::benchmark_set();
    let judges = JudgeKind::all();
    let started = Instant::now();
    println!(
        "canary judges on simulated rollouts: {seeds} seeds per scenario, 5-second scrapes, \
         30-minute horizon, canary and baseline at 10 % of 100 req/s unless named\n"
    );
    println!(
        "{:<30} {:<27} {:>9} {:>9} {:>9} {:>10} {:>11}",
        "scenario", "judge", "median", "p90", "detected", "false rb", "median pass"
    );
    let mut four_x_medians: Vec<(String, Option<f64>)> = Vec::new();
    for scenario in &scenarios {
        let outcomes = run_scenario(scenario, &judges, seeds);
        for (judge, runs) in judges.iter().zip(&outcomes) {
            let rollbacks: Vec<Option<f64>> = runs.iter().map(|r| r.rollback_at_seconds).collect();
            let rate = rollbacks.iter().filter(|r| r.is_some()).count() as f64 / runs.len() as f64;
            let passes: Vec<Option<f64>> = runs.iter().map(|r| r.first_pass_at_seconds).collect();
            let horizon = scenario.horizon_seconds;
            let (median, p90, detected, false_rollbacks) = if scenario.regression {
                (
                    seconds(quantile(&rollbacks, 0.5), horizon),
                    seconds(quantile(&rollbacks, 0.9), horizon),
                    format!("{:.1}%", 100.0 * rate),
                    "-".to_owned(),
                )
            } else {
                (
                    "-".to_owned(),
                    "-".to_owned(),
                    "-".to_owned(),
                    format!("{:.1}%", 100.0 * rate),
                )
            };
            let pass = match (judge, scenario.regression) {
                (JudgeKind::Airlock(_), false) => seconds(quantile(&passes, 0.5), horizon),
                _ => "-".to_owned(),
            };
            println!(
                "{:<30} {:<27} {:>9} {:>9} {:>9} {:>10} {:>11}",
                scenario.name,
                judge.name(),
                median,
                p90,
                detected,
                false_rollbacks,
                pass
            );
            if scenario.name.starts_with("4x") {
                four_x_medians.push((judge.name().to_owned(), quantile(&rollbacks, 0.5)));
            }
        }
        println!();
    }
    let median_of = |name: &str| {
        four_x_medians
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, m)| *m)
    };
    let flagger = median_of(JudgeKind::Flagger(Default::default()).name());
    for reference in [Reference::BaselineAndStable, Reference::Baseline] {
        let name = JudgeKind::Airlock(reference).name();
        match (flagger, median_of(name)) {
            (Some(f), Some(a)) => println!(
                "4x regression, median time to detect: flagger / {name} = {f:.0} s / {a:.0} s = {:.1}x",
                f / a
            ),
            _ => println!("4x regression: a median is beyond the horizon for flagger or {name}"),
        }
    }
    println!(
        "\nmedian pass: airlock's median time to its first Pass of the (single) step; \
         false rb: rollbacks of healthy canaries within the horizon.\nran in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
