//! rpm's Berkeley DB index databases (`Name`, `Basenames`, `Providename`, ...), regenerated from
//! the headers in `Packages` as `rpm --rebuilddb` of rpm 4.4 and 4.8 writes them.
//!
//! rpm before 4.9 does not rebuild a missing index: without them `rpm -q NAME` says "not
//! installed" and `rpm -qf PATH` finds no owner. Every index maps a key derived from one header
//! tag to an array of `{u32 hdrNum, u32 tagNum}` items (host byte order; we write little-endian,
//! as for `Packages`): the package number and the element of the tag array the key came from.
//!
//! Sources followed (rpm-software-management/rpm; no code taken):
//! * which indexes exist: the default `_dbiTagStr_default` of `dbiTagsInit` in `rpmdb/rpmdb.c`
//!   (4.4: `Name Basenames Group Requirename Providename Conflictname Triggername Dirnames
//!   Requireversion Provideversion Installtid Sigmd5 Sha1header Filemd5s Pubkeys`) and
//!   `lib/rpmdb.c` (4.6–4.8: the same plus `Obsoletename`, with tag 1035 named `Filedigests`);
//!   a file is named after its tag (`rpmTagGetName`). `Depends` is a temporary database, never
//!   written to disk.
//! * database types: `macros.in` of those releases, `%_dbi_config_Dirnames`,
//!   `_Requireversion`, `_Provideversion`, `_Installtid` (and `_Removetid`) are
//!   `%{_dbi_btconfig}` (btree); every other index uses `%_dbi_config` (hash).
//! * keys (`rpmdbAdd` in 4.4 `rpmdb/rpmdb.c`; `rpmdbAdd` and `td2key` in 4.8 `lib/rpmdb.c`): a
//!   STRING or I18NSTRING tag gives one key (its first value), a STRING_ARRAY one key per
//!   element with tagNum = the element's index; an integer array one key per element (the
//!   value in host order, 1/2/4/8 bytes); a BIN tag one key, its whole bytes (`Sigmd5`). A
//!   string key is its bytes without the NUL; an empty string becomes the one byte `\0` (the
//!   "`/` fixup"). `Filemd5s`/`Filedigests` skip empty digests and hex-decode the rest (4.4
//!   always 16 bytes, 4.8 `strlen/2` bytes). `Pubkeys` keys are the 8-byte OpenPGP key id of
//!   the base64 key (`pgpPrtPkts` signid / `pgpExtractPubkeyFingerprint`); undecodable keys are
//!   skipped. `Requirename` skips install-time prerequisites (`isInstallPreReq`: flags &
//!   (`SCRIPT_PRE|SCRIPT_POST|RPMLIB|KEYRING`), e.g. every `rpmlib(...)` require); 4.8 keeps
//!   those that are also erase-time prerequisites (`!isErasePreReq`, `SCRIPT_PREUN|
//!   SCRIPT_POSTUN`). `Triggername` skips a name already seen earlier in the same header; other
//!   duplicates within one header give one item each. A header without `Group` is indexed under
//!   `Unknown`.
//! * file format: hash files are version 8 (libdb 4.1–4.5; EL5's libdb 4.3 refuses version 9)
//!   unless the database is rpm 4.8's, see [`hash_version`]; btree files version 9.
//! * value layout and reading: `set2dbt`/`dbt2set` (8 bytes per item), and rpm 4.18's
//!   `lib/backend/bdb_ro.c` (`appenddbt`), the reader the tests check against.

use std::collections::BTreeMap;

use super::bdb::{write_btree, write_hash_as, BdbError, HashVersion};
use crate::rpm::header::{tag, Entry, Header, HeaderError, TagType};

/// Berkeley DB access method of an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// `DB_HASH`.
    Hash,
    /// `DB_BTREE`.
    Btree,
}

/// Which rpm's set of index files to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// rpm 4.0–4.5 (EL5's 4.4.2): `Filemd5s`, no `Obsoletename`.
    Rpm44,
    /// rpm 4.6–4.8 (EL6's 4.8.0): `Filedigests` and `Obsoletename`.
    Rpm48,
    /// rpm 4.9 and later rebuild missing indexes themselves (and keep a different set): write
    /// none.
    SelfRebuilding,
    /// The database does not say which rpm uses it: write the union of the 4.4 and 4.8 sets
    /// (each rpm opens only the files it knows).
    Unknown,
}

const REQUIREFLAGS: u32 = 1048;
const REQUIREVERSION: u32 = 1050;
const PROVIDEVERSION: u32 = 1113;

/// One index database: file name, tag, access method, and in which layouts it exists.
struct Spec {
    name: &'static str,
    tag: u32,
    kind: DbKind,
    in44: bool,
    in48: bool,
}

const SPECS: &[Spec] = &[
    Spec::both("Name", tag::NAME, DbKind::Hash),
    Spec::both("Basenames", tag::BASENAMES, DbKind::Hash),
    Spec::both("Group", tag::GROUP, DbKind::Hash),
    Spec::both("Requirename", tag::REQUIRENAME, DbKind::Hash),
    Spec::both("Providename", tag::PROVIDENAME, DbKind::Hash),
    Spec::both("Conflictname", tag::CONFLICTNAME, DbKind::Hash),
    Spec {
        name: "Obsoletename",
        tag: tag::OBSOLETENAME,
        kind: DbKind::Hash,
        in44: false,
        in48: true,
    },
    Spec::both("Triggername", tag::TRIGGERNAME, DbKind::Hash),
    Spec::both("Dirnames", tag::DIRNAMES, DbKind::Btree),
    Spec::both("Requireversion", REQUIREVERSION, DbKind::Btree),
    Spec::both("Provideversion", PROVIDEVERSION, DbKind::Btree),
    Spec::both("Installtid", tag::INSTALLTID, DbKind::Btree),
    Spec::both("Sigmd5", tag::SIGMD5, DbKind::Hash),
    Spec::both("Sha1header", tag::SHA1HEADER, DbKind::Hash),
    Spec {
        name: "Filemd5s",
        tag: tag::FILEDIGESTS,
        kind: DbKind::Hash,
        in44: true,
        in48: false,
    },
    Spec {
        name: "Filedigests",
        tag: tag::FILEDIGESTS,
        kind: DbKind::Hash,
        in44: false,
        in48: true,
    },
    Spec::both("Pubkeys", tag::PUBKEYS, DbKind::Hash),
];

impl Spec {
    const fn both(name: &'static str, tag: u32, kind: DbKind) -> Spec {
        Spec {
            name,
            tag,
            kind,
            in44: true,
            in48: true,
        }
    }
    fn wanted(&self, layout: Layout) -> bool {
        match layout {
            Layout::Rpm44 => self.in44,
            Layout::Rpm48 => self.in48,
            Layout::Unknown => true,
            Layout::SelfRebuilding => false,
        }
    }
}

/// Errors building the index databases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// A header in `Packages` does not parse.
    #[error("rpm database package #{number}: {source}")]
    Header {
        /// The package number (key in `Packages`).
        number: u32,
        /// What is wrong with its header.
        source: HeaderError,
    },
    /// An index could not be written.
    #[error("rpm index {name}: {source}")]
    Write {
        /// The index file.
        name: &'static str,
        /// Why.
        source: BdbError,
    },
}

/// A generated index database file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// File name beside `Packages` (`Name`, `Basenames`, ...).
    pub name: &'static str,
    /// Hash or btree.
    pub kind: DbKind,
    /// The Berkeley DB file.
    pub bytes: Vec<u8>,
}

/// Index contents: key bytes to `(hdrNum, tagNum)` items, in package then element order.
pub type IndexMap = BTreeMap<Vec<u8>, Vec<(u32, u32)>>;

/// The file names (with their access method) `layout` keeps.
pub fn index_names(layout: Layout) -> Vec<(&'static str, DbKind)> {
    SPECS
        .iter()
        .filter(|s| s.wanted(layout))
        .map(|s| (s.name, s.kind))
        .collect()
}

/// Every index file name any supported rpm keeps (to recognise stale ones).
pub fn all_index_names() -> Vec<&'static str> {
    SPECS.iter().map(|s| s.name).collect()
}

/// Which layout the database's own `rpm` package calls for (by its version); `Unknown` when
/// no package named `rpm` is installed or its header does not parse.
pub fn layout_for(records: &[(u32, Vec<u8>)]) -> Layout {
    for (_, blob) in records {
        let Ok(h) = Header::parse(blob) else { continue };
        if h.string(tag::NAME).as_deref() != Some("rpm") {
            continue;
        }
        let Some(v) = h.string(tag::VERSION) else {
            continue;
        };
        let mut parts = v.split('.').map(|p| {
            p.chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse::<u32>()
                .ok()
        });
        let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
            continue;
        };
        return match (major, minor) {
            (0..=3, _) | (4, 0..=5) => Layout::Rpm44,
            (4, 6..=8) => Layout::Rpm48,
            _ => Layout::SelfRebuilding,
        };
    }
    Layout::Unknown
}

/// The hash file version for `layout`: version 8 where rpm 4.4 may read the files (its libdb
/// 4.3 rejects version 9), version 9 (what rpm 4.8's libdb 4.7 writes) for rpm 4.8. Btree
/// files are version 9 in every libdb since 4.1.
pub fn hash_version(layout: Layout) -> HashVersion {
    match layout {
        Layout::Rpm48 | Layout::SelfRebuilding => HashVersion::V9,
        Layout::Rpm44 | Layout::Unknown => HashVersion::V8,
    }
}

/// Build every index of `layout` from the `Packages` records `(number, header blob)`.
/// Output is deterministic: the same records give the same bytes.
pub fn build_indexes(
    records: &[(u32, Vec<u8>)],
    layout: Layout,
) -> Result<Vec<IndexFile>, IndexError> {
    let maps = index_entries(records, layout)?;
    let mut out = Vec::new();
    for spec in SPECS.iter().filter(|s| s.wanted(layout)) {
        let empty = IndexMap::new();
        let map = maps.get(spec.name).unwrap_or(&empty);
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = map
            .iter()
            .map(|(k, items)| {
                let mut v = Vec::with_capacity(items.len() * 8);
                for (h, t) in items {
                    v.extend_from_slice(&h.to_le_bytes());
                    v.extend_from_slice(&t.to_le_bytes());
                }
                (k.clone(), v)
            })
            .collect();
        let bytes = match spec.kind {
            DbKind::Hash => write_hash_as(&pairs, hash_version(layout)),
            DbKind::Btree => write_btree(&pairs),
        }
        .map_err(|source| IndexError::Write {
            name: spec.name,
            source,
        })?;
        let bytes = with_file_id(spec.name, bytes);
        out.push(IndexFile {
            name: spec.name,
            kind: spec.kind,
            bytes,
        });
    }
    Ok(out)
}

/// Give a file its own 20-byte Berkeley DB file id (`DBMETA.uid`, offset 52 of the meta page):
/// libdb's shared cache (the `__db.*` environment rpm 4.4/4.8 open every index in) tells files
/// apart by it, so files sharing one id would read each other's pages. libdb makes it from the
/// inode and time; ours is derived from the file name and contents, to stay deterministic
/// (`Packages` keeps the all-zero id [`super::bdb::write_packages`] writes).
fn with_file_id(name: &str, mut bytes: Vec<u8>) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(&bytes);
    let id = h.finalize();
    if let Some(uid) = bytes.get_mut(52..72) {
        uid.copy_from_slice(&id[..20]);
    }
    bytes
}

/// The decoded contents of every index of `layout`: file name to key to items.
pub fn index_entries(
    records: &[(u32, Vec<u8>)],
    layout: Layout,
) -> Result<BTreeMap<&'static str, IndexMap>, IndexError> {
    let mut sorted: Vec<&(u32, Vec<u8>)> = records.iter().collect();
    sorted.sort_by_key(|(n, _)| *n);
    let mut maps: BTreeMap<&'static str, IndexMap> = BTreeMap::new();
    let erase_exception = layout != Layout::Rpm44;
    for (number, blob) in sorted {
        let h = Header::parse(blob).map_err(|source| IndexError::Header {
            number: *number,
            source,
        })?;
        for spec in SPECS.iter().filter(|s| s.wanted(layout)) {
            let map = maps.entry(spec.name).or_default();
            for (key, tag_num) in keys(&h, spec, erase_exception) {
                map.entry(key).or_default().push((*number, tag_num));
            }
        }
    }
    Ok(maps)
}

/// `RPMSENSE_SCRIPT_PRE | SCRIPT_POST | RPMLIB | KEYRING` (`_INSTALL_ONLY_MASK`).
const INSTALL_ONLY: u64 = (1 << 9) | (1 << 10) | (1 << 24) | (1 << 26);
/// `RPMSENSE_SCRIPT_PREUN | SCRIPT_POSTUN` (`_ERASE_ONLY_MASK`).
const ERASE_ONLY: u64 = (1 << 11) | (1 << 12);

/// The keys (with tagNum) one header contributes to one index.
fn keys(h: &Header, spec: &Spec, erase_exception: bool) -> Vec<(Vec<u8>, u32)> {
    let Some(e) = h.entry(spec.tag) else {
        if spec.tag == tag::GROUP {
            return vec![(b"Unknown".to_vec(), 0)];
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    match e.ty {
        TagType::String | TagType::I18nString | TagType::StringArray => {
            let all = strings(e);
            let take = if e.ty == TagType::StringArray {
                all.len()
            } else {
                all.len().min(1)
            };
            let flags = if spec.tag == tag::REQUIRENAME {
                h.ints(REQUIREFLAGS).ok()
            } else {
                None
            };
            for (i, s) in all.iter().take(take).enumerate() {
                if let Some(f) = flags.as_ref().and_then(|f| f.get(i)) {
                    if f & INSTALL_ONLY != 0 && !(erase_exception && f & ERASE_ONLY != 0) {
                        continue;
                    }
                }
                if spec.tag == tag::TRIGGERNAME && all[..i].contains(s) {
                    continue;
                }
                let key = match spec.name {
                    "Filemd5s" | "Filedigests" => {
                        if s.is_empty() {
                            continue;
                        }
                        let n = if spec.name == "Filemd5s" {
                            16
                        } else {
                            s.len() / 2
                        };
                        unhex(s, n)
                    }
                    "Pubkeys" => match pubkey_id(s) {
                        Some(id) => id.to_vec(),
                        None => continue,
                    },
                    _ => s.to_vec(),
                };
                let key = if key.is_empty() { vec![0] } else { key };
                out.push((key, i as u32));
            }
        }
        TagType::Bin => {
            let key = if e.data.is_empty() {
                vec![0]
            } else {
                e.data.clone()
            };
            out.push((key, 0));
        }
        TagType::Char | TagType::Int8 | TagType::Int16 | TagType::Int32 | TagType::Int64 => {
            let size = match e.ty {
                TagType::Int16 => 2,
                TagType::Int32 => 4,
                TagType::Int64 => 8,
                _ => 1,
            };
            for (i, c) in e.data.chunks_exact(size).enumerate() {
                // Header data is big-endian; rpm keys hold the host (here: little-endian) value.
                let mut k = c.to_vec();
                k.reverse();
                out.push((k, i as u32));
            }
        }
        TagType::Null => {}
    }
    out
}

/// The NUL-terminated strings of a string entry (as bytes, NUL excluded).
fn strings(e: &Entry) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(e.count as usize);
    let mut rest = &e.data[..];
    for _ in 0..e.count {
        let Some(nul) = rest.iter().position(|&c| c == 0) else {
            break;
        };
        out.push(&rest[..nul]);
        rest = &rest[nul + 1..];
    }
    out
}

/// `n` bytes from hex text; characters that are not hex digits (or missing ones) count as 0,
/// as rpm's `nibble`/`rnibble`.
fn unhex(s: &[u8], n: usize) -> Vec<u8> {
    let nib = |i: usize| -> u8 {
        match s.get(i) {
            Some(c @ b'0'..=b'9') => c - b'0',
            Some(c @ b'a'..=b'f') => c - b'a' + 10,
            Some(c @ b'A'..=b'F') => c - b'A' + 10,
            _ => 0,
        }
    };
    (0..n).map(|j| (nib(2 * j) << 4) | nib(2 * j + 1)).collect()
}

/// Decode standard base64 (whitespace ignored, `=` padding optional); `None` on other bytes.
fn base64(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The 8-byte key id of the first public-key packet of a base64 OpenPGP key (RFC 4880 §12.2:
/// v4 — the low 64 bits of the SHA-1 fingerprint; v3 RSA — the low 64 bits of the modulus).
fn pubkey_id(b64: &[u8]) -> Option<[u8; 8]> {
    let pkt = base64(b64)?;
    let first = *pkt.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    let (tag, body_start, len): (u8, usize, usize) = if first & 0x40 != 0 {
        let o = *pkt.get(1)? as usize;
        match o {
            0..=191 => (first & 0x3f, 2, o),
            192..=223 => (
                first & 0x3f,
                3,
                ((o - 192) << 8) + *pkt.get(2)? as usize + 192,
            ),
            255 => {
                let l = pkt.get(2..6)?;
                (
                    first & 0x3f,
                    6,
                    u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize,
                )
            }
            _ => return None,
        }
    } else {
        let tag = (first >> 2) & 0x0f;
        match first & 3 {
            0 => (tag, 2, *pkt.get(1)? as usize),
            1 => {
                let l = pkt.get(1..3)?;
                (tag, 3, u16::from_be_bytes([l[0], l[1]]) as usize)
            }
            2 => {
                let l = pkt.get(1..5)?;
                (
                    tag,
                    5,
                    u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize,
                )
            }
            _ => (tag, 1, pkt.len() - 1),
        }
    };
    if tag != 6 {
        return None;
    }
    let body = pkt.get(body_start..body_start.checked_add(len)?)?;
    match body.first()? {
        4 => {
            let blen = u16::try_from(body.len()).ok()?;
            let mut data = vec![0x99];
            data.extend_from_slice(&blen.to_be_bytes());
            data.extend_from_slice(body);
            let fp = sha1(&data);
            let mut id = [0u8; 8];
            id.copy_from_slice(&fp[12..20]);
            Some(id)
        }
        2 | 3 => {
            // version, created (4), validity (2), algorithm, then the modulus MPI.
            if !matches!(body.get(7)?, 1..=3) {
                return None;
            }
            let bits = u16::from_be_bytes([*body.get(8)?, *body.get(9)?]) as usize;
            let n = body.get(10..10 + bits.div_ceil(8))?;
            let tail = n.get(n.len().checked_sub(8)?..)?;
            let mut id = [0u8; 8];
            id.copy_from_slice(tail);
            Some(id)
        }
        _ => None,
    }
}

/// SHA-1 (FIPS 180-4) through the `sha1` crate, for OpenPGP v4 fingerprints only.
fn sha1(data: &[u8]) -> [u8; 20] {
    use sha1::Digest as _;
    sha1::Sha1::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpm::header::Value;

    fn header(name: &str) -> Header {
        let mut h = Header::default();
        h.set(tag::NAME, Value::String(name.into()));
        h.set(
            tag::REQUIRENAME,
            Value::StringArray(vec![
                "rpmlib(PayloadIsXz)".into(),
                "/bin/sh".into(),
                "libc".into(),
            ]),
        );
        h.set(
            REQUIREFLAGS,
            Value::Int32(vec![(1 << 24) | (1 << 6), (1 << 9) | (1 << 11), 0]),
        );
        h.set(
            tag::TRIGGERNAME,
            Value::StringArray(vec!["a".into(), "b".into(), "a".into()]),
        );
        h.set(
            tag::FILEDIGESTS,
            Value::StringArray(vec!["".into(), "00ff".into()]),
        );
        h.set(tag::INSTALLTID, Value::Int32(vec![0x0102_0304]));
        h.set(
            tag::PROVIDENAME,
            Value::StringArray(vec![name.into(), "".into()]),
        );
        h
    }

    #[test]
    fn sha1_known_answers() {
        assert_eq!(
            hex::encode(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(sha1(&[b'a'; 1000])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }

    #[test]
    fn keys_follow_rpm_rules() {
        let recs = vec![(7u32, header("foo").to_bytes())];
        let m44 = index_entries(&recs, Layout::Rpm44).unwrap();
        let m48 = index_entries(&recs, Layout::Rpm48).unwrap();
        // rpmlib() and %pre-only requires are skipped; 4.8 keeps the one that is also %preun.
        let req44: Vec<&Vec<u8>> = m44["Requirename"].keys().collect();
        assert_eq!(req44, vec![&b"libc".to_vec()]);
        assert_eq!(m48["Requirename"][&b"/bin/sh".to_vec()], vec![(7, 1)]);
        assert!(!m48["Requirename"].contains_key(b"rpmlib(PayloadIsXz)".as_slice()));
        // Duplicate trigger names once; empty provide as "\0"; Group defaults to Unknown.
        assert_eq!(m44["Triggername"][&b"a".to_vec()], vec![(7, 0)]);
        assert_eq!(m44["Providename"][&vec![0u8]], vec![(7, 1)]);
        assert_eq!(m44["Group"][&b"Unknown".to_vec()], vec![(7, 0)]);
        // Digests: empty skipped, hex decoded (4.4: 16 bytes, 4.8: strlen/2).
        assert_eq!(m44["Filemd5s"].len(), 1);
        let k44 = m44["Filemd5s"].keys().next().unwrap();
        assert_eq!(k44.len(), 16);
        assert_eq!(&k44[..2], &[0x00, 0xff]);
        assert_eq!(m48["Filedigests"][&vec![0x00, 0xff]], vec![(7, 1)]);
        assert!(!m44.contains_key("Filedigests") && !m48.contains_key("Filemd5s"));
        assert!(m48.contains_key("Obsoletename") && !m44.contains_key("Obsoletename"));
        // Integers in host (little-endian) order.
        assert_eq!(m44["Installtid"][&vec![4, 3, 2, 1]], vec![(7, 0)]);
    }

    #[test]
    fn truncated_header_is_a_typed_error() {
        let good = header("foo").to_bytes();
        let recs = vec![
            (1u32, good.clone()),
            (2u32, good[..good.len() - 5].to_vec()),
        ];
        for layout in [Layout::Rpm44, Layout::Rpm48, Layout::Unknown] {
            match build_indexes(&recs, layout) {
                Err(IndexError::Header { number: 2, .. }) => {}
                other => panic!("{layout:?}: {other:?}"),
            }
        }
        // Garbage of every length: never a panic.
        for n in 0..good.len() {
            let _ = build_indexes(&[(3, good[..n].to_vec())], Layout::Unknown);
        }
        assert!(build_indexes(&[(4, vec![0xff; 64])], Layout::Unknown).is_err());
    }

    #[test]
    fn deterministic_and_layouts() {
        let recs = vec![
            (2u32, header("foo").to_bytes()),
            (1u32, header("bar").to_bytes()),
        ];
        let a = build_indexes(&recs, Layout::Unknown).unwrap();
        let mut rev = recs.clone();
        rev.reverse();
        assert_eq!(a, build_indexes(&rev, Layout::Unknown).unwrap());
        assert_eq!(a.len(), 17);
        assert_eq!(build_indexes(&recs, Layout::Rpm44).unwrap().len(), 15);
        assert_eq!(build_indexes(&recs, Layout::Rpm48).unwrap().len(), 16);
        // Every file has its own non-zero libdb file id.
        let ids: std::collections::BTreeSet<&[u8]> = a.iter().map(|f| &f.bytes[52..72]).collect();
        assert_eq!(ids.len(), a.len());
        assert!(!ids.contains(&[0u8; 20][..]));
        assert!(build_indexes(&recs, Layout::SelfRebuilding)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn layout_from_the_rpm_package() {
        let mk = |v: &str| {
            let mut h = Header::default();
            h.set(tag::NAME, Value::String("rpm".into()));
            h.set(tag::VERSION, Value::String(v.into()));
            vec![(1u32, h.to_bytes())]
        };
        assert_eq!(layout_for(&mk("4.4.2.3")), Layout::Rpm44);
        assert_eq!(layout_for(&mk("4.8.0")), Layout::Rpm48);
        assert_eq!(layout_for(&mk("4.11.3")), Layout::SelfRebuilding);
        assert_eq!(
            layout_for(&[(1, header("foo").to_bytes())]),
            Layout::Unknown
        );
    }
}
