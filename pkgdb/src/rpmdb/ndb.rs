//! SUSE's rpm "ndb" package database (`Packages.db`), read only, our own reader.
//!
//! Format (rpm lib/backend/ndb/rpmpkg.c): little-endian. The file starts with slot pages
//! (`slotnpages` × 4096 bytes): a 32-byte header (`RpmP` magic, version 0, generation,
//! `slotnpages` at 12, `nextpkgidx` at 16) then 16-byte slots (`Slot` magic, `pkgidx`, `blkoff`,
//! `blkcnt`; `pkgidx` 0 = free). A slot's blob lives at `blkoff × 16`: a 16-byte head (`BlbS`
//! magic, `pkgidx`, `generation`, `bloblen`), `bloblen` bytes of header blob, then a 12-byte tail
//! (`BlbE` magic, adler32, `bloblen`).

const MAGIC_DB: u32 = u32::from_le_bytes(*b"RpmP");
const MAGIC_SLOT: u32 = u32::from_le_bytes(*b"Slot");
const MAGIC_BLOB: u32 = u32::from_le_bytes(*b"BlbS");
const PAGE: usize = 4096;
const BLK: usize = 16;

/// Errors reading an ndb file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdbError {
    /// Missing `RpmP` magic or short file.
    #[error("ndb: not an rpm ndb Packages.db (no RpmP magic at offset 0)")]
    BadMagic,
    /// Slot area beyond the file.
    #[error("ndb: slot area of {0} pages does not fit the file")]
    BadSlotPages(u32),
    /// A slot points at a bad blob.
    #[error("ndb: slot {slot} (package {pkgidx}) at offset {offset}: {what}")]
    BadBlob {
        /// Slot number.
        slot: usize,
        /// Package index.
        pkgidx: u32,
        /// Byte offset of the blob.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Read all `(pkgidx, header blob)` pairs, sorted by pkgidx.
pub fn read_packages(file: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, NdbError> {
    if le32(file, 0) != Some(MAGIC_DB) {
        return Err(NdbError::BadMagic);
    }
    let npages = le32(file, 12).ok_or(NdbError::BadMagic)?;
    let slot_end = (npages as usize)
        .checked_mul(PAGE)
        .filter(|e| *e <= file.len() && *e > 0)
        .ok_or(NdbError::BadSlotPages(npages))?;
    let mut out = Vec::new();
    for (slot, off) in (32..slot_end).step_by(16).enumerate() {
        if le32(file, off) != Some(MAGIC_SLOT) {
            continue;
        }
        let pkgidx = le32(file, off + 4).unwrap_or(0);
        if pkgidx == 0 {
            continue;
        }
        let blkoff = le32(file, off + 8).unwrap_or(0) as usize;
        let boff = blkoff * BLK;
        let bad = |what| NdbError::BadBlob {
            slot,
            pkgidx,
            offset: boff,
            what,
        };
        if le32(file, boff) != Some(MAGIC_BLOB) {
            return Err(bad("no BlbS magic"));
        }
        if le32(file, boff + 4) != Some(pkgidx) {
            return Err(bad("blob belongs to another package"));
        }
        let len = le32(file, boff + 12).ok_or(bad("truncated blob head"))? as usize;
        let data = file
            .get(boff + 16..)
            .and_then(|r| r.get(..len))
            .ok_or(bad("blob runs past the end of the file"))?;
        out.push((pkgidx, data.to_vec()));
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}
