//! L0, the vocabulary: the words every layer speaks and nothing else — how
//! an op ended (`outcome`), what a topology is made of (`topo`), durations
//! and sizes (`units`), the expectation grammar (`expect`) and the span-
//! carrying refusals that scenario validation turns into file:line:col
//! (`check`), where RESP frames end (`resp`) and who left a thing behind
//! (`owner`). Nothing here imports
//! another module of the crate.

pub mod check;
pub mod expect;
pub mod gate;
pub mod outcome;
pub mod owner;
pub mod resp;
pub mod topo;
pub mod units;
