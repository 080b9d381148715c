//! Services started at boot and the ports they will listen on, each with provenance: the file
//! and line that enables it and the file and line that sets its port.
//!
//! Init systems: SysV (`/etc/inittab` default runlevel, `rcN.d` S/K links), upstart jobs,
//! systemd (default target, `*.wants/`/`*.requires/`, `Wants=`/`Requires=`, drop-ins, masks,
//! socket units), xinetd. Daemon configurations: sshd, squid, MySQL/MariaDB, Apache httpd,
//! vsftpd, named, rpcbind/portmap, xrootd, globus-gatekeeper, GridFTP.

pub mod daemons;
pub mod include;
pub mod sshd;
pub mod systemd;
pub mod sysv;
pub mod xinetd;

use rootfs::Tree;
use serde::Serialize;

use crate::system::System;
use crate::util::{self, read_text};
use crate::{Problem, Provenance};

/// What kind of address a port is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BindClass {
    /// All interfaces (`0.0.0.0`, `::`, `*`, unspecified).
    Any,
    /// Loopback only (`127.0.0.0/8`, `::1`, `localhost`).
    Loopback,
    /// A private or link-local address (RFC 1918, `fc00::/7`, `fe80::/10`, `169.254/16`).
    Private,
    /// Another address or a host name.
    Specific,
}

/// Classify a bind address.
pub fn bind_class(addr: Option<&str>) -> BindClass {
    let Some(a) = addr.map(|a| a.trim().trim_start_matches('[').trim_end_matches(']')) else {
        return BindClass::Any;
    };
    if a.is_empty()
        || a == "*"
        || a == "0.0.0.0"
        || a == "::"
        || a == "any"
        || a == "0:0:0:0:0:0:0:0"
    {
        return BindClass::Any;
    }
    if a == "localhost" || a == "::1" || a == "localhost6" || a == "ip6-localhost" {
        return BindClass::Loopback;
    }
    if let Ok(ip) = a.parse::<std::net::Ipv4Addr>() {
        if ip.is_loopback() {
            return BindClass::Loopback;
        }
        if ip.is_private() || ip.is_link_local() {
            return BindClass::Private;
        }
        if ip.is_unspecified() {
            return BindClass::Any;
        }
        return BindClass::Specific;
    }
    if let Ok(ip) = a.parse::<std::net::Ipv6Addr>() {
        if ip.is_loopback() {
            return BindClass::Loopback;
        }
        let s = ip.segments()[0];
        if (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80 {
            return BindClass::Private;
        }
        if let Some(v4) = ip.to_ipv4_mapped() {
            return bind_class(Some(&v4.to_string()));
        }
        return BindClass::Specific;
    }
    BindClass::Specific
}

/// A port a service listens on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Port {
    /// Port number.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Bind address as configured (absent = all addresses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Address class.
    pub bind: BindClass,
    /// The daemon's built-in default (no setting found).
    pub default: bool,
    /// Where the port is set (for defaults: the config file read, or the service).
    pub source: Provenance,
}

impl Port {
    /// A port with its address classified.
    pub fn new(
        port: u16,
        protocol: &str,
        address: Option<String>,
        default: bool,
        source: Provenance,
    ) -> Port {
        let bind = bind_class(address.as_deref());
        Port {
            port,
            protocol: protocol.to_string(),
            address,
            bind,
            default,
            source,
        }
    }
}

/// What a configuration parser found.
#[derive(Clone, Debug, Default)]
pub struct ConfigPorts {
    /// The ports.
    pub ports: Vec<Port>,
    /// Configuration files read, in order.
    pub files: Vec<String>,
    /// Remarks (conditional sections, defaults that depend on the version, ...).
    pub notes: Vec<String>,
    /// The daemon does not listen on the network at all (e.g. `skip-networking`).
    pub no_network: bool,
}

/// One service.
#[derive(Clone, Debug, Serialize)]
pub struct Service {
    /// Name (`sshd`, `httpd`, `sshd.socket`, `tftp` for xinetd services).
    pub name: String,
    /// `sysv`, `upstart`, `systemd`, `systemd-socket` or `xinetd`.
    pub kind: String,
    /// Started at boot (for xinetd services: enabled and xinetd itself enabled).
    pub enabled: bool,
    /// `enabled`, `disabled`, `masked`, or `enabled (xinetd disabled)`.
    pub state: String,
    /// What enables (or disables/masks) it.
    pub enabled_by: Vec<Provenance>,
    /// The daemon's executable in the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon: Option<String>,
    /// Configuration files read for its ports.
    pub config: Vec<String>,
    /// Ports it will listen on.
    pub ports: Vec<Port>,
    /// `known` (ports listed), `none` (does not listen), or `unknown` (no parser for this service).
    pub port_status: String,
    /// Remarks.
    pub notes: Vec<String>,
}

impl Service {
    /// A service with no ports yet.
    pub fn new(
        name: &str,
        kind: &str,
        enabled: bool,
        state: &str,
        enabled_by: Vec<Provenance>,
    ) -> Service {
        Service {
            name: name.to_string(),
            kind: kind.to_string(),
            enabled,
            state: state.to_string(),
            enabled_by,
            daemon: None,
            config: Vec::new(),
            ports: Vec::new(),
            port_status: "unknown".into(),
            notes: Vec::new(),
        }
    }

    /// Fill ports from a parser's result.
    pub fn set_ports(&mut self, c: ConfigPorts) {
        self.ports.extend(c.ports);
        self.config.extend(c.files);
        self.notes.extend(c.notes);
        self.port_status = if !self.ports.is_empty() {
            "known".into()
        } else if c.no_network {
            "none".into()
        } else {
            "unknown".into()
        };
    }
}

/// The services section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Services {
    /// Init system the enablement was read for.
    pub init: String,
    /// Default SysV runlevel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_runlevel: Option<u8>,
    /// Where the default runlevel is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_runlevel_source: Option<Provenance>,
    /// systemd default target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_target: Option<String>,
    /// Services, enabled first, then by name.
    pub list: Vec<Service>,
}

impl Services {
    /// Every port of every enabled service.
    pub fn listening(&self) -> impl Iterator<Item = (&Service, &Port)> {
        self.list
            .iter()
            .filter(|s| s.enabled)
            .flat_map(|s| s.ports.iter().map(move |p| (s, p)))
    }
}

/// Which configuration parser a service name maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    /// OpenSSH.
    Sshd,
    /// Squid.
    Squid,
    /// MySQL / MariaDB.
    Mysql,
    /// Apache httpd.
    Httpd,
    /// vsftpd.
    Vsftpd,
    /// BIND named.
    Named,
    /// rpcbind / portmap.
    Rpcbind,
    /// xrootd (with its instance name for templated units).
    Xrootd,
    /// globus-gatekeeper.
    Gatekeeper,
    /// GridFTP server.
    Gridftp,
}

/// Map a service name (without `.service`; templates as `name@instance`) to its daemon.
pub fn known_daemon(name: &str) -> Option<Daemon> {
    let base = name.split('@').next().unwrap_or(name);
    Some(match base {
        "sshd" | "ssh" | "openssh-server" | "openssh" => Daemon::Sshd,
        "squid" | "frontier-squid" | "squid3" => Daemon::Squid,
        "mysqld" | "mysql" | "mariadb" | "mariadb-server" => Daemon::Mysql,
        "httpd" | "apache2" | "apache" | "httpd2" => Daemon::Httpd,
        "vsftpd" => Daemon::Vsftpd,
        "named" | "bind9" | "named-chroot" | "bind" => Daemon::Named,
        "portmap" | "rpcbind" => Daemon::Rpcbind,
        "xrootd" => Daemon::Xrootd,
        "globus-gatekeeper" => Daemon::Gatekeeper,
        "globus-gridftp-server" | "gridftp" | "gsiftp" | "globus-gridftp" => Daemon::Gridftp,
        _ => return None,
    })
}

/// Executables to look for when a service's daemon is not known from its unit.
fn daemon_candidates(d: Daemon) -> &'static [&'static str] {
    match d {
        Daemon::Sshd => &["/usr/sbin/sshd"],
        Daemon::Squid => &[
            "/usr/sbin/squid",
            "/usr/sbin/squid3",
            "/usr/local/squid/sbin/squid",
        ],
        Daemon::Mysql => &[
            "/usr/libexec/mysqld",
            "/usr/sbin/mysqld",
            "/usr/sbin/mariadbd",
            "/usr/libexec/mariadbd",
        ],
        Daemon::Httpd => &["/usr/sbin/httpd", "/usr/sbin/apache2"],
        Daemon::Vsftpd => &["/usr/sbin/vsftpd"],
        Daemon::Named => &["/usr/sbin/named"],
        Daemon::Rpcbind => &[
            "/sbin/rpcbind",
            "/usr/sbin/rpcbind",
            "/sbin/portmap",
            "/usr/sbin/portmap",
        ],
        Daemon::Xrootd => &["/usr/bin/xrootd"],
        Daemon::Gatekeeper => &[
            "/usr/sbin/globus-gatekeeper",
            "/opt/globus/sbin/globus-gatekeeper",
        ],
        Daemon::Gridftp => &[
            "/usr/sbin/globus-gridftp-server",
            "/opt/globus/sbin/globus-gridftp-server",
        ],
    }
}

/// Services known to open no network port at all (they talk over Unix sockets or not at all),
/// so an enabled one is reported as "no network port" rather than "port unknown". Only services
/// whose every mode of running listens on nothing belong here: not `network` (dhclient binds
/// UDP 68), `syslog`/`rsyslog` (UDP 514 with `-r` or imudp), `auditd` (`tcp_listen_port`) or
/// `netfs` (NFS mounts bring up lockd's RPC ports).
pub const PORTLESS: &[(&str, &str)] = &[
    (
        "wafer-context",
        "wafer's first-boot contextualization hook: reads the CIDATA disk",
    ),
    ("crond", "cron daemon"),
    ("anacron", "periodic command scheduler"),
    ("atd", "at job daemon"),
    ("messagebus", "D-Bus system bus (Unix socket)"),
    ("dbus", "D-Bus system bus (Unix socket)"),
    ("haldaemon", "hardware abstraction layer (D-Bus)"),
    ("irqbalance", "interrupt balancing"),
    ("kudzu", "boot-time hardware probe"),
    ("readahead", "boot-time file preloading"),
    ("readahead_early", "boot-time file preloading"),
    ("readahead_later", "boot-time file preloading"),
    ("cpuspeed", "CPU frequency scaling"),
    ("lvm2-monitor", "LVM event monitoring (dmeventd)"),
    ("mdmonitor", "software RAID monitoring"),
    ("microcode_ctl", "CPU microcode loader"),
    ("sysstat", "resets sysstat counters at boot"),
    ("acpid", "ACPI event daemon (Unix socket)"),
    ("smartd", "disk SMART monitoring"),
    ("iptables", "loads IPv4 firewall rules"),
    ("ip6tables", "loads IPv6 firewall rules"),
    ("rawdevices", "binds raw devices at boot"),
    ("udev-post", "saves udev rules at boot"),
    ("psacct", "process accounting"),
    ("gpm", "console mouse (Unix socket)"),
    ("getty", "login prompt on a virtual terminal (agetty)"),
    ("serial-getty", "login prompt on a serial line (agetty)"),
    ("console-getty", "login prompt on the console (agetty)"),
    ("cron", "cron daemon"),
    (
        "systemd-timesyncd",
        "SNTP client: sends queries, listens on no port",
    ),
    ("systemd-journald", "journal (Unix sockets and netlink)"),
    ("systemd-logind", "login manager (D-Bus)"),
    ("systemd-udevd", "device manager (netlink)"),
];

/// Why `name` (without `.service`) is known to open no network port, if it is.
pub fn portless(name: &str) -> Option<&'static str> {
    // A template instance (`getty@tty1`) is its template's service.
    let base = name.split('@').next().unwrap_or(name);
    PORTLESS
        .iter()
        .find(|(n, _)| *n == name || *n == base)
        .map(|(_, why)| *why)
}

/// The daemon executable for `name`, if it is a known service and its binary is in the image.
pub fn find_daemon(tree: &Tree, name: &str) -> Option<String> {
    let d = known_daemon(name)?;
    daemon_candidates(d)
        .iter()
        .find(|p| util::exists(tree, p))
        .map(|p| p.to_string())
}

/// Ports of a known daemon, read from its configuration in the image.
pub fn daemon_ports(tree: &Tree, name: &str, problems: &mut Vec<Problem>) -> Option<ConfigPorts> {
    let d = known_daemon(name)?;
    let instance = name.split_once('@').map(|(_, i)| i);
    Some(match d {
        Daemon::Sshd => sshd::ports(tree, problems),
        Daemon::Squid => daemons::squid(tree, problems),
        Daemon::Mysql => daemons::mysql(tree, problems),
        Daemon::Httpd => daemons::httpd(tree, problems),
        Daemon::Vsftpd => daemons::vsftpd(tree, problems),
        Daemon::Named => daemons::named(tree, problems),
        Daemon::Rpcbind => daemons::rpcbind(tree),
        Daemon::Xrootd => daemons::xrootd(tree, instance, problems),
        Daemon::Gatekeeper => daemons::gatekeeper(tree, problems),
        Daemon::Gridftp => daemons::gridftp(tree, problems),
    })
}

/// One /etc/services entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: String,
    /// Where.
    pub at: Provenance,
}

/// Look `name` (or an alias) up in the image's /etc/services for `protocol`.
pub fn etc_services(tree: &Tree, name: &str, protocol: &str) -> Option<ServicePort> {
    let text = read_text(tree, "/etc/services")?;
    for (i, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("");
        let mut it = l.split_whitespace();
        let (Some(n), Some(pp)) = (it.next(), it.next()) else {
            continue;
        };
        let Some((p, proto)) = pp.split_once('/') else {
            continue;
        };
        if proto != protocol {
            continue;
        }
        if n == name || it.any(|a| a == name) {
            if let Ok(port) = p.parse() {
                return Some(ServicePort {
                    port,
                    protocol: proto.to_string(),
                    at: Provenance::line("/etc/services", i + 1, line),
                });
            }
        }
    }
    None
}

/// Gather the services section.
pub fn inspect(tree: &Tree, system: &System, problems: &mut Vec<Problem>) -> Services {
    let mut s = Services {
        init: system.init.clone(),
        ..Default::default()
    };
    let mut list = Vec::new();
    let (runlevel, rl_src) = sysv::default_runlevel(tree, system);
    match system.init.as_str() {
        "systemd" => {
            let sd = systemd::enabled(tree, problems);
            s.default_target = sd.default_target.clone();
            let native: std::collections::HashSet<String> = sd.known_units.clone();
            list.extend(sd.services);
            // systemd-sysv-generator: SysV scripts without a native unit, per the target's runlevel.
            let rl = if s.default_target.as_deref() == Some("graphical.target") {
                5
            } else {
                3
            };
            for svc in sysv::services(tree, rl, problems) {
                if !native.contains(&format!("{}.service", svc.name)) {
                    list.push(svc);
                }
            }
        }
        _ => {
            s.default_runlevel = runlevel;
            s.default_runlevel_source = rl_src;
            let rl = runlevel.unwrap_or(3);
            list.extend(sysv::services(tree, rl, problems));
            if system.init == "upstart" {
                list.extend(sysv::upstart_jobs(tree));
            }
        }
    }
    for svc in list.iter_mut() {
        let base = svc.name.trim_end_matches(".service").to_string();
        if svc.kind == "systemd-socket" || svc.kind == "xinetd" {
            continue;
        }
        if svc.daemon.is_none() {
            svc.daemon = find_daemon(tree, &base);
        }
        if svc.ports.is_empty() {
            if let Some(c) = daemon_ports(tree, &base, problems) {
                svc.set_ports(c);
            }
        }
        if svc.ports.is_empty() && svc.port_status == "unknown" {
            if let Some(why) = portless(&base) {
                svc.port_status = "none".into();
                svc.notes
                    .push(format!("known service that opens no network port ({why})"));
            }
        }
    }
    let xinetd_on = list
        .iter()
        .find(|x| x.name.trim_end_matches(".service") == "xinetd")
        .map(|x| x.enabled);
    list.extend(xinetd::services(tree, xinetd_on, problems));
    list.sort_by(|a, b| (!a.enabled, &a.name, &a.kind).cmp(&(!b.enabled, &b.name, &b.kind)));
    s.list = list;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_classes() {
        assert_eq!(bind_class(None), BindClass::Any);
        assert_eq!(bind_class(Some("0.0.0.0")), BindClass::Any);
        assert_eq!(bind_class(Some("[::]")), BindClass::Any);
        assert_eq!(bind_class(Some("127.0.0.1")), BindClass::Loopback);
        assert_eq!(bind_class(Some("::1")), BindClass::Loopback);
        assert_eq!(bind_class(Some("10.1.2.3")), BindClass::Private);
        assert_eq!(bind_class(Some("192.168.0.1")), BindClass::Private);
        assert_eq!(bind_class(Some("fd00::1")), BindClass::Private);
        assert_eq!(bind_class(Some("131.225.1.1")), BindClass::Specific);
        assert_eq!(bind_class(Some("gw.example.org")), BindClass::Specific);
    }
}
