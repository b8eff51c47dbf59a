//! What the harness reads of a Cluster: the key slot of a key, and the
//! lines of `CLUSTER NODES` (the failover's view of who serves which slots,
//! replica-reads' replicas of a slot).

use std::net::SocketAddr;

/// The cluster key slot of `key` (CRC16/XMODEM of the key or of its
/// `{hash tag}`, modulo 16384).
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &b in hashed {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// One line of `CLUSTER NODES`.
pub struct ClusterLine {
    pub id: String,
    pub addr: Option<SocketAddr>,
    pub master: bool,
    pub failed: bool,
    pub master_id: String,
    pub slots: Vec<(u16, u16)>,
    /// Its link state is `connected`.
    pub connected: bool,
}

pub fn cluster_nodes(text: &str) -> Vec<ClusterLine> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let addr = f[1].split('@').next().and_then(|a| a.parse().ok());
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|x| (x, x)),
                })
                .collect();
            Some(ClusterLine {
                id: f[0].to_string(),
                addr,
                master: f[2].contains("master"),
                failed: f[2].contains("fail"),
                master_id: f[3].to_string(),
                slots,
                connected: f[7] == "connected",
            })
        })
        .collect()
}

impl ClusterLine {
    fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// The replicas (announced loopback addresses) of the master that serves
/// `slot`, leaving out failed ones and ones not connected to it.
pub fn replicas_of_slot(lines: &[ClusterLine], slot: u16) -> Vec<SocketAddr> {
    let Some(master) = lines
        .iter()
        .find(|l| l.master && !l.failed && l.serves(slot))
    else {
        return Vec::new();
    };
    lines
        .iter()
        .filter(|l| !l.master && !l.failed && l.connected && l.master_id == master.id)
        .filter_map(|l| l.addr)
        .filter(|a| a.ip().is_loopback())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis() {
        // Values from CLUSTER KEYSLOT.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}bar"), key_slot(b"foo{}bar"));
    }

    #[test]
    fn cluster_nodes_lines_are_read() {
        let text = "e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460\n\
                    a1b2 127.0.0.1:30004@40004 slave e7d1 0 1 4 connected\n\
                    c3d4 127.0.0.1:30002@40002 master,fail - 0 1 2 disconnected\n";
        let l = cluster_nodes(text);
        assert_eq!(l.len(), 3);
        assert!(l[0].master && !l[0].failed && l[0].slots == vec![(0, 5460)]);
        assert_eq!(l[1].master_id, "e7d1");
        assert!(!l[1].master);
        assert!(l[2].failed && l[2].slots.is_empty());
        assert_eq!(l[0].addr, Some("127.0.0.1:30001".parse().unwrap()));
    }

    #[test]
    fn a_slots_replicas_are_its_masters_live_ones() {
        let text = "m1 127.0.0.1:30001@40001 master - 0 0 1 connected 0-8191\n\
                    m2 127.0.0.1:30002@40002 myself,master - 0 0 2 connected 8192-16383\n\
                    r1 127.0.0.1:30003@40003 slave m1 0 1 1 connected\n\
                    r2 127.0.0.1:30004@40004 slave m2 0 1 2 connected\n\
                    r3 127.0.0.1:30005@40005 slave,fail m2 0 1 2 disconnected\n\
                    r4 10.0.0.5:6379@16379 slave m2 0 1 2 connected\n";
        let l = cluster_nodes(text);
        let at = |a: &str| vec![a.parse::<SocketAddr>().unwrap()];
        assert_eq!(replicas_of_slot(&l, 100), at("127.0.0.1:30003"));
        assert_eq!(replicas_of_slot(&l, 9000), at("127.0.0.1:30004"));
    }
}
