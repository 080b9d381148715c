//! Advisory lists a site imports: package, fixed-in version, advisory id, severity.
//!
//! CSV: a header line naming at least the columns `package`, `fixed`, `id` (order free, more
//! columns allowed, e.g. `severity`, `manager`, `title`); fields may be double-quoted (RFC 4180,
//! `""` inside quotes). JSON: an array of objects with the same keys.

use serde::{Deserialize, Serialize};

use super::format::Severity;

/// Largest advisory file accepted.
pub const MAX_ADVISORY_BYTES: usize = 64 << 20;
/// Most advisories in one file.
pub const MAX_ADVISORIES: usize = 1_000_000;

/// One advisory: installed `package` older than `fixed` is affected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advisory {
    /// Package name.
    pub package: String,
    /// First fixed version (rpm `[E:]V-R` or a dpkg version).
    pub fixed: String,
    /// Advisory id (`RHSA-2014:0376`, `DSA-2896-1`, `CVE-...`).
    pub id: String,
    /// Severity (absent: the rule's).
    #[serde(default)]
    pub severity: Option<Severity>,
    /// `rpm` or `dpkg` (absent: both).
    #[serde(default)]
    pub manager: Option<String>,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// 1-based line (CSV) or index (JSON) in the file, for messages.
    #[serde(skip)]
    pub line: usize,
}

/// Why an advisory file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdvisoryError {
    /// Over [`MAX_ADVISORY_BYTES`] or [`MAX_ADVISORIES`].
    #[error("{file}: too large (limit {limit})")]
    TooLarge {
        /// File.
        file: String,
        /// The limit.
        limit: usize,
    },
    /// CSV header without a needed column.
    #[error("{file}: line 1: the header has no {column:?} column")]
    MissingColumn {
        /// File.
        file: String,
        /// Column.
        column: String,
    },
    /// A bad line or entry.
    #[error("{file}: line {line}: {message}")]
    Bad {
        /// File.
        file: String,
        /// 1-based line (or entry index for JSON).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Malformed JSON.
    #[error("{file}: {message}")]
    Json {
        /// File.
        file: String,
        /// serde_json's message with line and column.
        message: String,
    },
}

fn check(a: &Advisory, file: &str) -> Result<(), AdvisoryError> {
    let bad = |m: String| AdvisoryError::Bad {
        file: file.to_string(),
        line: a.line,
        message: m,
    };
    if a.package.is_empty()
        || a.package
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad(format!("bad package name {:?}", a.package)));
    }
    if a.fixed.is_empty() || a.fixed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(format!("bad fixed-in version {:?}", a.fixed)));
    }
    if a.id.is_empty() {
        return Err(bad("empty advisory id".into()));
    }
    if let Some(m) = &a.manager {
        if m != "rpm" && m != "dpkg" {
            return Err(bad(format!("manager must be rpm or dpkg, not {m:?}")));
        }
        if m == "dpkg" {
            pkgdb::version::DpkgVersion::parse(&a.fixed)
                .map_err(|e| bad(format!("fixed-in version {:?}: {e}", a.fixed)))?;
        }
    }
    Ok(())
}

/// Parse a CSV advisory list; `file` names it in errors.
pub fn parse_csv(text: &str, file: &str) -> Result<Vec<Advisory>, AdvisoryError> {
    if text.len() > MAX_ADVISORY_BYTES {
        return Err(AdvisoryError::TooLarge {
            file: file.into(),
            limit: MAX_ADVISORY_BYTES,
        });
    }
    let bad = |line: usize, message: String| AdvisoryError::Bad {
        file: file.into(),
        line,
        message,
    };
    // RFC 4180 through the csv crate: quoted fields may hold commas, `""` and newlines; lines
    // starting with `#` are comments; blank lines are skipped; rows may differ in length.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    // Physical 1-based line where a record starts. The csv crate's position is where the
    // previous record ended, before the blank and comment lines it skips.
    let line_at = |byte: u64| {
        let b = text.as_bytes();
        let mut at = usize::try_from(byte).unwrap_or(usize::MAX).min(b.len());
        loop {
            match b.get(at) {
                Some(b'\r' | b'\n') => at += 1,
                Some(b'#') => {
                    at = memchr::memchr(b'\n', b.get(at..).unwrap_or_default())
                        .map_or(b.len(), |n| at + n + 1)
                }
                _ => break,
            }
        }
        b.get(..at)
            .map_or(0, |b| memchr::memchr_iter(b'\n', b).count())
            + 1
    };
    let line_of = |e: &csv::Error| e.position().map_or(0, |p| line_at(p.byte()));
    let header = match records.next() {
        None => return Ok(Vec::new()),
        Some(Err(e)) => return Err(bad(line_of(&e).max(1), csv_message(&e))),
        Some(Ok(r)) => r,
    };
    let header: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i == 0 {
                h.trim_start_matches('\u{feff}').trim().to_string()
            } else {
                h.to_string()
            }
        })
        .collect();
    let col = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let need = |name: &str| {
        col(name).ok_or_else(|| AdvisoryError::MissingColumn {
            file: file.into(),
            column: name.into(),
        })
    };
    let (cp, cf, ci) = (need("package")?, need("fixed")?, need("id")?);
    let (cs, cm, ct) = (col("severity"), col("manager"), col("title"));
    let mut out = Vec::new();
    for rec in records {
        if out.len() >= MAX_ADVISORIES {
            return Err(AdvisoryError::TooLarge {
                file: file.into(),
                limit: MAX_ADVISORIES,
            });
        }
        let f = rec.map_err(|e| bad(line_of(&e), csv_message(&e)))?;
        let line = f.position().map_or(0, |p| line_at(p.byte()));
        let get = |c: usize| f.get(c).unwrap_or_default().to_string();
        let opt = |c: Option<usize>| c.map(get).filter(|s| !s.is_empty());
        let severity = match opt(cs) {
            Some(s) => Some(
                s.parse::<Severity>()
                    .map_err(|e| bad(line, e.to_string()))?,
            ),
            None => None,
        };
        let a = Advisory {
            package: get(cp),
            fixed: get(cf),
            id: get(ci),
            severity,
            manager: opt(cm),
            title: opt(ct),
            line,
        };
        check(&a, file)?;
        out.push(a);
    }
    Ok(out)
}

/// A csv error's message without its position (the caller names the line).
fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8 in field {}", err.field() + 1),
        _ => e.to_string(),
    }
}

/// Parse a JSON advisory list (an array of objects); `file` names it in errors.
pub fn parse_json(text: &str, file: &str) -> Result<Vec<Advisory>, AdvisoryError> {
    if text.len() > MAX_ADVISORY_BYTES {
        return Err(AdvisoryError::TooLarge {
            file: file.into(),
            limit: MAX_ADVISORY_BYTES,
        });
    }
    let mut list: Vec<Advisory> = serde_json::from_str(text).map_err(|e| AdvisoryError::Json {
        file: file.into(),
        message: e.to_string(),
    })?;
    if list.len() > MAX_ADVISORIES {
        return Err(AdvisoryError::TooLarge {
            file: file.into(),
            limit: MAX_ADVISORIES,
        });
    }
    for (i, a) in list.iter_mut().enumerate() {
        a.line = i + 1;
        check(a, file)?;
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_columns() {
        let t = "id,package,fixed,severity,title\nRHSA-1,openssl,0.9.8e-27.el5_10.4,high,\"a, b \"\"c\"\"\"\n";
        let l = parse_csv(t, "a.csv").unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].title.as_deref(), Some("a, b \"c\""));
        assert_eq!(l[0].severity, Some(Severity::High));
        assert_eq!(l[0].line, 2);
        assert!(matches!(
            parse_csv("package,id\n", "a.csv"),
            Err(AdvisoryError::MissingColumn { .. })
        ));
        let e = parse_csv("package,fixed,id,severity\nx,1,A,urgent\n", "a.csv").unwrap_err();
        assert_eq!(e.to_string(), "a.csv: line 2: unknown severity \"urgent\" (expected info, low, medium, high or critical)");
        assert!(parse_csv("package,fixed,id\n\"x,1,A\n", "a.csv").is_err());
    }

    #[test]
    fn csv_rfc4180_newline_in_quoted_field_and_comments() {
        let t = "# exported list\r\npackage,fixed,id,title\r\n\
                 openssl,1.0.1e-16.el6_5.7,RHSA-2014:0376,\"openssl:\r\nHeartbleed, \"\"critical\"\"\"\r\n\
                 \r\nbash,4.1.2-15.el6_5.2,RHSA-2014:1306,\"Shellshock\"\r\n";
        let l = parse_csv(t, "a.csv").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0].title.as_deref(),
            Some("openssl:\r\nHeartbleed, \"critical\"")
        );
        assert_eq!((l[0].line, l[1].line), (3, 6));
        assert_eq!(l[1].package, "bash");
        // A BOM before the header is not part of the first column's name.
        assert_eq!(
            parse_csv("\u{feff}package,fixed,id\nx,1,A\n", "a.csv").unwrap()[0].package,
            "x"
        );
    }

    #[test]
    fn json_list() {
        let l = parse_json(r#"[{"package":"bash","fixed":"4.1.2-15.el6_5.2","id":"RHSA-2014:1306","severity":"critical"}]"#, "a.json").unwrap();
        assert_eq!(l[0].package, "bash");
        assert!(parse_json(
            r#"[{"package":"bash","fixed":"1","id":"X","cvss":9}]"#,
            "a.json"
        )
        .is_err());
        assert!(parse_json(r#"[{"package":"bash","fixed":"","id":"X"}]"#, "a.json").is_err());
    }
}
