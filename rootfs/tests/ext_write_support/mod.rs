//! Shared helpers for the ext writer tests: a tree with every feature, and runners for the
//! real e2fsprogs tools (`e2fsck`, `debugfs`) that check what the writer made.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rootfs::content::{Content, Extent, Source};
use rootfs::{Device, Metadata, Node, NodeKind, Timestamp, Tree};

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn meta(perm: u16, uid: u32, gid: u32) -> Metadata {
    let mut m = Metadata::new(perm, uid, gid, Timestamp { sec: 1_600_000_000, nsec: 0 });
    m.mtime = Timestamp { sec: 1_600_000_123, nsec: 456_789_000 };
    m
}

pub fn add(t: &mut Tree, path: &str, kind: NodeKind, m: Metadata) {
    t.insert(path.as_bytes(), Node::new(kind, m), &meta(0o755, 0, 0)).unwrap();
}

pub fn file(t: &mut Tree, path: &str, data: Vec<u8>, m: Metadata) {
    add(t, path, NodeKind::Regular(Content::from_bytes(data)), m);
}

/// Paths of the wide directory.
pub const WIDE: usize = 5200;

/// A tree with every feature the writer supports. `big` adds a sparse 5 GiB file.
pub fn feature_tree(big: bool) -> Tree {
    let mut t = Tree::new(meta(0o755, 0, 0));
    file(&mut t, "/bin/sh", bytes(1, 150_000), meta(0o755, 0, 0));
    file(&mut t, "/usr/bin/sudo", bytes(2, 5000), meta(0o4755, 0, 0));
    file(&mut t, "/usr/bin/wall", bytes(3, 100), meta(0o2755, 0, 5));
    add(&mut t, "/tmp", NodeKind::empty_dir(), meta(0o1777, 0, 0));
    add(&mut t, "/srv/shared", NodeKind::empty_dir(), meta(0o2775, 1000, 1000));
    add(&mut t, "/dev/null", NodeKind::CharDevice(Device { major: 1, minor: 3 }), meta(0o666, 0, 0));
    add(&mut t, "/dev/sda", NodeKind::BlockDevice(Device { major: 8, minor: 0 }), meta(0o660, 0, 6));
    add(&mut t, "/dev/odd", NodeKind::CharDevice(Device { major: 300, minor: 70000 }), meta(0o600, 0, 0));
    add(&mut t, "/run/fifo", NodeKind::Fifo, meta(0o644, 0, 0));
    add(&mut t, "/run/sock", NodeKind::Socket, meta(0o755, 0, 0));
    file(&mut t, "/etc/hosts", b"127.0.0.1 localhost\n".to_vec(), meta(0o644, 0, 0));
    let hosts = t.lookup(b"/etc/hosts").unwrap();
    t.link_at(b"/etc/hosts.link", hosts, &meta(0o755, 0, 0)).unwrap();
    t.link_at(b"/srv/hosts-again", hosts, &meta(0o755, 0, 0)).unwrap();
    file(&mut t, "/home/big-ids/file", b"owned".to_vec(), meta(0o640, 100_000, 200_000));
    add(&mut t, "/home/big-ids", NodeKind::empty_dir(), meta(0o750, 100_000, 200_000));
    // Times: nanoseconds, after 2038, before 1970.
    let mut m = meta(0o644, 0, 0);
    m.atime = Timestamp { sec: 3_000_000_000, nsec: 1 };
    m.mtime = Timestamp { sec: -1_000_000, nsec: 999_999_999 };
    m.ctime = Timestamp { sec: 1_700_000_000, nsec: 500 };
    file(&mut t, "/times", b"t".to_vec(), m);
    add(&mut t, "/link/short", NodeKind::Symlink(b"../etc/hosts".to_vec()), meta(0o777, 0, 0));
    add(&mut t, "/link/long", NodeKind::Symlink(format!("/{}", "x".repeat(150)).into_bytes()), meta(0o777, 0, 0));
    // Xattrs: in-inode ones, and enough to need a block (shared by two files).
    let mut m = meta(0o755, 0, 0);
    m.xattrs.insert(b"security.capability".to_vec(), vec![1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    m.xattrs.insert(b"security.selinux".to_vec(), b"system_u:object_r:bin_t:s0\0".to_vec());
    m.xattrs.insert(b"user.comment".to_vec(), b"hello".to_vec());
    file(&mut t, "/usr/bin/ping", bytes(4, 3000), m);
    let mut m = meta(0o644, 0, 0);
    m.xattrs.insert(b"user.big".to_vec(), bytes(5, 600));
    m.xattrs.insert(b"user.empty".to_vec(), Vec::new());
    m.xattrs.insert(b"trusted.t".to_vec(), b"trusted value".to_vec());
    m.xattrs.insert(b"security.selinux".to_vec(), b"system_u:object_r:etc_t:s0\0".to_vec());
    file(&mut t, "/etc/xa1", b"a".to_vec(), m.clone());
    file(&mut t, "/etc/xa2", b"b".to_vec(), m.clone());
    add(&mut t, "/etc/xdir", NodeKind::empty_dir(), m);
    // Sparse file: data, hole, data, trailing hole.
    let src: Arc<[u8]> = bytes(6, 20_000).into();
    let c = Content::from_extents(
        Source::Memory(src.clone()),
        3 << 20,
        vec![Extent { logical: 0, physical: 0, len: 5000 }, Extent { logical: 1 << 20, physical: 5000, len: 10_000 }],
    )
    .unwrap();
    add(&mut t, "/sparse", NodeKind::Regular(c), meta(0o644, 0, 0));
    if big {
        let c = Content::from_extents(
            Source::Memory(src),
            (5u64 << 30) + 12345,
            vec![
                Extent { logical: 0, physical: 0, len: 100 },
                Extent { logical: (4u64 << 30) + 777, physical: 100, len: 8000 },
                Extent { logical: 5u64 << 30, physical: 9000, len: 12345 },
            ],
        )
        .unwrap();
        add(&mut t, "/huge", NodeKind::Regular(c), meta(0o644, 0, 0));
    }
    file(&mut t, "/empty", Vec::new(), meta(0o600, 0, 0));
    file(&mut t, "/zeros", vec![0u8; 70_000], meta(0o600, 0, 0));
    let long = "L".repeat(255);
    file(&mut t, &format!("/names/{long}"), b"long".to_vec(), meta(0o644, 0, 0));
    file(&mut t, "/names/\u{e9}t\u{e9} caf\u{e9}", b"utf8".to_vec(), meta(0o644, 0, 0));
    let deep: String = (0..40).map(|i| format!("/d{i}")).collect();
    file(&mut t, &format!("{deep}/bottom"), b"deep".to_vec(), meta(0o644, 0, 0));
    for i in 0..WIDE {
        let name = format!("/wide/entry-{i:05}-{}", "n".repeat(i % 40));
        file(&mut t, &name, if i % 500 == 0 { bytes(i as u64, i) } else { Vec::new() }, meta(0o644, i as u32, 0));
    }
    t
}

/// Run `e2fsck -fn` and assert it exits 0.
pub fn fsck(img: &Path) {
    let out = Command::new("e2fsck").arg("-fn").arg(img).output().expect("e2fsck must be installed (e2fsprogs)");
    assert!(
        out.status.success(),
        "e2fsck -fn {} failed ({:?}):\n{}\n{}",
        img.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run debugfs with the given requests (one per line) and return stdout.
pub fn debugfs(img: &Path, cmds: &[String]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cmds");
    std::fs::write(&f, cmds.join("\n") + "\n").unwrap();
    let out = Command::new("debugfs").arg("-f").arg(&f).arg(img).output().expect("debugfs must be installed (e2fsprogs)");
    assert!(out.status.success(), "debugfs failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Quote a path for a debugfs command line.
pub fn q(p: &[u8]) -> String {
    format!("\"{}\"", String::from_utf8_lossy(p))
}

/// The fields of a debugfs `stat`.
#[derive(Debug, Default, Clone)]
pub struct Stat {
    pub ino: u64,
    pub kind: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u32,
    pub times: BTreeMap<String, (u32, Option<u32>)>,
    pub device: Option<(u32, u32)>,
    pub fast_link: Option<String>,
    pub xattr_names: Vec<String>,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let i = line.find(key)?;
    line[i + key.len()..].split_whitespace().next()
}

/// Parse the output of one `stat` request.
pub fn parse_stat(s: &str) -> Stat {
    let mut st = Stat::default();
    let mut in_xattr = false;
    for line in s.lines() {
        if line.starts_with("Inode:") {
            st.ino = field(line, "Inode:").unwrap().parse().unwrap();
            let t = line.split("Type:").nth(1).unwrap();
            st.kind = t.split("Mode:").next().unwrap().trim().to_string();
            st.mode = u32::from_str_radix(field(line, "Mode:").unwrap(), 8).unwrap();
        }
        if line.starts_with("User:") {
            st.uid = field(line, "User:").unwrap().parse().unwrap();
            st.gid = field(line, "Group:").unwrap().parse().unwrap();
            st.size = field(line, "Size:").unwrap().parse().unwrap();
        }
        if line.starts_with("Links:") {
            st.links = field(line, "Links:").unwrap().parse().unwrap();
        }
        for k in ["ctime", "atime", "mtime", "crtime"] {
            let key = format!("{k}: 0x");
            if line.trim_start().starts_with(&key) {
                let v = line.trim_start()[key.len()..].split_whitespace().next().unwrap();
                let mut it = v.split(':');
                let sec = u32::from_str_radix(it.next().unwrap(), 16).unwrap();
                let extra = it.next().map(|x| u32::from_str_radix(x, 16).unwrap());
                st.times.insert(k.to_string(), (sec, extra));
            }
        }
        if line.contains("Device major/minor number:") {
            let v = line.split("number:").nth(1).unwrap().split_whitespace().next().unwrap();
            let mut it = v.split(':');
            st.device = Some((it.next().unwrap().parse().unwrap(), it.next().unwrap().parse().unwrap()));
        }
        if let Some(rest) = line.strip_prefix("Fast link dest: ") {
            st.fast_link = Some(rest.trim_matches('"').to_string());
        }
        if line.starts_with("Extended attributes:") {
            in_xattr = true;
            continue;
        }
        if in_xattr {
            if let Some(rest) = line.strip_prefix("  ") {
                st.xattr_names.push(rest.split(" (").next().unwrap().to_string());
            } else {
                in_xattr = false;
            }
        }
    }
    st
}
