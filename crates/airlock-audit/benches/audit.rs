//! Audit log figures against their peers, from one run on this machine:
//! durable appends per second (airlock's group commit; SQLite inserting one row per entry
//! with `synchronous=FULL` in WAL mode; the floor, a plain file with one `fdatasync` per
//! 1 000 entries), whole-log verification speed beside the machine's SHA-256 speed, and
//! inclusion proof size and verification time.
//!
//! `cargo bench -p airlock-audit --bench audit` (`AIRLOCK_BENCH_QUICK=1` for a short run).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_audit::entry::{AuditEntry, EntryActor};
use airlock_audit::merkle::verify_inclusion;
use airlock_audit::verify::{VerifyOptions, verify_dir};
use airlock_audit::{AuditLog, LogOptions, SharedLog, SigningKey, leaf_hash};

const ENTRY_BYTES: usize = 256;

/// A realistic entry padded to exactly 256 bytes of canonical JSON.
fn entry(i: u64) -> Vec<u8> {
    let make = |pad: usize| {
        AuditEntry {
            v: 1,
            kind: "checks.step_finished".into(),
            time: "2026-11-24T10:00:00.000Z".into(),
            actor: EntryActor {
                kind: "system".into(),
                name: "worker".into(),
                token_id: None,
            },
            event_seq: i,
            change_id: Some(format!("chg_{:026}", i / 8)),
            repository: None,
            base_commit: None,
            result_commit: None,
            diff_sha256: None,
            files: vec![],
            approval: None,
            decision: None,
            policy_sha256: None,
            payloads: vec![],
            details: serde_json::json!({ "step": "test", "pad": "x".repeat(pad) }),
        }
        .encode()
        .unwrap()
    };
    let base = make(0).len();
    let bytes = make(ENTRY_BYTES.saturating_sub(base));
    assert_eq!(bytes.len(), ENTRY_BYTES);
    bytes
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("airlock-audit-bench-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

fn open(dir: &Path) -> AuditLog {
    let key = SigningKey::generate("airlock.bench/log").unwrap();
    AuditLog::open(dir, LogOptions::new(key.verifier(), Some(key)))
        .unwrap()
        .0
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// airlock: `threads` producers, each appending `batch` entries per call, all sharing the
/// log; group commit merges whatever is waiting into one write and one sync.
fn airlock_appends(total: u64, threads: u64, batch: u64) -> (f64, u64) {
    let dir = temp_dir();
    let shared = Arc::new(SharedLog::new(open(dir.path())));
    let entries: Arc<Vec<Vec<u8>>> = Arc::new((0..batch).map(entry).collect());
    let per_thread = total / threads / batch;
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let shared = shared.clone();
            let entries = entries.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    shared.append(entries.to_vec()).unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let elapsed = started.elapsed();
    let written = per_thread * threads * batch;
    let batches = shared.with(|log| log.batches_written());
    (per_second(written, elapsed), batches)
}

/// The floor: frames appended to a plain file, one `fdatasync` per 1 000 entries, no
/// hashing, no index.
/// airlock with one writer that owns the log: the same work as the floor plus checksums,
/// leaf hashes and the tree index.
fn airlock_owned_appends(total: u64) -> (f64, u64) {
    let dir = temp_dir();
    let mut log = open(dir.path());
    let entries: Vec<Vec<u8>> = (0..1000).map(entry).collect();
    let started = Instant::now();
    for _ in 0..total / 1000 {
        log.append(&entries).unwrap();
    }
    (
        per_second(total / 1000 * 1000, started.elapsed()),
        log.batches_written(),
    )
}

fn floor_appends(total: u64) -> f64 {
    let dir = temp_dir();
    let mut file = std::fs::File::create(dir.path().join("plain")).unwrap();
    let entry = entry(0);
    let mut buffer = Vec::new();
    let started = Instant::now();
    for _ in 0..total / 1000 {
        buffer.clear();
        for _ in 0..1000 {
            buffer.extend_from_slice(&(entry.len() as u32).to_le_bytes());
            buffer.extend_from_slice(&[0; 4]);
            buffer.extend_from_slice(&entry);
        }
        file.write_all(&buffer).unwrap();
        file.sync_data().unwrap();
    }
    per_second(total / 1000 * 1000, started.elapsed())
}

/// SQLite, the usual embedded choice: one row per entry, each its own transaction, WAL,
/// `synchronous=FULL` (what airlock's own store uses). Time-boxed: it is slow.
fn sqlite_appends(limit: Duration) -> (f64, u64) {
    let dir = temp_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
        use sqlx::{ConnectOptions, Connection};
        let mut connection = SqliteConnectOptions::new()
            .filename(dir.path().join("audit.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .connect()
            .await
            .unwrap();
        sqlx::query("CREATE TABLE entries (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL)")
            .execute(&mut connection)
            .await
            .unwrap();
        let entry = entry(0);
        let started = Instant::now();
        let mut count = 0u64;
        while started.elapsed() < limit {
            sqlx::query("INSERT INTO entries (idx, entry) VALUES (?, ?)")
                .bind(count as i64)
                .bind(&entry)
                .execute(&mut connection)
                .await
                .unwrap();
            count += 1;
        }
        let rate = per_second(count, started.elapsed());
        connection.close().await.unwrap();
        (rate, count)
    })
}

fn main() {
    let quick = std::env::var_os("AIRLOCK_BENCH_QUICK").is_some();
    let appends = if quick { 50_000 } else { 400_000 };
    let verify_entries: u64 = if quick { 200_000 } else { 1_000_000 };

    println!("audit log benchmark: entries of {ENTRY_BYTES} B, files in /var/tmp");
    println!();
    println!("durable appends (each acknowledged only after fdatasync)");
    let floor = floor_appends(appends);
    let (sqlite, sqlite_rows) = sqlite_appends(Duration::from_secs(if quick { 2 } else { 5 }));
    let (single, single_batches) = airlock_owned_appends(appends);
    let (grouped, grouped_batches) = airlock_appends(appends, 64, 16);
    let (singles, singles_batches) = airlock_appends(appends / 20, 64, 1);
    println!(
        "  {:<62} {:>12}  {:>10}",
        "writer", "entries/s", "vs SQLite"
    );
    let row =
        |name: &str, rate: f64| println!("  {name:<62} {rate:>12.0}  {:>9.0}×", rate / sqlite);
    row(
        &format!("SQLite, one row per entry, WAL, synchronous=FULL ({sqlite_rows} rows)"),
        sqlite,
    );
    row("floor: plain file, one fdatasync per 1 000 entries", floor);
    row(
        &format!("airlock, 1 writer, batches of 1 000 ({single_batches} syncs)"),
        single,
    );
    row(
        &format!("airlock, 64 writers, 16 entries each, group commit ({grouped_batches} syncs)"),
        grouped,
    );
    row(
        &format!("airlock, 64 writers, 1 entry each, group commit ({singles_batches} syncs)"),
        singles,
    );
    println!(
        "  airlock (batches of 1 000) / floor = {:.2} (target: ≥ 100 000 entries/s, aim ≥ 0.5 of the floor)",
        single / floor
    );

    println!();
    println!(
        "full verification ({verify_entries} entries, one core: frames, checksums, tree, signatures)"
    );
    let dir = temp_dir();
    let key = SigningKey::generate("airlock.bench/log").unwrap();
    {
        let (mut log, _) = AuditLog::open(
            dir.path(),
            LogOptions::new(
                key.verifier(),
                Some(SigningKey::from_text(&key.to_text()).unwrap()),
            ),
        )
        .unwrap();
        let batch: Vec<Vec<u8>> = (0..10_000).map(entry).collect();
        for i in 0..verify_entries / 10_000 {
            log.append(&batch).unwrap();
            if i % 10 == 9 {
                log.publish_checkpoint().unwrap();
            }
        }
        log.publish_checkpoint().unwrap();
    }
    // Warm the page cache so the figure is hashing, not the disk.
    let _ = verify_dir(dir.path(), &key.verifier(), &[], VerifyOptions::default()).unwrap();
    let started = Instant::now();
    let report = verify_dir(dir.path(), &key.verifier(), &[], VerifyOptions::default()).unwrap();
    let verify_rate = per_second(report.entries, started.elapsed());
    assert!(report.is_ok(), "{:?}", report.problem);
    assert_eq!(report.entries, verify_entries);
    let sample = entry(1);
    let started = Instant::now();
    let mut sink = 0u8;
    for _ in 0..verify_entries {
        sink ^= leaf_hash(std::hint::black_box(&sample)).0[0];
    }
    let sha_rate = per_second(verify_entries, started.elapsed());
    std::hint::black_box(sink);
    println!("  {:<62} {:>12}", "", "entries/s");
    println!(
        "  {:<62} {:>12.0}",
        "reference: SHA-256 of one 256 B entry, in memory", sha_rate
    );
    println!(
        "  {:<62} {:>12.0}",
        format!(
            "airlock audit verify ({} checkpoints matched)",
            report.checkpoints_matched
        ),
        verify_rate
    );
    println!(
        "  verify / SHA-256 reference = {:.2} (target: ≥ 2 000 000 entries/s)",
        verify_rate / sha_rate
    );

    println!();
    println!("inclusion proofs in a tree of {verify_entries} entries");
    let (log, _) = AuditLog::open(dir.path(), LogOptions::new(key.verifier(), None)).unwrap();
    let root = log.root().unwrap();
    let mut worst_bytes = 0;
    let mut proofs = Vec::new();
    let started = Instant::now();
    for i in 0..1000u64 {
        let index = (i * 7919) % verify_entries;
        let proof = log.inclusion_proof(index, verify_entries).unwrap();
        worst_bytes = worst_bytes.max(proof.len() * 32);
        proofs.push((index, leaf_hash(&entry(index % 10_000)), proof));
    }
    let generate = started.elapsed() / 1000;
    let started = Instant::now();
    for (index, leaf, proof) in &proofs {
        verify_inclusion(*index, verify_entries, &leaf.0, proof, &root.0).unwrap();
    }
    let verify = started.elapsed() / proofs.len() as u32;
    let bound = 32 * (64 - (verify_entries - 1).leading_zeros()) as usize;
    println!("  largest proof {worst_bytes} B (32·⌈log₂ n⌉ = {bound} B)");
    println!(
        "  generate {:.1} µs, verify {:.1} µs per proof (target: verify < 10 µs)",
        generate.as_secs_f64() * 1e6,
        verify.as_secs_f64() * 1e6
    );
}
