//! The package slots dpkg keeps while it reads its status file and journal: one per
//! (name, architecture), with dpkg's checks on each stanza (`pkg_parse_verify`) and on the
//! instances of one package name (`parse_find_set_slot`, `parse_find_pkg_slot`).

use std::collections::HashMap;

use super::fields::{self, lossy};
use super::stanza::{RawField, Scanner};
use super::{DpkgError, DpkgPackage, Status};
use crate::version::DpkgVersion;

/// What kind of file a stanza comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The status file (or a distroless `status.d/` file): a package slot may be filled once.
    Status,
    /// A journal entry of `updates/`: replaces the slot it names.
    Update,
}

/// The package database being read.
#[derive(Debug, Default)]
pub struct Db {
    slots: Vec<DpkgPackage>,
    /// (name, architecture) -> slot.
    index: HashMap<(String, String), usize>,
    /// name -> slots of that name.
    sets: HashMap<String, Vec<usize>>,
    /// Multi-Arch of each slot.
    multi_same: Vec<bool>,
}

/// The names of `updates/` entries dpkg reads, in order: all-digit names of one length, at most
/// 10 digits (a longer name or two lengths is an error, as in dpkg); other names are ignored.
pub fn update_names(sorted: &[String], dir: &str) -> Result<Vec<String>, DpkgError> {
    let mut len = None;
    let mut out = Vec::new();
    for n in sorted {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if n.len() > 10 {
            return Err(DpkgError::Syntax {
                file: dir.into(),
                line: 0,
                what: format!("updates directory contains file {n:?} whose name is too long"),
            });
        }
        match len {
            None => len = Some(n.len()),
            Some(l) if l != n.len() => {
                return Err(DpkgError::Syntax {
                    file: dir.into(),
                    line: 0,
                    what: format!(
                        "updates directory contains files with different length names (both {l} and {})",
                        n.len()
                    ),
                })
            }
            Some(_) => {}
        }
        out.push(n.clone());
    }
    Ok(out)
}

/// The known fields dpkg parses itself (after its nicknames), lower case.
const KNOWN: [&str; 33] = [
    "package",
    "essential",
    "protected",
    "status",
    "priority",
    "section",
    "installed-size",
    "origin",
    "maintainer",
    "bugs",
    "architecture",
    "multi-arch",
    "source",
    "version",
    "revision",
    "config-version",
    "replaces",
    "provides",
    "depends",
    "pre-depends",
    "recommends",
    "suggests",
    "breaks",
    "conflicts",
    "enhances",
    "conffiles",
    "filename",
    "size",
    "md5sum",
    "msdos-filename",
    "description",
    "triggers-pending",
    "triggers-awaited",
];

fn canonical(name: &[u8]) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let nick = match lower.as_slice() {
        b"recommended" => Some("recommends"),
        b"optional" => Some("suggests"),
        b"class" => Some("priority"),
        b"package-revision" | b"package_revision" => Some("revision"),
        _ => None,
    };
    nick.or_else(|| {
        KNOWN
            .iter()
            .copied()
            .find(|k| k.as_bytes() == lower.as_slice())
    })
}

impl Db {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Read every stanza of `data` (named `file` in errors) into the database. On error the
    /// stanzas before the bad one stay in the database (as read so far) and the error names the
    /// file and line.
    pub fn add_file(
        &mut self,
        data: &[u8],
        file: &str,
        kind: FileKind,
    ) -> Result<usize, DpkgError> {
        if let Some(at) = data.iter().position(|&b| b == 0) {
            let line = 1 + data[..at].iter().filter(|&&b| b == b'\n').count();
            return Err(DpkgError::Syntax {
                file: file.into(),
                line,
                what: format!("NUL byte at offset {at} (dpkg would cut the value there)"),
            });
        }
        let mut sc = Scanner::new(data, file);
        let mut n = 0;
        while let Some((line, raw)) = sc.next_stanza()? {
            let err = |what: String| DpkgError::Syntax {
                file: file.into(),
                line,
                what,
            };
            let pkg = stanza(&raw, file, line).map_err(|(l, w)| DpkgError::Syntax {
                file: file.into(),
                line: l,
                what: w,
            })?;
            self.insert(pkg, kind).map_err(err)?;
            n += 1;
            if sc.at_end() {
                break;
            }
        }
        Ok(n)
    }

    fn insert(&mut self, p: Parsed, kind: FileKind) -> Result<(), String> {
        let name = p.pkg.name.clone();
        let arch = p.pkg.arch.clone().unwrap_or_default();
        let set: Vec<usize> = self.sets.get(&name).cloned().unwrap_or_default();
        let installed: Vec<usize> = set
            .iter()
            .copied()
            .filter(|&i| self.slots[i].state.is_listed())
            .collect();
        let (mut single, mut multi) = (0, 0);
        let mut count = |same: bool| {
            if same {
                multi += 1
            } else {
                single += 1
            }
        };
        if kind == FileKind::Status && p.pkg.state.is_listed() {
            count(p.multi_same);
        }
        for &i in &installed {
            count(self.multi_same[i]);
        }
        if single > 1 {
            return Err(format!(
                "package {name:?}: multiple non-coinstallable package instances present"
            ));
        }
        if single > 0 && multi > 0 {
            return Err(format!(
                "package {name:?}: mixed non-coinstallable and coinstallable package instances present"
            ));
        }
        let selection = kind == FileKind::Status && !p.pkg.state.is_listed();
        if installed.len() > 1 && !selection && !p.multi_same {
            return Err(format!(
                "package {name:?} (Multi-Arch: not same) is not co-installable with {name} which has multiple installed instances"
            ));
        }
        let mut key = (name.clone(), arch);
        if kind == FileKind::Update && installed.len() == 1 {
            let i = installed[0];
            if !(self.multi_same[i] && p.multi_same) {
                key = (name.clone(), self.slots[i].arch.clone().unwrap_or_default());
            }
        }
        match self.index.get(&key).copied() {
            Some(i) => {
                if kind == FileKind::Status
                    && self.slots[i].state.is_listed()
                    && p.pkg.state.is_listed()
                {
                    return Err(format!(
                        "package {name:?} architecture {:?} appears twice (first at {} line {})",
                        key.1, self.slots[i].file, self.slots[i].line
                    ));
                }
                self.slots[i] = p.pkg;
                self.multi_same[i] = p.multi_same;
            }
            None => {
                let i = self.slots.len();
                self.slots.push(p.pkg);
                self.multi_same.push(p.multi_same);
                self.index.insert(key, i);
                self.sets.entry(name).or_default().push(i);
            }
        }
        Ok(())
    }

    /// Number of package slots read so far (`not-installed` selections included).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no package slot was read.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The packages read so far, sorted by name and architecture (as `dpkg-query` lists them).
    pub fn packages(&self) -> Vec<DpkgPackage> {
        let mut v = self.slots.clone();
        v.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        v
    }

    /// The packages, sorted (see [`Db::packages`]).
    pub fn into_packages(mut self) -> Vec<DpkgPackage> {
        self.slots
            .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        self.slots
    }
}

struct Parsed {
    pkg: DpkgPackage,
    multi_same: bool,
}

/// One stanza checked as dpkg's `pkg_parse_field` and `pkg_parse_verify` do. Errors carry the
/// line.
fn stanza(raw: &[RawField<'_>], file: &str, line: usize) -> Result<Parsed, (usize, String)> {
    let mut seen: Vec<&'static str> = Vec::new();
    let mut user: Vec<Vec<u8>> = Vec::new();
    let mut name: Option<Vec<u8>> = None;
    let mut status = Status::default();
    let mut version: Option<fields::Version> = None;
    let mut config_version = false;
    let mut arch: Option<Vec<u8>> = None;
    let mut multi: Option<usize> = None;
    let mut pending = 0;
    let mut awaited = 0;
    let mut conffiles = Vec::new();
    let mut revision: Option<Vec<u8>> = None;
    let mut all: HashMap<String, String> = HashMap::new();
    for f in raw {
        let e = |w: String| (f.line, w);
        let shown = String::from_utf8_lossy(f.name).into_owned();
        all.insert(shown.clone(), String::from_utf8_lossy(f.value).into_owned());
        let Some(k) = canonical(f.name) else {
            if f.name.len() < 2 {
                return Err(e(format!("user-defined field name {shown:?} too short")));
            }
            let lower = f.name.to_ascii_lowercase();
            if user.contains(&lower) {
                return Err(e(format!(
                    "duplicate value for user-defined field {shown:?}"
                )));
            }
            user.push(lower);
            continue;
        };
        if seen.contains(&k) {
            return Err(e(format!("duplicate value for {k:?} field")));
        }
        seen.push(k);
        let v = f.value;
        match k {
            "package" => {
                if let Some(m) = fields::package_name_error(v) {
                    return Err(e(format!("invalid package name in 'Package' field: {m}")));
                }
                name = Some(v.to_ascii_lowercase());
            }
            "essential" | "protected" => fields::boolean(k, v).map_err(e)?,
            "status" => {
                let (w, f2, s) = fields::status(v).map_err(e)?;
                status = Status {
                    want: w as u8,
                    eflag: f2 as u8,
                    state: s as u8,
                };
            }
            "priority" => fields::priority(v).map_err(e)?,
            "architecture" => {
                if std::str::from_utf8(v).is_err() {
                    return Err(e("'Architecture' field is not UTF-8".into()));
                }
                arch = Some(v.to_vec());
            }
            "multi-arch" => multi = fields::multiarch(v).map_err(e)?,
            "version" => {
                if std::str::from_utf8(v).is_err() {
                    return Err(e("'Version' field is not UTF-8".into()));
                }
                version =
                    Some(fields::version(v).map_err(|m| {
                        e(format!("'Version' field value {:?}: {m}", lossy(v, 250)))
                    })?);
            }
            "revision" if !v.is_empty() => revision = Some(v.to_vec()),
            "config-version" => {
                fields::version(v).map_err(|m| {
                    e(format!(
                        "'Config-Version' field value {:?}: {m}",
                        lossy(v, 250)
                    ))
                })?;
                config_version = true;
            }
            "replaces" | "provides" | "depends" | "pre-depends" | "recommends" | "suggests"
            | "breaks" | "conflicts" | "enhances" => {
                let canon = match k {
                    "replaces" => "Replaces",
                    "provides" => "Provides",
                    "depends" => "Depends",
                    "pre-depends" => "Pre-Depends",
                    "recommends" => "Recommends",
                    "suggests" => "Suggests",
                    "breaks" => "Breaks",
                    "conflicts" => "Conflicts",
                    _ => "Enhances",
                };
                fields::dependency(canon, v).map_err(e)?;
            }
            "conffiles" => conffiles = fields::conffiles(v).map_err(e)?,
            "filename" | "size" | "md5sum" | "msdos-filename" => {
                if v.is_empty() {
                    return Err(e(format!("empty archive details {shown:?} field")));
                }
                return Err(e(format!(
                    "archive details {shown:?} field not allowed in status file"
                )));
            }
            "triggers-pending" => pending = fields::triggers_pending(v).map_err(e)?,
            "triggers-awaited" => awaited = fields::triggers_awaited(v).map_err(e)?,
            _ => {}
        }
    }
    // The obsolete Revision field appends to the version as dpkg does.
    if let (Some(r), Some(ver)) = (revision, version.as_mut()) {
        if !ver.revision.is_empty() {
            let mut up = std::mem::take(&mut ver.upstream);
            up.push(b'-');
            up.extend_from_slice(&ver.revision);
            ver.upstream = up;
        }
        ver.revision = r;
    }
    let verr = |w: &str| (line, w.to_string());
    let Some(name) = name else {
        return Err(verr("missing 'Package' field"));
    };
    let shown_name = String::from_utf8_lossy(&name).into_owned();
    let st = status.state;
    if st != 0 && st != 2 && version.is_none() {
        return Err(verr(&format!(
            "package {shown_name:?}: missing 'Version' field"
        )));
    }
    let multi_same = multi == Some(1);
    let arch_s = arch
        .as_ref()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .filter(|a| !a.is_empty());
    if multi_same && arch_s.is_none() {
        return Err(verr(&format!(
            "package {shown_name:?} has field 'Multi-Arch: same' but is missing architecture"
        )));
    }
    if multi_same && arch_s.as_deref() == Some("all") {
        return Err(verr(&format!(
            "package {shown_name:?} has field 'Multi-Arch: same' but is architecture all"
        )));
    }
    if config_version && (st == 7 || st == 0) {
        return Err(verr(&format!(
            "package {shown_name:?}: Config-Version for package with inappropriate Status"
        )));
    }
    if awaited > 0 && (st <= 1 || st >= 6) {
        return Err(verr(&format!(
            "package {shown_name:?} has status {} but triggers are awaited",
            status.state()
        )));
    } else if st == 5 && awaited == 0 {
        return Err(verr(&format!(
            "package {shown_name:?} has status triggers-awaited but no triggers awaited"
        )));
    }
    if pending > 0 && !(st == 5 || st == 6) {
        return Err(verr(&format!(
            "package {shown_name:?} has status {} but triggers are pending",
            status.state()
        )));
    } else if st == 6 && pending == 0 {
        return Err(verr(&format!(
            "package {shown_name:?} has status triggers-pending but no triggers pending"
        )));
    }
    if st == 0 {
        conffiles.clear();
    }
    let version_s = version.as_ref().map(|v| v.display()).unwrap_or_default();
    let (source, source_version) = match all
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("source"))
        .map(|(_, v)| v.trim().to_string())
        .filter(|s| !s.is_empty())
    {
        Some(s) => match s.split_once('(') {
            Some((n, v)) => (
                n.trim().to_string(),
                v.trim_end_matches(')').trim().to_string(),
            ),
            None => (s, version_s.clone()),
        },
        None => (shown_name.clone(), version_s.clone()),
    };
    Ok(Parsed {
        pkg: DpkgPackage {
            parsed_version: DpkgVersion::parse(&version_s).ok(),
            version: version_s,
            arch: arch_s,
            multi_arch: multi.map(|i| fields::MULTIARCH[i].to_string()),
            source,
            source_version,
            status: status.words(),
            state: status,
            conffiles,
            file: file.to_string(),
            line,
            fields: all,
            name: shown_name,
        },
        multi_same,
    })
}
