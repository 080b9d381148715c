//! The ext2/ext3/ext4 writer: from a [`Tree`] to a sparse, reproducible image file.
//!
//! # How an image is laid out
//!
//! 1. **Plan** (one pass over the tree): inode numbers in [`Tree::walk`] order (root 2,
//!    `lost+found` 11, then 12, 13, ...; a hard-linked node gets one inode at its first path),
//!    the blocks each inode will need, and from those the image size when none is given.
//! 2. **Geometry**: block groups of `8 * block_size` blocks; superblock backups in groups 0, 1
//!    and powers of 3, 5, 7 (`sparse_super`); no reserved GDT blocks (no `resize_inode`).
//!    With `flex_bg` the bitmaps and inode tables of 16 groups are packed together at the
//!    start of the first one (like mke2fs); without it each group holds its own.
//! 3. **Data** (one streaming pass in inode order): the journal (if any), then every inode's
//!    data, directory blocks, block maps (extent trees or indirect blocks) and xattr blocks
//!    are allocated sequentially and written with large writes; all-zero blocks are never
//!    written (the file is created with `set_len`, so holes read as zeros). Regular-file data
//!    whose source is a host file (a directory tree's files, an uncompressed tar, a raw
//!    image) is copied by the kernel (`copy_file_range`) from the source straight to its
//!    blocks (holes skipped, all-zero blocks inside data copied as zeros: same bytes); other
//!    data, and everything when the kernel cannot copy, goes through memory.
//! 4. **Metadata**: inode tables, bitmaps, group descriptors and superblocks (with backups)
//!    are computed in memory and written last, with every checksum when `metadata_csum` is on.
//!
//! Reproducibility: the UUID and htree hash seed are derived from a SHA-256 of the tree's
//! metadata (paths, types, modes, owners, times, sizes, link targets, device numbers, xattrs)
//! and the options; every superblock time is [`WriteOptions::epoch`]; inode times come from
//! the tree; generation numbers are 0. The same tree and options give the same bytes.
//!
//! On-disk structures follow the ext4 disk layout document (kernel
//! `Documentation/filesystems/ext4/`), sections cited at each use; they are checked against
//! e2fsprogs (`e2fsck -fn`, `debugfs`) in `rootfs/tests/ext_write_*.rs`.

// On-disk structs are plain field tables: filling a default one field by field reads best.
#![allow(clippy::field_reassign_with_default)]

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::format::{
    self, crc32c_raw, encode_device, encode_time, GroupDesc, Inode, JournalSuperblock, Superblock,
    XattrEntry,
};
use super::hash::{xattr_block_hash, xattr_entry_hash, DxHash};
use super::write_dir::{build_dir, rec_len, DirError, DirParams, Entry};
use super::write_map::{build_extents, build_indirect, map_blocks_upper_bound, MapError, Run};
use super::FsKind;
use crate::content::{Content, FileSource, ReadAt, Source};
use crate::tree::{display_path, NodeId, NodeKind, Tree};

/// A set of defaults matching what a given distribution's `mke2fs` makes and its kernel mounts.
///
/// Each profile cites the `[fs_types]` stanza of that release's `/etc/mke2fs.conf`. Features
/// the writer never sets: `resize_inode` (no online growth of images; inode 7 stays empty),
/// lazy init (`BLOCK_UNINIT`/`INODE_UNINIT` groups: images are written whole),
/// `orphan_file`, `metadata_csum_seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Plain ext2 as e2fsprogs 1.47 `[defaults] base_features = sparse_super,large_file,
    /// filetype,resize_inode,dir_index,ext_attr`, 4 KiB blocks, 256-byte inodes.
    Ext2,
    /// ext3: ext2 plus `has_journal` (1.47 `ext3 = { features = has_journal }`).
    Ext3,
    /// ext4 as e2fsprogs 1.47 makes it: `has_journal,extent,huge_file,flex_bg,metadata_csum,
    /// 64bit,dir_nlink,extra_isize`, 256-byte inodes.
    Ext4,
    /// RHEL/CentOS/SL 4 (e2fsprogs 1.35, kernel 2.6.9): ext3, 128-byte inodes, `sparse_super,
    /// filetype,dir_index,has_journal` (+`ext_attr`, `large_file`, both handled by 2.6.9).
    El4,
    /// RHEL/CentOS/SL 5 (e2fsprogs 1.39, kernel 2.6.18): ext3, `base_features =
    /// sparse_super,filetype,resize_inode,dir_index,ext_attr` + `has_journal`; 256-byte
    /// inodes (2.6.18 ext3 reads in-inode xattrs and `i_extra_isize`).
    El5,
    /// RHEL 6 (e2fsprogs 1.41.12): ext4 `has_journal,extent,huge_file,flex_bg,uninit_bg,
    /// dir_nlink,extra_isize`, inode_size 256; no 64bit, no metadata_csum.
    El6,
    /// RHEL 7 (e2fsprogs 1.42.9): ext4 `has_journal,extent,huge_file,flex_bg,uninit_bg,
    /// dir_nlink,extra_isize,64bit`, inode_size 256; no metadata_csum.
    El7,
    /// RHEL 8 (e2fsprogs 1.45.6): ext4 `has_journal,extent,huge_file,flex_bg,metadata_csum,
    /// 64bit,dir_nlink,extra_isize`, inode_size 256.
    El8,
    /// RHEL 9 (e2fsprogs 1.46.5): as [`Profile::El8`].
    El9,
    /// Fedora (e2fsprogs 1.46/1.47): as [`Profile::El9`].
    Fedora,
    /// Debian 12 (e2fsprogs 1.47.0 with Debian's `/etc/mke2fs.conf`): ext4 `has_journal,extent,
    /// huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize`, inode_size 256 (Debian
    /// leaves out upstream 1.47's `metadata_csum_seed` and `orphan_file`). Debian 9 to 11 and
    /// Ubuntu 18.04 to 22.04 make the same feature set.
    Debian12,
}

impl Profile {
    /// Parse a profile name (`ext2`, `ext3`, `ext4`, `el4` .. `el9`, `fedora`, `debian12`).
    pub fn from_name(name: &str) -> Option<Profile> {
        Some(match name.to_ascii_lowercase().as_str() {
            "ext2" => Profile::Ext2,
            "ext3" => Profile::Ext3,
            "ext4" => Profile::Ext4,
            "el4" => Profile::El4,
            "el5" => Profile::El5,
            "el6" => Profile::El6,
            "el7" => Profile::El7,
            "el8" => Profile::El8,
            "el9" => Profile::El9,
            "fedora" => Profile::Fedora,
            "debian12" => Profile::Debian12,
            _ => return None,
        })
    }
}

/// How to write an image. Start from [`WriteOptions::for_profile`] or [`WriteOptions::new`].
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// ext2 (no journal), ext3 (journal) or ext4 (extents and the other ext4 features).
    pub fs: FsKind,
    /// 1024 or 4096.
    pub block_size: u32,
    /// 128 or 256.
    pub inode_size: u16,
    /// Image size in bytes (rounded down to whole blocks); `None`: computed from the content.
    pub size: Option<u64>,
    /// Free space added when the size is computed, in percent of the content (default 20).
    pub headroom_percent: u32,
    /// Free inodes added when the size is computed, in percent of the used ones (default 20).
    pub inode_headroom_percent: u32,
    /// Bytes of image per inode when the size is given (mke2fs `inode_ratio`, default 16384).
    pub inode_ratio: u32,
    /// The time written to the superblock (creation, write, check) and to inodes the writer
    /// makes itself (journal, lost+found when the tree has none): SOURCE_DATE_EPOCH.
    pub epoch: i64,
    /// metadata_csum (ext4 only).
    pub metadata_csum: bool,
    /// 64bit (ext4 only): 64-byte group descriptors.
    pub sixty_four_bit: bool,
    /// flex_bg (ext4 only).
    pub flex_bg: bool,
    /// huge_file, dir_nlink and extra_isize (ext4 only).
    pub ext4_extras: bool,
    /// Give ext4 a journal (ext3 always has one, ext2 never).
    pub journal: bool,
    /// uninit_bg (`gdt_csum`, ext4 without metadata_csum): crc16 group descriptor checksums
    /// and `bg_itable_unused`, as RHEL 6/7's mke2fs set.
    pub uninit_bg: bool,
    /// Journal size in blocks (`None`: mke2fs's default for the filesystem size).
    pub journal_blocks: Option<u32>,
    /// Volume label (at most 16 bytes).
    pub label: Vec<u8>,
    /// Blocks reserved for root, in percent (mke2fs `-m`, default 5).
    pub reserved_percent: u32,
    /// `fsync` the image before returning (as mke2fs does), so that it is on disk when the
    /// call returns. Off for images that are only an intermediate (the builder compresses and
    /// deletes its raw image; the kernel writes it back, or never, in its own time).
    pub sync: bool,
    /// Seed of the filesystem UUID and the directory-hash seed. `None`: derived from the
    /// image's content, so different trees get different UUIDs. The builder gives the wafer's
    /// identity (VO and name) instead, so that successive versions of one wafer keep their UUID,
    /// and with it every metadata checksum it seeds (`metadata_csum`, `uninit_bg`): an upgrade
    /// then changes only the blocks it touches, which is what keeps delta pulls small
    /// (docs/bundle.md, "Delta pulls").
    pub identity: Option<[u8; 32]>,
}

impl WriteOptions {
    /// Defaults for a filesystem kind: the matching plain profile.
    pub fn new(fs: FsKind) -> Self {
        match fs {
            FsKind::Ext2 => Self::for_profile(Profile::Ext2),
            FsKind::Ext3 => Self::for_profile(Profile::Ext3),
            FsKind::Ext4 => Self::for_profile(Profile::Ext4),
        }
    }

    /// Defaults of a [`Profile`].
    pub fn for_profile(p: Profile) -> Self {
        let base = WriteOptions {
            fs: FsKind::Ext4,
            block_size: 4096,
            inode_size: 256,
            size: None,
            headroom_percent: 20,
            inode_headroom_percent: 20,
            inode_ratio: 16384,
            epoch: 0,
            metadata_csum: true,
            sixty_four_bit: true,
            flex_bg: true,
            ext4_extras: true,
            journal: true,
            uninit_bg: false,
            journal_blocks: None,
            label: Vec::new(),
            reserved_percent: 5,
            sync: true,
            identity: None,
        };
        let old = |fs: FsKind, inode_size: u16| WriteOptions {
            fs,
            inode_size,
            metadata_csum: false,
            sixty_four_bit: false,
            flex_bg: false,
            ext4_extras: false,
            journal: fs != FsKind::Ext2,
            ..base.clone()
        };
        match p {
            Profile::Ext2 => old(FsKind::Ext2, 256),
            Profile::Ext3 => old(FsKind::Ext3, 256),
            Profile::El4 => old(FsKind::Ext3, 128),
            Profile::El5 => old(FsKind::Ext3, 256),
            Profile::El6 => WriteOptions {
                metadata_csum: false,
                sixty_four_bit: false,
                uninit_bg: true,
                ..base
            },
            Profile::El7 => WriteOptions {
                metadata_csum: false,
                uninit_bg: true,
                ..base
            },
            Profile::Ext4 | Profile::El8 | Profile::El9 | Profile::Fedora | Profile::Debian12 => {
                base
            }
        }
    }
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteReport {
    /// Image path.
    pub path: PathBuf,
    /// Image size in bytes.
    pub size: u64,
    /// Block size.
    pub block_size: u32,
    /// Total blocks.
    pub blocks_count: u64,
    /// Blocks in use (metadata and data).
    pub blocks_used: u64,
    /// Total inodes.
    pub inodes_count: u32,
    /// Inodes in use (including the reserved ones 1-10).
    pub inodes_used: u32,
    /// Block groups.
    pub groups: u32,
    /// Volume UUID.
    pub uuid: [u8; 16],
}

/// Errors writing an image; each names what and where.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Bad options.
    #[error("invalid write option {option}: {what}")]
    Option {
        /// The option.
        option: &'static str,
        /// What is wrong.
        what: String,
    },
    /// The given size cannot hold the tree.
    #[error("image size {given} bytes is too small: {needed} bytes needed ({what})")]
    TooSmall {
        /// The size given.
        given: u64,
        /// The size needed (with no headroom).
        needed: u64,
        /// What ran out.
        what: &'static str,
    },
    /// The tree cannot be represented (too many links, too large a file, name too long ...).
    #[error("{path}: {what}")]
    Unrepresentable {
        /// Path in the tree.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// Reading a file's content failed.
    #[error("reading the content of {path}: {source}")]
    Content {
        /// Path in the tree.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Writing the image failed.
    #[error("writing {image} at offset {offset}: {source}")]
    Io {
        /// Image path.
        image: String,
        /// Byte offset (0 for create/truncate).
        offset: u64,
        /// The error.
        #[source]
        source: io::Error,
    },
}

// ---------------------------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------------------------

const ROOT_INO: u32 = 2;
const JOURNAL_INO: u32 = 8;
const LPF_INO: u32 = 11;
const FIRST_INO: u32 = 11;
/// `i_extra_isize` of 256-byte inodes (all the extra fields up to `i_projid`).
const EXTRA_ISIZE: u16 = 32;
/// Flex group size (mke2fs default `flex_bg_size = 16`).
const LOG_GROUPS_PER_FLEX: u8 = 4;

/// The inode order and facts gathered from the tree in one walk.
struct Plan {
    /// Node of each inode number from 12 on (index ino - 12).
    order: Vec<NodeId>,
    /// Inode number by node slot (0: unreachable).
    ino_of: Vec<u32>,
    /// Parent directory inode by node slot (directories only).
    parent_of: Vec<u32>,
    /// The tree's own `/lost+found` directory, if it has one (it becomes inode 11).
    lpf_node: Option<NodeId>,
    /// Link counts by node slot.
    links: Vec<u32>,
    /// Upper bound of blocks needed by all inodes (data, maps, directories, xattr blocks).
    blocks_needed: u64,
    /// Whether any file is 2 GiB or larger.
    large_file: bool,
    /// Metadata hash (seeds the UUID).
    digest: [u8; 32],
}

fn ftype_of(kind: &NodeKind) -> u8 {
    match kind {
        NodeKind::Regular(_) => 1,
        NodeKind::Directory(_) => 2,
        NodeKind::CharDevice(_) => 3,
        NodeKind::BlockDevice(_) => 4,
        NodeKind::Fifo => 5,
        NodeKind::Socket => 6,
        NodeKind::Symlink(_) => 7,
    }
}

/// Logical block ranges holding data of `c` (holes dropped), merged.
fn mapped_ranges(c: &Content, bs: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for e in c.extents() {
        if e.len == 0 {
            continue;
        }
        let s = e.logical / bs;
        let end = (e.logical + e.len).div_ceil(bs);
        match out.last_mut() {
            Some(last) if s <= last.0 + last.1 => {
                let new_end = end.max(last.0 + last.1);
                last.1 = new_end - last.0;
            }
            _ => out.push((s, end - s)),
        }
    }
    out
}

struct Ctx<'a> {
    tree: &'a Tree,
    opts: &'a WriteOptions,
    bs: u64,
    extents: bool,
    csum: bool,
    dir_index: bool,
}

impl Ctx<'_> {
    fn xattr_in_inode_space(&self) -> usize {
        if self.opts.inode_size > 128 {
            usize::from(self.opts.inode_size) - 128 - usize::from(EXTRA_ISIZE) - 4
        } else {
            0
        }
    }

    /// Upper bound of blocks an inode needs besides the inode itself.
    fn blocks_for(&self, id: NodeId, entries_lens: Option<(usize, usize)>) -> u64 {
        let node = self.tree.node(id);
        let bs = self.bs;
        let xattr = u64::from(
            !node.meta.xattrs.is_empty()
                && xattr_needs_block(&node.meta.xattrs, self.xattr_in_inode_space()),
        );
        let data = match &node.kind {
            NodeKind::Regular(c) => {
                let r = mapped_ranges(c, bs);
                let n: u64 = r.iter().map(|x| x.1).sum();
                n + map_blocks_upper_bound(n, r.len() as u64, bs, self.extents)
            }
            NodeKind::Directory(_) => {
                let (count, bytes) = entries_lens.unwrap_or((0, 0));
                let space = bs as usize - if self.csum { 12 } else { 0 };
                // Each block wastes at most one maximal entry.
                let blocks =
                    (24 + bytes).div_ceil(space.saturating_sub(264).max(1)) + 1 + count / 100_000;
                let b = blocks as u64 + blocks as u64 / 100 + 2;
                b + map_blocks_upper_bound(b, 1, bs, self.extents)
            }
            NodeKind::Symlink(t) if t.len() >= 60 => {
                1 + map_blocks_upper_bound(1, 1, bs, self.extents)
            }
            _ => 0,
        };
        data + xattr
    }
}

fn plan(ctx: &Ctx<'_>) -> Result<Plan, WriteError> {
    let tree = ctx.tree;
    let slots = tree.node_slots();
    let mut ino_of = vec![0u32; slots];
    let mut parent_of = vec![0u32; slots];
    let mut order = Vec::new();
    let mut lpf_node = None;
    let mut blocks_needed = 0u64;
    let mut large_file = false;
    let mut hasher = Sha256::new();
    let root = tree.root();
    if let Some(&lpf) = tree.entries(root).and_then(|e| e.get(&b"lost+found"[..])) {
        if !matches!(tree.node(lpf).kind, NodeKind::Directory(_)) {
            return Err(WriteError::Unrepresentable {
                path: "/lost+found".into(),
                what: "exists but is not a directory (e2fsck needs a lost+found directory)".into(),
            });
        }
    }
    ino_of[root.0 as usize] = ROOT_INO;
    parent_of[root.0 as usize] = ROOT_INO;
    let mut next_ino: u64 = 12;
    let mut seen_dir = vec![false; slots];
    seen_dir[root.0 as usize] = true;

    // Each entry is hashed with its depth and name, not its path: in a pre-order walk the
    // sequence of (depth, name) pairs says as much as the paths, and costs linear time however
    // deep the tree (the paths of a chain 100,000 directories deep are 10^10 bytes).
    let hash_node = |h: &mut Sha256, depth: usize, name: &[u8], id: NodeId| {
        let n = tree.node(id);
        h.update((depth as u64).to_le_bytes());
        h.update((name.len() as u64).to_le_bytes());
        h.update(name);
        h.update(n.mode().to_le_bytes());
        h.update(n.meta.uid.to_le_bytes());
        h.update(n.meta.gid.to_le_bytes());
        for t in [
            n.meta.atime,
            n.meta.mtime,
            n.meta.ctime,
            n.meta.crtime.unwrap_or_default(),
        ] {
            h.update(t.sec.to_le_bytes());
            h.update(t.nsec.to_le_bytes());
        }
        h.update(n.size().to_le_bytes());
        match &n.kind {
            NodeKind::Symlink(t) => h.update(t),
            NodeKind::CharDevice(d) | NodeKind::BlockDevice(d) => {
                h.update(d.major.to_le_bytes());
                h.update(d.minor.to_le_bytes());
            }
            _ => {}
        }
        for (k, v) in &n.meta.xattrs {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k);
            h.update((v.len() as u64).to_le_bytes());
            h.update(v);
        }
    };

    let dir_lens = |id: NodeId| -> (usize, usize) {
        let e = tree.entries(id);
        let count = e.map_or(0, |e| e.len());
        let bytes = e.map_or(0, |e| e.keys().map(|k| rec_len(k.len())).sum());
        (count, bytes)
    };

    hash_node(&mut hasher, 0, b"/", root);
    blocks_needed += ctx.blocks_for(root, Some(dir_lens(root)));

    // Pre-order walk in name order, exactly like Tree::walk.
    let mut path: Vec<u8> = vec![b'/'];
    type It<'t> = std::collections::btree_map::Iter<'t, Vec<u8>, NodeId>;
    let mut stack: Vec<(It<'_>, usize, u32, bool)> = Vec::new();
    if let Some(e) = tree.entries(root) {
        stack.push((e.iter(), 1, ROOT_INO, true));
    }
    while let Some((iter, base_len, dir_ino, is_root)) = stack.last_mut() {
        let (base_len, dir_ino, is_root) = (*base_len, *dir_ino, *is_root);
        let Some((name, &id)) = iter.next() else {
            stack.pop();
            continue;
        };
        let depth = stack.len();
        path.truncate(base_len);
        if base_len > 1 {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        if name.len() > 255 {
            return Err(WriteError::Unrepresentable {
                path: display_path(&path),
                what: format!("name of {} bytes (ext allows 255)", name.len()),
            });
        }
        hash_node(&mut hasher, depth, name, id);
        let node = tree.node(id);
        let slot = id.0 as usize;
        let is_dir = matches!(node.kind, NodeKind::Directory(_));
        if ino_of[slot] == 0 {
            if is_root && name.as_slice() == b"lost+found" && is_dir {
                ino_of[slot] = LPF_INO;
                lpf_node = Some(id);
            } else {
                if next_ino > u64::from(u32::MAX) {
                    return Err(WriteError::Unrepresentable {
                        path: display_path(&path),
                        what: "more than 2^32 inodes".into(),
                    });
                }
                ino_of[slot] = next_ino as u32;
                next_ino += 1;
                order.push(id);
            }
            if let NodeKind::Regular(c) = &node.kind {
                if c.size() >= 1 << 31 {
                    large_file = true;
                }
            }
            let lens = if is_dir { Some(dir_lens(id)) } else { None };
            blocks_needed += ctx.blocks_for(id, lens);
        }
        if is_dir && !seen_dir[slot] {
            seen_dir[slot] = true;
            parent_of[slot] = dir_ino;
            let len = path.len();
            if let Some(e) = tree.entries(id) {
                stack.push((e.iter(), len, ino_of[slot], false));
            }
        }
    }
    // lost+found made by us: pre-allocated blocks (mke2fs grows it to 16 KiB, at most 12 blocks).
    if lpf_node.is_none() {
        blocks_needed += lpf_blocks(ctx.bs) as u64 + 1;
    }
    let links = tree.link_counts();
    hasher.update(b"wafer-ext-writer-v1");
    let o = ctx.opts;
    hasher.update([o.fs as u8]);
    hasher.update(o.block_size.to_le_bytes());
    hasher.update(o.inode_size.to_le_bytes());
    hasher.update(o.epoch.to_le_bytes());
    hasher.update([
        u8::from(o.metadata_csum),
        u8::from(o.sixty_four_bit),
        u8::from(o.flex_bg),
        u8::from(o.ext4_extras),
        u8::from(o.journal),
        u8::from(o.uninit_bg),
    ]);
    hasher.update(&o.label);
    hasher.update(o.size.unwrap_or(0).to_le_bytes());
    let digest: [u8; 32] = hasher.finalize().into();
    Ok(Plan {
        order,
        ino_of,
        parent_of,
        lpf_node,
        links,
        blocks_needed,
        large_file,
        digest,
    })
}

/// lost+found blocks as mke2fs makes them: grown to 16 KiB, at most 12 direct blocks.
fn lpf_blocks(bs: u64) -> usize {
    (16384 / bs).clamp(2, 12) as usize
}

/// mke2fs's default journal size in blocks for a filesystem of `blocks` blocks
/// (e2fsprogs `ext2fs_default_journal_size`).
fn default_journal_blocks(blocks: u64) -> u64 {
    // (mke2fs makes no journal below 2048 blocks; an ext3 image always gets one here.)
    if blocks < 32768 {
        1024
    } else if blocks < 256 * 1024 {
        4096
    } else if blocks < 512 * 1024 {
        8192
    } else if blocks < 4096 * 1024 {
        16384
    } else if blocks < 8192 * 1024 {
        32768
    } else if blocks < 16384 * 1024 {
        65536
    } else if blocks < 32768 * 1024 {
        131072
    } else {
        262144
    }
}

// ---------------------------------------------------------------------------------------------
// Geometry
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Geometry {
    bs: u64,
    first_data_block: u64,
    blocks_count: u64,
    bpg: u64,
    groups: u64,
    ipg: u64,
    inode_size: u64,
    desc_size: u64,
    gdt_blocks: u64,
    itb: u64,
    sparse: bool,
}

impl Geometry {
    fn has_super(&self, g: u64) -> bool {
        if g <= 1 || !self.sparse {
            return true;
        }
        [3u64, 5, 7].iter().any(|&b| {
            let mut x = g;
            #[allow(clippy::manual_is_multiple_of)] // rust-version 1.80
            while x % b == 0 {
                x /= b;
            }
            x == 1
        })
    }

    fn group_start(&self, g: u64) -> u64 {
        self.first_data_block + g * self.bpg
    }

    fn group_end(&self, g: u64) -> u64 {
        (self.group_start(g) + self.bpg).min(self.blocks_count)
    }

    fn super_blocks(&self, g: u64) -> u64 {
        if self.has_super(g) {
            1 + self.gdt_blocks
        } else {
            0
        }
    }

    /// Blocks used by metadata (superblocks, descriptors, bitmaps, inode tables).
    fn overhead(&self) -> u64 {
        (0..self.groups)
            .map(|g| self.super_blocks(g) + 2 + self.itb)
            .sum::<u64>()
            + self.first_data_block
    }

    fn inodes_count(&self) -> u64 {
        self.groups * self.ipg
    }
}

fn geometry(opts: &WriteOptions, blocks: u64, inodes_wanted: u64) -> Result<Geometry, WriteError> {
    let bs = u64::from(opts.block_size);
    let first_data_block = u64::from(bs == 1024);
    let bpg = 8 * bs;
    let mut blocks_count = blocks;
    if blocks_count < first_data_block + 64 {
        blocks_count = first_data_block + 64;
    }
    let inode_size = u64::from(opts.inode_size);
    let ipb = bs / inode_size;
    let desc_size = if opts.fs == FsKind::Ext4 && opts.sixty_four_bit {
        64
    } else {
        32
    };
    let mut groups = (blocks_count - first_data_block).div_ceil(bpg);
    let compute_ipg = |groups: u64| -> u64 {
        let per = inodes_wanted.div_ceil(groups).max(16);
        let unit = ipb.max(8);
        per.div_ceil(unit) * unit
    };
    loop {
        let ipg = compute_ipg(groups);
        let itb = ipg * inode_size / bs;
        let gdt_blocks = (groups * desc_size).div_ceil(bs);
        let last = blocks_count - first_data_block - (groups - 1) * bpg;
        // A last group too small for its own metadata (plus a little data) is dropped.
        if groups > 1 && last < 1 + gdt_blocks + 2 + itb + 64 {
            blocks_count -= last;
            groups -= 1;
            continue;
        }
        if ipg > bpg || ipg > u64::from(u32::MAX) {
            return Err(WriteError::TooSmall {
                given: blocks * bs,
                needed: inodes_wanted.div_ceil(bpg) * bpg * bs,
                what: "too many inodes for this many block groups",
            });
        }
        if groups * ipg > u64::from(u32::MAX) {
            return Err(WriteError::Option {
                option: "size",
                what: "more than 2^32 inodes".into(),
            });
        }
        if blocks_count > u64::from(u32::MAX) && desc_size == 32 {
            return Err(WriteError::Option {
                option: "size",
                what: "more than 2^32 blocks needs the 64bit feature (ext4)".into(),
            });
        }
        return Ok(Geometry {
            bs,
            first_data_block,
            blocks_count,
            bpg,
            groups,
            ipg,
            inode_size,
            desc_size,
            gdt_blocks,
            itb,
            sparse: true,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Allocation
// ---------------------------------------------------------------------------------------------

/// Sequential block allocator skipping reserved (metadata) ranges.
struct Alloc {
    /// Sorted, non-overlapping reserved ranges (start, len).
    reserved: Vec<(u64, u64)>,
    idx: usize,
    cursor: u64,
    end: u64,
    /// Used-block bitmap of the whole filesystem.
    used: Vec<u64>,
}

impl Alloc {
    fn mark(used: &mut [u64], start: u64, len: u64) {
        for b in start..start + len {
            if let Some(w) = used.get_mut((b / 64) as usize) {
                *w |= 1 << (b % 64);
            }
        }
    }

    fn is_used(&self, b: u64) -> bool {
        self.used
            .get((b / 64) as usize)
            .is_some_and(|w| w & (1 << (b % 64)) != 0)
    }

    /// Up to `max` contiguous blocks at the cursor.
    fn run(&mut self, max: u64) -> Option<(u64, u64)> {
        loop {
            while let Some(&(s, l)) = self.reserved.get(self.idx) {
                if self.cursor >= s + l {
                    self.idx += 1;
                } else if self.cursor >= s {
                    self.cursor = s + l;
                    self.idx += 1;
                } else {
                    break;
                }
            }
            if self.cursor >= self.end {
                return None;
            }
            let limit = self
                .reserved
                .get(self.idx)
                .map_or(self.end, |&(s, _)| s)
                .min(self.end);
            if limit <= self.cursor {
                continue;
            }
            let n = max.min(limit - self.cursor);
            let start = self.cursor;
            self.cursor += n;
            Alloc::mark(&mut self.used, start, n);
            return Some((start, n));
        }
    }

    fn one(&mut self) -> Option<u64> {
        self.run(1).map(|r| r.0)
    }
}

/// Where each group's bitmaps and inode table are.
#[derive(Clone, Copy, Debug, Default)]
struct GroupLoc {
    block_bitmap: u64,
    inode_bitmap: u64,
    inode_table: u64,
}

/// Group metadata locations and the reserved (metadata) block ranges.
type Placement = (Vec<GroupLoc>, Vec<(u64, u64)>);

fn place_metadata(geo: &Geometry, flex: bool) -> Result<Placement, WriteError> {
    let mut reserved: Vec<(u64, u64)> = Vec::new();
    if geo.first_data_block > 0 {
        reserved.push((0, geo.first_data_block));
    }
    for g in 0..geo.groups {
        let n = geo.super_blocks(g);
        if n > 0 {
            reserved.push((geo.group_start(g), n));
        }
    }
    let too_small = || WriteError::TooSmall {
        given: geo.blocks_count * geo.bs,
        needed: (geo.overhead() + 64) * geo.bs,
        what: "no room for group metadata",
    };
    let mut locs = vec![GroupLoc::default(); geo.groups as usize];
    // First block at or after `from` where `n` blocks fit between the super areas.
    let fit = |from: u64, n: u64, sb_areas: &[(u64, u64)]| -> Option<u64> {
        let mut s = from;
        for &(rs, rl) in sb_areas {
            if rs + rl <= s {
                continue;
            }
            if s + n <= rs {
                break;
            }
            s = s.max(rs + rl);
        }
        (s + n <= geo.blocks_count).then_some(s)
    };
    let sb_areas = reserved.clone();
    if flex {
        let per = 1u64 << LOG_GROUPS_PER_FLEX;
        let mut f = 0;
        while f < geo.groups {
            let members: Vec<u64> = (f..(f + per).min(geo.groups)).collect();
            let mut cur = geo.group_start(f) + geo.super_blocks(f);
            for &g in &members {
                let b = fit(cur, 1, &sb_areas).ok_or_else(too_small)?;
                locs[g as usize].block_bitmap = b;
                cur = b + 1;
            }
            for &g in &members {
                let b = fit(cur, 1, &sb_areas).ok_or_else(too_small)?;
                locs[g as usize].inode_bitmap = b;
                cur = b + 1;
            }
            for &g in &members {
                let b = fit(cur, geo.itb, &sb_areas).ok_or_else(too_small)?;
                locs[g as usize].inode_table = b;
                cur = b + geo.itb;
            }
            f += per;
        }
    } else {
        for g in 0..geo.groups {
            let s = geo.group_start(g) + geo.super_blocks(g);
            if s + 2 + geo.itb > geo.group_end(g) {
                return Err(too_small());
            }
            locs[g as usize] = GroupLoc {
                block_bitmap: s,
                inode_bitmap: s + 1,
                inode_table: s + 2,
            };
        }
    }
    for l in &locs {
        reserved.push((l.block_bitmap, 1));
        reserved.push((l.inode_bitmap, 1));
        reserved.push((l.inode_table, geo.itb));
    }
    reserved.sort_unstable();
    // Merge adjacent ranges.
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(reserved.len());
    for (s, l) in reserved {
        match merged.last_mut() {
            Some(last) if s <= last.0 + last.1 => {
                let end = (s + l).max(last.0 + last.1);
                last.1 = end - last.0;
            }
            _ => merged.push((s, l)),
        }
    }
    Ok((locs, merged))
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// Batches contiguous writes into large `pwrite`s; never writes all-zero blocks.
struct Out {
    file: File,
    path: String,
    buf: Vec<u8>,
    start: u64,
    bs: usize,
}

const OUT_BUF: usize = 4 << 20;

impl Out {
    fn io_err(&self, offset: u64, source: io::Error) -> WriteError {
        WriteError::Io {
            image: self.path.clone(),
            offset,
            source,
        }
    }

    fn flush(&mut self) -> Result<(), WriteError> {
        if !self.buf.is_empty() {
            self.file
                .write_all_at(&self.buf, self.start)
                .map_err(|e| WriteError::Io {
                    image: self.path.clone(),
                    offset: self.start,
                    source: e,
                })?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Write `data` at byte `off`, skipping block-sized all-zero chunks.
    fn put(&mut self, off: u64, data: &[u8]) -> Result<(), WriteError> {
        let mut pos = 0usize;
        while pos < data.len() {
            let n = (data.len() - pos).min(self.bs);
            let chunk = &data[pos..pos + n];
            let at = off + pos as u64;
            if chunk.iter().all(|&b| b == 0) {
                self.flush()?;
            } else {
                if self.buf.is_empty()
                    || self.start + self.buf.len() as u64 != at
                    || self.buf.len() + n > OUT_BUF
                {
                    self.flush()?;
                    self.start = at;
                }
                self.buf.extend_from_slice(chunk);
            }
            pos += n;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Xattrs
// ---------------------------------------------------------------------------------------------

struct XattrItem {
    index: u8,
    name: Vec<u8>,
    value: Vec<u8>,
}

fn xattr_items(x: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<XattrItem> {
    let mut items: Vec<XattrItem> = x
        .iter()
        .map(|(k, v)| {
            let (index, suffix) = format::xattr_split_name(k);
            // POSIX ACLs are stored in ext4's own compact format ("Extended Attributes",
            // POSIX ACLs); values not in the VFS format are kept as given.
            let value = if index == 2 || index == 3 {
                format::acl_xattr_to_disk(v).unwrap_or_else(|_| v.clone())
            } else {
                v.clone()
            };
            XattrItem {
                index,
                name: suffix.to_vec(),
                value,
            }
        })
        .collect();
    // Sorted by (index, name length, name) as the kernel expects in blocks.
    items.sort_by(|a, b| (a.index, a.name.len(), &a.name).cmp(&(b.index, b.name.len(), &b.name)));
    items
}

fn entry_len(i: &XattrItem) -> usize {
    (16 + i.name.len() + 3) & !3
}

fn value_len(i: &XattrItem) -> usize {
    (i.value.len() + 3) & !3
}

/// How many of `items` (in order) fit in the in-inode area of `space` bytes.
fn in_inode_count(items: &[XattrItem], space: usize) -> usize {
    let mut used = 4; // terminator
    let mut n = 0;
    for i in items {
        let need = entry_len(i) + value_len(i);
        if used + need > space {
            break;
        }
        used += need;
        n += 1;
    }
    n
}

fn xattr_needs_block(x: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>, space: usize) -> bool {
    let items = xattr_items(x);
    in_inode_count(&items, space) < items.len()
}

/// Lay out entries and values in `area` (entries from `first`, values from the end;
/// value offsets relative to `base`).
fn write_xattr_area(area: &mut [u8], first: usize, base: usize, items: &[XattrItem]) -> Vec<u32> {
    let mut epos = first;
    let mut vend = area.len();
    let mut hashes = Vec::with_capacity(items.len());
    for it in items {
        let vl = value_len(it);
        vend -= vl;
        area[vend..vend + it.value.len()].copy_from_slice(&it.value);
        let hash = xattr_entry_hash(&it.name, &it.value);
        let e = XattrEntry {
            name_index: it.index,
            value_offs: (vend - base) as u16,
            value_inum: 0,
            value_size: it.value.len() as u32,
            hash,
            name: it.name.clone(),
        };
        e.serialize(&mut area[epos..]);
        epos += e.len();
        hashes.push(hash);
    }
    hashes
}

// ---------------------------------------------------------------------------------------------
// The writer
// ---------------------------------------------------------------------------------------------

/// Write `tree` as an ext2/3/4 image at `out` (created or truncated). See the module
/// documentation for the layout and [`WriteOptions`] for the choices.
pub fn write_image(
    tree: &Tree,
    out: &Path,
    opts: &WriteOptions,
) -> Result<WriteReport, WriteError> {
    if opts.block_size != 1024 && opts.block_size != 4096 {
        return Err(WriteError::Option {
            option: "block_size",
            what: format!("{} (1024 or 4096)", opts.block_size),
        });
    }
    if opts.inode_size != 128 && opts.inode_size != 256 {
        return Err(WriteError::Option {
            option: "inode_size",
            what: format!("{} (128 or 256)", opts.inode_size),
        });
    }
    if opts.label.len() > 16 {
        return Err(WriteError::Option {
            option: "label",
            what: format!("{} bytes (at most 16)", opts.label.len()),
        });
    }
    if opts.reserved_percent > 50 {
        return Err(WriteError::Option {
            option: "reserved_percent",
            what: format!("{} (at most 50)", opts.reserved_percent),
        });
    }
    let ext4 = opts.fs == FsKind::Ext4;
    let ctx = Ctx {
        tree,
        opts,
        bs: u64::from(opts.block_size),
        extents: ext4,
        csum: ext4 && opts.metadata_csum,
        dir_index: true,
    };
    let plan = plan(&ctx)?;
    let used_inodes = u64::from(FIRST_INO) + plan.order.len() as u64;
    let has_journal = match opts.fs {
        FsKind::Ext2 => false,
        FsKind::Ext3 => true,
        FsKind::Ext4 => opts.journal,
    };
    let bs = ctx.bs;
    let journal_for = |blocks: u64| -> u64 {
        if has_journal {
            opts.journal_blocks
                .map_or_else(|| default_journal_blocks(blocks), u64::from)
        } else {
            0
        }
    };

    // Size: given, or content plus headroom, iterated until the metadata fits.
    let fit = |blocks: u64, inodes: u64| -> Result<(Geometry, u64), WriteError> {
        let geo = geometry(opts, blocks, inodes)?;
        let jb = journal_for(geo.blocks_count);
        let need = geo.overhead() + jb + plan.blocks_needed + jb / 64 + 8;
        Ok((geo, need))
    };
    let auto_size = |headroom: u32, inode_headroom: u32| -> Result<Geometry, WriteError> {
        let inodes = used_inodes + used_inodes * u64::from(inode_headroom) / 100 + 16;
        let data = plan.blocks_needed * (100 + u64::from(headroom)) / 100 + 64;
        let mut blocks = data;
        for _ in 0..64 {
            let (geo, need) = fit(blocks, inodes)?;
            let want = need + data - plan.blocks_needed.min(data);
            // Also leave room for the root-reserved blocks.
            let want = want + want * u64::from(opts.reserved_percent) / 100;
            if geo.blocks_count >= want {
                return Ok(geo);
            }
            blocks = want + (want - geo.blocks_count.min(want)) / 8 + 1;
        }
        Err(WriteError::Option {
            option: "size",
            what: "could not find a size that fits".into(),
        })
    };
    let geo = match opts.size {
        None => auto_size(opts.headroom_percent, opts.inode_headroom_percent)?,
        Some(size) => {
            let blocks = size / bs;
            let minimum = || auto_size(0, 0).map(|g| g.blocks_count * bs).unwrap_or(size);
            let inodes = (size / u64::from(opts.inode_ratio.max(1024))).max(used_inodes + 16);
            let geo = match geometry(opts, blocks, inodes) {
                Ok(g) => g,
                Err(_) => {
                    geometry(opts, blocks, used_inodes + 16).map_err(|_| WriteError::TooSmall {
                        given: size,
                        needed: minimum(),
                        what: "not enough inodes",
                    })?
                }
            };
            let (_, need) = fit(geo.blocks_count, geo.inodes_count())?;
            if need > geo.blocks_count || geo.blocks_count * bs > size {
                return Err(WriteError::TooSmall {
                    given: size,
                    needed: minimum(),
                    what: "not enough blocks",
                });
            }
            geo
        }
    };
    if geo.inodes_count() < used_inodes {
        return Err(WriteError::TooSmall {
            given: geo.blocks_count * bs,
            needed: 0,
            what: "not enough inodes",
        });
    }
    tracing::debug!(
        blocks = geo.blocks_count,
        groups = geo.groups,
        ipg = geo.ipg,
        "ext writer geometry"
    );

    Writer::new(&ctx, &plan, geo, out, has_journal, journal_for)?.run()
}

struct Writer<'a> {
    ctx: &'a Ctx<'a>,
    plan: &'a Plan,
    geo: Geometry,
    out: Out,
    out_path: PathBuf,
    alloc: Alloc,
    locs: Vec<GroupLoc>,
    /// Inode table of the group being filled (inodes arrive in nondecreasing group order).
    itable: Vec<u8>,
    /// That group.
    itable_group: u64,
    /// Bytes of `itable` holding inodes so far.
    itable_used: usize,
    used_inodes: u32,
    sb: Superblock,
    csum_seed: u32,
    hash_seed: [u32; 4],
    has_journal: bool,
    journal_blocks: u64,
    /// Shared xattr blocks: content (refcount 0, no checksum) -> (block, refcount).
    xattr_blocks: HashMap<Vec<u8>, (u64, u32)>,
    dirs_per_group: Vec<u32>,
    /// Whether file data from host files is still copied in the kernel (`copy_file_range`);
    /// cleared at the first failure, after which everything goes through user space.
    kernel_copy: bool,
    /// File data written since writeback was last started (only counted when syncing).
    unsynced: u64,
}

impl<'a> Writer<'a> {
    fn new(
        ctx: &'a Ctx<'a>,
        plan: &'a Plan,
        geo: Geometry,
        out: &Path,
        has_journal: bool,
        journal_for: impl Fn(u64) -> u64,
    ) -> Result<Self, WriteError> {
        let opts = ctx.opts;
        let ext4 = opts.fs == FsKind::Ext4;
        let (locs, reserved) = place_metadata(&geo, ext4 && opts.flex_bg)?;
        let words = geo.blocks_count.div_ceil(64) as usize;
        let mut used = vec![0u64; words];
        for &(s, l) in &reserved {
            Alloc::mark(&mut used, s, l);
        }
        let alloc = Alloc {
            reserved,
            idx: 0,
            cursor: geo.first_data_block,
            end: geo.blocks_count,
            used,
        };

        let path_s = out.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(out)
            .map_err(|e| WriteError::Io {
                image: path_s.clone(),
                offset: 0,
                source: e,
            })?;
        file.set_len(geo.blocks_count * geo.bs)
            .map_err(|e| WriteError::Io {
                image: path_s.clone(),
                offset: 0,
                source: e,
            })?;

        // UUID (random-looking, version 4 layout) and hash seed from the caller's identity, or
        // else from the metadata digest.
        let d = opts.identity.unwrap_or(plan.digest);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&d[..16]);
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        let seed_bytes: [u8; 32] = Sha256::digest([&d[..], b"hash-seed"].concat()).into();
        let mut hash_seed = [0u32; 4];
        for (i, w) in hash_seed.iter_mut().enumerate() {
            *w = u32::from_le_bytes([
                seed_bytes[i * 4],
                seed_bytes[i * 4 + 1],
                seed_bytes[i * 4 + 2],
                seed_bytes[i * 4 + 3],
            ]);
        }
        let csum_seed = crc32c_raw(!0, &uuid);

        let mut sb = Superblock::default();
        sb.uuid = uuid;
        sb.hash_seed = hash_seed;
        let used_inodes = FIRST_INO + plan.order.len() as u32;
        let itable = vec![0u8; (geo.ipg * geo.inode_size) as usize];
        let journal_blocks = if has_journal {
            journal_for(geo.blocks_count)
        } else {
            0
        };
        let groups = geo.groups as usize;
        Ok(Writer {
            ctx,
            plan,
            out: Out {
                file,
                path: path_s,
                buf: Vec::with_capacity(OUT_BUF),
                start: 0,
                bs: geo.bs as usize,
            },
            out_path: out.to_path_buf(),
            geo,
            alloc,
            locs,
            itable,
            itable_group: 0,
            itable_used: 0,
            used_inodes,
            sb,
            csum_seed,
            hash_seed,
            has_journal,
            journal_blocks,
            xattr_blocks: HashMap::new(),
            dirs_per_group: vec![0; groups],
            kernel_copy: cfg!(target_os = "linux"),
            unsynced: 0,
        })
    }

    fn opts(&self) -> &WriteOptions {
        self.ctx.opts
    }

    fn no_space(&self) -> WriteError {
        WriteError::TooSmall {
            given: self.geo.blocks_count * self.geo.bs,
            needed: (self.geo.blocks_count + self.geo.blocks_count / 4) * self.geo.bs,
            what: "ran out of blocks while writing",
        }
    }

    fn inode_seed(&self, ino: u32) -> Option<u32> {
        self.ctx
            .csum
            .then(|| format::inode_csum_seed(self.csum_seed, ino, 0))
    }

    /// Allocate `n` blocks as runs starting at logical block `lblk`.
    fn alloc_runs(&mut self, lblk: u64, n: u64) -> Result<Vec<Run>, WriteError> {
        let mut runs = Vec::new();
        let mut done = 0;
        while done < n {
            let (p, len) = self.alloc.run(n - done).ok_or_else(|| self.no_space())?;
            match runs.last_mut() {
                Some(Run { pblk, len: l, .. }) if *pblk + *l == p => *l += len,
                _ => runs.push(Run {
                    lblk: lblk + done,
                    pblk: p,
                    len,
                }),
            }
            done += len;
        }
        Ok(runs)
    }

    /// Write `data` (whole blocks) through `runs` starting at `data`'s first logical block.
    fn write_runs(&mut self, runs: &[Run], data: &[u8]) -> Result<(), WriteError> {
        let bs = self.geo.bs as usize;
        let mut pos = 0usize;
        for r in runs {
            let n = (r.len as usize * bs).min(data.len().saturating_sub(pos));
            self.out.put(r.pblk * self.geo.bs, &data[pos..pos + n])?;
            pos += n;
        }
        Ok(())
    }

    /// Build and write the block map of inode `ino`; returns (i_block, map blocks count).
    fn write_map(
        &mut self,
        ino: u32,
        runs: &[Run],
        path: &dyn Fn() -> String,
    ) -> Result<([u8; 60], u64), WriteError> {
        let bs = self.geo.bs as usize;
        let seed = self.inode_seed(ino);
        let alloc = &mut self.alloc;
        let mut one = || alloc.one();
        let map = if self.ctx.extents {
            build_extents(runs, bs, seed, &mut one)
        } else {
            build_indirect(runs, bs, &mut one)
        };
        let map = map.map_err(|e| match e {
            MapError::NoSpace => self.no_space(),
            MapError::TooLarge(l) => WriteError::Unrepresentable {
                path: path(),
                what: format!("logical block {l} is beyond the block map's reach"),
            },
            MapError::Physical(p) => WriteError::Unrepresentable {
                path: path(),
                what: format!("block {p} does not fit the block map"),
            },
        })?;
        for (p, b) in &map.blocks {
            self.out.put(p * self.geo.bs, b)?;
        }
        Ok((map.i_block, map.blocks.len() as u64))
    }

    /// Write out the filled part of the current group's inode table (the rest stays zero).
    fn flush_itable(&mut self) -> Result<(), WriteError> {
        let at = self.locs[self.itable_group as usize].inode_table * self.geo.bs;
        let data = std::mem::take(&mut self.itable);
        let r = self.out.put(at, &data[..self.itable_used]);
        self.itable = data;
        self.itable.fill(0);
        self.itable_used = 0;
        r
    }

    fn inode_slot(&mut self, ino: u32) -> Result<&mut [u8], WriteError> {
        let isz = self.geo.inode_size as usize;
        let g = u64::from(ino - 1) / self.geo.ipg;
        if g != self.itable_group {
            self.flush_itable()?;
            self.itable_group = g;
        }
        let off = ((u64::from(ino - 1) % self.geo.ipg) as usize) * isz;
        self.itable_used = self.itable_used.max(off + isz);
        Ok(&mut self.itable[off..off + isz])
    }

    fn run(mut self) -> Result<WriteReport, WriteError> {
        let tree = self.ctx.tree;
        if self.has_journal {
            self.write_journal()?;
        }
        // Root, then lost+found, then every other inode in walk order.
        self.write_node(ROOT_INO, tree.root(), None)?;
        match self.plan.lpf_node {
            Some(id) => self.write_node(LPF_INO, id, None)?,
            None => self.write_synthetic_lpf()?,
        }
        // Small dense files that must be read through user space (not copied in the kernel)
        // are read ahead in parallel, in bounded batches; allocation and writing stay
        // sequential in inode order, so the output does not depend on timing.
        let order = &self.plan.order;
        let mut k = 0usize;
        while k < order.len() {
            let kernel_copy = self.kernel_copy;
            let wanted = |id: NodeId| match &tree.node(id).kind {
                NodeKind::Regular(c) => {
                    prefetchable(c) && !(kernel_copy && kernel_copyable(c.source()))
                }
                _ => false,
            };
            let mut end = k;
            let mut bytes = 0u64;
            let mut any = false;
            while end < order.len() && end - k < PREFETCH_FILES && bytes < PREFETCH_BYTES {
                let id = order[end];
                if wanted(id) {
                    if let NodeKind::Regular(c) = &tree.node(id).kind {
                        bytes += c.size();
                    }
                    any = true;
                }
                end += 1;
            }
            let bs = self.geo.bs;
            let mut pre: Vec<Option<io::Result<Vec<u8>>>> = if any {
                order[k..end]
                    .par_iter()
                    .map(|&id| match &tree.node(id).kind {
                        NodeKind::Regular(c) if wanted(id) => Some(read_dense(c, bs)),
                        _ => None,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            for i in 0..end - k {
                let id = order[k + i];
                let slot = pre.get_mut(i).and_then(Option::take);
                self.write_node(12 + (k + i) as u32, id, slot)?;
            }
            k = end;
        }
        self.write_xattr_blocks()?;
        self.write_metadata()
    }

    // -- the journal ---------------------------------------------------------------------------

    fn write_journal(&mut self) -> Result<(), WriteError> {
        let n = self.journal_blocks;
        let bs = self.geo.bs;
        let runs = self.alloc_runs(0, n)?;
        // jbd2 superblock v2 ("Journal (jbd2)" > "Super Block"): clean (s_start = 0).
        let mut jsb = JournalSuperblock::default();
        jsb.magic = format::JBD2_MAGIC;
        jsb.blocktype = format::JBD2_SUPERBLOCK_V2;
        jsb.blocksize = bs as u32;
        jsb.maxlen = n as u32;
        jsb.first = 1;
        jsb.sequence = 1;
        jsb.start = 0;
        jsb.uuid = self.sb.uuid;
        jsb.nr_users = 1;
        let mut blk = vec![0u8; bs as usize];
        jsb.serialize(&mut blk);
        if let Some(r) = runs.first() {
            self.out.put(r.pblk * bs, &blk)?;
        }
        let (i_block, meta) =
            self.write_map(JOURNAL_INO, &runs, &|| "journal inode 8".to_string())?;
        let epoch = self.opts().epoch;
        let mut ino = self.base_inode(0o100600, 0, 0, 1);
        self.set_times_all(&mut ino, epoch, 0);
        ino.size_lo = (n * bs) as u32;
        ino.size_high = ((n * bs) >> 32) as u32;
        ino.block = i_block;
        if self.ctx.extents {
            ino.flags |= format::INODE_FLAG_EXTENTS;
        }
        self.set_blocks(&mut ino, n + meta, &|| "journal".to_string())?;
        // s_jnl_blocks: a copy of i_block, then i_size_high and i_size.
        let words = ino.block_words();
        let mut jnl = [0u32; 17];
        jnl[..15].copy_from_slice(&words);
        jnl[15] = ino.size_high;
        jnl[16] = ino.size_lo;
        self.sb.jnl_blocks = jnl;
        self.sb.jnl_backup_type = 1;
        self.sb.journal_inum = JOURNAL_INO;
        self.store_inode(JOURNAL_INO, &ino, &[])?;
        Ok(())
    }

    // -- inodes ----------------------------------------------------------------------------

    fn base_inode(&self, mode: u32, uid: u32, gid: u32, links: u32) -> Inode {
        let mut ino = Inode::default();
        ino.mode = mode as u16;
        ino.uid_lo = uid as u16;
        ino.uid_high = (uid >> 16) as u16;
        ino.gid_lo = gid as u16;
        ino.gid_high = (gid >> 16) as u16;
        ino.links_count = links as u16;
        if self.geo.inode_size > 128 {
            ino.extra_isize = EXTRA_ISIZE;
        }
        ino
    }

    fn clamp_time(&self, sec: i64) -> i64 {
        if self.geo.inode_size > 128 {
            sec.clamp(i64::from(i32::MIN), i64::from(i32::MIN) + (1i64 << 34) - 1)
        } else {
            sec.clamp(i64::from(i32::MIN), i64::from(i32::MAX))
        }
    }

    fn set_times_all(&self, ino: &mut Inode, sec: i64, nsec: u32) {
        let t = crate::tree::Timestamp { sec, nsec };
        self.set_times(ino, t, t, t, t);
    }

    fn set_times(
        &self,
        ino: &mut Inode,
        a: crate::tree::Timestamp,
        m: crate::tree::Timestamp,
        c: crate::tree::Timestamp,
        cr: crate::tree::Timestamp,
    ) {
        let enc = |t: crate::tree::Timestamp| {
            encode_time(self.clamp_time(t.sec), t.nsec.min(999_999_999))
        };
        let (a0, a1) = enc(a);
        let (m0, m1) = enc(m);
        let (c0, c1) = enc(c);
        let (r0, r1) = enc(cr);
        ino.atime = a0;
        ino.mtime = m0;
        ino.ctime = c0;
        if self.geo.inode_size > 128 {
            ino.atime_extra = a1;
            ino.mtime_extra = m1;
            ino.ctime_extra = c1;
            ino.crtime = r0;
            ino.crtime_extra = r1;
        }
    }

    /// Set `i_blocks` from a count of filesystem blocks.
    fn set_blocks(
        &self,
        ino: &mut Inode,
        blocks: u64,
        what: &dyn Fn() -> String,
    ) -> Result<(), WriteError> {
        let sectors = blocks * (self.geo.bs / 512);
        let huge = self.ctx.extents && self.opts().ext4_extras;
        if sectors > u64::from(u32::MAX) && !huge || sectors >= 1 << 48 {
            return Err(WriteError::Unrepresentable {
                path: what(),
                what: format!("{blocks} blocks exceed i_blocks (needs huge_file)"),
            });
        }
        ino.blocks_lo = sectors as u32;
        ino.blocks_high = (sectors >> 32) as u16;
        Ok(())
    }

    /// Serialize `ino` (and in-inode xattrs) into the table, with its checksum.
    fn store_inode(
        &mut self,
        num: u32,
        ino: &Inode,
        ibody_xattrs: &[XattrItem],
    ) -> Result<(), WriteError> {
        let large = self.geo.inode_size > 128;
        let csum = self.ctx.csum;
        let seed = self.csum_seed;
        let slot = self.inode_slot(num)?;
        slot.fill(0);
        ino.serialize(slot);
        if large && !ibody_xattrs.is_empty() {
            let start = 128 + usize::from(EXTRA_ISIZE);
            slot[start..start + 4].copy_from_slice(&format::XATTR_MAGIC.to_le_bytes());
            let area = &mut slot[start + 4..];
            write_xattr_area(area, 0, 0, ibody_xattrs);
        }
        if csum {
            let c = Inode::compute_checksum(seed, num, slot);
            slot[0x7C..0x7E].copy_from_slice(&((c & 0xFFFF) as u16).to_le_bytes());
            if large {
                slot[0x82..0x84].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
            }
        }
        Ok(())
    }

    /// Place xattrs: returns (in-inode items, xattr block number or 0).
    fn place_xattrs(
        &mut self,
        ino_num: u32,
        x: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        path: &dyn Fn() -> String,
    ) -> Result<(Vec<XattrItem>, u64), WriteError> {
        if x.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let _ = ino_num;
        if let Some(k) = x.keys().find(|k| format::xattr_split_name(k).1.len() > 255) {
            return Err(WriteError::Unrepresentable {
                path: path(),
                what: format!(
                    "extended attribute name {} longer than 255 bytes",
                    display_path(k)
                ),
            });
        }
        let mut items = xattr_items(x);
        let n_in = in_inode_count(&items, self.ctx.xattr_in_inode_space());
        let rest = items.split_off(n_in);
        if rest.is_empty() {
            return Ok((items, 0));
        }
        let bs = self.geo.bs as usize;
        let need: usize = 32
            + 4
            + rest
                .iter()
                .map(|i| entry_len(i) + value_len(i))
                .sum::<usize>();
        if need > bs || rest.iter().any(|i| i.name.len() > 255) {
            return Err(WriteError::Unrepresentable {
                path: path(),
                what: format!(
                    "extended attributes need {need} bytes, more than one {bs}-byte block"
                ),
            });
        }
        let mut blk = vec![0u8; bs];
        let hashes = write_xattr_area(&mut blk, 32, 0, &rest);
        let mut h = format::XattrHeader::default();
        h.magic = format::XATTR_MAGIC;
        h.refcount = 0;
        h.blocks = 1;
        h.hash = xattr_block_hash(hashes);
        h.serialize(&mut blk);
        if let Some((b, rc)) = self.xattr_blocks.get_mut(&blk) {
            *rc += 1;
            return Ok((items, *b));
        }
        let b = self.alloc.one().ok_or_else(|| self.no_space())?;
        self.xattr_blocks.insert(blk, (b, 1));
        Ok((items, b))
    }

    fn write_xattr_blocks(&mut self) -> Result<(), WriteError> {
        let mut all: Vec<(u64, u32, Vec<u8>)> = self
            .xattr_blocks
            .drain()
            .map(|(k, (b, rc))| (b, rc, k))
            .collect();
        all.sort_unstable_by_key(|x| x.0);
        for (b, rc, mut blk) in all {
            blk[4..8].copy_from_slice(&rc.to_le_bytes());
            if self.ctx.csum {
                let c = format::XattrHeader::compute_checksum(self.csum_seed, b, &blk);
                blk[0x10..0x14].copy_from_slice(&c.to_le_bytes());
            }
            self.out.put(b * self.geo.bs, &blk)?;
        }
        Ok(())
    }

    fn write_synthetic_lpf(&mut self) -> Result<(), WriteError> {
        let p = DirParams {
            bs: self.geo.bs as usize,
            csum_seed: self.inode_seed(LPF_INO),
            hash: None,
            min_blocks: lpf_blocks(self.geo.bs),
        };
        let built =
            build_dir(LPF_INO, ROOT_INO, &[], &p).map_err(|_| WriteError::Unrepresentable {
                path: "/lost+found".into(),
                what: "cannot build".into(),
            })?;
        let nblocks = (built.data.len() as u64) / self.geo.bs;
        let runs = self.alloc_runs(0, nblocks)?;
        self.write_runs(&runs, &built.data)?;
        let (i_block, meta) = self.write_map(LPF_INO, &runs, &|| "/lost+found".to_string())?;
        let mut ino = self.base_inode(0o040700, 0, 0, 2);
        self.set_times_all(&mut ino, self.opts().epoch, 0);
        ino.size_lo = built.data.len() as u32;
        ino.block = i_block;
        if self.ctx.extents {
            ino.flags |= format::INODE_FLAG_EXTENTS;
        }
        self.set_blocks(&mut ino, nblocks + meta, &|| "/lost+found".to_string())?;
        self.store_inode(LPF_INO, &ino, &[])?;
        self.dirs_per_group[0] += 1;
        Ok(())
    }

    fn write_node(
        &mut self,
        num: u32,
        id: NodeId,
        pre: Option<io::Result<Vec<u8>>>,
    ) -> Result<(), WriteError> {
        let tree = self.ctx.tree;
        let node = tree.node(id);
        let bs = self.geo.bs;
        let slot = id.0 as usize;
        let mut links = self.plan.links.get(slot).copied().unwrap_or(1).max(1);
        if id == tree.root() && self.plan.lpf_node.is_none() {
            links += 1; // our lost+found
        }
        let is_dir = matches!(node.kind, NodeKind::Directory(_));
        let path = move || path_of(tree, id);
        if links > 65000 {
            if is_dir && self.ctx.extents && self.opts().ext4_extras {
                links = 1; // dir_nlink: "more than 65000 subdirectories"
            } else {
                return Err(WriteError::Unrepresentable {
                    path: path(),
                    what: format!("{links} links (at most 65000)"),
                });
            }
        }
        let m = &node.meta;
        let mut ino = self.base_inode(node.mode(), m.uid, m.gid, links);
        self.set_times(
            &mut ino,
            m.atime,
            m.mtime,
            m.ctime,
            m.crtime.unwrap_or(m.ctime),
        );
        let mut blocks = 0u64;
        let mut size = 0u64;
        match &node.kind {
            NodeKind::Regular(c) => {
                size = c.size();
                let (i_block, n) = match pre {
                    Some(data) => {
                        let data = data.map_err(|e| WriteError::Content {
                            path: path(),
                            source: e,
                        })?;
                        self.write_dense(num, &data, &path)?
                    }
                    None => self.write_file(num, c, &path)?,
                };
                ino.block = i_block;
                blocks = n;
                if self.ctx.extents {
                    ino.flags |= format::INODE_FLAG_EXTENTS;
                }
            }
            NodeKind::Directory(entries) => {
                let ents: Vec<Entry<'_>> = {
                    let mut v: Vec<Entry<'_>> = Vec::with_capacity(entries.len() + 1);
                    for (name, &child) in entries {
                        let cino = self.plan.ino_of[child.0 as usize];
                        v.push(Entry {
                            name,
                            ino: cino,
                            ftype: ftype_of(&tree.node(child).kind),
                        });
                    }
                    if id == tree.root() && self.plan.lpf_node.is_none() {
                        v.push(Entry {
                            name: b"lost+found",
                            ino: LPF_INO,
                            ftype: 2,
                        });
                        v.sort_by(|a, b| a.name.cmp(b.name));
                    }
                    v
                };
                let parent = self.plan.parent_of[slot];
                let p = DirParams {
                    bs: bs as usize,
                    csum_seed: self.inode_seed(num),
                    hash: self
                        .ctx
                        .dir_index
                        .then_some((DxHash::HalfMd4, false, self.hash_seed)),
                    min_blocks: if num == LPF_INO { lpf_blocks(bs) } else { 1 },
                };
                let built = build_dir(
                    num,
                    if num == ROOT_INO { ROOT_INO } else { parent },
                    &ents,
                    &p,
                )
                .map_err(|e| match e {
                    DirError::TooLarge { leaves } => WriteError::Unrepresentable {
                        path: path(),
                        what: format!(
                            "directory needs {leaves} leaf blocks, beyond a two-level htree"
                        ),
                    },
                    DirError::BadName => WriteError::Unrepresentable {
                        path: path(),
                        what: "bad entry name".into(),
                    },
                })?;
                drop(ents);
                let n = built.data.len() as u64 / bs;
                let runs = self.alloc_runs(0, n)?;
                self.write_runs(&runs, &built.data)?;
                let (i_block, meta) = self.write_map(num, &runs, &path)?;
                ino.block = i_block;
                blocks = n + meta;
                size = built.data.len() as u64;
                if self.ctx.extents {
                    ino.flags |= format::INODE_FLAG_EXTENTS;
                }
                if built.indexed {
                    ino.flags |= format::INODE_FLAG_INDEX;
                }
                let g = ((num - 1) as u64 / self.geo.ipg) as usize;
                if let Some(d) = self.dirs_per_group.get_mut(g) {
                    *d += 1;
                }
            }
            NodeKind::Symlink(target) => {
                size = target.len() as u64;
                if target.is_empty() || target.len() >= bs as usize {
                    return Err(WriteError::Unrepresentable {
                        path: path(),
                        what: format!("symlink target of {} bytes", target.len()),
                    });
                }
                if target.len() < 60 {
                    ino.block[..target.len()].copy_from_slice(target);
                } else {
                    let mut data = vec![0u8; bs as usize];
                    data[..target.len()].copy_from_slice(target);
                    let runs = self.alloc_runs(0, 1)?;
                    self.write_runs(&runs, &data)?;
                    let (i_block, meta) = self.write_map(num, &runs, &path)?;
                    ino.block = i_block;
                    blocks = 1 + meta;
                    if self.ctx.extents {
                        ino.flags |= format::INODE_FLAG_EXTENTS;
                    }
                }
            }
            NodeKind::CharDevice(d) | NodeKind::BlockDevice(d) => {
                if d.major >= 1 << 12 || d.minor >= 1 << 20 {
                    return Err(WriteError::Unrepresentable {
                        path: path(),
                        what: format!(
                            "device {}:{} beyond 12-bit major / 20-bit minor",
                            d.major, d.minor
                        ),
                    });
                }
                let (w0, w1) = encode_device(d.major, d.minor);
                ino.block[0..4].copy_from_slice(&w0.to_le_bytes());
                ino.block[4..8].copy_from_slice(&w1.to_le_bytes());
            }
            NodeKind::Fifo | NodeKind::Socket => {}
        }
        ino.size_lo = size as u32;
        ino.size_high = (size >> 32) as u32;
        let (ibody, xblock) = self.place_xattrs(num, &node.meta.xattrs, &path)?;
        if xblock != 0 {
            ino.file_acl_lo = xblock as u32;
            ino.file_acl_high = (xblock >> 32) as u16;
            blocks += 1;
        }
        self.set_blocks(&mut ino, blocks, &path)?;
        self.store_inode(num, &ino, &ibody)?;
        Ok(())
    }

    /// Write a prefetched dense file (`data` is whole blocks); returns (i_block, blocks).
    fn write_dense(
        &mut self,
        num: u32,
        data: &[u8],
        path: &dyn Fn() -> String,
    ) -> Result<([u8; 60], u64), WriteError> {
        let n = data.len() as u64 / self.geo.bs;
        let runs = self.alloc_runs(0, n)?;
        self.write_runs(&runs, data)?;
        let (i_block, meta) = self.write_map(num, &runs, path)?;
        Ok((i_block, n + meta))
    }

    /// When the image is to be fsync'ed at the end, starts the kernel writing back what has
    /// been written so far every [`WRITEBACK_EVERY`] bytes of file data, so that the disk works
    /// while we copy instead of all at once in the final fsync (`sync_file_range(2)` with
    /// `SYNC_FILE_RANGE_WRITE` only starts I/O; it neither waits nor changes the bytes).
    fn start_writeback(&mut self, bytes: u64) {
        if !self.ctx.opts.sync {
            return;
        }
        self.unsynced += bytes;
        if self.unsynced < WRITEBACK_EVERY {
            return;
        }
        self.unsynced = 0;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain syscall on a descriptor we own; no memory is passed.
            let r = unsafe {
                libc::sync_file_range(self.out.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
            };
            if r != 0 {
                // Only a hint: the final fsync still writes everything and reports errors.
                tracing::debug!(error = %io::Error::last_os_error(), "sync_file_range");
            }
        }
    }

    /// Stream a regular file's data; returns (i_block, blocks used including the map).
    fn write_file(
        &mut self,
        num: u32,
        c: &Content,
        path: &dyn Fn() -> String,
    ) -> Result<([u8; 60], u64), WriteError> {
        let bs = self.geo.bs;
        let ranges = mapped_ranges(c, bs);
        if ranges.is_empty() {
            let (i_block, _) = self.write_map(num, &[], path)?;
            return Ok((i_block, 0));
        }
        let src: Arc<dyn ReadAt> = match c.source() {
            Source::None => Arc::new(Vec::new()),
            Source::Memory(m) => Arc::new(MemSource(m.clone())),
            Source::Path(p) => Arc::new(FileSource::open_nofollow(p.as_ref()).map_err(|e| {
                WriteError::Content {
                    path: path(),
                    source: e,
                }
            })?),
            Source::Shared(s) => s.clone(),
        };
        let mut all_runs: Vec<Run> = Vec::new();
        let chunk_blocks: u64 = (1 << 20) / bs;
        // Reused across chunks; `fill_from_content` zeroes what it does not read, so the
        // buffer is never cleared.
        let mut buf: Vec<u8> = Vec::new();
        let mut total = 0u64;
        for (start, count) in ranges {
            let mut done = 0;
            while done < count {
                let n = (count - done).min(chunk_blocks);
                let lblk = start + done;
                let runs = self.alloc_runs(lblk, n)?;
                // The blocks just allocated belong to this file alone, so bytes copied into
                // them straight to the image never overlap what `Out` buffers (metadata and
                // other files' blocks); `Out` is flushed before the final sync.
                self.start_writeback(n * bs);
                let copied = match src.as_file() {
                    Some(file) if self.kernel_copy => {
                        match copy_runs(c, src.as_ref(), file, &self.out.file, &runs, bs) {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::debug!(
                                    error = %e,
                                    "copy_file_range failed; copying file data through memory"
                                );
                                self.kernel_copy = false;
                                false
                            }
                        }
                    }
                    _ => false,
                };
                if !copied {
                    // Through user space (also redoes a failed kernel copy, which then
                    // reports any real error as reading the content or writing the image).
                    let len = (n * bs) as usize;
                    if buf.len() < len {
                        buf.resize(len, 0);
                    }
                    let chunk = &mut buf[..len];
                    fill_from_content(c, src.as_ref(), lblk * bs, chunk).map_err(|e| {
                        WriteError::Content {
                            path: path(),
                            source: e,
                        }
                    })?;
                    self.write_runs(&runs, &buf[..len])?;
                }
                for r in runs {
                    match all_runs.last_mut() {
                        Some(l) if l.pblk + l.len == r.pblk && l.lblk + l.len == r.lblk => {
                            l.len += r.len
                        }
                        _ => all_runs.push(r),
                    }
                }
                done += n;
                total += n;
            }
        }
        let (i_block, meta) = self.write_map(num, &all_runs, path)?;
        Ok((i_block, total + meta))
    }

    // -- metadata --------------------------------------------------------------------------

    fn write_metadata(mut self) -> Result<WriteReport, WriteError> {
        let geo = self.geo.clone();
        let opts = self.ctx.opts;
        let ext4 = opts.fs == FsKind::Ext4;
        let bs = geo.bs as usize;
        let csum = self.ctx.csum;

        // The last group's inode table.
        self.flush_itable()?;

        // Superblock fields.
        let mut compat = format::COMPAT_EXT_ATTR | format::COMPAT_DIR_INDEX;
        if self.has_journal {
            compat |= format::COMPAT_HAS_JOURNAL;
        }
        let mut incompat = format::INCOMPAT_FILETYPE;
        let mut ro = format::RO_COMPAT_SPARSE_SUPER | format::RO_COMPAT_LARGE_FILE;
        let _ = self.plan.large_file;
        if ext4 {
            incompat |= format::INCOMPAT_EXTENTS;
            if opts.flex_bg {
                incompat |= format::INCOMPAT_FLEX_BG;
            }
            if opts.sixty_four_bit {
                incompat |= format::INCOMPAT_64BIT;
            }
            if opts.ext4_extras {
                ro |= format::RO_COMPAT_HUGE_FILE | format::RO_COMPAT_DIR_NLINK;
                if geo.inode_size > 128 {
                    ro |= format::RO_COMPAT_EXTRA_ISIZE;
                }
            }
            if csum {
                ro |= format::RO_COMPAT_METADATA_CSUM;
            } else if opts.uninit_bg {
                ro |= format::RO_COMPAT_GDT_CSUM;
            }
        }
        // Group descriptor checksums: crc32c with metadata_csum, crc16 with uninit_bg.
        let gd_csum = ro & (format::RO_COMPAT_METADATA_CSUM | format::RO_COMPAT_GDT_CSUM) != 0;

        // Bitmaps and descriptors.
        let mut descs = vec![0u8; (geo.gdt_blocks * geo.bs) as usize];
        let mut free_blocks_total = 0u64;
        let mut free_inodes_total = 0u64;
        let ds = geo.desc_size as usize;
        let mut sbt = self.sb.clone();
        sbt.feature_ro_compat = ro;
        sbt.uuid = self.sb.uuid;
        for g in 0..geo.groups {
            let loc = self.locs[g as usize];
            let gs = geo.group_start(g);
            let ge = geo.group_end(g);
            let mut bb = vec![0u8; bs];
            let mut free_b = 0u64;
            for (i, b) in (gs..gs + geo.bpg).enumerate() {
                if b >= ge || self.alloc.is_used(b) {
                    bb[i / 8] |= 1 << (i % 8);
                } else {
                    free_b += 1;
                }
            }
            let mut ib = vec![0u8; bs];
            let first = g * geo.ipg;
            let used_here = u64::from(self.used_inodes)
                .saturating_sub(first)
                .min(geo.ipg);
            for i in 0..used_here as usize {
                ib[i / 8] |= 1 << (i % 8);
            }
            for i in geo.ipg as usize..bs * 8 {
                ib[i / 8] |= 1 << (i % 8);
            }
            let free_i = geo.ipg - used_here;
            free_blocks_total += free_b;
            free_inodes_total += free_i;
            self.out.put(loc.block_bitmap * geo.bs, &bb)?;
            self.out.put(loc.inode_bitmap * geo.bs, &ib)?;

            let mut d = GroupDesc::default();
            d.block_bitmap_lo = loc.block_bitmap as u32;
            d.block_bitmap_hi = (loc.block_bitmap >> 32) as u32;
            d.inode_bitmap_lo = loc.inode_bitmap as u32;
            d.inode_bitmap_hi = (loc.inode_bitmap >> 32) as u32;
            d.inode_table_lo = loc.inode_table as u32;
            d.inode_table_hi = (loc.inode_table >> 32) as u32;
            d.free_blocks_count_lo = free_b as u16;
            d.free_blocks_count_hi = (free_b >> 16) as u16;
            d.free_inodes_count_lo = free_i as u16;
            d.free_inodes_count_hi = (free_i >> 16) as u16;
            let dirs = self.dirs_per_group[g as usize];
            d.used_dirs_count_lo = dirs as u16;
            d.used_dirs_count_hi = (dirs >> 16) as u16;
            if gd_csum {
                d.flags = 0x4; // EXT4_BG_INODE_ZEROED: the table is written (holes are zeros)
                let unused = geo.ipg - used_here;
                d.itable_unused_lo = unused as u16;
                d.itable_unused_hi = (unused >> 16) as u16;
            }
            if csum {
                let bc = crc32c_raw(self.csum_seed, &bb);
                let ic = crc32c_raw(self.csum_seed, &ib[..(geo.ipg / 8) as usize]);
                d.block_bitmap_csum_lo = bc as u16;
                d.inode_bitmap_csum_lo = ic as u16;
                if ds >= 64 {
                    d.block_bitmap_csum_hi = (bc >> 16) as u16;
                    d.inode_bitmap_csum_hi = (ic >> 16) as u16;
                }
            }
            let raw = &mut descs[g as usize * ds..(g as usize + 1) * ds];
            d.serialize(raw, ds);
            if gd_csum {
                let c = GroupDesc::compute_checksum(&sbt, g as u32, raw);
                raw[format::GROUP_DESC_CHECKSUM_OFFSET..format::GROUP_DESC_CHECKSUM_OFFSET + 2]
                    .copy_from_slice(&c.to_le_bytes());
            }
        }

        // The superblock.
        let epoch = opts.epoch;
        // Superblock times: low 32 bits here, bits 32-39 in the *_hi bytes.
        let t32 = |t: i64| t.clamp(0, (1i64 << 40) - 1) as u32;
        let sb = &mut self.sb;
        sb.inodes_count = geo.inodes_count() as u32;
        sb.blocks_count_lo = geo.blocks_count as u32;
        sb.blocks_count_hi = (geo.blocks_count >> 32) as u32;
        let r = geo.blocks_count * u64::from(opts.reserved_percent) / 100;
        sb.r_blocks_count_lo = r as u32;
        sb.r_blocks_count_hi = (r >> 32) as u32;
        sb.free_blocks_count_lo = free_blocks_total as u32;
        sb.free_blocks_count_hi = (free_blocks_total >> 32) as u32;
        sb.free_inodes_count = free_inodes_total as u32;
        sb.first_data_block = geo.first_data_block as u32;
        sb.log_block_size = if bs == 1024 { 0 } else { 2 };
        sb.log_cluster_size = sb.log_block_size;
        sb.blocks_per_group = geo.bpg as u32;
        sb.clusters_per_group = geo.bpg as u32;
        sb.inodes_per_group = geo.ipg as u32;
        sb.mtime = 0;
        sb.wtime = t32(epoch);
        sb.mnt_count = 0;
        sb.max_mnt_count = 0xFFFF;
        sb.magic = format::EXT4_SUPER_MAGIC;
        sb.state = 1;
        sb.errors = 1;
        sb.lastcheck = t32(epoch);
        sb.creator_os = 0;
        sb.rev_level = 1;
        sb.first_ino = FIRST_INO;
        sb.inode_size = geo.inode_size as u16;
        sb.feature_compat = compat;
        sb.feature_incompat = incompat;
        sb.feature_ro_compat = ro;
        let mut label = [0u8; 16];
        label[..opts.label.len()].copy_from_slice(&opts.label);
        sb.volume_name = label;
        sb.def_hash_version = DxHash::HalfMd4.version();
        sb.desc_size = if geo.desc_size == 64 { 64 } else { 0 };
        sb.default_mount_opts = 0x000C; // user_xattr, acl (mke2fs.conf default_mntopts)
        sb.mkfs_time = t32(epoch);
        if ext4 && geo.inode_size > 128 {
            sb.min_extra_isize = EXTRA_ISIZE;
            sb.want_extra_isize = EXTRA_ISIZE;
        }
        sb.flags = 0x1; // signed directory hash (x86 char)
        if ext4 && opts.flex_bg {
            sb.log_groups_per_flex = LOG_GROUPS_PER_FLEX;
        }
        if csum {
            sb.checksum_type = 1;
        }
        let hi = |t: i64| (t.clamp(0, (1i64 << 40) - 1) >> 32) as u8;
        sb.wtime_hi = hi(epoch);
        sb.mkfs_time_hi = hi(epoch);
        sb.lastcheck_hi = hi(epoch);
        if !self.has_journal {
            sb.journal_inum = 0;
            sb.jnl_blocks = [0; 17];
            sb.jnl_backup_type = 0;
        }

        // Primary and backup superblocks and descriptors.
        for g in 0..geo.groups {
            if !geo.has_super(g) {
                continue;
            }
            let mut s = self.sb.clone();
            s.block_group_nr = g as u16;
            let mut raw = vec![0u8; 1024];
            s.serialize(&mut raw);
            if csum {
                let c = Superblock::compute_checksum(&raw);
                raw[format::SUPERBLOCK_CHECKSUM_OFFSET..].copy_from_slice(&c.to_le_bytes());
            }
            let start = geo.group_start(g);
            let sb_off = if g == 0 { 1024 } else { start * geo.bs };
            self.out.put(sb_off, &raw)?;
            self.out.put((start + 1) * geo.bs, &descs)?;
        }
        self.out.flush()?;
        if opts.sync {
            self.out
                .file
                .sync_all()
                .map_err(|e| self.out.io_err(0, e))?;
        }

        let blocks_used = geo.blocks_count - free_blocks_total;
        Ok(WriteReport {
            path: self.out_path.clone(),
            size: geo.blocks_count * geo.bs,
            block_size: geo.bs as u32,
            blocks_count: geo.blocks_count,
            blocks_used,
            inodes_count: geo.inodes_count() as u32,
            inodes_used: self.used_inodes,
            groups: geo.groups as u32,
            uuid: self.sb.uuid,
        })
    }
}

/// The first path of node `id` (only for error messages: searches the tree).
fn path_of(tree: &Tree, id: NodeId) -> String {
    let mut found = None;
    tree.walk(|p, n| {
        if n == id && found.is_none() {
            found = Some(display_path(p));
        }
    });
    found.unwrap_or_else(|| format!("node {}", id.0))
}

/// File data between two writeback starts when the image is fsync'ed at the end.
const WRITEBACK_EVERY: u64 = 64 << 20;

/// Read-ahead batches: at most this many inodes ...
const PREFETCH_FILES: usize = 1024;
/// ... and about this many bytes of file data.
const PREFETCH_BYTES: u64 = 16 << 20;
/// Files up to this size are read ahead.
const PREFETCH_MAX_FILE: u64 = 1 << 20;

/// Whether a file is read ahead: non-empty, no holes, at most [`PREFETCH_MAX_FILE`].
fn prefetchable(c: &Content) -> bool {
    c.size() > 0 && c.size() <= PREFETCH_MAX_FILE && !c.is_sparse()
}

/// Whether a content source is a host file whose ranges [`copy_runs`] can copy in the kernel.
fn kernel_copyable(s: &Source) -> bool {
    match s {
        Source::Path(_) => true,
        Source::Shared(s) => s.as_file().is_some(),
        Source::None | Source::Memory(_) => false,
    }
}

/// Copy the bytes of `c` that land in `runs` (logical blocks -> image blocks) from `file` (the
/// open file behind `src`) to `image` in the kernel. Holes within the runs, and the tail of the
/// last block past the end of the file, are not written: the image was created empty, so they
/// read as zeros. `Err` when any piece could not be copied whole; the caller then copies the
/// runs through user space.
fn copy_runs(
    c: &Content,
    src: &dyn ReadAt,
    file: &File,
    image: &File,
    runs: &[Run],
    bs: u64,
) -> io::Result<()> {
    let exts = c.extents();
    for r in runs {
        let lo = r.lblk * bs;
        let hi = (r.lblk + r.len) * bs;
        let first = exts.partition_point(|e| e.logical + e.len <= lo);
        for e in &exts[first..] {
            if e.logical >= hi {
                break;
            }
            let s = e.logical.max(lo);
            let t = (e.logical + e.len).min(hi).min(c.size());
            if t <= s {
                continue;
            }
            let from = e.physical + (s - e.logical);
            if from + (t - s) > src.len() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "extent beyond the end of the source",
                ));
            }
            copy_file_range_all(file, from, image, r.pblk * bs + (s - lo), t - s)?;
        }
    }
    Ok(())
}

/// `copy_file_range(2)` of exactly `len` bytes, looping on short copies; an early end of the
/// source is `UnexpectedEof`.
#[cfg(target_os = "linux")]
fn copy_file_range_all(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let too_far = || io::Error::new(io::ErrorKind::InvalidInput, "offset beyond 2^63");
    let mut off_in = i64::try_from(src_off).map_err(|_| too_far())?;
    let mut off_out = i64::try_from(dst_off).map_err(|_| too_far())?;
    let mut left = len;
    while left > 0 {
        let want = left.min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the duration of the call (borrowed `File`s)
        // and the offset pointers point at live locals.
        let r = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "copy_file_range: source ended early",
            ));
        }
        // The kernel advanced `off_in`/`off_out` by `r`.
        left -= (r as u64).min(left);
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn copy_file_range_all(_: &File, _: u64, _: &File, _: u64, _: u64) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// A dense file's bytes, zero-padded to whole blocks.
fn read_dense(c: &Content, bs: u64) -> io::Result<Vec<u8>> {
    let src: Arc<dyn ReadAt> = match c.source() {
        Source::None => Arc::new(Vec::new()),
        Source::Memory(m) => Arc::new(MemSource(m.clone())),
        Source::Path(p) => Arc::new(FileSource::open_nofollow(p.as_ref())?),
        Source::Shared(s) => s.clone(),
    };
    let mut buf = vec![0u8; (c.size().div_ceil(bs) * bs) as usize];
    fill_from_content(c, src.as_ref(), 0, &mut buf)?;
    Ok(buf)
}

/// In-memory contents as a positional source.
struct MemSource(Arc<[u8]>);

impl ReadAt for MemSource {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.as_ref().read_at(offset, buf)
    }
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

/// Fill all of `buf` with the file's logical bytes from `offset`: mapped bytes read from `src`,
/// holes and past-EOF zeroed (so `buf` need not be zeroed beforehand).
fn fill_from_content(c: &Content, src: &dyn ReadAt, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let end = offset + buf.len() as u64;
    let exts = c.extents();
    let first = exts.partition_point(|e| e.logical + e.len <= offset);
    // Bytes of `buf` before `filled` (relative to `offset`) are written.
    let mut filled = 0usize;
    for e in &exts[first..] {
        let es = e.logical;
        let ee = e.logical + e.len;
        if es >= end {
            break;
        }
        let s = es.max(offset);
        let t = ee.min(end).min(c.size());
        if t <= s {
            continue;
        }
        let (s_i, t_i) = ((s - offset) as usize, (t - offset) as usize);
        buf[filled..s_i].fill(0);
        src.read_exact_at(e.physical + (s - es), &mut buf[s_i..t_i])?;
        filled = t_i;
    }
    buf[filled..].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_places_backups_sparsely() {
        let o = WriteOptions::new(FsKind::Ext4);
        let g = geometry(&o, 32768 * 10, 1000).unwrap();
        let with: Vec<u64> = (0..g.groups).filter(|&x| g.has_super(x)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9]);
    }

    #[test]
    fn allocator_skips_reserved() {
        let mut a = Alloc {
            reserved: vec![(0, 10), (20, 5)],
            idx: 0,
            cursor: 0,
            end: 100,
            used: vec![0; 2],
        };
        assert_eq!(a.run(15), Some((10, 10)));
        assert_eq!(a.run(3), Some((25, 3)));
        assert!(a.is_used(27) && !a.is_used(28));
    }

    #[test]
    fn journal_default_sizes() {
        assert_eq!(default_journal_blocks(20000), 1024);
        assert_eq!(default_journal_blocks(300_000), 8192);
    }

    use crate::content::Extent;
    use crate::tree::{Metadata, Node, Timestamp};

    fn pseudo(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn ext(logical: u64, physical: u64, len: u64) -> Extent {
        Extent {
            logical,
            physical,
            len,
        }
    }

    /// A source that reads the host file but offers a descriptor `copy_file_range` refuses
    /// (opened write-only: `EBADF`), as a file system without the call would.
    struct Refusing {
        read: FileSource,
        write_only: File,
    }

    impl ReadAt for Refusing {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            self.read.read_at(offset, buf)
        }
        fn len(&self) -> u64 {
            self.read.len()
        }
        fn as_file(&self) -> Option<&File> {
            Some(&self.write_only)
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum From {
        Host,
        Memory,
        Refusing,
    }

    /// Files of every shape over one host file, its bytes `data`: `from` says where each
    /// file's bytes come from (the host file, the same bytes in memory, or the host file
    /// behind a descriptor the kernel will not copy from).
    fn shapes_tree(host: &Path, data: &Arc<[u8]>, from: From) -> Tree {
        let m = Metadata::new(0o644, 0, 0, Timestamp::from_secs(1_600_000_000));
        let mut t = Tree::new(m.clone());
        let shared: Arc<dyn ReadAt> = match from {
            From::Host => Arc::new(FileSource::open(host).unwrap()),
            From::Memory => Arc::new(data.to_vec()),
            From::Refusing => Arc::new(Refusing {
                read: FileSource::open(host).unwrap(),
                write_only: OpenOptions::new().write(true).open(host).unwrap(),
            }),
        };
        let on_host = from == From::Host;
        let mut add = |name: &str, c: Content| {
            t.insert(
                name.as_bytes(),
                Node::new(NodeKind::Regular(c), m.clone()),
                &m,
            )
            .unwrap();
        };
        let len = data.len() as u64;
        // Whole file (directory reader style): several 1 MiB chunks and a partial last block.
        add(
            "/whole",
            if on_host {
                Content::from_path(host, len)
            } else {
                Content::from_bytes(data.clone())
            },
        );
        let mk = |size, exts| Content::from_extents(Source::Shared(shared.clone()), size, exts);
        // Small files at odd offsets (tar members), one ending mid-block.
        add("/small/a", mk(100, vec![ext(0, 513, 100)]).unwrap());
        add("/small/b", mk(4097, vec![ext(0, 7, 4097)]).unwrap());
        add("/small/c", mk(9000, vec![ext(0, 12_345, 9000)]).unwrap());
        // Sparse: unaligned extents mapped from scattered places, holes inside a block, whole
        // blocks of hole, an extent across a 1 MiB chunk boundary, a hole at the end.
        let sparse = mk(
            3 << 20,
            vec![
                ext(10, 1000, 3000),
                ext(5000, 200_000, 10),
                ext(40_000, 3, 100_000),
                ext((1 << 20) - 777, 500_000, 5000),
                ext((2 << 20) + 1, 1_234_567, 300_000),
            ],
        )
        .unwrap();
        add("/sparse", sparse);
        // A dense file whose source holds all-zero blocks (written as zeros or skipped: the
        // same bytes either way).
        add(
            "/zeros",
            mk(
                3 * 4096 + 5,
                vec![ext(0, len - (3 * 4096 + 5), 3 * 4096 + 5)],
            )
            .unwrap(),
        );
        add("/empty", Content::empty());
        t
    }

    #[test]
    fn kernel_copy_gives_the_bytes_of_the_user_space_copy() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("source.bin");
        let mut bytes = pseudo(7, (3 << 20) + 4321);
        let n = bytes.len();
        bytes[n - (3 * 4096 + 5)..n - 4096].fill(0);
        std::fs::write(&host, &bytes).unwrap();
        let data: Arc<[u8]> = bytes.into();
        for (fs, bs) in [(FsKind::Ext4, 4096), (FsKind::Ext2, 1024)] {
            let mut o = WriteOptions::new(fs);
            o.block_size = bs;
            o.epoch = 1_700_000_000;
            let a = dir.path().join("kernel.img");
            let b = dir.path().join("memory.img");
            let c = dir.path().join("fallback.img");
            write_image(&shapes_tree(&host, &data, From::Host), &a, &o).unwrap();
            write_image(&shapes_tree(&host, &data, From::Memory), &b, &o).unwrap();
            write_image(&shapes_tree(&host, &data, From::Refusing), &c, &o).unwrap();
            let ia = std::fs::read(&a).unwrap();
            assert!(
                ia == std::fs::read(&b).unwrap(),
                "{fs:?} {bs}: kernel and user-space copies differ"
            );
            assert!(
                ia == std::fs::read(&c).unwrap(),
                "{fs:?} {bs}: the fallback after a refused kernel copy differs"
            );
            let st = std::process::Command::new("e2fsck")
                .args(["-fn"])
                .arg(&a)
                .output()
                .unwrap();
            assert!(st.status.success(), "e2fsck: {st:?}");
        }
    }

    #[test]
    fn a_source_shorter_than_its_extents_is_a_content_error() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("short.bin");
        std::fs::write(&host, pseudo(3, 10_000)).unwrap();
        let m = Metadata::new(0o644, 0, 0, Timestamp::from_secs(0));
        let mut t = Tree::new(m.clone());
        let c = Content::from_path(&host, 50_000);
        t.insert(b"/f", Node::new(NodeKind::Regular(c), m.clone()), &m)
            .unwrap();
        let img = dir.path().join("x.img");
        match write_image(&t, &img, &WriteOptions::new(FsKind::Ext4)) {
            Err(WriteError::Content { path, .. }) => assert_eq!(path, "/f"),
            r => panic!("unexpected {r:?}"),
        }
    }
}
