//! systemd (systemd.unit(5), systemd.socket(5)): units reachable from the default target through
//! `*.wants/`/`*.requires/` symlinks and `Wants=`/`Requires=`/`BindsTo=` lines, with drop-ins
//! (`NAME.d/*.conf`), masks (a unit file linked to /dev/null) and socket units' `ListenStream=`
//! and `ListenDatagram=`. Unit search path in priority order: /etc, /run, /usr/local/lib,
//! /usr/lib, /lib.

use std::collections::{BTreeMap, HashSet, VecDeque};

use rootfs::{NodeKind, Tree};

use super::{Port, Service};
use crate::util::{self, read_text};
use crate::{Problem, Provenance};

/// Unit directories in priority order.
pub const UNIT_DIRS: [&str; 5] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Most units followed from the default target.
pub const MAX_UNITS: usize = 20_000;

/// What [`enabled`] found.
#[derive(Debug, Default)]
pub struct Enabled {
    /// Default target name.
    pub default_target: Option<String>,
    /// Services and sockets.
    pub services: Vec<Service>,
    /// Every unit file name present in the unit directories.
    pub known_units: HashSet<String>,
}

/// One `Key=Value` of a unit (fragment or drop-in).
#[derive(Clone, Debug)]
struct Entry {
    section: String,
    key: String,
    value: String,
    at: Provenance,
}

fn parse_unit(text: &str, path: &str, out: &mut Vec<Entry>) {
    let mut section = String::new();
    let mut pending = String::new();
    let mut start = 0usize;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
            let t = raw.trim();
            if t.starts_with('#') || t.starts_with(';') {
                continue;
            }
        }
        let t = raw.trim_end();
        if let Some(c) = t.strip_suffix('\\') {
            pending.push_str(c);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let line = std::mem::take(&mut pending);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.push(Entry {
                section: section.clone(),
                key: k.trim().to_string(),
                value: v.trim().to_string(),
                at: Provenance::line(path, start, line),
            });
        }
    }
}

/// The template name of an instance (`getty@tty1.service` -> `getty@.service`).
fn template_of(name: &str) -> Option<String> {
    let (pre, rest) = name.split_once('@')?;
    let (_, suffix) = rest.rsplit_once('.')?;
    Some(format!("{pre}@.{suffix}"))
}

struct Unit {
    /// Name after aliases.
    name: String,
    /// Fragment path, if any.
    fragment: Option<String>,
    /// Masked, and by what.
    masked: Option<Provenance>,
    entries: Vec<Entry>,
}

struct Ctx<'a> {
    tree: &'a Tree,
    dirs: Vec<&'static str>,
}

impl Ctx<'_> {
    /// Find the unit's fragment: (path, masked-by).
    fn fragment(&self, name: &str) -> (Option<String>, Option<Provenance>, String) {
        let mut candidates = vec![name.to_string()];
        if let Some(t) = template_of(name) {
            candidates.push(t);
        }
        for cand in &candidates {
            for d in &self.dirs {
                let p = format!("{d}/{cand}");
                let Ok(id) = self.tree.resolve(p.as_bytes(), false) else {
                    continue;
                };
                match &self.tree.node(id).kind {
                    NodeKind::Symlink(t) => {
                        let target = util::show(t);
                        if target == "/dev/null" {
                            return (
                                None,
                                Some(Provenance::file(&p, Some("-> /dev/null (masked)".into()))),
                                name.to_string(),
                            );
                        }
                        match self.tree.resolve(p.as_bytes(), true) {
                            Ok(rid) => match &self.tree.node(rid).kind {
                                NodeKind::CharDevice(_) => {
                                    return (
                                        None,
                                        Some(Provenance::file(
                                            &p,
                                            Some(format!("-> {target} (masked)")),
                                        )),
                                        name.to_string(),
                                    );
                                }
                                NodeKind::Regular(_) => {
                                    // An alias: the real unit's name is the link target's base name.
                                    let base =
                                        target.rsplit('/').next().unwrap_or(&target).to_string();
                                    let real = if base.contains('.') && cand == name {
                                        base
                                    } else {
                                        name.to_string()
                                    };
                                    let real_path = if target.starts_with('/') {
                                        target.clone()
                                    } else {
                                        util::join(d, &target)
                                    };
                                    return (Some(real_path), None, real);
                                }
                                _ => continue,
                            },
                            Err(_) => continue,
                        }
                    }
                    NodeKind::Regular(c) => {
                        if c.size() == 0 && d.starts_with("/etc") {
                            return (
                                None,
                                Some(Provenance::file(
                                    &p,
                                    Some("empty unit file (masked)".into()),
                                )),
                                name.to_string(),
                            );
                        }
                        return (Some(p), None, name.to_string());
                    }
                    NodeKind::CharDevice(_) => {
                        return (
                            None,
                            Some(Provenance::file(&p, Some("/dev/null (masked)".into()))),
                            name.to_string(),
                        );
                    }
                    _ => continue,
                }
            }
        }
        (None, None, name.to_string())
    }

    fn load(&self, name: &str) -> Unit {
        let (fragment, masked, real) = self.fragment(name);
        let mut entries = Vec::new();
        if let Some(f) = &fragment {
            if let Some(t) = read_text(self.tree, f) {
                parse_unit(&t, f, &mut entries);
            }
        }
        // Drop-ins: NAME.d/*.conf (and the template's), a file name in a higher-priority
        // directory hiding the same name below; applied in file-name order.
        let mut dropins: BTreeMap<String, String> = BTreeMap::new();
        let mut names = vec![real.clone()];
        if let Some(t) = template_of(&real) {
            names.insert(0, t);
        }
        for n in &names {
            for d in &self.dirs {
                let dir = format!("{d}/{n}.d");
                for f in util::list_dir(self.tree, &dir) {
                    if f.ends_with(".conf") {
                        dropins
                            .entry(format!("{n}/{f}"))
                            .or_insert_with(|| format!("{dir}/{f}"));
                    }
                }
            }
        }
        let mut ordered: Vec<(String, String)> = dropins.into_iter().collect();
        ordered.sort_by(|a, b| a.0.rsplit('/').next().cmp(&b.0.rsplit('/').next()));
        for (_, p) in ordered {
            if let Some(t) = read_text(self.tree, &p) {
                parse_unit(&t, &p, &mut entries);
            }
        }
        Unit {
            name: real,
            fragment,
            masked,
            entries,
        }
    }

    /// `.wants/` and `.requires/` entries of `name` (and its template), with the link as provenance.
    fn link_deps(&self, name: &str) -> Vec<(String, Provenance)> {
        let mut out = Vec::new();
        let mut names = vec![name.to_string()];
        if let Some(t) = template_of(name) {
            names.push(t);
        }
        for n in names {
            for d in &self.dirs {
                for kind in ["wants", "requires"] {
                    let dir = format!("{d}/{n}.{kind}");
                    for f in util::list_dir(self.tree, &dir) {
                        let p = format!("{dir}/{f}");
                        let t = util::readlink(self.tree, &p).map(|t| format!("-> {t}"));
                        out.push((f, Provenance::file(p, t)));
                    }
                }
            }
        }
        out
    }
}

/// Values of `key` in `section`, honouring empty assignments that reset the list.
fn values<'a>(entries: &'a [Entry], section: &str, key: &str) -> Vec<&'a Entry> {
    let mut out = Vec::new();
    for e in entries {
        if e.section == section && e.key == key {
            if e.value.is_empty() {
                out.clear();
            } else {
                out.push(e);
            }
        }
    }
    out
}

/// Parse a socket unit's Listen value into a port (None for unix sockets and the like).
fn listen_port(value: &str, protocol: &str, at: &Provenance) -> Option<Port> {
    if value.starts_with('/') || value.starts_with('@') || value.starts_with("vsock:") {
        return None;
    }
    if let Ok(p) = value.parse::<u16>() {
        return Some(Port::new(p, protocol, None, false, at.clone()));
    }
    let (h, p) = super::sshd::split_host_port(value);
    Some(Port::new(p?, protocol, Some(h), false, at.clone()))
}

/// Why a service unit cannot open a network port, from its own settings (systemd.service(5),
/// systemd.exec(5), systemd.resource-control(5)), if it says so: `Type=oneshot` (runs to
/// completion at boot), `PrivateNetwork=yes` (only a private loopback), `RestrictAddressFamilies=`
/// without AF_INET/AF_INET6, or `IPAddressDeny=any` without any `IPAddressAllow=`.
fn no_network(entries: &[Entry]) -> Option<(String, Provenance)> {
    let last = |key: &str| values(entries, "Service", key).into_iter().last();
    let yes = |v: &str| matches!(v.trim(), "yes" | "true" | "1" | "on");
    if let Some(e) = last("Type").filter(|e| e.value.trim() == "oneshot") {
        return Some((
            "Type=oneshot: runs to completion at boot and exits, listening on nothing".into(),
            e.at.clone(),
        ));
    }
    if let Some(e) = last("PrivateNetwork").filter(|e| yes(&e.value)) {
        return Some((
            "PrivateNetwork=yes: only a private loopback device, unreachable from outside".into(),
            e.at.clone(),
        ));
    }
    // RestrictAddressFamilies: allow-lists accumulate, `~` lists deny, empty resets.
    let mut allow: Option<(Vec<String>, Provenance)> = None;
    for e in values(entries, "Service", "RestrictAddressFamilies") {
        let v = e.value.trim();
        if let Some(_deny) = v.strip_prefix('~') {
            allow = None;
        } else if v == "none" {
            allow = Some((Vec::new(), e.at.clone()));
        } else {
            let mut list = allow.take().map(|(l, _)| l).unwrap_or_default();
            list.extend(v.split_whitespace().map(str::to_string));
            allow = Some((list, e.at.clone()));
        }
    }
    if let Some((list, at)) = allow {
        if !list.iter().any(|f| f == "AF_INET" || f == "AF_INET6") {
            return Some((
                format!(
                    "RestrictAddressFamilies={}: no IPv4 or IPv6 sockets",
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(" ")
                    }
                ),
                at,
            ));
        }
    }
    let deny_any = values(entries, "Service", "IPAddressDeny")
        .into_iter()
        .rev()
        .find(|e| e.value.split_whitespace().any(|w| w == "any"));
    if let Some(e) = deny_any {
        if values(entries, "Service", "IPAddressAllow").is_empty() {
            return Some((
                "IPAddressDeny=any: no IP traffic in or out".into(),
                e.at.clone(),
            ));
        }
    }
    None
}

fn exec_daemon(tree: &Tree, entries: &[Entry]) -> Option<String> {
    let e = values(entries, "Service", "ExecStart").into_iter().next()?;
    let first = e.value.split_whitespace().next()?;
    let prog = first.trim_start_matches(['@', '-', ':', '+', '!']);
    if prog.starts_with('/') {
        return Some(prog.to_string());
    }
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| format!("{d}/{prog}"))
        .find(|p| util::exists(tree, p))
}

/// Units enabled at boot: everything reachable from the default target.
pub fn enabled(tree: &Tree, problems: &mut Vec<Problem>) -> Enabled {
    // Deduplicate unit directories that are the same directory (/lib -> usr/lib).
    let mut seen_dirs = HashSet::new();
    let dirs: Vec<&'static str> = UNIT_DIRS
        .iter()
        .copied()
        .filter(|d| util::resolve(tree, d).is_some_and(|id| seen_dirs.insert(id)))
        .collect();
    let ctx = Ctx { tree, dirs };
    let mut out = Enabled::default();
    for d in &ctx.dirs {
        out.known_units.extend(util::list_dir(tree, d));
    }
    let def = ctx.load("default.target");
    let default_name = if def.fragment.is_some() {
        def.name.clone()
    } else {
        "default.target".into()
    };
    out.default_target = Some(default_name.clone());
    let mut queue: VecDeque<(String, Provenance)> = VecDeque::new();
    let mut visited: HashSet<String> = HashSet::new();
    let mut by_name: BTreeMap<String, Service> = BTreeMap::new();
    queue.push_back((
        default_name.clone(),
        Provenance::file(
            def.fragment.clone().unwrap_or_default(),
            Some("default target".into()),
        ),
    ));
    while let Some((name, via)) = queue.pop_front() {
        if let Some(s) = by_name.get_mut(&name) {
            if s.enabled_by.len() < 16 && !s.enabled_by.contains(&via) {
                s.enabled_by.push(via);
            }
            continue;
        }
        if !visited.insert(name.clone()) {
            continue;
        }
        if visited.len() > MAX_UNITS {
            problems.push(Problem {
                path: "/etc/systemd/system".into(),
                message: format!("more than {MAX_UNITS} units reachable; stopped"),
            });
            break;
        }
        let unit = ctx.load(&name);
        let is_service = name.ends_with(".service");
        let is_socket = name.ends_with(".socket");
        if let Some(m) = unit.masked {
            if is_service || is_socket {
                let mut s = Service::new(
                    &name,
                    if is_socket {
                        "systemd-socket"
                    } else {
                        "systemd"
                    },
                    false,
                    "masked",
                    vec![via, m],
                );
                s.port_status = "none".into();
                by_name.insert(name.clone(), s);
            }
            continue;
        }
        if unit.fragment.is_none() {
            if is_service || is_socket {
                let mut s = Service::new(&name, "systemd", false, "not-found", vec![via]);
                s.notes.push("wanted but no unit file found".into());
                by_name.insert(name.clone(), s);
            }
            continue;
        }
        for key in ["Wants", "Requires", "BindsTo", "Requisite"] {
            for e in values(&unit.entries, "Unit", key) {
                for dep in e.value.split_whitespace() {
                    queue.push_back((dep.to_string(), e.at.clone()));
                }
            }
        }
        for (dep, at) in ctx.link_deps(&name) {
            queue.push_back((dep, at));
        }
        if is_service {
            let mut s = Service::new(&name, "systemd", true, "enabled", vec![via]);
            s.daemon = exec_daemon(tree, &unit.entries);
            if let Some(f) = &unit.fragment {
                s.notes.push(format!("unit file {f}"));
            }
            if let Some((why, at)) = no_network(&unit.entries) {
                s.port_status = "none".into();
                let line = at.line.map(|l| format!(":{l}")).unwrap_or_default();
                s.notes
                    .push(format!("opens no network port: {why} ({}{line})", at.file));
            }
            by_name.insert(name.clone(), s);
        } else if is_socket {
            let mut s = Service::new(&name, "systemd-socket", true, "enabled", vec![via]);
            for (key, proto) in [
                ("ListenStream", "tcp"),
                ("ListenDatagram", "udp"),
                ("ListenSequentialPacket", "seqpacket"),
            ] {
                for e in values(&unit.entries, "Socket", key) {
                    if let Some(p) = listen_port(&e.value, proto, &e.at) {
                        s.ports.push(p);
                    }
                }
            }
            s.port_status = if s.ports.is_empty() {
                "none".into()
            } else {
                "known".into()
            };
            let accept = values(&unit.entries, "Socket", "Accept")
                .last()
                .is_some_and(|e| matches!(e.value.as_str(), "yes" | "true" | "1"));
            let base = name.trim_end_matches(".socket");
            let svc = values(&unit.entries, "Socket", "Service")
                .last()
                .map(|e| e.value.clone())
                .unwrap_or_else(|| {
                    if accept {
                        format!("{base}@.service")
                    } else {
                        format!("{base}.service")
                    }
                });
            let svc_unit = ctx.load(&svc);
            s.daemon = exec_daemon(tree, &svc_unit.entries);
            s.notes.push(format!("activates {svc}"));
            by_name.insert(name.clone(), s);
        }
    }
    // Known daemons whose unit exists but is not reachable: listed as disabled.
    for u in out.known_units.iter() {
        if !(u.ends_with(".service") || u.ends_with(".socket")) || by_name.contains_key(u) {
            continue;
        }
        let base = u
            .trim_end_matches(".service")
            .trim_end_matches(".socket")
            .trim_end_matches('@');
        if super::known_daemon(base).is_none() && base != "xinetd" {
            continue;
        }
        let unit = ctx.load(u);
        let state = if unit.masked.is_some() {
            "masked"
        } else {
            "disabled"
        };
        let mut s = Service::new(
            u,
            if u.ends_with(".socket") {
                "systemd-socket"
            } else {
                "systemd"
            },
            false,
            state,
            unit.masked.into_iter().collect(),
        );
        s.daemon = exec_daemon(tree, &unit.entries);
        by_name.insert(u.clone(), s);
    }
    out.services = by_name.into_values().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_listen_values() {
        assert_eq!(
            template_of("getty@tty1.service").as_deref(),
            Some("getty@.service")
        );
        assert_eq!(template_of("sshd.service"), None);
        let at = Provenance::file("/x", None);
        assert_eq!(listen_port("22", "tcp", &at).map(|p| p.port), Some(22));
        let p = listen_port("[::1]:8080", "tcp", &at).unwrap();
        assert_eq!((p.port, p.address.as_deref()), (8080, Some("::1")));
        assert!(listen_port("/run/foo.sock", "tcp", &at).is_none());
    }
}
