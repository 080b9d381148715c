//! The filesystem model every part of wafer passes through: readers (tar, directory, ext2/3/4), the ext2/3/4 writer and confined path resolution.
