//! ssh auth in the real-Amanda lab: what each host's OpenSSH needs so that
//! Amanda's own `ssh -l backup HOST amandad -auth=ssh` works through amwall's
//! rules, set up the way Amanda's documentation tells an admin to
//! (amanda-auth(7), "SSH communication and authentication"):
//!
//! - the server's `backup` user has a key of its own (the dumptype's
//!   `ssh-keys`); each amrecover host's root has one (amanda-client.conf's
//!   `ssh-keys`);
//! - each answering host's `authorized_keys` pins that key to the address the
//!   answerer sees the caller as (`from=`, which NAT changes) and to amandad
//!   with the services the conversation needs (`command=`);
//! - each calling host knows the answerer's host key under the name and port
//!   it dials. Behind a port forward that is the router's public name with the
//!   *forwarded-to* host's key: the caller never talks to the router's own sshd;
//! - Debian's `backup` user has `/usr/sbin/nologin` as its shell, through which
//!   sshd would run amandad; the lab gives it `/bin/sh` in each namespace's own
//!   `/etc/passwd` (an admin runs `usermod -s /bin/sh backup`).
//!
//! Everything here is text: `lab::amanda` writes it under `/etc/netns/NS/`,
//! which `ip netns exec` mounts over `/etc`, so the machine's own `/etc/ssh`,
//! `/etc/passwd` and `~backup` are never touched.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::amanda::facts::SSH_PORT;
use crate::flows::Operation;

/// Who calls: the server's `backup` user (amcheck, planner, dumper) or an
/// amrecover host's root. The two use different keys, as amanda-auth(7) sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Caller {
    Amdump,
    Amrecover,
}

impl Caller {
    pub fn of(op: Operation) -> Option<Caller> {
        match op {
            Operation::Check | Operation::Estimate | Operation::Backup => Some(Caller::Amdump),
            Operation::Recover => Some(Caller::Amrecover),
            Operation::LegacyRecover => None,
        }
    }

    /// The services the key may start: amandad's arguments after `-auth=ssh`.
    pub fn services(self) -> &'static str {
        match self {
            Caller::Amdump => "amdump",
            Caller::Amrecover => "amindexd amidxtaped",
        }
    }

    /// The key file's name in the caller's directory.
    pub fn key_name(self) -> &'static str {
        match self {
            Caller::Amdump => "id_amdump",
            Caller::Amrecover => "id_amrecover",
        }
    }
}

/// One ssh conversation of the plan, as both ends see it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Login {
    pub caller: Caller,
    pub initiator: usize,
    pub responder: usize,
    /// The name and address the initiator dials (the router's, behind a port forward).
    pub target_name: String,
    pub target: Ipv4Addr,
    pub port: u16,
    /// The source address the responder's sshd sees (the router's, after masquerade).
    pub seen_as: Ipv4Addr,
}

/// `authorized_keys` of `responder`: one line per caller key that logs in,
/// pinned to where it comes from and to amandad. `key(initiator, caller)` is
/// that key's public line.
pub fn authorized_keys(
    logins: &[Login],
    responder: usize,
    amandad: &str,
    key: impl Fn(usize, Caller) -> String,
) -> String {
    let lines: BTreeSet<String> = logins
        .iter()
        .filter(|l| l.responder == responder)
        .map(|l| {
            format!(
                "from=\"{}\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,command=\"{amandad} -auth=ssh {}\" {}",
                l.seen_as,
                l.caller.services(),
                key(l.initiator, l.caller).trim()
            )
        })
        .collect();
    lines.into_iter().map(|l| l + "\n").collect()
}

/// `ssh_known_hosts` of `initiator`: each answerer's host key under the name
/// and address dialled (`[name]:port` off port 22, as ssh looks them up).
pub fn known_hosts(
    logins: &[Login],
    initiator: usize,
    host_key: impl Fn(usize) -> String,
) -> String {
    let lines: BTreeSet<String> = logins
        .iter()
        .filter(|l| l.initiator == initiator)
        .map(|l| {
            let names = if l.port == SSH_PORT {
                format!("{},{}", l.target_name, l.target)
            } else {
                format!("[{}]:{p},[{}]:{p}", l.target_name, l.target, p = l.port)
            };
            // The public key line is "TYPE BASE64 COMMENT"; known_hosts wants TYPE BASE64.
            let line = host_key(l.responder);
            let key: Vec<&str> = line.split_whitespace().take(2).collect();
            format!("{names} {}", key.join(" "))
        })
        .collect();
    lines.into_iter().map(|l| l + "\n").collect()
}

/// The ports `host`'s sshd must listen on for the plan's logins (a port
/// forward keeps the port, so what is dialled is what arrives).
pub fn listen_ports(logins: &[Login], host: usize) -> Vec<u16> {
    let ports: BTreeSet<u16> = logins
        .iter()
        .filter(|l| l.responder == host)
        .map(|l| l.port)
        .collect();
    ports.into_iter().collect()
}

/// sshd for amandad only: keys from `/etc/ssh/authorized_keys/%u` (root-owned,
/// so StrictModes stays on), no passwords, no PAM (the lab has no PAM stack of
/// its own), only the Amanda user.
pub fn sshd_config(ports: &[u16], user: &str) -> String {
    let mut c = String::new();
    for p in ports {
        writeln!(c, "Port {p}").unwrap();
    }
    c.push_str(
        "ListenAddress 0.0.0.0\n\
         HostKey /etc/ssh/ssh_host_ed25519_key\n\
         PidFile none\n\
         AuthorizedKeysFile /etc/ssh/authorized_keys/%u\n\
         StrictModes yes\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         PermitRootLogin no\n\
         LogLevel VERBOSE\n",
    );
    writeln!(c, "AllowUsers {user}").unwrap();
    c
}

/// ssh's client side: host keys only from the lab's `ssh_known_hosts`, never
/// learnt (BatchMode, which Amanda passes, would refuse an unknown one anyway),
/// and only the key Amanda names with `-i`.
pub fn ssh_config() -> &'static str {
    "Host *\n    GlobalKnownHostsFile /etc/ssh/ssh_known_hosts\n    UserKnownHostsFile /dev/null\n    StrictHostKeyChecking yes\n    IdentitiesOnly yes\n    ConnectTimeout 10\n"
}

/// `passwd` text with `user`'s login shell set to `shell` (the other lines as they are).
pub fn with_shell(passwd: &str, user: &str, shell: &str) -> String {
    passwd
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(':').collect();
            if f.len() == 7 && f[0] == user {
                f[6] = shell;
            }
            f.join(":") + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(caller: Caller, i: usize, r: usize, port: u16) -> Login {
        Login {
            caller,
            initiator: i,
            responder: r,
            target_name: format!("h{r}"),
            target: Ipv4Addr::new(192, 0, 2, r as u8 + 1),
            port,
            seen_as: Ipv4Addr::new(198, 51, 100, i as u8 + 1),
        }
    }

    #[test]
    fn authorized_keys_pin_source_and_services() {
        let ls = [
            login(Caller::Amdump, 0, 1, 22),
            login(Caller::Amrecover, 1, 0, 22),
            login(Caller::Amdump, 0, 1, 22),
        ];
        let text = authorized_keys(&ls, 1, "/usr/lib/amanda/amandad", |h, c| {
            format!("ssh-ed25519 KEY{h}{c:?} comment\n")
        });
        assert_eq!(
            text,
            "from=\"198.51.100.1\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,command=\"/usr/lib/amanda/amandad -auth=ssh amdump\" ssh-ed25519 KEY0Amdump comment\n"
        );
        let server = authorized_keys(&ls, 0, "/a", |h, c| format!("k{h}{c:?}"));
        assert!(server.contains("command=\"/a -auth=ssh amindexd amidxtaped\" k1Amrecover"));
    }

    #[test]
    fn known_hosts_name_what_is_dialled() {
        let mut fwd = login(Caller::Amrecover, 3, 0, 22);
        fwd.target_name = "fwhost-eth1".into();
        fwd.target = Ipv4Addr::new(198, 51, 100, 1);
        let ls = [fwd, login(Caller::Amdump, 3, 2, 2222)];
        let text = known_hosts(&ls, 3, |r| format!("ssh-ed25519 HOSTKEY{r} root@x\n"));
        assert_eq!(
            text,
            "[h2]:2222,[192.0.2.3]:2222 ssh-ed25519 HOSTKEY2\nfwhost-eth1,198.51.100.1 ssh-ed25519 HOSTKEY0\n"
        );
        assert_eq!(known_hosts(&ls, 0, |_| String::new()), "");
    }

    #[test]
    fn shell_changed_for_one_user_only() {
        let p = "root:x:0:0:root:/root:/bin/bash\nbackup:x:34:34:backup:/var/backups:/usr/sbin/nologin\n";
        assert_eq!(
            with_shell(p, "backup", "/bin/sh"),
            "root:x:0:0:root:/root:/bin/bash\nbackup:x:34:34:backup:/var/backups:/bin/sh\n"
        );
    }
}
