//! Our ext reader against debugfs on the real ext4-view-rs images (testdata/ext-images-ext4-view-rs).

mod ext_read_util;

use std::io::Read;

use ext_read_util::*;
use rootfs::ext::{FsKind, ReadOptions};
use rootfs::NodeKind;

fn content_of(image: &rootfs::ext::ExtImage, path: &str) -> Vec<u8> {
    let id = image
        .tree
        .lookup(path.as_bytes())
        .unwrap_or_else(|| panic!("{path} missing"));
    match &image.tree.node(id).kind {
        NodeKind::Regular(c) => {
            let mut v = Vec::new();
            c.reader().unwrap().read_to_end(&mut v).unwrap();
            v
        }
        k => panic!("{path}: not a file: {k:?}"),
    }
}

fn check_holes(image: &rootfs::ext::ExtImage) {
    let id = image.tree.lookup(b"/holes").unwrap();
    let NodeKind::Regular(c) = &image.tree.node(id).kind else {
        panic!()
    };
    assert_eq!(c.size(), 10240);
    assert!(c.is_sparse());
    assert_eq!(c.stored_bytes(), 4 * 1024, "holes: 4 data blocks");
    let data = content_of(image, "/holes");
    for (i, chunk) in data.chunks(1024).enumerate() {
        let want = match i {
            2 => 0xa1,
            3 => 0xa2,
            6 => 0xa3,
            7 => 0xa4,
            _ => 0,
        };
        assert!(chunk.iter().all(|&b| b == want), "holes block {i}");
    }
}

#[test]
fn ext4_disk1_agrees_with_debugfs() {
    let work = tempfile::tempdir().unwrap();
    let img = unpack("test_disk1.bin", work.path());
    let image = read(
        &img,
        &ReadOptions {
            verify_checksums: true,
            strict_checksums: true,
        },
    );
    let info = &image.info;
    assert_eq!(info.kind, FsKind::Ext4);
    assert_eq!(info.block_size, 1024);
    assert_eq!(info.label, b"ext4-view testfs");
    assert!(
        info.checksum_errors.is_empty(),
        "{:?}",
        info.checksum_errors
    );
    assert!(!info.needs_recovery);
    assert!(info.feature_names.iter().any(|f| f == "metadata_csum"));
    assert_eq!(hex::encode(info.uuid), "b71b09903859457c816036deac864c27");
    assert_eq!(content_of(&image, "/small_file"), b"hello, world!");
    let owner = image.tree.node(image.tree.lookup(b"/owner_file").unwrap());
    assert_eq!((owner.meta.uid, owner.meta.gid), (123, 456));
    check_holes(&image);
    // htree directories with their files' contents.
    for (dir, n) in [("medium_dir", 1000), ("big_dir", 10000)] {
        let d = image.tree.lookup(format!("/{dir}").as_bytes()).unwrap();
        assert_eq!(image.tree.entries(d).unwrap().len(), n);
        assert_eq!(
            content_of(&image, &format!("/{dir}/{}", n - 1)),
            (n - 1).to_string().as_bytes()
        );
    }
    let sym = image.tree.node(image.tree.lookup(b"/sym_long").unwrap());
    assert!(matches!(&sym.kind, NodeKind::Symlink(t) if t.len() == 1023));
    // Confined resolution through the read symlinks.
    assert_eq!(
        image.tree.resolve(b"/dir1/dir2/sym_rel", true),
        image.tree.resolve(b"/small_file", true)
    );
    // The encrypted directory: one entry, named by digest; debugfs cannot show its names.
    let enc = image.tree.lookup(b"/encrypted_dir").unwrap();
    assert_eq!(image.tree.entries(enc).unwrap().len(), 1);
    assert!(info.warnings.iter().any(|w| w.contains("encrypted")));
    let c = compare_with_debugfs(&img, &image, &["/encrypted_dir"], work.path());
    assert!(
        c.paths > 11000 && c.contents > 11000 && c.symlinks >= 10 && c.xattrs > 11000,
        "{c:?}"
    );
}

#[test]
fn ext2_triple_indirect_and_holes_agree_with_debugfs() {
    let work = tempfile::tempdir().unwrap();
    let img = unpack("test_disk_ext2.bin", work.path());
    let image = read(&img, &ReadOptions::default());
    assert_eq!(image.info.kind, FsKind::Ext2);
    assert!(image.info.label.is_empty());
    check_holes(&image);
    let big = content_of(&image, "/big_file");
    assert_eq!(big.len(), 71_577_600);
    for (i, block) in big.chunks(1024).enumerate() {
        let n = (i as u32).to_le_bytes();
        assert!(
            block[..4] == n && block[1020..] == n,
            "big_file block {i} markers"
        );
    }
    drop(big);
    let c = compare_with_debugfs(&img, &image, &[], work.path());
    assert_eq!(c.contents, 3, "{c:?}");
}

#[test]
fn ext3_128_byte_inodes_tea_htree_agree_with_debugfs() {
    let work = tempfile::tempdir().unwrap();
    let img = unpack("test_disk_ext3.bin", work.path());
    let image = read(&img, &ReadOptions::default());
    assert_eq!(image.info.kind, FsKind::Ext3);
    assert_eq!(image.info.inode_size, 128);
    assert!(!image.info.needs_recovery);
    let j = image.info.journal.as_ref().expect("ext3 has a journal");
    assert_eq!(j.start, 0);
    // 128-byte inodes have no crtime or nanoseconds.
    let f = image
        .tree
        .node(image.tree.lookup(b"/medium_dir/7").unwrap());
    assert_eq!(f.meta.crtime, None);
    assert_eq!(f.meta.mtime.nsec, 0);
    let c = compare_with_debugfs(&img, &image, &[], work.path());
    assert_eq!(c.contents, 1000, "{c:?}");
}

#[test]
fn unreplayed_journal_is_reported_and_read_as_is() {
    let work = tempfile::tempdir().unwrap();
    let img = unpack("test_disk_4k_block_journal.bin", work.path());
    let image = read(&img, &ReadOptions::default());
    assert!(image.info.needs_recovery);
    assert_eq!(image.info.block_size, 4096);
    let j = image.info.journal.as_ref().expect("journal");
    assert_eq!((j.block_size, j.sequence, j.start), (4096, 3, 289));
    // Without the journal applied /dir500 does not exist.
    assert!(image.tree.lookup(b"/dir500").is_none());
    compare_with_debugfs(&img, &image, &[], work.path());
}
