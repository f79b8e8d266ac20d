//! The kernel is the judge of the IPv6 policy: the dual-stack lan example's
//! `db` gets its planned rules (`HOST.rules6` through ip6tables-restore, or
//! the whole `HOST.nft`), and real packets from a neighbour on the same link
//! show what it accepts over IPv6. Before the rules, a web server and ssh on
//! `::` answer anyone; after them, only ssh from the admin network's IPv6
//! prefix does, and neighbour discovery (which the first packet to a
//! neighbour needs) and ping still work. Negative control: without the
//! ICMPv6 rule, neighbour discovery fails and even the admins' ssh cannot
//! get through, which is why the policy must keep it.
//! Needs root, iproute2, iptables, nftables and ping; CI has them, and a
//! missing one fails here loudly.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};

use amwall::lab::netns::veth;
use amwall::lab::Netns;
use amwall::Plan;

const DB: &str = "2001:db8:20::30";
/// A client on the lan's IPv6 prefix: no management from here.
const WEB: &str = "2001:db8:20::21";
/// An admin workstation on the admin network's IPv6 prefix, on the same
/// link here so that one veth carries both.
const ADMIN: &str = "2001:db8:20:99::5";

struct Link {
    db: Netns,
    peer: Netns,
    /// Kept open: the listeners on `::` that an unfirewalled host exposes.
    _listeners: Vec<TcpListener>,
}

fn link() -> Link {
    let db = Netns::new("amw6d").expect("creating a netns needs root and iproute2");
    let peer = Netns::new("amw6p").expect("creating a netns needs root and iproute2");
    veth(&db, "ens3", &peer, "eth0").expect("veth");
    // nodad: the addresses are usable at once (no duplicate detection wait).
    db.must(&[
        "ip",
        "-6",
        "addr",
        "add",
        &format!("{DB}/64"),
        "dev",
        "ens3",
        "nodad",
    ])
    .unwrap();
    db.must(&[
        "ip",
        "-6",
        "route",
        "add",
        "2001:db8:20:99::/64",
        "dev",
        "ens3",
    ])
    .unwrap();
    for a in [format!("{WEB}/64"), format!("{ADMIN}/64")] {
        peer.must(&["ip", "-6", "addr", "add", &a, "dev", "eth0", "nodad"])
            .unwrap();
    }
    // The link-local addresses ND needs come up after their own duplicate
    // detection (about a second): wait until a packet gets across.
    let reached = (0..10).any(|_| {
        peer.exec(&["ping", "-6", "-c", "1", "-W", "1", "-I", WEB, DB], None)
            .expect("ping must be installed (iputils-ping)")
            .ok()
    });
    assert!(reached, "no IPv6 path to db before any rule");
    let listeners = [80u16, 22]
        .into_iter()
        .map(|port| {
            db.run_in(move || TcpListener::bind(("::", port)).expect("listen on ::"))
                .unwrap()
        })
        .collect();
    Link {
        db,
        peer,
        _listeners: listeners,
    }
}

impl Link {
    /// A TCP connect from `src` to db's `port`: true when it is accepted.
    fn connects(&self, src: &str, port: u16) -> bool {
        let to: SocketAddr = format!("[{DB}]:{port}").parse().unwrap();
        match common::tcp_connect(&self.peer, &format!("[{src}]:0"), to) {
            ErrorKind::Other => true,
            ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::HostUnreachable => false,
            other => panic!("connect from {src} to {to}: unexpected {other:?}"),
        }
    }
    fn pings(&self) -> bool {
        self.peer
            .exec(&["ping", "-6", "-c", "1", "-W", "2", "-I", WEB, DB], None)
            .expect("ping must be installed (iputils-ping)")
            .ok()
    }
    /// Forget the neighbours, so the next packet needs neighbour discovery.
    fn forget_neighbours(&self) {
        for ns in [&self.db, &self.peer] {
            ns.must(&["ip", "-6", "neigh", "flush", "all"]).unwrap();
        }
    }
}

fn db_rules(nft: bool, drop_icmpv6: bool) -> (Vec<&'static str>, String) {
    let plan = Plan::build(common::example("lan")).unwrap();
    let hp = plan
        .policies
        .iter()
        .find(|p| plan.deployment.hosts[p.host].name == "db")
        .unwrap();
    if nft {
        let mut text = plan.nft(hp);
        if drop_icmpv6 {
            text = common::without_lines(&text, "icmpv6 type");
        }
        (vec!["nft", "-f", "-"], text)
    } else {
        let mut text = plan.ip6tables(hp);
        if drop_icmpv6 {
            text = common::without_lines(&text, "--icmpv6-type");
        }
        (vec!["ip6tables-restore"], text)
    }
}

fn load(l: &Link, nft: bool, drop_icmpv6: bool) {
    let (argv, text) = db_rules(nft, drop_icmpv6);
    let r =
        l.db.exec(&argv, Some(&text))
            .expect("the loader must be installed");
    assert!(r.ok(), "{argv:?} failed: {}\n{text}", r.stderr);
}

#[test]
fn over_ipv6_only_management_from_the_admins_prefix_and_what_ipv6_needs_get_in() {
    for nft in [false, true] {
        let backend = if nft { "nft" } else { "ip6tables" };
        let l = link();
        // Before: everything listening on :: is open to the neighbour.
        assert!(
            l.connects(WEB, 80),
            "{backend}: the listener must answer before"
        );
        assert!(l.connects(WEB, 22), "{backend}: ssh must answer before");
        load(&l, nft, false);
        l.forget_neighbours();
        assert!(
            l.pings(),
            "{backend}: ping (and neighbour discovery) must pass"
        );
        l.forget_neighbours();
        assert!(
            l.connects(ADMIN, 22),
            "{backend}: ssh from the admin prefix must pass"
        );
        assert!(
            !l.connects(WEB, 80),
            "{backend}: tcp/80 over IPv6 must be dropped"
        );
        assert!(
            !l.connects(WEB, 22),
            "{backend}: ssh from outside the admin prefix must be dropped"
        );
        assert!(
            !l.connects(ADMIN, 80),
            "{backend}: the admin prefix gets ssh only"
        );
    }
}

#[test]
fn without_the_icmpv6_rule_neighbour_discovery_fails() {
    for nft in [false, true] {
        let backend = if nft { "nft" } else { "ip6tables" };
        let l = link();
        load(&l, nft, true);
        l.forget_neighbours();
        assert!(
            !l.pings(),
            "{backend}: ping must fail without the ICMPv6 rule"
        );
        l.forget_neighbours();
        assert!(
            !l.connects(ADMIN, 22),
            "{backend}: without neighbour discovery even the admins' ssh must fail"
        );
    }
}
