//! dpkg's per-package files in `info/` and the `diversions` file, read as dpkg reads them
//! (src/main/filesdb.c `ensure_packagefiles_available`, lib/dpkg/db-fsys-digest.c
//! `parse_filehash_buffer`, db-fsys-divert.c `ensure_diversions`).

use super::fields::skip_slash_dotslash;
use super::{DpkgError, DpkgPackage};

fn syntax(file: &str, line: usize, what: impl Into<String>) -> DpkgError {
    DpkgError::Syntax {
        file: file.into(),
        line,
        what: what.into(),
    }
}

/// A path as dpkg's file database names it: leading `/` and `./` dropped, one `/` put back.
fn node_name(p: &[u8]) -> Vec<u8> {
    let mut out = vec![b'/'];
    out.extend_from_slice(skip_slash_dotslash(p));
    out
}

/// The base name of a package's files in `info/`: `NAME:ARCH` for a `Multi-Arch: same`
/// package once the database is in the multiarch layout (`info/format` says `1`), else `NAME`.
pub fn infodb_name(pkg: &DpkgPackage, info_format: &str) -> String {
    match (&pkg.arch, pkg.multi_arch.as_deref(), info_format.trim()) {
        (Some(a), Some("same"), f) if f.parse::<u32>().is_ok_and(|f| f >= 1) => {
            format!("{}:{a}", pkg.name)
        }
        _ => pkg.name.clone(),
    }
}

/// The newline-terminated lines of `data` (dpkg refuses a last line without newline: the file
/// was cut short).
fn lines<'a>(data: &'a [u8], file: &str) -> Result<Vec<&'a [u8]>, DpkgError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(syntax(
                file,
                out.len() + 1,
                "missing final newline (file cut short)",
            ));
        };
        out.push(&rest[..nl]);
        rest = &rest[nl + 1..];
    }
    Ok(out)
}

/// The paths of an `info/PKG.list` file, each as dpkg names it (`/.` for the root). Every line
/// must end in a newline and name something (a trailing `/` is dropped), as dpkg requires.
pub fn parse_list(data: &[u8], file: &str) -> Result<Vec<Vec<u8>>, DpkgError> {
    let mut out = Vec::new();
    for (i, mut l) in lines(data, file)?.into_iter().enumerate() {
        let line = i + 1;
        if let Some(s) = l.strip_suffix(b"/") {
            l = s;
        }
        if l.is_empty() {
            return Err(syntax(file, line, "empty file name"));
        }
        if l.contains(&0) {
            return Err(syntax(file, line, "NUL byte in file name"));
        }
        out.push(node_name(l));
    }
    Ok(out)
}

/// The `(md5, path)` pairs of an `info/PKG.md5sums` file (or a distroless `status.d/PKG.md5sums`):
/// each line 32 characters of digest, two spaces, a path, a newline, as dpkg requires. The
/// digest is kept as written (dpkg compares it as text).
pub fn parse_md5sums(data: &[u8], file: &str) -> Result<Vec<(String, Vec<u8>)>, DpkgError> {
    let mut out = Vec::new();
    for (i, mut l) in lines(data, file)?.into_iter().enumerate() {
        let line = i + 1;
        if l.len() < 35 {
            return Err(syntax(
                file,
                line,
                "missing value (want 32 digest characters, two spaces, a path)",
            ));
        }
        if &l[32..34] != b"  " {
            return Err(syntax(
                file,
                line,
                "missing value separator (two spaces after the digest)",
            ));
        }
        if let Some(s) = l.strip_suffix(b"/") {
            l = s;
        }
        let path = &l[34..];
        if path.is_empty() {
            return Err(syntax(file, line, "empty file name"));
        }
        if l.contains(&0) {
            return Err(syntax(file, line, "NUL byte"));
        }
        out.push((
            String::from_utf8_lossy(&l[..32]).into_owned(),
            node_name(path),
        ));
    }
    Ok(out)
}

/// One entry of `var/lib/dpkg/diversions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diversion {
    /// The diverted path (`/usr/bin/foo`).
    pub from: Vec<u8>,
    /// Where the diverted package's file goes instead.
    pub to: Vec<u8>,
    /// The package that made the diversion (`None` for a local one, written `:`).
    pub package: Option<String>,
}

/// The entries of a `diversions` file: groups of three lines (from, to, package or `:`).
pub fn parse_diversions(data: &[u8], file: &str) -> Result<Vec<Diversion>, DpkgError> {
    let lines = lines(data, file)?;
    if lines.len() % 3 != 0 {
        return Err(syntax(
            file,
            lines.len(),
            format!(
                "{} lines, not a whole number of three-line entries (file cut short)",
                lines.len()
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, c) in lines.chunks(3).enumerate() {
        if c.iter().any(|l| l.is_empty() || l.contains(&0)) {
            return Err(syntax(
                file,
                i * 3 + 1,
                "empty line or NUL byte in a diversion",
            ));
        }
        out.push(Diversion {
            from: node_name(c[0]),
            to: node_name(c[1]),
            package: (c[2] != b":").then(|| String::from_utf8_lossy(c[2]).into_owned()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_names_as_dpkg() {
        let l = parse_list(b"/.\n/usr/\n./etc/x\n//bin/sh\n", "a.list").unwrap();
        assert_eq!(l, [&b"/."[..], b"/usr", b"/etc/x", b"/bin/sh"]);
        let e = parse_list(b"/usr\n/usr/bin", "a.list").unwrap_err();
        assert_eq!(
            e.to_string(),
            "a.list line 2: missing final newline (file cut short)"
        );
        assert!(parse_list(b"/usr\n\n", "a.list").is_err());
        assert!(parse_list(b"/\n", "a.list").is_err());
    }

    #[test]
    fn md5sums_as_dpkg() {
        let h = "D41D8CD98F00B204E9800998ECF8427E";
        let m = parse_md5sums(format!("{h}  ./usr/bin/a\n").as_bytes(), "m").unwrap();
        assert_eq!(m, [(h.to_string(), b"/usr/bin/a".to_vec())]);
        for bad in [
            format!("{h} usr/bin/a\n"),
            format!("{h}  \n"),
            format!("{h}\n"),
            format!("{h}  usr/bin/a"),
        ] {
            assert!(parse_md5sums(bad.as_bytes(), "m").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn diversions_in_threes() {
        let d =
            parse_diversions(b"/bin/a\n/bin/a.real\npkg\n/etc/b\n/etc/b.local\n:\n", "d").unwrap();
        assert_eq!(d[0].package.as_deref(), Some("pkg"));
        assert_eq!(d[1].package, None);
        assert_eq!(d[1].to, b"/etc/b.local");
        assert!(parse_diversions(b"/bin/a\n/bin/a.real\n", "d").is_err());
    }
}
