//! Version comparison as rpm and dpkg do it.
//!
//! * [`rpmvercmp`] follows rpm's `rpmvercmp()` (lib/rpmvercmp.c, rpm 4.18): versions are split into
//!   maximal runs of ASCII digits or ASCII letters; every other byte is a separator (so non-ASCII
//!   bytes compare equal to separators); `~` sorts before anything, even the end of the string;
//!   `^` sorts after the end of the string but before any further segment; numeric segments
//!   compare by value (leading zeros ignored) and are newer than alphabetic ones.
//! * [`Evr`] is rpm's `[epoch:]version[-release]` (lib/rpmver.c `rpmverParse`/`rpmverCmp`).
//! * [`DpkgVersion`] follows dpkg's `parseversion()` and `verrevcmp()` (lib/dpkg/parsehelp.c,
//!   lib/dpkg/version.c; Debian Policy §5.6.12).

use std::cmp::Ordering;

/// Compare two version (or release) strings exactly as rpm's `rpmvercmp()` does.
///
/// Returns `Ordering::Less` when `a` is older than `b`.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    rpmvercmp_bytes(a.as_bytes(), b.as_bytes())
}

/// [`rpmvercmp`] on raw bytes (rpm headers need not hold UTF-8).
pub fn rpmvercmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut i, mut j) = (0usize, 0usize);
    while at(a, i) != 0 || at(b, j) != 0 {
        while at(a, i) != 0 && !is_rpm_sig(at(a, i)) {
            i += 1;
        }
        while at(b, j) != 0 && !is_rpm_sig(at(b, j)) {
            j += 1;
        }
        let (ca, cb) = (at(a, i), at(b, j));
        if ca == b'~' || cb == b'~' {
            if ca != b'~' {
                return Ordering::Greater;
            }
            if cb != b'~' {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == b'^' || cb == b'^' {
            if ca == 0 {
                return Ordering::Less;
            }
            if cb == 0 {
                return Ordering::Greater;
            }
            if ca != b'^' {
                return Ordering::Greater;
            }
            if cb != b'^' {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == 0 || cb == 0 {
            break;
        }
        let numeric = ca.is_ascii_digit();
        let class = |c: u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let (si, sj) = (i, j);
        while at(a, i) != 0 && class(at(a, i)) {
            i += 1;
        }
        while at(b, j) != 0 && class(at(b, j)) {
            j += 1;
        }
        let (mut sa, mut sb) = (&a[si..i], &b[sj..j]);
        if sb.is_empty() {
            // Segments of different kinds: numeric is newer.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        if numeric {
            while sa.first() == Some(&b'0') {
                sa = &sa[1..];
            }
            while sb.first() == Some(&b'0') {
                sb = &sb[1..];
            }
            match sa.len().cmp(&sb.len()) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        match sa.cmp(sb) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    match (at(a, i) == 0, at(b, j) == 0) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

fn is_rpm_sig(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'~' || c == b'^'
}

/// An rpm `[epoch:]version[-release]` label.
///
/// The epoch is kept as the digit string rpm saw (rpm compares it with `rpmvercmp`, so
/// `007` equals `7` and huge values do not overflow).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Evr {
    /// Epoch digits, `None` when the label has none (compares as `0`).
    pub epoch: Option<String>,
    /// Version.
    pub version: String,
    /// Release, `None` when the label has no `-`.
    pub release: Option<String>,
}

impl Evr {
    /// Split a label as rpm's `rpmverParse` does: leading digits followed by `:` are the epoch
    /// (an empty epoch before `:` means `0`), the last `-` starts the release.
    pub fn parse(s: &str) -> Evr {
        let digits = s.bytes().take_while(|c| c.is_ascii_digit()).count();
        let (epoch, rest) = if s.as_bytes().get(digits) == Some(&b':') {
            let e = &s[..digits];
            (
                Some(if e.is_empty() {
                    "0".to_string()
                } else {
                    e.to_string()
                }),
                &s[digits + 1..],
            )
        } else {
            (None, s)
        };
        // rpm looks for the last '-' after the epoch digits.
        match rest.rfind('-') {
            Some(p) => Evr {
                epoch,
                version: rest[..p].to_string(),
                release: Some(rest[p + 1..].to_string()),
            },
            None => Evr {
                epoch,
                version: rest.to_string(),
                release: None,
            },
        }
    }

    /// Build from parts as found in an rpm header (`EPOCH` is an integer tag there).
    pub fn new(epoch: Option<u32>, version: &str, release: &str) -> Evr {
        Evr {
            epoch: epoch.map(|e| e.to_string()),
            version: version.to_string(),
            release: Some(release.to_string()),
        }
    }

    /// Total order of rpm 4.18's `rpm.vercmp()`: epoch (missing = 0), then version, then release,
    /// where a label with a release is newer than an otherwise equal label without one.
    pub fn compare(&self, other: &Evr) -> Ordering {
        self.cmp_ev(other)
            .then_with(|| match (&self.release, &other.release) {
                (Some(a), Some(b)) => rpmvercmp(a, b),
                (Some(_), None) => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
                (None, None) => Ordering::Equal,
            })
    }

    /// Dependency-match order (rpm's `rpmdsCompare`): a missing release on either side matches
    /// any release, so `openssl >= 1.0` holds for `1.0-5`.
    pub fn compare_dep(&self, other: &Evr) -> Ordering {
        self.cmp_ev(other)
            .then_with(|| match (&self.release, &other.release) {
                (Some(a), Some(b)) => rpmvercmp(a, b),
                _ => Ordering::Equal,
            })
    }

    fn cmp_ev(&self, other: &Evr) -> Ordering {
        let e1 = self.epoch.as_deref().unwrap_or("0");
        let e2 = other.epoch.as_deref().unwrap_or("0");
        rpmvercmp(e1, e2).then_with(|| rpmvercmp(&self.version, &other.version))
    }
}

impl std::fmt::Display for Evr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(e) = &self.epoch {
            write!(f, "{e}:")?;
        }
        f.write_str(&self.version)?;
        if let Some(r) = &self.release {
            write!(f, "-{r}")?;
        }
        Ok(())
    }
}

/// Why a dpkg version string is rejected (messages as dpkg's `parseversion()` words them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpkgVersionError {
    /// Empty or blank string.
    #[error("version string is empty")]
    Empty,
    /// Whitespace inside the version.
    #[error("version string has embedded spaces")]
    EmbeddedSpace,
    /// `:` at the start.
    #[error("epoch in version is empty")]
    EmptyEpoch,
    /// Epoch with a non-digit.
    #[error("epoch in version is not number")]
    EpochNotNumber,
    /// Epoch starting with `-`.
    #[error("epoch in version is negative")]
    EpochNegative,
    /// Epoch above `i32::MAX`.
    #[error("epoch in version is too big")]
    EpochTooBig,
    /// Nothing after the epoch's colon.
    #[error("nothing after colon in version number")]
    NothingAfterColon,
    /// Empty upstream part.
    #[error("version number is empty")]
    EmptyVersion,
    /// `-` at the end.
    #[error("revision number is empty")]
    EmptyRevision,
    /// (Lax check) upstream does not start with a digit.
    #[error("version number does not start with digit")]
    NoLeadingDigit,
    /// (Lax check) character not allowed in the upstream part.
    #[error("invalid character in version number")]
    BadVersionChar,
    /// (Lax check) character not allowed in the revision.
    #[error("invalid character in revision number")]
    BadRevisionChar,
}

/// A Debian package version `[epoch:]upstream_version[-debian_revision]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DpkgVersion {
    /// Epoch, 0 when absent.
    pub epoch: u32,
    /// Upstream version.
    pub upstream: String,
    /// Debian revision, empty when absent (compares equal to `0`).
    pub revision: String,
}

impl DpkgVersion {
    /// Parse like dpkg's `parseversion()`: hard errors only (what dpkg refuses outright).
    /// Leading and trailing blanks are ignored; the first `:` ends the epoch; the last `-` starts
    /// the revision. Use [`DpkgVersion::check`] for the warnings dpkg also reports.
    pub fn parse(s: &str) -> Result<DpkgVersion, DpkgVersionError> {
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
        if s.is_empty() {
            return Err(DpkgVersionError::Empty);
        }
        if s.bytes().any(|c| c.is_ascii_whitespace()) {
            return Err(DpkgVersionError::EmbeddedSpace);
        }
        let (epoch, rest) = match s.find(':') {
            Some(p) => {
                let e = &s[..p];
                if e.is_empty() {
                    return Err(DpkgVersionError::EmptyEpoch);
                }
                if let Some(d) = e.strip_prefix('-') {
                    if !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()) {
                        return Err(DpkgVersionError::EpochNegative);
                    }
                    return Err(DpkgVersionError::EpochNotNumber);
                }
                if !e.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(DpkgVersionError::EpochNotNumber);
                }
                let v: u32 = match e.parse::<u64>() {
                    Ok(v) if v <= i32::MAX as u64 => v as u32,
                    _ => return Err(DpkgVersionError::EpochTooBig),
                };
                let rest = &s[p + 1..];
                if rest.is_empty() {
                    return Err(DpkgVersionError::NothingAfterColon);
                }
                (v, rest)
            }
            None => (0, s),
        };
        let (upstream, revision) = match rest.rfind('-') {
            Some(p) => {
                let r = &rest[p + 1..];
                if r.is_empty() {
                    return Err(DpkgVersionError::EmptyRevision);
                }
                (&rest[..p], r)
            }
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(DpkgVersionError::EmptyVersion);
        }
        Ok(DpkgVersion {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
        })
    }

    /// Parse and also apply dpkg's validity warnings (`dpkg --validate-version` rejects these).
    pub fn parse_strict(s: &str) -> Result<DpkgVersion, DpkgVersionError> {
        let v = Self::parse(s)?;
        v.check()?;
        Ok(v)
    }

    /// dpkg's warnings: upstream must start with a digit and use only `[A-Za-z0-9.+~:-]`;
    /// the revision only `[A-Za-z0-9.+~]`.
    pub fn check(&self) -> Result<(), DpkgVersionError> {
        if !self
            .upstream
            .as_bytes()
            .first()
            .is_some_and(|c| c.is_ascii_digit())
        {
            return Err(DpkgVersionError::NoLeadingDigit);
        }
        if !self
            .upstream
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-+~:".contains(&c))
        {
            return Err(DpkgVersionError::BadVersionChar);
        }
        if !self
            .revision
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+~".contains(&c))
        {
            return Err(DpkgVersionError::BadRevisionChar);
        }
        Ok(())
    }

    /// Compare as `dpkg --compare-versions` does: epoch numerically, then upstream, then revision
    /// with dpkg's `verrevcmp`.
    pub fn compare(&self, other: &DpkgVersion) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for DpkgVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DpkgVersion {
    /// Note: versions that differ only in leading zeros compare `Equal` although they are not `==`.
    fn cmp(&self, other: &Self) -> Ordering {
        self.compare(other)
    }
}

impl std::fmt::Display for DpkgVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

fn dpkg_order(c: u8) -> i32 {
    if c.is_ascii_digit() {
        0
    } else if c.is_ascii_alphabetic() {
        c as i32
    } else if c == b'~' {
        -1
    } else if c != 0 {
        c as i32 + 256
    } else {
        0
    }
}

/// dpkg's `verrevcmp()` on one version part (upstream or revision).
pub fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut i, mut j) = (0usize, 0usize);
    while at(a, i) != 0 || at(b, j) != 0 {
        let mut first_diff: i32 = 0;
        while (at(a, i) != 0 && !at(a, i).is_ascii_digit())
            || (at(b, j) != 0 && !at(b, j).is_ascii_digit())
        {
            let (ac, bc) = (dpkg_order(at(a, i)), dpkg_order(at(b, j)));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while at(a, i) == b'0' {
            i += 1;
        }
        while at(b, j) == b'0' {
            j += 1;
        }
        while at(a, i).is_ascii_digit() && at(b, j).is_ascii_digit() {
            if first_diff == 0 {
                first_diff = at(a, i) as i32 - at(b, j) as i32;
            }
            i += 1;
            j += 1;
        }
        if at(a, i).is_ascii_digit() {
            return Ordering::Greater;
        }
        if at(b, j).is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evr_parse_shapes() {
        let e = Evr::parse("2:1.0-3.el5");
        assert_eq!(e.epoch.as_deref(), Some("2"));
        assert_eq!(e.version, "1.0");
        assert_eq!(e.release.as_deref(), Some("3.el5"));
        let e = Evr::parse("a:1");
        assert_eq!(e.epoch, None);
        assert_eq!(e.version, "a:1");
        assert_eq!(Evr::parse(":1").epoch.as_deref(), Some("0"));
        assert_eq!(
            Evr::parse("1.0").compare_dep(&Evr::parse("1.0-7")),
            Ordering::Equal
        );
    }
}
