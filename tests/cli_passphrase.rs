//! An encrypted key's passphrase is typed on a real pseudo-terminal: what is typed never shows
//! on the terminal, the key is encrypted and decrypted with exactly what was typed, and without a
//! terminal wafer never reads a secret from a pipe (only WAFER_PASSPHRASE or --passphrase-file).

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const SECRET: &str = "Tr0ub4dor&3-typed";

/// A pseudo-terminal pair: the master (what the person's terminal emulator holds) and the path
/// of the slave (the child's controlling terminal).
fn open_pty() -> (std::fs::File, std::fs::File) {
    // SAFETY: plain libc calls on descriptors this function owns.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = OwnedFd::from_raw_fd(m);
        assert_eq!(libc::grantpt(m), 0, "grantpt");
        assert_eq!(libc::unlockpt(m), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_str()
            .expect("pts name")
            .to_string();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .expect("open the pty slave");
        (std::fs::File::from(master), slave)
    }
}

/// What the terminal showed while `wafer ARGS` ran on a pseudo-terminal as its controlling
/// terminal, typing each of `answers` (plus Enter) once the output shows the matching prompt.
fn on_terminal(args: &[&str], answers: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let (master, slave) = open_pty();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wafer"));
    cmd.args(args)
        .env_remove("WAFER_PASSPHRASE")
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe; the child gets its own session whose
    // controlling terminal is the pty on its standard input.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run wafer on a pty");
    drop(cmd); // the parent's copies of the slave: the master reads EIO once the child is gone

    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut reader = master.try_clone().expect("dup master");
    let sink = seen.clone();
    let reading = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break, // EIO: the slave side is closed
                Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    });
    let mut writer = master;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut from = 0;
    for (prompt, answer) in answers {
        loop {
            let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
            if let Some(at) = text[from..].find(prompt) {
                from += at + prompt.len();
                break;
            }
            if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
                let _ = child.kill();
                panic!("no prompt {prompt:?} on the terminal; it showed:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        writer
            .write_all(format!("{answer}\n").as_bytes())
            .expect("type on the terminal");
    }
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wafer did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    reading.join().expect("reader");
    let _ = writer.as_raw_fd();
    let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    (status, text)
}

fn keyid(args: &[&str], env: &[(&str, &str)]) -> String {
    let o = ok(wafer_env(args, env));
    stdout(&o).trim().to_string()
}

#[test]
fn typed_passphrase_never_echoes_and_is_the_one_used() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = s(dir);

    // generate --encrypt asks twice on the terminal
    let (status, screen) = on_terminal(
        &["key", "generate", "typed", "--dir", d, "--encrypt"],
        &[("passphrase for", SECRET), ("again: ", SECRET)],
    );
    assert!(status.success(), "{status}: {screen}");
    assert!(
        !screen.contains(SECRET),
        "the typed passphrase was echoed:\n{screen}"
    );
    assert!(screen.contains("private key"), "{screen}");

    // the key is encrypted with exactly what was typed: openssl opens it with that passphrase,
    // and wafer refuses another one
    let key = dir.join("typed.key");
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.contains("BEGIN ENCRYPTED PRIVATE KEY"), "{pem}");
    run(Command::new("openssl")
        .args(["pkey", "-noout", "-passin"])
        .arg(format!("pass:{SECRET}"))
        .arg("-in")
        .arg(&key));
    let public = keyid(&["key", "id", s(&dir.join("typed.pub"))], &[]);
    let o = wafer_env(&["key", "id", s(&key)], &[("WAFER_PASSPHRASE", "not it")]);
    assert!(!o.status.success(), "{}", stdout(&o));

    // decrypting asks once, does not echo, and gives the same key
    let (status, screen) = on_terminal(&["key", "id", s(&key)], &[("passphrase for", SECRET)]);
    assert!(status.success(), "{status}: {screen}");
    assert!(!screen.contains(SECRET), "echoed:\n{screen}");
    assert!(
        screen.contains(&public),
        "key id {public} not shown:\n{screen}"
    );

    // a mistyped confirmation is refused and writes nothing
    let (status, screen) = on_terminal(
        &["key", "generate", "other", "--dir", d, "--encrypt"],
        &[("passphrase for", SECRET), ("again: ", "something else")],
    );
    assert!(!status.success(), "{screen}");
    assert!(screen.contains("differ"), "{screen}");
    assert!(!screen.contains(SECRET) && !screen.contains("something else"));
    assert!(!dir.join("other.key").exists());
}

#[test]
fn without_a_terminal_the_passphrase_never_comes_from_a_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(wafer_env(
        &["key", "generate", "k", "--dir", s(dir), "--encrypt"],
        &[("WAFER_PASSPHRASE", SECRET)],
    ));
    let key = dir.join("k.key");
    let public = keyid(&["key", "id", s(&dir.join("k.pub"))], &[]);

    // no controlling terminal, the passphrase offered on standard input: refused, saying how
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wafer"));
    cmd.args(["key", "id", s(&key)])
        .env_remove("WAFER_PASSPHRASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe: the child has no controlling terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    // offered on standard input; wafer may well have exited without reading it (a closed pipe)
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{SECRET}\n").as_bytes());
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("no terminal")
            && e.contains("WAFER_PASSPHRASE")
            && e.contains("--passphrase-file"),
        "{e}"
    );
    assert!(e.contains("k.key"), "names the key: {e}");
    assert!(!stdout(&o).contains(&public), "decrypted from a pipe");

    // --passphrase-file: the first line of the file
    let pass = dir.join("pass.txt");
    std::fs::write(&pass, format!("{SECRET}\nignored\n")).unwrap();
    assert_eq!(
        keyid(&["key", "id", s(&key), "--passphrase-file", s(&pass)], &[]),
        public
    );
    std::fs::write(&pass, "wrong\n").unwrap();
    let o = wafer(&["key", "id", s(&key), "--passphrase-file", s(&pass)]);
    assert!(!o.status.success());
    std::fs::write(&pass, "").unwrap();
    let o = wafer(&["key", "id", s(&key), "--passphrase-file", s(&pass)]);
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));
}
