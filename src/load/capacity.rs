//! The capacity search's plan and its decisions, apart from running the
//! steps (the run layer does that): raise the offered rate step by step
//! (a factor or an increment) until a step breaks an SLO rule, then bisect
//! between the last good and the first bad rate down to `resolution`.

use crate::vocab::expect::Expectation;
use std::time::Duration;

/// `[capacity]`, checked.
#[derive(Debug, Clone)]
pub struct CapacityPlan {
    /// The first step's rate, ops/s.
    pub start: f64,
    pub growth: Growth,
    /// No step offers more.
    pub max: f64,
    /// How long each step holds its rate.
    pub hold: Duration,
    /// The search stops when good and bad are this close, ops/s.
    pub resolution: f64,
    /// Rules without a phase, each judged on every step.
    pub slo: Vec<Expectation>,
}

/// How the rate grows from one step to the next until one fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Growth {
    Factor(f64),
    Step(f64),
}

/// Why the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Bisected to the resolution: the knee is between good and bad.
    Resolved,
    /// Every step up to `max` held.
    ReachedMax,
    /// The first step already failed: the capacity is below `start`.
    BelowStart,
    /// `duration` ran out before the search was done.
    OutOfTime,
}

impl Stop {
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::Resolved => "resolved",
            Stop::ReachedMax => "reached_max",
            Stop::BelowStart => "below_start",
            Stop::OutOfTime => "out_of_time",
        }
    }
}

/// Where the search is: the best rate that held, the least that broke,
/// and what to try next.
#[derive(Debug, Clone)]
pub struct Search {
    plan_start: f64,
    growth: Growth,
    max: f64,
    resolution: f64,
    pub good: Option<f64>,
    pub bad: Option<f64>,
    next: Result<f64, Stop>,
}

impl Search {
    pub fn new(plan: &CapacityPlan) -> Search {
        Search {
            plan_start: plan.start,
            growth: plan.growth,
            max: plan.max,
            resolution: plan.resolution,
            good: None,
            bad: None,
            next: Ok(plan.start.min(plan.max)),
        }
    }

    /// The rate of the next step, or why there is none.
    pub fn next(&self) -> Result<f64, Stop> {
        self.next
    }

    /// Takes a step's result and decides the next.
    pub fn record(&mut self, rate: f64, held: bool) {
        if held {
            self.good = Some(self.good.map_or(rate, |g| g.max(rate)));
        } else {
            self.bad = Some(self.bad.map_or(rate, |b| b.min(rate)));
        }
        self.next = match (self.good, self.bad) {
            (_, None) if rate >= self.max => Err(Stop::ReachedMax),
            (_, None) => Ok(self.grow(rate).min(self.max)),
            (None, Some(_)) if rate <= self.plan_start => Err(Stop::BelowStart),
            (None, Some(b)) => Ok(b / 2.0),
            (Some(g), Some(b)) if b - g <= self.resolution => Err(Stop::Resolved),
            (Some(g), Some(b)) => Ok((g + b) / 2.0),
        };
    }

    fn grow(&self, rate: f64) -> f64 {
        match self.growth {
            Growth::Factor(f) => rate * f,
            Growth::Step(s) => rate + s,
        }
    }

    /// The search ran out of time.
    pub fn out_of_time(&mut self) {
        self.next = Err(Stop::OutOfTime);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(growth: Growth) -> CapacityPlan {
        CapacityPlan {
            start: 1000.0,
            growth,
            max: 20_000.0,
            hold: Duration::from_secs(1),
            resolution: 100.0,
            slo: Vec::new(),
        }
    }

    /// Runs the search against a system whose knee is `knee`.
    fn search(growth: Growth, knee: f64) -> (Search, Vec<f64>) {
        let mut s = Search::new(&plan(growth));
        let mut tried = Vec::new();
        while let Ok(rate) = s.next() {
            tried.push(rate);
            s.record(rate, rate <= knee);
            assert!(tried.len() < 50, "{tried:?}");
        }
        (s, tried)
    }

    #[test]
    fn it_grows_then_bisects_to_the_resolution() {
        let (s, tried) = search(Growth::Factor(1.5), 3800.0);
        assert_eq!(&tried[..5], [1000.0, 1500.0, 2250.0, 3375.0, 5062.5]);
        assert_eq!(s.next(), Err(Stop::Resolved));
        let (g, b) = (s.good.unwrap(), s.bad.unwrap());
        assert!(g <= 3800.0 && 3800.0 < b && b - g <= 100.0, "{g} {b}");
        let (s, tried) = search(Growth::Step(2000.0), 3800.0);
        assert_eq!(&tried[..3], [1000.0, 3000.0, 5000.0]);
        assert!(s.good.unwrap() > 3700.0);
    }

    #[test]
    fn it_stops_at_max_and_below_start() {
        let (s, tried) = search(Growth::Factor(2.0), 1e9);
        assert_eq!(s.next(), Err(Stop::ReachedMax));
        assert_eq!(tried.last(), Some(&20_000.0));
        let (s, tried) = search(Growth::Factor(2.0), 10.0);
        assert_eq!(s.next(), Err(Stop::BelowStart));
        assert_eq!(tried, [1000.0]);
    }
}
