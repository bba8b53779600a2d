//! The drift evaluation harness.
//!
//! Three sets of seeded traces per scenario ([`scenarios`]), each drawn from its own stream:
//! - **history**: legitimate traces only, played while the categories are in `learn`, as an
//!   organisation would start: the profiles learn what ordinary work looks like;
//! - **train**: legitimate and bad traces, played in `enforce` with the high-risk hold and the
//!   refusal switched off (the exfiltration hold stays), to see every call's score; the hold
//!   threshold is chosen here: the highest recall in time with at most 1% false positives;
//! - **test**: fresh legitimate and bad traces, played with the chosen threshold in the policy. The
//!   reported numbers are this split's real decisions.
//!
//! Everything runs through the real engine ([`run`]): the same grant, delegation and decision
//! paths as the API, a real SQLite ledger, the default Cedar policy.

#![forbid(unsafe_code)]

pub mod run;
pub mod scenarios;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use run::{Org, Outcome};
use scenarios::{Trace, Variant};
use std::fmt::Write as _;

/// How many traces of each kind, per scenario.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Legitimate traces learned from.
    pub history: usize,
    /// Legitimate traces of the training split.
    pub train_legit: usize,
    /// Bad traces of the training split, per variant.
    pub train_bad: usize,
    /// Legitimate traces of the test split.
    pub test_legit: usize,
    /// Bad traces of the test split, per variant.
    pub test_bad: usize,
}

/// The threshold candidates for the high-risk hold.
const THRESHOLDS: [u32; 15] = [30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100];
/// The most false positives the chosen threshold may have on the training split.
pub const MAX_FALSE_POSITIVE_RATE: f64 = 0.01;

fn traces(rng: &mut ChaCha8Rng, legit: usize, bad: usize) -> Vec<Trace> {
    let scenarios = scenarios::all();
    let mut out = Vec::new();
    for (i, s) in scenarios.iter().enumerate() {
        for _ in 0..legit {
            out.push(s.trace(i, Variant::Legit, rng));
        }
        for v in Variant::BAD {
            for _ in 0..bad {
                out.push(s.trace(i, v, rng));
            }
        }
    }
    // Scenarios and kinds interleaved, as a day's traffic is.
    out.shuffle(rng);
    out
}

/// The evaluation's results.
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The sizes.
    pub sizes: Sizes,
    /// The chosen threshold of the high-risk hold.
    pub threshold: u32,
    /// The training split's (false positive rate, recall) at each candidate.
    pub tuning: Vec<(u32, f64, f64)>,
    /// The test split's outcomes.
    pub test: Vec<Outcome>,
    /// Decisions made in all.
    pub decisions: usize,
    /// Wall time, seconds.
    pub seconds: f64,
}

fn rate(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 / of as f64
    }
}

impl Report {
    /// Recall in time and false-positive rate over the test split's traces that `keep` selects.
    pub fn rates(&self, keep: impl Fn(&Outcome) -> bool) -> (f64, f64) {
        let kept: Vec<&Outcome> = self.test.iter().filter(|o| keep(o)).collect();
        let legit: Vec<&&Outcome> = kept.iter().filter(|o| o.variant == Variant::Legit).collect();
        let bad: Vec<&&Outcome> = kept.iter().filter(|o| o.variant != Variant::Legit).collect();
        (
            rate(bad.iter().filter(|o| o.caught_in_time()).count(), bad.len()),
            rate(legit.iter().filter(|o| o.false_positive()).count(), legit.len()),
        )
    }

    /// Refusals that were not drift's: the generator put a call outside its mandate.
    pub fn unexpected(&self) -> Vec<String> {
        self.test.iter().flat_map(|o| o.unexpected.iter().cloned()).collect()
    }

    /// The report, as BENCHMARKS.md shows it.
    pub fn markdown(&self) -> String {
        let scenarios = scenarios::all();
        let mut m = String::new();
        let s = self.sizes;
        let _ = writeln!(
            m,
            "Seed {}; per scenario: {} legitimate traces learned from (categories in `learn`), a training split of {} legitimate and {} bad traces per attack, a test split of {} legitimate and {} bad per attack. {} decisions through the engine in {:.0} s.\n",
            self.seed, s.history, s.train_legit, s.train_bad, s.test_legit, s.test_bad, self.decisions, self.seconds
        );
        let _ = writeln!(
            m,
            "Threshold of `call.hold-high-risk` chosen on the training split: **{}** (the highest recall in time with at most {:.0}% false positives, or the fewest any threshold reaches if that is more; ties go to the higher threshold). Training split, per candidate: {}.\n",
            self.threshold,
            MAX_FALSE_POSITIVE_RATE * 100.0,
            self.tuning
                .iter()
                .map(|(t, fp, r)| format!("{t}: recall {:.1}%, FP {:.1}%", r * 100.0, fp * 100.0))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let _ = writeln!(m, "Test split, real decisions with that threshold in the policy:\n");
        let _ = writeln!(
            m,
            "| scenario | recall in time | false positives | legitimate traces | bad traces | caught late | missed |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|---|---|");
        for (i, sc) in scenarios.iter().enumerate() {
            let of = |o: &Outcome| o.scenario == i;
            let (recall, fp) = self.rates(of);
            let legit = self.test.iter().filter(|o| of(o) && o.variant == Variant::Legit).count();
            let bad: Vec<&Outcome> = self.test.iter().filter(|o| of(o) && o.variant != Variant::Legit).collect();
            let late = bad.iter().filter(|o| !o.caught_in_time() && o.first_flagged().is_some()).count();
            let missed = bad.iter().filter(|o| o.first_flagged().is_none()).count();
            let _ = writeln!(
                m,
                "| {} | {:.1}% | {:.2}% | {legit} | {} | {late} | {missed} |",
                sc.name,
                recall * 100.0,
                fp * 100.0,
                bad.len()
            );
        }
        let (recall, fp) = self.rates(|_| true);
        let _ = writeln!(m, "| **all** | **{:.1}%** | **{:.2}%** | | | | |\n", recall * 100.0, fp * 100.0);
        let _ = writeln!(m, "Recall in time per attack (all scenarios):\n");
        let _ = writeln!(m, "| attack | recall in time | median score of the call held or refused |");
        let _ = writeln!(m, "|---|---|---|");
        for v in Variant::BAD {
            let (recall, _) = self.rates(|o| o.variant == v);
            let mut scores: Vec<u32> = self
                .test
                .iter()
                .filter(|o| o.variant == v)
                .filter_map(|o| o.calls.iter().find(|c| c.flagged).map(|c| c.score))
                .collect();
            scores.sort_unstable();
            let median = scores.get(scores.len() / 2).map_or("-".to_owned(), u32::to_string);
            let _ = writeln!(m, "| {} | {:.1}% | {median} |", v.name(), recall * 100.0);
        }
        let mut legit_scores: Vec<u32> = self
            .test
            .iter()
            .filter(|o| o.variant == Variant::Legit)
            .flat_map(|o| o.calls.iter().map(|c| c.score))
            .collect();
        legit_scores.sort_unstable();
        let pct = |p: f64| legit_scores.get(((legit_scores.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0);
        let _ = writeln!(
            m,
            "\nScores of legitimate calls in the test split: median {}, p99 {}, max {}. Refusals that were not drift's (a call the generator put outside its mandate): {}.",
            pct(0.5),
            pct(0.99),
            legit_scores.last().copied().unwrap_or(0),
            self.unexpected().len()
        );
        m
    }
}

/// Runs the evaluation.
pub async fn evaluate(seed: u64, sizes: Sizes) -> anyhow::Result<Report> {
    let started = std::time::Instant::now();
    let mut history_rng = ChaCha8Rng::seed_from_u64(seed);
    let mut train_rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1));
    let mut test_rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(2));
    let mut gaps = ChaCha8Rng::seed_from_u64(seed.wrapping_add(3));
    let history = traces(&mut history_rng, sizes.history, 0);
    let train = traces(&mut train_rng, sizes.train_legit, sizes.train_bad);
    let test = traces(&mut test_rng, sizes.test_legit, sizes.test_bad);
    let mut org = Org::start(scenarios::all()).await?;
    let mut decisions = 0;
    let mut gap = || rand::Rng::gen_range(&mut gaps, 60..=1_800);

    for t in &history {
        decisions += org.play(t, gap()).await?.calls.len();
    }
    org.set_mode(mandate_engine::behaviour::taxonomy::Mode::Enforce).await?;
    org.set_policy(101, 101).await?;
    let mut trained = Vec::new();
    for t in &train {
        let o = org.play(t, gap()).await?;
        decisions += o.calls.len();
        trained.push(o);
    }
    let legit: Vec<&Outcome> = trained.iter().filter(|o| o.variant == Variant::Legit).collect();
    let bad: Vec<&Outcome> = trained.iter().filter(|o| o.variant != Variant::Legit).collect();
    let tuning: Vec<(u32, f64, f64)> = THRESHOLDS
        .iter()
        .map(|&t| {
            let fp = rate(legit.iter().filter(|o| o.flagged_at(t, None)).count(), legit.len());
            let recall = rate(bad.iter().filter(|o| o.flagged_at(t, o.harmful)).count(), bad.len());
            (t, fp, recall)
        })
        .collect();
    // Holds that do not depend on the threshold (the exfiltration shape) set a floor under the false
    // positives; if even the floor is above the target, the threshold is chosen against the floor.
    let floor = tuning.iter().map(|(_, fp, _)| *fp).fold(f64::INFINITY, f64::min);
    let allowed = MAX_FALSE_POSITIVE_RATE.max(floor);
    let threshold = tuning
        .iter()
        .filter(|(_, fp, _)| *fp <= allowed)
        .max_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)))
        .map_or(100, |(t, _, _)| *t);
    org.set_policy(threshold, threshold.max(90)).await?;
    let mut tested = Vec::new();
    for t in &test {
        let o = org.play(t, gap()).await?;
        decisions += o.calls.len();
        tested.push(o);
    }
    org.engine().flush_drift_profiles().await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(Report { seed, sizes, threshold, tuning, test: tested, decisions, seconds: started.elapsed().as_secs_f64() })
}
