//! The kernel keeps a privileged source port privileged across masquerade.
//!
//! amwall relies on this: Amanda's client only accepts requests whose source
//! port is reserved (< 1024), otherwise it logs "port N not secure" and drops
//! them. Behind a masquerading router that still works, because Linux NAT
//! (net/netfilter/nf_nat_proto.c, `nf_nat_l4proto_unique_tuple`) only ever
//! picks a replacement port from the same class as the original:
//! ports < 512 stay in 1-511, 512-1023 go to 600-1023, >= 1024 go to 1024-65535.
//! So Amanda's reserved source ports (e.g. UDP 840-860, TCP 512-1023) survive NAT.
//!
//! The set-up is three namespaces, all addresses from documentation ranges:
//!
//! ```text
//!   ts 192.0.2.2/24 --- 192.0.2.1/24 fw 198.51.100.1/24 --- 198.51.100.5/24 r
//!   (default via .1)    (forwarding, MASQUERADE out fwout)   (no route back)
//! ```
//!
//! `r` has no route to 192.0.2.0/24, so a reply can only reach `ts` through
//! the router's conntrack un-NAT. Needs root; a missing privilege fails the
//! test, it never skips.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{FromRawFd, RawFd};
use std::time::{Duration, Instant};

use amwall::lab::netns::veth;
use amwall::lab::Netns;
use nix::libc;

const TIMEOUT: Duration = Duration::from_secs(5);

const TS_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const FW_OUTSIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const R_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 5);
const R_PORT: u16 = 10080;

/// Server, router and remote. Field order is drop order: all three namespaces
/// (and with them the veths and conntrack tables) go away when the lab drops.
struct Lab {
    ts: Netns,
    fw: Netns,
    r: Netns,
}

fn must(ns: &Netns, argv: &[&str]) {
    if let Err(e) = ns.must(argv) {
        panic!("lab set-up failed: {e}");
    }
}

fn lab() -> Lab {
    let new = |prefix: &str| {
        Netns::new(prefix).unwrap_or_else(|e| {
            panic!("cannot create network namespace {prefix}-* (needs root and iproute2): {e}")
        })
    };
    let lab = Lab {
        ts: new("amwn-ts"),
        fw: new("amwn-fw"),
        r: new("amwn-r"),
    };
    let Lab { ts, fw, r } = &lab;

    veth(ts, "ts0", fw, "fwin").unwrap_or_else(|e| panic!("veth ts0/fwin: {e}"));
    veth(fw, "fwout", r, "r0").unwrap_or_else(|e| panic!("veth fwout/r0: {e}"));

    must(ts, &["ip", "addr", "add", "192.0.2.2/24", "dev", "ts0"]);
    must(ts, &["ip", "route", "add", "default", "via", "192.0.2.1"]);

    must(fw, &["ip", "addr", "add", "192.0.2.1/24", "dev", "fwin"]);
    must(
        fw,
        &["ip", "addr", "add", "198.51.100.1/24", "dev", "fwout"],
    );
    must(fw, &["sysctl", "-w", "net.ipv4.ip_forward=1"]);
    must(
        fw,
        &[
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "192.0.2.0/24",
            "-o",
            "fwout",
            "-j",
            "MASQUERADE",
        ],
    );

    // Deliberately no route back to 192.0.2.0/24: replies need the un-NAT.
    must(r, &["ip", "addr", "add", "198.51.100.5/24", "dev", "r0"]);

    lab
}

/// Create a socket in `ns` and hand it back. A socket belongs to the namespace
/// it was created in for its whole life, so it can then be used from any thread.
fn in_ns<T: Send + 'static>(
    ns: &Netns,
    what: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> T {
    ns.run_in(f)
        .unwrap_or_else(|e| panic!("entering {}: {e}", ns.name()))
        .unwrap_or_else(|e| panic!("{what} in {}: {e}", ns.name()))
}

fn udp(ns: &Netns, addr: Ipv4Addr, port: u16) -> UdpSocket {
    let bind = SocketAddr::from((addr, port));
    let sock = in_ns(ns, &format!("bind UDP {bind}"), move || {
        UdpSocket::bind(bind)
    });
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(TIMEOUT)).unwrap();
    sock
}

/// Receive one datagram, failing after TIMEOUT instead of hanging.
fn recv(sock: &UdpSocket, who: &str) -> (String, SocketAddr) {
    let mut buf = [0u8; 1500];
    let (n, from) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("{who}: no datagram within {TIMEOUT:?}: {e}"));
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
}

/// The class `nf_nat_l4proto_unique_tuple` keeps a source port in.
fn class_of(port: u16) -> std::ops::RangeInclusive<u16> {
    match port {
        0..=511 => 1..=511,
        512..=1023 => 600..=1023,
        _ => 1024..=65535,
    }
}

/// Fact (nf_nat_proto.c, nf_nat_l4proto_unique_tuple): masquerade keeps a
/// privileged source port privileged. Without a clash the port of UDP 845
/// (Amanda's reserved range 840-860) is kept; in any case it stays < 1024,
/// and the reply comes back through conntrack's un-NAT.
#[test]
fn udp_reserved_source_port_survives_masquerade() {
    let lab = lab();
    let remote = udp(&lab.r, R_ADDR, R_PORT);
    let client = udp(&lab.ts, Ipv4Addr::UNSPECIFIED, 845);

    client
        .send_to(b"from ts", (R_ADDR, R_PORT))
        .expect("send from ts");
    let (msg, from) = recv(&remote, "r");
    assert_eq!(msg, "from ts");
    eprintln!("udp: ts 192.0.2.2:845 -> r sees {from}");
    let SocketAddr::V4(from) = from else {
        panic!("IPv6 peer {from}")
    };
    assert_eq!(
        *from.ip(),
        FW_OUTSIDE,
        "r must see the router's outside address"
    );
    assert!(
        from.port() < 1024,
        "source port {} is not privileged after NAT",
        from.port()
    );
    assert!(
        class_of(845).contains(&from.port()),
        "source port {} left its class",
        from.port()
    );

    // r has no route to 192.0.2.0/24: this only arrives if conntrack un-NATs it.
    remote
        .send_to(b"reply from r", SocketAddr::V4(from))
        .expect("reply from r");
    let (msg, back) = recv(&client, "ts (reply through NAT)");
    assert_eq!(msg, "reply from r");
    assert_eq!(back, SocketAddr::from((R_ADDR, R_PORT)));
}

/// Occupy the tuple the router would like to use, then NAT `port` from ts.
/// Returns the source port r saw for ts's datagram (checked to be a remap).
fn forced_remap(port: u16) -> u16 {
    let lab = lab();
    let remote = udp(&lab.r, R_ADDR, R_PORT);

    // fw itself talks 198.51.100.1:port -> 198.51.100.5:10080 first, so that
    // tuple sits in fw's conntrack table and masquerade cannot reuse it.
    let squatter = udp(&lab.fw, FW_OUTSIDE, port);
    squatter
        .send_to(b"from fw", (R_ADDR, R_PORT))
        .expect("send from fw");
    let (msg, from) = recv(&remote, "r (from fw)");
    assert_eq!(msg, "from fw");
    assert_eq!(from, SocketAddr::from((FW_OUTSIDE, port)));

    let client = udp(&lab.ts, Ipv4Addr::UNSPECIFIED, port);
    client
        .send_to(b"from ts", (R_ADDR, R_PORT))
        .expect("send from ts");
    let (msg, from) = recv(&remote, "r (from ts)");
    assert_eq!(msg, "from ts");
    eprintln!("udp remap: ts 192.0.2.2:{port} -> r sees {from} (fw holds {FW_OUTSIDE}:{port})");
    let SocketAddr::V4(from) = from else {
        panic!("IPv6 peer {from}")
    };
    assert_eq!(*from.ip(), FW_OUTSIDE);
    assert_ne!(
        from.port(),
        port,
        "the tuple was taken: the kernel had to pick another port"
    );
    let class = class_of(port);
    assert!(
        class.contains(&from.port()),
        "remapped source port {} is outside {class:?}, the class of {port}",
        from.port()
    );

    // The reply to the remapped port reaches ts, not fw's own socket.
    remote
        .send_to(b"reply from r", SocketAddr::V4(from))
        .expect("reply from r");
    let (msg, back) = recv(&client, "ts (reply through remapped NAT)");
    assert_eq!(msg, "reply from r");
    assert_eq!(back, SocketAddr::from((R_ADDR, R_PORT)));
    squatter.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        squatter.recv_from(&mut buf).is_err(),
        "fw's own socket must not receive the reply meant for ts"
    );
    from.port()
}

/// Fact (nf_nat_proto.c, nf_nat_l4proto_unique_tuple): when masquerade must
/// change a source port in 512-1023 it picks one from 600-1023. This is the
/// real proof that NAT keeps the class: UDP 845 is taken on the router, so
/// ts's 845 is remapped, and the new port is still privileged.
#[test]
fn udp_forced_remap_keeps_600_1023_class() {
    let got = forced_remap(845);
    assert!((600..=1023).contains(&got));
}

/// Fact (nf_nat_proto.c, nf_nat_l4proto_unique_tuple): a source port < 512
/// that must be remapped stays in 1-511.
#[test]
fn udp_forced_remap_keeps_1_511_class() {
    let got = forced_remap(500);
    assert!((1..=511).contains(&got));
}

/// `connect(2)` from a chosen local port. std cannot bind before connect and
/// nix is built without its "socket" feature, so this goes through libc.
/// SO_SNDTIMEO bounds connect(2) on Linux, so a broken path fails in TIMEOUT.
fn tcp_connect_from(local: SocketAddrV4, peer: SocketAddrV4) -> io::Result<TcpStream> {
    fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
        // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = a.port().to_be();
        sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
        sa
    }
    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
    // SAFETY: plain syscalls on a descriptor we own; it is wrapped in a
    // TcpStream (which closes it) right after creation.
    unsafe {
        let fd: RawFd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        check(fd)?;
        let stream = TcpStream::from_raw_fd(fd);
        let tv = libc::timeval {
            tv_sec: TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        check(libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of_val(&tv) as libc::socklen_t,
        ))?;
        let sa = sockaddr(local);
        check(libc::bind(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&sa) as libc::socklen_t,
        ))?;
        let sa = sockaddr(peer);
        check(libc::connect(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&sa) as libc::socklen_t,
        ))?;
        Ok(stream)
    }
}

/// accept(2) with a deadline instead of blocking forever.
fn accept_within(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match listener.accept() {
            Ok((s, peer)) => {
                s.set_nonblocking(false).unwrap();
                return (s, peer);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("r: no connection accepted within {TIMEOUT:?}: {e}"),
        }
    }
}

/// Fact (nf_nat_proto.c, nf_nat_l4proto_unique_tuple): masquerade keeps a
/// privileged TCP source port (Amanda uses 512-1023) privileged, so the
/// client's "port N not secure" check passes behind NAT.
#[test]
fn tcp_reserved_source_port_survives_masquerade() {
    let lab = lab();
    let listen = SocketAddr::from((R_ADDR, R_PORT));
    let listener = in_ns(&lab.r, &format!("listen TCP {listen}"), move || {
        TcpListener::bind(listen)
    });

    // accept(2) runs on its own thread; the listening socket already lives in r.
    let server = std::thread::spawn(move || {
        let (mut s, peer) = accept_within(&listener);
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).expect("r: read from ts");
        assert_eq!(&buf, b"from ts");
        s.write_all(b"reply from r").expect("r: write to ts");
        peer
    });

    let local = SocketAddrV4::new(TS_ADDR, 700);
    let peer = SocketAddrV4::new(R_ADDR, R_PORT);
    let mut client = in_ns(
        &lab.ts,
        "connect TCP 192.0.2.2:700 -> 198.51.100.5:10080",
        move || tcp_connect_from(local, peer),
    );
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.set_write_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(client.local_addr().unwrap(), SocketAddr::V4(local));
    client.write_all(b"from ts").expect("ts: write to r");
    let mut reply = String::new();
    client
        .read_to_string(&mut reply)
        .expect("ts: read reply through NAT");
    assert_eq!(reply, "reply from r");

    let seen = server
        .join()
        .unwrap_or_else(|_| panic!("r's accept thread panicked"));
    eprintln!("tcp: ts {local} -> r sees {seen}");
    let SocketAddr::V4(seen) = seen else {
        panic!("IPv6 peer {seen}")
    };
    assert_eq!(
        *seen.ip(),
        FW_OUTSIDE,
        "r must see the router's outside address"
    );
    assert!(
        seen.port() < 1024,
        "source port {} is not privileged after NAT",
        seen.port()
    );
    assert!(
        class_of(700).contains(&seen.port()),
        "source port {} left its class",
        seen.port()
    );
}
