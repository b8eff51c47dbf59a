//! Cached values carry the origin version they were computed from, so the
//! oracle can tell a fresh read from a stale one: `gd1:<16 hex digits>:`
//! followed by padding up to `value_size`.

/// Length of the version header every value starts with.
pub const HEADER_LEN: usize = 21;

/// A value of `size` bytes (at least the header) for `version`.
pub fn encode(version: u64, size: usize) -> Vec<u8> {
    let mut v = format!("gd1:{version:016x}:").into_bytes();
    v.resize(size.max(HEADER_LEN), b'.');
    v
}

/// The version a cached value was computed from, if it is one of ours.
pub fn decode(value: &[u8]) -> Option<u64> {
    let header = value.get(..HEADER_LEN)?;
    if !header.starts_with(b"gd1:") || header[HEADER_LEN - 1] != b':' {
        return None;
    }
    let hex = std::str::from_utf8(&header[4..HEADER_LEN - 1]).ok()?;
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_at_any_size() {
        for size in [0, HEADER_LEN, 512, 4096] {
            let v = encode(0xdead_beef, size);
            assert_eq!(v.len(), size.max(HEADER_LEN));
            assert_eq!(decode(&v), Some(0xdead_beef));
        }
        assert_eq!(decode(b"not ours"), None);
        assert_eq!(decode(b"gd1:zzzzzzzzzzzzzzzz:"), None);
    }
}
