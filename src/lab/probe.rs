//! Real sockets across namespaces, many at once: listeners in some namespaces,
//! clients in others that bind a chosen source port and connect or send, all
//! driven by one epoll loop so thousands of probes cost about one timeout.
//!
//! A socket belongs for life to the namespace it was created in, so sockets are
//! created on a thread that entered the namespace (`Netns::run_in`) and then used
//! from the calling thread. Every client sends a tag (`amwall-probe N`) so the
//! listener that receives it knows which probe arrived, in which namespace, and
//! from which address and port (after any NAT on the way). UDP listeners answer
//! every datagram (with the probe's canned reply, or an echo), so a client that
//! gets the answer has proved the way back too (ESTABLISHED).
//!
//! Invariants: the engine only ever connects or sends to the addresses in the
//! probes it is given (the caller checks that they are documentation addresses);
//! every descriptor is an `OwnedFd`, closed when `run` returns.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::libc;

use crate::lab::netns::Netns;
use crate::model::Proto;

/// A namespace the engine works in, with the host's addresses.
pub struct Site<'a> {
    pub ns: &'a Netns,
    /// UDP listeners bind each of these (TCP binds 0.0.0.0): an unconnected UDP
    /// socket on 0.0.0.0 would answer from the address of the outgoing route, not
    /// the one the request was sent to, and a connected client drops that answer.
    pub addrs: Vec<Ipv4Addr>,
}

/// A listening socket: `proto` on `port` in namespace `ns` (TCP on 0.0.0.0, UDP on
/// each of the site's addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Listen {
    pub ns: usize,
    pub proto: Proto,
    pub port: u16,
}

/// One probe: from namespace `from`, source port `sport` (None: ephemeral),
/// to `target`.
#[derive(Debug, Clone)]
pub struct Probe {
    pub from: usize,
    pub proto: Proto,
    pub sport: Option<u16>,
    pub target: SocketAddrV4,
    /// Extra bytes sent before the tag (e.g. an Amanda-like request).
    pub payload: Vec<u8>,
    /// What the UDP listener answers instead of the echo (e.g. `CONNECT ...`).
    pub reply: Option<Vec<u8>>,
}

/// What the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSide {
    /// TCP handshake completed.
    Connected,
    /// UDP: the listener's answer came back.
    Replied(Vec<u8>),
    /// RST or ICMP port unreachable: a host's stack answered, nobody listens.
    Refused,
    /// No route, or ICMP host/network unreachable.
    Unreachable(String),
    /// Nothing within the timeout.
    Silent,
    /// The lab itself failed (bind, socket): not a firewall finding.
    Error(String),
}

/// Where a probe's tag arrived: the namespace and the peer address the listener saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub ns: usize,
    pub peer: SocketAddrV4,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub client: ClientSide,
    pub arrival: Option<Arrival>,
}

impl Outcome {
    /// The packet reached some host's stack (tag seen, or a refusal came back).
    pub fn reached(&self) -> bool {
        self.arrival.is_some() || self.client == ClientSide::Refused
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a probe may take before it counts as blocked.
    pub timeout: Duration,
    /// UDP: resend the request this often until answered.
    pub resend: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            timeout: Duration::from_millis(1000),
            resend: Duration::from_millis(250),
        }
    }
}

const TAG: &[u8] = b"amwall-probe ";

fn tag(id: usize) -> Vec<u8> {
    format!("amwall-probe {id}\n").into_bytes()
}

/// The probe id in a received payload, if it carries our tag.
fn parse_tag(buf: &[u8]) -> Option<usize> {
    let at = buf.windows(TAG.len()).position(|w| w == TAG)? + TAG.len();
    let digits: Vec<u8> = buf[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = a.port().to_be();
    sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    sa
}

fn from_sockaddr(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    )
}

/// A non-blocking IPv4 socket in the calling thread's namespace.
fn socket(proto: Proto) -> io::Result<OwnedFd> {
    let ty = match proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
    };
    // SAFETY: a plain syscall; the descriptor is owned right away.
    unsafe {
        let fd = check(libc::socket(
            libc::AF_INET,
            ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn set_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live c_int and its size.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of_val(&v) as libc::socklen_t,
        )
    })
    .map(|_| ())
}

fn bind(fd: RawFd, a: SocketAddrV4) -> io::Result<()> {
    let sa = sockaddr(a);
    // SAFETY: a valid sockaddr_in and its size.
    check(unsafe {
        libc::bind(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&sa) as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// bind(2), waiting out a previous listener on the same port. Listeners are closed
/// between batches, but a process that another thread is just spawning holds a
/// copy of every descriptor until its exec (SOCK_CLOEXEC closes them only then),
/// so for a moment the old socket lives on.
fn bind_patiently(fd: RawFd, a: SocketAddrV4) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match bind(fd, a) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// connect(2) on a non-blocking socket: in progress counts as success.
fn connect(fd: RawFd, a: SocketAddrV4) -> io::Result<()> {
    let sa = sockaddr(a);
    // SAFETY: a valid sockaddr_in and its size.
    let rc = unsafe {
        libc::connect(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&sa) as libc::socklen_t,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINPROGRESS) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

fn so_error(fd: RawFd) -> io::Result<()> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of_val(&v) as libc::socklen_t;
    // SAFETY: getsockopt into a live c_int with its size.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut v as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })?;
    if v == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(v))
    }
}

fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: a live buffer and its length.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: a live buffer and its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn recv_from(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4)> {
    // SAFETY: zeroed sockaddr_in is valid; recvfrom fills it and the buffer.
    unsafe {
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        let mut len = std::mem::size_of_val(&sa) as libc::socklen_t;
        let n = libc::recvfrom(
            fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
            &mut sa as *mut _ as *mut libc::sockaddr,
            &mut len,
        );
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((n as usize, from_sockaddr(&sa)))
    }
}

fn send_to(fd: RawFd, buf: &[u8], to: SocketAddrV4) -> io::Result<()> {
    let sa = sockaddr(to);
    // SAFETY: a live buffer and a valid sockaddr_in.
    let n = unsafe {
        libc::sendto(
            fd,
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_NOSIGNAL,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&sa) as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn accept(fd: RawFd) -> io::Result<(OwnedFd, SocketAddrV4)> {
    // SAFETY: zeroed sockaddr_in is valid; accept4 fills it; the fd is owned at once.
    unsafe {
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        let mut len = std::mem::size_of_val(&sa) as libc::socklen_t;
        let c = check(libc::accept4(
            fd,
            &mut sa as *mut _ as *mut libc::sockaddr,
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        ))?;
        Ok((OwnedFd::from_raw_fd(c), from_sockaddr(&sa)))
    }
}

struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: a plain syscall; the descriptor is owned right away.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
    fn add(&self, fd: RawFd, events: u32, token: usize) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events,
            u64: token as u64,
        };
        // SAFETY: a live epoll fd and event.
        check(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
            .map(|_| ())
    }
    fn del(&self, fd: RawFd) {
        // SAFETY: removing a descriptor; errors (already gone) do not matter.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
        }
    }
    fn wait(&self, out: &mut Vec<(usize, u32)>, timeout: Duration) -> io::Result<()> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 256];
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: the buffer holds 256 events.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), evs.as_mut_ptr(), 256, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        out.clear();
        for ev in &evs[..n as usize] {
            let (events, token) = (ev.events, ev.u64);
            out.push((token as usize, events));
        }
        Ok(())
    }
}

/// Raise the soft descriptor limit toward the hard one (each probe holds up to
/// two descriptors while it runs).
fn raise_nofile(want: u64) {
    // SAFETY: get/setrlimit on a live struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn nofile() -> u64 {
    // SAFETY: getrlimit on a live struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur
        } else {
            1024
        }
    }
}

enum Slot {
    ListenTcp {
        ns: usize,
        fd: OwnedFd,
    },
    ListenUdp {
        ns: usize,
        fd: OwnedFd,
    },
    Conn {
        ns: usize,
        peer: SocketAddrV4,
        fd: OwnedFd,
    },
    Client {
        probe: usize,
    },
    Closed,
}

struct ClientState {
    fd: Option<OwnedFd>,
    side: Option<ClientSide>,
    next_send: Instant,
    token: usize,
}

/// Create `n` sockets of `proto` inside `ns`.
fn sockets_in(ns: &Netns, proto: Proto, n: usize) -> io::Result<Vec<OwnedFd>> {
    ns.run_in(move || {
        (0..n)
            .map(|_| socket(proto))
            .collect::<io::Result<Vec<_>>>()
    })?
}

/// Run `probes` against `listens` in `namespaces` (indexed by `Listen::ns` and
/// `Probe::from`). Returns one outcome per probe, in order. Large batches are
/// split so descriptors stay within the process limit.
pub fn run(
    namespaces: &[Site<'_>],
    listens: &[Listen],
    probes: &[Probe],
    timing: Timing,
    progress: &mut dyn FnMut(usize),
) -> io::Result<Vec<Outcome>> {
    raise_nofile(65536);
    let budget = (nofile().saturating_sub(listens.len() as u64 + 64) / 3).max(64) as usize;
    let batch = budget.min(2000);
    let mut out = Vec::with_capacity(probes.len());
    for chunk in probes.chunks(batch) {
        out.extend(run_batch(namespaces, listens, chunk, timing)?);
        progress(chunk.len());
    }
    Ok(out)
}

fn run_batch(
    namespaces: &[Site<'_>],
    listens: &[Listen],
    probes: &[Probe],
    timing: Timing,
) -> io::Result<Vec<Outcome>> {
    let ep = Epoll::new()?;
    let mut slots: Vec<Slot> = Vec::new();
    let in_ = libc::EPOLLIN as u32;
    let out_ = libc::EPOLLOUT as u32;

    // Listeners, created in their namespaces.
    for (ns_i, site) in namespaces.iter().enumerate() {
        let ns = site.ns;
        for proto in [Proto::Tcp, Proto::Udp] {
            let binds: Vec<SocketAddrV4> = listens
                .iter()
                .filter(|l| l.ns == ns_i && l.proto == proto)
                .flat_map(|l| match proto {
                    Proto::Tcp => vec![SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, l.port)],
                    Proto::Udp => site
                        .addrs
                        .iter()
                        .map(|a| SocketAddrV4::new(*a, l.port))
                        .collect(),
                })
                .collect();
            if binds.is_empty() {
                continue;
            }
            let fds = sockets_in(ns, proto, binds.len())?;
            for (fd, at) in fds.into_iter().zip(binds) {
                let raw = fd.as_raw_fd();
                if proto == Proto::Tcp {
                    set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
                }
                bind_patiently(raw, at).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("listen {proto} {at} in {}: {e}", ns.name()),
                    )
                })?;
                if proto == Proto::Tcp {
                    // SAFETY: listen on a bound socket we own.
                    check(unsafe { libc::listen(raw, 512) })?;
                }
                ep.add(raw, in_, slots.len())?;
                slots.push(match proto {
                    Proto::Tcp => Slot::ListenTcp { ns: ns_i, fd },
                    Proto::Udp => Slot::ListenUdp { ns: ns_i, fd },
                });
            }
        }
    }

    // Client sockets, created in their namespaces, then bound and started here.
    let mut clients: Vec<ClientState> = Vec::with_capacity(probes.len());
    let mut fds_by_ns: HashMap<(usize, Proto), Vec<OwnedFd>> = HashMap::new();
    for (ns_i, site) in namespaces.iter().enumerate() {
        for proto in [Proto::Tcp, Proto::Udp] {
            let n = probes
                .iter()
                .filter(|p| p.from == ns_i && p.proto == proto)
                .count();
            if n > 0 {
                let mut v = sockets_in(site.ns, proto, n)?;
                v.reverse();
                fds_by_ns.insert((ns_i, proto), v);
            }
        }
    }
    let start = Instant::now();
    for (i, p) in probes.iter().enumerate() {
        let fd = fds_by_ns
            .get_mut(&(p.from, p.proto))
            .and_then(|v| v.pop())
            .expect("one socket per probe");
        let raw = fd.as_raw_fd();
        let mut st = ClientState {
            fd: None,
            side: None,
            next_send: start + timing.resend,
            token: slots.len(),
        };
        let begin = (|| -> io::Result<()> {
            if let Some(sp) = p.sport {
                set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
                bind(raw, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, sp))
                    .map_err(|e| io::Error::new(e.kind(), format!("bind source port {sp}: {e}")))?;
            }
            connect(raw, p.target)?;
            match p.proto {
                Proto::Tcp => ep.add(raw, out_, st.token),
                Proto::Udp => {
                    send(raw, &request(i, p))?;
                    ep.add(raw, in_, st.token)
                }
            }
        })();
        match begin {
            Ok(()) => st.fd = Some(fd),
            Err(e) => st.side = Some(classify(&e)),
        }
        slots.push(Slot::Client { probe: i });
        clients.push(st);
    }

    let mut arrivals: Vec<Option<Arrival>> = vec![None; probes.len()];
    let deadline = start + timing.timeout;
    let mut events = Vec::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        // Done when every client has an answer and every connected TCP probe's tag
        // has been seen by a listener.
        let pending = clients.iter().enumerate().any(|(i, c)| match &c.side {
            None => true,
            Some(ClientSide::Connected) => arrivals[i].is_none(),
            _ => false,
        });
        if !pending || now >= deadline {
            break;
        }
        let next_resend = clients
            .iter()
            .filter(|c| c.side.is_none() && c.fd.is_some())
            .map(|c| c.next_send)
            .min()
            .unwrap_or(deadline);
        let wake = next_resend.min(deadline);
        ep.wait(&mut events, wake.saturating_duration_since(now))?;
        for &(token, ev) in &events {
            match &slots[token] {
                Slot::ListenTcp { ns, fd } => {
                    let (ns, raw) = (*ns, fd.as_raw_fd());
                    while let Ok((c, peer)) = accept(raw) {
                        ep.add(c.as_raw_fd(), in_, slots.len())?;
                        slots.push(Slot::Conn { ns, peer, fd: c });
                    }
                }
                Slot::ListenUdp { ns, fd } => {
                    let ns = *ns;
                    while let Ok((n, peer)) = recv_from(fd.as_raw_fd(), &mut buf) {
                        if let Some(id) = parse_tag(&buf[..n]).filter(|&id| id < probes.len()) {
                            arrivals[id].get_or_insert(Arrival { ns, peer });
                            let answer = probes[id]
                                .reply
                                .clone()
                                .unwrap_or_else(|| format!("amwall-reply {id}\n").into_bytes());
                            let _ = send_to(fd.as_raw_fd(), &answer, peer);
                        }
                    }
                }
                Slot::Conn { ns, peer, fd } => {
                    let (ns, peer) = (*ns, *peer);
                    let raw = fd.as_raw_fd();
                    match recv(raw, &mut buf) {
                        Ok(n) if n > 0 => {
                            if let Some(id) = parse_tag(&buf[..n]).filter(|&id| id < probes.len()) {
                                arrivals[id].get_or_insert(Arrival { ns, peer });
                                let _ = send(raw, format!("amwall-reply {id}\n").as_bytes());
                            }
                            ep.del(raw);
                            slots[token] = Slot::Closed;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        _ => {
                            ep.del(raw);
                            slots[token] = Slot::Closed;
                        }
                    }
                }
                Slot::Client { probe } => {
                    let i = *probe;
                    let c = &mut clients[i];
                    let Some(fd) = c.fd.as_ref() else { continue };
                    let raw = fd.as_raw_fd();
                    match probes[i].proto {
                        Proto::Tcp => {
                            if ev & out_ == 0 && ev & (libc::EPOLLERR as u32) == 0 {
                                continue;
                            }
                            ep.del(raw);
                            match so_error(raw) {
                                Ok(()) => {
                                    let _ = send(raw, &request(i, &probes[i]));
                                    c.side = Some(ClientSide::Connected);
                                }
                                Err(e) => c.side = Some(classify(&e)),
                            }
                        }
                        Proto::Udp => match recv(raw, &mut buf) {
                            Ok(n) => {
                                ep.del(raw);
                                c.side = Some(ClientSide::Replied(buf[..n].to_vec()));
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => {
                                ep.del(raw);
                                c.side = Some(classify(&e));
                            }
                        },
                    }
                }
                Slot::Closed => {}
            }
        }
        // UDP has no retransmission of its own: resend unanswered requests.
        let now = Instant::now();
        for (i, c) in clients.iter_mut().enumerate() {
            if probes[i].proto == Proto::Udp && c.side.is_none() && now >= c.next_send {
                if let Some(fd) = &c.fd {
                    let _ = send(fd.as_raw_fd(), &request(i, &probes[i]));
                }
                c.next_send = now + timing.resend;
            }
        }
    }
    Ok(clients
        .into_iter()
        .zip(arrivals)
        .map(|(c, arrival)| Outcome {
            client: c.side.unwrap_or(ClientSide::Silent),
            arrival,
        })
        .collect())
}

fn request(i: usize, p: &Probe) -> Vec<u8> {
    let mut v = p.payload.clone();
    v.extend(tag(i));
    v
}

fn classify(e: &io::Error) -> ClientSide {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => ClientSide::Refused,
        Some(libc::ENETUNREACH) => ClientSide::Unreachable("no route".into()),
        Some(libc::EHOSTUNREACH) => ClientSide::Unreachable("host unreachable".into()),
        Some(libc::ETIMEDOUT) => ClientSide::Silent,
        Some(libc::EPERM) | Some(libc::EACCES) => {
            // A local firewall rule refused to send (we accept all output, so unusual).
            ClientSide::Unreachable(format!("sending refused: {e}"))
        }
        _ => ClientSide::Error(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_inside_other_text() {
        let mut v = b"Amanda 3.5 REQ HANDLE 000 SEQ 1\n".to_vec();
        v.extend(tag(417));
        assert_eq!(parse_tag(&v), Some(417));
        assert_eq!(parse_tag(b"nothing here"), None);
    }
}
