//! The `purge` step: remove what ties an image to the host it was made on, as `virt-sysprep`'s
//! default operations do. Every item can be kept by name (`keep = ["logs"]`).

use rootfs::{Content, NodeKind, Tree};

use super::{edit_text, join, list_dir, remove_if_present, StepContext, StepReport, StepResult};

pub use crate::names::PURGE_ITEMS as ITEMS;

/// The resolver configuration the `resolv-conf` item removes unless the recipe wrote it.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

fn is_regular(tree: &Tree, path: &str) -> bool {
    tree.lookup(path.as_bytes())
        .is_some_and(|id| matches!(tree.node(id).kind, NodeKind::Regular(_)))
}

/// Remove every entry of `dir` whose name satisfies `pred`.
fn remove_in(tree: &mut Tree, dir: &str, pred: impl Fn(&str) -> bool, r: &mut StepReport) {
    for name in list_dir(tree, dir) {
        if pred(&name) {
            let p = join(dir, &name);
            if remove_if_present(tree, &p) {
                r.removed.push(p);
            }
        }
    }
}

fn truncate(tree: &mut Tree, ctx: &StepContext, path: &str, r: &mut StepReport) {
    if let Some(id) = tree.lookup(path.as_bytes()) {
        let n = tree.node_mut(id);
        if let NodeKind::Regular(c) = &n.kind {
            if c.size() > 0 {
                n.kind = NodeKind::Regular(Content::empty());
                n.meta.mtime = ctx.epoch;
                n.meta.ctime = ctx.epoch;
                r.changed.push(path.to_string());
            }
        }
    }
}

/// Rotated or archived log names: `x.1`, `x.gz`, `x-20240101`, `x.old`.
fn is_rotated(name: &str) -> bool {
    let ext = name.rsplit('.').next().unwrap_or("");
    if name.contains('.')
        && (ext.bytes().all(|b| b.is_ascii_digit())
            || ["gz", "bz2", "xz", "zst", "old"].contains(&ext))
    {
        return true;
    }
    match name.rsplit_once('-') {
        Some((_, d)) => d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

fn logs(tree: &mut Tree, ctx: &StepContext, dir: &str, depth: usize, r: &mut StepReport) {
    if depth > 16 {
        return;
    }
    for name in list_dir(tree, dir) {
        let p = join(dir, &name);
        let Some(id) = tree.lookup(p.as_bytes()) else {
            continue;
        };
        match &tree.node(id).kind {
            NodeKind::Directory(_) if name == "journal" => {
                remove_in(tree, &p, |_| true, r);
            }
            NodeKind::Directory(_) => logs(tree, ctx, &p, depth + 1, r),
            NodeKind::Regular(_) if is_rotated(&name) => {
                if remove_if_present(tree, &p) {
                    r.removed.push(p);
                }
            }
            NodeKind::Regular(_) => truncate(tree, ctx, &p, r),
            _ => {}
        }
    }
}

/// Run every item not in `keep`.
pub fn purge(
    tree: &mut Tree,
    ctx: &StepContext,
    keep: &[String],
    r: &mut StepReport,
) -> StepResult {
    let run = |item: &str| !keep.iter().any(|k| k == item);
    if run("ssh-hostkeys") {
        remove_in(
            tree,
            "/etc/ssh",
            |n| {
                n.starts_with("ssh_host_")
                    && (n.ends_with("_key")
                        || n.ends_with("_key.pub")
                        || n == "ssh_host_key"
                        || n == "ssh_host_key.pub")
            },
            r,
        );
    }
    if run("machine-id") {
        truncate(tree, ctx, "/etc/machine-id", r);
        if is_regular(tree, "/var/lib/dbus/machine-id")
            && remove_if_present(tree, "/var/lib/dbus/machine-id")
        {
            r.removed.push("/var/lib/dbus/machine-id".into());
        }
    }
    if run("random-seed") {
        for p in [
            "/var/lib/random-seed",
            "/var/lib/systemd/random-seed",
            "/var/lib/urandom/random-seed",
            "/var/run/random-seed",
        ] {
            if is_regular(tree, p) && remove_if_present(tree, p) {
                r.removed.push(p.into());
            }
        }
    }
    if run("udev-persistent-net") {
        remove_in(
            tree,
            "/etc/udev/rules.d",
            |n| n == "70-persistent-net.rules" || n == "70-persistent-cd.rules",
            r,
        );
    }
    if run("net-hwaddr") {
        for dir in [
            "/etc/sysconfig/network-scripts",
            "/etc/sysconfig/networking/devices",
        ] {
            for name in list_dir(tree, dir) {
                if !name.starts_with("ifcfg-") || name == "ifcfg-lo" {
                    continue;
                }
                let p = join(dir, &name);
                if !is_regular(tree, &p) {
                    continue;
                }
                let changed = edit_text(tree, ctx, &p, |t| {
                    let kept: Vec<&str> = t
                        .lines()
                        .filter(|l| {
                            let k = l.trim_start().split('=').next().unwrap_or("").trim();
                            k != "HWADDR" && k != "UUID"
                        })
                        .collect();
                    let mut s = kept.join("\n");
                    if !s.is_empty() {
                        s.push('\n');
                    }
                    Ok(Some(s))
                })?;
                if changed {
                    r.changed.push(p);
                }
            }
        }
    }
    if run("dhcp-leases") {
        for dir in [
            "/var/lib/dhclient",
            "/var/lib/dhcp",
            "/var/lib/dhcpcd",
            "/var/lib/dhcp3",
        ] {
            remove_in(
                tree,
                dir,
                |n| n.contains(".lease") || n.ends_with(".leases"),
                r,
            );
        }
        remove_in(tree, "/var/lib/NetworkManager", |n| n.contains(".lease"), r);
    }
    if run("resolv-conf") && !ctx.resolv_conf_from_recipe.get() {
        // The entry itself, whatever it is (a regular file, or a symlink to systemd-resolved's
        // or resolvconf's file): never followed, its target is left alone. The guest's DNS comes
        // from the site (cloud-init or wafer-context writes resolv.conf at first boot).
        let is_dir = tree
            .lookup(RESOLV_CONF.as_bytes())
            .is_some_and(|id| matches!(tree.node(id).kind, NodeKind::Directory(_)));
        if !is_dir && remove_if_present(tree, RESOLV_CONF) {
            r.removed.push(RESOLV_CONF.into());
        }
    }
    if run("logs") {
        logs(tree, ctx, "/var/log", 0, r);
        for p in [
            "/var/log/wtmp",
            "/var/log/btmp",
            "/var/log/lastlog",
            "/var/run/utmp",
        ] {
            truncate(tree, ctx, p, r);
        }
    }
    if run("rpm-db-cache") {
        remove_in(tree, "/var/lib/rpm", |n| n.starts_with("__db."), r);
    }
    if run("package-caches") {
        for dir in [
            "/var/cache/yum",
            "/var/cache/dnf",
            "/var/cache/apt/archives",
        ] {
            remove_in(tree, dir, |n| n != "partial" && n != "lock", r);
        }
        for p in [
            "/var/lib/yum/uuid",
            "/var/lib/dnf/uuid",
            "/etc/dnf/vars/uuid",
        ] {
            if remove_if_present(tree, p) {
                r.removed.push(p.into());
            }
        }
    }
    if run("shell-history") {
        let hist = |n: &str| {
            [
                ".bash_history",
                ".history",
                ".zsh_history",
                ".sh_history",
                ".python_history",
                ".mysql_history",
                ".lesshst",
                ".viminfo",
            ]
            .contains(&n)
        };
        remove_in(tree, "/root", hist, r);
        for home in list_dir(tree, "/home") {
            remove_in(tree, &join("/home", &home), hist, r);
        }
    }
    if run("tmp") {
        remove_in(tree, "/tmp", |_| true, r);
        remove_in(tree, "/var/tmp", |_| true, r);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_logs() {
        assert!(is_rotated("messages.1"));
        assert!(is_rotated("secure-20240101"));
        assert!(is_rotated("yum.log.gz"));
        assert!(!is_rotated("messages"));
        assert!(!is_rotated("squid"));
        assert!(!is_rotated("access.log"));
    }
}
