//! References: `host[:port]/repo[:tag][@sha256:HEX]` (a registry) and `oci:PATH[:tag]` (an OCI
//! image layout folder).

use std::fmt;
use std::path::PathBuf;

use crate::OciError;

/// Where the artifact lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A registry speaking the OCI distribution spec.
    Registry {
        /// `host` or `host:port`.
        host: String,
        /// The repository (`cms/frontier-squid`).
        repo: String,
    },
    /// An OCI image layout folder.
    Layout {
        /// The folder.
        path: PathBuf,
    },
}

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry repository or layout folder.
    pub location: Location,
    /// The tag, if given.
    pub tag: Option<String>,
    /// The manifest digest (`sha256:HEX`), if given.
    pub digest: Option<String>,
}

fn bad(input: &str, why: impl Into<String>) -> OciError {
    OciError::Reference {
        input: input.to_string(),
        why: why.into(),
    }
}

/// A tag as the distribution spec allows: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `sha256:` and 64 lowercase hex digits.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
}

/// A repository name: lowercase components of `[a-z0-9]` separated by `.`, `_`, `__` or `-`s,
/// joined by `/`.
fn valid_repo(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 255
        && r.split('/').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|x| matches!(x, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        })
}

fn valid_host(h: &str) -> bool {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || h.starts_with('[') => (n, Some(p)),
        _ => (h, None),
    };
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'[' | b']' | b':'))
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()))
}

impl Reference {
    /// Parses a reference.
    pub fn parse(input: &str) -> Result<Reference, OciError> {
        if input.is_empty() || input.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad(input, "empty, or holds spaces or control characters"));
        }
        if let Some(rest) = input.strip_prefix("oci:") {
            // oci:PATH[:tag] or oci:PATH@sha256:HEX; a final `:tag` is text without `/`.
            let (rest, digest) = match rest.rsplit_once('@') {
                Some((p, d)) if valid_digest(d) => (p, Some(d.to_string())),
                _ => (rest, None),
            };
            let (path, tag) = match rest.rsplit_once(':') {
                Some((p, t)) if !t.contains('/') && !p.is_empty() && digest.is_none() => {
                    (p, Some(t))
                }
                _ => (rest, None),
            };
            if path.is_empty() {
                return Err(bad(input, "oci: needs a folder, e.g. oci:./layout:1.0"));
            }
            let tag = match tag {
                Some(t) if valid_tag(t) => Some(t.to_string()),
                Some(t) => return Err(bad(input, format!("{t:?} is not a valid tag"))),
                None => None,
            };
            return Ok(Reference {
                location: Location::Layout {
                    path: PathBuf::from(path),
                },
                tag,
                digest,
            });
        }
        let (name, digest) = match input.split_once('@') {
            Some((n, d)) => {
                if !valid_digest(d) {
                    return Err(bad(input, format!("{d:?} is not a sha256:HEX digest")));
                }
                (n, Some(d.to_string()))
            }
            None => (input, None),
        };
        let Some((host, path)) = name.split_once('/') else {
            return Err(bad(
                input,
                "expected HOST[:PORT]/REPOSITORY[:TAG] (e.g. registry.example.org/cms/squid:2.7) or oci:FOLDER[:TAG]",
            ));
        };
        if !valid_host(host) {
            return Err(bad(
                input,
                format!("{host:?} is not a registry host[:port]"),
            ));
        }
        let (repo, tag) = match path.rsplit_once(':') {
            Some((r, t)) => {
                if !valid_tag(t) {
                    return Err(bad(input, format!("{t:?} is not a valid tag")));
                }
                (r, Some(t.to_string()))
            }
            None => (path, None),
        };
        if !valid_repo(repo) {
            return Err(bad(
                input,
                format!("{repo:?} is not a repository name (lowercase letters, digits, . _ - separated, / between parts)"),
            ));
        }
        Ok(Reference {
            location: Location::Registry {
                host: host.to_string(),
                repo: repo.to_string(),
            },
            tag,
            digest,
        })
    }

    /// The manifest reference to ask for: the digest when given, else the tag.
    pub fn manifest_ref(&self) -> Option<&str> {
        self.digest.as_deref().or(self.tag.as_deref())
    }

    /// The same location with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            location: self.location.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Registry { host, repo } => {
                write!(f, "{host}/{repo}")?;
                if let Some(t) = &self.tag {
                    write!(f, ":{t}")?;
                }
                if let Some(d) = &self.digest {
                    write!(f, "@{d}")?;
                }
                Ok(())
            }
            Location::Layout { path } => {
                write!(f, "oci:{}", path.display())?;
                match (&self.tag, &self.digest) {
                    (_, Some(d)) => write!(f, "@{d}"),
                    (Some(t), None) => write!(f, ":{t}"),
                    (None, None) => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_references() {
        let r = Reference::parse("127.0.0.1:5000/cms/frontier-squid:2.7.9-1").unwrap();
        assert_eq!(
            r.location,
            Location::Registry {
                host: "127.0.0.1:5000".into(),
                repo: "cms/frontier-squid".into()
            }
        );
        assert_eq!(r.tag.as_deref(), Some("2.7.9-1"));
        assert_eq!(r.to_string(), "127.0.0.1:5000/cms/frontier-squid:2.7.9-1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("reg.example.org/x@{d}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.manifest_ref(), Some(d.as_str()));
        for bad in [
            "",
            "squid",
            "reg/UPPER",
            "reg/x:bad tag",
            "reg/x:-x",
            "reg/x@sha256:abc",
            "reg//x",
            "re g/x",
            "reg/x\u{1b}",
            "host:99999999/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn layout_references() {
        let r = Reference::parse("oci:/tmp/lay:1.0").unwrap();
        assert_eq!(
            r.location,
            Location::Layout {
                path: "/tmp/lay".into()
            }
        );
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        let r = Reference::parse("oci:rel/dir").unwrap();
        assert_eq!(r.tag, None);
        assert!(Reference::parse("oci:").is_err());
        assert!(Reference::parse("oci:/x:bad!").is_err());
    }
}
