//! The checks dpkg's field parsers (lib/dpkg/fields.c, parsehelp.c) make on a status file's
//! values. A value dpkg refuses is an error here too; what dpkg only warns about is accepted.

use super::stanza::is_space;

/// `Status` first word, in dpkg's order.
pub(crate) const WANTS: [&str; 5] = ["unknown", "install", "hold", "deinstall", "purge"];
/// `Status` second word.
pub(crate) const EFLAGS: [&str; 2] = ["ok", "reinstreq"];
/// `Status` third word, in dpkg's order (a later state is further installed).
pub(crate) const STATES: [&str; 8] = [
    "not-installed",
    "config-files",
    "half-installed",
    "unpacked",
    "half-configured",
    "triggers-awaited",
    "triggers-pending",
    "installed",
];
const BOOLEANS: [&str; 2] = ["no", "yes"];
/// `Multi-Arch` values, in dpkg's order.
pub(crate) const MULTIARCH: [&str; 4] = ["no", "same", "allowed", "foreign"];
const PRIORITIES: [&str; 5] = ["required", "important", "standard", "optional", "extra"];

fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

/// dpkg's `parse_nv`: a case-insensitive prefix match of one of `names` at the start of `s`,
/// white space after it skipped. `last`: nothing may follow. `fallback`: no match is not an
/// error (`Ok(None)`). Returns the index and the rest.
pub(crate) fn parse_nv<'a>(
    s: &'a [u8],
    names: &[&str],
    last: bool,
    fallback: bool,
) -> Result<Option<(usize, &'a [u8])>, String> {
    if s.is_empty() {
        return Err("is missing a value".into());
    }
    let Some(i) = names
        .iter()
        .position(|n| s.len() >= n.len() && s[..n.len()].eq_ignore_ascii_case(n.as_bytes()))
    else {
        if fallback {
            return Ok(None);
        }
        return Err(format!("has invalid value {:?}", lossy(s, 50)));
    };
    let mut rest = &s[names[i].len()..];
    while let Some((&c, r)) = rest.split_first() {
        if !is_space(c) {
            break;
        }
        rest = r;
    }
    if last && !rest.is_empty() {
        return Err("has trailing junk".into());
    }
    Ok(Some((i, rest)))
}

/// Lossy text of at most `max` bytes of `b`.
pub(crate) fn lossy(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned()
}

/// The `Status` words as indexes into [`WANTS`], [`EFLAGS`], [`STATES`].
pub(crate) fn status(value: &[u8]) -> Result<(usize, usize, usize), String> {
    let (want, rest) = parse_nv(value, &WANTS, false, false)
        .map_err(|e| format!("first (want) word in 'Status' field: {e}"))?
        .unwrap_or((0, b""));
    let (eflag, rest) = parse_nv(rest, &EFLAGS, false, false)
        .map_err(|e| format!("second (error) word in 'Status' field: {e}"))?
        .unwrap_or((0, b""));
    let (state, _) = parse_nv(rest, &STATES, true, false)
        .map_err(|e| format!("third (status) word in 'Status' field: {e}"))?
        .unwrap_or((0, b""));
    Ok((want, eflag, state))
}

/// `Essential`, `Protected`: yes/no (empty is accepted).
pub(crate) fn boolean(field: &str, value: &[u8]) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    parse_nv(value, &BOOLEANS, true, false)
        .map(|_| ())
        .map_err(|e| format!("boolean (yes/no) '{field}' field: {e}"))
}

/// `Multi-Arch`: index into [`MULTIARCH`] (`None` when empty).
pub(crate) fn multiarch(value: &[u8]) -> Result<Option<usize>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    parse_nv(value, &MULTIARCH, true, false)
        .map(|o| o.map(|(i, _)| i))
        .map_err(|e| format!("quadstate (foreign/allowed/same/no) 'Multi-Arch' field: {e}"))
}

/// `Priority`: a known word must stand alone; anything else is an "other" priority.
pub(crate) fn priority(value: &[u8]) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    parse_nv(value, &PRIORITIES, true, true)
        .map(|_| ())
        .map_err(|e| format!("word in 'Priority' field: {e}"))
}

/// dpkg's `pkg_name_is_illegal`.
pub(crate) fn package_name_error(name: &[u8]) -> Option<String> {
    let Some(&first) = name.first() else {
        return Some("may not be empty string".into());
    };
    if !is_alnum(first) {
        return Some("must start with an alphanumeric character".into());
    }
    name.iter()
        .find(|&&c| !is_alnum(c) && !b"-+._".contains(&c))
        .map(|&c| {
            format!(
                "character {:?} not allowed (only letters, digits and characters '-+._')",
                c as char
            )
        })
}

/// dpkg's `dpkg_arch_name_is_illegal`.
pub(crate) fn arch_name_error(name: &[u8]) -> Option<String> {
    let Some(&first) = name.first() else {
        return Some("may not be empty string".into());
    };
    if !is_alnum(first) {
        return Some("must start with an alphanumeric character".into());
    }
    name.iter().find(|&&c| !is_alnum(c) && c != b'-').map(|&c| {
        format!(
            "character {:?} not allowed (only letters, digits and characters '-')",
            c as char
        )
    })
}

/// A version as dpkg's `parseversion` splits it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Version {
    pub epoch: u32,
    pub upstream: Vec<u8>,
    pub revision: Vec<u8>,
}

impl Version {
    /// As `dpkg-query` prints `${Version}`: the epoch only when not 0, the revision only when set.
    pub fn display(&self) -> String {
        let mut s = String::new();
        if self.epoch != 0 {
            s.push_str(&format!("{}:", self.epoch));
        }
        s.push_str(&String::from_utf8_lossy(&self.upstream));
        if !self.revision.is_empty() {
            s.push('-');
            s.push_str(&String::from_utf8_lossy(&self.revision));
        }
        s
    }
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// dpkg's `parseversion`: `Err` for what it refuses (in the lax mode of the status file, bad
/// characters are only warnings and the version is kept).
pub(crate) fn version(value: &[u8]) -> Result<Version, String> {
    let mut s = value;
    while let Some((&c, r)) = s.split_first() {
        if !is_blank(c) {
            break;
        }
        s = r;
    }
    if s.is_empty() {
        return Err("version string is empty".into());
    }
    let end = s.iter().position(|&c| is_blank(c)).unwrap_or(s.len());
    if s[end..].iter().any(|&c| !is_blank(c)) {
        return Err("version string has embedded spaces".into());
    }
    let s = &s[..end];
    let mut v = Version::default();
    let rest = match s.iter().position(|&c| c == b':') {
        Some(colon) => {
            v.epoch = strtol_epoch(&s[..colon], s)?;
            let rest = &s[colon + 1..];
            if rest.is_empty() {
                return Err("nothing after colon in version number".into());
            }
            rest
        }
        None => s,
    };
    match rest.iter().rposition(|&c| c == b'-') {
        Some(h) => {
            v.upstream = rest[..h].to_vec();
            v.revision = rest[h + 1..].to_vec();
            if v.revision.is_empty() {
                return Err("revision number is empty".into());
            }
        }
        None => v.upstream = rest.to_vec(),
    }
    if v.upstream.is_empty() {
        return Err("version number is empty".into());
    }
    Ok(v)
}

/// The epoch as C's `strtol` reads the text before the colon (the whole text must be the
/// number, as dpkg requires the number to end at the colon).
fn strtol_epoch(before: &[u8], whole: &[u8]) -> Result<u32, String> {
    let mut i = 0;
    while i < before.len() && is_space(before[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < before.len() && (before[i] == b'+' || before[i] == b'-') {
        neg = before[i] == b'-';
        i += 1;
    }
    let digits = &before[i..];
    let n = digits.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        // strtol read nothing: its end pointer is the start of the string.
        let _ = whole;
        return Err("epoch in version is empty".into());
    }
    if n != digits.len() {
        return Err("epoch in version is not number".into());
    }
    let mut val: u64 = 0;
    for &d in digits {
        val = val.saturating_mul(10).saturating_add(u64::from(d - b'0'));
    }
    if neg && val != 0 {
        return Err("epoch in version is negative".into());
    }
    if val > i32::MAX as u64 {
        return Err("epoch in version is too big".into());
    }
    Ok(val as u32)
}

/// One dependency field (`Depends`, `Provides`, ...), checked as dpkg's `f_dependency`.
pub(crate) fn dependency(field: &str, value: &[u8]) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let no_alternatives = matches!(field, "Conflicts" | "Breaks" | "Provides" | "Replaces");
    let at = |p: usize| value.get(p).copied().unwrap_or(0);
    let mut p = 0usize;
    loop {
        loop {
            let start = p;
            while p < value.len() && !is_space(at(p)) && !b":(,|".contains(&at(p)) {
                p += 1;
            }
            if p == start {
                return Err(format!(
                    "'{field}' field, missing package name, or garbage where package name expected"
                ));
            }
            let name = &value[start..p];
            if let Some(e) = package_name_error(name) {
                return Err(format!(
                    "'{field}' field, invalid package name {:?}: {e}",
                    lossy(name, 255)
                ));
            }
            let shown = lossy(name, 255);
            if at(p) == b':' {
                p += 1;
                let a = p;
                while p < value.len() && !is_space(at(p)) && !b"(,|".contains(&at(p)) {
                    p += 1;
                }
                if p == a {
                    return Err(format!("'{field}' field, missing architecture name, or garbage where architecture name expected"));
                }
                let arch = &value[a..p];
                if arch != b"any" && arch != b"all" && arch != b"native" {
                    if let Some(e) = arch_name_error(arch) {
                        return Err(format!(
                            "'{field}' field, reference to {shown:?}: invalid architecture name {:?}: {e}",
                            lossy(arch, 255)
                        ));
                    }
                }
            }
            while is_space(at(p)) {
                p += 1;
            }
            if at(p) == b'(' {
                p += 1;
                while is_space(at(p)) {
                    p += 1;
                }
                let c1 = at(p);
                if c1 == b'<' || c1 == b'>' {
                    p += 1;
                    let c2 = at(p);
                    if c2 == b'=' || c2 == c1 {
                        p += 1;
                    } else if c2 == b'<' || c2 == b'>' {
                        return Err(format!(
                            "'{field}' field, reference to {shown:?}: bad version relationship {}{}",
                            c1 as char, c2 as char
                        ));
                    }
                } else if c1 == b'=' {
                    p += 1;
                }
                while is_space(at(p)) {
                    p += 1;
                }
                let vs = p;
                while p < value.len() && at(p) != b')' && at(p) != b'(' && !is_space(at(p)) {
                    p += 1;
                }
                let ver = &value[vs..p];
                while is_space(at(p)) {
                    p += 1;
                }
                if p >= value.len() {
                    return Err(format!(
                        "'{field}' field, reference to {shown:?}: version unterminated"
                    ));
                }
                if at(p) != b')' {
                    return Err(format!(
                        "'{field}' field, reference to {shown:?}: version contains {:?} instead of ')'",
                        at(p) as char
                    ));
                }
                if let Err(e) = version(ver) {
                    return Err(format!(
                        "'{field}' field, reference to {shown:?}: version {:?}: {e}",
                        lossy(ver, 255)
                    ));
                }
                p += 1;
                while is_space(at(p)) {
                    p += 1;
                }
            }
            if p >= value.len() || at(p) == b',' {
                break;
            }
            if at(p) != b'|' {
                return Err(format!(
                    "'{field}' field, syntax error after reference to package {shown:?}"
                ));
            }
            if no_alternatives {
                return Err(format!("alternatives ('|') not allowed in '{field}' field"));
            }
            p += 1;
            while is_space(at(p)) {
                p += 1;
            }
        }
        if p >= value.len() {
            return Ok(());
        }
        p += 1;
        while is_space(at(p)) {
            p += 1;
        }
    }
}

/// One `Conffiles` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conffile {
    /// Absolute path (`/etc/foo`).
    pub path: String,
    /// Path bytes as written (normalised to start with one `/`).
    pub raw_path: Vec<u8>,
    /// The md5 recorded (or `newconffile`).
    pub hash: String,
    /// Marked `obsolete`.
    pub obsolete: bool,
    /// Marked `remove-on-upgrade`.
    pub remove_on_upgrade: bool,
}

/// dpkg's `path_skip_slash_dotslash`.
pub(crate) fn skip_slash_dotslash(mut p: &[u8]) -> &[u8] {
    loop {
        if p.first() == Some(&b'/') {
            p = &p[1..];
        } else if p.starts_with(b"./") {
            p = &p[2..];
        } else {
            return p;
        }
    }
}

/// `Conffiles`, checked and split as dpkg's `f_conffiles`.
pub(crate) fn conffiles(value: &[u8]) -> Result<Vec<Conffile>, String> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while i < value.len() {
        let c = value[i];
        i += 1;
        if c == b'\n' {
            continue;
        }
        if c != b' ' {
            return Err(format!(
                "value for 'Conffiles' field has line starting with non-space {:?}",
                c as char
            ));
        }
        let line_start = i;
        let end = value[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(value.len(), |n| i + n);
        let malformed = || {
            format!(
                "value for 'Conffiles' field has malformed line {:?}",
                lossy(&value[line_start..end], 250)
            )
        };
        // The last word before `from`: the space before it must lie past the first two bytes
        // of the line and before its last byte.
        let last_word = |from: usize| -> Result<(usize, usize), String> {
            if from <= line_start + 1 {
                return Err(malformed());
            }
            // dpkg relies on value[-1] being the space that started the line.
            let sp = value[line_start - 1..from]
                .iter()
                .rposition(|&b| b == b' ')
                .map_or(line_start - 1, |n| line_start - 1 + n);
            if sp <= line_start + 1 || sp + 1 >= end {
                return Err(malformed());
            }
            Ok((sp, sp + 1))
        };
        let (mut name_end, mut word) = last_word(end)?;
        let mut hash_range = (word, end);
        let remove_on_upgrade = &value[hash_range.0..hash_range.1] == b"remove-on-upgrade";
        if remove_on_upgrade {
            let from = name_end;
            (name_end, word) = last_word(from)?;
            hash_range = (word, from);
        }
        let obsolete = &value[hash_range.0..hash_range.1] == b"obsolete";
        if obsolete {
            let from = name_end;
            (name_end, word) = last_word(from)?;
            hash_range = (word, from);
        }
        let name_start = line_start
            + (value[line_start..].len() - skip_slash_dotslash(&value[line_start..]).len());
        if name_end <= name_start {
            return Err("root or empty directory listed as a conffile in 'Conffiles' field".into());
        }
        let mut raw_path = vec![b'/'];
        raw_path.extend_from_slice(&value[name_start..name_end]);
        out.push(Conffile {
            path: String::from_utf8_lossy(&raw_path).into_owned(),
            raw_path,
            hash: String::from_utf8_lossy(&value[hash_range.0..hash_range.1]).into_owned(),
            obsolete,
            remove_on_upgrade,
        });
        i = end;
    }
    Ok(out)
}

/// dpkg's `scan_word` split (space, tab, newline, carriage return).
fn words(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .filter(|w| !w.is_empty())
}

/// `Triggers-Pending`: trigger names (no control characters, spaces or non-ASCII), no repeats.
pub(crate) fn triggers_pending(value: &[u8]) -> Result<usize, String> {
    let mut seen: Vec<&[u8]> = Vec::new();
    for w in words(value) {
        if w.iter().any(|&c| c <= b' ' || c >= 0o177) {
            return Err(format!(
                "illegal pending trigger name {:?}: trigger name contains invalid character",
                lossy(w, 255)
            ));
        }
        if seen.contains(&w) {
            return Err(format!("duplicate pending trigger {:?}", lossy(w, 255)));
        }
        seen.push(w);
    }
    Ok(seen.len())
}

/// `Triggers-Awaited`: package names (`name[:arch]`), no repeats.
pub(crate) fn triggers_awaited(value: &[u8]) -> Result<usize, String> {
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for w in words(value) {
        let (name, arch) = match w.iter().position(|&c| c == b':') {
            Some(i) => (&w[..i], Some(&w[i + 1..])),
            None => (w, None),
        };
        let bad = package_name_error(name).or_else(|| {
            arch.and_then(|a| {
                if a == b"any" || a == b"all" || a == b"native" {
                    None
                } else {
                    arch_name_error(a)
                }
            })
        });
        if let Some(e) = bad {
            return Err(format!(
                "illegal package name in awaited trigger {:?}: {e}",
                lossy(w, 255)
            ));
        }
        let key = w.to_ascii_lowercase();
        if seen.contains(&key) {
            return Err(format!(
                "duplicate awaited trigger package {:?}",
                lossy(w, 255)
            ));
        }
        seen.push(key);
    }
    Ok(seen.len())
}
