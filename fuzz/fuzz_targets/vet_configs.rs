#![no_main]
//! Every configuration file the vetter parses gets the fuzz input (split on 0xff bytes into up
//! to eight pieces, so includes between them are reachable), then the whole inventory runs:
//! systemd units (and what says they open no port), private-key parsing, dpkg status.
use libfuzzer_sys::fuzz_target;
use rootfs::{Content, Metadata, Node, NodeKind, Timestamp, Tree};

const PATHS: &[&str] = &[
    "/etc/ssh/sshd_config",
    "/etc/squid/squid.conf",
    "/etc/my.cnf",
    "/etc/httpd/conf/httpd.conf",
    "/etc/named.conf",
    "/etc/xinetd.conf",
    "/etc/vsftpd/vsftpd.conf",
    "/etc/xrootd/xrootd-clustered.cfg",
    "/etc/globus-gatekeeper.conf",
    "/etc/gridftp.conf",
    "/etc/inittab",
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/sudoers",
    "/etc/services",
    "/usr/lib/systemd/system/multi-user.target",
    "/usr/lib/systemd/system/x.socket",
    "/etc/xinetd.d/a",
    "/etc/os-release",
    "/usr/lib/systemd/system/x.service",
    "/root/.ssh/id_rsa",
    "/var/lib/dpkg/status",
    "/usr/lib/os-release",
];

fuzz_target!(|data: &[u8]| {
    let m = Metadata::new(0o644, 0, 0, Timestamp::default());
    let mut t = Tree::default();
    let pieces: Vec<&[u8]> = data.split(|&b| b == 0xff).take(8).collect();
    for (i, p) in PATHS.iter().enumerate() {
        let bytes = pieces.get(i % pieces.len().max(1)).copied().unwrap_or(&[]);
        let _ = t.insert(p.as_bytes(), Node::new(NodeKind::Regular(Content::from_bytes(bytes.to_vec())), m.clone()), &m);
    }
    for d in ["sshd", "squid", "mysqld", "httpd", "named", "xinetd", "vsftpd", "xrootd", "globus-gatekeeper", "gridftp"] {
        let _ = t.insert(format!("/etc/rc.d/rc3.d/S10{d}").as_bytes(), Node::new(NodeKind::Symlink(b"/etc/passwd".to_vec()), m.clone()), &m);
    }
    let _ = t.insert(b"/etc/systemd/system/multi-user.target.wants/x.service", Node::new(NodeKind::Symlink(b"/usr/lib/systemd/system/x.service".to_vec()), m.clone()), &m);
    let _ = t.insert(b"/etc/systemd/system/default.target", Node::new(NodeKind::Symlink(b"/usr/lib/systemd/system/multi-user.target".to_vec()), m.clone()), &m);
    let inv = vetter::inspect(&t, &vetter::InspectOptions::default()).expect("root is a directory");
    let _ = vetter::render::summary(&inv);
    // The key parser on the raw input too, whatever label it claims.
    let _ = vetter::secrets::scan_bytes("/fuzz", data);
    for label in ["PRIVATE KEY", "RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY", "PGP PRIVATE KEY BLOCK"] {
        let _ = vetter::secrets::is_private_key(label, data);
    }
    let _ = vetter::sbom::cyclonedx(&inv);
});
