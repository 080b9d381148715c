//! Visible escapes for text taken from images and manifests before it reaches a terminal or a
//! plain-text report.
//!
//! A file name or a `wafer.json` field is chosen by whoever made the image. Printed raw, an ESC
//! sequence can move the cursor, recolour or erase lines, a carriage return can overprint a
//! `FAIL` line with a fake `RESULT: PASSED`, and a bidi override can make `txt.exe` read as
//! `exe.txt`. Every command prints such text through [`escape`] (or [`Escaped`],
//! [`escape_bytes`]): C0 controls (including newline, carriage return and tab), DEL, C1 controls
//! (U+0080..U+009F) and the bidi controls (U+061C, U+200E, U+200F, U+202A..U+202E,
//! U+2066..U+2069) become visible escapes (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`); invalid UTF-8
//! bytes become `\xNN`. Everything else, including a backslash, is printed as is.
//!
//! JSON output does not need this: serde_json escapes control characters itself.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// Whether `c` must not reach a terminal as is.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

fn push_escaped<W: Write>(out: &mut W, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    }
}

fn write_escaped<W: Write>(out: &mut W, s: &str) -> fmt::Result {
    let mut rest = s;
    while let Some(i) = rest.find(needs_escape) {
        out.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or('\0');
        push_escaped(out, c)?;
        rest = &rest[i + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// `s` with every control, C1 and bidi character replaced by a visible escape; borrowed when
/// nothing needed escaping.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let _ = write_escaped(&mut out, s);
    Cow::Owned(out)
}

/// Like [`escape`] for bytes that may not be UTF-8 (file names): invalid bytes become `\xNN`.
pub fn escape_bytes(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => escape(s),
        Err(_) => {
            let mut out = String::with_capacity(b.len() + 8);
            for chunk in b.utf8_chunks() {
                let _ = write_escaped(&mut out, chunk.valid());
                for x in chunk.invalid() {
                    let _ = write!(out, "\\x{x:02x}");
                }
            }
            Cow::Owned(out)
        }
    }
}

/// Escapes every line of a multi-line text: like [`escape`], but newlines are kept (for text whose
/// fields were escaped already, as a last guard before it is printed).
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    if !text.contains(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = write_escaped(&mut out, line);
    }
    Cow::Owned(out)
}

/// A `Display` wrapper that escapes while formatting: `format!("{}", Escaped(name))`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() || f.precision().is_some() {
            // `{:<10}` and friends: pad the escaped text.
            f.pad(&escape(self.0))
        } else {
            write_escaped(f, self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_and_unchanged() {
        for s in ["", "usr/bin/sudo", "3.1-2.el5", "naïve café ✓", "a\\b"] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s}");
            assert_eq!(escape(s), s);
        }
    }

    #[test]
    fn controls_c1_del_and_bidi_become_visible() {
        let s =
            "1.0\u{1b}[2K\rRESULT: PASSED\n\t\u{7f}\u{85}\u{9b}x\u{202e}gpj.exe\u{2066}\u{200f}";
        let e = escape(s);
        assert_eq!(
            e,
            "1.0\\x1b[2K\\rRESULT: PASSED\\n\\t\\x7f\\u{85}\\u{9b}x\\u{202e}gpj.exe\\u{2066}\\u{200f}"
        );
        assert!(!e.contains(needs_escape));
        assert_eq!(Escaped(s).to_string(), e);
        assert_eq!(format!("[{:<6}]", Escaped("a\rb")), "[a\\rb  ]");
    }

    #[test]
    fn bytes_and_lines() {
        assert_eq!(escape_bytes(b"ok"), "ok");
        assert_eq!(escape_bytes(b"a\xffb\x1b\xc3"), "a\\xffb\\x1b\\xc3");
        assert_eq!(escape_lines("a\rb\nc\u{1b}\n"), "a\\rb\nc\\x1b\n");
        assert!(matches!(escape_lines("a\nb\n"), Cow::Borrowed(_)));
    }
}
