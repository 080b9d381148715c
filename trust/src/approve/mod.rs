//! Approving a bundle: the approval statement and its signature ([`statement`]).

pub mod statement;

pub use statement::{approval_statement, sign_statement, wafer_subjects, ApprovalRequest};
