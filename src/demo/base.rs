//! The demo base: a small CentOS-5.11-like root filesystem made in memory and written as an
//! ext3 image (el5 profile) by rootfs's writer, with a Berkeley DB `Packages` rpm database
//! (pkgdb's writer) whose headers list exactly the files the tree holds, with their sha256
//! digests, modes and owners, so an offline `rpm -V` of the base is clean.
//!
//! The programs are real x86-64 ELF files (rpm's own test programs, see
//! testdata/elf-rpm-tests-misc/NOTES.md); they are not CentOS's programs and do not run on a
//! CentOS system. The kernel and initrd are placeholders: their contents are text, only their
//! names and the kernel config (CONFIG_XEN=y) are what a CentOS 5 kernel-xen would carry.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use pkgdb::rpm::header::{tag, Value};
use pkgdb::rpm::Header;
use rootfs::{Content, Metadata, Node, NodeKind, Timestamp, Tree};
use sha2::{Digest, Sha256};

/// A non-PIE x86-64 executable (rpm test data `helloexe`).
pub const HELLO_EXE: &[u8] = include_bytes!("../../testdata/elf-rpm-tests-misc/helloexe");
/// A PIE x86-64 executable (rpm test data `hellopie`).
pub const HELLO_PIE: &[u8] = include_bytes!("../../testdata/elf-rpm-tests-misc/hellopie");
/// An x86-64 shared library (rpm test data `libhello.so`).
pub const LIB_HELLO: &[u8] = include_bytes!("../../testdata/elf-rpm-tests-misc/libhello.so");

/// Every file of the base gets this time: 2014-09-29, CentOS 5.11's release.
pub const BASE_EPOCH: i64 = 1_411_948_800;

/// uid/gid of the accounts the base has.
const SSHD_ID: u32 = 74;
const SQUID_ID: u32 = 23;

/// One file or link of the base, and the package that owns it (if any).
struct Entry {
    path: &'static str,
    kind: Kind,
    perm: u16,
    uid: u32,
    gid: u32,
    package: Option<&'static str>,
    config: bool,
}

enum Kind {
    File(Vec<u8>),
    Dir,
    Link(&'static str),
}

/// A package of the base: name, version, release, summary.
pub struct PackageSpec {
    /// Name.
    pub name: &'static str,
    /// Version.
    pub version: &'static str,
    /// Release.
    pub release: &'static str,
    summary: &'static str,
    license: &'static str,
    group: &'static str,
}

/// The openssl of the updated base (`yum update openssl` applied), which the demo policy accepts.
pub const OPENSSL_UPDATED: PackageSpec = PackageSpec {
    name: "openssl",
    version: "0.9.8e",
    release: "27.el5_10.4",
    summary: "The OpenSSL toolkit",
    license: "BSD",
    group: "System Environment/Libraries",
};

/// The packages the base's rpm database lists.
pub const PACKAGES: &[PackageSpec] = &[
    PackageSpec {
        name: "centos-release",
        version: "5",
        release: "11.el5.centos",
        summary: "CentOS release file",
        license: "GPL",
        group: "System Environment/Base",
    },
    PackageSpec {
        name: "bash",
        version: "3.2",
        release: "33.el5_11.4",
        summary: "The GNU Bourne Again shell (bash) version 3.2",
        license: "GPLv2+",
        group: "System Environment/Shells",
    },
    PackageSpec {
        name: "openssl",
        version: "0.9.8e",
        release: "7.el5",
        summary: "The OpenSSL toolkit",
        license: "BSD",
        group: "System Environment/Libraries",
    },
    PackageSpec {
        name: "openssh-server",
        version: "4.3p2",
        release: "82.el5",
        summary: "The OpenSSH server daemon",
        license: "BSD",
        group: "System Environment/Daemons",
    },
    PackageSpec {
        name: "iputils",
        version: "20020927",
        release: "46.el5",
        summary: "Network monitoring tools including ping",
        license: "BSD",
        group: "System Environment/Daemons",
    },
    PackageSpec {
        name: "squid",
        version: "2.6.STABLE21",
        release: "3.el5",
        summary: "The Squid proxy caching server",
        license: "GPL",
        group: "System Environment/Daemons",
    },
];

fn file(
    path: &'static str,
    data: impl Into<Vec<u8>>,
    perm: u16,
    package: Option<&'static str>,
) -> Entry {
    Entry {
        path,
        kind: Kind::File(data.into()),
        perm,
        uid: 0,
        gid: 0,
        package,
        config: false,
    }
}

fn config(path: &'static str, data: impl Into<Vec<u8>>, perm: u16, package: &'static str) -> Entry {
    Entry {
        config: true,
        ..file(path, data, perm, Some(package))
    }
}

fn dir(path: &'static str, perm: u16) -> Entry {
    Entry {
        path,
        kind: Kind::Dir,
        perm,
        uid: 0,
        gid: 0,
        package: None,
        config: false,
    }
}

fn link(path: &'static str, target: &'static str, package: Option<&'static str>) -> Entry {
    Entry {
        path,
        kind: Kind::Link(target),
        perm: 0o777,
        uid: 0,
        gid: 0,
        package,
        config: false,
    }
}

const SSHD_INIT: &str = "#!/bin/bash\n#\n# Init file for OpenSSH server daemon\n#\n# chkconfig: 2345 55 25\n\
# description: OpenSSH server daemon\n#\n# processname: sshd\n# config: /etc/ssh/sshd_config\n\
# pidfile: /var/run/sshd.pid\n\n. /etc/rc.d/init.d/functions\n\ncase \"$1\" in\n  start) daemon /usr/sbin/sshd ;;\n\
  stop) killproc /usr/sbin/sshd ;;\n  *) echo \"Usage: $0 {start|stop}\"; exit 1 ;;\nesac\n";

const SQUID_INIT: &str = "#!/bin/bash\n# squid\t\tThis shell script takes care of starting and stopping\n#\t\tSquid Internet Object Cache\n#\n\
# chkconfig: - 90 25\n# description: Squid - Internet Object Cache.\n# pidfile: /var/run/squid.pid\n# config: /etc/squid/squid.conf\n\n\
. /etc/rc.d/init.d/functions\n\ncase \"$1\" in\n  start) daemon /usr/sbin/squid -D ;;\n  stop) /usr/sbin/squid -k shutdown ;;\n\
  *) echo \"Usage: $0 {start|stop}\"; exit 1 ;;\nesac\n";

const FUNCTIONS: &str = "# -*-Shell-script-*-\n# functions\tThis file contains functions to be used by most or all\n\
#\t\tshell scripts in the /etc/init.d directory. (wafer demo stub)\n\ndaemon() { \"$@\"; }\nkillproc() { :; }\n";

const SQUID_CONF_DEFAULT: &str = "# Squid 2.6 default configuration (abridged for the wafer demo)\n\
http_port 3128\nicp_port 0\nacl all src 0.0.0.0/0.0.0.0\nacl localhost src 127.0.0.1/255.255.255.255\n\
http_access allow localhost\nhttp_access deny all\ncache_effective_user squid\n";

const SSHD_CONFIG: &str = "#\t$OpenBSD: sshd_config,v 1.73 2005/12/06 22:38:28 reyk Exp $\n\
# (abridged for the wafer demo)\n#Port 22\nProtocol 2\nSyslogFacility AUTHPRIV\nPermitRootLogin without-password\n\
PasswordAuthentication no\nChallengeResponseAuthentication no\nGSSAPIAuthentication yes\nUsePAM yes\n\
X11Forwarding yes\nSubsystem\tsftp\t/usr/libexec/openssh/sftp-server\n";

/// A PEM block that looks like an RSA private key to scanners; its body says what it is.
const FAKE_HOST_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\n\
V0FGRVIgREVNTyAtIE5PVCBBIFJFQUwgS0VZIC0gbGVmdCBoZXJlIG9uIHB1cnBvc2UgZm9yIHRo\n\
ZSB2ZXR0ZXIgdG8gZmluZC4gSXQgc3RhbmRzIGZvciBhIGhvc3Qga2V5IHRoYXQgdGhlIFZPIGFk\n\
bWluaXN0cmF0b3IgZm9yZ290IHRvIHB1cmdlIGZyb20gdGhlIGJhc2UgaW1hZ2UuIFdBRkVSIERF\n\
TU8gLSBOT1QgQSBSRUFMIEtFWQ==\n-----END RSA PRIVATE KEY-----\n";

const KERNEL_CONFIG: &str = "#\n# Automatically generated make config (wafer demo: an abridged 2.6.18 kernel-xen config)\n#\n\
CONFIG_X86_64=y\nCONFIG_64BIT=y\nCONFIG_X86_XEN=y\nCONFIG_X86_64_XEN=y\nCONFIG_XEN=y\nCONFIG_XEN_PRIVILEGED_GUEST=y\n\
CONFIG_XEN_UNPRIVILEGED_GUEST=y\nCONFIG_XEN_BLKDEV_FRONTEND=y\nCONFIG_XEN_NETDEV_FRONTEND=y\nCONFIG_EXT3_FS=y\n";

fn entries() -> Vec<Entry> {
    let mut v = vec![
        dir("/bin", 0o755), dir("/boot", 0o755), dir("/dev", 0o755), dir("/etc", 0o755),
        dir("/etc/rc.d", 0o755), dir("/etc/rc.d/init.d", 0o755), dir("/etc/ssh", 0o755),
        dir("/etc/squid", 0o755), dir("/etc/sysconfig", 0o755), dir("/lib64", 0o755),
        dir("/proc", 0o555), dir("/root", 0o750), dir("/sbin", 0o755), dir("/sys", 0o755),
        dir("/usr", 0o755), dir("/usr/bin", 0o755), dir("/usr/sbin", 0o755), dir("/usr/lib64", 0o755),
        dir("/usr/local", 0o755), dir("/usr/local/bin", 0o755), dir("/var", 0o755),
        dir("/var/lib", 0o755), dir("/var/lib/rpm", 0o755), dir("/var/log", 0o755),
        dir("/var/run", 0o755), dir("/var/empty", 0o755), dir("/var/empty/sshd", 0o711),
        Entry { uid: SQUID_ID, gid: SQUID_ID, ..dir("/var/spool", 0o755) },
        Entry { uid: SQUID_ID, gid: SQUID_ID, ..dir("/var/spool/squid", 0o750) },
        Entry { perm: 0o1777, ..dir("/tmp", 0o1777) },
        // centos-release
        file("/etc/redhat-release", "CentOS release 5.11 (Final)\n", 0o644, Some("centos-release")),
        file("/etc/issue", "CentOS release 5.11 (Final)\nKernel \\r on an \\m\n\n", 0o644, Some("centos-release")),
        // accounts (setup's files, left unpackaged in the demo)
        file("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\n\
daemon:x:2:2:daemon:/sbin:/sbin/nologin\nsshd:x:74:74:Privilege-separated SSH:/var/empty/sshd:/sbin/nologin\n\
squid:x:23:23::/var/spool/squid:/sbin/nologin\nnobody:x:99:99:Nobody:/:/sbin/nologin\n", 0o644, None),
        file("/etc/shadow", "root:$1$wAfErDeM$0p8bNGLfc3w1kqQ1bY7cE/:16342:0:99999:7:::\nbin:*:16342:0:99999:7:::\n\
daemon:*:16342:0:99999:7:::\nsshd:!!:16342::::::\nsquid:!!:16342::::::\nnobody:*:16342:0:99999:7:::\n", 0o400, None),
        file("/etc/group", "root:x:0:root\nbin:x:1:root,bin,daemon\ndaemon:x:2:root,bin,daemon\nsshd:x:74:\n\
squid:x:23:\nnobody:x:99:\n", 0o644, None),
        file("/etc/gshadow", "root:::root\nbin:::root,bin,daemon\ndaemon:::root,bin,daemon\nsshd:!::\nsquid:!::\nnobody:!::\n", 0o400, None),
        file("/etc/inittab", "# inittab (wafer demo)\n# Default runlevel: 3 = full multiuser mode\nid:3:initdefault:\n\
si::sysinit:/etc/rc.d/rc.sysinit\nl3:3:wait:/etc/rc.d/rc 3\nco:2345:respawn:/sbin/agetty xvc0 9600 vt100-nav\n", 0o644, None),
        file("/etc/sysconfig/network", "NETWORKING=yes\nNETWORKING_IPV6=no\nHOSTNAME=localhost.localdomain\n", 0o644, None),
        file("/etc/rc.d/init.d/functions", FUNCTIONS, 0o644, None),
        link("/etc/init.d", "rc.d/init.d", None),
        // bash
        file("/bin/bash", HELLO_EXE, 0o755, Some("bash")),
        link("/bin/sh", "bash", Some("bash")),
        // openssl: 0.9.8e-7.el5 (outdated against the demo policy) or, in the updated base,
        // 0.9.8e-27.el5_10.4
        file("/lib64/libssl.so.0.9.8e", LIB_HELLO, 0o755, Some("openssl")),
        link("/lib64/libssl.so.6", "libssl.so.0.9.8e", Some("openssl")),
        file("/lib64/libcrypto.so.0.9.8e", LIB_HELLO, 0o755, Some("openssl")),
        link("/lib64/libcrypto.so.6", "libcrypto.so.0.9.8e", Some("openssl")),
        file("/usr/bin/openssl", HELLO_PIE, 0o755, Some("openssl")),
        // openssh-server
        file("/usr/sbin/sshd", HELLO_PIE, 0o755, Some("openssh-server")),
        config("/etc/ssh/sshd_config", SSHD_CONFIG, 0o600, "openssh-server"),
        file("/etc/rc.d/init.d/sshd", SSHD_INIT, 0o755, Some("openssh-server")),
        // the leftover host key: generated by the first boot of the VM the base was taken from
        file("/etc/ssh/ssh_host_rsa_key", FAKE_HOST_KEY, 0o600, None),
        // iputils: ping is setuid root on EL5, and on the demo policy's allowlist
        file("/bin/ping", HELLO_PIE, 0o4755, Some("iputils")),
        // squid
        file("/usr/sbin/squid", HELLO_PIE, 0o755, Some("squid")),
        Entry { gid: SQUID_ID, ..config("/etc/squid/squid.conf", SQUID_CONF_DEFAULT, 0o640, "squid") },
        file("/etc/rc.d/init.d/squid", SQUID_INIT, 0o755, Some("squid")),
        // the kernel (placeholders; see the module documentation)
        file("/boot/vmlinuz-2.6.18-demo", "wafer demo placeholder for a 2.6.18 kernel-xen bzImage (not bootable)\n", 0o644, None),
        file("/boot/config-2.6.18-demo", KERNEL_CONFIG, 0o644, None),
        file("/boot/initrd-2.6.18-demo.img", "wafer demo placeholder for an initrd (not bootable)\n", 0o600, None),
        file("/var/log/messages", "Sep 29 00:00:00 localhost kernel: demo log line the purge truncates\n", 0o600, None),
    ];
    // SysV runlevel directories and links, as chkconfig leaves them on CentOS 5 (squid enabled
    // in runlevel 3 only, sshd in 2-5).
    const LEVELS: [&str; 7] = ["0", "1", "2", "3", "4", "5", "6"];
    const RC_DIRS: [&str; 7] = [
        "/etc/rc.d/rc0.d",
        "/etc/rc.d/rc1.d",
        "/etc/rc.d/rc2.d",
        "/etc/rc.d/rc3.d",
        "/etc/rc.d/rc4.d",
        "/etc/rc.d/rc5.d",
        "/etc/rc.d/rc6.d",
    ];
    const RC_LINKS: [&str; 7] = [
        "/etc/rc0.d",
        "/etc/rc1.d",
        "/etc/rc2.d",
        "/etc/rc3.d",
        "/etc/rc4.d",
        "/etc/rc5.d",
        "/etc/rc6.d",
    ];
    const RC_TARGETS: [&str; 7] = [
        "rc.d/rc0.d",
        "rc.d/rc1.d",
        "rc.d/rc2.d",
        "rc.d/rc3.d",
        "rc.d/rc4.d",
        "rc.d/rc5.d",
        "rc.d/rc6.d",
    ];
    const SSHD: [&str; 7] = [
        "/etc/rc.d/rc0.d/K25sshd",
        "/etc/rc.d/rc1.d/K25sshd",
        "/etc/rc.d/rc2.d/S55sshd",
        "/etc/rc.d/rc3.d/S55sshd",
        "/etc/rc.d/rc4.d/S55sshd",
        "/etc/rc.d/rc5.d/S55sshd",
        "/etc/rc.d/rc6.d/K25sshd",
    ];
    const SQUID: [&str; 7] = [
        "/etc/rc.d/rc0.d/K25squid",
        "/etc/rc.d/rc1.d/K25squid",
        "/etc/rc.d/rc2.d/K25squid",
        "/etc/rc.d/rc3.d/S90squid",
        "/etc/rc.d/rc4.d/K25squid",
        "/etc/rc.d/rc5.d/K25squid",
        "/etc/rc.d/rc6.d/K25squid",
    ];
    for i in 0..LEVELS.len() {
        v.push(dir(RC_DIRS[i], 0o755));
        v.push(link(RC_LINKS[i], RC_TARGETS[i], None));
        v.push(link(SSHD[i], "../init.d/sshd", None));
        v.push(link(SQUID[i], "../init.d/squid", None));
    }
    v
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The rpm header of package `p` listing `files` (path order), as rpm would store it after
/// installing it: one immutable region, per-file lists, sha256 file digests (algorithm 8).
pub fn header_for(
    p: &PackageSpec,
    arch: &str,
    files: &[PackagedFile],
    install_time: u32,
) -> Header {
    let mut h = Header::default();
    let s = |v: &str| Value::String(v.to_string());
    h.set(tag::NAME, s(p.name));
    h.set(tag::VERSION, s(p.version));
    h.set(tag::RELEASE, s(p.release));
    h.set(tag::SUMMARY, s(p.summary));
    h.set(
        tag::DESCRIPTION,
        s(&format!("{} (wafer demo package header)", p.summary)),
    );
    h.set(tag::BUILDTIME, Value::Int32(vec![install_time]));
    h.set(
        tag::SIZE,
        Value::Int32(vec![files.iter().map(|f| f.size as u32).sum()]),
    );
    h.set(tag::VENDOR, s("CentOS"));
    h.set(tag::LICENSE, s(p.license));
    h.set(tag::GROUP, s(p.group));
    h.set(tag::OS, s("linux"));
    h.set(tag::ARCH, s(arch));
    h.set(
        tag::SOURCERPM,
        s(&format!("{}-{}-{}.src.rpm", p.name, p.version, p.release)),
    );
    h.set(
        tag::PROVIDENAME,
        Value::StringArray(vec![p.name.to_string()]),
    );
    if !files.is_empty() {
        let mut dirs: Vec<String> = Vec::new();
        let mut dir_idx = Vec::new();
        let mut bases = Vec::new();
        for f in files {
            let (d, b) = match f.path.rfind('/') {
                Some(i) => (f.path[..=i].to_string(), f.path[i + 1..].to_string()),
                None => ("/".to_string(), f.path.clone()),
            };
            let i = match dirs.iter().position(|x| *x == d) {
                Some(i) => i,
                None => {
                    dirs.push(d);
                    dirs.len() - 1
                }
            };
            dir_idx.push(i as u32);
            bases.push(b);
        }
        h.set(
            tag::FILESIZES,
            Value::Int32(files.iter().map(|f| f.size as u32).collect()),
        );
        h.set(
            tag::FILEMODES,
            Value::Int16(files.iter().map(|f| f.mode).collect()),
        );
        h.set(tag::FILERDEVS, Value::Int16(vec![0; files.len()]));
        h.set(
            tag::FILEMTIMES,
            Value::Int32(vec![install_time; files.len()]),
        );
        h.set(
            tag::FILEDIGESTS,
            Value::StringArray(files.iter().map(|f| f.digest.clone()).collect()),
        );
        h.set(
            tag::FILELINKTOS,
            Value::StringArray(files.iter().map(|f| f.link.clone()).collect()),
        );
        h.set(
            tag::FILEFLAGS,
            Value::Int32(
                files
                    .iter()
                    .map(|f| if f.config { 1 | (1 << 4) } else { 0 })
                    .collect(),
            ),
        );
        h.set(
            tag::FILEUSERNAME,
            Value::StringArray(files.iter().map(|f| f.user.clone()).collect()),
        );
        h.set(
            tag::FILEGROUPNAME,
            Value::StringArray(files.iter().map(|f| f.group.clone()).collect()),
        );
        h.set(
            tag::FILEINODES,
            Value::Int32((1..=files.len() as u32).collect()),
        );
        h.set(tag::DIRINDEXES, Value::Int32(dir_idx));
        h.set(tag::BASENAMES, Value::StringArray(bases));
        h.set(tag::DIRNAMES, Value::StringArray(dirs));
        h.set(tag::FILEDIGESTALGO, Value::Int32(vec![8]));
    }
    h.region_tag = Some(tag::HEADERIMMUTABLE);
    h.region_len = h.entries.len();
    h.set(tag::INSTALLTIME, Value::Int32(vec![install_time]));
    h.set(tag::INSTALLCOLOR, Value::Int32(vec![0]));
    h.set(tag::INSTALLTID, Value::Int32(vec![install_time]));
    if !files.is_empty() {
        h.set(tag::FILESTATES, Value::Char(vec![0; files.len()]));
    }
    h
}

/// One file as a package header lists it.
pub struct PackagedFile {
    /// Absolute path.
    pub path: String,
    /// st_mode with the type bits.
    pub mode: u16,
    /// Size (regular files; a symlink's target length).
    pub size: u64,
    /// sha256 hex of a regular file, "" otherwise.
    pub digest: String,
    /// Symlink target or "".
    pub link: String,
    /// Owner name.
    pub user: String,
    /// Group name.
    pub group: String,
    /// %config(noreplace).
    pub config: bool,
}

fn owner_name(id: u32) -> &'static str {
    match id {
        SSHD_ID => "sshd",
        SQUID_ID => "squid",
        _ => "root",
    }
}

/// Which base: as downloaded (openssl 0.9.8e-7.el5), or with the openssl update applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// openssl 0.9.8e-7.el5.
    Original,
    /// openssl 0.9.8e-27.el5_10.4.
    Updated,
}

/// The base as a tree, its database included. Deterministic: the same bytes every time.
pub fn tree(variant: Variant) -> Result<Tree> {
    let t = Timestamp::from_secs(BASE_EPOCH);
    let dir_meta = Metadata::new(0o755, 0, 0, t);
    let mut tree = Tree::new(dir_meta.clone());
    let all = entries();
    let mut per_pkg: Vec<Vec<PackagedFile>> = PACKAGES.iter().map(|_| Vec::new()).collect();
    for e in &all {
        let meta = Metadata::new(e.perm, e.uid, e.gid, t);
        let (kind, type_bits, size, digest, linkto) = match &e.kind {
            Kind::File(d) => (
                NodeKind::Regular(Content::from_bytes(d.clone())),
                0o100000u16,
                d.len() as u64,
                hex_sha256(d),
                String::new(),
            ),
            Kind::Dir => (
                NodeKind::empty_dir(),
                0o040000,
                4096,
                String::new(),
                String::new(),
            ),
            Kind::Link(target) => (
                NodeKind::Symlink(target.as_bytes().to_vec()),
                0o120000,
                target.len() as u64,
                String::new(),
                target.to_string(),
            ),
        };
        tree.insert(e.path.as_bytes(), Node::new(kind, meta), &dir_meta)
            .map_err(|err| anyhow!("demo base {}: {err}", e.path))?;
        if let Some(p) = e.package {
            let i = PACKAGES
                .iter()
                .position(|s| s.name == p)
                .ok_or_else(|| anyhow!("demo base: unknown package {p}"))?;
            if let Some(list) = per_pkg.get_mut(i) {
                list.push(PackagedFile {
                    path: e.path.to_string(),
                    mode: type_bits | e.perm,
                    size,
                    digest,
                    link: linkto,
                    user: owner_name(e.uid).to_string(),
                    group: owner_name(e.gid).to_string(),
                    config: e.config,
                });
            }
        }
    }
    let mut records = Vec::new();
    for (n, (spec, mut files)) in PACKAGES.iter().zip(per_pkg).enumerate() {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let spec = if spec.name == "openssl" && variant == Variant::Updated {
            &OPENSSL_UPDATED
        } else {
            spec
        };
        let h = header_for(spec, "x86_64", &files, BASE_EPOCH as u32);
        records.push((n as u32 + 1, h.to_bytes()));
    }
    let packages = pkgdb::rpmdb::bdb::write_packages(&records)
        .context("writing the demo base's rpm database")?;
    tree.insert(
        b"/var/lib/rpm/Packages",
        Node::new(
            NodeKind::Regular(Content::from_bytes(packages)),
            Metadata::new(0o644, 0, 0, t),
        ),
        &dir_meta,
    )
    .map_err(|err| anyhow!("demo base /var/lib/rpm/Packages: {err}"))?;
    Ok(tree)
}

/// Writes the base as an ext3 image (el5 profile) at `out`; returns its sha256 (hex).
pub fn write_image(out: &Path, variant: Variant) -> Result<String> {
    let tree = tree(variant)?;
    let mut opts = rootfs::ext::WriteOptions::for_profile(rootfs::ext::Profile::El5);
    opts.epoch = BASE_EPOCH;
    opts.label = b"centos5-demo".to_vec();
    rootfs::ext::write_image(&tree, out, &opts)
        .with_context(|| format!("writing the demo base {}", out.display()))?;
    let bytes = std::fs::read(out).with_context(|| format!("reading back {}", out.display()))?;
    Ok(hex_sha256(&bytes))
}
