//! `wafer mkfs` end to end: a directory to ext4, checked by e2fsck and by `wafer ls` of the image;
//! and the error cases.

use sha2::Digest;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn wafer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(args)
        .output()
        .expect("run wafer")
}

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/init.d")).unwrap();
    fs::create_dir_all(root.join("var/empty")).unwrap();
    fs::write(
        root.join("etc/passwd"),
        b"root:x:0:0::/root:/bin/sh\nsquid:x:23:23::/var/spool/squid:/sbin/nologin\n",
    )
    .unwrap();
    fs::write(root.join("etc/init.d/squid"), "#!/bin/sh\n".repeat(500)).unwrap();
    fs::set_permissions(
        root.join("etc/init.d/squid"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(root.join("var/big"), big).unwrap();
    fs::hard_link(root.join("etc/passwd"), root.join("var/passwd.hl")).unwrap();
    std::os::unix::fs::symlink("../etc/passwd", root.join("var/pw")).unwrap();
    std::os::unix::fs::symlink("x".repeat(200), root.join("var/longlink")).unwrap();
    std::os::unix::fs::chown(root.join("var/empty"), Some(23), Some(23)).unwrap();
    for i in 0..300 {
        fs::write(
            root.join("etc").join(format!("file-{i:04}")),
            format!("{i}\n"),
        )
        .unwrap();
    }
    let st = Command::new("mknod")
        .arg(root.join("null"))
        .args(["c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(st.success());
    xattr::set(root.join("etc/passwd"), "user.checked", b"yes").unwrap();
}

fn listing(out: &Output) -> BTreeMap<String, serde_json::Value> {
    assert!(
        out.status.success(),
        "wafer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

#[test]
fn mkfs_directory_to_ext4_is_clean_and_lists_like_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    make_tree(&root);
    let img = tmp.path().join("a.img");
    let out = wafer(&[
        "mkfs",
        root.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
        "--fs",
        "ext4",
        "--epoch",
        "1700000000",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "mkfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary["epoch"], 1_700_000_000);
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&img)
        .output()
        .expect("e2fsck (Debian package e2fsprogs)");
    assert!(
        fsck.status.success(),
        "e2fsck -fn: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );

    let src = listing(&wafer(&["ls", "--json", root.to_str().unwrap()]));
    let got = listing(&wafer(&["ls", "--json", img.to_str().unwrap()]));
    for (path, want) in &src {
        if path == "/" {
            continue;
        }
        let g = got
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from the image"));
        for field in [
            "type",
            "mode",
            "uid",
            "gid",
            "size",
            "link_target",
            "device",
            "sha256",
            "xattrs",
            "nlink",
            "mtime_sec",
        ] {
            if want["type"] == "directory" && (field == "size" || field == "nlink") {
                continue;
            }
            assert_eq!(g.get(field), want.get(field), "{path}: {field}");
        }
    }
    // The image adds only lost+found.
    let extra: Vec<&String> = got.keys().filter(|k| !src.contains_key(*k)).collect();
    assert_eq!(extra, ["/lost+found"]);

    // Reproducible: the same input and epoch give the same bytes. (A tar archive as input: reading
    // a directory updates its files' atimes, which are part of the input.)
    let tarball = tmp.path().join("tree.tar");
    let st = Command::new("tar")
        .args(["--format=posix", "--xattrs", "-cf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .expect("GNU tar");
    assert!(st.success());
    let mut images = Vec::new();
    for (i, epoch) in ["1700000000", "1700000000", "1700000001"]
        .iter()
        .enumerate()
    {
        let img = tmp.path().join(format!("r{i}.img"));
        let out = wafer(&[
            "mkfs",
            tarball.to_str().unwrap(),
            "-o",
            img.to_str().unwrap(),
            "--epoch",
            epoch,
            "--quiet",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        images.push(fs::read(&img).unwrap());
    }
    assert!(
        images[0] == images[1],
        "two builds of the same input differ"
    );
    assert!(
        images[0] != images[2],
        "a different epoch gives the same image"
    );
}

#[test]
fn mkfs_errors_exit_1_with_clear_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("x.img");
    let missing = tmp.path().join("missing-src");
    let out = wafer(&[
        "mkfs",
        missing.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing-src") && err.contains("No such file"),
        "{err}"
    );

    let root = tmp.path().join("tree");
    make_tree(&root);
    let out = wafer(&[
        "mkfs",
        root.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
        "--profile",
        "el99",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown profile") && err.contains("el99") && err.contains("el7"),
        "{err}"
    );

    let out = wafer(&[
        "mkfs",
        root.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
        "--size",
        "64K",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("small") || err.contains("does not fit") || err.contains("too"),
        "{err}"
    );

    let out = wafer(&[
        "mkfs",
        root.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
        "--size",
        "12Q",
    ]);
    // a value that does not parse is a usage error: 2 (docs/exit-codes.md)
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("suffix"));
}

/// `--no-sync` only skips the final fsync: the image is the same, byte for byte, and the
/// sources go through the kernel-copy path (a plain tar) and the spool (a gzip tar) alike.
#[test]
fn no_sync_and_compressed_tar_give_the_same_image() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    make_tree(&root);
    let tar = tmp.path().join("t.tar");
    let st = Command::new("tar")
        .args(["--sort=name", "--numeric-owner", "--xattrs", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let gz = tmp.path().join("t.tar.gz");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", tar.display(), gz.display()))
        .status()
        .expect("gzip");
    assert!(st.success());
    let mut digests = Vec::new();
    for (src, extra) in [(&tar, None), (&tar, Some("--no-sync")), (&gz, None)] {
        let img = tmp.path().join("x.img");
        let mut args = vec![
            "mkfs",
            src.to_str().unwrap(),
            "-o",
            img.to_str().unwrap(),
            "--epoch",
            "1700000000",
            "--force",
        ];
        args.extend(extra);
        let out = wafer(&args);
        assert!(
            out.status.success(),
            "mkfs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&img).unwrap();
        digests.push(sha2::Sha256::digest(&bytes).to_vec());
        let fsck = Command::new("e2fsck")
            .arg("-fn")
            .arg(&img)
            .output()
            .unwrap();
        assert!(fsck.status.success(), "e2fsck after {args:?}");
    }
    assert_eq!(digests[0], digests[1], "--no-sync changed the image");
    assert_eq!(
        digests[0], digests[2],
        "tar.gz and tar gave different images"
    );
}

/// An output that is the source itself (or inside a source directory) is refused before
/// anything is written: the source stays byte for byte what it was.
#[test]
fn output_that_is_the_source_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    make_tree(&root);
    let img = tmp.path().join("a.img");
    let out = wafer(&[
        "mkfs",
        root.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
        "--epoch",
        "1700000000",
    ]);
    assert!(out.status.success());
    let before = std::fs::read(&img).unwrap();
    let out = wafer(&["mkfs", img.to_str().unwrap(), "-o", img.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is the source itself"), "{err}");
    assert!(
        std::fs::read(&img).unwrap() == before,
        "the source image was changed"
    );

    let inside = root.join("self.img");
    let out = wafer(&[
        "mkfs",
        root.to_str().unwrap(),
        "-o",
        inside.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is inside the source directory"), "{err}");
    assert!(!inside.exists(), "an image was written inside the source");
}
