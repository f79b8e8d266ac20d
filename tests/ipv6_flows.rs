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

use amwall::Plan;
use common::dual::{connects, net, Net, FW_LAN, FW_OUT, RH, TS};

fn load(n: &Net, plan: &Plan, nft: bool) {
    common::load_both_families(plan, &n.hosts(), nft);
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
        let n = net("amw6");
        // Before any rule: everything gets through, so the drops below are
        // the rules' doing.
        assert!(connects(&n.ts, TS, 40000, RH, 10080), "{b}: open before");
        load(&n, &plan, nft);
        common::dual::amanda_passes_reserved_only(&n, b);
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
