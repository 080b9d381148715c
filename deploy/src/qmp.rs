//! A small client of QEMU's machine protocol (QMP) over a unix socket: the greeting,
//! `qmp_capabilities`, then one command at a time. Every read has a timeout and a size bound; a
//! reply that is not the JSON QMP promises is an error ([`QmpError`]), never a panic.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;

/// Longest QMP line read (a `query-status` reply is ~60 bytes; events are small).
pub const MAX_LINE: u64 = 1 << 20;
/// Most lines (events) skipped while waiting for one reply.
pub const MAX_EVENTS: usize = 1000;
/// Longest unix socket path (`sun_path` less its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// A QMP conversation failed.
#[derive(Debug, Error)]
pub enum QmpError {
    /// Nothing listens on the socket (no file, or the QEMU that made it is gone).
    #[error("{path}: no QEMU listens on this QMP socket ({source})")]
    NotListening {
        /// The socket.
        path: PathBuf,
        /// connect(2)'s error.
        source: std::io::Error,
    },
    /// The path is too long for a unix socket.
    #[error("{path}: {len} bytes is longer than the {MAX_SOCKET_PATH} bytes of a unix socket path")]
    PathTooLong {
        /// The socket.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// Reading or writing failed (including a read timeout: QEMU does not answer).
    #[error("{path}: QMP {doing}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What was being done.
        doing: String,
        /// The cause.
        source: std::io::Error,
    },
    /// QEMU closed the connection.
    #[error("{path}: QMP {doing}: QEMU closed the connection")]
    Closed {
        /// The socket.
        path: PathBuf,
        /// What was being done.
        doing: String,
    },
    /// The reply is not what QMP sends.
    #[error("{path}: QMP {doing}: {message}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What was being done.
        doing: String,
        /// What is wrong.
        message: String,
    },
    /// QEMU answered the command with an error.
    #[error("{path}: QMP {command}: QEMU says {class}: {desc}")]
    Command {
        /// The socket.
        path: PathBuf,
        /// The command.
        command: String,
        /// `error.class`.
        class: String,
        /// `error.desc`.
        desc: String,
    },
}

/// An open QMP session (capabilities negotiated).
pub struct Qmp {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

fn shown(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(&v[..v.len().min(200)]);
    s.escape_debug().to_string()
}

impl Qmp {
    /// Connects to `path`, reads the greeting and negotiates capabilities; every read waits at
    /// most `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(QmpError::PathTooLong {
                path: path.to_path_buf(),
                len,
            });
        }
        let stream = UnixStream::connect(path).map_err(|source| QmpError::NotListening {
            path: path.to_path_buf(),
            source,
        })?;
        let io = |doing: &str| {
            let path = path.to_path_buf();
            let doing = doing.to_string();
            move |source| QmpError::Io { path, doing, source }
        };
        stream
            .set_read_timeout(Some(timeout))
            .map_err(io("setting a timeout"))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(io("setting a timeout"))?;
        let writer = stream.try_clone().map_err(io("connecting"))?;
        let mut q = Qmp {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = q.read_message("greeting")?;
        if greeting.get("QMP").and_then(Value::as_object).is_none() {
            return Err(q.protocol("greeting", "the first message is not a QMP greeting"));
        }
        q.execute("qmp_capabilities")?;
        Ok(q)
    }

    fn protocol(&self, doing: &str, message: &str) -> QmpError {
        QmpError::Protocol {
            path: self.path.clone(),
            doing: doing.to_string(),
            message: message.to_string(),
        }
    }

    /// One JSON object line, at most [`MAX_LINE`] bytes.
    fn read_message(&mut self, doing: &str) -> Result<serde_json::Map<String, Value>, QmpError> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut line)
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                doing: doing.to_string(),
                source,
            })?;
        if n == 0 {
            return Err(QmpError::Closed {
                path: self.path.clone(),
                doing: doing.to_string(),
            });
        }
        if line.len() as u64 > MAX_LINE {
            return Err(self.protocol(doing, &format!("a line longer than {MAX_LINE} bytes")));
        }
        if !line.ends_with(b"\n") {
            return Err(QmpError::Closed {
                path: self.path.clone(),
                doing: doing.to_string(),
            });
        }
        match serde_json::from_slice::<Value>(&line) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(self.protocol(doing, &format!("not a JSON object: {}", shown(&line)))),
            Err(e) => Err(self.protocol(doing, &format!("not JSON ({e}): {}", shown(&line)))),
        }
    }

    /// Runs `command` (no arguments) and returns its `return` value; events that arrive
    /// meanwhile are skipped.
    pub fn execute(&mut self, command: &str) -> Result<Value, QmpError> {
        let mut req = serde_json::to_vec(&json!({ "execute": command })).map_err(|e| {
            self.protocol(command, &e.to_string())
        })?;
        req.push(b'\n');
        self.writer
            .write_all(&req)
            .and_then(|()| self.writer.flush())
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                doing: command.to_string(),
                source,
            })?;
        for _ in 0..MAX_EVENTS {
            let mut m = self.read_message(command)?;
            if m.contains_key("event") {
                continue;
            }
            if let Some(r) = m.remove("return") {
                return Ok(r);
            }
            if let Some(e) = m.get("error") {
                let field = |k: &str| {
                    e.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("(none)")
                        .chars()
                        .take(500)
                        .collect::<String>()
                };
                return Err(QmpError::Command {
                    path: self.path.clone(),
                    command: command.to_string(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            return Err(self.protocol(command, "a reply with neither return, error nor event"));
        }
        Err(self.protocol(
            command,
            &format!("more than {MAX_EVENTS} events and no reply"),
        ))
    }

    /// `query-status`: the run state (`running`, `paused`, `shutdown`, `prelaunch`, ...).
    pub fn status(&mut self) -> Result<String, QmpError> {
        let r = self.execute("query-status")?;
        match r.get("status").and_then(Value::as_str) {
            Some(s)
                if !s.is_empty()
                    && s.len() <= 64
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                Ok(s.to_string())
            }
            _ => Err(self.protocol("query-status", "the reply has no status name")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake QMP server answering with `script` (one line per client read) on a thread.
    fn serve(dir: &Path, script: Vec<&'static [u8]>) -> PathBuf {
        let path = dir.join("q.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = true;
            for line in script {
                if !first {
                    let mut req = String::new();
                    if r.read_line(&mut req).unwrap_or(0) == 0 {
                        return;
                    }
                }
                first = false;
                if s.write_all(line).is_err() {
                    return;
                }
            }
            // then close: a client waiting for more sees the end
        });
        path
    }

    const GREETING: &[u8] = b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n";
    const OK: &[u8] = b"{\"return\": {}}\n";

    #[test]
    fn status_skips_events_and_reads_the_state() {
        let d = tempfile::tempdir().unwrap();
        let p = serve(
            d.path(),
            vec![
                GREETING,
                OK,
                b"{\"event\": \"RESUME\", \"timestamp\": {}}\n{\"return\": {\"status\": \"paused\", \"running\": false}}\n",
            ],
        );
        let mut q = Qmp::connect(&p, Duration::from_secs(20)).unwrap();
        assert_eq!(q.status().unwrap(), "paused");
    }

    #[test]
    fn garbled_and_hostile_replies_are_errors() {
        let cases: Vec<(Vec<&'static [u8]>, &str)> = vec![
            (vec![b"not json\n"], "not JSON"),
            (vec![b"[1,2]\n"], "not a JSON object"),
            (vec![b"{\"hello\": 1}\n"], "not a QMP greeting"),
            (vec![GREETING, b"{\"what\": 1}\n"], "neither return"),
            (
                vec![GREETING, b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\n"],
                "QEMU says GenericError: no",
            ),
            (vec![GREETING, OK, b"{\"return\": {\"status\": 7}}\n"], "no status name"),
            (vec![GREETING, OK, b"{\"return\": {\"status\": \"a\\nb\"}}\n"], "no status name"),
            (vec![GREETING, b"{\"return\": {}"], "closed the connection"),
        ];
        for (script, want) in cases {
            let d = tempfile::tempdir().unwrap();
            let p = serve(d.path(), script);
            let e = Qmp::connect(&p, Duration::from_secs(20)).and_then(|mut q| q.status());
            let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(want), "{want:?} not in {msg:?}");
        }
    }

    #[test]
    fn an_endless_line_is_refused_by_its_bound() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("q.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let chunk = vec![b'x'; 65536];
            while s.write_all(&chunk).is_ok() {}
        });
        let e = Qmp::connect(&path, Duration::from_secs(20)).err().unwrap();
        assert!(e.to_string().contains("longer than"), "{e}");
    }

    #[test]
    fn nobody_listening_and_long_paths_are_named() {
        let d = tempfile::tempdir().unwrap();
        let e = Qmp::connect(&d.path().join("none.sock"), Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(matches!(e, QmpError::NotListening { .. }), "{e}");
        let long = d.path().join("x".repeat(200));
        let e = Qmp::connect(&long, Duration::from_secs(1)).err().unwrap();
        assert!(matches!(e, QmpError::PathTooLong { .. }), "{e}");
    }
}
