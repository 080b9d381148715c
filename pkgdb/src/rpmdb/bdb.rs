//! Berkeley DB hash databases (rpm's `Packages` up to rpm 4.15): our own reader and writer, no libdb.
//!
//! Format (Berkeley DB 4.x/5.x on-disk layout, `dbinc/db_page.h`, `dbinc/hash.h`):
//! page 0 is the hash metadata page (`HMETA`: generic `DBMETA` of 72 bytes — `magic` 0x061561 at
//! offset 12, `pagesize` at 20, `last_pgno` at 32 — then `max_bucket`, `high_mask`, `low_mask`,
//! `ffactor`, `nelem`, `h_charkey` and the `spares` table). Every field is in the byte order of the
//! machine that wrote it; the magic tells which. Other pages start with a 26-byte header (`lsn`,
//! `pgno` at 8, `prev_pgno` at 12, `next_pgno` at 16, `entries` u16 at 20, `hf_offset` u16 at 22,
//! `level`, `type` at 25) followed by an array of u16 item offsets. Hash pages (type 2
//! `P_HASH_UNSORTED` or 13 `P_HASH`) hold key/data item pairs; an item's first byte is its kind:
//! 1 `H_KEYDATA` (bytes follow inline, the length is the distance to the previous item), 3
//! `H_OFFPAGE` (4 unused bytes... `pgno` at +4, total length at +8) pointing at a chain of
//! overflow pages (type 7, `hf_offset` holds the bytes used, `next_pgno` links them).
//!
//! rpm's `Packages` maps a 4-byte package number (host order) to a header blob; key 0 holds
//! the next free number and is not a package.

use std::collections::HashSet;

const MAGIC_HASH: u32 = 0x0006_1561;
const MAGIC_BTREE: u32 = 0x0005_3162;
const P_BTREEMETA: u8 = 9;
const PAGE_HDR: usize = 26;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASHMETA: u8 = 8;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;

/// Errors reading or writing a Berkeley DB hash file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BdbError {
    /// Not a hash database.
    #[error("Berkeley DB: no hash magic at offset 12 (found {0:#010x})")]
    BadMagic(u32),
    /// Page size is not a power of two in 512..=65536.
    #[error("Berkeley DB: bad page size {0}")]
    BadPageSize(u32),
    /// File too short for the metadata page.
    #[error("Berkeley DB: file is {0} bytes, too short for a metadata page")]
    Truncated(usize),
    /// A page number outside the file.
    #[error(
        "Berkeley DB: page {page} referenced from page {from} is beyond the file ({pages} pages)"
    )]
    PageOutOfRange {
        /// The bad page number.
        page: u32,
        /// Where it was referenced.
        from: u32,
        /// Pages in the file.
        pages: u32,
    },
    /// An item offset or length is inconsistent.
    #[error("Berkeley DB: page {page} item {item}: {what}")]
    BadItem {
        /// Page number.
        page: u32,
        /// Item index.
        item: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// An overflow chain is broken or loops.
    #[error("Berkeley DB: overflow chain starting at page {start}: {what} (at page {page})")]
    BadOverflow {
        /// First page.
        start: u32,
        /// Page where the problem was seen.
        page: u32,
        /// What is wrong.
        what: &'static str,
    },
    /// A record too large to store.
    #[error("Berkeley DB: record of {0} bytes is too large")]
    RecordTooLarge(usize),
    /// Unsupported hash version in the metadata page.
    #[error("Berkeley DB: unsupported hash version {0} (rpm reads 8 to 10)")]
    BadVersion(u32),
    /// The file is shorter than its metadata says.
    #[error("Berkeley DB: file is {len} bytes, not the whole {page_size}-byte pages up to last page {last_pgno} its metadata declares: truncated")]
    TruncatedFile {
        /// File length.
        len: usize,
        /// `last_pgno` from the metadata page.
        last_pgno: u32,
        /// Page size.
        page_size: u32,
    },
    /// The metadata page is inconsistent.
    #[error("Berkeley DB: metadata page: {0}")]
    BadMeta(&'static str),
    /// A `Packages` key that is not a 4-byte package number.
    #[error("Berkeley DB: Packages record with a {0}-byte key (package numbers are 4 bytes)")]
    BadKey(usize),
    /// The same key given twice to a writer that stores no duplicates.
    #[error("Berkeley DB: duplicate key {0:02x?}")]
    DuplicateKey(Vec<u8>),
}

#[derive(Clone, Copy)]
struct Order {
    big: bool,
}

impl Order {
    fn u16(self, b: &[u8], off: usize) -> Option<u16> {
        let s = b.get(off..off + 2)?;
        let a = [s[0], s[1]];
        Some(if self.big {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        })
    }
    fn u32(self, b: &[u8], off: usize) -> Option<u32> {
        let s = b.get(off..off + 4)?;
        let a = [s[0], s[1], s[2], s[3]];
        Some(if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }
}

/// A record read from a hash database: key and value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Key bytes.
    pub key: Vec<u8>,
    /// Value bytes.
    pub value: Vec<u8>,
}

/// What a checked read of a hash file found: the records it could read, and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashRead {
    /// Records read, in bucket order.
    pub records: Vec<Record>,
    /// Every problem found (page, item, chain); empty when the file was read completely.
    pub damage: Vec<BdbError>,
    /// Key/value pairs seen but not readable (their item or overflow chain is broken).
    pub unreadable: u64,
}

/// Read every key/value pair of a Berkeley DB hash file held in memory; the first problem is an
/// error. See [`read_hash_checked`] for a read that keeps what is readable.
pub fn read_hash(file: &[u8]) -> Result<Vec<Record>, BdbError> {
    let r = read_hash_checked(file)?;
    match r.damage.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(r.records),
    }
}

/// Read a Berkeley DB hash file the way rpm's own `bdb_ro` backend does (bucket by bucket from
/// the metadata page's `max_bucket` and `spares`, following each bucket's page chain), but keep
/// going after a problem: a broken item, overflow chain or bucket page is recorded in
/// [`HashRead::damage`] and the walk goes on with the next pair or bucket. Also damage: a file
/// shorter than its metadata's `last_pgno` says (truncated), and a hash page holding items that
/// no bucket reaches (records lost to a broken chain). `Err` only when the file is not a hash
/// database at all (too short, wrong magic, bad page size or version).
pub fn read_hash_checked(file: &[u8]) -> Result<HashRead, BdbError> {
    if file.len() < 512 {
        return Err(BdbError::Truncated(file.len()));
    }
    let le = Order { big: false };
    let be = Order { big: true };
    let order = match (le.u32(file, 12), be.u32(file, 12)) {
        (Some(MAGIC_HASH), _) => le,
        (_, Some(MAGIC_HASH)) => be,
        (Some(m), _) => return Err(BdbError::BadMagic(m)),
        _ => return Err(BdbError::Truncated(file.len())),
    };
    let meta = |off: usize| order.u32(file, off).unwrap_or(0);
    let version = meta(16);
    if !(8..=10).contains(&version) {
        return Err(BdbError::BadVersion(version));
    }
    let psize = meta(20);
    if !(512..=65536).contains(&psize) || !psize.is_power_of_two() {
        return Err(BdbError::BadPageSize(psize));
    }
    let psize = psize as usize;
    let mut out = HashRead::default();
    let last_pgno = meta(32);
    let in_file = (file.len() / psize) as u64;
    if u64::from(last_pgno) + 1 > in_file || !file.len().is_multiple_of(psize) {
        out.damage.push(BdbError::TruncatedFile {
            len: file.len(),
            last_pgno,
            page_size: psize as u32,
        });
    }
    // Pages that may be read: those the metadata declares and the file holds.
    let npages = (u64::from(last_pgno) + 1).min(in_file) as u32;
    let max_bucket = meta(72);
    let mut spares = [0u32; 32];
    for (i, s) in spares.iter_mut().enumerate() {
        *s = meta(96 + i * 4);
    }
    // Every bucket needs a page of its own: never walk more buckets than the file has pages.
    let walk_to = max_bucket.min(npages.saturating_sub(1));
    if max_bucket > walk_to {
        out.damage.push(BdbError::BadMeta(
            "max_bucket counts more buckets than the file has pages",
        ));
    }
    let page = |n: u32| -> Option<&[u8]> {
        let start = (n as usize).checked_mul(psize)?;
        file.get(start..start.checked_add(psize)?)
    };
    let mut visited = vec![false; npages as usize];
    for bucket in 0..=walk_to {
        let bits = 32 - bucket.leading_zeros() as usize;
        let mut pgno = bucket.wrapping_add(spares[bits.min(31)]);
        let mut from = 0u32;
        loop {
            if pgno == 0 || pgno >= npages {
                out.damage.push(BdbError::PageOutOfRange {
                    page: pgno,
                    from,
                    pages: npages,
                });
                break;
            }
            if visited[pgno as usize] {
                out.damage.push(BdbError::BadItem {
                    page: pgno,
                    item: 0,
                    what: "hash page reached twice (bucket chains loop or share a page)",
                });
                break;
            }
            visited[pgno as usize] = true;
            let Some(p) = page(pgno) else { break };
            if order.u32(p, 8) != Some(pgno) {
                out.damage.push(BdbError::BadItem {
                    page: pgno,
                    item: 0,
                    what: "page header names another page number",
                });
                break;
            }
            if p[25] != P_HASH && p[25] != P_HASH_UNSORTED {
                out.damage.push(BdbError::BadItem {
                    page: pgno,
                    item: 0,
                    what: "bucket page is not a hash page",
                });
                break;
            }
            read_hash_page(file, psize, npages, order, pgno, p, &mut out);
            from = pgno;
            pgno = order.u32(p, 16).unwrap_or(0);
            if pgno == 0 {
                break;
            }
        }
    }
    // A hash page with items that no bucket chain reached holds records the walk lost.
    for pgno in 1..npages {
        if visited[pgno as usize] {
            continue;
        }
        let Some(p) = page(pgno) else { break };
        let n = order.u16(p, 20).unwrap_or(0);
        if (p[25] == P_HASH || p[25] == P_HASH_UNSORTED) && n > 0 && order.u32(p, 8) == Some(pgno) {
            out.damage.push(BdbError::BadItem {
                page: pgno,
                item: 0,
                what: "hash page with items that no bucket chain reaches",
            });
            out.unreadable += u64::from(n / 2);
        }
    }
    Ok(out)
}

/// Read the key/data pairs of one hash page into `out`.
fn read_hash_page(
    file: &[u8],
    psize: usize,
    npages: u32,
    order: Order,
    pgno: u32,
    p: &[u8],
    out: &mut HashRead,
) {
    let entries = order.u16(p, 20).unwrap_or(0) as usize;
    if PAGE_HDR + entries * 2 > psize {
        out.damage.push(BdbError::BadItem {
            page: pgno,
            item: 0,
            what: "item count exceeds the page",
        });
        out.unreadable += 1;
        return;
    }
    if !entries.is_multiple_of(2) {
        out.damage.push(BdbError::BadItem {
            page: pgno,
            item: entries - 1,
            what: "odd number of items (a key without its data)",
        });
        out.unreadable += 1;
    }
    let item = |i: usize| -> Result<&[u8], BdbError> {
        let bad = |what| BdbError::BadItem {
            page: pgno,
            item: i,
            what,
        };
        let off = order
            .u16(p, PAGE_HDR + i * 2)
            .ok_or(bad("index beyond page"))? as usize;
        let end = if i == 0 {
            psize
        } else {
            order
                .u16(p, PAGE_HDR + (i - 1) * 2)
                .ok_or(bad("index beyond page"))? as usize
        };
        let end = if end == 0 { psize } else { end };
        if off < PAGE_HDR + entries * 2 || off >= end || end > psize {
            return Err(bad("item offset out of order or outside the page"));
        }
        Ok(&p[off..end])
    };
    let mut i = 0;
    while i + 1 < entries {
        let pair = item(i)
            .and_then(|k| fetch(file, psize, npages, order, pgno, i, k))
            .and_then(|k| {
                let v = item(i + 1)?;
                Ok((k, fetch(file, psize, npages, order, pgno, i + 1, v)?))
            });
        match pair {
            Ok((key, value)) => out.records.push(Record { key, value }),
            Err(e) => {
                out.damage.push(e);
                out.unreadable += 1;
            }
        }
        i += 2;
    }
}

fn fetch(
    file: &[u8],
    psize: usize,
    npages: u32,
    order: Order,
    pgno: u32,
    idx: usize,
    it: &[u8],
) -> Result<Vec<u8>, BdbError> {
    let bad = |what| BdbError::BadItem {
        page: pgno,
        item: idx,
        what,
    };
    match it.first().copied() {
        Some(H_KEYDATA) => Ok(it[1..].to_vec()),
        Some(H_OFFPAGE) => {
            if it.len() != 12 {
                return Err(bad("off-page item is not 12 bytes"));
            }
            let start = order.u32(it, 4).ok_or(bad("short off-page item"))?;
            let tlen = order.u32(it, 8).ok_or(bad("short off-page item"))? as usize;
            if tlen > file.len() {
                return Err(bad("off-page length larger than the file"));
            }
            if tlen == 0 {
                return Err(bad("off-page item of length 0"));
            }
            let mut data = Vec::with_capacity(tlen);
            let mut seen = HashSet::new();
            let mut cur = start;
            while data.len() < tlen {
                let ovf = |what| BdbError::BadOverflow {
                    start,
                    page: cur,
                    what,
                };
                if cur == 0 || cur >= npages {
                    return Err(BdbError::PageOutOfRange {
                        page: cur,
                        from: pgno,
                        pages: npages,
                    });
                }
                if !seen.insert(cur) {
                    return Err(ovf("chain loops"));
                }
                let p = &file[cur as usize * psize..(cur as usize + 1) * psize];
                if order.u32(p, 8) != Some(cur) {
                    return Err(ovf("page header names another page number"));
                }
                if p[25] != P_OVERFLOW {
                    return Err(ovf("page is not an overflow page"));
                }
                let len = order.u16(p, 22).unwrap_or(0) as usize;
                if PAGE_HDR + len > psize || len == 0 {
                    return Err(ovf("overflow length exceeds the page"));
                }
                if len > tlen - data.len() {
                    return Err(ovf("chain holds more bytes than the item says"));
                }
                data.extend_from_slice(&p[PAGE_HDR..PAGE_HDR + len]);
                cur = order.u32(p, 16).unwrap_or(0);
            }
            if cur != 0 {
                return Err(BdbError::BadOverflow {
                    start,
                    page: cur,
                    what: "chain continues past the item's length",
                });
            }
            Ok(data)
        }
        Some(_) => Err(bad(
            "unsupported hash item kind (duplicates are not used by rpm)",
        )),
        None => Err(bad("empty item")),
    }
}

/// What a checked read of rpm's `Packages` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackagesRead {
    /// `(package number, header blob)`, sorted by number; key 0 skipped.
    pub records: Vec<(u32, Vec<u8>)>,
    /// Every problem found; empty when the file was read completely.
    pub damage: Vec<BdbError>,
    /// Records seen but not readable.
    pub unreadable: u64,
}

/// Read rpm's `Packages` hash file: `(package number, header blob)` sorted by number, key 0
/// skipped. The first problem is an error (see [`read_packages_checked`]).
pub fn read_packages(file: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, BdbError> {
    let r = read_packages_checked(file)?;
    match r.damage.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(r.records),
    }
}

/// [`read_hash_checked`] for rpm's `Packages`: keys must be 4-byte package numbers (a key of
/// another size is damage, as is the same number twice).
pub fn read_packages_checked(file: &[u8]) -> Result<PackagesRead, BdbError> {
    let big = file
        .get(12..16)
        .is_some_and(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]) == MAGIC_HASH);
    let h = read_hash_checked(file)?;
    let mut out = PackagesRead {
        records: Vec::with_capacity(h.records.len()),
        damage: h.damage,
        unreadable: h.unreadable,
    };
    for r in h.records {
        let Ok(k) = <[u8; 4]>::try_from(&r.key[..]) else {
            out.damage.push(BdbError::BadKey(r.key.len()));
            out.unreadable += 1;
            continue;
        };
        let n = if big {
            u32::from_be_bytes(k)
        } else {
            u32::from_le_bytes(k)
        };
        if n == 0 {
            continue;
        }
        out.records.push((n, r.value));
    }
    out.records.sort_by_key(|(n, _)| *n);
    for w in out.records.windows(2) {
        if w[0].0 == w[1].0 {
            out.damage
                .push(BdbError::DuplicateKey(w[0].0.to_le_bytes().to_vec()));
        }
    }
    Ok(out)
}

pub use writer::{write_btree, write_hash, write_hash_as, write_packages, write_packages_as};

/// On-disk version of a hash file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashVersion {
    /// Version 8 (libdb 4.1–4.5), bucket pages of type 2 in any order. libdb 4.3/4.5 (rpm 4.4,
    /// EL5) accept only versions 7 and 8 (`__ham_metachk` in `hash/hash_open.c`: "unsupported
    /// hash version"); libdb 4.6 and later read version 8 as well.
    V8,
    /// Version 9 (libdb 4.6 and later), sorted bucket pages (type 13).
    V9,
}

/// Register `header` in an existing `Packages` file (either byte order): returns the rewritten
/// file (little-endian, see [`write_packages`]) and the new package number (one above the
/// highest in use). Only `Packages` is written: rpm's BDB index files (`Name`, `Basenames`, ...)
/// beside it go stale; regenerate them from the new records with
/// [`super::bdb_index::build_indexes`] (rpm before 4.9 does not rebuild missing ones).
pub fn add_package(file: &[u8], header: &crate::rpm::Header) -> Result<(Vec<u8>, u32), BdbError> {
    let mut recs = read_packages(file)?;
    let next = recs
        .iter()
        .map(|(n, _)| *n)
        .max()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or(BdbError::RecordTooLarge(0))?;
    recs.push((next, header.to_bytes()));
    Ok((write_packages(&recs)?, next))
}

/// Remove package number `number` from an existing `Packages` file (either byte order): returns
/// the rewritten file (little-endian, see [`write_packages`]) and whether the number was there.
/// As with [`add_package`], rpm's BDB index files are not written and go stale
/// (see [`super::bdb_index`]).
pub fn remove_package(file: &[u8], number: u32) -> Result<(Vec<u8>, bool), BdbError> {
    let mut recs = read_packages(file)?;
    let before = recs.len();
    recs.retain(|(n, _)| *n != number);
    let found = recs.len() != before;
    Ok((write_packages(&recs)?, found))
}

mod writer {
    use super::*;

    /// Berkeley DB's default hash function `__ham_func5` (Fowler/Noll/Vo FNV-1 with a zero
    /// offset basis: multiply by 16777619, then xor each byte).
    pub(super) fn ham_func5(key: &[u8]) -> u32 {
        let mut h: u32 = 0;
        for &b in key {
            h = h.wrapping_mul(16_777_619);
            h ^= b as u32;
        }
        h
    }

    #[test]
    fn charkey_matches_libdb() {
        // libdb hashes sizeof(CHARKEY), NUL included; 0x5e688dd1 is what db_load and rpm write.
        assert_eq!(ham_func5(b"%$sniglet^&\0"), 0x5e68_8dd1);
    }

    /// Write rpm's `Packages` as a little-endian Berkeley DB 5.3 hash file (version 9, 4096-byte
    /// pages) holding `(package number, header blob)` records plus rpm's key-0 record.
    ///
    /// Layout: metadata page 0, then `nbuckets` bucket pages (a power of two, so `spares` is zero for
    /// every bucket; `BUCKET_TO_PAGE(b) = b + 1`), then overflow pages. Each bucket page holds its
    /// key/data pairs; values that do not fit inline go to overflow chains (`H_OFFPAGE`); a bucket
    /// that overflows its page continues on a chained hash page (`next_pgno`).
    pub fn write_packages(records: &[(u32, Vec<u8>)]) -> Result<Vec<u8>, BdbError> {
        write_packages_as(records, HashVersion::V9)
    }

    /// [`write_packages`] in the hash format `version` (see [`HashVersion`]: rpm 4.4's libdb
    /// 4.3 needs [`HashVersion::V8`]).
    pub fn write_packages_as(
        records: &[(u32, Vec<u8>)],
        version: HashVersion,
    ) -> Result<Vec<u8>, BdbError> {
        let max_key = records.iter().map(|(k, _)| *k).max().unwrap_or(0);
        let mut all: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(records.len() + 1);
        all.push((
            0u32.to_le_bytes().to_vec(),
            (max_key + 1).to_le_bytes().to_vec(),
        ));
        for (k, v) in records {
            all.push((k.to_le_bytes().to_vec(), v.clone()));
        }
        write_hash_as(&all, version)
    }

    /// Write a little-endian Berkeley DB 5.3 hash file (version 9, 4096-byte pages) holding the
    /// `(key, value)` pairs `all` (keys must be distinct). Same layout as [`write_packages`];
    /// keys or values too large for a bucket page go to overflow chains (`H_OFFPAGE`). The
    /// output depends only on `all` (deterministic).
    pub fn write_hash(all: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<u8>, BdbError> {
        write_hash_as(all, HashVersion::V9)
    }

    /// [`write_hash`] in the hash format `version`.
    pub fn write_hash_as(
        all: &[(Vec<u8>, Vec<u8>)],
        version: HashVersion,
    ) -> Result<Vec<u8>, BdbError> {
        const PS: usize = 4096;
        let (meta_version, page_type) = match version {
            HashVersion::V8 => (8u32, P_HASH_UNSORTED),
            HashVersion::V9 => (9u32, P_HASH),
        };
        for (k, v) in all {
            for it in [k, v] {
                if it.len() > u32::MAX as usize / 2 {
                    return Err(BdbError::RecordTooLarge(it.len()));
                }
            }
        }
        // Buckets: a power of two with fill factor ~8 pairs per bucket.
        let mut nb: u32 = 2;
        while (nb as usize) * 8 < all.len() {
            nb *= 2;
        }
        let high_mask = nb - 1;
        let low_mask = (nb >> 1).saturating_sub(1);
        let max_bucket = nb - 1;
        let bucket_of = |k: &[u8]| ham_func5(k) & high_mask;
        // Distribute items.
        let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); nb as usize];
        for (i, (k, _)) in all.iter().enumerate() {
            buckets[bucket_of(k) as usize].push(i);
        }
        let mut pages: Vec<Vec<u8>> = vec![vec![0u8; PS]; 1 + nb as usize];
        let inline_max = PS / 4; // items bigger than this go off-page
                                 // Allocate overflow chains first (they get page numbers after the buckets).
        let mut offpage: Vec<Option<(u32, u32)>> = vec![None; all.len()];
        let mut offkey: Vec<Option<(u32, u32)>> = vec![None; all.len()];
        for (i, (k, v)) in all.iter().enumerate() {
            if k.len() + 1 > inline_max {
                offkey[i] = Some(overflow_chain(&mut pages, k, PS));
            }
            if v.len() + 1 > inline_max {
                offpage[i] = Some(overflow_chain(&mut pages, v, PS));
            }
        }
        // Fill bucket pages (with chained continuation pages when full); pairs sorted by key as
        // P_HASH pages require.
        for (b, members) in buckets.iter_mut().enumerate() {
            members.sort_by(|&x, &y| all[x].0.cmp(&all[y].0));
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for &i in members.iter() {
                let (k, v) = &all[i];
                let key = match offkey[i] {
                    Some((pg, len)) => offpage_item(pg, len),
                    None => {
                        let mut it = vec![H_KEYDATA];
                        it.extend_from_slice(k);
                        it
                    }
                };
                let val = match offpage[i] {
                    Some((pg, len)) => offpage_item(pg, len),
                    None => {
                        let mut it = vec![H_KEYDATA];
                        it.extend_from_slice(v);
                        it
                    }
                };
                pairs.push((key, val));
            }
            let mut cur = b + 1;
            let mut prev = 0u32;
            let mut pos = 0;
            loop {
                let mut used = 0usize;
                let mut n = 0usize;
                while let Some((k, v)) = pairs.get(pos + n) {
                    let need = k.len() + v.len() + 4;
                    if PAGE_HDR + (n * 2) * 2 + used + need > PS {
                        break;
                    }
                    used += k.len() + v.len();
                    n += 1;
                }
                if n == 0 && pos < pairs.len() {
                    return Err(BdbError::RecordTooLarge(pairs[pos].1.len()));
                }
                let more = pos + n < pairs.len();
                let next = if more { pages.len() as u32 } else { 0 };
                let p = &mut pages[cur];
                let mut top = PS;
                for (j, (k, v)) in pairs[pos..pos + n].iter().enumerate() {
                    for (m, it) in [k, v].into_iter().enumerate() {
                        top -= it.len();
                        p[top..top + it.len()].copy_from_slice(it);
                        let slot = PAGE_HDR + (j * 2 + m) * 2;
                        p[slot..slot + 2].copy_from_slice(&(top as u16).to_le_bytes());
                    }
                }
                page_header(
                    p,
                    cur as u32,
                    prev,
                    next,
                    0,
                    top as u16,
                    (n * 2) as u16,
                    page_type,
                );
                pos += n;
                if !more {
                    break;
                }
                prev = cur as u32;
                cur = pages.len();
                pages.push(vec![0u8; PS]);
            }
        }
        let last_pgno = pages.len() as u32 - 1;
        let meta = &mut pages[0];
        meta[8..12].copy_from_slice(&0u32.to_le_bytes()); // pgno
        meta[12..16].copy_from_slice(&MAGIC_HASH.to_le_bytes());
        meta[16..20].copy_from_slice(&meta_version.to_le_bytes()); // version
        meta[20..24].copy_from_slice(&(PS as u32).to_le_bytes());
        meta[24] = 0; // encrypt_alg
        meta[25] = P_HASHMETA;
        meta[32..36].copy_from_slice(&last_pgno.to_le_bytes());
        meta[72..76].copy_from_slice(&max_bucket.to_le_bytes());
        meta[76..80].copy_from_slice(&high_mask.to_le_bytes());
        meta[80..84].copy_from_slice(&low_mask.to_le_bytes());
        meta[84..88].copy_from_slice(&0u32.to_le_bytes()); // ffactor: 0 = unset, as db_load and rpm leave it
        meta[88..92].copy_from_slice(&(all.len() as u32).to_le_bytes()); // nelem
        meta[92..96].copy_from_slice(&ham_func5(b"%$sniglet^&\0").to_le_bytes()); // h_charkey
                                                                                  // spares[32] at 96: BUCKET_TO_PAGE(b) = b + spares[log2(b + 1)]; buckets are contiguous
                                                                                  // right after the meta page, so every populated doubling has spare 1 (as __ham_init_meta).
        let l2 = nb.trailing_zeros() as usize;
        for i in 0..=l2 {
            meta[96 + i * 4..100 + i * 4].copy_from_slice(&1u32.to_le_bytes());
        }
        let mut out = Vec::with_capacity(pages.len() * PS);
        for p in pages {
            out.extend_from_slice(&p);
        }
        Ok(out)
    }

    /// Write a little-endian Berkeley DB 5.3 btree file (version 9, 4096-byte pages, no
    /// duplicates, no record numbers) holding the `(key, value)` pairs `all`; keys must be
    /// distinct. Deterministic: the pairs are sorted by key (bytewise, shorter first: libdb's
    /// default `__bam_defcmp`).
    ///
    /// Layout (`dbinc/btree.h`, `dbinc/db_page.h`): page 0 is `BTMETA` (magic 0x053162, `minkey`
    /// 2 at 76, `re_pad` at 84, `root` at 88); the root is page 1; internal pages (type 3
    /// `P_IBTREE`, level ≥ 2) of `BINTERNAL` items (`len` u16, `type` u8, pad, child `pgno`
    /// u32, `nrecs` u32, key bytes; the first item of each internal page has an empty key),
    /// leaf pages (type 5 `P_LBTREE`, level 1, linked by `prev`/`next`) of key/data
    /// `BKEYDATA` items (`len` u16, `type` 1, bytes), every item 4-byte aligned; values longer
    /// than the overflow threshold are `BOVERFLOW` items (type 3, `pgno` at 4, length at 8)
    /// pointing at overflow pages placed after the tree.
    pub fn write_btree(all: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<u8>, BdbError> {
        const PS: usize = 4096;
        // libdb's B_MINKEY_TO_OVFLSIZE for minkey 2: larger items go off-page.
        const OVFL: usize = (PS - PAGE_HDR) / 4 - 10;
        let mut sorted: Vec<&(Vec<u8>, Vec<u8>)> = all.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for w in sorted.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(BdbError::DuplicateKey(w[0].0.clone()));
            }
        }
        let align = |n: usize| (n + 3) & !3;
        let kd_size = |len: usize| align(3 + len);
        for (k, v) in &sorted {
            // Keys stay on the page (internal pages copy them); refuse what libdb would move off.
            if kd_size(k.len()) > OVFL || k.is_empty() {
                return Err(BdbError::RecordTooLarge(k.len()));
            }
            if v.len() > u32::MAX as usize / 2 {
                return Err(BdbError::RecordTooLarge(v.len()));
            }
        }
        // Leaves: fill pages in key order.
        let item_size = |v: &[u8]| {
            if kd_size(v.len()) > OVFL {
                12
            } else {
                kd_size(v.len())
            }
        };
        let mut leaves: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        let mut used = 0;
        for (i, (k, v)) in sorted.iter().enumerate() {
            let need = kd_size(k.len()) + item_size(v) + 4;
            if i > start && PAGE_HDR + used + need > PS {
                leaves.push(start..i);
                start = i;
                used = 0;
            }
            used += need;
        }
        leaves.push(start..sorted.len());
        // Internal levels, bottom up: each entry is (first key of the child, child node index in
        // the level below).
        let bi_size = |len: usize| align(12 + len);
        // levels[l][node] = (separator key, child index in the level below).
        type Node = Vec<(Vec<u8>, usize)>;
        let mut levels: Vec<Vec<Node>> = Vec::new();
        let mut below: Vec<Vec<u8>> = leaves
            .iter()
            .map(|r| sorted.get(r.start).map(|p| p.0.clone()).unwrap_or_default())
            .collect();
        while below.len() > 1 {
            let mut nodes: Vec<Node> = Vec::new();
            let mut cur: Vec<(Vec<u8>, usize)> = Vec::new();
            let mut used = 0;
            for (child, key) in below.iter().enumerate() {
                let key = if cur.is_empty() {
                    Vec::new()
                } else {
                    key.clone()
                };
                let need = bi_size(key.len()) + 2;
                if !cur.is_empty() && PAGE_HDR + used + need > PS {
                    nodes.push(std::mem::take(&mut cur));
                    used = 0;
                    let need = bi_size(0) + 2;
                    used += need;
                    cur.push((Vec::new(), child));
                    continue;
                }
                used += need;
                cur.push((key, child));
            }
            nodes.push(cur);
            below = nodes
                .iter()
                .map(|n| {
                    n.first()
                        .map(|(_, c)| below[*c].clone())
                        .unwrap_or_default()
                })
                .collect();
            levels.push(nodes);
        }
        // Page numbers: root first (page 1), then each level down to the leaves.
        let mut next_pg = 1u32;
        let mut level_pgnos: Vec<Vec<u32>> = Vec::new();
        for nodes in levels.iter().rev() {
            level_pgnos.push(
                (0..nodes.len())
                    .map(|_| {
                        next_pg += 1;
                        next_pg - 1
                    })
                    .collect(),
            );
        }
        let leaf_pgnos: Vec<u32> = (0..leaves.len())
            .map(|_| {
                next_pg += 1;
                next_pg - 1
            })
            .collect();
        level_pgnos.reverse(); // level_pgnos[i] belongs to levels[i]
        let mut pages: Vec<Vec<u8>> = vec![vec![0u8; PS]; next_pg as usize];
        // Overflow chains for large values, after the tree.
        let mut ovf: Vec<Option<(u32, u32)>> = vec![None; sorted.len()];
        for (i, (_, v)) in sorted.iter().enumerate() {
            if kd_size(v.len()) > OVFL {
                ovf[i] = Some(overflow_chain(&mut pages, v, PS));
            }
        }
        // Leaf pages.
        for (li, r) in leaves.iter().enumerate() {
            let pgno = leaf_pgnos[li];
            let prev = if li == 0 { 0 } else { leaf_pgnos[li - 1] };
            let next = leaf_pgnos.get(li + 1).copied().unwrap_or(0);
            let p = &mut pages[pgno as usize];
            let mut top = PS;
            let mut slot = PAGE_HDR;
            for i in r.clone() {
                let (k, v) = sorted[i];
                let mut items: Vec<Vec<u8>> = vec![bkeydata(k)];
                items.push(match ovf[i] {
                    Some((pg, len)) => {
                        let mut it = vec![0u8, 0, 3, 0];
                        it.extend_from_slice(&pg.to_le_bytes());
                        it.extend_from_slice(&len.to_le_bytes());
                        it
                    }
                    None => bkeydata(v),
                });
                for it in items {
                    top -= align(it.len());
                    p[top..top + it.len()].copy_from_slice(&it);
                    p[slot..slot + 2].copy_from_slice(&(top as u16).to_le_bytes());
                    slot += 2;
                }
            }
            let entries = (r.len() * 2) as u16;
            page_header(p, pgno, prev, next, 1, top as u16, entries, 5);
        }
        // Internal pages.
        for (lvl, nodes) in levels.iter().enumerate() {
            let child_pgnos = if lvl == 0 {
                &leaf_pgnos
            } else {
                &level_pgnos[lvl - 1]
            };
            for (ni, node) in nodes.iter().enumerate() {
                let pgno = level_pgnos[lvl][ni];
                let p = &mut pages[pgno as usize];
                let mut top = PS;
                for (j, (key, child)) in node.iter().enumerate() {
                    let mut it = Vec::with_capacity(12 + key.len());
                    it.extend_from_slice(&(key.len() as u16).to_le_bytes());
                    it.push(1); // B_KEYDATA
                    it.push(0);
                    it.extend_from_slice(&child_pgnos[*child].to_le_bytes());
                    it.extend_from_slice(&0u32.to_le_bytes()); // nrecs: no DB_RECNUM
                    it.extend_from_slice(key);
                    top -= align(it.len());
                    p[top..top + it.len()].copy_from_slice(&it);
                    let slot = PAGE_HDR + j * 2;
                    p[slot..slot + 2].copy_from_slice(&(top as u16).to_le_bytes());
                }
                let level = (lvl + 2) as u8;
                page_header(p, pgno, 0, 0, level, top as u16, node.len() as u16, 3);
            }
        }
        let last_pgno = pages.len() as u32 - 1;
        let meta = &mut pages[0];
        meta[12..16].copy_from_slice(&MAGIC_BTREE.to_le_bytes());
        meta[16..20].copy_from_slice(&9u32.to_le_bytes()); // version
        meta[20..24].copy_from_slice(&(PS as u32).to_le_bytes());
        meta[25] = P_BTREEMETA;
        meta[32..36].copy_from_slice(&last_pgno.to_le_bytes());
        meta[76..80].copy_from_slice(&2u32.to_le_bytes()); // minkey
        meta[84..88].copy_from_slice(&0x20u32.to_le_bytes()); // re_pad, libdb's default ' '
        meta[88..92].copy_from_slice(&1u32.to_le_bytes()); // root
        let mut out = Vec::with_capacity(pages.len() * PS);
        for p in pages {
            out.extend_from_slice(&p);
        }
        Ok(out)
    }

    /// A `BKEYDATA` item: length, type `B_KEYDATA`, bytes (unpadded; the caller aligns).
    fn bkeydata(b: &[u8]) -> Vec<u8> {
        let mut it = Vec::with_capacity(3 + b.len());
        it.extend_from_slice(&(b.len() as u16).to_le_bytes());
        it.push(1);
        it.extend_from_slice(b);
        it
    }

    /// An `H_OFFPAGE` item pointing at an overflow chain of `len` bytes starting at page `pg`.
    fn offpage_item(pg: u32, len: u32) -> Vec<u8> {
        let mut it = vec![H_OFFPAGE, 0, 0, 0];
        it.extend_from_slice(&pg.to_le_bytes());
        it.extend_from_slice(&len.to_le_bytes());
        it
    }

    /// Append overflow pages (type 7, linked by `prev`/`next`) holding `v`; returns the first
    /// page number and the length.
    pub(super) fn overflow_chain(pages: &mut Vec<Vec<u8>>, v: &[u8], ps: usize) -> (u32, u32) {
        let first = pages.len() as u32;
        let chunks: Vec<&[u8]> = v.chunks(ps - PAGE_HDR).collect();
        let n = chunks.len();
        for (c, chunk) in chunks.into_iter().enumerate() {
            let pgno = pages.len() as u32;
            let mut p = vec![0u8; ps];
            let prev = if c == 0 { 0 } else { pgno - 1 };
            let next = if c + 1 == n { 0 } else { pgno + 1 };
            page_header(
                &mut p,
                pgno,
                prev,
                next,
                0,
                chunk.len() as u16,
                1,
                P_OVERFLOW,
            );
            p[PAGE_HDR..PAGE_HDR + chunk.len()].copy_from_slice(chunk);
            pages.push(p);
        }
        (first, v.len() as u32)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn page_header(
        p: &mut [u8],
        pgno: u32,
        prev: u32,
        next: u32,
        level: u8,
        hf: u16,
        entries: u16,
        ty: u8,
    ) {
        p[8..12].copy_from_slice(&pgno.to_le_bytes());
        p[12..16].copy_from_slice(&prev.to_le_bytes());
        p[16..20].copy_from_slice(&next.to_le_bytes());
        p[20..22].copy_from_slice(&entries.to_le_bytes());
        p[22..24].copy_from_slice(&hf.to_le_bytes());
        p[24] = level;
        p[25] = ty;
    }
}
