//! [`Verified`]: the proof that verification passed, the only value deployment accepts.
//!
//! Its field is private and its constructor is `pub(crate)`: outside this crate, the only way to
//! get one is a successful [`crate::verify::verify_dir`] or [`crate::verify::verify_bundle`].
//!
//! It cannot be built by hand:
//!
//! ```compile_fail
//! fn forge(b: bundle::Bundle) -> trust::Verified<bundle::Bundle> {
//!     trust::Verified { value: b, report: Default::default() }
//! }
//! ```
//!
//! nor through its constructor:
//!
//! ```compile_fail
//! fn forge(b: bundle::Bundle) -> trust::Verified<bundle::Bundle> {
//!     trust::Verified::new(b, trust::verify::Report::default())
//! }
//! ```
//!
//! while verification gives one:
//!
//! ```no_run
//! fn verified(dir: &std::path::Path, store: &trust::store::TrustStore)
//!     -> Option<trust::Verified<bundle::Bundle>> {
//!     trust::verify_dir(dir, store, 0, &Default::default()).ok()
//! }
//! ```

use crate::report::Report;

/// A value (a [`bundle::Bundle`]) that passed verification, with the report of its checks.
#[derive(Debug)]
pub struct Verified<T> {
    value: T,
    report: Report,
}

impl<T> Verified<T> {
    /// Only verification makes one.
    pub(crate) fn new(value: T, report: Report) -> Verified<T> {
        Verified { value, report }
    }

    /// The verified value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// Every check that passed.
    pub fn report(&self) -> &Report {
        &self.report
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}
