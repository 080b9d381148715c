//! The bundle: `disk.img.zst` (seekable zstd), `wafer.json` (manifest), `build-report.json`,
//! `attestations/`. See docs/bundle.md.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::BuildError;
use crate::inspect::{OsInfo, PackageSummary};
use crate::{Event, Phase, Progress};

/// The ext profiles the writer knows.
pub const PROFILES: &[&str] = &["el4", "el5", "el6", "el7", "el8", "el9", "fedora"];

/// Manifest format identifier.
pub const FORMAT: &str = "wafer-bundle/1";

/// `wafer.json`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Manifest {
    /// Format identifier, [`FORMAT`].
    pub format: String,
    /// Wafer name.
    pub name: String,
    /// Wafer version.
    pub version: String,
    /// Virtual Organisation.
    pub vo: String,
    /// OS detected in the image.
    pub os: OsInfo,
    /// Architecture detected from the image's ELF files.
    pub arch: String,
    /// Filesystem facts.
    pub filesystem: FsFacts,
    /// What the wafer needs from a slot.
    pub requirements: ManifestRequirements,
    /// Kernel, initrd and command line, when the image has a kernel.
    pub boot: Option<ManifestBoot>,
    /// Raw image digests.
    pub image: ManifestImage,
    /// Compressed image digests.
    pub compressed: ManifestCompressed,
    /// The recipe's digest.
    pub recipe: ManifestRecipe,
    /// The base's kind and digest.
    pub base: ManifestBase,
    /// Installed packages.
    pub packages: Option<ManifestPackages>,
    /// The build epoch (every created file's time).
    pub source_date_epoch: i64,
}

/// `filesystem`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FsFacts {
    /// `ext2`, `ext3` or `ext4`.
    #[serde(rename = "type")]
    pub fs_type: String,
    /// Writer profile.
    pub profile: String,
    /// Image size in bytes.
    pub size: u64,
}

/// `requirements` (the names deploy's `fit::Requirements` reads).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestRequirements {
    /// Guaranteed memory, MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Disk, MiB.
    pub disk_mib: u64,
    /// Architecture.
    pub arch: String,
    /// Guest types, preferred first.
    pub guest_types: Vec<String>,
    /// Lowest Xen version, `major.minor[.patch]`.
    pub min_xen: Option<String>,
}

/// `boot`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestBoot {
    /// Kernel path in the image.
    pub kernel: String,
    /// Initrd path in the image.
    pub initrd: Option<String>,
    /// Kernel command line.
    pub cmdline: String,
}

/// `image`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestImage {
    /// sha256 of the raw image.
    pub sha256: String,
    /// Raw image size in bytes.
    pub size: u64,
    /// dm-verity parameters.
    pub verity: ManifestVerity,
}

/// `image.verity` (as `veritysetup format --no-superblock` with these parameters).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestVerity {
    /// Root hash, hex.
    pub root: String,
    /// Salt, hex.
    pub salt: String,
    /// Always `sha256`.
    pub hash_algorithm: String,
    /// Always 4096.
    pub data_block_size: u32,
    /// Always 4096.
    pub hash_block_size: u32,
    /// dm-verity hash format version (1).
    pub format: u32,
}

/// `compressed`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestCompressed {
    /// File name in the bundle.
    pub file: String,
    /// sha256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Decompressed bytes per frame.
    pub frame_size: u64,
    /// zstd level.
    pub level: i32,
    /// Number of frames.
    pub frames: u64,
}

/// `recipe`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestRecipe {
    /// sha256 of the recipe file.
    pub sha256: String,
    /// sha256 over the sorted list of (input path, input sha256) the steps read.
    pub inputs_sha256: String,
}

/// `base`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestBase {
    /// tar, ext, wafer or dir.
    pub kind: String,
    /// The pinned digest.
    pub sha256: String,
}

/// `packages`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestPackages {
    /// rpm database backend: sqlite, bdb, ndb.
    pub database: String,
    /// Number of packages.
    pub count: usize,
    /// Every package.
    pub list: Vec<PackageSummary>,
}

/// Serialize with sorted keys, two-space indentation and a final newline.
pub fn to_stable_json<T: Serialize>(v: &T) -> Result<Vec<u8>, BuildError> {
    // serde_json::Value's map is a BTreeMap (no preserve_order feature): keys come out sorted.
    let value = serde_json::to_value(v).map_err(|e| BuildError::Output(format!("json: {e}")))?;
    let mut out =
        serde_json::to_vec_pretty(&value).map_err(|e| BuildError::Output(format!("json: {e}")))?;
    out.push(b'\n');
    Ok(out)
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

/// Hash the raw image (sha256 + dm-verity) and compress it to `zst` as seekable zstd.
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
        phase: Phase::Hash,
        total: size,
    });
    let f = File::open(raw).map_err(|e| BuildError::io(raw, e))?;
    let opts = trust::digest::DigestOptions {
        salt: salt.to_vec(),
        sha256: true,
        compressed_sha256: false,
        threads,
    };
    let d = trust::digest::digest_reader(
        std::io::BufReader::with_capacity(
            1 << 20,
            CountingReader::new(f, size, Phase::Hash, progress),
        ),
        &opts,
    )
    .map_err(|e| BuildError::Output(format!("hashing {}: {e}", raw.display())))?;
    progress.event(&Event::PhaseFinished { phase: Phase::Hash });

    progress.event(&Event::PhaseStarted {
        phase: Phase::Compress,
        total: size,
    });
    let f = File::open(raw).map_err(|e| BuildError::io(raw, e))?;
    let out = File::create(zst).map_err(|e| BuildError::io(zst, e))?;
    let mut hw = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, out),
        sha: Sha256::new(),
        n: 0,
    };
    let table = rootfs::zseek::compress(
        CountingReader::new(f, size, Phase::Compress, progress),
        &mut hw,
        frame_size,
        level,
        threads,
    )
    .map_err(|e| BuildError::Output(format!("compressing to {}: {e}", zst.display())))?;
    hw.inner.flush().map_err(|e| BuildError::io(zst, e))?;
    progress.event(&Event::PhaseFinished {
        phase: Phase::Compress,
    });
    Ok(Packed {
        image_sha256: d.sha256.unwrap_or_default(),
        image_size: d.size,
        verity_root: d.verity.root,
        compressed_sha256: hw.sha.finalize().into(),
        compressed_size: hw.n,
        frames: table.frames.len() as u64,
    })
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
