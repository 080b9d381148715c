//! `.rpm` package files: lead, signature header, header, and a streaming payload reader.
//!
//! Layout (LSB 5.0 §22.2 "Package File Format"; rpm lib/package.c, lib/rpmlead.c):
//! a 96-byte lead (`ed ab ee db` magic, format version, type, arch, name, os, signature type 5),
//! the signature header (a header with magic, padded with zeros to a multiple of 8 bytes), the
//! main header (with magic), then the payload: an archive compressed as `PAYLOADCOMPRESSOR` says
//! (`gzip`, `bzip2`, `xz`, `lzma`, `zstd`, or none). The archive is cpio "newc" (`070701`, 110-byte
//! ASCII-hex headers, name and data each padded to 4 bytes, ended by `TRAILER!!!`) or rpm's
//! stripped cpio (`07070X` followed by the 8-hex-digit index of the file in the header's file list,
//! then the data, padded to 4; all metadata comes from the header), which rpm ≥ 4.12 uses for
//! packages with files of 4 GiB or more.

use std::collections::HashMap;
use std::io::{self, Read};

use super::header::{tag, Header, HeaderError};
use super::{FileEntry, FileListError, Package};

/// Lead magic.
pub const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const MAX_NAME: usize = 4096;

/// Errors reading a `.rpm` file.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// I/O error or premature end.
    #[error("rpm package: {what}: {source}")]
    Io {
        /// What was being read.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Not an rpm (lead magic).
    #[error("rpm package: no lead magic at offset 0")]
    BadLead,
    /// Header error.
    #[error("rpm package {which} header: {source}")]
    Header {
        /// "signature" or "main".
        which: &'static str,
        /// The error.
        #[source]
        source: HeaderError,
    },
    /// File list error.
    #[error("rpm package: {0}")]
    Files(#[from] FileListError),
    /// Unsupported payload.
    #[error("rpm package: unsupported payload {0}")]
    Unsupported(String),
    /// Bad cpio data.
    #[error("rpm package payload: cpio entry {entry}: {what}")]
    Cpio {
        /// Entry number.
        entry: usize,
        /// What is wrong.
        what: String,
    },
}

fn io_err(what: &'static str) -> impl Fn(io::Error) -> PackageError {
    move |source| PackageError::Io { what, source }
}

/// The 96-byte lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lead {
    /// Format major version (3 or 4).
    pub major: u8,
    /// Format minor version.
    pub minor: u8,
    /// 0 binary, 1 source.
    pub kind: u16,
    /// Package name as written in the lead (may be truncated; use the header's NAME).
    pub name: String,
    /// Signature type (5 = header-style).
    pub signature_type: u16,
}

fn read_header<R: Read>(
    r: &mut R,
    which: &'static str,
    pad8: bool,
) -> Result<(Header, usize), PackageError> {
    let mut pre = [0u8; 16];
    r.read_exact(&mut pre).map_err(io_err(which))?;
    let hdr = |source| PackageError::Header { which, source };
    if pre[..8] != super::header::HEADER_MAGIC {
        return Err(hdr(HeaderError::BadMagic(0)));
    }
    let il = u32::from_be_bytes([pre[8], pre[9], pre[10], pre[11]]);
    let dl = u32::from_be_bytes([pre[12], pre[13], pre[14], pre[15]]);
    let size = Header::blob_size(il, dl).map_err(hdr)?;
    let mut blob = pre[8..].to_vec();
    r.by_ref()
        .take((size - 8) as u64)
        .read_to_end(&mut blob)
        .map_err(io_err(which))?;
    if blob.len() != size {
        return Err(hdr(HeaderError::Truncated {
            offset: blob.len(),
            need: size,
            have: blob.len(),
        }));
    }
    let h = Header::parse(&blob).map_err(hdr)?;
    let mut used = size + 8;
    if pad8 {
        let pad = (8 - used % 8) % 8;
        let mut p = [0u8; 8];
        r.read_exact(&mut p[..pad]).map_err(io_err(which))?;
        used += pad;
    }
    Ok((h, used))
}

/// An open `.rpm` file whose payload is read entry by entry.
pub struct RpmPackage<'r> {
    /// The lead.
    pub lead: Lead,
    /// The signature header.
    pub signature: Header,
    /// The main header.
    pub header: Header,
    files: Vec<FileEntry>,
    by_path: HashMap<String, usize>,
    /// Last regular file (by header index) of each inode, for hard-link sets.
    last_link: HashMap<u32, usize>,
    payload: Box<dyn Read + 'r>,
    remaining: u64,
    pad: u64,
    entries: usize,
    done: bool,
}

impl std::fmt::Debug for RpmPackage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpmPackage")
            .field("lead", &self.lead)
            .field("files", &self.files.len())
            .finish()
    }
}

/// One payload entry: its archive path, header metadata and a reader for its contents.
pub struct PayloadEntry<'a> {
    /// Absolute path (the archive's `./` prefix removed).
    pub path: String,
    /// The file's metadata from the header (mode, owner, digest, caps, ...), when found there.
    pub file: Option<FileEntry>,
    /// Mode from the archive (or the header for stripped archives).
    pub mode: u32,
    /// Size of the contents in the archive (0 for earlier links of a hard-link set).
    pub size: u64,
    reader: &'a mut RpmPackage<'static>,
}

impl std::fmt::Debug for PayloadEntry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadEntry")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("size", &self.size)
            .finish()
    }
}

impl Read for PayloadEntry<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &mut self.reader;
        if r.remaining == 0 {
            return Ok(0);
        }
        let n = buf.len().min(r.remaining as usize);
        let got = r.payload.read(&mut buf[..n])?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "rpm payload ended inside a file",
            ));
        }
        r.remaining -= got as u64;
        Ok(got)
    }
}

fn hex8(b: &[u8], entry: usize, field: &str) -> Result<u64, PackageError> {
    let s = std::str::from_utf8(b)
        .ok()
        .filter(|s| s.bytes().all(|c| c.is_ascii_hexdigit()));
    s.and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(|| PackageError::Cpio {
            entry,
            what: format!("field {field} is not 8 hex digits"),
        })
}

impl RpmPackage<'static> {
    /// Open a package from a reader: read lead and both headers, set up the payload decompressor.
    pub fn open<R: Read + 'static>(mut r: R) -> Result<RpmPackage<'static>, PackageError> {
        let mut lead = [0u8; 96];
        r.read_exact(&mut lead).map_err(io_err("lead"))?;
        if lead[..4] != LEAD_MAGIC {
            return Err(PackageError::BadLead);
        }
        let name_end = lead[10..76].iter().position(|&c| c == 0).unwrap_or(66);
        let lead = Lead {
            major: lead[4],
            minor: lead[5],
            kind: u16::from_be_bytes([lead[6], lead[7]]),
            name: String::from_utf8_lossy(&lead[10..10 + name_end]).into_owned(),
            signature_type: u16::from_be_bytes([lead[78], lead[79]]),
        };
        let (signature, _) = read_header(&mut r, "signature", true)?;
        let (header, _) = read_header(&mut r, "main", false)?;
        let format = header
            .string(tag::PAYLOADFORMAT)
            .unwrap_or_else(|| "cpio".into());
        if format != "cpio" {
            return Err(PackageError::Unsupported(format!("format {format}")));
        }
        let mut r = io::BufReader::new(r);
        let comp = match header.string(tag::PAYLOADCOMPRESSOR) {
            Some(c) => c,
            // Absent: legacy gzip, or an uncompressed payload (rpm's gzip reader passes raw data
            // through); tell them apart by the gzip magic.
            None => {
                use io::BufRead;
                let head = r.fill_buf().map_err(io_err("payload"))?;
                if head.starts_with(&[0x1f, 0x8b]) {
                    "gzip".into()
                } else {
                    "identity".into()
                }
            }
        };
        let payload: Box<dyn Read> = match comp.as_str() {
            "gzip" => Box::new(flate2::read::MultiGzDecoder::new(r)),
            "bzip2" => Box::new(bzip2::read::MultiBzDecoder::new(r)),
            "xz" => Box::new(xz2::read::XzDecoder::new_multi_decoder(r)),
            "lzma" => {
                let s = xz2::stream::Stream::new_lzma_decoder(u64::MAX)
                    .map_err(|e| PackageError::Unsupported(format!("lzma decoder: {e}")))?;
                Box::new(xz2::read::XzDecoder::new_stream(r, s))
            }
            "zstd" => {
                Box::new(zstd::stream::read::Decoder::new(r).map_err(io_err("zstd payload"))?)
            }
            "identity" | "none" => Box::new(r),
            other => return Err(PackageError::Unsupported(format!("compressor {other}"))),
        };
        let files = Package::files_of_header(&header)?;
        let mut last_link = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            if let (Some(ino), 0o100000) = (f.inode, f.mode as u32 & 0o170000) {
                last_link.insert(ino, i);
            }
        }
        let by_path = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.path.clone(), i))
            .collect();
        Ok(RpmPackage {
            lead,
            signature,
            header,
            files,
            by_path,
            last_link,
            payload,
            remaining: 0,
            pad: 0,
            entries: 0,
            done: false,
        })
    }

    /// Bytes a stripped (`07070X`) archive holds for file `i`: regular files carry their size
    /// (for a hard-link set only the last member in header order carries the data), symlinks their
    /// target, everything else nothing.
    fn stripped_size(&self, i: usize) -> u64 {
        let Some(f) = self.files.get(i) else { return 0 };
        match f.mode as u32 & 0o170000 {
            0o120000 => f.size,
            0o100000 => {
                let later_link = f
                    .inode
                    .and_then(|ino| self.last_link.get(&ino))
                    .is_some_and(|&last| last > i);
                if later_link {
                    0
                } else {
                    f.size
                }
            }
            _ => 0,
        }
    }

    /// The package fields from the main header.
    pub fn package(&self) -> Result<Package, HeaderError> {
        Package::from_header(self.header.clone())
    }

    /// The file list from the main header.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    fn skip(&mut self, n: u64) -> Result<(), PackageError> {
        let got = io::copy(&mut self.payload.by_ref().take(n), &mut io::sink())
            .map_err(io_err("payload"))?;
        if got != n {
            return Err(PackageError::Io {
                what: "payload",
                source: io::ErrorKind::UnexpectedEof.into(),
            });
        }
        Ok(())
    }

    /// The next payload entry, or `None` after the trailer. Unread contents of the previous
    /// entry are skipped.
    pub fn next_entry(&mut self) -> Result<Option<PayloadEntry<'_>>, PackageError> {
        if self.done {
            return Ok(None);
        }
        let (rem, pad) = (self.remaining, self.pad);
        self.remaining = 0;
        self.pad = 0;
        self.skip(rem + pad)?;
        let entry = self.entries;
        self.entries += 1;
        let mut magic = [0u8; 6];
        self.payload
            .read_exact(&mut magic)
            .map_err(io_err("cpio header"))?;
        let cpio = |what: String| PackageError::Cpio { entry, what };
        if &magic == b"07070X" {
            let mut idx = [0u8; 8];
            self.payload
                .read_exact(&mut idx)
                .map_err(io_err("cpio header"))?;
            let i = hex8(&idx, entry, "index")? as usize;
            let f = self.files.get(i).cloned().ok_or_else(|| {
                cpio(format!(
                    "file index {i} beyond the header's {} files",
                    self.files.len()
                ))
            })?;
            let size = self.stripped_size(i);
            self.remaining = size;
            // Stripped headers are 14 bytes ("07070X" + 8 hex digits), padded to 4: 2 bytes.
            self.skip(2)?;
            self.pad = (4 - size % 4) % 4;
            let (path, mode) = (f.path.clone(), f.mode as u32);
            return Ok(Some(PayloadEntry {
                path,
                file: Some(f),
                mode,
                size,
                reader: self,
            }));
        }
        if &magic != b"070701" && &magic != b"070702" {
            return Err(cpio(format!(
                "bad magic {:?}",
                String::from_utf8_lossy(&magic)
            )));
        }
        let mut h = [0u8; 104];
        self.payload
            .read_exact(&mut h)
            .map_err(io_err("cpio header"))?;
        let field = |n: usize, name: &str| hex8(&h[n * 8..n * 8 + 8], entry, name);
        let mode = field(1, "mode")? as u32;
        let size = field(6, "filesize")?;
        let namesize = field(11, "namesize")? as usize;
        if namesize == 0 || namesize > MAX_NAME {
            return Err(cpio(format!("name size {namesize} out of range")));
        }
        let mut name = vec![0u8; namesize];
        self.payload
            .read_exact(&mut name)
            .map_err(io_err("cpio name"))?;
        if name.pop() != Some(0) {
            return Err(cpio("name not NUL-terminated".into()));
        }
        self.skip(((4 - (110 + namesize) % 4) % 4) as u64)?;
        let name = String::from_utf8_lossy(&name).into_owned();
        if name == "TRAILER!!!" {
            self.done = true;
            return Ok(None);
        }
        let path = match name.strip_prefix('.') {
            Some(p) if p.starts_with('/') => p.to_string(),
            _ if name.starts_with('/') => name.clone(),
            _ => format!("/{name}"),
        };
        self.remaining = size;
        self.pad = (4 - size % 4) % 4;
        let file = self
            .by_path
            .get(&path)
            .and_then(|&i| self.files.get(i))
            .cloned();
        Ok(Some(PayloadEntry {
            path,
            file,
            mode,
            size,
            reader: self,
        }))
    }
}

impl Package {
    /// The file list of a header (see [`Package::files`]).
    pub fn files_of_header(h: &Header) -> Result<Vec<FileEntry>, FileListError> {
        let name = h.string(tag::NAME).unwrap_or_default();
        super::files_of(h, &name)
    }
}

impl RpmPackage<'_> {
    /// The header as rpm stores it in a database after installing this package: the main header
    /// with the signature header's digests merged in (rpm's `headerMergeLegacySigs`: signature
    /// `SIZE`→`SIGSIZE`, `MD5`→`SIGMD5`, `PGP`→`SIGPGP`, `SHA1`, `SHA256`, `RSA`, `DSA` headers) and
    /// the install tags `INSTALLTIME`, `INSTALLTID`, `INSTALLCOLOR` and `FILESTATES` (all files
    /// "normal"). `install_time` is seconds since the epoch (pass SOURCE_DATE_EPOCH for builds).
    pub fn header_for_install(&self, install_time: u32, tid: u32) -> Header {
        use super::header::{sigtag, Value};
        let mut h = self.header.clone();
        let map = [
            (sigtag::SIZE, tag::SIGSIZE),
            (sigtag::MD5, tag::SIGMD5),
            (sigtag::PGP, tag::SIGPGP),
            (tag::SHA1HEADER, tag::SHA1HEADER),
            (tag::SHA256HEADER, tag::SHA256HEADER),
            (tag::RSAHEADER, tag::RSAHEADER),
            (tag::DSAHEADER, tag::DSAHEADER),
        ];
        for (from, to) in map {
            if let Some(e) = self.signature.entry(from) {
                if !h.has(to) {
                    let mut e = e.clone();
                    e.tag = to;
                    h.entries.push(e);
                }
            }
        }
        h.set(tag::INSTALLTIME, Value::Int32(vec![install_time]));
        h.set(tag::INSTALLCOLOR, Value::Int32(vec![0]));
        h.set(tag::INSTALLTID, Value::Int32(vec![tid]));
        if !self.files.is_empty() {
            h.set(tag::FILESTATES, Value::Char(vec![0; self.files.len()]));
        }
        h
    }
}
