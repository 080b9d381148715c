//! SUSE's rpm "ndb" package database (`Packages.db`), read only, our own reader.
//!
//! Format (rpm lib/backend/ndb/rpmpkg.c, the little-endian layout of rpm 4.14/4.15): the file
//! starts with slot pages (`slotnpages` × 4096 bytes): a 32-byte header (`RpmP` magic, version
//! 0, generation, `slotnpages` at 12, `nextpkgidx` at 16) then 16-byte slots (`Slot` magic,
//! `pkgidx`, `blkoff`, `blkcnt`; `pkgidx` 0 = free). A slot's blob lives at `blkoff × 16` and
//! fills `blkcnt` 16-byte blocks: a 16-byte head (`BlbS` magic, `pkgidx`, `generation`,
//! `bloblen`), `bloblen` bytes of header blob, zero padding, then a 12-byte tail (adler32 of
//! everything before it, `bloblen`, `BlbE` magic).
//!
//! As rpm (`rpmpkgReadslots`, `rpmpkgReadblob`), every slot must carry its magic, a used slot
//! must point inside the file past the slot pages, and a blob must match its slot (package
//! number, block count) and its checksum.

const MAGIC_DB: u32 = u32::from_le_bytes(*b"RpmP");
const MAGIC_SLOT: u32 = u32::from_le_bytes(*b"Slot");
const MAGIC_BLOB: u32 = u32::from_le_bytes(*b"BlbS");
const MAGIC_BLOB_END: u32 = u32::from_le_bytes(*b"BlbE");
const PAGE: usize = 4096;
const BLK: usize = 16;
const HEAD: usize = 16;
const TAIL: usize = 12;

/// Errors reading an ndb file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdbError {
    /// Missing `RpmP` magic or short file.
    #[error("ndb: not an rpm ndb Packages.db (no RpmP magic at offset 0)")]
    BadMagic,
    /// Slot area beyond the file.
    #[error("ndb: slot area of {0} pages does not fit the file")]
    BadSlotPages(u32),
    /// A slot without its magic.
    #[error("ndb: slot {slot} at offset {offset}: no Slot magic")]
    BadSlot {
        /// Slot number.
        slot: usize,
        /// Byte offset of the slot.
        offset: usize,
    },
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

/// What a checked read of `Packages.db` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NdbRead {
    /// `(pkgidx, header blob)`, sorted by pkgidx.
    pub records: Vec<(u32, Vec<u8>)>,
    /// Every problem found; empty when the file was read completely.
    pub damage: Vec<NdbError>,
    /// Used slots whose blob could not be read.
    pub unreadable: u64,
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off.checked_add(4)?)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Adler-32 (RFC 1950) of `data`.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// Read all `(pkgidx, header blob)` pairs, sorted by pkgidx; the first problem is an error
/// (see [`read_packages_checked`]).
pub fn read_packages(file: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, NdbError> {
    let r = read_packages_checked(file)?;
    match r.damage.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(r.records),
    }
}

/// Read every slot and blob, keeping the readable ones: a bad slot or blob is recorded in
/// [`NdbRead::damage`] and the others are still read. `Err` only when the file is not an ndb
/// database (no magic, slot area beyond the file).
pub fn read_packages_checked(file: &[u8]) -> Result<NdbRead, NdbError> {
    if le32(file, 0) != Some(MAGIC_DB) {
        return Err(NdbError::BadMagic);
    }
    let npages = le32(file, 12).ok_or(NdbError::BadMagic)?;
    let slot_end = (npages as usize)
        .checked_mul(PAGE)
        .filter(|e| *e <= file.len() && *e > 0)
        .ok_or(NdbError::BadSlotPages(npages))?;
    let mut out = NdbRead::default();
    for (slot, off) in (32..slot_end).step_by(16).enumerate() {
        if le32(file, off) != Some(MAGIC_SLOT) {
            out.damage.push(NdbError::BadSlot { slot, offset: off });
            out.unreadable += 1;
            continue;
        }
        let pkgidx = le32(file, off + 4).unwrap_or(0);
        if pkgidx == 0 {
            continue;
        }
        let blkoff = le32(file, off + 8).unwrap_or(0) as usize;
        let blkcnt = le32(file, off + 12).unwrap_or(0) as usize;
        let boff = blkoff.saturating_mul(BLK);
        match read_blob(file, slot_end, pkgidx, boff, blkcnt) {
            Ok(blob) => out.records.push((pkgidx, blob)),
            Err(what) => {
                out.damage.push(NdbError::BadBlob {
                    slot,
                    pkgidx,
                    offset: boff,
                    what,
                });
                out.unreadable += 1;
            }
        }
    }
    out.records.sort_by_key(|(n, _)| *n);
    Ok(out)
}

fn read_blob(
    file: &[u8],
    slot_end: usize,
    pkgidx: u32,
    boff: usize,
    blkcnt: usize,
) -> Result<Vec<u8>, &'static str> {
    if boff < slot_end {
        return Err("blob offset inside the slot pages");
    }
    let total = blkcnt.checked_mul(BLK).ok_or("block count overflows")?;
    if total < HEAD + TAIL {
        return Err("block count too small for a blob");
    }
    let area = boff
        .checked_add(total)
        .and_then(|end| file.get(boff..end))
        .ok_or("blob runs past the end of the file (truncated database)")?;
    if le32(area, 0) != Some(MAGIC_BLOB) {
        return Err("no BlbS magic");
    }
    if le32(area, 4) != Some(pkgidx) {
        return Err("blob belongs to another package");
    }
    let len = le32(area, 12).ok_or("truncated blob head")? as usize;
    if (HEAD + len + TAIL).div_ceil(BLK) != blkcnt {
        return Err("blob length does not match the slot's block count");
    }
    let tail = total - TAIL;
    if le32(area, tail + 8) != Some(MAGIC_BLOB_END) {
        return Err("no BlbE magic in the blob tail");
    }
    if le32(area, tail + 4) != Some(len as u32) {
        return Err("blob tail length differs from the head");
    }
    if le32(area, tail) != Some(adler32(&area[..tail])) {
        return Err("adler32 checksum mismatch");
    }
    Ok(area[HEAD..HEAD + len].to_vec())
}
