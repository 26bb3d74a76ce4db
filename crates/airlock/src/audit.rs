//! `airlock audit`: verify the log, show entries, prove inclusion and consistency, export
//! and check offline evidence bundles, print the public key, publish a checkpoint.
//! Everything but `checkpoint` reads the files only, beside a running server or without one.

use std::path::{Path, PathBuf};

use airlock_audit::bundle;
use airlock_audit::entry::AuditEntry;
use airlock_audit::payload::{PayloadStore, Select};
use airlock_audit::verify::{VerifyOptions, verify_dir};
use airlock_audit::{AuditError, AuditLog, LogOptions, VerifierKey, leaf_hash};
use anyhow::{Context, bail};

use crate::Outcome;
use crate::cli::AuditCommand;
use crate::client::Client;

pub fn run(cwd: &Path, command: AuditCommand) -> anyhow::Result<Outcome> {
    let dir = || -> anyhow::Result<PathBuf> {
        let repo = airlock_git::Repo::open(cwd)?;
        Ok(airlock_server::audit::audit_dir(
            &airlock_server::state_dir(repo.root()),
        ))
    };
    match command {
        AuditCommand::Verify {
            key,
            from_checkpoint,
            deep,
            json,
        } => verify(&dir()?, key.as_deref(), &from_checkpoint, deep, json),
        AuditCommand::Show {
            from,
            limit,
            change,
            json,
        } => show(&dir()?, from, limit, change.as_deref(), json),
        AuditCommand::Prove { index, size, json } => prove(&dir()?, index, size, json),
        AuditCommand::Consistency { old, new, json } => consistency(&dir()?, old, new, json),
        AuditCommand::Export { change, out } => export(&dir()?, &change, out.as_deref()),
        AuditCommand::VerifyBundle { file, key, json } => {
            verify_bundle(&file, key.as_deref(), json)
        }
        AuditCommand::Purge {
            older_than,
            change,
            dry_run,
            json,
        } => purge(
            cwd,
            &dir()?,
            older_than.as_deref(),
            change.as_deref(),
            dry_run,
            json,
        ),
        AuditCommand::Key => {
            println!("{}", verifier(&dir()?, None)?.to_text());
            Ok(Outcome::Success)
        }
        AuditCommand::Checkpoint { client, json } => checkpoint(cwd, &dir()?, &client, json),
    }
}

/// The key to verify with: the given file, or the log's own `verifier.key` (which proves
/// only that the log agrees with the key stored beside it: keep a copy elsewhere).
fn verifier(dir: &Path, key: Option<&Path>) -> anyhow::Result<VerifierKey> {
    let path = key
        .map(Path::to_path_buf)
        .unwrap_or_else(|| airlock_audit::keys::verifier_key_path(dir));
    airlock_audit::keys::load_verifier_file(&path)
        .with_context(|| format!("cannot load the audit verifier key {}", path.display()))
}

fn open(dir: &Path) -> anyhow::Result<AuditLog> {
    let (log, _) = AuditLog::open(dir, LogOptions::read_only(verifier(dir, None)?))
        .with_context(|| format!("cannot open the audit log in {}", dir.display()))?;
    Ok(log)
}

fn verify(
    dir: &Path,
    key: Option<&Path>,
    anchors: &[PathBuf],
    deep: bool,
    json: bool,
) -> anyhow::Result<Outcome> {
    let verifier = verifier(dir, key)?;
    let mut extra = Vec::new();
    for path in anchors {
        let note = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        extra.push((path.display().to_string(), note));
    }
    let started = std::time::Instant::now();
    let report = verify_dir(dir, &verifier, &extra, VerifyOptions { deep })?;
    let seconds = started.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": report.is_ok(),
                "entries": report.entries,
                "checkpoints_matched": report.checkpoints_matched,
                "latest_checkpoint": report.latest.as_ref().map(|c| serde_json::json!({
                    "origin": c.origin, "size": c.size, "root": c.root.to_base64(),
                })),
                "torn_tail_bytes": report.torn_tail_bytes,
                "problem": report.problem.as_ref().map(|p| serde_json::json!({ "index": p.index, "what": p.what })),
                "key": verifier.to_text(),
            })
        );
    } else {
        match &report.problem {
            None => println!(
                "ok: {} entries, {} signed checkpoints match (latest: size {}), key {} ({seconds:.2} s)",
                report.entries,
                report.checkpoints_matched,
                report.latest.as_ref().map_or(0, |c| c.size),
                verifier.name(),
            ),
            Some(problem) => println!("TAMPERED or damaged: {problem}"),
        }
        if report.torn_tail_bytes > 0 {
            println!(
                "note: {} bytes of an unfinished write at the end (a crash); the next start cuts them off",
                report.torn_tail_bytes
            );
        }
        if let Some(latest) = &report.latest
            && report.entries > latest.size
            && report.is_ok()
        {
            println!(
                "note: entries {}..{} are newer than the latest checkpoint",
                latest.size, report.entries
            );
        }
    }
    Ok(if report.is_ok() {
        Outcome::Success
    } else {
        Outcome::Rejected
    })
}

fn show(
    dir: &Path,
    from: u64,
    limit: usize,
    change: Option<&str>,
    json: bool,
) -> anyhow::Result<Outcome> {
    let log = open(dir)?;
    let mut shown = 0;
    let mut at = from;
    while shown < limit && at < log.len() {
        let batch = log.read(at, 1000)?;
        let Some((last, _)) = batch.last() else { break };
        at = last + 1;
        for (index, bytes) in batch {
            let entry = AuditEntry::decode(&bytes).with_context(|| format!("entry {index}"))?;
            if change.is_some_and(|c| entry.change_id.as_deref() != Some(c)) {
                continue;
            }
            if json {
                let value: serde_json::Value = serde_json::from_slice(&bytes)?;
                println!(
                    "{}",
                    serde_json::json!({ "index": index, "leaf_hash": leaf_hash(&bytes).to_hex(), "entry": value })
                );
            } else {
                let decision = entry
                    .decision
                    .as_ref()
                    .map(|d| format!(" -> {}", d.outcome))
                    .unwrap_or_default();
                println!(
                    "{index:>8}  {}  {:<22} {}:{}  {}{decision}",
                    entry.time,
                    entry.kind,
                    entry.actor.kind,
                    entry.actor.name,
                    entry.change_id.as_deref().unwrap_or("-"),
                );
            }
            shown += 1;
            if shown >= limit {
                break;
            }
        }
    }
    Ok(Outcome::Success)
}

fn purge(
    cwd: &Path,
    dir: &Path,
    older_than: Option<&str>,
    change: Option<&str>,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<Outcome> {
    if older_than.is_none() && change.is_none() {
        bail!(
            "say which payloads to purge: --older-than AGE (for example 90d), --change ID, or both"
        );
    }
    let cutoff = older_than
        .map(|age| {
            let age = airlock_core::units::parse_duration(age)
                .map_err(|e| anyhow::anyhow!("--older-than {age:?}: {e}"))?;
            let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            Ok::<_, anyhow::Error>(airlock_server::audit::rfc3339(
                airlock_server::now_ms().saturating_sub(age_ms),
            ))
        })
        .transpose()?;
    let log = open(dir)?;
    let payloads = PayloadStore::new(&airlock_server::audit::payload_dir(dir));
    // Entry times are fixed-width RFC 3339 in UTC, so text order is time order.
    let select = |entry: &AuditEntry| {
        if cutoff.as_ref().is_none_or(|cutoff| entry.time < *cutoff)
            && change.is_none_or(|c| entry.change_id.as_deref() == Some(c))
        {
            Select::Purge
        } else {
            Select::Keep
        }
    };
    let (purged, _) = airlock_audit::payload::purge_selected(&log, &payloads, 0, select, dry_run)?;
    if !dry_run && purged.payloads > 0 {
        crate::commands::record_audit_purge(
            cwd,
            serde_json::json!({
                "older_than": older_than,
                "before": cutoff,
                "change": change,
                "entries": purged.entries,
                "payloads": purged.payloads,
                "bytes": purged.bytes,
            }),
        )?;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "dry_run": dry_run,
                "entries": purged.entries,
                "payloads": purged.payloads,
                "bytes": purged.bytes,
                "already_purged": purged.already_purged,
            })
        );
    } else {
        println!(
            "{} {} payloads ({} bytes) of {} entries; {} were already purged",
            if dry_run { "would purge" } else { "purged" },
            purged.payloads,
            purged.bytes,
            purged.entries,
            purged.already_purged
        );
    }
    Ok(Outcome::Success)
}

fn prove(dir: &Path, index: u64, size: Option<u64>, json: bool) -> anyhow::Result<Outcome> {
    let log = open(dir)?;
    let size = match size {
        Some(size) => size,
        None => log
            .latest_checkpoint()
            .map(|c| c.checkpoint.size)
            .context("the log has no signed checkpoint yet; pass --size")?,
    };
    let entry = log.entry(index)?;
    let leaf = leaf_hash(&entry);
    let proof = log.inclusion_proof(index, size)?;
    let root = log.root_at(size)?;
    airlock_audit::merkle::verify_inclusion(index, size, &leaf.0, &proof, &root.0)
        .context("the proof does not verify against the log's own root")?;
    let proof: Vec<String> = proof.iter().map(|h| h.to_base64()).collect();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "index": index, "size": size, "leaf_hash": leaf.to_base64(), "root": root.to_base64(),
                "proof": proof, "checkpoint": log.latest_checkpoint().filter(|c| c.checkpoint.size == size).map(|c| c.note.clone()),
            })
        );
    } else {
        println!("entry {index} is in the tree of size {size}");
        println!("leaf hash {}", leaf.to_base64());
        println!("root      {}", root.to_base64());
        println!(
            "proof ({} hashes, {} bytes):",
            proof.len(),
            proof.len() * 32
        );
        for hash in &proof {
            println!("  {hash}");
        }
    }
    Ok(Outcome::Success)
}

fn consistency(dir: &Path, old: u64, new: u64, json: bool) -> anyhow::Result<Outcome> {
    let log = open(dir)?;
    let proof = log.consistency_proof(old, new)?;
    let (old_root, new_root) = (log.root_at(old)?, log.root_at(new)?);
    airlock_audit::merkle::verify_consistency(old, new, &proof, &old_root.0, &new_root.0)
        .context("the proof does not verify against the log's own roots")?;
    let proof: Vec<String> = proof.iter().map(|h| h.to_base64()).collect();
    if json {
        println!(
            "{}",
            serde_json::json!({ "old": old, "new": new, "old_root": old_root.to_base64(), "new_root": new_root.to_base64(), "proof": proof })
        );
    } else {
        println!("the tree of size {old} is a prefix of the tree of size {new}");
        println!("old root {}", old_root.to_base64());
        println!("new root {}", new_root.to_base64());
        println!("proof ({} hashes):", proof.len());
        for hash in &proof {
            println!("  {hash}");
        }
    }
    Ok(Outcome::Success)
}

fn export(dir: &Path, change: &str, out: Option<&Path>) -> anyhow::Result<Outcome> {
    let log = open(dir)?;
    let covered = log.latest_checkpoint().map_or(0, |c| c.checkpoint.size);
    let mut indices = Vec::new();
    let mut at = 0;
    while at < log.len() {
        let batch = log.read(at, 4096)?;
        let Some((last, _)) = batch.last() else { break };
        at = last + 1;
        for (index, bytes) in batch {
            let entry = AuditEntry::decode(&bytes).with_context(|| format!("entry {index}"))?;
            if entry.change_id.as_deref() == Some(change) {
                indices.push(index);
            }
        }
    }
    if indices.is_empty() {
        bail!("no audit entry mentions change {change}");
    }
    if let Some(newest) = indices.iter().find(|i| **i >= covered) {
        bail!(
            "entry {newest} of {change} is newer than the latest signed checkpoint (size {covered}); wait for the next one or run `airlock audit checkpoint`"
        );
    }
    let bundle = bundle::export(
        &log,
        &PayloadStore::new(&airlock_server::audit::payload_dir(dir)),
        &indices,
    )?;
    let text = serde_json::to_string_pretty(&bundle)? + "\n";
    match out {
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} ({} entries of {change})",
                path.display(),
                indices.len()
            );
        }
        None => print!("{text}"),
    }
    Ok(Outcome::Success)
}

fn verify_bundle(file: &Path, key: Option<&Path>, json: bool) -> anyhow::Result<Outcome> {
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let pinned = key
        .map(|path| {
            airlock_audit::keys::load_verifier_file(path)
                .with_context(|| format!("cannot load {}", path.display()))
        })
        .transpose()?;
    let result = bundle::verify_bundle(&text, pinned.as_ref());
    if json {
        println!(
            "{}",
            match &result {
                Ok(report) => serde_json::json!({
                    "ok": true, "entries": report.entries, "tree_size": report.checkpoint.size,
                    "root": report.checkpoint.root.to_base64(), "origin": report.checkpoint.origin,
                    "payloads_present": report.payloads_present, "payloads_purged": report.payloads_purged,
                    "key_pinned": report.key_pinned,
                }),
                Err(error) => serde_json::json!({ "ok": false, "problem": error.to_string() }),
            }
        );
    } else {
        match &result {
            Ok(report) => {
                println!(
                    "ok: {} entries proven in {} at size {}; {} payloads match, {} purged",
                    report.entries,
                    report.checkpoint.origin,
                    report.checkpoint.size,
                    report.payloads_present,
                    report.payloads_purged
                );
                if !report.key_pinned {
                    println!(
                        "note: checked with the key inside the bundle; pass --key with a copy kept elsewhere to pin it"
                    );
                }
            }
            Err(error) => println!("INVALID: {error}"),
        }
    }
    Ok(if result.is_ok() {
        Outcome::Success
    } else {
        Outcome::Rejected
    })
}

/// Publishes a checkpoint: directly when no server holds the log, else through the API.
fn checkpoint(
    cwd: &Path,
    dir: &Path,
    client: &crate::cli::ClientArgs,
    json: bool,
) -> anyhow::Result<Outcome> {
    let repo = airlock_git::Repo::open(cwd)?;
    let signed =
        match airlock_server::audit::open_log(&airlock_server::state_dir(repo.root()), repo.root())
        {
            Ok((mut log, _, _)) => log.publish_checkpoint()?,
            Err(AuditError::Locked(_)) => {
                let answer: serde_json::Value =
                    Client::new(&client.server, client.token.as_deref())?
                        .post("/v1/audit/checkpoint", &serde_json::json!({}))?;
                let note = answer["note"]
                    .as_str()
                    .context("the server's answer has no note")?;
                let checkpoint = airlock_audit::Checkpoint::open(note, &verifier(dir, None)?)?;
                airlock_audit::SignedCheckpoint {
                    checkpoint,
                    note: note.to_owned(),
                }
            }
            Err(error) => return Err(error.into()),
        };
    if json {
        println!(
            "{}",
            serde_json::json!({ "origin": signed.checkpoint.origin, "size": signed.checkpoint.size, "root": signed.checkpoint.root.to_base64(), "note": signed.note })
        );
    } else {
        print!("{}", signed.note);
    }
    Ok(Outcome::Success)
}
