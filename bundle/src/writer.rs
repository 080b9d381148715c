//! [`BundleWriter`]: a bundle is written into a temporary sibling folder and renamed into place
//! only when it is complete, so a failed or interrupted build never leaves a half bundle under
//! the output name, and an existing output is untouched by a failed run.
//!
//! There is one mechanism for this in wafer, [`rootfs::atomic::AtomicDir`]: the temporary is
//! `.NAME.wafer-tmp-PID-N` beside the destination, registered for removal on SIGINT, SIGTERM and
//! SIGHUP; at the commit every file is synced and the folder renamed into place, or (with
//! [`Replace::Yes`]) exchanged with the existing output in one `renameat2(RENAME_EXCHANGE)`.

use std::path::{Path, PathBuf};

use rootfs::atomic::{AtomicDir, AtomicError, Replace};
use serde::Serialize;

use crate::manifest::{to_stable_json, Manifest};
use crate::{ATTESTATIONS_DIR, MANIFEST_FILE};

/// Errors writing a bundle; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The destination exists (and is not an empty folder) and replacing it was not asked for,
    /// it is not a folder, or the temporary folder cannot be made, synced or renamed.
    #[error(transparent)]
    Atomic(#[from] AtomicError),
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

/// Writes a bundle: files go into [`BundleWriter::path`], a temporary folder next to the
/// destination ([`AtomicDir`]); [`BundleWriter::commit`] renames it to the destination. Dropped
/// without a commit (an error, a panic), the temporary folder is removed and the destination is
/// as it was; interrupted by a signal, the signal handler of [`rootfs::atomic`] removes it.
#[derive(Debug)]
pub struct BundleWriter {
    dir: AtomicDir,
}

impl BundleWriter {
    /// Checks that a bundle may be written at `dest` (nothing there, an empty folder, or a folder
    /// and [`Replace::Yes`]) without creating anything: for refusing before a long build or a
    /// passphrase prompt. [`BundleWriter::create`] and the commit check again.
    pub fn check_dest(dest: &Path, replace: Replace) -> Result<(), WriterError> {
        Ok(rootfs::atomic::check_dir_target(dest, replace)?)
    }

    /// Starts writing the bundle that will be `dest`. An existing `dest` that is not an empty
    /// folder is refused unless `replace` is [`Replace::Yes`] (then it is replaced at
    /// [`BundleWriter::commit`], not before). The temporary folder holds an empty
    /// `attestations/`.
    pub fn create(dest: &Path, replace: Replace) -> Result<BundleWriter, WriterError> {
        let w = BundleWriter {
            dir: AtomicDir::create(dest, replace)?,
        };
        let att = w.path().join(ATTESTATIONS_DIR);
        std::fs::create_dir(&att).map_err(io(&att))?;
        Ok(w)
    }

    /// The temporary folder the bundle's files are written into.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The destination.
    pub fn dest(&self) -> &Path {
        self.dir.final_path()
    }

    /// Writes `name` in the bundle as stable JSON (sorted keys, two-space indentation, a final
    /// newline).
    pub fn write_json<T: Serialize>(&self, name: &str, v: &T) -> Result<PathBuf, WriterError> {
        let path = self.path().join(name);
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

    /// Syncs the finished bundle and moves it into place: onto nothing or an empty folder, or
    /// (with [`Replace::Yes`]) exchanged with the existing output in one rename, the old one
    /// then removed. Returns the destination.
    pub fn commit(self) -> Result<PathBuf, WriterError> {
        Ok(self.dir.commit()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Path) -> Vec<std::ffi::OsString> {
        let mut v: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    }

    /// A committed bundle appears whole; a dropped one leaves nothing, and an existing output
    /// is untouched by a failed run and refused without `replace`.
    #[test]
    fn written_in_a_sibling_and_renamed_into_place() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out");
        BundleWriter::check_dest(&dest, Replace::No).unwrap();
        let w = BundleWriter::create(&dest, Replace::No).unwrap();
        assert!(w.path().starts_with(d.path()));
        assert!(rootfs::atomic::is_temp_name(
            &w.path().file_name().unwrap().to_string_lossy()
        ));
        assert_eq!(w.dest(), dest);
        w.write_json("build-report.json", &serde_json::json!({"b": 1, "a": 2}))
            .unwrap();
        assert!(
            !dest.exists(),
            "nothing under the output name before the commit"
        );
        assert_eq!(w.commit().unwrap(), dest);
        assert_eq!(
            std::fs::read(dest.join("build-report.json")).unwrap(),
            b"{\n  \"a\": 2,\n  \"b\": 1\n}\n"
        );
        assert!(dest.join("attestations").is_dir());
        assert_eq!(names(d.path()), vec!["out"]);

        // An existing output: refused without replace (checked and at create), untouched by a
        // dropped writer.
        for e in [
            BundleWriter::check_dest(&dest, Replace::No).unwrap_err(),
            BundleWriter::create(&dest, Replace::No).unwrap_err(),
        ] {
            assert!(
                matches!(e, WriterError::Atomic(AtomicError::Exists { ref path, .. }) if *path == dest),
                "{e}"
            );
            assert!(e.to_string().contains("not empty; use --force"), "{e}");
        }
        let w = BundleWriter::create(&dest, Replace::Yes).unwrap();
        w.write_json("build-report.json", &1).unwrap();
        drop(w);
        assert_eq!(names(d.path()), vec!["out"]);
        assert!(std::fs::read(dest.join("build-report.json"))
            .unwrap()
            .starts_with(b"{"));
        // Replaced on commit, in one exchange: the old one is gone, nothing is left beside.
        let w = BundleWriter::create(&dest, Replace::Yes).unwrap();
        w.write_json("build-report.json", &1).unwrap();
        w.commit().unwrap();
        assert_eq!(
            std::fs::read(dest.join("build-report.json")).unwrap(),
            b"1\n"
        );
        assert_eq!(names(d.path()), vec!["out"]);

        // An empty folder is filled.
        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let w = BundleWriter::create(&empty, Replace::No).unwrap();
        w.commit().unwrap();
        assert!(empty.join("attestations").is_dir());

        // A file where the bundle goes is refused even with replace.
        let file = d.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            BundleWriter::create(&file, Replace::Yes),
            Err(WriterError::Atomic(AtomicError::WrongType { .. }))
        ));
    }
}
