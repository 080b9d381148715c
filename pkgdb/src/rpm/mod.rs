//! rpm headers, the package metadata extracted from them, and `.rpm` package files.

pub mod header;
pub mod package;

pub use header::{Header, HeaderError, Value};
pub use package::{PackageError, PayloadEntry, RpmPackage};

use header::tag;

/// File digest algorithm (rpm's `FILEDIGESTALGO`, OpenPGP hash algorithm ids, RFC 4880 §9.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgo {
    /// 1 (default when the tag is absent).
    Md5,
    /// 2.
    Sha1,
    /// 8.
    Sha256,
    /// 9.
    Sha384,
    /// 10.
    Sha512,
    /// 11.
    Sha224,
    /// Anything else, by number.
    Other(u32),
}

impl DigestAlgo {
    /// From the OpenPGP id.
    pub fn from_id(id: u32) -> DigestAlgo {
        match id {
            1 => DigestAlgo::Md5,
            2 => DigestAlgo::Sha1,
            8 => DigestAlgo::Sha256,
            9 => DigestAlgo::Sha384,
            10 => DigestAlgo::Sha512,
            11 => DigestAlgo::Sha224,
            n => DigestAlgo::Other(n),
        }
    }
}

/// File flags (rpm's `rpmfileAttrs`).
#[allow(missing_docs)]
pub mod fileflags {
    pub const CONFIG: u32 = 1 << 0;
    pub const DOC: u32 = 1 << 1;
    pub const MISSINGOK: u32 = 1 << 3;
    pub const NOREPLACE: u32 = 1 << 4;
    pub const GHOST: u32 = 1 << 6;
    pub const SPECFILE: u32 = 1 << 5;
    pub const LICENSE: u32 = 1 << 7;
    pub const README: u32 = 1 << 8;
    pub const ARTIFACT: u32 = 1 << 12;
}

/// Attributes `rpm -V` checks (rpm's `rpmVerifyAttrs`, the bits of `FILEVERIFYFLAGS`).
#[allow(missing_docs)]
pub mod verifyflags {
    pub const DIGEST: u32 = 1 << 0;
    pub const SIZE: u32 = 1 << 1;
    pub const LINKTO: u32 = 1 << 2;
    pub const USER: u32 = 1 << 3;
    pub const GROUP: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const MODE: u32 = 1 << 6;
    pub const RDEV: u32 = 1 << 7;
    pub const CAPS: u32 = 1 << 8;
    /// Everything (rpm's `RPMVERIFY_ALL`, the default when the header has no FILEVERIFYFLAGS).
    pub const ALL: u32 = !0;
}

/// Install states of a file (`FILESTATES`, rpm's `rpmfileState`).
#[allow(missing_docs)]
pub mod filestate {
    pub const NORMAL: u8 = 0;
    pub const REPLACED: u8 = 1;
    pub const NOTINSTALLED: u8 = 2;
    pub const NETSHARED: u8 = 3;
    pub const WRONGCOLOR: u8 = 4;
    pub const MISSING: u8 = 255;
}

/// One file of a package, as its header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute path (dirname + basename, or OLDFILENAMES in old headers).
    pub path: String,
    /// `st_mode` (type and permission bits).
    pub mode: u16,
    /// Owner name (`None` when the header has no FILEUSERNAME).
    pub user: Option<String>,
    /// Group name.
    pub group: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Hex digest of the contents (`None` for non-regular files, where rpm stores "").
    pub digest: Option<String>,
    /// Algorithm of `digest`.
    pub digest_algo: DigestAlgo,
    /// `rpmfileAttrs` bits (see [`fileflags`]); `None` when the header has no FILEFLAGS.
    pub flags: Option<u32>,
    /// Symlink target (`None` unless a symlink).
    pub link_target: Option<String>,
    /// Capabilities in `cap_to_text` form, e.g. `cap_net_raw=ep` (`None` when none).
    pub caps: Option<String>,
    /// Modification time (seconds since the epoch).
    pub mtime: Option<u32>,
    /// Device number for device nodes.
    pub rdev: Option<u32>,
    /// Inode number within the package (hard links share it).
    pub inode: Option<u32>,
    /// Install state (`FILESTATES`, see [`filestate`]); `None` when the header has none (a
    /// package file rather than an installed header).
    pub state: Option<u8>,
    /// What `rpm -V` checks for this file (`FILEVERIFYFLAGS`, see [`verifyflags`]);
    /// [`verifyflags::ALL`] when the header has none.
    pub verify_flags: u32,
}

impl FileEntry {
    /// Whether the file is marked `%config`.
    pub fn is_config(&self) -> bool {
        self.flags.is_some_and(|f| f & fileflags::CONFIG != 0)
    }
}

/// Errors reading the file list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileListError {
    /// Underlying header access failed.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// An array has a different length from BASENAMES.
    #[error(
        "package {package}: tag {tag} has {found} elements, expected {expected} (one per file)"
    )]
    LengthMismatch {
        /// Package name.
        package: String,
        /// The tag.
        tag: u32,
        /// Its length.
        found: usize,
        /// Number of files.
        expected: usize,
    },
    /// DIRINDEXES points past DIRNAMES.
    #[error("package {package}: file {file} has directory index {index} but DIRNAMES has {dirs} entries")]
    DirIndexOutOfRange {
        /// Package name.
        package: String,
        /// File number.
        file: usize,
        /// The bad index.
        index: u64,
        /// Number of directories.
        dirs: usize,
    },
}

/// An installed (or packaged) rpm, described by its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// NAME.
    pub name: String,
    /// EPOCH (`None` when absent).
    pub epoch: Option<u32>,
    /// VERSION.
    pub version: String,
    /// RELEASE.
    pub release: String,
    /// ARCH (absent for `gpg-pubkey`).
    pub arch: Option<String>,
    /// SOURCERPM: the source package file name (absent for source packages and keys; the literal
    /// `(none)` that rpm writes into `gpg-pubkey` headers is reported as absent).
    pub source_rpm: Option<String>,
    /// VENDOR.
    pub vendor: Option<String>,
    /// LICENSE.
    pub license: Option<String>,
    /// SUMMARY.
    pub summary: Option<String>,
    /// MODULARITYLABEL.
    pub modularity_label: Option<String>,
    /// INSTALLTIME (seconds since the epoch).
    pub install_time: Option<u64>,
    /// SIZE or LONGSIZE: installed size in bytes.
    pub size: Option<u64>,
    /// SIGMD5 as lowercase hex.
    pub sigmd5: Option<String>,
    /// `true` for `gpg-pubkey` pseudo-packages (imported signing keys, not software).
    pub is_gpg_pubkey: bool,
    /// Record number in the database (`hnum`, BDB key, ndb pkgidx), when read from one.
    pub db_id: Option<u32>,
    /// The full header (for the file list and anything else).
    pub header: Header,
}

impl Package {
    /// Extract the package fields from a header. Fails only when NAME, VERSION or RELEASE is missing.
    pub fn from_header(header: Header) -> Result<Package, HeaderError> {
        let req = |t| header.string(t).ok_or(HeaderError::MissingTag(t));
        let name = req(tag::NAME)?;
        let version = req(tag::VERSION)?;
        let release = req(tag::RELEASE)?;
        Ok(Package {
            is_gpg_pubkey: name == "gpg-pubkey",
            epoch: header.int(tag::EPOCH).map(|e| e as u32),
            arch: header.string(tag::ARCH),
            source_rpm: header.string(tag::SOURCERPM).filter(|s| s != "(none)"),
            vendor: header.string(tag::VENDOR),
            license: header.string(tag::LICENSE),
            summary: header.string(tag::SUMMARY),
            modularity_label: header.string(tag::MODULARITYLABEL),
            install_time: header.int(tag::INSTALLTIME),
            size: header.int(tag::LONGSIZE).or_else(|| header.int(tag::SIZE)),
            sigmd5: header.bin(tag::SIGMD5).map(hex::encode),
            db_id: None,
            name,
            version,
            release,
            header,
        })
    }

    /// `name-[epoch:]version-release.arch` as `rpm -q` prints it (without epoch, like rpm's default).
    pub fn nevra(&self) -> String {
        let mut s = format!("{}-{}-{}", self.name, self.version, self.release);
        if let Some(a) = &self.arch {
            s.push('.');
            s.push_str(a);
        }
        s
    }

    /// The version label for comparisons.
    pub fn evr(&self) -> crate::version::Evr {
        crate::version::Evr::new(self.epoch, &self.version, &self.release)
    }

    /// REQUIRENAME: the capabilities it needs (package names, virtual provides, sonames such as
    /// `libc.so.6()(64bit)`, file paths such as `/bin/sh`), without rpm's own `rpmlib(...)`
    /// features, duplicates removed, in header order. Empty when the tag is absent or unreadable;
    /// at most [`MAX_RELATIONS`].
    pub fn requires(&self) -> Vec<String> {
        relation_names(&self.header, tag::REQUIRENAME, |n| {
            !n.starts_with("rpmlib(")
        })
    }

    /// PROVIDENAME: the capabilities it offers (its own name, virtual names, sonames), duplicates
    /// removed. File provides are its file paths ([`Package::files`]), not listed here. Empty
    /// when the tag is absent or unreadable; at most [`MAX_RELATIONS`].
    pub fn provides(&self) -> Vec<String> {
        relation_names(&self.header, tag::PROVIDENAME, |_| true)
    }

    /// The per-file list. Fails with a clean error when the arrays disagree or point out of range.
    pub fn files(&self) -> Result<Vec<FileEntry>, FileListError> {
        files_of(&self.header, &self.name)
    }
}

/// Most requires or provides kept per package (a real one has a few hundred at most; a hostile
/// header could list millions).
pub const MAX_RELATIONS: usize = 4096;

fn relation_names(h: &Header, t: u32, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    h.strings(t)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| !n.is_empty() && keep(n) && seen.insert(n.clone()))
        .take(MAX_RELATIONS)
        .collect()
}

fn files_of(h: &Header, name: &str) -> Result<Vec<FileEntry>, FileListError> {
    let paths: Vec<String> = if h.has(tag::BASENAMES) {
        let base = h.strings(tag::BASENAMES)?;
        let dirs = h.strings(tag::DIRNAMES)?;
        let idx = h.ints(tag::DIRINDEXES)?;
        if idx.len() != base.len() {
            return Err(FileListError::LengthMismatch {
                package: name.into(),
                tag: tag::DIRINDEXES,
                found: idx.len(),
                expected: base.len(),
            });
        }
        let mut out = Vec::with_capacity(base.len());
        for (i, (b, &d)) in base.iter().zip(idx.iter()).enumerate() {
            let dir = dirs
                .get(d as usize)
                .ok_or(FileListError::DirIndexOutOfRange {
                    package: name.into(),
                    file: i,
                    index: d,
                    dirs: dirs.len(),
                })?;
            out.push(format!("{dir}{b}"));
        }
        out
    } else if h.has(tag::OLDFILENAMES) {
        h.strings(tag::OLDFILENAMES)?
    } else {
        return Ok(Vec::new());
    };
    let n = paths.len();
    let check = |t: u32, len: usize| -> Result<(), FileListError> {
        if len != n {
            return Err(FileListError::LengthMismatch {
                package: name.into(),
                tag: t,
                found: len,
                expected: n,
            });
        }
        Ok(())
    };
    let opt_ints = |t: u32| -> Result<Option<Vec<u64>>, FileListError> {
        if !h.has(t) {
            return Ok(None);
        }
        let v = h.ints(t)?;
        check(t, v.len())?;
        Ok(Some(v))
    };
    let opt_strs = |t: u32| -> Result<Option<Vec<String>>, FileListError> {
        if !h.has(t) {
            return Ok(None);
        }
        let v = h.strings(t)?;
        check(t, v.len())?;
        Ok(Some(v))
    };
    let modes = opt_ints(tag::FILEMODES)?;
    let sizes = match opt_ints(tag::LONGFILESIZES)? {
        Some(v) => Some(v),
        None => opt_ints(tag::FILESIZES)?,
    };
    let users = opt_strs(tag::FILEUSERNAME)?;
    let groups = opt_strs(tag::FILEGROUPNAME)?;
    let digests = opt_strs(tag::FILEDIGESTS)?;
    let links = opt_strs(tag::FILELINKTOS)?;
    let caps = opt_strs(tag::FILECAPS)?;
    let flags = opt_ints(tag::FILEFLAGS)?;
    let mtimes = opt_ints(tag::FILEMTIMES)?;
    let rdevs = opt_ints(tag::FILERDEVS)?;
    let inodes = opt_ints(tag::FILEINODES)?;
    let states = opt_ints(tag::FILESTATES)?;
    let vflags = opt_ints(tag::FILEVERIFYFLAGS)?;
    let algo = DigestAlgo::from_id(h.int(tag::FILEDIGESTALGO).unwrap_or(1) as u32);
    let nonempty = |v: &Option<Vec<String>>, i: usize| {
        v.as_ref()
            .and_then(|v| v.get(i))
            .filter(|s| !s.is_empty())
            .cloned()
    };
    let int_at = |v: &Option<Vec<u64>>, i: usize| v.as_ref().and_then(|v| v.get(i)).copied();
    Ok(paths
        .into_iter()
        .enumerate()
        .map(|(i, path)| FileEntry {
            path,
            mode: int_at(&modes, i).unwrap_or(0) as u16,
            user: users.as_ref().and_then(|v| v.get(i)).cloned(),
            group: groups.as_ref().and_then(|v| v.get(i)).cloned(),
            size: int_at(&sizes, i).unwrap_or(0),
            digest: nonempty(&digests, i),
            digest_algo: algo,
            flags: int_at(&flags, i).map(|f| f as u32),
            link_target: nonempty(&links, i),
            caps: nonempty(&caps, i),
            mtime: int_at(&mtimes, i).map(|v| v as u32),
            rdev: int_at(&rdevs, i).map(|v| v as u32),
            inode: int_at(&inodes, i).map(|v| v as u32),
            state: int_at(&states, i).map(|v| v as u8),
            verify_flags: int_at(&vflags, i).map_or(verifyflags::ALL, |v| v as u32),
        })
        .collect())
}
