//! Writing the tree as an ext image with rootfs's writer, sized from the recipe.

use std::path::Path;

use rootfs::ext::{write_image, Profile, WriteError, WriteOptions};
use rootfs::Tree;

/// How big the image should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizing {
    /// Exactly this many bytes.
    Fixed(u64),
    /// The content plus this percentage.
    Percent(u32),
    /// The content plus this many bytes.
    Extra(u64),
}

/// Why the image could not be written.
#[derive(Debug)]
pub enum ImageError {
    /// The fixed size cannot hold the tree; `needed` bytes would.
    TooSmall {
        /// Bytes needed.
        needed: u64,
    },
    /// Anything else, as text.
    Other(String),
}

fn map(e: WriteError) -> ImageError {
    match e {
        WriteError::TooSmall { needed, .. } if needed > 0 => ImageError::TooSmall { needed },
        e => ImageError::Other(e.to_string()),
    }
}

/// Write `tree` to `out` with `profile`; returns the filesystem type (`ext2`/`ext3`/`ext4`) and size.
/// `identity` seeds the filesystem UUID and directory-hash seed (see [`identity`]).
pub fn write(
    tree: &Tree,
    out: &Path,
    profile: &str,
    sizing: Sizing,
    epoch: i64,
    label: &str,
    identity: [u8; 32],
) -> Result<(String, u64), ImageError> {
    let p = Profile::from_name(profile)
        .ok_or_else(|| ImageError::Other(format!("unknown profile {profile}")))?;
    let mut opts = WriteOptions::for_profile(p);
    opts.epoch = epoch;
    // The raw image is an intermediate: it is compressed, hashed and deleted, never needed
    // after a crash, so it is not fsync'ed.
    opts.sync = false;
    opts.label = label.as_bytes().iter().copied().take(16).collect();
    opts.identity = Some(identity);
    match sizing {
        Sizing::Fixed(b) => opts.size = Some(b),
        Sizing::Percent(p) => opts.headroom_percent = p,
        Sizing::Extra(extra) => {
            // Ask the writer for the minimum with a size that cannot fit, then add the extra.
            let mut probe = opts.clone();
            probe.size = Some(64 * 1024);
            let needed = match write_image(tree, out, &probe) {
                Err(WriteError::TooSmall { needed, .. }) if needed > 0 => needed,
                Err(e) => return Err(map(e)),
                Ok(r) => r.size,
            };
            opts.size = Some((needed.saturating_add(extra)).next_multiple_of(1 << 20));
        }
    }
    let r = write_image(tree, out, &opts).map_err(map)?;
    let fs = match opts.fs {
        rootfs::ext::FsKind::Ext2 => "ext2",
        rootfs::ext::FsKind::Ext3 => "ext3",
        rootfs::ext::FsKind::Ext4 => "ext4",
    };
    Ok((fs.to_string(), r.size))
}

/// The filesystem identity of a wafer: a digest of its VO and name only, so every version of
/// one wafer gets the same filesystem UUID and directory-hash seed. Content-derived UUIDs made
/// every metadata checksum (seeded by the UUID) differ between versions, and a one-package
/// upgrade of an el9 wafer fetched 41% of the disk layer in a delta pull instead of 3%
/// (docs/bundle.md, "Delta pulls").
pub fn identity(vo: &str, name: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"wafer filesystem identity\0");
    h.update(vo.as_bytes());
    h.update(b"\0");
    h.update(name.as_bytes());
    h.finalize().into()
}
