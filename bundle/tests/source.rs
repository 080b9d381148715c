//! `bundle::source` reads a bundle's disk, and everything else through `rootfs::open`: a folder
//! holding `wafer.json` is a bundle whatever state its disk is in, and a missing, empty, linked
//! or truncated `disk.img.zst` is an error naming it (an interrupted build is not a
//! "directory"). Moved here from `rootfs/tests/tar_open_source.rs` when rootfs stopped knowing
//! bundles.

use std::fs;
use std::process::Command;

use bundle::source::{detect, is_bundle, open_source, SourceError, SourceKind};
use bundle::BundleError;
use rootfs::open::OpenOptions;
use rootfs::NodeKind;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?} ({e}): install the Debian package e2fsprogs")
    });
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
fn bundle_with_missing_empty_linked_or_truncated_disk_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/hostname"), b"wafer\n").unwrap();
    let img = tmp.path().join("fs.img");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("4M"));
    let bundle = tmp.path().join("bundle");
    fs::create_dir(&bundle).unwrap();
    fs::write(bundle.join("wafer.json"), b"{}").unwrap();
    let zst = bundle.join("disk.img.zst");
    let opts = OpenOptions::default();

    // Missing.
    assert!(is_bundle(&bundle));
    assert_eq!(detect(&bundle).unwrap(), SourceKind::Bundle);
    let e = open_source(&bundle, &opts).err().unwrap();
    assert!(
        matches!(e, SourceError::Bundle(BundleError::MissingDisk { .. })),
        "{e}"
    );
    let m = e.to_string();
    assert!(m.starts_with(&format!("{}: missing", zst.display())), "{m}");

    // Empty.
    fs::write(&zst, b"").unwrap();
    let e = open_source(&bundle, &opts).err().unwrap();
    assert!(
        matches!(e, SourceError::Bundle(BundleError::EmptyDisk { .. })),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("{}: empty", zst.display())),
        "{e}"
    );

    // Truncated: the seek table at the end is gone.
    let raw = fs::File::open(&img).unwrap();
    let mut full = Vec::new();
    rootfs::zseek::compress(raw, &mut full, 64 * 1024, 3, 1).unwrap();
    fs::write(&zst, &full[..full.len() / 2]).unwrap();
    let e = open_source(&bundle, &opts).err().unwrap();
    assert!(
        matches!(e, SourceError::Bundle(BundleError::SeekTable { .. })),
        "{e}"
    );
    assert!(e.to_string().starts_with(&zst.display().to_string()), "{e}");

    // A link to a good disk is refused, not followed.
    let elsewhere = tmp.path().join("elsewhere.zst");
    fs::write(&elsewhere, &full).unwrap();
    fs::remove_file(&zst).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &zst).unwrap();
    let e = open_source(&bundle, &opts).err().unwrap();
    assert!(
        e.to_string().contains("disk.img.zst") && e.to_string().contains("symbolic link"),
        "{e}"
    );

    // Whole: read, the kind serialised as before.
    fs::remove_file(&zst).unwrap();
    fs::write(&zst, &full).unwrap();
    let o = open_source(&bundle, &opts).unwrap();
    assert_eq!(o.kind, SourceKind::Bundle);
    assert_eq!(content(&o.image.tree, b"/etc/hostname"), b"wafer\n");
    assert!(o.image.damage.is_empty(), "{:?}", o.image.damage);
    assert!(o.image.fs_info.is_some());
    assert_eq!(
        serde_json::to_value(o.kind).unwrap(),
        serde_json::json!({"kind": "bundle"})
    );

    // Not a bundle: what rootfs::open reads, with its kind.
    fs::remove_file(bundle.join("wafer.json")).unwrap();
    assert!(!is_bundle(&bundle));
    assert_eq!(detect(&bundle).unwrap(), SourceKind::Directory);
    let o = open_source(&bundle, &opts).unwrap();
    assert_eq!(o.kind, SourceKind::Directory);
    assert!(o.image.tree.lookup(b"/disk.img.zst").is_some());
    let o = open_source(&img, &opts).unwrap();
    assert_eq!(o.kind, SourceKind::Ext);
    assert_eq!(content(&o.image.tree, b"/etc/hostname"), b"wafer\n");
    assert_eq!(
        serde_json::to_value(o.kind).unwrap(),
        serde_json::json!({"kind": "ext"})
    );
}
