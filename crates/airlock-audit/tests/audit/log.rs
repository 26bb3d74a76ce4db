//! The log on disk: appends, proofs, group commit, crash recovery, tampering, bundles.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_audit::bundle::{self, verify_bundle};
use airlock_audit::entry::{AuditEntry, EntryActor, PayloadRef};
use airlock_audit::merkle::{reference_root, verify_consistency, verify_inclusion};
use airlock_audit::payload::{PayloadState, PayloadStore};
use airlock_audit::verify::{VerifyOptions, verify_dir};
use airlock_audit::{AuditError, AuditLog, Hash, LogOptions, SharedLog, SigningKey, leaf_hash};

const ORIGIN: &str = "airlock.test/log";

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("airlock-audit-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

fn key() -> SigningKey {
    // One fixed key per test run is enough; each test makes its own.
    SigningKey::generate(ORIGIN).unwrap()
}

fn options(key: &SigningKey) -> LogOptions {
    LogOptions::new(
        key.verifier(),
        Some(SigningKey::from_text(&key.to_text()).unwrap()),
    )
}

fn entry(i: u64, payloads: Vec<PayloadRef>) -> Vec<u8> {
    AuditEntry {
        v: 1,
        kind: if i.is_multiple_of(3) {
            "change.proposed"
        } else {
            "checks.step_finished"
        }
        .into(),
        time: format!("2026-11-24T10:{:02}:{:02}.000Z", (i / 60) % 60, i % 60),
        actor: EntryActor {
            kind: "agent".into(),
            name: format!("agent-{}", i % 7),
            token_id: Some(format!("tok_{i:026}")),
        },
        event_seq: i + 1,
        change_id: Some(format!("chg_{:026}", i / 10)),
        repository: Some("/srv/repo".into()),
        base_commit: Some(format!("{i:040x}")),
        result_commit: None,
        diff_sha256: Some(format!("{:064x}", i * 31)),
        files: vec![],
        approval: None,
        decision: None,
        policy_sha256: None,
        payloads,
        details: serde_json::json!({ "n": i }),
    }
    .encode()
    .unwrap()
}

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&entry(i, vec![]))).collect()
}

/// A log of `n` entries in batches of `batch`, with a checkpoint every `every` entries and
/// one at the end.
fn build(dir: &Path, key: &SigningKey, n: u64, batch: u64, every: u64, segment_bytes: u64) {
    let mut opts = options(key);
    opts.segment_bytes = segment_bytes;
    let (mut log, _) = AuditLog::open(dir, opts).unwrap();
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let entries: Vec<Vec<u8>> = (i..end).map(|j| entry(j, vec![])).collect();
        assert_eq!(log.append(&entries).unwrap(), i..end);
        if end / every != i / every {
            log.publish_checkpoint().unwrap();
        }
        i = end;
    }
    log.publish_checkpoint().unwrap();
}

#[test]
fn appends_prove_and_survive_a_reopen() {
    let dir = temp_dir();
    let key = key();
    // Small segments so that several are written and read back.
    build(dir.path(), &key, 3000, 77, 500, 64 << 10);
    assert!(
        std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .count()
            > 3
    );

    let (log, recovery) = AuditLog::open(dir.path(), options(&key)).unwrap();
    assert_eq!(recovery.entries, 3000);
    assert_eq!(recovery.truncated_bytes, 0);
    let hashes = leaves(3000);
    for size in [1, 2, 255, 256, 257, 1000, 2047, 2048, 2049, 3000] {
        let root = reference_root(&hashes[..size as usize]);
        assert_eq!(log.root_at(size).unwrap(), root, "size {size}");
        for index in [0, size / 2, size - 1] {
            let proof = log.inclusion_proof(index, size).unwrap();
            verify_inclusion(index, size, &hashes[index as usize].0, &proof, &root.0)
                .unwrap_or_else(|e| panic!("index {index} size {size}: {e}"));
        }
        if size > 1 {
            let old = size / 3 + 1;
            let proof = log.consistency_proof(old, size).unwrap();
            let old_root = reference_root(&hashes[..old as usize]);
            verify_consistency(old, size, &proof, &old_root.0, &root.0).unwrap();
        }
    }
    // Proof size is 32·⌈log₂ n⌉ bytes at most.
    assert!(log.inclusion_proof(1234, 3000).unwrap().len() <= 12);
    assert_eq!(log.entry(2999).unwrap(), entry(2999, vec![]));
    assert_eq!(
        log.read(250, 10)
            .unwrap()
            .iter()
            .map(|(i, _)| *i)
            .collect::<Vec<_>>(),
        (250..260).collect::<Vec<_>>()
    );
    assert!(matches!(log.entry(3000), Err(AuditError::Refused(_))));
    assert!(matches!(
        log.inclusion_proof(5, 3001),
        Err(AuditError::Refused(_))
    ));

    // One writer at a time.
    assert!(matches!(
        AuditLog::open(dir.path(), options(&key)),
        Err(AuditError::Locked(_))
    ));
    drop(log);
    let report = verify_dir(
        dir.path(),
        &key.verifier(),
        &[],
        VerifyOptions { deep: true },
    )
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problem);
    assert_eq!(report.entries, 3000);
    // Six in the history (every 500 entries, the last at 3000) and the latest file.
    assert_eq!(report.checkpoints_matched, 7);
}

#[test]
fn bad_entries_are_refused_and_write_nothing() {
    let dir = temp_dir();
    let key = key();
    let (mut log, _) = AuditLog::open(dir.path(), options(&key)).unwrap();
    log.append(&[entry(0, vec![])]).unwrap();
    let too_big = vec![b'x'; (1 << 20) + 1];
    for batch in [
        vec![entry(1, vec![]), Vec::new()],
        vec![entry(1, vec![]), too_big],
    ] {
        let error = log.append(&batch).unwrap_err();
        assert!(matches!(error, AuditError::Refused(_)), "{error}");
        assert_eq!(log.len(), 1);
    }
    let size = std::fs::metadata(dir.path().join("segments").join(format!("{:020}.seg", 0)))
        .unwrap()
        .len();
    assert_eq!(
        size,
        16 + 8 + entry(0, vec![]).len() as u64,
        "nothing of the refused batches on disk"
    );
}

#[test]
fn concurrent_appends_share_fsyncs_and_get_dense_indices() {
    let dir = temp_dir();
    let key = key();
    let (log, _) = AuditLog::open(dir.path(), options(&key)).unwrap();
    let shared = Arc::new(SharedLog::new(log));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| shared.append(vec![entry(t * 1000 + i, vec![])]).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut indices: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .map(|r| {
            assert_eq!(r.end - r.start, 1);
            r.start
        })
        .collect();
    indices.sort();
    assert_eq!(indices, (0..1600).collect::<Vec<_>>());
    let batches = shared.with(|log| log.batches_written());
    println!("1600 appends from 8 threads: {batches} durable batches");
    assert!(batches < 1600, "no two appends shared a sync");
    // A bad request fails alone.
    assert!(shared.append(vec![Vec::new()]).is_err());
    assert_eq!(shared.append(vec![entry(5, vec![])]).unwrap(), 1600..1601);
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

#[test]
fn a_torn_tail_is_cut_after_a_crash_but_never_below_a_checkpoint() {
    let dir = temp_dir();
    let key = key();
    build(dir.path(), &key, 100, 10, 1000, 64 << 20);
    {
        let (mut log, _) = AuditLog::open(dir.path(), options(&key)).unwrap();
        log.append(&[entry(100, vec![]), entry(101, vec![])])
            .unwrap();
    }
    // A crash in the middle of writing entry 102: its frame is only half there.
    let segment = last_segment(dir.path());
    let mut frame = Vec::new();
    airlock_audit::segment::push_frame(&mut frame, 102, &entry(102, vec![]));
    let before = std::fs::metadata(&segment).unwrap().len();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(&frame[..frame.len() / 2]);
    std::fs::write(&segment, &bytes).unwrap();

    let (mut log, recovery) = AuditLog::open(dir.path(), options(&key)).unwrap();
    assert_eq!(recovery.entries, 102);
    assert_eq!(recovery.truncated_bytes, (frame.len() / 2) as u64);
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), before);
    assert_eq!(log.append(&[entry(102, vec![])]).unwrap(), 102..103);
    log.publish_checkpoint().unwrap();
    drop(log);

    // Cutting into entries a checkpoint covers is damage, not a torn write: refused, named.
    let bytes = std::fs::read(&segment).unwrap();
    std::fs::write(&segment, &bytes[..bytes.len() - 5]).unwrap();
    match AuditLog::open(dir.path(), options(&key)) {
        Err(AuditError::Damaged { index, what }) => {
            assert_eq!(index, 102, "{what}");
        }
        other => panic!("expected damage at 102, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&segment).unwrap().len(),
        bytes.len() - 5,
        "nothing cut"
    );
}

/// Frame positions (offset, total length) in a segment file.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 16;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, 8 + len));
        at += 8 + len;
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn every_tampering_of_a_10000_entry_log_is_detected_and_named() {
    let pristine = temp_dir();
    let key = key();
    // One segment, checkpoints every 1000 entries.
    build(pristine.path(), &key, 10_000, 100, 1000, 1 << 30);
    let clean = verify_dir(
        pristine.path(),
        &key.verifier(),
        &[],
        VerifyOptions::default(),
    )
    .unwrap();
    assert!(clean.is_ok(), "{:?}", clean.problem);
    assert_eq!(clean.entries, 10_000);

    let segment_name = last_segment(pristine.path())
        .file_name()
        .unwrap()
        .to_owned();
    type Mutation = Box<dyn Fn(&Path)>;
    let segment_of = move |dir: &Path| dir.join("segments").join(&segment_name);
    let other_key = SigningKey::generate(ORIGIN).unwrap();
    let forged_root_note = airlock_audit::Checkpoint {
        origin: ORIGIN.into(),
        size: 10_000,
        root: leaf_hash(b"forged"),
    }
    .sign(&other_key)
    .unwrap();

    // (name, mutation, the index verify must name; None: a checkpoint problem)
    let seg = segment_of.clone();
    let mutations: Vec<(&str, Mutation, Option<u64>)> = vec![
        (
            "flip a byte in entry 4321",
            Box::new({
                let seg = seg.clone();
                move |dir: &Path| {
                    let mut bytes = std::fs::read(seg(dir)).unwrap();
                    let (at, len) = frames(&bytes)[4321];
                    bytes[at + len / 2] ^= 0x20;
                    std::fs::write(seg(dir), bytes).unwrap();
                }
            }),
            Some(4321),
        ),
        (
            "delete entry 777",
            Box::new({
                let seg = seg.clone();
                move |dir: &Path| {
                    let mut bytes = std::fs::read(seg(dir)).unwrap();
                    let (at, len) = frames(&bytes)[777];
                    bytes.drain(at..at + len);
                    std::fs::write(seg(dir), bytes).unwrap();
                }
            }),
            Some(777),
        ),
        (
            "swap entries 5000 and 5001",
            Box::new({
                let seg = seg.clone();
                move |dir: &Path| {
                    let bytes = std::fs::read(seg(dir)).unwrap();
                    let f = frames(&bytes);
                    let (a, alen) = f[5000];
                    let (b, blen) = f[5001];
                    let mut out = bytes[..a].to_vec();
                    out.extend_from_slice(&bytes[b..b + blen]);
                    out.extend_from_slice(&bytes[a..a + alen]);
                    out.extend_from_slice(&bytes[b + blen..]);
                    std::fs::write(seg(dir), out).unwrap();
                }
            }),
            Some(5000),
        ),
        (
            "truncate the last 250 entries",
            Box::new({
                let seg = seg.clone();
                move |dir: &Path| {
                    let bytes = std::fs::read(seg(dir)).unwrap();
                    let (at, _) = frames(&bytes)[9750];
                    std::fs::write(seg(dir), &bytes[..at]).unwrap();
                }
            }),
            Some(9750),
        ),
        (
            "truncate inside the last entry",
            Box::new({
                let seg = seg.clone();
                move |dir: &Path| {
                    let bytes = std::fs::read(seg(dir)).unwrap();
                    std::fs::write(seg(dir), &bytes[..bytes.len() - 3]).unwrap();
                }
            }),
            Some(9999),
        ),
        (
            "rewrite entry 6543 and recompute its checksum",
            Box::new({
                let seg = seg.clone();
                move |dir: &Path| {
                    let bytes = std::fs::read(seg(dir)).unwrap();
                    let (at, len) = frames(&bytes)[6543];
                    let mut forged = bytes[at + 8..at + len].to_vec();
                    let pos = forged.iter().position(|b| *b == b'a').unwrap();
                    forged[pos] = b'b';
                    let mut out = bytes[..at].to_vec();
                    airlock_audit::segment::push_frame(&mut out, 6543, &forged);
                    out.extend_from_slice(&bytes[at + len..]);
                    std::fs::write(seg(dir), out).unwrap();
                }
            }),
            Some(6000),
        ),
        (
            "replace the checkpoint with one for another root",
            Box::new({
                let note = forged_root_note.clone();
                move |dir: &Path| {
                    std::fs::write(dir.join("checkpoint"), &note).unwrap();
                }
            }),
            None,
        ),
        (
            "edit the size in the latest checkpoint",
            Box::new(|dir: &Path| {
                let note = std::fs::read_to_string(dir.join("checkpoint")).unwrap();
                std::fs::write(
                    dir.join("checkpoint"),
                    note.replacen("\n10000\n", "\n9999\n", 1),
                )
                .unwrap();
            }),
            None,
        ),
        (
            "rewrite entry 3 and re-sign every checkpoint with another key",
            Box::new({
                let seg = seg.clone();
                move |dir: &Path| {
                    let bytes = std::fs::read(seg(dir)).unwrap();
                    let (at, len) = frames(&bytes)[3];
                    let mut forged = bytes[at + 8..at + len].to_vec();
                    let pos = forged.iter().position(|b| *b == b'7').unwrap_or(10);
                    forged[pos] = b'8';
                    let mut out = bytes[..at].to_vec();
                    airlock_audit::segment::push_frame(&mut out, 3, &forged);
                    out.extend_from_slice(&bytes[at + len..]);
                    std::fs::write(seg(dir), out).unwrap();
                    // The forger rebuilds the history with their own key.
                    std::fs::remove_file(dir.join("checkpoints.log")).unwrap();
                    std::fs::remove_file(dir.join("checkpoint")).unwrap();
                    let forger = SigningKey::generate(ORIGIN).unwrap();
                    let (mut log, _) =
                        AuditLog::open(dir, LogOptions::new(forger.verifier(), Some(forger)))
                            .unwrap();
                    log.publish_checkpoint().unwrap();
                }
            }),
            None,
        ),
    ];

    let mut detected = 0;
    for (name, mutate, want_index) in &mutations {
        let dir = temp_dir();
        copy_dir(pristine.path(), dir.path());
        mutate(dir.path());
        let report =
            verify_dir(dir.path(), &key.verifier(), &[], VerifyOptions::default()).unwrap();
        let problem = report
            .problem
            .unwrap_or_else(|| panic!("not detected: {name}"));
        assert_eq!(problem.index, *want_index, "{name}: {problem}");
        if want_index.is_none() {
            assert!(problem.what.contains("checkpoint"), "{name}: {problem}");
        }
        println!("detected: {name} -> {problem}");
        detected += 1;
    }
    println!(
        "tampering: {} mutations tried, {detected} detected, each with its index",
        mutations.len()
    );
    assert_eq!(detected, mutations.len());

    // An auditor who kept checkpoint #2 (size 3000) can still localise the forged rewrite
    // of entry 3 even when every checkpoint in the log was re-signed by another key.
    let history = std::fs::read(pristine.path().join("checkpoints.log")).unwrap();
    let kept = {
        let f = frames(&history);
        let (at, len) = f[2];
        String::from_utf8(history[at + 8..at + len].to_vec()).unwrap()
    };
    let dir = temp_dir();
    copy_dir(pristine.path(), dir.path());
    (mutations[8].1)(dir.path());
    std::fs::remove_file(dir.path().join("checkpoints.log")).unwrap();
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let report = verify_dir(
        dir.path(),
        &key.verifier(),
        &[("the kept checkpoint".into(), kept)],
        VerifyOptions::default(),
    )
    .unwrap();
    let problem = report
        .problem
        .expect("forgery found with the kept checkpoint");
    assert_eq!(problem.index, Some(0), "{problem}");
    assert!(problem.what.contains("the kept checkpoint"), "{problem}");
}

#[test]
fn bundles_verify_offline_and_payloads_can_be_purged() {
    let dir = temp_dir();
    let key = key();
    let payloads = PayloadStore::new(&dir.path().join("payloads"));
    let output = payloads
        .put("output", b"test output with a secret: hunter2")
        .unwrap();
    let (mut log, _) = AuditLog::open(dir.path(), options(&key)).unwrap();
    let entries: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            entry(
                i,
                if i == 21 {
                    vec![output.clone()]
                } else {
                    vec![]
                },
            )
        })
        .collect();
    log.append(&entries).unwrap();
    log.publish_checkpoint().unwrap();

    let bundle = bundle::export(&log, &payloads, &[20, 21, 22]).unwrap();
    let text = serde_json::to_vec_pretty(&bundle).unwrap();
    let report = verify_bundle(&text, Some(&key.verifier())).unwrap();
    assert_eq!(
        (
            report.entries,
            report.payloads_present,
            report.payloads_purged
        ),
        (3, 1, 0)
    );
    assert!(report.key_pinned);

    // An edited entry, a wrong key, an altered payload: refused, and said why.
    let mut edited = bundle.clone();
    edited.entries[1].entry["actor"]["name"] = "someone-else".into();
    let error = verify_bundle(&serde_json::to_vec(&edited).unwrap(), None).unwrap_err();
    assert!(error.to_string().contains("entry 21"), "{error}");
    let other = SigningKey::generate(ORIGIN).unwrap().verifier();
    assert!(verify_bundle(&text, Some(&other)).is_err());
    let mut altered = bundle.clone();
    altered.payloads[0].salted_content = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut raw = engine.decode(&altered.payloads[0].salted_content).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        engine.encode(raw)
    };
    assert!(verify_bundle(&serde_json::to_vec(&altered).unwrap(), None).is_err());
    assert!(verify_bundle(b"{\"format\":\"something else\"}", None).is_err());

    // Retention purges the payload; the tree and the bundle stay valid.
    assert!(payloads.purge(&output).unwrap());
    assert_eq!(payloads.get(&output), PayloadState::Purged);
    let bundle = bundle::export(&log, &payloads, &[21]).unwrap();
    let report =
        verify_bundle(&serde_json::to_vec(&bundle).unwrap(), Some(&key.verifier())).unwrap();
    assert_eq!((report.payloads_present, report.payloads_purged), (0, 1));
    drop(log);
    assert!(
        verify_dir(
            dir.path(),
            &key.verifier(),
            &[],
            VerifyOptions { deep: true }
        )
        .unwrap()
        .is_ok()
    );
}
