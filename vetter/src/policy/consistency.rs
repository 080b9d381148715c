//! A saved verdict (`wafer vet --report FILE`, the `wafer-verdict/1` JSON) read back and checked
//! against the policy: `wafer approve --report` signs only a verdict that agrees with itself and
//! with the policy it names.

use rootfs::escape::Escaped;

use super::{ImageIdentity, Policy, Severity, VERDICT_SCHEMA};

/// The facts of a saved verdict an approval needs, with the whole JSON kept for
/// [`check_verdict`].
#[derive(Debug, Clone)]
pub struct SavedVerdict {
    /// `outcome` (`pass`, `fail`, `could-not-vet`).
    pub outcome: String,
    /// `wafer`: the wafer's name.
    pub wafer: String,
    /// `vo`, when the verdict names one.
    pub vo: Option<String>,
    /// `policy_digest`: sha256 of the policy file it was judged with.
    pub policy_digest: String,
    /// `image`: which bytes were judged, when the verdict records it.
    pub image: Option<ImageIdentity>,
    /// The whole verdict.
    pub value: serde_json::Value,
}

impl SavedVerdict {
    /// Parses a saved verdict; `label` names it in errors (its file name).
    pub fn parse(bytes: &[u8], label: &str) -> Result<SavedVerdict, String> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("parsing verdict {label}: {e}"))?;
        let image: Option<ImageIdentity> = match v.get("image") {
            None => None,
            Some(x) => Some(
                serde_json::from_value(x.clone())
                    .map_err(|e| format!("{label}: field \"image\": {e}"))?,
            ),
        };
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        if field("schema") != VERDICT_SCHEMA {
            return Err(format!(
                "{label}: not a wafer verdict (schema {:?})",
                field("schema")
            ));
        }
        Ok(SavedVerdict {
            outcome: field("outcome"),
            wafer: field("wafer"),
            vo: v.get("vo").and_then(|x| x.as_str()).map(str::to_string),
            policy_digest: field("policy_digest"),
            image,
            value: v,
        })
    }

    /// [`check_verdict`] on this verdict.
    pub fn check_consistent(&self, policy: &Policy, today: &str) -> Result<(), String> {
        check_verdict(&self.value, policy, today)
    }
}

/// Recomputes a verdict's outcome from the findings it lists and refuses one that disagrees with
/// itself (an `"outcome": "pass"` edited into a failing verdict, a finding's `blocking` flag or
/// the totals edited to match), one judged with a threshold laxer than the policy's, or one that
/// applies a waiver the policy does not grant or that has expired.
///
/// This proves the verdict consistent, not complete: a finding deleted from it is only caught by
/// vetting again (`wafer approve` without `--report`). The approval records the verdict's sha256.
pub fn check_verdict(
    v: &serde_json::Value,
    policy: &Policy,
    today: &str,
) -> std::result::Result<(), String> {
    let sev_name = |s: Severity| format!("{s:?}").to_lowercase();
    let fail_on: Severity = v
        .get("fail_on")
        .and_then(|x| serde_json::from_value(x.clone()).ok())
        .ok_or("it has no valid \"fail_on\"")?;
    if fail_on > policy.fail_on() {
        return Err(format!(
            "it was judged with fail_on {}, laxer than the policy's {}",
            sev_name(fail_on),
            sev_name(policy.fail_on())
        ));
    }
    let findings = v
        .get("findings")
        .and_then(|x| x.as_array())
        .ok_or("it has no \"findings\" list")?;
    let (mut blocking, mut waived) = (0usize, 0usize);
    let mut by_sev = std::collections::BTreeMap::<Severity, usize>::new();
    for (i, f) in findings.iter().enumerate() {
        let text = |k: &str| f.get(k).and_then(|x| x.as_str()).unwrap_or("");
        let what = format!(
            "finding {i} ({} {})",
            text("rule"),
            Escaped(text("subject"))
        );
        let sev: Severity = f
            .get("severity")
            .and_then(|x| serde_json::from_value(x.clone()).ok())
            .ok_or_else(|| format!("{what} has no valid severity"))?;
        let applied = f.pointer("/waiver/state").and_then(|x| x.as_str()) == Some("applied");
        if applied {
            let wtext = |k: &str| {
                f.pointer(&format!("/waiver/{k}"))
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
            };
            let expires = wtext("expires");
            if expires < today {
                return Err(format!(
                    "{what} is waived by a waiver that expired after {expires}"
                ));
            }
            let granted = policy.file.waiver.iter().any(|w| {
                w.rule.get_ref() == text("rule") && w.justification == wtext("justification")
            });
            if !granted {
                return Err(format!(
                    "{what} is waived, but the policy has no such waiver for rule {}",
                    text("rule")
                ));
            }
        }
        let should = !applied && sev >= fail_on;
        let says = f
            .get("blocking")
            .and_then(|x| x.as_bool())
            .ok_or_else(|| format!("{what} has no \"blocking\" flag"))?;
        if says != should {
            return Err(format!(
                "{what}, severity {}, is marked blocking={says}, but with fail_on {} it {} blocking",
                sev_name(sev),
                sev_name(fail_on),
                if should { "is" } else { "is not" }
            ));
        }
        blocking += usize::from(should);
        if applied {
            waived += 1;
        } else {
            *by_sev.entry(sev).or_default() += 1;
        }
    }
    let total = |k: &str| v.pointer(&format!("/totals/{k}")).and_then(|x| x.as_u64());
    let mut expect = vec![
        ("findings", findings.len()),
        ("blocking", blocking),
        ("waived", waived),
    ];
    for s in Severity::ALL_DESC {
        expect.push((
            match s {
                Severity::Critical => "critical",
                Severity::High => "high",
                Severity::Medium => "medium",
                Severity::Low => "low",
                Severity::Info => "info",
            },
            by_sev.get(&s).copied().unwrap_or(0),
        ));
    }
    for (k, want) in expect {
        if total(k) != Some(want as u64) {
            return Err(format!(
                "its totals.{k} is {}, but its findings count {want}",
                total(k).map_or("missing".to_string(), |n| n.to_string())
            ));
        }
    }
    let outcome = if blocking > 0 { "fail" } else { "pass" };
    let says = v.get("outcome").and_then(|x| x.as_str()).unwrap_or("");
    if says != outcome {
        return Err(format!(
            "its outcome is {says:?}, but its findings make it {outcome:?} ({blocking} blocking)"
        ));
    }
    if let Some(rules) = v.get("rules").and_then(|x| x.as_array()) {
        for r in rules {
            if r.get("status").and_then(|x| x.as_str()) == Some("fail") && blocking == 0 {
                return Err(format!(
                    "rule {} failed, but no finding is blocking",
                    r.get("id").and_then(|x| x.as_str()).unwrap_or("?")
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_verdict, Policy};
    use serde_json::json;

    const POLICY: &str = "[policy]\nname = \"t\"\nfail_on = \"medium\"\n\n[[privileged]]\nid = \"priv\"\nseverity = \"high\"\ncheck = [\"setuid\"]\nallow = []\n\n[[waiver]]\nrule = \"priv\"\nsubject = \"/usr/bin/ok\"\njustification = \"needed\"\nexpires = 2030-01-01\n";

    fn verdict(findings: serde_json::Value, fail_on: &str) -> serde_json::Value {
        let list = findings.as_array().unwrap();
        let blocking = list.iter().filter(|f| f["blocking"] == true).count();
        let waived = list
            .iter()
            .filter(|f| f["waiver"]["state"] == "applied")
            .count();
        let high = list.len() - waived;
        json!({
            "fail_on": fail_on,
            "outcome": if blocking > 0 { "fail" } else { "pass" },
            "totals": {"findings": list.len(), "blocking": blocking, "waived": waived,
                       "critical": 0, "high": high, "medium": 0, "low": 0, "info": 0},
            "findings": findings,
        })
    }

    /// Consistent verdicts pass; a laxer threshold, an invented or expired waiver do not.
    #[test]
    fn verdicts_are_recomputed_from_their_findings() {
        let policy = Policy::parse(POLICY, "policy.toml", None).unwrap();
        let today = "2026-01-01";
        let waived = json!({"rule": "priv", "subject": "/usr/bin/ok", "severity": "high",
            "blocking": false, "waiver": {"state": "applied", "justification": "needed",
            "expires": "2030-01-01"}});
        assert_eq!(
            check_verdict(&verdict(json!([waived.clone()]), "medium"), &policy, today),
            Ok(())
        );
        let blocking = json!({"rule": "priv", "subject": "/usr/bin/x", "severity": "high",
            "blocking": true});
        assert_eq!(
            check_verdict(
                &verdict(json!([blocking.clone()]), "medium"),
                &policy,
                today
            ),
            Ok(()),
            "a consistent failing verdict is consistent (approve refuses it for failing)"
        );
        // Judged with --fail-on critical: the high finding did not block.
        let mut lax = blocking.clone();
        lax["blocking"] = false.into();
        let e = check_verdict(&verdict(json!([lax]), "critical"), &policy, today).unwrap_err();
        assert!(e.contains("laxer than the policy's medium"), "{e}");
        // A waiver the policy does not grant.
        let mut invented = waived.clone();
        invented["waiver"]["justification"] = "trust me".into();
        let e = check_verdict(&verdict(json!([invented]), "medium"), &policy, today).unwrap_err();
        assert!(e.contains("the policy has no such waiver"), "{e}");
        // An expired waiver marked applied.
        let e =
            check_verdict(&verdict(json!([waived]), "medium"), &policy, "2031-01-01").unwrap_err();
        assert!(e.contains("expired after 2030-01-01"), "{e}");
    }
}
