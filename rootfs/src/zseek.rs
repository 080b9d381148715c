//! Seekable zstd: independent zstd frames followed by a seek table.
//!
//! Format (zstd `contrib/seekable_format/zstd_seekable_compression_format.md`, v0.1.0):
//! the payload is a sequence of ordinary zstd frames, each compressing one fixed-size chunk of
//! the input (the last may be shorter); after them comes one *skippable frame*
//! (magic `0x184D2A5E`, then a little-endian u32 length) whose content is the seek table:
//! one entry per frame (`Compressed_Size` u32, `Decompressed_Size` u32, and, when the checksum
//! flag is set, `Checksum` u32 = low 32 bits of XXH64(seed 0) of the frame's decompressed data),
//! then the 9-byte `Seek_Table_Footer`: `Number_Of_Frames` u32, `Seek_Table_Descriptor` u8
//! (bit 7 = checksum flag, bits 6..2 reserved and zero), `Seekable_Magic_Number` u32 `0x8F92EAB1`.
//!
//! Any zstd decoder (`zstd -d`) reads the whole file as an ordinary stream (it skips the
//! skippable frame); our reader uses the table for random access ([`SeekableReader::read_at`])
//! and for decompressing all frames in parallel ([`for_each_frame`]).
//!
//! The writer ([`compress`]) compresses frames on worker threads while the caller's thread reads
//! and writes in order (memory is bounded by a few frames per thread); every frame is compressed on its own with the
//! same parameters, so the output is byte-identical whatever the thread count.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{mpsc, Mutex};

/// Magic number of a skippable frame holding the seek table (spec: "Skippable_Magic_Number").
pub const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// Magic number ending the seek table footer (spec: "Seekable_Magic_Number").
pub const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// Size of the seek table footer in bytes.
pub const FOOTER_SIZE: u64 = 9;
/// Frame size used when the caller has no preference (1 MiB, a multiple of 4096).
pub const DEFAULT_FRAME_SIZE: usize = 1 << 20;
/// Largest decompressed frame size we write or accept (64 MiB): bounds memory per frame.
pub const MAX_FRAME_SIZE: u32 = 64 << 20;
/// Largest number of frames we accept in a seek table (the reference implementation's cap).
pub const MAX_FRAMES: u32 = 0x0800_0000;

/// Errors of the seekable zstd writer and reader.
#[derive(Debug, thiserror::Error)]
pub enum ZseekError {
    /// I/O on the underlying reader or writer failed.
    #[error("seekable zstd: I/O error: {0}")]
    Io(#[from] io::Error),
    /// The file does not end with a seek table (plain zstd output, for instance).
    #[error("seekable zstd: no seek table: the last 4 bytes at offset {offset} are {found:#010x}, not the seekable magic 0x8F92EAB1 (plain zstd stream? recompress with the seekable writer)")]
    NotSeekable { offset: u64, found: u32 },
    /// The file is too short to hold a seek table.
    #[error("seekable zstd: file of {len} bytes is too short for a seek table")]
    TooShort { len: u64 },
    /// A field of the seek table is invalid.
    #[error("seekable zstd: invalid seek table at offset {offset}: {what}")]
    BadTable { offset: u64, what: String },
    /// A frame failed to decompress or does not match its seek table entry.
    #[error("seekable zstd: frame {index} at compressed offset {offset}: {what}")]
    BadFrame {
        index: usize,
        offset: u64,
        what: String,
    },
    /// A parameter given by the caller is out of range.
    #[error("seekable zstd: invalid parameter: {0}")]
    Param(String),
    /// A read past the end of the decompressed data.
    #[error("seekable zstd: read at {offset} past the end ({size} bytes)")]
    OutOfRange { offset: u64, size: u64 },
    /// The per-frame callback returned an error.
    #[error("seekable zstd: frame {index}: {message}")]
    Callback { index: usize, message: String },
}

/// One seek table entry, with the offsets derived from the entries before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEntry {
    /// Offset of the frame in the compressed file.
    pub compressed_offset: u64,
    /// Size of the compressed frame in bytes.
    pub compressed_size: u32,
    /// Offset of the frame's data in the decompressed stream.
    pub decompressed_offset: u64,
    /// Size of the frame's decompressed data.
    pub decompressed_size: u32,
    /// Low 32 bits of XXH64 of the decompressed data, if the table carries checksums.
    pub checksum: Option<u32>,
}

/// A parsed (or freshly written) seek table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeekTable {
    /// The frames, in file order.
    pub frames: Vec<FrameEntry>,
    /// Whether each entry carries a checksum (descriptor bit 7).
    pub has_checksums: bool,
}

impl SeekTable {
    /// Total decompressed size.
    pub fn decompressed_size(&self) -> u64 {
        self.frames.last().map_or(0, |f| {
            f.decompressed_offset + u64::from(f.decompressed_size)
        })
    }

    /// Total size of the compressed frames (without the seek table frame).
    pub fn compressed_frames_size(&self) -> u64 {
        self.frames
            .last()
            .map_or(0, |f| f.compressed_offset + u64::from(f.compressed_size))
    }

    /// Size of the whole skippable frame that holds this table.
    pub fn table_frame_size(&self) -> u64 {
        let entry = if self.has_checksums { 12 } else { 8 };
        8 + self.frames.len() as u64 * entry + FOOTER_SIZE
    }

    /// Index of the frame holding decompressed offset `offset`, if any.
    pub fn frame_at(&self, offset: u64) -> Option<usize> {
        let idx = self
            .frames
            .partition_point(|f| f.decompressed_offset + u64::from(f.decompressed_size) <= offset);
        (idx < self.frames.len()).then_some(idx)
    }

    /// Serializes the table as a skippable frame (spec "Seek Table Format").
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.table_frame_size()).unwrap_or(0));
        out.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        let content = self.table_frame_size() - 8;
        out.extend_from_slice(&(content as u32).to_le_bytes());
        for f in &self.frames {
            out.extend_from_slice(&f.compressed_size.to_le_bytes());
            out.extend_from_slice(&f.decompressed_size.to_le_bytes());
            if self.has_checksums {
                out.extend_from_slice(&f.checksum.unwrap_or(0).to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        out.push(if self.has_checksums { 0x80 } else { 0 });
        out.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
        out
    }

    /// Reads and validates the seek table at the end of `src` (whose total length is `len`).
    ///
    /// Checks: footer magic, reserved descriptor bits, frame count against the file length and
    /// [`MAX_FRAMES`], the skippable frame header that must enclose exactly the table, each
    /// entry's sizes (non-zero compressed size, decompressed size at most [`MAX_FRAME_SIZE`]),
    /// and that the frames exactly fill the file up to the table.
    pub fn read_from<R: Read + Seek>(src: &mut R) -> Result<SeekTable, ZseekError> {
        let len = src.seek(SeekFrom::End(0))?;
        if len < 8 + FOOTER_SIZE {
            return Err(ZseekError::TooShort { len });
        }
        let mut footer = [0u8; 9];
        src.seek(SeekFrom::Start(len - FOOTER_SIZE))?;
        src.read_exact(&mut footer)?;
        let magic = u32::from_le_bytes([footer[5], footer[6], footer[7], footer[8]]);
        if magic != SEEKABLE_MAGIC {
            return Err(ZseekError::NotSeekable {
                offset: len - 4,
                found: magic,
            });
        }
        let nframes = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]);
        let desc = footer[4];
        if desc & 0x7c != 0 {
            return Err(ZseekError::BadTable {
                offset: len - 5,
                what: format!("reserved bits set in descriptor {desc:#04x}"),
            });
        }
        let has_checksums = desc & 0x80 != 0;
        let entry_size: u64 = if has_checksums { 12 } else { 8 };
        if nframes > MAX_FRAMES {
            return Err(ZseekError::BadTable {
                offset: len - FOOTER_SIZE,
                what: format!("{nframes} frames exceeds the limit {MAX_FRAMES}"),
            });
        }
        let table_size = u64::from(nframes) * entry_size + FOOTER_SIZE;
        let frame_size = table_size + 8;
        if frame_size > len {
            return Err(ZseekError::BadTable {
                offset: len - FOOTER_SIZE,
                what: format!(
                    "{nframes} frames need a {frame_size}-byte table but the file has {len} bytes"
                ),
            });
        }
        let table_start = len - frame_size;
        let mut header = [0u8; 8];
        src.seek(SeekFrom::Start(table_start))?;
        src.read_exact(&mut header)?;
        let hmagic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let hsize = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if hmagic != SKIPPABLE_MAGIC {
            return Err(ZseekError::BadTable {
                offset: table_start,
                what: format!(
                    "skippable frame magic is {hmagic:#010x}, expected {SKIPPABLE_MAGIC:#010x}"
                ),
            });
        }
        if u64::from(hsize) != table_size {
            return Err(ZseekError::BadTable {
                offset: table_start + 4,
                what: format!(
                    "skippable frame size {hsize} does not match the table size {table_size}"
                ),
            });
        }
        // table_size is bounded by the file length, which we could read; read entries in chunks
        // to avoid trusting it for one big allocation beyond what the file holds.
        let mut raw =
            vec![
                0u8;
                usize::try_from(table_size - FOOTER_SIZE).map_err(|_| ZseekError::BadTable {
                    offset: table_start,
                    what: "table too large for this platform".into(),
                })?
            ];
        src.read_exact(&mut raw)?;
        let mut frames = Vec::with_capacity(nframes as usize);
        let mut coff = 0u64;
        let mut doff = 0u64;
        for (i, e) in raw.chunks_exact(entry_size as usize).enumerate() {
            let at = table_start + 8 + i as u64 * entry_size;
            let csize = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let dsize = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            let checksum = if has_checksums {
                Some(u32::from_le_bytes([e[8], e[9], e[10], e[11]]))
            } else {
                None
            };
            if csize == 0 {
                return Err(ZseekError::BadTable {
                    offset: at,
                    what: format!("frame {i} has compressed size 0"),
                });
            }
            if dsize > MAX_FRAME_SIZE {
                return Err(ZseekError::BadTable {
                    offset: at + 4,
                    what: format!(
                        "frame {i} decompressed size {dsize} exceeds the limit {MAX_FRAME_SIZE}"
                    ),
                });
            }
            frames.push(FrameEntry {
                compressed_offset: coff,
                compressed_size: csize,
                decompressed_offset: doff,
                decompressed_size: dsize,
                checksum,
            });
            coff += u64::from(csize);
            doff += u64::from(dsize);
            if coff > table_start {
                return Err(ZseekError::BadTable {
                    offset: at,
                    what: format!("frame {i} ends at {coff}, past the seek table at {table_start}"),
                });
            }
        }
        if coff != table_start {
            return Err(ZseekError::BadTable {
                offset: table_start,
                what: format!(
                    "frames cover {coff} bytes but the seek table starts at {table_start}"
                ),
            });
        }
        Ok(SeekTable {
            frames,
            has_checksums,
        })
    }
}

/// XXH64 (seed 0 or other), used for the seek table checksums (the `xxhash-rust` crate).
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh64::xxh64(data, seed)
}

fn seek_checksum(data: &[u8]) -> u32 {
    xxh64(data, 0) as u32
}

thread_local! {
    /// One compression context per worker thread, with the level it was set up for.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    /// One decompression context per worker thread.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's compressor for `level` (content size and checksum enabled).
fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> io::Result<T>,
) -> io::Result<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !matches!(slot.as_ref(), Some((l, _)) if *l == level) {
            let mut z = zstd::bulk::Compressor::new(level)?;
            z.include_checksum(true)?;
            z.include_contentsize(true)?;
            *slot = Some((level, z));
        }
        match slot.as_mut() {
            Some((_, z)) => f(z),
            None => Err(io::Error::other("no compression context")),
        }
    })
}

/// The content checksum stored at the end of a zstd frame (RFC 8878 section 3.1.1:
/// the low 32 bits of XXH64 of the content, seed 0), if the frame header says it has one.
/// `frame` must be exactly one frame.
fn frame_checksum(frame: &[u8]) -> Option<u32> {
    const ZSTD_MAGIC: u32 = 0xFD2F_B528;
    let magic = u32::from_le_bytes(frame.get(0..4)?.try_into().ok()?);
    let descriptor = *frame.get(4)?;
    if magic != ZSTD_MAGIC || descriptor & 0x04 == 0 || frame.len() < 9 {
        return None;
    }
    let tail = frame.get(frame.len() - 4..)?;
    Some(u32::from_le_bytes(tail.try_into().ok()?))
}

/// Reads up to `buf.len()` bytes, stopping early only at end of input.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Compresses `reader` into `writer` as seekable zstd and returns the seek table written.
///
/// `frame_size` is the decompressed size of every frame but the last (1..=[`MAX_FRAME_SIZE`];
/// use a multiple of 4096 so that dm-verity hashing can run per frame); `level` is the zstd
/// level; `threads` (0 = all cores) only changes speed, never the output. Frames carry zstd's
/// own content checksum and the seek table carries checksums too.
pub fn compress<R: Read, W: Write>(
    reader: R,
    writer: W,
    frame_size: usize,
    level: i32,
    threads: usize,
) -> Result<SeekTable, ZseekError> {
    compress_with(
        reader,
        writer,
        frame_size,
        level,
        threads,
        |_, _, _| (),
        |_, _, ()| Ok(()),
    )
}

/// [`compress`] with two hooks, so that a caller can hash the raw bytes in the same pass:
/// `work(index, offset, raw)` runs on the compression worker of each frame (in parallel, any
/// order) and `consume(index, raw, work_result)` runs on the calling thread for every frame in
/// order, just before its compressed bytes are written. An error from `consume` stops the pass.
///
/// A frame whose bytes are all zero (free space of a file system image) is not compressed
/// again: each worker keeps the frame zstd made the first time for that length, so the output
/// is the same as compressing it.
pub fn compress_with<R, W, T, M, C>(
    mut reader: R,
    mut writer: W,
    frame_size: usize,
    level: i32,
    threads: usize,
    work: M,
    mut consume: C,
) -> Result<SeekTable, ZseekError>
where
    R: Read,
    W: Write,
    T: Send,
    M: Fn(usize, u64, &[u8]) -> T + Sync,
    C: FnMut(usize, &[u8], T) -> Result<(), ZseekError>,
{
    if frame_size == 0 || frame_size > MAX_FRAME_SIZE as usize {
        return Err(ZseekError::Param(format!(
            "frame size {frame_size} not in 1..={MAX_FRAME_SIZE}"
        )));
    }
    let threads = if threads == 0 {
        rayon::current_num_threads().max(1)
    } else {
        threads
    };
    let mut table = SeekTable {
        frames: Vec::new(),
        has_checksums: true,
    };
    let mut coff = 0u64;
    let mut doff = 0u64;
    // This thread reads frames and writes finished ones in order while `threads` workers
    // compress; at most `in_flight` frames are read but not yet written.
    let in_flight = (threads * 4).max(8);
    /// A frame's input and its compressed bytes with their seek-table checksum.
    type Compressed<T> = (Vec<u8>, io::Result<(Vec<u8>, u32)>, Option<T>);
    type Done<T> = (usize, Vec<u8>, io::Result<(Vec<u8>, u32)>, Option<T>);
    let (job_tx, job_rx) = mpsc::sync_channel::<(usize, u64, Vec<u8>)>(in_flight);
    let (done_tx, done_rx) = mpsc::sync_channel::<Done<T>>(in_flight);
    let work = &work;
    let job_rx = Mutex::new(job_rx);
    let job_rx = &job_rx;
    std::thread::scope(|scope| -> Result<(), ZseekError> {
        // Owned by this closure: an early return drops them, which stops the workers.
        let job_tx = job_tx;
        let done_rx = done_rx;
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            scope.spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok((i, off, chunk)) = job else { return };
                // A panic must not leave the writer waiting for this frame forever: it becomes
                // this frame's error.
                let (result, extra) =
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        (compress_frame(level, &chunk), work(i, off, &chunk))
                    })) {
                        Ok((r, e)) => (r, Some(e)),
                        Err(p) => (
                            Err(io::Error::other(format!(
                                "compression worker panicked on frame {i}: {}",
                                panic_text(&*p)
                            ))),
                            None,
                        ),
                    };
                if done_tx.send((i, chunk, result, extra)).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        let mut free: Vec<Vec<u8>> = Vec::new();
        let mut pending: std::collections::BTreeMap<usize, Compressed<T>> =
            std::collections::BTreeMap::new();
        let (mut next_read, mut next_write, mut outstanding) = (0usize, 0usize, 0usize);
        let mut read_off = 0u64;
        let mut eof = false;
        loop {
            if !eof && outstanding < in_flight {
                let mut buf = free.pop().unwrap_or_default();
                buf.resize(frame_size, 0);
                let n = read_full(&mut reader, &mut buf)?;
                if n < frame_size {
                    eof = true;
                }
                if n == 0 {
                    continue;
                }
                buf.truncate(n);
                if next_read as u64 >= u64::from(MAX_FRAMES) {
                    return Err(ZseekError::Param(format!(
                        "more than {MAX_FRAMES} frames; use a larger frame size"
                    )));
                }
                let off = read_off;
                read_off += n as u64;
                if job_tx.send((next_read, off, buf)).is_err() {
                    return Err(ZseekError::Param(
                        "a compression worker stopped early".into(),
                    ));
                }
                next_read += 1;
                outstanding += 1;
                continue;
            }
            if outstanding == 0 {
                return Ok(());
            }
            let Ok((i, chunk, result, extra)) = done_rx.recv() else {
                return Err(ZseekError::Param(
                    "a compression worker stopped early".into(),
                ));
            };
            pending.insert(i, (chunk, result, extra));
            while let Some((chunk, result, extra)) = pending.remove(&next_write) {
                let (out, sum) = result?;
                let Some(extra) = extra else {
                    return Err(ZseekError::Param(format!(
                        "frame {next_write}: no worker result"
                    )));
                };
                consume(next_write, &chunk, extra)?;
                writer.write_all(&out)?;
                let csize = u32::try_from(out.len())
                    .map_err(|_| ZseekError::Param("compressed frame larger than 4 GiB".into()))?;
                table.frames.push(FrameEntry {
                    compressed_offset: coff,
                    compressed_size: csize,
                    decompressed_offset: doff,
                    decompressed_size: chunk.len() as u32,
                    checksum: Some(sum),
                });
                coff += out.len() as u64;
                doff += chunk.len() as u64;
                free.push(chunk);
                next_write += 1;
                outstanding -= 1;
            }
        }
    })?;
    writer.write_all(&table.to_bytes())?;
    writer.flush()?;
    tracing::debug!(
        frames = table.frames.len(),
        bytes = doff,
        compressed = coff,
        "seekable zstd written"
    );
    Ok(table)
}

/// Whether every byte of `data` is zero (64 bytes at a time, which the compiler vectorises,
/// stopping at the first block that is not).
pub fn is_all_zero(data: &[u8]) -> bool {
    let mut blocks = data.chunks_exact(64);
    blocks
        .by_ref()
        .all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
        && blocks.remainder().iter().all(|&b| b == 0)
}

/// The message of a caught panic, when it is a string.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// A compressed all-zero frame: (level, length, frame bytes, seek-table checksum).
type ZeroFrame = (i32, usize, Vec<u8>, u32);

thread_local! {
    /// The last all-zero frame this worker compressed: (level, length, frame, checksum).
    static ZERO_FRAME: std::cell::RefCell<Option<ZeroFrame>> =
        const { std::cell::RefCell::new(None) };
}

/// Compresses one frame with this thread's context; an all-zero frame reuses the bytes zstd
/// made for the previous all-zero frame of the same length and level (identical output).
fn compress_frame(level: i32, chunk: &[u8]) -> io::Result<(Vec<u8>, u32)> {
    let zero = is_all_zero(chunk);
    if zero {
        let cached = ZERO_FRAME.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|(l, n, _, _)| *l == level && *n == chunk.len())
                .map(|(_, _, f, s)| (f.clone(), *s))
        });
        if let Some(hit) = cached {
            return Ok(hit);
        }
    }
    let out = with_compressor(level, |z| z.compress(chunk))?;
    let sum = frame_checksum(&out).unwrap_or_else(|| seek_checksum(chunk));
    if zero {
        ZERO_FRAME.with(|c| *c.borrow_mut() = Some((level, chunk.len(), out.clone(), sum)));
    }
    Ok((out, sum))
}

/// Compresses one frame exactly as [`compress`] does (same zstd parameters: content size and
/// checksum in the frame header, this `level`), returning the frame's bytes and its seek-table
/// checksum: rebuilding a frame elsewhere (a delta pull) gives the same bytes the writer wrote.
pub fn compress_one_frame(level: i32, data: &[u8]) -> Result<(Vec<u8>, u32), ZseekError> {
    if data.len() > MAX_FRAME_SIZE as usize {
        return Err(ZseekError::Param(format!(
            "frame of {} bytes exceeds the limit {MAX_FRAME_SIZE}",
            data.len()
        )));
    }
    Ok(compress_frame(level, data)?)
}

/// Decompresses one frame's bytes and checks them against its entry.
pub fn decompress_frame(
    index: usize,
    entry: &FrameEntry,
    src: &[u8],
) -> Result<Vec<u8>, ZseekError> {
    let mut out = Vec::new();
    decompress_frame_into(index, entry, src, &mut out)?;
    Ok(out)
}

/// Like [`decompress_frame`], into a reused buffer (cleared first).
fn decompress_frame_into(
    index: usize,
    entry: &FrameEntry,
    src: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ZseekError> {
    let bad = |what: String| ZseekError::BadFrame {
        index,
        offset: entry.compressed_offset,
        what,
    };
    if src.len() != entry.compressed_size as usize {
        return Err(bad(format!(
            "have {} compressed bytes, table says {}",
            src.len(),
            entry.compressed_size
        )));
    }
    match zstd::zstd_safe::find_frame_compressed_size(src) {
        Ok(n) if n == src.len() => {}
        Ok(n) => {
            return Err(bad(format!(
                "zstd frame is {n} bytes but the table entry is {} bytes",
                src.len()
            )))
        }
        Err(code) => {
            return Err(bad(format!(
                "not a zstd frame: {}",
                zstd::zstd_safe::get_error_name(code)
            )))
        }
    }
    let cap = entry.decompressed_size as usize;
    out.clear();
    out.reserve(cap);
    DECOMPRESSOR.with(|cell| -> Result<(), ZseekError> {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| bad(e.to_string()))?);
        }
        match slot.as_mut() {
            Some(d) => d
                .decompress_to_buffer(src, &mut *out)
                .map(|_| ())
                .map_err(|e| bad(format!("decompression failed: {e}"))),
            None => Err(bad("no decompression context".into())),
        }
    })?;
    if out.len() != cap {
        return Err(bad(format!(
            "decompressed to {} bytes, table says {cap}",
            out.len()
        )));
    }
    if let Some(sum) = entry.checksum {
        // When the frame carries zstd's content checksum, the decompressor has already
        // verified it against the data; the seek-table checksum is the low 32 bits of that
        // same XXH64, so comparing the two stored values is enough.
        let got = frame_checksum(src).unwrap_or_else(|| seek_checksum(out));
        if got != sum {
            return Err(bad(format!(
                "checksum {got:#010x} does not match the table's {sum:#010x}"
            )));
        }
    }
    Ok(())
}

/// Random access to a seekable zstd file.
pub struct SeekableReader<R> {
    src: R,
    table: SeekTable,
    cache: Option<(usize, Vec<u8>)>,
}

impl<R: Read + Seek> SeekableReader<R> {
    /// Opens `src`, reading and validating its seek table.
    pub fn new(mut src: R) -> Result<Self, ZseekError> {
        let table = SeekTable::read_from(&mut src)?;
        Ok(SeekableReader {
            src,
            table,
            cache: None,
        })
    }

    /// The seek table.
    pub fn table(&self) -> &SeekTable {
        &self.table
    }

    /// Total decompressed size.
    pub fn size(&self) -> u64 {
        self.table.decompressed_size()
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.src
    }

    fn load(&mut self, index: usize) -> Result<&[u8], ZseekError> {
        if self.cache.as_ref().map(|c| c.0) != Some(index) {
            let entry = self.table.frames[index];
            self.src.seek(SeekFrom::Start(entry.compressed_offset))?;
            let mut buf = vec![0u8; entry.compressed_size as usize];
            self.src.read_exact(&mut buf)?;
            let data = decompress_frame(index, &entry, &buf)?;
            self.cache = Some((index, data));
        }
        Ok(self.cache.as_ref().map(|c| c.1.as_slice()).unwrap_or(&[]))
    }

    /// Reads decompressed bytes at `offset` into `buf`; returns how many were read (fewer than
    /// `buf.len()` only at the end of the data; 0 at or past the end).
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, ZseekError> {
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let Some(index) = self.table.frame_at(pos) else {
                break;
            };
            let start = self.table.frames[index].decompressed_offset;
            let data = self.load(index)?;
            let within = (pos - start) as usize;
            let avail = data.get(within..).unwrap_or(&[]);
            if avail.is_empty() {
                break;
            }
            let n = avail.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&avail[..n]);
            done += n;
        }
        Ok(done)
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ZseekError> {
        let n = self.read_at(offset, buf)?;
        if n != buf.len() {
            return Err(ZseekError::OutOfRange {
                offset: offset + n as u64,
                size: self.size(),
            });
        }
        Ok(())
    }
}

/// Decompresses every frame of a seekable zstd file in parallel, as a stream, and hands each
/// frame to the caller in order.
///
/// `src` is read sequentially from offset 0 to the end by a reader thread (every byte, seek
/// table included, is passed to `on_compressed` on that thread, so a caller can hash the
/// compressed file concurrently with decompression). For each frame,
/// `map(index, decompressed_offset, data)` runs on one of `threads` worker threads (e.g. block
/// hashing), then `consume(index, decompressed_offset, data, mapped)` runs in frame order on
/// the calling thread. Buffers are reused. Memory: at most `max(4 * threads, 8)` frames in
/// flight (compressed and decompressed).
pub fn for_each_frame<R, T, M, C, H>(
    src: &mut R,
    table: &SeekTable,
    threads: usize,
    map: M,
    mut consume: C,
    mut on_compressed: H,
) -> Result<(), ZseekError>
where
    R: Read + Send,
    T: Send,
    M: Fn(usize, u64, &[u8]) -> T + Sync,
    C: FnMut(usize, u64, &[u8], T) -> Result<(), String> + Send,
    H: FnMut(&[u8]) + Send,
{
    let threads = if threads == 0 {
        rayon::current_num_threads().max(1)
    } else {
        threads
    };
    let n = table.frames.len();
    // Frames in flight (read, queued, decompressing, waiting to be consumed): the reader takes
    // a token before reading a frame and the consumer gives it back after `consume`, so memory
    // stays bounded whatever the relative speeds.
    let in_flight = (threads * 4).max(8);
    type Job = (usize, Vec<u8>);
    type Done<T> = Result<(usize, Vec<u8>, Vec<u8>, T), ZseekError>;
    let (token_tx, token_rx) = mpsc::sync_channel::<Vec<u8>>(in_flight);
    for _ in 0..in_flight {
        // Cannot fail: the channel has room for exactly `in_flight` tokens.
        let _ = token_tx.send(Vec::new());
    }
    let (job_tx, job_rx) = mpsc::sync_channel::<Result<Job, ZseekError>>(in_flight + 1);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::sync_channel::<Done<T>>(in_flight);
    let spare: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let map = &map;
    let spare = &spare;
    let job_rx = &job_rx;
    std::thread::scope(|scope| -> Result<(), ZseekError> {
        // Owned by this closure so that an early return drops them, which stops the reader
        // and the workers (their channel operations fail) before the scope joins them.
        let token_tx = token_tx;
        let done_rx = done_rx;
        // Reader: reads the compressed frames in order and hashes them as they go by.
        scope.spawn(move || {
            let mut read = |i: usize, buf: &mut Vec<u8>| -> Result<(), ZseekError> {
                let e = &table.frames[i];
                buf.clear();
                buf.resize(e.compressed_size as usize, 0);
                src.read_exact(buf).map_err(|err| ZseekError::BadFrame {
                    index: i,
                    offset: e.compressed_offset,
                    what: format!("read failed: {err}"),
                })
            };
            for i in 0..n {
                let Ok(mut buf) = token_rx.recv() else { return };
                if let Err(e) = read(i, &mut buf) {
                    let _ = job_tx.send(Err(e));
                    return;
                }
                on_compressed(&buf);
                if job_tx.send(Ok((i, buf))).is_err() {
                    return;
                }
            }
            // The seek table frame: read it too, so the compressed hash covers the whole file.
            let mut rest = Vec::new();
            match src.read_to_end(&mut rest) {
                Ok(_) => on_compressed(&rest),
                Err(e) => {
                    let _ = job_tx.send(Err(e.into()));
                }
            }
        });
        // Workers: decompress (checking the frame against its entry) and run `map`.
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            scope.spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                let result = job.and_then(|(i, raw)| {
                    let e = &table.frames[i];
                    let mut data = spare
                        .lock()
                        .ok()
                        .and_then(|mut s| s.pop())
                        .unwrap_or_default();
                    decompress_frame_into(i, e, &raw, &mut data)?;
                    // A panic in `map` must not leave the consumer waiting for this frame
                    // forever: it becomes this frame's error.
                    let t = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        map(i, e.decompressed_offset, &data)
                    }))
                    .map_err(|p| ZseekError::Callback {
                        index: i,
                        message: format!("worker panicked: {}", panic_text(&*p)),
                    })?;
                    Ok((i, raw, data, t))
                });
                let failed = result.is_err();
                if done_tx.send(result).is_err() || failed {
                    return;
                }
            });
        }
        drop(done_tx);
        // Consumer (this thread): hands the frames to `consume` in order.
        let mut pending: std::collections::BTreeMap<usize, (Vec<u8>, Vec<u8>, T)> =
            std::collections::BTreeMap::new();
        let mut next = 0usize;
        while next < n {
            let (i, raw, data, t) = match done_rx.recv() {
                Ok(r) => r?,
                Err(_) => {
                    return Err(ZseekError::Param(
                        "seekable zstd: a worker thread stopped early".into(),
                    ))
                }
            };
            pending.insert(i, (raw, data, t));
            while let Some((raw, data, t)) = pending.remove(&next) {
                let off = table.frames[next].decompressed_offset;
                consume(next, off, &data, t).map_err(|message| ZseekError::Callback {
                    index: next,
                    message,
                })?;
                if let Ok(mut s) = spare.lock() {
                    s.push(data);
                }
                // The reader may already be done; a failed send just drops the buffer.
                let _ = token_tx.send(raw);
                next += 1;
            }
        }
        drop(token_tx);
        // Surface a read error on the seek table frame (sent after the last frame).
        while let Ok(r) = done_rx.recv() {
            r?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn sample(n: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 3 == 0 {
                    (x >> 24) as u8
                } else {
                    (i / 100) as u8
                }
            })
            .collect()
    }

    /// A panicking per-frame hook becomes an error naming the frame; neither pass hangs.
    #[test]
    fn panicking_hooks_are_errors_not_hangs() {
        let data = sample(64 * 1024);
        for threads in [1, 2] {
            let mut out = Vec::new();
            let r = compress_with(
                &data[..],
                &mut out,
                4096,
                1,
                threads,
                |i, _, _| {
                    if i == 5 {
                        panic!("boom in compress hook");
                    }
                },
                |_, _, ()| Ok(()),
            );
            let e = r.expect_err("a panicking hook must fail the pass");
            assert!(e.to_string().contains("frame 5"), "{e}");

            let mut z = Vec::new();
            let table = compress(&data[..], &mut z, 4096, 1, threads).unwrap();
            let mut src = Cursor::new(&z[..]);
            let r = for_each_frame(
                &mut src,
                &table,
                threads,
                |i, _, _| {
                    if i == 7 {
                        panic!("boom in map");
                    }
                },
                |_, _, _, ()| Ok(()),
                |_| {},
            );
            let e = r.expect_err("a panicking map must fail the pass");
            assert!(e.to_string().contains("boom in map"), "{e}");
        }
    }

    /// All-zero frames reuse a cached frame: the bytes must be exactly what zstd makes for
    /// them, whatever the thread count; the hooks see every frame once, in order, with its
    /// offset and bytes.
    #[test]
    fn zero_frames_and_hooks() {
        let fs = 8192;
        let mut data = sample(fs);
        data.extend_from_slice(&vec![0u8; 3 * fs]);
        data.extend_from_slice(&sample(fs));
        data.extend_from_slice(&vec![0u8; fs / 2]);
        let mut want = Vec::new();
        for c in data.chunks(fs) {
            let mut z = zstd::bulk::Compressor::new(3).unwrap();
            z.include_checksum(true).unwrap();
            z.include_contentsize(true).unwrap();
            want.push(z.compress(c).unwrap());
        }
        for threads in [1, 2, 3] {
            let mut out = Vec::new();
            let mut seen = Vec::new();
            let table = compress_with(
                &data[..],
                &mut out,
                fs,
                3,
                threads,
                |i, off, raw| (i, off, raw.len()),
                |i, raw, (wi, off, len)| {
                    assert_eq!((i, len), (wi, raw.len()));
                    seen.push((off, raw.to_vec()));
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(table.frames.len(), want.len());
            for (e, w) in table.frames.iter().zip(&want) {
                let o = e.compressed_offset as usize;
                assert_eq!(
                    &out[o..o + e.compressed_size as usize],
                    &w[..],
                    "{threads} threads"
                );
            }
            let offs: Vec<u64> = seen.iter().map(|(o, _)| *o).collect();
            assert_eq!(offs, vec![0, 8192, 16384, 24576, 32768, 40960]);
            let joined: Vec<u8> = seen.iter().flat_map(|(_, r)| r.iter().copied()).collect();
            assert_eq!(joined, data);
        }
    }

    /// One frame compressed alone is byte for byte the frame `compress` wrote (a delta pull
    /// relies on it), zero frames included; a frame above the limit is a parameter error.
    #[test]
    fn compress_one_frame_matches_the_writer() {
        let fs = 16384;
        let mut data = sample(5 * fs + 100);
        data[fs..2 * fs].fill(0);
        let mut z = Vec::new();
        let table = compress(&data[..], &mut z, fs, 5, 2).unwrap();
        for (e, chunk) in table.frames.iter().zip(data.chunks(fs)) {
            let (frame, sum) = compress_one_frame(5, chunk).unwrap();
            let o = e.compressed_offset as usize;
            assert_eq!(&z[o..o + e.compressed_size as usize], &frame[..]);
            assert_eq!(Some(sum), e.checksum);
        }
        let big = vec![0u8; MAX_FRAME_SIZE as usize + 1];
        assert!(matches!(
            compress_one_frame(3, &big),
            Err(ZseekError::Param(_))
        ));
    }

    #[test]
    fn frame_checksum_is_the_low_half_of_xxh64() {
        for len in [0usize, 1, 31, 4096, 100_000] {
            let data = sample(len);
            let frame = with_compressor(3, |z| z.compress(&data)).unwrap();
            assert_eq!(
                frame_checksum(&frame),
                Some(seek_checksum(&data)),
                "len {len}"
            );
        }
        let mut plain = zstd::bulk::Compressor::new(3).unwrap();
        plain.include_checksum(false).unwrap();
        let frame = plain.compress(&sample(1000)).unwrap();
        assert_eq!(frame_checksum(&frame), None);
    }

    #[test]
    fn xxh64_known_values() {
        // Reference values from the xxHash project (sanity checks).
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
    }

    #[test]
    fn roundtrip_and_thread_independence() {
        let data = sample(300_000);
        let mut a = Vec::new();
        let ta = compress(&data[..], &mut a, 65536, 3, 1).unwrap();
        let mut b = Vec::new();
        let tb = compress(&data[..], &mut b, 65536, 3, 4).unwrap();
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        assert_eq!(ta.frames.len(), 5);
        let mut r = SeekableReader::new(Cursor::new(&a)).unwrap();
        assert_eq!(r.table(), &ta);
        let mut buf = vec![0u8; 100_000];
        r.read_exact_at(60_000, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[60_000..160_000]);
        assert_eq!(r.read_at(299_990, &mut buf).unwrap(), 10);
        assert_eq!(r.read_at(400_000, &mut buf).unwrap(), 0);
        // zstd's own frame checksum equals our seek table checksum.
        let f0 = &a[..ta.frames[0].compressed_size as usize];
        assert_eq!(
            &f0[f0.len() - 4..],
            &ta.frames[0].checksum.unwrap().to_le_bytes()
        );

        let mut out = Vec::new();
        let mut compressed = Vec::new();
        for_each_frame(
            &mut Cursor::new(&a),
            &ta,
            3,
            |_, _, d| d.len(),
            |_, _, d, n| {
                assert_eq!(d.len(), n);
                out.extend_from_slice(d);
                Ok(())
            },
            |c| compressed.extend_from_slice(c),
        )
        .unwrap();
        assert_eq!(out, data);
        assert_eq!(compressed, a);
    }

    /// Many more frames than the pipeline keeps in flight: order, content, compressed bytes;
    /// and every kind of failure ends the stream with an error instead of hanging.
    #[test]
    fn for_each_frame_streams_in_order_and_stops_on_errors() {
        let data = sample(200 * 4096 + 123);
        let mut z = Vec::new();
        let table = compress(&data[..], &mut z, 4096, 1, 2).unwrap();
        assert_eq!(table.frames.len(), 201);
        let run = |bytes: &[u8], fail_at: Option<usize>| {
            let mut out = Vec::new();
            let mut order = Vec::new();
            let mut compressed = Vec::new();
            let r = for_each_frame(
                &mut Cursor::new(bytes),
                &table,
                2,
                |i, off, d| (i, off, d.len()),
                |i, off, d, t| {
                    assert_eq!(t, (i, off, d.len()));
                    order.push(i);
                    out.extend_from_slice(d);
                    match fail_at {
                        Some(f) if f == i => Err(format!("stop at {i}")),
                        _ => Ok(()),
                    }
                },
                |c| compressed.extend_from_slice(c),
            );
            (r, out, order, compressed)
        };
        let (r, out, order, compressed) = run(&z, None);
        r.unwrap();
        assert_eq!(out, data);
        assert_eq!(order, (0..201).collect::<Vec<_>>());
        assert_eq!(compressed, z);

        let (r, _, order, _) = run(&z, Some(7));
        assert!(
            matches!(r, Err(ZseekError::Callback { index: 7, .. })),
            "{r:?}"
        );
        assert_eq!(order.len(), 8);

        // A flipped byte inside frame 150's compressed data.
        let f = &table.frames[150];
        let mut bad = z.clone();
        bad[(f.compressed_offset + u64::from(f.compressed_size) / 2) as usize] ^= 0x55;
        let (r, _, order, _) = run(&bad, None);
        assert!(
            matches!(r, Err(ZseekError::BadFrame { index: 150, .. })),
            "{r:?}"
        );
        assert!(order.len() <= 150);

        // A seek table checksum that disagrees with the frame's own checksum.
        let mut t2 = table.clone();
        t2.frames[3].checksum = t2.frames[3].checksum.map(|c| c ^ 1);
        let r = for_each_frame(
            &mut Cursor::new(&z),
            &t2,
            2,
            |_, _, _| (),
            |_, _, _, _| Ok(()),
            |_| {},
        );
        assert!(
            matches!(r, Err(ZseekError::BadFrame { index: 3, .. })),
            "{r:?}"
        );

        // The source ends early (truncated in frame 100).
        let cut = table.frames[100].compressed_offset as usize + 3;
        let (r, _, order, _) = run(&z[..cut], None);
        assert!(
            matches!(r, Err(ZseekError::BadFrame { index: 100, .. })),
            "{r:?}"
        );
        // Frames before the failure may or may not have been consumed when the error arrives.
        assert!(order.len() <= 100);
        assert!(order.iter().copied().eq(0..order.len()));
    }

    /// Runs the real `zstd` CLI (Debian package `zstd`); fails loudly if it is missing.
    fn zstd_cli(args: &[&str]) -> std::process::Output {
        std::process::Command::new("zstd")
            .args(args)
            .output()
            .expect("the `zstd` command (Debian package zstd) is required by this test")
    }

    #[test]
    fn zstd_cli_decompresses_our_output() {
        let dir = tempfile::tempdir().unwrap();
        let data = sample(1_000_000);
        let zst = dir.path().join("a.zst");
        let out = dir.path().join("a.out");
        let f = std::fs::File::create(&zst).unwrap();
        compress(&data[..], io::BufWriter::new(f), 131072, 5, 2).unwrap();
        let o = zstd_cli(&[
            "-q",
            "-d",
            "-f",
            zst.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "zstd -d failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(std::fs::read(&out).unwrap(), data);
        // `zstd -t` checks every frame's content checksum too.
        let o = zstd_cli(&["-q", "-t", zst.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "zstd -t failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // An empty input gives a file holding only the seek table, which zstd also accepts.
        let empty = dir.path().join("e.zst");
        compress(&b""[..], std::fs::File::create(&empty).unwrap(), 4096, 3, 1).unwrap();
        let o = zstd_cli(&["-q", "-d", "-c", empty.to_str().unwrap()]);
        assert!(
            o.status.success() && o.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    #[test]
    fn plain_zstd_cli_output_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("p");
        std::fs::write(&raw, sample(200_000)).unwrap();
        let o = zstd_cli(&["-q", "-f", raw.to_str().unwrap()]);
        assert!(o.status.success());
        let zst = std::fs::read(dir.path().join("p.zst")).unwrap();
        let err = SeekableReader::new(Cursor::new(&zst))
            .err()
            .expect("plain zstd must not parse");
        assert!(matches!(err, ZseekError::NotSeekable { .. }), "{err}");
        assert!(err.to_string().contains("no seek table"));
    }

    #[test]
    fn empty_input() {
        let mut a = Vec::new();
        let t = compress(&b""[..], &mut a, 4096, 3, 2).unwrap();
        assert!(t.frames.is_empty());
        let r = SeekableReader::new(Cursor::new(&a)).unwrap();
        assert_eq!(r.size(), 0);
    }

    #[test]
    fn corrupted_tables_are_rejected() {
        let data = sample(50_000);
        let mut a = Vec::new();
        compress(&data[..], &mut a, 16384, 3, 2).unwrap();
        let n = a.len();
        // magic
        let mut x = a.clone();
        x[n - 1] ^= 1;
        assert!(matches!(
            SeekableReader::new(Cursor::new(&x)),
            Err(ZseekError::NotSeekable { .. })
        ));
        // reserved bits
        let mut x = a.clone();
        x[n - 5] |= 0x04;
        assert!(matches!(
            SeekableReader::new(Cursor::new(&x)),
            Err(ZseekError::BadTable { .. })
        ));
        // frame count too large
        let mut x = a.clone();
        x[n - 9..n - 5].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            SeekableReader::new(Cursor::new(&x)),
            Err(ZseekError::BadTable { .. })
        ));
        // frame count smaller: skippable header no longer lines up
        let mut x = a.clone();
        x[n - 9..n - 5].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(
            SeekableReader::new(Cursor::new(&x)),
            Err(ZseekError::BadTable { .. })
        ));
        // compressed size of the first entry changed: frames no longer fill the file
        let t = SeekTable::read_from(&mut Cursor::new(&a)).unwrap();
        let first_entry = n - t.table_frame_size() as usize + 8;
        let mut x = a.clone();
        x[first_entry] = x[first_entry].wrapping_add(1);
        assert!(matches!(
            SeekableReader::new(Cursor::new(&x)),
            Err(ZseekError::BadTable { .. })
        ));
        // decompressed size too big
        let mut x = a.clone();
        x[first_entry + 4..first_entry + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            SeekableReader::new(Cursor::new(&x)),
            Err(ZseekError::BadTable { .. })
        ));
        // checksum wrong: table parses, reading the frame fails
        let mut x = a.clone();
        x[first_entry + 8] ^= 0xff;
        let mut r = SeekableReader::new(Cursor::new(&x)).unwrap();
        let mut buf = [0u8; 10];
        assert!(matches!(
            r.read_at(0, &mut buf),
            Err(ZseekError::BadFrame { index: 0, .. })
        ));
        // too short
        assert!(matches!(
            SeekableReader::new(Cursor::new(&a[..5])),
            Err(ZseekError::TooShort { .. })
        ));
    }
}
