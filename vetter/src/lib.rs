//! Image inventory, site policy, verdicts and reports.
