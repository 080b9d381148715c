//! Blob downloads checked as they stream: the sha256 of every byte against the descriptor's
//! digest, never more bytes than it declares, and a broken connection resumed where it stopped
//! (`Range: bytes=N-`, [`crate::ByteRange`]) rather than started again.
//!
//! [`download_into`] is the seam for resumed pulls: given a file already holding the first N
//! bytes of the blob (an interrupted download), it hashes them, fetches the rest with a range
//! request, and checks the whole.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::artifact::Descriptor;
use crate::repo::{read_bounded, ByteRange, Repo};
use crate::{Event, OciError, Progress};

/// How many times a broken download is resumed.
pub const RETRIES: u32 = 3;
const BUF: usize = 1 << 20;

fn digest_of(h: Sha256) -> String {
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// A small blob (config, report, envelope) read into memory: at most `desc.size` bytes (which
/// the caller has bounded), checked against `desc.digest`.
pub fn fetch_small(
    repo: &mut dyn Repo,
    what: &str,
    desc: &Descriptor,
) -> Result<Vec<u8>, OciError> {
    let label = format!("{}: {what} ({})", repo.name(), desc.digest);
    let bytes = {
        let mut s = repo.fetch_blob(&desc.digest, ByteRange::ALL)?;
        read_bounded(&mut s.reader, desc.size, &label)?
    };
    if bytes.len() as u64 != desc.size {
        return Err(OciError::Size {
            what: label,
            why: format!("{} bytes, the manifest declares {}", bytes.len(), desc.size),
        });
    }
    let actual = crate::artifact::sha256_digest(&bytes);
    if actual != desc.digest {
        return Err(OciError::Digest {
            what: label,
            expected: desc.digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Downloads blob `desc` into `file` at `path`, resuming after the bytes the file already
/// holds: they are hashed first (a file longer than the blob is an error), the rest is fetched
/// from that offset, and the whole is checked against `desc.digest` and `desc.size`. A broken
/// connection is resumed up to [`RETRIES`] times. Emits [`Event::Bytes`] for the bytes moved.
pub fn download_into(
    repo: &mut dyn Repo,
    what: &str,
    desc: &Descriptor,
    file: &mut File,
    path: &Path,
    progress: Progress<'_>,
) -> Result<(), OciError> {
    let label = format!("{}: {what} ({})", repo.name(), desc.digest);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF];
    // What the file holds already.
    file.seek(SeekFrom::Start(0)).map_err(OciError::io(path))?;
    let mut have: u64 = 0;
    loop {
        let n = file.read(&mut buf).map_err(OciError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        have += n as u64;
        if have > desc.size {
            return Err(OciError::Size {
                what: format!("{}", path.display()),
                why: format!("holds more than the {} bytes of {}", desc.size, desc.digest),
            });
        }
    }
    if have > 0 {
        progress(&Event::Bytes { n: have });
    }
    let mut tries = 0;
    while have < desc.size {
        let outcome = (|| -> Result<(), (bool, OciError)> {
            let mut s = repo
                .fetch_blob(&desc.digest, ByteRange::from(have))
                .map_err(|e| (matches!(e, OciError::Http { .. }), e))?;
            loop {
                let n = match s.reader.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err((
                            true,
                            OciError::Size {
                                what: label.clone(),
                                why: format!("the download broke after {have} bytes: {e}"),
                            },
                        ))
                    }
                };
                if have + n as u64 > desc.size {
                    return Err((
                        false,
                        OciError::Size {
                            what: label.clone(),
                            why: format!(
                                "more bytes than the {} the manifest declares: refused",
                                desc.size
                            ),
                        },
                    ));
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])
                    .map_err(|e| (false, OciError::io(path)(e)))?;
                have += n as u64;
                progress(&Event::Bytes { n: n as u64 });
            }
        })();
        match outcome {
            Ok(()) if have < desc.size => {
                // The stream ended early: resume.
                tries += 1;
                if tries > RETRIES {
                    return Err(OciError::Size {
                        what: label,
                        why: format!("{have} bytes, the manifest declares {}", desc.size),
                    });
                }
                tracing::info!(blob = %desc.digest, have, "download ended early; resuming");
            }
            Ok(()) => {}
            Err((true, e)) if tries < RETRIES => {
                tries += 1;
                tracing::info!(blob = %desc.digest, have, error = %e, "download broke; resuming");
            }
            Err((_, e)) => return Err(e),
        }
    }
    file.flush().map_err(OciError::io(path))?;
    let actual = digest_of(hasher);
    if actual != desc.digest {
        return Err(OciError::Digest {
            what: label,
            expected: desc.digest.clone(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{ImageIndex, WAFER_DISK};
    use crate::repo::{BlobStream, Fetched, PutOutcome};

    /// A store whose blob stream breaks after `cut` bytes, `breaks` times, and records the
    /// ranges asked for.
    struct Flaky {
        blob: Vec<u8>,
        cut: usize,
        breaks: u32,
        ranges: Vec<ByteRange>,
    }

    struct Broken<'a> {
        data: &'a [u8],
        left: usize,
        fail: bool,
    }

    impl Read for Broken<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.left == 0 || self.data.is_empty() {
                return if self.fail && !self.data.is_empty() {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "reset",
                    ))
                } else {
                    Ok(0)
                };
            }
            let n = buf.len().min(self.left).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.left -= n;
            Ok(n)
        }
    }

    impl Repo for Flaky {
        fn name(&self) -> String {
            "flaky".into()
        }
        fn has_blob(&mut self, _: &str) -> Result<bool, OciError> {
            Ok(true)
        }
        fn push_blob(
            &mut self,
            _: &str,
            _: u64,
            _: &mut dyn Read,
            _: &mut dyn FnMut(u64),
        ) -> Result<(), OciError> {
            Ok(())
        }
        fn fetch_blob(&mut self, _: &str, range: ByteRange) -> Result<BlobStream<'_>, OciError> {
            self.ranges.push(range);
            let data = &self.blob[range.start as usize..];
            let fail = self.breaks > 0;
            if fail {
                self.breaks -= 1;
            }
            Ok(BlobStream {
                reader: Box::new(Broken {
                    data,
                    left: if fail { self.cut } else { usize::MAX },
                    fail,
                }),
                len: None,
            })
        }
        fn get_manifest(&mut self, _: &str, _: u64) -> Result<Option<Fetched>, OciError> {
            Ok(None)
        }
        fn put_manifest(&mut self, _: &str, _: &str, _: &[u8]) -> Result<PutOutcome, OciError> {
            Ok(PutOutcome {
                subject_indexed: None,
            })
        }
        fn referrers(&mut self, _: &str, _: &str) -> Result<Option<ImageIndex>, OciError> {
            Ok(None)
        }
    }

    fn blob() -> Vec<u8> {
        (0..3_000_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_broken_download_resumes_with_range_requests() {
        let b = blob();
        let desc = Descriptor::of(WAFER_DISK, &b);
        let mut repo = Flaky {
            blob: b.clone(),
            cut: 700_000,
            breaks: 2,
            ranges: Vec::new(),
        };
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("disk");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut moved = 0;
        download_into(&mut repo, "disk", &desc, &mut f, &path, &mut |e| {
            if let Event::Bytes { n } = e {
                moved += n
            }
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b);
        assert_eq!(moved, b.len() as u64);
        assert_eq!(
            repo.ranges,
            vec![
                ByteRange::ALL,
                ByteRange::from(700_000),
                ByteRange::from(1_400_000)
            ]
        );
    }

    #[test]
    fn a_partial_file_is_hashed_and_completed_and_bad_bytes_are_refused() {
        let b = blob();
        let desc = Descriptor::of(WAFER_DISK, &b);
        let d = tempfile::tempdir().unwrap();
        // An earlier run left the first million bytes.
        let path = d.path().join("disk");
        std::fs::write(&path, &b[..1_000_000]).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut repo = Flaky {
            blob: b.clone(),
            cut: 0,
            breaks: 0,
            ranges: Vec::new(),
        };
        download_into(&mut repo, "disk", &desc, &mut f, &path, &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b);
        assert_eq!(repo.ranges, vec![ByteRange::from(1_000_000)]);

        // A partial file whose bytes are not the blob's: the digest refuses the whole.
        let mut bad = b[..1_000_000].to_vec();
        bad[5] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let e = download_into(&mut repo, "disk", &desc, &mut f, &path, &mut |_| {}).unwrap_err();
        assert!(matches!(e, OciError::Digest { .. }), "{e}");

        // A store sending more bytes than declared.
        let short = Descriptor {
            size: 10,
            ..desc.clone()
        };
        let path2 = d.path().join("disk2");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path2)
            .unwrap();
        let e = download_into(&mut repo, "disk", &short, &mut f, &path2, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("more bytes than"), "{e}");
        // And one breaking more often than the retries allow.
        let mut flaky = Flaky {
            blob: b.clone(),
            cut: 100,
            breaks: 10,
            ranges: Vec::new(),
        };
        let path3 = d.path().join("disk3");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path3)
            .unwrap();
        assert!(download_into(&mut flaky, "disk", &desc, &mut f, &path3, &mut |_| {}).is_err());
        assert_eq!(flaky.ranges.len() as u32, RETRIES + 1);
    }
}
