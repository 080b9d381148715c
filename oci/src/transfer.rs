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
pub fn fetch_small(repo: &mut dyn Repo, what: &str, desc: &Descriptor) -> Result<Vec<u8>, OciError> {
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
