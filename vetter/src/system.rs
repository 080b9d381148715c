//! The system: distribution and release, architecture, kernels and initrds in /boot with Xen
//! guest support, init system, SELinux mode and labels.

use rootfs::Tree;
use serde::Serialize;

use crate::util::{self, read_text};
use crate::Problem;

/// A kernel found in /boot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Kernel {
    /// Path of the image (`/boot/vmlinuz-VERSION`).
    pub path: String,
    /// Version from the file name.
    pub version: String,
    /// Format: `bzImage`, `elf` (uncompressed vmlinux), `gzip`, or `unknown`.
    pub format: String,
    /// Matching initrd/initramfs, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// Matching config file, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Can boot as a Xen PV guest: `yes`, `no` or `unknown`.
    pub xen_pv: String,
    /// Can boot as a Xen PVH guest: `yes`, `no` or `unknown`.
    pub xen_pvh: String,
    /// How the Xen answers were found.
    pub xen_evidence: Vec<String>,
}

/// The system section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct System {
    /// Distribution id (`rhel`, `centos`, `scientific`, `fedora`, `debian`, `ubuntu`, `sles`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distro: Option<String>,
    /// Family: `redhat`, `debian`, `suse` or absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Release as written (`5.11`, `12`, `22.04`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Major release number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_release: Option<u32>,
    /// Human-readable name (`Scientific Linux SL release 5.11 (Boron)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
    /// Files the answers came from.
    pub release_files: Vec<String>,
    /// Architecture from ELF headers (`x86_64`, `i386`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The ELF file the architecture came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch_source: Option<String>,
    /// Kernels in /boot.
    pub kernels: Vec<Kernel>,
    /// Initrds in /boot not matched to a kernel.
    pub orphan_initrds: Vec<String>,
    /// `systemd`, `upstart`, `sysvinit` or `unknown`.
    pub init: String,
    /// SELinux mode from /etc/selinux/config (`enforcing`, `permissive`, `disabled`), absent if no config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    /// SELINUXTYPE from /etc/selinux/config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux_policy: Option<String>,
}

fn kv(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

fn major(release: &str) -> Option<u32> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// Parse a Red Hat style release line: "CentOS release 4.8 (Final)".
fn redhat_line(line: &str) -> (Option<String>, Option<String>) {
    let l = line.to_ascii_lowercase();
    let distro = if l.contains("centos") {
        "centos"
    } else if l.contains("scientific") {
        "scientific"
    } else if l.contains("fedora") {
        "fedora"
    } else if l.contains("rocky") {
        "rocky"
    } else if l.contains("alma") {
        "almalinux"
    } else if l.contains("enterprise") || l.contains("red hat") {
        "rhel"
    } else {
        "redhat"
    };
    let rel = line
        .split_whitespace()
        .skip_while(|w| !w.eq_ignore_ascii_case("release"))
        .nth(1)
        .map(str::to_string);
    (Some(distro.to_string()), rel)
}

fn distribution(tree: &Tree, s: &mut System) {
    let os_release = ["/etc/os-release", "/usr/lib/os-release"]
        .into_iter()
        .find_map(|f| read_text(tree, f).map(|t| (f, t)));
    if let Some((file, t)) = os_release {
        s.release_files.push(file.into());
        s.distro = kv(&t, "ID");
        s.release = kv(&t, "VERSION_ID");
        s.pretty_name = kv(&t, "PRETTY_NAME");
        let like = kv(&t, "ID_LIKE").unwrap_or_default();
        let id = s.distro.clone().unwrap_or_default();
        s.family = if [
            "rhel",
            "centos",
            "fedora",
            "scientific",
            "rocky",
            "almalinux",
            "ol",
        ]
        .contains(&id.as_str())
            || like.contains("rhel")
            || like.contains("fedora")
        {
            Some("redhat".into())
        } else if id == "debian" || like.contains("debian") || id == "ubuntu" {
            Some("debian".into())
        } else if id.starts_with("sles") || id.starts_with("opensuse") || like.contains("suse") {
            Some("suse".into())
        } else {
            None
        };
    }
    for f in [
        "/etc/redhat-release",
        "/etc/centos-release",
        "/etc/fedora-release",
    ] {
        if let Some(t) = read_text(tree, f) {
            s.release_files.push(f.into());
            let line = t.lines().next().unwrap_or("").trim().to_string();
            if s.distro.is_none() || s.release.is_none() {
                let (d, r) = redhat_line(&line);
                s.distro = s.distro.take().or(d);
                s.release = s.release.take().or(r);
            }
            if s.pretty_name.is_none() && !line.is_empty() {
                s.pretty_name = Some(line);
            }
            s.family.get_or_insert_with(|| "redhat".into());
            break;
        }
    }
    if let Some(t) = read_text(tree, "/etc/SuSE-release") {
        s.release_files.push("/etc/SuSE-release".into());
        s.family.get_or_insert_with(|| "suse".into());
        s.distro.get_or_insert_with(|| "sles".into());
        if s.release.is_none() {
            s.release = kv(&t, "VERSION");
        }
        if s.pretty_name.is_none() {
            s.pretty_name = t.lines().next().map(|l| l.trim().to_string());
        }
    }
    if let Some(t) = read_text(tree, "/etc/debian_version") {
        s.release_files.push("/etc/debian_version".into());
        s.family.get_or_insert_with(|| "debian".into());
        s.distro.get_or_insert_with(|| "debian".into());
        if s.release.is_none() {
            s.release = Some(t.trim().to_string());
        }
    }
    if let Some(t) = read_text(tree, "/etc/lsb-release") {
        s.release_files.push("/etc/lsb-release".into());
        if s.distro.is_none() {
            s.distro = kv(&t, "DISTRIB_ID").map(|d| d.to_ascii_lowercase());
        }
        if s.release.is_none() {
            s.release = kv(&t, "DISTRIB_RELEASE");
        }
        if s.pretty_name.is_none() {
            s.pretty_name = kv(&t, "DISTRIB_DESCRIPTION");
        }
    }
    s.major_release = s.release.as_deref().and_then(major);
}

fn architecture(tree: &Tree, s: &mut System) {
    let mut candidates = vec![
        "/bin/sh".to_string(),
        "/sbin/init".to_string(),
        "/bin/bash".to_string(),
        "/bin/ls".to_string(),
    ];
    for d in ["/lib64", "/lib", "/usr/lib64", "/usr/lib"] {
        for n in util::list_dir(tree, d) {
            if n.starts_with("libc.so.") || n.starts_with("libc-2.") {
                candidates.push(format!("{d}/{n}"));
            }
        }
        for n in util::list_dir(tree, d) {
            if n.contains("-linux-gnu") {
                candidates.push(format!("{d}/{n}/libc.so.6"));
            }
        }
    }
    for c in candidates {
        let Some(id) = util::resolve(tree, &c) else {
            continue;
        };
        let rootfs::NodeKind::Regular(content) = &tree.node(id).kind else {
            continue;
        };
        let mut head = [0u8; 64];
        let Ok(mut r) = content.reader() else {
            continue;
        };
        let mut got = 0usize;
        while got < head.len() {
            match std::io::Read::read(&mut r, &mut head[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        if let Some(m) = crate::elf::machine_of(&head[..got]) {
            s.arch = Some(m);
            s.arch_source = Some(c);
            return;
        }
    }
}

fn init_system(tree: &Tree) -> String {
    let target = util::readlink(tree, "/sbin/init").unwrap_or_default();
    if target.contains("systemd") {
        return "systemd".into();
    }
    if target.is_empty()
        && util::readlink(tree, "/usr/sbin/init")
            .unwrap_or_default()
            .contains("systemd")
    {
        return "systemd".into();
    }
    if (util::exists(tree, "/sbin/initctl") || util::exists(tree, "/usr/sbin/initctl"))
        && !util::list_dir(tree, "/etc/init").is_empty()
        && !util::exists(tree, "/sbin/upstart-initctl-shim")
    {
        return "upstart".into();
    }
    if util::exists(tree, "/etc/inittab") || util::exists(tree, "/sbin/init") {
        if util::exists(tree, "/lib/systemd/systemd") && !util::exists(tree, "/etc/inittab") {
            return "systemd".into();
        }
        return "sysvinit".into();
    }
    if util::exists(tree, "/lib/systemd/systemd") || util::exists(tree, "/usr/lib/systemd/systemd")
    {
        return "systemd".into();
    }
    "unknown".into()
}

/// Version of a /boot file name, if it is a kernel or initrd.
fn boot_version(name: &str) -> Option<(&'static str, String)> {
    for p in ["vmlinuz-", "vmlinux-", "bzImage-"] {
        if let Some(v) = name.strip_prefix(p) {
            return Some(("kernel", v.to_string()));
        }
    }
    if let Some(v) = name.strip_prefix("initrd.img-") {
        return Some(("initrd", v.to_string()));
    }
    for p in ["initramfs-", "initrd-"] {
        if let Some(v) = name.strip_prefix(p) {
            let v = v.strip_suffix(".img").unwrap_or(v);
            let v = v
                .strip_suffix("kdump")
                .map(|s| s.trim_end_matches('-').trim_end_matches('.'))
                .unwrap_or(v);
            return Some(("initrd", v.to_string()));
        }
    }
    None
}

/// Xen support from a kernel config text: (pv, pvh, evidence).
fn xen_from_config(text: &str) -> (Option<bool>, Option<bool>, Vec<String>) {
    let mut set = std::collections::HashMap::new();
    for l in text.lines() {
        let l = l.trim();
        if let Some((k, v)) = l.split_once('=') {
            set.insert(k.to_string(), v.to_string());
        }
    }
    let on = |k: &str| set.get(k).is_some_and(|v| v == "y");
    let mut ev = Vec::new();
    let xen = on("CONFIG_XEN");
    if xen {
        ev.push("CONFIG_XEN=y".to_string());
    }
    // Since Linux 4.14 PV guest support is CONFIG_XEN_PV; before, CONFIG_XEN alone meant PV (x86).
    let pv = if set.contains_key("CONFIG_XEN_PV") || text.contains("CONFIG_XEN_PV is not set") {
        if on("CONFIG_XEN_PV") {
            ev.push("CONFIG_XEN_PV=y".into());
        }
        on("CONFIG_XEN_PV")
    } else {
        xen
    };
    let pvh = on("CONFIG_XEN_PVH") || on("CONFIG_PVH");
    if pvh {
        ev.push("CONFIG_XEN_PVH=y".into());
    }
    (Some(pv), Some(pvh), ev)
}

/// Xen ELF notes of an uncompressed vmlinux: (pv, pvh, evidence).
pub fn xen_from_elf(bytes: &[u8]) -> (Option<bool>, Option<bool>, Vec<String>) {
    let Ok(elf) = goblin::elf::Elf::parse(bytes) else {
        return (None, None, vec!["not a parsable ELF".into()]);
    };
    let mut ev = Vec::new();
    let mut pv = false;
    let mut pvh = false;
    if let Some(notes) = elf.iter_note_headers(bytes) {
        for n in notes.flatten() {
            if n.name == "Xen" {
                // XEN_ELFNOTE_ENTRY (1) / HYPERCALL_PAGE (2) mean PV; PHYS32_ENTRY (18) means PVH.
                if n.n_type == 18 {
                    pvh = true;
                } else {
                    pv = true;
                }
            }
        }
    }
    if pv {
        ev.push("Xen ELF notes".into());
    }
    if pvh {
        ev.push("XEN_ELFNOTE_PHYS32_ENTRY".into());
    }
    let guest_section = elf
        .section_headers
        .iter()
        .any(|s| elf.shdr_strtab.get_at(s.sh_name) == Some("__xen_guest"));
    if guest_section {
        pv = true;
        ev.push("__xen_guest section".into());
    }
    (Some(pv), Some(pvh), ev)
}

fn yn(v: Option<bool>) -> String {
    match v {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => "unknown".into(),
    }
}

fn kernels(tree: &Tree, s: &mut System, problems: &mut Vec<Problem>) {
    let names = util::list_dir(tree, "/boot");
    let mut initrds: Vec<(String, String)> = Vec::new();
    for n in &names {
        if let Some(("initrd", v)) = boot_version(n) {
            initrds.push((v, format!("/boot/{n}")));
        }
    }
    let mut used = std::collections::HashSet::new();
    for n in &names {
        let Some(("kernel", version)) = boot_version(n) else {
            continue;
        };
        let path = format!("/boot/{n}");
        let mut k = Kernel {
            path: path.clone(),
            version: version.clone(),
            ..Default::default()
        };
        if let Some((_, p)) = initrds.iter().find(|(v, _)| *v == version) {
            k.initrd = Some(p.clone());
            used.insert(p.clone());
        }
        let cfg = format!("/boot/config-{version}");
        let (mut pv, mut pvh, mut ev) = (None, None, Vec::new());
        if let Some(t) = read_text(tree, &cfg) {
            k.config = Some(cfg.clone());
            let (a, b, e) = xen_from_config(&t);
            pv = a;
            pvh = b;
            ev.extend(e.into_iter().map(|e| format!("{cfg}: {e}")));
        }
        let head = util::resolve(tree, &path)
            .and_then(|id| match &tree.node(id).kind {
                rootfs::NodeKind::Regular(c) => {
                    let mut r = c.reader().ok()?;
                    let mut b = vec![0u8; 1024];
                    let mut got = 0;
                    while got < b.len() {
                        match std::io::Read::read(&mut r, &mut b[got..]) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got += n,
                        }
                    }
                    b.truncate(got);
                    Some(b)
                }
                _ => None,
            })
            .unwrap_or_default();
        k.format = if crate::elf::is_elf(&head) {
            "elf".into()
        } else if head.get(0x202..0x206) == Some(b"HdrS".as_slice()) {
            "bzImage".into()
        } else if head.starts_with(&[0x1f, 0x8b]) {
            "gzip".into()
        } else {
            "unknown".into()
        };
        if k.format == "elf" && (pv != Some(true) || pvh != Some(true)) {
            match util::read_file(tree, &path, crate::elf::MAX_ELF_BYTES) {
                Ok(bytes) => {
                    let (a, b, e) = xen_from_elf(&bytes);
                    pv = if pv == Some(true) { pv } else { a.or(pv) };
                    pvh = if pvh == Some(true) { pvh } else { b.or(pvh) };
                    ev.extend(e.into_iter().map(|e| format!("{path}: {e}")));
                }
                Err(e) => problems.push(Problem {
                    path: path.clone(),
                    message: e.to_string(),
                }),
            }
        }
        if k.config.is_none() && k.format != "elf" {
            ev.push(format!(
                "{path}: compressed image without a config file; not decompressed"
            ));
        }
        k.xen_pv = yn(pv);
        k.xen_pvh = yn(pvh);
        k.xen_evidence = ev;
        s.kernels.push(k);
    }
    s.orphan_initrds = initrds
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| !used.contains(p))
        .collect();
}

/// Gather the system section.
pub fn inspect(tree: &Tree, problems: &mut Vec<Problem>) -> System {
    let mut s = System::default();
    distribution(tree, &mut s);
    architecture(tree, &mut s);
    kernels(tree, &mut s, problems);
    s.init = init_system(tree);
    if let Some(t) = read_text(tree, "/etc/selinux/config") {
        s.selinux = kv(&t, "SELINUX").map(|v| v.to_ascii_lowercase());
        s.selinux_policy = kv(&t, "SELINUXTYPE");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_lines_and_boot_names() {
        assert_eq!(
            redhat_line("Scientific Linux SL release 5.11 (Boron)"),
            (Some("scientific".into()), Some("5.11".into()))
        );
        assert_eq!(
            redhat_line("CentOS release 4.8 (Final)"),
            (Some("centos".into()), Some("4.8".into()))
        );
        assert_eq!(
            boot_version("vmlinuz-2.6.18-398.el5xen"),
            Some(("kernel", "2.6.18-398.el5xen".into()))
        );
        assert_eq!(
            boot_version("initrd-2.6.18-398.el5xen.img"),
            Some(("initrd", "2.6.18-398.el5xen".into()))
        );
        assert_eq!(
            boot_version("initrd.img-6.1.0-9-amd64"),
            Some(("initrd", "6.1.0-9-amd64".into()))
        );
        assert_eq!(
            boot_version("initramfs-3.10.0.img"),
            Some(("initrd", "3.10.0".into()))
        );
    }

    #[test]
    fn xen_config() {
        let (pv, pvh, _) = xen_from_config("CONFIG_XEN=y\nCONFIG_XEN_PV=y\nCONFIG_XEN_PVH=y\n");
        assert_eq!((pv, pvh), (Some(true), Some(true)));
        let (pv, pvh, _) =
            xen_from_config("CONFIG_XEN=y\n# CONFIG_XEN_PV is not set\nCONFIG_XEN_PVH=y\n");
        assert_eq!((pv, pvh), (Some(false), Some(true)));
        let (pv, pvh, _) = xen_from_config("CONFIG_XEN=y\n");
        assert_eq!((pv, pvh), (Some(true), Some(false)));
        let (pv, _, _) = xen_from_config("# CONFIG_XEN is not set\n");
        assert_eq!(pv, Some(false));
    }
}
