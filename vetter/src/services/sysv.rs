//! SysV init: the default runlevel (`id:N:initdefault:` in /etc/inittab) and the `S`/`K`
//! links of `/etc/rc.d/rcN.d` or `/etc/rcN.d`; upstart jobs of /etc/init.

use rootfs::Tree;

use super::Service;
use crate::system::System;
use crate::util::{self, read_text};
use crate::{Problem, Provenance};

/// The default runlevel and where it is set. Without an initdefault line: 3 on Red Hat
/// family images, 2 on Debian, else none.
pub fn default_runlevel(tree: &Tree, system: &System) -> (Option<u8>, Option<Provenance>) {
    if let Some(t) = read_text(tree, "/etc/inittab") {
        for (i, raw) in t.lines().enumerate() {
            let l = raw.trim();
            if l.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = l.split(':').collect();
            if f.get(2).map(|s| s.trim()) == Some("initdefault") {
                if let Some(n) = f.get(1).and_then(|s| s.trim().parse::<u8>().ok()) {
                    return (Some(n), Some(Provenance::line("/etc/inittab", i + 1, raw)));
                }
            }
        }
    }
    // Upstart on RHEL 6 reads it from /etc/init/rc-sysinit.conf: "env DEFAULT_RUNLEVEL=3".
    if let Some(t) = read_text(tree, "/etc/init/rc-sysinit.conf") {
        for (i, raw) in t.lines().enumerate() {
            if let Some(v) = raw.trim().strip_prefix("env DEFAULT_RUNLEVEL=") {
                if let Ok(n) = v.trim().parse() {
                    return (
                        Some(n),
                        Some(Provenance::line("/etc/init/rc-sysinit.conf", i + 1, raw)),
                    );
                }
            }
        }
    }
    match system.family.as_deref() {
        Some("redhat") | Some("suse") => (Some(3), None),
        Some("debian") => (Some(2), None),
        _ => (None, None),
    }
}

fn rc_dir(tree: &Tree, rl: u8) -> Option<String> {
    [format!("/etc/rc.d/rc{rl}.d"), format!("/etc/rc{rl}.d")]
        .into_iter()
        .find(|d| util::resolve(tree, d).is_some_and(|id| tree.entries(id).is_some()))
}

/// Split an rc link name `S55sshd` into (start?, service).
fn rc_link(name: &str) -> Option<(bool, &str)> {
    let start = match name.as_bytes().first() {
        Some(b'S') => true,
        Some(b'K') => false,
        _ => return None,
    };
    let rest = name.get(1..)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    Some((start, rest.get(digits..).filter(|s| !s.is_empty())?))
}

/// SysV services: every init script, enabled if an `S` link in runlevel `rl` starts it.
pub fn services(tree: &Tree, rl: u8, _problems: &mut Vec<Problem>) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    let init_dir = ["/etc/rc.d/init.d", "/etc/init.d"]
        .into_iter()
        .find(|d| !util::list_dir(tree, d).is_empty());
    if let Some(dir) = rc_dir(tree, rl) {
        for name in util::list_dir(tree, &dir) {
            let Some((start, svc)) = rc_link(&name) else {
                continue;
            };
            let link = format!("{dir}/{name}");
            let target = util::readlink(tree, &link);
            let at = Provenance::file(&link, target.map(|t| format!("-> {t}")));
            match out.iter_mut().find(|s| s.name == svc) {
                Some(s) => {
                    s.enabled_by.push(at);
                    if start {
                        s.enabled = true;
                        s.state = "enabled".into();
                    }
                }
                None => {
                    let state = if start { "enabled" } else { "disabled" };
                    out.push(Service::new(svc, "sysv", start, state, vec![at]));
                }
            }
        }
    }
    if let Some(dir) = init_dir {
        for name in util::list_dir(tree, dir) {
            if name.starts_with('.')
                || name == "functions"
                || name == "README"
                || name.ends_with(".dpkg-dist")
                || name == "rc"
                || name == "rcS"
            {
                continue;
            }
            if !out.iter().any(|s| s.name == name) {
                let mut s = Service::new(&name, "sysv", false, "disabled", Vec::new());
                s.notes
                    .push(format!("{dir}/{name} has no link in runlevel {rl}"));
                out.push(s);
            }
        }
    }
    out
}

/// Upstart jobs (`/etc/init/*.conf` with a `start on` stanza and no `manual` override).
pub fn upstart_jobs(tree: &Tree) -> Vec<Service> {
    let mut out = Vec::new();
    for name in util::list_dir(tree, "/etc/init") {
        let Some(job) = name.strip_suffix(".conf") else {
            continue;
        };
        let path = format!("/etc/init/{name}");
        let Some(text) = read_text(tree, &path) else {
            continue;
        };
        let start = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.trim_start().starts_with("start on"));
        let Some((i, line)) = start else { continue };
        let override_path = format!("/etc/init/{job}.override");
        let manual = read_text(tree, &override_path)
            .is_some_and(|t| t.lines().any(|l| l.trim() == "manual"));
        let enabled = !manual;
        let mut s = Service::new(
            job,
            "upstart",
            enabled,
            if enabled { "enabled" } else { "disabled" },
            vec![Provenance::line(&path, i + 1, line)],
        );
        if manual {
            s.enabled_by
                .push(Provenance::file(override_path, Some("manual".into())));
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc_links() {
        assert_eq!(rc_link("S55sshd"), Some((true, "sshd")));
        assert_eq!(rc_link("K10squid"), Some((false, "squid")));
        assert_eq!(rc_link("README"), None);
        assert_eq!(rc_link("S99"), None);
    }
}
