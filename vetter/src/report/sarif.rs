//! SARIF 2.1.0 (OASIS Static Analysis Results Interchange Format, errata 01).
//!
//! One run; `tool.driver.rules` holds every policy rule (§3.49 reportingDescriptor: id, short and
//! full description, help = the remedy, default level); each finding is a result (§3.27) with its
//! level, message, and locations whose `artifactLocation.uri` is the path inside the image
//! relative to the `IMAGEROOT` base (§3.4.4, `originalUriBaseIds`), with `region.startLine`
//! when the line is known. Waived findings carry an accepted external suppression (§3.35);
//! with `--since`, `baselineState` is `new` or `unchanged` (§3.27.24).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::policy::{Finding, Severity, Verdict, WaiverState};

/// The schema URI written in `$schema`.
pub const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
/// The uriBaseId standing for the image's root directory.
pub const URI_BASE_ID: &str = "IMAGEROOT";
/// Where the policy documentation (`docs/policy.md`) is published. wafer has no public home
/// yet: like the project's other identifiers it uses the reserved `.invalid` domain; change it
/// here when the documentation is published.
pub const DOCS_BASE: &str = "https://wafer.invalid/docs/";

/// The documentation of a rule kind: `docs/policy.md` at the anchor `rule-kind-KIND` (an explicit
/// `<a id>` in that file, one per kind; a test checks each exists).
pub fn rule_doc_uri(kind: &str) -> String {
    format!("{DOCS_BASE}policy.md#rule-kind-{}", uri_of(kind))
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub code scanning's numeric `security-severity`.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// Percent-encode an image path as a relative URI reference (RFC 3986: unreserved and `/` kept).
fn uri_of(path: &str) -> String {
    let mut out = String::new();
    for b in path.trim_start_matches('/').bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn pascal(id: &str) -> String {
    id.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn result(f: &Finding, rule_index: Option<usize>) -> Value {
    let mut locations = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for e in &f.evidence {
        let Some((path, line)) = e.location() else {
            continue;
        };
        if path.is_empty() || !seen.insert((path.to_string(), line)) {
            continue;
        }
        let mut phys =
            json!({ "artifactLocation": { "uri": uri_of(path), "uriBaseId": URI_BASE_ID } });
        if let Some(l) = line.filter(|l| *l >= 1) {
            phys["region"] = json!({ "startLine": l });
        }
        locations.push(json!({ "physicalLocation": phys, "message": { "text": e.describe() } }));
    }
    let fp = hex::encode(Sha256::digest(
        format!("{}\0{}", f.rule, f.subject).as_bytes(),
    ));
    let mut r = json!({
        "ruleId": f.rule,
        "level": level(f.severity),
        "message": { "text": f.message },
        "locations": locations,
        "partialFingerprints": { "waferFinding/v1": fp },
        "properties": {
            "subject": f.subject,
            "severity": f.severity.as_str(),
            "blocking": f.blocking,
            "remedy": f.remedy,
            "evidence": f.evidence.iter().map(|e| e.describe()).collect::<Vec<_>>(),
        }
    });
    if let Some(i) = rule_index {
        r["ruleIndex"] = json!(i);
    }
    match &f.waiver {
        Some(WaiverState::Applied {
            justification,
            expires,
            ..
        }) => {
            r["suppressions"] = json!([{ "kind": "external", "status": "accepted", "justification": format!("{justification} (until {expires})") }]);
        }
        Some(WaiverState::Expired { expired, .. }) => {
            r["properties"]["waiverExpired"] = json!(expired);
        }
        None => {}
    }
    if let Some(n) = f.new {
        r["baselineState"] = json!(if n { "new" } else { "unchanged" });
    }
    r
}

/// The verdict as a SARIF 2.1.0 log.
pub fn sarif(v: &Verdict) -> Value {
    let rules: Vec<Value> = v
        .rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": pascal(&r.id),
                "shortDescription": { "text": r.description },
                "fullDescription": { "text": format!("{} ({} rule, severity {})", r.description, r.kind, r.severity) },
                "help": { "text": r.remedy },
                "helpUri": rule_doc_uri(&r.kind),
                "defaultConfiguration": { "level": level(r.severity) },
                "properties": { "kind": r.kind, "severity": r.severity.as_str(), "security-severity": security_severity(r.severity), "tags": ["security", r.kind] }
            })
        })
        .collect();
    let results: Vec<Value> = v
        .findings
        .iter()
        .map(|f| result(f, v.rules.iter().position(|r| r.id == f.rule)))
        .collect();
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "wafer vet",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": format!("{DOCS_BASE}policy.md"),
                "rules": rules,
            }},
            "originalUriBaseIds": { URI_BASE_ID: { "uri": "file:///", "description": { "text": format!("The root directory inside wafer {}", v.wafer) } } },
            "automationDetails": { "id": format!("wafer-vet/{}/", v.wafer) },
            "invocations": [invocation(v)],
            "results": results,
            "properties": { "wafer": v.wafer, "policy": v.policy, "policyDigest": v.policy_digest, "date": v.date },
        }]
    })
}

/// The run's invocation: unsuccessful (with one notification per unread source) when the image
/// could not be vetted; the rule kinds checked in its properties.
fn invocation(v: &Verdict) -> Value {
    let notes: Vec<Value> = v
        .unvetted
        .iter()
        .map(|u| {
            json!({
                "level": if u.waived { "warning" } else { "error" },
                "message": { "text": format!("{} ({}) could not be read: {}{}", u.path, u.source, u.reason, if u.waived { " (waived by the policy)" } else { "" }) },
            })
        })
        .collect();
    let mut inv = json!({
        "executionSuccessful": v.outcome != crate::policy::Outcome::CouldNotVet,
        "properties": { "outcome": v.outcome, "failOn": v.fail_on.as_str(), "checkedKinds": v.checked, "uncheckedKinds": v.not_checked },
    });
    if !notes.is_empty() {
        inv["toolExecutionNotifications"] = Value::Array(notes);
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_names() {
        assert_eq!(
            uri_of("/etc/ssh/ssh_host_rsa_key"),
            "etc/ssh/ssh_host_rsa_key"
        );
        assert_eq!(uri_of("/a b/%"), "a%20b/%25");
        assert_eq!(pascal("files.empty-passwords"), "FilesEmptyPasswords");
    }
}
