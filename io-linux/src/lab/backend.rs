//! `minuteman lab-backend`: the lab's stand-in for a task, a server that answers its
//! host's name (`h2`) to every HTTP request and to every UDP datagram, so a client can see
//! which backend a VIP sent it to.
//!
//! Invariants:
//! - Both sockets are bound on `[::]` with `IPV6_V6ONLY` off: one socket answers IPv4 and
//!   IPv6 clients.
//! - Every HTTP answer is `200` with the name as body and `Connection: close`: a client
//!   never reuses a connection, so each request is a new connection the kernel balances.
//! - UDP answers go from the socket the datagram arrived on, to its sender.

use axum::http::header;
use axum::Router;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;

/// The HTTP port the lab's backends listen on.
pub const HTTP_PORT: u16 = 8080;
/// The UDP port the lab's backends listen on.
pub const UDP_PORT: u16 = 8081;

/// A dual-stack socket bound on `[::]:port` (port 0: any).
fn dual_stack(ty: Type, protocol: Protocol, port: u16) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::IPV6, ty, Some(protocol))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    let addr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// The bound sockets of a backend, before it serves.
pub struct Bound {
    http: Option<std::net::TcpListener>,
    udp: Option<std::net::UdpSocket>,
}

impl Bound {
    /// Binds the HTTP and UDP ports asked for (0: any free port).
    pub fn new(http: Option<u16>, udp: Option<u16>) -> std::io::Result<Bound> {
        let http = match http {
            Some(port) => {
                let socket = dual_stack(Type::STREAM, Protocol::TCP, port)?;
                socket.listen(1024)?;
                Some(socket.into())
            }
            None => None,
        };
        let udp = match udp {
            Some(port) => Some(dual_stack(Type::DGRAM, Protocol::UDP, port)?.into()),
            None => None,
        };
        Ok(Bound { http, udp })
    }

    /// The ports actually bound (HTTP, UDP).
    pub fn ports(&self) -> (Option<u16>, Option<u16>) {
        (
            self.http
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.port()),
            self.udp
                .as_ref()
                .and_then(|s| s.local_addr().ok())
                .map(|a| a.port()),
        )
    }

    /// Answers `name` until an I/O error ends a server.
    pub async fn serve(self, name: String) -> std::io::Result<()> {
        let name: Arc<str> = name.into();
        let http = async {
            let Some(listener) = self.http else {
                return std::future::pending().await;
            };
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let body = name.clone();
            let router = Router::new().fallback(move || {
                let body = body.clone();
                async move { ([(header::CONNECTION, "close")], body.to_string()) }
            });
            axum::serve(listener, router).await
        };
        let udp = async {
            let Some(socket) = self.udp else {
                return std::future::pending().await;
            };
            let socket = tokio::net::UdpSocket::from_std(socket)?;
            let mut buf = [0u8; 2048];
            loop {
                let (_, peer) = socket.recv_from(&mut buf).await?;
                // A lost answer is a lost datagram: the client asks again.
                let _ = socket.send_to(name.as_bytes(), peer).await;
            }
        };
        tokio::select! {
            r = http => r,
            r = udp => r,
        }
    }
}

/// `minuteman lab-backend`: binds, then serves until killed.
pub fn run(name: String, http: Option<u16>, udp: Option<u16>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bound = Bound::new(http, udp)?;
    runtime.block_on(bound.serve(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::request::{ask, Target};
    use std::time::Duration;

    #[test]
    fn answers_its_name_over_http_and_udp_on_ipv4_and_ipv6() {
        let bound = Bound::new(Some(0), Some(0)).unwrap();
        let (Some(http), Some(udp)) = bound.ports() else {
            panic!("both bound")
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        std::thread::spawn(move || runtime.block_on(bound.serve("h7".into())));
        let timeout = Duration::from_secs(2);
        for host in ["127.0.0.1", "[::1]"] {
            let target = Target::parse(&format!("http://{host}:{http}/anything")).unwrap();
            assert_eq!(ask(&target, timeout).as_deref(), Ok("h7"), "HTTP to {host}");
            let target = Target::parse(&format!("udp://{host}:{udp}")).unwrap();
            assert_eq!(ask(&target, timeout).as_deref(), Ok("h7"), "UDP to {host}");
        }
    }
}
