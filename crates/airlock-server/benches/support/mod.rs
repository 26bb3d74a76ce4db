//! What the server's benchmarks share: a scratch git repository and their settings.

use std::path::Path;
use std::process::Command;

pub fn git(dir: &Path, args: &[&str]) {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A repository of `files` small files in nested directories, one commit.
pub fn generate(root: &Path, files: usize) {
    std::fs::create_dir_all(root).unwrap();
    git(root, &["init", "-q"]);
    for i in 0..files {
        let path = root.join(format!("src/d{:03}/f{i}.txt", i % 200));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("file {i}\nline two\nline three\n")).unwrap();
    }
    std::fs::write(root.join(".gitignore"), ".airlock/\n").unwrap();
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "base"]);
}
