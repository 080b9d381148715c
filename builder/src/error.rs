//! The builder's errors. Every error caused by the recipe names the recipe file and line.

use std::path::Path;

/// Everything that can stop a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The recipe is not valid TOML or has unknown/missing keys (the message carries line and column).
    #[error("{file}: {message}")]
    Parse {
        /// Recipe file.
        file: String,
        /// Parser message.
        message: String,
    },
    /// A semantic error at a recipe line.
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// Recipe file.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A step failed.
    #[error("{file}:{line}: step {index} ({kind}): {message}")]
    Step {
        /// Recipe file.
        file: String,
        /// 1-based line of the step.
        line: usize,
        /// 1-based step number.
        index: usize,
        /// Step type.
        kind: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The base does not match its pinned digest.
    #[error(
        "{file}:{line}: base {path}: sha256 mismatch: recipe pins {expected}, file has {actual}"
    )]
    BaseDigest {
        /// Recipe file.
        file: String,
        /// Line of `sha256`.
        line: usize,
        /// Base path.
        path: String,
        /// Pinned digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// The requested image size cannot hold the contents.
    #[error("{file}:{line}: output.size {given} bytes is too small: the contents need at least {needed} bytes ({needed_mib} MiB)")]
    ImageTooSmall {
        /// Recipe file.
        file: String,
        /// Line of `size`.
        line: usize,
        /// Size given.
        given: u64,
        /// Size needed.
        needed: u64,
        /// Size needed in MiB, rounded up.
        needed_mib: u64,
    },
    /// Host I/O on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the base failed.
    #[error("base {path}: {message}")]
    Base {
        /// The base path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Writing, compressing or hashing the image failed.
    #[error("output: {0}")]
    Output(String),
}

impl BuildError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        BuildError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The builder's result type.
pub type Result<T, E = BuildError> = std::result::Result<T, E>;
