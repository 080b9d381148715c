//! xinetd (xinetd.conf(5)): `/etc/xinetd.conf` with `includedir`/`includefile`, `defaults`
//! (`disabled = names`, `enabled = names`) and `service NAME { ... }` blocks: `disable`, `port`,
//! `socket_type`, `protocol`, `server`, `bind`/`interface`. A service without `port` takes
//! its port from the image's /etc/services.

use rootfs::Tree;

use super::include::Includes;
use super::{Port, Service};
use crate::util;
use crate::{Problem, Provenance};

struct Block {
    name: String,
    start: Provenance,
    attrs: Vec<(String, String, Provenance)>,
}

impl Block {
    fn get(&self, k: &str) -> Option<&(String, String, Provenance)> {
        self.attrs.iter().rev().find(|(key, _, _)| key == k)
    }
}

fn walk(
    tree: &Tree,
    path: &str,
    depth: usize,
    inc: &mut Includes,
    blocks: &mut Vec<Block>,
    defaults: &mut Vec<(String, String, Provenance)>,
    problems: &mut Vec<Problem>,
) {
    let Some(text) = inc.open(tree, path, depth, problems) else {
        return;
    };
    let mut cur: Option<Block> = None;
    let mut in_defaults = false;
    let mut pending_header: Option<Block> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if cur.is_none() && !in_defaults {
            if let Some(d) = line.strip_prefix("includedir") {
                let dir = d.trim();
                for n in util::list_dir(tree, dir) {
                    // xinetd skips names ending in '~' or containing '.'.
                    if n.ends_with('~') || n.contains('.') {
                        continue;
                    }
                    walk(
                        tree,
                        &util::join(dir, &n),
                        depth + 1,
                        inc,
                        blocks,
                        defaults,
                        problems,
                    );
                }
                continue;
            }
            if let Some(f) = line.strip_prefix("includefile") {
                for f in f.split_whitespace() {
                    walk(tree, f, depth + 1, inc, blocks, defaults, problems);
                }
                continue;
            }
            if line.starts_with("defaults") {
                in_defaults = true;
                continue;
            }
            if let Some(n) = line.strip_prefix("service") {
                let name = n.trim().trim_end_matches('{').trim().to_string();
                let b = Block {
                    name,
                    start: Provenance::line(path, i + 1, raw),
                    attrs: Vec::new(),
                };
                if line.ends_with('{') {
                    cur = Some(b);
                } else {
                    pending_header = Some(b);
                }
                continue;
            }
            if line == "{" {
                cur = pending_header.take();
                continue;
            }
            continue;
        }
        if line == "{" {
            continue;
        }
        if line.starts_with('}') {
            if let Some(b) = cur.take() {
                blocks.push(b);
            }
            in_defaults = false;
            continue;
        }
        let (k, v) = if let Some((k, v)) = line.split_once("+=") {
            (k, v)
        } else if let Some((k, v)) = line.split_once("-=") {
            (k, v)
        } else if let Some((k, v)) = line.split_once('=') {
            (k, v)
        } else {
            continue;
        };
        let entry = (
            k.trim().to_string(),
            v.trim().to_string(),
            Provenance::line(path, i + 1, raw),
        );
        match cur.as_mut() {
            Some(b) => b.attrs.push(entry),
            None => defaults.push(entry),
        }
    }
    if let Some(b) = cur.take() {
        problems.push(Problem {
            path: path.into(),
            message: format!("service {} block not closed", b.name),
        });
        blocks.push(b);
    }
    inc.close();
}

/// xinetd services. `xinetd_enabled`: whether the xinetd service itself starts at boot
/// (`None` if no xinetd service was found).
pub fn services(
    tree: &Tree,
    xinetd_enabled: Option<bool>,
    problems: &mut Vec<Problem>,
) -> Vec<Service> {
    let mut inc = Includes::new();
    let mut blocks = Vec::new();
    let mut defaults = Vec::new();
    walk(
        tree,
        "/etc/xinetd.conf",
        0,
        &mut inc,
        &mut blocks,
        &mut defaults,
        problems,
    );
    if inc.files.is_empty() {
        // Some images have only the directory.
        for n in util::list_dir(tree, "/etc/xinetd.d") {
            if !n.ends_with('~') && !n.contains('.') {
                walk(
                    tree,
                    &format!("/etc/xinetd.d/{n}"),
                    1,
                    &mut inc,
                    &mut blocks,
                    &mut defaults,
                    problems,
                );
            }
        }
    }
    let listed = |key: &str, name: &str| -> Option<Provenance> {
        defaults
            .iter()
            .find(|(k, v, _)| k == key && v.split_whitespace().any(|n| n == name))
            .map(|(_, _, at)| at.clone())
    };
    let has_enabled_list = defaults.iter().any(|(k, _, _)| k == "enabled");
    let daemon_on = xinetd_enabled.unwrap_or(false);
    let mut out = Vec::new();
    for b in blocks {
        let id = b
            .get("id")
            .map(|(_, v, _)| v.clone())
            .unwrap_or_else(|| b.name.clone());
        let mut on = true;
        let mut by = vec![b.start.clone()];
        if let Some((_, v, at)) = b.get("disable") {
            on = !v.eq_ignore_ascii_case("yes");
            by.push(at.clone());
        }
        if let Some(at) = listed("disabled", &id) {
            on = false;
            by.push(at);
        }
        if has_enabled_list {
            match listed("enabled", &id) {
                Some(at) => by.push(at),
                None => on = false,
            }
        }
        let state = match (on, daemon_on) {
            (true, true) => "enabled",
            (true, false) => "enabled (xinetd disabled)",
            _ => "disabled",
        };
        let mut s = Service::new(&b.name, "xinetd", on && daemon_on, state, by);
        s.config = vec![b.start.file.clone()];
        s.daemon = b.get("server").map(|(_, v, _)| v.clone());
        let protocol = match b.get("protocol").map(|(_, v, _)| v.as_str()) {
            Some(p) => p.to_string(),
            None => match b.get("socket_type").map(|(_, v, _)| v.as_str()) {
                Some("dgram") => "udp".into(),
                _ => "tcp".into(),
            },
        };
        let addr = b
            .get("bind")
            .or_else(|| b.get("interface"))
            .map(|(_, v, _)| v.clone());
        let unlisted = b
            .get("type")
            .is_some_and(|(_, v, _)| v.split_whitespace().any(|t| t == "UNLISTED"));
        if let Some((_, v, at)) = b.get("port") {
            match v.parse::<u16>() {
                Ok(p) => s
                    .ports
                    .push(Port::new(p, &protocol, addr.clone(), false, at.clone())),
                Err(_) => problems.push(Problem {
                    path: at.file.clone(),
                    message: format!("line {}: bad port {v:?}", at.line.unwrap_or(0)),
                }),
            }
        } else if !unlisted {
            match super::etc_services(tree, &b.name, &protocol) {
                Some(sp) => s
                    .ports
                    .push(Port::new(sp.port, &protocol, addr.clone(), false, sp.at)),
                None => s
                    .notes
                    .push(format!("{} not in /etc/services for {protocol}", b.name)),
            }
        }
        if xinetd_enabled.is_none() {
            s.notes
                .push("no xinetd service found in the init configuration".into());
        }
        s.port_status = if s.ports.is_empty() {
            "unknown".into()
        } else {
            "known".into()
        };
        out.push(s);
    }
    out
}
