//! A latency histogram (µs) that a recorder keeps live while it fills and
//! packed (its V2 encoding) once it is old.

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use std::borrow::Cow;

/// A latency histogram (µs) that can be packed away: a second long past
/// is kept as its V2 encoding (a few hundred bytes, against
/// about 10 kB for the counts array), so an hour's per-second histograms
/// stay small. Reading a packed one decodes it; recording into one unpacks
/// it.
#[derive(Debug, Clone)]
pub enum Hist {
    Live(Box<Histogram<u64>>),
    Packed(Box<[u8]>),
}

impl Hist {
    pub(super) fn new(sigfig: u8) -> Hist {
        Hist::Live(Box::new(
            Histogram::new(sigfig).expect("valid histogram precision"),
        ))
    }

    /// The histogram itself, decoded if packed.
    pub fn histogram(&self) -> Cow<'_, Histogram<u64>> {
        match self {
            Hist::Live(h) => Cow::Borrowed(&**h),
            Hist::Packed(bytes) => Cow::Owned(
                Deserializer::new()
                    .deserialize(&mut &bytes[..])
                    .expect("a histogram this recorder encoded decodes"),
            ),
        }
    }

    pub fn value_at_quantile(&self, q: f64) -> u64 {
        self.histogram().value_at_quantile(q)
    }

    pub fn max(&self) -> u64 {
        self.histogram().max()
    }

    pub fn mean(&self) -> f64 {
        self.histogram().mean()
    }

    /// Records `v`; the histogram grows to fit, and only a value beyond its
    /// range saturates.
    pub(super) fn record(&mut self, v: u64) {
        if let Hist::Packed(_) = self {
            let mut h = self.histogram().into_owned();
            // A decoded histogram keeps the range it was packed with.
            h.auto(true);
            *self = Hist::Live(Box::new(h));
        }
        if let Hist::Live(h) = self {
            if h.record(v).is_err() {
                h.saturating_record(v);
            }
        }
    }

    /// Packs a live histogram into its encoding.
    pub(super) fn pack(&mut self) {
        if let Hist::Live(h) = self {
            let mut bytes = Vec::new();
            if V2Serializer::new().serialize(h, &mut bytes).is_ok() {
                *self = Hist::Packed(bytes.into_boxed_slice());
            }
        }
    }
}
