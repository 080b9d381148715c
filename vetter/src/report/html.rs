//! One self-contained HTML page: inline CSS and a little inline JavaScript, no external resource.
//! Everything that comes from the image or the policy is HTML-escaped.

use crate::policy::{Finding, Severity, Verdict, WaiverState};
use crate::Inventory;

/// Escape text for HTML element content and double-quoted attributes; control characters become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{padding:18px 28px;color:#fff}
header.pass{background:#1b7f3b}header.fail,header.could-not-vet{background:#b3261e}
header h1{margin:0 0 4px;font-size:22px}header p{margin:0;opacity:.9}
main{padding:18px 28px}
section{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:14px 18px;margin-bottom:18px}
h2{font-size:17px;margin:0 0 10px}
.totals{display:flex;gap:10px;flex-wrap:wrap}
.tot{border-radius:4px;padding:6px 12px;font-weight:600;background:#eef0f3}
.tot.zero{font-weight:400;color:#5f6b7a}
header table.judged{width:auto;margin-top:8px;font-size:12.5px}
header table.judged th,header table.judged td{background:transparent;color:#fff;border:0;padding:1px 10px 1px 0}
.sev-critical{background:#6a1b9a;color:#fff}.sev-high{background:#c62828;color:#fff}
.sev-medium{background:#f9a825}.sev-low{background:#0288d1;color:#fff}.sev-info{background:#cfd8dc}
.badge{display:inline-block;border-radius:3px;padding:1px 7px;font-size:12px;font-weight:600;margin-right:4px}
.finding{border-left:4px solid #ccc;padding:6px 10px;margin:8px 0;background:#fafbfc}
.finding.critical{border-color:#6a1b9a}.finding.high{border-color:#c62828}.finding.medium{border-color:#f9a825}
.finding.low{border-color:#0288d1}.finding.waived{opacity:.65}
.finding .msg{font-weight:600}.finding ul{margin:4px 0 4px 18px;padding:0}
.ev{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
.remedy{color:#37474f}.tag{color:#b3261e;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#eef0f3}td.mono{font-family:ui-monospace,Menlo,Consolas,monospace}
tr.flag td{background:#fdecea}
input[type=search]{padding:5px 8px;width:320px;border:1px solid #b0b7c3;border-radius:4px;margin-bottom:8px}
.muted{color:#5f6b7a}
"#;

const JS: &str = r#"
(function(){
  function wire(inputId, tableId, countId){
    var input=document.getElementById(inputId), table=document.getElementById(tableId), count=document.getElementById(countId);
    if(!input||!table) return;
    var rows=table.tBodies[0].rows;
    function apply(){
      var q=input.value.toLowerCase(), shown=0;
      for(var i=0;i<rows.length;i++){
        var hit=rows[i].textContent.toLowerCase().indexOf(q)>=0;
        rows[i].style.display=hit?"":"none"; if(hit) shown++;
      }
      if(count) count.textContent=shown+" of "+rows.length+" packages shown";
    }
    input.addEventListener("input",apply); apply();
  }
  wire("pkg-search","packages","pkg-count");
})();
"#;

fn finding_html(f: &Finding) -> String {
    let sev = f.severity.as_str();
    let mut cls = format!("finding {sev}");
    if f.waived() {
        cls.push_str(" waived");
    }
    let mut tags = String::new();
    match f.new {
        Some(true) => tags.push_str(" <span class=\"tag\">NEW</span>"),
        Some(false) => tags.push_str(" <span class=\"muted\">known</span>"),
        None => {}
    }
    let waiver = match &f.waiver {
        Some(WaiverState::Applied {
            justification,
            expires,
            approved_by,
        }) => format!(
            "<div class=\"muted\">Waived until {}{}: {}</div>",
            escape(expires),
            approved_by
                .as_deref()
                .map(|a| format!(" by {}", escape(a)))
                .unwrap_or_default(),
            escape(justification)
        ),
        Some(WaiverState::Expired {
            justification,
            expired,
        }) => {
            format!(
                "<div class=\"tag\">Waiver expired on {} and no longer applies ({})</div>",
                escape(expired),
                escape(justification)
            )
        }
        None => String::new(),
    };
    let ev: String = f
        .evidence
        .iter()
        .map(|e| format!("<li class=\"ev\">{}</li>", escape(&e.describe())))
        .collect();
    format!(
        "<div class=\"{cls}\" data-rule=\"{}\" data-subject=\"{}\"><span class=\"badge sev-{sev}\">{}</span><span class=\"badge\">{}</span>\
         <span class=\"msg\">{}</span>{tags}{}<ul>{ev}</ul>{waiver}<div class=\"remedy\">Remedy: {}</div></div>\n",
        escape(&f.rule),
        escape(&f.subject),
        sev.to_uppercase(),
        escape(&f.rule),
        escape(&f.message),
        if f.blocking || f.waived() { "" } else { " <span class=\"muted\">(below threshold)</span>" },
        escape(&f.remedy),
    )
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The report page for `v`, with the inventory's ports, setuid and package tables.
pub fn html(v: &Verdict, inv: &Inventory) -> String {
    let outcome = v.outcome.as_str();
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">");
    let short = |d: &str| -> String { d.chars().take(12).collect() };
    let image = v.image.as_ref();
    let image_sha = image.and_then(|i| i.image_sha256.as_deref());
    // The title names what was judged, so two reports (a planted and a fixed wafer, two
    // versions) never share one.
    h.push_str(&format!(
        "<title>wafer vet: {} {}{}{}{} — policy {}</title><style>{CSS}</style></head><body>\n",
        outcome.to_uppercase(),
        escape(&v.wafer),
        v.wafer_version
            .as_deref()
            .map(|x| format!(" {}", escape(x)))
            .unwrap_or_default(),
        v.vo.as_deref()
            .map(|vo| format!(" (VO {})", escape(vo)))
            .unwrap_or_default(),
        image_sha
            .map(|d| format!(" image sha256 {}", escape(&short(d))))
            .unwrap_or_default(),
        escape(if v.policy.is_empty() {
            "(unnamed)"
        } else {
            &v.policy
        }),
    ));
    h.push_str(&format!(
        "<header class=\"{outcome}\"><h1 id=\"outcome\">{} — wafer {}{}</h1><p>{}Policy {} (sha256 {}) · evaluated {} · fails on {} and above</p>\n",
        outcome.to_uppercase(),
        escape(&v.wafer),
        v.wafer_version
            .as_deref()
            .map(|x| format!(" {}", escape(x)))
            .unwrap_or_default(),
        v.vo.as_deref().map(|vo| format!("VO {} · ", escape(vo))).unwrap_or_default(),
        escape(if v.policy.is_empty() { "(unnamed)" } else { &v.policy }),
        escape(&v.policy_digest),
        escape(&super::time_string(v.evaluated_at)),
        v.fail_on,
    ));
    h.push_str("<table id=\"judged\" class=\"judged\"><tbody>");
    let mut row = |k: &str, val: &str| {
        h.push_str(&format!(
            "<tr><th>{}</th><td class=\"mono\">{}</td></tr>",
            escape(k),
            escape(val)
        ))
    };
    if let Some(i) = image {
        row("vetted", &i.kind);
        if let Some(d) = &i.image_sha256 {
            row("image sha256", d);
        }
        if let Some(d) = &i.manifest_sha256 {
            row("manifest sha256 (wafer.json)", d);
        }
        if let Some(d) = &i.compressed_sha256 {
            row("disk.img.zst sha256", d);
        }
    }
    row("policy sha256", &v.policy_digest);
    row("judged by", &v.tool);
    h.push_str("</tbody></table></header>\n<main>\n");
    // Summary.
    let t = &v.totals;
    h.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"totals\">");
    for s in Severity::ALL_DESC {
        // A zero count is neutral: alarm colours only where there is something to see.
        let n = t.of(s);
        h.push_str(&format!(
            "<span class=\"tot {}\">{} {}</span>",
            if n == 0 {
                "zero".to_string()
            } else {
                format!("sev-{}", s.as_str())
            },
            n,
            s.as_str()
        ));
    }
    h.push_str(&format!(
        "<span class=\"tot\">{} blocking</span><span class=\"tot\">{} waived</span>",
        t.blocking, t.waived
    ));
    if t.expired_waivers > 0 {
        h.push_str(&format!(
            "<span class=\"tot sev-high\">{} expired waiver(s)</span>",
            t.expired_waivers
        ));
    }
    if v.since {
        h.push_str(&format!(
            "<span class=\"tot\">{} new</span><span class=\"tot\">{} known</span>",
            t.new, t.known
        ));
    }
    h.push_str("</div>\n<table id=\"rules\"><thead><tr><th>Rule</th><th>Kind</th><th>Severity</th><th>Status</th><th>Findings</th><th>Checks</th></tr></thead><tbody>");
    for r in &v.rules {
        h.push_str(&format!(
            "<tr{}><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if r.status == "fail" { " class=\"flag\"" } else { "" },
            escape(&r.id),
            escape(&r.kind),
            r.severity,
            escape(&r.status),
            r.findings,
            escape(&r.description)
        ));
    }
    h.push_str("</tbody></table>");
    h.push_str(&format!(
        "<p id=\"checked\">Rule kinds checked: {}; not checked: {}.</p>",
        escape(&or_none(&v.checked)),
        escape(&or_none(&v.not_checked))
    ));
    if !v.unvetted.is_empty() {
        h.push_str("<h3>Could not be read</h3><ul id=\"unvetted\">");
        for u in &v.unvetted {
            h.push_str(&format!(
                "<li class=\"mono{}\">{} ({}): {}{}</li>",
                if u.waived { "" } else { " flag" },
                escape(&u.path),
                escape(&u.source),
                escape(&u.reason),
                if u.waived {
                    " — waived by the policy"
                } else {
                    ""
                }
            ));
        }
        h.push_str("</ul>");
    }
    h.push_str("</section>\n");
    // Findings.
    h.push_str(&format!(
        "<section id=\"findings\"><h2>Findings ({})</h2>\n",
        v.findings.len()
    ));
    if v.findings.is_empty() {
        h.push_str("<p>No findings.</p>");
    }
    for s in Severity::ALL_DESC {
        let list: Vec<&Finding> = v
            .findings
            .iter()
            .filter(|f| f.severity == s && !f.waived())
            .collect();
        if !list.is_empty() {
            h.push_str(&format!(
                "<h3>{} ({})</h3>\n",
                s.as_str().to_uppercase(),
                list.len()
            ));
            for f in list {
                h.push_str(&finding_html(f));
            }
        }
    }
    let waived: Vec<&Finding> = v.findings.iter().filter(|f| f.waived()).collect();
    if !waived.is_empty() {
        h.push_str(&format!("<h3>Waived ({})</h3>\n", waived.len()));
        for f in waived {
            h.push_str(&finding_html(f));
        }
    }
    h.push_str("</section>\n");
    let flagged = |subject: &str| {
        v.findings
            .iter()
            .any(|f| f.subject == subject && !f.waived())
    };
    // Ports.
    h.push_str("<section id=\"ports\"><h2>Listening ports</h2><table><thead><tr><th>Service</th><th>Kind</th><th>Protocol</th><th>Port</th><th>Address</th><th>Bind</th><th>Set in</th></tr></thead><tbody>");
    for (s, p) in inv.services.listening() {
        let subject = format!("{}/{}", p.protocol, p.port);
        let at = match p.source.line {
            Some(l) => format!("{}:{l}", p.source.file),
            None => p.source.file.clone(),
        };
        h.push_str(&format!(
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{:?}</td><td class=\"mono\">{}{}</td></tr>",
            if flagged(&subject) { " class=\"flag\"" } else { "" },
            escape(&s.name),
            escape(&s.kind),
            escape(&p.protocol),
            p.port,
            escape(p.address.as_deref().unwrap_or("*")),
            p.bind,
            escape(&at),
            if p.default { " (default)" } else { "" }
        ));
    }
    h.push_str("</tbody></table></section>\n");
    // setuid/setgid/capabilities.
    let by_path: std::collections::HashMap<&str, &crate::files::FileEntry> = inv
        .files
        .entries
        .iter()
        .flat_map(|e| e.paths.iter().map(move |p| (p.as_str(), e)))
        .collect();
    h.push_str("<section id=\"setuid\"><h2>setuid, setgid and capabilities</h2><table><thead><tr><th>Path</th><th>Privilege</th><th>Mode</th><th>Owner</th><th>sha256</th></tr></thead><tbody>");
    let mut priv_rows: Vec<(String, String)> = Vec::new();
    priv_rows.extend(
        inv.files
            .setuid
            .iter()
            .map(|p| (p.clone(), "setuid".to_string())),
    );
    priv_rows.extend(
        inv.files
            .setgid
            .iter()
            .map(|p| (p.clone(), "setgid".to_string())),
    );
    priv_rows.extend(inv.files.capabilities.iter().map(|c| {
        (
            c.path.clone(),
            format!(
                "capabilities {}",
                c.caps.as_ref().map(|x| x.text.as_str()).unwrap_or("?")
            ),
        )
    }));
    priv_rows.sort();
    for (p, what) in priv_rows {
        let e = by_path.get(p.as_str());
        h.push_str(&format!(
            "<tr{}><td class=\"mono\">{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
            if flagged(&p) { " class=\"flag\"" } else { "" },
            escape(&p),
            escape(&what),
            escape(&e.map(|e| e.mode.clone()).unwrap_or_default()),
            escape(&e.map(|e| format!("{}:{}", e.user.clone().unwrap_or(e.uid.to_string()), e.group.clone().unwrap_or(e.gid.to_string()))).unwrap_or_default()),
            escape(e.and_then(|e| e.sha256.as_deref()).unwrap_or(""))
        ));
    }
    h.push_str("</tbody></table></section>\n");
    // Packages.
    h.push_str(&format!(
        "<section id=\"pkgs\"><h2>Packages ({}, {})</h2><input type=\"search\" id=\"pkg-search\" placeholder=\"Search packages\" aria-label=\"Search packages\"> <span id=\"pkg-count\" class=\"muted\"></span>\
         <table id=\"packages\"><thead><tr><th>Name</th><th>Version</th><th>Arch</th><th>Manager</th></tr></thead><tbody>",
        inv.packages.list.len(),
        escape(inv.packages.format.as_deref().unwrap_or("no database"))
    ));
    let flagged_pkg = |name: &str| {
        v.findings.iter().any(|f| {
            !f.waived()
                && f.kind == "packages"
                && (f.subject == name || f.subject.starts_with(&format!("{name}:")))
        })
    };
    for p in &inv.packages.list {
        let mut ver = p.epoch.map(|e| format!("{e}:")).unwrap_or_default();
        ver.push_str(&p.version);
        if let Some(r) = &p.release {
            ver.push('-');
            ver.push_str(r);
        }
        h.push_str(&format!(
            "<tr{}><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>",
            if flagged_pkg(&p.name) {
                " class=\"flag\""
            } else {
                ""
            },
            escape(&p.name),
            escape(&ver),
            escape(p.arch.as_deref().unwrap_or("")),
            escape(&p.manager)
        ));
    }
    h.push_str("</tbody></table></section>\n");
    if !v.waivers.is_empty() {
        h.push_str("<section id=\"waivers\"><h2>Waivers</h2><table><thead><tr><th>Rule</th><th>Subject</th><th>State</th><th>Expires</th><th>Matched</th><th>Justification</th></tr></thead><tbody>");
        for w in &v.waivers {
            h.push_str(&format!(
                "<tr{}><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if w.state == "expired" { " class=\"flag\"" } else { "" },
                escape(&w.rule),
                escape(&w.subject),
                escape(&w.state),
                escape(&w.expires),
                w.matched,
                escape(&w.justification)
            ));
        }
        h.push_str("</tbody></table></section>\n");
    }
    h.push_str(&format!("</main><script>{JS}</script></body></html>\n"));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            escape("<script>\"a\"&'b'\u{1b}"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;\u{fffd}"
        );
    }
}
