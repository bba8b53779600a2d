//! A small run of the drift evaluation with its committed seed: the full run (BENCHMARKS.md, "Drift
//! evaluation") is too long for the test suite, this one guards the same properties at a smaller
//! size. The engine is deterministic for a seed, so these numbers do not flake.
#![allow(clippy::unwrap_used)]

use mandate_eval::scenarios::Variant;
use mandate_eval::{evaluate, Sizes};

#[test]
fn a_small_evaluation_catches_attacks_in_time_and_lets_ordinary_work_run() {
    let sizes = Sizes { history: 60, train_legit: 25, train_bad: 4, test_legit: 40, test_bad: 4 };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let report = runtime.block_on(evaluate(20_261_202, sizes)).unwrap();
    let text = report.markdown();
    assert_eq!(report.unexpected(), Vec::<String>::new(), "every harmful call stays inside its mandate:\n{text}");
    let (recall, fp) = report.rates(|_| true);
    assert!(recall >= 0.9, "recall in time {recall}:\n{text}");
    assert!(fp <= 0.03, "false positives {fp}:\n{text}");
    for v in Variant::BAD {
        let (recall, _) = report.rates(|o| o.variant == v);
        assert!(recall >= 0.75, "{}: recall in time {recall}:\n{text}", v.name());
    }
    assert!((30..=100).contains(&report.threshold), "{text}");
    assert!(text.contains("| **all** |"), "{text}");
}
