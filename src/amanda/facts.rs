//! Amanda and kernel facts, each in one place with its source.
//! `A:path` = zmanda/amanda at tag-community-3.5.1; Debian = 1:3.5.1-11+deb12u2
//! (see docs/amanda-protocol.md and docs/design.md "Domain facts").

use crate::amanda::settings::{AmandaSettings, Auth, Build};
use crate::ports::PortRange;

/// amandad's well-known port, `amanda 10080` in /etc/services.
pub const AMANDA_PORT: u16 = 10080;
/// amoldrecover's index and tape services (`amandaidx`, `amidxtape` in /etc/services;
/// `A:oldrecover-src/amrecover.c`).
pub const AMANDAIDX_PORT: u16 = 10082;
pub const AMIDXTAPE_PORT: u16 = 10083;
/// ssh auth runs `ssh host amandad -auth=ssh`, with `-p client-port` only when set
/// (`A:common-src/ssh-security.c`).
pub const SSH_PORT: u16 = 22;

/// Where the build puts amandad, which an ssh-auth key's `command=` must name:
/// Debian's amanda-client package ships `/usr/lib/amanda/amandad`; upstream's
/// `amlibexecdir` is `${libexecdir}/amanda` (`A:config/amanda/dirs.m4`), and
/// `libexecdir` under the default prefix is `/usr/local/libexec`.
pub fn amandad_path(build: Build) -> &'static str {
    match build {
        Build::Debian => "/usr/lib/amanda/amandad",
        Build::Upstream => "/usr/local/libexec/amanda/amandad",
    }
}

/// Debian's `backup` user (base-passwd) logs in with `/usr/sbin/nologin`; sshd
/// runs a forced command through the login shell, so ssh auth needs a real one
/// (lab-verified: with nologin amcheck reports "error sending REQ: write error
/// to: Broken pipe").
pub const DEBIAN_BACKUP_SHELL: &str = "/usr/sbin/nologin";

/// Debian's `/etc/amanda-security.conf`: the setuid `ambind` refuses privileged binds
/// outside these ("udp port out of range (840 <= N <= 860)", `A:common-src/security-file.c`).
pub const DEBIAN_AMBIND_UDP: PortRange = PortRange::new(840, 860);
pub const DEBIAN_AMBIND_TCP: PortRange = PortRange::new(512, 1024);

/// Ports in 512-1023 that Debian's /etc/services (netbase 6.4) lists under a name
/// without "amanda"; Amanda's bind_portrange skips them (docs/amanda-protocol.md §2,
/// lab: 853 domain-s skipped): every port 512-1023 that netbase 6.4 names.
pub const SERVICES_SKIPPED: &[u16] = &[
    512, 513, 514, 515, 517, 518, 520, 538, 540, 543, 544, 546, 547, 548, 554, 563, 587, 607, 623,
    628, 631, 636, 646, 655, 706, 749, 750, 751, 752, 754, 775, 777, 779, 783, 853, 871, 873, 989,
    990, 992, 993, 995,
];

/// Compiled-in defaults. Debian builds with `--with-tcpportrange=50000,50100
/// --with-udpportrange=840,860` (amadmin version CONFIGURE_ARGS); upstream with no
/// flags falls back to 512,1023 / 512,1023 / 1024,65535 (`A:common-src/conffile.c`).
/// Both default to bsdtcp in amwall because Debian registers only `-auth=bsdtcp` in
/// inetd/xinetd (amanda-common.postinst, /etc/xinetd.d/amanda).
pub fn defaults(build: Build) -> AmandaSettings {
    let (udp, tcp, unres) = match build {
        Build::Debian => (
            PortRange::new(840, 860),
            PortRange::new(512, 1023),
            PortRange::new(50000, 50100),
        ),
        Build::Upstream => (
            PortRange::new(512, 1023),
            PortRange::new(512, 1023),
            PortRange::new(1024, 65535),
        ),
    };
    AmandaSettings {
        auth: Auth::Bsdtcp,
        reserved_udp_port: udp,
        reserved_tcp_port: tcp,
        unreserved_tcp_port: unres,
        client_port: None,
        index: true,
        conntrack_helper: false,
        legacy_recover: false,
        // amanda.conf(5): inparallel defaults to 10.
        inparallel: 10,
    }
}

/// Whether Amanda itself connects over IPv6. Debian's 3.5.1 packages are
/// configured `--without-ipv6` (`amadmin x version` lists the configure
/// flags; docs/design.md, verified), and their xinetd entry says
/// `flags = IPv4`. Upstream's configure enables IPv6 whenever the build
/// host can open an AF_INET6 socket (zmanda/amanda `config/amanda/ipv6.m4`:
/// `--with-ipv6` is "default if IPv6 is found", defining WORKING_IPV6), and
/// such a build uses the same port ranges on IPv6. Which family one
/// connection takes then depends on what the peer's name resolves to and in
/// which order, so a dual-stack site must open both.
pub fn speaks_ipv6(build: Build) -> bool {
    match build {
        Build::Debian => false,
        Build::Upstream => true,
    }
}

/// Service names amwall resolves without a services file (netbase 6.4 /etc/services).
/// Debian has `amanda 10080/tcp` but no `amanda 10080/udp` (removed in netbase 5.8).
pub fn service_port(name: &str) -> Option<u16> {
    match name {
        "amanda" => Some(AMANDA_PORT),
        "kamanda" => Some(10081),
        "amandaidx" => Some(AMANDAIDX_PORT),
        "amidxtape" => Some(AMIDXTAPE_PORT),
        "ssh" => Some(SSH_PORT),
        _ => None,
    }
}

/// How many ports of `range` Amanda can actually bind: bind_portrange skips ports that
/// /etc/services names for another service (docs/amanda-protocol.md §1 bsdtcp, §2 Debian).
pub fn usable_ports(range: PortRange) -> u32 {
    let skipped = SERVICES_SKIPPED
        .iter()
        .filter(|p| range.contains(**p))
        .count() as u32;
    range.count() - skipped
}

/// Linux NAT keeps a source port in its class when it must remap it: below 512 stays in
/// 1-511, 512-1023 goes to 600-1023, the rest to 1024-65535 (`nf_nat_l4proto_unique_tuple`,
/// net/netfilter/nf_nat_proto.c). So masquerade keeps Amanda's reserved ports privileged.
pub fn nat_port_class(port: u16) -> PortRange {
    match port {
        0..=511 => PortRange::new(1, 511),
        512..=1023 => PortRange::new(600, 1023),
        _ => PortRange::new(1024, 65535),
    }
}

/// The kernel's Amanda helper only parses UDP replies from port 10080 (bsd, bsdudp);
/// it must be assigned explicitly since kernel 4.7 (nf_conntrack_amanda.c, docs/design.md).
pub const HELPER_NAME: &str = "amanda";

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/design.md "Debian 3.5.1": reserved-udp 840-860, reserved-tcp 512-1023, unreserved 50000-50100.
    #[test]
    fn debian_defaults() {
        let d = defaults(Build::Debian);
        assert_eq!(d.reserved_udp_port, PortRange::new(840, 860));
        assert_eq!(d.reserved_tcp_port, PortRange::new(512, 1023));
        assert_eq!(d.unreserved_tcp_port, PortRange::new(50000, 50100));
    }

    /// docs/amanda-protocol.md §2: in the lab 853 (domain-s) was skipped, so 840-860 gives 20 ports.
    #[test]
    fn domain_s_is_skipped_in_debian_udp_range() {
        assert_eq!(usable_ports(PortRange::new(840, 860)), 20);
    }

    /// nf_nat_l4proto_unique_tuple: a remapped privileged port stays privileged.
    #[test]
    fn nat_keeps_privileged_ports_privileged() {
        for p in [516u16, 700, 845, 1023] {
            assert!(nat_port_class(p).is_privileged(), "{p}");
        }
        assert!(!nat_port_class(50000).is_privileged());
    }
}
