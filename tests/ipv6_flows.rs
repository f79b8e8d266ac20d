//! The kernel is the judge of Amanda's flows over IPv6: the dual-stack
//! example (`examples/dualstack.toml`, an upstream build that speaks IPv6)
//! with its planned rules loaded in namespaces — TSHost on the LAN, FWHost
//! routing without NAT66, RHost on the outside — and real TCP connections
//! with the source ports Amanda uses. The backup's control connection from
//! TSHost reaches RHost through FWHost only from a reserved port; RHost's
//! recovery reaches TSHost's own IPv6 address (no port forward over IPv6);
//! what no flow needs is dropped. Both backends. Needs root, iproute2,
//! iptables and nftables; CI has them, and a missing one fails here loudly.

mod common;

use std::net::TcpListener;

use amwall::lab::netns::veth;
use amwall::lab::Netns;
use amwall::Plan;

const TS: &str = "2001:db8:2::2";
const FW_LAN: &str = "2001:db8:2::1";
const FW_OUT: &str = "2001:db8:ff::4";
const RH: &str = "2001:db8:ee::5";

struct Net {
    ts: Netns,
    fw: Netns,
    rh: Netns,
    _listeners: Vec<TcpListener>,
}

fn ip(ns: &Netns, args: &str) {
    let argv: Vec<&str> = args.split_whitespace().collect();
    ns.must(&argv).unwrap_or_else(|e| panic!("{args}: {e}"));
}

fn net() -> Net {
    let ts = Netns::new("amw6t").expect("creating a netns needs root and iproute2");
    let fw = Netns::new("amw6f").expect("creating a netns needs root and iproute2");
    let rh = Netns::new("amw6r").expect("creating a netns needs root and iproute2");
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

use common::connects6 as connects;

fn load(n: &Net, plan: &Plan, nft: bool) {
    common::load_both_families(
        plan,
        &[(&n.ts, "tshost"), (&n.fw, "fwhost"), (&n.rh, "rhost")],
        nft,
    );
}

#[test]
fn amandas_ipv6_flows_pass_and_nothing_else() {
    let plan = Plan::build(common::example("dualstack")).unwrap();
    assert!(
        plan.policies.iter().any(|p| !p.v6.rules.is_empty()),
        "the upstream build's flows must be opened over IPv6"
    );
    for nft in [false, true] {
        let b = if nft { "nft" } else { "iptables" };
        let n = net();
        // Before any rule: everything gets through, so the drops below are
        // the rules' doing.
        assert!(connects(&n.ts, TS, 40000, RH, 10080), "{b}: open before");
        load(&n, &plan, nft);
        // Backup: TSHost's amandad request from a reserved port, through
        // FWHost (forwarded, no masquerade over IPv6).
        assert!(
            connects(&n.ts, TS, 600, RH, 10080),
            "{b}: backup control over IPv6"
        );
        assert!(
            !connects(&n.ts, TS, 40010, RH, 10080),
            "{b}: an unreserved source port must be dropped"
        );
        // Recovery: RHost to TSHost's own address, no port forward.
        assert!(
            connects(&n.rh, RH, 700, TS, 10080),
            "{b}: recovery over IPv6"
        );
        assert!(
            !connects(&n.rh, RH, 40001, TS, 10080),
            "{b}: recovery from an unreserved port must be dropped"
        );
        // Nothing no flow needs: ssh from outside the admins' prefix, and
        // FWHost's own amandad from RHost (only TSHost may ask it).
        assert!(
            !connects(&n.rh, RH, 40002, TS, 22),
            "{b}: ssh from the outside must be dropped"
        );
        assert!(
            !connects(&n.rh, RH, 701, FW_OUT, 10080),
            "{b}: fwhost's amandad is for tshost only"
        );
        // The admins' ssh from the LAN prefix (FWHost's LAN address is in it).
        assert!(
            connects(&n.fw, FW_LAN, 40003, TS, 22),
            "{b}: management over IPv6 from the LAN"
        );
    }
}
