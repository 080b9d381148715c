//! The rpm header structure: parse, query, edit and serialize.
//!
//! Format (LSB 5.0 "Package File Format" §22.2.2 "Header Structure" and rpm's lib/header.c):
//! a header is `il` (u32 BE, number of index entries), `dl` (u32 BE, size of the data store),
//! `il` index entries of 16 bytes (`tag` i32, `type` u32, `offset` i32, `count` u32, all
//! big-endian) and the `dl`-byte data store. In a `.rpm` file the header is preceded by the
//! 8-byte magic `8e ad e8 01 00 00 00 00`; in a database it is stored bare (a "blob").
//!
//! A header usually starts with a *region tag* (`HEADERIMMUTABLE` 63 for the main header,
//! `HEADERSIGNATURES` 62 for the signature header, `HEADERIMAGE` 61 in old packages): a BIN entry
//! of count 16 whose offset points at a 16-byte trailer in the data store. The trailer is an index
//! entry whose negated offset is 16 times the number of entries covered by the region (the region
//! tag included). Entries after the region ("dribbles") were added later, e.g. by `rpm -i`
//! (`INSTALLTIME`, `INSTALLTID`, ...), and replace region entries of the same tag.
//!
//! Entry data is kept as raw big-endian bytes; accessors decode it on demand. Parsing caps the
//! index at 65535 entries and the data store at 256 MiB, as rpm does (`hdrchkTags`, `hdrchkData`).

use std::fmt;

/// Magic that precedes a header in a `.rpm` file.
pub const HEADER_MAGIC: [u8; 8] = [0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
/// Maximum number of index entries accepted (rpm's `HEADER_TAGS_MAX`).
pub const MAX_ENTRIES: u32 = 0xffff;
/// Maximum data store size accepted (rpm's `HEADER_DATA_MAX`).
pub const MAX_DATA: u32 = 0x0fff_ffff;

/// Tag numbers used by this crate (rpm's `rpmTag`, lib/rpmtag.h).
#[allow(missing_docs)]
pub mod tag {
    pub const HEADERIMAGE: u32 = 61;
    pub const HEADERSIGNATURES: u32 = 62;
    pub const HEADERIMMUTABLE: u32 = 63;
    pub const HEADERI18NTABLE: u32 = 100;
    pub const SIGSIZE: u32 = 257;
    pub const SIGPGP: u32 = 259;
    pub const SIGMD5: u32 = 261;
    pub const PUBKEYS: u32 = 266;
    pub const DSAHEADER: u32 = 267;
    pub const RSAHEADER: u32 = 268;
    pub const SHA1HEADER: u32 = 269;
    pub const SHA256HEADER: u32 = 273;
    pub const NAME: u32 = 1000;
    pub const VERSION: u32 = 1001;
    pub const RELEASE: u32 = 1002;
    pub const EPOCH: u32 = 1003;
    pub const SUMMARY: u32 = 1004;
    pub const DESCRIPTION: u32 = 1005;
    pub const BUILDTIME: u32 = 1006;
    pub const INSTALLTIME: u32 = 1008;
    pub const SIZE: u32 = 1009;
    pub const VENDOR: u32 = 1011;
    pub const LICENSE: u32 = 1014;
    pub const GROUP: u32 = 1016;
    pub const OS: u32 = 1021;
    pub const ARCH: u32 = 1022;
    pub const OLDFILENAMES: u32 = 1027;
    pub const FILESIZES: u32 = 1028;
    pub const FILESTATES: u32 = 1029;
    pub const FILEMODES: u32 = 1030;
    pub const FILERDEVS: u32 = 1033;
    pub const FILEMTIMES: u32 = 1034;
    pub const FILEDIGESTS: u32 = 1035;
    pub const FILELINKTOS: u32 = 1036;
    pub const FILEFLAGS: u32 = 1037;
    pub const FILEVERIFYFLAGS: u32 = 1045;
    pub const FILEUSERNAME: u32 = 1039;
    pub const FILEGROUPNAME: u32 = 1040;
    pub const SOURCERPM: u32 = 1044;
    pub const PROVIDENAME: u32 = 1047;
    pub const REQUIRENAME: u32 = 1049;
    pub const CONFLICTNAME: u32 = 1054;
    pub const OBSOLETENAME: u32 = 1090;
    pub const TRIGGERNAME: u32 = 1066;
    pub const FILEINODES: u32 = 1096;
    pub const DIRINDEXES: u32 = 1116;
    pub const BASENAMES: u32 = 1117;
    pub const DIRNAMES: u32 = 1118;
    pub const PAYLOADFORMAT: u32 = 1124;
    pub const PAYLOADCOMPRESSOR: u32 = 1125;
    pub const INSTALLCOLOR: u32 = 1127;
    pub const INSTALLTID: u32 = 1128;
    pub const LONGFILESIZES: u32 = 5008;
    pub const LONGSIZE: u32 = 5009;
    pub const FILECAPS: u32 = 5010;
    pub const FILEDIGESTALGO: u32 = 5011;
    pub const FILETRIGGERNAME: u32 = 5069;
    pub const TRANSFILETRIGGERNAME: u32 = 5079;
    pub const RECOMMENDNAME: u32 = 5046;
    pub const SUGGESTNAME: u32 = 5049;
    pub const SUPPLEMENTNAME: u32 = 5052;
    pub const ENHANCENAME: u32 = 5055;
    pub const MODULARITYLABEL: u32 = 5096;
}

/// Signature-header tag numbers (rpm's `rpmSigTag`).
#[allow(missing_docs)]
pub mod sigtag {
    pub const SIZE: u32 = 1000;
    pub const PGP: u32 = 1002;
    pub const MD5: u32 = 1004;
    pub const PAYLOADSIZE: u32 = 1007;
    pub const LONGSIZE: u32 = 270;
}

/// Data types of index entries (LSB §22.2.2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum TagType {
    Null = 0,
    Char = 1,
    Int8 = 2,
    Int16 = 3,
    Int32 = 4,
    Int64 = 5,
    String = 6,
    Bin = 7,
    StringArray = 8,
    I18nString = 9,
}

impl TagType {
    fn from_u32(v: u32) -> Option<TagType> {
        Some(match v {
            0 => TagType::Null,
            1 => TagType::Char,
            2 => TagType::Int8,
            3 => TagType::Int16,
            4 => TagType::Int32,
            5 => TagType::Int64,
            6 => TagType::String,
            7 => TagType::Bin,
            8 => TagType::StringArray,
            9 => TagType::I18nString,
            _ => return None,
        })
    }
    fn align(self) -> usize {
        match self {
            TagType::Int16 => 2,
            TagType::Int32 => 4,
            TagType::Int64 => 8,
            _ => 1,
        }
    }
}

/// Errors from header parsing and from reading fields out of a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Input ended early.
    #[error("rpm header truncated at offset {offset}: need {need} bytes, have {have}")]
    Truncated {
        /// Where the missing bytes start.
        offset: usize,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// Bad magic before a header in a package file.
    #[error("rpm header magic missing at offset {0}")]
    BadMagic(usize),
    /// il/dl out of range.
    #[error("rpm header has {il} index entries and {dl} data bytes, beyond the limits")]
    TooLarge {
        /// Index entry count.
        il: u32,
        /// Data store length.
        dl: u32,
    },
    /// An index entry is invalid.
    #[error("rpm header index entry {index} (tag {tag}): {what}")]
    BadEntry {
        /// Entry number.
        index: usize,
        /// Its tag.
        tag: u32,
        /// What is wrong.
        what: &'static str,
    },
    /// Region tag or trailer invalid.
    #[error("rpm header region (tag {tag}): {what}")]
    BadRegion {
        /// Region tag.
        tag: u32,
        /// What is wrong.
        what: &'static str,
    },
    /// A header digest (SHA1HEADER or SHA256HEADER) does not match the immutable region: the
    /// header was altered or damaged and none of its values can be trusted.
    #[error("rpm header {algo} digest mismatch: the header says {expected}, its immutable region hashes to {actual}")]
    DigestMismatch {
        /// `SHA1` or `SHA256`.
        algo: &'static str,
        /// The digest stored in the header.
        expected: String,
        /// The digest computed over the region.
        actual: String,
    },
    /// A tag needed for this operation is missing.
    #[error("rpm header has no tag {0}")]
    MissingTag(u32),
    /// A tag has a type or count other than expected.
    #[error("rpm header tag {tag}: {what}")]
    BadTag {
        /// The tag.
        tag: u32,
        /// What is wrong.
        what: String,
    },
}

type Result<T> = std::result::Result<T, HeaderError>;

/// One index entry with its raw (big-endian) data.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// Tag number.
    pub tag: u32,
    /// Data type.
    pub ty: TagType,
    /// Element count.
    pub count: u32,
    /// Raw data bytes, exactly as long as `ty` and `count` require.
    pub data: Vec<u8>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Entry(tag {}, {:?} x{}, {} bytes)",
            self.tag,
            self.ty,
            self.count,
            self.data.len()
        )
    }
}

/// A typed value for building entries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Value {
    Char(Vec<u8>),
    Int8(Vec<u8>),
    Int16(Vec<u16>),
    Int32(Vec<u32>),
    Int64(Vec<u64>),
    String(String),
    Bin(Vec<u8>),
    StringArray(Vec<String>),
}

/// Which header digests [`Header::verify_digests`] found and verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DigestCheck {
    /// `SHA1HEADER` was present and matched.
    pub sha1: bool,
    /// `SHA256HEADER` was present and matched.
    pub sha256: bool,
}

/// A parsed rpm header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// Region tag (61/62/63) if the header has an immutable region.
    pub region_tag: Option<u32>,
    /// How many of `entries` lie inside the region (the region tag itself not counted).
    pub region_len: usize,
    /// All entries except the region tag, in data-store order.
    pub entries: Vec<Entry>,
}

fn be32(b: &[u8], off: usize) -> Result<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(HeaderError::Truncated {
            offset: off,
            need: 4,
            have: b.len().saturating_sub(off),
        })
}

/// Length in bytes of an entry's data starting at `start` in `ds`.
fn data_len(
    ty: TagType,
    count: u32,
    ds: &[u8],
    start: usize,
) -> std::result::Result<usize, &'static str> {
    let count = count as usize;
    let fixed = |size: usize| count.checked_mul(size).ok_or("count overflows");
    let n = match ty {
        TagType::Null => 0,
        TagType::Char | TagType::Int8 | TagType::Bin => fixed(1)?,
        TagType::Int16 => fixed(2)?,
        TagType::Int32 => fixed(4)?,
        TagType::Int64 => fixed(8)?,
        TagType::String | TagType::StringArray | TagType::I18nString => {
            if ty == TagType::String && count != 1 {
                return Err("STRING entry with count other than 1");
            }
            let rest = ds.get(start..).ok_or("offset beyond data store")?;
            let mut pos = 0usize;
            for _ in 0..count {
                let nul = rest
                    .get(pos..)
                    .and_then(|r| r.iter().position(|&c| c == 0))
                    .ok_or("string runs past the end of the data store")?;
                pos += nul + 1;
            }
            pos
        }
    };
    Ok(n)
}

impl Header {
    /// Parse a header blob as stored in an rpm database (no magic). Trailing bytes are an error.
    pub fn parse(blob: &[u8]) -> Result<Header> {
        let (h, used) = Self::parse_prefix(blob)?;
        if used != blob.len() {
            return Err(HeaderError::BadEntry {
                index: 0,
                tag: 0,
                what: "trailing bytes after the data store",
            });
        }
        Ok(h)
    }

    /// Parse a header with the 8-byte magic (as in a `.rpm` file) at the start of `buf`;
    /// returns the header and the number of bytes it used.
    pub fn parse_with_magic(buf: &[u8]) -> Result<(Header, usize)> {
        match buf.get(..8) {
            Some(m) if m == HEADER_MAGIC => {}
            Some(_) => return Err(HeaderError::BadMagic(0)),
            None => {
                return Err(HeaderError::Truncated {
                    offset: 0,
                    need: 8,
                    have: buf.len(),
                })
            }
        }
        let (h, used) = Self::parse_prefix(&buf[8..])?;
        Ok((h, used + 8))
    }

    /// Total size (without magic) of the header at the start of `buf` from its `il`/`dl`, checked
    /// against the caps. Useful to read exactly one header from a stream.
    pub fn blob_size(il: u32, dl: u32) -> Result<usize> {
        if il == 0 || il > MAX_ENTRIES || dl > MAX_DATA {
            return Err(HeaderError::TooLarge { il, dl });
        }
        Ok(8 + il as usize * 16 + dl as usize)
    }

    /// Parse a bare header at the start of `buf`; returns it and the bytes used.
    pub fn parse_prefix(buf: &[u8]) -> Result<(Header, usize)> {
        let il = be32(buf, 0)?;
        let dl = be32(buf, 4)?;
        let total = Self::blob_size(il, dl)?;
        if buf.len() < total {
            return Err(HeaderError::Truncated {
                offset: 0,
                need: total,
                have: buf.len(),
            });
        }
        let il = il as usize;
        let index = &buf[8..8 + il * 16];
        let ds = &buf[8 + il * 16..total];
        let raw = |i: usize| -> Result<(u32, u32, i32, u32)> {
            let e = index
                .get(i * 16..i * 16 + 16)
                .ok_or(HeaderError::Truncated {
                    offset: 8 + i * 16,
                    need: 16,
                    have: 0,
                })?;
            Ok((be32(e, 0)?, be32(e, 4)?, be32(e, 8)? as i32, be32(e, 12)?))
        };
        let mut header = Header::default();
        let mut first = 0usize;
        let (t0, ty0, off0, cnt0) = raw(0)?;
        if matches!(
            t0,
            tag::HEADERIMAGE | tag::HEADERSIGNATURES | tag::HEADERIMMUTABLE
        ) {
            let bad = |what| HeaderError::BadRegion { tag: t0, what };
            if ty0 != TagType::Bin as u32 || cnt0 != 16 {
                return Err(bad("region tag is not BIN with count 16"));
            }
            let off = usize::try_from(off0).map_err(|_| bad("negative region offset"))?;
            let trailer = ds
                .get(off..off.checked_add(16).ok_or(bad("offset overflow"))?)
                .ok_or(bad("region trailer outside the data store"))?;
            let (mut tt, tty, toff, tcnt) = (
                be32(trailer, 0)?,
                be32(trailer, 4)?,
                be32(trailer, 8)? as i32,
                be32(trailer, 12)?,
            );
            if t0 == tag::HEADERSIGNATURES && tt == tag::HEADERIMAGE {
                tt = tag::HEADERSIGNATURES;
            }
            if tt != t0 || tty != TagType::Bin as u32 || tcnt != 16 {
                return Err(bad("region trailer does not match the region tag"));
            }
            let neg = toff
                .checked_neg()
                .filter(|v| *v > 0)
                .ok_or(bad("region trailer offset not negative"))?;
            if neg % 16 != 0 {
                return Err(bad("region size is not a multiple of 16"));
            }
            let ril = neg as usize / 16;
            if ril > il || ril == 0 {
                return Err(bad("region covers more entries than the header has"));
            }
            header.region_tag = Some(t0);
            header.region_len = ril - 1;
            first = 1;
        }
        // rpm's hdrblobVerifyInfo: entries after the region tag lie in data-store order, each
        // aligned, none overlapping the previous one or the region trailer.
        let mut prev_end = 0usize;
        let region_dl = if first == 1 {
            usize::try_from(off0).ok().map(|o| o + 16)
        } else {
            None
        };
        header.entries.reserve(il - first);
        for i in first..il {
            let (t, ty, off, count) = raw(i)?;
            let bad = |what| HeaderError::BadEntry {
                index: i,
                tag: t,
                what,
            };
            let ty = TagType::from_u32(ty).ok_or(bad("unknown data type"))?;
            let off = usize::try_from(off).map_err(|_| bad("negative data offset"))?;
            if off > ds.len() {
                return Err(bad("data offset beyond the data store"));
            }
            if count > MAX_DATA {
                return Err(bad("absurd element count"));
            }
            if off % ty.align() != 0 {
                return Err(bad("data offset not aligned for its type"));
            }
            if off < prev_end {
                return Err(bad("data overlaps the previous entry's data"));
            }
            let len = data_len(ty, count, ds, off).map_err(bad)?;
            let end = off
                .checked_add(len)
                .filter(|e| *e <= ds.len())
                .ok_or(bad("data runs past the data store"))?;
            if let Some(rdl) = region_dl {
                if end > rdl - 16 && off < rdl {
                    return Err(bad("data overlaps the region trailer"));
                }
            }
            prev_end = end;
            header.entries.push(Entry {
                tag: t,
                ty,
                count,
                data: ds[off..end].to_vec(),
            });
        }
        Ok((header, total))
    }

    /// Check the header digests rpm checks before trusting a database header (`headerCheck`:
    /// `SHA1HEADER` 269 and `SHA256HEADER` 273, wherever they sit in the header) against the
    /// blob this header was parsed from. Each digest covers, as rpm's `hdrblobDigestUpdate`
    /// computes it, the header magic, the region's entry count and data length (big-endian
    /// u32s), the region's index entries and the region's data up to and including its trailer;
    /// without a region tag both counts are 0 (so a stored digest cannot match, as in rpm).
    /// Returns which digests were present (and matched); a mismatch is
    /// [`HeaderError::DigestMismatch`].
    pub fn verify_digests(&self, blob: &[u8]) -> Result<DigestCheck> {
        use sha1::Digest as _;
        let mut out = DigestCheck::default();
        let want1 = self.string(tag::SHA1HEADER);
        let want256 = self.string(tag::SHA256HEADER);
        if want1.is_none() && want256.is_none() {
            return Ok(out);
        }
        let il = be32(blob, 0)? as usize;
        let (ril, rdl) = if self.region_tag.is_some() {
            let off = be32(blob, 16)? as usize;
            (self.region_len + 1, off + 16)
        } else {
            (0, 0)
        };
        let ds_start = 8 + il * 16;
        let region_index = blob.get(8..8 + ril * 16);
        let region_data = blob.get(ds_start..ds_start + rdl);
        let (Some(region_index), Some(region_data)) = (region_index, region_data) else {
            return Err(HeaderError::BadRegion {
                tag: self.region_tag.unwrap_or(0),
                what: "region outside the blob",
            });
        };
        let feed = |h: &mut dyn FnMut(&[u8])| {
            h(&HEADER_MAGIC);
            h(&(ril as u32).to_be_bytes());
            h(&(rdl as u32).to_be_bytes());
            h(region_index);
            h(region_data);
        };
        if let Some(want) = want1 {
            let mut d = sha1::Sha1::new();
            feed(&mut |b| d.update(b));
            let got = hex::encode(d.finalize());
            if !got.eq_ignore_ascii_case(want.trim()) {
                return Err(HeaderError::DigestMismatch {
                    algo: "SHA1",
                    expected: want,
                    actual: got,
                });
            }
            out.sha1 = true;
        }
        if let Some(want) = want256 {
            let mut d = sha2::Sha256::new();
            feed(&mut |b| d.update(b));
            let got = hex::encode(d.finalize());
            if !got.eq_ignore_ascii_case(want.trim()) {
                return Err(HeaderError::DigestMismatch {
                    algo: "SHA256",
                    expected: want,
                    actual: got,
                });
            }
            out.sha256 = true;
        }
        Ok(out)
    }

    /// The effective entry for `tag` (a later "dribble" entry wins over a region entry).
    pub fn entry(&self, tag: u32) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.tag == tag)
    }

    /// Whether the header has `tag`.
    pub fn has(&self, tag: u32) -> bool {
        self.entry(tag).is_some()
    }

    /// A STRING (or the first element of a STRING_ARRAY / I18NSTRING) as text; invalid UTF-8 is
    /// replaced. `None` when absent.
    pub fn string(&self, tag: u32) -> Option<String> {
        let e = self.entry(tag)?;
        match e.ty {
            TagType::String | TagType::StringArray | TagType::I18nString => {
                let end = e.data.iter().position(|&c| c == 0).unwrap_or(e.data.len());
                Some(String::from_utf8_lossy(&e.data[..end]).into_owned())
            }
            _ => None,
        }
    }

    /// All strings of a STRING_ARRAY/I18NSTRING/STRING entry.
    pub fn strings(&self, tag: u32) -> Result<Vec<String>> {
        let e = self.entry(tag).ok_or(HeaderError::MissingTag(tag))?;
        match e.ty {
            TagType::String | TagType::StringArray | TagType::I18nString => {}
            other => {
                return Err(HeaderError::BadTag {
                    tag,
                    what: format!("expected strings, found {other:?}"),
                })
            }
        }
        let mut out = Vec::with_capacity(e.count as usize);
        let mut rest = &e.data[..];
        for _ in 0..e.count {
            let nul = rest
                .iter()
                .position(|&c| c == 0)
                .ok_or(HeaderError::BadTag {
                    tag,
                    what: "unterminated string".into(),
                })?;
            out.push(String::from_utf8_lossy(&rest[..nul]).into_owned());
            rest = &rest[nul + 1..];
        }
        Ok(out)
    }

    /// Integers of an INT8/INT16/INT32/INT64/CHAR entry, widened to u64.
    pub fn ints(&self, tag: u32) -> Result<Vec<u64>> {
        let e = self.entry(tag).ok_or(HeaderError::MissingTag(tag))?;
        let d = &e.data;
        Ok(match e.ty {
            TagType::Char | TagType::Int8 => d.iter().map(|&b| b as u64).collect(),
            TagType::Int16 => d
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]) as u64)
                .collect(),
            TagType::Int32 => d
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64)
                .collect(),
            TagType::Int64 => d
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            other => {
                return Err(HeaderError::BadTag {
                    tag,
                    what: format!("expected integers, found {other:?}"),
                })
            }
        })
    }

    /// First integer of a numeric entry.
    pub fn int(&self, tag: u32) -> Option<u64> {
        self.ints(tag).ok().and_then(|v| v.first().copied())
    }

    /// Raw bytes of a BIN entry.
    pub fn bin(&self, tag: u32) -> Option<&[u8]> {
        self.entry(tag)
            .filter(|e| e.ty == TagType::Bin)
            .map(|e| &e.data[..])
    }

    /// Add or replace `tag`. A tag inside the immutable region is never modified in place: the
    /// new entry is appended after the region (as rpm does), where it takes precedence.
    pub fn set(&mut self, tag: u32, value: Value) {
        let (ty, count, data) = encode(value);
        let entry = Entry {
            tag,
            ty,
            count,
            data,
        };
        if let Some(pos) = self
            .entries
            .iter()
            .skip(self.region_len)
            .position(|e| e.tag == tag)
        {
            self.entries[self.region_len + pos] = entry;
        } else {
            self.entries.push(entry);
        }
    }

    /// Serialize to a bare blob (as stored in rpm databases): region entries first with the
    /// region trailer after their data, then the other entries, each aligned for its type.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut data: Vec<u8> = Vec::new();
        let mut index: Vec<[u8; 16]> = Vec::with_capacity(self.entries.len() + 1);
        let put = |t: u32, ty: u32, off: i32, cnt: u32| {
            let mut e = [0u8; 16];
            e[0..4].copy_from_slice(&t.to_be_bytes());
            e[4..8].copy_from_slice(&ty.to_be_bytes());
            e[8..12].copy_from_slice(&off.to_be_bytes());
            e[12..16].copy_from_slice(&cnt.to_be_bytes());
            e
        };
        let region_len = if self.region_tag.is_some() {
            self.region_len.min(self.entries.len())
        } else {
            0
        };
        for (i, e) in self.entries.iter().enumerate() {
            if let (Some(rt), true) = (self.region_tag, i == region_len) {
                // Trailer goes right after the region's data.
                let trailer_off = data.len();
                index.insert(0, put(rt, TagType::Bin as u32, trailer_off as i32, 16));
                data.extend_from_slice(&put(
                    rt,
                    TagType::Bin as u32,
                    -(((region_len + 1) * 16) as i32),
                    16,
                ));
            }
            while data.len() & (e.ty.align() - 1) != 0 {
                data.push(0);
            }
            index.push(put(e.tag, e.ty as u32, data.len() as i32, e.count));
            data.extend_from_slice(&e.data);
        }
        if let (Some(rt), true) = (self.region_tag, region_len == self.entries.len()) {
            let trailer_off = data.len();
            index.insert(0, put(rt, TagType::Bin as u32, trailer_off as i32, 16));
            data.extend_from_slice(&put(
                rt,
                TagType::Bin as u32,
                -(((region_len + 1) * 16) as i32),
                16,
            ));
        }
        let mut out = Vec::with_capacity(8 + index.len() * 16 + data.len());
        out.extend_from_slice(&(index.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        for e in &index {
            out.extend_from_slice(e);
        }
        out.extend_from_slice(&data);
        out
    }

    /// Serialize with the leading magic, as in a `.rpm` file.
    pub fn to_bytes_with_magic(&self) -> Vec<u8> {
        let mut out = HEADER_MAGIC.to_vec();
        out.extend_from_slice(&self.to_bytes());
        out
    }
}

fn encode(v: Value) -> (TagType, u32, Vec<u8>) {
    match v {
        Value::Char(v) => (TagType::Char, v.len() as u32, v),
        Value::Int8(v) => (TagType::Int8, v.len() as u32, v),
        Value::Int16(v) => (
            TagType::Int16,
            v.len() as u32,
            v.iter().flat_map(|x| x.to_be_bytes()).collect(),
        ),
        Value::Int32(v) => (
            TagType::Int32,
            v.len() as u32,
            v.iter().flat_map(|x| x.to_be_bytes()).collect(),
        ),
        Value::Int64(v) => (
            TagType::Int64,
            v.len() as u32,
            v.iter().flat_map(|x| x.to_be_bytes()).collect(),
        ),
        Value::String(s) => {
            let mut d = s.into_bytes();
            d.retain(|&c| c != 0);
            d.push(0);
            (TagType::String, 1, d)
        }
        Value::Bin(b) => (TagType::Bin, b.len() as u32, b),
        Value::StringArray(v) => {
            let mut d = Vec::new();
            for s in &v {
                d.extend(s.bytes().filter(|&c| c != 0));
                d.push(0);
            }
            (TagType::StringArray, v.len() as u32, d)
        }
    }
}
