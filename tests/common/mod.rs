//! Helpers shared by the `wafer` command's end-to-end tests: a small base made in the test,
//! a recipe pinning it, and running the built `wafer` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// Fixed time for everything in test bases.
pub const BASE_MTIME: i64 = 1_400_000_000;

/// Run the `wafer` binary under test.
pub fn wafer(args: &[&str]) -> Output {
    wafer_env(args, &[])
}

/// Run `wafer` with extra environment variables.
pub fn wafer_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wafer"));
    c.args(args)
        .env_remove("WAFER_PASSPHRASE")
        .env("SOURCE_DATE_EPOCH", "1500000000");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run wafer")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert success, showing stderr otherwise.
pub fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "wafer failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    o
}

/// Run a command; panic with its output unless it succeeds. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        let prog = cmd.get_program().to_string_lossy().into_owned();
        panic!(
            "cannot run `{prog}` ({e}): install the Debian package {} (scripts/test installs every test oracle)",
            debian_package(&prog)
        )
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Debian package that provides `program` (a test oracle), for a one-line error naming it.
pub fn debian_package(program: &str) -> &'static str {
    let name = program.rsplit('/').next().unwrap_or(program);
    match name {
        "e2fsck" | "debugfs" | "mke2fs" | "dumpe2fs" | "tune2fs" | "resize2fs" => "e2fsprogs",
        "zstd" | "unzstd" | "zstdcat" => "zstd",
        "xz" | "unxz" => "xz-utils",
        "bzip2" => "bzip2",
        "gzip" | "gunzip" => "gzip",
        "tar" => "tar",
        "bsdtar" => "libarchive-tools",
        "rpm" | "rpmkeys" | "rpmdb" => "rpm",
        "db_dump" | "db_verify" | "db_load" | "db5.3_dump" | "db5.3_verify" => "db-util",
        "veritysetup" => "cryptsetup-bin",
        "mdir" | "mcopy" | "mtype" => "mtools",
        "fsck.fat" | "fsck.vfat" | "mkfs.fat" => "dosfstools",
        "debootstrap" => "debootstrap",
        "getfattr" | "setfattr" => "attr",
        "openssl" => "openssl",
        "cloud-init" => "cloud-init",
        "sgdisk" | "gdisk" => "gdisk",
        "sfdisk" | "fdisk" => "fdisk",
        "groff" => "groff-base",
        "dpkg" | "dpkg-query" | "dpkg-deb" => "dpkg",
        "python3" => "python3-venv",
        "chromium" => "chromium",
        "gcc" | "cc" => "gcc",
        "runuser" | "setpriv" | "unshare" => "util-linux",
        _ => "providing it (see .ci/debian-packages)",
    }
}

/// Lowercase hex sha256 of a file.
pub fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(
        std::fs::read(path).expect("read file to hash"),
    ))
}

/// Write a file, creating parents.
pub fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
}

/// An ELF header for x86_64 (enough for architecture detection).
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

/// A small EL5-like root filesystem: accounts, release file, a kernel and initrd in /boot,
/// sshd configured, a couple of ELF programs.
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
        "etc/redhat-release",
        b"Scientific Linux SL release 5.11 (Boron)\n",
    );
    put(root, "etc/inittab", b"id:3:initdefault:\n");
    for l in 0..=6 {
        std::fs::create_dir_all(root.join(format!("etc/rc.d/rc{l}.d"))).expect("mkdir");
    }
    std::os::unix::fs::symlink("rc.d/init.d", root.join("etc/init.d")).expect("symlink");
    put(
        root,
        "etc/ssh/sshd_config",
        b"Port 22\nPermitRootLogin no\n",
    );
    put(
        root,
        "boot/vmlinuz-2.6.18-400.el5xen",
        b"KERNEL-IMAGE-BYTES xen pv kernel",
    );
    put(root, "boot/initrd-2.6.18-400.el5xen.img", b"INITRD-BYTES");
    put(root, "bin/sh", &fake_elf());
    put(root, "bin/ls", &fake_elf());
    std::fs::create_dir_all(root.join("var/spool/squid")).expect("mkdir");
    std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
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

/// A recipe folder with a tar base.
pub struct Fixture {
    /// Holds everything.
    pub tmp: tempfile::TempDir,
    /// The recipe folder.
    pub dir: PathBuf,
    /// sha256 of base.tar.
    pub base_sha: String,
}

impl Fixture {
    /// Make `recipe/base.tar` from [`make_root`] plus `extra` (run on the root first).
    pub fn new(extra: impl FnOnce(&Path)) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        make_root(&root);
        extra(&root);
        let dir = tmp.path().join("recipe");
        std::fs::create_dir_all(dir.join("files")).expect("mkdir");
        tar_root(&root, &dir.join("base.tar"));
        put(
            &dir,
            "files/squid.conf",
            b"http_port 3128\ncache_mem 256 MB\n",
        );
        let base_sha = sha256_hex(&dir.join("base.tar"));
        Fixture { tmp, dir, base_sha }
    }

    /// Write `NAME` (a recipe) pinning the base, wafer `name`/`version`, followed by `body`.
    pub fn recipe_named(&self, file: &str, name: &str, version: &str, body: &str) -> PathBuf {
        let text = format!(
            "[wafer]\nname = \"{name}\"\nversion = \"{version}\"\nvo = \"cms\"\n\n[base]\nkind = \"tar\"\npath = \"base.tar\"\nsha256 = \"{}\"\n\n[requirements]\nmemory = \"256M\"\nvcpus = 1\n\n[output]\nheadroom = \"2M\"\n\n{body}",
            self.base_sha
        );
        let p = self.dir.join(file);
        std::fs::write(&p, text).expect("write recipe");
        p
    }

    /// `recipe.toml` for `cms-squid` 1.0.
    pub fn recipe(&self, body: &str) -> PathBuf {
        self.recipe_named("recipe.toml", "cms-squid", "1.0", body)
    }

    /// A path in the temporary folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Build `recipe` into `out` (relative to the temporary folder); panics on failure.
    pub fn build(&self, recipe: &Path, out: &str) -> PathBuf {
        let o = self.path(out);
        ok(wafer(&["build", s(recipe), "-o", s(&o)]));
        o
    }
}

/// A path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Copy a directory tree (files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let t = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).expect("copy");
        }
    }
}

/// A snapshot of every path below `dir` (path, size), to show a directory was left alone.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<(PathBuf, u64)>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).expect("metadata");
            out.push((p.clone(), md.len()));
            if md.is_dir() {
                walk(&p, out);
            }
        }
    }
    walk(dir, &mut out);
    out.sort();
    out
}

/// Keys for a reviewer (alice) and the cms VO administrator in `keys/`, and a trust store in
/// `trust/` naming them (one approval needed, provenance required). Returns the store and the
/// two private keys.
pub fn site_trust_store(f: &Fixture) -> (PathBuf, PathBuf, PathBuf) {
    keys_and_store(f, "require_provenance = true\n")
}

/// Keys for a reviewer and the VO admin, and a trust store naming them (provenance optional).
pub fn trust_store(f: &Fixture) -> (PathBuf, PathBuf, PathBuf) {
    keys_and_store(f, "")
}

fn keys_and_store(f: &Fixture, extra: &str) -> (PathBuf, PathBuf, PathBuf) {
    let keys = f.path("keys");
    ok(wafer(&["key", "generate", "alice", "--dir", s(&keys)]));
    ok(wafer(&["key", "generate", "cms-admin", "--dir", s(&keys)]));
    let store = f.path("trust");
    std::fs::create_dir_all(store.join("reviewers")).unwrap();
    std::fs::create_dir_all(store.join("vo")).unwrap();
    std::fs::copy(keys.join("alice.pub"), store.join("reviewers/alice.pub")).unwrap();
    std::fs::copy(keys.join("cms-admin.pub"), store.join("vo/cms-admin.pub")).unwrap();
    std::fs::write(
        store.join("trust.toml"),
        format!("format = 1\nmax_approval_age_days = 30\n{extra}\n[reviewers]\nthreshold = 1\nkeys = [\"reviewers/alice.pub\"]\n\n[[vo_admins]]\nvo = \"cms\"\nkey = \"vo/cms-admin.pub\"\nwafers = [\"cms-*\"]\n"),
    )
    .unwrap();
    (store, keys.join("alice.key"), keys.join("cms-admin.key"))
}

/// Run `wafer` in a session of its own, without a controlling terminal (so a passphrase prompt
/// fails at once instead of waiting on the terminal of whoever runs the tests).
pub fn wafer_without_terminal(args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(env!("CARGO_BIN_EXE_wafer"));
    c.args(args)
        .env_remove("WAFER_PASSPHRASE")
        .env("SOURCE_DATE_EPOCH", "1500000000")
        .stdin(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    c.output().expect("run wafer")
}

/// `PATH` without the directories that hold an `xl`: for tests of `wafer deploy --dry-run` and
/// friends on a build machine that has xen-utils installed (for xl-dry-run) but runs no Xen,
/// where `xl list` fails ("Can't find hypervisor information in sysfs").
pub fn path_without_xl() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| !d.join("xl").exists())
        .collect();
    std::env::join_paths(dirs)
        .expect("PATH entries")
        .to_string_lossy()
        .into_owned()
}
