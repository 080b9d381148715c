//! The `security.capability` extended attribute (file capabilities): decoding, `cap_to_text`
//! parsing and encoding. Shared by the builder (rpm file capabilities -> xattr) and the vetter
//! (decoding, offline `rpm -V`).
//!
//! Layout (Linux `include/uapi/linux/capability.h`, `struct vfs_cap_data` / `vfs_ns_cap_data`),
//! all fields little-endian u32:
//! * `magic_etc`: revision in the top byte (`0x01` v1, `0x02` v2, `0x03` v3), bit 0 = effective flag;
//! * v1: one (permitted, inheritable) pair (12 bytes in total);
//! * v2: two pairs, low then high 32 bits (20 bytes);
//! * v3: as v2 plus `rootid`, the uid of the user namespace root it applies to (24 bytes).

use serde::Serialize;

/// Names of capability bits 0..=40 (Linux 5.9+), as `capsh` prints them.
pub const CAP_NAMES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

/// Decoded file capabilities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileCaps {
    /// Header revision: 1, 2 or 3.
    pub version: u8,
    /// Whether the effective flag is set (permitted caps become effective at exec).
    pub effective: bool,
    /// Permitted set as a 64-bit mask.
    pub permitted: u64,
    /// Inheritable set as a 64-bit mask.
    pub inheritable: u64,
    /// v3 only: the namespace root uid the capabilities apply to.
    pub rootid: Option<u32>,
    /// Names of the permitted capabilities (`cap_N` for unknown bits).
    pub permitted_names: Vec<String>,
    /// Names of the inheritable capabilities.
    pub inheritable_names: Vec<String>,
    /// The `getcap`-style text, e.g. `cap_net_bind_service,cap_net_raw=ep`.
    pub text: String,
}

/// Why a `security.capability` value could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapsError {
    /// Shorter than its revision requires.
    #[error("security.capability: {len} bytes, revision {version} needs {need}")]
    Length {
        /// Bytes present.
        len: usize,
        /// Revision found.
        version: u8,
        /// Bytes needed.
        need: usize,
    },
    /// Unknown revision byte.
    #[error("security.capability: unknown revision 0x{0:02x}")]
    Revision(u8),
    /// Fewer than 4 bytes.
    #[error("security.capability: {0} bytes, too short for a header")]
    Short(usize),
}

fn le32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// Names of the bits set in `mask`.
pub fn names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| {
            CAP_NAMES
                .get(b as usize)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("cap_{b}"))
        })
        .collect()
}

/// Decode a `security.capability` value.
pub fn decode(value: &[u8]) -> Result<FileCaps, CapsError> {
    if value.len() < 4 {
        return Err(CapsError::Short(value.len()));
    }
    let magic = le32(value, 0);
    let version = (magic >> 24) as u8;
    let need = match version {
        1 => 12,
        2 => 20,
        3 => 24,
        v => return Err(CapsError::Revision(v)),
    };
    if value.len() < need {
        return Err(CapsError::Length {
            len: value.len(),
            version,
            need,
        });
    }
    let effective = magic & 1 != 0;
    let mut permitted = u64::from(le32(value, 4));
    let mut inheritable = u64::from(le32(value, 8));
    if version >= 2 {
        permitted |= u64::from(le32(value, 12)) << 32;
        inheritable |= u64::from(le32(value, 16)) << 32;
    }
    let rootid = (version == 3).then(|| le32(value, 20));
    let permitted_names = names(permitted);
    let inheritable_names = names(inheritable);
    Ok(FileCaps {
        version,
        effective,
        permitted,
        inheritable,
        rootid,
        text: text(permitted, inheritable, effective),
        permitted_names,
        inheritable_names,
    })
}

/// `getcap`-like text: groups of capabilities with their flags (`e`, `i`, `p`).
fn text(permitted: u64, inheritable: u64, effective: bool) -> String {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for b in 0..64u32 {
        let bit = 1u64 << b;
        let mut flags = String::new();
        if effective && permitted & bit != 0 {
            flags.push('e');
        }
        if inheritable & bit != 0 {
            flags.push('i');
        }
        if permitted & bit != 0 {
            flags.push('p');
        }
        if flags.is_empty() {
            continue;
        }
        let name = CAP_NAMES
            .get(b as usize)
            .map(|s| s.to_string())
            .unwrap_or_else(|| format!("cap_{b}"));
        match groups.iter_mut().find(|(f, _)| *f == flags) {
            Some((_, v)) => v.push(name),
            None => groups.push((flags, vec![name])),
        }
    }
    groups
        .iter()
        .map(|(f, v)| format!("{}={f}", v.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Capability sets parsed from `cap_to_text` form: one mask per flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    /// Permitted.
    pub permitted: u64,
    /// Inheritable.
    pub inheritable: u64,
    /// Effective (on disk a single bit: set when any capability is effective).
    pub effective: u64,
}

/// Why capability text could not be parsed (strict mode).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapTextError {
    /// A clause without `=`, `+` or `-`.
    #[error("capability clause '{0}' has no operator")]
    NoOperator(String),
    /// A name that is not a capability.
    #[error("unknown capability '{0}'")]
    UnknownName(String),
    /// A flag other than `e`, `i`, `p`.
    #[error("bad capability flag '{flag}' in '{clause}'")]
    BadFlag {
        /// The flag.
        flag: char,
        /// The clause it is in.
        clause: String,
    },
}

fn parse_text_impl(text: &str, strict: bool) -> Result<CapSets, CapTextError> {
    let all = (1u64 << CAP_NAMES.len()) - 1;
    let mut s = CapSets::default();
    for clause in text.split_whitespace() {
        let Some(pos) = clause.find(['=', '+', '-']) else {
            if strict {
                return Err(CapTextError::NoOperator(clause.to_string()));
            }
            continue;
        };
        let (names, ops) = clause.split_at(pos);
        let mut mask = if names.is_empty() { all } else { 0 };
        for n in names.split(',').filter(|n| !n.is_empty()) {
            if n.eq_ignore_ascii_case("all") {
                mask |= all;
            } else if let Some(b) = CAP_NAMES.iter().position(|c| c.eq_ignore_ascii_case(n)) {
                mask |= 1u64 << b;
            } else if strict {
                return Err(CapTextError::UnknownName(n.to_ascii_lowercase()));
            }
        }
        // Operators as libcap's cap_from_text: "=" clears the named caps from every set and
        // then adds the listed flags; "+" adds, "-" removes; they may be chained ("+e-i").
        let mut op = '+';
        for c in ops.chars() {
            match c {
                '=' => {
                    op = '+';
                    s.permitted &= !mask;
                    s.inheritable &= !mask;
                    s.effective &= !mask;
                }
                '+' | '-' => op = c,
                'p' | 'i' | 'e' => {
                    let target = match c {
                        'p' => &mut s.permitted,
                        'i' => &mut s.inheritable,
                        _ => &mut s.effective,
                    };
                    if op == '-' {
                        *target &= !mask;
                    } else {
                        *target |= mask;
                    }
                }
                flag if strict => {
                    return Err(CapTextError::BadFlag {
                        flag,
                        clause: clause.to_string(),
                    })
                }
                _ => {}
            }
        }
    }
    Ok(s)
}

/// Parse `cap_to_text` output as rpm's FILECAPS carries it (`cap_net_raw=ep`,
/// `cap_a,cap_b+ep`, `= cap_x+ep`); unknown names or flags are errors.
pub fn parse_text(text: &str) -> Result<CapSets, CapTextError> {
    parse_text_impl(text, true)
}

/// Like [`parse_text`] but skips what it does not understand (for comparing against what an
/// image carries, where a newer capability name must not abort the whole comparison).
pub fn parse_text_lenient(text: &str) -> CapSets {
    parse_text_impl(text, false).unwrap_or_default()
}

/// Encode sets as a `security.capability` value, revision 2 (20 bytes, little endian) as
/// `setcap` writes it: the effective bit is set when any capability is effective.
pub fn encode_v2(sets: &CapSets) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    let magic: u32 = 0x0200_0000 | u32::from(sets.effective != 0);
    v.extend_from_slice(&magic.to_le_bytes());
    v.extend_from_slice(&(sets.permitted as u32).to_le_bytes());
    v.extend_from_slice(&(sets.inheritable as u32).to_le_bytes());
    v.extend_from_slice(&((sets.permitted >> 32) as u32).to_le_bytes());
    v.extend_from_slice(&((sets.inheritable >> 32) as u32).to_le_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parses_and_encodes_like_setcap() {
        let raw = 1u64 << 13;
        let s = parse_text("cap_net_raw=ep").unwrap();
        assert_eq!((s.permitted, s.inheritable, s.effective), (raw, 0, raw));
        assert_eq!(parse_text("= cap_net_raw+ep").unwrap(), s);
        let admin = 1u64 << 12;
        let s2 = parse_text("cap_net_admin,cap_net_raw+p").unwrap();
        assert_eq!((s2.permitted, s2.effective), (admin | raw, 0));
        assert_eq!(parse_text("cap_chown=i").unwrap().inheritable, 1);
        assert!(matches!(
            parse_text("cap_bogus=ep"),
            Err(CapTextError::UnknownName(_))
        ));
        assert!(matches!(
            parse_text("cap_chown"),
            Err(CapTextError::NoOperator(_))
        ));
        assert_eq!(parse_text_lenient("cap_bogus=ep cap_net_raw=ep"), s);
        let x = encode_v2(&s);
        let d = decode(&x).unwrap();
        assert_eq!(
            (d.version, d.effective, d.permitted, d.text.as_str()),
            (2, true, raw, "cap_net_raw=ep")
        );
    }

    fn enc(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn v2_ping() {
        // What `setcap cap_net_raw+ep` writes: v2, effective, permitted bit 13.
        let v = enc(&[0x0200_0001, 1 << 13, 0, 0, 0]);
        let c = decode(&v).unwrap();
        assert_eq!(c.version, 2);
        assert!(c.effective);
        assert_eq!(c.permitted_names, vec!["cap_net_raw"]);
        assert!(c.inheritable_names.is_empty());
        assert_eq!(c.rootid, None);
        assert_eq!(c.text, "cap_net_raw=ep");
    }

    #[test]
    fn v2_high_word_and_inheritable() {
        // cap_bpf (39) and cap_perfmon (38) live in the high word; cap_chown inheritable only.
        let v = enc(&[0x0200_0000, 0, 1, (1 << 6) | (1 << 7), 0]);
        let c = decode(&v).unwrap();
        assert!(!c.effective);
        assert_eq!(c.permitted_names, vec!["cap_perfmon", "cap_bpf"]);
        assert_eq!(c.inheritable_names, vec!["cap_chown"]);
        assert_eq!(c.text, "cap_chown=i cap_perfmon,cap_bpf=p");
    }

    #[test]
    fn v3_rootid() {
        let v = enc(&[0x0300_0001, (1 << 10) | (1 << 12), 0, 0, 0, 100000]);
        let c = decode(&v).unwrap();
        assert_eq!(c.version, 3);
        assert_eq!(c.rootid, Some(100000));
        assert_eq!(
            c.permitted_names,
            vec!["cap_net_bind_service", "cap_net_admin"]
        );
        assert_eq!(c.text, "cap_net_bind_service,cap_net_admin=ep");
    }

    #[test]
    fn v1_and_errors() {
        let c = decode(&enc(&[0x0100_0000, 1, 1])).unwrap();
        assert_eq!(c.version, 1);
        assert_eq!(c.text, "cap_chown=ip");
        assert_eq!(
            decode(&enc(&[0x0300_0001, 1, 0, 0, 0])),
            Err(CapsError::Length {
                len: 20,
                version: 3,
                need: 24
            })
        );
        assert_eq!(decode(&[1, 2]), Err(CapsError::Short(2)));
        assert_eq!(
            decode(&enc(&[0x0700_0000, 0, 0])),
            Err(CapsError::Revision(7))
        );
    }
}
