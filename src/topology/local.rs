//! The process backend's launch: `redis-server` as a child process that
//! the kernel kills if gameday itself dies (PR_SET_PDEATHSIG).

use super::config::redis_server_bin;
use super::TopologyError;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Starts `redis-server` with `args`.
pub(super) fn spawn_process(args: &[String]) -> Result<Child, TopologyError> {
    let bin = redis_server_bin();
    let mut cmd = Command::new(&bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to
    // SIGKILL this child if the thread that spawned it dies.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|source| TopologyError::Spawn { bin, source })
}
