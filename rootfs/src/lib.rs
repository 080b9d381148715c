//! The filesystem model every part of wafer passes through.
//!
//! * [`tree`]: the in-memory tree (inodes, hard links, every file type, owners, modes, times,
//!   xattrs) with confined path resolution;
//! * [`content`]: file contents referenced from their source (host file, tar member, image
//!   blocks), sparse files as extent maps;
//! * readers for tar archives, host directories and ext2/3/4 images; the ext2/3/4 writer;
//! * [`zseek`]: the zstd seekable format used for `disk.img.zst` in wafer bundles;
//! * [`safe`]: reading and writing inside a bundle folder without following links;
//! * [`escape`]: visible escapes for image-controlled text printed on terminals.

pub mod atomic;
pub mod caps;
pub mod content;
pub mod dir;
pub mod escape;
pub mod ext;
pub mod open;
pub mod safe;
pub mod tar;
pub mod tree;
pub mod zseek;

pub use content::{Content, Extent, ReadAt, Source};
pub use tree::{Device, FileType, Metadata, Node, NodeId, NodeKind, PathError, Timestamp, Tree};
