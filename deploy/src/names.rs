//! Validation of names that end up in paths, file contents and command lines.

use thiserror::Error;

/// Longest accepted name (slots, networks, deployments, VOs, bridges).
pub const MAX_NAME_LEN: usize = 64;

/// A name was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    #[error("{what}: name is empty")]
    Empty {
        /// What kind of name it was.
        what: String,
    },
    /// The name is longer than [`MAX_NAME_LEN`] (or the hostname limit).
    #[error("{what} {name:?}: longer than {max} characters")]
    TooLong {
        /// What kind of name it was.
        what: String,
        /// The offending name (truncated for display).
        name: String,
        /// The limit.
        max: usize,
    },
    /// The name holds a character that is not allowed.
    #[error("{what} {name:?}: character {ch:?} at offset {offset} is not allowed (use A-Z a-z 0-9 . _ -, not starting with . or -)")]
    BadChar {
        /// What kind of name it was.
        what: String,
        /// The offending name.
        name: String,
        /// The character.
        ch: char,
        /// Its byte offset.
        offset: usize,
    },
}

fn shown(name: &str) -> String {
    name.chars().take(80).collect()
}

/// Checks a name used as a file name or identifier: 1..=64 characters from `[A-Za-z0-9._-]`,
/// not starting with `.` or `-` (so never `.`, `..`, a hidden file or an option), no `/`.
pub fn check_name(what: &str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty {
            what: what.to_string(),
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what: what.to_string(),
            name: shown(name),
            max: MAX_NAME_LEN,
        });
    }
    for (offset, ch) in name.char_indices() {
        let ok =
            ch.is_ascii_alphanumeric() || ((ch == '.' || ch == '-') && offset > 0) || ch == '_';
        if !ok {
            return Err(NameError::BadChar {
                what: what.to_string(),
                name: shown(name),
                ch,
                offset,
            });
        }
    }
    Ok(())
}

/// Checks a DNS host name (RFC 1123): labels of 1..=63 characters from `[A-Za-z0-9-]`, not
/// starting or ending with `-`, separated by dots; at most 253 characters in all.
pub fn check_hostname(what: &str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty {
            what: what.to_string(),
        });
    }
    if name.len() > 253 {
        return Err(NameError::TooLong {
            what: what.to_string(),
            name: shown(name),
            max: 253,
        });
    }
    let mut offset = 0usize;
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            let ch = if label.is_empty() {
                '.'
            } else {
                label.chars().next().unwrap_or('.')
            };
            return Err(NameError::BadChar {
                what: what.to_string(),
                name: shown(name),
                ch,
                offset,
            });
        }
        let last = label.len() - 1;
        for (i, ch) in label.char_indices() {
            let ok = ch.is_ascii_alphanumeric() || (ch == '-' && i != 0 && i != last);
            if !ok {
                return Err(NameError::BadChar {
                    what: what.to_string(),
                    name: shown(name),
                    ch,
                    offset: offset + i,
                });
            }
        }
        offset += label.len() + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("slot", "edge1").is_ok());
        assert!(check_name("slot", "a.b_c-d").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "-x",
            ".hidden",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(check_name("slot", bad).is_err(), "{bad:?} accepted");
        }
        let e = check_name("slot", "a/b").unwrap_err();
        assert_eq!(e.to_string(), "slot \"a/b\": character '/' at offset 1 is not allowed (use A-Z a-z 0-9 . _ -, not starting with . or -)");
    }

    #[test]
    fn hostnames() {
        assert!(check_hostname("h", "squid1.cern.ch").is_ok());
        for bad in ["", "a..b", "-a", "a-", "a_b", ".a", "a.", &"x".repeat(64)] {
            assert!(check_hostname("h", bad).is_err(), "{bad:?} accepted");
        }
    }
}
