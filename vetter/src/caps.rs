//! File capabilities (`security.capability`): the codec lives in [`rootfs::caps`], next to the
//! other on-disk formats, so the builder and the vetter share one table and one parser.

pub use rootfs::caps::*;
