//! The verification report: every named check, passed or failed, with its reason.

use rootfs::escape::Escaped;

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Why (for failures, the precise reason).
    pub detail: String,
}

/// The verification report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// All checks, in order.
    pub checks: Vec<Check>,
}

impl Report {
    pub(crate) fn add(
        &mut self,
        name: impl Into<String>,
        passed: bool,
        detail: impl Into<String>,
    ) -> bool {
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail: detail.into(),
        });
        passed
    }

    /// True if every check passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// The failed checks.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and details carry text from the bundle (attestation file names, the manifest's
        // name and version): escaped, so a crafted field cannot print a fake line or hide one.
        for c in &self.checks {
            writeln!(
                f,
                "{} {}: {}",
                if c.passed { "PASS" } else { "FAIL" },
                Escaped(&c.name),
                Escaped(&c.detail)
            )?;
        }
        writeln!(
            f,
            "{}",
            if self.passed() {
                "RESULT: PASSED"
            } else {
                "RESULT: FAILED"
            }
        )
    }
}
