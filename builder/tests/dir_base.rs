//! A `dir` base builds reproducibly (issue 12): the pin and the bundle depend only on what a
//! copy keeps (names, contents, types, modes, owners, mtimes, xattrs, device numbers, hard-link
//! structure), never on access or change times, inode numbers or the directory's read order.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use builder::{build, BuildOptions, NoProgress};
use common::*;

/// A small tree with the kinds a copy must keep: files, a hard-linked pair, a symlink, a FIFO,
/// an empty directory, a setuid program, a non-root owner, and a file with a user xattr where
/// the filesystem allows one.
fn make_tree(root: &Path) {
    put(
        root,
        "etc/os-release",
        b"ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    );
    put(root, "etc/motd", b"hello\n");
    put(root, "etc/hostname", b"builder-host\n");
    put(root, "bin/sh", &fake_elf());
    put(root, "usr/bin/su", &fake_elf());
    std::fs::hard_link(root.join("bin/sh"), root.join("bin/dash")).unwrap();
    std::os::unix::fs::symlink("../etc/motd", root.join("bin/motd-link")).unwrap();
    std::fs::create_dir_all(root.join("var/empty")).unwrap();
    put(root, "home/user/notes", b"mine\n");
    run(Command::new("mkfifo").arg(root.join("var/fifo")));
    run(Command::new("chmod")
        .arg("4755")
        .arg(root.join("usr/bin/su")));
    run(Command::new("chown")
        .arg("-R")
        .arg("1000:1000")
        .arg(root.join("home/user")));
    // Where user xattrs are allowed (not everywhere: some tmpfs refuse them).
    let _ = Command::new("setfattr")
        .args(["-n", "user.wafer", "-v", "kept"])
        .arg(root.join("etc/motd"))
        .output();
    // Fixed, distinct mtimes (nanoseconds included), set without following links, deepest
    // first so that setting a file's time does not change its directory's afterwards.
    let mut paths: Vec<_> = walk(root);
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in paths.iter().enumerate() {
        run(Command::new("touch")
            .arg("-h")
            .arg("-d")
            .arg(format!("@{}.{:09}", BASE_MTIME + i as i64, 123_456_789))
            .arg(p));
    }
}

/// Every path under `root` (itself included), not following links.
fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                out.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    out
}

/// (seconds, nanoseconds).
type Time = (i64, i64);

/// (path, atime, ctime, inode) of every entry, to show the copies really differ there.
fn host_times(root: &Path) -> Vec<(String, Time, Time, u64)> {
    let mut v: Vec<_> = walk(root)
        .into_iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(&p).unwrap();
            (
                p.strip_prefix(root).unwrap().display().to_string(),
                (m.atime(), m.atime_nsec()),
                (m.ctime(), m.ctime_nsec()),
                m.ino(),
            )
        })
        .collect();
    v.sort();
    v
}

fn pin_of(root: &Path) -> String {
    let tree = rootfs::dir::read_dir(
        root,
        &rootfs::dir::DirOptions {
            host_times: false,
            ..Default::default()
        },
    )
    .unwrap();
    builder::tree_digest(&tree).unwrap()
}

fn write_recipe(dir: &Path, pin: &str) -> std::path::PathBuf {
    let p = dir.join("recipe.toml");
    std::fs::write(
        &p,
        format!(
            "[wafer]\nname = \"dirbase\"\nversion = \"1\"\nvo = \"cms\"\n\n[base]\nkind = \"dir\"\npath = \"base\"\nsha256 = \"{pin}\"\n\n[[step]]\ntype = \"mkdir\"\npath = \"/srv\"\n"
        ),
    )
    .unwrap();
    p
}

/// Every file of two bundles, byte for byte (the report too: it names no host path).
fn assert_same_bundle(a: &Path, b: &Path) {
    let list = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(a), list(b));
    assert!(list(a).contains(&"wafer.json".to_string()));
    assert!(list(a).contains(&"disk.img.zst".to_string()));
    for name in list(a) {
        if a.join(&name).is_file() {
            assert!(
                std::fs::read(a.join(&name)).unwrap() == std::fs::read(b.join(&name)).unwrap(),
                "{name} differs between {} and {}",
                a.display(),
                b.display()
            );
        }
    }
}

#[test]
fn dir_base_copies_with_other_atimes_ctimes_and_inodes_build_identical_bundles() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let first = tmp.path().join("first");
    make_tree(&first.join("base"));
    let pin = pin_of(&first.join("base"));
    let recipe1 = write_recipe(&first, &pin);
    let out1 = tmp.path().join("out1");
    build(&recipe1, &BuildOptions::new(&out1), &NoProgress).unwrap();
    assert_eq!(manifest(&out1)["base"]["sha256"], pin.as_str());
    assert_eq!(manifest(&out1)["base"]["kind"], "dir");

    // The same folder, later: every file read (atime), `touch -a`, no-op chmods (ctime).
    let before = host_times(&first.join("base"));
    std::thread::sleep(std::time::Duration::from_millis(50));
    for p in walk(&first.join("base")) {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_file() {
            std::fs::read(&p).unwrap();
        }
        if !m.file_type().is_symlink() {
            run(Command::new("touch").arg("-a").arg("-h").arg(&p));
            run(Command::new("chmod")
                .arg(format!("{:o}", m.mode() & 0o7777))
                .arg(&p));
        }
    }
    let after = host_times(&first.join("base"));
    let changed = |i: usize| {
        before
            .iter()
            .zip(&after)
            .filter(|(b, a)| match i {
                0 => b.1 != a.1,
                _ => b.2 != a.2,
            })
            .count()
    };
    assert!(changed(0) > 5, "the test must change atimes");
    assert!(changed(1) > 5, "the test must change ctimes");
    assert_eq!(
        pin_of(&first.join("base")),
        pin,
        "reading the tree and a no-op chmod changed the pin"
    );
    let out2 = tmp.path().join("out2");
    build(&recipe1, &BuildOptions::new(&out2), &NoProgress)
        .expect("the pin still holds after reading the tree and a no-op chmod");
    assert_same_bundle(&out1, &out2);

    // A copy made later with `cp -a`: new inodes, atimes and ctimes, another read order.
    let second = tmp.path().join("second");
    run(Command::new("cp").arg("-a").arg(&first).arg(&second));
    let copied = host_times(&second.join("base"));
    assert!(
        copied
            .iter()
            .zip(&after)
            .all(|(c, a)| c.0 == a.0 && c.3 != a.3),
        "cp -a must give new inodes"
    );
    assert_eq!(pin_of(&second.join("base")), pin, "cp -a changed the pin");
    let out3 = tmp.path().join("elsewhere/out3");
    build(
        &second.join("recipe.toml"),
        &BuildOptions::new(&out3),
        &NoProgress,
    )
    .unwrap();
    assert_same_bundle(&out1, &out3);

    // What the copy keeps still matters: a new mtime changes the pin (the build refuses).
    run(Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg("@1500000000")
        .arg(second.join("base/etc/motd")));
    assert_ne!(pin_of(&second.join("base")), pin);
    let e = build(
        &second.join("recipe.toml"),
        &BuildOptions::new(tmp.path().join("out4")),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("sha256 mismatch"), "{e}");

    // The image holds the tree's mtimes as access and change times too, checked with e2fsprogs.
    let work = tmp.path().join("w");
    std::fs::create_dir_all(&work).unwrap();
    let img = unpack(&out1, &work);
    fsck_clean(&img);
    let st = debugfs(&img, "stat /etc/hostname");
    let line = |k: &str| {
        st.lines()
            .find(|l| l.trim_start().starts_with(k))
            .unwrap_or_else(|| panic!("no {k} in {st}"))
            .split(" -- ")
            .next()
            .unwrap()
            .split_once(':')
            .unwrap()
            .1
            .trim()
            .to_string()
    };
    assert_eq!(line("ctime:"), line("mtime:"), "{st}");
    assert_eq!(line("atime:"), line("mtime:"), "{st}");
}

/// The pin covers what the image is made from beyond the earlier digest (xattrs, sub-second
/// mtimes, hard-link structure); a recipe pinned by the earlier digest still builds, with a
/// warning naming the value to pin.
#[test]
fn dir_pin_covers_xattrs_subsecond_mtimes_and_hard_links_and_old_pins_still_build() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("r");
    let base = dir.join("base");
    make_tree(&base);
    let read = |root: &Path| {
        rootfs::dir::read_dir(
            root,
            &rootfs::dir::DirOptions {
                host_times: false,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let d0 = builder::tree_digests(&read(&base)).unwrap();
    assert_eq!(d0.current, pin_of(&base));
    assert_ne!(d0.current, d0.legacy);

    // A recipe pinned by the earlier digest: built, with a warning giving the current one.
    let recipe = write_recipe(&dir, &d0.legacy);
    let out = tmp.path().join("legacy");
    let report = build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    assert_eq!(manifest(&out)["base"]["sha256"], d0.legacy.as_str());
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("earlier digest") && w.contains(&d0.current)),
        "{:?}",
        report.warnings
    );
    let out = tmp.path().join("current");
    let report = build(
        &write_recipe(&dir, &d0.current),
        &BuildOptions::new(&out),
        &NoProgress,
    )
    .unwrap();
    assert!(
        !report.warnings.iter().any(|w| w.contains("earlier digest")),
        "{:?}",
        report.warnings
    );

    // Each change below reaches the image, so it changes the pin (not the earlier digest).
    let mtime_of = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.mtime(), m.mtime_nsec())
    };
    let set_mtime = |p: &Path, (s, ns): (i64, i64)| {
        run(Command::new("touch")
            .arg("-h")
            .arg("-d")
            .arg(format!("@{s}.{ns:09}"))
            .arg(p));
    };
    // 1. An xattr: a file capability is one.
    let su = base.join("usr/bin/su");
    run(Command::new("setfattr")
        .args(["-n", "user.wafer-test", "-v", "granted"])
        .arg(&su));
    let d1 = builder::tree_digests(&read(&base)).unwrap();
    assert_ne!(d1.current, d0.current, "an xattr must change the pin");
    assert_eq!(d1.legacy, d0.legacy);
    run(Command::new("setfattr")
        .args(["-x", "user.wafer-test"])
        .arg(&su));
    assert_eq!(builder::tree_digests(&read(&base)).unwrap(), d0);

    // 2. The sub-second part of an mtime.
    let motd = base.join("etc/motd");
    let t = mtime_of(&motd);
    set_mtime(&motd, (t.0, (t.1 + 1) % 1_000_000_000));
    let d2 = builder::tree_digests(&read(&base)).unwrap();
    assert_ne!(d2.current, d0.current, "nanoseconds must change the pin");
    assert_eq!(d2.legacy, d0.legacy);
    set_mtime(&motd, t);
    assert_eq!(builder::tree_digests(&read(&base)).unwrap(), d0);

    // 3. A hard link replaced by an equal copy (same bytes, mode, owner, mtime).
    let dash = base.join("bin/dash");
    let bin_t = mtime_of(&base.join("bin"));
    let t = mtime_of(&dash);
    let bytes = std::fs::read(&dash).unwrap();
    std::fs::remove_file(&dash).unwrap();
    std::fs::write(&dash, &bytes).unwrap();
    run(Command::new("chmod")
        .arg(format!(
            "{:o}",
            std::fs::metadata(base.join("bin/sh")).unwrap().mode() & 0o7777
        ))
        .arg(&dash));
    set_mtime(&dash, t);
    set_mtime(&base.join("bin"), bin_t);
    let d3 = builder::tree_digests(&read(&base)).unwrap();
    assert_ne!(
        d3.current, d0.current,
        "hard-link structure must change the pin"
    );
    assert_eq!(d3.legacy, d0.legacy);
    let e = build(
        &write_recipe(&dir, &d0.current),
        &BuildOptions::new(tmp.path().join("refused")),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("sha256 mismatch") && e.contains(&d3.current),
        "{e}"
    );
}

/// The filesystem UUID of a bundle's image: bytes 0x68..0x78 of the superblock at 1024, read
/// from the decompressed disk by the real `dumpe2fs -h` (the oracle) and by offset.
fn fs_uuid(out: &Path) -> String {
    let raw = out.join("disk.raw");
    let st = Command::new("zstd")
        .args(["-qdf", "-o"])
        .arg(&raw)
        .arg(out.join("disk.img.zst"))
        .status()
        .expect("zstd (Debian package zstd)");
    assert!(st.success());
    let o = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&raw)
        .output()
        .expect("dumpe2fs (Debian package e2fsprogs)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    std::fs::remove_file(&raw).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Filesystem UUID:"))
        .expect("a UUID line")
        .trim()
        .to_string()
}

/// Two versions of one wafer (same VO and name, a file changed) keep the filesystem UUID and
/// with it every UUID-seeded metadata checksum, which keeps delta pulls small; another wafer
/// name gets another UUID.
#[test]
fn versions_of_one_wafer_share_the_filesystem_uuid_other_wafers_do_not() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let v1 = tmp.path().join("v1");
    make_tree(&v1.join("base"));
    let r1 = write_recipe(&v1, &pin_of(&v1.join("base")));
    let v2 = tmp.path().join("v2");
    make_tree(&v2.join("base"));
    std::fs::write(v2.join("base/etc/upgraded"), b"a newer package\n").unwrap();
    let r2 = write_recipe(&v2, &pin_of(&v2.join("base")));
    let other = tmp.path().join("other");
    make_tree(&other.join("base"));
    let r3 = write_recipe(&other, &pin_of(&other.join("base")));
    let text = std::fs::read_to_string(&r3).unwrap();
    std::fs::write(
        &r3,
        text.replace("name = \"dirbase\"", "name = \"another\""),
    )
    .unwrap();

    let (o1, o2, o3) = (
        tmp.path().join("o1"),
        tmp.path().join("o2"),
        tmp.path().join("o3"),
    );
    for (r, o) in [(&r1, &o1), (&r2, &o2), (&r3, &o3)] {
        build(r, &BuildOptions::new(o), &NoProgress).unwrap();
    }
    assert_ne!(
        manifest(&o1)["image"]["sha256"],
        manifest(&o2)["image"]["sha256"],
        "the two versions differ in content"
    );
    let (u1, u2, u3) = (fs_uuid(&o1), fs_uuid(&o2), fs_uuid(&o3));
    assert_eq!(u1, u2, "versions of one wafer keep their filesystem UUID");
    assert_ne!(u1, u3, "another wafer gets another UUID");
}
