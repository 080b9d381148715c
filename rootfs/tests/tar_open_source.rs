//! `open_source` tells tar archives, directories, ext images and wafer bundles apart by content.

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

    // A wafer bundle: the same image as seekable zstd next to wafer.json.
    let bundle = tmp.path().join("bundle");
    fs::create_dir(&bundle).unwrap();
    fs::write(bundle.join("wafer.json"), b"{}").unwrap();
    let raw = fs::File::open(&img).unwrap();
    let out = fs::File::create(bundle.join("disk.img.zst")).unwrap();
    rootfs::zseek::compress(raw, out, 64 * 1024, 3, 1).unwrap();
    assert_eq!(detect(&bundle).unwrap(), SourceKind::Bundle);
    let o = open_source(&bundle, &opts).unwrap();
    assert_eq!(content(&o.tree, b"/etc/hostname"), b"wafer\n");

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
