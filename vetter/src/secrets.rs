//! Private keys and credentials left in an image: found by content (PEM private-key blocks,
//! well-known token formats) and by name (grid proxies, `hostkey.pem`/`userkey.pem`, ssh host
//! keys). Only the path and the kind are reported, never the secret.

use rootfs::FileType;
use serde::Serialize;

/// One credential found.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Credential {
    /// Path in the image.
    pub path: String,
    /// What it is: `pem-private-key:RSA`, `grid-proxy`, `aws-access-key-id`, `github-token`, ...
    pub kind: String,
    /// 1-based line where the content match starts (absent for matches by name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

fn line_of(bytes: &[u8], off: usize) -> u32 {
    let n = bytes
        .get(..off)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0);
    u32::try_from(n + 1).unwrap_or(u32::MAX)
}

/// Every offset of `needle` in `hay` (SIMD substring search from the `memchr` crate: the scan
/// runs over every text file of an image, so a byte-by-byte compare is far too slow).
fn find_all<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    memchr::memmem::find_iter(hay, needle)
}

/// A token format: (prefix, kind, allowed body characters, minimum body length, maximum body length).
type TokenFormat = (&'static [u8], &'static str, fn(u8) -> bool, usize, usize);

/// Token formats.
const TOKENS: &[TokenFormat] = &[
    (
        b"AKIA",
        "aws-access-key-id",
        |c| c.is_ascii_uppercase() || c.is_ascii_digit(),
        16,
        16,
    ),
    (
        b"ASIA",
        "aws-temporary-access-key-id",
        |c| c.is_ascii_uppercase() || c.is_ascii_digit(),
        16,
        16,
    ),
    (
        b"ghp_",
        "github-token",
        |c| c.is_ascii_alphanumeric(),
        36,
        36,
    ),
    (
        b"gho_",
        "github-oauth-token",
        |c| c.is_ascii_alphanumeric(),
        36,
        36,
    ),
    (
        b"ghs_",
        "github-app-token",
        |c| c.is_ascii_alphanumeric(),
        36,
        36,
    ),
    (
        b"ghu_",
        "github-user-token",
        |c| c.is_ascii_alphanumeric(),
        36,
        36,
    ),
    (
        b"github_pat_",
        "github-fine-grained-token",
        |c| c.is_ascii_alphanumeric() || c == b'_',
        70,
        100,
    ),
    (
        b"glpat-",
        "gitlab-token",
        |c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-',
        20,
        20,
    ),
    (
        b"xoxb-",
        "slack-token",
        |c| c.is_ascii_alphanumeric() || c == b'-',
        20,
        200,
    ),
    (
        b"xoxp-",
        "slack-token",
        |c| c.is_ascii_alphanumeric() || c == b'-',
        20,
        200,
    ),
    (
        b"AIza",
        "google-api-key",
        |c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-',
        35,
        35,
    ),
    (
        b"sk_live_",
        "stripe-secret-key",
        |c| c.is_ascii_alphanumeric(),
        24,
        99,
    ),
];

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Scan file contents for private keys and tokens.
pub fn scan_bytes(path: &str, bytes: &[u8]) -> Vec<Credential> {
    let mut out = Vec::new();
    // PEM: "-----BEGIN <X>PRIVATE KEY-----" and PGP private key blocks.
    for off in find_all(bytes, b"-----BEGIN ") {
        let rest = bytes.get(off + 11..).unwrap_or(&[]);
        let end = rest
            .iter()
            .take(80)
            .position(|&c| c == b'-' || c == b'\n')
            .unwrap_or(0);
        let label = String::from_utf8_lossy(rest.get(..end).unwrap_or(&[]))
            .trim()
            .to_string();
        let closes = rest.get(end..end + 5) == Some(b"-----".as_slice());
        if !closes {
            continue;
        }
        let kind = if label == "PGP PRIVATE KEY BLOCK" {
            "pgp-private-key".to_string()
        } else if let Some(algo) = label.strip_suffix("PRIVATE KEY") {
            let algo = algo.trim();
            if algo.is_empty() {
                "pem-private-key:PKCS8".to_string()
            } else {
                format!("pem-private-key:{algo}")
            }
        } else {
            continue;
        };
        out.push(Credential {
            path: path.to_string(),
            kind,
            line: Some(line_of(bytes, off)),
        });
    }
    for (prefix, kind, ok, min, max) in TOKENS {
        for off in find_all(bytes, prefix) {
            if off > 0 && bytes.get(off - 1).copied().is_some_and(is_word) {
                continue;
            }
            let body = bytes.get(off + prefix.len()..).unwrap_or(&[]);
            let n = body.iter().take(max + 1).take_while(|&&c| ok(c)).count();
            if n >= *min && n <= *max {
                out.push(Credential {
                    path: path.to_string(),
                    kind: kind.to_string(),
                    line: Some(line_of(bytes, off)),
                });
            }
        }
    }
    out
}

/// Credentials recognised by path alone.
pub fn by_name(path: &str, ft: FileType) -> Vec<Credential> {
    if ft != FileType::Regular {
        return Vec::new();
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let kind = if path.starts_with("/tmp/x509up_u") || name.starts_with("x509up_u") {
        Some("grid-proxy")
    } else if name == "hostkey.pem" {
        Some("grid-host-key")
    } else if name == "userkey.pem" || name == "userkey.p12" || name == "usercred.p12" {
        Some("grid-user-key")
    } else if path.starts_with("/etc/ssh/ssh_host_") && name.ends_with("_key") {
        Some("ssh-host-private-key")
    } else if name == ".netrc"
        || name == ".pgpass"
        || name == ".my.cnf"
        || name == "credentials" && path.contains("/.aws/")
    {
        Some("credentials-file")
    } else {
        None
    };
    kind.map(|k| {
        vec![Credential {
            path: path.to_string(),
            kind: k.to_string(),
            line: None,
        }]
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pem_and_tokens_without_secrets() {
        let text = b"x\n-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n\
                     key=AKIAABCDEFGHIJKLMNOP\n-----BEGIN CERTIFICATE-----\n\
                     token: ghp_0123456789abcdefghijABCDEFGHIJ012345\nnotAKIAABCDEFGHIJKLMNOP\n";
        let c = scan_bytes("/root/k", text);
        let kinds: Vec<(&str, Option<u32>)> = c.iter().map(|c| (c.kind.as_str(), c.line)).collect();
        assert_eq!(
            kinds,
            vec![
                ("pem-private-key:RSA", Some(2)),
                ("aws-access-key-id", Some(5)),
                ("github-token", Some(7))
            ]
        );
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("AKIAABCD") && !json.contains("MIIB"));
        assert_eq!(
            scan_bytes("/a", b"-----BEGIN PRIVATE KEY-----\n")[0].kind,
            "pem-private-key:PKCS8"
        );
        assert_eq!(
            scan_bytes("/a", b"-----BEGIN ENCRYPTED PRIVATE KEY-----")[0].kind,
            "pem-private-key:ENCRYPTED"
        );
        assert!(scan_bytes("/a", b"-----BEGIN PUBLIC KEY-----\n").is_empty());
    }

    #[test]
    fn by_names() {
        assert_eq!(
            by_name("/tmp/x509up_u500", FileType::Regular)[0].kind,
            "grid-proxy"
        );
        assert_eq!(
            by_name("/etc/grid-security/hostkey.pem", FileType::Regular)[0].kind,
            "grid-host-key"
        );
        assert_eq!(
            by_name("/etc/ssh/ssh_host_rsa_key", FileType::Regular)[0].kind,
            "ssh-host-private-key"
        );
        assert!(by_name("/etc/ssh/ssh_host_rsa_key.pub", FileType::Regular).is_empty());
    }
}
