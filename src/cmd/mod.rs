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
pub mod trustcmd;
pub mod vet;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Exit status of a command that failed with an error (could not do its work).
pub const ERROR_EXIT: u8 = 1;

/// User-interface settings shared by the subcommands.
pub struct Ui {
    /// No progress bars, no summaries on stderr.
    pub quiet: bool,
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
                _ => return Err(format!("unknown size suffix {c:?} in {s:?} (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let v: f64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 4096, 512M, 2G)"))?;
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
    use super::parse_size;

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
