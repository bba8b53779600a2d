//! `mandate-eval`: runs the drift evaluation and prints (or writes into BENCHMARKS.md) its report.

#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::Parser;
use mandate_eval::{evaluate, Sizes};
use std::path::PathBuf;

/// The drift evaluation: seeded enterprise traces (finance close, HR onboarding, sales research,
/// IT operations), legitimate and adversarial, through the real decision engine. Reports recall in
/// time on bad traces and false positives on legitimate ones, on a test split, with the hold
/// threshold tuned on a training split.
#[derive(Debug, Parser)]
#[command(name = "mandate-eval")]
struct Args {
    /// The seed every trace is drawn from.
    #[arg(long, default_value_t = 20_261_202)]
    seed: u64,
    /// Legitimate traces learned from, per scenario.
    #[arg(long, default_value_t = 150)]
    history: usize,
    /// Legitimate traces per scenario in each split.
    #[arg(long, default_value_t = 200)]
    legit: usize,
    /// Bad traces per scenario and attack in each split.
    #[arg(long, default_value_t = 30)]
    bad: usize,
    /// Replace the "Drift evaluation" section of this file (BENCHMARKS.md) with the report.
    #[arg(long)]
    write: Option<PathBuf>,
}

const START: &str = "<!-- drift-eval:start -->";
const END: &str = "<!-- drift-eval:end -->";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sizes = Sizes {
        history: args.history,
        train_legit: args.legit,
        train_bad: args.bad,
        test_legit: args.legit,
        test_bad: args.bad,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = runtime.block_on(evaluate(args.seed, sizes))?;
    let text = report.markdown();
    println!("{text}");
    for u in report.unexpected().iter().take(20) {
        eprintln!("unexpected: {u}");
    }
    if let Some(path) = args.write {
        let doc = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let (Some(a), Some(b)) = (doc.find(START), doc.find(END)) else {
            anyhow::bail!("{} has no `{START}` ... `{END}` section", path.display());
        };
        let command = format!(
            "Command: `cargo run --release -p mandate-eval -- --seed {} --history {} --legit {} --bad {} --write BENCHMARKS.md`\n\n",
            args.seed, args.history, args.legit, args.bad
        );
        let updated = format!("{}{START}\n{command}{text}{}", &doc[..a], &doc[b..]);
        std::fs::write(&path, updated).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
