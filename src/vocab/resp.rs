//! Where RESP frames end, read incrementally and without building them
//! (`big_key` drains a huge reply with it without parsing its elements),
//! and a command's encoding. RESP2 and RESP3 types; a line that starts
//! with none of them is an inline command, one frame to its newline.

/// Longest header line accepted (a type byte, a length or a simple
/// string): beyond it the stream is taken for something other than RESP.
const MAX_LINE: usize = 64 * 1024;

/// Bytes that are not RESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotResp(pub String);

/// The scanner's place in a stream of frames.
#[derive(Debug, Clone)]
pub struct Frames {
    /// Items still to read before the current frame ends (1 between frames).
    need: u64,
    /// Bytes of a bulk payload (and its CRLF) still to pass over.
    bulk: usize,
    /// A header line that has begun but not ended.
    line: Vec<u8>,
    /// Whether the next header line is a frame's first.
    fresh: bool,
}

impl Default for Frames {
    fn default() -> Frames {
        Frames {
            need: 1,
            bulk: 0,
            line: Vec::new(),
            fresh: true,
        }
    }
}

impl Frames {
    /// Reads `buf`, pushing onto `ends` the offset just past each frame
    /// that ends in it.
    pub fn feed(&mut self, buf: &[u8], ends: &mut Vec<usize>) -> Result<(), NotResp> {
        let mut i = 0;
        while i < buf.len() {
            if self.bulk > 0 {
                let take = self.bulk.min(buf.len() - i);
                i += take;
                self.bulk -= take;
                if self.bulk == 0 {
                    self.item_done(i, ends);
                }
                continue;
            }
            let Some(nl) = memchr::memchr(b'\n', &buf[i..]) else {
                self.line.extend_from_slice(&buf[i..]);
                if self.line.len() > MAX_LINE {
                    return Err(NotResp(format!("a line over {MAX_LINE} bytes")));
                }
                return Ok(());
            };
            let end = i + nl + 1;
            if self.line.is_empty() {
                self.header(&buf[i..end], end, ends)?;
            } else {
                self.line.extend_from_slice(&buf[i..end]);
                let line = std::mem::take(&mut self.line);
                self.header(&line, end, ends)?;
            }
            i = end;
        }
        Ok(())
    }

    /// One header line, newline included, that ended at `at`.
    fn header(&mut self, line: &[u8], at: usize, ends: &mut Vec<usize>) -> Result<(), NotResp> {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let Some((&kind, rest)) = body.split_first() else {
            // An empty line between inline commands: nothing.
            return Ok(());
        };
        let fresh = std::mem::replace(&mut self.fresh, false);
        let len = || -> Result<i64, NotResp> {
            std::str::from_utf8(rest)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| NotResp(format!("a bad length after `{}`", kind as char)))
        };
        match kind {
            b'*' | b'~' | b'>' => self.aggregate(len()?, 1, at, ends),
            b'%' => self.aggregate(len()?, 2, at, ends),
            // An attribute map comes before the reply it annotates.
            b'|' => {
                self.need += 1;
                self.aggregate(len()?, 2, at, ends)
            }
            b'$' | b'=' | b'!' => match len()? {
                n if n < 0 => self.item_done(at, ends),
                n => self.bulk = n as usize + 2,
            },
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => self.item_done(at, ends),
            _ if fresh => self.item_done(at, ends),
            _ => {
                return Err(NotResp(format!(
                    "`{}` where a RESP type was expected",
                    (kind as char).escape_default()
                )))
            }
        }
        Ok(())
    }

    /// An aggregate of `n` entries of `per` items each.
    fn aggregate(&mut self, n: i64, per: u64, at: usize, ends: &mut Vec<usize>) {
        if n <= 0 {
            self.item_done(at, ends);
        } else {
            self.need += n as u64 * per - 1;
        }
    }

    /// Whether the bytes read so far end exactly where a frame ends.
    pub fn between(&self) -> bool {
        self.need == 1 && self.bulk == 0 && self.line.is_empty() && self.fresh
    }

    fn item_done(&mut self, at: usize, ends: &mut Vec<usize>) {
        self.need -= 1;
        if self.need == 0 {
            ends.push(at);
            self.need = 1;
            self.fresh = true;
        }
    }
}

/// The name and first argument (for most commands, the key) of one whole
/// command frame that is an array of bulk strings; `None` for anything else
/// (an inline command, a frame cut short).
pub fn command_head(frame: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let (count, mut rest) = line(frame.strip_prefix(b"*")?)?;
    let mut bulk = || -> Option<&[u8]> {
        let (len, after) = line(rest.strip_prefix(b"$")?)?;
        let len = usize::try_from(len).ok()?;
        let arg = after.get(..len)?;
        rest = after.get(len + 2..)?;
        Some(arg)
    };
    let name = (count >= 1).then(&mut bulk)??;
    let first = if count >= 2 { Some(bulk()?) } else { None };
    Some((name, first))
}

/// A number up to CRLF, and what follows.
fn line(buf: &[u8]) -> Option<(i64, &[u8])> {
    let end = memchr::memchr(b'\r', buf)?;
    let n = std::str::from_utf8(&buf[..end]).ok()?.parse().ok()?;
    Some((n, buf.get(end + 2..)?))
}

/// A command as a RESP array of bulk strings.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame ends of `stream` read in pieces of `piece` bytes.
    fn ends(stream: &[u8], piece: usize) -> Vec<usize> {
        let mut f = Frames::default();
        let mut out = Vec::new();
        let mut base = 0;
        for chunk in stream.chunks(piece) {
            let mut here = Vec::new();
            f.feed(chunk, &mut here).unwrap();
            out.extend(here.into_iter().map(|e| e + base));
            base += chunk.len();
        }
        out
    }

    #[test]
    fn frames_end_where_they_end_however_the_bytes_arrive() {
        let get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec();
        let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\nv\r\nv\r\n".to_vec();
        let ping = b"PING\r\n".to_vec();
        let reply = b"*3\r\n$-1\r\n*2\r\n:1\r\n+OK\r\n%1\r\n+a\r\n_\r\n".to_vec();
        let stream = [get.clone(), set.clone(), ping.clone(), reply.clone()].concat();
        let want = vec![
            get.len(),
            get.len() + set.len(),
            get.len() + set.len() + ping.len(),
            stream.len(),
        ];
        for piece in [1, 2, 3, 7, 1000] {
            assert_eq!(ends(&stream, piece), want, "pieces of {piece}");
        }
    }

    #[test]
    fn a_command_is_one_frame_of_bulk_strings() {
        let args: [&[u8]; 3] = [b"EVAL", b"return 1", b"0"];
        let c = command(&args);
        assert!(c.starts_with(b"*3\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n"));
        assert_eq!(ends(&c, 5), vec![c.len()]);
    }

    #[test]
    fn a_command_frame_names_its_command_and_key() {
        let set = command(&[b"SET", b"user:1", b"v"]);
        assert_eq!(
            command_head(&set),
            Some((&b"SET"[..], Some(&b"user:1"[..])))
        );
        let ping = command(&[b"PING"]);
        assert_eq!(command_head(&ping), Some((&b"PING"[..], None)));
        assert_eq!(command_head(b"PING\r\n"), None);
        assert_eq!(command_head(b"*2\r\n$3\r\nGET\r\n$9\r\nk"), None);
        let mut f = Frames::default();
        assert!(f.between());
        f.feed(&set[..5], &mut Vec::new()).unwrap();
        assert!(!f.between());
        f.feed(&set[5..], &mut Vec::new()).unwrap();
        assert!(f.between());
    }

    #[test]
    fn garbage_is_refused_inside_a_frame() {
        let mut f = Frames::default();
        let err = f.feed(b"*2\r\n$3\r\nGET\r\n?k\r\n", &mut Vec::new());
        assert!(err.is_err());
    }
}
