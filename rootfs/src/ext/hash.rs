//! Hash functions of the ext2/3/4 on-disk format.
//!
//! * Directory index (htree) name hashes: legacy (`dx_hack_hash`), half-MD4 and TEA, each in the
//!   signed and unsigned-`char` flavours (ext4 disk layout, "Hash Tree Directories"; the
//!   superblock's `s_def_hash_version` and `s_flags` signed/unsigned bits choose the flavour).
//! * Extended attribute entry and block hashes (ext4 disk layout, "Extended Attributes").
//!
//! Written from the published algorithm descriptions; checked against e2fsprogs in the tests
//! (e2fsck verifies every hash and checksum of the images the writer makes).

/// Hash versions as stored in `s_def_hash_version` / `dx_root_info.hash_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DxHash {
    /// 0: the legacy hash.
    Legacy,
    /// 1: half-MD4 (the default of every mke2fs since 1.33).
    HalfMd4,
    /// 2: TEA.
    Tea,
}

impl DxHash {
    /// The on-disk version number (the signed flavour; the kernel adds 3 for unsigned).
    pub fn version(self) -> u8 {
        match self {
            DxHash::Legacy => 0,
            DxHash::HalfMd4 => 1,
            DxHash::Tea => 2,
        }
    }

    /// The hash for an on-disk version number, 0-5 (3-5 are the unsigned flavours).
    pub fn from_version(v: u8) -> Option<(DxHash, bool)> {
        Some(match v {
            0 => (DxHash::Legacy, false),
            1 => (DxHash::HalfMd4, false),
            2 => (DxHash::Tea, false),
            3 => (DxHash::Legacy, true),
            4 => (DxHash::HalfMd4, true),
            5 => (DxHash::Tea, true),
            _ => return None,
        })
    }
}

/// The largest major hash a name may have (`EXT4_HTREE_EOF_32BIT << 1` is reserved).
const HTREE_EOF: u32 = 0x7fff_ffff;

/// Directory-name hash `(major, minor)` of `name` with `seed` (`s_hash_seed`, four
/// little-endian words; all-zero means the default MD4 start values). `unsigned` selects the
/// unsigned-`char` flavour. The major hash always has its lowest bit clear.
pub fn dx_hash(kind: DxHash, unsigned: bool, name: &[u8], seed: &[u32; 4]) -> (u32, u32) {
    let mut buf: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    if seed.iter().any(|&w| w != 0) {
        buf = *seed;
    }
    let (hash, minor) = match kind {
        DxHash::Legacy => (legacy(name, unsigned), 0),
        DxHash::HalfMd4 => {
            let mut rest = name;
            let mut input = [0u32; 8];
            // An empty name still runs no round (the loop runs while len > 0).
            while !rest.is_empty() {
                str2hashbuf(rest, &mut input, unsigned);
                half_md4_transform(&mut buf, &input);
                rest = rest.get(32..).unwrap_or(&[]);
            }
            (buf[1], buf[2])
        }
        DxHash::Tea => {
            let mut rest = name;
            let mut input = [0u32; 4];
            while !rest.is_empty() {
                str2hashbuf(rest, &mut input, unsigned);
                tea_transform(&mut buf, &input);
                rest = rest.get(16..).unwrap_or(&[]);
            }
            (buf[0], buf[1])
        }
    };
    let mut hash = hash & !1;
    if hash == HTREE_EOF << 1 {
        hash = (HTREE_EOF - 1) << 1;
    }
    (hash, minor)
}

fn char_value(b: u8, unsigned: bool) -> u32 {
    if unsigned {
        u32::from(b)
    } else {
        i32::from(b as i8) as u32
    }
}

fn legacy(name: &[u8], unsigned: bool) -> u32 {
    let (mut hash0, mut hash1): (u32, u32) = (0x12a3_fe2d, 0x37ab_e8f9);
    for &b in name {
        let c = char_value(b, unsigned);
        let mut hash = hash1.wrapping_add(hash0 ^ c.wrapping_mul(7_152_373));
        if hash & 0x8000_0000 != 0 {
            hash = hash.wrapping_sub(0x7fff_ffff);
        }
        hash1 = hash0;
        hash0 = hash;
    }
    hash0 << 1
}

/// Pack up to `out.len() * 4` bytes of `msg` into words, padded with the length pattern.
fn str2hashbuf(msg: &[u8], out: &mut [u32], unsigned: bool) {
    let len = msg.len();
    let mut pad = (len as u32) | ((len as u32) << 8);
    pad |= pad << 16;
    let mut val = pad;
    let take = len.min(out.len() * 4);
    let mut idx = 0usize;
    for (i, &b) in msg.iter().take(take).enumerate() {
        val = char_value(b, unsigned).wrapping_add(val << 8);
        if i % 4 == 3 {
            if let Some(slot) = out.get_mut(idx) {
                *slot = val;
            }
            idx += 1;
            val = pad;
        }
    }
    if idx < out.len() {
        out[idx] = val;
        idx += 1;
    }
    while idx < out.len() {
        out[idx] = pad;
        idx += 1;
    }
}

fn half_md4_transform(buf: &mut [u32; 4], input: &[u32; 8]) {
    const K2: u32 = 0o13240474631;
    const K3: u32 = 0o15666365641;
    let f = |x: u32, y: u32, z: u32| z ^ (x & (y ^ z));
    let g = |x: u32, y: u32, z: u32| (x & y).wrapping_add((x ^ y) & z);
    let h = |x: u32, y: u32, z: u32| x ^ y ^ z;
    let (mut a, mut b, mut c, mut d) = (buf[0], buf[1], buf[2], buf[3]);
    macro_rules! round {
        ($f:expr, $a:ident, $b:ident, $c:ident, $d:ident, $x:expr, $s:expr) => {
            $a = $a
                .wrapping_add($f($b, $c, $d))
                .wrapping_add($x)
                .rotate_left($s);
        };
    }
    let i = input;
    round!(f, a, b, c, d, i[0], 3);
    round!(f, d, a, b, c, i[1], 7);
    round!(f, c, d, a, b, i[2], 11);
    round!(f, b, c, d, a, i[3], 19);
    round!(f, a, b, c, d, i[4], 3);
    round!(f, d, a, b, c, i[5], 7);
    round!(f, c, d, a, b, i[6], 11);
    round!(f, b, c, d, a, i[7], 19);

    round!(g, a, b, c, d, i[1].wrapping_add(K2), 3);
    round!(g, d, a, b, c, i[3].wrapping_add(K2), 5);
    round!(g, c, d, a, b, i[5].wrapping_add(K2), 9);
    round!(g, b, c, d, a, i[7].wrapping_add(K2), 13);
    round!(g, a, b, c, d, i[0].wrapping_add(K2), 3);
    round!(g, d, a, b, c, i[2].wrapping_add(K2), 5);
    round!(g, c, d, a, b, i[4].wrapping_add(K2), 9);
    round!(g, b, c, d, a, i[6].wrapping_add(K2), 13);

    round!(h, a, b, c, d, i[3].wrapping_add(K3), 3);
    round!(h, d, a, b, c, i[7].wrapping_add(K3), 9);
    round!(h, c, d, a, b, i[2].wrapping_add(K3), 11);
    round!(h, b, c, d, a, i[6].wrapping_add(K3), 15);
    round!(h, a, b, c, d, i[1].wrapping_add(K3), 3);
    round!(h, d, a, b, c, i[5].wrapping_add(K3), 9);
    round!(h, c, d, a, b, i[0].wrapping_add(K3), 11);
    round!(h, b, c, d, a, i[4].wrapping_add(K3), 15);

    buf[0] = buf[0].wrapping_add(a);
    buf[1] = buf[1].wrapping_add(b);
    buf[2] = buf[2].wrapping_add(c);
    buf[3] = buf[3].wrapping_add(d);
}

fn tea_transform(buf: &mut [u32; 4], input: &[u32; 4]) {
    const DELTA: u32 = 0x9E37_79B9;
    let mut sum: u32 = 0;
    let (mut b0, mut b1) = (buf[0], buf[1]);
    let (a, b, c, d) = (input[0], input[1], input[2], input[3]);
    for _ in 0..16 {
        sum = sum.wrapping_add(DELTA);
        b0 = b0.wrapping_add(
            ((b1 << 4).wrapping_add(a)) ^ (b1.wrapping_add(sum)) ^ ((b1 >> 5).wrapping_add(b)),
        );
        b1 = b1.wrapping_add(
            ((b0 << 4).wrapping_add(c)) ^ (b0.wrapping_add(sum)) ^ ((b0 >> 5).wrapping_add(d)),
        );
    }
    buf[0] = buf[0].wrapping_add(b0);
    buf[1] = buf[1].wrapping_add(b1);
}

/// Hash of one extended-attribute entry (`e_hash`): the name, then (for values stored in
/// the same block or inode, not in an EA inode) the value as little-endian 32-bit words,
/// zero-padded to a multiple of 4. Name bytes are taken as signed `char`, as e2fsprogs and the
/// kernel historically did on x86 (e2fsck accepts both flavours).
pub fn xattr_entry_hash(name: &[u8], value: &[u8]) -> u32 {
    const NAME_SHIFT: u32 = 5;
    const VALUE_SHIFT: u32 = 16;
    let mut hash: u32 = 0;
    for &b in name {
        hash = (hash << NAME_SHIFT) ^ (hash >> (32 - NAME_SHIFT)) ^ (i32::from(b as i8) as u32);
    }
    for chunk in value.chunks(4) {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        hash = (hash << VALUE_SHIFT) ^ (hash >> (32 - VALUE_SHIFT)) ^ u32::from_le_bytes(w);
    }
    hash
}

/// Hash of an xattr block (`h_hash`) from its entries' hashes in order; 0 if any entry hash is 0.
pub fn xattr_block_hash(entry_hashes: impl IntoIterator<Item = u32>) -> u32 {
    const BLOCK_SHIFT: u32 = 16;
    let mut hash: u32 = 0;
    for e in entry_hashes {
        if e == 0 {
            return 0;
        }
        hash = (hash << BLOCK_SHIFT) ^ (hash >> (32 - BLOCK_SHIFT)) ^ e;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_low_bit_clear_and_deterministic() {
        let seed = [1, 2, 3, 4];
        for kind in [DxHash::Legacy, DxHash::HalfMd4, DxHash::Tea] {
            let (a, _) = dx_hash(
                kind,
                false,
                b"hello-world-a-long-name-over-32-bytes-long",
                &seed,
            );
            let (b, _) = dx_hash(
                kind,
                false,
                b"hello-world-a-long-name-over-32-bytes-long",
                &seed,
            );
            assert_eq!(a, b);
            assert_eq!(a & 1, 0);
            let (c, _) = dx_hash(
                kind,
                false,
                b"hello-world-a-long-name-over-32-bytes-lonG",
                &seed,
            );
            assert_ne!(a, c);
        }
    }

    #[test]
    fn signedness_matters_only_for_high_bytes() {
        let seed = [0; 4];
        assert_eq!(
            dx_hash(DxHash::HalfMd4, false, b"abc", &seed),
            dx_hash(DxHash::HalfMd4, true, b"abc", &seed)
        );
        assert_ne!(
            dx_hash(DxHash::HalfMd4, false, b"\xe9t\xe9", &seed),
            dx_hash(DxHash::HalfMd4, true, b"\xe9t\xe9", &seed)
        );
    }
}
