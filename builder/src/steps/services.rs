//! The `services` step: SysV init scripts (chkconfig links), xinetd services and systemd units,
//! edited as the tools would (`chkconfig`, `systemctl enable/disable/mask`), without running them.
//!
//! * SysV: the script's `# chkconfig: <levels> <start> <stop>` header decides the links:
//!   `rcN.d/S<start>name` for the listed runlevels and `rcN.d/K<stop>name` for the others
//!   (`chkconfig --add` + `on`); a header with no default runlevels (`-`, as CentOS 5's squid)
//!   is enabled in 2, 3, 4 and 5, as `chkconfig NAME on` without `--level` does; disabling
//!   leaves `K` links in every runlevel. Links point to
//!   `../init.d/name`. Red Hat layout (`/etc/rc.d/rcN.d`) when `/etc/rc.d` exists, Debian otherwise.
//! * xinetd: the `disable = yes|no` line of `/etc/xinetd.d/name`.
//! * systemd: `[Install]` `WantedBy=`/`RequiredBy=` give `/etc/systemd/system/<target>.<wants|requires>/unit`
//!   links and `Alias=` gives alias links; disable removes them; mask links the unit to `/dev/null`.

use rootfs::{NodeKind, Tree};

use super::{
    edit_text, join, list_dir, put_symlink, read_text, remove_if_present, StepContext, StepError,
    StepReport, StepResult,
};

const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/local/lib/systemd/system",
];

/// How a named service is managed in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A systemd unit file at this path.
    Systemd {
        /// Unit name with suffix.
        unit: String,
        /// Path of the unit file.
        path: String,
    },
    /// A SysV init script in this init.d folder.
    SysV {
        /// The init.d folder.
        initd: String,
    },
    /// An xinetd service file.
    Xinetd,
}

fn exists_file(tree: &Tree, path: &str) -> bool {
    tree.resolve(path.as_bytes(), true)
        .map(|id| matches!(tree.node(id).kind, NodeKind::Regular(_)))
        .unwrap_or(false)
}

/// Whether the image boots with systemd.
pub fn has_systemd(tree: &Tree) -> bool {
    ["/usr/lib/systemd/systemd", "/lib/systemd/systemd"]
        .iter()
        .any(|p| exists_file(tree, p))
}

/// Find how `name` is managed: systemd unit (on systemd images), then SysV script, then xinetd.
pub fn detect(tree: &Tree, name: &str) -> Option<ServiceKind> {
    if has_systemd(tree) || name.contains('.') {
        let unit = if name.contains('.') {
            name.to_string()
        } else {
            format!("{name}.service")
        };
        for d in UNIT_DIRS {
            let p = join(d, &unit);
            if let Ok(id) = tree.resolve(p.as_bytes(), true) {
                if matches!(tree.node(id).kind, NodeKind::Regular(_)) {
                    return Some(ServiceKind::Systemd { unit, path: p });
                }
            }
        }
    }
    for initd in ["/etc/rc.d/init.d", "/etc/init.d"] {
        if exists_file(tree, &join(initd, name)) {
            return Some(ServiceKind::SysV {
                initd: initd.to_string(),
            });
        }
    }
    if exists_file(tree, &join("/etc/xinetd.d", name)) {
        return Some(ServiceKind::Xinetd);
    }
    None
}

/// The `# chkconfig:` header: runlevels, start and stop priorities.
pub fn chkconfig_header(script: &str) -> Option<(Vec<u8>, u32, u32)> {
    for line in script.lines().take(200) {
        let l = line.trim_start();
        let Some(rest) = l.strip_prefix('#') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("chkconfig:") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let levels = it.next()?;
        let start: u32 = it.next()?.parse().ok()?;
        let stop: u32 = it.next()?.parse().ok()?;
        let levels: Vec<u8> = if levels == "-" {
            Vec::new()
        } else {
            levels
                .bytes()
                .filter(|b| (b'0'..=b'6').contains(b))
                .map(|b| b - b'0')
                .collect()
        };
        return Some((levels, start.min(99), stop.min(99)));
    }
    None
}

/// Runlevels `chkconfig NAME on` enables when no `--level` is given.
pub const ON_LEVELS: [u8; 4] = [2, 3, 4, 5];

fn rc_dir(tree: &Tree, level: u8) -> String {
    if tree.lookup(b"/etc/rc.d").is_some() {
        format!("/etc/rc.d/rc{level}.d")
    } else {
        format!("/etc/rc{level}.d")
    }
}

/// Remove the S/K links of `name` in every runlevel.
fn clear_rc_links(tree: &mut Tree, name: &str, r: &mut StepReport) {
    for level in 0..=6u8 {
        let dir = rc_dir(tree, level);
        for entry in list_dir(tree, &dir) {
            let b = entry.as_bytes();
            if b.len() == name.len() + 3
                && (b[0] == b'S' || b[0] == b'K')
                && b[1].is_ascii_digit()
                && b[2].is_ascii_digit()
                && &entry[3..] == name
            {
                let p = join(&dir, &entry);
                if remove_if_present(tree, &p) {
                    r.removed.push(p);
                }
            }
        }
    }
}

fn sysv(
    tree: &mut Tree,
    ctx: &StepContext,
    name: &str,
    initd: &str,
    enable: bool,
    r: &mut StepReport,
) -> StepResult {
    let script = read_text(tree, &join(initd, name))?.unwrap_or_default();
    let (levels, start, stop) = chkconfig_header(&script).ok_or_else(|| {
        StepError::new(format!("{initd}/{name}: no '# chkconfig: <levels> <start> <stop>' header, cannot choose link priorities"))
    })?;
    // `-`: no runlevel by default; `chkconfig NAME on` then means 2345.
    let levels = if levels.is_empty() {
        ON_LEVELS.to_vec()
    } else {
        levels
    };
    clear_rc_links(tree, name, r);
    let target = format!("../init.d/{name}");
    for level in 0..=6u8 {
        let dir = rc_dir(tree, level);
        let link = if enable && levels.contains(&level) {
            join(&dir, &format!("S{start:02}{name}"))
        } else {
            join(&dir, &format!("K{stop:02}{name}"))
        };
        if put_symlink(tree, ctx, &link, &target)?.is_some() {
            r.removed.retain(|p| p != &link);
            r.added.push(link);
        }
    }
    Ok(())
}

fn xinetd(
    tree: &mut Tree,
    ctx: &StepContext,
    name: &str,
    enable: bool,
    r: &mut StepReport,
) -> StepResult {
    let path = join("/etc/xinetd.d", name);
    let want = if enable { "no" } else { "yes" };
    let changed = edit_text(tree, ctx, &path, |text| {
        let mut out = String::with_capacity(text.len() + 32);
        let mut found = false;
        for line in text.lines() {
            let t = line.trim();
            let is_disable = t.split(|c: char| c.is_whitespace() || c == '=').next()
                == Some("disable")
                && t.contains('=');
            if is_disable {
                let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
                out.push_str(&format!("{indent}disable = {want}\n"));
                found = true;
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        if !found {
            // Insert after the opening brace of the service block.
            let mut with = String::with_capacity(out.len() + 32);
            let mut done = false;
            for line in out.lines() {
                with.push_str(line);
                with.push('\n');
                if !done && line.trim() == "{" {
                    with.push_str(&format!("\tdisable\t\t= {want}\n"));
                    done = true;
                }
            }
            if !done {
                return Err(StepError::new(format!(
                    "{path}: no service block '{{' found"
                )));
            }
            out = with;
        }
        Ok(Some(out))
    })?;
    if changed {
        r.changed.push(path);
    }
    Ok(())
}

/// `[Install]` section keys of a unit file: (WantedBy, RequiredBy, Alias).
pub fn install_section(unit: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut wanted, mut required, mut alias) = (Vec::new(), Vec::new(), Vec::new());
    let mut in_install = false;
    for line in unit.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_install = t == "[Install]";
            continue;
        }
        if !in_install || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = t.split_once('=') {
            let vals = v.split_whitespace().map(|s| s.to_string());
            match k.trim() {
                "WantedBy" => wanted.extend(vals),
                "RequiredBy" => required.extend(vals),
                "Alias" => alias.extend(vals),
                _ => {}
            }
        }
    }
    (wanted, required, alias)
}

fn unit_name_ok(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && !s.starts_with('.')
}

fn systemd(
    tree: &mut Tree,
    ctx: &StepContext,
    unit: &str,
    path: &str,
    action: &str,
    r: &mut StepReport,
) -> StepResult {
    let etc = "/etc/systemd/system";
    match action {
        "mask" => {
            let link = join(etc, unit);
            if put_symlink(tree, ctx, &link, "/dev/null")?.is_some() {
                r.added.push(link);
            }
        }
        "enable" => {
            let text = read_text(tree, path)?.unwrap_or_default();
            let (wanted, required, alias) = install_section(&text);
            if wanted.is_empty() && required.is_empty() && alias.is_empty() {
                return Err(StepError::new(format!("{path}: no [Install] section with WantedBy=, RequiredBy= or Alias=, cannot enable")));
            }
            for (targets, suffix) in [(&wanted, "wants"), (&required, "requires")] {
                for t in targets.iter().filter(|t| unit_name_ok(t)) {
                    let link = join(&format!("{etc}/{t}.{suffix}"), unit);
                    if put_symlink(tree, ctx, &link, path)?.is_some() {
                        r.added.push(link);
                    }
                }
            }
            for a in alias.iter().filter(|a| unit_name_ok(a)) {
                let link = join(etc, a);
                if put_symlink(tree, ctx, &link, path)?.is_some() {
                    r.added.push(link);
                }
            }
        }
        _ => {
            // disable: every link to the unit under /etc/systemd/system/*.{wants,requires} and aliases.
            let text = read_text(tree, path)?.unwrap_or_default();
            let (_, _, alias) = install_section(&text);
            for d in list_dir(tree, etc) {
                if d.ends_with(".wants") || d.ends_with(".requires") {
                    let link = join(&join(etc, &d), unit);
                    if tree
                        .lookup(link.as_bytes())
                        .is_some_and(|id| matches!(tree.node(id).kind, NodeKind::Symlink(_)))
                        && remove_if_present(tree, &link)
                    {
                        r.removed.push(link);
                    }
                }
            }
            for a in alias.iter().filter(|a| unit_name_ok(a)) {
                let link = join(etc, a);
                if tree
                    .lookup(link.as_bytes())
                    .is_some_and(|id| matches!(tree.node(id).kind, NodeKind::Symlink(_)))
                    && remove_if_present(tree, &link)
                {
                    r.removed.push(link);
                }
            }
        }
    }
    Ok(())
}

/// Apply enable, disable and mask lists, in that order.
pub fn apply(
    tree: &mut Tree,
    ctx: &StepContext,
    enable: &[String],
    disable: &[String],
    mask: &[String],
    r: &mut StepReport,
) -> StepResult {
    for (names, action) in [(enable, "enable"), (disable, "disable")] {
        for name in names {
            match detect(tree, name) {
                Some(ServiceKind::Systemd { unit, path }) => systemd(tree, ctx, &unit, &path, action, r)?,
                Some(ServiceKind::SysV { initd }) => sysv(tree, ctx, name, &initd, action == "enable", r)?,
                Some(ServiceKind::Xinetd) => xinetd(tree, ctx, name, action == "enable", r)?,
                None => {
                    return Err(StepError::new(format!(
                        "service '{name}' not found: no systemd unit, no /etc/rc.d/init.d or /etc/init.d script, no /etc/xinetd.d file"
                    )))
                }
            }
            r.notes.push(format!("{action}d {name}"));
        }
    }
    for name in mask {
        let unit = if name.contains('.') {
            name.clone()
        } else {
            format!("{name}.service")
        };
        if !has_systemd(tree) {
            return Err(StepError::new(format!(
                "cannot mask '{name}': the image does not use systemd"
            )));
        }
        systemd(tree, ctx, &unit, "", "mask", r)?;
        r.notes.push(format!("masked {unit}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chkconfig_header_is_parsed() {
        let s = "#!/bin/sh\n#\n# chkconfig: 2345 55 25\n# description: x\n";
        assert_eq!(chkconfig_header(s), Some((vec![2, 3, 4, 5], 55, 25)));
        assert_eq!(
            chkconfig_header("# chkconfig: - 90 10\n"),
            Some((vec![], 90, 10))
        );
        assert_eq!(chkconfig_header("#!/bin/sh\n"), None);
    }

    #[test]
    fn install_section_is_parsed() {
        let u = "[Unit]\nWantedBy=nope\n[Install]\nWantedBy=multi-user.target graphical.target\nAlias=sq.service\n";
        let (w, r, a) = install_section(u);
        assert_eq!(w, ["multi-user.target", "graphical.target"]);
        assert!(r.is_empty());
        assert_eq!(a, ["sq.service"]);
    }
}
