//! `wafer key`: ed25519 key pairs (PKCS#8 / SPKI PEM) and securesystemslib key ids.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rootfs::atomic::{AtomicFile, Replace};
use serde_json::json;

use super::Ui;

/// Make and inspect signing keys.
#[derive(Args, Debug)]
#[command(long_about = "Make and inspect ed25519 signing keys.\n\n\
        `key generate NAME` writes DIR/NAME.key, the private key as PKCS#8 PEM (mode 0600;\n\
        with --encrypt protected by a passphrase from WAFER_PASSPHRASE, --passphrase-file or a\n\
        prompt on the terminal, typed without echo), and\n\
        DIR/NAME.pub, the public key as SPKI PEM: put the .pub in the site trust store, keep\n\
        the .key to yourself. `openssl pkey` reads both. Key ids are python-securesystemslib's.\n\n\
        Examples:\n  \
        wafer key generate alice --dir ~/.wafer --encrypt\n  \
        wafer key id ~/.wafer/alice.pub\n  \
        openssl pkey -pubin -in ~/.wafer/alice.pub -noout -text")]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// `wafer key` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Generate a key pair NAME.key / NAME.pub.
    #[command(
        long_about = "Generate an ed25519 key pair: DIR/NAME.key (private, PKCS#8 PEM, mode 0600) and\n\
        DIR/NAME.pub (public, SPKI PEM). Existing files are never overwritten.\n\n\
        Examples:\n  wafer key generate alice\n  WAFER_PASSPHRASE=... wafer key generate alice --dir keys --encrypt"
    )]
    Generate {
        /// Base name of the two files.
        name: String,
        /// Where to write them.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Encrypt the private key with a passphrase (WAFER_PASSPHRASE, --passphrase-file, or
        /// asked twice on the terminal without echo).
        #[arg(long)]
        encrypt: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the key id of a public key (or of a private key's public half).
    #[command(
        long_about = "Print the securesystemslib key id (sha256 of the canonical JSON public key) of a\n\
        public key PEM, or of an unencrypted/encrypted private key PEM.\n\n\
        Example:\n  wafer key id keys/alice.pub"
    )]
    Id {
        /// The PEM file.
        key: PathBuf,
    },
}

/// Runs `wafer key`.
pub fn run(a: KeyArgs, ui: &Ui) -> Result<()> {
    match a.command {
        KeyCommand::Generate {
            name,
            dir,
            encrypt,
            json,
        } => {
            if name.is_empty()
                || name.len() > 64
                || name.starts_with('.')
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                bail!("key name {name:?}: use letters, digits, '.', '_' and '-' (at most 64, not starting with '.')");
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let kpath = dir.join(format!("{name}.key"));
            let ppath = dir.join(format!("{name}.pub"));
            for p in [&kpath, &ppath] {
                if p.exists() {
                    bail!("{} already exists; not overwriting a key", p.display());
                }
            }
            let pass = if encrypt {
                Some(passphrase(
                    &format!("passphrase for {}: ", kpath.display()),
                    true,
                )?)
            } else {
                None
            };
            let key = trust::key::PrivateKey::generate();
            let public = key.public();
            let pub_pem = public.to_pem().context("encoding the public key")?;
            let key_pem = key
                .to_pem(pass.as_ref().map(|p| p.as_bytes()))
                .context("encoding the private key")?;
            // Both written under temporary names (the private one 0600 from the start) and
            // renamed into place only when complete; an existing key is never replaced.
            let write = |p: &std::path::Path, mode: u32, pem: &str| -> Result<AtomicFile> {
                let mut f = AtomicFile::create_with_mode(p, Replace::No, mode)
                    .with_context(|| format!("writing {}", p.display()))?;
                f.write_all(pem.as_bytes())
                    .with_context(|| format!("writing {}", p.display()))?;
                Ok(f)
            };
            let kfile = write(&kpath, 0o600, &key_pem)?;
            let pfile = write(&ppath, 0o644, &pub_pem)?;
            kfile
                .commit()
                .with_context(|| format!("writing {}", kpath.display()))?;
            pfile
                .commit()
                .with_context(|| format!("writing {}", ppath.display()))?;
            if json {
                println!(
                    "{}",
                    json!({ "private": kpath, "public": ppath, "keyid": public.keyid(), "encrypted": encrypt })
                );
            } else if !ui.quiet {
                println!(
                    "private key {} ({})",
                    kpath.display(),
                    if encrypt {
                        "encrypted"
                    } else {
                        "not encrypted"
                    }
                );
                println!("public key  {}", ppath.display());
                println!("key id      {}", public.keyid());
            }
        }
        KeyCommand::Id { key } => {
            let pem = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let shown = key.display().to_string();
            let public = if pem.contains("BEGIN PUBLIC KEY") {
                trust::key::PublicKey::from_pem(&pem, &shown)
                    .with_context(|| format!("reading {shown}"))?
            } else if pem.contains("PRIVATE KEY") {
                load_private_key(&key)?.public()
            } else {
                bail!("{shown}: not a PEM public or private key");
            };
            println!("{}", public.keyid());
        }
    }
    Ok(())
}

/// The global `--passphrase-file`, set once by `main`.
static PASSPHRASE_FILE: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Largest passphrase file read (its first line is the passphrase).
const MAX_PASSPHRASE_FILE: u64 = 4096;

/// Records the global `--passphrase-file` option for [`read_passphrase`].
pub fn set_passphrase_file(path: Option<PathBuf>) {
    let _ = PASSPHRASE_FILE.set(path);
}

/// A passphrase for an encrypted key, from the first of: `WAFER_PASSPHRASE`; the file given
/// with `--passphrase-file` (its first line); the controlling terminal (`/dev/tty`), asked with
/// `prompt` and read with echo off, so what is typed never shows (twice when `confirm`).
///
/// Standard input is never read: a passphrase does not come silently from a pipe. Without a
/// terminal and without the variable or the option, the error says how to give one.
pub fn read_passphrase(prompt: &str, confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var("WAFER_PASSPHRASE") {
        if p.is_empty() {
            bail!("WAFER_PASSPHRASE is set but empty");
        }
        return Ok(p);
    }
    if let Some(Some(file)) = PASSPHRASE_FILE.get() {
        return passphrase_from_file(file);
    }
    let mut tty = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    {
        Ok(t) => t,
        Err(e) => {
            let what = prompt.trim_end().trim_end_matches(':');
            let what = what.strip_prefix("passphrase for ").unwrap_or(what);
            bail!(
                "{what}: a passphrase is needed and there is no terminal to ask it on ({e}): \
                 set WAFER_PASSPHRASE or give --passphrase-file FILE (standard input is never \
                 read)"
            )
        }
    };
    let p = ask_without_echo(&mut tty, prompt)?;
    if p.is_empty() {
        bail!("empty passphrase");
    }
    if confirm && ask_without_echo(&mut tty, "again: ")? != p {
        bail!("the passphrases differ");
    }
    Ok(p)
}

/// The first line of `path` (a regular file, or a pipe the operator named, e.g. `<(pass x)`).
fn passphrase_from_file(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("--passphrase-file {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_PASSPHRASE_FILE + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading --passphrase-file {}", path.display()))?;
    let line_end = buf.iter().position(|&b| b == b'\n');
    if line_end.is_none() && buf.len() as u64 > MAX_PASSPHRASE_FILE {
        bail!(
            "--passphrase-file {}: the first line is longer than {MAX_PASSPHRASE_FILE} bytes",
            path.display()
        );
    }
    let line = &buf[..line_end.unwrap_or(buf.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line)
        .map_err(|_| anyhow::anyhow!("--passphrase-file {}: not UTF-8", path.display()))?;
    if text.is_empty() {
        bail!(
            "--passphrase-file {}: the first line is empty",
            path.display()
        );
    }
    Ok(text.to_string())
}

/// The terminal's settings, put back when dropped (also when reading fails).
struct EchoOff {
    fd: std::os::fd::RawFd,
    saved: libc::termios,
}

impl EchoOff {
    /// Turns echo off on `tty` (the newline still echoes, so the cursor moves on).
    fn new(tty: &std::fs::File) -> std::io::Result<EchoOff> {
        use std::os::fd::AsRawFd;
        let fd = tty.as_raw_fd();
        // SAFETY: termios is plain data; tcgetattr fills it from a descriptor we own.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK);
        quiet.c_lflag |= libc::ECHONL | libc::ICANON;
        // SAFETY: as above; TCSAFLUSH also drops anything typed ahead before the prompt.
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restoring the settings read in `new` on the same, still open, descriptor.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

/// Writes `prompt` to the terminal and reads one line with echo off.
fn ask_without_echo(tty: &mut std::fs::File, prompt: &str) -> Result<String> {
    // echo off before the prompt shows: nothing typed after it can be echoed
    let _echo_off = EchoOff::new(tty).context("turning the terminal's echo off")?;
    tty.write_all(prompt.as_bytes())
        .and_then(|()| tty.flush())
        .context("writing the passphrase prompt to the terminal")?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match tty.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => {
                if line.len() as u64 >= MAX_PASSPHRASE_FILE {
                    bail!("the passphrase is longer than {MAX_PASSPHRASE_FILE} bytes");
                }
                line.push(byte[0]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading the passphrase from the terminal"),
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| anyhow::anyhow!("the passphrase typed is not UTF-8"))
}

/// Reads a private key, asking for the passphrase when the PEM is encrypted.
pub fn load_private_key(path: &Path) -> Result<trust::key::PrivateKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading private key {}", path.display()))?;
    if pem.contains("ENCRYPTED PRIVATE KEY") {
        let pass = passphrase(&format!("passphrase for {}: ", path.display()), false)?;
        trust::key::PrivateKey::from_pem(&pem, Some(pass.as_bytes()), &path.display().to_string())
            .with_context(|| format!("decrypting private key {}", path.display()))
    } else {
        trust::key::PrivateKey::from_pem(&pem, None, &path.display().to_string())
            .with_context(|| format!("reading private key {}", path.display()))
    }
}

/// A passphrase from `WAFER_PASSPHRASE`, `--passphrase-file`, or asked on the terminal without
/// echo ([`read_passphrase`]). `confirm` asks twice.
pub fn passphrase(prompt: &str, confirm: bool) -> Result<String> {
    read_passphrase(prompt, confirm)
}
