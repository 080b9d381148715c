//! The ext2/3/4 image reader: superblock, group descriptors, inodes, block maps and extent
//! trees, directories (linear, htree, inline), symlinks, devices and xattrs -> [`Tree`].
//!
//! Everything read from the image is checked before use: block numbers against the
//! filesystem size, counts against the image size, extent tree depth and loops, directory
//! cycles. The total metadata read is bounded by a budget proportional to the image size, so a
//! hostile image that references the same blocks over and over stops with [`ExtError::Limit`].

// `is_multiple_of` is newer than the workspace's rust-version (1.80).
#![allow(clippy::manual_is_multiple_of)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::format::*;
use super::{ExtError, ExtImage, FsInfo, FsKind, JournalInfo, ReadOptions, MAX_REPORTED_ERRORS};
use crate::content::{Content, Extent, ReadAt, Source};
use crate::tree::{Device, Metadata, Node, NodeId, NodeKind, Timestamp, Tree};

/// Largest xattr value we accept (Linux XATTR_SIZE_MAX).
const MAX_XATTR_VALUE: u32 = 65536;
/// Maximum extent tree depth (the kernel's limit is 5).
const MAX_EXTENT_DEPTH: u16 = 5;
/// Inode table bytes cached per chunk.
const ITABLE_CHUNK: u64 = 64 * 1024;
/// Cached inode table chunks.
const ITABLE_CACHE_CHUNKS: usize = 64;

fn fmt_err(place: impl Into<String>) -> impl FnOnce(FormatError) -> ExtError {
    let place = place.into();
    move |source| ExtError::Format { place, source }
}

fn ino_err(ino: u32, what: impl Into<String>) -> ExtError {
    ExtError::Inode {
        ino: u64::from(ino),
        what: what.into(),
    }
}

/// A physical run of blocks: `count` blocks at `physical` hold logical blocks from `logical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    logical: u64,
    physical: u64,
    count: u64,
}

fn push_run(runs: &mut Vec<Run>, logical: u64, physical: u64, count: u64) {
    if let Some(last) = runs.last_mut() {
        if last.logical + last.count == logical && last.physical + last.count == physical {
            last.count += count;
            return;
        }
    }
    runs.push(Run {
        logical,
        physical,
        count,
    });
}

/// Where an inode's in-inode xattr value lives (image byte offset), for inline data.
struct InlineData {
    /// Absolute offset of `i_block`.
    iblock_off: u64,
    /// Absolute offset and size of the `system.data` value, if any.
    extra: Option<(u64, u32)>,
}

/// An inode as read: parsed fields, raw bytes, its image offset.
struct RawInode {
    ino: u32,
    inode: Inode,
    raw: Vec<u8>,
    offset: u64,
}

struct Reader {
    src: Arc<dyn ReadAt>,
    opts: ReadOptions,
    bs: u32,
    blocks_count: u64,
    inode_size: usize,
    ipg: u32,
    inodes_count: u32,
    inode_tables: Vec<u64>,
    itable_blocks: u64,
    csum: bool,
    csum_seed: u32,
    filetype: bool,
    budget: u64,
    budget_total: u64,
    itable_cache: HashMap<u64, Vec<u8>>,
    checksum_errors: Vec<String>,
    warnings: Vec<String>,
}

impl Reader {
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, ExtError> {
        let mut buf = vec![0u8; len];
        self.src
            .read_exact_at(offset, &mut buf)
            .map_err(|source| ExtError::Io {
                offset,
                len,
                source,
            })?;
        Ok(buf)
    }

    fn charge(&mut self, bytes: u64, what: &str) -> Result<(), ExtError> {
        if bytes > self.budget {
            return Err(ExtError::Limit {
                what: format!("metadata read while {what}"),
                limit: self.budget_total,
            });
        }
        self.budget -= bytes;
        Ok(())
    }

    fn check_block(&self, blk: u64, ino: u32, what: &str) -> Result<(), ExtError> {
        if blk == 0 || blk >= self.blocks_count {
            return Err(ino_err(
                ino,
                format!(
                    "{what} block {blk} is outside the filesystem (0..{})",
                    self.blocks_count
                ),
            ));
        }
        Ok(())
    }

    /// Read a metadata block (charged to the budget).
    fn read_block(&mut self, blk: u64, ino: u32, what: &str) -> Result<Vec<u8>, ExtError> {
        self.check_block(blk, ino, what)?;
        self.charge(u64::from(self.bs), what)?;
        self.read_at(blk * u64::from(self.bs), self.bs as usize)
    }

    fn checksum_mismatch(&mut self, what: String) -> Result<(), ExtError> {
        if self.opts.strict_checksums {
            return Err(ExtError::Checksum { what });
        }
        tracing::warn!("checksum mismatch: {what}");
        if self.checksum_errors.len() < MAX_REPORTED_ERRORS {
            self.checksum_errors.push(what);
        }
        Ok(())
    }

    fn verifying(&self) -> bool {
        self.csum && self.opts.verify_checksums
    }

    fn read_inode(&mut self, ino: u32) -> Result<RawInode, ExtError> {
        if ino == 0 || ino > self.inodes_count {
            return Err(ino_err(
                ino,
                format!("inode number out of range 1..={}", self.inodes_count),
            ));
        }
        let group = (ino - 1) / self.ipg;
        let index = u64::from((ino - 1) % self.ipg);
        let table = *self
            .inode_tables
            .get(group as usize)
            .ok_or_else(|| ino_err(ino, format!("group {group} does not exist")))?;
        if table == 0 || table.saturating_add(self.itable_blocks) > self.blocks_count {
            return Err(ExtError::Group {
                group,
                what: format!(
                    "inode table at block {table} ({} blocks) is outside the filesystem",
                    self.itable_blocks
                ),
            });
        }
        let isz = self.inode_size as u64;
        let offset = table * u64::from(self.bs) + index * isz;
        let chunk = offset / ITABLE_CHUNK;
        if !self.itable_cache.contains_key(&chunk) {
            if self.itable_cache.len() >= ITABLE_CACHE_CHUNKS {
                self.itable_cache.clear();
            }
            // Read the whole aligned chunk (clipped to the filesystem and the image): inode
            // tables of several groups may share it (flex_bg).
            let start = chunk * ITABLE_CHUNK;
            let fs_end = (self.blocks_count * u64::from(self.bs)).min(self.src.len());
            let end = ((chunk + 1) * ITABLE_CHUNK).min(fs_end).max(offset + isz);
            let full = self.read_at(start, (end - start) as usize)?;
            self.itable_cache.insert(chunk, full);
        }
        let within = (offset - chunk * ITABLE_CHUNK) as usize;
        let raw = self
            .itable_cache
            .get(&chunk)
            .and_then(|c| c.get(within..within + self.inode_size))
            .map(|s| s.to_vec());
        let raw = match raw {
            Some(r) => r,
            // An inode straddling a chunk boundary (cannot happen with power-of-two sizes).
            None => self.read_at(offset, self.inode_size)?,
        };
        let inode = Inode::parse(&raw).map_err(fmt_err(format!("inode {ino}")))?;
        if self.verifying() {
            let computed = Inode::compute_checksum(self.csum_seed, ino, &raw);
            let has_hi = inode.has_extra(self.inode_size, 0x84);
            let (stored, want) = if has_hi {
                (
                    u32::from(inode.checksum_hi) << 16 | u32::from(inode.checksum_lo),
                    computed,
                )
            } else {
                (u32::from(inode.checksum_lo), computed & 0xFFFF)
            };
            if stored != want {
                self.checksum_mismatch(format!(
                    "inode {ino}: stored {stored:#x}, computed {want:#x}"
                ))?;
            }
        }
        Ok(RawInode {
            ino,
            inode,
            raw,
            offset,
        })
    }

    fn inode_seed(&self, ri: &RawInode) -> u32 {
        inode_csum_seed(self.csum_seed, ri.ino, ri.inode.generation)
    }

    /// Map the first `nblocks` logical blocks of an inode (block map or extent tree).
    fn map_blocks(&mut self, ri: &RawInode, nblocks: u64) -> Result<Vec<Run>, ExtError> {
        let mut runs = Vec::new();
        if nblocks == 0 {
            return Ok(runs);
        }
        if ri.inode.flags & INODE_FLAG_EXTENTS != 0 {
            let seed = self.inode_seed(ri);
            let mut visited = HashSet::new();
            let root = ri.inode.block.to_vec();
            self.walk_extents(ri.ino, &root, None, nblocks, seed, &mut visited, &mut runs)?;
        } else {
            let words = ri.inode.block_words();
            for (i, &w) in words.iter().take(12).enumerate() {
                let i = i as u64;
                if i >= nblocks {
                    break;
                }
                if w != 0 {
                    self.check_block(u64::from(w), ri.ino, "data")?;
                    push_run(&mut runs, i, u64::from(w), 1);
                }
            }
            let ppb = u64::from(self.bs / 4);
            let mut base = 12u64;
            let mut span = ppb;
            for (level, &w) in words.iter().skip(12).enumerate() {
                if base >= nblocks {
                    break;
                }
                if w != 0 {
                    self.walk_indirect(
                        ri.ino,
                        u64::from(w),
                        level as u32 + 1,
                        base,
                        nblocks,
                        &mut runs,
                    )?;
                }
                base = base.saturating_add(span);
                span = span.saturating_mul(ppb);
            }
        }
        Ok(runs)
    }

    /// One indirect block of `depth` (1 = its pointers are data blocks) covering logical
    /// blocks from `base`.
    fn walk_indirect(
        &mut self,
        ino: u32,
        blk: u64,
        depth: u32,
        base: u64,
        nblocks: u64,
        runs: &mut Vec<Run>,
    ) -> Result<(), ExtError> {
        let data = self.read_block(blk, ino, "indirect")?;
        let ppb = u64::from(self.bs / 4);
        let child_span = ppb.saturating_pow(depth - 1);
        for (j, w) in data.chunks_exact(4).enumerate() {
            let child = u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
            let child_base = base.saturating_add((j as u64).saturating_mul(child_span));
            if child_base >= nblocks {
                break;
            }
            if child == 0 {
                continue;
            }
            if depth == 1 {
                self.check_block(child, ino, "data")?;
                push_run(runs, child_base, child, 1);
            } else {
                self.walk_indirect(ino, child, depth - 1, child_base, nblocks, runs)?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_extents(
        &mut self,
        ino: u32,
        node: &[u8],
        expect_depth: Option<u16>,
        nblocks: u64,
        seed: u32,
        visited: &mut HashSet<u64>,
        runs: &mut Vec<Run>,
    ) -> Result<(), ExtError> {
        let h = ExtentHeader::parse(node).map_err(fmt_err(format!("inode {ino} extent node")))?;
        if h.depth > MAX_EXTENT_DEPTH {
            return Err(ino_err(
                ino,
                format!("extent tree depth {} exceeds {MAX_EXTENT_DEPTH}", h.depth),
            ));
        }
        if let Some(d) = expect_depth {
            if h.depth != d {
                return Err(ino_err(
                    ino,
                    format!("extent node has depth {} where {d} was expected", h.depth),
                ));
            }
        }
        for i in 0..usize::from(h.entries) {
            let at = ExtentHeader::SIZE + i * 12;
            let e = node
                .get(at..at + 12)
                .ok_or_else(|| ino_err(ino, "extent entry runs past its node"))?;
            if h.depth == 0 {
                let leaf = ExtentLeaf::parse(e).map_err(fmt_err(format!("inode {ino} extent")))?;
                let logical = u64::from(leaf.block);
                let count = u64::from(leaf.block_count());
                if leaf.is_uninit() || count == 0 || logical >= nblocks {
                    continue; // uninitialized extents read as zeros: holes
                }
                let start = leaf.start();
                if start == 0 || start.saturating_add(count) > self.blocks_count {
                    return Err(ino_err(
                        ino,
                        format!("extent at logical {logical} maps blocks {start}+{count} outside the filesystem"),
                    ));
                }
                let count = count.min(nblocks - logical);
                push_run(runs, logical, start, count);
            } else {
                let idx =
                    ExtentIndex::parse(e).map_err(fmt_err(format!("inode {ino} extent index")))?;
                if u64::from(idx.block) >= nblocks {
                    continue;
                }
                let child = idx.leaf();
                if !visited.insert(child) {
                    return Err(ino_err(
                        ino,
                        format!("extent tree loop: block {child} reached twice"),
                    ));
                }
                let data = self.read_block(child, ino, "extent tree")?;
                if self.verifying() {
                    let ch = ExtentHeader::parse(&data)
                        .map_err(fmt_err(format!("inode {ino} extent block {child}")))?;
                    let tail_at = ExtentHeader::SIZE + usize::from(ch.max) * 12;
                    if let (Some(computed), Some(t)) = (
                        extent_block_checksum(seed, &data, ch.max),
                        data.get(tail_at..tail_at + 4),
                    ) {
                        let stored = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                        if stored != computed {
                            self.checksum_mismatch(format!(
                                "inode {ino} extent block {child}: stored {stored:#x}, computed {computed:#x}"
                            ))?;
                        }
                    }
                }
                self.walk_extents(ino, &data, Some(h.depth - 1), nblocks, seed, visited, runs)?;
            }
        }
        Ok(())
    }

    /// The in-inode xattr area: (absolute offset of the first entry, bytes from there).
    fn ibody_xattrs<'a>(&self, ri: &'a RawInode) -> Option<(u64, &'a [u8])> {
        if self.inode_size <= GOOD_OLD_INODE_SIZE {
            return None;
        }
        let start = GOOD_OLD_INODE_SIZE + usize::from(ri.inode.extra_isize);
        let area = ri.raw.get(start..)?;
        XattrIbodyHeader::parse(area).ok()?;
        let entries = area.get(XattrIbodyHeader::SIZE..)?;
        Some((ri.offset + (start + XattrIbodyHeader::SIZE) as u64, entries))
    }

    /// Parse xattr entries from `entries` (value offsets relative to `value_base`, which is
    /// `entries` itself in-inode or the whole block for an xattr block).
    fn parse_xattr_entries(
        &mut self,
        ri: &RawInode,
        entries: &[u8],
        value_base: &[u8],
        value_base_off: u64,
        out: &mut Vec<(u8, Vec<u8>, XattrValue)>,
    ) -> Result<(), ExtError> {
        let mut pos = 0usize;
        while pos + 4 <= entries.len() {
            let Some(e) = XattrEntry::parse(&entries[pos..])
                .map_err(fmt_err(format!("inode {} xattr", ri.ino)))?
            else {
                break;
            };
            pos += e.len();
            if e.value_size > MAX_XATTR_VALUE {
                return Err(ino_err(
                    ri.ino,
                    format!(
                        "xattr value of {} bytes exceeds {MAX_XATTR_VALUE}",
                        e.value_size
                    ),
                ));
            }
            let value = if e.value_inum != 0 {
                XattrValue::EaInode(e.value_inum, e.value_size)
            } else {
                let start = usize::from(e.value_offs);
                let end = start + e.value_size as usize;
                let bytes = value_base.get(start..end).ok_or_else(|| {
                    ino_err(
                        ri.ino,
                        format!(
                            "xattr value {start}..{end} runs past its area ({} bytes)",
                            value_base.len()
                        ),
                    )
                })?;
                XattrValue::Inline(bytes.to_vec(), value_base_off + start as u64)
            };
            out.push((e.name_index, e.name, value));
        }
        Ok(())
    }

    /// All xattrs of an inode, in-inode first, then the xattr block; plus the location of the
    /// inline-data `system.data` value.
    fn xattrs(&mut self, ri: &RawInode) -> Result<(XattrList, Option<(u64, u32)>), ExtError> {
        let mut raw_entries = Vec::new();
        if let Some((off, entries)) = self.ibody_xattrs(ri) {
            let entries = entries.to_vec();
            self.parse_xattr_entries(ri, &entries, &entries, off, &mut raw_entries)?;
        }
        let acl = ri.inode.file_acl();
        if acl != 0 {
            let block = self.read_block(acl, ri.ino, "xattr")?;
            let h = XattrHeader::parse(&block)
                .map_err(fmt_err(format!("inode {} xattr block {acl}", ri.ino)))?;
            if h.blocks != 1 {
                return Err(ino_err(
                    ri.ino,
                    format!("xattr block {acl} claims {} blocks", h.blocks),
                ));
            }
            if self.verifying() {
                let computed = XattrHeader::compute_checksum(self.csum_seed, acl, &block);
                if computed != h.checksum {
                    self.checksum_mismatch(format!(
                        "inode {} xattr block {acl}: stored {:#x}, computed {computed:#x}",
                        ri.ino, h.checksum
                    ))?;
                }
            }
            let entries = block.get(XattrHeader::SIZE..).unwrap_or(&[]).to_vec();
            self.parse_xattr_entries(
                ri,
                &entries,
                &block,
                acl * u64::from(self.bs),
                &mut raw_entries,
            )?;
        }
        let mut out = Vec::new();
        let mut inline = None;
        for (index, name, value) in raw_entries {
            if index == 7 && name == b"data" {
                if let XattrValue::Inline(v, off) = &value {
                    inline = Some((*off, v.len() as u32));
                }
                continue;
            }
            let Some(prefix) = xattr_prefix(index) else {
                self.warn(format!(
                    "inode {}: xattr with unknown name index {index} skipped",
                    ri.ino
                ));
                continue;
            };
            if index == 0 {
                self.warn(format!(
                    "inode {}: xattr without a name prefix skipped",
                    ri.ino
                ));
                continue;
            }
            let mut full = prefix.to_vec();
            full.extend_from_slice(&name);
            let bytes = match value {
                XattrValue::Inline(v, _) => v,
                XattrValue::EaInode(vino, size) => self.read_ea_inode(ri.ino, vino, size)?,
            };
            let bytes = if index == 2 || index == 3 {
                acl_disk_to_xattr(&bytes).map_err(fmt_err(format!(
                    "inode {} xattr {}",
                    ri.ino,
                    String::from_utf8_lossy(&full)
                )))?
            } else {
                bytes
            };
            out.push((full, bytes));
        }
        Ok((out, inline))
    }

    fn read_ea_inode(&mut self, owner: u32, vino: u32, size: u32) -> Result<Vec<u8>, ExtError> {
        if vino == owner {
            return Err(ino_err(owner, "xattr value inode is the inode itself"));
        }
        let vri = self.read_inode(vino)?;
        if vri.inode.flags & INODE_FLAG_EA_INODE == 0 {
            return Err(ino_err(
                owner,
                format!("xattr value inode {vino} is not an EA inode"),
            ));
        }
        if vri.inode.size() < u64::from(size) {
            return Err(ino_err(
                owner,
                format!("xattr value inode {vino} holds fewer than {size} bytes"),
            ));
        }
        let nblocks = u64::from(size).div_ceil(u64::from(self.bs));
        let runs = self.map_blocks(&vri, nblocks)?;
        self.charge(u64::from(size), "reading xattr values")?;
        let mut out = vec![0u8; size as usize];
        for r in runs {
            let lstart = r.logical * u64::from(self.bs);
            let lend = ((r.logical + r.count) * u64::from(self.bs)).min(u64::from(size));
            if lstart >= lend {
                continue;
            }
            let bytes = self.read_at(r.physical * u64::from(self.bs), (lend - lstart) as usize)?;
            out[lstart as usize..lend as usize].copy_from_slice(&bytes);
        }
        Ok(out)
    }

    fn warn(&mut self, w: String) {
        tracing::warn!("{w}");
        if self.warnings.len() < MAX_REPORTED_ERRORS {
            self.warnings.push(w);
        }
    }

    /// Byte extents of an inode's data (block-mapped, extents, or inline), clipped to `size`.
    fn data_extents(
        &mut self,
        ri: &RawInode,
        size: u64,
        inline: Option<InlineData>,
    ) -> Result<Vec<Extent>, ExtError> {
        if let Some(inl) = inline {
            let mut ext = Vec::new();
            let first = size.min(I_BLOCK_SIZE as u64);
            if first > 0 {
                ext.push(Extent {
                    logical: 0,
                    physical: inl.iblock_off,
                    len: first,
                });
            }
            if size > I_BLOCK_SIZE as u64 {
                let rest = size - I_BLOCK_SIZE as u64;
                match inl.extra {
                    Some((off, len)) if u64::from(len) >= rest => ext.push(Extent {
                        logical: I_BLOCK_SIZE as u64,
                        physical: off,
                        len: rest,
                    }),
                    _ => {
                        return Err(ino_err(
                            ri.ino,
                            format!("inline data holds fewer than its size {size} bytes"),
                        ))
                    }
                }
            }
            return Ok(ext);
        }
        let bs = u64::from(self.bs);
        let runs = self.map_blocks(ri, size.div_ceil(bs))?;
        let mut ext = Vec::with_capacity(runs.len());
        for r in runs {
            let logical = r.logical * bs;
            let len = (r.count * bs).min(size.saturating_sub(logical));
            if len > 0 {
                ext.push(Extent {
                    logical,
                    physical: r.physical * bs,
                    len,
                });
            }
        }
        Ok(ext)
    }

    fn read_extents(&mut self, ext: &[Extent], cap: u64, ino: u32) -> Result<Vec<u8>, ExtError> {
        let size = ext.iter().map(|e| e.logical + e.len).max().unwrap_or(0);
        if size > cap {
            return Err(ino_err(
                ino,
                format!("{size} bytes exceed the limit of {cap}"),
            ));
        }
        self.charge(size, "reading small data")?;
        let mut out = vec![0u8; size as usize];
        for e in ext {
            let bytes = self.read_at(e.physical, e.len as usize)?;
            out[e.logical as usize..(e.logical + e.len) as usize].copy_from_slice(&bytes);
        }
        Ok(out)
    }

    fn metadata(&self, ri: &RawInode, xattrs: Vec<(Vec<u8>, Vec<u8>)>) -> Metadata {
        let i = &ri.inode;
        let isz = self.inode_size;
        let t = |secs: u32, extra: u32, end: usize| {
            let (sec, nsec) = decode_time(secs, i.has_extra(isz, end).then_some(extra));
            Timestamp { sec, nsec }
        };
        let mut m = Metadata::new(i.mode & 0o7777, i.uid(), i.gid(), Timestamp::default());
        m.ctime = t(i.ctime, i.ctime_extra, 0x88);
        m.mtime = t(i.mtime, i.mtime_extra, 0x8C);
        m.atime = t(i.atime, i.atime_extra, 0x90);
        if i.has_extra(isz, 0x94) {
            m.crtime = Some(t(i.crtime, i.crtime_extra, 0x98));
        }
        m.xattrs = xattrs.into_iter().collect();
        m
    }

    fn max_size(&self) -> u64 {
        (1u64 << 32) * u64::from(self.bs)
    }

    /// Build the node of a non-directory inode (directories get their entries later).
    fn build_node(&mut self, ri: &RawInode) -> Result<Node, ExtError> {
        let (xattrs, sysdata) = self.xattrs(ri)?;
        let meta = self.metadata(ri, xattrs);
        let size = ri.inode.size();
        let inline = (ri.inode.flags & INODE_FLAG_INLINE_DATA != 0).then(|| InlineData {
            iblock_off: ri.offset + I_BLOCK_OFFSET as u64,
            extra: sysdata,
        });
        let ftype =
            crate::tree::FileType::from_mode(u32::from(ri.inode.mode)).ok_or_else(|| {
                ino_err(
                    ri.ino,
                    format!("mode {:#o} has no valid file type", ri.inode.mode),
                )
            })?;
        use crate::tree::FileType as F;
        let kind = match ftype {
            F::Regular => {
                if size > self.max_size() {
                    return Err(ino_err(
                        ri.ino,
                        format!("size {size} exceeds the largest possible file"),
                    ));
                }
                let ext = self.data_extents(ri, size, inline)?;
                let source = if ext.is_empty() {
                    Source::None
                } else {
                    Source::Shared(self.src.clone())
                };
                let c = Content::from_extents(source, size, ext).map_err(|source| {
                    ExtError::Content {
                        ino: u64::from(ri.ino),
                        source,
                    }
                })?;
                NodeKind::Regular(c)
            }
            F::Symlink => {
                let cap = u64::from(self.bs).max(4096);
                if size == 0 || size > cap {
                    return Err(ino_err(
                        ri.ino,
                        format!("symlink target length {size} is not in 1..={cap}"),
                    ));
                }
                let target = if inline.is_none() && size < I_BLOCK_SIZE as u64 {
                    ri.inode.block[..size as usize].to_vec()
                } else {
                    let ext = self.data_extents(ri, size, inline)?;
                    let t = self.read_extents(&ext, cap, ri.ino)?;
                    if (t.len() as u64) < size {
                        return Err(ino_err(ri.ino, "symlink target is missing blocks"));
                    }
                    t
                };
                NodeKind::Symlink(target)
            }
            F::CharDevice | F::BlockDevice => {
                let (major, minor) = decode_device(&ri.inode.block_words());
                let d = Device { major, minor };
                if ftype == F::CharDevice {
                    NodeKind::CharDevice(d)
                } else {
                    NodeKind::BlockDevice(d)
                }
            }
            F::Fifo => NodeKind::Fifo,
            F::Socket => NodeKind::Socket,
            F::Directory => NodeKind::empty_dir(),
        };
        let mut node = Node::new(kind, meta);
        node.source_ino = u64::from(ri.ino);
        Ok(node)
    }

    /// The entries `(name, inode)` of a directory, `.` and `..` excluded.
    fn read_dir(&mut self, ri: &RawInode) -> Result<Vec<(Vec<u8>, u32)>, ExtError> {
        let dir = u64::from(ri.ino);
        let size = ri.inode.size();
        let bs = u64::from(self.bs);
        let mut out = Vec::new();
        let encrypted = ri.inode.flags & INODE_FLAG_ENCRYPT != 0;
        if ri.inode.flags & INODE_FLAG_INLINE_DATA != 0 {
            let (_, sysdata) = self.xattrs(ri)?;
            // i_block: parent inode (4 bytes), then entries; then the system.data value.
            let parent = u32::from_le_bytes([
                ri.inode.block[0],
                ri.inode.block[1],
                ri.inode.block[2],
                ri.inode.block[3],
            ]);
            let _ = parent;
            let first = ri.inode.block[4..].to_vec();
            self.parse_dir_block(dir, 0, &first, encrypted, &mut out)?;
            if let Some((off, len)) = sysdata {
                if len > 0 {
                    let data = self.read_at(off, len as usize)?;
                    self.parse_dir_block(dir, 1, &data, encrypted, &mut out)?;
                }
            }
            return Ok(out);
        }
        if size > self.max_size() || size % bs != 0 {
            return Err(ino_err(
                ri.ino,
                format!("directory size {size} is not a multiple of the block size {bs}"),
            ));
        }
        let runs = self.map_blocks(ri, size / bs)?;
        let indexed = ri.inode.flags & INODE_FLAG_INDEX != 0;
        let seed = self.inode_seed(ri);
        for r in runs {
            for k in 0..r.count {
                let lblk = r.logical + k;
                let data = self.read_block(r.physical + k, ri.ino, "directory")?;
                if self.verifying() {
                    self.verify_dir_block(ri.ino, lblk, &data, indexed, seed)?;
                }
                self.parse_dir_block(dir, lblk, &data, encrypted, &mut out)?;
            }
        }
        Ok(out)
    }

    fn verify_dir_block(
        &mut self,
        ino: u32,
        lblk: u64,
        data: &[u8],
        indexed: bool,
        seed: u32,
    ) -> Result<(), ExtError> {
        let bs = data.len();
        // htree root (block 0) or interior node (one empty dirent spanning the block). Their
        // dx_tail can look like a dirent tail (its reserved word may hold 0xDE00000C left over
        // from the block's life as a leaf), so recognise them first.
        let dx_offset = if !indexed {
            None
        } else if lblk == 0 {
            Some(DX_ROOT_INFO_OFFSET + DxRootInfo::SIZE)
        } else {
            match DirEntry::parse(data, self.bs, self.filetype).ok() {
                Some(e) if e.inode == 0 && e.rec_len as usize == bs && e.name.is_empty() => Some(8),
                _ => None,
            }
        };
        let Some(count_offset) = dx_offset else {
            if let Some(tail) = data
                .get(bs.saturating_sub(DirTail::SIZE)..)
                .and_then(|t| DirTail::parse(t).ok())
            {
                let computed = DirTail::compute_checksum(seed, data);
                if computed != tail.checksum {
                    self.checksum_mismatch(format!(
                        "directory inode {ino} block {lblk}: stored {:#x}, computed {computed:#x}",
                        tail.checksum
                    ))?;
                }
            }
            return Ok(());
        };
        let Some(cl) = data
            .get(count_offset..)
            .and_then(|b| DxCountLimit::parse(b).ok())
        else {
            return Ok(());
        };
        let tail_at = count_offset + usize::from(cl.limit) * DxEntry::SIZE;
        if let Some(t) = data
            .get(tail_at..tail_at + DxTail::SIZE)
            .and_then(|b| DxTail::parse(b).ok())
        {
            let computed = DxTail::compute_checksum(seed, data, count_offset, cl.count, t.reserved);
            if computed != t.checksum {
                self.checksum_mismatch(format!(
                    "htree block {lblk} of directory inode {ino}: stored {:#x}, computed {computed:#x}",
                    t.checksum
                ))?;
            }
        }
        Ok(())
    }

    fn parse_dir_block(
        &mut self,
        dir: u64,
        lblk: u64,
        data: &[u8],
        encrypted: bool,
        out: &mut Vec<(Vec<u8>, u32)>,
    ) -> Result<(), ExtError> {
        let mut pos = 0usize;
        while pos < data.len() {
            let rest = &data[pos..];
            if rest.len() < 8 {
                return Err(ExtError::DirEntry {
                    dir,
                    block: lblk,
                    offset: pos,
                    what: format!("{} trailing bytes", rest.len()),
                });
            }
            let e =
                DirEntry::parse(rest, self.bs, self.filetype).map_err(|f| ExtError::DirEntry {
                    dir,
                    block: lblk,
                    offset: pos,
                    what: f.what,
                })?;
            pos += e.rec_len as usize;
            if e.inode == 0 || e.name == b"." || e.name == b".." {
                continue;
            }
            if e.name.is_empty() {
                return Err(ExtError::DirEntry {
                    dir,
                    block: lblk,
                    offset: pos,
                    what: "empty name".into(),
                });
            }
            let name = if encrypted {
                // Ciphertext names are arbitrary bytes: name them by their digest.
                format!("encrypted-{}", hex::encode(Sha256::digest(&e.name))).into_bytes()
            } else {
                e.name
            };
            out.push((name, e.inode));
        }
        Ok(())
    }
}

/// Full xattr names and values.
type XattrList = Vec<(Vec<u8>, Vec<u8>)>;

enum XattrValue {
    /// The value and its absolute image offset.
    Inline(Vec<u8>, u64),
    /// Stored in an EA inode: (inode, size).
    EaInode(u32, u32),
}

fn fs_kind(sb: &Superblock) -> FsKind {
    let ext3_incompat = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG;
    let ext3_ro = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR;
    if sb.feature_incompat & !ext3_incompat != 0 || sb.feature_ro_compat & !ext3_ro != 0 {
        FsKind::Ext4
    } else if sb.has_compat(COMPAT_HAS_JOURNAL) {
        FsKind::Ext3
    } else {
        FsKind::Ext2
    }
}

fn is_power_of(mut n: u32, base: u32) -> bool {
    if n == 0 {
        return false;
    }
    while n % base == 0 {
        n /= base;
    }
    n == 1
}

fn group_has_super(sb: &Superblock, g: u32) -> bool {
    if g == 0 {
        return true;
    }
    if sb.has_compat(COMPAT_SPARSE_SUPER2) {
        return g == sb.backup_bgs[0] || g == sb.backup_bgs[1];
    }
    if !sb.has_ro_compat(RO_COMPAT_SPARSE_SUPER) {
        return true;
    }
    g == 1 || is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7)
}

fn sb_err(field: &'static str, value: impl Into<u64>, what: &'static str) -> ExtError {
    ExtError::Superblock {
        field,
        value: value.into(),
        what,
    }
}

pub(super) fn read_image(src: Arc<dyn ReadAt>, opts: &ReadOptions) -> Result<ExtImage, ExtError> {
    let image_len = src.len();
    let mut raw_sb = vec![0u8; Superblock::SIZE];
    src.read_exact_at(SUPERBLOCK_OFFSET, &mut raw_sb)
        .map_err(|source| ExtError::Io {
            offset: SUPERBLOCK_OFFSET,
            len: Superblock::SIZE,
            source,
        })?;
    let sb = Superblock::parse(&raw_sb).map_err(fmt_err("superblock at byte 1024"))?;

    // Features.
    let known_incompat = INCOMPAT_FILETYPE
        | INCOMPAT_RECOVER
        | INCOMPAT_META_BG
        | INCOMPAT_EXTENTS
        | INCOMPAT_64BIT
        | INCOMPAT_MMP
        | INCOMPAT_FLEX_BG
        | INCOMPAT_EA_INODE
        | INCOMPAT_CSUM_SEED
        | INCOMPAT_LARGEDIR
        | INCOMPAT_INLINE_DATA
        | INCOMPAT_ENCRYPT
        | INCOMPAT_CASEFOLD;
    if sb.has_incompat(INCOMPAT_JOURNAL_DEV) {
        return Err(ExtError::Unsupported {
            feature: "journal_dev".into(),
            why: "this is an external journal device, not a filesystem",
        });
    }
    let unknown = sb.feature_incompat & !known_incompat;
    if unknown != 0 {
        return Err(ExtError::Unsupported {
            feature: feature_names(0, unknown, 0).join(","),
            why: "incompatible feature this reader does not implement",
        });
    }

    let bs = sb.block_size().ok_or_else(|| {
        sb_err(
            "s_log_block_size",
            sb.log_block_size,
            "block size must be 1 KiB..64 KiB",
        )
    })?;
    let blocks_count = sb.blocks_count();
    let first_data_block = u64::from(sb.first_data_block);
    if blocks_count <= first_data_block {
        return Err(sb_err(
            "s_blocks_count",
            blocks_count,
            "not above s_first_data_block",
        ));
    }
    if blocks_count.checked_mul(u64::from(bs)).is_none() {
        return Err(sb_err(
            "s_blocks_count",
            blocks_count,
            "filesystem size overflows 64 bits",
        ));
    }
    let bpg = sb.blocks_per_group;
    let cluster_ratio = if sb.has_ro_compat(RO_COMPAT_BIGALLOC) {
        if sb.log_cluster_size < sb.log_block_size || sb.log_cluster_size - sb.log_block_size > 16 {
            return Err(sb_err(
                "s_log_cluster_size",
                sb.log_cluster_size,
                "bad cluster size",
            ));
        }
        1u64 << (sb.log_cluster_size - sb.log_block_size)
    } else {
        1
    };
    if bpg == 0 || u64::from(bpg) > 8 * u64::from(bs) * cluster_ratio {
        return Err(sb_err(
            "s_blocks_per_group",
            bpg,
            "must be 1..=8 * block size (clusters)",
        ));
    }
    let ipg = sb.inodes_per_group;
    if ipg == 0 || ipg > 8 * bs {
        return Err(sb_err(
            "s_inodes_per_group",
            ipg,
            "must be 1..=8 * block size",
        ));
    }
    let inode_size = sb.inode_size();
    if inode_size < 128 || !inode_size.is_power_of_two() || u32::from(inode_size) > bs {
        return Err(sb_err(
            "s_inode_size",
            inode_size,
            "must be a power of two between 128 and the block size",
        ));
    }
    let groups64 = (blocks_count - first_data_block).div_ceil(u64::from(bpg));
    let desc_size = usize::from(sb.desc_size());
    if sb.has_incompat(INCOMPAT_64BIT)
        && (!(64..=1024).contains(&desc_size) || !desc_size.is_power_of_two())
    {
        return Err(sb_err(
            "s_desc_size",
            desc_size as u64,
            "must be a power of two from 64 to 1024 with 64bit",
        ));
    }
    if groups64.saturating_mul(desc_size as u64) > image_len {
        return Err(sb_err(
            "s_blocks_count",
            blocks_count,
            "needs more group descriptors than the image could hold",
        ));
    }
    let groups = u32::try_from(groups64)
        .map_err(|_| sb_err("s_blocks_count", blocks_count, "too many block groups"))?;
    if u64::from(sb.inodes_count) > u64::from(groups) * u64::from(ipg) || sb.inodes_count < ROOT_INO
    {
        return Err(sb_err(
            "s_inodes_count",
            sb.inodes_count,
            "does not match groups * inodes per group",
        ));
    }

    let csum = sb.has_ro_compat(RO_COMPAT_METADATA_CSUM);
    let mut checksum_errors = Vec::new();
    if csum && opts.verify_checksums {
        let computed = Superblock::compute_checksum(&raw_sb);
        if computed != sb.checksum {
            let what = format!(
                "superblock: stored {:#x}, computed {computed:#x}",
                sb.checksum
            );
            if opts.strict_checksums {
                return Err(ExtError::Checksum { what });
            }
            checksum_errors.push(what);
        }
    }

    let itable_blocks = (u64::from(ipg) * u64::from(inode_size)).div_ceil(u64::from(bs));
    let fs_bytes = (blocks_count * u64::from(bs)).min(image_len);
    let budget_total = fs_bytes.saturating_mul(4).saturating_add(1 << 20);
    let mut r = Reader {
        src: src.clone(),
        opts: opts.clone(),
        bs,
        blocks_count,
        inode_size: usize::from(inode_size),
        ipg,
        inodes_count: sb.inodes_count,
        inode_tables: Vec::new(),
        itable_blocks,
        csum,
        csum_seed: sb.csum_seed(),
        filetype: sb.has_incompat(INCOMPAT_FILETYPE),
        budget: budget_total,
        budget_total,
        itable_cache: HashMap::new(),
        checksum_errors,
        warnings: Vec::new(),
    };

    // Group descriptors ("Block Group Descriptors"; meta_bg layout in "Meta Block Groups").
    let dpb = bs as usize / desc_size;
    let mut tables = Vec::with_capacity(groups as usize);
    let mut gdt_block_data: Option<(u64, Vec<u8>)> = None;
    let gdt_csum = sb.has_ro_compat(RO_COMPAT_GDT_CSUM) || csum;
    for g in 0..groups {
        let gdt_index = g as usize / dpb;
        let blk = if !sb.has_incompat(INCOMPAT_META_BG)
            || (gdt_index as u64) < u64::from(sb.first_meta_bg)
        {
            // The superblock's block: 1 for 1 KiB blocks even when s_first_data_block is 0 (bigalloc).
            let sb_block = if first_data_block == 0 && bs == 1024 {
                1
            } else {
                first_data_block
            };
            sb_block + 1 + gdt_index as u64
        } else {
            let mg_first = (gdt_index * dpb) as u32;
            first_data_block
                + u64::from(mg_first) * u64::from(bpg)
                + u64::from(group_has_super(&sb, mg_first))
        };
        if gdt_block_data.as_ref().map(|(b, _)| *b) != Some(blk) {
            let data = r
                .read_block(blk, 0, &format!("group descriptor table for group {g}"))
                .map_err(|e| ExtError::Group {
                    group: g,
                    what: format!("descriptor block {blk}: {e}"),
                })?;
            gdt_block_data = Some((blk, data));
        }
        let Some((_, data)) = gdt_block_data.as_ref() else {
            continue;
        };
        let at = (g as usize % dpb) * desc_size;
        let raw = data
            .get(at..at + desc_size)
            .ok_or_else(|| ExtError::Group {
                group: g,
                what: "descriptor outside its block".into(),
            })?;
        let gd =
            GroupDesc::parse(raw, desc_size).map_err(fmt_err(format!("group descriptor {g}")))?;
        if gdt_csum && opts.verify_checksums {
            let computed = GroupDesc::compute_checksum(&sb, g, raw);
            if computed != gd.checksum {
                r.checksum_mismatch(format!(
                    "group descriptor {g}: stored {:#x}, computed {computed:#x}",
                    gd.checksum
                ))?;
            }
        }
        tables.push(gd.inode_table());
    }
    r.inode_tables = tables;

    // Journal.
    let mut journal = None;
    if sb.has_compat(COMPAT_HAS_JOURNAL) && sb.journal_inum != 0 {
        match read_journal(&mut r, sb.journal_inum) {
            Ok(j) => journal = Some(j),
            Err(e) => r.warn(format!("journal inode {}: {e}", sb.journal_inum)),
        }
    }
    let needs_recovery =
        sb.has_incompat(INCOMPAT_RECOVER) || journal.as_ref().is_some_and(|j| j.start != 0);
    if needs_recovery {
        tracing::warn!("the journal needs recovery; reading the un-replayed filesystem");
    }

    let tree = build_tree(&mut r)?;

    let info = FsInfo {
        kind: fs_kind(&sb),
        block_size: bs,
        inode_size,
        blocks_count,
        free_blocks: sb.free_blocks_count(),
        inodes_count: sb.inodes_count,
        free_inodes: sb.free_inodes_count,
        groups,
        features: (sb.feature_compat, sb.feature_incompat, sb.feature_ro_compat),
        feature_names: feature_names(sb.feature_compat, sb.feature_incompat, sb.feature_ro_compat),
        uuid: sb.uuid,
        label: sb.label().to_vec(),
        hash_seed: sb.hash_seed,
        def_hash_version: sb.def_hash_version,
        mkfs_time: i64::from(sb.mkfs_time) | (i64::from(sb.mkfs_time_hi) << 32),
        needs_recovery,
        journal,
        checksum_errors: std::mem::take(&mut r.checksum_errors),
        warnings: std::mem::take(&mut r.warnings),
    };
    Ok(ExtImage { tree, info })
}

fn read_journal(r: &mut Reader, jino: u32) -> Result<JournalInfo, ExtError> {
    let ri = r.read_inode(jino)?;
    let runs = r.map_blocks(&ri, 1)?;
    let first = runs
        .first()
        .filter(|run| run.logical == 0)
        .ok_or_else(|| ino_err(jino, "journal has no first block"))?;
    let raw = r.read_at(first.physical * u64::from(r.bs), JournalSuperblock::SIZE)?;
    let j = JournalSuperblock::parse(&raw)
        .map_err(fmt_err(format!("journal inode {jino} superblock")))?;
    Ok(JournalInfo {
        inode: jino,
        size: ri.inode.size(),
        block_size: j.blocksize,
        version: if j.blocktype == JBD2_SUPERBLOCK_V2 {
            2
        } else {
            1
        },
        sequence: j.sequence,
        start: j.start,
    })
}

/// Where each directory read so far hangs: its parent and its name, so that a path is spelt out
/// only for an error message. Holding each directory's full path instead costs memory quadratic
/// in the depth (a chain of directories 100,000 deep holds 10^10 bytes of paths).
#[derive(Default)]
struct DirNames {
    of: HashMap<NodeId, (NodeId, Vec<u8>)>,
}

impl DirNames {
    /// The path of `name` in directory `dir` (the root is `/`).
    fn path(&self, dir: NodeId, name: &[u8]) -> String {
        let mut parts: Vec<&[u8]> = vec![name];
        let mut cur = dir;
        while let Some((parent, n)) = self.of.get(&cur) {
            parts.push(n);
            cur = *parent;
        }
        let mut p = Vec::new();
        for part in parts.iter().rev() {
            p.push(b'/');
            p.extend_from_slice(part);
        }
        String::from_utf8_lossy(&p).into_owned()
    }
}

fn build_tree(r: &mut Reader) -> Result<Tree, ExtError> {
    let root = r.read_inode(ROOT_INO)?;
    if u32::from(root.inode.mode) & 0o170000 != 0o040000 {
        return Err(ino_err(
            ROOT_INO,
            format!(
                "root inode is not a directory (mode {:#o})",
                root.inode.mode
            ),
        ));
    }
    let root_node = r.build_node(&root)?;
    let mut tree = Tree::new(root_node.meta.clone());
    tree.node_mut(tree.root()).source_ino = u64::from(ROOT_INO);
    let mut node_of: HashMap<u32, NodeId> = HashMap::new();
    node_of.insert(ROOT_INO, tree.root());
    let mut stack: Vec<(RawInode, NodeId)> = vec![(root, tree.root())];
    let mut names = DirNames::default();
    let mut encrypted_dirs = 0usize;
    while let Some((dri, dir_id)) = stack.pop() {
        if dri.inode.flags & INODE_FLAG_ENCRYPT != 0 {
            encrypted_dirs += 1;
        }
        let entries = r.read_dir(&dri)?;
        for (name, cino) in entries {
            let shown = || names.path(dir_id, &name);
            if let Some(&nid) = node_of.get(&cino) {
                if matches!(tree.node(nid).kind, NodeKind::Directory(_)) {
                    return Err(ExtError::DirectoryCycle {
                        ino: u64::from(cino),
                        path: shown(),
                    });
                }
                tree.attach(dir_id, &name, nid)
                    .map_err(|source| ExtError::Tree {
                        place: shown(),
                        source,
                    })?;
                continue;
            }
            let cri = r.read_inode(cino).map_err(|e| match e {
                ExtError::Inode { ino, what } => ExtError::Inode {
                    ino,
                    what: format!("{what} (named by {})", shown()),
                },
                e => e,
            })?;
            if cri.inode.mode == 0 || cri.inode.links_count == 0 && cri.inode.dtime != 0 {
                return Err(ino_err(
                    cino,
                    format!("{} names a deleted or unused inode", shown()),
                ));
            }
            let node = r.build_node(&cri)?;
            let is_dir = matches!(node.kind, NodeKind::Directory(_));
            let nid = tree.add_node(node);
            node_of.insert(cino, nid);
            tree.attach(dir_id, &name, nid)
                .map_err(|source| ExtError::Tree {
                    place: shown(),
                    source,
                })?;
            if is_dir {
                names.of.insert(nid, (dir_id, name));
                stack.push((cri, nid));
            }
        }
    }
    if encrypted_dirs > 0 {
        r.warn(format!(
            "{encrypted_dirs} encrypted directories: their entries are named encrypted-<sha256 of the ciphertext name>, contents are ciphertext"
        ));
    }
    Ok(tree)
}
