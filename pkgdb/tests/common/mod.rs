#![allow(dead_code)]
//! Test helpers: fixture paths and a small CSV reader (RFC 4180 quoting).

pub fn testdata(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata")).join(rel)
}

/// Parse CSV text into rows of fields (quoted fields may hold commas and doubled quotes).
pub fn csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => fields.push(std::mem::take(&mut cur)),
                (c, _) => cur.push(c),
            }
        }
        fields.push(cur);
        rows.push(fields);
    }
    rows
}

/// CSV rows as maps from header name to value (header row removed).
pub fn csv_maps(path: &std::path::Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rows = csv(&text);
    let head = rows[0].clone();
    rows[1..]
        .iter()
        .map(|r| head.iter().cloned().zip(r.iter().cloned()).collect())
        .collect()
}

/// Run a command and return stdout, failing loudly if the tool is missing or fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("required tool `{cmd}` could not run ({e}); install it (see NOTES.md)")
        });
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Small deterministic PRNG (xorshift64*) for generated cases.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// Write `spec` as `top/NAME.spec` and build it with the real rpmbuild (payload compression
/// `payload`, e.g. `w2.xzdio`); returns `top/RPMS/noarch/NAME-1.2-3.noarch.rpm` (the test specs
/// all use version 1.2, release 3, noarch).
pub fn rpmbuild_spec(
    top: &std::path::Path,
    name: &str,
    spec: &str,
    payload: &str,
) -> std::path::PathBuf {
    let sp = top.join(format!("{name}.spec"));
    std::fs::write(&sp, spec).unwrap();
    run(
        "rpmbuild",
        &[
            "-bb",
            "--quiet",
            "--define",
            &format!("_topdir {}", top.display()),
            "--define",
            &format!("_binary_payload {payload}"),
            sp.to_str().unwrap(),
        ],
    );
    top.join(format!("RPMS/noarch/{name}-1.2-3.noarch.rpm"))
}
