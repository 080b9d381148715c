//! Whole-inventory tests: files and findings, capabilities, accounts, credentials, packages
//! (real rpm sqlite database fixture) with offline verification, and the CycloneDX SBOM validated
//! by CycloneDX's own JSON schema (python3-jsonschema).

mod common;
use common::*;
use rootfs::{Content, Device, Metadata, Node, NodeKind, Timestamp, Tree};
use sha2::{Digest, Sha256};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata");

fn with_xattr(t: &mut Tree, path: &str, bytes: &[u8], perm: u16, name: &str, value: Vec<u8>) {
    let mut m = meta(perm);
    m.xattrs.insert(name.as_bytes().to_vec(), value);
    t.insert(
        path.as_bytes(),
        Node::new(NodeKind::Regular(Content::from_bytes(bytes.to_vec())), m),
        &meta(0o755),
    )
    .unwrap();
}

fn image() -> Tree {
    let mut t = Tree::default();
    base(&mut t);
    file(
        &mut t,
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\nbin:x:1:1:bin:/bin:/sbin/nologin\n\
         daemon:x:2:2::/sbin:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\nbob::1001:1000::/home/bob:/bin/bash\n\
         carol:x:1000:1000::/home/carol:/bin/bash\nalice:x:1002:1000::/x:/bin/sh\nghost:x:1003:1000::/x:/bin/sh\n",
    );
    file(&mut t, "/etc/shadow", "root:$6$x$y:1::::::\ntoor::1::::::\nbin:*:1::::::\ndaemon:!!:1::::::\nalice:!:1::::::\ncarol:$6$a$b:1::::::\n");
    file(
        &mut t,
        "/etc/group",
        "root:x:0:\nbin:x:1:\ndaemon:x:2:\nusers:x:1000:\nwheel:x:10:alice,carol\n",
    );
    file(&mut t, "/etc/login.defs", "UID_MIN 1000\n");
    file(&mut t, "/etc/sudoers", "# comment\nDefaults requiretty\nCmnd_Alias X = /bin/ls\nroot ALL=(ALL) ALL\n%wheel ALL=(ALL) \\\n  NOPASSWD: ALL\n#includedir /etc/sudoers.d\n");
    file(
        &mut t,
        "/etc/sudoers.d/alice",
        "alice ALL=(ALL) NOPASSWD: ALL\n",
    );
    file(&mut t, "/etc/sudoers.d/skip.rpmnew", "nobody ALL=ALL\n");
    file(
        &mut t,
        "/etc/ssh/sshd_config",
        "PermitRootLogin yes\nPasswordAuthentication no\n",
    );
    file_mode(
        &mut t,
        "/etc/ssh/ssh_host_rsa_key",
        include_bytes!("../../testdata/throwaway-private-keys/rsa-pkcs1.pem"),
        0o600,
    );
    file(
        &mut t,
        "/etc/ssh/ssh_host_rsa_key.pub",
        "ssh-rsa AAAA root@host\n",
    );
    file(
        &mut t,
        "/root/.ssh/authorized_keys",
        "# keys\nssh-rsa AAAAB3 a@b\nfrom=\"10.0.0.1\" ssh-ed25519 AAAAC3 c@d\n",
    );
    file(
        &mut t,
        "/home/alice/.aws/config",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n",
    );
    file_mode(&mut t, "/tmp/x509up_u1000", b"proxy", 0o600);
    file(&mut t, "/etc/os-release", "NAME=\"Scientific Linux\"\nID=\"scientific\"\nVERSION_ID=\"7.9\"\nPRETTY_NAME=\"Scientific Linux 7.9 (Nitrogen)\"\nID_LIKE=\"rhel centos fedora\"\n");
    file(
        &mut t,
        "/etc/selinux/config",
        "# SELINUX=disabled\nSELINUX=enforcing\nSELINUXTYPE=targeted\n",
    );
    // ELF binaries from rpm's tests stand in for /bin/sh and a setuid program.
    let exe = std::fs::read(format!("{TESTDATA}/elf-rpm-tests-misc/hellopie")).unwrap();
    file_mode(&mut t, "/usr/bin/bash", &exe, 0o755);
    symlink(&mut t, "/bin", "usr/bin");
    symlink(&mut t, "/usr/bin/sh", "bash");
    file_mode(&mut t, "/usr/bin/su", &exe, 0o4755);
    file_mode(&mut t, "/usr/bin/wall", b"#!/bin/sh\n", 0o2755);
    let ping = [
        0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    with_xattr(
        &mut t,
        "/usr/bin/ping",
        &exe,
        0o755,
        "security.capability",
        ping.to_vec(),
    );
    with_xattr(
        &mut t,
        "/usr/bin/bad",
        b"x",
        0o755,
        "security.capability",
        vec![1, 2, 3],
    );
    // Hard link, world-writable things, devices, unknown owner, a sparse file over the hash limit.
    let id = t.lookup(b"/usr/bin/bash").unwrap();
    t.link_at(b"/usr/bin/bash2", id, &meta(0o755)).unwrap();
    file_mode(&mut t, "/var/tmp/ww", b"w", 0o666);
    dir(&mut t, "/var/spool/open", 0o777);
    dir(&mut t, "/tmp", 0o1777);
    t.insert(
        b"/dev/null",
        Node::new(
            NodeKind::CharDevice(Device { major: 1, minor: 3 }),
            meta(0o666),
        ),
        &meta(0o755),
    )
    .unwrap();
    t.insert(
        b"/var/mem",
        Node::new(
            NodeKind::CharDevice(Device { major: 1, minor: 1 }),
            meta(0o600),
        ),
        &meta(0o755),
    )
    .unwrap();
    let mut m = Metadata::new(0o644, 4242, 4343, Timestamp::from_secs(5));
    m.xattrs.insert(
        b"security.selinux".to_vec(),
        b"system_u:object_r:etc_t:s0\0".to_vec(),
    );
    t.insert(
        b"/opt/orphan",
        Node::new(NodeKind::Regular(Content::from_bytes(b"o".to_vec())), m),
        &meta(0o755),
    )
    .unwrap();
    let sparse = Content::from_extents(rootfs::Source::None, 1 << 40, Vec::new()).unwrap();
    t.insert(
        b"/var/huge",
        Node::new(NodeKind::Regular(sparse), meta(0o644)),
        &meta(0o755),
    )
    .unwrap();
    // Kernel with a Xen-enabled config.
    file(
        &mut t,
        "/boot/vmlinuz-3.10.0-1160.el7.x86_64",
        "not a kernel",
    );
    file(&mut t, "/boot/initramfs-3.10.0-1160.el7.x86_64.img", "x");
    file(
        &mut t,
        "/boot/config-3.10.0-1160.el7.x86_64",
        "CONFIG_XEN=y\nCONFIG_XEN_PVH=y\n",
    );
    t
}

#[test]
fn files_accounts_credentials_system() {
    let t = image();
    let inv = inspect(&t);
    let s = &inv.system;
    assert_eq!(
        (
            s.distro.as_deref(),
            s.release.as_deref(),
            s.family.as_deref()
        ),
        (Some("scientific"), Some("7.9"), Some("redhat"))
    );
    assert_eq!(s.arch.as_deref(), Some("x86_64"));
    assert_eq!(s.arch_source.as_deref(), Some("/bin/sh"));
    assert_eq!(s.selinux.as_deref(), Some("enforcing"));
    assert_eq!(inv.files.selinux_labelled, 1);
    let k = &s.kernels[0];
    assert_eq!(k.version, "3.10.0-1160.el7.x86_64");
    assert_eq!(
        k.initrd.as_deref(),
        Some("/boot/initramfs-3.10.0-1160.el7.x86_64.img")
    );
    assert_eq!((k.xen_pv.as_str(), k.xen_pvh.as_str()), ("yes", "yes"));

    let f = &inv.files;
    assert_eq!(f.setuid, vec!["/usr/bin/su"]);
    assert_eq!(f.setgid, vec!["/usr/bin/wall"]);
    assert_eq!(f.world_writable, vec!["/dev/null", "/var/tmp/ww"]);
    assert_eq!(
        f.world_writable_dirs_without_sticky,
        vec!["/var/spool/open"]
    );
    assert_eq!(f.devices_outside_dev, vec!["/var/mem"]);
    assert_eq!(f.unknown_owner.len(), 1);
    assert_eq!(
        (f.unknown_owner[0].path.as_str(), f.unknown_owner[0].uid),
        ("/opt/orphan", 4242)
    );
    let ping = f
        .capabilities
        .iter()
        .find(|c| c.path == "/usr/bin/ping")
        .unwrap();
    assert_eq!(ping.caps.as_ref().unwrap().text, "cap_net_raw=ep");
    assert!(f
        .capabilities
        .iter()
        .find(|c| c.path == "/usr/bin/bad")
        .unwrap()
        .error
        .is_some());
    assert_eq!(f.not_hashed.len(), 1);
    assert_eq!(f.not_hashed[0].path, "/var/huge");
    let bash = f
        .entries
        .iter()
        .find(|e| e.paths.contains(&"/usr/bin/bash".to_string()))
        .unwrap();
    assert_eq!(bash.paths, vec!["/usr/bin/bash", "/usr/bin/bash2"]);
    let exe = std::fs::read(format!("{TESTDATA}/elf-rpm-tests-misc/hellopie")).unwrap();
    assert_eq!(
        bash.sha256.as_deref(),
        Some(hex::encode(Sha256::digest(&exe)).as_str())
    );
    assert_eq!(bash.mode, "0755");

    // ELF entries for the setuid and capability binaries; the setgid script is "not an ELF file".
    let su = inv.elf.iter().find(|e| e.path == "/usr/bin/su").unwrap();
    assert_eq!(su.reasons, vec!["setuid"]);
    assert!(su.info.as_ref().unwrap().nx);
    assert_eq!(
        inv.elf
            .iter()
            .find(|e| e.path == "/usr/bin/wall")
            .unwrap()
            .error
            .as_deref(),
        Some("not an ELF file")
    );

    let a = &inv.accounts;
    assert_eq!(a.uid0, vec!["root", "toor"]);
    assert_eq!(a.empty_password, vec!["toor", "bob"]);
    assert_eq!(a.missing_shadow, vec!["ghost"]);
    assert_eq!(a.system_with_shell, vec!["daemon"]);
    assert_eq!(a.duplicate_names, vec!["alice"]);
    assert_eq!(
        a.duplicate_uids.get(&0).unwrap(),
        &vec!["root".to_string(), "toor".to_string()]
    );
    assert_eq!(
        a.duplicate_uids.get(&1000).unwrap(),
        &vec!["alice".to_string(), "carol".to_string()]
    );
    assert_eq!(
        a.admin_groups.get("wheel").unwrap(),
        &vec!["alice".to_string(), "carol".to_string()]
    );
    let sudo: Vec<(String, Option<u32>)> = a
        .sudoers
        .iter()
        .map(|r| (r.at.file.clone(), r.at.line))
        .collect();
    assert_eq!(
        sudo,
        vec![
            ("/etc/sudoers".into(), Some(4)),
            ("/etc/sudoers".into(), Some(5)),
            ("/etc/sudoers.d/alice".into(), Some(1))
        ]
    );
    assert_eq!(a.ssh_host_keys, vec!["/etc/ssh/ssh_host_rsa_key"]);
    assert_eq!(a.authorized_keys[0].keys, 2);
    assert_eq!(a.authorized_keys[0].types, vec!["ssh-rsa", "ssh-ed25519"]);
    assert_eq!(a.permit_root_login.as_ref().unwrap().value, "yes");
    assert_eq!(a.password_authentication.as_ref().unwrap().value, "no");

    let creds: Vec<(&str, &str)> = inv
        .credentials
        .iter()
        .map(|c| (c.path.as_str(), c.kind.as_str()))
        .collect();
    assert!(creds.contains(&("/etc/ssh/ssh_host_rsa_key", "pem-private-key:RSA")));
    assert!(creds.contains(&("/etc/ssh/ssh_host_rsa_key", "ssh-host-private-key")));
    assert!(creds.contains(&("/home/alice/.aws/config", "aws-access-key-id")));
    assert!(creds.contains(&("/tmp/x509up_u1000", "grid-proxy")));
    let json = serde_json::to_string(&inv).unwrap();
    assert!(!json.contains("AKIAIOSFODNN7EXAMPLE"));
    let text = vetter::render::summary(&inv);
    assert!(text.contains("/usr/bin/su") && text.contains("cap_net_raw=ep"));
}

#[test]
fn rpm_packages_verify_and_sbom_validates() {
    let mut t = image();
    let db = std::fs::read(format!(
        "{TESTDATA}/rpmdb-sqlite-go-rpmdb-cbl-mariner-2.0/rpmdb.sqlite"
    ))
    .unwrap();
    file_mode(&mut t, "/var/lib/rpm/rpmdb.sqlite", &db, 0o644);
    // curl-config with the packaged content digest would match; ours differs and is world-readable 0700.
    file_mode(&mut t, "/usr/bin/curl-config", b"changed", 0o700);
    let inv = inspect(&t);
    let p = &inv.packages;
    assert_eq!(p.format.as_deref(), Some("rpm-sqlite"));
    let expected = std::fs::read_to_string(format!(
        "{TESTDATA}/rpmdb-sqlite-go-rpmdb-cbl-mariner-2.0/expected.csv"
    ))
    .unwrap();
    let want: Vec<&str> = expected
        .lines()
        .skip(1)
        .filter(|l| !l.contains(",gpg-pubkey,"))
        .collect();
    assert_eq!(p.list.len(), want.len());
    let curl = p.list.iter().find(|x| x.name == "curl").unwrap();
    assert!(
        curl.purl.starts_with("pkg:rpm/scientific/curl@"),
        "{}",
        curl.purl
    );
    let m = p
        .mismatches
        .iter()
        .find(|m| m.path == "/usr/bin/curl-config")
        .unwrap();
    // rpm -V's view: size, mode, digest and mtime differ (the tree's files carry mtime 1000000).
    assert_eq!(m.differs, vec!["size", "mode", "digest", "mtime"]);
    assert_eq!(
        m.rpm_line().as_deref(),
        Some("SM5....T.    /usr/bin/curl-config")
    );
    assert!(p
        .mismatches
        .iter()
        .any(|m| m.path == "/usr/bin/curl" && m.differs == ["missing"]));
    assert!(p
        .unowned_system_files
        .contains(&"/etc/sudoers.d/alice".to_string()));

    let sbom = vetter::sbom::cyclonedx(&inv);
    assert_eq!(sbom["specVersion"], "1.5");
    let comps = sbom["components"].as_array().unwrap();
    assert!(comps.iter().any(|c| c["purl"] == curl.purl.as_str()));
    assert!(comps
        .iter()
        .any(|c| c["type"] == "file" && c["hashes"][0]["alg"] == "SHA-256"));
    assert_eq!(vetter::sbom::cyclonedx(&inv), sbom, "deterministic");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bom.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&sbom).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .arg(format!("{TESTDATA}/cyclonedx-1.5-schema/validate.py"))
        .arg(&path)
        .output()
        .expect("python3 (with python3-jsonschema) is needed to validate the SBOM");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "CycloneDX schema rejects the SBOM:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("VALID"));
}

#[test]
fn dpkg_owners_of_privileged_files_match_by_inode_across_usr_merge() {
    let mut t = rootfs::Tree::new(meta(0o755));
    file(&mut t, "/etc/debian_version", "12.5\n");
    file(&mut t, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    file(&mut t, "/etc/group", "root:x:0:\n");
    symlink(&mut t, "/bin", "usr/bin");
    file_mode(&mut t, "/usr/bin/su", b"su", 0o4755);
    file_mode(&mut t, "/usr/bin/chfn", b"chfn", 0o4755);
    file_mode(&mut t, "/usr/bin/mine", b"mine", 0o2755);
    file(
        &mut t,
        "/var/lib/dpkg/status",
        "Package: util-linux\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.38.1-5\n\n\
         Package: passwd\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:4.13+dfsg1-1\n\n",
    );
    // util-linux lists /bin/su (the pre-merge path); passwd lists /usr/bin/chfn. Neither is
    // `Multi-Arch: same`, so dpkg names their lists without the architecture.
    file(
        &mut t,
        "/var/lib/dpkg/info/util-linux.list",
        "/.\n/bin\n/bin/su\n",
    );
    file(
        &mut t,
        "/var/lib/dpkg/info/passwd.list",
        "/.\n/usr/bin\n/usr/bin/chfn\n",
    );
    let inv = inspect(&t);
    let o = &inv.packages.owners;
    assert_eq!(
        o.get("/usr/bin/su"),
        Some(&vec!["util-linux".to_string()]),
        "{o:#?}"
    );
    assert_eq!(
        o.get("/usr/bin/chfn"),
        Some(&vec!["passwd".to_string()]),
        "{o:#?}"
    );
    assert!(!o.contains_key("/usr/bin/mine"), "{o:#?}");
    assert_eq!(o.len(), 2, "only privileged paths are recorded: {o:#?}");
}

#[test]
fn release_files_name_the_file_read() {
    let mut t = Tree::default();
    file(
        &mut t,
        "/usr/lib/os-release",
        "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    );
    let inv = inspect(&t);
    assert_eq!(inv.system.distro.as_deref(), Some("debian"));
    assert_eq!(inv.system.release_files, ["/usr/lib/os-release"]);
    file(&mut t, "/etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n");
    assert_eq!(inspect(&t).system.release_files, ["/etc/os-release"]);
}
