//! Quick writer checks: every profile's image of a small tree passes `e2fsck -fn`.
mod ext_write_support;
use ext_write_support::*;

use rootfs::ext::{write_image, FsKind, Profile, WriteOptions};

fn small_tree() -> rootfs::Tree {
    let mut t = rootfs::Tree::new(meta(0o755, 0, 0));
    file(
        &mut t,
        "/etc/hosts",
        b"127.0.0.1 localhost\n".to_vec(),
        meta(0o644, 0, 0),
    );
    file(&mut t, "/bin/sh", bytes(1, 100_000), meta(0o755, 0, 0));
    add(
        &mut t,
        "/l",
        rootfs::NodeKind::Symlink(b"etc/hosts".to_vec()),
        meta(0o777, 0, 0),
    );
    t
}

#[test]
fn every_profile_passes_fsck() {
    let dir = tempfile::tempdir().unwrap();
    let t = small_tree();
    for (name, p) in [
        ("ext2", Profile::Ext2),
        ("ext3", Profile::Ext3),
        ("ext4", Profile::Ext4),
        ("el4", Profile::El4),
        ("el5", Profile::El5),
        ("el6", Profile::El6),
        ("el7", Profile::El7),
        ("el8", Profile::El8),
        ("el9", Profile::El9),
        ("fedora", Profile::Fedora),
        ("debian12", Profile::Debian12),
    ] {
        let img = dir.path().join(format!("{name}.img"));
        let mut o = WriteOptions::for_profile(p);
        o.epoch = 1_700_000_000;
        write_image(&t, &img, &o).unwrap_or_else(|e| panic!("{name}: {e}"));
        fsck(&img);
    }
    let mut o = WriteOptions::new(FsKind::Ext4);
    o.block_size = 1024;
    let img = dir.path().join("ext4-1k.img");
    write_image(&t, &img, &o).unwrap();
    fsck(&img);
}

#[test]
fn wide_directories_get_one_or_two_index_levels() {
    let dir = tempfile::tempdir().unwrap();
    let t = feature_tree(false);
    for (bs, levels) in [
        (4096u32, "Indirect levels: 0"),
        (1024, "Indirect levels: 1"),
    ] {
        let img = dir.path().join(format!("{bs}.img"));
        let mut o = WriteOptions::new(FsKind::Ext4);
        o.block_size = bs;
        write_image(&t, &img, &o).unwrap();
        let out = debugfs(&img, &["htree /wide".to_string()]);
        assert!(out.contains(levels), "{bs}: {}", &out[..out.len().min(500)]);
        assert!(!out.contains("EXPECTED"), "{bs}: htree checksum mismatch");
    }
}

#[test]
fn bad_trees_are_refused_with_the_path() {
    use rootfs::content::{Content, Extent, Source};
    use rootfs::ext::WriteError;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.img");
    let o = WriteOptions::new(FsKind::Ext4);
    // Content shorter than its extents.
    let mut t = small_tree();
    let c = Content::from_extents(
        Source::Memory(vec![1u8; 10].into()),
        100,
        vec![Extent {
            logical: 0,
            physical: 0,
            len: 100,
        }],
    )
    .unwrap();
    add(
        &mut t,
        "/short",
        rootfs::NodeKind::Regular(c),
        meta(0o644, 0, 0),
    );
    match write_image(&t, &img, &o) {
        Err(e @ WriteError::Content { .. }) => assert!(e.to_string().contains("/short"), "{e}"),
        other => panic!("{other:?}"),
    }
    // A symlink target longer than a block.
    let mut t = small_tree();
    add(
        &mut t,
        "/far",
        rootfs::NodeKind::Symlink(vec![b'a'; 5000]),
        meta(0o777, 0, 0),
    );
    match write_image(&t, &img, &o) {
        Err(e @ WriteError::Unrepresentable { .. }) => {
            assert!(e.to_string().contains("/far"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A lost+found that is not a directory.
    let mut t = small_tree();
    file(&mut t, "/lost+found", b"x".to_vec(), meta(0o644, 0, 0));
    assert!(matches!(
        write_image(&t, &img, &o),
        Err(WriteError::Unrepresentable { .. })
    ));
    // Bad options.
    let mut bad = o.clone();
    bad.block_size = 2048;
    assert!(matches!(
        write_image(&small_tree(), &img, &bad),
        Err(WriteError::Option { .. })
    ));
}

#[test]
fn an_existing_lost_found_becomes_inode_11() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.img");
    let mut t = small_tree();
    file(
        &mut t,
        "/lost+found/#1234",
        b"orphan".to_vec(),
        meta(0o600, 0, 0),
    );
    write_image(&t, &img, &WriteOptions::new(FsKind::Ext3)).unwrap();
    fsck(&img);
    check_with_debugfs(&t, &img, true);
    let st = parse_stat(&split_requests(&debugfs(&img, &["stat /lost+found".to_string()]))[0]);
    assert_eq!(st.ino, 11);
}

#[test]
fn unrepresentable_devices_and_xattr_names_are_refused() {
    use rootfs::ext::WriteError;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.img");
    let o = WriteOptions::new(FsKind::Ext4);
    let mut t = small_tree();
    add(
        &mut t,
        "/dev/huge",
        rootfs::NodeKind::CharDevice(rootfs::Device {
            major: 5000,
            minor: 1,
        }),
        meta(0o600, 0, 0),
    );
    match write_image(&t, &img, &o) {
        Err(e @ WriteError::Unrepresentable { .. }) => {
            assert!(e.to_string().contains("/dev/huge"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let mut t = small_tree();
    let mut m = meta(0o644, 0, 0);
    m.xattrs.insert(
        format!("user.{}", "n".repeat(300)).into_bytes(),
        b"v".to_vec(),
    );
    file(&mut t, "/longattr", b"x".to_vec(), m);
    match write_image(&t, &img, &o) {
        Err(e @ WriteError::Unrepresentable { .. }) => {
            assert!(e.to_string().contains("/longattr"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn identical_xattr_blocks_are_shared() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.img");
    write_image(&feature_tree(false), &img, &WriteOptions::new(FsKind::Ext4)).unwrap();
    let out = debugfs(
        &img,
        &[
            "stat /etc/xa1".to_string(),
            "stat /etc/xa2".to_string(),
            "stat /etc/xdir".to_string(),
        ],
    );
    let acls: Vec<&str> = out.lines().filter(|l| l.starts_with("File ACL:")).collect();
    assert_eq!(acls.len(), 3);
    assert_ne!(acls[0], "File ACL: 0");
    assert!(acls.iter().all(|a| *a == acls[0]), "{acls:?}");
    fsck(&img); // e2fsck checks the block's reference count (3)
}
