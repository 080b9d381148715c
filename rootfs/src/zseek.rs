//! Seekable zstd (placeholder until the seekable-format module lands).
