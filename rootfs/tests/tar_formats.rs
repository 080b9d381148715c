//! Archives made by GNU tar and bsdtar from a directory built here, read back with our reader and
//! compared with the directory (read independently with `lstat`/`getxattr` from std and the
//! `xattr` crate). Tests run as root (device nodes, ownership, security.* xattrs).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rootfs::tar::{read_tar_file, Compression, TarOptions};
use rootfs::{FileType, NodeKind, Tree};

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        let prog = cmd.get_program().to_string_lossy().into_owned();
        let pkg = match prog.as_str() {
            "bsdtar" => "libarchive-tools",
            "getfattr" | "setfattr" => "attr",
            "xz" => "xz-utils",
            other => other,
        };
        panic!("cannot run `{prog}` ({e}): install the Debian package {pkg} (scripts/test installs every test oracle)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CAP: &[u8] =
    b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

/// Build the source tree. `full`: include things ustar cannot hold (long names, big ids).
fn build_source(root: &Path, full: bool) {
    fs::create_dir_all(root.join("etc/sub")).unwrap();
    fs::write(root.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    fs::write(root.join("etc/big.bin"), &big).unwrap();
    fs::set_permissions(root.join("etc/big.bin"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(root.join("etc/sub"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::hard_link(root.join("etc/passwd"), root.join("etc/sub/passwd-link")).unwrap();
    fs::hard_link(root.join("etc/passwd"), root.join("hl2")).unwrap();
    std::os::unix::fs::symlink("etc/passwd", root.join("sym")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", root.join("dangling")).unwrap();
    run(Command::new("mknod")
        .arg(root.join("null"))
        .args(["c", "1", "3"]));
    run(Command::new("mknod")
        .arg(root.join("sda1"))
        .args(["b", "8", "1"]));
    run(Command::new("mknod")
        .arg(root.join("bigdev"))
        .args(["c", "300", "70000"]));
    run(Command::new("mkfifo").arg(root.join("fifo")));
    std::os::unix::fs::chown(root.join("etc/passwd"), Some(12), Some(34)).unwrap();
    xattr::set(root.join("etc/big.bin"), "security.capability", CAP).unwrap();
    xattr::set(root.join("etc/big.bin"), "user.comment", b"hello world").unwrap();
    xattr::set(root.join("etc/sub"), "user.dir", b"d").unwrap();
    // Sparse: 4 MiB with two data islands, ending in a hole.
    let mut f = fs::File::create(root.join("sparse")).unwrap();
    f.write_all(&[0xaa; 4096]).unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(&[0x55; 8192]).unwrap();
    f.set_len(4 << 20).unwrap();
    drop(f);
    if full {
        let long_dir = root.join("d".repeat(90)).join("e".repeat(90));
        fs::create_dir_all(&long_dir).unwrap();
        let long_file = long_dir.join("f".repeat(120));
        fs::write(&long_file, b"long").unwrap();
        std::os::unix::fs::symlink("t".repeat(150), root.join("longlink")).unwrap();
        fs::hard_link(&long_file, root.join("g".repeat(110))).unwrap();
        fs::write(root.join("bigid"), b"x").unwrap();
        std::os::unix::fs::chown(root.join("bigid"), Some(3_000_000), Some(4_000_000)).unwrap();
    }
    // Times last (creating entries changes the parents' mtimes).
    let mut paths = Vec::new();
    collect(root, &mut paths);
    for (i, p) in paths.iter().enumerate() {
        let stamp = format!(
            "@{}.{:09}",
            1_600_000_000 + i as i64 * 1000,
            123_456_789u32 + i as u32
        );
        run(Command::new("touch").arg("-h").arg("-d").arg(&stamp).arg(p));
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut ents: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ents.sort();
    for p in ents {
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
    out.push(dir.to_path_buf());
}

struct Expect {
    nsec: bool,
    xattrs: bool,
    /// bsdtar stores device numbers for hard-link targets etc. the same; nothing special.
    check_root: bool,
}

fn read_all(tree: &Tree, id: rootfs::NodeId) -> Vec<u8> {
    match &tree.node(id).kind {
        NodeKind::Regular(c) => {
            let mut v = Vec::new();
            c.reader().unwrap().read_to_end(&mut v).unwrap();
            v
        }
        _ => panic!("not a regular file"),
    }
}

/// Compare the tree with the host directory, path by path.
fn compare(tree: &Tree, root: &Path, ex: &Expect) {
    let mut seen = 0;
    let mut ino_to_node: HashMap<u64, rootfs::NodeId> = HashMap::new();
    tree.walk(|p, id| {
        seen += 1;
        let rel = std::ffi::OsStr::from_bytes(&p[1..]);
        let host = if p == b"/" {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let md = fs::symlink_metadata(&host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
        let node = tree.node(id);
        let shown = String::from_utf8_lossy(p).into_owned();
        if p == b"/" && !ex.check_root {
            return;
        }
        assert_eq!(node.mode(), md.mode(), "{shown}: mode");
        assert_eq!(node.meta.uid, md.uid(), "{shown}: uid");
        assert_eq!(node.meta.gid, md.gid(), "{shown}: gid");
        assert_eq!(node.meta.mtime.sec, md.mtime(), "{shown}: mtime");
        if ex.nsec {
            assert_eq!(
                i64::from(node.meta.mtime.nsec),
                md.mtime_nsec(),
                "{shown}: mtime ns"
            );
        }
        if ex.xattrs {
            let mut want = BTreeMap::new();
            for n in xattr::list(&host).unwrap() {
                want.insert(
                    n.as_bytes().to_vec(),
                    xattr::get(&host, &n).unwrap().unwrap(),
                );
            }
            assert_eq!(node.meta.xattrs, want, "{shown}: xattrs");
        }
        match &node.kind {
            NodeKind::Regular(c) => {
                assert_eq!(c.size(), md.len(), "{shown}: size");
                assert_eq!(
                    read_all(tree, id),
                    fs::read(&host).unwrap(),
                    "{shown}: contents"
                );
                if md.nlink() > 1 {
                    let prev = ino_to_node.entry(md.ino()).or_insert(id);
                    assert_eq!(*prev, id, "{shown}: hard link to the same node");
                }
            }
            NodeKind::Symlink(t) => assert_eq!(
                t.as_slice(),
                fs::read_link(&host).unwrap().as_os_str().as_bytes(),
                "{shown}"
            ),
            NodeKind::CharDevice(d) | NodeKind::BlockDevice(d) => {
                let rdev = md.rdev();
                assert_eq!(
                    (d.major, d.minor),
                    (rootfs::dir::dev_major(rdev), rootfs::dir::dev_minor(rdev)),
                    "{shown}: device"
                );
            }
            NodeKind::Directory(_) => assert!(md.is_dir()),
            NodeKind::Fifo => assert_eq!(node.file_type(), FileType::Fifo),
            NodeKind::Socket => {}
        }
    });
    // Every host entry is in the tree.
    let mut host_paths = Vec::new();
    collect(root, &mut host_paths);
    assert_eq!(seen, host_paths.len(), "entry count (tree vs host)");
}

fn setup(full: bool) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    build_source(&src, full);
    (tmp, src)
}

fn check_sparse(tree: &Tree) {
    let id = tree.lookup(b"/sparse").unwrap();
    match &tree.node(id).kind {
        NodeKind::Regular(c) => {
            assert_eq!(c.size(), 4 << 20);
            assert!(c.is_sparse(), "sparse file kept sparse: {:?}", c.extents());
            assert!(c.stored_bytes() <= 16384, "stored {}", c.stored_bytes());
        }
        _ => panic!("sparse is not a regular file"),
    }
}

fn gnu_tar(tmp: &Path, src: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = tmp.join(name);
    run(Command::new("tar")
        .args(args)
        .arg("-cf")
        .arg(&out)
        .arg("-C")
        .arg(src)
        .arg("."));
    out
}

#[test]
fn gnu_format_with_long_names_and_old_sparse() {
    let (tmp, src) = setup(true);
    let a = gnu_tar(tmp.path(), &src, "gnu.tar", &["--format=gnu", "--sparse"]);
    let (tree, stats) = read_tar_file(&a, &TarOptions::default()).unwrap();
    assert!(stats.entries > 10);
    compare(
        &tree,
        &src,
        &Expect {
            nsec: false,
            xattrs: false,
            check_root: true,
        },
    );
    check_sparse(&tree);
}

#[test]
fn posix_format_with_xattrs_and_each_sparse_version() {
    let (tmp, src) = setup(true);
    for v in ["0.0", "0.1", "1.0"] {
        let a = gnu_tar(
            tmp.path(),
            &src,
            &format!("posix-{v}.tar"),
            &[
                "--format=posix",
                "--xattrs",
                "--xattrs-include=*",
                "--sparse",
                &format!("--sparse-version={v}"),
            ],
        );
        let (tree, _) =
            read_tar_file(&a, &TarOptions::default()).unwrap_or_else(|e| panic!("sparse {v}: {e}"));
        compare(
            &tree,
            &src,
            &Expect {
                nsec: true,
                xattrs: true,
                check_root: true,
            },
        );
        check_sparse(&tree);
    }
}

#[test]
fn ustar_format() {
    let (tmp, src) = setup(false);
    let a = gnu_tar(tmp.path(), &src, "ustar.tar", &["--format=ustar"]);
    let (tree, _) = read_tar_file(&a, &TarOptions::default()).unwrap();
    compare(
        &tree,
        &src,
        &Expect {
            nsec: false,
            xattrs: false,
            check_root: true,
        },
    );
}

#[test]
fn each_compression_by_magic() {
    let (tmp, src) = setup(true);
    for (flag, want) in [
        ("-z", Compression::Gzip),
        ("-J", Compression::Xz),
        ("-j", Compression::Bzip2),
        ("--zstd", Compression::Zstd),
    ] {
        // A misleading extension: detection must use the magic.
        let a = gnu_tar(
            tmp.path(),
            &src,
            &format!("c{flag}.tar"),
            &[
                "--format=posix",
                "--xattrs",
                "--xattrs-include=*",
                "--sparse",
                flag,
            ],
        );
        let head = fs::read(&a).unwrap();
        assert_eq!(Compression::detect(&head[..8]), want);
        let spool = tmp.path().join("spool");
        fs::create_dir_all(&spool).unwrap();
        let opts = TarOptions {
            spool_dir: Some(spool.clone()),
            ..TarOptions::default()
        };
        let (tree, _) = read_tar_file(&a, &opts).unwrap_or_else(|e| panic!("{flag}: {e}"));
        compare(
            &tree,
            &src,
            &Expect {
                nsec: true,
                xattrs: true,
                check_root: true,
            },
        );
        check_sparse(&tree);
        // The spool is anonymous: nothing is left in the directory.
        assert_eq!(fs::read_dir(&spool).unwrap().count(), 0);
    }
}

fn bsdtar(tmp: &Path, src: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = tmp.join(name);
    run(Command::new("bsdtar")
        .args(args)
        .arg("-cf")
        .arg(&out)
        .arg("-C")
        .arg(src)
        .arg("."));
    out
}

#[test]
fn bsdtar_pax_with_xattrs_sparse_and_compression() {
    let (tmp, src) = setup(true);
    for (i, extra) in [&[][..], &["--zstd"][..], &["-z"][..], &["-J"][..]]
        .iter()
        .enumerate()
    {
        let mut args = vec!["--format=pax", "--xattrs"];
        args.extend_from_slice(extra);
        let a = bsdtar(tmp.path(), &src, &format!("bsd{i}.tar"), &args);
        let (tree, _) =
            read_tar_file(&a, &TarOptions::default()).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
        compare(
            &tree,
            &src,
            &Expect {
                nsec: true,
                xattrs: true,
                check_root: true,
            },
        );
        check_sparse(&tree);
    }
}

#[test]
fn bsdtar_ustar_and_gnutar_formats() {
    let (tmp, src) = setup(false);
    for fmt in ["--format=ustar", "--format=gnutar"] {
        let a = bsdtar(tmp.path(), &src, "b.tar", &[fmt]);
        let (tree, _) =
            read_tar_file(&a, &TarOptions::default()).unwrap_or_else(|e| panic!("{fmt}: {e}"));
        compare(
            &tree,
            &src,
            &Expect {
                nsec: false,
                xattrs: false,
                check_root: true,
            },
        );
    }
}

#[test]
fn uncompressed_contents_point_into_the_archive() {
    let (tmp, src) = setup(false);
    let a = gnu_tar(tmp.path(), &src, "plain.tar", &["--format=gnu"]);
    let (tree, _) = read_tar_file(&a, &TarOptions::default()).unwrap();
    let id = tree.lookup(b"/etc/passwd").unwrap();
    let NodeKind::Regular(c) = &tree.node(id).kind else {
        panic!()
    };
    match c.source() {
        rootfs::Source::Shared(s) => assert_eq!(s.len(), fs::metadata(&a).unwrap().len()),
        other => panic!("expected a shared source, got {other:?}"),
    }
    let e = c.extents()[0];
    assert_eq!(e.physical % 512, 0);
    let raw = fs::read(&a).unwrap();
    assert_eq!(
        &raw[e.physical as usize..(e.physical + e.len) as usize],
        b"root:x:0:0:root:/root:/bin/sh\n"
    );
}

#[test]
fn v7_format_without_magic() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/f"), b"v7 data").unwrap();
    fs::hard_link(src.join("d/f"), src.join("h")).unwrap();
    std::os::unix::fs::symlink("d/f", src.join("l")).unwrap();
    let a = gnu_tar(tmp.path(), &src, "v7.tar", &["--format=v7"]);
    let raw = fs::read(&a).unwrap();
    assert_ne!(&raw[257..262], b"ustar");
    assert!(rootfs::tar::looks_like_tar(&raw[..512]));
    let (tree, _) = read_tar_file(&a, &TarOptions::default()).unwrap();
    compare(
        &tree,
        &src,
        &Expect {
            nsec: false,
            xattrs: false,
            check_root: false,
        },
    );
}
