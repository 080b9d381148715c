//! `wafer key`: ed25519 key pairs (PKCS#8 / SPKI PEM) and securesystemslib key ids.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rootfs::atomic::{AtomicFile, Replace};
use serde_json::json;
use std::io::Write;

use super::build::passphrase;
use super::Ui;

/// Make and inspect signing keys.
#[derive(Args, Debug)]
#[command(long_about = "Make and inspect ed25519 signing keys.\n\n\
        `key generate NAME` writes DIR/NAME.key, the private key as PKCS#8 PEM (mode 0600;\n\
        with --encrypt protected by a passphrase from WAFER_PASSPHRASE or a prompt), and\n\
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
        /// Encrypt the private key with a passphrase (WAFER_PASSPHRASE or a prompt).
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
                super::build::load_private_key(&key)?.public()
            } else {
                bail!("{shown}: not a PEM public or private key");
            };
            println!("{}", public.keyid());
        }
    }
    Ok(())
}
