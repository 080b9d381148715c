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

/// Largest PEM block examined (from its BEGIN line to its END line).
const MAX_PEM_BYTES: usize = 256 << 10;

/// Scan file contents for private keys and tokens.
///
/// A PEM block counts only when it is a whole private key: a `-----BEGIN X PRIVATE KEY-----`
/// line, a body that decodes (base64) to the key structure its label promises (PKCS#8
/// `PrivateKeyInfo` or `EncryptedPrivateKeyInfo`, PKCS#1 `RSAPrivateKey`, SEC 1 `ECPrivateKey`,
/// OpenSSL's DSA key, OpenSSH's `openssh-key-v1`, an OpenPGP secret-key packet, or an
/// encrypted legacy PEM body), and the matching END line. The header string alone, as it sits in
/// ssh-keygen, libssh or a manual page, is not a key.
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
        let label_bytes = rest.get(..end).unwrap_or(&[]);
        let label = String::from_utf8_lossy(label_bytes).trim().to_string();
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
        let body_start = end + 5;
        let body_region = rest.get(body_start..).unwrap_or(&[]);
        let body_region = body_region
            .get(..body_region.len().min(MAX_PEM_BYTES))
            .unwrap_or(&[]);
        let mut end_line = b"-----END ".to_vec();
        end_line.extend_from_slice(label_bytes);
        end_line.extend_from_slice(b"-----");
        let Some(body_end) = memchr::memmem::find(body_region, &end_line) else {
            continue;
        };
        let body = body_region.get(..body_end).unwrap_or(&[]);
        if !is_private_key(&label, body) {
            continue;
        }
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

/// Whether a PEM body (between the BEGIN and END lines) is a private key of the kind `label`
/// names. Never panics on any input.
pub fn is_private_key(label: &str, body: &[u8]) -> bool {
    let (headers, data) = split_headers(body);
    if headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("proc-type:") && h.contains("ENCRYPTED"))
    {
        // Legacy OpenSSL encryption (RFC 1421 headers, DEK-Info): the body is ciphertext of a
        // block cipher; it cannot be parsed, but it must decode to whole blocks.
        return headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("dek-info:"))
            && decode_base64(&data).is_some_and(|d| d.len() >= 32 && d.len() % 8 == 0);
    }
    let Some(der) = decode_base64(&data) else {
        return false;
    };
    match label.trim() {
        "OPENSSH PRIVATE KEY" => is_openssh_key(&der),
        "PGP PRIVATE KEY BLOCK" => der.first().is_some_and(|&b| {
            // OpenPGP packet tag 5 (secret key), old (0b10_0101_xx) or new (0xC5) format.
            b == 0xC5 || (b & 0xC0 == 0x80 && (b >> 2) & 0x0F == 5)
        }),
        "PRIVATE KEY" => der_sequence(&der).is_some_and(|items| {
            // PKCS#8 / RFC 5958 OneAsymmetricKey: version (0 or 1), AlgorithmIdentifier, key.
            items.len() >= 3
                && small_int(items[0]).is_some_and(|v| v <= 1)
                && algorithm_id(items[1])
                && items[2].0 == 0x04
                && !items[2].1.is_empty()
        }),
        "ENCRYPTED PRIVATE KEY" => der_sequence(&der).is_some_and(|items| {
            items.len() == 2
                && algorithm_id(items[0])
                && items[1].0 == 0x04
                && !items[1].1.is_empty()
        }),
        "RSA PRIVATE KEY" => der_sequence(&der).is_some_and(|items| {
            // PKCS#1 RSAPrivateKey: version, n, e, d, p, q, dP, dQ, qInv (+ otherPrimeInfos).
            items.len() >= 9
                && small_int(items[0]).is_some_and(|v| v <= 1)
                && items
                    .iter()
                    .take(9)
                    .all(|(t, c)| *t == 0x02 && !c.is_empty())
        }),
        "DSA PRIVATE KEY" => der_sequence(&der).is_some_and(|items| {
            items.len() == 6
                && small_int(items[0]) == Some(0)
                && items.iter().all(|(t, c)| *t == 0x02 && !c.is_empty())
        }),
        "EC PRIVATE KEY" => der_sequence(&der).is_some_and(|items| {
            // SEC 1 ECPrivateKey: version 1, privateKey OCTET STRING, [0] params, [1] public key.
            items.len() >= 2
                && small_int(items[0]) == Some(1)
                && items[1].0 == 0x04
                && !items[1].1.is_empty()
        }),
        // Any other "<X> PRIVATE KEY": a DER SEQUENCE of at least two elements.
        _ => der_sequence(&der).is_some_and(|items| items.len() >= 2),
    }
}

/// Split a PEM/armor body into its header lines (`Key: value` lines before a blank line, RFC 1421
/// and RFC 4880 armor) and the base64 text (without an armor checksum line `=XXXX`).
fn split_headers(body: &[u8]) -> (Vec<String>, Vec<u8>) {
    let text = String::from_utf8_lossy(body);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut headers = Vec::new();
    let mut i = 0;
    // Skip the rest of the BEGIN line (empty) and leading blank lines.
    while lines.get(i).is_some_and(|l| l.is_empty()) {
        i += 1;
    }
    let mut j = i;
    while let Some(l) = lines.get(j) {
        if l.contains(':') && !l.is_empty() {
            headers.push(l.to_string());
            j += 1;
            // RFC 1421 continuation lines start with white space (already trimmed): not kept.
        } else {
            break;
        }
    }
    if !headers.is_empty() {
        i = j;
    }
    let mut data = Vec::new();
    for l in lines.iter().skip(i) {
        if l.starts_with('=') && l.len() == 5 {
            break; // armor checksum
        }
        data.extend_from_slice(l.as_bytes());
    }
    (headers, data)
}

/// Decode base64 text (white space ignored, padding optional); `None` if it is not base64.
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let clean: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if clean.is_empty() {
        return None;
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(clean).ok()
}

/// One DER element: (tag, contents, the bytes after it). Definite lengths only, at most 4
/// length bytes, low tag numbers only.
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    if tag & 0x1F == 0x1F {
        return None;
    }
    let first = *b.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for k in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + k)?);
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    Some((tag, b.get(hdr..end)?, b.get(end..)?))
}

/// The elements of a DER SEQUENCE that spans all of `der` (at most 64 elements).
fn der_sequence(der: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let (tag, mut content, rest) = der_tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let mut items = Vec::new();
    while !content.is_empty() {
        if items.len() >= 64 {
            return None;
        }
        let (t, c, r) = der_tlv(content)?;
        items.push((t, c));
        content = r;
    }
    Some(items)
}

/// The value of a small non-negative DER INTEGER element.
fn small_int(item: (u8, &[u8])) -> Option<u8> {
    match item {
        (0x02, [v]) if *v < 0x80 => Some(*v),
        _ => None,
    }
}

/// Whether an element is an AlgorithmIdentifier: a SEQUENCE starting with an OID.
fn algorithm_id(item: (u8, &[u8])) -> bool {
    item.0 == 0x30 && der_tlv(item.1).is_some_and(|(t, c, _)| t == 0x06 && !c.is_empty())
}

/// Whether `b` is an OpenSSH `openssh-key-v1` private key (PROTOCOL.key): magic, cipher, kdf,
/// kdf options, key count (1..=64), that many public keys and the private section.
fn is_openssh_key(b: &[u8]) -> bool {
    fn string(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let n = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let end = 4usize.checked_add(n)?;
        Some((b.get(4..end)?, b.get(end..)?))
    }
    let Some(mut r) = b.strip_prefix(b"openssh-key-v1\0") else {
        return false;
    };
    let mut parse = || -> Option<()> {
        for _ in 0..3 {
            r = string(r)?.1; // cipher, kdf, kdf options
        }
        let n = u32::from_be_bytes(r.get(..4)?.try_into().ok()?);
        if !(1..=64).contains(&n) {
            return None;
        }
        r = r.get(4..)?;
        for _ in 0..n {
            let (pk, rest) = string(r)?;
            if pk.is_empty() {
                return None;
            }
            r = rest;
        }
        let (private, _) = string(r)?;
        (!private.is_empty() && private.len() % 8 == 0).then_some(())
    };
    parse().is_some()
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

    const RSA: &str = include_str!("../../testdata/throwaway-private-keys/rsa-pkcs1.pem");

    #[test]
    fn finds_pem_and_tokens_without_secrets() {
        let mut text = b"x\n".to_vec();
        text.extend_from_slice(RSA.as_bytes());
        let after = RSA.lines().count() + 2;
        text.extend_from_slice(
            b"key=AKIAABCDEFGHIJKLMNOP\n-----BEGIN CERTIFICATE-----\n\
              token: ghp_0123456789abcdefghijABCDEFGHIJ012345\nnotAKIAABCDEFGHIJKLMNOP\n",
        );
        let c = scan_bytes("/root/k", &text);
        let kinds: Vec<(&str, Option<u32>)> = c.iter().map(|c| (c.kind.as_str(), c.line)).collect();
        let line = |n: usize| Some(u32::try_from(n).unwrap());
        assert_eq!(
            kinds,
            vec![
                ("pem-private-key:RSA", Some(2)),
                ("aws-access-key-id", line(after)),
                ("github-token", line(after + 2))
            ]
        );
        let json = serde_json::to_string(&c).unwrap();
        let body_line = RSA.lines().nth(1).unwrap();
        assert!(!json.contains("AKIAABCD") && !json.contains(body_line));
        assert!(scan_bytes("/a", b"-----BEGIN PUBLIC KEY-----\n").is_empty());
    }

    #[test]
    fn every_key_format_parses() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/throwaway-private-keys"
        );
        let want = [
            ("rsa-pkcs1.pem", "pem-private-key:RSA"),
            ("rsa-pkcs1-legacy-encrypted.pem", "pem-private-key:RSA"),
            ("ed25519-pkcs8.pem", "pem-private-key:PKCS8"),
            ("ed25519-pkcs8-encrypted.pem", "pem-private-key:ENCRYPTED"),
            ("ec-sec1.pem", "pem-private-key:EC"),
            ("openssh-ed25519.key", "pem-private-key:OPENSSH"),
        ];
        for (f, kind) in want {
            let b = std::fs::read(format!("{dir}/{f}")).unwrap();
            let c = scan_bytes("/k", &b);
            assert_eq!(c.len(), 1, "{f}: {c:?}");
            assert_eq!(c[0].kind, kind, "{f}");
            // CRLF line ends and a key embedded in other text are still keys.
            let crlf = String::from_utf8(b.clone()).unwrap().replace('\n', "\r\n");
            assert_eq!(scan_bytes("/k", crlf.as_bytes()).len(), 1, "{f} with CRLF");
        }
    }

    #[test]
    fn header_strings_and_damaged_bodies_are_not_keys() {
        // As in ssh-keygen, libssh or a manual page: the header string without a key.
        for text in [
            &b"\0\0-----BEGIN OPENSSH PRIVATE KEY-----\0-----END OPENSSH PRIVATE KEY-----\0"[..],
            b"-----BEGIN RSA PRIVATE KEY-----\n",
            b"-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n",
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            b"-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
            b"%s-----BEGIN %s PRIVATE KEY-----\n%s\n-----END %s PRIVATE KEY-----\n",
        ] {
            assert!(
                scan_bytes("/bin/x", text).is_empty(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        // A real key whose body was cut short is not a key either.
        let lines: Vec<&str> = RSA.lines().collect();
        let cut = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[lines.len() - 1]);
        assert!(scan_bytes("/k", cut.as_bytes()).is_empty());
        // Labels must match.
        let swapped = RSA.replace("END RSA", "END EC");
        assert!(scan_bytes("/k", swapped.as_bytes()).is_empty());
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
