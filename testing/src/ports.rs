//! Loopback ports for servers a test starts in another process.
//!
//! Binding port 0 and closing it hands out a port the kernel may hand out again at once: to
//! the next `bind(0)` in this process (another test's server, or the next such helper), so
//! two children told the "free" ports race for one (it happened: two operator replicas, one
//! port). [`unused_port`] therefore picks from *below* the kernel's ephemeral range, which no
//! `bind(0)` or outgoing connection uses, never hands out the same port twice in a process,
//! and checks that nothing listens on it now.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

/// Lowest port handed out: above the well-known and most registered services' ports.
const LOWEST: u16 = 10_000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port nothing listens on, outside the ephemeral range and not handed out
/// before by this process; the caller's child binds it.
pub fn unused_port() -> u16 {
    let ephemeral_start = ephemeral_range_start();
    let span = u64::from(ephemeral_start.saturating_sub(LOWEST).max(1));
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    // A random start per call spreads the test binaries (run one after another, each with
    // an empty set) over the range instead of all starting at its bottom.
    let start = RandomState::new().hash_one(std::process::id()) % span;
    for step in 0..span {
        let port = LOWEST + ((start + step) % span) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no unused loopback port in {LOWEST}..{ephemeral_start}");
}

/// The first port of `net.ipv4.ip_local_port_range` (Linux), 32768 when unreadable.
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .filter(|start| *start > LOWEST + 1_000)
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_handed_out_twice() {
        let first = ephemeral_range_start();
        let ports: Vec<u16> = (0..200).map(|_| unused_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        for port in &ports {
            assert!(
                (LOWEST..first).contains(port),
                "{port} outside {LOWEST}..{first}"
            );
        }
        // What bind(0) gives is in the ephemeral range, so never one of ours.
        let kernel = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(kernel.local_addr().unwrap().port() >= first);
    }
}
