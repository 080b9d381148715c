//! The wafer bundle: the folder every part of wafer passes to the next (docs/bundle.md).
//!
//! | file | here |
//! |---|---|
//! | `wafer.json` | [`Manifest`], the one type of the manifest ([`manifest`]) |
//! | `disk.img.zst` | [`Disk`]: the seek table, positional reads ([`DiskReader`]), digests, and materialising the raw image while checking its dm-verity root |
//! | `attestations/*.json` | [`Attestation`]: the DSSE envelopes, as bytes (trust parses and verifies them) |
//! | `build-report.json` | written by the builder through [`BundleWriter`]; nobody reads it back |
//!
//! [`Bundle::open`] checks that a folder is a complete bundle (a missing, empty or truncated disk,
//! one whose length differs from `compressed.size` or whose seek table declares another size
//! than `image.size` is a typed [`BundleError`] naming the file). [`BundleWriter`] writes a
//! bundle into a temporary sibling folder and renames it into place only when it is complete.
//!
//! [`source::open_source`] reads whatever a path names (a bundle's disk, or through
//! `rootfs::open` a directory, tar archive or ext image) into a tree: `rootfs` knows no bundle.
//!
//! Every name in the bundle is opened through [`rootfs::safe::Folder`]: never through a link,
//! regular files only, with size limits ([`MAX_JSON`], [`MAX_ATTESTATIONS`]).
//!
//! ## Floors
//!
//! Crates are stacked; a crate imports only crates on lower floors:
//!
//! 1. `rootfs` (file systems, archives, seekable zstd, safe folder access), `pkgdb`;
//! 2. `bundle` (this crate: the bundle format, its manifest, disk access, image digests and the
//!    dm-verity root);
//! 3. `trust` (keys, DSSE, statements, the trust store, and verification, which alone produces a
//!    `trust::Verified<Bundle>`);
//! 4. `builder`, `vetter`, `deploy` (deploy accepts only a `trust::Verified<Bundle>`);
//! 5. the `wafer` command, which parses arguments, calls one library function and renders.

pub mod boot;
pub mod delta;
pub mod digest;
mod disk;
pub mod manifest;
pub mod source;
pub mod stream;
mod writer;

use std::path::{Path, PathBuf};

use rootfs::safe::{Folder, SafeError};
use sha2::{Digest, Sha256};

pub use boot::KernelFlavour;
pub use disk::{Disk, DiskError, DiskReader};
pub use manifest::{Manifest, ManifestError, FORMAT};
pub use writer::{BundleWriter, WriterError};

/// The manifest's file name.
pub const MANIFEST_FILE: &str = "wafer.json";
/// The compressed disk's file name.
pub const DISK_FILE: &str = "disk.img.zst";
/// The build report's file name.
pub const REPORT_FILE: &str = "build-report.json";
/// The attestations folder.
pub const ATTESTATIONS_DIR: &str = "attestations";
/// Largest `wafer.json` or attestation read from a bundle.
pub const MAX_JSON: u64 = 16 << 20;
/// Most attestations read from a bundle.
pub const MAX_ATTESTATIONS: usize = 256;

/// Why a folder is not a usable bundle; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The folder, `wafer.json`, `attestations/` or an attestation cannot be read (a link, not a
    /// regular file, too large, an I/O error).
    #[error(transparent)]
    Read(#[from] SafeError),
    /// `wafer.json` does not parse as a manifest.
    #[error("{path}: {source}")]
    Manifest {
        /// The `wafer.json`.
        path: PathBuf,
        /// Why.
        source: ManifestError,
    },
    /// The manifest names another disk file than `disk.img.zst`.
    #[error("{path}: compressed.file is {file:?}, not \"disk.img.zst\"")]
    DiskName {
        /// The `wafer.json`.
        path: PathBuf,
        /// The name it gives.
        file: String,
    },
    /// No `disk.img.zst`.
    #[error(
        "{path}: missing: the bundle has wafer.json but no disk image (an interrupted build?)"
    )]
    MissingDisk {
        /// The `disk.img.zst`.
        path: PathBuf,
    },
    /// An empty `disk.img.zst`.
    #[error("{path}: empty: the bundle's disk image holds no data (an interrupted build?)")]
    EmptyDisk {
        /// The `disk.img.zst`.
        path: PathBuf,
    },
    /// `disk.img.zst` is not as long as `compressed.size` says.
    #[error(
        "{path}: {actual} bytes, but {manifest} says compressed.size {expected}: the disk image \
         is {} (an interrupted build or a swapped file?)",
        if actual < expected { "truncated" } else { "not the one built" }
    )]
    CompressedSize {
        /// The `disk.img.zst`.
        path: PathBuf,
        /// The `wafer.json`.
        manifest: PathBuf,
        /// Its length.
        actual: u64,
        /// `compressed.size`.
        expected: u64,
    },
    /// The seek table cannot be read.
    #[error("{path}: {source}")]
    SeekTable {
        /// The `disk.img.zst`.
        path: PathBuf,
        /// Why.
        source: rootfs::zseek::ZseekError,
    },
    /// The seek table declares another decompressed size than `image.size`.
    #[error(
        "{path}: the seek table declares {declared} bytes decompressed ({frames} frames), \
         wafer.json image.size says {expected}"
    )]
    ImageSize {
        /// The `disk.img.zst`.
        path: PathBuf,
        /// What the seek table declares.
        declared: u64,
        /// Its frames.
        frames: usize,
        /// `image.size`.
        expected: u64,
    },
}

/// One attestation file (`attestations/NAME.json`), as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The file name (`approval-KEYID.json`).
    pub name: String,
    /// Its bytes (a DSSE envelope, unverified).
    pub bytes: Vec<u8>,
}

/// A bundle folder, opened (a handle: names inside are never followed through links), before
/// anything in it was read. The parts are read one by one, for callers that report each
/// problem as its own check (`trust`); [`Bundle::open`] reads them all.
#[derive(Debug)]
pub struct BundleDir {
    folder: Folder,
}

impl BundleDir {
    /// Opens the folder `dir` (links in the path the user gave are followed: that is the user's
    /// choice, not the bundle's).
    pub fn open(dir: &Path) -> Result<BundleDir, BundleError> {
        Ok(BundleDir {
            folder: Folder::open(dir)?,
        })
    }

    /// The folder as given.
    pub fn path(&self) -> &Path {
        self.folder.path()
    }

    /// The handle, for writing into the bundle (`wafer approve`).
    pub fn folder(&self) -> &Folder {
        &self.folder
    }

    /// `wafer.json`'s bytes (a regular file, at most [`MAX_JSON`] bytes).
    pub fn read_manifest_bytes(&self) -> Result<Vec<u8>, BundleError> {
        Ok(self.folder.read_file(MANIFEST_FILE, MAX_JSON)?)
    }

    /// Every `attestations/*.json` (regular files only; a link, FIFO or device there is refused,
    /// as is `attestations` itself being a link; at most [`MAX_ATTESTATIONS`]), in name order.
    pub fn read_attestations(&self) -> Result<Vec<Attestation>, BundleError> {
        let mut out = Vec::new();
        let Some(dir) = self.folder.open_dir_if_exists(ATTESTATIONS_DIR)? else {
            return Ok(out);
        };
        for e in dir.entries()? {
            let label = e.name.to_string_lossy().into_owned();
            if !label.ends_with(".json") {
                continue;
            }
            if out.len() >= MAX_ATTESTATIONS {
                return Err(SafeError::TooLarge {
                    path: dir.path().to_path_buf(),
                    size: MAX_ATTESTATIONS as u64 + 1,
                    max: MAX_ATTESTATIONS as u64,
                }
                .into());
            }
            // A name that is not UTF-8 cannot be opened by its lossy label: refuse it as such.
            let Some(name) = e.name.to_str() else {
                return Err(SafeError::BadName {
                    path: dir.path().to_path_buf(),
                    name: label,
                }
                .into());
            };
            let bytes = dir.read_file(name, MAX_JSON)?;
            out.push(Attestation { name: label, bytes });
        }
        Ok(out)
    }

    /// Opens `disk.img.zst` (a regular file, not through a link, not empty) and reads its seek
    /// table. With `expected_len`, a file of another length is refused before the table is read.
    pub fn open_disk(&self, expected_len: Option<(u64, &Path)>) -> Result<Disk, BundleError> {
        let path = self.folder.join(DISK_FILE);
        let file = match self.folder.open_file_if_exists(DISK_FILE)? {
            Some(f) => f,
            None => return Err(BundleError::MissingDisk { path }),
        };
        let len = file
            .metadata()
            .map_err(|source| SafeError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        if len == 0 {
            return Err(BundleError::EmptyDisk { path });
        }
        if let Some((expected, manifest)) = expected_len {
            if len != expected {
                return Err(BundleError::CompressedSize {
                    path,
                    manifest: manifest.to_path_buf(),
                    actual: len,
                    expected,
                });
            }
        }
        Disk::new(file, path, len)
    }
}

/// A complete bundle: its manifest (parsed from the bytes kept here), its attestations as read,
/// and its disk, whose length and seek table agree with the manifest.
#[derive(Debug)]
pub struct Bundle {
    dir: BundleDir,
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    attestations: Vec<Attestation>,
    disk: Disk,
}

impl Bundle {
    /// Opens the bundle in `dir` and checks it is complete: `wafer.json` parses strictly,
    /// `disk.img.zst` is there, not empty, as long as `compressed.size`, and its seek table
    /// declares `image.size` bytes; the attestations are readable. Nothing is decompressed.
    pub fn open(dir: &Path) -> Result<Bundle, BundleError> {
        tracing::debug!(path = %dir.display(), "opening the bundle");
        let dir = BundleDir::open(dir)?;
        let manifest_bytes = dir.read_manifest_bytes()?;
        let mpath = dir.folder.join(MANIFEST_FILE);
        let manifest = parse_manifest(&mpath, &manifest_bytes)?;
        let disk = dir.open_disk(Some((manifest.compressed.size, &mpath)))?;
        let attestations = dir.read_attestations()?;
        Bundle::from_parts(dir, manifest_bytes, attestations, disk)
    }

    /// Assembles a bundle from parts read one by one ([`BundleDir`]), with the checks of
    /// [`Bundle::open`].
    pub fn from_parts(
        dir: BundleDir,
        manifest_bytes: Vec<u8>,
        attestations: Vec<Attestation>,
        disk: Disk,
    ) -> Result<Bundle, BundleError> {
        let mpath = dir.folder.join(MANIFEST_FILE);
        let manifest = parse_manifest(&mpath, &manifest_bytes)?;
        if manifest.compressed.file != DISK_FILE {
            return Err(BundleError::DiskName {
                path: mpath,
                file: manifest.compressed.file.clone(),
            });
        }
        if disk.compressed_size() != manifest.compressed.size {
            return Err(BundleError::CompressedSize {
                path: disk.path().to_path_buf(),
                manifest: mpath,
                actual: disk.compressed_size(),
                expected: manifest.compressed.size,
            });
        }
        if disk.size() != manifest.image.size {
            return Err(BundleError::ImageSize {
                path: disk.path().to_path_buf(),
                declared: disk.size(),
                frames: disk.frames(),
                expected: manifest.image.size,
            });
        }
        Ok(Bundle {
            dir,
            manifest_bytes,
            manifest,
            attestations,
            disk,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The opened folder.
    pub fn dir(&self) -> &BundleDir {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The exact `wafer.json` bytes the manifest was parsed from (what approvals sign).
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// sha256 of [`Bundle::manifest_bytes`], lowercase hex.
    pub fn manifest_sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.manifest_bytes))
    }

    /// The attestations as read when the bundle was opened.
    pub fn attestations(&self) -> &[Attestation] {
        &self.attestations
    }

    /// The disk.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }
}

/// Parses `wafer.json` bytes, naming the file in the error.
pub fn parse_manifest(path: &Path, bytes: &[u8]) -> Result<Manifest, BundleError> {
    Manifest::from_json(bytes).map_err(|source| BundleError::Manifest {
        path: path.to_path_buf(),
        source,
    })
}
