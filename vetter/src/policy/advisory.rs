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

/// Split one CSV record (already a single physical line; quoted newlines are not supported).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == ',' {
            out.push(std::mem::take(&mut cur).trim().to_string());
            at_start = true;
        } else {
            if !c.is_whitespace() {
                at_start = false;
            }
            cur.push(c);
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    out.push(cur.trim().to_string());
    Ok(out)
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
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((hl, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let header =
        csv_fields(header.trim_start_matches('\u{feff}')).map_err(|m| AdvisoryError::Bad {
            file: file.into(),
            line: hl + 1,
            message: m,
        })?;
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
    for (i, l) in lines {
        if out.len() >= MAX_ADVISORIES {
            return Err(AdvisoryError::TooLarge {
                file: file.into(),
                limit: MAX_ADVISORIES,
            });
        }
        let line = i + 1;
        let f = csv_fields(l).map_err(|m| AdvisoryError::Bad {
            file: file.into(),
            line,
            message: m,
        })?;
        let get = |c: usize| f.get(c).cloned().unwrap_or_default();
        let opt = |c: Option<usize>| c.map(get).filter(|s| !s.is_empty());
        let severity = match opt(cs) {
            Some(s) => Some(s.parse::<Severity>().map_err(|e| AdvisoryError::Bad {
                file: file.into(),
                line,
                message: e.to_string(),
            })?),
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
