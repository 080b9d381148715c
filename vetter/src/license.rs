//! Package license strings as CycloneDX wants them: an SPDX license expression where the string
//! is one (or maps to one without guessing), otherwise the string as a plain license name.
//!
//! rpm's LICENSE tag holds Fedora/RHEL "short names" (`GPLv2+`, `ASL 2.0`, `GPLv2+ and LGPLv2+`),
//! not SPDX. A string that already is a valid SPDX expression (strict: current identifiers,
//! upper-case operators) is kept as it is. Otherwise each term between `and` / `or` / parentheses
//! is looked up in [`SHORT_NAMES`] (Fedora's legacy short names and Debian's DEP-5 copyright
//! names) or must be a current SPDX identifier; the rebuilt expression is checked with the
//! `spdx` crate's strict parser. Anything ambiguous (`BSD`, `GPL` without a version, `Artistic`,
//! `... with exceptions`, `/` as a separator) stays a name: a wrong SPDX id is worse than none.

/// A license as CycloneDX carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum License {
    /// A valid SPDX license expression (`licenses[].expression`).
    Expression(String),
    /// Free text (`licenses[].license.name`).
    Name(String),
}

/// Fedora/RHEL legacy short names and Debian DEP-5 short names with an exact SPDX equivalent.
/// Ambiguous names (`BSD`, `GPL`, `LGPL`, `Artistic`, `MIT with advertising`, `Public Domain`)
/// are deliberately absent.
pub const SHORT_NAMES: &[(&str, &str)] = &[
    // Fedora / RHEL (https://fedoraproject.org/wiki/Licensing:Main, the "old" short names).
    ("GPL+", "GPL-1.0-or-later"),
    ("GPLv1+", "GPL-1.0-or-later"),
    ("GPLv2", "GPL-2.0-only"),
    ("GPLv2+", "GPL-2.0-or-later"),
    ("GPLv3", "GPL-3.0-only"),
    ("GPLv3+", "GPL-3.0-or-later"),
    ("LGPLv2", "LGPL-2.0-only"),
    ("LGPLv2+", "LGPL-2.0-or-later"),
    ("LGPLv2.1", "LGPL-2.1-only"),
    ("LGPLv2.1+", "LGPL-2.1-or-later"),
    ("LGPLv3", "LGPL-3.0-only"),
    ("LGPLv3+", "LGPL-3.0-or-later"),
    ("AGPLv3", "AGPL-3.0-only"),
    ("AGPLv3+", "AGPL-3.0-or-later"),
    ("GFDL 1.3", "GFDL-1.3-only"),
    ("ASL 1.0", "Apache-1.0"),
    ("ASL 1.1", "Apache-1.1"),
    ("ASL 2.0", "Apache-2.0"),
    ("MPLv1.0", "MPL-1.0"),
    ("MPLv1.1", "MPL-1.1"),
    ("MPLv2.0", "MPL-2.0"),
    ("EPL", "EPL-1.0"),
    ("EPL 2.0", "EPL-2.0"),
    ("CDDL", "CDDL-1.0"),
    ("CPL", "CPL-1.0"),
    ("IBM", "IPL-1.0"),
    ("Artistic 2.0", "Artistic-2.0"),
    ("Artistic clarified", "ClArtistic"),
    ("Python", "Python-2.0"),
    ("zlib", "Zlib"),
    ("Boost", "BSL-1.0"),
    ("CC0", "CC0-1.0"),
    ("CC0 1.0", "CC0-1.0"),
    ("PSF", "PSF-2.0"),
    ("BSD 2-Clause", "BSD-2-Clause"),
    ("BSD 3-Clause", "BSD-3-Clause"),
    ("OpenLDAP", "OLDAP-2.8"),
    ("Bitstream Vera", "Bitstream-Vera"),
    ("QPL", "QPL-1.0"),
    ("Netscape", "NPL-1.1"),
    ("TCL", "TCL"),
    ("Vim", "Vim"),
    ("W3C", "W3C"),
    ("Sleepycat", "Sleepycat"),
    ("OpenSSL", "OpenSSL"),
    ("PostgreSQL", "PostgreSQL"),
    ("Ruby", "Ruby"),
    ("Sendmail", "Sendmail"),
    ("WTFPL", "WTFPL"),
    ("Libpng", "Libpng"),
    ("IJG", "IJG"),
    ("NCSA", "NCSA"),
    ("ISC", "ISC"),
    ("MIT", "MIT"),
    // Debian machine-readable copyright (DEP-5) short names.
    ("GPL-1+", "GPL-1.0-or-later"),
    ("GPL-2", "GPL-2.0-only"),
    ("GPL-2+", "GPL-2.0-or-later"),
    ("GPL-3", "GPL-3.0-only"),
    ("GPL-3+", "GPL-3.0-or-later"),
    ("LGPL-2", "LGPL-2.0-only"),
    ("LGPL-2+", "LGPL-2.0-or-later"),
    ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("LGPL-3", "LGPL-3.0-only"),
    ("LGPL-3+", "LGPL-3.0-or-later"),
    ("AGPL-3", "AGPL-3.0-only"),
    ("AGPL-3+", "AGPL-3.0-or-later"),
    ("Expat", "MIT"),
    ("BSD-2-clause", "BSD-2-Clause"),
    ("BSD-3-clause", "BSD-3-Clause"),
    ("BSD-4-clause", "BSD-4-Clause"),
    // Deprecated SPDX ids (the strict parser refuses them) with their current form.
    ("GPL-2.0", "GPL-2.0-only"),
    ("GPL-2.0+", "GPL-2.0-or-later"),
    ("GPL-3.0", "GPL-3.0-only"),
    ("GPL-3.0+", "GPL-3.0-or-later"),
    ("LGPL-2.0", "LGPL-2.0-only"),
    ("LGPL-2.0+", "LGPL-2.0-or-later"),
    ("LGPL-2.1", "LGPL-2.1-only"),
    ("LGPL-3.0", "LGPL-3.0-only"),
    ("LGPL-3.0+", "LGPL-3.0-or-later"),
];

/// Longest license string turned into an expression (rpm allows any length; real ones are short).
pub const MAX_LEN: usize = 1024;

/// Whether `s` is a valid SPDX license expression (strict mode: current license list ids,
/// `LicenseRef-`, `AND`/`OR`/`WITH`, parentheses).
pub fn is_spdx_expression(s: &str) -> bool {
    s.len() <= MAX_LEN && spdx::Expression::parse(s).is_ok()
}

/// The CycloneDX form of a package's license string; `None` when it is empty.
pub fn classify(raw: &str) -> Option<License> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    if is_spdx_expression(s) {
        return Some(License::Expression(s.to_string()));
    }
    match translate(s) {
        Some(e) if is_spdx_expression(&e) => Some(License::Expression(e)),
        _ => Some(License::Name(s.to_string())),
    }
}

/// One term (words between operators) mapped to an SPDX id, if it maps exactly.
fn term(words: &[&str]) -> Option<String> {
    let t = words.join(" ");
    if let Some((_, id)) = SHORT_NAMES.iter().find(|(n, _)| *n == t) {
        return Some((*id).to_string());
    }
    // A current SPDX id used on its own (`MIT`, `Apache-2.0`): kept as it is.
    match spdx::license_id(&t) {
        Some(id) if !id.is_deprecated() && id.name == t => Some(t),
        _ => None,
    }
}

/// The rpm-style expression rebuilt with SPDX ids and operators, or `None` when some term has
/// no exact SPDX equivalent.
fn translate(s: &str) -> Option<String> {
    if s.len() > MAX_LEN {
        return None;
    }
    let spaced = s.replace('(', " ( ").replace(')', " ) ");
    let mut out: Vec<String> = Vec::new();
    let mut words: Vec<&str> = Vec::new();
    let flush = |words: &mut Vec<&str>, out: &mut Vec<String>| -> Option<()> {
        if !words.is_empty() {
            out.push(term(words)?);
            words.clear();
        }
        Some(())
    };
    for w in spaced.split_whitespace() {
        match w.to_ascii_lowercase().as_str() {
            "and" | "or" => {
                flush(&mut words, &mut out)?;
                out.push(w.to_ascii_uppercase());
            }
            "(" | ")" => {
                flush(&mut words, &mut out)?;
                out.push(w.to_string());
            }
            // `with exceptions`, `with advertising`: not a precise SPDX exception.
            "with" => return None,
            _ => words.push(w),
        }
    }
    flush(&mut words, &mut out)?;
    Some(out.join(" ").replace("( ", "(").replace(" )", ")"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> Option<License> {
        Some(License::Expression(s.into()))
    }
    fn n(s: &str) -> Option<License> {
        Some(License::Name(s.into()))
    }

    #[test]
    fn rpm_short_names() {
        assert_eq!(classify("GPLv2+"), e("GPL-2.0-or-later"));
        assert_eq!(classify("ASL 2.0"), e("Apache-2.0"));
        assert_eq!(
            classify("GPLv2+ and LGPLv2+"),
            e("GPL-2.0-or-later AND LGPL-2.0-or-later")
        );
        assert_eq!(
            classify("MPLv1.1 or (GPLv2+ and LGPLv2.1+)"),
            e("MPL-1.1 OR (GPL-2.0-or-later AND LGPL-2.1-or-later)")
        );
        assert_eq!(classify("MIT"), e("MIT"));
        assert_eq!(classify("Apache-2.0 OR MIT"), e("Apache-2.0 OR MIT"));
        assert_eq!(classify("GPL-2.0+"), e("GPL-2.0-or-later"));
        assert_eq!(classify(" "), None);
    }

    #[test]
    fn ambiguous_names_stay_names() {
        for s in [
            "BSD",
            "GPL",
            "Public Domain",
            "GPLv2 with exceptions",
            "GPLv2+ and BSD",
            "GPL/BSD",
            "LGPLv2+ and (",
            "Copyright only",
            "and",
        ] {
            assert_eq!(classify(s), n(s), "{s}");
        }
        let long = "MIT and ".repeat(500) + "MIT";
        assert_eq!(classify(&long), n(&long));
    }
}
