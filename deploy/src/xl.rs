//! xl.cfg (xl.cfg(5)): a parser for the configuration syntax, a guest configuration writer that
//! reads back, and parsers for disk specs (xl-disk-configuration(5)) and vif specs
//! (xl-network-configuration(5)) that follow what `xl` itself accepts.

use std::fmt;

use thiserror::Error;

use crate::names::check_name;
use crate::site::{GuestType, XenKeys, XenVersion};

/// Largest config text parsed.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// Deepest list nesting.
pub const MAX_DEPTH: usize = 16;

/// xl.cfg / spec error.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum XlError {
    /// Syntax error at a line and column (1-based).
    #[error("line {line}, column {col}: {message}")]
    Syntax {
        /// Line.
        line: usize,
        /// Column.
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// A key is missing or has the wrong type/value.
    #[error("{key}: {message}")]
    Field {
        /// Key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A disk spec is invalid.
    #[error("disk spec {spec:?}: {message}")]
    Disk {
        /// The spec.
        spec: String,
        /// What is wrong.
        message: String,
    },
    /// A vif spec is invalid.
    #[error("vif spec {spec:?}: {message}")]
    Vif {
        /// The spec.
        spec: String,
        /// What is wrong.
        message: String,
    },
    /// Input too large.
    #[error("config is {0} bytes; at most {MAX_CONFIG_BYTES}")]
    TooLarge(usize),
    /// `xl list` output that does not have the expected shape.
    #[error("xl list output, line {line}: {message}")]
    List {
        /// Line (1-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Largest `xl list` output parsed.
pub const MAX_LIST_BYTES: usize = 4 << 20;
/// Most domains in one `xl list` output.
pub const MAX_DOMAINS: usize = 65536;

/// One line of `xl list`: a domain that exists (running, blocked, paused, shut down, crashed
/// or dying: any state counts as existing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Domain name (`(null)` for a domain xl could not name, e.g. one being torn down).
    pub name: String,
    /// Domain id.
    pub id: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// The six state flags, e.g. `-b----` (r running, b blocked, p paused, s shutdown,
    /// c crashed, d dying).
    pub state: String,
}

/// Parses the output of `xl list` (no options): a header line starting with `Name`, then one
/// line per domain, `NAME ID MEM VCPUS STATE TIME`. The last five columns are checked strictly
/// (numbers, six state flags from `rbpscd` or `-`, a time), the name is what comes before them.
/// Anything else is an error naming the line: the caller cannot tell which domains exist and
/// must not guess.
pub fn parse_list(text: &str) -> Result<Vec<Domain>, XlError> {
    if text.len() > MAX_LIST_BYTES {
        return Err(XlError::List {
            line: 0,
            message: format!("{} bytes; at most {MAX_LIST_BYTES}", text.len()),
        });
    }
    let mut out = Vec::new();
    let mut header = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let bad = |message: String| XlError::List { line, message };
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        if !header {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.first() != Some(&"Name") || !cols.contains(&"ID") {
                return Err(bad(format!(
                    "expected the header `Name ID Mem VCPUs State Time(s)`, found {:?}",
                    l.chars().take(80).collect::<String>()
                )));
            }
            header = true;
            continue;
        }
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.len() < 6 {
            return Err(bad(format!(
                "{} columns; a domain line has NAME ID MEM VCPUS STATE TIME",
                cols.len()
            )));
        }
        let n = cols.len();
        let id: u32 = cols[n - 5]
            .parse()
            .map_err(|_| bad(format!("domain id {:?} is not a number", cols[n - 5])))?;
        let memory_mib: u64 = cols[n - 4]
            .parse()
            .map_err(|_| bad(format!("memory {:?} is not a number", cols[n - 4])))?;
        let vcpus: u32 = cols[n - 3]
            .parse()
            .map_err(|_| bad(format!("vcpus {:?} is not a number", cols[n - 3])))?;
        let state = cols[n - 2];
        let flags_ok = state.len() == 6
            && state
                .bytes()
                .zip(*b"rbpscd")
                .all(|(c, f)| c == f || c == b'-');
        if !flags_ok {
            return Err(bad(format!(
                "state {:?} is not six flags like -b----",
                state.chars().take(20).collect::<String>()
            )));
        }
        let time = cols[n - 1];
        if time.is_empty()
            || !time.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            || time.parse::<f64>().is_err()
        {
            return Err(bad(format!(
                "time {:?} is not a number of seconds",
                time.chars().take(20).collect::<String>()
            )));
        }
        if out.len() >= MAX_DOMAINS {
            return Err(bad(format!("more than {MAX_DOMAINS} domains")));
        }
        out.push(Domain {
            name: cols[..n - 5].join(" "),
            id,
            memory_mib,
            vcpus,
            state: state.to_string(),
        });
    }
    if !header {
        return Err(XlError::List {
            line: 0,
            message: "empty: not even the header line (Domain-0 is always listed)".into(),
        });
    }
    Ok(out)
}

/// A value in an xl config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `"..."` or `'...'`.
    Str(String),
    /// Decimal, `0` octal or `0x` hex.
    Num(u64),
    /// `[ v, v, ... ]`, possibly nested.
    List(Vec<Value>),
}

impl Value {
    fn write(&self, out: &mut String) {
        match self {
            Value::Str(s) => out.push_str(&quote(s)),
            Value::Num(n) => out.push_str(&n.to_string()),
            Value::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    out.push_str(if i == 0 { " " } else { ", " });
                    v.write(out);
                }
                out.push_str(" ]");
            }
        }
    }
}

/// Quotes a string for xl.cfg (double quotes; `\`, `"` and control characters escaped).
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A parsed config file: settings in file order (a later setting of a key wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XlConfig {
    /// `(key, value)` in order.
    pub entries: Vec<(String, Value)>,
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
    col: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(u64),
    Eq,
    PlusEq,
    Semi,
    Comma,
    Open,
    Close,
    Newline,
    Eof,
}

impl<'a> Lexer<'a> {
    fn err(&self, message: impl Into<String>) -> XlError {
        XlError::Syntax {
            line: self.line,
            col: self.col,
            message: message.into(),
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }
    fn next(&mut self) -> Result<(Tok, usize, usize), XlError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r') => {
                    self.bump();
                }
                Some(b'#') => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
        let (line, col) = (self.line, self.col);
        let Some(c) = self.peek() else {
            return Ok((Tok::Eof, line, col));
        };
        let tok = match c {
            b'\n' => {
                self.bump();
                Tok::Newline
            }
            b'=' => {
                self.bump();
                Tok::Eq
            }
            b'+' => {
                self.bump();
                if self.bump() != Some(b'=') {
                    return Err(self.err("expected '=' after '+'"));
                }
                Tok::PlusEq
            }
            b';' => {
                self.bump();
                Tok::Semi
            }
            b',' => {
                self.bump();
                Tok::Comma
            }
            b'[' => {
                self.bump();
                Tok::Open
            }
            b']' => {
                self.bump();
                Tok::Close
            }
            b'"' | b'\'' => Tok::Str(self.string(c)?),
            b'0'..=b'9' => {
                let start = self.pos;
                while matches!(self.peek(), Some(b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')) {
                    self.bump();
                }
                let text = std::str::from_utf8(&self.s[start..self.pos])
                    .map_err(|_| self.err("bad number"))?;
                let parsed =
                    if let Some(h) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
                        u64::from_str_radix(h, 16)
                    } else if text.len() > 1 && text.starts_with('0') {
                        u64::from_str_radix(&text[1..], 8)
                    } else {
                        text.parse::<u64>()
                    };
                Tok::Num(parsed.map_err(|_| XlError::Syntax {
                    line,
                    col,
                    message: format!("{text:?} is not a number"),
                })?)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.pos;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
                {
                    self.bump();
                }
                Tok::Ident(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
            }
            other => return Err(self.err(format!("unexpected character {:?}", other as char))),
        };
        Ok((tok, line, col))
    }
    fn string(&mut self, q: u8) -> Result<String, XlError> {
        self.bump();
        let mut out: Vec<u8> = Vec::new();
        loop {
            match self.bump() {
                None | Some(b'\n') => return Err(self.err("unterminated string")),
                Some(c) if c == q => break,
                Some(b'\\') => {
                    let e = self.bump().ok_or_else(|| self.err("unterminated string"))?;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'a' => out.push(7),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'v' => out.push(11),
                        b'\\' | b'"' | b'\'' => out.push(e),
                        b'x' => {
                            let mut v: u32 = 0;
                            for _ in 0..2 {
                                let d = self
                                    .bump()
                                    .and_then(|d| (d as char).to_digit(16))
                                    .ok_or_else(|| self.err("bad \\x escape"))?;
                                v = v * 16 + d;
                            }
                            out.push(v as u8);
                        }
                        b'0'..=b'7' => {
                            let mut v: u32 = u32::from(e - b'0');
                            for _ in 0..2 {
                                match self.peek() {
                                    Some(d @ b'0'..=b'7') => {
                                        self.bump();
                                        v = v * 8 + u32::from(d - b'0');
                                    }
                                    _ => break,
                                }
                            }
                            if v > 255 {
                                return Err(self.err("octal escape above \\377"));
                            }
                            out.push(v as u8);
                        }
                        other => {
                            return Err(self.err(format!("unknown escape \\{}", other as char)))
                        }
                    }
                }
                Some(c) => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"))
    }
}

impl XlConfig {
    /// Parses xl.cfg text: `KEY = VALUE` (or `+=`) settings separated by newlines or `;`,
    /// `#` comments, strings in either quote, numbers, and (nested) lists that may span lines.
    pub fn parse(text: &str) -> Result<XlConfig, XlError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(XlError::TooLarge(text.len()));
        }
        let mut lx = Lexer {
            s: text.as_bytes(),
            pos: 0,
            line: 1,
            col: 1,
        };
        let mut cfg = XlConfig::default();
        loop {
            let (tok, line, col) = lx.next()?;
            let key = match tok {
                Tok::Eof => break,
                Tok::Newline | Tok::Semi => continue,
                Tok::Ident(k) => k,
                other => {
                    return Err(XlError::Syntax {
                        line,
                        col,
                        message: format!("expected a key, found {other:?}"),
                    })
                }
            };
            let (op, line, col) = lx.next()?;
            let append = match op {
                Tok::Eq => false,
                Tok::PlusEq => true,
                other => {
                    return Err(XlError::Syntax {
                        line,
                        col,
                        message: format!("expected '=' after {key}, found {other:?}"),
                    })
                }
            };
            let (first, line, col) = lx.next()?;
            let value = Self::value(&mut lx, first, line, col, 0)?;
            let (end, line, col) = lx.next()?;
            if !matches!(end, Tok::Newline | Tok::Semi | Tok::Eof) {
                return Err(XlError::Syntax {
                    line,
                    col,
                    message: format!("expected end of setting after {key}, found {end:?}"),
                });
            }
            if append {
                let pos = cfg.entries.iter().rposition(|(k, _)| *k == key);
                match (pos.map(|p| &mut cfg.entries[p].1), value) {
                    (Some(Value::Str(a)), Value::Str(b)) => a.push_str(&b),
                    (Some(Value::List(a)), Value::List(b)) => a.extend(b),
                    (None, v) => cfg.entries.push((key, v)),
                    _ => {
                        return Err(XlError::Syntax {
                            line,
                            col,
                            message: format!("{key} += needs the same type as before"),
                        })
                    }
                }
            } else {
                cfg.entries.push((key, value));
            }
            if matches!(end, Tok::Eof) {
                break;
            }
        }
        Ok(cfg)
    }

    fn value(
        lx: &mut Lexer<'_>,
        tok: Tok,
        line: usize,
        col: usize,
        depth: usize,
    ) -> Result<Value, XlError> {
        match tok {
            Tok::Str(s) => Ok(Value::Str(s)),
            Tok::Num(n) => Ok(Value::Num(n)),
            Tok::Open => {
                if depth >= MAX_DEPTH {
                    return Err(XlError::Syntax {
                        line,
                        col,
                        message: format!("lists nested deeper than {MAX_DEPTH}"),
                    });
                }
                let mut items = Vec::new();
                loop {
                    let (mut t, mut l, mut c) = lx.next()?;
                    while t == Tok::Newline {
                        (t, l, c) = lx.next()?;
                    }
                    if t == Tok::Close {
                        break;
                    }
                    items.push(Self::value(lx, t, l, c, depth + 1)?);
                    let (mut t, mut l, mut c) = lx.next()?;
                    while t == Tok::Newline {
                        (t, l, c) = lx.next()?;
                    }
                    match t {
                        Tok::Comma => {}
                        Tok::Close => break,
                        other => {
                            return Err(XlError::Syntax {
                                line: l,
                                col: c,
                                message: format!("expected ',' or ']' in list, found {other:?}"),
                            })
                        }
                    }
                }
                Ok(Value::List(items))
            }
            other => Err(XlError::Syntax {
                line,
                col,
                message: format!("expected a value, found {other:?}"),
            }),
        }
    }

    /// The value last set for `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// A string setting.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, XlError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(XlError::Field {
                key: key.into(),
                message: "expected a string".into(),
            }),
        }
    }

    /// A number setting.
    pub fn get_num(&self, key: &str) -> Result<Option<u64>, XlError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Num(n)) => Ok(Some(*n)),
            Some(_) => Err(XlError::Field {
                key: key.into(),
                message: "expected a number".into(),
            }),
        }
    }

    /// A list of strings.
    pub fn get_str_list(&self, key: &str) -> Result<Option<Vec<&str>>, XlError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::List(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.as_str()),
                    _ => Err(XlError::Field {
                        key: key.into(),
                        message: "expected a list of strings".into(),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(XlError::Field {
                key: key.into(),
                message: "expected a list".into(),
            }),
        }
    }
}

impl fmt::Display for XlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.entries {
            let mut s = String::new();
            v.write(&mut s);
            writeln!(f, "{k} = {s}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- disk specs

/// Disk image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// raw
    Raw,
    /// qcow
    Qcow,
    /// qcow2
    Qcow2,
    /// vhd
    Vhd,
    /// qed
    Qed,
    /// empty (a cdrom drive without media)
    Empty,
}

impl DiskFormat {
    fn parse(s: &str) -> Option<DiskFormat> {
        Some(match s {
            "" | "raw" => DiskFormat::Raw,
            "qcow" => DiskFormat::Qcow,
            "qcow2" => DiskFormat::Qcow2,
            "vhd" => DiskFormat::Vhd,
            "qed" => DiskFormat::Qed,
            "empty" => DiskFormat::Empty,
            _ => return None,
        })
    }
    /// Name as xl prints it.
    pub fn as_str(&self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow => "qcow",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Qed => "qed",
            DiskFormat::Empty => "empty",
        }
    }
}

/// A parsed disk spec (the fields of libxl's disk device that the spec sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// target (None when not given, e.g. an empty cdrom).
    pub target: Option<String>,
    /// Guest device, e.g. `xvda`.
    pub vdev: String,
    /// Format.
    pub format: DiskFormat,
    /// `backendtype=` (phy, qdisk, standalone, tap).
    pub backend_type: Option<String>,
    /// `backend=` domain.
    pub backend_domain: Option<String>,
    /// `script=` (or from a deprecated iscsi:/nbd:/enbd:/drbd: prefix).
    pub script: Option<String>,
    /// Read-write (false for `ro` and for cdroms).
    pub readwrite: bool,
    /// A cdrom.
    pub is_cdrom: bool,
    /// Removable (cdroms).
    pub removable: bool,
    /// `direct-io-safe`.
    pub direct_io_safe: bool,
    /// `discard` / `no-discard`.
    pub discard: Option<bool>,
    /// `trusted` / `untrusted`.
    pub trusted: Option<bool>,
    /// `specification=` (xen, virtio).
    pub specification: Option<String>,
}

impl DiskSpec {
    /// A raw disk image at `target` seen as `vdev`.
    pub fn raw(target: &str, vdev: &str, readwrite: bool) -> DiskSpec {
        DiskSpec {
            target: Some(target.to_string()),
            vdev: vdev.to_string(),
            format: DiskFormat::Raw,
            backend_type: None,
            backend_domain: None,
            script: None,
            readwrite,
            is_cdrom: false,
            removable: false,
            direct_io_safe: false,
            discard: None,
            trusted: None,
            specification: None,
        }
    }

    /// The spec in keyword syntax, `target=` last (it takes the rest of the string).
    pub fn to_spec(&self) -> String {
        let mut parts = vec![
            format!("format={}", self.format.as_str()),
            format!("vdev={}", self.vdev),
        ];
        parts.push(format!(
            "access={}",
            if self.readwrite { "rw" } else { "ro" }
        ));
        if self.is_cdrom {
            parts.push("devtype=cdrom".into());
        }
        if let Some(b) = &self.backend_type {
            parts.push(format!("backendtype={b}"));
        }
        if let Some(b) = &self.backend_domain {
            parts.push(format!("backend={b}"));
        }
        if let Some(s) = &self.script {
            parts.push(format!("script={s}"));
        }
        if self.direct_io_safe {
            parts.push("direct-io-safe".into());
        }
        match self.discard {
            Some(true) => parts.push("discard".into()),
            Some(false) => parts.push("no-discard".into()),
            None => {}
        }
        match self.trusted {
            Some(true) => parts.push("trusted".into()),
            Some(false) => parts.push("untrusted".into()),
            None => {}
        }
        if let Some(s) = &self.specification {
            parts.push(format!("specification={s}"));
        }
        if let Some(t) = &self.target {
            parts.push(format!("target={t}"));
        }
        parts.join(", ")
    }
}

#[derive(Default)]
struct DiskParse {
    target: Option<String>,
    vdev: Option<String>,
    format: Option<DiskFormat>,
    backend_type: Option<String>,
    backend_domain: Option<String>,
    script: Option<String>,
    specification: Option<String>,
    readwrite: bool,
    access_set: bool,
    is_cdrom: bool,
    direct_io_safe: bool,
    discard: Option<bool>,
    trusted: Option<bool>,
    had_prefix: bool,
}

enum DiskAct<'a> {
    Skip,
    Key(&'a str, &'a str),
    Flag(&'a str),
    Target(&'a str),
    Prefix(&'a str),
    BadPrefix(&'a str),
    Positional(&'a str),
    Bad(&'a str),
}

const DISK_KEYS: &[&str] = &[
    "format",
    "devtype",
    "access",
    "backend",
    "backendtype",
    "specification",
    "vdev",
    "script",
    "colo-host",
    "colo-port",
    "colo-export",
    "active-disk",
    "hidden-disk",
    "grant_usage",
];
const DISK_FLAGS: &[&str] = &[
    "cdrom",
    "direct-io-safe",
    "discard",
    "no-discard",
    "colo",
    "no-colo",
    "trusted",
    "untrusted",
];
const DISK_PREFIXES: &[&str] = &[
    "raw", "qcow", "qcow2", "vhd", "iscsi", "nbd", "enbd", "drbd", "tapdisk", "tap", "tap2", "aio",
    "ioemu", "file", "phy",
];

/// The next token of a disk spec at the start of `r`: the longest match among xl's rules, the
/// earlier rule on a tie (rules whose pattern ends in trailing context `.*` count the whole rest).
fn disk_token(r: &str) -> (usize, DiskAct<'_>) {
    let b = r.as_bytes();
    let rest = r.len();
    let mut best: Option<(usize, usize, DiskAct<'_>)> = None; // (match length, consumed, act)
    fn offer<'a>(
        len: usize,
        consumed: usize,
        act: DiskAct<'a>,
        best: &mut Option<(usize, usize, DiskAct<'a>)>,
    ) {
        if best.as_ref().is_none_or(|(l, _, _)| len > *l) {
            *best = Some((len, consumed, act));
        }
    }
    // 1. whitespace before a parameter
    let ws = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n'))
        .count();
    if ws > 0 {
        offer(rest, ws, DiskAct::Skip, &mut best);
    }
    // 2./3. keyword parameters and flags
    let word_end = b
        .iter()
        .position(|&c| c == b'=' || c == b',')
        .unwrap_or(rest);
    let word = &r[..word_end];
    if b.get(word_end) == Some(&b'=') && DISK_KEYS.contains(&word) {
        let vstart = word_end + 1;
        let vend = b[vstart..]
            .iter()
            .position(|&c| c == b',')
            .map_or(rest, |p| vstart + p);
        let consumed = if vend < rest { vend + 1 } else { vend };
        offer(
            consumed,
            consumed,
            DiskAct::Key(word, &r[vstart..vend]),
            &mut best,
        );
    }
    if DISK_FLAGS.contains(&word) {
        let consumed = if word_end < rest && b[word_end] == b',' {
            word_end + 1
        } else {
            word_end
        };
        offer(consumed, consumed, DiskAct::Flag(word), &mut best);
    }
    // 4. target= eats the rest
    if let Some(t) = r.strip_prefix("target=") {
        offer(
            rest,
            rest,
            DiskAct::Target(t.strip_suffix(',').unwrap_or(t)),
            &mut best,
        );
    }
    // unknown key=value: nothing else can consume '=', so it is an error either way
    if b.get(word_end) == Some(&b'=')
        && !DISK_KEYS.contains(&word)
        && word.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
        && word
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        offer(
            word_end + 1,
            word_end + 1,
            DiskAct::Bad("unknown parameter"),
            &mut best,
        );
    }
    // 5. deprecated prefixes
    if let Some(colon) = r.find(':') {
        let p = &r[..colon];
        if !p.is_empty()
            && p.as_bytes()[0].is_ascii_lowercase()
            && p.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            if DISK_PREFIXES.contains(&p) {
                offer(rest, colon + 1, DiskAct::Prefix(p), &mut best);
            } else {
                let after = &b[colon + 1..];
                let len = if after
                    .first()
                    .is_some_and(|c| !c.is_ascii_lowercase() && !c.is_ascii_digit())
                {
                    rest
                } else {
                    colon + 1
                };
                offer(len, colon + 1, DiskAct::BadPrefix(p), &mut best);
            }
        }
    }
    // 6. positional
    let run = b.iter().take_while(|&&c| c != b'=' && c != b',').count();
    let comma = b.get(run) == Some(&b',');
    if run > 0 || comma {
        let consumed = run + usize::from(comma);
        offer(
            consumed,
            consumed,
            DiskAct::Positional(&r[..run]),
            &mut best,
        );
    }
    match best {
        Some((_, consumed, act)) => (consumed.max(1).min(rest), act),
        None => (rest, DiskAct::Bad("bad disk syntax")),
    }
}

fn set_once(slot: &mut Option<String>, value: &str, what: &str, spec: &str) -> Result<(), XlError> {
    if slot.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(XlError::Disk {
            spec: spec.to_string(),
            message: format!("{what} respecified"),
        });
    }
    *slot = Some(value.to_string());
    Ok(())
}

fn set_enum<T: PartialEq + Copy>(
    slot: &mut Option<T>,
    v: T,
    what: &str,
    spec: &str,
) -> Result<(), XlError> {
    if slot.is_some_and(|s| s != v) {
        return Err(XlError::Disk {
            spec: spec.to_string(),
            message: format!("{what} respecified"),
        });
    }
    *slot = Some(v);
    Ok(())
}

/// Parses a disk spec given as one or more strings (xl joins `block-attach` arguments this way;
/// a config file's list entry is one string).
pub fn parse_disk(specs: &[&str]) -> Result<DiskSpec, XlError> {
    let mut d = DiskParse {
        readwrite: true,
        ..DiskParse::default()
    };
    for spec in specs {
        let e = |m: &str| XlError::Disk {
            spec: spec.to_string(),
            message: m.to_string(),
        };
        if spec.len() > 4096 {
            return Err(e("longer than 4096 bytes"));
        }
        let mut pos = 0;
        while pos < spec.len() {
            let (n, act) = disk_token(&spec[pos..]);
            match act {
                DiskAct::Skip => {}
                DiskAct::Key(k, v) => match k {
                    "format" => set_enum(
                        &mut d.format,
                        DiskFormat::parse(v)
                            .ok_or_else(|| e(&format!("unknown value for format: {v}")))?,
                        "format",
                        spec,
                    )?,
                    "devtype" => match v {
                        "cdrom" => d.is_cdrom = true,
                        "disk" => d.is_cdrom = false,
                        _ => return Err(e(&format!("unknown value for type: {v}"))),
                    },
                    "access" => match v {
                        "r" | "ro" => d.readwrite = false,
                        "rw" | "w" | "" => d.readwrite = true,
                        _ => return Err(e(&format!("unknown value for access: {v}"))),
                    },
                    "backend" => set_once(&mut d.backend_domain, v, "backend", spec)?,
                    "backendtype" => {
                        if !matches!(v, "phy" | "tap" | "qdisk" | "standalone") {
                            return Err(e(&format!("unknown value for backendtype: {v}")));
                        }
                        if d.backend_type.as_deref().is_some_and(|b| b != v) {
                            return Err(e("backendtype respecified"));
                        }
                        d.backend_type = Some(v.to_string());
                    }
                    "specification" => {
                        if !matches!(v, "xen" | "virtio") {
                            return Err(e(&format!("unknown value for specification: {v}")));
                        }
                        if d.specification.as_deref().is_some_and(|b| b != v) {
                            return Err(e("specification respecified"));
                        }
                        d.specification = Some(v.to_string());
                    }
                    "vdev" => set_once(&mut d.vdev, v, "vdev", spec)?,
                    "script" => set_once(&mut d.script, v, "script", spec)?,
                    "grant_usage" if v != "0" && v != "1" => return Err(e("unknown parameter")),
                    _ => {} // COLO settings and grant_usage: accepted, not modelled
                },
                DiskAct::Flag(f) => match f {
                    "cdrom" => d.is_cdrom = true,
                    "direct-io-safe" => d.direct_io_safe = true,
                    "discard" => d.discard = Some(true),
                    "no-discard" => d.discard = Some(false),
                    "trusted" => d.trusted = Some(true),
                    "untrusted" => d.trusted = Some(false),
                    _ => {}
                },
                DiskAct::Target(t) => set_once(&mut d.target, t, "target", spec)?,
                DiskAct::Prefix(p) => {
                    d.had_prefix = true;
                    match p {
                        "raw" | "qcow" | "qcow2" | "vhd" => set_enum(
                            &mut d.format,
                            DiskFormat::parse(p).unwrap_or(DiskFormat::Raw),
                            "format",
                            spec,
                        )?,
                        "iscsi" | "nbd" | "enbd" | "drbd" => {
                            set_once(&mut d.script, &format!("block-{p}"), "script", spec)?
                        }
                        _ => {}
                    }
                }
                DiskAct::BadPrefix(p) => {
                    return Err(e(&format!("unknown deprecated disk prefix {p}:")))
                }
                DiskAct::Bad(m) => return Err(e(m)),
                DiskAct::Positional(v) => {
                    if d.target.is_none() {
                        d.target = Some(v.to_string());
                    } else if !d.had_prefix && d.format.is_none() {
                        if d.target.as_deref() == Some("") && vdev_devtype(&mut d, v, spec)? {
                            d.format = Some(DiskFormat::Empty);
                        } else {
                            d.format = Some(
                                DiskFormat::parse(v)
                                    .ok_or_else(|| e(&format!("unknown value for format: {v}")))?,
                            );
                        }
                    } else if d.vdev.is_none() {
                        if !vdev_devtype(&mut d, v, spec)? {
                            set_once(&mut d.vdev, v, "vdev", spec)?;
                        }
                    } else if !d.access_set {
                        d.access_set = true;
                        match v {
                            "r" | "ro" => d.readwrite = false,
                            "rw" | "w" | "" => d.readwrite = true,
                            _ => return Err(e(&format!("unknown value for access: {v}"))),
                        }
                    } else {
                        return Err(e("too many positional parameters"));
                    }
                }
            }
            pos += n;
        }
    }
    let joined = specs.join(" ");
    let mut format = d.format.unwrap_or(DiskFormat::Raw);
    let mut readwrite = d.readwrite;
    if d.is_cdrom {
        readwrite = false;
        if d.target.as_deref().is_none_or(str::is_empty) {
            format = DiskFormat::Empty;
        }
    }
    let vdev = d.vdev.ok_or_else(|| XlError::Disk {
        spec: joined.clone(),
        message: "no vdev specified".into(),
    })?;
    if d.target.is_none() && !d.is_cdrom {
        return Err(XlError::Disk {
            spec: joined,
            message: "no target specified (and device not removable)".into(),
        });
    }
    Ok(DiskSpec {
        target: d.target,
        vdev,
        format,
        backend_type: d.backend_type,
        backend_domain: d.backend_domain,
        script: d.script,
        readwrite,
        is_cdrom: d.is_cdrom,
        removable: d.is_cdrom,
        direct_io_safe: d.direct_io_safe,
        discard: d.discard,
        trusted: d.trusted,
        specification: d.specification,
    })
}

/// `vdev:devtype` positional form; returns whether it applied.
fn vdev_devtype(d: &mut DiskParse, v: &str, spec: &str) -> Result<bool, XlError> {
    let Some(colon) = v.rfind(':') else {
        return Ok(false);
    };
    set_once(&mut d.vdev, &v[..colon], "vdev", spec)?;
    match &v[colon + 1..] {
        "cdrom" => d.is_cdrom = true,
        "disk" => d.is_cdrom = false,
        other => {
            return Err(XlError::Disk {
                spec: spec.to_string(),
                message: format!("unknown deprecated type {other}"),
            })
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------- vif specs

/// A parsed vif spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VifSpec {
    /// `mac=`.
    pub mac: Option<String>,
    /// `bridge=`.
    pub bridge: Option<String>,
    /// `ip=`.
    pub ip: Option<String>,
    /// `script=`.
    pub script: Option<String>,
    /// `model=`.
    pub model: Option<String>,
    /// `vifname=`.
    pub vifname: Option<String>,
    /// `type=`.
    pub kind: Option<String>,
    /// `rate=` as (bytes per interval, interval in µs).
    pub rate: Option<(u64, u32)>,
    /// `trusted` / `untrusted`.
    pub trusted: Option<bool>,
    /// Other recognised keys, as written.
    pub other: Vec<(String, String)>,
}

const VIF_KEYS: &[&str] = &[
    "mac",
    "bridge",
    "ip",
    "script",
    "model",
    "vifname",
    "type",
    "rate",
    "backend",
    "gatewaydev",
    "accel",
    "devid",
    "mtu",
    "netdev",
    "forwarddev",
    "powerswitch",
    "colo_forward_dev",
];

impl VifSpec {
    /// The spec as written to xl.cfg.
    pub fn to_spec(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("mac", &self.mac),
            ("bridge", &self.bridge),
            ("ip", &self.ip),
            ("script", &self.script),
            ("model", &self.model),
            ("vifname", &self.vifname),
            ("type", &self.kind),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        for (k, v) in &self.other {
            parts.push(format!("{k}={v}"));
        }
        match self.trusted {
            Some(true) => parts.push("trusted".into()),
            Some(false) => parts.push("untrusted".into()),
            None => {}
        }
        parts.join(", ")
    }
}

/// Parses `rate=` values as xl does: `N[GMK](B|b)/s[@N[m|u]s]`, default interval 50 ms.
pub fn parse_rate(rate: &str) -> Result<(u64, u32), String> {
    let (bw, interval) = match rate.split_once('@') {
        Some((a, b)) => (a, Some(b)),
        None => (rate, None),
    };
    if bw.is_empty() {
        return Err("no rate specified".into());
    }
    let digits = bw.bytes().take_while(u8::is_ascii_digit).count();
    let unit = &bw[digits..];
    let (mult, bits) = match unit {
        "B/s" => (1u64, false),
        "b/s" => (1, true),
        "KB/s" => (1000, false),
        "Kb/s" => (1000, true),
        "MB/s" => (1_000_000, false),
        "Mb/s" => (1_000_000, true),
        "GB/s" => (1_000_000_000, false),
        "Gb/s" => (1_000_000_000, true),
        _ => return Err("invalid rate".into()),
    };
    if digits == 0 {
        return Err("invalid rate".into());
    }
    let n: u64 = bw[..digits]
        .parse()
        .map_err(|_| "rate overflow".to_string())?;
    if n == 0 || n > u64::from(u32::MAX) {
        return Err("rate overflow".into());
    }
    let mut bytes_per_sec = n * mult;
    if bits {
        bytes_per_sec /= 8;
    }
    let interval_us: u32 = match interval {
        None => 50_000,
        Some(i) => {
            let digits = i.bytes().take_while(u8::is_ascii_digit).count();
            let mult: u64 = match &i[digits..] {
                "" | "s" => 1_000_000,
                "ms" => 1000,
                "us" => 1,
                _ => return Err("invalid replenishment interval".into()),
            };
            if digits == 0 {
                return Err("invalid replenishment interval".into());
            }
            let n: u64 = i[..digits]
                .parse()
                .map_err(|_| "replenishment interval overflow".to_string())?;
            if n == 0 || n > u64::from(u32::MAX) {
                return Err("replenishment interval overflow".into());
            }
            u32::try_from(n * mult).map_err(|_| "replenishment interval overflow".to_string())?
        }
    };
    let per = bytes_per_sec
        .checked_mul(u64::from(interval_us))
        .ok_or_else(|| "rate overflow".to_string())?
        / 1_000_000;
    Ok((per, interval_us))
}

/// Parses a vif spec: comma-separated `key=value` settings and `trusted`/`untrusted`; an empty
/// spec is a default vif.
pub fn parse_vif(spec: &str) -> Result<VifSpec, XlError> {
    let e = |m: String| XlError::Vif {
        spec: spec.chars().take(200).collect(),
        message: m,
    };
    if spec.len() > 4096 {
        return Err(e("longer than 4096 bytes".into()));
    }
    let mut v = VifSpec::default();
    for tok in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match tok {
            "trusted" => v.trusted = Some(true),
            "untrusted" => v.trusted = Some(false),
            _ => {
                let (k, val) = tok
                    .split_once('=')
                    .ok_or_else(|| e(format!("unrecognized argument `{tok}'")))?;
                if !VIF_KEYS.contains(&k) {
                    return Err(e(format!("unrecognized argument `{tok}'")));
                }
                match k {
                    "mac" => {
                        val.parse::<crate::net::MacAddr>()
                            .map_err(|x| e(x.to_string()))?;
                        v.mac = Some(val.to_string());
                    }
                    "bridge" => v.bridge = Some(val.to_string()),
                    "ip" => v.ip = Some(val.to_string()),
                    "script" => v.script = Some(val.to_string()),
                    "model" => v.model = Some(val.to_string()),
                    "vifname" => v.vifname = Some(val.to_string()),
                    "type" => v.kind = Some(val.to_string()),
                    "rate" => {
                        v.rate = Some(parse_rate(val).map_err(|m| e(format!("{m} in `{val}'")))?);
                        v.other.push((k.to_string(), val.to_string()));
                    }
                    _ => v.other.push((k.to_string(), val.to_string())),
                }
            }
        }
    }
    Ok(v)
}

// ---------------------------------------------------------------- guest config

/// A guest configuration as wafer writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestConfig {
    /// Domain name.
    pub name: String,
    /// Guest type.
    pub guest_type: GuestType,
    /// Kernel path (direct boot; never pygrub).
    pub kernel: Option<String>,
    /// Initrd path.
    pub ramdisk: Option<String>,
    /// Kernel command line.
    pub cmdline: Option<String>,
    /// memory = maxmem, MiB.
    pub memory_mib: u64,
    /// vcpus.
    pub vcpus: u32,
    /// Credit weight.
    pub cpu_weight: Option<u32>,
    /// Credit cap.
    pub cpu_cap: Option<u32>,
    /// Pinning.
    pub cpus: Option<Vec<u32>>,
    /// Disks.
    pub disks: Vec<DiskSpec>,
    /// Network interfaces.
    pub vifs: Vec<VifSpec>,
    /// on_poweroff.
    pub on_poweroff: String,
    /// on_reboot.
    pub on_reboot: String,
    /// on_crash.
    pub on_crash: String,
}

fn check_text(key: &str, s: &str) -> Result<(), XlError> {
    if s.chars().any(|c| c.is_control()) || s.len() > 4096 {
        return Err(XlError::Field {
            key: key.into(),
            message: "holds control characters or is longer than 4096 bytes".into(),
        });
    }
    Ok(())
}

impl GuestConfig {
    /// Checks what would otherwise produce a config xl misreads.
    pub fn validate(&self) -> Result<(), XlError> {
        check_name("name", &self.name).map_err(|e| XlError::Field {
            key: "name".into(),
            message: e.to_string(),
        })?;
        for (k, v) in [
            ("kernel", &self.kernel),
            ("ramdisk", &self.ramdisk),
            ("cmdline", &self.cmdline),
        ] {
            if let Some(v) = v {
                check_text(k, v)?;
            }
        }
        for d in &self.disks {
            check_text("disk", &d.to_spec())?;
            if parse_disk(&[&d.to_spec()])? != *d {
                return Err(XlError::Field {
                    key: "disk".into(),
                    message: format!("{:?} would not read back the same", d.to_spec()),
                });
            }
        }
        for v in &self.vifs {
            let s = v.to_spec();
            check_text("vif", &s)?;
            if parse_vif(&s)? != *v {
                return Err(XlError::Field {
                    key: "vif".into(),
                    message: format!(
                        "{s:?} would not read back the same (a value holds ',' or '=')"
                    ),
                });
            }
        }
        for (k, v) in [
            ("on_poweroff", &self.on_poweroff),
            ("on_reboot", &self.on_reboot),
            ("on_crash", &self.on_crash),
        ] {
            if !matches!(
                v.as_str(),
                "destroy"
                    | "restart"
                    | "rename-restart"
                    | "preserve"
                    | "coredump-destroy"
                    | "coredump-restart"
                    | "soft-reset"
            ) {
                return Err(XlError::Field {
                    key: k.into(),
                    message: format!("unknown action {v:?}"),
                });
            }
        }
        Ok(())
    }

    /// The config as an [`XlConfig`], in the keys the given Xen's `xl` reads (see
    /// [`XenKeys`] and docs/site.md): `type =` from 4.10, `builder =` before; `cmdline =` from
    /// 4.5, `extra =` before; `cpu_weight`, `cap`, `cpus`, `disk`, `vif` in every band.
    pub fn to_config(&self, xen: XenVersion) -> Result<XlConfig, XlError> {
        self.validate()?;
        let keys = XenKeys::for_version(xen).map_err(|message| XlError::Field {
            key: "xen.version".into(),
            message,
        })?;
        let mut e: Vec<(String, Value)> = Vec::new();
        let s = |v: &str| Value::Str(v.to_string());
        e.push(("name".into(), s(&self.name)));
        if keys.type_key {
            e.push(("type".into(), s(self.guest_type.as_str())));
        } else {
            let builder = match self.guest_type {
                GuestType::Pv => "generic",
                GuestType::Hvm => "hvm",
                GuestType::Pvh => {
                    return Err(XlError::Field {
                        key: "type".into(),
                        message: format!(
                            "a pvh guest needs Xen {} or later (type = \"pvh\"); this site runs Xen {xen}",
                            XenKeys::TYPE_FROM
                        ),
                    })
                }
            };
            e.push(("builder".into(), s(builder)));
        }
        if let Some(k) = &self.kernel {
            e.push(("kernel".into(), s(k)));
        }
        if let Some(r) = &self.ramdisk {
            e.push(("ramdisk".into(), s(r)));
        }
        if let Some(c) = &self.cmdline {
            let key = if keys.cmdline_key { "cmdline" } else { "extra" };
            e.push((key.into(), s(c)));
        }
        e.push(("memory".into(), Value::Num(self.memory_mib)));
        e.push(("maxmem".into(), Value::Num(self.memory_mib)));
        e.push(("vcpus".into(), Value::Num(u64::from(self.vcpus))));
        if let Some(w) = self.cpu_weight {
            e.push(("cpu_weight".into(), Value::Num(u64::from(w))));
        }
        if let Some(c) = self.cpu_cap {
            // xl's key is `cap` (xl.cfg(5)); `cpu_cap` would be ignored without a word.
            e.push(("cap".into(), Value::Num(u64::from(c))));
        }
        if let Some(p) = &self.cpus {
            e.push((
                "cpus".into(),
                s(&p.iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")),
            ));
        }
        e.push((
            "disk".into(),
            Value::List(self.disks.iter().map(|d| s(&d.to_spec())).collect()),
        ));
        e.push((
            "vif".into(),
            Value::List(self.vifs.iter().map(|v| s(&v.to_spec())).collect()),
        ));
        e.push(("on_poweroff".into(), s(&self.on_poweroff)));
        e.push(("on_reboot".into(), s(&self.on_reboot)));
        e.push(("on_crash".into(), s(&self.on_crash)));
        Ok(XlConfig { entries: e })
    }

    /// The xl.cfg text for the given Xen.
    pub fn to_xl(&self, xen: XenVersion) -> Result<String, XlError> {
        Ok(format!(
            "# written by wafer deploy for Xen {xen}\n{}",
            self.to_config(xen)?
        ))
    }

    /// Reads a guest config back as xl would (`type`, or the older `builder`, defaults to pv;
    /// without `cmdline`, `root` and `extra` make the command line; the cap is `cap`).
    pub fn from_config(c: &XlConfig) -> Result<GuestConfig, XlError> {
        let field = |key: &str, message: String| XlError::Field {
            key: key.into(),
            message,
        };
        let name = c
            .get_str("name")?
            .ok_or_else(|| field("name", "missing".into()))?
            .to_string();
        let ty = c
            .get_str("type")?
            .or(c
                .get_str("builder")?
                .map(|b| if b == "hvm" { "hvm" } else { "pv" }))
            .unwrap_or("pv");
        let guest_type: GuestType = ty.parse().map_err(|m| field("type", m))?;
        let num32 = |k: &str| -> Result<Option<u32>, XlError> {
            c.get_num(k)?
                .map(|n| u32::try_from(n).map_err(|_| field(k, format!("{n} is too large"))))
                .transpose()
        };
        let memory_mib = c
            .get_num("memory")?
            .ok_or_else(|| field("memory", "missing".into()))?;
        let cpus = match c.get("cpus") {
            None => None,
            Some(Value::Str(s)) => Some(
                s.split(',')
                    .map(|p| {
                        p.trim().parse::<u32>().map_err(|_| {
                            field("cpus", format!("{s:?} is not a list of CPU numbers"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(field("cpus", "expected a string like \"2,3\"".into())),
        };
        let disks = c
            .get_str_list("disk")?
            .unwrap_or_default()
            .iter()
            .map(|d| parse_disk(&[d]))
            .collect::<Result<Vec<_>, _>>()?;
        let vifs = c
            .get_str_list("vif")?
            .unwrap_or_default()
            .iter()
            .map(|v| parse_vif(v))
            .collect::<Result<Vec<_>, _>>()?;
        let act = |k: &str, default: &str| -> Result<String, XlError> {
            Ok(c.get_str(k)?.unwrap_or(default).to_string())
        };
        Ok(GuestConfig {
            name,
            guest_type,
            kernel: c.get_str("kernel")?.map(str::to_string),
            ramdisk: c.get_str("ramdisk")?.map(str::to_string),
            cmdline: match (
                c.get_str("cmdline")?,
                c.get_str("root")?,
                c.get_str("extra")?,
            ) {
                (Some(cmd), _, _) => Some(cmd.to_string()),
                (None, Some(root), extra) => Some(
                    format!("root={root} {}", extra.unwrap_or_default())
                        .trim_end()
                        .to_string(),
                ),
                (None, None, extra) => extra.map(str::to_string),
            },
            memory_mib,
            vcpus: num32("vcpus")?.unwrap_or(1),
            cpu_weight: num32("cpu_weight")?,
            cpu_cap: num32("cap")?,
            cpus,
            disks,
            vifs,
            on_poweroff: act("on_poweroff", "destroy")?,
            on_reboot: act("on_reboot", "restart")?,
            on_crash: act("on_crash", "destroy")?,
        })
    }
}

// `XenKeys` (which keys each Xen's xl reads) lives in site.rs next to `XenVersion`.

// ---------------------------------------------------------------- guest kernel flavour

pub use bundle::KernelFlavour;

/// The flavour recorded in the manifest or, for a bundle that does not record it, a guess
/// from the kernel's file name (said in a log line).
pub fn resolve_flavour(
    recorded: Option<KernelFlavour>,
    kernel_path: Option<&str>,
) -> KernelFlavour {
    if let Some(f) = recorded {
        return f;
    }
    let (guess, _) = KernelFlavour::guess_from_kernel_path(kernel_path.unwrap_or(""));
    tracing::info!(
        kernel = kernel_path.unwrap_or("(none)"),
        flavour = guess.as_str(),
        console = guess.console(),
        "wafer.json does not record boot.kernel_flavour (bundle built before it was recorded): guessed {guess} from the kernel file name, console {}",
        guess.console()
    );
    guess
}

/// The guest's kernel command line: the wafer's, with the Xen console the kernel really has.
/// A `console=xvc0` or `console=hvc0` of the other flavour is replaced, and a line without
/// any `console=` gets the flavour's; other settings (root device, `ro`, ...) are kept as the
/// signed manifest has them. Without a command line: `root=/dev/xvda ro console=C`.
pub fn guest_cmdline(cmdline: Option<&str>, flavour: KernelFlavour) -> String {
    let want = flavour.console();
    let Some(line) = cmdline else {
        return format!("root=/dev/xvda ro console={want}");
    };
    let mut has_console = false;
    let words: Vec<String> = line
        .split_whitespace()
        .map(|w| match w.strip_prefix("console=") {
            Some(dev) => {
                has_console = true;
                let (name, opts) = match dev.split_once(',') {
                    Some((n, o)) => (n, Some(o)),
                    None => (dev, None),
                };
                if matches!(name, "xvc0" | "hvc0") && name != want {
                    match opts {
                        Some(o) => format!("console={want},{o}"),
                        None => format!("console={want}"),
                    }
                } else {
                    w.to_string()
                }
            }
            None => w.to_string(),
        })
        .collect();
    let mut out = words.join(" ");
    if !has_console {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("console=");
        out.push_str(want);
    }
    out
}
