//! Facts the builder detects in the finished tree: architecture (from ELF headers), OS (from
//! os-release or the distribution's release file), kernel and initrd (from /boot), installed
//! packages (from the image's own rpm or dpkg database).

use std::collections::BTreeMap;
use std::io::Read;

use rootfs::{NodeKind, Tree};

use crate::steps::{list_dir, read_text};

pub use crate::names::normalize_arch;

/// The architecture an ELF header says (ELF spec: `e_ident[EI_CLASS]`, `[EI_DATA]`, `e_machine` at 18).
pub fn elf_arch(head: &[u8]) -> Option<&'static str> {
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let little = head[5] == 1;
    let m = if little {
        u16::from_le_bytes([head[18], head[19]])
    } else {
        u16::from_be_bytes([head[18], head[19]])
    };
    let is64 = head[4] == 2;
    Some(match m {
        3 => "i686",
        62 => "x86_64",
        183 => "aarch64",
        40 => "armv7l",
        20 => "ppc",
        21 if little => "ppc64le",
        21 => "ppc64",
        22 if is64 => "s390x",
        243 if is64 => "riscv64",
        _ => return None,
    })
}

fn head_of(tree: &Tree, path: &str) -> Option<Vec<u8>> {
    let id = tree.resolve(path.as_bytes(), true).ok()?;
    let NodeKind::Regular(c) = &tree.node(id).kind else {
        return None;
    };
    let mut r = c.reader().ok()?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    Some(buf[..n].to_vec())
}

/// The architecture most of the image's programs are built for.
pub fn detect_arch(tree: &Tree) -> Option<&'static str> {
    let mut votes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut candidates: Vec<String> = [
        "/bin/sh",
        "/sbin/init",
        "/bin/ls",
        "/usr/bin/env",
        "/bin/bash",
        "/usr/lib/systemd/systemd",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for dir in ["/bin", "/sbin", "/usr/bin", "/usr/sbin"] {
        candidates.extend(
            list_dir(tree, dir)
                .into_iter()
                .take(40)
                .map(|n| crate::steps::join(dir, &n)),
        );
    }
    for p in candidates.iter().take(200) {
        if let Some(a) = head_of(tree, p).as_deref().and_then(elf_arch) {
            *votes.entry(a).or_default() += 1;
        }
    }
    votes
        .into_iter()
        .max_by_key(|(a, n)| (*n, std::cmp::Reverse(*a)))
        .map(|(a, _)| a)
}

/// The operating system of the image (a field of the manifest).
pub use bundle::manifest::OsInfo;

fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// Read /etc/os-release, else /etc/redhat-release (and friends), else /etc/debian_version.
pub fn detect_os(tree: &Tree) -> OsInfo {
    for p in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Ok(Some(t)) = read_text(tree, p) {
            return OsInfo {
                id: os_release_value(&t, "ID").unwrap_or_else(|| "unknown".into()),
                version: os_release_value(&t, "VERSION_ID").unwrap_or_default(),
                name: os_release_value(&t, "PRETTY_NAME")
                    .or_else(|| os_release_value(&t, "NAME"))
                    .unwrap_or_default(),
            };
        }
    }
    for p in [
        "/etc/redhat-release",
        "/etc/fedora-release",
        "/etc/sl-release",
        "/etc/centos-release",
    ] {
        if let Ok(Some(t)) = read_text(tree, p) {
            let line = t.lines().next().unwrap_or("").trim().to_string();
            let lower = line.to_ascii_lowercase();
            let id = if lower.contains("scientific") {
                "scientific"
            } else if lower.contains("centos") {
                "centos"
            } else if lower.contains("fedora") {
                "fedora"
            } else if lower.contains("red hat") {
                "rhel"
            } else {
                "redhat-like"
            };
            let version = line
                .split_whitespace()
                .skip_while(|w| *w != "release")
                .nth(1)
                .unwrap_or("")
                .to_string();
            return OsInfo {
                id: id.into(),
                version,
                name: line,
            };
        }
    }
    if let Ok(Some(t)) = read_text(tree, "/etc/debian_version") {
        let v = t.trim().to_string();
        return OsInfo {
            id: "debian".into(),
            version: v.clone(),
            name: format!("Debian {v}"),
        };
    }
    OsInfo {
        id: "unknown".into(),
        ..Default::default()
    }
}

/// Kernel and initrd found in /boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// Kernel path.
    pub kernel: String,
    /// Initrd path, if one matches the kernel.
    pub initrd: Option<String>,
}

/// The newest `/boot/vmlinuz-*` (rpm version order) and its initrd.
pub fn detect_boot(tree: &Tree) -> Option<BootFiles> {
    let names = list_dir(tree, "/boot");
    let newest = names
        .iter()
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .filter(|v| !v.contains("rescue"))
        .max_by(|a, b| pkgdb::version::rpmvercmp(a, b))?
        .to_string();
    let initrd = [
        format!("initramfs-{newest}.img"),
        format!("initrd-{newest}.img"),
        format!("initrd.img-{newest}"),
    ]
    .into_iter()
    .find(|n| names.contains(n))
    .map(|n| format!("/boot/{n}"));
    Some(BootFiles {
        kernel: format!("/boot/vmlinuz-{newest}"),
        initrd,
    })
}

pub use bundle::KernelFlavour;

/// The flavour of the kernel at `kernel` (a `/boot/vmlinuz-VERSION` path). The kernel's own
/// `/boot/config-VERSION` decides when the image has it: `CONFIG_HVC_XEN=y` (the pvops Xen
/// console driver) is pvops, `CONFIG_X86_XEN=y`/`CONFIG_X86_64_XEN=y` (the xenlinux
/// architectures) is xenlinux. Otherwise the file name: a version that says `xen`
/// (`2.6.18-419.el5xen`) or is older than 2.6.26 is xenlinux, anything else pvops. Returns the flavour and how it was
/// found.
pub fn detect_kernel_flavour(tree: &Tree, kernel: &str) -> (KernelFlavour, &'static str) {
    let version = bundle::boot::kernel_version(kernel);
    if let Ok(Some(config)) = read_text(tree, &format!("/boot/config-{version}")) {
        let set = |key: &str| config.lines().any(|l| l.trim() == format!("{key}=y"));
        if set("CONFIG_HVC_XEN") {
            return (KernelFlavour::Pvops, "its config has CONFIG_HVC_XEN=y");
        }
        if set("CONFIG_X86_XEN") || set("CONFIG_X86_64_XEN") {
            return (
                KernelFlavour::Xenlinux,
                "its config has CONFIG_X86_XEN/CONFIG_X86_64_XEN=y",
            );
        }
    }
    KernelFlavour::guess_from_kernel_path(kernel)
}

/// Where the image keeps its rpm database, if it has one.
pub fn rpmdb_dir(tree: &Tree) -> Option<&'static str> {
    ["/usr/lib/sysimage/rpm", "/var/lib/rpm"]
        .into_iter()
        .find(|d| {
            ["rpmdb.sqlite", "Packages", "Packages.db"].iter().any(|f| {
                tree.resolve(crate::steps::join(d, f).as_bytes(), true)
                    .is_ok()
            })
        })
}

/// Reads rpm database files out of the tree.
pub struct TreeDb<'a> {
    /// The tree.
    pub tree: &'a Tree,
    /// The database directory in it.
    pub dir: String,
}

/// Largest rpm database file read into memory.
pub const MAX_RPMDB_FILE: u64 = 1 << 30;

impl pkgdb::rpmdb::DbSource for TreeDb<'_> {
    fn read(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        let path = crate::steps::join(&self.dir, name);
        let Ok(id) = self.tree.resolve(path.as_bytes(), true) else {
            return Ok(None);
        };
        match &self.tree.node(id).kind {
            NodeKind::Regular(c) => c.read_to_vec(MAX_RPMDB_FILE).map(Some),
            _ => Ok(None),
        }
    }
}

/// One installed package in the manifest's summary.
pub use bundle::manifest::PackageSummary;

/// Why the image's package database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    /// The rpm database.
    #[error("reading the image's rpm database: {0}")]
    Rpm(#[from] pkgdb::Error),
    /// dpkg's status file or its journal.
    #[error("reading the image's dpkg database: {0}")]
    Dpkg(#[from] pkgdb::dpkg::DpkgError),
}

/// The image's installed packages, sorted, and the database they come from: the rpm database
/// (`sqlite`, `ndb`, `bdb`; gpg-pubkey entries left out), else dpkg's (`dpkg`: the packages
/// `dpkg-query -W` lists), read only when `dpkg_native` (a Debian-family image). `Ok(None)`
/// when the image has neither.
pub fn packages(
    tree: &Tree,
    dpkg_native: bool,
) -> Result<Option<(String, Vec<PackageSummary>)>, PackagesError> {
    if let Some(dir) = rpmdb_dir(tree) {
        return Ok(Some(rpm_packages(tree, dir)?));
    }
    if !dpkg_native {
        return Ok(None);
    }
    Ok(dpkg_packages(tree)?.map(|v| ("dpkg".to_string(), v)))
}

fn rpm_packages(tree: &Tree, dir: &str) -> Result<(String, Vec<PackageSummary>), pkgdb::Error> {
    let src = TreeDb {
        tree,
        dir: dir.to_string(),
    };
    let (backend, _) = pkgdb::rpmdb::detect(&src)?;
    let mut v: Vec<PackageSummary> = pkgdb::rpmdb::read_packages(&src)?
        .into_iter()
        .filter(|p| !p.is_gpg_pubkey)
        .map(|p| PackageSummary {
            evr: match p.epoch {
                Some(e) => format!("{e}:{}-{}", p.version, p.release),
                None => format!("{}-{}", p.version, p.release),
            },
            name: p.name,
            arch: p.arch.unwrap_or_default(),
        })
        .collect();
    v.sort();
    let b = match backend {
        pkgdb::rpmdb::Backend::Sqlite => "sqlite",
        pkgdb::rpmdb::Backend::Ndb => "ndb",
        pkgdb::rpmdb::Backend::Bdb => "bdb",
    };
    Ok((b.to_string(), v))
}

/// dpkg's administrative directory in the image.
pub const DPKG_ADMIN: &str = "/var/lib/dpkg";

/// The bytes of the regular file `path` of the tree (a final symlink is not followed), at most
/// [`pkgdb::dpkg::MAX_STATUS`] bytes; `None` when there is no such regular file.
fn dpkg_file(tree: &Tree, path: &str) -> Result<Option<Vec<u8>>, pkgdb::dpkg::DpkgError> {
    let Some(id) = tree.lookup(path.as_bytes()) else {
        return Ok(None);
    };
    match &tree.node(id).kind {
        NodeKind::Regular(c) => c
            .read_to_vec(pkgdb::dpkg::MAX_STATUS as u64)
            .map(Some)
            .map_err(|source| pkgdb::dpkg::DpkgError::Io {
                path: path.to_string(),
                source,
            }),
        _ => Ok(None),
    }
}

/// The packages of the image's dpkg database (`/var/lib/dpkg/status` and its journal
/// `updates/NNNN`, read as dpkg reads them), as `dpkg-query -W` lists them (every state but
/// `not-installed`); `evr` is the version as dpkg prints it. `Ok(None)` without a status file.
pub fn dpkg_packages(tree: &Tree) -> Result<Option<Vec<PackageSummary>>, pkgdb::dpkg::DpkgError> {
    let status = format!("{DPKG_ADMIN}/status");
    let Some(bytes) = dpkg_file(tree, &status)? else {
        return Ok(None);
    };
    let mut db = pkgdb::dpkg::Db::new();
    db.add_file(&bytes, &status, pkgdb::dpkg::FileKind::Status)?;
    let updates = format!("{DPKG_ADMIN}/updates");
    let is_dir = tree
        .lookup(updates.as_bytes())
        .is_some_and(|id| tree.entries(id).is_some());
    if is_dir {
        let names = list_dir(tree, &updates);
        for n in pkgdb::dpkg::update_names(&names, &updates)? {
            let f = crate::steps::join(&updates, &n);
            if let Some(b) = dpkg_file(tree, &f)? {
                db.add_file(&b, &f, pkgdb::dpkg::FileKind::Update)?;
            }
        }
    }
    let mut v: Vec<PackageSummary> = db
        .into_packages()
        .into_iter()
        .filter(|p| p.is_listed())
        .map(|p| PackageSummary {
            name: p.name,
            evr: p.version,
            arch: p.arch.unwrap_or_default(),
        })
        .collect();
    v.sort();
    Ok(Some(v))
}

/// `ID_LIKE` of the image's os-release (`/etc/os-release`, else `/usr/lib/os-release`), split
/// into words; empty when absent.
pub fn os_id_like(tree: &Tree) -> Vec<String> {
    for p in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Ok(Some(t)) = read_text(tree, p) {
            return os_release_value(&t, "ID_LIKE")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_machines() {
        let mut h = vec![0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[18] = 62;
        assert_eq!(elf_arch(&h), Some("x86_64"));
        h[4] = 1;
        h[18] = 3;
        assert_eq!(elf_arch(&h), Some("i686"));
        assert_eq!(elf_arch(b"#!/bin/sh\n"), None);
        assert_eq!(normalize_arch("amd64"), Some("x86_64"));
        assert_eq!(normalize_arch("sparc"), None);
    }
}
