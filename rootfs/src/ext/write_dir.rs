//! Directory blocks for the ext writer: linear directories and hashed (htree) directories.
//!
//! Layouts from the ext4 disk layout document, "Directory Entries" (`ext4_dir_entry_2`,
//! `ext4_dir_entry_tail` for metadata_csum) and "Hash Tree Directories" (`dx_root`,
//! `dx_node`, `dx_entry`, `dx_tail`). A directory's contents depend only on its entries, its
//! own and its parent's inode numbers and the filesystem parameters; they are built in memory
//! and then written like a file's data.

use super::format::crc32c_raw;
use super::hash::{dx_hash, DxHash};

/// One entry to store: name, inode number, file type code (`ext4_dir_entry_2.file_type`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry<'a> {
    pub name: &'a [u8],
    pub ino: u32,
    pub ftype: u8,
}

/// What the directory builder needs to know about the filesystem.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DirParams {
    /// Block size.
    pub bs: usize,
    /// The directory inode's checksum seed when metadata_csum is on.
    pub csum_seed: Option<u32>,
    /// Hash for htree directories (None: dir_index is off, always linear).
    pub hash: Option<(DxHash, bool, [u32; 4])>,
    /// Minimum number of blocks (lost+found is pre-allocated like mke2fs does).
    pub min_blocks: usize,
}

/// A built directory.
pub(crate) struct BuiltDir {
    /// The directory's blocks, `bs` bytes each.
    pub data: Vec<u8>,
    /// Whether it is an htree (the inode gets the INDEX flag).
    pub indexed: bool,
}

/// Why a directory cannot be built.
#[derive(Debug)]
pub(crate) enum DirError {
    /// More leaf blocks than a two-level htree addresses (needs `largedir`).
    TooLarge { leaves: usize },
    /// A name longer than 255 bytes or empty.
    BadName,
}

const FT_DIR: u8 = 2;
const TAIL_LEN: usize = 12;

/// `rec_len` needed by an entry with a name of `n` bytes.
pub(crate) fn rec_len(n: usize) -> usize {
    (8 + n + 3) & !3
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_entry(b: &mut [u8], off: usize, e: &Entry<'_>, rec: usize) {
    put32(b, off, e.ino);
    put16(b, off + 4, rec as u16);
    b[off + 6] = e.name.len() as u8;
    b[off + 7] = e.ftype;
    b[off + 8..off + 8 + e.name.len()].copy_from_slice(e.name);
}

/// Packs entries into leaf blocks: fills each block up to `space` bytes, the last entry of a
/// block stretched to the end of the space.
struct Packer {
    bs: usize,
    space: usize,
    csum_seed: Option<u32>,
    out: Vec<u8>,
    /// Start of the current block in `out`.
    cur: usize,
    /// Used bytes in the current block.
    used: usize,
    /// Offset (in block) of the last entry written in the current block.
    last: Option<usize>,
}

impl Packer {
    fn new(bs: usize, csum_seed: Option<u32>, out: Vec<u8>) -> Self {
        let space = if csum_seed.is_some() {
            bs - TAIL_LEN
        } else {
            bs
        };
        let cur = out.len();
        let mut p = Packer {
            bs,
            space,
            csum_seed,
            out,
            cur,
            used: 0,
            last: None,
        };
        p.out.resize(cur + bs, 0);
        p
    }

    fn fits(&self, need: usize) -> bool {
        self.used + need <= self.space
    }

    fn push(&mut self, e: &Entry<'_>) {
        let need = rec_len(e.name.len());
        if !self.fits(need) {
            self.next_block();
        }
        let off = self.cur + self.used;
        put_entry(&mut self.out, off, e, need);
        self.last = Some(self.used);
        self.used += need;
    }

    fn finish_block(&mut self) {
        let blk = &mut self.out[self.cur..self.cur + self.bs];
        match self.last {
            Some(last) => {
                let rec = self.space - last;
                put16(blk, last + 4, rec as u16);
            }
            None => {
                // Empty block: one unused entry spanning the space.
                put32(blk, 0, 0);
                put16(blk, 4, self.space as u16);
            }
        }
        if let Some(seed) = self.csum_seed {
            let t = self.bs - TAIL_LEN;
            put32(blk, t, 0);
            put16(blk, t + 4, TAIL_LEN as u16);
            blk[t + 6] = 0;
            blk[t + 7] = 0xDE;
            let c = crc32c_raw(seed, &blk[..t]);
            put32(blk, t + 8, c);
        }
    }

    fn next_block(&mut self) {
        self.finish_block();
        self.cur = self.out.len();
        self.out.resize(self.cur + self.bs, 0);
        self.used = 0;
        self.last = None;
    }

    fn blocks(&self) -> usize {
        self.out.len() / self.bs
    }

    fn finish(mut self) -> Vec<u8> {
        self.finish_block();
        self.out
    }
}

/// Number of blocks a linear layout of `name_lens` needs (for sizing).
pub(crate) fn linear_blocks(
    bs: usize,
    csum: bool,
    name_lens: impl Iterator<Item = usize>,
) -> usize {
    let space = if csum { bs - TAIL_LEN } else { bs };
    let mut blocks = 1;
    let mut used = 24;
    for n in name_lens {
        let need = rec_len(n);
        if used + need > space {
            blocks += 1;
            used = 0;
        }
        used += need;
    }
    blocks
}

/// Build directory `self_ino` (parent `parent_ino`) holding `entries` (already in name order).
pub(crate) fn build_dir(
    self_ino: u32,
    parent_ino: u32,
    entries: &[Entry<'_>],
    p: &DirParams,
) -> Result<BuiltDir, DirError> {
    if entries
        .iter()
        .any(|e| e.name.is_empty() || e.name.len() > 255)
    {
        return Err(DirError::BadName);
    }
    let dot = Entry {
        name: b".",
        ino: self_ino,
        ftype: FT_DIR,
    };
    let dotdot = Entry {
        name: b"..",
        ino: parent_ino,
        ftype: FT_DIR,
    };
    let lin_blocks = linear_blocks(
        p.bs,
        p.csum_seed.is_some(),
        entries.iter().map(|e| e.name.len()),
    );
    if lin_blocks <= 1 || p.hash.is_none() || p.min_blocks > 1 {
        let mut pk = Packer::new(p.bs, p.csum_seed, Vec::new());
        pk.push(&dot);
        pk.push(&dotdot);
        for e in entries {
            pk.push(e);
        }
        while pk.blocks() < p.min_blocks {
            pk.next_block();
        }
        return Ok(BuiltDir {
            data: pk.finish(),
            indexed: false,
        });
    }
    let Some((kind, unsigned, seed)) = p.hash else {
        return Err(DirError::BadName);
    };
    build_htree(&dot, &dotdot, entries, p, kind, unsigned, &seed)
}

#[allow(clippy::too_many_arguments)]
fn build_htree(
    dot: &Entry<'_>,
    dotdot: &Entry<'_>,
    entries: &[Entry<'_>],
    p: &DirParams,
    kind: DxHash,
    unsigned: bool,
    seed: &[u32; 4],
) -> Result<BuiltDir, DirError> {
    let bs = p.bs;
    let csum = p.csum_seed.is_some();
    // Sort by (hash, minor hash, name): leaves in hash order.
    let mut hashed: Vec<(u32, u32, usize)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (h, m) = dx_hash(kind, unsigned, e.name, seed);
            (h, m, i)
        })
        .collect();
    hashed.sort_by(|a, b| (a.0, a.1, entries[a.2].name).cmp(&(b.0, b.1, entries[b.2].name)));

    // Leaves start at logical block 1 (block 0 is the dx_root).
    let mut pk = Packer::new(bs, p.csum_seed, vec![0u8; bs]);
    // (hash with continuation bit, leaf logical block) per leaf.
    let mut leaf_hashes: Vec<u32> = vec![0];
    let mut prev_hash: Option<u32> = None;
    for &(h, _, i) in &hashed {
        let e = &entries[i];
        let need = rec_len(e.name.len());
        if !pk.fits(need) {
            pk.next_block();
            // A leaf starting inside a run of equal hashes is marked as a continuation.
            let cont = u32::from(prev_hash == Some(h));
            leaf_hashes.push(h | cont);
        }
        pk.push(e);
        prev_hash = Some(h);
    }
    let mut data = pk.finish();
    let leaves = leaf_hashes.len();

    let tail = if csum { 8 } else { 0 };
    let root_limit = (bs - 32 - tail) / 8;
    let node_limit = (bs - 8 - tail) / 8;

    // dx_root: "." and ".." entries, dx_root_info, then the count/limit and entries.
    let root = &mut data[..bs];
    put_entry(root, 0, dot, 12);
    put_entry(root, 12, dotdot, bs - 12);
    put32(root, 24, 0);
    root[28] = kind.version();
    root[29] = 8;
    root[31] = 0;

    let write_dx = |blk: &mut [u8], count_off: usize, limit: usize, ents: &[(u32, u32)]| {
        put16(blk, count_off, limit as u16);
        put16(blk, count_off + 2, ents.len() as u16);
        for (k, (h, b)) in ents.iter().enumerate() {
            let off = count_off + k * 8;
            if k > 0 {
                put32(blk, off, *h);
            }
            put32(blk, off + 4, *b);
        }
        if let Some(seed) = p.csum_seed {
            let t = count_off + limit * 8;
            let mut c = crc32c_raw(seed, &blk[..count_off + ents.len() * 8]);
            c = crc32c_raw(c, &[0u8; 8]); // dx_tail with dt_checksum zeroed
            put32(blk, t, 0);
            put32(blk, t + 4, c);
        }
    };

    let leaf_entries: Vec<(u32, u32)> = leaf_hashes
        .iter()
        .enumerate()
        .map(|(k, &h)| (h, (k + 1) as u32))
        .collect();
    if leaves <= root_limit {
        data[30] = 0;
        write_dx(&mut data[..bs], 32, root_limit, &leaf_entries);
        return Ok(BuiltDir {
            data,
            indexed: true,
        });
    }
    let nodes = leaves.div_ceil(node_limit);
    if nodes > root_limit {
        return Err(DirError::TooLarge { leaves });
    }
    data[30] = 1;
    let mut root_entries = Vec::with_capacity(nodes);
    for (n, chunk) in leaf_entries.chunks(node_limit).enumerate() {
        let lblk = (leaves + 1 + n) as u32;
        let start = data.len();
        data.resize(start + bs, 0);
        let blk = &mut data[start..start + bs];
        // Fake empty dirent spanning the block.
        put32(blk, 0, 0);
        put16(blk, 4, bs as u16);
        write_dx(blk, 8, node_limit, chunk);
        root_entries.push((chunk[0].0, lblk));
    }
    write_dx(&mut data[..bs], 32, root_limit, &root_entries);
    Ok(BuiltDir {
        data,
        indexed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("file-{i:06}").into_bytes())
            .collect()
    }

    #[test]
    fn small_dir_is_linear_one_block() {
        let ns = names(3);
        let es: Vec<Entry> = ns
            .iter()
            .map(|n| Entry {
                name: n,
                ino: 20,
                ftype: 1,
            })
            .collect();
        let p = DirParams {
            bs: 1024,
            csum_seed: None,
            hash: Some((DxHash::HalfMd4, false, [1, 2, 3, 4])),
            min_blocks: 1,
        };
        let d = build_dir(12, 2, &es, &p).unwrap();
        assert_eq!(d.data.len(), 1024);
        assert!(!d.indexed);
        // ".": rec_len 12; "..": 12; then entries; the last spans the block.
        assert_eq!(u16::from_le_bytes([d.data[4], d.data[5]]), 12);
    }

    #[test]
    fn big_dir_becomes_htree_with_two_levels_when_needed() {
        let ns = names(20000);
        let es: Vec<Entry> = ns
            .iter()
            .map(|n| Entry {
                name: n,
                ino: 20,
                ftype: 1,
            })
            .collect();
        let p = DirParams {
            bs: 1024,
            csum_seed: Some(5),
            hash: Some((DxHash::HalfMd4, false, [1, 2, 3, 4])),
            min_blocks: 1,
        };
        let d = build_dir(12, 2, &es, &p).unwrap();
        assert!(d.indexed);
        assert_eq!(
            d.data[30], 1,
            "20000 entries in 1 KiB blocks need an index level"
        );
        let p4 = DirParams { bs: 4096, ..p };
        let d = build_dir(12, 2, &es, &p4).unwrap();
        assert_eq!(d.data[30], 0);
    }
}
