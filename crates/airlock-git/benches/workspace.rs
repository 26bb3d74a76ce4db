//! How fast an isolated workspace is ready for a 1-file change in a 20 000-file repository,
//! warm, next to its peers measured in the same run: `git worktree add` + `git apply`, a
//! full copy + `git apply`, and the floor, `git apply` + `git apply -R` in a tree already
//! checked out. Also the same warm preparation on a 2 000-file repository, to show the cost
//! follows the change, not the repository.
//!
//! Run with `cargo bench -p airlock-git --bench workspace`. Set
//! `AIRLOCK_BENCH_ITERATIONS` to change the number of timed iterations (default 20). The
//! peers that take seconds per run stop early once they have used their time budget
//! (at least 5 runs); the table shows how many runs each row has.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use airlock_git::{CommitId, FileMode, FileWrite, Repo, WorkspacePool};

/// The file every measured change rewrites, and its content at the base.
const CHANGED_PATH: &str = "src/d00/s00/f00000.txt";
/// How many files differ between the two bases used to measure a move.
const FILES_CHANGED_BY_SECOND_COMMIT: usize = 10;
/// Time after which a slow peer stops taking more samples.
const PEER_BUDGET: Duration = Duration::from_secs(60);
/// The fewest samples a peer takes, whatever its budget.
const PEER_MINIMUM_RUNS: usize = 5;
/// Untimed runs before the timed ones, for the methods measured in microseconds, so
/// caches are in the same state for every timed run.
const WARM_UP_RUNS: usize = 3;

fn main() {
    let iterations: usize = std::env::var("AIRLOCK_BENCH_ITERATIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let scratch = tempfile::TempDir::new().expect("a temporary directory");

    let started = Instant::now();
    let small = Sample::generate(&scratch.path().join("small"), 2_000);
    let large = Sample::generate(&scratch.path().join("large"), 20_000);
    println!(
        "generated repositories of 2 000 and 20 000 files in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let small_airlock = airlock_warm(&small, iterations);
    let large_airlock = airlock_warm(&large, iterations);
    let worktree = worktree_add_and_apply(&large, iterations);
    let copy = copy_and_apply(&large, iterations);
    let floor = apply_and_revert_in_place(&large, iterations);

    let reference = large_airlock.prepare.median();
    println!();
    println!("workspace ready for a 1-file change, 20 000-file repository");
    println!(
        "{:<52} {:>5} {:>11} {:>11} {:>11}",
        "method", "runs", "median", "p90", "× airlock"
    );
    let row = |name: &str, timings: &Timings| {
        println!(
            "{:<52} {:>5} {:>11} {:>11} {:>10.1}×",
            name,
            timings.samples.len(),
            format_duration(timings.median()),
            format_duration(timings.p90()),
            timings.median().as_secs_f64() / reference.as_secs_f64()
        );
    };
    row("airlock warm: acquire + apply", &large_airlock.prepare);
    row("git worktree add --detach + git apply", &worktree);
    row("cp -a of the checkout + git apply", &copy);
    row("floor: git apply + git apply -R, checked out", &floor);
    println!();
    println!("airlock, not in the row above:");
    row(
        "  release: reset + clean + verify (after verdict)",
        &large_airlock.release,
    );
    row(
        &format!(
            "  acquire + apply at another base ({FILES_CHANGED_BY_SECOND_COMMIT} files differ)"
        ),
        &large_airlock.moved,
    );
    row("  first acquire, cold (one sample)", &large_airlock.cold);
    println!();
    let growth =
        large_airlock.prepare.median().as_secs_f64() / small_airlock.prepare.median().as_secs_f64();
    println!(
        "O(changed files): airlock warm, 2 000 files: median {} (p90 {}); 20 000 files: \
         median {} (p90 {}); 10× the files costs {growth:.2}× the time",
        format_duration(small_airlock.prepare.median()),
        format_duration(small_airlock.prepare.p90()),
        format_duration(large_airlock.prepare.median()),
        format_duration(large_airlock.prepare.p90()),
    );

    let speedup = worktree.median().as_secs_f64() / reference.as_secs_f64();
    let of_floor = reference.as_secs_f64() / floor.median().as_secs_f64();
    println!(
        "targets: ≥ 20× faster than git worktree add: {} ({speedup:.0}×, aim ≥ 100×); \
         within 2× of the floor: {} (airlock takes {of_floor:.2}× the floor's time)",
        verdict(speedup >= 20.0),
        verdict(of_floor <= 2.0),
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

/// A generated repository with its user checkout, and the change every method applies.
struct Sample {
    root: PathBuf,
    base: CommitId,
    /// A second commit with a few files changed, to measure moving a workspace.
    other_base: CommitId,
    scratch: PathBuf,
    patch: PathBuf,
    change: FileWrite,
}

impl Sample {
    /// Builds a repository of `files` files of about 200 bytes in nested directories with
    /// one `git fast-import` stream, then checks it out.
    fn generate(dir: &Path, files: usize) -> Sample {
        let root = dir.join("repo");
        let scratch = dir.join("scratch");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&scratch).unwrap();
        git(&root, &["init", "-q", "--initial-branch=main"]);

        let mut stream = Vec::with_capacity(files * 260);
        stream.extend_from_slice(
            b"commit refs/heads/main\ncommitter Bench <bench@example.com> 1700000000 +0000\n\
              data 4\nbase\n",
        );
        for index in 0..files {
            let content = file_content(index, "");
            write!(
                stream,
                "M 100644 inline {}\ndata {}\n",
                file_path(index),
                content.len()
            )
            .unwrap();
            stream.extend_from_slice(content.as_bytes());
            stream.push(b'\n');
        }
        stream.extend_from_slice(
            b"\ncommit refs/heads/other\ncommitter Bench <bench@example.com> 1700000001 +0000\n\
              data 6\nother\nfrom refs/heads/main\n",
        );
        for index in 1..=FILES_CHANGED_BY_SECOND_COMMIT {
            let content = file_content(index * 97, "changed on the other branch\n");
            write!(
                stream,
                "M 100644 inline {}\ndata {}\n",
                file_path(index * 97),
                content.len()
            )
            .unwrap();
            stream.extend_from_slice(content.as_bytes());
            stream.push(b'\n');
        }
        stream.push(b'\n');
        git_with_input(&root, &["fast-import", "--quiet"], &stream);
        git(&root, &["checkout", "-q", "-f", "main"]);

        let base = CommitId::from_str(git(&root, &["rev-parse", "main"]).trim()).unwrap();
        let other_base = CommitId::from_str(git(&root, &["rev-parse", "other"]).trim()).unwrap();
        let old = file_content(0, "");
        let old_lines: Vec<&str> = old.lines().collect();
        let new = old.replacen(old_lines[1], "changed by the proposed change", 1);
        // Full context: git apply anchors a hunk with uneven context to the end of the file.
        let mut hunk = format!("@@ -1,{0} +1,{0} @@\n", old_lines.len());
        for (number, line) in old_lines.iter().enumerate() {
            if number == 1 {
                hunk.push_str(&format!("-{line}\n+changed by the proposed change\n"));
            } else {
                hunk.push_str(&format!(" {line}\n"));
            }
        }
        let patch = scratch.join("change.patch");
        std::fs::write(
            &patch,
            format!(
                "diff --git a/{CHANGED_PATH} b/{CHANGED_PATH}\n--- a/{CHANGED_PATH}\n\
                 +++ b/{CHANGED_PATH}\n{hunk}"
            ),
        )
        .unwrap();
        Sample {
            root,
            base,
            other_base,
            scratch,
            patch,
            change: FileWrite {
                path: CHANGED_PATH.to_owned(),
                content: Some(new.into_bytes()),
                mode: FileMode::Regular,
            },
        }
    }
}

fn file_path(index: usize) -> String {
    format!(
        "src/d{:02}/s{:02}/f{index:05}.txt",
        index / 1000,
        (index / 50) % 20
    )
}

/// About 200 bytes: a first line naming the file, then three lines of filler.
fn file_content(index: usize, extra: &str) -> String {
    let mut content = format!("file {index}\n");
    for line in 0..3 {
        content.push_str(&format!("line {line} of file {index}: "));
        while content.len() % 64 != 63 {
            content.push((b'a' + ((index + content.len()) % 26) as u8) as char);
        }
        content.push('\n');
    }
    content.push_str(extra);
    content
}

struct AirlockTimings {
    prepare: Timings,
    release: Timings,
    moved: Timings,
    cold: Timings,
}

/// Times acquire + apply on a warm workspace; release runs between iterations, untimed
/// here and reported on its own.
fn airlock_warm(sample: &Sample, iterations: usize) -> AirlockTimings {
    let repo = Repo::open(&sample.root).unwrap();
    let pool = WorkspacePool::open(&repo, sample.scratch.join("pool"), 1).unwrap();
    let mut cold = Timings::default();
    let started = Instant::now();
    let workspace = pool.acquire(&sample.base).unwrap();
    cold.push(started.elapsed());
    workspace.release().unwrap();

    let mut prepare = Timings::default();
    let mut release = Timings::default();
    for _ in 0..WARM_UP_RUNS {
        let mut workspace = pool.acquire(&sample.base).unwrap();
        workspace
            .apply(std::slice::from_ref(&sample.change))
            .unwrap();
        workspace.release().unwrap();
    }
    for _ in 0..iterations {
        let started = Instant::now();
        let mut workspace = pool.acquire(&sample.base).unwrap();
        workspace
            .apply(std::slice::from_ref(&sample.change))
            .unwrap();
        prepare.push(started.elapsed());
        assert_eq!(workspace.status().unwrap(), vec![CHANGED_PATH.to_owned()]);
        let started = Instant::now();
        workspace.release().unwrap();
        release.push(started.elapsed());
    }
    assert_eq!(
        pool.stats().reused as usize,
        WARM_UP_RUNS + iterations,
        "every run was warm"
    );

    let mut moved = Timings::default();
    for iteration in 0..iterations {
        let base = if iteration % 2 == 0 {
            &sample.other_base
        } else {
            &sample.base
        };
        let started = Instant::now();
        let mut workspace = pool.acquire(base).unwrap();
        workspace
            .apply(std::slice::from_ref(&sample.change))
            .unwrap();
        moved.push(started.elapsed());
        workspace.release().unwrap();
    }
    assert_eq!(pool.stats().moved as usize, iterations, "every run moved");
    AirlockTimings {
        prepare,
        release,
        moved,
        cold,
    }
}

/// `git worktree add` in a throwaway clone (so the generated repository itself gains no
/// worktree), then `git apply`; removal is untimed.
fn worktree_add_and_apply(sample: &Sample, iterations: usize) -> Timings {
    let clone = sample.scratch.join("clone");
    git(
        &sample.scratch,
        &[
            "clone",
            "-q",
            "--no-checkout",
            sample.root.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    let mut timings = Timings::default();
    for iteration in 0..iterations {
        if timings.budget_spent() {
            break;
        }
        let tree = sample.scratch.join(format!("worktree-{iteration}"));
        let tree_arg = tree.to_str().unwrap();
        let started = Instant::now();
        git(
            &clone,
            &[
                "worktree",
                "add",
                "-q",
                "--detach",
                tree_arg,
                sample.base.as_str(),
            ],
        );
        git(&tree, &["apply", sample.patch.to_str().unwrap()]);
        timings.push(started.elapsed());
        git(&clone, &["worktree", "remove", "--force", tree_arg]);
    }
    timings
}

/// A full copy of the checked-out repository, then `git apply`; removal is untimed.
fn copy_and_apply(sample: &Sample, iterations: usize) -> Timings {
    let mut timings = Timings::default();
    for iteration in 0..iterations {
        if timings.budget_spent() {
            break;
        }
        let copy = sample.scratch.join(format!("copy-{iteration}"));
        let started = Instant::now();
        let status = Command::new("cp")
            .arg("-a")
            .arg(&sample.root)
            .arg(&copy)
            .status()
            .expect("cp is available");
        assert!(status.success());
        git(&copy, &["apply", sample.patch.to_str().unwrap()]);
        timings.push(started.elapsed());
        std::fs::remove_dir_all(&copy).unwrap();
    }
    timings
}

/// The floor: the change applied and reverted in a tree that is already checked out.
fn apply_and_revert_in_place(sample: &Sample, iterations: usize) -> Timings {
    let patch = sample.patch.to_str().unwrap();
    for _ in 0..WARM_UP_RUNS {
        git(&sample.root, &["apply", patch]);
        git(&sample.root, &["apply", "-R", patch]);
    }
    let mut timings = Timings::default();
    for _ in 0..iterations {
        let started = Instant::now();
        git(&sample.root, &["apply", patch]);
        git(&sample.root, &["apply", "-R", patch]);
        timings.push(started.elapsed());
    }
    timings
}

#[derive(Default)]
struct Timings {
    samples: Vec<Duration>,
}

impl Timings {
    fn push(&mut self, sample: Duration) {
        self.samples.push(sample);
    }

    /// Whether a slow peer has taken enough of the machine's time.
    fn budget_spent(&self) -> bool {
        self.samples.len() >= PEER_MINIMUM_RUNS
            && self.samples.iter().sum::<Duration>() >= PEER_BUDGET
    }

    fn percentile(&self, percent: usize) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        // Nearest rank.
        let rank = (percent * sorted.len()).div_ceil(100).max(1);
        sorted[rank - 1]
    }

    fn median(&self) -> Duration {
        self.percentile(50)
    }

    fn p90(&self) -> Duration {
        self.percentile(90)
    }
}

fn format_duration(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// The peers run git with the same isolation from the machine's configuration as airlock.
fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("git");
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GIT_") {
            command.env_remove(name);
        }
    }
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com");
    command
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_command(dir, args)
        .output()
        .expect("the benchmark needs git on PATH (Debian package `git`)");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn git_with_input(dir: &Path, args: &[&str], input: &[u8]) {
    let mut child = git_command(dir, args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("the benchmark needs git on PATH (Debian package `git`)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "git {args:?} failed");
}
