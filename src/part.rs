//! Partition tables of raw disk images: MBR and GPT, read to find the Linux root filesystem.
//!
//! MBR: the classic boot sector (signature 0x55 0xAA at byte 510, four 16-byte entries at byte
//! 446: type at +4, first LBA at +8, sector count at +12, little endian). A single entry of type
//! 0xEE is a protective MBR: the disk is GPT (UEFI 2.10, section 5.3 "GUID Partition Table
//! Disk Layout"): header at LBA 1 with signature "EFI PART", partition-entry LBA at +72, entry
//! count at +80, entry size at +84; each entry has its type GUID at +0, first/last LBA at +32/+40
//! and a UTF-16LE name at +56. Logical partitions inside MBR extended partitions are not read.
//! Sectors are 512 bytes. Every field is checked against the image size before use.

use rootfs::ReadAt;

/// Bytes per sector assumed.
pub const SECTOR: u64 = 512;
/// Most GPT entries read.
pub const MAX_GPT_ENTRIES: u32 = 1024;

/// GPT type GUID "Linux root (x86-64)", in on-disk (mixed-endian) byte order.
const GPT_LINUX_ROOT_X86_64: [u8; 16] = guid_bytes(
    0x4F68BCE3,
    0xE8CD,
    0x4DB1,
    [0x96, 0xE7, 0xFB, 0xCA, 0xF9, 0x84, 0xB7, 0x09],
);
/// GPT type GUID "Linux root (x86)".
const GPT_LINUX_ROOT_X86: [u8; 16] = guid_bytes(
    0x44479540,
    0xF297,
    0x41B2,
    [0x9A, 0xF7, 0xD1, 0x31, 0xD5, 0xF0, 0x45, 0x8A],
);
/// GPT type GUID "Linux filesystem data".
const GPT_LINUX_DATA: [u8; 16] = guid_bytes(
    0x0FC63DAF,
    0x8483,
    0x4772,
    [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4],
);

const fn guid_bytes(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// The kind of table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// DOS/MBR.
    Mbr,
    /// GUID partition table.
    Gpt,
}

/// One partition.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Partition {
    /// 1-based number.
    pub number: u32,
    /// Byte offset in the image.
    pub offset: u64,
    /// Byte length.
    pub size: u64,
    /// MBR type byte as hex (`83`) or GPT type GUID.
    pub type_id: String,
    /// Whether the type says Linux root (GPT root types) or Linux (MBR 0x83, GPT data).
    pub linux: bool,
    /// Whether the type is a GPT "Linux root" type.
    pub root: bool,
    /// GPT partition name.
    pub name: String,
}

/// A partition table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Table {
    /// MBR or GPT.
    pub kind: TableKind,
    /// Partitions in table order (empty entries skipped).
    pub partitions: Vec<Partition>,
}

/// Why a table cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// Reading failed.
    #[error("reading at byte {offset}: {source}")]
    Io {
        /// Where.
        offset: u64,
        /// Why.
        source: std::io::Error,
    },
    /// No boot-sector signature.
    #[error("no partition table (no 0x55AA boot-sector signature at byte 510)")]
    NoTable,
    /// A field is outside the image or inconsistent.
    #[error("{table} {field}: {message}")]
    Bad {
        /// MBR or GPT.
        table: &'static str,
        /// Which entry/field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn read(src: &dyn ReadAt, offset: u64, buf: &mut [u8]) -> Result<(), PartError> {
    src.read_exact_at(offset, buf)
        .map_err(|source| PartError::Io { offset, source })
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn guid_string(b: &[u8]) -> String {
    if b.len() < 16 {
        return String::new();
    }
    format!(
        "{:08X}-{:04X}-{:04X}-{}-{}",
        le32(b, 0),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        hex::encode_upper(&b[8..10]),
        hex::encode_upper(&b[10..16])
    )
}

/// Reads the partition table of `src`.
pub fn read_table(src: &dyn ReadAt) -> Result<Table, PartError> {
    let len = src.len();
    if len < SECTOR {
        return Err(PartError::NoTable);
    }
    let mut mbr = [0u8; 512];
    read(src, 0, &mut mbr)?;
    if mbr[510] != 0x55 || mbr[511] != 0xAA {
        return Err(PartError::NoTable);
    }
    let mut parts = Vec::new();
    let mut protective = false;
    for i in 0..4u32 {
        let e = &mbr[446 + 16 * i as usize..446 + 16 * (i as usize + 1)];
        let ty = e[4];
        let start = u64::from(le32(e, 8));
        let count = u64::from(le32(e, 12));
        if ty == 0 || count == 0 {
            continue;
        }
        if ty == 0xEE {
            protective = true;
            continue;
        }
        let field = || format!("entry {}", i + 1);
        let offset = start * SECTOR;
        let size = count * SECTOR;
        if start == 0 || !matches!(offset.checked_add(size), Some(end) if end <= len) {
            return Err(PartError::Bad {
                table: "MBR",
                field: field(),
                message: format!("sectors {start}+{count} lie outside the {len}-byte image"),
            });
        }
        parts.push(Partition {
            number: i + 1,
            offset,
            size,
            type_id: format!("{ty:02x}"),
            linux: ty == 0x83,
            root: false,
            name: String::new(),
        });
    }
    if protective {
        return read_gpt(src);
    }
    Ok(Table {
        kind: TableKind::Mbr,
        partitions: parts,
    })
}

fn read_gpt(src: &dyn ReadAt) -> Result<Table, PartError> {
    let len = src.len();
    let bad = |field: &str, message: String| PartError::Bad {
        table: "GPT",
        field: field.into(),
        message,
    };
    if len < 2 * SECTOR {
        return Err(bad(
            "header",
            "image too small for a GPT header at LBA 1".into(),
        ));
    }
    let mut h = [0u8; 512];
    read(src, SECTOR, &mut h)?;
    if &h[..8] != b"EFI PART" {
        return Err(bad(
            "header",
            "protective MBR but no \"EFI PART\" signature at LBA 1".into(),
        ));
    }
    let entries_lba = le64(&h, 72);
    let count = le32(&h, 80);
    let esize = le32(&h, 84);
    if !(128..=4096).contains(&esize) || esize % 8 != 0 {
        return Err(bad(
            "entry size",
            format!("{esize} (must be a multiple of 8 from 128 to 4096)"),
        ));
    }
    if count > MAX_GPT_ENTRIES {
        return Err(bad(
            "entry count",
            format!("{count} entries (at most {MAX_GPT_ENTRIES} read)"),
        ));
    }
    let table_bytes = u64::from(count) * u64::from(esize);
    let table_off = entries_lba.checked_mul(SECTOR).filter(|o| *o >= 2 * SECTOR);
    let Some(table_off) =
        table_off.filter(|o| o.checked_add(table_bytes).is_some_and(|e| e <= len))
    else {
        return Err(bad("entry array", format!("LBA {entries_lba} with {count} entries of {esize} bytes lies outside the {len}-byte image")));
    };
    let mut parts = Vec::new();
    let mut e = vec![0u8; esize as usize];
    for i in 0..count {
        read(src, table_off + u64::from(i) * u64::from(esize), &mut e)?;
        if e[..16].iter().all(|b| *b == 0) {
            continue;
        }
        let first = le64(&e, 32);
        let last = le64(&e, 40);
        let field = format!("entry {}", i + 1);
        if last < first {
            return Err(bad(
                &field,
                format!("last LBA {last} before first LBA {first}"),
            ));
        }
        let offset = first.checked_mul(SECTOR);
        let size = (last - first)
            .checked_add(1)
            .and_then(|n| n.checked_mul(SECTOR));
        let (Some(offset), Some(size)) = (offset, size) else {
            return Err(bad(&field, format!("LBAs {first}..={last} overflow")));
        };
        if !matches!(offset.checked_add(size), Some(end) if end <= len) {
            return Err(bad(
                &field,
                format!("LBAs {first}..={last} lie outside the {len}-byte image"),
            ));
        }
        let ty: [u8; 16] = e[..16].try_into().unwrap_or([0; 16]);
        let units: Vec<u16> = e[56..esize.min(128) as usize]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|u| *u != 0)
            .collect();
        let root = ty == GPT_LINUX_ROOT_X86_64 || ty == GPT_LINUX_ROOT_X86;
        parts.push(Partition {
            number: i + 1,
            offset,
            size,
            type_id: guid_string(&ty),
            linux: root || ty == GPT_LINUX_DATA,
            root,
            name: String::from_utf16_lossy(&units),
        });
    }
    Ok(Table {
        kind: TableKind::Gpt,
        partitions: parts,
    })
}

/// A window of a source: `len` bytes from `offset`.
pub struct Slice {
    inner: std::sync::Arc<dyn ReadAt>,
    offset: u64,
    len: u64,
}

impl Slice {
    /// The window; the caller has checked it lies inside `inner`.
    pub fn new(inner: std::sync::Arc<dyn ReadAt>, offset: u64, len: u64) -> Self {
        Slice { inner, offset, len }
    }
}

impl ReadAt for Slice {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = (self.len - offset).min(buf.len() as u64) as usize;
        self.inner.read_at(self.offset + offset, &mut buf[..n])
    }
    fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<u8>);
    impl ReadAt for Mem {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some(rest) = usize::try_from(offset).ok().and_then(|o| self.0.get(o..)) else {
                return Ok(0);
            };
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            Ok(n)
        }
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
    }

    fn mbr(entries: &[(u8, u32, u32)], size: usize) -> Vec<u8> {
        let mut d = vec![0u8; size];
        for (i, (ty, start, count)) in entries.iter().enumerate() {
            let e = 446 + 16 * i;
            d[e + 4] = *ty;
            d[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
            d[e + 12..e + 16].copy_from_slice(&count.to_le_bytes());
        }
        d[510] = 0x55;
        d[511] = 0xAA;
        d
    }

    #[test]
    fn mbr_entries_and_hostile_ones() {
        let t = read_table(&Mem(mbr(&[(0x83, 2048, 100)], 2148 * 512))).unwrap();
        assert_eq!(t.kind, TableKind::Mbr);
        assert_eq!(t.partitions[0].offset, 2048 * 512);
        assert!(t.partitions[0].linux);
        let e = read_table(&Mem(mbr(&[(0x83, 2048, u32::MAX)], 4096)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("MBR entry 1") && e.contains("outside"), "{e}");
        assert!(matches!(
            read_table(&Mem(vec![0; 1024])),
            Err(PartError::NoTable)
        ));
        assert!(matches!(
            read_table(&Mem(vec![0; 10])),
            Err(PartError::NoTable)
        ));
    }

    #[test]
    fn gpt_hostile_headers_are_errors() {
        let mut d = mbr(&[(0xEE, 1, 100)], 64 * 1024);
        let e = read_table(&Mem(d.clone())).unwrap_err().to_string();
        assert!(e.contains("EFI PART"), "{e}");
        d[512..520].copy_from_slice(b"EFI PART");
        d[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        d[512 + 80..512 + 84].copy_from_slice(&u32::MAX.to_le_bytes());
        d[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = read_table(&Mem(d.clone())).unwrap_err().to_string();
        assert!(e.contains("entry count"), "{e}");
        d[512 + 80..512 + 84].copy_from_slice(&1000u32.to_le_bytes());
        let e = read_table(&Mem(d.clone())).unwrap_err().to_string();
        assert!(e.contains("outside"), "{e}");
        d[512 + 80..512 + 84].copy_from_slice(&4u32.to_le_bytes());
        // entry 1: data type, LBAs 40..=30 (reversed)
        d[1024..1040].copy_from_slice(&GPT_LINUX_DATA);
        d[1024 + 32..1024 + 40].copy_from_slice(&40u64.to_le_bytes());
        d[1024 + 40..1024 + 48].copy_from_slice(&30u64.to_le_bytes());
        let e = read_table(&Mem(d.clone())).unwrap_err().to_string();
        assert!(e.contains("entry 1") && e.contains("before"), "{e}");
        d[1024 + 40..1024 + 48].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = read_table(&Mem(d.clone())).unwrap_err().to_string();
        assert!(e.contains("entry 1"), "{e}");
        d[1024 + 40..1024 + 48].copy_from_slice(&100u64.to_le_bytes());
        let t = read_table(&Mem(d)).unwrap();
        assert_eq!(t.kind, TableKind::Gpt);
        assert_eq!(t.partitions.len(), 1);
        assert_eq!(
            t.partitions[0].type_id,
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        );
    }
}
