//! Subcommands of the `wafer` command.

pub mod build;
pub mod demo;
pub mod deploy;
pub mod docs;
pub mod image;
pub mod inspect;
pub mod key;
pub mod ls;
pub mod mkfs;
pub mod pull;
pub mod push;
pub mod trustcmd;
pub mod vet;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Exit status of a command that failed with an error (could not do its work).
pub const ERROR_EXIT: u8 = 1;
/// Exit status of a usage error (bad arguments), for every command (docs/exit-codes.md).
pub const USAGE_EXIT: u8 = 2;

/// True when an error or one of its causes is a write to a closed pipe (`wafer ... | head -1`):
/// `main` then ends quietly by SIGPIPE, so a command that reports its own errors (`vet`'s
/// "could not vet") passes this one on instead.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// User-interface settings shared by the subcommands.
#[derive(Default)]
pub struct Ui {
    /// No progress bars, no summaries on stderr.
    pub quiet: bool,
    /// Work budgets for reading images.
    pub budgets: Budgets,
}

/// Budgets bounding the work and space spent on an image, archive or directory (global options:
/// every command reading one honours them). Each exceeded budget is a clear error, or a file
/// reported as not hashed.
#[derive(clap::Args, Clone, Debug)]
pub struct Budgets {
    /// Most bytes a compressed tar archive may decompress into its spool file in $TMPDIR
    /// [default: 100 times the compressed size, at least 256M].
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_budget)]
    pub max_spool: Option<u64>,
    /// Regular files larger than SIZE (logical size) are not hashed; listings and inventories
    /// say so.
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_budget, default_value = "4G")]
    pub hash_max_file: u64,
    /// Bytes of holes (zeros that sparse files declare but do not store) hashed over a whole
    /// image; sparse files past it are not hashed, and listings and inventories say so.
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_budget, default_value = "1G")]
    pub hash_holes: u64,
    /// Longest path, in bytes, an inventory holds (`inspect`, `vet`); a longer one is an error.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = vetter::DEFAULT_MAX_PATH_BYTES)]
    pub max_path: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            max_spool: None,
            hash_max_file: rootfs::content::DEFAULT_HASH_MAX_FILE,
            hash_holes: rootfs::content::DEFAULT_HASH_HOLES,
            max_path: vetter::DEFAULT_MAX_PATH_BYTES,
        }
    }
}

impl Budgets {
    /// Options for opening a source within these budgets.
    pub fn open_options(&self) -> rootfs::open::OpenOptions {
        let mut o = rootfs::open::OpenOptions::default();
        o.tar.max_decompressed_bytes = self.max_spool;
        o
    }

    /// A fresh hashing budget for one image.
    pub fn hash_budget(&self) -> rootfs::content::HashBudget {
        rootfs::content::HashBudget::new(self.hash_max_file, self.hash_holes)
    }
}

/// A size budget: like [`parse_size`], and `0` is allowed.
pub fn parse_budget(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    parse_size(s)
}

impl Ui {
    /// A progress bar on stderr of `len` steps; hidden when quiet or stderr is not a terminal.
    pub fn progress(&self, len: u64, what: &str) -> ProgressBar {
        use std::io::IsTerminal;
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        }
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})") {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(what.to_string());
        pb
    }

    /// A byte-count progress bar on stderr (with rate and time left); hidden when quiet or
    /// stderr is not a terminal.
    pub fn bytes_progress(&self, len: u64, what: &str) -> ProgressBar {
        use std::io::IsTerminal;
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        }
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(what.to_string());
        pb.enable_steady_tick(std::time::Duration::from_millis(200));
        pb
    }

    /// A spinner on stderr with a message; hidden when quiet or stderr is not a terminal.
    pub fn spinner(&self, what: &str) -> ProgressBar {
        use std::io::IsTerminal;
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new_spinner();
        pb.set_message(what.to_string());
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb
    }
}

/// The text of an error and its causes, outermost first, joined by `": "` like anyhow's `{:#}`,
/// without the repetition our typed errors bring: a typed error both shows its source in its
/// message (`"{path}: {source}"`, so libraries' errors read well alone) and returns it from
/// `source()`, and a command's context often names the same path. So a cause whose text the
/// previous message already ends with is left out, and a cause starting with `"P: "` where the
/// previous message ends with `P` (a path named twice) loses that prefix.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut prev = String::new();
    for link in e.chain() {
        let text = link.to_string();
        if text.is_empty() || (!prev.is_empty() && prev.ends_with(&text)) {
            continue;
        }
        let mut shown = text.as_str();
        if let Some((head, rest)) = text.split_once(": ") {
            if !head.is_empty() && !rest.is_empty() && ends_with_word(&prev, head) {
                shown = rest;
            }
        }
        parts.push(shown.to_string());
        prev = text;
    }
    parts.join(": ")
}

/// `text` ends with `word`, and `word` starts `text` or follows a space or a colon.
fn ends_with_word(text: &str, word: &str) -> bool {
    match text.strip_suffix(word) {
        Some(before) => before.is_empty() || before.ends_with([' ', ':']),
        None => false,
    }
}

/// Parse a size: bytes, or a number with K/M/G/T (binary) suffix, e.g. `512M`, `2G`, `1.5G`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => {
                    return Err(format!(
                        "unknown size suffix {c:?} in {s:?} (use K, M, G or T)"
                    ))
                }
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 4096, 512M, 2G)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{s:?}: size must be positive"));
    }
    let bytes = v * mult as f64;
    if bytes > u64::MAX as f64 / 2.0 {
        return Err(format!("{s:?}: size too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::{error_text, parse_size};

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Typed {
        path: String,
        source: std::io::Error,
    }

    fn not_found() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        )
    }

    #[test]
    fn error_chain_without_repetition() {
        let e = anyhow::Error::new(Typed {
            path: "/p.toml".into(),
            source: not_found(),
        })
        .context("loading policy /p.toml");
        assert_eq!(
            format!("{e:#}").matches("No such file").count(),
            2,
            "the problem this fixes"
        );
        assert_eq!(
            error_text(&e),
            "loading policy /p.toml: No such file or directory (os error 2)"
        );
        // A context not naming the path keeps it.
        let e = anyhow::Error::new(Typed {
            path: "/p.toml".into(),
            source: not_found(),
        })
        .context("building");
        assert_eq!(
            error_text(&e),
            "building: /p.toml: No such file or directory (os error 2)"
        );
        // Only a whole word is a repeated path: "/x/p.toml" does not end with the word "p.toml".
        let e = anyhow::Error::new(Typed {
            path: "p.toml".into(),
            source: not_found(),
        })
        .context("reading /x/p.toml");
        assert_eq!(
            error_text(&e),
            "reading /x/p.toml: p.toml: No such file or directory (os error 2)"
        );
        // Plain chains are unchanged.
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_text(&e), format!("{e:#}"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("").is_err());
    }
}
