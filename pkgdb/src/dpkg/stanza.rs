//! The deb822 stanza scanner exactly as dpkg's `parse_stanza` (lib/dpkg/parse.c) reads a status
//! file: byte for byte, with its errors for a file cut short or a field without colon, and its
//! quirks: the MS-DOS `^Z` end-of-file character, a lone last byte without newline dropped, a
//! blank continuation line accepted (dpkg's lax status parser only warns).

use super::DpkgError;

/// The MS-DOS end-of-file character dpkg treats like a newline.
const MSDOS_EOF: u8 = 0x1a;

/// C's `isspace` in the C locale.
pub(crate) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// One `Name: value` field as dpkg hands it to the field parsers.
#[derive(Debug, Clone)]
pub(crate) struct RawField<'a> {
    /// Field name as written.
    pub name: &'a [u8],
    /// Value: leading blanks after the colon and trailing white space removed; continuation
    /// lines kept with their newline and leading space.
    pub value: &'a [u8],
    /// 1-based line of the field name.
    pub line: usize,
}

/// A cursor over a status file.
pub(crate) struct Scanner<'a> {
    data: &'a [u8],
    pos: usize,
    /// Newlines consumed so far.
    newlines: usize,
    file: &'a str,
}

impl<'a> Scanner<'a> {
    /// Scan `data`, naming `file` in errors.
    pub fn new(data: &'a [u8], file: &'a str) -> Self {
        Scanner {
            data,
            pos: 0,
            newlines: 0,
            file,
        }
    }

    fn eof(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn getc(&mut self) -> u8 {
        let c = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        if c == b'\n' {
            self.newlines += 1;
        }
        c
    }

    /// 1-based line of byte offset `at`.
    pub fn line_of(&self, at: usize) -> usize {
        let end = at.min(self.data.len());
        1 + self.data[..end].iter().filter(|&&b| b == b'\n').count()
    }

    /// Whether the whole input has been consumed.
    pub fn at_end(&self) -> bool {
        self.eof()
    }

    fn error(&self, at: usize, what: String) -> DpkgError {
        DpkgError::Syntax {
            file: self.file.to_string(),
            line: self.line_of(at),
            what,
        }
    }

    /// The next stanza's fields, or `None` at the end of the input.
    pub fn next_stanza(&mut self) -> Result<Option<(usize, Vec<RawField<'a>>)>, DpkgError> {
        let data = self.data;
        let mut c = 0u8;
        // Skip adjacent newlines.
        while !self.eof() {
            c = self.getc();
            if c != b'\n' && c != MSDOS_EOF {
                break;
            }
        }
        if self.eof() {
            // dpkg drops a lone last byte here as well.
            return Ok(None);
        }
        let start_line = self.newlines + 1;
        let mut fields = Vec::new();
        loop {
            let field_start = self.pos - 1;
            let field_line = self.newlines + 1;
            while !self.eof() && !is_space(c) && c != b':' && c != MSDOS_EOF {
                c = self.getc();
            }
            let field_len = (self.pos - field_start).saturating_sub(1);
            let name = &data[field_start..field_start + field_len];
            let shown = String::from_utf8_lossy(name).into_owned();
            if name.is_empty() {
                return Err(self.error(field_start, "empty field name".into()));
            }
            if name[0] == b'-' {
                return Err(self.error(
                    field_start,
                    format!("field name {shown:?} cannot start with hyphen"),
                ));
            }
            while !self.eof() && c != b'\n' && is_space(c) {
                c = self.getc();
            }
            if self.eof() {
                return Err(self.error(
                    self.pos,
                    format!("end of file after field name {shown:?} (file cut short)"),
                ));
            }
            if c == b'\n' {
                return Err(self.error(field_start, format!("newline in field name {shown:?}")));
            }
            if c == MSDOS_EOF {
                return Err(self.error(field_start, format!("^Z in field name {shown:?}")));
            }
            if c != b':' {
                return Err(self.error(
                    field_start,
                    format!("field name {shown:?} must be followed by colon"),
                ));
            }
            while !self.eof() {
                c = self.getc();
                if c == b'\n' || !is_space(c) {
                    break;
                }
            }
            if self.eof() {
                return Err(self.error(
                    self.pos,
                    format!(
                        "end of file before value of field {shown:?} (missing final newline: file cut short)"
                    ),
                ));
            }
            if c == MSDOS_EOF {
                return Err(self.error(self.pos, format!("^Z in value of field {shown:?}")));
            }
            let value_start = self.pos - 1;
            loop {
                if c == b'\n' || c == MSDOS_EOF {
                    if self.eof() {
                        break;
                    }
                    c = self.getc();
                    if self.eof() || c == b'\n' || !is_space(c) {
                        break;
                    }
                    self.pos -= 1;
                }
                if self.eof() {
                    return Err(self.error(
                        self.pos,
                        format!(
                            "end of file during value of field {shown:?} (missing final newline: file cut short)"
                        ),
                    ));
                }
                c = self.getc();
            }
            let mut value_len = (self.pos - value_start).saturating_sub(1);
            while value_len > 0 && is_space(data[value_start + value_len - 1]) {
                value_len -= 1;
            }
            fields.push(RawField {
                name,
                value: &data[value_start..value_start + value_len],
                line: field_line,
            });
            if self.eof() || c == b'\n' || c == MSDOS_EOF {
                break;
            }
        }
        Ok(Some((start_line, fields)))
    }
}
