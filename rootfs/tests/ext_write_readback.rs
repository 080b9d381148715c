//! Round trip through our own reader: the tree read back from a written image has the same
//! paths, types, modes, owners, times, sizes, link targets, devices, xattrs, hard links and
//! contents (the reader is checked against debugfs in ext_read_*.rs; the writer here).
mod ext_write_support;
use ext_write_support::*;

use std::collections::BTreeMap;
use std::sync::Arc;

use rootfs::content::FileSource;
use rootfs::ext::{read_image, write_image, FsKind, ReadOptions, WriteOptions};
use rootfs::{NodeKind, Tree};

/// Per path: (type, mode, uid, gid, mtime, size, target/device, xattrs, content or None, link group).
fn summary(t: &Tree, with_content: bool) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut first_path: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    t.walk(|p, id| {
        if p == b"/lost+found" {
            return;
        }
        let n = t.node(id);
        let extra = match &n.kind {
            NodeKind::Symlink(s) => format!("{s:?}"),
            NodeKind::CharDevice(d) | NodeKind::BlockDevice(d) => {
                format!("{}:{}", d.major, d.minor)
            }
            NodeKind::Regular(c) if with_content && c.size() < (64 << 20) => {
                format!(
                    "{:?}",
                    sha2::Sha256::digest_bytes(&c.read_to_vec(64 << 20).unwrap())
                )
            }
            _ => String::new(),
        };
        let link = if matches!(n.kind, NodeKind::Directory(_)) {
            String::new()
        } else {
            String::from_utf8_lossy(first_path.entry(id.0).or_insert_with(|| p.to_vec()))
                .into_owned()
        };
        let size = if matches!(n.kind, NodeKind::Directory(_)) {
            0
        } else {
            n.size()
        };
        out.insert(
            p.to_vec(),
            format!(
                "{:?} {:o} {} {} {:?} {} {} {:?} {}",
                n.file_type(),
                n.meta.perm,
                n.meta.uid,
                n.meta.gid,
                n.meta.mtime,
                size,
                extra,
                n.meta.xattrs,
                link
            ),
        );
    });
    out
}

trait DigestBytes {
    fn digest_bytes(b: &[u8]) -> String;
}
impl DigestBytes for sha2::Sha256 {
    fn digest_bytes(b: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b))
    }
}

#[test]
fn written_images_read_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let t = feature_tree(true);
    let want = summary(&t, true);
    for (name, fs, bs, isz) in [
        ("ext4", FsKind::Ext4, 4096u32, 256u16),
        ("ext3", FsKind::Ext3, 1024, 256),
        ("ext2", FsKind::Ext2, 4096, 256),
    ] {
        let img = dir.path().join(format!("{name}.img"));
        let mut o = WriteOptions::new(fs);
        o.block_size = bs;
        o.inode_size = isz;
        write_image(&t, &img, &o).unwrap();
        let src = Arc::new(FileSource::open(&img).unwrap());
        let back = read_image(
            src,
            &ReadOptions {
                verify_checksums: true,
                strict_checksums: true,
            },
        )
        .unwrap();
        assert!(
            back.info.checksum_errors.is_empty(),
            "{name}: {:?}",
            back.info.checksum_errors
        );
        let got = summary(&back.tree, true);
        for (p, w) in &want {
            assert_eq!(
                got.get(p),
                Some(w),
                "{name}: {}",
                String::from_utf8_lossy(p)
            );
        }
        assert_eq!(got.len(), want.len(), "{name}: path count");
    }
}
