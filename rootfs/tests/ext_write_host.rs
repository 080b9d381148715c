//! The writer on a real host tree: /usr/include (thousands of headers, symlinks, nested
//! directories) read with `rootfs::dir`, written as ext4 and ext3, checked by e2fsck, debugfs
//! (every path, owner, mode, time, content) and ext4-view.
mod ext_write_support;
use ext_write_support::*;

use rootfs::dir::{read_dir, DirOptions};
use rootfs::ext::{write_image, FsKind, WriteOptions};

#[test]
fn usr_include_as_ext4_and_ext3() {
    let src = std::path::Path::new("/usr/include");
    assert!(src.is_dir(), "the test reads /usr/include (libc6-dev)");
    let tree = read_dir(src, &DirOptions::default()).unwrap();
    let n = tree.path_count();
    assert!(n > 1000, "/usr/include has only {n} entries");
    let dir = tempfile::tempdir().unwrap();
    for (name, fs) in [("ext4", FsKind::Ext4), ("ext3", FsKind::Ext3)] {
        let img = dir.path().join(format!("{name}.img"));
        let mut o = WriteOptions::new(fs);
        o.epoch = 1_700_000_000;
        let t0 = std::time::Instant::now();
        write_image(&tree, &img, &o).unwrap();
        let t1 = t0.elapsed();
        fsck(&img);
        let t2 = t0.elapsed();
        check_with_debugfs(&tree, &img, true);
        let t3 = t0.elapsed();
        check_with_ext4_view(&tree, &img, fs == FsKind::Ext4);
        eprintln!(
            "{name}: write {t1:?} fsck {t2:?} debugfs {t3:?} view {:?}",
            t0.elapsed()
        );
    }
}
