//! Helpers for the builder's integration tests: bases made in the test, real tools run for real.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Fixed time for everything in test bases.
pub const BASE_MTIME: i64 = 1_400_000_000;

/// Run a command; panic with its output unless it succeeds. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is the Debian package installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The spec files the tests build with rpmbuild.
pub const SPECS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/builder/specs");

/// Build `spec` with the real rpmbuild into `top`, reproducibly (build time = [`BASE_MTIME`]),
/// with extra `--define NAME VALUE`s; returns the path of the noarch rpm whose file name starts
/// with `name-`.
pub fn rpmbuild(spec: &Path, name: &str, top: &Path, defines: &[(&str, &str)]) -> PathBuf {
    let mut cmd = Command::new("rpmbuild");
    cmd.arg("-bb")
        .arg("--quiet")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()));
    for (k, v) in defines {
        cmd.arg("--define").arg(format!("{k} {v}"));
    }
    run(cmd
        .arg("--define")
        .arg("use_source_date_epoch_as_buildtime 1")
        .env("SOURCE_DATE_EPOCH", BASE_MTIME.to_string())
        .arg(spec));
    let dir = top.join("RPMS/noarch");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{name}-"))
        })
        .unwrap_or_else(|| panic!("rpmbuild made no {name}-*.rpm in {}", dir.display()))
}

/// Lowercase hex sha256 of a file.
pub fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

pub fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// An ELF header for x86_64 followed by padding (enough for arch detection).
pub fn fake_elf() -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2;
    h[5] = 1;
    h[6] = 1;
    h[16] = 2;
    h[18] = 62;
    h
}

/// Lay out a small SL5-like root filesystem in `root`.
pub fn make_root(root: &Path) {
    put(root, "etc/passwd", b"root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\nsquid:x:23:23::/var/spool/squid:/sbin/nologin\n");
    put(
        root,
        "etc/shadow",
        b"root:*:15000:0:99999:7:::\nbin:*:15000:0:99999:7:::\nsquid:!!:15000::::::\n",
    );
    put(
        root,
        "etc/group",
        b"root:x:0:root\nbin:x:1:root,bin\nsquid:x:23:\n",
    );
    put(
        root,
        "etc/gshadow",
        b"root:::root\nbin:::root,bin\nsquid:!::\n",
    );
    put(
        root,
        "etc/login.defs",
        b"MAIL_DIR\t/var/spool/mail\nUID_MIN\t\t\t  500\nGID_MIN\t\t\t  500\n",
    );
    put(
        root,
        "etc/redhat-release",
        b"Scientific Linux SL release 5.11 (Boron)\n",
    );
    put(
        root,
        "etc/rc.d/init.d/squid",
        b"#!/bin/bash\n# squid\tThis shell script takes care of starting and stopping Squid.\n#\n# chkconfig: - 90 25\n# description: Squid\nexit 0\n",
    );
    put(root, "etc/rc.d/init.d/nohdr", b"#!/bin/sh\nexit 0\n");
    for l in 0..=6 {
        std::fs::create_dir_all(root.join(format!("etc/rc.d/rc{l}.d"))).unwrap();
    }
    std::os::unix::fs::symlink("rc.d/init.d", root.join("etc/init.d")).unwrap();
    put(
        root,
        "etc/xinetd.d/rsync",
        b"service rsync\n{\n\tdisable\t= yes\n\tsocket_type     = stream\n}\n",
    );
    put(root, "etc/ssh/ssh_host_rsa_key", b"PRIVATE\n");
    put(root, "etc/ssh/ssh_host_rsa_key.pub", b"ssh-rsa AAAA host\n");
    put(root, "etc/ssh/sshd_config", b"Port 22\n");
    put(
        root,
        "etc/sysconfig/network-scripts/ifcfg-eth0",
        b"DEVICE=eth0\nHWADDR=52:54:00:12:34:56\nUUID=1234\nBOOTPROTO=dhcp\n",
    );
    put(root, "var/log/messages", b"Jan 1 host kernel: booted\n");
    put(root, "var/log/messages.1", b"old\n");
    put(root, "tmp/junk", b"junk\n");
    put(root, "root/.bash_history", b"rm -rf /\n");
    put(root, "var/lib/random-seed", b"0123456789abcdef");
    put(root, "boot/vmlinuz-2.6.18-9.el5", b"old kernel");
    put(root, "boot/vmlinuz-2.6.18-400.el5", b"new kernel");
    put(root, "boot/initrd-2.6.18-400.el5.img", b"initrd");
    put(root, "bin/sh", &fake_elf());
    put(root, "bin/ls", &fake_elf());
    std::fs::create_dir_all(root.join("var/spool/squid")).unwrap();
}

/// Pack `root` into a reproducible tar (root-owned, fixed mtime, sorted).
pub fn tar_root(root: &Path, out: &Path) {
    run(Command::new("tar")
        .arg("--sort=name")
        .arg("--owner=0")
        .arg("--group=0")
        .arg("--numeric-owner")
        .arg(format!("--mtime=@{BASE_MTIME}"))
        .arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(root)
        .arg("."));
}

/// A recipe folder with a tar base made from [`make_root`] plus `extra` (run on the root first).
pub struct Fixture {
    /// Holds everything.
    pub tmp: tempfile::TempDir,
    /// The recipe folder.
    pub dir: PathBuf,
    /// sha256 of base.tar.
    pub base_sha: String,
}

impl Fixture {
    /// Make the folder: base.tar, files/squid.conf, templates/motd.in.
    pub fn new(extra: impl FnOnce(&Path)) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        make_root(&root);
        extra(&root);
        let dir = tmp.path().join("recipe");
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::create_dir_all(dir.join("templates")).unwrap();
        tar_root(&root, &dir.join("base.tar"));
        std::fs::write(
            dir.join("files/squid.conf"),
            b"http_port 3128\ncache_mem 256 MB\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("templates/motd.in"),
            b"Wafer {{wafer_name}} {{wafer_version}} for {{site_role}}\n",
        )
        .unwrap();
        let base_sha = sha256_hex(&dir.join("base.tar"));
        Fixture { tmp, dir, base_sha }
    }

    /// Write `recipe.toml` with a header pinning the base, followed by `body`.
    pub fn recipe(&self, body: &str) -> PathBuf {
        let text = format!(
            "[wafer]\nname = \"frontier-squid\"\nversion = \"1.0.0\"\nvo = \"cms\"\n\n[base]\nkind = \"tar\"\npath = \"base.tar\"\nsha256 = \"{}\"\n{body}",
            self.base_sha
        );
        let p = self.dir.join("recipe.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// Decompress a bundle's disk.img.zst with the real zstd; returns the raw image path.
pub fn unpack(bundle: &Path, into: &Path) -> PathBuf {
    let out = into.join("disk.img");
    run(Command::new("zstd")
        .arg("-q")
        .arg("-d")
        .arg("-f")
        .arg(bundle.join("disk.img.zst"))
        .arg("-o")
        .arg(&out));
    out
}

/// Run a debugfs request on an image (read-only).
pub fn debugfs(img: &Path, req: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(req)
        .arg(img)
        .output()
        .expect("debugfs (e2fsprogs) must be installed");
    assert!(
        out.status.success(),
        "debugfs {req}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `e2fsck -fn` must find nothing.
pub fn fsck_clean(img: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(img)
        .output()
        .expect("e2fsck (e2fsprogs) must be installed");
    assert!(
        out.status.success(),
        "e2fsck -fn: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The root hash `veritysetup format` computes for `img` with `salt`.
pub fn veritysetup_root(img: &Path, salt: &str, work: &Path) -> String {
    let hash = work.join("verity.hash");
    let out = run(Command::new("veritysetup")
        .arg("format")
        .arg("--no-superblock")
        .arg("--hash=sha256")
        .arg("--data-block-size=4096")
        .arg("--hash-block-size=4096")
        .arg(format!("--salt={salt}"))
        .arg(img)
        .arg(&hash));
    let root = out
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:").map(|r| r.trim().to_string()))
        .unwrap_or_else(|| panic!("no root hash in veritysetup output: {out}"));
    run(Command::new("veritysetup")
        .arg("verify")
        .arg("--no-superblock")
        .arg(format!("--salt={salt}"))
        .arg(img)
        .arg(&hash)
        .arg(&root));
    root
}

/// The manifest as JSON.
pub fn manifest(bundle: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(bundle.join("wafer.json")).unwrap()).unwrap()
}
