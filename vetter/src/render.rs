//! The terminal summary of an [`Inventory`]: what a reviewer reads first.

use std::fmt::Write;

use rootfs::escape::Escaped as E;

use crate::Inventory;

/// A titled list; every item is escaped (items carry paths and text from the image).
fn list(out: &mut String, title: &str, items: &[String], max: usize) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title} ({}):", items.len());
    for i in items.iter().take(max) {
        let _ = writeln!(out, "    {}", E(i));
    }
    if items.len() > max {
        let _ = writeln!(out, "    ... and {} more", items.len() - max);
    }
}

/// Render the human-readable summary. Every string from the image (names, paths, versions,
/// configuration text) is escaped with [`rootfs::escape`]: control characters, C1 and bidi
/// characters become visible escapes, so an image cannot forge or hide lines of the summary.
pub fn summary(inv: &Inventory) -> String {
    let mut o = String::new();
    let s = &inv.system;
    let _ = writeln!(o, "System");
    let _ = writeln!(
        o,
        "  {} ({} {}), arch {}",
        E(s.pretty_name.as_deref().unwrap_or("unknown distribution")),
        E(s.distro.as_deref().unwrap_or("?")),
        E(s.release.as_deref().unwrap_or("?")),
        E(s.arch.as_deref().unwrap_or("unknown"))
    );
    let _ = writeln!(
        o,
        "  init {}, SELinux {}{}",
        E(&s.init),
        E(s.selinux.as_deref().unwrap_or("not configured")),
        if inv.files.selinux_labelled > 0 {
            format!(" ({} labelled inodes)", inv.files.selinux_labelled)
        } else {
            String::new()
        }
    );
    for k in &s.kernels {
        let _ = writeln!(
            o,
            "  kernel {} ({}){}: Xen PV {}, PVH {}",
            E(&k.version),
            E(&k.format),
            k.initrd
                .as_ref()
                .map(|i| format!(", initrd {}", E(i)))
                .unwrap_or_default(),
            E(&k.xen_pv),
            E(&k.xen_pvh)
        );
    }
    if s.kernels.is_empty() {
        let _ = writeln!(o, "  no kernel in /boot");
    }

    let f = &inv.files;
    let _ = writeln!(o, "Files");
    let _ = writeln!(
        o,
        "  {} inodes, {} regular files, {} bytes, {} hashed",
        f.inodes, f.regular_files, f.total_bytes, f.hashed
    );
    list(&mut o, "setuid", &f.setuid, 50);
    list(&mut o, "setgid", &f.setgid, 50);
    let caps: Vec<String> = f
        .capabilities
        .iter()
        .map(|c| match (&c.caps, &c.error) {
            (Some(k), _) => format!("{} {}", c.path, k.text),
            (None, Some(e)) => format!("{} ({e})", c.path),
            _ => c.path.clone(),
        })
        .collect();
    list(&mut o, "capabilities", &caps, 50);
    list(&mut o, "world-writable files", &f.world_writable, 20);
    list(
        &mut o,
        "world-writable directories without sticky bit",
        &f.world_writable_dirs_without_sticky,
        20,
    );
    list(&mut o, "devices outside /dev", &f.devices_outside_dev, 20);
    let unowned: Vec<String> = f
        .unknown_owner
        .iter()
        .map(|u| format!("{} (uid {}, gid {})", u.path, u.uid, u.gid))
        .collect();
    list(&mut o, "owned by unknown user/group", &unowned, 20);
    let nh: Vec<String> = f
        .not_hashed
        .iter()
        .map(|n| format!("{} ({} bytes): {}", n.path, n.size, n.reason))
        .collect();
    list(&mut o, "not hashed", &nh, 10);

    let p = &inv.packages;
    let _ = writeln!(o, "Packages");
    match &p.format {
        Some(fmt) => {
            let _ = writeln!(
                o,
                "  {} packages ({} at {}), {} signing keys",
                p.list.len(),
                E(fmt),
                E(p.database.as_deref().unwrap_or("?")),
                p.gpg_keys.len()
            );
            let _ = writeln!(
                o,
                "  {} packaged files verified, {} differ",
                p.verified_files,
                p.mismatches.len()
            );
            let mm: Vec<String> = p
                .mismatches
                .iter()
                .map(|m| {
                    format!(
                        "{} [{}]{} ({})",
                        m.path,
                        m.differs.join(","),
                        if m.config { " config" } else { "" },
                        m.package
                    )
                })
                .collect();
            list(&mut o, "changed packaged files", &mm, 30);
            let _ = writeln!(
                o,
                "  {} files in system directories owned by no package",
                p.unowned_system_files.len()
            );
        }
        None => {
            let _ = writeln!(o, "  no package database found");
        }
    }
    if let Some(e) = &p.error {
        let _ = writeln!(o, "  error: {}", E(e));
    }

    let sv = &inv.services;
    let _ = writeln!(o, "Services ({})", E(&sv.init));
    if let Some(rl) = sv.default_runlevel {
        let _ = writeln!(o, "  default runlevel {rl}");
    }
    if let Some(t) = &sv.default_target {
        let _ = writeln!(o, "  default target {}", E(t));
    }
    for s in sv.list.iter().filter(|s| s.enabled) {
        if s.ports.is_empty() {
            let what = if s.port_status == "none" {
                "no network port"
            } else {
                "port unknown"
            };
            let _ = writeln!(o, "  {} [{}]: enabled, {what}", E(&s.name), E(&s.kind));
        }
        for p in &s.ports {
            let _ = writeln!(
                o,
                "  {} [{}]: {}/{} on {} ({:?}){} <- {}{}",
                E(&s.name),
                E(&s.kind),
                p.port,
                E(&p.protocol),
                E(p.address.as_deref().unwrap_or("*")),
                p.bind,
                if p.default { " default" } else { "" },
                E(&p.source.file),
                p.source.line.map(|l| format!(":{l}")).unwrap_or_default()
            );
        }
    }
    let masked: Vec<String> = sv
        .list
        .iter()
        .filter(|s| s.state == "masked")
        .map(|s| s.name.clone())
        .collect();
    list(&mut o, "masked", &masked, 20);

    let _ = writeln!(o, "ELF hardening");
    for e in &inv.elf {
        match (&e.info, &e.error) {
            (Some(i), _) => {
                let _ = writeln!(
                    o,
                    "  {} [{}]: {} PIE {:?}, RELRO {:?}, NX {}, canary {}, FORTIFY {}{}{}",
                    E(&e.path),
                    E(&e.reasons.join(",")),
                    E(&i.machine),
                    i.pie,
                    i.relro,
                    if i.nx { "yes" } else { "no" },
                    if i.canary { "yes" } else { "no" },
                    if i.fortified.is_empty() { "no" } else { "yes" },
                    if i.rpath.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", RPATH {}",
                            E(&i.rpath
                                .iter()
                                .map(|r| r.entry.as_str())
                                .collect::<Vec<_>>()
                                .join(":"))
                        )
                    },
                    if i.runpath.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", RUNPATH {}",
                            E(&i.runpath
                                .iter()
                                .map(|r| r.entry.as_str())
                                .collect::<Vec<_>>()
                                .join(":"))
                        )
                    },
                );
            }
            (None, Some(err)) => {
                let _ = writeln!(
                    o,
                    "  {} [{}]: {}",
                    E(&e.path),
                    E(&e.reasons.join(",")),
                    E(err)
                );
            }
            _ => {}
        }
    }

    let a = &inv.accounts;
    let _ = writeln!(o, "Accounts");
    let _ = writeln!(
        o,
        "  {} accounts; uid 0: {}",
        a.users.len(),
        E(&a.uid0.join(", "))
    );
    list(&mut o, "empty password", &a.empty_password, 20);
    list(
        &mut o,
        "shadowed but no shadow entry",
        &a.missing_shadow,
        20,
    );
    list(
        &mut o,
        "system accounts with a login shell",
        &a.system_with_shell,
        20,
    );
    list(&mut o, "duplicate names", &a.duplicate_names, 20);
    let dup: Vec<String> = a
        .duplicate_uids
        .iter()
        .map(|(u, n)| format!("uid {u}: {}", n.join(", ")))
        .collect();
    list(&mut o, "duplicate uids", &dup, 20);
    let sudo: Vec<String> = a
        .sudoers
        .iter()
        .map(|r| {
            format!(
                "{}:{}: {}",
                r.at.file,
                r.at.line.unwrap_or(0),
                r.at.text.as_deref().unwrap_or("")
            )
        })
        .collect();
    list(&mut o, "sudoers rules", &sudo, 20);
    list(
        &mut o,
        "ssh host private keys (should be purged)",
        &a.ssh_host_keys,
        20,
    );
    let ak: Vec<String> = a
        .authorized_keys
        .iter()
        .map(|k| format!("{} ({}): {} keys", k.path, k.user, k.keys))
        .collect();
    list(&mut o, "authorized_keys", &ak, 20);
    let _ = writeln!(
        o,
        "  sshd PermitRootLogin {}, PasswordAuthentication {}",
        E(a.permit_root_login
            .as_ref()
            .map(|s| s.value.as_str())
            .unwrap_or("(default)")),
        E(a.password_authentication
            .as_ref()
            .map(|s| s.value.as_str())
            .unwrap_or("(default yes)"))
    );

    let _ = writeln!(o, "Credentials");
    let creds: Vec<String> = inv
        .credentials
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                c.kind,
                c.path,
                c.line.map(|l| format!(":{l}")).unwrap_or_default()
            )
        })
        .collect();
    if creds.is_empty() {
        let _ = writeln!(o, "  none found");
    }
    list(&mut o, "found", &creds, 50);
    if !inv.problems.is_empty() {
        let pr: Vec<String> = inv
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        let _ = writeln!(o, "Problems");
        list(&mut o, "could not read or parse", &pr, 30);
    }
    let damaged: Vec<String> = inv
        .packages
        .damaged
        .iter()
        .map(|d| format!("{} ({}): {}", d.path, d.format, d.reason))
        .chain(
            inv.reader_damage
                .iter()
                .map(|d| format!("{}: {}", d.path, d.reason)),
        )
        .collect();
    if !damaged.is_empty() {
        let _ = writeln!(o, "Incomplete (wafer vet: could not vet)");
        list(&mut o, "read only in part", &damaged, 30);
    }
    o
}
