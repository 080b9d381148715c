//! Seeded random trees (names with any bytes but '/' and NUL, wide directories of non-ASCII
//! names so the htree hash's signed-char handling matters, random sizes and holes, hard links,
//! xattrs of random sizes) written as ext2/ext3/ext4 and checked by e2fsck and debugfs.
mod ext_write_support;
use ext_write_support::*;

use std::sync::Arc;

use rootfs::content::{Content, Extent, Source};
use rootfs::ext::{write_image, FsKind, WriteOptions};
use rootfs::{Node, NodeKind, Tree};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn name(r: &mut Rng) -> Vec<u8> {
    let len = 1 + r.below(40) as usize;
    let mut n: Vec<u8> = (0..len)
        .map(|_| loop {
            // Any byte debugfs's command line can carry: no '/', NUL, quotes, backslash,
            // whitespace or control characters; bytes >= 0x80 (non-UTF-8 too) included.
            let b = r.below(256) as u8;
            if b > b' ' && b != b'/' && b != b'"' && b != b'\\' && b != 0x7f {
                break b;
            }
        })
        .collect();
    if n == b"." || n == b".." {
        n.push(b'x');
    }
    n
}

fn random_tree(seed: u64) -> Tree {
    let mut r = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let mut t = Tree::new(meta(0o755, 0, 0));
    let mut dirs = vec![t.root()];
    let mut files = Vec::new();
    for i in 0..3000 {
        // Half the entries go into one wide directory.
        let parent = if i % 2 == 0 {
            dirs[0]
        } else {
            dirs[r.below(dirs.len() as u64) as usize]
        };
        let n = name(&mut r);
        if t.entries(parent).is_some_and(|e| e.contains_key(&n))
            || (parent == t.root() && n == b"lost+found")
        {
            continue;
        }
        let mut m = meta(
            (r.below(0o10000)) as u16,
            r.below(1 << 20) as u32,
            r.below(1 << 20) as u32,
        );
        if r.below(10) == 0 {
            let k = format!("user.k{}", r.below(1000)).into_bytes();
            m.xattrs.insert(k, bytes(r.next(), r.below(300) as usize));
        }
        let kind = match r.below(10) {
            0 => NodeKind::empty_dir(),
            1 => NodeKind::Symlink(name(&mut r)),
            2 if !files.is_empty() => {
                let f = files[r.below(files.len() as u64) as usize];
                t.attach(parent, &n, f).unwrap();
                continue;
            }
            3 => {
                let size = r.below(3 << 20);
                let src: Arc<[u8]> = bytes(r.next(), 70_000).into();
                let mut exts = Vec::new();
                let mut pos = 0;
                while pos < size {
                    let len = (1 + r.below(20_000)).min(size - pos);
                    if r.below(2) == 0 {
                        exts.push(Extent {
                            logical: pos,
                            physical: r.below(50_000),
                            len,
                        });
                    }
                    pos += len + r.below(200_000);
                }
                NodeKind::Regular(Content::from_extents(Source::Memory(src), size, exts).unwrap())
            }
            _ => NodeKind::Regular(Content::from_bytes(bytes(r.next(), r.below(9000) as usize))),
        };
        let is_dir = matches!(kind, NodeKind::Directory(_));
        let is_file = matches!(kind, NodeKind::Regular(_));
        let id = t.add_node(Node::new(kind, m));
        t.attach(parent, &n, id).unwrap();
        if is_dir {
            dirs.push(id);
        } else if is_file {
            files.push(id);
        }
    }
    t
}

#[test]
fn random_trees_pass_e2fsck_and_debugfs() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, fs, bs, isz) in [
        (1u64, FsKind::Ext4, 1024u32, 256u16),
        (2, FsKind::Ext3, 4096, 128),
        (3, FsKind::Ext2, 1024, 128),
        (4, FsKind::Ext4, 4096, 256),
    ] {
        let t = random_tree(seed);
        let img = dir.path().join(format!("r{seed}.img"));
        let mut o = WriteOptions::new(fs);
        o.block_size = bs;
        o.inode_size = isz;
        o.epoch = 1_234_567_890;
        write_image(&t, &img, &o).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        fsck(&img);
        check_with_debugfs(&t, &img, isz > 128);
    }
}
