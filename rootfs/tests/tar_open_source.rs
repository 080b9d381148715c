//! `open_source` tells tar archives, directories and ext images apart by content. A wafer bundle
//! folder is only a directory here: bundles are the `bundle` crate's (`bundle/tests/source.rs`).

use std::fs;
use std::process::Command;

use rootfs::open::{detect, open_source, OpenError, OpenOptions, SourceKind};
use rootfs::tar::Compression;
use rootfs::NodeKind;

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

fn content(t: &rootfs::Tree, path: &[u8]) -> Vec<u8> {
    match &t.node(t.lookup(path).unwrap()).kind {
        NodeKind::Regular(c) => c.read_to_vec(1 << 20).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_kind_is_detected_and_read() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/hostname"), b"wafer\n").unwrap();
    let opts = OpenOptions::default();

    let o = open_source(&src, &opts).unwrap();
    assert_eq!(o.kind, SourceKind::Directory);
    assert_eq!(content(&o.tree, b"/etc/hostname"), b"wafer\n");

    // Tar, with a misleading name.
    let t = tmp.path().join("archive.img");
    run(Command::new("tar")
        .arg("-cJf")
        .arg(&t)
        .arg("-C")
        .arg(&src)
        .arg("."));
    assert_eq!(detect(&t).unwrap(), SourceKind::Tar(Compression::Xz));
    assert_eq!(
        content(&open_source(&t, &opts).unwrap().tree, b"/etc/hostname"),
        b"wafer\n"
    );
    let t2 = tmp.path().join("plain.bin");
    run(Command::new("tar")
        .arg("--format=ustar")
        .arg("-cf")
        .arg(&t2)
        .arg("-C")
        .arg(&src)
        .arg("."));
    assert_eq!(detect(&t2).unwrap(), SourceKind::Tar(Compression::None));

    // ext4 image made by mke2fs.
    let img = tmp.path().join("disk.tar");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("4M"));
    assert_eq!(detect(&img).unwrap(), SourceKind::Ext);
    let o = open_source(&img, &opts).unwrap();
    assert!(o.fs_info.is_some());
    assert_eq!(content(&o.tree, b"/etc/hostname"), b"wafer\n");

    // A folder holding wafer.json is a directory to rootfs (it knows no bundle).
    let bundle = tmp.path().join("bundle");
    fs::create_dir(&bundle).unwrap();
    fs::write(bundle.join("wafer.json"), b"{}").unwrap();
    assert_eq!(detect(&bundle).unwrap(), SourceKind::Directory);
    let o = open_source(&bundle, &opts).unwrap();
    assert_eq!(content(&o.tree, b"/wafer.json"), b"{}");

    // Neither.
    let junk = tmp.path().join("junk");
    fs::write(&junk, vec![0x42u8; 3000]).unwrap();
    assert!(matches!(detect(&junk), Err(OpenError::Unknown { .. })));
    let empty = tmp.path().join("empty");
    fs::write(&empty, b"").unwrap();
    assert!(matches!(detect(&empty), Err(OpenError::Unknown { .. })));
    let e = open_source(&tmp.path().join("missing"), &opts)
        .err()
        .unwrap();
    assert!(e.to_string().contains("missing"), "{e}");
}

/// `tar -C DIR -cf x.tar rootfs` puts every entry under `rootfs/`: recognised, descended into
/// when asked (and said), only noted otherwise. An archive without end-of-archive blocks is
/// damage the reader reports.
#[test]
fn tar_under_one_top_level_folder_and_truncated_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("rootfs");
    fs::create_dir_all(top.join("etc")).unwrap();
    fs::create_dir_all(top.join("usr/bin")).unwrap();
    fs::write(top.join("etc/hostname"), b"wafer\n").unwrap();
    let t = tmp.path().join("nested.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&t)
        .arg("-C")
        .arg(tmp.path())
        .arg("rootfs"));
    let o = open_source(&t, &OpenOptions::default()).unwrap();
    assert!(o.tree.lookup(b"/rootfs/etc/hostname").is_some());
    assert_eq!(o.descended, None);
    assert!(
        o.notes[0].contains("every entry sits under rootfs/"),
        "{:?}",
        o.notes
    );
    let opts = OpenOptions {
        descend_single_dir: true,
        ..OpenOptions::default()
    };
    let o = open_source(&t, &opts).unwrap();
    assert_eq!(o.descended.as_deref(), Some("rootfs"));
    assert_eq!(content(&o.tree, b"/etc/hostname"), b"wafer\n");
    assert!(o.tree.lookup(b"/usr/bin").is_some());
    assert!(o.tree.lookup(b"/rootfs").is_none());
    assert!(o.damage.is_empty(), "{:?}", o.damage);

    // A single top-level directory that is itself a root directory name is not descended.
    let plain = tmp.path().join("plain.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&plain)
        .arg("-C")
        .arg(&top)
        .arg("etc"));
    let o = open_source(&plain, &opts).unwrap();
    assert_eq!(o.descended, None);
    assert_eq!(content(&o.tree, b"/etc/hostname"), b"wafer\n");

    // Cut after the last member's data: no end-of-archive blocks.
    let bytes = fs::read(&plain).unwrap();
    // etc/ header, etc/hostname header and one data block.
    let cut = tmp.path().join("cut.tar");
    fs::write(&cut, &bytes[..3 * 512]).unwrap();
    let o = open_source(&cut, &opts).unwrap();
    assert_eq!(content(&o.tree, b"/etc/hostname"), b"wafer\n");
    assert_eq!(o.damage.len(), 1, "{:?}", o.damage);
    assert!(
        o.damage[0].contains("no end-of-archive blocks"),
        "{:?}",
        o.damage
    );
}
