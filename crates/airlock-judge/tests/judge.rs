//! The judge at its boundary: configuration rules, refused inputs, counters, trust levels,
//! replay, the statistics against SciPy, and the false-alarm and detection guarantees on
//! simulated rollouts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use airlock_judge::sim::{self, Reference, Scenario, StepPlan};
use airlock_judge::stats::{self, RatioLikelihood};
use airlock_judge::{
    Counter, Decision, Direction, Judge, JudgeConfig, JudgeError, MetricSpec, MetricVerdict,
    Sample, Trust, Verdict, replay,
};

fn counter(events: f64, exposure: f64) -> Counter {
    Counter { events, exposure }
}

fn sample(canary: (f64, f64), reference: (f64, f64)) -> Option<Sample> {
    Some(Sample {
        canary: counter(canary.0, canary.1),
        reference: counter(reference.0, reference.1),
    })
}

fn errors_only(alpha: f64) -> JudgeConfig {
    JudgeConfig {
        alpha,
        metrics: vec![MetricSpec::errors()],
    }
}

/// Feeds scrapes of a one-metric judge every 5 seconds after its last observation; a
/// fresh judge first gets an all-zero anchor at time 0.
fn feed(judge: &mut Judge, scrapes: &[Option<Sample>]) -> Vec<Decision> {
    let start = judge.decision().at_seconds;
    if judge.recording().steps.iter().all(|s| s.samples.is_empty()) {
        judge
            .observe(0.0, &[sample((0.0, 0.0), (0.0, 0.0))])
            .unwrap();
    }
    scrapes
        .iter()
        .enumerate()
        .map(|(i, s)| judge.observe(start + 5.0 * (i + 1) as f64, &[*s]).unwrap())
        .collect()
}

/// Cumulative scrapes of a steady stream: per 5 s, the canary serves `canary_requests` with
/// `canary_rate` errors, the reference `reference_requests` with `reference_rate`; counts
/// are the expected values (no noise), so outcomes are exact.
fn steady(
    ticks: usize,
    canary_requests: f64,
    canary_rate: f64,
    reference_requests: f64,
    reference_rate: f64,
) -> Vec<Option<Sample>> {
    (1..=ticks)
        .map(|i| {
            let i = i as f64;
            sample(
                (i * canary_requests * canary_rate, i * canary_requests),
                (
                    i * reference_requests * reference_rate,
                    i * reference_requests,
                ),
            )
        })
        .collect()
}

#[test]
fn configurations_are_checked_with_messages_that_say_what_is_accepted() {
    fn check(change: fn(&mut JudgeConfig), expected: Option<&str>) {
        let mut config = JudgeConfig::default();
        change(&mut config);
        match (Judge::new(config), expected) {
            (Ok(_), None) => {}
            (Err(error), Some(text)) => {
                assert!(
                    matches!(error, JudgeError::InvalidConfig { .. }),
                    "{error:?}"
                );
                let message = error.to_string();
                assert!(message.contains(text), "`{message}` lacks `{text}`");
                assert!(message.contains("accepted"), "`{message}`");
            }
            (result, expected) => panic!("{:?} but expected {expected:?}", result.err()),
        }
    }
    check(|_| {}, None);
    check(|c| c.alpha = 0.5, None);
    check(|c| c.metrics[0].tolerance = 4.0, None);
    check(|c| c.metrics[0].trust = Trust::Shadow, None);
    check(|c| c.alpha = 0.0, Some("alpha is 0"));
    check(|c| c.alpha = 0.6, Some("alpha is 0.6"));
    check(|c| c.alpha = f64::NAN, Some("alpha is NaN"));
    check(|c| c.metrics.clear(), Some("metrics is empty"));
    check(
        |c| c.metrics[1].name = String::new(),
        Some("metric 1 has an empty name"),
    );
    check(
        |c| c.metrics[0].name = "  ".to_owned(),
        Some("metric 0 has an empty name"),
    );
    check(
        |c| c.metrics[1].name = "errors".to_owned(),
        Some("`errors` appears twice"),
    );
    check(|c| c.metrics[0].tolerance = -0.1, Some("tolerance is -0.1"));
    check(|c| c.metrics[0].tolerance = 4.5, Some("tolerance is 4.5"));
    check(
        |c| c.metrics[0].tolerance = f64::NAN,
        Some("tolerance is NaN"),
    );
    check(
        |c| c.metrics[0].pass_margin = f64::INFINITY,
        Some("pass_margin is inf"),
    );
    check(
        |c| c.metrics[1].absolute_margin = -1.0,
        Some("`slow_requests`: absolute_margin is -1"),
    );
    check(
        |c| c.metrics[0].min_exposure = f64::NAN,
        Some("min_exposure is NaN"),
    );
}

#[test]
fn bad_observations_are_refused_with_clear_messages_and_change_nothing() {
    let mut judge = Judge::new(JudgeConfig::default()).unwrap();
    let good = |events: f64| sample((events, 1000.0), (events, 1000.0));
    judge.observe(0.0, &[good(0.0), good(0.0)]).unwrap();
    judge.observe(5.0, &[good(5.0), None]).unwrap();
    let check = |judge: &mut Judge, at: f64, samples: Vec<Option<Sample>>, expected: &str| {
        let (decision, recording) = (judge.decision(), judge.recording());
        let error = judge.observe(at, &samples).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(expected), "`{message}` lacks `{expected}`");
        assert_eq!(
            judge.decision(),
            decision,
            "a refused observation changed the decision"
        );
        assert_eq!(
            judge.recording(),
            recording,
            "a refused observation was recorded"
        );
    };
    let bad =
        |canary: (f64, f64), reference: (f64, f64)| vec![sample(canary, reference), good(6.0)];
    check(
        &mut judge,
        10.0,
        bad((f64::NAN, 1.0), (1.0, 1.0)),
        "metric `errors`: the canary events counter is NaN",
    );
    check(
        &mut judge,
        10.0,
        bad((1.0, 1.0), (1.0, -2.0)),
        "the reference exposure counter is -2",
    );
    check(
        &mut judge,
        10.0,
        bad((1.0, f64::INFINITY), (1.0, 1.0)),
        "the canary exposure counter is inf",
    );
    check(
        &mut judge,
        10.0,
        bad((1e251, 1e300), (1.0, 1.0)),
        "the canary events counter is 1e251; counters must be numbers from 0 to 1e250",
    );
    check(
        &mut judge,
        10.0,
        vec![good(6.0), sample((-1.0, 1.0), (1.0, 1.0))],
        "metric `slow_requests`: the canary events counter is -1",
    );
    check(
        &mut judge,
        10.0,
        vec![good(6.0)],
        "expected one sample per configured metric (2: errors, slow_requests)",
    );
    check(&mut judge, 10.0, vec![None, None, None], "got 3");
    check(
        &mut judge,
        f64::NAN,
        vec![None, None],
        "observation time NaN s is invalid",
    );
    check(
        &mut judge,
        4.0,
        vec![None, None],
        "previous observation (5 s)",
    );
    // And the judge still works afterwards.
    assert!(judge.observe(10.0, &[good(6.0), None]).is_ok());
}

#[test]
fn counters_reset_and_missing_scrapes_are_absorbed() {
    // (scrapes, expected canary totals) — every scrape's reference mirrors the canary ×9.
    fn check(scrapes: &[Option<(f64, f64)>], expected: (f64, f64)) {
        let mut judge = Judge::new(errors_only(0.01)).unwrap();
        let samples: Vec<Option<Sample>> = scrapes
            .iter()
            .map(|s| s.and_then(|(e, n)| sample((e, n), (9.0 * e, 9.0 * n))))
            .collect();
        feed(&mut judge, &samples);
        let evidence = &judge.decision().metrics[0];
        assert_eq!(
            (evidence.canary.events, evidence.canary.exposure),
            expected,
            "{scrapes:?}"
        );
        assert_eq!(
            (evidence.reference.events, evidence.reference.exposure),
            (9.0 * expected.0, 9.0 * expected.1)
        );
    }
    check(&[Some((1.0, 100.0)), Some((3.0, 300.0))], (3.0, 300.0));
    check(
        &[Some((1.0, 100.0)), None, None, Some((3.0, 300.0))],
        (3.0, 300.0),
    );
    // The process restarted: 2 events in 50 requests since, on top of the 3 in 300.
    check(
        &[Some((3.0, 300.0)), Some((2.0, 50.0)), Some((4.0, 90.0))],
        (7.0, 390.0),
    );
    check(&[None, None], (0.0, 0.0));

    // A missing scrape only merges two batches: with a constant split, the evidence is the
    // same as if it had arrived.
    let full = steady(20, 50.0, 0.02, 450.0, 0.005);
    let mut gappy = full.clone();
    for i in [3, 4, 9, 15] {
        gappy[i] = None;
    }
    let (mut a, mut b) = (
        Judge::new(errors_only(0.01)).unwrap(),
        Judge::new(errors_only(0.01)).unwrap(),
    );
    let (full_end, gappy_end) = (
        feed(&mut a, &full).pop().unwrap(),
        feed(&mut b, &gappy).pop().unwrap(),
    );
    let (x, y) = (&full_end.metrics[0], &gappy_end.metrics[0]);
    assert!(
        (x.log_e_value - y.log_e_value).abs() < 1e-9,
        "{} vs {}",
        x.log_e_value,
        y.log_e_value
    );
    assert_eq!(
        (x.ratio_lower, x.ratio_upper),
        (y.ratio_lower, y.ratio_upper)
    );
}

#[test]
fn a_failure_is_sticky_and_names_the_first_failing_metric() {
    let mut judge = Judge::new(JudgeConfig::default()).unwrap();
    judge
        .observe(0.0, &[sample((0.0, 0.0), (0.0, 0.0)); 2])
        .unwrap();
    // Errors triple from the start; slow requests stay healthy until errors have failed.
    let mut failed_at = None;
    for i in 1..=400 {
        let n = i as f64 * 50.0;
        let errors = sample((n * 0.03, n), (9.0 * n * 0.01, 9.0 * n));
        let slow = if failed_at.is_some() {
            sample((n * 0.5, n), (9.0 * n * 0.01, 9.0 * n)) // a later, larger failure
        } else {
            sample((n * 0.01, n), (9.0 * n * 0.01, 9.0 * n))
        };
        let decision = judge.observe(5.0 * i as f64, &[errors, slow]).unwrap();
        if failed_at.is_none() && matches!(decision.verdict, Verdict::Fail { .. }) {
            failed_at = Some(i);
        }
        if failed_at.is_some() {
            assert_eq!(
                decision.verdict,
                Verdict::Fail {
                    metric: "errors".to_owned()
                },
                "at tick {i}"
            );
            assert_eq!(decision.metrics[0].verdict, MetricVerdict::Fail);
        }
    }
    assert!(failed_at.is_some_and(|i| i < 40), "{failed_at:?}");
    // Healthy data afterwards, and a new step, change nothing.
    judge.begin_step("50%");
    let decision = judge.decision();
    assert_eq!(
        decision.verdict,
        Verdict::Fail {
            metric: "errors".to_owned()
        }
    );
    assert_eq!(decision.metrics[1].verdict, MetricVerdict::Fail);
    assert!(
        decision.metrics[0].reasoning.starts_with("errors failed:"),
        "{}",
        decision.metrics[0].reasoning
    );
}

#[test]
fn trust_levels_decide_what_a_failure_does() {
    fn check(trust: Trust, expected: fn(&Verdict) -> bool) {
        let mut config = JudgeConfig::default();
        config.metrics[0].trust = trust;
        let mut judge = Judge::new(config).unwrap();
        judge
            .observe(0.0, &[sample((0.0, 0.0), (0.0, 0.0)); 2])
            .unwrap();
        let mut decision = judge.decision();
        for i in 1..=200 {
            let n = i as f64 * 50.0;
            decision = judge
                .observe(
                    5.0 * i as f64,
                    &[
                        sample((n * 0.05, n), (9.0 * n * 0.005, 9.0 * n)),
                        sample((n * 0.01, n), (9.0 * n * 0.01, 9.0 * n)),
                    ],
                )
                .unwrap();
        }
        assert_eq!(
            decision.metrics[0].verdict,
            MetricVerdict::Fail,
            "{trust:?}"
        );
        assert!(
            expected(&decision.verdict),
            "{trust:?}: {:?}",
            decision.verdict
        );
    }
    check(Trust::Enforcing, |v| {
        *v == Verdict::Fail {
            metric: "errors".to_owned(),
        }
    });
    check(Trust::Advisory, |v| {
        *v == Verdict::Hold {
            metric: "errors".to_owned(),
        }
    });
    // A shadow failure is recorded in the evidence only; the healthy enforcing metric
    // decides.
    check(Trust::Shadow, |v| {
        matches!(v, Verdict::Pass | Verdict::Continue)
    });
}

#[test]
fn the_alpha_split_counts_only_metrics_that_may_act() {
    fn check(trusts: [Trust; 2], expected: f64) {
        let mut config = JudgeConfig::default();
        config.metrics[0].trust = trusts[0];
        config.metrics[1].trust = trusts[1];
        let judge = Judge::new(config).unwrap();
        for evidence in judge.decision().metrics {
            assert!((evidence.alpha - expected).abs() < 1e-15, "{trusts:?}");
            assert!((evidence.log_bound - (1.0 / expected).ln()).abs() < 1e-12);
        }
    }
    check([Trust::Enforcing, Trust::Enforcing], 0.005);
    check([Trust::Enforcing, Trust::Advisory], 0.005);
    check([Trust::Enforcing, Trust::Shadow], 0.01);
    check([Trust::Shadow, Trust::Shadow], 0.01);
}

#[test]
fn a_healthy_canary_passes_each_step_once_it_has_the_exposure() {
    let mut judge = Judge::new(errors_only(0.01)).unwrap();
    judge.begin_step("5%");
    // 50 canary requests per 5 s at 0.5 %, 450 reference requests at 0.5 %.
    let decisions = feed(&mut judge, &steady(120, 50.0, 0.005, 450.0, 0.005));
    assert_eq!(decisions[0].verdict, Verdict::InsufficientData);
    assert!(
        decisions[0].metrics[0]
            .reasoning
            .contains("of the 500 units of canary exposure")
    );
    let first_pass = decisions
        .iter()
        .position(|d| d.verdict == Verdict::Pass)
        .expect("a healthy canary passes");
    assert!(first_pass >= 9, "passed before 500 requests: {first_pass}");
    assert!(first_pass < 120, "took {first_pass} ticks");
    let evidence = &decisions[first_pass].metrics[0];
    assert!(
        evidence.reasoning.starts_with("errors passes the step"),
        "{}",
        evidence.reasoning
    );
    assert_eq!(decisions.last().unwrap().verdict, Verdict::Pass);

    // A new step must see its own exposure before it passes; the evidence carries over.
    judge.begin_step("25%");
    let decision = judge.decision();
    assert_eq!(decision.step, "25%");
    assert_eq!(decision.verdict, Verdict::InsufficientData);
    assert_eq!(decision.metrics[0].step_canary_exposure, 0.0);
    assert_eq!(decision.metrics[0].canary.exposure, 6000.0);
    // Cumulative counters keep counting from where the first step left them.
    let more = steady(130, 50.0, 0.005, 450.0, 0.005)[120..].to_vec();
    let decisions = feed(&mut judge, &more);
    assert_eq!(
        decisions.last().unwrap().verdict,
        Verdict::Pass,
        "{:?}",
        decisions.last().unwrap().metrics[0].reasoning
    );
}

#[test]
fn sparse_metrics_pass_on_the_absolute_margin() {
    // No errors at all on either side: the ratio is unbounded, the canary's rate is not.
    let mut judge = Judge::new(errors_only(0.01)).unwrap();
    let decisions = feed(&mut judge, &steady(60, 50.0, 0.0, 450.0, 0.0));
    let last = decisions.last().unwrap();
    assert_eq!(last.verdict, Verdict::Pass, "{}", last.metrics[0].reasoning);
    let evidence = &last.metrics[0];
    assert_eq!(
        (evidence.ratio_lower, evidence.ratio_upper),
        (0.0, stats::GRID_MAX)
    );
    assert!(
        evidence
            .reasoning
            .contains("the canary's rate is within the absolute margin"),
        "{}",
        evidence.reasoning
    );
    assert!(
        evidence.reasoning.contains("margin 1.000 %"),
        "{}",
        evidence.reasoning
    );
}

#[test]
fn thin_traffic_is_insufficient_data_and_never_a_failure() {
    let scenario = Scenario {
        requests_per_second: 1.0,
        ..Scenario::healthy("thin")
    };
    for seed in 0..10 {
        let ticks = sim::generate(&scenario, seed);
        let mut judge = Judge::new(JudgeConfig::default()).unwrap();
        for (at, scrape) in sim::airlock_samples(&ticks, Reference::Baseline) {
            let decision = judge.observe(at, &scrape).unwrap();
            assert!(
                matches!(decision.verdict, Verdict::InsufficientData),
                "seed {seed} at {at}: {:?}",
                decision.verdict
            );
        }
    }
}

#[test]
fn non_integer_counts_from_prometheus_increase_work() {
    let mut judge = Judge::new(errors_only(0.01)).unwrap();
    // increase() extrapolates: fractional events and requests, a 4× regression.
    let scrapes: Vec<Option<Sample>> = (1..=60)
        .map(|i| {
            let n = i as f64 * 49.7;
            sample(
                (n * 0.02 + 0.31, n + 0.4),
                (9.0 * n * 0.005 + 0.17, 9.0 * n + 0.9),
            )
        })
        .collect();
    let decisions = feed(&mut judge, &scrapes);
    let last = decisions.last().unwrap();
    assert_eq!(
        last.verdict,
        Verdict::Fail {
            metric: "errors".to_owned()
        }
    );
    assert!(last.metrics[0].ratio.is_some_and(|r| (r - 4.0).abs() < 0.2));
}

#[test]
fn lower_is_worse_metrics_mirror_the_test() {
    fn check(canary_rate: f64, expected_fail: bool) {
        let config = JudgeConfig {
            alpha: 0.01,
            metrics: vec![MetricSpec {
                name: "cache_hits".to_owned(),
                direction: Direction::LowerIsWorse,
                ..MetricSpec::errors()
            }],
        };
        let mut judge = Judge::new(config).unwrap();
        let decisions = feed(&mut judge, &steady(120, 50.0, canary_rate, 450.0, 0.1));
        let failed = decisions
            .iter()
            .any(|d| matches!(d.verdict, Verdict::Fail { .. }));
        assert_eq!(failed, expected_fail, "canary hit rate {canary_rate}");
        let evidence = &decisions.last().unwrap().metrics[0];
        let mirrored = if expected_fail {
            "the evidence that the ratio is below 0.91"
        } else {
            "the ratio's lower bound"
        };
        assert!(
            evidence.reasoning.contains(mirrored),
            "{}",
            evidence.reasoning
        );
    }
    check(0.1, false);
    check(0.2, false); // more cache hits is an improvement
    check(0.04, true);
}

#[test]
fn extreme_counts_keep_every_number_finite_and_serialisable() {
    fn check(scrapes: &[Option<Sample>]) {
        let mut judge = Judge::new(errors_only(0.01)).unwrap();
        for decision in feed(&mut judge, scrapes) {
            let json = serde_json::to_string(&decision).unwrap();
            let back: Decision = serde_json::from_str(&json).unwrap();
            assert_eq!(back, decision, "{json}");
            let e = &decision.metrics[0];
            for value in [
                e.ratio_lower,
                e.ratio_upper,
                e.log_e_value,
                e.log_bound,
                e.step_canary_exposure,
            ] {
                assert!(value.is_finite(), "{json}");
            }
        }
    }
    check(&steady(5, 1e12, 0.3, 1e13, 0.1));
    check(&steady(5, 1e-200, 1.0, 1e-200, 1.0));
    check(&steady(5, 1e249, 1e-300, 1e249, 1e-300));
    // The largest counts accepted, growing, and reset every other scrape.
    let huge: Vec<Option<Sample>> = (0..40)
        .map(|i| {
            let n = if i % 2 == 0 { 1e250 } else { 1e249 };
            sample((n, n), (n * 0.5, n))
        })
        .collect();
    check(&huge);
    // Events without exposure, exposure without events, one side only.
    check(&[
        sample((5.0, 0.0), (0.0, 0.0)),
        sample((5.0, 100.0), (3.0, 1000.0)),
    ]);
    check(&[
        sample((0.0, 100.0), (0.0, 0.0)),
        sample((0.0, 200.0), (0.0, 0.0)),
    ]);
    check(&[sample((1e15, 1e15), (0.0, 1e15))]);
}

#[test]
fn decisions_serialise_in_the_published_shape() {
    let mut judge = Judge::new(JudgeConfig::default()).unwrap();
    let json = serde_json::to_value(judge.decision()).unwrap();
    assert_eq!(json["verdict"]["verdict"], "insufficient_data");
    assert_eq!(json["metrics"][0]["trust"], "enforcing");
    assert_eq!(json["metrics"][0]["verdict"], "insufficient_data");
    judge
        .observe(0.0, &[sample((0.0, 0.0), (0.0, 0.0)); 2])
        .unwrap();
    let decision = judge
        .observe(5.0, &[sample((500.0, 1000.0), (45.0, 9000.0)), None])
        .unwrap();
    let json = serde_json::to_value(&decision).unwrap();
    assert_eq!(
        json["verdict"],
        serde_json::json!({"verdict": "fail", "metric": "errors"})
    );
    let config: JudgeConfig =
        serde_json::from_value(serde_json::to_value(JudgeConfig::default()).unwrap()).unwrap();
    assert_eq!(config, JudgeConfig::default());
}

/// A stepped rollout (1, 5, 25, 50 %) of 30 minutes.
fn stepped(name: &str) -> Scenario {
    let step = |label: &str, at: f64, share: f64| StepPlan {
        label: label.to_owned(),
        starts_at_seconds: at,
        canary_share: share,
    };
    Scenario {
        steps: vec![
            step("1%", 0.0, 0.01),
            step("5%", 450.0, 0.05),
            step("25%", 900.0, 0.25),
            step("50%", 1350.0, 0.5),
        ],
        ..Scenario::healthy(name)
    }
}

#[test]
fn replay_reproduces_the_live_decisions_and_resume_continues_them() {
    let scenario = Scenario {
        missing_scrapes: 0.2,
        error_noise: 0.5,
        ..stepped("replay")
    };
    let ticks = sim::generate(&scenario, 3);
    let mut judge = Judge::new(JudgeConfig::default()).unwrap();
    let mut live = Vec::new();
    let samples = sim::airlock_samples(&ticks, Reference::BaselineAndStable);
    let mut resumed_midway = None;
    for (i, (at, scrape)) in samples.iter().enumerate() {
        let step = scenario.step_at((at - 2.5).max(0.0)).unwrap();
        if judge.decision().step != step.label {
            judge.begin_step(&step.label);
        }
        live.push(judge.observe(*at, scrape).unwrap());
        if i == 200 {
            resumed_midway = Some(Judge::resume(&judge.recording()).unwrap());
        }
    }
    let recording = judge.recording();
    assert_eq!(recording.steps.len(), 4);
    assert_eq!(
        recording
            .steps
            .iter()
            .map(|s| s.samples.len())
            .sum::<usize>(),
        samples.len()
    );
    assert_eq!(replay(&recording).unwrap(), live);
    // Through JSON, as the audit log stores it.
    let json = serde_json::to_string(&recording).unwrap();
    assert_eq!(replay(&serde_json::from_str(&json).unwrap()).unwrap(), live);
    // A judge resumed from a recording carries on exactly as the original.
    let mut resumed = resumed_midway.unwrap();
    assert_eq!(resumed.decision(), live[200]);
    for (i, (at, scrape)) in samples.iter().enumerate().skip(201) {
        let step = scenario.step_at((at - 2.5).max(0.0)).unwrap();
        if resumed.decision().step != step.label {
            resumed.begin_step(&step.label);
        }
        assert_eq!(resumed.observe(*at, scrape).unwrap(), live[i]);
    }
    // A recording a judge would refuse names where.
    let mut broken = recording;
    broken.steps[2].samples[3].metrics[0] = sample((f64::NAN, 1.0), (1.0, 1.0));
    let error = replay(&broken).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("recorded step 2 (`25%`), sample 3: metric `errors`"),
        "{error}"
    );
}

/// When the judge failed the canary in each of `seeds` simulated rollouts (None: never).
fn failures(
    config: &JudgeConfig,
    scenario: &Scenario,
    seeds: u64,
    reference: Reference,
) -> Vec<Option<f64>> {
    (0..seeds)
        .map(|seed| {
            let ticks = sim::generate(scenario, 1000 + seed);
            sim::run_airlock(config, scenario, &ticks, reference)
                .unwrap()
                .rollback_at_seconds
        })
        .collect()
}

/// The largest count of false alarms compatible with a rate of at most `alpha` over `n`
/// runs: the mean plus four binomial standard deviations.
fn allowed_false_alarms(alpha: f64, n: u64) -> usize {
    let n = n as f64;
    (alpha * n + 4.0 * (n * alpha * (1.0 - alpha)).sqrt()).floor() as usize
}

#[test]
fn canaries_on_the_null_boundary_fail_at_most_alpha_of_the_time() {
    // α = 0.1 on the errors metric alone, so that a broken guarantee would show within a
    // few hundred runs; the canary is exactly at the boundary of the null (10 % worse, the
    // tolerance), the hardest case the guarantee covers.
    let config = errors_only(0.1);
    let at_boundary = |scenario: Scenario| Scenario {
        canary_error_rate: scenario.error_rate * 1.1,
        ..scenario
    };
    for (scenario, reference) in [
        (
            at_boundary(Scenario::healthy("flat")),
            Reference::BaselineAndStable,
        ),
        (
            at_boundary(Scenario {
                error_noise: 0.5,
                error_rate: 0.009,
                ..Scenario::healthy("noisy")
            }),
            Reference::Baseline,
        ),
        // Weights change between steps (1 → 50 %): p_t is per batch, so validity holds.
        (
            at_boundary(stepped("stepped")),
            Reference::BaselineAndStable,
        ),
    ] {
        let seeds = 200;
        let fails = failures(&config, &scenario, seeds, reference);
        let count = fails.iter().filter(|f| f.is_some()).count();
        assert!(
            count <= allowed_false_alarms(0.1, seeds),
            "{}: {count} of {seeds} failed",
            scenario.name
        );
    }
}

#[test]
fn healthy_canaries_are_not_rolled_back_with_the_default_configuration() {
    let config = JudgeConfig::default();
    // The stress scenario breaks the model on purpose; the benchmark reports it.
    for scenario in Scenario::benchmark_set()
        .into_iter()
        .filter(|s| !s.regression && s.version_noise == 0.0)
    {
        let seeds = 60;
        let fails = failures(&config, &scenario, seeds, Reference::BaselineAndStable);
        let count = fails.iter().filter(|f| f.is_some()).count();
        assert!(
            count <= allowed_false_alarms(0.01, seeds),
            "{}: {count} of {seeds}",
            scenario.name
        );
    }
}

#[test]
fn a_4x_error_regression_at_10_percent_traffic_is_caught_within_about_a_minute() {
    let scenario = Scenario::benchmark_set()
        .into_iter()
        .find(|s| s.name.starts_with("4x"))
        .unwrap();
    let seeds = 60;
    let mut times: Vec<f64> = failures(
        &JudgeConfig::default(),
        &scenario,
        seeds,
        Reference::BaselineAndStable,
    )
    .into_iter()
    .map(|t| t.expect("every 4x regression is caught within 30 minutes"))
    .collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    assert!(median <= 90.0, "median {median} s");
    assert!(
        times[times.len() - 1] <= 600.0,
        "slowest {} s",
        times[times.len() - 1]
    );
}

#[test]
fn the_peer_rules_act_as_published() {
    let scenario = Scenario::benchmark_set()
        .into_iter()
        .find(|s| s.name.starts_with("4x"))
        .unwrap();
    let ticks = sim::generate(&scenario, 1);
    // Flagger: five failed one-minute checks, then the rollback at the next interval.
    assert_eq!(sim::FlaggerRule::default().rollback_at(&ticks), Some(360.0));
    // Argo: the fourth failed five-minute measurement exceeds failureLimit 3.
    assert_eq!(sim::ArgoRule::default().rollback_at(&ticks), Some(1200.0));
    // Missing data: every scrape lost. Flagger counts it as failed checks; Argo's
    // measurements error, and the fifth consecutive error aborts.
    let blind: Vec<sim::Tick> = ticks
        .iter()
        .map(|t| sim::Tick {
            missing: true,
            ..t.clone()
        })
        .collect();
    assert_eq!(sim::FlaggerRule::default().rollback_at(&blind), Some(360.0));
    assert_eq!(sim::ArgoRule::default().rollback_at(&blind), Some(1500.0));
    // Kayenta: identical series pass; a clearly higher canary is High.
    let rule = sim::KayentaRule::default();
    let control: Vec<f64> = (0..20).map(|i| 0.005 + 0.0001 * (i % 7) as f64).collect();
    assert_eq!(rule.classify(&control, &control), sim::Classification::Pass);
    let high: Vec<f64> = control.iter().map(|v| v * 4.0).collect();
    assert_eq!(rule.classify(&control, &high), sim::Classification::High);
    assert_eq!(rule.rollback_at(&ticks), Some(600.0));
}

/// A Python with SciPy in a virtualenv under the test target directory, made once.
fn scipy_python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scipy-venv");
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import scipy.stats, scipy.special, scipy.optimize"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready(&python) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "scipy>=1.10,<2"])
                .status()
                .is_ok_and(|s| s.success());
        if !made || !ready(&python) {
            assert!(
                std::env::var_os("CI").is_none(),
                "the SciPy reference test needs python3 with venv (Debian packages python3, python3-venv) and PyPI's scipy"
            );
            eprintln!("skipping: could not set up python3 with scipy");
            return None;
        }
    }
    Some(python)
}

/// The reference computation, independent of the crate: the same definitions (grid,
/// priors, binomial likelihood, gamma mixture) written with SciPy.
const SCIPY_REFERENCE: &str = r#"
import json, sys
import numpy as np
from scipy.stats import binom, norm
from scipy.special import logsumexp, gammaln
from scipy.optimize import brentq

spec = json.load(sys.stdin)
g = spec["grid"]
u = np.linspace(np.log(g["min"]), np.log(g["max"]), g["points"])
u[g["points"] // 2] = 0.0
theta = np.exp(u)

def log_likelihood(batches, ratio):
    total = 0.0
    for ce, nc, re, nr in batches:
        p = ratio * nc / (ratio * nc + nr)
        total += binom.logpmf(int(ce), int(ce + re), p)
    return total

def normalised(log_w):
    return log_w - logsumexp(log_w)

out = []
for case in spec["cases"]:
    batches, null, alpha = case["batches"], case["null_ratio"], case["alpha"]
    L = np.array([log_likelihood(batches, t) for t in theta])
    L0 = log_likelihood(batches, null)
    centre = np.log(g["fail_center"]) * (1 if case["higher_is_worse"] else -1)
    alternative = theta > null if case["higher_is_worse"] else theta < null
    log_w = np.where(alternative, norm.logpdf(u, centre, g["fail_sd"]), -np.inf)
    log_w = normalised(log_w)
    log_e = logsumexp(log_w + L) - L0
    log_v = normalised(norm.logpdf(u, 0.0, g["interval_sd"]))
    threshold = logsumexp(log_v + L) - np.log(1.0 / alpha)
    inside = np.nonzero(L > threshold)[0]
    first, last = inside[0], inside[-1]
    lower = 0.0 if first == 0 else theta[first - 1]
    upper = g["max"] if last == len(theta) - 1 else theta[last + 1]
    e, n, a = case["rate_events"], case["rate_exposure"], g["rate_shape"]
    f = lambda x: x + a * np.log(a) + gammaln(a + e) - gammaln(a) - (a + e) * np.log(x + a) - np.log(1.0 / alpha)
    hi = e + 1.0
    while f(hi) < 0:
        hi *= 2
    rate_upper = brentq(f, e, hi, xtol=1e-14, rtol=1e-15) / n
    rate_lower = 0.0 if f(0.0) < 0 else brentq(f, 0.0, e, xtol=1e-14, rtol=1e-15) / n
    out.append({"log_e": float(log_e), "lower": float(lower), "upper": float(upper),
                "rate_lower": float(rate_lower), "rate_upper": float(rate_upper),
                "gammaln": float(gammaln(e + a))})
json.dump(out, sys.stdout)
"#;

#[test]
fn the_statistics_match_an_independent_scipy_computation() {
    let Some(python) = scipy_python() else {
        return;
    };
    struct Case {
        batches: Vec<[f64; 4]>,
        direction: Direction,
        null_ratio: f64,
        alpha: f64,
        rate_events: f64,
        rate_exposure: f64,
    }
    let case = |batches: Vec<[f64; 4]>, direction, null_ratio, alpha, rate: (f64, f64)| Case {
        batches,
        direction,
        null_ratio,
        alpha,
        rate_events: rate.0,
        rate_exposure: rate.1,
    };
    let cases = [
        // A 4× regression at a 1:9 split, a few batches.
        case(
            vec![
                [2.0, 50.0, 2.0, 450.0],
                [1.0, 48.0, 3.0, 455.0],
                [3.0, 52.0, 2.0, 440.0],
            ],
            Direction::HigherIsWorse,
            1.1,
            0.005,
            (6.0, 150.0),
        ),
        // A healthy canary, splits changing between batches.
        case(
            vec![
                [1.0, 10.0, 40.0, 990.0],
                [5.0, 500.0, 6.0, 500.0],
                [9.0, 1000.0, 1.0, 100.0],
            ],
            Direction::HigherIsWorse,
            1.25,
            0.01,
            (15.0, 1510.0),
        ),
        // Lower is worse, large counts.
        case(
            vec![
                [30_000.0, 1e6, 350_000.0, 9e6],
                [31_000.0, 1e6, 349_000.0, 9e6],
            ],
            Direction::LowerIsWorse,
            1.0 / 1.1,
            0.005,
            (61_000.0, 2e6),
        ),
        // No events at all: flat likelihood, unbounded interval, e-value 1.
        case(
            vec![[0.0, 100.0, 0.0, 900.0]],
            Direction::HigherIsWorse,
            1.0,
            0.05,
            (0.0, 100.0),
        ),
        // Events only on the canary: the ratio is unbounded above.
        case(
            vec![[7.0, 100.0, 0.0, 900.0]],
            Direction::HigherIsWorse,
            1.5,
            0.01,
            (7.0, 100.0),
        ),
    ];
    let input = serde_json::json!({
        "grid": {
            "min": stats::GRID_MIN, "max": stats::GRID_MAX, "points": stats::GRID_POINTS,
            "fail_center": stats::FAIL_PRIOR_CENTER, "fail_sd": stats::FAIL_PRIOR_LOG_SD,
            "interval_sd": stats::INTERVAL_PRIOR_LOG_SD, "rate_shape": stats::RATE_PRIOR_SHAPE,
        },
        "cases": cases.iter().map(|c| serde_json::json!({
            "batches": c.batches, "null_ratio": c.null_ratio, "alpha": c.alpha,
            "higher_is_worse": c.direction == Direction::HigherIsWorse,
            "rate_events": c.rate_events, "rate_exposure": c.rate_exposure,
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(SCIPY_REFERENCE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();

    let close = |ours: f64, theirs: &serde_json::Value, relative: f64, what: &str| {
        let theirs = theirs.as_f64().unwrap();
        assert!(
            (ours - theirs).abs() <= relative * theirs.abs().max(1.0),
            "{what}: ours {ours}, SciPy {theirs}"
        );
    };
    for (i, (case, expected)) in cases.iter().zip(&expected).enumerate() {
        let mut likelihood = RatioLikelihood::new(case.null_ratio);
        for [ce, nc, re, nr] in &case.batches {
            likelihood.add_batch(*ce, *nc, *re, *nr);
        }
        let weights = stats::fail_log_weights(case.null_ratio, case.direction);
        close(
            likelihood.log_e_value(&weights),
            &expected["log_e"],
            1e-9,
            &format!("case {i} ln E"),
        );
        let bounds = likelihood.confidence_bounds(case.alpha);
        close(
            bounds.lower,
            &expected["lower"],
            1e-12,
            &format!("case {i} lower bound"),
        );
        close(
            bounds.upper,
            &expected["upper"],
            1e-12,
            &format!("case {i} upper bound"),
        );
        let (rate_lower, rate_upper) =
            stats::rate_confidence_bounds(case.rate_events, case.rate_exposure, case.alpha);
        close(
            rate_lower,
            &expected["rate_lower"],
            1e-9,
            &format!("case {i} rate lower"),
        );
        close(
            rate_upper.unwrap(),
            &expected["rate_upper"],
            1e-9,
            &format!("case {i} rate upper"),
        );
        close(
            stats::ln_gamma(case.rate_events + 1.0),
            &expected["gammaln"],
            1e-13,
            &format!("case {i} ln Γ"),
        );
    }
}
