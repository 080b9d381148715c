//! Verify while streaming: [`StreamSink`] receives the bytes of `disk.img.zst` in order (from a
//! registry, a delta rebuild, a copy), writes them to a partial file and computes, as they
//! arrive, the three digests the signed `wafer.json` states: the sha256 of the compressed file,
//! the sha256 of the decompressed image and its dm-verity root. [`StreamSink::finish`] compares
//! them with the [`Expected`] values without reading anything again; a difference is a typed
//! [`StreamError::Mismatch`] naming the digest.
//!
//! Interrupted transfers resume: [`StreamSink::resume`] re-reads the partial file to rebuild the
//! hashing state and continues from its length ([`StreamSink::position`]), which the caller then
//! asks the remote for (`Range: bytes=N-`).
//!
//! Bounds, whatever the input: no more than `compressed.size` bytes are accepted, no more than
//! `image.size` bytes may decompress from them, and the zstd decoder refuses windows above
//! 64 MiB ([`MAX_WINDOW_LOG`], the largest frame the seekable writer makes), so memory is the
//! decoder's window, one 8 MiB hashing chunk and the level-0 dm-verity hashes (32 bytes per
//! 4 KiB of image, as in `wafer verify`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rootfs::zseek::SeekTable;
use sha2::{Digest, Sha256};
use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

use crate::digest::{hash_full_blocks, VerityHasher, MAX_SALT};
use crate::manifest::Manifest;

/// Largest zstd window the decoder accepts (2^26 = 64 MiB, `zseek::MAX_FRAME_SIZE`).
pub const MAX_WINDOW_LOG: u32 = 26;
/// Decompressed bytes hashed at a time.
const CHUNK: usize = 8 << 20;
/// Largest frame count a sink or a delta pull accepts (4 Mi frames: 4 TiB at 1 MiB frames); it
/// bounds the seek table read before anything else is checked.
pub const MAX_STREAM_FRAMES: u64 = 1 << 22;

/// What the signed `wafer.json` says the disk layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `compressed.size`.
    pub compressed_size: u64,
    /// `compressed.sha256`.
    pub compressed_sha256: [u8; 32],
    /// `compressed.frames`.
    pub frames: u64,
    /// `compressed.level` (what a delta pull recompresses with).
    pub level: i32,
    /// `image.size`.
    pub image_size: u64,
    /// `image.sha256`.
    pub image_sha256: [u8; 32],
    /// `image.verity.root`.
    pub verity_root: [u8; 32],
    /// `image.verity.salt`, decoded.
    pub verity_salt: Vec<u8>,
}

/// Why a streamed disk is refused; each names the partial file.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A field of the manifest cannot describe a disk (not hex, wrong length, too many frames).
    #[error("wafer.json {field}: {what}")]
    Manifest {
        /// The field.
        field: &'static str,
        /// What is wrong.
        what: String,
    },
    /// Creating, reading, writing or syncing the partial file failed.
    #[error("{path}: {source}")]
    Io {
        /// The partial file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The partial file to resume is not a regular file (a link, a folder, a device).
    #[error("{path}: not a regular file, refusing to resume into it")]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// More bytes arrived than `compressed.size`.
    #[error(
        "{path}: the remote sent more than the {expected} bytes wafer.json states for disk.img.zst"
    )]
    TooLong {
        /// The partial file.
        path: PathBuf,
        /// `compressed.size`.
        expected: u64,
    },
    /// The stream ended before `compressed.size` bytes.
    #[error("{path}: disk.img.zst ended after {got} of {expected} bytes (truncated)")]
    Truncated {
        /// The partial file.
        path: PathBuf,
        /// Bytes received.
        got: u64,
        /// `compressed.size`.
        expected: u64,
    },
    /// The bytes are not a valid zstd stream (or a frame asks for a window above 64 MiB).
    #[error("{path}: disk.img.zst is not a valid zstd stream near byte {offset}: {what}")]
    Decode {
        /// The partial file.
        path: PathBuf,
        /// Compressed bytes received when it was noticed.
        offset: u64,
        /// The decoder's message.
        what: String,
    },
    /// The stream decompresses to more than `image.size` bytes.
    #[error("{path}: disk.img.zst decompresses to more than the {expected} bytes of image.size")]
    ImageTooLong {
        /// The partial file.
        path: PathBuf,
        /// `image.size`.
        expected: u64,
    },
    /// A digest or size differs from the signed manifest.
    #[error("{path}: {what} is {got}, but the signed wafer.json says {expected}")]
    Mismatch {
        /// The partial file.
        path: PathBuf,
        /// Which value (`sha256 of disk.img.zst`, `image sha256`, `dm-verity root`, ...).
        what: &'static str,
        /// The manifest's value.
        expected: String,
        /// What arrived.
        got: String,
    },
    /// The seek table at the end of the complete file is invalid.
    #[error("{path}: {source}")]
    SeekTable {
        /// The partial file.
        path: PathBuf,
        /// Why.
        source: rootfs::zseek::ZseekError,
    },
    /// A write failed earlier; the sink accepts nothing more.
    #[error("{path}: an earlier error stopped this transfer")]
    Poisoned {
        /// The partial file.
        path: PathBuf,
    },
}

fn hex32(field: &'static str, s: &str) -> Result<[u8; 32], StreamError> {
    let v = hex::decode(s).map_err(|e| StreamError::Manifest {
        field,
        what: format!("not hex: {e}"),
    })?;
    v.try_into().map_err(|v: Vec<u8>| StreamError::Manifest {
        field,
        what: format!("{} bytes, not 32", v.len()),
    })
}

impl Expected {
    /// The values of a (verified) manifest.
    pub fn from_manifest(m: &Manifest) -> Result<Expected, StreamError> {
        let salt = hex::decode(&m.image.verity.salt).map_err(|e| StreamError::Manifest {
            field: "image.verity.salt",
            what: format!("not hex: {e}"),
        })?;
        if salt.len() > MAX_SALT {
            return Err(StreamError::Manifest {
                field: "image.verity.salt",
                what: format!("{} bytes, more than {MAX_SALT}", salt.len()),
            });
        }
        if m.compressed.frames > MAX_STREAM_FRAMES {
            return Err(StreamError::Manifest {
                field: "compressed.frames",
                what: format!(
                    "{} frames, more than {MAX_STREAM_FRAMES}",
                    m.compressed.frames
                ),
            });
        }
        Ok(Expected {
            compressed_size: m.compressed.size,
            compressed_sha256: hex32("compressed.sha256", &m.compressed.sha256)?,
            frames: m.compressed.frames,
            level: m.compressed.level,
            image_size: m.image.size,
            image_sha256: hex32("image.sha256", &m.image.sha256)?,
            verity_root: hex32("image.verity.root", &m.image.verity.root)?,
            verity_salt: salt,
        })
    }
}

/// The digests of a streamed disk that matched the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDigests {
    /// sha256 of `disk.img.zst`.
    pub compressed_sha256: [u8; 32],
    /// sha256 of the decompressed image.
    pub image_sha256: [u8; 32],
    /// The dm-verity root.
    pub verity_root: [u8; 32],
    /// The seek table of the file.
    pub table: SeekTable,
}

/// A complete, checked `disk.img.zst` still under its partial name (synced); the caller moves it
/// into the bundle it is writing.
#[derive(Debug)]
pub struct StreamedDisk {
    /// The partial file's path.
    pub path: PathBuf,
    /// The file (synced).
    pub file: File,
    /// What was checked.
    pub digests: StreamDigests,
}

/// Receives `disk.img.zst` in order, writes it to a partial file and checks it against the
/// manifest (see the module documentation). Feed it with [`StreamSink::push`] or as an
/// [`io::Write`] (an error then is an `io::Error` whose typed cause
/// [`StreamSink::take_error`] returns).
pub struct StreamSink {
    path: PathBuf,
    out: BufWriter<File>,
    expected: Expected,
    written: u64,
    csha: Sha256,
    decoder: Decoder<'static>,
    /// The decoder ended a frame with the last input (or nothing was fed yet).
    at_frame_end: bool,
    raw: Vec<u8>,
    raw_total: u64,
    sha: Sha256,
    verity: VerityHasher,
    error: Option<StreamError>,
    poisoned: bool,
}

impl std::fmt::Debug for StreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSink")
            .field("path", &self.path)
            .field("written", &self.written)
            .field("raw_total", &self.raw_total)
            .finish_non_exhaustive()
    }
}

impl StreamSink {
    /// Creates the partial file `path` (it must not exist; never through a link) and a sink
    /// writing into it.
    pub fn create(path: &Path, expected: Expected) -> Result<StreamSink, StreamError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc_o_nofollow())
            .open(path)
            .map_err(|source| StreamError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        StreamSink::new(path, file, expected)
    }

    /// Opens the partial file `path` left by an interrupted transfer (a regular file, not through
    /// a link), re-reads it to rebuild the hashing state and continues after its last byte:
    /// [`StreamSink::position`] is where the remote must resume. A partial file longer than
    /// `compressed.size` or not valid zstd is an error (delete it and start again).
    pub fn resume(path: &Path, expected: Expected) -> Result<StreamSink, StreamError> {
        let io_err = |source| StreamError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc_o_nofollow())
            .open(path)
            .map_err(io_err)?;
        if !file.metadata().map_err(io_err)?.is_file() {
            return Err(StreamError::NotRegular {
                path: path.to_path_buf(),
            });
        }
        let mut reader = file.try_clone().map_err(io_err)?;
        let mut sink = StreamSink::new(path, file.try_clone().map_err(io_err)?, expected)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            };
            sink.absorb(&buf[..n])?;
        }
        // Writes continue at the end of what was read.
        let end = sink.written;
        io::Seek::seek(&mut file, io::SeekFrom::Start(end)).map_err(io_err)?;
        drop(file);
        let inner = sink.out.get_mut();
        io::Seek::seek(inner, io::SeekFrom::Start(end)).map_err(io_err)?;
        Ok(sink)
    }

    /// [`StreamSink::resume`] when `path` exists, else [`StreamSink::create`].
    pub fn open(path: &Path, expected: Expected) -> Result<StreamSink, StreamError> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => StreamSink::resume(path, expected),
            Err(e) if e.kind() == io::ErrorKind::NotFound => StreamSink::create(path, expected),
            Err(source) => Err(StreamError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn new(path: &Path, file: File, expected: Expected) -> Result<StreamSink, StreamError> {
        let decode_err = |e: io::Error| StreamError::Decode {
            path: path.to_path_buf(),
            offset: 0,
            what: e.to_string(),
        };
        let mut decoder = Decoder::new().map_err(decode_err)?;
        decoder
            .set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
            .map_err(decode_err)?;
        let verity =
            VerityHasher::new(&expected.verity_salt).map_err(|e| StreamError::Manifest {
                field: "image.verity.salt",
                what: e.to_string(),
            })?;
        Ok(StreamSink {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            expected,
            written: 0,
            csha: Sha256::new(),
            decoder,
            at_frame_end: true,
            raw: Vec::with_capacity(CHUNK),
            raw_total: 0,
            sha: Sha256::new(),
            verity,
            error: None,
            poisoned: false,
        })
    }

    /// The partial file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes received so far (where a resumed transfer continues).
    pub fn position(&self) -> u64 {
        self.written
    }

    /// What the sink checks against.
    pub fn expected(&self) -> &Expected {
        &self.expected
    }

    /// The typed error behind a failed [`io::Write`] call, if any.
    pub fn take_error(&mut self) -> Option<StreamError> {
        self.error.take()
    }

    /// Appends the next bytes of the file.
    pub fn push(&mut self, data: &[u8]) -> Result<(), StreamError> {
        if self.poisoned {
            return Err(StreamError::Poisoned {
                path: self.path.clone(),
            });
        }
        let r = self.push_inner(data);
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn push_inner(&mut self, data: &[u8]) -> Result<(), StreamError> {
        self.check_len(data.len())?;
        self.out.write_all(data).map_err(|source| StreamError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.absorb(data)
    }

    fn check_len(&self, n: usize) -> Result<(), StreamError> {
        if self.written.saturating_add(n as u64) > self.expected.compressed_size {
            return Err(StreamError::TooLong {
                path: self.path.clone(),
                expected: self.expected.compressed_size,
            });
        }
        Ok(())
    }

    /// Hashes and decodes bytes already in the file.
    fn absorb(&mut self, data: &[u8]) -> Result<(), StreamError> {
        self.check_len(data.len())?;
        self.csha.update(data);
        self.written += data.len() as u64;
        let mut input = InBuffer::around(data);
        while input.pos() < data.len() {
            if self.raw.len() == self.raw.capacity() {
                self.flush_raw()?;
            }
            let before = input.pos();
            let start = self.raw.len();
            let mut output = OutBuffer::around_pos(&mut self.raw, start);
            let hint =
                self.decoder
                    .run(&mut input, &mut output)
                    .map_err(|e| StreamError::Decode {
                        path: self.path.clone(),
                        offset: self.written - (data.len() - before) as u64,
                        what: e.to_string(),
                    })?;
            let produced = output.pos() - start;
            self.at_frame_end = hint == 0;
            if self.raw_total + self.raw.len() as u64 > self.expected.image_size {
                return Err(StreamError::ImageTooLong {
                    path: self.path.clone(),
                    expected: self.expected.image_size,
                });
            }
            if produced == 0 && input.pos() == before && self.raw.len() < self.raw.capacity() {
                // No progress with room to spare: cannot happen with a working decoder; never spin.
                return Err(StreamError::Decode {
                    path: self.path.clone(),
                    offset: self.written,
                    what: "the decoder made no progress".into(),
                });
            }
        }
        // A frame may have left output in the decoder's buffers although the input is used up.
        loop {
            if self.raw.len() == self.raw.capacity() {
                self.flush_raw()?;
            }
            let start = self.raw.len();
            let mut empty = InBuffer::around(&[]);
            let mut output = OutBuffer::around_pos(&mut self.raw, start);
            let hint =
                self.decoder
                    .run(&mut empty, &mut output)
                    .map_err(|e| StreamError::Decode {
                        path: self.path.clone(),
                        offset: self.written,
                        what: e.to_string(),
                    })?;
            let produced = output.pos() - start;
            if self.raw_total + self.raw.len() as u64 > self.expected.image_size {
                return Err(StreamError::ImageTooLong {
                    path: self.path.clone(),
                    expected: self.expected.image_size,
                });
            }
            if produced == 0 {
                break;
            }
            self.at_frame_end = hint == 0;
        }
        Ok(())
    }

    /// Hashes the buffered decompressed bytes (sha256 and dm-verity blocks in parallel).
    fn flush_raw(&mut self) -> Result<(), StreamError> {
        let data = &self.raw[..];
        let verity = &mut self.verity;
        let sha = &mut self.sha;
        let (hashes, ()) = rayon::join(
            || {
                verity
                    .at_block_boundary()
                    .then(|| hash_full_blocks(&self.expected.verity_salt, data))
            },
            || sha.update(data),
        );
        match hashes {
            Some(h) => verity.push_block_hashes(h, data),
            None => verity.update(data),
        }
        self.raw_total += data.len() as u64;
        self.raw.clear();
        Ok(())
    }

    /// Ends the transfer: every byte arrived, the three digests and the sizes are the manifest's,
    /// the seek table is valid and declares `image.size` in `compressed.frames` frames. The file
    /// is synced; it is still under its partial name.
    pub fn finish(mut self) -> Result<StreamedDisk, StreamError> {
        if self.poisoned {
            return Err(StreamError::Poisoned { path: self.path });
        }
        let path = self.path.clone();
        let io_err = |source| StreamError::Io {
            path: path.clone(),
            source,
        };
        if self.written != self.expected.compressed_size {
            return Err(StreamError::Truncated {
                path,
                got: self.written,
                expected: self.expected.compressed_size,
            });
        }
        let mismatch = |what, expected: &[u8], got: &[u8]| StreamError::Mismatch {
            path: path.clone(),
            what,
            expected: hex::encode(expected),
            got: hex::encode(got),
        };
        let csha: [u8; 32] = self.csha.clone().finalize().into();
        if csha != self.expected.compressed_sha256 {
            return Err(mismatch(
                "sha256 of disk.img.zst",
                &self.expected.compressed_sha256,
                &csha,
            ));
        }
        if !self.at_frame_end {
            return Err(StreamError::Decode {
                path,
                offset: self.written,
                what: "the stream ends inside a zstd frame".into(),
            });
        }
        self.flush_raw()?;
        if self.raw_total != self.expected.image_size {
            return Err(StreamError::Mismatch {
                path,
                what: "decompressed size",
                expected: self.expected.image_size.to_string(),
                got: self.raw_total.to_string(),
            });
        }
        let isha: [u8; 32] = self.sha.clone().finalize().into();
        if isha != self.expected.image_sha256 {
            return Err(mismatch("image sha256", &self.expected.image_sha256, &isha));
        }
        let root = self.verity.clone().finish().root;
        if root != self.expected.verity_root {
            return Err(mismatch(
                "dm-verity root",
                &self.expected.verity_root,
                &root,
            ));
        }
        self.out.flush().map_err(io_err)?;
        let file = self.out.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        let mut reader = file.try_clone().map_err(io_err)?;
        let table = SeekTable::read_from(&mut reader).map_err(|source| StreamError::SeekTable {
            path: path.clone(),
            source,
        })?;
        if table.frames.len() as u64 != self.expected.frames
            || table.decompressed_size() != self.expected.image_size
        {
            return Err(StreamError::Mismatch {
                path,
                what: "seek table (frames, decompressed bytes)",
                expected: format!("{}, {}", self.expected.frames, self.expected.image_size),
                got: format!("{}, {}", table.frames.len(), table.decompressed_size()),
            });
        }
        Ok(StreamedDisk {
            path,
            file,
            digests: StreamDigests {
                compressed_sha256: csha,
                image_sha256: isha,
                verity_root: root,
                table,
            },
        })
    }
}

impl Write for StreamSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.push(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                let msg = e.to_string();
                if self.error.is_none() {
                    self.error = Some(e);
                }
                Err(io::Error::other(msg))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// `O_NOFOLLOW`: the partial file is never opened through a link.
fn libc_o_nofollow() -> i32 {
    libc::O_NOFOLLOW
}
