//! What changed between two inventories (`wafer diff OLD NEW`): packages upgraded, downgraded,
//! added or removed (compared with rpm's or dpkg's algorithm), setuid/setgid and capability
//! changes, ports opened or closed, and files changed in system directories.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::Inventory;

/// Directories whose files [`diff`] compares.
pub const SYSTEM_DIRS: [&str; 9] = [
    "/bin/", "/sbin/", "/usr/", "/lib/", "/lib64/", "/lib32/", "/etc/", "/boot/", "/opt/",
];

/// How a package changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageChangeKind {
    /// Newer version.
    Upgraded,
    /// Older version.
    Downgraded,
    /// Not in the old wafer.
    Added,
    /// Not in the new wafer.
    Removed,
    /// Equal by the manager's comparison, different as written (e.g. `1.0` vs `1.00`), or not comparable.
    Changed,
}

/// One package change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageChange {
    /// Name.
    pub name: String,
    /// Architecture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// What happened.
    pub change: PackageChangeKind,
    /// Old version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    /// New version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

/// A privileged file gained or lost a bit or capabilities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrivilegeChange {
    /// Path.
    pub path: String,
    /// `setuid`, `setgid` or `capabilities`.
    pub kind: String,
    /// `added`, `removed` or `changed` (capabilities only).
    pub change: String,
    /// Old capabilities text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    /// New capabilities text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

/// A listener opened or closed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PortChange {
    /// `opened` or `closed`.
    pub change: String,
    /// Service.
    pub service: String,
    /// `tcp` / `udp`.
    pub protocol: String,
    /// Port.
    pub port: u16,
    /// Address (absent: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Where it is set (new wafer for opened, old for closed): `file:line`.
    pub source: String,
}

/// A file changed in a system directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileChange {
    /// Path.
    pub path: String,
    /// `added`, `removed` or `modified`.
    pub change: String,
    /// For `modified`: what differs (`type`, `content`, `mode`, `owner`, `target`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differs: Vec<String>,
}

/// The delta between two inventories.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InventoryDiff {
    /// Package changes, by name.
    pub packages: Vec<PackageChange>,
    /// setuid/setgid/capability changes, by path.
    pub privileged: Vec<PrivilegeChange>,
    /// Listeners opened or closed.
    pub ports: Vec<PortChange>,
    /// Files changed in [`SYSTEM_DIRS`], by path.
    pub files: Vec<FileChange>,
}

impl InventoryDiff {
    /// No change at all.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
            && self.privileged.is_empty()
            && self.ports.is_empty()
            && self.files.is_empty()
    }
}

fn full_version(p: &crate::packages::PackageInfo) -> String {
    let mut v = p.epoch.map(|e| format!("{e}:")).unwrap_or_default();
    v.push_str(&p.version);
    if let Some(r) = &p.release {
        v.push('-');
        v.push_str(r);
    }
    v
}

/// Compare two installed versions of a package with its manager's algorithm.
fn compare(a: &crate::packages::PackageInfo, b: &crate::packages::PackageInfo) -> Option<Ordering> {
    if a.manager != b.manager {
        return None;
    }
    if a.manager == "dpkg" {
        let x = pkgdb::version::DpkgVersion::parse(&a.version).ok()?;
        let y = pkgdb::version::DpkgVersion::parse(&b.version).ok()?;
        Some(x.compare(&y))
    } else {
        let x = pkgdb::version::Evr::new(a.epoch, &a.version, a.release.as_deref().unwrap_or(""));
        let y = pkgdb::version::Evr::new(b.epoch, &b.version, b.release.as_deref().unwrap_or(""));
        Some(x.compare(&y))
    }
}

fn packages(old: &Inventory, new: &Inventory) -> Vec<PackageChange> {
    type Key = (String, Option<String>);
    let index = |inv: &Inventory| -> BTreeMap<Key, Vec<crate::packages::PackageInfo>> {
        let mut m: BTreeMap<Key, Vec<_>> = BTreeMap::new();
        for p in &inv.packages.list {
            m.entry((p.name.clone(), p.arch.clone()))
                .or_default()
                .push(p.clone());
        }
        m
    };
    let (a, b) = (index(old), index(new));
    let keys: BTreeSet<&Key> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let (va, vb) = (
            a.get(k).cloned().unwrap_or_default(),
            b.get(k).cloned().unwrap_or_default(),
        );
        let sa: BTreeSet<String> = va.iter().map(full_version).collect();
        let sb: BTreeSet<String> = vb.iter().map(full_version).collect();
        if sa == sb {
            continue;
        }
        let mk = |change, old: Option<String>, new: Option<String>| PackageChange {
            name: k.0.clone(),
            arch: k.1.clone(),
            change,
            old,
            new,
        };
        match (va.as_slice(), vb.as_slice()) {
            ([], _) => out.extend(
                sb.iter()
                    .map(|v| mk(PackageChangeKind::Added, None, Some(v.clone()))),
            ),
            (_, []) => out.extend(
                sa.iter()
                    .map(|v| mk(PackageChangeKind::Removed, Some(v.clone()), None)),
            ),
            ([x], [y]) => {
                let change = match compare(x, y) {
                    Some(Ordering::Less) => PackageChangeKind::Upgraded,
                    Some(Ordering::Greater) => PackageChangeKind::Downgraded,
                    _ => PackageChangeKind::Changed,
                };
                out.push(mk(change, Some(full_version(x)), Some(full_version(y))));
            }
            _ => {
                // Several versions installed (kernels): report set differences.
                out.extend(
                    sa.difference(&sb)
                        .map(|v| mk(PackageChangeKind::Removed, Some(v.clone()), None)),
                );
                out.extend(
                    sb.difference(&sa)
                        .map(|v| mk(PackageChangeKind::Added, None, Some(v.clone()))),
                );
            }
        }
    }
    out
}

fn privileged(old: &Inventory, new: &Inventory) -> Vec<PrivilegeChange> {
    let mut out = Vec::new();
    for (kind, a, b) in [
        ("setuid", &old.files.setuid, &new.files.setuid),
        ("setgid", &old.files.setgid, &new.files.setgid),
    ] {
        let (a, b): (BTreeSet<&String>, BTreeSet<&String>) =
            (a.iter().collect(), b.iter().collect());
        for p in b.difference(&a) {
            out.push(PrivilegeChange {
                path: (*p).clone(),
                kind: kind.into(),
                change: "added".into(),
                old: None,
                new: None,
            });
        }
        for p in a.difference(&b) {
            out.push(PrivilegeChange {
                path: (*p).clone(),
                kind: kind.into(),
                change: "removed".into(),
                old: None,
                new: None,
            });
        }
    }
    let caps = |inv: &Inventory| -> BTreeMap<String, String> {
        inv.files
            .capabilities
            .iter()
            .map(|c| {
                (
                    c.path.clone(),
                    c.caps
                        .as_ref()
                        .map(|c| c.text.clone())
                        .or_else(|| c.error.clone())
                        .unwrap_or_default(),
                )
            })
            .collect()
    };
    let (a, b) = (caps(old), caps(new));
    for p in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        let (x, y) = (a.get(p), b.get(p));
        let change = match (x, y) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(x), Some(y)) if x != y => "changed",
            _ => continue,
        };
        out.push(PrivilegeChange {
            path: p.clone(),
            kind: "capabilities".into(),
            change: change.into(),
            old: x.cloned(),
            new: y.cloned(),
        });
    }
    out.sort_by(|x, y| (&x.path, &x.kind).cmp(&(&y.path, &y.kind)));
    out
}

fn ports(old: &Inventory, new: &Inventory) -> Vec<PortChange> {
    type Key = (String, String, u16, Option<String>);
    let set = |inv: &Inventory| -> BTreeMap<Key, String> {
        inv.services
            .listening()
            .map(|(s, p)| {
                let src = match p.source.line {
                    Some(l) => format!("{}:{l}", p.source.file),
                    None => p.source.file.clone(),
                };
                (
                    (
                        s.name.clone(),
                        p.protocol.clone(),
                        p.port,
                        p.address.clone(),
                    ),
                    src,
                )
            })
            .collect()
    };
    let (a, b) = (set(old), set(new));
    let mut out = Vec::new();
    for (k, src) in &b {
        if !a.contains_key(k) {
            out.push(PortChange {
                change: "opened".into(),
                service: k.0.clone(),
                protocol: k.1.clone(),
                port: k.2,
                address: k.3.clone(),
                source: src.clone(),
            });
        }
    }
    for (k, src) in &a {
        if !b.contains_key(k) {
            out.push(PortChange {
                change: "closed".into(),
                service: k.0.clone(),
                protocol: k.1.clone(),
                port: k.2,
                address: k.3.clone(),
                source: src.clone(),
            });
        }
    }
    out.sort_by(|x, y| {
        (x.port, &x.protocol, &x.change, &x.service).cmp(&(
            y.port,
            &y.protocol,
            &y.change,
            &y.service,
        ))
    });
    out
}

fn files(old: &Inventory, new: &Inventory) -> Vec<FileChange> {
    fn index(inv: &Inventory) -> BTreeMap<String, &crate::files::FileEntry> {
        let mut m = BTreeMap::new();
        for e in &inv.files.entries {
            for p in &e.paths {
                if SYSTEM_DIRS.iter().any(|d| p.starts_with(d)) {
                    m.insert(p.clone(), e);
                }
            }
        }
        m
    }
    let (a, b) = (index(old), index(new));
    let mut out = Vec::new();
    for p in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        match (a.get(p), b.get(p)) {
            (None, Some(_)) => out.push(FileChange {
                path: p.clone(),
                change: "added".into(),
                differs: Vec::new(),
            }),
            (Some(_), None) => out.push(FileChange {
                path: p.clone(),
                change: "removed".into(),
                differs: Vec::new(),
            }),
            (Some(x), Some(y)) => {
                let mut d = Vec::new();
                if x.file_type != y.file_type {
                    d.push("type".to_string());
                }
                if x.sha256 != y.sha256 || (x.sha256.is_none() && x.size != y.size) {
                    d.push("content".into());
                }
                if x.mode != y.mode {
                    d.push("mode".into());
                }
                if (x.uid, x.gid) != (y.uid, y.gid) {
                    d.push("owner".into());
                }
                if x.target != y.target {
                    d.push("target".into());
                }
                if !d.is_empty() {
                    out.push(FileChange {
                        path: p.clone(),
                        change: "modified".into(),
                        differs: d,
                    });
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// The changes from `old` to `new`.
pub fn diff(old: &Inventory, new: &Inventory) -> InventoryDiff {
    InventoryDiff {
        packages: packages(old, new),
        privileged: privileged(old, new),
        ports: ports(old, new),
        files: files(old, new),
    }
}

/// A plain-text rendering, one change a line, grouped by section. Names, paths and versions
/// from the images are escaped ([`rootfs::escape`]): a crafted one cannot forge or hide a line.
pub fn render(d: &InventoryDiff) -> String {
    use rootfs::escape::Escaped as E;
    let mut s = String::new();
    if d.is_empty() {
        s.push_str("no changes\n");
        return s;
    }
    if !d.packages.is_empty() {
        s.push_str(&format!("packages ({}):\n", d.packages.len()));
        for p in &d.packages {
            let arch = p
                .arch
                .as_deref()
                .map(|a| format!(".{}", E(a)))
                .unwrap_or_default();
            s.push_str(&format!(
                "  {:<10} {}{arch} {} -> {}\n",
                format!("{:?}", p.change).to_lowercase(),
                E(&p.name),
                E(p.old.as_deref().unwrap_or("-")),
                E(p.new.as_deref().unwrap_or("-"))
            ));
        }
    }
    if !d.privileged.is_empty() {
        s.push_str(&format!(
            "setuid/setgid/capabilities ({}):\n",
            d.privileged.len()
        ));
        for p in &d.privileged {
            let caps = match (&p.old, &p.new) {
                (None, None) => String::new(),
                (o, n) => format!(
                    " {} -> {}",
                    E(o.as_deref().unwrap_or("-")),
                    E(n.as_deref().unwrap_or("-"))
                ),
            };
            s.push_str(&format!(
                "  {:<10} {} {}{caps}\n",
                E(&p.change),
                E(&p.kind),
                E(&p.path)
            ));
        }
    }
    if !d.ports.is_empty() {
        s.push_str(&format!("ports ({}):\n", d.ports.len()));
        for p in &d.ports {
            s.push_str(&format!(
                "  {:<10} {}/{} {} ({}) at {}\n",
                E(&p.change),
                E(&p.protocol),
                p.port,
                E(p.address.as_deref().unwrap_or("*")),
                E(&p.service),
                E(&p.source)
            ));
        }
    }
    if !d.files.is_empty() {
        s.push_str(&format!(
            "files in system directories ({}):\n",
            d.files.len()
        ));
        for f in &d.files {
            let what = if f.differs.is_empty() {
                String::new()
            } else {
                format!(" ({})", E(&f.differs.join(", ")))
            };
            s.push_str(&format!("  {:<10} {}{what}\n", E(&f.change), E(&f.path)));
        }
    }
    s
}
