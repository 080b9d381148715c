//! Quick writer checks: every profile's image of a small tree passes `e2fsck -fn`.
mod ext_write_support;
use ext_write_support::*;

use rootfs::ext::{write_image, FsKind, Profile, WriteOptions};

fn small_tree() -> rootfs::Tree {
    let mut t = rootfs::Tree::new(meta(0o755, 0, 0));
    file(&mut t, "/etc/hosts", b"127.0.0.1 localhost\n".to_vec(), meta(0o644, 0, 0));
    file(&mut t, "/bin/sh", bytes(1, 100_000), meta(0o755, 0, 0));
    add(&mut t, "/l", rootfs::NodeKind::Symlink(b"etc/hosts".to_vec()), meta(0o777, 0, 0));
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
