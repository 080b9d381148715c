//! Registry authentication and TLS as users expect them, against real docker-registry
//! instances: basic auth (htpasswd made by `htpasswd -B`) with credentials from
//! REGISTRY_AUTH_FILE or ~/.docker/config.json, the bearer-token flow (the registry's `token`
//! auth, a token endpoint served by the test, the JWT signed with `openssl`), and TLS with a CA
//! made by `openssl` (--ca-file; --insecure only for the named host). Credentials never appear
//! in wafer's output.
//!
//! Debian packages: docker-registry, apache2-utils (htpasswd), openssl.

mod oci_registry;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use oci_registry::{demo, tree_digest, Registry};

const PASSWORD: &str = "s3cret-pw-7f3a";

fn wafer(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wafer"));
    c.args(args)
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .env("HOME", "/nonexistent")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("DOCKER_CONFIG")
        .env_remove("SSL_CERT_FILE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run wafer")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "wafer failed: {}", text(&o));
    assert!(!text(&o).contains(PASSWORD), "the password was printed");
    o
}

fn fails(o: Output) -> String {
    assert_eq!(o.status.code(), Some(1), "expected exit 1: {}", text(&o));
    assert!(!text(&o).contains(PASSWORD), "the password was printed");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tool(cmd: &mut Command) {
    let what = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (install openssl / apache2-utils)"));
    assert!(out.status.success(), "{what}: {}", text(&out));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn auth_file(dir: &Path, host: &str, user: &str, password: &str) -> std::path::PathBuf {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let p = dir.join("auth.json");
    std::fs::write(
        &p,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{b64}"}}}}}}"#),
    )
    .unwrap();
    p
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn make_ca(dir: &Path) {
    tool(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "3650",
        "-subj",
        "/CN=wafer test CA",
    ]));
    tool(Command::new("openssl").current_dir(dir).args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]));
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    tool(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "3650",
        "-extfile",
        "ext",
    ]));
}

#[test]
fn tls_with_a_private_ca_and_basic_auth() {
    let d = demo();
    let fixed = d.join("wafers/squid-fixed");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    make_ca(w);
    let out = Command::new("htpasswd")
        .args(["-Bbn", "alice", PASSWORD])
        .output()
        .expect("htpasswd (Debian package apache2-utils)");
    assert!(out.status.success());
    std::fs::write(w.join("htpasswd"), &out.stdout).unwrap();
    let reg = Registry::start_full(
        &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            s(&w.join("srv.pem")),
            s(&w.join("srv.key"))
        ),
        &format!(
            "auth:\n  htpasswd:\n    realm: wafer-test\n    path: {}\n",
            s(&w.join("htpasswd"))
        ),
    );
    let r = reg.repo("cms/squid:1");
    let ca = w.join("ca.pem");

    // The system roots do not know the test CA: refused, with a hint.
    let e = fails(wafer(&["push", s(&fixed), &r], &[]));
    assert!(e.contains("--ca-file"), "{e}");
    // The CA is trusted, but no credentials: the registry's 401 is explained.
    let e = fails(wafer(&["push", s(&fixed), &r, "--ca-file", s(&ca)], &[]));
    assert!(
        e.contains("authentication failed") && e.contains("login"),
        "{e}"
    );
    // Wrong credentials.
    let creds = w.join("creds");
    std::fs::create_dir(&creds).unwrap();
    let wrong = auth_file(&creds, &reg.host, "alice", "not-the-password");
    let e = fails(wafer(
        &["push", s(&fixed), &r, "--ca-file", s(&ca)],
        &[("REGISTRY_AUTH_FILE", s(&wrong))],
    ));
    assert!(e.contains("authentication failed"), "{e}");
    assert!(!e.contains("not-the-password"));

    // Credentials from REGISTRY_AUTH_FILE.
    let good = auth_file(&creds, &reg.host, "alice", PASSWORD);
    ok(wafer(
        &["push", s(&fixed), &r, "--ca-file", s(&ca)],
        &[("REGISTRY_AUTH_FILE", s(&good))],
    ));
    // ... and from ~/.docker/config.json, for the pull.
    let home = w.join("home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::copy(&good, home.join(".docker/config.json")).unwrap();
    let dest = w.join("pulled");
    ok(wafer(
        &[
            "pull",
            &r,
            "-o",
            s(&dest),
            "--ca-file",
            s(&ca),
            "--trust",
            s(&d.join("trust")),
        ],
        &[("HOME", s(&home))],
    ));
    assert_eq!(tree_digest(&dest), tree_digest(&fixed));
    // --insecure for this host: TLS without certificate checks (still authenticated).
    let dest2 = w.join("pulled2");
    ok(wafer(
        &["pull", &r, "-o", s(&dest2), "--insecure", &reg.host],
        &[("HOME", s(&home))],
    ));
    assert_eq!(tree_digest(&dest2), tree_digest(&fixed));
    // --insecure for another host does not cover this one.
    let e = fails(wafer(
        &[
            "pull",
            &r,
            "-o",
            s(&w.join("x")),
            "--insecure",
            "127.0.0.1:1",
        ],
        &[("HOME", s(&home))],
    ));
    assert!(e.contains("--ca-file"), "{e}");
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[test]
fn bearer_tokens_from_the_token_endpoint() {
    let d = demo();
    let fixed = d.join("wafers/squid-fixed");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // The token signer: a self-signed certificate the registry trusts (rootcertbundle).
    tool(Command::new("openssl").current_dir(w).args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "tok.key",
        "-out",
        "tok.pem",
        "-days",
        "3650",
        "-subj",
        "/CN=wafer test token issuer",
    ]));
    tool(Command::new("openssl").current_dir(w).args([
        "x509", "-in", "tok.pem", "-outform", "DER", "-out", "tok.der",
    ]));
    let der = std::fs::read(w.join("tok.der")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let token_port = listener.local_addr().unwrap().port();
    let reg = Registry::start_with(&format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    service: wafer-test-registry\n    issuer: wafer-test-issuer\n    rootcertbundle: {}\n",
        s(&w.join("tok.pem"))
    ));
    // One JWT granting pull and push on cms/squid, signed RS256 by openssl.
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [base64::engine::general_purpose::STANDARD.encode(&der)]});
    let claims = serde_json::json!({
        "iss": "wafer-test-issuer", "sub": "alice", "aud": "wafer-test-registry",
        "exp": 4_000_000_000u64, "nbf": 1_000_000_000u64, "iat": 1_000_000_000u64, "jti": "t1",
        "access": [{"type": "repository", "name": "cms/squid", "actions": ["pull", "push"]}]
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    std::fs::write(w.join("input"), &signing_input).unwrap();
    tool(Command::new("openssl").current_dir(w).args([
        "dgst", "-sha256", "-sign", "tok.key", "-out", "sig", "input",
    ]));
    let jwt = format!(
        "{signing_input}.{}",
        b64url(&std::fs::read(w.join("sig")).unwrap())
    );

    // The token endpoint: the token for alice's basic credentials, 401 otherwise; it records
    // the scopes asked for.
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"))
    );
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let asked2 = asked.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut authz = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
                if let Some(v) = l
                    .strip_prefix("Authorization: ")
                    .or_else(|| l.strip_prefix("authorization: "))
                {
                    authz = v.trim().to_string();
                }
            }
            asked2.lock().unwrap().push(first.clone());
            let (status, body) = if authz == expected {
                ("200 OK", format!(r#"{{"token":"{jwt}"}}"#))
            } else {
                ("401 Unauthorized", "{}".to_string())
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });

    let r = reg.repo("cms/squid:1");
    // Anonymous: the token endpoint refuses, the message says how to log in.
    let e = fails(wafer(
        &["push", s(&fixed), &r, "--insecure", &reg.host],
        &[],
    ));
    assert!(e.contains("token endpoint") && e.contains("login"), "{e}");
    let creds = w.join("creds");
    std::fs::create_dir(&creds).unwrap();
    let good = auth_file(&creds, &reg.host, "alice", PASSWORD);
    let env = [("REGISTRY_AUTH_FILE", s(&good))];
    ok(wafer(
        &["push", s(&fixed), &r, "--insecure", &reg.host],
        &env,
    ));
    let dest = w.join("pulled");
    ok(wafer(
        &[
            "pull",
            &r,
            "-o",
            s(&dest),
            "--insecure",
            &reg.host,
            "--trust",
            s(&d.join("trust")),
        ],
        &env,
    ));
    assert_eq!(tree_digest(&dest), tree_digest(&fixed));
    let asked = asked.lock().unwrap();
    assert!(
        asked
            .iter()
            .any(|l| l.contains("scope=repository%3Acms%2Fsquid%3Apull%2Cpush")),
        "push asks for pull,push: {asked:?}"
    );
    assert!(
        asked
            .iter()
            .any(|l| l.contains("service=wafer-test-registry")),
        "{asked:?}"
    );
}
