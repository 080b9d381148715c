//! The site trust store: a directory holding `trust.toml` and the public keys it names.
//! The format is documented with a full example in `keys/README.md`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::key::{KeyError, PublicKey};

/// Largest trust.toml / exception file we read.
const MAX_FILE: u64 = 1 << 20;

/// Errors loading a trust store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// trust.toml is not valid (message carries line and column).
    #[error("{path}: {message}")]
    Toml { path: String, message: String },
    /// A semantic error in trust.toml.
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
    /// A key file is bad.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// `trust.toml`, as written (paths not yet resolved).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Format version; must be 1.
    pub format: u32,
    /// Maximum age of an approval (from its `timeVerified`), in days.
    pub max_approval_age_days: u32,
    /// Whether a build provenance signed by the wafer's VO administrator is required.
    #[serde(default)]
    pub require_provenance: bool,
    /// Site reviewers.
    pub reviewers: Reviewers,
    /// VO administrators.
    #[serde(default)]
    pub vo_admins: Vec<VoAdmin>,
    /// Revocations.
    #[serde(default)]
    pub revoked: Revoked,
    /// Lowest allowed version per wafer name.
    #[serde(default)]
    pub min_versions: Vec<MinVersion>,
    /// Signed rollback exceptions (DSSE envelope files, relative to the store directory).
    #[serde(default)]
    pub rollback_exceptions: Vec<String>,
}

/// `[reviewers]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reviewers {
    /// Distinct reviewer signatures needed.
    pub threshold: u32,
    /// Public key files.
    pub keys: Vec<String>,
}

/// `[[vo_admins]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoAdmin {
    /// The VO.
    pub vo: String,
    /// Public key file.
    pub key: String,
    /// Wafer name patterns (`*`, `?`) this administrator may publish.
    pub wafers: Vec<String>,
}

/// `[revoked]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    /// Revoked key ids.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Revoked digests, `ALG:HEX` (`sha256`, `dm-verity-sha256`).
    #[serde(default)]
    pub digests: Vec<String>,
}

/// `[[min_versions]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinVersion {
    /// Wafer name (exact).
    pub wafer: String,
    /// Lowest allowed version.
    pub version: String,
}

/// A loaded trust store.
#[derive(Debug, Clone)]
pub struct TrustStore {
    /// The configuration.
    pub config: TrustConfig,
    /// Reviewer keys.
    pub reviewers: Vec<PublicKey>,
    /// VO administrators with their keys.
    pub vo_admins: Vec<(VoAdmin, PublicKey)>,
    /// Rollback exception envelopes (file name, bytes), verified at verification time.
    pub exceptions: Vec<(String, Vec<u8>)>,
}

impl TrustConfig {
    /// Parses and checks trust.toml text (`path` names it in errors).
    pub fn from_toml(text: &str, path: &str) -> Result<Self, StoreError> {
        let c: TrustConfig = toml::from_str(text).map_err(|e| StoreError::Toml {
            path: path.into(),
            message: e.to_string(),
        })?;
        let inv = |field: &str, message: String| StoreError::Invalid {
            path: path.into(),
            field: field.into(),
            message,
        };
        if c.format != 1 {
            return Err(inv(
                "format",
                format!("unsupported format {}, expected 1", c.format),
            ));
        }
        if c.reviewers.threshold == 0 {
            return Err(inv("reviewers.threshold", "must be at least 1".into()));
        }
        if c.reviewers.threshold as usize > c.reviewers.keys.len() {
            return Err(inv(
                "reviewers.threshold",
                format!(
                    "{} exceeds the {} reviewer keys",
                    c.reviewers.threshold,
                    c.reviewers.keys.len()
                ),
            ));
        }
        if c.max_approval_age_days == 0 {
            return Err(inv("max_approval_age_days", "must be at least 1".into()));
        }
        for (i, k) in c.revoked.keys.iter().enumerate() {
            if k.len() != 64
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(inv(
                    &format!("revoked.keys[{i}]"),
                    format!("{k:?} is not a 64-character lowercase hex key id"),
                ));
            }
        }
        for (i, d) in c.revoked.digests.iter().enumerate() {
            let ok = d.split_once(':').is_some_and(|(alg, hex)| {
                matches!(alg, "sha256" | "dm-verity-sha256")
                    && hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            });
            if !ok {
                return Err(inv(
                    &format!("revoked.digests[{i}]"),
                    format!("{d:?} is not sha256:HEX or dm-verity-sha256:HEX"),
                ));
            }
        }
        for (i, v) in c.vo_admins.iter().enumerate() {
            if v.vo.is_empty() || v.wafers.is_empty() {
                return Err(inv(
                    &format!("vo_admins[{i}]"),
                    "vo and wafers must not be empty".into(),
                ));
            }
        }
        for (i, m) in c.min_versions.iter().enumerate() {
            if m.wafer.is_empty() || m.version.is_empty() {
                return Err(inv(
                    &format!("min_versions[{i}]"),
                    "wafer and version must not be empty".into(),
                ));
            }
        }
        let files = c
            .reviewers
            .keys
            .iter()
            .chain(c.vo_admins.iter().map(|v| &v.key))
            .chain(&c.rollback_exceptions);
        for f in files {
            if !is_confined(f) {
                return Err(inv(
                    "key/exception path",
                    format!("{f:?} must be a relative path inside the store (no '..')"),
                ));
            }
        }
        Ok(c)
    }
}

fn is_confined(p: &str) -> bool {
    !p.is_empty()
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn read_small(path: &Path) -> Result<Vec<u8>, StoreError> {
    use std::io::Read;
    let io = |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut v = Vec::new();
    f.take(MAX_FILE + 1).read_to_end(&mut v).map_err(io)?;
    if v.len() as u64 > MAX_FILE {
        return Err(StoreError::Invalid {
            path: path.display().to_string(),
            field: "size".into(),
            message: format!("larger than {MAX_FILE} bytes"),
        });
    }
    Ok(v)
}

impl TrustStore {
    /// Loads `DIR/trust.toml` and the key and exception files it names.
    pub fn load(dir: &Path) -> Result<Self, StoreError> {
        let tpath: PathBuf = dir.join("trust.toml");
        let text = String::from_utf8(read_small(&tpath)?).map_err(|_| StoreError::Toml {
            path: tpath.display().to_string(),
            message: "not UTF-8".into(),
        })?;
        let config = TrustConfig::from_toml(&text, &tpath.display().to_string())?;
        let reviewers = config
            .reviewers
            .keys
            .iter()
            .map(|k| PublicKey::load(&dir.join(k)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = BTreeMap::new();
        for (k, name) in reviewers.iter().zip(&config.reviewers.keys) {
            if let Some(prev) = seen.insert(k.keyid(), name) {
                return Err(StoreError::Invalid {
                    path: tpath.display().to_string(),
                    field: "reviewers.keys".into(),
                    message: format!(
                        "{name} is the same key as {prev}; the threshold counts distinct keys"
                    ),
                });
            }
        }
        let vo_admins = config
            .vo_admins
            .iter()
            .map(|v| Ok((v.clone(), PublicKey::load(&dir.join(&v.key))?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let exceptions = config
            .rollback_exceptions
            .iter()
            .map(|f| Ok((f.clone(), read_small(&dir.join(f))?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        tracing::debug!(
            reviewers = reviewers.len(),
            vo_admins = vo_admins.len(),
            "trust store loaded"
        );
        Ok(TrustStore {
            config,
            reviewers,
            vo_admins,
            exceptions,
        })
    }

    /// Whether the key id (current or legacy form) is revoked.
    pub fn is_key_revoked(&self, k: &PublicKey) -> bool {
        self.config.revoked.keys.iter().any(|r| k.has_keyid(r))
    }

    /// Whether `alg:hex` is revoked.
    pub fn is_digest_revoked(&self, alg: &str, hex: &str) -> bool {
        self.config
            .revoked
            .digests
            .iter()
            .any(|d| d.split_once(':') == Some((alg, hex)))
    }

    /// The lowest allowed version of wafer `name`, if any.
    pub fn min_version(&self, name: &str) -> Option<&str> {
        self.config
            .min_versions
            .iter()
            .find(|m| m.wafer == name)
            .map(|m| m.version.as_str())
    }

    /// Every key the store knows (reviewers and VO administrators).
    pub fn all_keys(&self) -> Vec<PublicKey> {
        let mut v = self.reviewers.clone();
        v.extend(self.vo_admins.iter().map(|(_, k)| *k));
        v
    }
}

/// Matches `name` against a pattern where `*` is any run of characters and `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Compares two version strings, rpm-like but minimal (the real rpmvercmp lives in pkgdb, which
/// this bottom crate must not depend on): both are split into runs of digits and runs of
/// letters (other characters separate runs); digit runs compare numerically, letter runs
/// byte-wise, a digit run is newer than a letter run, and when one runs out of segments the
/// longer is newer. `~` sorts before anything, even the end (pre-releases).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        let skip = |s: &[u8]| {
            s.iter()
                .position(|c| c.is_ascii_alphanumeric() || *c == b'~')
                .unwrap_or(s.len())
        };
        a = &a[skip(a)..];
        b = &b[skip(b)..];
        match (a.first() == Some(&b'~'), b.first() == Some(&b'~')) {
            (true, true) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (true, false) => return Less,
            (false, true) => return Greater,
            _ => {}
        }
        match (a.is_empty(), b.is_empty()) {
            (true, true) => return Equal,
            (true, false) => return Less,
            (false, true) => return Greater,
            _ => {}
        }
        let numeric = a[0].is_ascii_digit();
        let run = |s: &[u8]| {
            s.iter()
                .position(|c| {
                    if numeric {
                        !c.is_ascii_digit()
                    } else {
                        !c.is_ascii_alphabetic()
                    }
                })
                .unwrap_or(s.len())
        };
        let (ra, rb) = (&a[..run(a)], &b[..run(b)]);
        if rb.is_empty() {
            // b's segment is of the other kind: numeric is newer.
            return if numeric { Greater } else { Less };
        }
        let ord = if numeric {
            let ta = trim_zeros(ra);
            let tb = trim_zeros(rb);
            ta.len().cmp(&tb.len()).then(ta.cmp(tb))
        } else {
            ra.cmp(rb)
        };
        if ord != Equal {
            return ord;
        }
        a = &a[ra.len()..];
        b = &b[rb.len()..];
    }
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|c| **c == b'0').count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn versions() {
        for (a, b, o) in [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("2.0", "2.0.1", Less),
            ("1.0a", "1.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.a", "1.1", Less),
            ("001", "1", Equal),
            ("3.1-2", "3.1-10", Less),
        ] {
            assert_eq!(compare_versions(a, b), o, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), o.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("atlas-*", "atlas-squid"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("atlas-*", "cms-squid"));
        assert!(!glob_match("a?c", "ac"));
    }

    #[test]
    fn config_errors_name_the_field_and_line() {
        let ok = "format = 1\nmax_approval_age_days = 30\n[reviewers]\nthreshold = 1\nkeys = [\"r.pub\"]\n";
        TrustConfig::from_toml(ok, "t").unwrap();
        let e = TrustConfig::from_toml(&format!("{ok}bogus = 1\n"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line") && e.contains("bogus"), "{e}");
        let e = TrustConfig::from_toml(&ok.replace("threshold = 1", "threshold = 2"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("reviewers.threshold"), "{e}");
        let e = TrustConfig::from_toml(&ok.replace("r.pub", "../r.pub"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside the store"), "{e}");
        let e = TrustConfig::from_toml(&format!("{ok}[revoked]\ndigests = [\"md5:00\"]\n"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("revoked.digests[0]"), "{e}");
    }
}
