//! dpkg's database: `var/lib/dpkg/status`, `info/PKG[:ARCH].list` and `info/PKG[:ARCH].md5sums`.
//!
//! The status file is a sequence of deb822 control paragraphs (Debian Policy §5.1: `Field: value`,
//! continuation lines start with a space or tab, paragraphs separated by blank lines). Only
//! packages whose `Status` is `install ok installed` are installed. `Source` may carry a version in
//! parentheses (`Source: foo (1.2-3)`); without `Source` the source package is the package itself.

use std::collections::HashMap;
use std::path::Path;

use crate::version::DpkgVersion;

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
    /// A malformed line.
    #[error("{file} line {line}: {what}")]
    Syntax {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

/// One package paragraph of the status file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgPackage {
    /// `Package`.
    pub name: String,
    /// `Version` as written.
    pub version: String,
    /// Parsed `Version` (`None` if dpkg would refuse it).
    pub parsed_version: Option<DpkgVersion>,
    /// `Architecture`.
    pub arch: Option<String>,
    /// Source package name.
    pub source: String,
    /// Source version (from `Source: name (version)`, else the binary version).
    pub source_version: String,
    /// `Status` (e.g. `install ok installed`).
    pub status: String,
    /// Line in the status file where the paragraph starts.
    pub line: usize,
    /// Every field as written (continuation lines joined with `\n`).
    pub fields: HashMap<String, String>,
}

impl DpkgPackage {
    /// Whether dpkg counts it as installed (`Status: install ok installed`).
    pub fn is_installed(&self) -> bool {
        self.status.split_whitespace().collect::<Vec<_>>() == ["install", "ok", "installed"]
    }
}

/// Largest status file accepted (a real one is a few MB).
pub const MAX_STATUS: usize = 256 << 20;

/// Parse the text of a status file (every paragraph, installed or not).
pub fn parse_status(text: &str, file: &str) -> Result<Vec<DpkgPackage>, DpkgError> {
    let mut out = Vec::new();
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut last: Option<String> = None;
    let mut start = 0usize;
    let finish = |fields: &mut HashMap<String, String>,
                  start: usize,
                  out: &mut Vec<DpkgPackage>|
     -> Result<(), DpkgError> {
        if fields.is_empty() {
            return Ok(());
        }
        let f = std::mem::take(fields);
        let get = |k: &str| f.get(k).map(|v| v.trim().to_string());
        let name = get("Package").ok_or_else(|| DpkgError::Syntax {
            file: file.into(),
            line: start,
            what: "paragraph without Package field".into(),
        })?;
        let version = get("Version").unwrap_or_default();
        let (source, source_version) = match get("Source") {
            Some(s) => match s.split_once('(') {
                Some((n, v)) => (
                    n.trim().to_string(),
                    v.trim_end_matches(')').trim().to_string(),
                ),
                None => (s, version.clone()),
            },
            None => (name.clone(), version.clone()),
        };
        out.push(DpkgPackage {
            parsed_version: DpkgVersion::parse(&version).ok(),
            arch: get("Architecture"),
            status: get("Status").unwrap_or_default(),
            name,
            version,
            source,
            source_version,
            line: start,
            fields: f,
        });
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            finish(&mut fields, start, &mut out)?;
            last = None;
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some(k) = &last else {
                return Err(DpkgError::Syntax {
                    file: file.into(),
                    line: n,
                    what: "continuation line before any field".into(),
                });
            };
            if let Some(v) = fields.get_mut(k) {
                v.push('\n');
                v.push_str(line.trim_start());
            }
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(DpkgError::Syntax {
                file: file.into(),
                line: n,
                what: format!("expected `Field: value`, found {:?}", truncate(line)),
            });
        };
        if fields.is_empty() {
            start = n;
        }
        let k = k.trim().to_string();
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(DpkgError::Syntax {
                file: file.into(),
                line: n,
                what: "bad field name".into(),
            });
        }
        fields.insert(k.clone(), v.trim().to_string());
        last = Some(k);
    }
    finish(&mut fields, start, &mut out)?;
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Read `root/var/lib/dpkg/status` and return the installed packages only.
pub fn read_status(root: &Path) -> Result<Vec<DpkgPackage>, DpkgError> {
    let p = root.join("var/lib/dpkg/status");
    let io = |source| DpkgError::Io {
        path: p.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(&p).map_err(io)?;
    if meta.len() as usize > MAX_STATUS {
        return Err(DpkgError::Syntax {
            file: p.display().to_string(),
            line: 0,
            what: format!("status file of {} bytes is too large", meta.len()),
        });
    }
    let bytes = std::fs::read(&p).map_err(io)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(parse_status(&text, &p.display().to_string())?
        .into_iter()
        .filter(|p| p.is_installed())
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

/// Files of `pkg` from `info/<pkg>.list` (or `<pkg>:<arch>.list`) and md5s from `.md5sums`.
/// Returns an empty list when the package has no `.list` (e.g. virtual/config-only).
pub fn package_files(root: &Path, pkg: &DpkgPackage) -> Result<Vec<DpkgFile>, DpkgError> {
    let info = root.join("var/lib/dpkg/info");
    let mut names = vec![pkg.name.clone()];
    if let Some(a) = &pkg.arch {
        names.insert(0, format!("{}:{a}", pkg.name));
    }
    let read = |p: &Path| -> Result<Option<String>, DpkgError> {
        match std::fs::read(p) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DpkgError::Io {
                path: p.display().to_string(),
                source: e,
            }),
        }
    };
    for n in &names {
        let Some(list) = read(&info.join(format!("{n}.list")))? else {
            continue;
        };
        let md5s: HashMap<String, String> = read(&info.join(format!("{n}.md5sums")))?
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (sum, path) = l.split_once(char::is_whitespace)?;
                Some((
                    format!("/{}", path.trim_start().trim_start_matches('/')),
                    sum.to_string(),
                ))
            })
            .collect();
        return Ok(list
            .lines()
            .filter(|l| !l.is_empty() && *l != "/.")
            .map(|l| DpkgFile {
                path: l.to_string(),
                md5: md5s.get(l).cloned(),
            })
            .collect());
    }
    Ok(Vec::new())
}
