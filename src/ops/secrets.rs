//! `euraflow secrets rotate-data-key`: replace the data key that encrypts stored third-party
//! credentials (the shops' Ozon Api-Keys, the exchange-rate provider's key), re-encrypting every
//! stored value in one transaction.
//!
//! The steps are ordered so that no crash loses a secret: (1) the key file gets the new key in
//! front of the old ones (both decrypt); (2) every value sealed with an older key is re-sealed
//! with the new one, all in one transaction; (3) only then does the file drop the old keys.
//! A crash before (2) commits leaves the old ciphertexts and both keys; after it, both keys still
//! decrypt everything. Running services read the key at start: restart them afterwards.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::{Config, write_private_file};
use crate::db::Database;
use crate::db::sql::Sql;
use crate::exit;
use crate::secrets::{EXCHANGE_RATE_KEY_CONTEXT, KeyRing, generate_key, ozon_api_key_context};

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Replace the data key and re-encrypt every stored credential with it (one transaction)
    RotateDataKey {
        /// The key file to rotate [default: /etc/euraflow/credentials/data_key; with --dev:
        /// <state dir>/data_key]
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
}

pub async fn run(config: &Config, dev: bool, cmd: SecretsCommand) -> ExitCode {
    match cmd {
        SecretsCommand::RotateDataKey { key_file } => {
            let path = key_file.unwrap_or_else(|| {
                if dev {
                    config.state_dir.join("data_key")
                } else {
                    Path::new(crate::config::PACKAGED_CREDENTIALS).join("data_key")
                }
            });
            match rotate(config, &path).await {
                Ok(n) => {
                    println!(
                        "the data key in {} is new; {n} stored credential(s) re-encrypted. Restart the services now so they read it: systemctl restart euraflow euraflow-worker",
                        path.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    exit::code(exit::FAILURE)
                }
            }
        }
    }
}

/// Write `text` to the key file, keeping its owner, group and mode (0640 root:euraflow in the
/// package).
fn write_key_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    write_private_file(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    let uid = rustix::fs::Uid::from_raw(meta.uid());
    let gid = rustix::fs::Gid::from_raw(meta.gid());
    if let Err(e) = rustix::fs::chown(path, Some(uid), Some(gid)) {
        tracing::warn!(error = %e, "could not keep the key file's owner");
    }
    rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(meta.mode() & 0o777))
        .with_context(|| format!("keeping the mode of {}", path.display()))?;
    Ok(())
}

/// Rotate; returns how many stored values were re-encrypted.
pub async fn rotate(config: &Config, path: &Path) -> anyhow::Result<usize> {
    let old_text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the data key file {}; fix: run as root, or give --key-file",
            path.display()
        )
    })?;
    let old_ring = KeyRing::parse(&old_text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let new_key = generate_key();
    let both = format!("{new_key}\n{}\n", old_text.trim());
    let ring = KeyRing::parse(&both).map_err(|e| anyhow::anyhow!("{e}"))?;
    if old_ring.ids().contains(&ring.current_id()) {
        bail!("the new key collides with an old one; run the rotation again");
    }
    // (1) Both keys in the file before anything is re-encrypted.
    write_key_file(path, &both)?;

    // (2) Re-encrypt every value not sealed with the new key, in one transaction.
    let db = Database::new(&config.db)?;
    let mut client = db.get().await?;
    let tx = client
        .transaction()
        .await
        .context("starting the transaction")?;
    let rows = tx
        .rows(
            "SELECT id, client_id, api_key_enc FROM ozon_shops ORDER BY id FOR UPDATE",
            &[],
        )
        .await?;
    let mut changed = 0;
    for r in &rows {
        let id: i64 = r.get(0);
        let client_id: String = r.get(1);
        let stored: String = r.get(2);
        if ring.is_current(&stored) {
            continue;
        }
        let context = ozon_api_key_context(&client_id);
        let plain = ring
            .open(&context, &stored)
            .map_err(|e| anyhow::anyhow!("the Api-Key of shop {id} cannot be decrypted: {e}"))?;
        let sealed = ring
            .seal(&context, &plain)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tx.exec(
            "UPDATE ozon_shops SET api_key_enc = $2 WHERE id = $1",
            &[&id, &sealed],
        )
        .await?;
        changed += 1;
    }
    // The exchange-rate provider's key (one row at most).
    let rows = tx
        .rows(
            "SELECT id, api_key FROM exchange_rate_config ORDER BY id FOR UPDATE",
            &[],
        )
        .await?;
    for r in &rows {
        let id: i32 = r.get(0);
        let stored: String = r.get(1);
        if ring.is_current(&stored) {
            continue;
        }
        let plain = ring
            .open(EXCHANGE_RATE_KEY_CONTEXT, &stored)
            .map_err(|e| anyhow::anyhow!("the exchange-rate API key cannot be decrypted: {e}"))?;
        let sealed = ring
            .seal(EXCHANGE_RATE_KEY_CONTEXT, &plain)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tx.exec(
            "UPDATE exchange_rate_config SET api_key = $2 WHERE id = $1",
            &[&id, &sealed],
        )
        .await?;
        changed += 1;
    }
    tx.commit().await.context("committing the re-encryption")?;
    drop(client);
    db.close();

    // (3) The old keys are no longer needed.
    write_key_file(path, &format!("{new_key}\n"))?;
    Ok(changed)
}
