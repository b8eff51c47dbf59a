//! Who left it: the owner tag gameday writes on everything that could
//! outlive it on a SIGKILL (container labels, temporary directories, toxics
//! and proxies on a borrowed Toxiproxy), so `gameday clean` can tell an
//! orphan from the work of a live gameday.
//!
//! A tag is `<pid>.<start>.<boot>`: the process id, its start time in clock
//! ticks since boot (field 22 of `/proc/<pid>/stat`) and the first eight
//! characters of the kernel's boot id. A pid alone is reused; the three
//! together name one process of one boot.

use std::sync::OnceLock;

/// The character that joins a tag's parts; safe in toxic names, URL paths,
/// docker labels and file names.
const SEP: char = '.';

/// One process on one boot of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub start: u64,
    pub boot: String,
}

impl Owner {
    /// This process.
    pub fn me() -> &'static Owner {
        static ME: OnceLock<Owner> = OnceLock::new();
        ME.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                pid,
                start: start_ticks(pid).unwrap_or(0),
                boot: boot_id(),
            }
        })
    }

    /// `<pid>.<start>.<boot>`.
    pub fn tag(&self) -> String {
        format!("{}{SEP}{}{SEP}{}", self.pid, self.start, self.boot)
    }

    /// The owner a tag names; `None` for anything else.
    pub fn parse(tag: &str) -> Option<Owner> {
        let mut parts = tag.splitn(3, SEP);
        let pid = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        let boot = parts.next()?;
        let well_formed = boot.len() == 8 && boot.bytes().all(|b| b.is_ascii_hexdigit());
        well_formed.then(|| Owner {
            pid,
            start,
            boot: boot.to_string(),
        })
    }

    /// Whether the process still runs: same boot, and the pid's start time
    /// is still this owner's.
    pub fn is_alive(&self) -> bool {
        self.boot == boot_id() && start_ticks(self.pid) == Some(self.start)
    }
}

/// The start time of process `pid` in clock ticks since boot, if it runs.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 is the first after it; the start time is field 22.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// The first eight characters of this boot's id.
fn boot_id() -> String {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let id: String = id.trim().chars().filter(|c| *c != '-').take(8).collect();
    if id.len() == 8 {
        id
    } else {
        "00000000".to_string()
    }
}

/// A name carrying an owner tag: `<prefix>-<tag>-<rest>`; gameday's toxics
/// and borrowed-Toxiproxy proxies are named this way.
pub fn tagged(prefix: &str, rest: &str) -> String {
    format!("{prefix}-{}-{rest}", Owner::me().tag())
}

/// The owner of a name made by [`tagged`] with `prefix`, if it is one.
pub fn owner_of(prefix: &str, name: &str) -> Option<Owner> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (tag, _) = rest.split_once('-')?;
    Owner::parse(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_its_tag_reads_back() {
        let me = Owner::me();
        assert!(me.start > 0, "the start time is read from /proc");
        assert!(me.is_alive());
        assert_eq!(Owner::parse(&me.tag()).as_ref(), Some(me));
        let name = tagged("gameday", "latency_downstream");
        assert_eq!(owner_of("gameday", &name).as_ref(), Some(me));
    }

    #[test]
    fn a_reused_pid_or_another_boot_is_not_the_owner() {
        let me = Owner::me();
        let reused = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(!reused.is_alive());
        let other_boot = Owner {
            boot: "ffffffff".into(),
            ..me.clone()
        };
        assert!(me.boot == "ffffffff" || !other_boot.is_alive());
        let gone = Owner {
            pid: u32::MAX - 1,
            ..me.clone()
        };
        assert!(!gone.is_alive());
    }

    #[test]
    fn names_without_a_tag_have_no_owner() {
        for name in [
            "latency_downstream",
            "gameday-latency_downstream",
            "gameday-1.2-x",
            "gameday-1.2.zzzzzzzz-x",
            "other-1.2.abcdef01-x",
        ] {
            assert_eq!(owner_of("gameday", name), None, "{name}");
        }
        assert!(owner_of("gameday", "gameday-1.2.abcdef01-x").is_some());
    }
}
