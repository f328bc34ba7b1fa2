//! The few socket, thread and signal calls that differ between the real operating system
//! and madsim's simulated one (`--cfg madsim`, see `madsim-tests/`). Every other line of
//! the agent is the same in both builds: the transport, the pump, the Mesos poller, the
//! persistence and the DNS listeners call these and nothing lower.
//!
//! Invariants:
//! - A real build calls exactly what the agent called before this module existed (socket
//!   options, the advertised source address, the listener's backlog, SIGTERM and SIGINT).
//! - A simulated build never touches a real socket, thread or signal: madsim's network
//!   gives every node its own address (so the source address is the node's), has no socket
//!   options, and stops a node with its simulated ctrl-c.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Runs `f` where blocking is allowed: tokio's blocking pool, or (simulated) inline in a
/// task of the node, since madsim has no threads and the simulated disk is this one.
#[allow(deprecated)] // madsim marks it: its blocking calls stop simulated time, as wanted
pub fn blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(f)
}

/// Resolves on SIGTERM or SIGINT (simulated: on the node's ctrl-c).
pub async fn shutdown_signal() {
    #[cfg(not(madsim))]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(madsim)]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A TCP listener on `addr` with `SO_REUSEADDR` and an accept backlog of `backlog`.
pub async fn tcp_listener(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    #[cfg(not(madsim))]
    {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(backlog)
    }
    #[cfg(madsim)]
    {
        let _ = backlog;
        TcpListener::bind(addr).await
    }
}

/// Connects to `dst` from `local_ip` (when of the same family) with `TCP_USER_TIMEOUT`
/// set before the handshake. No timeout of its own: the caller bounds it.
pub async fn tcp_connect_from(
    dst: SocketAddr,
    local_ip: IpAddr,
    user_timeout: Duration,
) -> io::Result<TcpStream> {
    #[cfg(not(madsim))]
    {
        let socket = if dst.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if local_ip.is_ipv4() == dst.is_ipv4() {
            socket.bind(SocketAddr::new(local_ip, 0))?;
        }
        let _ = socket2::SockRef::from(&socket).set_tcp_user_timeout(Some(user_timeout));
        socket.connect(dst).await
    }
    #[cfg(madsim)]
    {
        let _ = (local_ip, user_timeout);
        TcpStream::connect(dst).await
    }
}

/// `TCP_NODELAY` and `TCP_USER_TIMEOUT` on an open connection (simulated: no options).
pub fn tune_stream(stream: &TcpStream, user_timeout: Duration) {
    let _ = stream.set_nodelay(true);
    #[cfg(not(madsim))]
    {
        let _ = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(user_timeout));
    }
    #[cfg(madsim)]
    {
        let _ = user_timeout;
    }
}

/// Closes `stream` with a reset, so nothing lingers in either kernel.
pub fn close_with_reset(stream: TcpStream) {
    #[cfg(not(madsim))]
    {
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
    drop(stream);
}

/// A UDP socket on `addr` (IPv6 only for an IPv6 address) with a receive buffer of
/// `recv_buffer` bytes: `SO_RCVBUFFORCE` (past `net.core.rmem_max`, needs
/// CAP_NET_ADMIN), else `SO_RCVBUF`.
pub async fn udp_socket(addr: SocketAddr, recv_buffer: usize) -> io::Result<UdpSocket> {
    #[cfg(not(madsim))]
    {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        force_recv_buffer(&socket, recv_buffer);
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        UdpSocket::from_std(socket.into())
    }
    #[cfg(madsim)]
    {
        let _ = recv_buffer;
        UdpSocket::bind(addr).await
    }
}

#[cfg(not(madsim))]
fn force_recv_buffer(socket: &socket2::Socket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads one c_int from a valid pointer.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = socket.set_recv_buffer_size(bytes);
    }
}

/// Sends one datagram (madsim's `send_to` takes its arguments the other way round).
pub async fn send_to(socket: &UdpSocket, bytes: &[u8], dst: SocketAddr) -> io::Result<()> {
    #[cfg(not(madsim))]
    {
        socket.send_to(bytes, dst).await.map(|_| ())
    }
    #[cfg(madsim)]
    {
        socket.send_to(dst, bytes).await
    }
}
