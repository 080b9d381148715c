//! Site policy: what a wafer may carry at this site (a strict TOML file, `docs/policy.md`), and
//! the verdict of an [`Inventory`](crate::Inventory) against it ([`evaluate`]).
//!
//! * [`Policy::parse`] / [`Policy::load`] read the file; unknown keys and bad values are
//!   [`PolicyError`]s naming the file, line and column.
//! * [`evaluate`] returns a [`Verdict`]: pass/fail, per-rule results, findings with subject,
//!   evidence and remedy, waivers applied or expired, new vs known (`--since`).
//! * [`exit_code`] maps the outcome to the command's exit status (0 pass, 1 fail, 2 could not vet).

pub mod advisory;
mod consistency;
mod eval;
pub mod format;

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use sha2::{Digest, Sha256};

pub use advisory::Advisory;
pub use consistency::{check_verdict, SavedVerdict};
pub use eval::{
    compare_installed_version, evaluate, EvalContext, Evidence, Finding, ImageIdentity, Outcome,
    RuleResult, Totals, Unvetted, Verdict, WaiverState, WaiverUse, VERDICT_SCHEMA,
};
pub use format::{PolicyFile, Severity};

/// Largest policy file accepted.
pub const MAX_POLICY_BYTES: usize = 4 << 20;

/// Why a policy could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// File.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A semantically wrong value, located.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// File.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A semantically wrong value in a rule (no exact position kept).
    #[error("{file}: rule {rule:?}: {message}")]
    Rule {
        /// File.
        file: String,
        /// Rule id.
        rule: String,
        /// What is wrong.
        message: String,
    },
    /// The file (or an advisory file) could not be read.
    #[error("{file}: {source}")]
    Io {
        /// File.
        file: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_POLICY_BYTES`].
    #[error("{file}: larger than {MAX_POLICY_BYTES} bytes")]
    TooLarge {
        /// File.
        file: String,
    },
    /// An advisory list is wrong.
    #[error(transparent)]
    Advisory(#[from] advisory::AdvisoryError),
    /// The policy defines no rule and does not say `allow_empty = true`.
    #[error(
        "{file}: the policy has no rules ([[ports]], [[privileged]], [[packages]], [[files]], \
         [[elf]] or [[boot]]), so it would pass every wafer; add rules, or set allow_empty = true \
         under [policy] if that is really meant"
    )]
    Empty {
        /// File.
        file: String,
    },
}

/// The rule kinds a policy may hold, in report order.
pub const RULE_KINDS: [&str; 6] = ["ports", "privileged", "packages", "files", "elf", "boot"];

/// A required minimum version: `name >= version` or `name > version`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MinVersion {
    /// Package name.
    pub name: String,
    /// `>=` or `>`.
    pub op: String,
    /// Version (rpm `[E:]V[-R]` or dpkg).
    pub version: String,
}

impl MinVersion {
    /// Parse `openssl >= 0.9.8e-27.el5_10.4`.
    pub fn parse(s: &str) -> Result<MinVersion, String> {
        let (name, rest, op) = if let Some((n, r)) = s.split_once(">=") {
            (n, r, ">=")
        } else if let Some((n, r)) = s.split_once('>') {
            (n, r, ">")
        } else {
            return Err(format!("{s:?}: expected \"NAME >= VERSION\""));
        };
        let (name, version) = (name.trim(), rest.trim());
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(format!("{s:?}: bad package name"));
        }
        if version.is_empty() || version.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{s:?}: bad version"));
        }
        Ok(MinVersion {
            name: name.into(),
            op: op.into(),
            version: version.into(),
        })
    }
}

/// A loaded policy: the file plus what was derived from it.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The file as written.
    pub file: PolicyFile,
    /// Where it came from (for messages).
    pub source: String,
    /// sha256 of the policy text followed by every advisory file's text, lowercase hex.
    pub digest: String,
    /// Parsed `minimum` lists, parallel to `file.packages`.
    pub minimums: Vec<Vec<MinVersion>>,
    /// Loaded advisory lists, parallel to `file.packages`.
    pub advisories: Vec<Vec<Advisory>>,
}

/// Line and column (1-based, characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut off = offset.min(text.len());
    while !text.is_char_boundary(off) {
        off -= 1;
    }
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Compile a glob (`*` and `?` stay within one `/`-separated component, `**` crosses them).
pub fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("bad pattern {pattern:?}: {e}"))
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` of a day count.
pub fn date_string(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Policy {
    /// Parse policy text. `source` names it in errors; advisory files are resolved against
    /// `base_dir` (the policy file's directory).
    pub fn parse(text: &str, source: &str, base_dir: Option<&Path>) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                file: source.into(),
            });
        }
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            PolicyError::Syntax {
                file: source.into(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        let at = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_col(text, span.start);
            PolicyError::Invalid {
                file: source.into(),
                line,
                column,
                message,
            }
        };
        let rule_err = |rule: &str, message: String| PolicyError::Rule {
            file: source.into(),
            rule: rule.into(),
            message,
        };
        let mut hasher = Sha256::new();
        hasher.update(text.as_bytes());

        // Rule ids: non-empty, unique, and scopes/allow patterns compile.
        let mut ids: Vec<(String, std::ops::Range<usize>)> = Vec::new();
        let mut patterns: Vec<(String, Vec<String>)> = Vec::new();
        macro_rules! common {
            ($list:expr) => {
                for r in &$list {
                    ids.push((r.id.get_ref().clone(), r.id.span()));
                    let mut p: Vec<String> = Vec::new();
                    p.extend(r.wafers.iter().flatten().cloned());
                    p.extend(r.vos.iter().flatten().cloned());
                    patterns.push((r.id.get_ref().clone(), p));
                }
            };
        }
        common!(file.ports);
        common!(file.privileged);
        common!(file.packages);
        common!(file.files);
        common!(file.elf);
        common!(file.boot);
        if ids.is_empty() && !file.policy.allow_empty {
            return Err(PolicyError::Empty {
                file: source.into(),
            });
        }
        for d in &file.waive.damaged {
            if d.get_ref().trim().is_empty() {
                return Err(at(d.span(), "waive.damaged: an empty path".into()));
            }
            glob(d.get_ref()).map_err(|m| at(d.span(), format!("waive.damaged: {m}")))?;
        }
        for (i, (id, span)) in ids.iter().enumerate() {
            if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(at(
                    span.clone(),
                    format!("rule id {id:?} must be non-empty without spaces"),
                ));
            }
            if ids.iter().take(i).any(|(o, _)| o == id) {
                return Err(at(span.clone(), format!("rule id {id:?} is used twice")));
            }
        }
        for r in &file.ports {
            let id = r.id.get_ref();
            for a in &r.allow {
                match (a.port, a.range) {
                    (Some(_), None) => {}
                    (None, Some([lo, hi])) if lo <= hi => {}
                    (None, Some(_)) => {
                        return Err(rule_err(
                            id,
                            "allow: range [first, last] needs first <= last".into(),
                        ))
                    }
                    _ => {
                        return Err(rule_err(
                            id,
                            "allow: give exactly one of port or range".into(),
                        ))
                    }
                }
                if let Some(s) = &a.service {
                    glob(s).map_err(|m| rule_err(id, m))?;
                }
            }
        }
        for r in &file.privileged {
            let id = r.id.get_ref();
            for a in &r.allow {
                glob(&a.path).map_err(|m| rule_err(id, m))?;
                if let Some(h) = &a.sha256 {
                    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(rule_err(
                            id,
                            format!("allow {:?}: sha256 must be 64 hex digits", a.path),
                        ));
                    }
                }
            }
        }
        for r in &file.files {
            for a in &r.allow {
                glob(a).map_err(|m| rule_err(r.id.get_ref(), m))?;
            }
        }
        for r in &file.elf {
            for a in &r.allow {
                glob(a).map_err(|m| rule_err(r.id.get_ref(), m))?;
            }
        }
        for (id, ps) in &patterns {
            for p in ps {
                glob(p).map_err(|m| rule_err(id, m))?;
            }
        }
        let mut minimums = Vec::new();
        let mut advisories = Vec::new();
        for r in &file.packages {
            let id = r.id.get_ref();
            let mut mins = Vec::new();
            for m in &r.minimum {
                mins.push(MinVersion::parse(m.get_ref()).map_err(|e| at(m.span(), e))?);
            }
            minimums.push(mins);
            for b in &r.banned {
                glob(b).map_err(|m| rule_err(id, m))?;
            }
            let mut list = Vec::new();
            if let Some(f) = &r.advisories {
                let rel = f.get_ref();
                let path: PathBuf = match base_dir {
                    Some(d) => d.join(rel),
                    None => PathBuf::from(rel),
                };
                let shown = path.display().to_string();
                let meta = std::fs::metadata(&path)
                    .map_err(|e| at(f.span(), format!("advisory list {shown}: {e}")))?;
                if meta.len() > advisory::MAX_ADVISORY_BYTES as u64 {
                    return Err(advisory::AdvisoryError::TooLarge {
                        file: shown,
                        limit: advisory::MAX_ADVISORY_BYTES,
                    }
                    .into());
                }
                let bytes = std::fs::read(&path).map_err(|source| PolicyError::Io {
                    file: shown.clone(),
                    source,
                })?;
                hasher.update(&bytes);
                let text = String::from_utf8_lossy(&bytes);
                let fmt = r.advisories_format.unwrap_or_else(|| {
                    if rel.to_ascii_lowercase().ends_with(".json") {
                        format::AdvisoryFormat::Json
                    } else {
                        format::AdvisoryFormat::Csv
                    }
                });
                list = match fmt {
                    format::AdvisoryFormat::Csv => advisory::parse_csv(&text, &shown)?,
                    format::AdvisoryFormat::Json => advisory::parse_json(&text, &shown)?,
                };
            }
            advisories.push(list);
        }
        for w in &file.waiver {
            let rule = w.rule.get_ref();
            if !ids.iter().any(|(id, _)| id == rule) {
                return Err(at(
                    w.rule.span(),
                    format!("waiver names rule {rule:?}, which the policy does not define"),
                ));
            }
            if waiver_day(w).is_none() {
                return Err(at(
                    w.expires.span(),
                    "expires must be a date such as 2025-06-30".into(),
                ));
            }
            if w.justification.trim().is_empty() {
                return Err(at(w.rule.span(), "a waiver needs a justification".into()));
            }
            glob(&w.subject).map_err(|m| at(w.rule.span(), m))?;
            for p in w.wafers.iter().flatten() {
                glob(p).map_err(|m| at(w.rule.span(), m))?;
            }
        }
        Ok(Policy {
            file,
            source: source.into(),
            digest: hex::encode(hasher.finalize()),
            minimums,
            advisories,
        })
    }

    /// Read and parse a policy file (advisory files relative to its directory).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| PolicyError::Io {
            file: shown.clone(),
            source,
        })?;
        if meta.len() > MAX_POLICY_BYTES as u64 {
            return Err(PolicyError::TooLarge { file: shown });
        }
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            file: shown.clone(),
            source,
        })?;
        Policy::parse(&text, &shown, path.parent())
    }

    /// The threshold from the file (default `low`).
    pub fn fail_on(&self) -> Severity {
        self.file.policy.fail_on.unwrap_or(Severity::Low)
    }

    /// Every rule id with its kind, severity and description, in file order.
    pub fn rules(&self) -> Vec<RuleInfo> {
        let mut out = Vec::new();
        macro_rules! push {
            ($list:expr, $kind:expr, $detail:expr) => {
                for r in &$list {
                    out.push(RuleInfo {
                        id: r.id.get_ref().clone(),
                        kind: $kind.to_string(),
                        severity: r.severity,
                        description: r.description.clone().unwrap_or_else(|| $detail(r)),
                    });
                }
            };
        }
        push!(self.file.ports, "ports", |_r: &format::PortsRule| {
            "Only the listed listeners may be opened".to_string()
        });
        push!(
            self.file.privileged,
            "privileged",
            |r: &format::PrivilegedRule| format!(
                "Only listed files may be {}",
                r.check
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join("/")
            )
        );
        push!(
            self.file.packages,
            "packages",
            |_r: &format::PackagesRule| {
                "Packages meet minimum versions, none is banned or affected by an advisory"
                    .to_string()
            }
        );
        push!(self.file.files, "files", |r: &format::FilesRule| format!(
            "File check: {}",
            r.check.as_str()
        ));
        push!(self.file.elf, "elf", |r: &format::ElfRule| format!(
            "Binaries must be built with {}",
            r.require.as_str()
        ));
        push!(self.file.boot, "boot", |_r: &format::BootRule| {
            "The wafer boots at this site (guest type, architecture)".to_string()
        });
        out
    }
}

/// Summary of one rule (for reports).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuleInfo {
    /// Id.
    pub id: String,
    /// `ports`, `privileged`, `packages`, `files`, `elf`, `boot`.
    pub kind: String,
    /// Severity.
    pub severity: Severity,
    /// What it checks.
    pub description: String,
}

/// Last valid day (days since the epoch) of a waiver.
pub(crate) fn waiver_day(w: &format::Waiver) -> Option<i64> {
    let dt = w.expires.get_ref();
    if dt.time.is_some() || dt.offset.is_some() {
        return None;
    }
    let d = dt.date?;
    if !(1..=12).contains(&d.month) || !(1..=31).contains(&d.day) {
        return None;
    }
    Some(days_from_civil(
        i64::from(d.year),
        u32::from(d.month),
        u32::from(d.day),
    ))
}

/// Exit status of `wafer vet`: 0 pass, 1 fail, 2 could not vet (the error).
pub fn exit_code<E>(result: &Result<Verdict, E>) -> i32 {
    match result {
        Ok(v) => v.exit_code(),
        Err(_) => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for d in [-1000i64, 0, 11_016, 19_000, 20_000, 50_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(date_string(19_723), "2024-01-01");
    }

    #[test]
    fn min_versions() {
        let m = MinVersion::parse("openssl >= 0.9.8e-27.el5_10.4").unwrap();
        assert_eq!(
            (m.name.as_str(), m.op.as_str(), m.version.as_str()),
            ("openssl", ">=", "0.9.8e-27.el5_10.4")
        );
        assert_eq!(MinVersion::parse("bash>4").unwrap().op, ">");
        assert!(MinVersion::parse("bash = 4").is_err());
        assert!(MinVersion::parse(">= 4").is_err());
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 1), (1, 1));
    }
}
