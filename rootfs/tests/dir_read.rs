//! The directory reader on a directory built here (as root: devices, owners, security xattrs).

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use rootfs::dir::{read_dir, DirError, DirOptions};
use rootfs::{NodeKind, Source};

const CAP: &[u8] =
    b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn reads_every_kind_with_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("root");
    fs::create_dir_all(r.join("bin")).unwrap();
    fs::write(r.join("bin/su"), b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::chown(r.join("bin/su"), Some(70000), Some(80000)).unwrap();
    fs::set_permissions(r.join("bin/su"), fs::Permissions::from_mode(0o4711)).unwrap();
    xattr::set(r.join("bin/su"), "security.capability", CAP).unwrap();
    xattr::set(r.join("bin/su"), "user.note", b"n").unwrap();
    fs::hard_link(r.join("bin/su"), r.join("su-link")).unwrap();
    std::os::unix::fs::symlink("/etc", r.join("etc-link")).unwrap();
    std::os::unix::fs::symlink("..", r.join("bin/up")).unwrap();
    run(Command::new("mknod")
        .arg(r.join("tty"))
        .args(["c", "4", "1"]));
    run(Command::new("mknod")
        .arg(r.join("nvme"))
        .args(["b", "259", "65539"]));
    run(Command::new("mkfifo").arg(r.join("p")));
    let _sock = std::os::unix::net::UnixListener::bind(r.join("sock")).unwrap();
    let mut f = fs::File::create(r.join("sparse")).unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(&[9u8; 5000]).unwrap();
    f.set_len(3 << 20).unwrap();
    drop(f);
    run(Command::new("touch")
        .args(["-h", "-d", "@1234567890.987654321"])
        .arg(r.join("etc-link")));

    let t = read_dir(&r, &DirOptions::default()).unwrap();
    let su = t.lookup(b"/bin/su").unwrap();
    assert_eq!(t.lookup(b"/su-link"), Some(su), "hard links share a node");
    let n = t.node(su);
    assert_eq!(n.mode(), 0o104711);
    assert_eq!((n.meta.uid, n.meta.gid), (70000, 80000));
    assert_eq!(
        n.meta
            .xattrs
            .get(&b"security.capability"[..])
            .map(|v| v.as_slice()),
        Some(&CAP[..])
    );
    assert_eq!(
        n.meta.xattrs.get(&b"user.note"[..]).map(|v| v.as_slice()),
        Some(&b"n"[..])
    );
    match &n.kind {
        NodeKind::Regular(c) => {
            assert!(matches!(c.source(), Source::Path(_)));
            assert_eq!(c.read_to_vec(100).unwrap(), b"#!/bin/sh\n");
        }
        other => panic!("{other:?}"),
    }
    let l = t.node(t.lookup(b"/etc-link").unwrap());
    assert!(matches!(&l.kind, NodeKind::Symlink(s) if s == b"/etc"));
    assert_eq!(
        (l.meta.mtime.sec, l.meta.mtime.nsec),
        (1_234_567_890, 987_654_321)
    );
    // The symlink to the host's /etc was not followed.
    assert!(t.entries(t.lookup(b"/etc-link").unwrap()).is_none());
    assert!(
        matches!(t.node(t.lookup(b"/tty").unwrap()).kind, NodeKind::CharDevice(d) if (d.major, d.minor) == (4, 1))
    );
    assert!(
        matches!(t.node(t.lookup(b"/nvme").unwrap()).kind, NodeKind::BlockDevice(d) if (d.major, d.minor) == (259, 65539))
    );
    assert!(matches!(
        t.node(t.lookup(b"/p").unwrap()).kind,
        NodeKind::Fifo
    ));
    assert!(matches!(
        t.node(t.lookup(b"/sock").unwrap()).kind,
        NodeKind::Socket
    ));
    match &t.node(t.lookup(b"/sparse").unwrap()).kind {
        NodeKind::Regular(c) => {
            assert_eq!(c.size(), 3 << 20);
            assert!(c.is_sparse());
            let e = c.extents();
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(e[0].logical <= 1 << 20 && e[0].logical + e[0].len >= (1 << 20) + 5000);
            let v = c.read_to_vec(4 << 20).unwrap();
            assert_eq!(v, fs::read(r.join("sparse")).unwrap());
        }
        other => panic!("{other:?}"),
    }
    // Root metadata from the directory itself.
    let md = fs::metadata(&r).unwrap();
    assert_eq!(t.node(t.root()).meta.mtime.sec, md.mtime());
    // Entries are sorted; the whole set is there.
    let mut paths = Vec::new();
    t.walk(|p, _| paths.push(String::from_utf8_lossy(p).into_owned()));
    assert_eq!(
        paths,
        [
            "/",
            "/bin",
            "/bin/su",
            "/bin/up",
            "/etc-link",
            "/nvme",
            "/p",
            "/sock",
            "/sparse",
            "/su-link",
            "/tty"
        ]
    );
}

#[test]
fn errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let e = read_dir(&missing, &DirOptions::default()).unwrap_err();
    assert!(matches!(e, DirError::Io { .. }));
    assert!(e.to_string().contains("nope"), "{e}");
    let file = tmp.path().join("f");
    fs::write(&file, b"").unwrap();
    assert!(matches!(
        read_dir(&file, &DirOptions::default()),
        Err(DirError::NotADirectory { .. })
    ));
}
