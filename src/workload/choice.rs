//! Variants: a workload key that lists several values runs each as its own
//! variant, side by side, under the same load and faults.

use super::WorkloadPlan;
use crate::vocab::check::{check, Checked};
use serde::Deserialize;

/// One configuration, or several compared side by side (variants, each
/// named).
pub enum Choice<C> {
    One(C),
    Compare(Vec<(String, C)>),
}

impl<C> Choice<C> {
    pub(crate) fn lift(
        self,
        f: fn(C) -> WorkloadPlan,
    ) -> (WorkloadPlan, Vec<(String, WorkloadPlan)>) {
        match self {
            Choice::One(c) => (f(c), Vec::new()),
            Choice::Compare(list) => {
                let variants: Vec<(String, WorkloadPlan)> =
                    list.into_iter().map(|(n, c)| (n, f(c))).collect();
                (variants[0].1.clone(), variants)
            }
        }
    }
}

/// A boolean key as written: one value (the plan), or a list of values to
/// compare, each a variant named `<key>-off` or `<key>-on`.
pub(crate) fn bool_choice<C: Clone>(
    given: Option<&toml::Spanned<OneOrMany<bool>>>,
    key: &str,
    base: C,
    set: fn(&mut C, bool),
) -> Checked<Choice<C>> {
    let Some(f) = given else {
        return Ok(Choice::One(base));
    };
    let values = match f.get_ref() {
        OneOrMany::Many(values) => values,
        &OneOrMany::One(on) => {
            let mut one = base;
            set(&mut one, on);
            return Ok(Choice::One(one));
        }
    };
    check(f, !values.is_empty(), format!("`{key}` lists no value"))?;
    for (i, v) in values.iter().enumerate() {
        check(
            f,
            !values[..i].contains(v),
            format!("`{key}` lists a value twice"),
        )?;
    }
    let variant = |on: bool| {
        let mut plan = base.clone();
        set(&mut plan, on);
        (format!("{key}-{}", if on { "on" } else { "off" }), plan)
    };
    Ok(Choice::Compare(
        values.iter().map(|&on| variant(on)).collect(),
    ))
}

/// A value, or a list of values to compare as variants.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}
