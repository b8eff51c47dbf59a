//! `gc_pause`: a fault in the application rather than in Redis. The next
//! lock holder stalls inside its critical section until the fault ends,
//! like a stop-the-world pause; longer than the lock's TTL, the lock
//! expires under it. In the queue workload, the next consumer to take a job
//! stalls with it; longer than `claim_after`, another consumer reclaims the
//! job. It needs one of those two workloads.

use super::{Env, Window};
use crate::workload::lock::GcPause;
use std::sync::Arc;

/// A gc_pause takes no parameters.
pub const KEYS: &[&str] = &[];

/// The pause, armed.
pub struct Active {
    gc: Arc<GcPause>,
}

/// Arms the pause until the fault's end.
pub fn apply(env: &Env, w: &Window) -> Option<Active> {
    let gc = env.gc.clone()?;
    gc.arm(w.end);
    Some(Active { gc })
}

impl Active {
    /// The paused holder wakes by itself; recovery starts once it has left
    /// the resource.
    pub async fn remove(self) {
        self.gc.end().await;
    }
}
