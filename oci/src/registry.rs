//! [`Registry`]: a [`Repo`] over the OCI distribution spec (v1.1): HEAD/GET blobs (with `Range`),
//! POST + PUT monolithic uploads, GET/PUT manifests, the referrers API, and auth (anonymous,
//! basic, bearer token; see [`crate::auth`]).
//!
//! TLS is rustls with the system's CA bundle (`SSL_CERT_FILE`, else
//! `/etc/ssl/certs/ca-certificates.crt` or `/etc/pki/tls/certs/ca-bundle.crt`, else Mozilla's
//! roots) plus `--ca-file` PEMs. Plain HTTP, or TLS without certificate checks, only for hosts
//! named in [`RegistryOptions::insecure`]: HTTPS unverified is tried first, then HTTP.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ureq::http::{self, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body, SendBody};

use crate::artifact::{sha256_digest, ImageIndex, MAX_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::auth::{parse_challenge, Challenge, Credentials};
use crate::repo::{read_bounded, BlobStream, ByteRange, Fetched, PutOutcome, Repo};
use crate::OciError;

/// How a registry is reached.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Hosts (`host` or `host:port`, as in the reference) reached over plain HTTP or TLS without
    /// certificate checks.
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM files) trusted besides the system's.
    pub ca_files: Vec<PathBuf>,
    /// Credentials to use instead of looking them up in the auth files.
    pub credentials: Option<Credentials>,
}

/// One repository of a registry.
pub struct Registry {
    host: String,
    repo: String,
    base: String,
    agent: Agent,
    creds: Option<Credentials>,
    authz: Option<String>,
    for_push: bool,
}

const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn load_pem(
    path: &std::path::Path,
    out: &mut Vec<Certificate<'static>>,
) -> Result<usize, OciError> {
    let meta = std::fs::metadata(path).map_err(OciError::io(path))?;
    if !meta.is_file() || meta.len() > 64 << 20 {
        return Err(OciError::Config {
            path: path.to_path_buf(),
            why: "not a regular file of at most 64 MiB".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(OciError::io(path))?;
    let before = out.len();
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(OciError::Config {
                    path: path.to_path_buf(),
                    why: format!("not PEM certificates: {e}"),
                })
            }
        }
    }
    Ok(out.len() - before)
}

fn agent(opts: &RegistryOptions, insecure: bool) -> Result<Agent, OciError> {
    let mut certs = Vec::new();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_CA_FILES.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    if let Some(p) = &system {
        load_pem(p, &mut certs)?;
    }
    for f in &opts.ca_files {
        if load_pem(f, &mut certs)? == 0 {
            return Err(OciError::Config {
                path: f.clone(),
                why: "holds no PEM certificate".into(),
            });
        }
    }
    let roots = if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::Specific(Arc::new(certs))
    };
    let tls = TlsConfig::builder()
        .root_certs(roots)
        .disable_verification(insecure)
        .build();
    Ok(Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        .user_agent(concat!("wafer/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent())
}

fn header<'a>(r: &'a Response<Body>, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The start of an error answer, as text with control characters escaped.
fn detail(r: Response<Body>) -> String {
    let mut body = r.into_body();
    let mut v = Vec::new();
    let _ = body.as_reader().take(512).read_to_end(&mut v);
    rootfs::escape::escape_bytes(&v).trim().to_string()
}

fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

impl Registry {
    /// Connects to `host` for repository `repo`: picks HTTPS (or, for an insecure host, HTTP
    /// when HTTPS does not answer), and authenticates when `/v2/` asks for it (scope pull, or
    /// pull and push).
    pub fn open(
        host: &str,
        repo: &str,
        opts: &RegistryOptions,
        for_push: bool,
    ) -> Result<Registry, OciError> {
        let insecure = opts.insecure.iter().any(|h| h == host);
        let creds = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => crate::auth::lookup(host)?,
        };
        let mut r = Registry {
            host: host.to_string(),
            repo: repo.to_string(),
            base: format!("https://{host}"),
            agent: agent(opts, insecure)?,
            creds,
            authz: None,
            for_push,
        };
        let url = format!("{}/v2/", r.base);
        let first = r.raw("GET", &url, &[], None);
        let resp = match first {
            Err(OciError::Http { .. }) if insecure => {
                r.base = format!("http://{host}");
                let url = format!("{}/v2/", r.base);
                r.raw("GET", &url, &[], None)?
            }
            Err(OciError::Http { url, source, .. }) => {
                let hint = if matches!(*source, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
                    || source.to_string().contains("certificate")
                {
                    " (a private CA: --ca-file PEM; a test registry: --insecure HOST)"
                } else if source.to_string().contains("corrupt message") {
                    " (a plain-HTTP registry? name it with --insecure HOST)"
                } else {
                    ""
                };
                return Err(OciError::Http { url, source, hint });
            }
            other => other?,
        };
        match resp.status().as_u16() {
            200 => {}
            401 => {
                let ch = header(&resp, "www-authenticate").and_then(parse_challenge);
                r.authenticate(ch, None)?;
                let url = format!("{}/v2/", r.base);
                let again = r.raw("GET", &url, &[], None)?;
                if again.status().as_u16() != 200 {
                    return Err(OciError::Auth {
                        registry: r.host.clone(),
                        detail: format!(
                            "/v2/ still answers HTTP {} with the credentials",
                            again.status().as_u16()
                        ),
                    });
                }
            }
            s => {
                return Err(OciError::Status {
                    url,
                    what: "the registry's /v2/ endpoint".into(),
                    status: s,
                    detail: detail(resp),
                })
            }
        }
        Ok(r)
    }

    fn scope(&self) -> String {
        format!(
            "repository:{}:{}",
            self.repo,
            if self.for_push { "pull,push" } else { "pull" }
        )
    }

    fn no_creds(&self) -> String {
        let files: Vec<String> = crate::auth::auth_files()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "the registry asks for credentials and none were found for {} (looked in {}; `podman login` or `docker login` writes them)",
            self.host,
            files.join(", ")
        )
    }

    /// Answers an auth challenge: basic credentials, or a bearer token from the realm.
    fn authenticate(&mut self, ch: Option<Challenge>, scope: Option<&str>) -> Result<(), OciError> {
        let auth_err = |detail: String| OciError::Auth {
            registry: self.host.clone(),
            detail,
        };
        let Some(ch) = ch else {
            return Err(auth_err(
                "HTTP 401 without a WWW-Authenticate challenge".into(),
            ));
        };
        match ch.scheme.as_str() {
            "basic" => {
                let Some(c) = &self.creds else {
                    return Err(auth_err(self.no_creds()));
                };
                self.authz = Some(c.basic_header());
                Ok(())
            }
            "bearer" => {
                let Some(realm) = ch.params.get("realm") else {
                    return Err(auth_err("a Bearer challenge without a realm".into()));
                };
                if !(realm.starts_with("https://")
                    || (realm.starts_with("http://") && self.base.starts_with("http://")))
                {
                    return Err(auth_err(format!(
                        "token realm {} is not https (credentials are not sent in clear)",
                        rootfs::escape::escape(realm)
                    )));
                }
                let scope = scope
                    .map(String::from)
                    .or_else(|| ch.params.get("scope").cloned())
                    .unwrap_or_else(|| self.scope());
                let mut url = format!(
                    "{realm}{}scope={}",
                    if realm.contains('?') { '&' } else { '?' },
                    enc(&scope)
                );
                if let Some(s) = ch.params.get("service") {
                    url.push_str(&format!("&service={}", enc(s)));
                }
                let basic = self.creds.as_ref().map(Credentials::basic_header);
                let mut req = http::Request::builder().method("GET").uri(&url);
                if let Some(b) = &basic {
                    req = req.header("Authorization", b);
                }
                let req = req
                    .body(SendBody::none())
                    .map_err(|e| auth_err(format!("token request: {e}")))?;
                let resp = self.agent.run(req).map_err(|e| OciError::Http {
                    url: realm.clone(),
                    source: Box::new(e),
                    hint: "",
                })?;
                let status = resp.status().as_u16();
                if status != 200 {
                    return Err(auth_err(format!(
                        "the token endpoint {} answered HTTP {status}{}",
                        rootfs::escape::escape(realm),
                        if basic.is_none() && (status == 401 || status == 403) {
                            format!(" ({})", self.no_creds())
                        } else {
                            String::new()
                        }
                    )));
                }
                let bytes = read_bounded(&mut resp.into_body().into_reader(), 1 << 20, "token")?;
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|_| auth_err("the token endpoint's answer is not JSON".into()))?;
                let Some(tok) = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                else {
                    return Err(auth_err(
                        "the token endpoint's answer holds no token".into(),
                    ));
                };
                self.authz = Some(format!("Bearer {tok}"));
                Ok(())
            }
            other => Err(auth_err(format!(
                "unsupported auth scheme {}",
                rootfs::escape::escape(other)
            ))),
        }
    }

    fn raw(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(&mut dyn Read, u64)>,
    ) -> Result<Response<Body>, OciError> {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        // Credentials go to this registry only, never to another host a Location names.
        let same_origin = url
            .strip_prefix(self.base.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if let Some(a) = self.authz.as_ref().filter(|_| same_origin) {
            req = req.header("Authorization", a);
        }
        let http_err = |e: ureq::Error| OciError::Http {
            url: url.to_string(),
            source: Box::new(e),
            hint: "",
        };
        let result = match body {
            Some((r, len)) => {
                let req = req
                    .header("Content-Length", len.to_string())
                    .body(SendBody::from_reader(r))
                    .map_err(|e| http_err(e.into()))?;
                self.agent.run(req)
            }
            None => {
                let req = req.body(SendBody::none()).map_err(|e| http_err(e.into()))?;
                self.agent.run(req)
            }
        };
        result.map_err(http_err)
    }

    /// A request; a 401 on a request without a body is answered (new token for the challenge's
    /// scope) and the request sent once more.
    fn call(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(&mut dyn Read, u64)>,
    ) -> Result<Response<Body>, OciError> {
        let has_body = body.is_some();
        let resp = self.raw(method, url, headers, body)?;
        if resp.status().as_u16() != 401 || has_body {
            return Ok(resp);
        }
        let ch = header(&resp, "www-authenticate").and_then(parse_challenge);
        let scope = ch.as_ref().and_then(|c| c.params.get("scope").cloned());
        self.authenticate(ch, scope.as_deref())?;
        self.raw(method, url, headers, None)
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.repo)
    }

    fn status_err(&self, url: &str, what: &str, r: Response<Body>) -> OciError {
        let status = r.status().as_u16();
        if status == 401 || status == 403 {
            return OciError::Auth {
                registry: self.host.clone(),
                detail: format!("{what}: HTTP {status}: {}", detail(r)),
            };
        }
        OciError::Status {
            url: url.to_string(),
            what: what.to_string(),
            status,
            detail: detail(r),
        }
    }
}

/// Counts bytes read through it.
struct Counting<'a> {
    inner: &'a mut dyn Read,
    progress: &'a mut dyn FnMut(u64),
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

impl Repo for Registry {
    fn name(&self) -> String {
        format!("{}/{}", self.host, self.repo)
    }

    fn has_blob(&mut self, digest: &str) -> Result<bool, OciError> {
        let url = self.url(&format!("blobs/{digest}"));
        let r = self.call("HEAD", &url, &[], None)?;
        match r.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_err(&url, "checking a blob", r)),
        }
    }

    fn push_blob(
        &mut self,
        digest: &str,
        size: u64,
        body: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), OciError> {
        let url = self.url("blobs/uploads/");
        let r = self.call("POST", &url, &[("Content-Length", "0")], None)?;
        if r.status().as_u16() != 202 {
            return Err(self.status_err(&url, "starting a blob upload", r));
        }
        let Some(loc) = header(&r, "location").map(String::from) else {
            return Err(OciError::Status {
                url,
                what: "starting a blob upload: no Location".into(),
                status: 202,
                detail: String::new(),
            });
        };
        drop(r);
        let loc = if loc.starts_with('/') {
            format!("{}{loc}", self.base)
        } else {
            loc
        };
        let put = format!(
            "{loc}{}digest={}",
            if loc.contains('?') { '&' } else { '?' },
            enc(digest)
        );
        let mut counting = Counting {
            inner: body,
            progress,
        };
        let r = self.call(
            "PUT",
            &put,
            &[("Content-Type", "application/octet-stream")],
            Some((&mut counting, size)),
        )?;
        if r.status().as_u16() != 201 {
            return Err(self.status_err(&url, &format!("uploading blob {digest}"), r));
        }
        if let Some(d) = header(&r, "docker-content-digest") {
            if d != digest {
                return Err(OciError::Digest {
                    what: format!("{}: uploaded blob (Docker-Content-Digest)", self.name()),
                    expected: digest.to_string(),
                    actual: d.to_string(),
                });
            }
        }
        Ok(())
    }

    fn fetch_blob(&mut self, digest: &str, range: ByteRange) -> Result<BlobStream<'_>, OciError> {
        let url = self.url(&format!("blobs/{digest}"));
        let rh = range.header();
        let headers: Vec<(&str, &str)> = rh.iter().map(|v| ("Range", v.as_str())).collect();
        let r = self.call("GET", &url, &headers, None)?;
        let status = r.status().as_u16();
        match status {
            200 if range.start == 0 && range.end.is_none() => {}
            206 if rh.is_some() => {
                // The answer must be the range asked for.
                let cr = header(&r, "content-range").unwrap_or("");
                let want = format!("bytes {}-", range.start);
                if !cr.starts_with(&want) {
                    return Err(OciError::Status {
                        url,
                        what: format!(
                            "range {} answered with Content-Range {}",
                            rh.unwrap_or_default(),
                            rootfs::escape::escape(cr)
                        ),
                        status,
                        detail: String::new(),
                    });
                }
            }
            200 => {
                return Err(OciError::Status {
                    url,
                    what: "the registry ignored the Range request (answered the whole blob)".into(),
                    status,
                    detail: String::new(),
                })
            }
            404 => {
                return Err(OciError::NotFound {
                    what: format!("blob {digest}"),
                    repo: self.name(),
                })
            }
            _ => return Err(self.status_err(&url, &format!("fetching blob {digest}"), r)),
        }
        let len = header(&r, "content-length").and_then(|v| v.parse().ok());
        Ok(BlobStream {
            reader: Box::new(r.into_body().into_reader()),
            len,
        })
    }

    fn get_manifest(&mut self, reference: &str, max: u64) -> Result<Option<Fetched>, OciError> {
        let url = self.url(&format!("manifests/{reference}"));
        let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}");
        let r = self.call("GET", &url, &[("Accept", &accept)], None)?;
        match r.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.status_err(&url, &format!("fetching manifest {reference}"), r)),
        }
        let media_type =
            header(&r, "content-type").map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let stated = header(&r, "docker-content-digest").map(String::from);
        let what = format!("{}: manifest {reference}", self.name());
        let bytes = read_bounded(
            &mut r.into_body().into_reader(),
            max.min(MAX_MANIFEST),
            &what,
        )?;
        let digest = sha256_digest(&bytes);
        if let Some(s) = stated {
            if s != digest {
                return Err(OciError::Digest {
                    what: format!("{what} (Docker-Content-Digest)"),
                    expected: s,
                    actual: digest,
                });
            }
        }
        Ok(Some(Fetched {
            bytes,
            media_type,
            digest,
        }))
    }

    fn put_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, OciError> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut body: &[u8] = bytes;
        let r = self.call(
            "PUT",
            &url,
            &[("Content-Type", media_type)],
            Some((&mut body, bytes.len() as u64)),
        )?;
        if r.status().as_u16() != 201 {
            return Err(self.status_err(&url, &format!("storing manifest {reference}"), r));
        }
        let digest = sha256_digest(bytes);
        if let Some(d) = header(&r, "docker-content-digest") {
            if d != digest {
                return Err(OciError::Digest {
                    what: format!("{}: stored manifest (Docker-Content-Digest)", self.name()),
                    expected: digest,
                    actual: d.to_string(),
                });
            }
        }
        Ok(PutOutcome {
            subject_indexed: header(&r, "oci-subject").map(|_| "referrers API"),
        })
    }

    fn referrers(
        &mut self,
        digest: &str,
        artifact_type: &str,
    ) -> Result<Option<ImageIndex>, OciError> {
        let url = self.url(&format!(
            "referrers/{digest}?artifactType={}",
            enc(artifact_type)
        ));
        let r = self.call("GET", &url, &[("Accept", OCI_INDEX)], None)?;
        match r.status().as_u16() {
            200 => {}
            404 | 405 => return Ok(None),
            _ => return Err(self.status_err(&url, "listing referrers", r)),
        }
        let what = format!("{}: referrers of {digest}", self.name());
        let bytes = read_bounded(&mut r.into_body().into_reader(), MAX_MANIFEST, &what)?;
        Ok(Some(ImageIndex::parse(&what, &bytes)?))
    }
}
