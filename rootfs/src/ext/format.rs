//! On-disk structures of ext2/3/4, as plain structs with `parse` and `serialize`.
//!
//! Section names refer to the kernel's "ext4 Data Structures and Algorithms" document
//! (Documentation/filesystems/ext4/, "Global Structures" and "Dynamic Structures"), which is the
//! layout e2fsprogs and Linux agree on. All integers are little-endian except the jbd2 journal
//! structures, which are big-endian.
//!
//! `parse` never panics: it checks the input length and returns [`FormatError`] naming the
//! structure and what is wrong. `serialize` writes the fields into a caller-provided buffer of
//! at least the structure's size (it panics only on a buffer that is too small, which is a bug
//! in the caller, never something derived from input).

// `is_multiple_of` is newer than the workspace's rust-version (1.80).
#![allow(clippy::manual_is_multiple_of)]

use std::fmt;

/// A structure could not be parsed: too short, bad magic or an impossible field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{structure}: {what}")]
pub struct FormatError {
    /// Which structure (e.g. "superblock", "extent header").
    pub structure: &'static str,
    /// What is wrong.
    pub what: String,
}

fn ferr(structure: &'static str, what: impl Into<String>) -> FormatError {
    FormatError {
        structure,
        what: what.into(),
    }
}

fn need(structure: &'static str, b: &[u8], n: usize) -> Result<(), FormatError> {
    if b.len() < n {
        return Err(ferr(structure, format!("needs {n} bytes, got {}", b.len())));
    }
    Ok(())
}

/// Fixed-width fields read/written at a byte offset. Reads past the end give zero (parse
/// checks lengths first, so this never happens on a checked buffer).
trait Field: Sized {
    fn get_le(b: &[u8], off: usize) -> Self;
    fn put_le(&self, b: &mut [u8], off: usize);
    fn get_be(b: &[u8], off: usize) -> Self;
    fn put_be(&self, b: &mut [u8], off: usize);
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = off.checked_add(N).and_then(|end| b.get(off..end)) {
        a.copy_from_slice(s);
    }
    a
}

macro_rules! int_field {
    ($t:ty) => {
        impl Field for $t {
            fn get_le(b: &[u8], off: usize) -> Self {
                <$t>::from_le_bytes(arr(b, off))
            }
            fn put_le(&self, b: &mut [u8], off: usize) {
                let v = self.to_le_bytes();
                b[off..off + v.len()].copy_from_slice(&v);
            }
            fn get_be(b: &[u8], off: usize) -> Self {
                <$t>::from_be_bytes(arr(b, off))
            }
            fn put_be(&self, b: &mut [u8], off: usize) {
                let v = self.to_be_bytes();
                b[off..off + v.len()].copy_from_slice(&v);
            }
        }
    };
}
int_field!(u8);
int_field!(u16);
int_field!(u32);
int_field!(u64);

impl<const N: usize> Field for [u8; N] {
    fn get_le(b: &[u8], off: usize) -> Self {
        arr(b, off)
    }
    fn put_le(&self, b: &mut [u8], off: usize) {
        b[off..off + N].copy_from_slice(self);
    }
    fn get_be(b: &[u8], off: usize) -> Self {
        arr(b, off)
    }
    fn put_be(&self, b: &mut [u8], off: usize) {
        b[off..off + N].copy_from_slice(self);
    }
}

impl<const N: usize> Field for [u32; N] {
    fn get_le(b: &[u8], off: usize) -> Self {
        let mut a = [0u32; N];
        for (i, v) in a.iter_mut().enumerate() {
            *v = u32::get_le(b, off + 4 * i);
        }
        a
    }
    fn put_le(&self, b: &mut [u8], off: usize) {
        for (i, v) in self.iter().enumerate() {
            v.put_le(b, off + 4 * i);
        }
    }
    fn get_be(b: &[u8], off: usize) -> Self {
        let mut a = [0u32; N];
        for (i, v) in a.iter_mut().enumerate() {
            *v = u32::get_be(b, off + 4 * i);
        }
        a
    }
    fn put_be(&self, b: &mut [u8], off: usize) {
        for (i, v) in self.iter().enumerate() {
            v.put_be(b, off + 4 * i);
        }
    }
}

/// Declares a struct whose every field sits at a fixed offset, with `read_fields` /
/// `write_fields` generated from the same table (so parse and serialize cannot disagree).
macro_rules! layout {
    (
        $(#[$m:meta])*
        pub struct $name:ident [$size:expr, $get:ident, $put:ident] {
            $( $(#[$fm:meta])* $field:ident : $ty:ty = $off:expr ),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name { $( $(#[$fm])* pub $field: $ty, )* }

        impl $name {
            /// Size of the structure on disk, in bytes.
            pub const SIZE: usize = $size;
            fn read_fields(b: &[u8]) -> Self {
                $name { $( $field: <$ty as Field>::$get(b, $off), )* }
            }
            fn write_fields(&self, b: &mut [u8]) {
                $( Field::$put(&self.$field, b, $off); )*
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::read_fields(&[0u8; $size])
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut d = f.debug_struct(stringify!($name));
                $( d.field(stringify!($field), &self.$field); )*
                d.finish()
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Feature flags ("The Super Block", s_feature_compat / s_feature_incompat / s_feature_ro_compat)
// ---------------------------------------------------------------------------------------------

/// Compatible feature: directory preallocation.
pub const COMPAT_DIR_PREALLOC: u32 = 0x1;
/// Compatible feature: "imagic inodes".
pub const COMPAT_IMAGIC_INODES: u32 = 0x2;
/// Compatible feature: has a journal (ext3/4).
pub const COMPAT_HAS_JOURNAL: u32 = 0x4;
/// Compatible feature: extended attributes.
pub const COMPAT_EXT_ATTR: u32 = 0x8;
/// Compatible feature: reserved GDT blocks for growth.
pub const COMPAT_RESIZE_INODE: u32 = 0x10;
/// Compatible feature: hashed directory indexes.
pub const COMPAT_DIR_INDEX: u32 = 0x20;
/// Compatible feature: lazy block bitmap init.
pub const COMPAT_LAZY_BG: u32 = 0x40;
/// Compatible feature: sparse superblock v2 (`s_backup_bgs`).
pub const COMPAT_SPARSE_SUPER2: u32 = 0x200;
/// Compatible feature: fast commits.
pub const COMPAT_FAST_COMMIT: u32 = 0x400;
/// Compatible feature: stable inode numbers.
pub const COMPAT_STABLE_INODES: u32 = 0x800;
/// Compatible feature: orphan file.
pub const COMPAT_ORPHAN_FILE: u32 = 0x1000;

/// Incompatible feature: compression (never implemented).
pub const INCOMPAT_COMPRESSION: u32 = 0x1;
/// Incompatible feature: directory entries record the file type.
pub const INCOMPAT_FILETYPE: u32 = 0x2;
/// Incompatible feature: the journal needs recovery.
pub const INCOMPAT_RECOVER: u32 = 0x4;
/// Incompatible feature: this is an external journal device.
pub const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
/// Incompatible feature: meta block groups.
pub const INCOMPAT_META_BG: u32 = 0x10;
/// Incompatible feature: extent trees.
pub const INCOMPAT_EXTENTS: u32 = 0x40;
/// Incompatible feature: 64-bit block numbers.
pub const INCOMPAT_64BIT: u32 = 0x80;
/// Incompatible feature: multiple mount protection.
pub const INCOMPAT_MMP: u32 = 0x100;
/// Incompatible feature: flexible block groups.
pub const INCOMPAT_FLEX_BG: u32 = 0x200;
/// Incompatible feature: large xattr values in inodes.
pub const INCOMPAT_EA_INODE: u32 = 0x400;
/// Incompatible feature: data in directory entries.
pub const INCOMPAT_DIRDATA: u32 = 0x1000;
/// Incompatible feature: metadata checksum seed in the superblock.
pub const INCOMPAT_CSUM_SEED: u32 = 0x2000;
/// Incompatible feature: large directories (3-level htree, > 2 GiB).
pub const INCOMPAT_LARGEDIR: u32 = 0x4000;
/// Incompatible feature: inline data.
pub const INCOMPAT_INLINE_DATA: u32 = 0x8000;
/// Incompatible feature: encrypted inodes.
pub const INCOMPAT_ENCRYPT: u32 = 0x10000;
/// Incompatible feature: case-folded names.
pub const INCOMPAT_CASEFOLD: u32 = 0x20000;

/// Read-only compatible: sparse superblock backups.
pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
/// Read-only compatible: files over 2 GiB.
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
/// Read-only compatible: btree directories (unused).
pub const RO_COMPAT_BTREE_DIR: u32 = 0x4;
/// Read-only compatible: i_blocks in file-system blocks / 48-bit.
pub const RO_COMPAT_HUGE_FILE: u32 = 0x8;
/// Read-only compatible: group descriptor checksums (crc16).
pub const RO_COMPAT_GDT_CSUM: u32 = 0x10;
/// Read-only compatible: more than 65000 subdirectories.
pub const RO_COMPAT_DIR_NLINK: u32 = 0x20;
/// Read-only compatible: large inodes with extra fields.
pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
/// Read-only compatible: snapshots.
pub const RO_COMPAT_HAS_SNAPSHOT: u32 = 0x80;
/// Read-only compatible: quota inodes.
pub const RO_COMPAT_QUOTA: u32 = 0x100;
/// Read-only compatible: clustered allocation.
pub const RO_COMPAT_BIGALLOC: u32 = 0x200;
/// Read-only compatible: crc32c metadata checksums.
pub const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
/// Read-only compatible: replicas.
pub const RO_COMPAT_REPLICA: u32 = 0x800;
/// Read-only compatible: read-only filesystem.
pub const RO_COMPAT_READONLY: u32 = 0x1000;
/// Read-only compatible: project quotas.
pub const RO_COMPAT_PROJECT: u32 = 0x2000;
/// Read-only compatible: verity files.
pub const RO_COMPAT_VERITY: u32 = 0x8000;
/// Read-only compatible: orphan file may be non-empty.
pub const RO_COMPAT_ORPHAN_PRESENT: u32 = 0x10000;

/// Names of the feature bits as `dumpe2fs` prints them: (compat, incompat, ro_compat) tables.
pub const FEATURE_NAMES: [&[(u32, &str)]; 3] = [
    &[
        (COMPAT_DIR_PREALLOC, "dir_prealloc"),
        (COMPAT_IMAGIC_INODES, "imagic_inodes"),
        (COMPAT_HAS_JOURNAL, "has_journal"),
        (COMPAT_EXT_ATTR, "ext_attr"),
        (COMPAT_RESIZE_INODE, "resize_inode"),
        (COMPAT_DIR_INDEX, "dir_index"),
        (COMPAT_LAZY_BG, "lazy_bg"),
        (COMPAT_SPARSE_SUPER2, "sparse_super2"),
        (COMPAT_FAST_COMMIT, "fast_commit"),
        (COMPAT_STABLE_INODES, "stable_inodes"),
        (COMPAT_ORPHAN_FILE, "orphan_file"),
    ],
    &[
        (INCOMPAT_COMPRESSION, "compression"),
        (INCOMPAT_FILETYPE, "filetype"),
        (INCOMPAT_RECOVER, "needs_recovery"),
        (INCOMPAT_JOURNAL_DEV, "journal_dev"),
        (INCOMPAT_META_BG, "meta_bg"),
        (INCOMPAT_EXTENTS, "extent"),
        (INCOMPAT_64BIT, "64bit"),
        (INCOMPAT_MMP, "mmp"),
        (INCOMPAT_FLEX_BG, "flex_bg"),
        (INCOMPAT_EA_INODE, "ea_inode"),
        (INCOMPAT_DIRDATA, "dirdata"),
        (INCOMPAT_CSUM_SEED, "metadata_csum_seed"),
        (INCOMPAT_LARGEDIR, "large_dir"),
        (INCOMPAT_INLINE_DATA, "inline_data"),
        (INCOMPAT_ENCRYPT, "encrypt"),
        (INCOMPAT_CASEFOLD, "casefold"),
    ],
    &[
        (RO_COMPAT_SPARSE_SUPER, "sparse_super"),
        (RO_COMPAT_LARGE_FILE, "large_file"),
        (RO_COMPAT_BTREE_DIR, "btree_dir"),
        (RO_COMPAT_HUGE_FILE, "huge_file"),
        (RO_COMPAT_GDT_CSUM, "uninit_bg"),
        (RO_COMPAT_DIR_NLINK, "dir_nlink"),
        (RO_COMPAT_EXTRA_ISIZE, "extra_isize"),
        (RO_COMPAT_HAS_SNAPSHOT, "snapshot"),
        (RO_COMPAT_QUOTA, "quota"),
        (RO_COMPAT_BIGALLOC, "bigalloc"),
        (RO_COMPAT_METADATA_CSUM, "metadata_csum"),
        (RO_COMPAT_REPLICA, "replica"),
        (RO_COMPAT_READONLY, "read-only"),
        (RO_COMPAT_PROJECT, "project"),
        (RO_COMPAT_VERITY, "verity"),
        (RO_COMPAT_ORPHAN_PRESENT, "orphan_present"),
    ],
];

/// The names of the set feature bits (unknown bits as `FEATURE_C12`-style names like e2fsprogs).
pub fn feature_names(compat: u32, incompat: u32, ro_compat: u32) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, (bits, table)) in [
        (compat, FEATURE_NAMES[0]),
        (incompat, FEATURE_NAMES[1]),
        (ro_compat, FEATURE_NAMES[2]),
    ]
    .into_iter()
    .enumerate()
    {
        for bit in 0..32 {
            let mask = 1u32 << bit;
            if bits & mask == 0 {
                continue;
            }
            match table.iter().find(|(m, _)| *m == mask) {
                Some((_, name)) => out.push((*name).to_string()),
                None => out.push(format!("FEATURE_{}{bit}", ["C", "I", "R"][kind])),
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Superblock ("Global Structures" > "The Super Block")
// ---------------------------------------------------------------------------------------------

/// Superblock magic (`s_magic`).
pub const EXT4_SUPER_MAGIC: u16 = 0xEF53;
/// Byte offset of the primary superblock in the device.
pub const SUPERBLOCK_OFFSET: u64 = 1024;

layout! {
    /// The superblock (1024 bytes at byte 1024), every field of the ext4 layout document.
    pub struct Superblock [1024, get_le, put_le] {
        /// Total inode count.
        inodes_count: u32 = 0x0,
        /// Total block count, low 32 bits.
        blocks_count_lo: u32 = 0x4,
        /// Reserved (for root) block count, low 32 bits.
        r_blocks_count_lo: u32 = 0x8,
        /// Free block count, low 32 bits.
        free_blocks_count_lo: u32 = 0xC,
        /// Free inode count.
        free_inodes_count: u32 = 0x10,
        /// First data block (1 for 1 KiB blocks, else 0).
        first_data_block: u32 = 0x14,
        /// Block size is 2 ^ (10 + log_block_size).
        log_block_size: u32 = 0x18,
        /// Cluster size is 2 ^ (10 + log_cluster_size) (bigalloc).
        log_cluster_size: u32 = 0x1C,
        /// Blocks per group.
        blocks_per_group: u32 = 0x20,
        /// Clusters per group.
        clusters_per_group: u32 = 0x24,
        /// Inodes per group.
        inodes_per_group: u32 = 0x28,
        /// Mount time.
        mtime: u32 = 0x2C,
        /// Write time.
        wtime: u32 = 0x30,
        /// Mounts since the last fsck.
        mnt_count: u16 = 0x34,
        /// Mounts allowed before a fsck.
        max_mnt_count: u16 = 0x36,
        /// Magic, 0xEF53.
        magic: u16 = 0x38,
        /// State (1 = cleanly unmounted).
        state: u16 = 0x3A,
        /// Behaviour on errors.
        errors: u16 = 0x3C,
        /// Minor revision level.
        minor_rev_level: u16 = 0x3E,
        /// Time of the last check.
        lastcheck: u32 = 0x40,
        /// Maximum time between checks.
        checkinterval: u32 = 0x44,
        /// Creator OS (0 = Linux).
        creator_os: u32 = 0x48,
        /// Revision level (0 = original, 1 = dynamic inode sizes).
        rev_level: u32 = 0x4C,
        /// Default uid for reserved blocks.
        def_resuid: u16 = 0x50,
        /// Default gid for reserved blocks.
        def_resgid: u16 = 0x52,
        /// First non-reserved inode.
        first_ino: u32 = 0x54,
        /// Inode size in bytes.
        inode_size: u16 = 0x58,
        /// Block group holding this superblock.
        block_group_nr: u16 = 0x5A,
        /// Compatible features.
        feature_compat: u32 = 0x5C,
        /// Incompatible features.
        feature_incompat: u32 = 0x60,
        /// Read-only compatible features.
        feature_ro_compat: u32 = 0x64,
        /// Volume UUID.
        uuid: [u8; 16] = 0x68,
        /// Volume label (NUL padded).
        volume_name: [u8; 16] = 0x78,
        /// Directory where last mounted.
        last_mounted: [u8; 64] = 0x88,
        /// Compression bitmap.
        algorithm_usage_bitmap: u32 = 0xC8,
        /// Blocks to preallocate for files.
        prealloc_blocks: u8 = 0xCC,
        /// Blocks to preallocate for directories.
        prealloc_dir_blocks: u8 = 0xCD,
        /// Reserved GDT blocks for online growth.
        reserved_gdt_blocks: u16 = 0xCE,
        /// Journal UUID (external journal).
        journal_uuid: [u8; 16] = 0xD0,
        /// Journal inode number.
        journal_inum: u32 = 0xE0,
        /// Journal device number (external journal).
        journal_dev: u32 = 0xE4,
        /// Head of the orphan inode list.
        last_orphan: u32 = 0xE8,
        /// htree hash seed.
        hash_seed: [u32; 4] = 0xEC,
        /// Default htree hash version.
        def_hash_version: u8 = 0xFC,
        /// Journal backup type in `jnl_blocks` (1 = inode blocks).
        jnl_backup_type: u8 = 0xFD,
        /// Group descriptor size when 64bit is set.
        desc_size: u16 = 0xFE,
        /// Default mount options.
        default_mount_opts: u32 = 0x100,
        /// First meta block group (meta_bg).
        first_meta_bg: u32 = 0x104,
        /// Filesystem creation time.
        mkfs_time: u32 = 0x108,
        /// Backup of the journal inode's i_block, i_size_high and i_size.
        jnl_blocks: [u32; 17] = 0x10C,
        /// Block count, high 32 bits.
        blocks_count_hi: u32 = 0x150,
        /// Reserved block count, high 32 bits.
        r_blocks_count_hi: u32 = 0x154,
        /// Free block count, high 32 bits.
        free_blocks_count_hi: u32 = 0x158,
        /// All inodes have at least this many extra bytes.
        min_extra_isize: u16 = 0x15C,
        /// New inodes should reserve this many extra bytes.
        want_extra_isize: u16 = 0x15E,
        /// Miscellaneous flags (signed/unsigned hash, ...).
        flags: u32 = 0x160,
        /// RAID stride.
        raid_stride: u16 = 0x164,
        /// MMP check interval.
        mmp_interval: u16 = 0x166,
        /// MMP block.
        mmp_block: u64 = 0x168,
        /// RAID stripe width.
        raid_stripe_width: u32 = 0x170,
        /// Flex group size is 2 ^ log_groups_per_flex.
        log_groups_per_flex: u8 = 0x174,
        /// Metadata checksum type (1 = crc32c).
        checksum_type: u8 = 0x175,
        /// Encryption level.
        encryption_level: u8 = 0x176,
        /// Padding.
        reserved_pad: u8 = 0x177,
        /// KiB written over the filesystem's life.
        kbytes_written: u64 = 0x178,
        /// Active snapshot inode.
        snapshot_inum: u32 = 0x180,
        /// Active snapshot id.
        snapshot_id: u32 = 0x184,
        /// Blocks reserved for the active snapshot.
        snapshot_r_blocks_count: u64 = 0x188,
        /// Head of the snapshot list.
        snapshot_list: u32 = 0x190,
        /// Errors seen.
        error_count: u32 = 0x194,
        /// First error time.
        first_error_time: u32 = 0x198,
        /// Inode of the first error.
        first_error_ino: u32 = 0x19C,
        /// Block of the first error.
        first_error_block: u64 = 0x1A0,
        /// Function of the first error.
        first_error_func: [u8; 32] = 0x1A8,
        /// Line of the first error.
        first_error_line: u32 = 0x1C8,
        /// Last error time.
        last_error_time: u32 = 0x1CC,
        /// Inode of the last error.
        last_error_ino: u32 = 0x1D0,
        /// Line of the last error.
        last_error_line: u32 = 0x1D4,
        /// Block of the last error.
        last_error_block: u64 = 0x1D8,
        /// Function of the last error.
        last_error_func: [u8; 32] = 0x1E0,
        /// Mount options.
        mount_opts: [u8; 64] = 0x200,
        /// User quota inode.
        usr_quota_inum: u32 = 0x240,
        /// Group quota inode.
        grp_quota_inum: u32 = 0x244,
        /// Overhead blocks.
        overhead_blocks: u32 = 0x248,
        /// Backup superblock groups (sparse_super2).
        backup_bgs: [u32; 2] = 0x24C,
        /// Encryption algorithms.
        encrypt_algos: [u8; 4] = 0x254,
        /// Salt for string2key.
        encrypt_pw_salt: [u8; 16] = 0x258,
        /// lost+found inode.
        lpf_ino: u32 = 0x268,
        /// Project quota inode.
        prj_quota_inum: u32 = 0x26C,
        /// crc32c(uuid) when metadata_csum_seed is set.
        checksum_seed: u32 = 0x270,
        /// High 8 bits of wtime.
        wtime_hi: u8 = 0x274,
        /// High 8 bits of mtime.
        mtime_hi: u8 = 0x275,
        /// High 8 bits of mkfs_time.
        mkfs_time_hi: u8 = 0x276,
        /// High 8 bits of lastcheck.
        lastcheck_hi: u8 = 0x277,
        /// High 8 bits of first_error_time.
        first_error_time_hi: u8 = 0x278,
        /// High 8 bits of last_error_time.
        last_error_time_hi: u8 = 0x279,
        /// First error code.
        first_error_errcode: u8 = 0x27A,
        /// Last error code.
        last_error_errcode: u8 = 0x27B,
        /// Filename charset encoding (casefold).
        encoding: u16 = 0x27C,
        /// Encoding flags.
        encoding_flags: u16 = 0x27E,
        /// Orphan file inode.
        orphan_file_inum: u32 = 0x280,
        /// crc32c of the superblock (bytes 0..0x3FC) when metadata_csum is set.
        checksum: u32 = 0x3FC,
    }
}

/// Offset of `s_checksum` in the superblock.
pub const SUPERBLOCK_CHECKSUM_OFFSET: usize = 0x3FC;

impl Superblock {
    /// Parse the 1024-byte superblock ("The Super Block"); checks the magic only.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("superblock", b, Self::SIZE)?;
        let sb = Self::read_fields(b);
        if sb.magic != EXT4_SUPER_MAGIC {
            return Err(ferr(
                "superblock",
                format!("bad magic {:#06x} (want 0xef53)", sb.magic),
            ));
        }
        Ok(sb)
    }

    /// Write all fields into `b[..1024]` (reserved bytes are zeroed).
    pub fn serialize(&self, b: &mut [u8]) {
        b[..Self::SIZE].fill(0);
        self.write_fields(b);
    }

    /// Block size in bytes, if `log_block_size` is sane (1 KiB .. 64 KiB).
    pub fn block_size(&self) -> Option<u32> {
        (self.log_block_size <= 6).then(|| 1024u32 << self.log_block_size)
    }
    /// Total block count (64-bit when the 64bit feature is set).
    pub fn blocks_count(&self) -> u64 {
        let hi = if self.has_incompat(INCOMPAT_64BIT) {
            u64::from(self.blocks_count_hi) << 32
        } else {
            0
        };
        hi | u64::from(self.blocks_count_lo)
    }
    /// Free block count.
    pub fn free_blocks_count(&self) -> u64 {
        let hi = if self.has_incompat(INCOMPAT_64BIT) {
            u64::from(self.free_blocks_count_hi) << 32
        } else {
            0
        };
        hi | u64::from(self.free_blocks_count_lo)
    }
    /// Inode size (128 for revision 0).
    pub fn inode_size(&self) -> u16 {
        if self.rev_level == 0 {
            128
        } else {
            self.inode_size
        }
    }
    /// Group descriptor size: `desc_size` with 64bit, else 32.
    pub fn desc_size(&self) -> u16 {
        if self.has_incompat(INCOMPAT_64BIT) {
            self.desc_size
        } else {
            32
        }
    }
    /// Whether a compat feature is set.
    pub fn has_compat(&self, f: u32) -> bool {
        self.feature_compat & f != 0
    }
    /// Whether an incompat feature is set.
    pub fn has_incompat(&self, f: u32) -> bool {
        self.feature_incompat & f != 0
    }
    /// Whether a ro_compat feature is set.
    pub fn has_ro_compat(&self, f: u32) -> bool {
        self.feature_ro_compat & f != 0
    }
    /// The label as bytes up to the first NUL.
    pub fn label(&self) -> &[u8] {
        let end = self
            .volume_name
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(self.volume_name.len());
        &self.volume_name[..end]
    }
    /// The seed of every metadata checksum ("Checksums"): `checksum_seed` with
    /// metadata_csum_seed, else crc32c(~0, uuid).
    pub fn csum_seed(&self) -> u32 {
        if self.has_incompat(INCOMPAT_CSUM_SEED) {
            self.checksum_seed
        } else {
            crc32c_raw(!0, &self.uuid)
        }
    }
    /// The superblock checksum computed over `raw[..0x3FC]` (the raw on-disk bytes).
    pub fn compute_checksum(raw: &[u8]) -> u32 {
        crc32c_raw(!0, raw.get(..SUPERBLOCK_CHECKSUM_OFFSET).unwrap_or(raw))
    }
}

// ---------------------------------------------------------------------------------------------
// Block group descriptor ("Global Structures" > "Block Group Descriptors")
// ---------------------------------------------------------------------------------------------

/// Group flag: inode table and bitmap not initialised.
pub const BG_INODE_UNINIT: u16 = 0x1;
/// Group flag: block bitmap not initialised.
pub const BG_BLOCK_UNINIT: u16 = 0x2;
/// Group flag: inode table zeroed.
pub const BG_INODE_ZEROED: u16 = 0x4;

layout! {
    /// A block group descriptor: 32 bytes, or 64 with the 64bit feature (the `_hi` halves).
    pub struct GroupDesc [64, get_le, put_le] {
        /// Block bitmap location, low 32 bits.
        block_bitmap_lo: u32 = 0x0,
        /// Inode bitmap location, low 32 bits.
        inode_bitmap_lo: u32 = 0x4,
        /// Inode table location, low 32 bits.
        inode_table_lo: u32 = 0x8,
        /// Free blocks, low 16 bits.
        free_blocks_count_lo: u16 = 0xC,
        /// Free inodes, low 16 bits.
        free_inodes_count_lo: u16 = 0xE,
        /// Directories, low 16 bits.
        used_dirs_count_lo: u16 = 0x10,
        /// Flags (`BG_*`).
        flags: u16 = 0x12,
        /// Snapshot exclusion bitmap, low 32 bits.
        exclude_bitmap_lo: u32 = 0x14,
        /// Block bitmap checksum, low 16 bits.
        block_bitmap_csum_lo: u16 = 0x18,
        /// Inode bitmap checksum, low 16 bits.
        inode_bitmap_csum_lo: u16 = 0x1A,
        /// Unused inodes at the end of the table, low 16 bits.
        itable_unused_lo: u16 = 0x1C,
        /// Descriptor checksum (crc16 with uninit_bg, crc32c low 16 with metadata_csum).
        checksum: u16 = 0x1E,
        /// Block bitmap location, high 32 bits.
        block_bitmap_hi: u32 = 0x20,
        /// Inode bitmap location, high 32 bits.
        inode_bitmap_hi: u32 = 0x24,
        /// Inode table location, high 32 bits.
        inode_table_hi: u32 = 0x28,
        /// Free blocks, high 16 bits.
        free_blocks_count_hi: u16 = 0x2C,
        /// Free inodes, high 16 bits.
        free_inodes_count_hi: u16 = 0x2E,
        /// Directories, high 16 bits.
        used_dirs_count_hi: u16 = 0x30,
        /// Unused inodes, high 16 bits.
        itable_unused_hi: u16 = 0x32,
        /// Snapshot exclusion bitmap, high 32 bits.
        exclude_bitmap_hi: u32 = 0x34,
        /// Block bitmap checksum, high 16 bits.
        block_bitmap_csum_hi: u16 = 0x38,
        /// Inode bitmap checksum, high 16 bits.
        inode_bitmap_csum_hi: u16 = 0x3A,
        /// Padding.
        reserved: u32 = 0x3C,
    }
}

/// Offset of `bg_checksum` in a group descriptor.
pub const GROUP_DESC_CHECKSUM_OFFSET: usize = 0x1E;

impl GroupDesc {
    /// Parse a descriptor of `desc_size` bytes (32, or >= 64 with 64bit); fields beyond a
    /// 32-byte descriptor are zero.
    pub fn parse(b: &[u8], desc_size: usize) -> Result<Self, FormatError> {
        if desc_size < 32
            || (desc_size > 32 && desc_size < 64)
            || desc_size > 1024
            || !desc_size.is_power_of_two()
        {
            return Err(ferr(
                "group descriptor",
                format!("bad descriptor size {desc_size}"),
            ));
        }
        need("group descriptor", b, desc_size)?;
        let mut buf = [0u8; 64];
        let n = desc_size.min(64);
        buf[..n].copy_from_slice(&b[..n]);
        Ok(Self::read_fields(&buf))
    }

    /// Write the descriptor into `b[..desc_size]` (only the low halves when `desc_size` is 32).
    pub fn serialize(&self, b: &mut [u8], desc_size: usize) {
        let mut buf = [0u8; 64];
        self.write_fields(&mut buf);
        let n = desc_size.min(64);
        b[..desc_size].fill(0);
        b[..n].copy_from_slice(&buf[..n]);
    }

    /// Block bitmap block number.
    pub fn block_bitmap(&self) -> u64 {
        u64::from(self.block_bitmap_hi) << 32 | u64::from(self.block_bitmap_lo)
    }
    /// Inode bitmap block number.
    pub fn inode_bitmap(&self) -> u64 {
        u64::from(self.inode_bitmap_hi) << 32 | u64::from(self.inode_bitmap_lo)
    }
    /// First block of the inode table.
    pub fn inode_table(&self) -> u64 {
        u64::from(self.inode_table_hi) << 32 | u64::from(self.inode_table_lo)
    }
    /// Free blocks in the group.
    pub fn free_blocks_count(&self) -> u32 {
        u32::from(self.free_blocks_count_hi) << 16 | u32::from(self.free_blocks_count_lo)
    }
    /// Free inodes in the group.
    pub fn free_inodes_count(&self) -> u32 {
        u32::from(self.free_inodes_count_hi) << 16 | u32::from(self.free_inodes_count_lo)
    }
    /// Directories in the group.
    pub fn used_dirs_count(&self) -> u32 {
        u32::from(self.used_dirs_count_hi) << 16 | u32::from(self.used_dirs_count_lo)
    }

    /// Descriptor checksum of the raw on-disk descriptor `raw` (its `desc_size` bytes) for
    /// group `group` ("Block Group Descriptors", bg_checksum): with metadata_csum the low 16
    /// bits of crc32c(seed, group, desc with checksum zeroed); with uninit_bg (gdt_csum)
    /// crc16(~0, uuid, group, desc without the checksum, the rest for 64-byte descriptors).
    pub fn compute_checksum(sb: &Superblock, group: u32, raw: &[u8]) -> u16 {
        let (head, tail) = match (
            raw.get(..GROUP_DESC_CHECKSUM_OFFSET),
            raw.get(GROUP_DESC_CHECKSUM_OFFSET + 2..),
        ) {
            (Some(h), Some(t)) => (h, t),
            _ => return 0,
        };
        if sb.has_ro_compat(RO_COMPAT_METADATA_CSUM) {
            let mut c = crc32c_raw(sb.csum_seed(), &group.to_le_bytes());
            c = crc32c_raw(c, head);
            c = crc32c_raw(c, &[0, 0]);
            c = crc32c_raw(c, tail);
            (c & 0xFFFF) as u16
        } else {
            let mut c = crc16(!0, &sb.uuid);
            c = crc16(c, &group.to_le_bytes());
            c = crc16(c, head);
            // The 64-bit part is covered only when the descriptor is larger than 32 bytes.
            c = crc16(c, tail);
            c
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inode ("Dynamic Structures" > "Index Nodes")
// ---------------------------------------------------------------------------------------------

/// Inode flag: synchronous updates.
pub const INODE_FLAG_SYNC: u32 = 0x8;
/// Inode flag: immutable.
pub const INODE_FLAG_IMMUTABLE: u32 = 0x10;
/// Inode flag: append only.
pub const INODE_FLAG_APPEND: u32 = 0x20;
/// Inode flag: encrypted.
pub const INODE_FLAG_ENCRYPT: u32 = 0x800;
/// Inode flag: hashed-indexed directory.
pub const INODE_FLAG_INDEX: u32 = 0x1000;
/// Inode flag: `i_blocks` counts file-system blocks (huge_file).
pub const INODE_FLAG_HUGE_FILE: u32 = 0x40000;
/// Inode flag: uses an extent tree.
pub const INODE_FLAG_EXTENTS: u32 = 0x80000;
/// Inode flag: verity file.
pub const INODE_FLAG_VERITY: u32 = 0x100000;
/// Inode flag: holds a large xattr value.
pub const INODE_FLAG_EA_INODE: u32 = 0x200000;
/// Inode flag: data is inline.
pub const INODE_FLAG_INLINE_DATA: u32 = 0x10000000;
/// Inode flag: case-folded directory.
pub const INODE_FLAG_CASEFOLD: u32 = 0x40000000;

/// Root directory inode number.
pub const ROOT_INO: u32 = 2;
/// Journal inode number (usual value of `s_journal_inum`).
pub const JOURNAL_INO: u32 = 8;
/// Size of `i_block` in bytes.
pub const I_BLOCK_SIZE: usize = 60;
/// Offset of `i_block` in the inode.
pub const I_BLOCK_OFFSET: usize = 0x28;
/// Size of the original (good old) inode.
pub const GOOD_OLD_INODE_SIZE: usize = 128;

layout! {
    /// An inode: the 128-byte base plus the extra fields of large inodes (up to 0xA0).
    /// `i_block` is kept raw (60 bytes): block map, extent root, fast symlink or inline data.
    pub struct Inode [0xA0, get_le, put_le] {
        /// File type and permissions.
        mode: u16 = 0x0,
        /// Owner, low 16 bits.
        uid_lo: u16 = 0x2,
        /// Size, low 32 bits.
        size_lo: u32 = 0x4,
        /// Access time (seconds, signed 32 + epoch bits in `atime_extra`).
        atime: u32 = 0x8,
        /// Change time.
        ctime: u32 = 0xC,
        /// Modification time.
        mtime: u32 = 0x10,
        /// Deletion time.
        dtime: u32 = 0x14,
        /// Group, low 16 bits.
        gid_lo: u16 = 0x18,
        /// Hard link count.
        links_count: u16 = 0x1A,
        /// Block count, low 32 bits (512-byte units unless huge_file).
        blocks_lo: u32 = 0x1C,
        /// Inode flags (`INODE_FLAG_*`).
        flags: u32 = 0x20,
        /// osd1 (Linux: i_version).
        osd1: u32 = 0x24,
        /// Block map / extent tree root / inline data / fast symlink target.
        block: [u8; 60] = 0x28,
        /// File version (NFS).
        generation: u32 = 0x64,
        /// Extended attribute block, low 32 bits.
        file_acl_lo: u32 = 0x68,
        /// Size, high 32 bits.
        size_high: u32 = 0x6C,
        /// Obsolete fragment address.
        obso_faddr: u32 = 0x70,
        /// Block count, high 16 bits.
        blocks_high: u16 = 0x74,
        /// Extended attribute block, high 16 bits.
        file_acl_high: u16 = 0x76,
        /// Owner, high 16 bits.
        uid_high: u16 = 0x78,
        /// Group, high 16 bits.
        gid_high: u16 = 0x7A,
        /// Inode checksum, low 16 bits.
        checksum_lo: u16 = 0x7C,
        /// Reserved.
        osd2_reserved: u16 = 0x7E,
        /// Size of the extra fields beyond 128 bytes.
        extra_isize: u16 = 0x80,
        /// Inode checksum, high 16 bits.
        checksum_hi: u16 = 0x82,
        /// Extra change time bits (epoch << 0 | nsec << 2).
        ctime_extra: u32 = 0x84,
        /// Extra modification time bits.
        mtime_extra: u32 = 0x88,
        /// Extra access time bits.
        atime_extra: u32 = 0x8C,
        /// Creation time.
        crtime: u32 = 0x90,
        /// Extra creation time bits.
        crtime_extra: u32 = 0x94,
        /// Version, high 32 bits.
        version_hi: u32 = 0x98,
        /// Project id.
        projid: u32 = 0x9C,
    }
}

/// Offset of `i_checksum_lo`.
pub const INODE_CHECKSUM_LO_OFFSET: usize = 0x7C;
/// Offset of `i_checksum_hi`.
pub const INODE_CHECKSUM_HI_OFFSET: usize = 0x82;

impl Inode {
    /// Parse an on-disk inode of `b.len()` bytes (128 or more). Extra fields are read only
    /// where `i_extra_isize` covers them; the others are zero.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("inode", b, GOOD_OLD_INODE_SIZE)?;
        let mut buf = [0u8; Self::SIZE];
        let n = b.len().min(Self::SIZE);
        buf[..n].copy_from_slice(&b[..n]);
        if b.len() > GOOD_OLD_INODE_SIZE {
            let extra = usize::from(u16::from_le_bytes([buf[0x80], buf[0x81]]));
            if GOOD_OLD_INODE_SIZE + extra > b.len() || extra % 4 != 0 {
                return Err(ferr(
                    "inode",
                    format!(
                        "i_extra_isize {extra} does not fit an inode of {} bytes",
                        b.len()
                    ),
                ));
            }
            let end = (GOOD_OLD_INODE_SIZE + extra).max(0x82);
            if end < Self::SIZE {
                buf[end..].fill(0);
            }
        } else {
            buf[GOOD_OLD_INODE_SIZE..].fill(0);
        }
        Ok(Self::read_fields(&buf))
    }

    /// Write the inode into `b` (its on-disk size, 128 or more). Extra fields are written as far
    /// as both `b` and `128 + extra_isize` reach; bytes beyond them are left untouched (the
    /// in-inode xattr area belongs to the caller).
    pub fn serialize(&self, b: &mut [u8]) {
        let mut buf = [0u8; Self::SIZE];
        self.write_fields(&mut buf);
        let n = if b.len() > GOOD_OLD_INODE_SIZE {
            (GOOD_OLD_INODE_SIZE + usize::from(self.extra_isize))
                .max(0x82)
                .min(b.len())
                .min(Self::SIZE)
        } else {
            GOOD_OLD_INODE_SIZE
        };
        b[..n].copy_from_slice(&buf[..n]);
    }

    /// Whether an extra field ending at byte `end` is present (inode size and extra_isize).
    pub fn has_extra(&self, inode_size: usize, end: usize) -> bool {
        inode_size > GOOD_OLD_INODE_SIZE
            && GOOD_OLD_INODE_SIZE + usize::from(self.extra_isize) >= end
    }
    /// File size (`i_size_lo | i_size_high << 32`).
    pub fn size(&self) -> u64 {
        u64::from(self.size_high) << 32 | u64::from(self.size_lo)
    }
    /// Full 32-bit owner.
    pub fn uid(&self) -> u32 {
        u32::from(self.uid_high) << 16 | u32::from(self.uid_lo)
    }
    /// Full 32-bit group.
    pub fn gid(&self) -> u32 {
        u32::from(self.gid_high) << 16 | u32::from(self.gid_lo)
    }
    /// Extended attribute block (48-bit).
    pub fn file_acl(&self) -> u64 {
        u64::from(self.file_acl_high) << 32 | u64::from(self.file_acl_lo)
    }
    /// `i_blocks` in 512-byte units, given the superblock's huge_file setting and block size.
    pub fn blocks_512(&self, huge_file: bool, block_size: u32) -> u64 {
        let raw = if huge_file {
            u64::from(self.blocks_high) << 32 | u64::from(self.blocks_lo)
        } else {
            u64::from(self.blocks_lo)
        };
        if huge_file && self.flags & INODE_FLAG_HUGE_FILE != 0 {
            raw.saturating_mul(u64::from(block_size / 512))
        } else {
            raw
        }
    }
    /// The 15 little-endian words of `i_block`.
    pub fn block_words(&self) -> [u32; 15] {
        <[u32; 15]>::get_le(&self.block, 0)
    }
    /// Set `i_block` from 15 words.
    pub fn set_block_words(&mut self, words: &[u32; 15]) {
        words.put_le(&mut self.block, 0);
    }
    /// Compute the inode checksum ("Index Nodes", i_checksum) over the raw on-disk inode
    /// `raw` (all `inode_size` bytes) of inode number `ino`: crc32c(seed, ino, generation,
    /// inode with both checksum fields zeroed). Returns the full 32 bits; 128-byte inodes
    /// (or extra_isize < 4) store only the low 16.
    pub fn compute_checksum(csum_seed: u32, ino: u32, raw: &[u8]) -> u32 {
        let gen = u32::get_le(raw, 0x64);
        let mut c = crc32c_raw(csum_seed, &ino.to_le_bytes());
        c = crc32c_raw(c, &gen.to_le_bytes());
        let mut pos = 0usize;
        let mut zero_at = vec![INODE_CHECKSUM_LO_OFFSET];
        let extra = usize::from(u16::get_le(raw, 0x80));
        if raw.len() > GOOD_OLD_INODE_SIZE && extra >= 4 {
            zero_at.push(INODE_CHECKSUM_HI_OFFSET);
        }
        for z in zero_at {
            if let Some(part) = raw.get(pos..z) {
                c = crc32c_raw(c, part);
                c = crc32c_raw(c, &[0, 0]);
                pos = z + 2;
            }
        }
        if let Some(rest) = raw.get(pos..) {
            c = crc32c_raw(c, rest);
        }
        c
    }
}

/// Split a 32-bit on-disk time and its `_extra` word into seconds and nanoseconds
/// ("Inode Timestamps"): the low 2 bits of extra extend the signed seconds, the upper 30 bits
/// are nanoseconds.
pub fn decode_time(secs: u32, extra: Option<u32>) -> (i64, u32) {
    let base = i64::from(secs as i32);
    match extra {
        Some(x) => (base + (i64::from(x & 3) << 32), (x >> 2).min(999_999_999)),
        None => (base, 0),
    }
}

/// Inverse of [`decode_time`]: (seconds word, extra word).
pub fn encode_time(sec: i64, nsec: u32) -> (u32, u32) {
    let epoch = ((sec - i64::from(sec as i32)) >> 32) as u32 & 3;
    (sec as i32 as u32, (nsec << 2) | epoch)
}

/// Decode a device number stored in `i_block` ("Index Nodes", i_block for devices): the old
/// 16-bit encoding in word 0, else the new 32-bit encoding in word 1. Returns (major, minor).
pub fn decode_device(words: &[u32; 15]) -> (u32, u32) {
    if words[0] != 0 {
        let d = words[0];
        ((d >> 8) & 0xff, d & 0xff)
    } else {
        let d = words[1];
        ((d >> 8) & 0xfff, (d & 0xff) | ((d >> 12) & 0xfff00))
    }
}

/// Encode a device number as the kernel does: old encoding when it fits in 8+8 bits (word 0),
/// else the new encoding (word 1). Returns (word0, word1).
pub fn encode_device(major: u32, minor: u32) -> (u32, u32) {
    if major < 256 && minor < 256 {
        ((major << 8) | minor, 0)
    } else {
        (
            0,
            (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Extent tree ("Dynamic Structures" > "The Contents of inode.i_block" > "Extent Tree")
// ---------------------------------------------------------------------------------------------

/// Extent header magic.
pub const EXTENT_MAGIC: u16 = 0xF30A;
/// Extents longer than this are uninitialized (length minus this).
pub const EXTENT_INIT_MAX_LEN: u16 = 32768;

layout! {
    /// Extent tree node header (`struct ext4_extent_header`, 12 bytes).
    pub struct ExtentHeader [12, get_le, put_le] {
        /// Magic, 0xF30A.
        magic: u16 = 0x0,
        /// Valid entries following the header.
        entries: u16 = 0x2,
        /// Capacity of entries.
        max: u16 = 0x4,
        /// Depth (0 = leaves follow).
        depth: u16 = 0x6,
        /// Generation (unused).
        generation: u32 = 0x8,
    }
}

impl ExtentHeader {
    /// Parse and check magic and `entries <= max`, and that `max` entries fit in `b`.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("extent header", b, Self::SIZE)?;
        let h = Self::read_fields(b);
        if h.magic != EXTENT_MAGIC {
            return Err(ferr("extent header", format!("bad magic {:#06x}", h.magic)));
        }
        if h.entries > h.max {
            return Err(ferr(
                "extent header",
                format!("{} entries exceed max {}", h.entries, h.max),
            ));
        }
        if Self::SIZE + usize::from(h.max) * 12 > b.len() {
            return Err(ferr(
                "extent header",
                format!("max {} entries do not fit in {} bytes", h.max, b.len()),
            ));
        }
        Ok(h)
    }
    /// Write into `b[..12]`.
    pub fn serialize(&self, b: &mut [u8]) {
        self.write_fields(b);
    }
}

layout! {
    /// Interior extent tree entry (`struct ext4_extent_idx`).
    pub struct ExtentIndex [12, get_le, put_le] {
        /// First logical block covered by the subtree.
        block: u32 = 0x0,
        /// Child node block, low 32 bits.
        leaf_lo: u32 = 0x4,
        /// Child node block, high 16 bits.
        leaf_hi: u16 = 0x8,
        /// Unused.
        unused: u16 = 0xA,
    }
}

impl ExtentIndex {
    /// Parse 12 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("extent index", b, Self::SIZE)?;
        Ok(Self::read_fields(b))
    }
    /// Write into `b[..12]`.
    pub fn serialize(&self, b: &mut [u8]) {
        self.write_fields(b);
    }
    /// Child node block.
    pub fn leaf(&self) -> u64 {
        u64::from(self.leaf_hi) << 32 | u64::from(self.leaf_lo)
    }
}

layout! {
    /// Leaf extent (`struct ext4_extent`).
    pub struct ExtentLeaf [12, get_le, put_le] {
        /// First logical block.
        block: u32 = 0x0,
        /// Length in blocks (> 32768: uninitialized, length - 32768).
        len: u16 = 0x4,
        /// Physical start, high 16 bits.
        start_hi: u16 = 0x6,
        /// Physical start, low 32 bits.
        start_lo: u32 = 0x8,
    }
}

impl ExtentLeaf {
    /// Parse 12 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("extent", b, Self::SIZE)?;
        Ok(Self::read_fields(b))
    }
    /// Write into `b[..12]`.
    pub fn serialize(&self, b: &mut [u8]) {
        self.write_fields(b);
    }
    /// Physical start block.
    pub fn start(&self) -> u64 {
        u64::from(self.start_hi) << 32 | u64::from(self.start_lo)
    }
    /// Whether the extent is uninitialized (reads as zeros).
    pub fn is_uninit(&self) -> bool {
        self.len > EXTENT_INIT_MAX_LEN
    }
    /// Length in blocks.
    pub fn block_count(&self) -> u32 {
        if self.len > EXTENT_INIT_MAX_LEN {
            u32::from(self.len - EXTENT_INIT_MAX_LEN)
        } else {
            u32::from(self.len)
        }
    }
}

/// Checksum of an extent tree block (`struct ext4_extent_tail`): crc32c(inode seed, the
/// block up to the tail at `12 + 12 * max`).
pub fn extent_block_checksum(inode_seed: u32, block: &[u8], max: u16) -> Option<u32> {
    let end = ExtentHeader::SIZE + usize::from(max) * 12;
    block.get(..end).map(|b| crc32c_raw(inode_seed, b))
}

/// The per-inode checksum seed: crc32c(crc32c(fs seed, ino), generation).
pub fn inode_csum_seed(csum_seed: u32, ino: u32, generation: u32) -> u32 {
    crc32c_raw(
        crc32c_raw(csum_seed, &ino.to_le_bytes()),
        &generation.to_le_bytes(),
    )
}

// ---------------------------------------------------------------------------------------------
// Directories ("Dynamic Structures" > "Directory Entries")
// ---------------------------------------------------------------------------------------------

/// Directory entry file type codes (`file_type` byte with the filetype feature).
pub mod ftype {
    /// Unknown.
    pub const UNKNOWN: u8 = 0;
    /// Regular file.
    pub const REG: u8 = 1;
    /// Directory.
    pub const DIR: u8 = 2;
    /// Character device.
    pub const CHRDEV: u8 = 3;
    /// Block device.
    pub const BLKDEV: u8 = 4;
    /// FIFO.
    pub const FIFO: u8 = 5;
    /// Socket.
    pub const SOCK: u8 = 6;
    /// Symbolic link.
    pub const SYMLINK: u8 = 7;
    /// Fake type of the checksum tail entry.
    pub const CSUM_TAIL: u8 = 0xDE;
}

/// A directory entry (`struct ext4_dir_entry_2`, or `ext4_dir_entry` without filetype).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number (0 = unused entry).
    pub inode: u32,
    /// Length of this record (decoded; up to 65536).
    pub rec_len: u32,
    /// File type code (0 without the filetype feature).
    pub file_type: u8,
    /// Name bytes.
    pub name: Vec<u8>,
}

/// Decode an on-disk `rec_len` for a block of `block_size` bytes (64 KiB blocks store 65536
/// as 65535 or 0, and use the low 2 bits for bits 16-17).
pub fn rec_len_from_disk(raw: u16, block_size: u32) -> u32 {
    let len = u32::from(raw);
    if block_size < 65536 {
        return len;
    }
    if len == 65535 || len == 0 {
        return 65536;
    }
    (len & 65532) | ((len & 3) << 16)
}

/// Encode a `rec_len` for disk (inverse of [`rec_len_from_disk`]).
pub fn rec_len_to_disk(len: u32, block_size: u32) -> u16 {
    if block_size < 65536 {
        return len as u16;
    }
    if len == 65536 {
        return if block_size == 65536 { 65535 } else { 0 };
    }
    ((len & 65532) | ((len >> 16) & 3)) as u16
}

/// Size a dirent with a name of `name_len` bytes needs (8 + name, rounded up to 4).
pub fn dirent_min_len(name_len: usize) -> usize {
    (8 + name_len + 3) & !3
}

impl DirEntry {
    /// Parse the entry at the start of `b` (the rest of the block). Checks that `rec_len` is
    /// at least 8, a multiple of 4, within `b`, and holds the name.
    pub fn parse(b: &[u8], block_size: u32, filetype: bool) -> Result<Self, FormatError> {
        need("directory entry", b, 8)?;
        let inode = u32::get_le(b, 0);
        let rec_len = rec_len_from_disk(u16::get_le(b, 4), block_size);
        let (name_len, file_type) = if filetype {
            (usize::from(b[6]), b[7])
        } else {
            (usize::from(u16::get_le(b, 6)), 0)
        };
        let rl = rec_len as usize;
        if rl < 8 || rl % 4 != 0 {
            return Err(ferr("directory entry", format!("bad rec_len {rec_len}")));
        }
        if rl > b.len() {
            return Err(ferr(
                "directory entry",
                format!(
                    "rec_len {rec_len} runs past the block ({} bytes left)",
                    b.len()
                ),
            ));
        }
        if 8 + name_len > rl {
            return Err(ferr(
                "directory entry",
                format!("name_len {name_len} does not fit rec_len {rec_len}"),
            ));
        }
        Ok(DirEntry {
            inode,
            rec_len,
            file_type,
            name: b[8..8 + name_len].to_vec(),
        })
    }

    /// Write the entry (header and name) into `b[..rec_len]`; the slack after the name is zeroed.
    pub fn serialize(&self, b: &mut [u8], block_size: u32, filetype: bool) {
        let rl = self.rec_len as usize;
        b[..rl].fill(0);
        self.inode.put_le(b, 0);
        rec_len_to_disk(self.rec_len, block_size).put_le(b, 4);
        if filetype {
            b[6] = self.name.len() as u8;
            b[7] = self.file_type;
        } else {
            (self.name.len() as u16).put_le(b, 6);
        }
        b[8..8 + self.name.len()].copy_from_slice(&self.name);
    }
}

layout! {
    /// Checksum tail of a leaf directory block (`struct ext4_dir_entry_tail`, last 12 bytes).
    pub struct DirTail [12, get_le, put_le] {
        /// Zero (looks like an unused entry).
        reserved_zero1: u32 = 0x0,
        /// 12.
        rec_len: u16 = 0x4,
        /// Zero name length.
        reserved_zero2: u8 = 0x6,
        /// 0xDE.
        reserved_ft: u8 = 0x7,
        /// crc32c(inode seed, block up to the tail).
        checksum: u32 = 0x8,
    }
}

impl DirTail {
    /// Parse the last 12 bytes of a block if they are a checksum tail.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("directory tail", b, Self::SIZE)?;
        let t = Self::read_fields(b);
        if t.reserved_zero1 != 0
            || t.rec_len != 12
            || t.reserved_zero2 != 0
            || t.reserved_ft != ftype::CSUM_TAIL
        {
            return Err(ferr("directory tail", "not a checksum tail"));
        }
        Ok(t)
    }
    /// A tail with the given checksum.
    pub fn new(checksum: u32) -> Self {
        DirTail {
            reserved_zero1: 0,
            rec_len: 12,
            reserved_zero2: 0,
            reserved_ft: ftype::CSUM_TAIL,
            checksum,
        }
    }
    /// Write into `b[..12]`.
    pub fn serialize(&self, b: &mut [u8]) {
        self.write_fields(b);
    }
    /// Checksum of a leaf block (`block` is the whole block; the tail is its last 12 bytes).
    pub fn compute_checksum(inode_seed: u32, block: &[u8]) -> u32 {
        crc32c_raw(
            inode_seed,
            block
                .get(..block.len().saturating_sub(Self::SIZE))
                .unwrap_or(&[]),
        )
    }
}

layout! {
    /// htree root information after the fake `.` and `..` entries (`struct dx_root_info`,
    /// at byte 0x18 of block 0; "Hash Tree Directories").
    pub struct DxRootInfo [8, get_le, put_le] {
        /// Zero.
        reserved_zero: u32 = 0x0,
        /// Hash version (0 legacy, 1 half_md4, 2 tea, +3 unsigned variants).
        hash_version: u8 = 0x4,
        /// 8.
        info_length: u8 = 0x5,
        /// Depth of the tree below the root (0 = leaves).
        indirect_levels: u8 = 0x6,
        /// Unused flags.
        unused_flags: u8 = 0x7,
    }
}

/// Byte offset of `dx_root_info` in an htree root block.
pub const DX_ROOT_INFO_OFFSET: usize = 0x18;

impl DxRootInfo {
    /// Parse from the 8 bytes at [`DX_ROOT_INFO_OFFSET`].
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("dx_root_info", b, Self::SIZE)?;
        let i = Self::read_fields(b);
        if i.info_length != 8 {
            return Err(ferr(
                "dx_root_info",
                format!("info_length {} (want 8)", i.info_length),
            ));
        }
        Ok(i)
    }
    /// Write into `b[..8]`.
    pub fn serialize(&self, b: &mut [u8]) {
        self.write_fields(b);
    }
}

layout! {
    /// `struct dx_countlimit` plus the first (hash-less) block pointer: the head of the entry
    /// array in an htree root or interior node.
    pub struct DxCountLimit [8, get_le, put_le] {
        /// Entries that fit in the block.
        limit: u16 = 0x0,
        /// Entries in use (including this header's block pointer).
        count: u16 = 0x2,
        /// Logical block of the first child (hashes below the next entry's).
        block: u32 = 0x4,
    }
}

impl DxCountLimit {
    /// Parse 8 bytes; `count <= limit`.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("dx_countlimit", b, Self::SIZE)?;
        let c = Self::read_fields(b);
        if c.count > c.limit {
            return Err(ferr(
                "dx_countlimit",
                format!("count {} exceeds limit {}", c.count, c.limit),
            ));
        }
        Ok(c)
    }
    /// Write into `b[..8]`.
    pub fn serialize(&self, b: &mut [u8]) {
        self.write_fields(b);
    }
}

layout! {
    /// One htree index entry (`struct dx_entry`).
    pub struct DxEntry [8, get_le, put_le] {
        /// Lowest hash of the child.
        hash: u32 = 0x0,
        /// Logical block of the child.
        block: u32 = 0x4,
    }
}

impl DxEntry {
    /// Parse 8 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("dx_entry", b, Self::SIZE)?;
        Ok(Self::read_fields(b))
    }
    /// Write into `b[..8]`.
    pub fn serialize(&self, b: &mut [u8]) {
        self.write_fields(b);
    }
}

layout! {
    /// Checksum tail of an htree root/node block (`struct dx_tail`), right after `limit` entries.
    pub struct DxTail [8, get_le, put_le] {
        /// Zero.
        reserved: u32 = 0x0,
        /// crc32c(inode seed, block up to the end of the `count` entries, then `reserved`,
        /// then four zero bytes).
        checksum: u32 = 0x4,
    }
}

impl DxTail {
    /// Parse 8 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("dx_tail", b, Self::SIZE)?;
        Ok(Self::read_fields(b))
    }
    /// Write into `b[..8]`.
    pub fn serialize(&self, b: &mut [u8]) {
        self.write_fields(b);
    }
    /// Checksum of an htree index block: `count_offset` is where the `dx_countlimit` sits,
    /// `count` its count (the kernel's `ext4_dx_csum`).
    pub fn compute_checksum(
        inode_seed: u32,
        block: &[u8],
        count_offset: usize,
        count: u16,
        reserved: u32,
    ) -> u32 {
        let size = count_offset + usize::from(count) * DxEntry::SIZE;
        let mut c = crc32c_raw(inode_seed, block.get(..size).unwrap_or(&[]));
        c = crc32c_raw(c, &reserved.to_le_bytes());
        crc32c_raw(c, &[0; 4])
    }
}

// ---------------------------------------------------------------------------------------------
// Extended attributes ("Dynamic Structures" > "Extended Attributes")
// ---------------------------------------------------------------------------------------------

/// Magic of xattr blocks and of the in-inode xattr area.
pub const XATTR_MAGIC: u32 = 0xEA02_0000;

layout! {
    /// Header of an external xattr block (`struct ext4_xattr_header`, 32 bytes).
    pub struct XattrHeader [32, get_le, put_le] {
        /// Magic, 0xEA020000.
        magic: u32 = 0x0,
        /// Reference count.
        refcount: u32 = 0x4,
        /// Blocks used (always 1).
        blocks: u32 = 0x8,
        /// Hash of all attributes.
        hash: u32 = 0xC,
        /// crc32c(seed, block number, block with this field zeroed).
        checksum: u32 = 0x10,
        /// Zero.
        reserved: [u32; 3] = 0x14,
    }
}

impl XattrHeader {
    /// Parse and check the magic.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("xattr block header", b, Self::SIZE)?;
        let h = Self::read_fields(b);
        if h.magic != XATTR_MAGIC {
            return Err(ferr(
                "xattr block header",
                format!("bad magic {:#010x}", h.magic),
            ));
        }
        Ok(h)
    }
    /// Write into `b[..32]`.
    pub fn serialize(&self, b: &mut [u8]) {
        self.write_fields(b);
    }
    /// Checksum of an xattr block at block number `blocknr`.
    pub fn compute_checksum(csum_seed: u32, blocknr: u64, block: &[u8]) -> u32 {
        let mut c = crc32c_raw(csum_seed, &blocknr.to_le_bytes());
        c = crc32c_raw(c, block.get(..0x10).unwrap_or(&[]));
        c = crc32c_raw(c, &[0; 4]);
        crc32c_raw(c, block.get(0x14..).unwrap_or(&[]))
    }
}

/// The in-inode xattr area header (`struct ext4_xattr_ibody_header`): just the magic, at
/// byte `128 + i_extra_isize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XattrIbodyHeader {
    /// Magic, 0xEA020000.
    pub magic: u32,
}

impl XattrIbodyHeader {
    /// Size in bytes.
    pub const SIZE: usize = 4;
    /// Parse and check the magic.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("in-inode xattr header", b, Self::SIZE)?;
        let magic = u32::get_le(b, 0);
        if magic != XATTR_MAGIC {
            return Err(ferr(
                "in-inode xattr header",
                format!("bad magic {magic:#010x}"),
            ));
        }
        Ok(XattrIbodyHeader { magic })
    }
    /// Write into `b[..4]`.
    pub fn serialize(&self, b: &mut [u8]) {
        self.magic.put_le(b, 0);
    }
}

/// An xattr entry (`struct ext4_xattr_entry`) and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XattrEntry {
    /// Name prefix index (1 user., 2 system.posix_acl_access, 3 ..._default, 4 trusted.,
    /// 6 security., 7 system., 8 system.richacl).
    pub name_index: u8,
    /// Offset of the value (from the first entry in-inode, from the block start in a block).
    pub value_offs: u16,
    /// Inode holding the value (ea_inode), or 0.
    pub value_inum: u32,
    /// Value size.
    pub value_size: u32,
    /// Hash of name and value.
    pub hash: u32,
    /// Name without its prefix.
    pub name: Vec<u8>,
}

impl XattrEntry {
    /// Fixed part size.
    pub const HEADER_SIZE: usize = 16;

    /// Parse the entry at the start of `b`. Returns `Ok(None)` at the end-of-list marker
    /// (4 zero bytes).
    pub fn parse(b: &[u8]) -> Result<Option<Self>, FormatError> {
        need("xattr entry", b, 4)?;
        if u32::get_le(b, 0) == 0 {
            return Ok(None);
        }
        need("xattr entry", b, Self::HEADER_SIZE)?;
        let name_len = usize::from(b[0]);
        let name = b
            .get(Self::HEADER_SIZE..Self::HEADER_SIZE + name_len)
            .ok_or_else(|| {
                ferr(
                    "xattr entry",
                    format!("name of {name_len} bytes runs past the area"),
                )
            })?
            .to_vec();
        Ok(Some(XattrEntry {
            name_index: b[1],
            value_offs: u16::get_le(b, 2),
            value_inum: u32::get_le(b, 4),
            value_size: u32::get_le(b, 8),
            hash: u32::get_le(b, 12),
            name,
        }))
    }

    /// On-disk size of the entry (16 + name, rounded up to 4).
    pub fn len(&self) -> usize {
        (Self::HEADER_SIZE + self.name.len() + 3) & !3
    }

    /// Whether the name is empty.
    pub fn is_empty(&self) -> bool {
        self.name.is_empty()
    }

    /// Write into `b[..self.len()]`.
    pub fn serialize(&self, b: &mut [u8]) {
        let n = self.len();
        b[..n].fill(0);
        b[0] = self.name.len() as u8;
        b[1] = self.name_index;
        self.value_offs.put_le(b, 2);
        self.value_inum.put_le(b, 4);
        self.value_size.put_le(b, 8);
        self.hash.put_le(b, 12);
        b[16..16 + self.name.len()].copy_from_slice(&self.name);
    }
}

/// The name prefix of an xattr name index ("Extended Attributes", attribute name indices).
pub fn xattr_prefix(index: u8) -> Option<&'static [u8]> {
    Some(match index {
        0 => b"",
        1 => b"user.",
        2 => b"system.posix_acl_access",
        3 => b"system.posix_acl_default",
        4 => b"trusted.",
        6 => b"security.",
        7 => b"system.",
        8 => b"system.richacl",
        _ => return None,
    })
}

/// Split a full xattr name into (index, suffix) using the longest matching prefix, as the
/// kernel does when storing it.
pub fn xattr_split_name(full: &[u8]) -> (u8, &[u8]) {
    for (idx, prefix) in [
        (2u8, &b"system.posix_acl_access"[..]),
        (3, b"system.posix_acl_default"),
        (8, b"system.richacl"),
    ] {
        if full == prefix {
            return (idx, b"");
        }
    }
    for (idx, prefix) in [
        (1u8, &b"user."[..]),
        (4, b"trusted."),
        (6, b"security."),
        (7, b"system."),
    ] {
        if let Some(rest) = full.strip_prefix(prefix) {
            return (idx, rest);
        }
    }
    (0, full)
}

/// Convert an ext4 on-disk POSIX ACL (`ext4_acl_header` version 1 with short entries for the
/// owner/group/mask/other tags) into the VFS xattr format (`posix_acl_xattr_header` version 2,
/// 8-byte entries) that `getfattr`, tar and the directory reader use.
pub fn acl_disk_to_xattr(disk: &[u8]) -> Result<Vec<u8>, FormatError> {
    need("posix acl", disk, 4)?;
    if u32::get_le(disk, 0) != 1 {
        return Err(ferr(
            "posix acl",
            format!("version {} (want 1)", u32::get_le(disk, 0)),
        ));
    }
    let mut out = 2u32.to_le_bytes().to_vec();
    let mut pos = 4usize;
    while pos < disk.len() {
        let tag = u16::get_le(disk, pos);
        let perm = u16::get_le(disk, pos + 2);
        need("posix acl", disk, pos + 4)?;
        let id = match tag {
            0x02 | 0x08 => {
                need("posix acl", disk, pos + 8)?;
                let id = u32::get_le(disk, pos + 4);
                pos += 8;
                id
            }
            0x01 | 0x04 | 0x10 | 0x20 => {
                pos += 4;
                u32::MAX
            }
            t => return Err(ferr("posix acl", format!("unknown tag {t:#x}"))),
        };
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Ok(out)
}

/// Convert a VFS POSIX ACL xattr value (version 2) to the ext4 on-disk format (version 1).
pub fn acl_xattr_to_disk(x: &[u8]) -> Result<Vec<u8>, FormatError> {
    need("posix acl xattr", x, 4)?;
    if u32::get_le(x, 0) != 2 || (x.len() - 4) % 8 != 0 {
        return Err(ferr("posix acl xattr", "bad version or length"));
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for e in x[4..].chunks_exact(8) {
        let tag = u16::get_le(e, 0);
        out.extend_from_slice(&e[..4]);
        match tag {
            0x02 | 0x08 => out.extend_from_slice(&e[4..8]),
            0x01 | 0x04 | 0x10 | 0x20 => {}
            t => return Err(ferr("posix acl xattr", format!("unknown tag {t:#x}"))),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Journal (jbd2) superblock ("Journal (jbd2)" > "Super Block"); big-endian
// ---------------------------------------------------------------------------------------------

/// jbd2 block header magic.
pub const JBD2_MAGIC: u32 = 0xC03B_3998;
/// jbd2 block type: superblock v1.
pub const JBD2_SUPERBLOCK_V1: u32 = 3;
/// jbd2 block type: superblock v2.
pub const JBD2_SUPERBLOCK_V2: u32 = 4;

layout! {
    /// The jbd2 journal superblock (first block of the journal; big-endian). Only the first of
    /// the 48 `s_users` slots is kept.
    pub struct JournalSuperblock [0x110, get_be, put_be] {
        /// Magic, 0xC03B3998.
        magic: u32 = 0x0,
        /// Block type (3 = v1, 4 = v2 superblock).
        blocktype: u32 = 0x4,
        /// Transaction id of the header (unused for superblocks).
        header_sequence: u32 = 0x8,
        /// Journal block size.
        blocksize: u32 = 0xC,
        /// Total journal blocks.
        maxlen: u32 = 0x10,
        /// First block of log information.
        first: u32 = 0x14,
        /// First commit id expected in the log.
        sequence: u32 = 0x18,
        /// Block of the start of the log (0 = clean, nothing to replay).
        start: u32 = 0x1C,
        /// Error value (signed).
        errno: u32 = 0x20,
        /// Compatible features.
        feature_compat: u32 = 0x24,
        /// Incompatible features.
        feature_incompat: u32 = 0x28,
        /// Read-only compatible features.
        feature_ro_compat: u32 = 0x2C,
        /// Journal UUID.
        uuid: [u8; 16] = 0x30,
        /// Filesystems sharing the journal.
        nr_users: u32 = 0x40,
        /// Location of the dynamic superblock copy.
        dynsuper: u32 = 0x44,
        /// Limit of journal blocks per transaction.
        max_transaction: u32 = 0x48,
        /// Limit of data blocks per transaction.
        max_trans_data: u32 = 0x4C,
        /// Checksum type (4 = crc32c).
        checksum_type: u8 = 0x50,
        /// Fast-commit blocks.
        num_fc_blks: u32 = 0x54,
        /// Head of the log (informational).
        head: u32 = 0x58,
        /// Checksum of the journal superblock.
        checksum: u32 = 0xFC,
        /// First user (filesystem UUID) sharing the journal.
        users0: [u8; 16] = 0x100,
    }
}

impl JournalSuperblock {
    /// Parse and check magic and block type.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        need("journal superblock", b, Self::SIZE)?;
        let j = Self::read_fields(b);
        if j.magic != JBD2_MAGIC {
            return Err(ferr(
                "journal superblock",
                format!("bad magic {:#010x}", j.magic),
            ));
        }
        if j.blocktype != JBD2_SUPERBLOCK_V1 && j.blocktype != JBD2_SUPERBLOCK_V2 {
            return Err(ferr(
                "journal superblock",
                format!("block type {} is not a superblock", j.blocktype),
            ));
        }
        Ok(j)
    }
    /// Write into `b[..0x110]`; the other `s_users` slots and the padding are left to the caller.
    pub fn serialize(&self, b: &mut [u8]) {
        b[..Self::SIZE].fill(0);
        self.write_fields(b);
    }
}

// ---------------------------------------------------------------------------------------------
// Checksum helpers ("Checksums")
// ---------------------------------------------------------------------------------------------

/// crc32c as ext4 uses it: the raw (not pre/post-inverted) CRC continued from `seed`, like the
/// kernel's `crc32c(seed, data)` / e2fsprogs' `ext2fs_crc32c_le`.
pub fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// crc16 (polynomial 0x8005 reflected, "ANSI") as used by uninit_bg group descriptor checksums.
pub fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_roundtrip_and_epoch_bits() {
        for (s, n) in [
            (0i64, 0u32),
            (-1, 5),
            (1_700_000_000, 123_456_789),
            (i64::from(i32::MAX) + 10, 1),
            (-(1 << 31), 0),
        ] {
            let (a, b) = encode_time(s, n);
            assert_eq!(decode_time(a, Some(b)), (s, n), "time {s}.{n}");
        }
        assert_eq!(decode_time(0xFFFF_FFFF, None), (-1, 0));
    }

    #[test]
    fn device_encodings() {
        let mut w = [0u32; 15];
        let (a, b) = encode_device(8, 1);
        w[0] = a;
        w[1] = b;
        assert_eq!(decode_device(&w), (8, 1));
        let (a, b) = encode_device(259, 70000);
        w[0] = a;
        w[1] = b;
        assert_eq!(a, 0);
        assert_eq!(decode_device(&w), (259, 70000));
    }

    #[test]
    fn rec_len_64k() {
        assert_eq!(
            rec_len_from_disk(rec_len_to_disk(65536, 65536), 65536),
            65536
        );
        assert_eq!(
            rec_len_from_disk(rec_len_to_disk(65532, 65536), 65536),
            65532
        );
        assert_eq!(rec_len_from_disk(12, 4096), 12);
    }

    #[test]
    fn dirent_roundtrip_and_bounds() {
        let e = DirEntry {
            inode: 12,
            rec_len: 20,
            file_type: ftype::REG,
            name: b"hello".to_vec(),
        };
        let mut b = [0xAAu8; 20];
        e.serialize(&mut b, 4096, true);
        assert_eq!(DirEntry::parse(&b, 4096, true).unwrap(), e);
        // rec_len beyond the buffer, and a name longer than the record, are refused.
        assert!(DirEntry::parse(&b[..16], 4096, true).is_err());
        b[6] = 200;
        assert!(DirEntry::parse(&b, 4096, true).is_err());
    }

    #[test]
    fn acl_conversion_roundtrip() {
        // user::rw-, user:1000:r--, group::r--, mask::r--, other::---
        let mut x = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            x.extend_from_slice(&tag.to_le_bytes());
            x.extend_from_slice(&perm.to_le_bytes());
            x.extend_from_slice(&id.to_le_bytes());
        }
        let d = acl_xattr_to_disk(&x).unwrap();
        assert_eq!(d.len(), 4 + 4 + 8 + 4 + 4 + 4);
        assert_eq!(acl_disk_to_xattr(&d).unwrap(), x);
        assert!(acl_disk_to_xattr(&d[..d.len() - 2]).is_err());
    }

    #[test]
    fn crc32c_raw_matches_standard() {
        // Standard crc32c("123456789") = 0xE3069283 = !raw(!0, data).
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
        assert_eq!(
            crc32c_raw(crc32c_raw(!0, b"1234"), b"56789"),
            crc32c_raw(!0, b"123456789")
        );
    }

    #[test]
    fn short_inputs_are_errors() {
        assert!(Superblock::parse(&[0u8; 100]).is_err());
        assert!(Inode::parse(&[0u8; 100]).is_err());
        assert!(ExtentHeader::parse(&[0x0a, 0xf3, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(XattrEntry::parse(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(JournalSuperblock::parse(&[0u8; 8]).is_err());
    }

    #[test]
    fn inode_extra_fields_respect_extra_isize() {
        let mut raw = vec![0u8; 256];
        raw[0x80] = 8; // extra_isize covers up to 0x88: ctime_extra only
        raw[0x84..0x88].copy_from_slice(&7u32.to_le_bytes());
        raw[0x88..0x8C].copy_from_slice(&9u32.to_le_bytes());
        let i = Inode::parse(&raw).unwrap();
        assert_eq!(i.ctime_extra, 7);
        assert_eq!(i.mtime_extra, 0);
        raw[0x80] = 250;
        assert!(Inode::parse(&raw).is_err());
    }
}
