//! `cargo xtask bench pipeline`: the criterion benchmarks of the collector's
//! per-event path (SYNTHETIC events), then the record-mode one judged
//! against its goal from criterion's own estimate.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::Value;

/// Criterion's folder of the record-mode benchmark (its id, `:` made `_`).
const RECORD_BENCH_DIR: &str =
    "pipeline (synthetic events)/record_ decode + update + compact recording line";

/// Goal of the record-mode path: ring records → recording lines, events
/// per second on one core.
pub const RECORD_GOAL_PER_SEC: f64 = 5e6;

/// Events per second of the record-mode benchmark in its last run, from
/// `criterion_dir` (`target/criterion`): its elements per iteration over
/// the mean time of an iteration.
pub fn record_rate(criterion_dir: &Path) -> Result<f64> {
    let dir = criterion_dir.join(RECORD_BENCH_DIR).join("new");
    let read = |name: &str| -> Result<Value> {
        let p = dir.join(name);
        let text = std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))
    };
    let events = read("benchmark.json")?["throughput"]["Elements"]
        .as_f64()
        .context("no element count in the benchmark's description")?;
    let mean_ns = read("estimates.json")?["mean"]["point_estimate"]
        .as_f64()
        .context("no mean in the benchmark's estimates")?;
    anyhow::ensure!(mean_ns > 0.0, "a mean of {mean_ns} ns");
    Ok(events / (mean_ns / 1e9))
}

/// The verdict line of a rate.
pub fn verdict(rate: f64) -> String {
    format!(
        "record mode (decode + update + compact recording line): {:.2} M events/s, goal ≥ {:.0} M/s: {}",
        rate / 1e6,
        RECORD_GOAL_PER_SEC / 1e6,
        if rate >= RECORD_GOAL_PER_SEC {
            "met"
        } else {
            "not met"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_comes_from_criterions_files() {
        let root = std::env::temp_dir().join(format!("xtask-pipeline-{}", std::process::id()));
        let dir = root.join(RECORD_BENCH_DIR).join("new");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("benchmark.json"),
            r#"{"throughput":{"Elements":100000}}"#,
        )
        .expect("write");
        std::fs::write(
            dir.join("estimates.json"),
            r#"{"mean":{"point_estimate":12500000.0}}"#,
        )
        .expect("write");
        let rate = record_rate(&root).expect("rate");
        assert!((rate - 8e6).abs() < 1.0, "{rate}");
        assert!(verdict(rate).ends_with(": met"), "{}", verdict(rate));
        assert!(verdict(4.9e6).ends_with("not met"));
        assert!(record_rate(&root.join("none")).is_err());
        std::fs::remove_dir_all(&root).expect("clean up");
    }
}
