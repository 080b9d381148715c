//! Block maps for the ext writer: extent trees (ext4) and indirect block maps (ext2/ext3).
//!
//! Both take the runs of a file (logical block → physical block, length) already allocated
//! for its data, and produce the 60-byte `i_block` plus the mapping blocks to write (extent
//! tree nodes, or single/double/triple indirect blocks). Mapping blocks are allocated through a
//! callback after the data, one block at a time.
//!
//! Layouts follow the ext4 disk layout document: "The Contents of inode.i_block" (direct and
//! indirect block addressing) and "Extent Tree" (`ext4_extent_header`, `ext4_extent_idx`,
//! `ext4_extent`, `ext4_extent_tail`).

use std::collections::BTreeMap;

use super::format::crc32c_raw;

/// A run of a file's data: `len` blocks at logical block `lblk` stored from physical `pblk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub lblk: u64,
    pub pblk: u64,
    pub len: u64,
}

/// Result of building a block map.
pub(crate) struct BlockMap {
    /// The 60 bytes of `i_block`.
    pub i_block: [u8; 60],
    /// Mapping blocks to write: (physical block, contents).
    pub blocks: Vec<(u64, Vec<u8>)>,
}

/// Why a map cannot be built.
#[derive(Debug)]
pub(crate) enum MapError {
    /// A logical block is beyond what the mapping can address.
    TooLarge(u64),
    /// A physical block does not fit 32 bits in a map that only stores 32.
    Physical(u64),
    /// The allocator ran out of space.
    NoSpace,
}

const EXT_MAGIC: u16 = 0xF30A;
/// Longest initialized extent (ext4 "Extent Tree": `ee_len` ≤ 32768).
const MAX_EXTENT: u64 = 32768;

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn header(b: &mut [u8], entries: u16, max: u16, depth: u16) {
    put16(b, 0, EXT_MAGIC);
    put16(b, 2, entries);
    put16(b, 4, max);
    put16(b, 6, depth);
    put32(b, 8, 0);
}

/// Build an extent tree for `runs` (sorted by logical block, non-overlapping). `csum_seed` is
/// the inode's checksum seed when `metadata_csum` is on (extent blocks then end in a tail).
pub(crate) fn build_extents(
    runs: &[Run],
    bs: usize,
    csum_seed: Option<u32>,
    alloc: &mut dyn FnMut() -> Option<u64>,
) -> Result<BlockMap, MapError> {
    // Leaf extents: (lblk, len, pblk), each at most MAX_EXTENT long.
    let mut leaves: Vec<[u8; 12]> = Vec::new();
    for r in runs {
        let mut done = 0;
        while done < r.len {
            let n = (r.len - done).min(MAX_EXTENT);
            let l = r.lblk + done;
            let p = r.pblk + done;
            if l + n > u64::from(u32::MAX) + 1 {
                return Err(MapError::TooLarge(l + n));
            }
            if p >> 48 != 0 {
                return Err(MapError::Physical(p));
            }
            let mut e = [0u8; 12];
            put32(&mut e, 0, l as u32);
            put16(&mut e, 4, n as u16);
            put16(&mut e, 6, (p >> 32) as u16);
            put32(&mut e, 8, p as u32);
            leaves.push(e);
            done += n;
        }
    }
    let per_block = (bs - 12) / 12;
    let mut blocks = Vec::new();
    let mut level: Vec<[u8; 12]> = leaves;
    let mut depth: u16 = 0;
    while level.len() > 4 {
        // Pack this level into blocks; the next level indexes them.
        let mut next = Vec::new();
        for chunk in level.chunks(per_block) {
            let pblk = alloc().ok_or(MapError::NoSpace)?;
            let mut b = vec![0u8; bs];
            header(&mut b, chunk.len() as u16, per_block as u16, depth);
            for (i, e) in chunk.iter().enumerate() {
                b[12 + i * 12..24 + i * 12].copy_from_slice(e);
            }
            if let Some(seed) = csum_seed {
                let tail = 12 + per_block * 12;
                let c = crc32c_raw(seed, &b[..tail]);
                put32(&mut b, tail, c);
            }
            // Index entry: first logical block of the chunk, child block.
            let mut idx = [0u8; 12];
            idx[0..4].copy_from_slice(&chunk[0][0..4]);
            put32(&mut idx, 4, pblk as u32);
            put16(&mut idx, 8, (pblk >> 32) as u16);
            next.push(idx);
            blocks.push((pblk, b));
        }
        level = next;
        depth += 1;
    }
    let mut i_block = [0u8; 60];
    header(&mut i_block, level.len() as u16, 4, depth);
    for (i, e) in level.iter().enumerate() {
        i_block[12 + i * 12..24 + i * 12].copy_from_slice(e);
    }
    Ok(BlockMap { i_block, blocks })
}

/// Build a direct/indirect block map (ext2/ext3) for `runs`.
pub(crate) fn build_indirect(
    runs: &[Run],
    bs: usize,
    alloc: &mut dyn FnMut() -> Option<u64>,
) -> Result<BlockMap, MapError> {
    let p = (bs / 4) as u64;
    let limit = 12 + p + p * p + p * p * p;
    let mut i_block = [0u8; 60];
    // Node key: (tree: 0 single / 1 double / 2 triple, depth below the tree's root, prefix).
    let mut nodes: BTreeMap<(u8, u8, u64), Vec<u32>> = BTreeMap::new();
    let set =
        |nodes: &mut BTreeMap<(u8, u8, u64), Vec<u32>>, key: (u8, u8, u64), idx: u64, v: u32| {
            let node = nodes.entry(key).or_insert_with(|| vec![0u32; p as usize]);
            if let Some(slot) = node.get_mut(idx as usize) {
                *slot = v;
            }
        };
    for r in runs {
        for k in 0..r.len {
            let l = r.lblk + k;
            let pb = r.pblk + k;
            if l >= limit {
                return Err(MapError::TooLarge(l));
            }
            let pb32 = u32::try_from(pb).map_err(|_| MapError::Physical(pb))?;
            if l < 12 {
                put32(&mut i_block, (l * 4) as usize, pb32);
                continue;
            }
            let l = l - 12;
            if l < p {
                set(&mut nodes, (0, 0, 0), l, pb32);
                continue;
            }
            let l = l - p;
            if l < p * p {
                set(&mut nodes, (1, 1, l / p), l % p, pb32);
                nodes
                    .entry((1, 0, 0))
                    .or_insert_with(|| vec![0u32; p as usize]);
                continue;
            }
            let l = l - p * p;
            set(&mut nodes, (2, 2, l / p), l % p, pb32);
            nodes
                .entry((2, 1, l / (p * p)))
                .or_insert_with(|| vec![0u32; p as usize]);
            nodes
                .entry((2, 0, 0))
                .or_insert_with(|| vec![0u32; p as usize]);
        }
    }
    // Allocate every node, then link children into parents.
    let mut phys: BTreeMap<(u8, u8, u64), u64> = BTreeMap::new();
    for key in nodes.keys() {
        let b = alloc().ok_or(MapError::NoSpace)?;
        if b > u64::from(u32::MAX) {
            return Err(MapError::Physical(b));
        }
        phys.insert(*key, b);
    }
    for (&(tree, depth, prefix), &b) in &phys {
        let b32 = b as u32;
        match (tree, depth) {
            (0, 0) => put32(&mut i_block, 48, b32),
            (1, 0) => put32(&mut i_block, 52, b32),
            (2, 0) => put32(&mut i_block, 56, b32),
            (1, 1) | (2, 1) => {
                if let Some(parent) = nodes.get_mut(&(tree, 0, 0)) {
                    if let Some(slot) = parent.get_mut(prefix as usize) {
                        *slot = b32;
                    }
                }
            }
            (2, 2) => {
                if let Some(parent) = nodes.get_mut(&(2, 1, prefix / p)) {
                    if let Some(slot) = parent.get_mut((prefix % p) as usize) {
                        *slot = b32;
                    }
                }
            }
            _ => {}
        }
    }
    let mut blocks = Vec::with_capacity(nodes.len());
    for (key, entries) in nodes {
        let mut b = vec![0u8; bs];
        for (i, v) in entries.iter().enumerate() {
            put32(&mut b, i * 4, *v);
        }
        if let Some(&pb) = phys.get(&key) {
            blocks.push((pb, b));
        }
    }
    Ok(BlockMap { i_block, blocks })
}

/// Upper bound of mapping blocks for a file of `data_blocks` blocks in `ranges` separate
/// logical ranges, used only to size images.
pub(crate) fn map_blocks_upper_bound(data_blocks: u64, ranges: u64, bs: u64, extents: bool) -> u64 {
    if extents {
        let extents = ranges + data_blocks / MAX_EXTENT + 2;
        if extents <= 4 {
            0
        } else {
            let per = (bs - 12) / 12;
            extents / per + 2 + extents / (per * per)
        }
    } else {
        let p = bs / 4;
        if data_blocks <= 12 && ranges <= 1 {
            0
        } else {
            data_blocks / p + data_blocks / (p * p) + 3 * ranges + 3
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_extent_map_fits_inode() {
        let mut next = 100u64;
        let mut alloc = || {
            next += 1;
            Some(next)
        };
        let m = build_extents(
            &[Run {
                lblk: 0,
                pblk: 50,
                len: 70000,
            }],
            4096,
            None,
            &mut alloc,
        )
        .unwrap();
        assert!(m.blocks.is_empty());
        assert_eq!(u16::from_le_bytes([m.i_block[2], m.i_block[3]]), 3); // 32768+32768+4464
    }

    #[test]
    fn many_extents_make_a_tree() {
        let runs: Vec<Run> = (0..1000)
            .map(|i| Run {
                lblk: i * 2,
                pblk: 1000 + i * 2,
                len: 1,
            })
            .collect();
        let mut next = 10u64;
        let mut alloc = || {
            next += 1;
            Some(next)
        };
        let m = build_extents(&runs, 1024, Some(7), &mut alloc).unwrap();
        assert_eq!(m.blocks.len(), 13); // 12 leaves of 84 extents, 1 index block, root in the inode
        assert_eq!(u16::from_le_bytes([m.i_block[6], m.i_block[7]]), 2);
    }

    #[test]
    fn indirect_map_counts() {
        let mut next = 5000u64;
        let mut alloc = || {
            next += 1;
            Some(next)
        };
        // 1 KiB blocks: 256 pointers; 12 + 256 + 1 blocks needs single + double (2 blocks).
        let m = build_indirect(
            &[Run {
                lblk: 0,
                pblk: 100,
                len: 12 + 256 + 1,
            }],
            1024,
            &mut alloc,
        )
        .unwrap();
        assert_eq!(m.blocks.len(), 3);
        // Far sparse block only: triple-indirect chain of 3 blocks.
        let m = build_indirect(
            &[Run {
                lblk: 12 + 256 + 65536 + 5,
                pblk: 100,
                len: 1,
            }],
            1024,
            &mut alloc,
        )
        .unwrap();
        assert_eq!(m.blocks.len(), 3);
        assert!(build_indirect(
            &[Run {
                lblk: u64::MAX / 2,
                pblk: 1,
                len: 1
            }],
            1024,
            &mut alloc
        )
        .is_err());
    }
}
