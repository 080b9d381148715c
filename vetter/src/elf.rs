//! ELF hardening report (goblin): machine, PIE, RELRO, NX stack, canary, FORTIFY, RPATH/RUNPATH,
//! interpreter, needed libraries. Definitions follow the ELF gABI and the GNU extensions
//! (`PT_GNU_STACK`, `PT_GNU_RELRO`, `DT_FLAGS`/`DF_BIND_NOW`, `DT_FLAGS_1`/`DF_1_NOW`/`DF_1_PIE`),
//! as `checksec` interprets them.

use goblin::elf::dynamic::{DF_1_NOW, DF_1_PIE, DF_BIND_NOW, DT_BIND_NOW, DT_FLAGS, DT_FLAGS_1};
use goblin::elf::header::{ET_CORE, ET_DYN, ET_EXEC, ET_REL};
use goblin::elf::program_header::{PF_X, PT_GNU_RELRO, PT_GNU_STACK, PT_INTERP};
use rootfs::Tree;
use serde::Serialize;

/// Largest ELF file the vetter will parse (bigger ones get an error entry).
pub const MAX_ELF_BYTES: u64 = 512 << 20;

/// RELRO level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Relro {
    /// No `PT_GNU_RELRO`.
    None,
    /// `PT_GNU_RELRO` without immediate binding.
    Partial,
    /// `PT_GNU_RELRO` and immediate binding (`DF_BIND_NOW`, `DF_1_NOW` or `DT_BIND_NOW`).
    Full,
}

/// Position independence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pie {
    /// `ET_EXEC`: fixed load address.
    No,
    /// `ET_DYN` executable (`DF_1_PIE` or a `PT_INTERP`).
    Yes,
    /// `ET_DYN` shared object (no interpreter, no `DF_1_PIE`).
    Dso,
    /// Relocatable object or core file.
    NotApplicable,
}

/// One RPATH/RUNPATH entry and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SearchPath {
    /// The entry as written.
    pub entry: String,
    /// Relative (does not start with `/` or `$ORIGIN`): resolved against the process's cwd.
    pub relative: bool,
    /// Empty entry (means the current directory).
    pub empty: bool,
    /// The directory exists in the image and is world-writable.
    pub world_writable: bool,
}

/// Hardening facts about one ELF file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ElfInfo {
    /// `e_machine` as a name (`x86_64`, `i386`, `aarch64`, ...).
    pub machine: String,
    /// 64-bit class.
    pub is_64: bool,
    /// `e_type`: `EXEC`, `DYN`, `REL`, `CORE` or a number.
    pub e_type: String,
    /// Position independence.
    pub pie: Pie,
    /// RELRO level.
    pub relro: Relro,
    /// Non-executable stack: `PT_GNU_STACK` present without `PF_X`.
    pub nx: bool,
    /// Imports or defines `__stack_chk_fail` / `__stack_chk_guard`.
    pub canary: bool,
    /// Uses FORTIFY_SOURCE: the `__*_chk` functions it references.
    pub fortified: Vec<String>,
    /// `DT_RPATH` entries.
    pub rpath: Vec<SearchPath>,
    /// `DT_RUNPATH` entries.
    pub runpath: Vec<SearchPath>,
    /// `PT_INTERP`.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`.
    pub needed: Vec<String>,
}

/// Why a file could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Not an ELF file (no `\x7fELF` magic).
    #[error("not an ELF file")]
    NotElf,
    /// goblin refused it.
    #[error("malformed ELF: {0}")]
    Malformed(String),
}

/// Whether `bytes` starts with the ELF magic.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// The `e_machine` name of an ELF header (first 64 bytes suffice).
pub fn machine_of(bytes: &[u8]) -> Option<String> {
    if !is_elf(bytes) || bytes.len() < 20 {
        return None;
    }
    let little = bytes.get(5) == Some(&1);
    let m = match (bytes.get(18), bytes.get(19)) {
        (Some(&a), Some(&b)) => {
            if little {
                u16::from_le_bytes([a, b])
            } else {
                u16::from_be_bytes([a, b])
            }
        }
        _ => return None,
    };
    Some(machine_name(m, bytes.get(4) == Some(&2)))
}

/// A conventional architecture name for `e_machine` (as `uname -m` / rpm would say).
pub fn machine_name(m: u16, is_64: bool) -> String {
    use goblin::elf::header::*;
    match m {
        EM_X86_64 => "x86_64".into(),
        EM_386 => "i386".into(),
        EM_AARCH64 => "aarch64".into(),
        EM_ARM => "arm".into(),
        EM_PPC64 => "ppc64".into(),
        EM_PPC => "ppc".into(),
        EM_S390 => if is_64 { "s390x" } else { "s390" }.into(),
        EM_IA_64 => "ia64".into(),
        EM_RISCV => if is_64 { "riscv64" } else { "riscv32" }.into(),
        EM_MIPS => "mips".into(),
        EM_SPARCV9 => "sparc64".into(),
        EM_SPARC => "sparc".into(),
        0x9026 => "alpha".into(),
        258 => "loongarch64".into(),
        other => format!("machine-{other}"),
    }
}

fn search_paths(tree: Option<&Tree>, list: &[&str]) -> Vec<SearchPath> {
    list.iter()
        .flat_map(|s| s.split(':'))
        .map(|e| {
            let relative = !e.is_empty()
                && !e.starts_with('/')
                && !e.starts_with("$ORIGIN")
                && !e.starts_with("${ORIGIN}");
            let world_writable = e.starts_with('/')
                && tree.is_some_and(|t| {
                    t.resolve(e.as_bytes(), true).ok().is_some_and(|id| {
                        let n = t.node(id);
                        matches!(n.kind, rootfs::NodeKind::Directory(_)) && n.meta.perm & 0o002 != 0
                    })
                });
            SearchPath {
                entry: e.to_string(),
                relative,
                empty: e.is_empty(),
                world_writable,
            }
        })
        .collect()
}

/// Analyse ELF `bytes`. `tree`, when given, is used to check RPATH directories for world-writability.
pub fn analyse(bytes: &[u8], tree: Option<&Tree>) -> Result<ElfInfo, ElfError> {
    if !is_elf(bytes) {
        return Err(ElfError::NotElf);
    }
    let elf = goblin::elf::Elf::parse(bytes).map_err(|e| ElfError::Malformed(e.to_string()))?;
    let h = &elf.header;
    let e_type = match h.e_type {
        ET_EXEC => "EXEC".to_string(),
        ET_DYN => "DYN".to_string(),
        ET_REL => "REL".to_string(),
        ET_CORE => "CORE".to_string(),
        t => format!("{t}"),
    };
    let has_interp = elf.program_headers.iter().any(|p| p.p_type == PT_INTERP);
    let (flags, flags_1, bind_now_tag) = match &elf.dynamic {
        Some(d) => {
            let mut flags = 0u64;
            let mut flags_1 = 0u64;
            let mut bn = false;
            for dy in &d.dyns {
                match dy.d_tag {
                    DT_FLAGS => flags |= dy.d_val,
                    DT_FLAGS_1 => flags_1 |= dy.d_val,
                    DT_BIND_NOW => bn = true,
                    _ => {}
                }
            }
            (flags, flags_1, bn)
        }
        None => (0, 0, false),
    };
    let pie = match h.e_type {
        ET_EXEC => Pie::No,
        ET_DYN if flags_1 & DF_1_PIE != 0 || has_interp => Pie::Yes,
        ET_DYN => Pie::Dso,
        _ => Pie::NotApplicable,
    };
    let bind_now = flags & DF_BIND_NOW != 0 || flags_1 & DF_1_NOW != 0 || bind_now_tag;
    let relro = if elf.program_headers.iter().any(|p| p.p_type == PT_GNU_RELRO) {
        if bind_now {
            Relro::Full
        } else {
            Relro::Partial
        }
    } else {
        Relro::None
    };
    let nx = elf
        .program_headers
        .iter()
        .any(|p| p.p_type == PT_GNU_STACK && p.p_flags & PF_X == 0);
    let mut canary = false;
    let mut fortified = std::collections::BTreeSet::new();
    let mut check = |name: &str| {
        if name == "__stack_chk_fail"
            || name == "__stack_chk_guard"
            || name == "__stack_chk_fail_local"
        {
            canary = true;
        } else if name.starts_with("__") && name.ends_with("_chk") {
            fortified.insert(name.to_string());
        }
    };
    for s in elf.dynsyms.iter() {
        if let Some(n) = elf.dynstrtab.get_at(s.st_name) {
            check(n.split('@').next().unwrap_or(n));
        }
    }
    for s in elf.syms.iter() {
        if let Some(n) = elf.strtab.get_at(s.st_name) {
            check(n.split('@').next().unwrap_or(n));
        }
    }
    Ok(ElfInfo {
        machine: machine_name(h.e_machine, elf.is_64),
        is_64: elf.is_64,
        e_type,
        pie,
        relro,
        nx,
        canary,
        fortified: fortified.into_iter().collect(),
        rpath: search_paths(tree, &elf.rpaths),
        runpath: search_paths(tree, &elf.runpaths),
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
    })
}
