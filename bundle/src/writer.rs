//! [`BundleWriter`]: a bundle is written into a temporary sibling folder and renamed into place
//! only when it is complete, so a failed or interrupted build never leaves a half bundle under
//! the output name, and an existing output is untouched by a failed run.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::manifest::{to_stable_json, Manifest};
use crate::{ATTESTATIONS_DIR, MANIFEST_FILE};

/// Errors writing a bundle; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The output exists (and is not an empty folder) and replacing it was not asked for.
    #[error("{0}: exists and is not empty")]
    Exists(PathBuf),
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Serialising JSON failed.
    #[error("{path}: json: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WriterError + '_ {
    move |source| WriterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a bundle: files go into [`BundleWriter::path`], a folder `.NAME.partial-…` next to
/// the destination; [`BundleWriter::commit`] renames it to the destination. Dropped without a
/// commit, the temporary folder is removed and the destination is as it was.
#[derive(Debug)]
pub struct BundleWriter {
    dest: PathBuf,
    tmp: PathBuf,
    replace: bool,
    committed: bool,
}

/// Whether `p` is an empty folder (not a link).
fn empty_dir(p: &Path) -> Result<bool, WriterError> {
    let md = std::fs::symlink_metadata(p).map_err(io(p))?;
    if !md.is_dir() {
        return Ok(false);
    }
    Ok(std::fs::read_dir(p).map_err(io(p))?.next().is_none())
}

impl BundleWriter {
    /// Starts writing the bundle that will be `dest`. An existing `dest` that is not an empty
    /// folder is refused unless `replace` (then it is replaced at [`BundleWriter::commit`], not
    /// before). The temporary folder holds an empty `attestations/`.
    pub fn create(dest: &Path, replace: bool) -> Result<BundleWriter, WriterError> {
        if std::fs::symlink_metadata(dest).is_ok() && !replace && !empty_dir(dest)? {
            return Err(WriterError::Exists(dest.to_path_buf()));
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bundle".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut attempt = 0u32;
        let tmp = loop {
            let t = parent.join(format!(
                ".{name}.partial-{}-{:x}",
                std::process::id(),
                nanos.wrapping_add(attempt)
            ));
            match std::fs::create_dir(&t) {
                Ok(()) => break t,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1
                }
                Err(e) => return Err(io(&t)(e)),
            }
        };
        let w = BundleWriter {
            dest: dest.to_path_buf(),
            tmp,
            replace,
            committed: false,
        };
        let att = w.tmp.join(ATTESTATIONS_DIR);
        std::fs::create_dir(&att).map_err(io(&att))?;
        Ok(w)
    }

    /// The temporary folder the bundle's files are written into.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Writes `name` in the bundle as stable JSON (sorted keys, two-space indentation, a final
    /// newline).
    pub fn write_json<T: Serialize>(&self, name: &str, v: &T) -> Result<PathBuf, WriterError> {
        let path = self.tmp.join(name);
        let bytes = to_stable_json(v).map_err(|source| WriterError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, bytes).map_err(io(&path))?;
        Ok(path)
    }

    /// Writes `wafer.json`.
    pub fn write_manifest(&self, m: &Manifest) -> Result<PathBuf, WriterError> {
        self.write_json(MANIFEST_FILE, m)
    }

    /// Moves the finished bundle into place: over an empty folder, or (with `replace`) over an
    /// existing output, which is moved aside first and removed once the new one is in place.
    pub fn commit(mut self) -> Result<PathBuf, WriterError> {
        let dest = self.dest.clone();
        if std::fs::symlink_metadata(&dest).is_ok() {
            if empty_dir(&dest)? {
                std::fs::remove_dir(&dest).map_err(io(&dest))?;
            } else if self.replace {
                let old = self.tmp.with_extension("old");
                std::fs::rename(&dest, &old).map_err(io(&dest))?;
                std::fs::rename(&self.tmp, &dest).map_err(io(&dest))?;
                self.committed = true;
                let md = std::fs::symlink_metadata(&old).map_err(io(&old))?;
                if md.is_dir() {
                    std::fs::remove_dir_all(&old).map_err(io(&old))?;
                } else {
                    std::fs::remove_file(&old).map_err(io(&old))?;
                }
                return Ok(dest);
            } else {
                return Err(WriterError::Exists(dest));
            }
        }
        std::fs::rename(&self.tmp, &dest).map_err(io(&dest))?;
        self.committed = true;
        Ok(dest)
    }
}

impl Drop for BundleWriter {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = std::fs::remove_dir_all(&self.tmp) {
                tracing::warn!(path = %self.tmp.display(), "removing the unfinished bundle: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed bundle appears whole; a dropped one leaves nothing, and an existing output
    /// is untouched by a failed run and refused without `replace`.
    #[test]
    fn written_in_a_sibling_and_renamed_into_place() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out");
        let w = BundleWriter::create(&dest, false).unwrap();
        assert!(w.path().starts_with(d.path()));
        assert!(w
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".out.partial-"));
        w.write_json("build-report.json", &serde_json::json!({"b": 1, "a": 2}))
            .unwrap();
        assert!(!dest.exists(), "nothing under the output name before the commit");
        w.commit().unwrap();
        assert_eq!(
            std::fs::read(dest.join("build-report.json")).unwrap(),
            b"{\n  \"a\": 2,\n  \"b\": 1\n}\n"
        );
        assert!(dest.join("attestations").is_dir());
        let names = |p: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(d.path()), vec!["out"]);

        // An existing output: refused without replace, untouched by a dropped writer.
        assert!(matches!(
            BundleWriter::create(&dest, false),
            Err(WriterError::Exists(_))
        ));
        let w = BundleWriter::create(&dest, true).unwrap();
        w.write_json("build-report.json", &1).unwrap();
        drop(w);
        assert_eq!(names(d.path()), vec!["out"]);
        assert!(std::fs::read(dest.join("build-report.json"))
            .unwrap()
            .starts_with(b"{"));
        // Replaced on commit.
        let w = BundleWriter::create(&dest, true).unwrap();
        w.write_json("build-report.json", &1).unwrap();
        w.commit().unwrap();
        assert_eq!(std::fs::read(dest.join("build-report.json")).unwrap(), b"1\n");
        assert_eq!(names(d.path()), vec!["out"]);

        // An empty folder is filled.
        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let w = BundleWriter::create(&empty, false).unwrap();
        w.commit().unwrap();
        assert!(empty.join("attestations").is_dir());
    }
}
