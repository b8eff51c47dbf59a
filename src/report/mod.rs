//! The report directory of a run: `summary.json`, `timeseries.csv`,
//! `latency.hlog`, `report.html`, `junit.xml` (plus goose's own report and,
//! when a run fails, the Redis logs). Every renderer reads one `RunReport`.

pub mod capacity;
pub mod compare;
pub mod console;
pub mod hlog;
pub mod html;
pub mod junit;
pub mod markup;
pub mod summary;
pub mod timeseries;

use crate::recorder::Recorder;
use std::path::Path;
use summary::Summary;

/// Everything a run produced.
pub struct RunReport {
    pub summary: Summary,
    pub recorder: Recorder,
    /// Wall-clock time of the start of load (t0).
    pub started: std::time::SystemTime,
    /// `INFO` from every node, each second.
    pub telemetry: Vec<crate::telemetry::NodeSample>,
}

impl RunReport {
    /// The phase in force at `t_s` seconds (the latest non-`run` phase that
    /// had begun).
    pub fn phase_at(&self, t_s: f64) -> &str {
        self.summary
            .phases
            .iter()
            .rfind(|p| p.name != "run" && p.start_s <= t_s)
            .map_or("baseline", |p| p.name.as_str())
    }

    /// Faults that were in force at some point of `[from_s, to_s)`.
    pub fn faults_during(&self, from_s: f64, to_s: f64) -> Vec<&str> {
        self.summary
            .faults
            .iter()
            .filter(|f| match (f.applied_at_s, f.removed_at_s) {
                (Some(a), r) => a < to_s && r.unwrap_or(f64::INFINITY) > from_s,
                _ => false,
            })
            .map(|f| f.name.as_str())
            .collect()
    }

    /// Writes every file of the report into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(&self.summary).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("summary.json"), json + "\n")?;
        timeseries::write(
            self,
            &mut std::fs::File::create(dir.join("timeseries.csv"))?,
        )?;
        hlog::write(self, &mut std::fs::File::create(dir.join("latency.hlog"))?)?;
        std::fs::write(dir.join("report.html"), html::render(self))?;
        std::fs::write(dir.join("junit.xml"), junit::render(&self.summary))?;
        Ok(())
    }
}
