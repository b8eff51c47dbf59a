//! The second reading of a scenario file: the tables whose keys depend on
//! their `kind` (`[workload]`, each `[[fault]]`). Every key is first
//! checked against what its kind takes (so a key of another kind is named
//! as such, with its place); then the table is deserialized as that kind's
//! own parameters, through the TOML deserializer itself, so that every
//! value keeps its span.

use super::raw::RawFaultHead;
use super::{VResult, Validator};
use crate::fault::{Fault, FaultCtx, FaultKind, COMMON_KEYS};
use crate::vocab::check::Checked;
use crate::workload::{RawWorkload, WorkloadKind};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// The keys of the `[workload]` or `[target]` table, with where each is
/// written.
#[derive(Deserialize)]
struct WorkloadKeys {
    workload: Option<BTreeMap<Spanned<String>, IgnoredAny>>,
    target: Option<BTreeMap<Spanned<String>, IgnoredAny>>,
}

/// Reads the `[workload]` (or `[target]`) table as `kind`'s own parameters.
pub(super) fn workload(v: &Validator, kind: WorkloadKind) -> VResult<RawWorkload> {
    let keys: WorkloadKeys = toml::from_str(v.text).map_err(|e| v.toml_err(&e))?;
    let section = kind.spec().section;
    let table = if section == "target" {
        keys.target
    } else {
        keys.workload
    };
    for key in table.unwrap_or_default().keys() {
        let k = key.get_ref().as_str();
        if k != "kind" && !(kind.spec().keys)().contains(&k) {
            return Err(v.err(key.span(), foreign_key(kind, k)));
        }
    }
    let seed = Section {
        name: section,
        seed: KindSeed(kind),
    };
    let raw = seed
        .deserialize(toml::Deserializer::new(v.text))
        .map_err(|e| v.toml_err(&e))?;
    Ok(raw.expect("the first reading found the table"))
}

/// Why `key` is not for a `kind` workload: which kinds it belongs to, and
/// what `kind` takes instead.
fn foreign_key(kind: WorkloadKind, key: &str) -> String {
    let takes = (kind.spec().keys)().join(", ");
    let owners: Vec<&str> = WorkloadKind::ALL
        .iter()
        .filter(|k| k.spec().section == kind.spec().section && (k.spec().keys)().contains(&key))
        .map(|k| k.as_str())
        .collect();
    let kind = kind.as_str();
    if kind == "http" {
        return format!("unknown field `{key}`: an http target takes kind, {takes}");
    }
    match owners.as_slice() {
        [] => format!("unknown field `{key}`: the {kind} workload takes kind, {takes}"),
        [one] => {
            format!("`{key}` applies to the {one} workload, not {kind} ({kind} takes {takes})")
        }
        [many @ .., last] => format!(
            "`{key}` applies to the {} and {last} workloads, not {kind} ({kind} takes {takes})",
            many.join(", ")
        ),
    }
}

/// The keys of each `[[fault]]` table, with where each is written.
#[derive(Deserialize)]
struct FaultKeys {
    #[serde(default)]
    fault: Vec<BTreeMap<Spanned<String>, IgnoredAny>>,
}

/// Checks every key of every `[[fault]]` against what its kind takes.
pub(super) fn fault_keys(v: &Validator, heads: &[Spanned<RawFaultHead>]) -> VResult<()> {
    let keys: FaultKeys = toml::from_str(v.text).map_err(|e| v.toml_err(&e))?;
    for (table, head) in keys.fault.iter().zip(heads) {
        let head = head.get_ref();
        let kind = *head.kind.get_ref();
        for key in table.keys() {
            let k = key.get_ref().as_str();
            if COMMON_KEYS.contains(&k) || kind.keys().contains(&k) {
                continue;
            }
            let (at_key, message) = foreign_fault_key(kind, k);
            let span = if at_key { key.span() } else { head.name.span() };
            return Err(v.err(span, format!("fault `{}`: {message}", head.name.get_ref())));
        }
    }
    Ok(())
}

/// Why `key` is not for a `kind` fault, and whether to point at the key
/// itself (rather than at the fault's name).
fn foreign_fault_key(kind: FaultKind, key: &str) -> (bool, String) {
    let owners: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|k| k.keys().contains(&key))
        .collect();
    let k = kind.as_str();
    let takes = match kind.keys() {
        [] => "no parameters".to_string(),
        keys => keys.join(", "),
    };
    match owners.as_slice() {
        [] => (true, format!("unknown field `{key}` (a `{k}` fault takes: {takes})")),
        [FaultKind::Failover] => (true, format!("`{key}` applies to kind `failover` only")),
        [FaultKind::MemoryPressure] => {
            (false, format!("`{key}` applies to kind `memory_pressure` only"))
        }
        _ if kind.on_the_node() => (
            false,
            format!("`{key}` does not apply to kind `{k}`, which acts on the node itself (it takes target, at and for)"),
        ),
        _ if kind == FaultKind::Partition => (
            false,
            "a `partition` cuts both directions of every peer connection; it takes no `stream` or `toxicity`".into(),
        ),
        _ => (false, format!("`{key}` does not apply to kind `{k}` (it takes: {takes})")),
    }
}

/// Reads each `[[fault]]` table as its kind's own parameters, validated.
pub(super) fn faults(v: &Validator, ctxs: &[FaultCtx]) -> VResult<Vec<Checked<Fault>>> {
    if ctxs.is_empty() {
        return Ok(Vec::new());
    }
    let seed = Section {
        name: "fault",
        seed: FaultsSeed(ctxs),
    };
    let read = seed
        .deserialize(toml::Deserializer::new(v.text))
        .map_err(|e| v.toml_err(&e))?;
    Ok(read.expect("the first reading found the faults"))
}

/// Deserializes the `[[fault]]` array, each table as its own kind.
struct FaultsSeed<'a>(&'a [FaultCtx<'a>]);

impl<'de> DeserializeSeed<'de> for FaultsSeed<'_> {
    type Value = Vec<Checked<Fault>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FaultsSeed<'_> {
    type Value = Vec<Checked<Fault>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of fault tables")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        for ctx in self.0 {
            match seq.next_element_seed(FaultSeed(ctx))? {
                Some(f) => out.push(f),
                None => break,
            }
        }
        Ok(out)
    }
}

/// Deserializes one fault's table as its kind's parameters.
struct FaultSeed<'a>(&'a FaultCtx<'a>);

impl<'de> DeserializeSeed<'de> for FaultSeed<'_> {
    type Value = Checked<Fault>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.kind.read(d, self.0)
    }
}

/// Deserializes one kind's table.
struct KindSeed(WorkloadKind);

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = RawWorkload;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RawWorkload, D::Error> {
        self.0.raw(d)
    }
}

/// Deserializes the top-level table `name` of a document with `seed`,
/// skipping every other key (the first reading checked them).
struct Section<S> {
    name: &'static str,
    seed: S,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Section<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Section<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scenario table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seed = Some(self.seed);
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            match (key == self.name, seed.take()) {
                (true, Some(s)) => found = Some(map.next_value_seed(s)?),
                (_, s) => {
                    seed = s;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}
