//! dpkg's database: `var/lib/dpkg/status` (and the journal `updates/NNNN`), distroless
//! `var/lib/dpkg/status.d/`, `info/PKG[:ARCH].list`, `info/PKG[:ARCH].md5sums` and `diversions`.
//!
//! The status file is read as dpkg itself reads it (lib/dpkg/parse.c and fields.c): the same
//! stanza scanner, the same field checks, the same per-(name, architecture) slots. A file dpkg
//! refuses (cut short mid-stanza or mid-field, a field without colon, a bad `Status`, `Version`,
//! dependency or `Conffiles` value, two installed instances of one package, ...) is an error
//! here, naming the file and line; a file dpkg accepts gives exactly the packages
//! `dpkg-query -W` lists, each with its `Status` (want, error flag, state). A few things dpkg
//! tolerates are refused here so that nothing is silently hidden: a NUL byte (dpkg would cut the
//! value there), a non-UTF-8 `Version` or `Architecture`, and a second stanza for a package
//! slot already installed.
//!
//! `Source` may carry a version in parentheses (`Source: foo (1.2-3)`); without `Source` the
//! source package is the package itself.

mod db;
mod fields;
mod info;
mod stanza;

use std::collections::HashMap;
use std::path::Path;

use crate::version::DpkgVersion;

pub use db::{update_names, Db, FileKind};
pub use fields::Conffile;
pub use info::{infodb_name, parse_diversions, parse_list, parse_md5sums, Diversion};

/// Errors reading dpkg's database.
#[derive(Debug, thiserror::Error)]
pub enum DpkgError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A malformed line, stanza or file.
    #[error("{file} line {line}: {what}")]
    Syntax {
        /// The file.
        file: String,
        /// 1-based line (0: the file as a whole).
        line: usize,
        /// What is wrong.
        what: String,
    },
}

/// The `Status` field: what is wanted, the error flag, and how far the package is installed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Status {
    /// Index into `unknown install hold deinstall purge`.
    want: u8,
    /// Index into `ok reinstreq`.
    eflag: u8,
    /// Index into `not-installed config-files half-installed unpacked half-configured
    /// triggers-awaited triggers-pending installed`.
    state: u8,
}

impl Status {
    /// The want word (`install`, `hold`, `deinstall`, `purge`, `unknown`).
    pub fn want(&self) -> &'static str {
        fields::WANTS[self.want as usize]
    }

    /// The error flag word (`ok`, `reinstreq`).
    pub fn eflag(&self) -> &'static str {
        fields::EFLAGS[self.eflag as usize]
    }

    /// The state word (`installed`, `unpacked`, `config-files`, ...).
    pub fn state(&self) -> &'static str {
        fields::STATES[self.state as usize]
    }

    /// The three words as dpkg writes them (`hold ok installed`).
    pub fn words(&self) -> String {
        format!("{} {} {}", self.want(), self.eflag(), self.state())
    }

    /// `dpkg-query`'s `${db:Status-Abbrev}`: want, state and error flag letters (`ii `, `hi `,
    /// `rc `, `iHR`, `iU `, `iW `, `it `).
    pub fn abbrev(&self) -> String {
        let want = ['u', 'i', 'h', 'r', 'p'][self.want as usize];
        let state = ['n', 'c', 'H', 'U', 'F', 'W', 't', 'i'][self.state as usize];
        let eflag = [' ', 'R'][self.eflag as usize];
        format!("{want}{state}{eflag}")
    }

    /// Whether `dpkg-query -W` lists it: any state but `not-installed`.
    pub fn is_listed(&self) -> bool {
        self.state != 0
    }

    /// Whether its files may be on disk: `half-installed` or a later state (not `config-files`
    /// or `not-installed`), whatever is wanted (`hold` and `deinstall` included).
    pub fn is_installed(&self) -> bool {
        self.state >= 2
    }
}

/// One package of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgPackage {
    /// `Package` (lower case, as dpkg keeps it).
    pub name: String,
    /// `Version` as `dpkg-query` prints it (`0:` epoch dropped); empty when absent.
    pub version: String,
    /// Parsed `Version` (`None` if absent or not comparable).
    pub parsed_version: Option<DpkgVersion>,
    /// `Architecture` (`None` when absent or empty).
    pub arch: Option<String>,
    /// `Multi-Arch` (`no`, `same`, `allowed`, `foreign`; `None` when absent).
    pub multi_arch: Option<String>,
    /// Source package name.
    pub source: String,
    /// Source version (from `Source: name (version)`, else the binary version).
    pub source_version: String,
    /// `Status` words (`install ok installed`; `unknown ok not-installed` when absent).
    pub status: String,
    /// `Status` parsed.
    pub state: Status,
    /// `Conffiles`.
    pub conffiles: Vec<Conffile>,
    /// File the stanza came from (the status file, an `updates/` entry, a `status.d/` file).
    pub file: String,
    /// Line in that file where the stanza starts.
    pub line: usize,
    /// Every field as written (continuation lines kept with their newline and leading space);
    /// non-UTF-8 bytes shown lossily.
    pub fields: HashMap<String, String>,
}

impl DpkgPackage {
    /// Whether its files may be installed: state `half-installed` or later, whatever is wanted
    /// (see [`Status::is_installed`]).
    pub fn is_installed(&self) -> bool {
        self.state.is_installed()
    }

    /// Whether `dpkg-query -W` lists it (any state but `not-installed`).
    pub fn is_listed(&self) -> bool {
        self.state.is_listed()
    }

    /// The value of field `name` (matched without regard to case), if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Pre-Depends` then `Depends`: one entry per comma-separated relation, each the list of
    /// its `|` alternatives (package names, without version or architecture qualifier).
    pub fn depends(&self) -> Vec<Vec<String>> {
        let mut out = relations(self.field("Pre-Depends").unwrap_or(""));
        out.extend(relations(self.field("Depends").unwrap_or("")));
        out.truncate(MAX_RELATIONS);
        out
    }

    /// `Provides`: the virtual package names it provides (version and architecture dropped).
    pub fn provides(&self) -> Vec<String> {
        relations(self.field("Provides").unwrap_or(""))
            .into_iter()
            .flatten()
            .collect()
    }
}

/// Most relations (or alternatives of one relation) kept from one field.
pub const MAX_RELATIONS: usize = 4096;

/// Split a dependency field's value (`a (>= 1) | b:any, c [amd64] <!nocheck>`) into relations,
/// each the list of its alternatives' package names. Version constraints (`(...)`), architecture
/// qualifiers (`:any`), architecture restrictions (`[...]`) and build profiles (`<...>`) are
/// dropped; empty names are skipped. Lenient (the status reader has already checked the syntax
/// as dpkg does) and bounded: at most [`MAX_RELATIONS`] relations and alternatives each.
pub fn relations(value: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for rel in value.split(',').take(MAX_RELATIONS) {
        let alts: Vec<String> = rel
            .split('|')
            .take(MAX_RELATIONS)
            .filter_map(|alt| {
                let name = alt
                    .trim_start()
                    .split(|c: char| c.is_whitespace() || matches!(c, ':' | '(' | '[' | '<'))
                    .next()
                    .unwrap_or("");
                (!name.is_empty()).then(|| name.to_string())
            })
            .collect();
        if !alts.is_empty() {
            out.push(alts);
        }
    }
    out
}

/// Largest status file accepted (a real one is a few MB).
pub const MAX_STATUS: usize = 256 << 20;

/// Parse the text of a status file: every package slot dpkg would keep, `not-installed`
/// selections included.
pub fn parse_status(text: &str, file: &str) -> Result<Vec<DpkgPackage>, DpkgError> {
    parse_status_bytes(text.as_bytes(), file)
}

/// Parse the bytes of a status file (see [`parse_status`]).
pub fn parse_status_bytes(data: &[u8], file: &str) -> Result<Vec<DpkgPackage>, DpkgError> {
    let mut db = Db::new();
    db.add_file(data, file, FileKind::Status)?;
    Ok(db.into_packages())
}

fn read_capped(p: &Path, max: u64) -> Result<Option<Vec<u8>>, DpkgError> {
    let io = |source| DpkgError::Io {
        path: p.display().to_string(),
        source,
    };
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if meta.len() > max {
        return Err(DpkgError::Syntax {
            file: p.display().to_string(),
            line: 0,
            what: format!("file of {} bytes is too large (limit {max})", meta.len()),
        });
    }
    std::fs::read(p).map(Some).map_err(io)
}

/// Read `root/var/lib/dpkg/status` plus its journal `updates/` (as dpkg does) and return the
/// packages `dpkg-query -W` lists (every state but `not-installed`).
pub fn read_status(root: &Path) -> Result<Vec<DpkgPackage>, DpkgError> {
    let admin = root.join("var/lib/dpkg");
    let p = admin.join("status");
    let bytes = read_capped(&p, MAX_STATUS as u64)?.ok_or_else(|| DpkgError::Io {
        path: p.display().to_string(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    let mut db = Db::new();
    db.add_file(&bytes, &p.display().to_string(), FileKind::Status)?;
    let updates = admin.join("updates");
    if let Ok(rd) = std::fs::read_dir(&updates) {
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        for n in db::update_names(&names, &updates.display().to_string())? {
            let f = updates.join(&n);
            if let Some(b) = read_capped(&f, MAX_STATUS as u64)? {
                db.add_file(&b, &f.display().to_string(), FileKind::Update)?;
            }
        }
    }
    Ok(db
        .into_packages()
        .into_iter()
        .filter(|p| p.is_listed())
        .collect())
}

/// One owned file with its md5 (when `*.md5sums` lists it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgFile {
    /// Absolute path.
    pub path: String,
    /// Hex md5 of the contents (regular files listed in md5sums).
    pub md5: Option<String>,
}

/// Files of `pkg` from `info/<pkg>.list` (`<pkg>:<arch>.list` for `Multi-Arch: same`) and md5s
/// from `.md5sums`, both checked as dpkg reads them. Returns an empty list when the package has
/// no `.list` (e.g. `config-files`).
pub fn package_files(root: &Path, pkg: &DpkgPackage) -> Result<Vec<DpkgFile>, DpkgError> {
    let info = root.join("var/lib/dpkg/info");
    let format = std::fs::read_to_string(info.join("format")).unwrap_or_default();
    let base = infodb_name(pkg, &format);
    let list_path = info.join(format!("{base}.list"));
    let Some(list) = read_capped(&list_path, MAX_STATUS as u64)? else {
        return Ok(Vec::new());
    };
    let list = parse_list(&list, &list_path.display().to_string())?;
    let md5_path = info.join(format!("{base}.md5sums"));
    let md5s: HashMap<Vec<u8>, String> = match read_capped(&md5_path, MAX_STATUS as u64)? {
        Some(b) => parse_md5sums(&b, &md5_path.display().to_string())?
            .into_iter()
            .map(|(h, p)| (p, h))
            .collect(),
        None => HashMap::new(),
    };
    Ok(list
        .into_iter()
        .filter(|l| l.as_slice() != b"/.")
        .map(|l| DpkgFile {
            md5: md5s.get(&l).cloned(),
            path: String::from_utf8_lossy(&l).into_owned(),
        })
        .collect())
}

#[cfg(test)]
mod relation_tests {
    use super::relations;

    #[test]
    fn relations_drop_versions_and_qualifiers() {
        assert_eq!(
            relations("libc6 (>= 2.36), debconf (>= 0.5) | debconf-2.0, perl:any,\n python3 [amd64] <!nocheck>"),
            vec![
                vec!["libc6".to_string()],
                vec!["debconf".into(), "debconf-2.0".into()],
                vec!["perl".into()],
                vec!["python3".into()],
            ]
        );
        assert!(relations("").is_empty());
        assert!(relations(" , | ,").is_empty());
        // Bounded on hostile input.
        assert_eq!(relations(&"a,".repeat(100_000)).len(), super::MAX_RELATIONS);
    }
}
