//! A stock Debian 12 server (`debootstrap --variant=minbase --include=linux-image-amd64,systemd,
//! systemd-sysv,cloud-init,openssh-server bookworm`) vetted with `docs/policy.example.toml` has
//! no false blocking finding: what blocks is exactly the ssh host keys debootstrap generated
//! (`ls /etc/ssh/ssh_host_*_key`) and the setuid/setgid files (`find -perm /6000`) the example's
//! Red Hat allowlist does not list. No PEM header string in a binary or document is a key, no
//! enabled systemd unit has "unknown" ports, and the example key cloud-init ships is reported
//! with its package (`dpkg-query -S`) at low severity.
//!
//! The tree is made once under `$CARGO_TARGET_TMPDIR/debian-bookworm-server` and reused. Needs
//! root (debootstrap), network access to deb.debian.org, and the Debian packages debootstrap,
//! dpkg and findutils.

mod common;
mod debian_rootfs {
    pub mod debootstrap;
}

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::run;
use rootfs::dir::{read_dir, DirOptions};
use vetter::policy::{evaluate, EvalContext, Outcome, Policy, Severity};

#[test]
fn debian_server_vetted_with_the_example_policy_has_no_false_blocking_finding() {
    let root = debian_rootfs::debootstrap::cached(
        "debian-bookworm-server",
        &[
            "--variant=minbase",
            // python3-cffi-backend: debootstrap does not resolve the virtual package
            // python3-cryptography needs (python3-cffi-backend-api-*).
            "--include=linux-image-amd64,systemd,systemd-sysv,cloud-init,openssh-server,python3-cffi-backend",
            "bookworm",
        ],
        "http://deb.debian.org/debian",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let tree = read_dir(&root, &DirOptions::default()).unwrap();
    let inv = vetter::inspect(&tree, &vetter::InspectOptions::default()).unwrap();
    assert_eq!(inv.system.distro.as_deref(), Some("debian"));
    assert!(
        inv.packages.damaged.is_empty(),
        "{:?}",
        inv.packages.damaged
    );
    let policy =
        Policy::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/policy.example.toml"))
            .unwrap();
    let v = evaluate(
        &inv,
        &policy,
        &EvalContext::new(1_780_272_000, "debian-server", Some("ops".into())),
    );
    let report = vetter::report::terminal(&v, false);
    assert_eq!(v.outcome, Outcome::Fail);

    // The oracles: find for setuid/setgid files, ls for host keys.
    let rel = |p: &str| p.strip_prefix(root.to_str().unwrap()).unwrap().to_string();
    let privileged: BTreeSet<String> = run(Command::new("find")
        .arg(&root)
        .args(["-type", "f", "-perm", "/6000"]))
    .lines()
    .map(rel)
    // Allowed by the example: passwd "as shipped by package passwd".
    .filter(|p| p != "/usr/bin/passwd")
    .collect();
    let host_keys: BTreeSet<String> = std::fs::read_dir(root.join("etc/ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ssh_host_") && n.ends_with("_key"))
        .map(|n| format!("/etc/ssh/{n}"))
        .collect();
    assert_eq!(host_keys.len(), 3, "{host_keys:?}");
    let mut want: BTreeSet<(String, String)> = privileged
        .iter()
        .map(|p| ("priv.allowlist".to_string(), p.clone()))
        .collect();
    want.extend(
        host_keys
            .iter()
            .map(|p| ("files.host-keys".to_string(), p.clone())),
    );
    let blocking: BTreeSet<(String, String)> = v
        .findings
        .iter()
        .filter(|f| f.blocking)
        .map(|f| (f.rule.clone(), f.subject.clone()))
        .collect();
    assert_eq!(blocking, want, "{report}");

    // No enabled service has unknown ports; ssh listens on 22 (from sshd's default, no Port
    // line) and is allowed.
    let unknown: Vec<&str> = inv
        .services
        .list
        .iter()
        .filter(|s| s.enabled && s.port_status == "unknown")
        .map(|s| s.name.as_str())
        .collect();
    assert!(unknown.is_empty(), "{unknown:?}");
    let ssh = inv
        .services
        .list
        .iter()
        .find(|s| s.name == "ssh.service")
        .unwrap();
    assert!(
        ssh.enabled
            && ssh
                .ports
                .iter()
                .any(|p| p.port == 22 && p.protocol == "tcp")
    );

    // Credentials are parsed keys: the host keys and the example key in cloud-init's
    // documentation, nothing in a binary.
    let cred_paths: BTreeSet<&str> = inv.credentials.iter().map(|c| c.path.as_str()).collect();
    for c in &inv.credentials {
        assert!(
            c.path.starts_with("/etc/ssh/ssh_host_") || c.path.starts_with("/usr/share/doc/"),
            "{c:?}"
        );
    }
    let doc_keys: Vec<&str> = cred_paths
        .iter()
        .copied()
        .filter(|p| p.starts_with("/usr/share/doc/"))
        .collect();
    assert!(!doc_keys.is_empty(), "{cred_paths:?}");
    for p in doc_keys {
        let owner = run(Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .args(["-S", p]));
        let pkg = owner.split(':').next().unwrap().trim().to_string();
        let f = v
            .findings
            .iter()
            .find(|f| f.rule == "files.host-keys" && f.subject == p)
            .unwrap();
        assert_eq!(f.severity, Severity::Low, "{}", f.message);
        assert!(!f.blocking);
        assert!(
            f.message.ends_with(&format!("shipped by package {pkg}")),
            "{}",
            f.message
        );
    }
    // The planted-problem suites (vetter/tests/policy_planted.rs, tests/demo.rs) check that
    // every real problem is still found.
}
