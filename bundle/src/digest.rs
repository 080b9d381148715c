//! Image digests: the dm-verity hash tree (as `veritysetup format` computes it) and plain sha256,
//! computed in one streaming, parallel pass.
//!
//! dm-verity format version 1 (cryptsetup `lib/verity/verity_hash.c`, kernel
//! `Documentation/admin-guide/device-mapper/verity.rst`), as used here: sha256, 4096-byte data
//! and hash blocks, a salt of 0..=256 bytes. Every data block is hashed as
//! `sha256(salt || block)`; the 32-byte hashes are packed 128 to a hash block, the last hash block of
//! a level zero-padded; the next level hashes the previous level's blocks the same way, until a
//! level is one block. The root hash is `sha256(salt || top block)`; with a single data block
//! the root is that block's hash and the hash device is empty. The hash device (no superblock,
//! `--no-superblock`) stores the levels top-most first.
//!
//! An image whose size is not a multiple of 4096 is hashed as if zero-padded to the next block
//! (veritysetup would ignore the partial block; we never leave bytes uncovered).
//!
//! Memory: the level-0 hashes are kept (32 bytes per 4 KiB block, 8 MiB per GiB of image); the
//! upper levels are built from them at the end, in parallel.

use std::io::{Read, Seek, SeekFrom, Write};

use rayon::prelude::*;
use rootfs::zseek::{self, SeekTable, ZseekError};
use sha2::{Digest, Sha256};

/// Block size of data and hash blocks.
pub const BLOCK_SIZE: usize = 4096;
/// Hashes per hash block (4096 / 32).
const HASHES_PER_BLOCK: usize = BLOCK_SIZE / 32;
/// Longest salt veritysetup accepts.
pub const MAX_SALT: usize = 256;

/// Errors computing or checking digests.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// I/O failed.
    #[error("digest: I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The seekable zstd file is invalid.
    #[error("digest: {0}")]
    Zseek(#[from] ZseekError),
    /// The salt is too long.
    #[error("digest: dm-verity salt of {0} bytes is longer than {MAX_SALT}")]
    SaltTooLong(usize),
}

/// A sha256 value.
pub type Sha256Digest = [u8; 32];

/// Streaming dm-verity (level 0) hasher: feed data in order with [`VerityHasher::update`], or
/// precomputed block hashes with [`VerityHasher::push_block_hashes`] when at a block boundary.
#[derive(Clone)]
pub struct VerityHasher {
    salt: Vec<u8>,
    base: Sha256,
    level0: Vec<Sha256Digest>,
    pending: Vec<u8>,
    size: u64,
}

/// The outcome of dm-verity hashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityTree {
    /// The root hash (what `veritysetup format` prints as "Root hash").
    pub root: Sha256Digest,
    /// The salt used.
    pub salt: Vec<u8>,
    /// Number of 4096-byte data blocks covered.
    pub data_blocks: u64,
    /// Levels, level 0 (hashes of data blocks) first; each is a list of hash blocks.
    levels: Vec<Vec<u8>>,
}

/// Hashes one block (zero-padded to [`BLOCK_SIZE`] if shorter) as `sha256(salt || block)`.
pub fn hash_block(base: &Sha256, block: &[u8]) -> Sha256Digest {
    let mut h = base.clone();
    h.update(block);
    if block.len() < BLOCK_SIZE {
        h.update(&[0u8; BLOCK_SIZE][..BLOCK_SIZE - block.len()]);
    }
    h.finalize().into()
}

/// Hashes all whole blocks of `data` (which must start at a block boundary), in parallel.
///
/// Blocks are independent messages of the same length, so they are hashed 16 at a time in the
/// lanes of one vector register by the multi-buffer kernel of `tape-sha256` (AVX-512 here;
/// AVX2, SHA-NI or portable code elsewhere, picked at run time). That is about twice the speed
/// of hashing them one by one with SHA-NI (`sha2`), and it is the bulk of `wafer verify`'s work.
/// All-zero blocks (free space) share one precomputed hash.
pub fn hash_full_blocks(salt: &[u8], data: &[u8]) -> Vec<Sha256Digest> {
    let n = data.len() / BLOCK_SIZE;
    let mut out = vec![[0u8; 32]; n];
    let zero = std::sync::OnceLock::new();
    out.par_chunks_mut(TASK_BLOCKS)
        .zip(data[..n * BLOCK_SIZE].par_chunks(TASK_BLOCKS * BLOCK_SIZE))
        .for_each(|(hashes, chunk)| hash_task(salt, chunk, hashes, &zero));
    out
}

/// [`hash_full_blocks`] on the calling thread only (for callers that are already one of
/// several parallel workers, such as the builder's compression workers).
pub fn hash_full_blocks_serial(salt: &[u8], data: &[u8]) -> Vec<Sha256Digest> {
    let n = data.len() / BLOCK_SIZE;
    let mut out = vec![[0u8; 32]; n];
    let zero = std::sync::OnceLock::new();
    for (hashes, chunk) in out
        .chunks_mut(TASK_BLOCKS)
        .zip(data[..n * BLOCK_SIZE].chunks(TASK_BLOCKS * BLOCK_SIZE))
    {
        hash_task(salt, chunk, hashes, &zero);
    }
    out
}

/// Blocks per task (256 KiB): enough to fill the lanes and amortise a parallel task.
const TASK_BLOCKS: usize = 64;

/// Hashes the whole blocks of `chunk` into `hashes` (one per block).
fn hash_task(
    salt: &[u8],
    chunk: &[u8],
    hashes: &mut [Sha256Digest],
    zero: &std::sync::OnceLock<Sha256Digest>,
) {
    if is_zero(chunk) {
        let z = *zero.get_or_init(|| hash_block(&salted(salt), &[0u8; BLOCK_SIZE]));
        hashes.fill(z);
    } else {
        let blocks: Vec<&[u8]> = chunk.chunks_exact(BLOCK_SIZE).collect();
        tape_sha256::hash_many_prefixed(salt, &blocks, hashes);
    }
}

/// Whether every byte of `data` is zero.
pub(crate) fn is_zero(data: &[u8]) -> bool {
    zseek::is_all_zero(data)
}

fn salted(salt: &[u8]) -> Sha256 {
    let mut h = Sha256::new();
    h.update(salt);
    h
}

impl VerityHasher {
    /// A hasher with the given salt (at most [`MAX_SALT`] bytes).
    pub fn new(salt: &[u8]) -> Result<Self, DigestError> {
        if salt.len() > MAX_SALT {
            return Err(DigestError::SaltTooLong(salt.len()));
        }
        Ok(VerityHasher {
            salt: salt.to_vec(),
            base: salted(salt),
            level0: Vec::new(),
            pending: Vec::new(),
            size: 0,
        })
    }

    /// Whether the data fed so far ends on a block boundary.
    pub fn at_block_boundary(&self) -> bool {
        self.pending.is_empty()
    }

    /// Feeds data sequentially.
    pub fn update(&mut self, mut data: &[u8]) {
        self.size += data.len() as u64;
        if !self.pending.is_empty() {
            let need = BLOCK_SIZE - self.pending.len();
            let take = need.min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == BLOCK_SIZE {
                self.level0.push(hash_block(&self.base, &self.pending));
                self.pending.clear();
            }
        }
        let whole = data.len() / BLOCK_SIZE * BLOCK_SIZE;
        if whole > 0 {
            self.level0
                .extend(hash_full_blocks(&self.salt, &data[..whole]));
        }
        self.pending.extend_from_slice(&data[whole..]);
    }

    /// Appends hashes of whole blocks computed elsewhere (with [`hash_full_blocks`] and the same
    /// salt) followed by `tail` (the chunk's bytes after its last whole block). Must be called at a
    /// block boundary; otherwise falls back to hashing `full_data` sequentially.
    pub fn push_block_hashes(&mut self, hashes: Vec<Sha256Digest>, full_data: &[u8]) {
        if !self.pending.is_empty() || hashes.len() != full_data.len() / BLOCK_SIZE {
            self.update(full_data);
            return;
        }
        self.size += full_data.len() as u64;
        self.level0.extend(hashes);
        self.pending
            .extend_from_slice(&full_data[full_data.len() / BLOCK_SIZE * BLOCK_SIZE..]);
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Builds the upper levels and the root hash.
    pub fn finish(mut self) -> VerityTree {
        if !self.pending.is_empty() {
            let h = hash_block(&self.base, &self.pending);
            self.level0.push(h);
        }
        let data_blocks = self.level0.len() as u64;
        let mut levels = Vec::new();
        let mut current = std::mem::take(&mut self.level0);
        if current.is_empty() {
            // No data: veritysetup refuses an empty device; we define the root as the hash of one
            // zero block so the value is still well defined.
            let root = hash_block(&self.base, &[]);
            return VerityTree {
                root,
                salt: self.salt,
                data_blocks: 0,
                levels,
            };
        }
        if current.len() == 1 {
            return VerityTree {
                root: current[0],
                salt: self.salt,
                data_blocks,
                levels,
            };
        }
        loop {
            let blocks: Vec<u8> = pack(&current);
            let next: Vec<Sha256Digest> = hash_full_blocks(&self.salt, &blocks);
            levels.push(blocks);
            if next.len() == 1 {
                return VerityTree {
                    root: next[0],
                    salt: self.salt,
                    data_blocks,
                    levels,
                };
            }
            current = next;
        }
    }
}

/// Packs hashes into zero-padded hash blocks.
fn pack(hashes: &[Sha256Digest]) -> Vec<u8> {
    let nblocks = hashes.len().div_ceil(HASHES_PER_BLOCK);
    let mut out = vec![0u8; nblocks * BLOCK_SIZE];
    for (i, h) in hashes.iter().enumerate() {
        out[i * 32..i * 32 + 32].copy_from_slice(h);
    }
    out
}

impl VerityTree {
    /// The root hash as lowercase hex.
    pub fn root_hex(&self) -> String {
        hex::encode(self.root)
    }

    /// Size of the hash device in bytes.
    pub fn hash_device_size(&self) -> u64 {
        self.levels.iter().map(|l| l.len() as u64).sum()
    }

    /// Writes the hash device as `veritysetup format --no-superblock` lays it out (hash offset 0):
    /// the top-most level first, level 0 last.
    pub fn write_hash_device<W: Write>(&self, mut w: W) -> std::io::Result<()> {
        for level in self.levels.iter().rev() {
            w.write_all(level)?;
        }
        w.flush()
    }
}

/// Digests of an image computed in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDigests {
    /// Decompressed (raw image) size in bytes.
    pub size: u64,
    /// The dm-verity tree (root, salt, levels).
    pub verity: VerityTree,
    /// sha256 of the raw image, if asked for.
    pub sha256: Option<Sha256Digest>,
    /// sha256 of the compressed file (all its bytes), if asked for.
    pub compressed_sha256: Option<Sha256Digest>,
}

/// Options of [`digest_seekable`] and [`digest_reader`].
#[derive(Debug, Clone, Default)]
pub struct DigestOptions {
    /// dm-verity salt.
    pub salt: Vec<u8>,
    /// Also compute the plain sha256 of the raw image (sequential; costs time).
    pub sha256: bool,
    /// Also compute the sha256 of the compressed file.
    pub compressed_sha256: bool,
    /// Worker threads (0 = all cores).
    pub threads: usize,
}

/// Decompresses a seekable zstd file with all cores and computes the dm-verity root and,
/// optionally, the sha256 of the raw image and of the compressed file, in one pass.
///
/// Level-0 verity hashes of each frame are computed on the worker that decompressed it; the
/// sequential sha256 runs on the consuming thread while the workers decompress the next batch.
pub fn digest_seekable<R: Read + Seek + Send>(
    mut src: R,
    opts: &DigestOptions,
) -> Result<ImageDigests, DigestError> {
    let table = SeekTable::read_from(&mut src)?;
    src.seek(SeekFrom::Start(0))?;
    digest_frames(&mut src, &table, opts)
}

/// Like [`digest_seekable`] with a table already read; `src` must be positioned at offset 0.
pub fn digest_frames<R: Read + Send>(
    src: &mut R,
    table: &SeekTable,
    opts: &DigestOptions,
) -> Result<ImageDigests, DigestError> {
    let mut verity = VerityHasher::new(&opts.salt)?;
    let mut sha = opts.sha256.then(Sha256::new);
    let mut csha = opts.compressed_sha256.then(Sha256::new);
    let salt = opts.salt.clone();
    zseek::for_each_frame(
        src,
        table,
        opts.threads,
        |_, off, data| {
            if off % BLOCK_SIZE as u64 == 0 {
                Some(hash_full_blocks_serial(&salt, data))
            } else {
                None
            }
        },
        |_, _, data, hashes| {
            if let Some(h) = sha.as_mut() {
                h.update(data);
            }
            match hashes {
                Some(hs) => verity.push_block_hashes(hs, data),
                None => verity.update(data),
            }
            Ok(())
        },
        |c| {
            if let Some(h) = csha.as_mut() {
                h.update(c);
            }
        },
    )?;
    Ok(ImageDigests {
        size: verity.size(),
        verity: verity.finish(),
        sha256: sha.map(|h| h.finalize().into()),
        compressed_sha256: csha.map(|h| h.finalize().into()),
    })
}

/// Computes the same digests over an uncompressed stream (the builder's raw image), reading
/// 8 MiB chunks and hashing blocks in parallel. `compressed_sha256` is ignored here.
pub fn digest_reader<R: Read>(
    mut src: R,
    opts: &DigestOptions,
) -> Result<ImageDigests, DigestError> {
    const CHUNK: usize = 8 << 20;
    let mut verity = VerityHasher::new(&opts.salt)?;
    let mut sha = opts.sha256.then(Sha256::new);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let mut n = 0;
        while n < CHUNK {
            match src.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if n == 0 {
            break;
        }
        let data = &buf[..n];
        let (hashes, ()) = rayon::join(
            || {
                verity
                    .at_block_boundary()
                    .then(|| hash_full_blocks(&opts.salt, data))
            },
            || {
                if let Some(h) = sha.as_mut() {
                    h.update(data)
                }
            },
        );
        match hashes {
            Some(hs) => verity.push_block_hashes(hs, data),
            None => verity.update(data),
        }
        if n < CHUNK {
            break;
        }
    }
    Ok(ImageDigests {
        size: verity.size(),
        verity: verity.finish(),
        sha256: sha.map(|h| h.finalize().into()),
        compressed_sha256: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// The multi-buffer path agrees with hashing each block alone with `sha2`, for every salt
    /// length class (empty, inside the first 64-byte block, exactly one, spanning two, maximum),
    /// batch sizes that do and do not fill the 16 lanes, and zero blocks among data blocks.
    #[test]
    fn multi_buffer_blocks_match_one_at_a_time() {
        for salt_len in [0usize, 1, 32, 55, 56, 63, 64, 65, 200, MAX_SALT] {
            let salt = bytes(salt_len, salt_len as u64 + 7);
            for blocks in [1usize, 15, 16, 17, 64, 65, 200] {
                let mut data = bytes(blocks * BLOCK_SIZE, blocks as u64);
                // Zero blocks: one inside a mixed task, and a whole zero task when there is one.
                if blocks > 3 {
                    data[2 * BLOCK_SIZE..3 * BLOCK_SIZE].fill(0);
                }
                if blocks >= 130 {
                    data[64 * BLOCK_SIZE..128 * BLOCK_SIZE].fill(0);
                }
                let base = salted(&salt);
                let want: Vec<Sha256Digest> = data
                    .chunks_exact(BLOCK_SIZE)
                    .map(|b| {
                        let mut h = base.clone();
                        h.update(b);
                        h.finalize().into()
                    })
                    .collect();
                assert_eq!(
                    hash_full_blocks(&salt, &data),
                    want,
                    "salt {salt_len} bytes, {blocks} blocks"
                );
                assert_eq!(hash_full_blocks_serial(&salt, &data), want);
            }
        }
    }

    /// Feeding the same bytes in odd-sized pieces gives the same tree as one call.
    #[test]
    fn streaming_update_matches_one_shot() {
        let data = bytes(300 * BLOCK_SIZE + 123, 99);
        let salt = bytes(32, 1);
        let mut one = VerityHasher::new(&salt).unwrap();
        one.update(&data);
        let mut pieces = VerityHasher::new(&salt).unwrap();
        for c in data.chunks(10_007) {
            pieces.update(c);
        }
        assert_eq!(one.finish(), pieces.finish());
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0u8; 4096]));
        for i in [0usize, 63, 64, 4095] {
            let mut b = [0u8; 4096];
            b[i] = 1;
            assert!(!is_zero(&b), "byte {i}");
        }
        let mut odd = [0u8; 100];
        assert!(is_zero(&odd));
        odd[99] = 2;
        assert!(!is_zero(&odd));
    }
}
