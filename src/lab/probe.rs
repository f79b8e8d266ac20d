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
//! every socket is owned (socket2 until it is bound and connecting, then the std
//! type whose safe calls fit it), closed when `run` returns. No `unsafe` here:
//! socket2 does what std cannot (bind a chosen source port before a
//! non-blocking connect, SO_REUSEADDR), nix the epoll loop and the descriptor
//! limit.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{
    Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use socket2::{Domain, Socket, Type};

use crate::lab::netns::Netns;
use crate::ports::Proto;

/// A namespace the engine works in, with the host's addresses.
pub struct Site<'a> {
    pub ns: &'a Netns,
    /// UDP listeners bind each of these (TCP binds 0.0.0.0): an unconnected UDP
    /// socket on 0.0.0.0 would answer from the address of the outgoing route, not
    /// the one the request was sent to, and a connected client drops that answer.
    pub addrs: Vec<Ipv4Addr>,
    /// The same for IPv6 (TCP binds `::`, IPv6 only).
    pub addrs6: Vec<Ipv6Addr>,
}

/// The address family a batch speaks: every probe, listener and peer of one
/// `run` is IPv4 (`SocketAddrV4`, the default everywhere) or IPv6
/// (`SocketAddrV6`). One engine for both, so the IPv6 scan sees exactly what
/// the IPv4 one would.
pub trait Family: Copy + Eq + std::fmt::Debug + Into<SocketAddr> + Send + 'static {
    const DOMAIN: Domain;
    /// The wildcard address with `port` (TCP listeners, client source ports).
    fn any(port: u16) -> Self;
    fn from_std(a: SocketAddr) -> Option<Self>;
    /// What a UDP listener on `port` binds in `site` (one socket each).
    fn site_addrs(site: &Site<'_>, port: u16) -> Vec<Self>;
}

impl Family for SocketAddrV4 {
    const DOMAIN: Domain = Domain::IPV4;
    fn any(port: u16) -> Self {
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)
    }
    fn from_std(a: SocketAddr) -> Option<Self> {
        match a {
            SocketAddr::V4(a) => Some(a),
            SocketAddr::V6(_) => None,
        }
    }
    fn site_addrs(site: &Site<'_>, port: u16) -> Vec<Self> {
        site.addrs
            .iter()
            .map(|a| SocketAddrV4::new(*a, port))
            .collect()
    }
}

impl Family for SocketAddrV6 {
    const DOMAIN: Domain = Domain::IPV6;
    fn any(port: u16) -> Self {
        SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)
    }
    fn from_std(a: SocketAddr) -> Option<Self> {
        match a {
            SocketAddr::V6(a) => Some(a),
            SocketAddr::V4(_) => None,
        }
    }
    fn site_addrs(site: &Site<'_>, port: u16) -> Vec<Self> {
        site.addrs6
            .iter()
            .map(|a| SocketAddrV6::new(*a, port, 0, 0))
            .collect()
    }
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
pub struct Probe<A = SocketAddrV4> {
    pub from: usize,
    pub proto: Proto,
    pub sport: Option<u16>,
    pub target: A,
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
pub struct Arrival<A = SocketAddrV4> {
    pub ns: usize,
    pub peer: A,
}

#[derive(Debug, Clone)]
pub struct Outcome<A = SocketAddrV4> {
    pub client: ClientSide,
    pub arrival: Option<Arrival<A>>,
}

impl<A> Outcome<A> {
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

/// A non-blocking socket in the calling thread's namespace (close-on-exec:
/// `Socket::new` sets it, in the same socket(2) call). IPv6 sockets are IPv6
/// only, so a listener on `::` never sees (or blocks) an IPv4 probe.
fn socket(domain: Domain, proto: Proto) -> io::Result<Socket> {
    let ty = match proto {
        Proto::Tcp => Type::STREAM,
        Proto::Udp => Type::DGRAM,
    };
    let s = Socket::new(domain, ty.nonblocking(), None)?;
    if domain == Domain::IPV6 {
        s.set_only_v6(true)?;
    }
    Ok(s)
}

/// bind(2), waiting out a previous listener on the same port. Listeners are closed
/// between batches, but a process that another thread is just spawning holds a
/// copy of every descriptor until its exec (SOCK_CLOEXEC closes them only then),
/// so for a moment the old socket lives on.
fn bind_patiently<A: Family>(s: &Socket, a: A) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match s.bind(&a.into().into()) {
            Err(e) if errno(&e) == Errno::EADDRINUSE && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

/// connect(2) on a non-blocking socket: in progress counts as success.
fn connect<A: Family>(s: &Socket, a: A) -> io::Result<()> {
    match s.connect(&a.into().into()) {
        Err(e) if errno(&e) == Errno::EINPROGRESS => Ok(()),
        r => r,
    }
}

/// One epoll instance; a token per registered socket (its slot index).
struct Poll(Epoll);

impl Poll {
    fn new() -> io::Result<Poll> {
        Ok(Poll(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?))
    }
    fn add(&self, fd: impl AsFd, events: EpollFlags, token: usize) -> io::Result<()> {
        Ok(self.0.add(fd, EpollEvent::new(events, token as u64))?)
    }
    fn del(&self, fd: impl AsFd) {
        // Errors (already gone) do not matter.
        let _ = self.0.delete(fd);
    }
    fn wait(&self, out: &mut Vec<(usize, EpollFlags)>, timeout: Duration) -> io::Result<()> {
        let mut evs = [EpollEvent::empty(); 256];
        let ms = EpollTimeout::try_from(timeout).unwrap_or(EpollTimeout::MAX);
        out.clear();
        let n = match self.0.wait(&mut evs, ms) {
            Ok(n) => n,
            // A signal: no events this time (the caller loops until its deadline).
            Err(Errno::EINTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        out.extend(evs[..n].iter().map(|ev| (ev.data() as usize, ev.events())));
        Ok(())
    }
}

/// Raise the soft descriptor limit toward the hard one (each probe holds up to
/// two descriptors while it runs).
fn raise_nofile(want: u64) {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < want {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
        }
    }
}

fn nofile() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

enum Slot<A> {
    ListenTcp { ns: usize, sock: TcpListener },
    ListenUdp { ns: usize, sock: UdpSocket },
    Conn { ns: usize, peer: A, sock: TcpStream },
    Client { probe: usize },
    Closed,
}

/// A client socket once its connect has started.
enum Client {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

impl AsFd for Client {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Client::Tcp(s) => s.as_fd(),
            Client::Udp(s) => s.as_fd(),
        }
    }
}

struct ClientState {
    sock: Option<Client>,
    side: Option<ClientSide>,
    next_send: Instant,
    token: usize,
}

/// Create `n` sockets of `proto` inside `ns`.
fn sockets_in(ns: &Netns, domain: Domain, proto: Proto, n: usize) -> io::Result<Vec<Socket>> {
    ns.run_in(move || {
        (0..n)
            .map(|_| socket(domain, proto))
            .collect::<io::Result<Vec<_>>>()
    })?
}

/// Run `probes` against `listens` in `namespaces` (indexed by `Listen::ns` and
/// `Probe::from`). Returns one outcome per probe, in order. Large batches are
/// split so descriptors stay within the process limit.
pub fn run<A: Family>(
    namespaces: &[Site<'_>],
    listens: &[Listen],
    probes: &[Probe<A>],
    timing: Timing,
    progress: &mut dyn FnMut(usize),
) -> io::Result<Vec<Outcome<A>>> {
    raise_nofile(65536);
    let budget = (nofile().saturating_sub(listens.len() as u64 + 64) / 3).max(64) as usize;
    // A batch costs one timeout for whatever it sends into a drop, so it is as
    // large as the descriptors allow: a scan of the wiki (2,280 probes, per
    // family) is one batch. The cap keeps a progress display moving on large sites.
    let batch = budget.min(4096);
    let mut out = Vec::with_capacity(probes.len());
    for chunk in probes.chunks(batch) {
        out.extend(run_batch(namespaces, listens, chunk, timing)?);
        progress(chunk.len());
    }
    Ok(out)
}

/// One batch: listeners, then every client started at once, then one epoll loop
/// until every probe has its answer or the timeout passes.
fn run_batch<A: Family>(
    namespaces: &[Site<'_>],
    listens: &[Listen],
    probes: &[Probe<A>],
    timing: Timing,
) -> io::Result<Vec<Outcome<A>>> {
    let mut b = Batch {
        probes,
        ep: Poll::new()?,
        slots: Vec::new(),
        clients: Vec::with_capacity(probes.len()),
        arrivals: vec![None; probes.len()],
        buf: vec![0u8; 2048],
    };
    b.listen(namespaces, listens)?;
    let start = b.start(namespaces, timing)?;
    let deadline = start + timing.timeout;
    let mut events = Vec::new();
    loop {
        let now = Instant::now();
        if !b.pending() || now >= deadline {
            break;
        }
        let next_resend = b
            .clients
            .iter()
            .filter(|c| c.side.is_none() && c.sock.is_some())
            .map(|c| c.next_send)
            .min()
            .unwrap_or(deadline);
        let wake = next_resend.min(deadline);
        b.ep.wait(&mut events, wake.saturating_duration_since(now))?;
        for &(token, ev) in &events {
            b.on_event(token, ev)?;
        }
        b.resend(timing);
    }
    Ok(b.outcomes())
}

/// The state of one batch: every socket under its epoll token (`slots`), what
/// each client saw, and where each probe's tag arrived.
struct Batch<'p, A> {
    probes: &'p [Probe<A>],
    ep: Poll,
    slots: Vec<Slot<A>>,
    clients: Vec<ClientState>,
    arrivals: Vec<Option<Arrival<A>>>,
    buf: Vec<u8>,
}

impl<A: Family> Batch<'_, A> {
    /// Listeners, created in their namespaces.
    fn listen(&mut self, namespaces: &[Site<'_>], listens: &[Listen]) -> io::Result<()> {
        for (ns_i, site) in namespaces.iter().enumerate() {
            let ns = site.ns;
            for proto in [Proto::Tcp, Proto::Udp] {
                let binds: Vec<A> = listens
                    .iter()
                    .filter(|l| l.ns == ns_i && l.proto == proto)
                    .flat_map(|l| match proto {
                        Proto::Tcp => vec![A::any(l.port)],
                        Proto::Udp => A::site_addrs(site, l.port),
                    })
                    .collect();
                if binds.is_empty() {
                    continue;
                }
                let socks = sockets_in(ns, A::DOMAIN, proto, binds.len())?;
                for (sock, at) in socks.into_iter().zip(binds) {
                    if proto == Proto::Tcp {
                        sock.set_reuse_address(true)?;
                    }
                    bind_patiently(&sock, at).map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("listen {proto} {} in {}: {e}", at.into(), ns.name()),
                        )
                    })?;
                    let token = self.slots.len();
                    let slot = match proto {
                        Proto::Tcp => {
                            sock.listen(512)?;
                            let sock = TcpListener::from(sock);
                            self.ep.add(&sock, EpollFlags::EPOLLIN, token)?;
                            Slot::ListenTcp { ns: ns_i, sock }
                        }
                        Proto::Udp => {
                            let sock = UdpSocket::from(sock);
                            self.ep.add(&sock, EpollFlags::EPOLLIN, token)?;
                            Slot::ListenUdp { ns: ns_i, sock }
                        }
                    };
                    self.slots.push(slot);
                }
            }
        }
        Ok(())
    }

    /// Client sockets, created in their namespaces, then bound and started here.
    /// Returns when they were started (the batch's timeout counts from then).
    fn start(&mut self, namespaces: &[Site<'_>], timing: Timing) -> io::Result<Instant> {
        let probes = self.probes;
        let mut socks_by_ns: HashMap<(usize, Proto), Vec<Socket>> = HashMap::new();
        for (ns_i, site) in namespaces.iter().enumerate() {
            for proto in [Proto::Tcp, Proto::Udp] {
                let n = probes
                    .iter()
                    .filter(|p| p.from == ns_i && p.proto == proto)
                    .count();
                if n > 0 {
                    let mut v = sockets_in(site.ns, A::DOMAIN, proto, n)?;
                    v.reverse();
                    socks_by_ns.insert((ns_i, proto), v);
                }
            }
        }
        let start = Instant::now();
        for (i, p) in probes.iter().enumerate() {
            let sock = socks_by_ns
                .get_mut(&(p.from, p.proto))
                .and_then(|v| v.pop())
                .expect("one socket per probe");
            let mut st = ClientState {
                sock: None,
                side: None,
                next_send: start + timing.resend,
                token: self.slots.len(),
            };
            match begin(&self.ep, sock, i, p, st.token) {
                Ok(c) => st.sock = Some(c),
                Err(e) => st.side = Some(classify(&e)),
            }
            self.slots.push(Slot::Client { probe: i });
            self.clients.push(st);
        }
        Ok(start)
    }

    /// Some client has no answer yet, or a connected TCP probe's tag has not
    /// been seen by a listener yet.
    fn pending(&self) -> bool {
        self.clients.iter().enumerate().any(|(i, c)| match &c.side {
            None => true,
            Some(ClientSide::Connected) => self.arrivals[i].is_none(),
            _ => false,
        })
    }

    fn on_event(&mut self, token: usize, ev: EpollFlags) -> io::Result<()> {
        let probes = self.probes;
        let tag_in = |buf: &[u8]| parse_tag(buf).filter(|&id| id < probes.len());
        match &self.slots[token] {
            Slot::ListenTcp { ns, sock } => {
                let ns = *ns;
                let mut accepted = Vec::new();
                while let Ok((c, peer)) = sock.accept() {
                    accepted.extend(A::from_std(peer).map(|peer| (c, peer)));
                }
                for (c, peer) in accepted {
                    c.set_nonblocking(true)?;
                    self.ep.add(&c, EpollFlags::EPOLLIN, self.slots.len())?;
                    self.slots.push(Slot::Conn { ns, peer, sock: c });
                }
            }
            Slot::ListenUdp { ns, sock } => {
                let ns = *ns;
                while let Ok((n, peer)) = sock.recv_from(&mut self.buf) {
                    let Some(peer) = A::from_std(peer) else {
                        continue;
                    };
                    if let Some(id) = tag_in(&self.buf[..n]) {
                        self.arrivals[id].get_or_insert(Arrival { ns, peer });
                        let answer = probes[id]
                            .reply
                            .clone()
                            .unwrap_or_else(|| format!("amwall-reply {id}\n").into_bytes());
                        let _ = sock.send_to(&answer, peer.into());
                    }
                }
            }
            Slot::Conn { ns, peer, sock } => {
                let (ns, peer) = (*ns, *peer);
                let mut sock: &TcpStream = sock;
                match sock.read(&mut self.buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Ok(n) if n > 0 => {
                        if let Some(id) = tag_in(&self.buf[..n]) {
                            self.arrivals[id].get_or_insert(Arrival { ns, peer });
                            let _ = sock.write(format!("amwall-reply {id}\n").as_bytes());
                        }
                    }
                    // Closed or failed before its tag: nothing arrived on it.
                    _ => {}
                }
                self.ep.del(sock);
                self.slots[token] = Slot::Closed;
            }
            Slot::Client { probe } => self.on_client(*probe, ev),
            Slot::Closed => {}
        }
        Ok(())
    }

    /// Client `i`'s socket is ready: a TCP connect finished (or failed), or a
    /// UDP answer (or an ICMP error) is there.
    fn on_client(&mut self, i: usize, ev: EpollFlags) {
        let c = &mut self.clients[i];
        match &mut c.sock {
            None => {}
            Some(Client::Tcp(s)) => {
                if !ev.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR) {
                    return;
                }
                self.ep.del(&*s);
                match s.take_error() {
                    Ok(None) => {
                        let _ = s.write(&request(i, &self.probes[i]));
                        c.side = Some(ClientSide::Connected);
                    }
                    Ok(Some(e)) | Err(e) => c.side = Some(classify(&e)),
                }
            }
            Some(Client::Udp(s)) => match s.recv(&mut self.buf) {
                Ok(n) => {
                    self.ep.del(&*s);
                    c.side = Some(ClientSide::Replied(self.buf[..n].to_vec()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.ep.del(&*s);
                    c.side = Some(classify(&e));
                }
            },
        }
    }

    /// UDP has no retransmission of its own: resend unanswered requests.
    fn resend(&mut self, timing: Timing) {
        let now = Instant::now();
        for (i, c) in self.clients.iter_mut().enumerate() {
            if self.probes[i].proto == Proto::Udp && c.side.is_none() && now >= c.next_send {
                if let Some(Client::Udp(s)) = &c.sock {
                    let _ = s.send(&request(i, &self.probes[i]));
                }
                c.next_send = now + timing.resend;
            }
        }
    }

    fn outcomes(self) -> Vec<Outcome<A>> {
        self.clients
            .into_iter()
            .zip(self.arrivals)
            .map(|(c, arrival)| Outcome {
                client: c.side.unwrap_or(ClientSide::Silent),
                arrival,
            })
            .collect()
    }
}

/// Start probe `i`: bind its source port (if it has one), connect, and for UDP
/// send the request; register it with `ep` under `token`.
fn begin<A: Family>(
    ep: &Poll,
    sock: Socket,
    i: usize,
    p: &Probe<A>,
    token: usize,
) -> io::Result<Client> {
    if let Some(sp) = p.sport {
        sock.set_reuse_address(true)?;
        sock.bind(&A::any(sp).into().into())
            .map_err(|e| io::Error::new(e.kind(), format!("bind source port {sp}: {e}")))?;
    }
    connect(&sock, p.target)?;
    match p.proto {
        Proto::Tcp => {
            let s = TcpStream::from(sock);
            ep.add(&s, EpollFlags::EPOLLOUT, token)?;
            Ok(Client::Tcp(s))
        }
        Proto::Udp => {
            let s = UdpSocket::from(sock);
            s.send(&request(i, p))?;
            ep.add(&s, EpollFlags::EPOLLIN, token)?;
            Ok(Client::Udp(s))
        }
    }
}

fn request<A>(i: usize, p: &Probe<A>) -> Vec<u8> {
    let mut v = p.payload.clone();
    v.extend(tag(i));
    v
}

fn classify(e: &io::Error) -> ClientSide {
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ECONNREFUSED) => ClientSide::Refused,
        Some(Errno::ENETUNREACH) => ClientSide::Unreachable("no route".into()),
        Some(Errno::EHOSTUNREACH) => ClientSide::Unreachable("host unreachable".into()),
        Some(Errno::ETIMEDOUT) => ClientSide::Silent,
        Some(Errno::EPERM) | Some(Errno::EACCES) => {
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
