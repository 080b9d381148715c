//! Reports of a verdict: terminal text ([`terminal`]), JSON ([`json`]), SARIF 2.1.0 ([`sarif`])
//! and one self-contained HTML page ([`html`]).

mod html;
mod sarif;

pub use html::html;
pub use sarif::{sarif, SARIF_SCHEMA, URI_BASE_ID};

use crate::policy::{Finding, Outcome, Severity, Verdict, WaiverState};

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";

fn sev_colour(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "\x1b[1;35m",
        Severity::High => "\x1b[1;31m",
        Severity::Medium => "\x1b[33m",
        Severity::Low => "\x1b[36m",
        Severity::Info => "\x1b[2m",
    }
}

/// Escape control, C1 and bidi characters (terminal escapes from the image must not reach the
/// terminal): the one helper every command uses, [`rootfs::escape::escape`].
fn clean(s: &str) -> String {
    rootfs::escape::escape(s).into_owned()
}

/// Terminal report: the outcome and totals first, then findings grouped by severity (most severe
/// first), waived findings last, then the per-rule results. `colour` adds ANSI colours (pass
/// `true` when standard output is a terminal).
pub fn terminal(v: &Verdict, colour: bool) -> String {
    let c = |code: &'static str| if colour { code } else { "" };
    let mut s = String::new();
    let (word, oc) = match v.outcome {
        Outcome::Pass => ("PASS", "\x1b[1;32m"),
        Outcome::Fail => ("FAIL", "\x1b[1;31m"),
        Outcome::CouldNotVet => ("COULD NOT VET", "\x1b[1;31m"),
    };
    let digest: String = v.policy_digest.chars().take(12).collect();
    s.push_str(&format!(
        "{}{word}{} wafer {}{}{} against policy {} (sha256 {digest}) on {}, failing on {} and above\n",
        c(oc),
        c(RESET),
        clean(&v.wafer),
        v.wafer_version
            .as_deref()
            .map(|x| format!(" {}", clean(x)))
            .unwrap_or_default(),
        v.vo.as_deref()
            .map(|x| format!(" (VO {})", clean(x)))
            .unwrap_or_default(),
        clean(if v.policy.is_empty() {
            "(unnamed)"
        } else {
            &v.policy
        }),
        v.date,
        v.fail_on
    ));
    let t = &v.totals;
    let mut parts: Vec<String> = Severity::ALL_DESC
        .iter()
        .map(|sev| {
            // A zero count is neutral: no alarm colour for nothing.
            let col = if t.of(*sev) == 0 {
                ""
            } else {
                sev_colour(*sev)
            };
            format!(
                "{}{} {}{}",
                c(col),
                t.of(*sev),
                sev,
                if col.is_empty() { "" } else { c(RESET) }
            )
        })
        .collect();
    parts.push(format!("{} blocking", t.blocking));
    parts.push(format!("{} waived", t.waived));
    if t.expired_waivers > 0 {
        parts.push(format!("{} with an expired waiver", t.expired_waivers));
    }
    if v.since {
        parts.push(format!("{} new, {} already known", t.new, t.known));
    }
    s.push_str(&format!("totals: {}\n", parts.join(", ")));
    let list = |l: &[String]| {
        if l.is_empty() {
            "none".to_string()
        } else {
            l.join(", ")
        }
    };
    s.push_str(&format!(
        "checked: {}; not checked: {}\n",
        list(&v.checked),
        list(&v.not_checked)
    ));
    for u in &v.unvetted {
        let (tag, col) = if u.waived {
            ("waived", DIM)
        } else {
            ("NOT VETTED", "\x1b[1;31m")
        };
        s.push_str(&format!(
            "{}{tag}:{} {} ({}) could not be read: {}\n",
            c(col),
            c(RESET),
            clean(&u.path),
            u.source,
            clean(&u.reason)
        ));
    }
    let finding = |s: &mut String, f: &Finding| {
        let mut tags = String::new();
        if f.new == Some(true) {
            tags.push_str(" [new]");
        } else if f.new == Some(false) {
            tags.push_str(" [known]");
        }
        match &f.waiver {
            Some(WaiverState::Applied { expires, .. }) => {
                tags.push_str(&format!(" [waived until {expires}]"))
            }
            Some(WaiverState::Expired { expired, .. }) => {
                tags.push_str(&format!(" [waiver EXPIRED {expired}]"))
            }
            None => {}
        }
        if !f.blocking && !f.waived() {
            tags.push_str(" [below threshold]");
        }
        s.push_str(&format!(
            "  {}{}{} {}{}\n",
            c(BOLD),
            clean(&f.rule),
            c(RESET),
            clean(&f.message),
            tags
        ));
        for e in &f.evidence {
            s.push_str(&format!(
                "      {}evidence:{} {}\n",
                c(DIM),
                c(RESET),
                clean(&e.describe())
            ));
        }
        if let Some(
            WaiverState::Applied { justification, .. } | WaiverState::Expired { justification, .. },
        ) = &f.waiver
        {
            s.push_str(&format!(
                "      {}waiver:{} {}\n",
                c(DIM),
                c(RESET),
                clean(justification)
            ));
        }
        s.push_str(&format!(
            "      {}remedy:{} {}\n",
            c(DIM),
            c(RESET),
            clean(&f.remedy)
        ));
    };
    for sev in Severity::ALL_DESC {
        let list: Vec<&Finding> = v
            .findings
            .iter()
            .filter(|f| f.severity == sev && !f.waived())
            .collect();
        if list.is_empty() {
            continue;
        }
        s.push_str(&format!(
            "\n{}{} ({}){}\n",
            c(sev_colour(sev)),
            sev.as_str().to_uppercase(),
            list.len(),
            c(RESET)
        ));
        for f in list {
            finding(&mut s, f);
        }
    }
    let waived: Vec<&Finding> = v.findings.iter().filter(|f| f.waived()).collect();
    if !waived.is_empty() {
        s.push_str(&format!(
            "\n{}WAIVED ({}){}\n",
            c(DIM),
            waived.len(),
            c(RESET)
        ));
        for f in waived {
            finding(&mut s, f);
        }
    }
    s.push_str("\nrules:\n");
    for r in &v.rules {
        let rc = match r.status.as_str() {
            "fail" => "\x1b[31m",
            "pass" => "\x1b[32m",
            _ => DIM,
        };
        s.push_str(&format!(
            "  {}{:<15}{} {:<30} {:<8} {} finding(s)\n",
            c(rc),
            r.status,
            c(RESET),
            clean(&r.id),
            r.severity,
            r.findings
        ));
    }
    for w in v.waivers.iter().filter(|w| w.state == "expired") {
        s.push_str(&format!(
            "note: waiver for {} {} expired on {} and no longer applies\n",
            clean(&w.rule),
            clean(&w.subject),
            w.expires
        ));
    }
    s
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the Unix epoch.
pub fn time_string(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        crate::policy::date_string(days),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The verdict as pretty-printed JSON (layout [`crate::policy::VERDICT_SCHEMA`]).
pub fn json(v: &Verdict) -> String {
    serde_json::to_string_pretty(v)
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
}
