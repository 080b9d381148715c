//! Our ext reader against debugfs on images `mke2fs -d` makes here, one per feature set, from a
//! source tree with every file type, hard links, special modes, large ids, xattrs (incl. a POSIX
//! ACL), sparse and triple-indirect files, long names and a wide (htree) directory.

mod ext_read_util;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use ext_read_util::*;
use rootfs::ext::{FsKind, ReadOptions};
use rootfs::NodeKind;

fn mknod(path: &Path, mode: u32, major: u32, minor: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let dev = libc::makedev(major, minor);
    // SAFETY: c is a valid NUL-terminated path.
    let r = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn acl_value() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// The source tree. `big_sparse`: add a sparse file reaching past 64 MiB (triple indirection
/// with 1 KiB blocks).
fn make_source(root: &Path, big_sparse: bool) {
    fs::create_dir_all(root.join("etc/deep/er/still")).unwrap();
    fs::write(root.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("tiny"), b"inline me").unwrap();
    fs::write(root.join("etc/deep/er/still/file"), vec![7u8; 5000]).unwrap();
    let mut medium = Vec::new();
    for i in 0..40_000u32 {
        medium.extend_from_slice(&i.to_le_bytes());
    }
    fs::write(root.join("medium"), &medium).unwrap();
    // Sparse: data, hole, data, trailing hole.
    let mut f = fs::File::create(root.join("sparse")).unwrap();
    f.write_all(b"start").unwrap();
    f.seek(SeekFrom::Start(3 << 20)).unwrap();
    f.write_all(b"middle").unwrap();
    f.set_len(5 << 20).unwrap();
    if big_sparse {
        let mut f = fs::File::create(root.join("huge_sparse")).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(80 << 20)).unwrap();
        f.write_all(b"tail past the triple indirect boundary")
            .unwrap();
    }
    // setuid, setgid, sticky, large ids.
    fs::write(root.join("su"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("su"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(root.join("shared")).unwrap();
    fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    std::os::unix::fs::chown(root.join("shared"), Some(70000), Some(80000)).unwrap();
    // Hard links.
    fs::hard_link(root.join("etc/passwd"), root.join("passwd-link")).unwrap();
    fs::hard_link(root.join("etc/passwd"), root.join("etc/deep/passwd2")).unwrap();
    // Symlinks: fast and slow.
    std::os::unix::fs::symlink("etc/passwd", root.join("fast-link")).unwrap();
    std::os::unix::fs::symlink("x".repeat(200), root.join("slow-link")).unwrap();
    // Devices, fifo, socket.
    fs::create_dir(root.join("dev")).unwrap();
    mknod(&root.join("dev/null"), libc::S_IFCHR | 0o666, 1, 3);
    mknod(&root.join("dev/sda1"), libc::S_IFBLK | 0o660, 8, 1);
    mknod(&root.join("dev/big"), libc::S_IFCHR | 0o600, 300, 70000);
    mknod(&root.join("fifo"), libc::S_IFIFO | 0o644, 0, 0);
    let _sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    // xattrs.
    xattr::set(
        root.join("su"),
        "security.capability",
        b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    )
    .unwrap();
    xattr::set(root.join("su"), "user.note", b"hello").unwrap();
    xattr::set(root.join("etc/passwd"), "trusted.t", b"trusted value").unwrap();
    xattr::set(root.join("medium"), "user.big", &[b'v'; 600]).unwrap();
    fs::write(root.join("acl-file"), b"acl").unwrap();
    xattr::set(
        root.join("acl-file"),
        "system.posix_acl_access",
        &acl_value(),
    )
    .unwrap();
    // Long names and a wide directory.
    fs::write(root.join("n".repeat(255)), b"long name").unwrap();
    fs::create_dir(root.join("wide")).unwrap();
    for i in 0..3000 {
        fs::write(
            root.join(format!("wide/entry-with-a-longish-name-{i:05}")),
            i.to_string(),
        )
        .unwrap();
    }
    // Make times distinctive (nanoseconds).
    let ts = libc::timespec {
        tv_sec: 1_234_567_890,
        tv_nsec: 123_456_789,
    };
    let c = std::ffi::CString::new(root.join("tiny").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path and two timespecs.
    unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [ts, ts].as_ptr(), 0) };
}

fn mkfs(src: &Path, img: &Path, args: &[&str], size: &str) -> bool {
    let out = Command::new("mke2fs")
        .args(["-q", "-F", "-E", "lazy_itable_init=0,root_owner=0:0"])
        .args(args)
        .arg("-d")
        .arg(src)
        .arg(img)
        .arg(size)
        .output()
        .expect("mke2fs (e2fsprogs) must be installed");
    if !out.status.success() {
        eprintln!("mke2fs {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

fn check(name: &str, args: &[&str], size: &str, big_sparse: bool, kind: FsKind) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    make_source(&src, big_sparse);
    let img = work.path().join(format!("{name}.img"));
    assert!(mkfs(&src, &img, args, size), "{name}: mke2fs failed");
    // mke2fs -d writes linear directories; e2fsck -D indexes the large ones (htree).
    let st = Command::new("e2fsck")
        .args(["-fyD"])
        .arg(&img)
        .output()
        .expect("e2fsck must be installed");
    assert!(
        st.status.code().is_some_and(|c| c <= 1),
        "{name}: e2fsck -fyD: {}",
        String::from_utf8_lossy(&st.stdout)
    );
    if let Some(keep) = std::env::var_os("WAFER_KEEP_IMAGES") {
        fs::copy(&img, Path::new(&keep).join(format!("{name}.img"))).unwrap();
    }
    let image = read(
        &img,
        &ReadOptions {
            verify_checksums: true,
            strict_checksums: true,
        },
    );
    assert_eq!(image.info.kind, kind, "{name}");
    assert!(!image.info.needs_recovery);
    let t = &image.tree;
    // Hard links are one node.
    let a = t.lookup(b"/etc/passwd").unwrap();
    assert_eq!(t.lookup(b"/passwd-link"), Some(a));
    assert_eq!(t.lookup(b"/etc/deep/passwd2"), Some(a));
    assert_eq!(t.link_counts()[a.0 as usize], 3);
    assert_eq!(t.node(t.lookup(b"/su").unwrap()).meta.perm, 0o4755);
    assert_eq!(t.node(t.lookup(b"/tmp").unwrap()).meta.perm, 0o1777);
    let shared = t.node(t.lookup(b"/shared").unwrap());
    assert_eq!(
        (shared.meta.perm, shared.meta.uid, shared.meta.gid),
        (0o2775, 70000, 80000)
    );
    assert!(
        matches!(t.node(t.lookup(b"/dev/big").unwrap()).kind, NodeKind::CharDevice(d) if d.major == 300 && d.minor == 70000)
    );
    assert!(matches!(
        t.node(t.lookup(b"/sock").unwrap()).kind,
        NodeKind::Socket
    ));
    assert!(matches!(
        t.node(t.lookup(b"/fifo").unwrap()).kind,
        NodeKind::Fifo
    ));
    assert_eq!(
        t.node(t.lookup(b"/acl-file").unwrap())
            .meta
            .xattrs
            .get(&b"system.posix_acl_access"[..]),
        Some(&acl_value())
    );
    let NodeKind::Regular(sp) = &t.node(t.lookup(b"/sparse").unwrap()).kind else {
        panic!()
    };
    // mke2fs 1.47.0 with inline_data drops the trailing hole of a sparse file (its size ends at
    // the last data block); debugfs agrees with us on that below, so only check it elsewhere.
    if name != "inline" {
        assert_eq!(sp.size(), 5 << 20);
    }
    assert!(
        sp.is_sparse() && sp.stored_bytes() <= 2 * u64::from(image.info.block_size),
        "{name}: sparse file stores {}",
        sp.stored_bytes()
    );
    if name == "inline" {
        let stat = run(Command::new("debugfs")
            .arg("-R")
            .arg("stat /tiny")
            .arg(&img));
        assert!(
            stat.contains("Size of inline data"),
            "{name}: /tiny should be inline:\n{stat}"
        );
    }
    assert_eq!(t.entries(t.lookup(b"/wide").unwrap()).unwrap().len(), 3000);
    let htree = run(Command::new("debugfs")
        .arg("-R")
        .arg("htree /wide")
        .arg(&img));
    assert!(
        htree.contains("Root node dump"),
        "{name}: /wide should be an htree directory"
    );
    let c = compare_with_debugfs(&img, &image, &[], work.path());
    assert!(
        c.devices == 3 && c.symlinks == 2 && c.xattrs >= 5,
        "{name}: {c:?}"
    );
}

#[test]
fn ext2_1k_blocks_128_byte_inodes_triple_indirect() {
    check(
        "ext2",
        &["-t", "ext2", "-b", "1024", "-I", "128"],
        "160M",
        true,
        FsKind::Ext2,
    );
}

#[test]
fn ext3_with_journal() {
    check(
        "ext3",
        &["-t", "ext3", "-b", "1024"],
        "64M",
        false,
        FsKind::Ext3,
    );
}

#[test]
fn ext4_default() {
    check("ext4", &["-t", "ext4"], "64M", false, FsKind::Ext4);
}

#[test]
fn ext4_metadata_csum_64bit() {
    check(
        "csum64",
        &["-t", "ext4", "-O", "metadata_csum,64bit", "-b", "1024"],
        "64M",
        false,
        FsKind::Ext4,
    );
}

#[test]
fn ext4_inline_data() {
    check(
        "inline",
        &["-t", "ext4", "-O", "inline_data"],
        "64M",
        false,
        FsKind::Ext4,
    );
}

#[test]
fn ext4_meta_bg() {
    check(
        "metabg",
        &["-t", "ext4", "-O", "meta_bg,^resize_inode", "-b", "1024"],
        "96M",
        false,
        FsKind::Ext4,
    );
}

#[test]
fn ext4_64k_blocks() {
    check(
        "b64k",
        &["-t", "ext4", "-b", "65536"],
        "256M",
        false,
        FsKind::Ext4,
    );
}

#[test]
fn ext4_bigalloc() {
    check(
        "bigalloc",
        &["-t", "ext4", "-O", "bigalloc", "-C", "16384"],
        "128M",
        false,
        FsKind::Ext4,
    );
}
