//! Every RFC 6962 proof vector in `shared/vectors/rfc6962`, unchanged: each `wantErr: false`
//! case must verify and each `wantErr: true` case must be rejected.

use std::path::{Path, PathBuf};

use airlock_audit::merkle::{verify_consistency, verify_inclusion};
use base64::Engine;

fn vectors_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/rfc6962")
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(json_files(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Base64 as the vectors write it; text that is not base64 cannot be a valid hash, so it
/// decodes to bytes no verifier accepts (the verifier then has to say no).
fn bytes(value: &serde_json::Value) -> Vec<u8> {
    let text = value.as_str().expect("a base64 string");
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|_| b"not base64".to_vec())
}

fn proof(value: &serde_json::Value) -> Vec<Vec<u8>> {
    value
        .as_array()
        .map(|a| a.iter().map(bytes).collect())
        .unwrap_or_default()
}

fn run(kind: &str, check: impl Fn(&serde_json::Value) -> Result<(), String>) -> (usize, usize) {
    let files = json_files(&vectors_root().join(kind));
    assert!(
        files.len() > 20,
        "too few {kind} vectors found: {}",
        files.len()
    );
    let (mut accepted, mut rejected) = (0, 0);
    let mut wrong = Vec::new();
    for file in &files {
        let case: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let want_err = case["wantErr"].as_bool().expect("wantErr");
        let result = check(&case);
        match (&result, want_err) {
            (Ok(()), false) => accepted += 1,
            (Err(_), true) => rejected += 1,
            _ => wrong.push(format!("{}: {result:?}", file.display())),
        }
    }
    assert!(
        wrong.is_empty(),
        "{kind} vectors decided wrongly:\n{}",
        wrong.join("\n")
    );
    println!(
        "{kind}: {} vectors, {accepted} accepted, {rejected} rejected",
        files.len()
    );
    (accepted, rejected)
}

#[test]
fn every_inclusion_vector_is_decided_as_published() {
    let (accepted, rejected) = run("inclusion", |case| {
        verify_inclusion(
            case["leafIdx"].as_u64().unwrap(),
            case["treeSize"].as_u64().unwrap(),
            &bytes(&case["leafHash"]),
            &proof(&case["proof"]),
            &bytes(&case["root"]),
        )
        .map_err(|e| e.to_string())
    });
    assert!(accepted > 0 && rejected > 0);
}

#[test]
fn every_consistency_vector_is_decided_as_published() {
    let (accepted, rejected) = run("consistency", |case| {
        verify_consistency(
            case["size1"].as_u64().unwrap(),
            case["size2"].as_u64().unwrap(),
            &proof(&case["proof"]),
            &bytes(&case["root1"]),
            &bytes(&case["root2"]),
        )
        .map_err(|e| e.to_string())
    });
    assert!(accepted > 0 && rejected > 0);
}
