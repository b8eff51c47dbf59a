//! The client → server direction read as Redis commands, for the toxics
//! that act on commands rather than bytes (`redis_error`, `slow_commands`).
//!
//! Every read is scanned for frame ends (`vocab::resp::Frames`), whether or
//! not such a toxic is in force, so that when one comes into force the
//! reader knows where the next command starts. While one is in force, a
//! read is cut at command boundaries: a command that began in an earlier
//! read waits (`carry`) until it is whole, a matching command is replaced
//! by an `EVAL` that answers with the chosen error (so it does not run, as
//! with Redis's own refusals, and its reply keeps its place among the
//! others), or is held for its delay with the commands behind it. Bytes
//! that are not RESP (the cluster bus, say) stop the scanning for the
//! connection's life: they pass untouched.

use super::toxic::{CommandMatch, Toxic, ToxicKind};
use crate::vocab::resp::{command, command_head, Frames};
use rand::rngs::SmallRng;
use rand::Rng;
use std::collections::HashMap;
use std::time::Duration;

/// One piece of a read: bytes to forward, and how long to hold them on
/// top of the byte-level toxics' latency.
pub type Piece = (Vec<u8>, Duration);

/// The scanner of one connection's commands.
#[derive(Default)]
pub struct CommandReader {
    frames: Frames,
    /// Not RESP: scanning has stopped.
    broken: bool,
    /// The start of a command not yet whole, begun while a command toxic
    /// was in force.
    carry: Vec<u8>,
    /// Matching commands seen per toxic name (for `every`).
    seen: HashMap<String, u64>,
    /// Each toxic's key glob as written and compiled (None: any key); an
    /// update of the toxic through the API recompiles it.
    globs: HashMap<String, (String, Option<glob::Pattern>)>,
    /// Reused by `scan` for the frame ends it does not need.
    ends: Vec<usize>,
}

/// What becomes of one command.
enum Action {
    Pass,
    Replace(Vec<u8>),
    Hold(Duration),
}

impl CommandReader {
    /// Cuts one read into the pieces to forward, in order.
    pub fn read(&mut self, buf: &[u8], toxics: &[Toxic], rng: &mut SmallRng) -> Vec<Piece> {
        let mut data = std::mem::take(&mut self.carry);
        let base = data.len();
        let was_between = self.frames.between();
        data.extend_from_slice(buf);
        if self.broken {
            return vec![(data, Duration::ZERO)];
        }
        let mut ends = Vec::new();
        if self.frames.feed(buf, &mut ends).is_err() {
            self.broken = true;
            return vec![(data, Duration::ZERO)];
        }
        let live: Vec<&Toxic> = toxics.iter().filter(|t| t.kind.reads_commands()).collect();
        if live.is_empty() {
            self.seen.clear();
            return vec![(data, Duration::ZERO)];
        }
        // Whether `data` starts where a command starts; if not, its first
        // command began before the toxic came into force and passes as is.
        let whole_first = base > 0 || was_between;
        let mut out = Vec::new();
        let (mut start, mut passing_from) = (0, 0);
        for (i, end) in ends.iter().map(|e| base + e).enumerate() {
            let action = if i == 0 && !whole_first {
                Action::Pass
            } else {
                self.decide(&data[start..end], &live, rng)
            };
            let piece = match action {
                Action::Pass => None,
                Action::Replace(bytes) => Some((bytes, Duration::ZERO)),
                Action::Hold(by) => Some((data[start..end].to_vec(), by)),
            };
            if let Some(piece) = piece {
                if passing_from < start {
                    out.push((data[passing_from..start].to_vec(), Duration::ZERO));
                }
                out.push(piece);
                passing_from = end;
            }
            start = end;
        }
        if passing_from < start {
            out.push((data[passing_from..start].to_vec(), Duration::ZERO));
        }
        if start < data.len() {
            if ends.is_empty() && !whole_first {
                out.push((data[start..].to_vec(), Duration::ZERO));
            } else {
                self.carry = data[start..].to_vec();
            }
        }
        out
    }

    /// Whether no command is carried over: the bytes can pass by `scan`.
    pub fn nothing_carried(&self) -> bool {
        self.carry.is_empty()
    }

    /// Follows the frames of bytes that pass untouched (no command toxic
    /// is in force and nothing is carried), so that a toxic coming into
    /// force later knows where the next command starts.
    pub fn scan(&mut self, buf: &[u8]) {
        debug_assert!(self.carry.is_empty());
        self.seen.clear();
        if self.broken {
            return;
        }
        let mut ends = std::mem::take(&mut self.ends);
        ends.clear();
        if self.frames.feed(buf, &mut ends).is_err() {
            self.broken = true;
        }
        self.ends = ends;
    }

    /// What is left at end of stream.
    pub fn rest(&mut self) -> Option<Vec<u8>> {
        (!self.carry.is_empty()).then(|| std::mem::take(&mut self.carry))
    }

    fn decide(&mut self, frame: &[u8], live: &[&Toxic], rng: &mut SmallRng) -> Action {
        let Some((name, key)) = command_head(frame) else {
            return Action::Pass;
        };
        let mut hold = Duration::ZERO;
        for t in live {
            let (matching, error, latency) = match &t.kind {
                ToxicKind::RedisError { error, matching } => (matching, Some(error), 0),
                ToxicKind::SlowCommands { latency, matching } => (matching, None, *latency),
                _ => continue,
            };
            if !self.matches(&t.name, matching, name, key) || !self.hit(&t.name, matching, rng) {
                continue;
            }
            match error {
                Some(code) => return Action::Replace(refusal(code)),
                None => hold += Duration::from_millis(latency),
            }
        }
        if hold.is_zero() {
            Action::Pass
        } else {
            Action::Hold(hold)
        }
    }

    fn matches(&mut self, toxic: &str, m: &CommandMatch, name: &[u8], key: Option<&[u8]>) -> bool {
        if !m.commands.is_empty()
            && !m
                .commands
                .iter()
                .any(|c| c.as_bytes().eq_ignore_ascii_case(name))
        {
            return false;
        }
        let compiled = self
            .globs
            .entry(toxic.to_string())
            .or_insert_with(|| (String::new(), None));
        if compiled.0 != m.keys {
            let pattern = (!m.keys.is_empty())
                .then(|| glob::Pattern::new(&m.keys).ok())
                .flatten();
            *compiled = (m.keys.clone(), pattern);
        }
        match (&compiled.1, key) {
            (None, _) => true,
            (Some(g), Some(k)) => g.matches(&String::from_utf8_lossy(k)),
            (Some(_), None) => false,
        }
    }

    fn hit(&mut self, toxic: &str, m: &CommandMatch, rng: &mut SmallRng) -> bool {
        if m.every > 0 {
            let n = self.seen.entry(toxic.to_string()).or_insert(0);
            *n += 1;
            return n.is_multiple_of(m.every);
        }
        m.probability >= 1.0 || rng.gen::<f64>() < m.probability
    }
}

/// Redis's own message for each error code it can refuse a command with.
fn message(code: &str) -> &'static str {
    match code {
        "OOM" => "OOM command not allowed when used memory > 'maxmemory'.",
        "LOADING" => "LOADING Redis is loading the dataset in memory",
        "READONLY" => "READONLY You can't write against a read only replica.",
        "BUSY" => {
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        }
        "TRYAGAIN" => "TRYAGAIN Multiple keys request during rehashing of slot",
        "CLUSTERDOWN" => "CLUSTERDOWN The cluster is down",
        "MASTERDOWN" => {
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
        }
        _ => "ERR injected by gameday",
    }
}

/// The command that makes the server answer with error `code` and do
/// nothing else: one reply, in the refused command's place.
fn refusal(code: &str) -> Vec<u8> {
    let script = format!("return redis.error_reply([[{}]])", message(code));
    command(&[b"EVAL", script.as_bytes(), b"0"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::toxic::Stream;
    use rand::SeedableRng;

    fn toxic(kind: ToxicKind) -> Toxic {
        Toxic {
            name: kind.type_name().into(),
            kind,
            stream: Stream::Upstream,
            toxicity: 1.0,
            path: Default::default(),
        }
    }

    fn every_other_get() -> Toxic {
        toxic(ToxicKind::RedisError {
            error: "OOM".into(),
            matching: CommandMatch {
                commands: vec!["get".into()],
                keys: "user:*".into(),
                probability: 1.0,
                every: 2,
            },
        })
    }

    /// The bytes forwarded for `stream` read in pieces of `piece` bytes.
    fn forwarded(stream: &[u8], piece: usize, toxics: &[Toxic]) -> (Vec<u8>, usize) {
        let mut r = CommandReader::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let (mut out, mut held) = (Vec::new(), 0);
        for chunk in stream.chunks(piece) {
            for (bytes, by) in r.read(chunk, toxics, &mut rng) {
                held += usize::from(!by.is_zero());
                out.extend(bytes);
            }
        }
        out.extend(r.rest().unwrap_or_default());
        (out, held)
    }

    #[test]
    fn every_other_matching_get_is_refused_however_the_bytes_arrive() {
        let get = |k: &[u8]| command(&[b"GET", k]);
        let stream = [
            get(b"user:1"),
            command(&[b"SET", b"user:1", b"v"]),
            get(b"user:2"),
            get(b"other"),
            get(b"user:3"),
            get(b"user:4"),
        ]
        .concat();
        let refused = refusal("OOM");
        let want = [
            get(b"user:1"),
            command(&[b"SET", b"user:1", b"v"]),
            refused.clone(),
            get(b"other"),
            get(b"user:3"),
            refused,
        ]
        .concat();
        for piece in [1, 3, 8, 1000] {
            let (out, _) = forwarded(&stream, piece, &[every_other_get()]);
            assert_eq!(out, want, "pieces of {piece}");
        }
        // Without the toxic nothing changes.
        assert_eq!(forwarded(&stream, 5, &[]).0, stream);
    }

    #[test]
    fn slow_commands_hold_only_what_matches() {
        let slow = toxic(ToxicKind::SlowCommands {
            latency: 30,
            matching: CommandMatch {
                commands: vec!["SET".into()],
                ..CommandMatch::default()
            },
        });
        let stream = [
            command(&[b"GET", b"a"]),
            command(&[b"SET", b"a", b"1"]),
            command(&[b"GET", b"a"]),
        ]
        .concat();
        let mut r = CommandReader::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let pieces = r.read(&stream, std::slice::from_ref(&slow), &mut rng);
        let holds: Vec<u128> = pieces.iter().map(|(_, d)| d.as_millis()).collect();
        assert_eq!(holds, [0, 30, 0]);
        assert_eq!(pieces.concat_bytes(), stream);
    }

    #[test]
    fn a_command_begun_before_the_toxic_passes_whole() {
        let set = command(&[b"GET", b"user:9"]);
        let mut r = CommandReader::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let always = toxic(ToxicKind::RedisError {
            error: "LOADING".into(),
            matching: CommandMatch::default(),
        });
        let first = r.read(&set[..4], &[], &mut rng);
        let second = r.read(&set[4..], std::slice::from_ref(&always), &mut rng);
        assert_eq!([first, second].concat().concat_bytes(), set);
        // The next one is refused.
        let third = r.read(&set, &[always], &mut rng);
        assert_eq!(third.concat_bytes(), refusal("LOADING"));
    }

    #[test]
    fn a_toxic_updated_to_another_glob_matches_by_the_new_one() {
        let refuse = |keys: &str| {
            toxic(ToxicKind::RedisError {
                error: "OOM".into(),
                matching: CommandMatch {
                    keys: keys.into(),
                    ..CommandMatch::default()
                },
            })
        };
        let get = command(&[b"GET", b"b:1"]);
        let mut r = CommandReader::default();
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(r.read(&get, &[refuse("a:*")], &mut rng).concat_bytes(), get);
        let refused = r.read(&get, &[refuse("b:*")], &mut rng).concat_bytes();
        assert_eq!(refused, refusal("OOM"));
    }

    #[test]
    fn bytes_that_are_not_resp_pass_untouched() {
        let always = toxic(ToxicKind::RedisError {
            error: "OOM".into(),
            matching: CommandMatch::default(),
        });
        let junk = b"RCmb\x00\x01\x02\r\n?garbage\r\n".to_vec();
        assert_eq!(forwarded(&junk, 4, &[always]).0, junk);
    }

    trait Concat {
        fn concat_bytes(&self) -> Vec<u8>;
    }

    impl Concat for Vec<Piece> {
        fn concat_bytes(&self) -> Vec<u8> {
            self.iter().flat_map(|(b, _)| b.clone()).collect()
        }
    }
}
