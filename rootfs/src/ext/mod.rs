//! ext2/ext3/ext4 images: our own reader (and writer), in user space, never mounting.
//!
//! * [`format`]: the on-disk structures with `parse`/`serialize`;
//! * [`read_image`]: read a whole image into a [`Tree`]; file contents stay in the image and are
//!   referenced by byte extents ([`crate::Source::Shared`]).
//!
//! Journals: an image whose journal needs recovery (the `needs_recovery` feature, or a jbd2
//! superblock with a non-zero `s_start`) is read in its *un-replayed* state — what the main
//! filesystem area holds, ignoring transactions still in the log — and
//! [`FsInfo::needs_recovery`] says so. Callers that need the replayed state must run
//! `e2fsck -fy` on a copy first.

use std::sync::Arc;

use crate::content::{ContentError, ReadAt};
use crate::tree::{PathError, Tree};

pub mod format;
pub mod hash;
mod read;
mod write;
mod write_dir;
mod write_map;

pub use format::FormatError;
pub use write::{write_image, Profile, WriteError, WriteOptions, WriteReport};

/// How to read an image.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Verify metadata checksums (superblock, group descriptors, inodes, extent blocks,
    /// directory blocks, htree blocks, xattr blocks) on metadata_csum images, and the crc16
    /// group descriptor checksums on uninit_bg images. Mismatches are reported in
    /// [`FsInfo::checksum_errors`]; reading continues.
    pub verify_checksums: bool,
    /// Treat the first checksum mismatch as an error instead of reporting it.
    pub strict_checksums: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            verify_checksums: true,
            strict_checksums: false,
        }
    }
}

/// Which of ext2/3/4 an image is, as `blkid` would say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    /// No journal, no ext4-only features.
    Ext2,
    /// A journal, no ext4-only features.
    Ext3,
    /// Any ext4-only feature (extents, 64bit, flex_bg, huge_file, metadata_csum, ...).
    Ext4,
}

/// Facts about the filesystem read from its superblock and journal.
#[derive(Clone, Debug)]
pub struct FsInfo {
    /// ext2, ext3 or ext4.
    pub kind: FsKind,
    /// Block size in bytes.
    pub block_size: u32,
    /// Inode size in bytes.
    pub inode_size: u16,
    /// Total blocks.
    pub blocks_count: u64,
    /// Free blocks (superblock count).
    pub free_blocks: u64,
    /// Total inodes.
    pub inodes_count: u32,
    /// Free inodes (superblock count).
    pub free_inodes: u32,
    /// Block groups.
    pub groups: u32,
    /// Raw feature words (compat, incompat, ro_compat).
    pub features: (u32, u32, u32),
    /// Feature names as dumpe2fs prints them.
    pub feature_names: Vec<String>,
    /// Volume UUID.
    pub uuid: [u8; 16],
    /// Volume label (bytes up to the first NUL).
    pub label: Vec<u8>,
    /// htree hash seed and default hash version.
    pub hash_seed: [u32; 4],
    /// Default htree hash version.
    pub def_hash_version: u8,
    /// Filesystem creation time.
    pub mkfs_time: i64,
    /// The journal needs recovery: the image was read WITHOUT replaying it (see module docs).
    pub needs_recovery: bool,
    /// The journal, if the filesystem has one inside it.
    pub journal: Option<JournalInfo>,
    /// Checksum mismatches found (when verifying), at most [`MAX_REPORTED_ERRORS`].
    pub checksum_errors: Vec<String>,
    /// Other things worth knowing that did not stop the read (an unreadable journal
    /// superblock, skipped xattrs with unknown name indices, encrypted directories), at most
    /// [`MAX_REPORTED_ERRORS`].
    pub warnings: Vec<String>,
}

/// How many checksum mismatches [`FsInfo::checksum_errors`] keeps.
pub const MAX_REPORTED_ERRORS: usize = 1000;

/// The internal journal's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalInfo {
    /// Journal inode.
    pub inode: u32,
    /// Journal size in bytes (inode size).
    pub size: u64,
    /// jbd2 block size.
    pub block_size: u32,
    /// jbd2 superblock version (1 or 2).
    pub version: u32,
    /// Next expected transaction id.
    pub sequence: u32,
    /// First block of the log to replay; 0 if the journal is clean.
    pub start: u32,
}

/// A read image: the tree and facts about the filesystem.
#[derive(Clone, Debug)]
pub struct ExtImage {
    /// Every reachable inode, attached at each of its names; contents reference the image.
    pub tree: Tree,
    /// Superblock and journal facts.
    pub info: FsInfo,
}

/// Errors reading (or writing) ext images. Each names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ExtError {
    /// Reading the image failed.
    #[error("reading {len} bytes at image offset {offset}: {source}")]
    Io {
        /// Byte offset.
        offset: u64,
        /// Bytes wanted.
        len: usize,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A structure failed to parse.
    #[error("{place}: {source}")]
    Format {
        /// Where (e.g. "inode 12", "group descriptor 3").
        place: String,
        /// What.
        #[source]
        source: FormatError,
    },
    /// The superblock has an impossible value.
    #[error("superblock field {field} = {value}: {what}")]
    Superblock {
        /// Field name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A feature we refuse to read.
    #[error("unsupported filesystem feature {feature}: {why}")]
    Unsupported {
        /// Feature name.
        feature: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// A group descriptor is wrong.
    #[error("group descriptor {group}: {what}")]
    Group {
        /// Group number.
        group: u32,
        /// What is wrong.
        what: String,
    },
    /// An inode is wrong (bad number, mode, size, flags, block map, extent tree ...).
    #[error("inode {ino}: {what}")]
    Inode {
        /// Inode number.
        ino: u64,
        /// What is wrong.
        what: String,
    },
    /// A directory entry is wrong.
    #[error("directory inode {dir}, logical block {block}, byte {offset}: {what}")]
    DirEntry {
        /// Directory inode.
        dir: u64,
        /// Logical block within the directory.
        block: u64,
        /// Byte offset within the block.
        offset: usize,
        /// What is wrong.
        what: String,
    },
    /// A directory is reachable twice (hard-linked directory or a cycle).
    #[error("directory inode {ino} is reached twice (at {path}): directory cycle or hard-linked directory")]
    DirectoryCycle {
        /// Inode number.
        ino: u64,
        /// The second path reaching it.
        path: String,
    },
    /// A metadata checksum does not match (strict mode).
    #[error("checksum mismatch: {what}")]
    Checksum {
        /// Which structure.
        what: String,
    },
    /// The image references more metadata/data than its size allows (a corrupt or hostile
    /// image re-using blocks); reading stopped.
    #[error("{what}: exceeds the limit of {limit} (corrupt image?)")]
    Limit {
        /// What was counted.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// Building the tree failed.
    #[error("{place}: {source}")]
    Tree {
        /// Where.
        place: String,
        /// The tree error.
        #[source]
        source: PathError,
    },
    /// A content map was inconsistent.
    #[error("inode {ino}: {source}")]
    Content {
        /// Inode.
        ino: u64,
        /// The error.
        #[source]
        source: ContentError,
    },
}

/// Read a whole ext2/3/4 image into a [`Tree`]; contents reference image ranges
/// ([`crate::Source::Shared`] over `src`), nothing is copied. See [`ReadOptions`] and the
/// module documentation for journals.
pub fn read_image(src: Arc<dyn ReadAt>, opts: &ReadOptions) -> Result<ExtImage, ExtError> {
    read::read_image(src, opts)
}
