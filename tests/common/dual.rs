//! The dual-stack example's IPv6 network in namespaces, shared by the tests
//! that send Amanda's flows over IPv6 through each firewall manager's rules:
//! TSHost on the LAN, FWHost routing without NAT66, RHost on the outside,
//! listeners on Amanda's port (and ssh on TSHost) on `::`.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};

use amwall::lab::netns::veth;
use amwall::lab::Netns;

pub const TS: &str = "2001:db8:2::2";
pub const FW_LAN: &str = "2001:db8:2::1";
pub const FW_OUT: &str = "2001:db8:ff::4";
pub const RH: &str = "2001:db8:ee::5";

pub struct Net {
    pub ts: Netns,
    pub fw: Netns,
    pub rh: Netns,
    _listeners: Vec<TcpListener>,
}

impl Net {
    /// (namespace, the example's host name), in the example's order.
    pub fn hosts(&self) -> [(&Netns, &'static str); 3] {
        [
            (&self.ts, "tshost"),
            (&self.fw, "fwhost"),
            (&self.rh, "rhost"),
        ]
    }
}

fn ip(ns: &Netns, args: &str) {
    let argv: Vec<&str> = args.split_whitespace().collect();
    ns.must(&argv).unwrap_or_else(|e| panic!("{args}: {e}"));
}

/// The three namespaces, named `PREFIX` + t/f/r (unique per test), wired
/// and reachable end to end before any rule.
pub fn net(prefix: &str) -> Net {
    let mk = |s: &str| {
        Netns::new(&format!("{prefix}{s}")).expect("creating a netns needs root and iproute2")
    };
    let (ts, fw, rh) = (mk("t"), mk("f"), mk("r"));
    veth(&ts, "eth0", &fw, "eth0").expect("veth");
    veth(&fw, "eth1", &rh, "eth0").expect("veth");
    ip(&ts, &format!("ip -6 addr add {TS}/64 dev eth0 nodad"));
    ip(
        &ts,
        &format!("ip -6 route add default via {FW_LAN} dev eth0"),
    );
    ip(&fw, &format!("ip -6 addr add {FW_LAN}/64 dev eth0 nodad"));
    ip(&fw, &format!("ip -6 addr add {FW_OUT}/64 dev eth1 nodad"));
    ip(&fw, &format!("ip -6 route add {RH}/128 dev eth1"));
    ip(&fw, "sysctl -qw net.ipv6.conf.all.forwarding=1");
    ip(&rh, &format!("ip -6 addr add {RH}/128 dev eth0 nodad"));
    ip(&rh, &format!("ip -6 route add {FW_OUT}/128 dev eth0"));
    ip(
        &rh,
        &format!("ip -6 route add default via {FW_OUT} dev eth0"),
    );
    // The link-local addresses ND needs come up after their own duplicate
    // detection (about a second): wait until a packet gets all the way.
    let reached = (0..10).any(|_| {
        ts.exec(&["ping", "-6", "-c", "1", "-W", "1", RH], None)
            .expect("ping must be installed (iputils-ping)")
            .ok()
    });
    assert!(reached, "no IPv6 path from tshost to rhost before any rule");
    let listen = |ns: &Netns, port: u16| {
        ns.run_in(move || TcpListener::bind(("::", port)).expect("listen on ::"))
            .unwrap()
    };
    let listeners = vec![
        listen(&rh, 10080),
        listen(&ts, 10080),
        listen(&ts, 22),
        listen(&fw, 10080),
    ];
    Net {
        ts,
        fw,
        rh,
        _listeners: listeners,
    }
}

/// A TCP connect from `src`:`sport` in `ns` to `dst`:`port`: true when accepted.
pub fn connects(ns: &Netns, src: &str, sport: u16, dst: &str, port: u16) -> bool {
    let to: SocketAddr = format!("[{dst}]:{port}").parse().unwrap();
    match super::tcp_connect(ns, &format!("[{src}]:{sport}"), to) {
        ErrorKind::Other => true,
        ErrorKind::TimedOut
        | ErrorKind::WouldBlock
        | ErrorKind::HostUnreachable
        | ErrorKind::ConnectionRefused
        // firewalld's reject: ICMPv6 administratively prohibited.
        | ErrorKind::PermissionDenied => false,
        other => panic!("{src}:{sport} → {to}: unexpected {other:?}"),
    }
}

/// The negative control before a manager's rules are in: neither the
/// backup's control connection nor the recovery gets through.
pub fn amanda_closed(n: &Net, what: &str) {
    assert!(
        !connects(&n.ts, TS, 600, RH, 10080),
        "{what}: closed before"
    );
    assert!(
        !connects(&n.rh, RH, 700, TS, 10080),
        "{what}: closed before"
    );
}

/// Amanda's IPv6 flows of the dual-stack example (bsdtcp, upstream build),
/// the negative controls beside each: the backup's control connection
/// through FWHost and the recovery to TSHost's own address pass from a
/// reserved source port only. `what` names the manager in messages.
pub fn amanda_passes_reserved_only(n: &Net, what: &str) {
    assert!(
        connects(&n.ts, TS, 600, RH, 10080),
        "{what}: backup control over IPv6"
    );
    assert!(
        !connects(&n.ts, TS, 40010, RH, 10080),
        "{what}: an unreserved source port must be dropped"
    );
    assert!(
        connects(&n.rh, RH, 700, TS, 10080),
        "{what}: recovery over IPv6"
    );
    assert!(
        !connects(&n.rh, RH, 40001, TS, 10080),
        "{what}: recovery from an unreserved port must be dropped"
    );
}

/// A dual-stack LAN of `n` recovering clients whose Amanda (upstream's
/// build) speaks IPv6: the server's IPv6 recovery opening has `n` sources.
pub fn lan_toml(n: usize) -> String {
    let mut t = String::from(
        "[amanda]\nbuild = \"upstream\"\nauth = \"bsdtcp\"\n[management]\nfrom = [\"all\"]\n\
         [[network]]\nname = \"all\"\ncidr = \"198.51.100.0/24\"\ncidr6 = \"2001:db8:5::/64\"\n\
         [[host]]\nname = \"server\"\nroles = [\"server\"]\n\
         interfaces = [{ name = \"eth0\", network = \"all\", address = \"198.51.100.1\", address6 = \"2001:db8:5::1\" }]\n",
    );
    for i in 0..n {
        t.push_str(&format!(
            "[[host]]\nname = \"c{i}\"\nroles = [\"client\", \"recover\"]\n\
             interfaces = [{{ name = \"eth0\", network = \"all\", address = \"198.51.100.{a}\", address6 = \"2001:db8:5::{a:x}\" }}]\n",
            a = i + 2
        ));
    }
    t
}
