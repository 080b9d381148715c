//! Packing the bundle's `disk.img.zst` (seekable zstd, hashed in the same pass). The manifest
//! type and the bundle writer live in the `bundle` crate (docs/bundle.md).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::BuildError;
use crate::{Event, Phase, Progress};

pub use bundle::manifest::{
    FsFacts, Manifest, ManifestBase, ManifestBoot, ManifestCompressed, ManifestImage,
    ManifestPackages, ManifestRecipe, ManifestRequirements, ManifestVerity, FORMAT, PROFILES,
};

/// Serialize with sorted keys, two-space indentation and a final newline
/// ([`bundle::manifest::to_stable_json`]).
pub fn to_stable_json<T: Serialize>(v: &T) -> Result<Vec<u8>, BuildError> {
    bundle::manifest::to_stable_json(v).map_err(|e| BuildError::Output(format!("json: {e}")))
}

/// Reader that reports progress every 8 MiB.
pub struct CountingReader<'a, R> {
    inner: R,
    done: u64,
    last: u64,
    total: u64,
    phase: Phase,
    progress: &'a dyn Progress,
}

impl<'a, R: Read> CountingReader<'a, R> {
    /// Wrap `inner`.
    pub fn new(inner: R, total: u64, phase: Phase, progress: &'a dyn Progress) -> Self {
        CountingReader {
            inner,
            done: 0,
            last: 0,
            total,
            phase,
            progress,
        }
    }
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.last >= (8 << 20) || (n == 0 && self.done != self.last) {
            self.last = self.done;
            self.progress.event(&Event::Bytes {
                phase: self.phase,
                done: self.done,
                total: self.total,
            });
        }
        Ok(n)
    }
}

/// Result of compressing and hashing the raw image.
pub struct Packed {
    /// sha256 of the raw image.
    pub image_sha256: [u8; 32],
    /// Raw size.
    pub image_size: u64,
    /// dm-verity root.
    pub verity_root: [u8; 32],
    /// sha256 of disk.img.zst.
    pub compressed_sha256: [u8; 32],
    /// Size of disk.img.zst.
    pub compressed_size: u64,
    /// Frames written.
    pub frames: u64,
}

/// Compresses the raw image to `zst` as seekable zstd and hashes it (sha256, dm-verity level 0,
/// and the sha256 of the compressed bytes) in the same single read of the image.
///
/// Each compression worker also hashes its frame's 4 KiB blocks for dm-verity (`frame_size`
/// is a multiple of 4096); the calling thread feeds the plain sha256 with every frame in
/// order and hashes the compressed bytes as they are written. The output is the same for any
/// number of threads.
pub fn pack(
    raw: &Path,
    zst: &Path,
    salt: &[u8],
    level: i32,
    frame_size: usize,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Packed, BuildError> {
    let size = std::fs::metadata(raw)
        .map_err(|e| BuildError::io(raw, e))?
        .len();
    progress.event(&Event::PhaseStarted {
        phase: Phase::Compress,
        total: size,
    });
    let f = File::open(raw).map_err(|e| BuildError::io(raw, e))?;
    let f = SparseReader::new(f, size).map_err(|e| BuildError::io(raw, e))?;
    let out = File::create(zst).map_err(|e| BuildError::io(zst, e))?;
    let mut hw = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, out),
        sha: Sha256::new(),
        n: 0,
    };
    let mut verity = bundle::digest::VerityHasher::new(salt)
        .map_err(|e| BuildError::Output(format!("hashing {}: {e}", raw.display())))?;
    // The plain sha256 is fed by the reading thread right after each read, while the bytes are
    // still in its cache: hashing them later on the writer side, after a worker has had them,
    // measured 1.7x slower (memory-bound) on the benchmark machine.
    let mut reader = HashingReader {
        inner: CountingReader::new(f, size, Phase::Compress, progress),
        sha: Sha256::new(),
    };
    let block = bundle::digest::BLOCK_SIZE;
    let table = rootfs::zseek::compress_with(
        &mut reader,
        &mut hw,
        frame_size,
        level,
        threads,
        |_, off, data| {
            (off % block as u64 == 0).then(|| bundle::digest::hash_full_blocks_serial(salt, data))
        },
        |_, data, hashes| {
            match hashes {
                Some(h) => verity.push_block_hashes(h, data),
                None => verity.update(data),
            }
            Ok(())
        },
    )
    .map_err(|e| BuildError::Output(format!("compressing to {}: {e}", zst.display())))?;
    hw.inner.flush().map_err(|e| BuildError::io(zst, e))?;
    progress.event(&Event::PhaseFinished {
        phase: Phase::Compress,
    });
    let image_size = verity.size();
    Ok(Packed {
        image_sha256: reader.sha.finalize().into(),
        image_size,
        verity_root: verity.finish().root,
        compressed_sha256: hw.sha.finalize().into(),
        compressed_size: hw.n,
        frames: table.frames.len() as u64,
    })
}

/// Reads a sparse file sequentially, producing the zeros of its holes without asking the
/// kernel for them (reading a hole would fill page-cache pages with zeros and copy them out; the
/// image's free space is a quarter or more of it).
struct SparseReader {
    file: File,
    /// Data ranges `(offset, length)` in order; the rest is holes.
    ranges: Vec<(u64, u64)>,
    /// Index of the first range not wholly before `pos`.
    next: usize,
    pos: u64,
    size: u64,
}

impl SparseReader {
    fn new(file: File, size: u64) -> std::io::Result<Self> {
        let ranges = rootfs::dir::data_ranges(&file, size)
            .map_err(|(what, e)| std::io::Error::new(e.kind(), format!("{what}: {e}")))?;
        Ok(SparseReader {
            file,
            ranges,
            next: 0,
            pos: 0,
            size,
        })
    }
}

impl Read for SparseReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        while self
            .ranges
            .get(self.next)
            .is_some_and(|&(o, l)| o + l <= self.pos)
        {
            self.next += 1;
        }
        let left = self.size.saturating_sub(self.pos);
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(left);
        let n = match self.ranges.get(self.next) {
            Some(&(o, l)) if o <= self.pos => {
                let n = want.min(o + l - self.pos) as usize;
                self.file.read_at(&mut buf[..n], self.pos)?
            }
            other => {
                let hole_end = other.map_or(self.size, |&(o, _)| o);
                let n = want.min(hole_end - self.pos) as usize;
                buf[..n].fill(0);
                n
            }
        };
        if n == 0 {
            // The file shrank under us: a short image must not hash as a longer one.
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("image ended at {} of {} bytes", self.pos, self.size),
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Hashes everything read through it, right after the read.
struct HashingReader<R> {
    inner: R,
    sha: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}

struct HashingWriter<W> {
    inner: W,
    sha: Sha256,
    n: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// The sparse reader returns exactly the file's bytes (data, holes, a trailing hole) for
    /// any read size; past the end of the file (a size larger than the file) it reads zeros,
    /// as a hole.
    #[test]
    fn sparse_reader_reads_what_the_file_holds() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse.img");
        let f = File::create(&p).unwrap();
        let size = 5 << 20;
        f.set_len(size).unwrap();
        f.write_all_at(&[7u8; 10_000], 4096).unwrap();
        f.write_all_at(&[9u8; 3], (2 << 20) + 5).unwrap();
        f.write_all_at(&[1u8; 70_000], (3 << 20) - 100).unwrap();
        drop(f);
        let want = std::fs::read(&p).unwrap();
        for step in [1usize << 20, 4096, 777, 65_536 + 3] {
            let mut r = SparseReader::new(File::open(&p).unwrap(), size).unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0xAAu8; step];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got.len(), want.len(), "step {step}");
            assert!(got == want, "step {step}");
        }
        let mut r = SparseReader::new(File::open(&p).unwrap(), size + 4096).unwrap();
        let mut sink = Vec::new();
        let e = r.read_to_end(&mut sink);
        assert!(e.is_ok(), "a trailing hole past EOF reads as zeros: {e:?}");
        assert_eq!(sink.len() as u64, size + 4096);
    }
}
