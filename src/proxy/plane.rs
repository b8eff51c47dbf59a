//! The data plane's own threads. Every proxied byte is pumped on a few
//! dedicated threads, each with a current-thread tokio runtime, apart from
//! the runtime that drives the load, the API and the conductor: a link's
//! wake-ups then stay on one thread (no work-stealing hand-offs), and the
//! load generator's tasks never queue in front of the proxy's.
//!
//! One thread per two cores (at least one): on a 2-core machine the
//! proxy, Redis and the load generator share the cores, and one thread is
//! what the proxy's share comes to.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use tokio::runtime::Handle;

struct Plane {
    threads: Vec<Handle>,
    next: AtomicUsize,
}

fn plane() -> &'static Plane {
    static PLANE: OnceLock<Plane> = OnceLock::new();
    PLANE.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..(cores / 2).max(1)).map(start_thread).collect();
        Plane {
            threads,
            next: AtomicUsize::new(0),
        }
    })
}

fn start_thread(i: usize) -> Handle {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the proxy's runtime starts");
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name(format!("gameday-proxy-{i}"))
        .spawn(move || rt.block_on(std::future::pending::<()>()))
        .expect("the proxy's thread starts");
    handle
}

/// The runtime accept loops run on.
pub fn acceptor() -> &'static Handle {
    &plane().threads[0]
}

/// The runtime the next link runs on, taken in turn.
pub fn next_link() -> &'static Handle {
    let p = plane();
    &p.threads[p.next.fetch_add(1, Ordering::Relaxed) % p.threads.len()]
}

/// A listening socket on `addr` with SO_REUSEADDR (so a disabled proxy
/// gets its port back), not yet tied to any runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
