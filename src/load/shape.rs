//! The offered rate over a run: `[[load.stage]]` steps one after another,
//! each holding a rate or ramping linearly to one, the last rate holding
//! to the end of the run. Without stages, one rate throughout.

use std::time::Duration;

/// One step of the rate, `[start, end)` since t0.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub start: Duration,
    pub end: Duration,
    /// ops/s at `start`, and at `end` (equal unless it ramps).
    pub from: f64,
    pub to: f64,
}

impl Stage {
    /// The stage's phase name, as rules and reports use it.
    pub fn phase(&self) -> String {
        format!("stage:{}", self.name)
    }
}

/// The rate as a function of time.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Contiguous from 0, in order; empty for a constant rate.
    pub stages: Vec<Stage>,
    /// The rate outside every stage (after the last, or throughout).
    pub rest: f64,
}

impl Shape {
    pub fn constant(rate: f64) -> Shape {
        Shape {
            stages: Vec::new(),
            rest: rate,
        }
    }

    /// ops/s at `t_us` µs since t0.
    pub fn rate_at(&self, t_us: f64) -> f64 {
        let t = t_us / 1e6;
        match self.stage_at(t_us) {
            Some(s) => {
                let (a, b) = (s.start.as_secs_f64(), s.end.as_secs_f64());
                let f = if b > a { (t - a) / (b - a) } else { 0.0 };
                s.from + (s.to - s.from) * f.clamp(0.0, 1.0)
            }
            None => self.rest,
        }
    }

    /// The stage in force at `t_us`, if any.
    pub fn stage_at(&self, t_us: f64) -> Option<&Stage> {
        let t = Duration::from_secs_f64(t_us.max(0.0) / 1e6);
        self.stages.iter().find(|s| s.start <= t && t < s.end)
    }

    /// The highest rate anywhere.
    pub fn peak(&self) -> f64 {
        self.stages
            .iter()
            .flat_map(|s| [s.from, s.to])
            .fold(self.rest, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, start: u64, end: u64, from: f64, to: f64) -> Stage {
        Stage {
            name: name.into(),
            start: Duration::from_secs(start),
            end: Duration::from_secs(end),
            from,
            to,
        }
    }

    #[test]
    fn stages_hold_and_ramp_and_the_last_rate_holds_on() {
        let shape = Shape {
            stages: vec![
                stage("warm", 0, 10, 100.0, 100.0),
                stage("ramp", 10, 20, 100.0, 300.0),
            ],
            rest: 300.0,
        };
        assert_eq!(shape.rate_at(5e6), 100.0);
        assert_eq!(shape.rate_at(15e6), 200.0);
        assert_eq!(shape.rate_at(25e6), 300.0);
        assert_eq!(shape.stage_at(15e6).unwrap().phase(), "stage:ramp");
        assert!(shape.stage_at(25e6).is_none());
        assert_eq!(shape.peak(), 300.0);
    }
}
