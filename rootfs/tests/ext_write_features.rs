//! The writer on a tree with every feature, for ext2, ext3, ext4 (and ext4 with metadata_csum +
//! 64bit, 1 KiB blocks, 128-byte inodes): `e2fsck -fn` passes and `debugfs` agrees with the
//! tree on every path, type, mode, owner, size, time, link target, device number, xattr and
//! content; ext4-view reads the same contents.
mod ext_write_support;
use ext_write_support::*;

use rootfs::ext::{write_image, FsKind, WriteOptions, WriteReport};
use rootfs::Tree;

fn opts(fs: FsKind, bs: u32, isz: u16, csum: bool) -> WriteOptions {
    let mut o = WriteOptions::new(fs);
    o.block_size = bs;
    o.inode_size = isz;
    o.metadata_csum = csum;
    o.sixty_four_bit = csum;
    o.epoch = 1_650_000_000;
    o
}

fn write_and_fsck(
    t: &Tree,
    name: &str,
    o: &WriteOptions,
) -> (tempfile::TempDir, std::path::PathBuf, WriteReport) {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join(format!("{name}.img"));
    let r = write_image(t, &img, o).unwrap_or_else(|e| panic!("{name}: {e}"));
    fsck(&img);
    (dir, img, r)
}

fn full_check(name: &str, o: &WriteOptions) {
    let t = feature_tree(true);
    let (_d, img, r) = write_and_fsck(&t, name, o);
    check_with_debugfs(&t, &img, o.inode_size > 128);
    check_huge(&img, u64::from(o.block_size), o.fs == FsKind::Ext4);
    check_with_ext4_view(&t, &img, o.fs == FsKind::Ext4);
    // Sparse output: no more bytes allocated on the host than blocks in use.
    let meta = std::fs::metadata(&img).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.len(), r.size);
    assert!(
        meta.blocks() * 512 <= r.blocks_used * u64::from(o.block_size),
        "{name}: image is not sparse"
    );
}

#[test]
fn ext4_metadata_csum_64bit() {
    full_check("ext4-csum", &opts(FsKind::Ext4, 4096, 256, true));
}

#[test]
fn ext4_plain() {
    full_check("ext4", &opts(FsKind::Ext4, 4096, 256, false));
}

#[test]
fn ext4_1k_blocks() {
    full_check("ext4-1k", &opts(FsKind::Ext4, 1024, 256, true));
}

#[test]
fn ext4_128_byte_inodes() {
    full_check("ext4-128", &opts(FsKind::Ext4, 4096, 128, false));
}

#[test]
fn ext3() {
    full_check("ext3", &opts(FsKind::Ext3, 4096, 256, false));
}

#[test]
fn ext2() {
    full_check("ext2", &opts(FsKind::Ext2, 4096, 256, false));
}

#[test]
fn ext2_1k_128() {
    full_check("ext2-1k-128", &opts(FsKind::Ext2, 1024, 128, false));
}

#[test]
fn el6_uninit_bg_many_groups() {
    let mut o = WriteOptions::for_profile(rootfs::ext::Profile::El6);
    o.block_size = 1024;
    o.epoch = 1_650_000_000;
    full_check("el6-1k", &o);
}

#[test]
fn el4_ext3_128() {
    let mut o = WriteOptions::for_profile(rootfs::ext::Profile::El4);
    o.epoch = 1_650_000_000;
    full_check("el4", &o);
}
