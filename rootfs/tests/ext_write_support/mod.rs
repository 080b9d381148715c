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
    let mut m = Metadata::new(
        perm,
        uid,
        gid,
        Timestamp {
            sec: 1_600_000_000,
            nsec: 0,
        },
    );
    m.mtime = Timestamp {
        sec: 1_600_000_123,
        nsec: 456_789_000,
    };
    m
}

pub fn add(t: &mut Tree, path: &str, kind: NodeKind, m: Metadata) {
    t.insert(path.as_bytes(), Node::new(kind, m), &meta(0o755, 0, 0))
        .unwrap();
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
    add(
        &mut t,
        "/srv/shared",
        NodeKind::empty_dir(),
        meta(0o2775, 1000, 1000),
    );
    add(
        &mut t,
        "/dev/null",
        NodeKind::CharDevice(Device { major: 1, minor: 3 }),
        meta(0o666, 0, 0),
    );
    add(
        &mut t,
        "/dev/sda",
        NodeKind::BlockDevice(Device { major: 8, minor: 0 }),
        meta(0o660, 0, 6),
    );
    add(
        &mut t,
        "/dev/odd",
        NodeKind::CharDevice(Device {
            major: 300,
            minor: 70000,
        }),
        meta(0o600, 0, 0),
    );
    add(&mut t, "/run/fifo", NodeKind::Fifo, meta(0o644, 0, 0));
    add(&mut t, "/run/sock", NodeKind::Socket, meta(0o755, 0, 0));
    file(
        &mut t,
        "/etc/hosts",
        b"127.0.0.1 localhost\n".to_vec(),
        meta(0o644, 0, 0),
    );
    let hosts = t.lookup(b"/etc/hosts").unwrap();
    t.link_at(b"/etc/hosts.link", hosts, &meta(0o755, 0, 0))
        .unwrap();
    t.link_at(b"/srv/hosts-again", hosts, &meta(0o755, 0, 0))
        .unwrap();
    file(
        &mut t,
        "/home/big-ids/file",
        b"owned".to_vec(),
        meta(0o640, 100_000, 200_000),
    );
    add(
        &mut t,
        "/home/big-ids",
        NodeKind::empty_dir(),
        meta(0o750, 100_000, 200_000),
    );
    // Times: nanoseconds, after 2038, before 1970.
    let mut m = meta(0o644, 0, 0);
    m.atime = Timestamp {
        sec: 3_000_000_000,
        nsec: 1,
    };
    m.mtime = Timestamp {
        sec: -1_000_000,
        nsec: 999_999_999,
    };
    m.ctime = Timestamp {
        sec: 1_700_000_000,
        nsec: 500,
    };
    file(&mut t, "/times", b"t".to_vec(), m);
    add(
        &mut t,
        "/link/short",
        NodeKind::Symlink(b"../etc/hosts".to_vec()),
        meta(0o777, 0, 0),
    );
    add(
        &mut t,
        "/link/long",
        NodeKind::Symlink(format!("/{}", "x".repeat(150)).into_bytes()),
        meta(0o777, 0, 0),
    );
    // Xattrs: in-inode ones, and enough to need a block (shared by two files).
    let mut m = meta(0o755, 0, 0);
    m.xattrs.insert(
        b"security.capability".to_vec(),
        vec![
            1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    m.xattrs.insert(
        b"security.selinux".to_vec(),
        b"system_u:object_r:bin_t:s0\0".to_vec(),
    );
    m.xattrs.insert(b"user.comment".to_vec(), b"hello".to_vec());
    file(&mut t, "/usr/bin/ping", bytes(4, 3000), m);
    let mut m = meta(0o644, 0, 0);
    m.xattrs.insert(b"user.big".to_vec(), bytes(5, 600));
    m.xattrs.insert(b"user.empty".to_vec(), Vec::new());
    m.xattrs
        .insert(b"trusted.t".to_vec(), b"trusted value".to_vec());
    m.xattrs.insert(
        b"security.selinux".to_vec(),
        b"system_u:object_r:etc_t:s0\0".to_vec(),
    );
    file(&mut t, "/etc/xa1", b"a".to_vec(), m.clone());
    file(&mut t, "/etc/xa2", b"b".to_vec(), m.clone());
    add(&mut t, "/etc/xdir", NodeKind::empty_dir(), m);
    // Sparse file: data, hole, data, trailing hole.
    let src: Arc<[u8]> = bytes(6, 20_000).into();
    let c = Content::from_extents(
        Source::Memory(src.clone()),
        3 << 20,
        vec![
            Extent {
                logical: 0,
                physical: 0,
                len: 5000,
            },
            Extent {
                logical: 1 << 20,
                physical: 5000,
                len: 10_000,
            },
        ],
    )
    .unwrap();
    add(&mut t, "/sparse", NodeKind::Regular(c), meta(0o644, 0, 0));
    if big {
        let c = Content::from_extents(
            Source::Memory(src),
            (5u64 << 30) + 12345,
            vec![
                Extent {
                    logical: 0,
                    physical: 0,
                    len: 100,
                },
                Extent {
                    logical: (4u64 << 30) + 777,
                    physical: 100,
                    len: 8000,
                },
                Extent {
                    logical: 5u64 << 30,
                    physical: 5000,
                    len: 12345,
                },
            ],
        )
        .unwrap();
        add(&mut t, "/huge", NodeKind::Regular(c), meta(0o644, 0, 0));
    }
    // A POSIX ACL in the VFS xattr format (stored in ext4's compact disk format).
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    let mut m = meta(0o640, 0, 0);
    m.xattrs.insert(b"system.posix_acl_access".to_vec(), acl);
    file(&mut t, "/etc/acl", b"acl".to_vec(), m);
    file(&mut t, "/empty", Vec::new(), meta(0o600, 0, 0));
    file(&mut t, "/zeros", vec![0u8; 70_000], meta(0o600, 0, 0));
    let long = "L".repeat(255);
    file(
        &mut t,
        &format!("/names/{long}"),
        b"long".to_vec(),
        meta(0o644, 0, 0),
    );
    file(
        &mut t,
        "/names/\u{e9}t\u{e9} caf\u{e9}",
        b"utf8".to_vec(),
        meta(0o644, 0, 0),
    );
    let deep: String = (0..40).map(|i| format!("/d{i}")).collect();
    file(
        &mut t,
        &format!("{deep}/bottom"),
        b"deep".to_vec(),
        meta(0o644, 0, 0),
    );
    for i in 0..WIDE {
        let name = format!("/wide/entry-{i:05}-{}", "n".repeat(i % 40));
        file(
            &mut t,
            &name,
            if i % 500 == 0 {
                bytes(i as u64, i)
            } else {
                Vec::new()
            },
            meta(0o644, i as u32, 0),
        );
    }
    t
}

/// Run `e2fsck -fn` and assert it exits 0.
pub fn fsck(img: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(img)
        .output()
        .expect("e2fsck must be installed (e2fsprogs)");
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
    let raw: Vec<Vec<u8>> = cmds.iter().map(|c| c.as_bytes().to_vec()).collect();
    debugfs_raw(img, &raw)
}

/// Like [`debugfs`] with requests as raw bytes (file names need not be UTF-8).
pub fn debugfs_raw(img: &Path, cmds: &[Vec<u8>]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cmds");
    let mut all = Vec::new();
    for c in cmds {
        all.extend_from_slice(c);
        all.push(b'\n');
    }
    std::fs::write(&f, all).unwrap();
    let out = Command::new("debugfs")
        .arg("-f")
        .arg(&f)
        .arg(img)
        .output()
        .expect("debugfs must be installed (e2fsprogs)");
    assert!(
        out.status.success(),
        "debugfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Quote a path for a debugfs command line.
pub fn q(p: &[u8]) -> String {
    format!("\"{}\"", String::from_utf8_lossy(p))
}

/// A debugfs request `verb "path" rest` as raw bytes.
pub fn req(verb: &str, path: &[u8], rest: &str) -> Vec<u8> {
    let mut v = format!("{verb} \"").into_bytes();
    v.extend_from_slice(path);
    v.push(b'"');
    if !rest.is_empty() {
        v.push(b' ');
        v.extend_from_slice(rest.as_bytes());
    }
    v
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
                let v = line.trim_start()[key.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap();
                let mut it = v.split(':');
                let sec = u32::from_str_radix(it.next().unwrap(), 16).unwrap();
                let extra = it.next().map(|x| u32::from_str_radix(x, 16).unwrap());
                st.times.insert(k.to_string(), (sec, extra));
            }
        }
        if line.contains("Device major/minor number:") {
            let v = line
                .split("number:")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            let mut it = v.split(':');
            st.device = Some((
                it.next().unwrap().parse().unwrap(),
                it.next().unwrap().parse().unwrap(),
            ));
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
                st.xattr_names
                    .push(rest.split(" (").next().unwrap().to_string());
            } else {
                in_xattr = false;
            }
        }
    }
    st
}

/// Expected (seconds word, extra word) of a timestamp as ext stores it.
pub fn enc_time(t: Timestamp, large: bool) -> (u32, Option<u32>) {
    let lo = t.sec as i32 as u32;
    if !large {
        // 128-byte inodes: seconds only, clamped to the signed 32-bit range.
        return (
            t.sec.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32 as u32,
            None,
        );
    }
    let epoch = (((t.sec - i64::from(t.sec as i32)) >> 32) & 3) as u32;
    (lo, Some((t.nsec << 2) | epoch))
}

fn kind_name(k: &NodeKind) -> &'static str {
    match k {
        NodeKind::Regular(_) => "regular",
        NodeKind::Directory(_) => "directory",
        NodeKind::Symlink(_) => "symlink",
        NodeKind::CharDevice(_) => "character special",
        NodeKind::BlockDevice(_) => "block special",
        NodeKind::Fifo => "FIFO",
        NodeKind::Socket => "socket",
    }
}

/// Split debugfs `-f` output into the outputs of each request (debugfs echoes each request
/// as a `debugfs: ...` line).
pub fn split_requests(out: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for line in out.lines() {
        if line.starts_with("debugfs: ") {
            parts.push(String::new());
        } else if let Some(p) = parts.last_mut() {
            p.push_str(line);
            p.push('\n');
        }
    }
    parts
}

/// Files larger than this are checked by sampling, not dumped whole.
pub const DUMP_LIMIT: u64 = 64 << 20;

/// Check with debugfs that the image agrees with the tree on every path: type, mode, owner,
/// size, link count, times, device numbers, fast and slow link targets, xattr names and values,
/// and contents (`dump`). `large_inodes`: 256-byte inodes (nanoseconds, crtime).
pub fn check_with_debugfs(tree: &Tree, img: &Path, large_inodes: bool) {
    let mut paths: Vec<(Vec<u8>, rootfs::NodeId)> = Vec::new();
    tree.walk(|p, id| paths.push((p.to_vec(), id)));
    let links = tree.link_counts();
    let has_lpf = tree.lookup(b"/lost+found").is_some();
    let cmds: Vec<Vec<u8>> = paths.iter().map(|(p, _)| req("stat", p, "")).collect();
    let stats = split_requests(&debugfs_raw(img, &cmds));
    assert_eq!(stats.len(), paths.len());
    let tmp = tempfile::tempdir().unwrap();
    let mut dumps: Vec<Vec<u8>> = Vec::new();
    let mut expect_dump: Vec<(std::path::PathBuf, Vec<u8>, String)> = Vec::new();
    let mut ea_cmds: Vec<Vec<u8>> = Vec::new();
    let mut expect_ea: Vec<(std::path::PathBuf, Vec<u8>, String)> = Vec::new();
    let mut seen_ino: BTreeMap<u64, rootfs::NodeId> = BTreeMap::new();
    for (k, ((path, id), out)) in paths.iter().zip(&stats).enumerate() {
        let shown = String::from_utf8_lossy(path).into_owned();
        let st = parse_stat(out);
        let node = tree.node(*id);
        assert!(
            st.ino != 0,
            "{shown} ({path:?}): debugfs stat failed: {out}"
        );
        // Hard links: one inode per node, and only one.
        if let Some(prev) = seen_ino.insert(st.ino, *id) {
            assert_eq!(
                prev, *id,
                "{shown}: inode {} shared by different nodes",
                st.ino
            );
        }
        assert_eq!(st.kind, kind_name(&node.kind), "{shown}: type");
        assert_eq!(st.mode, u32::from(node.meta.perm), "{shown}: mode");
        assert_eq!(
            (st.uid, st.gid),
            (node.meta.uid, node.meta.gid),
            "{shown}: owner"
        );
        let mut want_links = links[id.0 as usize];
        if *id == tree.root() && !has_lpf {
            want_links += 1;
        }
        assert_eq!(st.links, want_links, "{shown}: links");
        if !matches!(node.kind, NodeKind::Directory(_)) {
            assert_eq!(st.size, node.size(), "{shown}: size");
        }
        let m = &node.meta;
        assert_eq!(
            st.times.get("mtime"),
            Some(&enc_time(m.mtime, large_inodes)),
            "{shown}: mtime"
        );
        assert_eq!(
            st.times.get("atime"),
            Some(&enc_time(m.atime, large_inodes)),
            "{shown}: atime"
        );
        assert_eq!(
            st.times.get("ctime"),
            Some(&enc_time(m.ctime, large_inodes)),
            "{shown}: ctime"
        );
        if large_inodes {
            assert_eq!(
                st.times.get("crtime"),
                Some(&enc_time(m.crtime.unwrap_or(m.ctime), true)),
                "{shown}: crtime"
            );
        }
        match &node.kind {
            NodeKind::CharDevice(d) | NodeKind::BlockDevice(d) => {
                assert_eq!(st.device, Some((d.major, d.minor)), "{shown}: device");
            }
            NodeKind::Symlink(t) if t.len() < 60 => {
                assert_eq!(
                    st.fast_link.as_deref(),
                    Some(String::from_utf8_lossy(t).as_ref()),
                    "{shown}: link"
                );
            }
            NodeKind::Symlink(t) => {
                let f = tmp.path().join(format!("d{k}"));
                dumps.push(req("dump", path, &f.display().to_string()));
                expect_dump.push((f, t.clone(), shown.clone()));
            }
            NodeKind::Regular(c) if c.size() <= DUMP_LIMIT => {
                let f = tmp.path().join(format!("d{k}"));
                dumps.push(req("dump", path, &f.display().to_string()));
                expect_dump.push((f, c.read_to_vec(DUMP_LIMIT).unwrap(), shown.clone()));
            }
            _ => {}
        }
        let mut names: Vec<String> = m
            .xattrs
            .keys()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        let mut got = st.xattr_names.clone();
        names.sort();
        got.sort();
        assert_eq!(got, names, "{shown}: xattr names");
        for (n, v) in &m.xattrs {
            let f = tmp.path().join(format!("x{}", expect_ea.len()));
            ea_cmds.push(req(
                &format!("ea_get -f {}", f.display()),
                path,
                &String::from_utf8_lossy(n),
            ));
            expect_ea.push((
                f,
                v.clone(),
                format!("{shown} xattr {}", String::from_utf8_lossy(n)),
            ));
        }
    }
    debugfs_raw(img, &dumps);
    for (f, want, shown) in expect_dump {
        let got = std::fs::read(&f)
            .unwrap_or_else(|e| panic!("{shown}: debugfs dump produced nothing: {e}"));
        assert!(
            got == want,
            "{shown}: content differs ({} vs {} bytes)",
            got.len(),
            want.len()
        );
    }
    debugfs_raw(img, &ea_cmds);
    for (f, want, shown) in expect_ea {
        let got = std::fs::read(&f).unwrap_or_default();
        if shown.contains("system.posix_acl_") {
            assert_eq!(acl_norm(&got), acl_norm(&want), "{shown}: value");
        } else {
            assert_eq!(got, want, "{shown}: value");
        }
    }
}

/// Check with ext4-view that every regular file and symlink reads back the same.
/// `block_mapped_holes`: also read sparse files on ext2/ext3 images (ext4-view 0.9 fails on
/// a hole inside a double-indirect block map, reading "block 0"; debugfs checks those).
pub fn check_with_ext4_view(tree: &Tree, img: &Path, block_mapped_holes: bool) {
    let fs =
        load_view(img).unwrap_or_else(|e| panic!("ext4-view cannot load {}: {e}", img.display()));
    let mut n = 0;
    tree.walk(|p, id| match &tree.node(id).kind {
        NodeKind::Regular(c)
            if c.size() <= DUMP_LIMIT && (block_mapped_holes || !c.is_sparse()) =>
        {
            let got = fs
                .read(p)
                .unwrap_or_else(|e| panic!("ext4-view read {}: {e}", String::from_utf8_lossy(p)));
            assert!(
                got == c.read_to_vec(DUMP_LIMIT).unwrap(),
                "ext4-view: {} differs",
                String::from_utf8_lossy(p)
            );
            n += 1;
        }
        NodeKind::Symlink(t) => {
            let got = fs.read_link(p).unwrap();
            assert_eq!(
                AsRef::<[u8]>::as_ref(&got),
                t.as_slice(),
                "ext4-view: link {}",
                String::from_utf8_lossy(p)
            );
        }
        _ => {}
    });
    assert!(n > 0);
}

/// Read `n` bytes of `path` at byte `at` through debugfs's block map (`bmap`): each block's
/// physical address from debugfs, its bytes from the image; holes (`bmap` 0) as zeros.
pub fn debugfs_read(img: &Path, path: &str, at: u64, n: usize, bs: u64) -> Vec<u8> {
    let first = at / bs;
    let last = (at + n as u64 - 1) / bs;
    let cmds: Vec<String> = (first..=last).map(|b| format!("bmap {path} {b}")).collect();
    let outs = split_requests(&debugfs(img, &cmds));
    let f = std::fs::File::open(img).unwrap();
    let mut data = Vec::new();
    for o in outs {
        let p: u64 = o
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("bmap output {o:?}"));
        let mut blk = vec![0u8; bs as usize];
        if p != 0 {
            use std::os::unix::fs::FileExt;
            f.read_exact_at(&mut blk, p * bs).unwrap();
        }
        data.extend_from_slice(&blk);
    }
    let off = (at - first * bs) as usize;
    data[off..off + n].to_vec()
}

/// Check the sparse 5 GiB `/huge` of [`feature_tree`]: size through debugfs `stat`, contents
/// at its data ranges and in a hole through debugfs `bmap`, and (extent-mapped images) through
/// ext4-view's seek + read.
pub fn check_huge(img: &Path, bs: u64, view: bool) {
    let src = bytes(6, 20_000);
    let at = (4u64 << 30) + 777;
    let mut mid = vec![0u8; 100];
    mid.extend_from_slice(&src[100..8100]);
    mid.extend_from_slice(&[0u8; 100]);
    let mut tail = vec![0u8; 10];
    tail.extend_from_slice(&src[5000..17345]);
    let checks: Vec<(u64, Vec<u8>)> = vec![
        (at - 100, mid),
        ((5u64 << 30) - 10, tail),
        (0, src[..100].to_vec()),
        (1 << 30, vec![0u8; 4096]),
    ];
    for (off, want) in &checks {
        assert!(
            debugfs_read(img, "/huge", *off, want.len(), bs) == *want,
            "/huge at {off} (debugfs)"
        );
    }
    let st = parse_stat(&split_requests(&debugfs(img, &["stat /huge".to_string()]))[0]);
    assert_eq!(st.size, (5u64 << 30) + 12345);
    if !view {
        return;
    }
    let fs = load_view(img).unwrap();
    let mut f = fs.open("/huge").unwrap();
    for (off, want) in &checks {
        f.seek_to(*off).unwrap();
        let mut out = vec![0u8; want.len()];
        let mut got = 0;
        while got < out.len() {
            let k = f.read_bytes(&mut out[got..]).unwrap();
            if k == 0 {
                break;
            }
            got += k;
        }
        assert!(out == *want, "/huge at {off} (ext4-view)");
    }
}

/// A host image file for ext4-view (its `std` feature is off here).
struct ImageFile(std::fs::File);

impl ext4_view::Ext4Read for ImageFile {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        use std::os::unix::fs::FileExt;
        self.0
            .read_exact_at(dst, start_byte)
            .map_err(|e| Box::new(e) as _)
    }
}

/// Open an image with ext4-view.
pub fn load_view(img: &Path) -> Result<ext4_view::Ext4, ext4_view::Ext4Error> {
    ext4_view::Ext4::load(Box::new(ImageFile(std::fs::File::open(img).unwrap())))
}

/// A VFS-format POSIX ACL with the (meaningless) ids of the owner/group/mask/other entries
/// zeroed: the kernel writes -1 there, e2fsprogs 0.
pub fn acl_norm(v: &[u8]) -> Vec<u8> {
    let mut out = v.to_vec();
    let mut pos = 4;
    while pos + 8 <= out.len() {
        let tag = u16::from_le_bytes([out[pos], out[pos + 1]]);
        if tag != 2 && tag != 8 {
            out[pos + 4..pos + 8].fill(0);
        }
        pos += 8;
    }
    out
}
