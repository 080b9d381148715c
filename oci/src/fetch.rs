//! [`RepoRange`]: the delta/streaming pull's [`RangeFetch`] over a store's blob
//! ([`Repo::fetch_blob`] with a bounded [`ByteRange`]), resuming a broken range where it stopped.

use std::io::{Read, Write};

use bundle::delta::{FetchError, RangeFetch};

use crate::repo::{ByteRange, Repo};
use crate::transfer::RETRIES;
use crate::{Event, OciError, Progress};

/// Ranges of one blob of `repo`; every byte moved is reported as [`Event::Bytes`].
pub struct RepoRange<'a, 'p> {
    /// The store.
    pub repo: &'a mut dyn Repo,
    /// The blob's digest.
    pub digest: String,
    /// Where byte counts go.
    pub progress: Progress<'p>,
    /// Bytes received so far.
    pub fetched: u64,
}

fn short(label: &str, got: u64, len: u64) -> OciError {
    OciError::Size {
        what: label.to_string(),
        why: format!("{got} bytes of a {len}-byte range, after {RETRIES} retries"),
    }
}

impl RangeFetch for RepoRange<'_, '_> {
    fn fetch(&mut self, offset: u64, len: u64, out: &mut dyn Write) -> Result<(), FetchError> {
        let label = format!("{}: blob {}", self.repo.name(), self.digest);
        let mut got = 0u64;
        let mut tries = 0u32;
        let mut buf = vec![0u8; 1 << 20];
        while got < len {
            let range = ByteRange {
                start: offset + got,
                end: Some(offset + len),
            };
            let broke = {
                let mut s = self.repo.fetch_blob(&self.digest, range)?;
                loop {
                    let want = buf.len().min((len - got) as usize);
                    if want == 0 {
                        break false;
                    }
                    match s.reader.read(&mut buf[..want]) {
                        Ok(0) => break true,
                        Ok(n) => {
                            // An error writing is the sink's: it ends the call.
                            out.write_all(&buf[..n])?;
                            got += n as u64;
                            self.fetched += n as u64;
                            (self.progress)(&Event::Bytes { n: n as u64 });
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            tracing::info!(blob = %self.digest, got, error = %e, "range broke; resuming");
                            break true;
                        }
                    }
                }
            };
            if broke && got < len {
                tries += 1;
                if tries > RETRIES {
                    return Err(Box::new(short(&label, got, len)));
                }
            }
        }
        Ok(())
    }
}
