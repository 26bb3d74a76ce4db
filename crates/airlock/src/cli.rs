//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    about = "The production gate for AI coding agents"
)]
pub struct Args {
    /// Run as if started in this directory (the repository).
    #[arg(short = 'C', long = "repo", global = true, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Log progress to stderr (also: AIRLOCK_LOG=info).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write airlock.toml with commented defaults and create the state directory.
    Init {
        /// The branch changes are committed to (default: the current branch, else main).
        #[arg(long)]
        target_branch: Option<String>,
        /// Overwrite an existing airlock.toml.
        #[arg(long)]
        force: bool,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the HTTP API and the workers until SIGTERM or Ctrl-C.
    Serve {
        /// Address to listen on (default: server.listen from airlock.toml).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Propose a change.
    Propose(ProposeArgs),
    /// Review a change: approve, reject, request changes; the review queue;
    /// post-deployment reviews of break-glass changes.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// Break-glass on an existing change (operator or admin): skip its review, record
    /// why, and open a mandatory post-deployment review.
    BreakGlass {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
    /// The kill switch: stop every new deployment until `airlock resume`.
    Pause {
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
    /// The deployment queue: the stable version, the change being deployed, the waiting
    /// ones in order.
    Queue {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
    /// Roll back a deployed change (operator or admin): a revert commit on the target
    /// branch, the reverted version deployed. Exit 1 once rolled back.
    Rollback {
        id: String,
        #[arg(long)]
        reason: String,
        /// Return at once instead of waiting for the rollback to finish.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
    /// A person's decision on a rollout under way (operator or admin).
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Run airlock's sample HTTP service (the demo's): GET / answers per the behaviour
    /// file (`error_rate`, `latency_ms`), GET /metrics in Prometheus's format.
    #[command(hide = true)]
    SampleService {
        #[arg(long)]
        port: u16,
        /// The behaviour file, relative to the current directory.
        #[arg(long, default_value = "service.conf")]
        config: PathBuf,
        /// The version it reports (default: $AIRLOCK_VERSION).
        #[arg(long, env = "AIRLOCK_VERSION", default_value = "dev")]
        version: String,
    },
    /// Lift the kill switch and every target's own pause (drift's), or with --target
    /// only that target's pause.
    Resume {
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
    /// Show one change.
    Status {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
    /// List changes, newest first.
    List {
        /// Only changes in this state (queued, checking, checks_passed, awaiting_review,
        /// changes_requested, approved, staging, deploy_queued, deploying, deployed,
        /// rolling_back, rolled_back, rollback_escalated, rejected, expired, failed).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
    /// Scan a unified diff for dangerous changes, standalone. Exit 0: nothing blocking;
    /// 1: blocking findings (high or critical); 2: usage or input error.
    Scan {
        /// The diff file, or - for standard input.
        #[arg(value_name = "PATCH|-")]
        patch: String,
        #[arg(long, value_enum, default_value_t = ScanFormat::Text)]
        format: ScanFormat,
        /// Same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// The tamper-evident audit log: verify, show, prove, export evidence.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The canary judge, offline.
    #[command(subcommand)]
    Canary(CanaryCommand),
    /// Run the whole flow on a generated sample repository, with no setup.
    Demo {
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// Keep the sample repository instead of deleting it.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Let a rollout the judge holds (an advisory failure) go on: the metrics it held on
    /// no longer stop it; the guards and enforcing metrics still do.
    Continue {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
    /// Stop a rollout under way: traffic back to stable, a revert commit, the previous
    /// version redeployed. Exit 1 once rolled back.
    Abort {
        id: String,
        #[arg(long)]
        reason: String,
        /// Return at once instead of waiting for the rollback to finish.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CanaryCommand {
    /// Re-run the judge on a rollout's recorded metrics (written by the deployer under
    /// .airlock/deploy/recordings/, or by hand), deterministically: every decision it
    /// makes, step by step. Exit 1 when the judge fails the canary.
    Replay {
        /// The recording, JSON.
        file: PathBuf,
        /// Print every decision with its evidence as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once and only its hash is stored.
    Create {
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
        /// For agent tokens: the human responsible for the agent (who may then not
        /// approve its changes).
        #[arg(long)]
        owner: Option<String>,
        /// For humans: a review group they belong to (`@payments`); repeatable.
        #[arg(long = "group", value_name = "@GROUP")]
        groups: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id (tok_...).
    Revoke {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Approve the current revision (of a break-glass change: complete its
    /// post-deployment review).
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
    /// Reject the change; the comment goes back to the agent.
    Reject {
        id: String,
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
    /// Ask the agent for a new revision; the comment says what to change.
    RequestChanges {
        id: String,
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
    /// Changes waiting for review, oldest first, with what each still needs.
    List {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
    /// Post-deployment reviews of break-glass changes.
    PostReviews {
        /// Only open ones past their due time.
        #[arg(long)]
        overdue: bool,
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the whole tree and every signature; name the first bad index.
    /// Exit 0: intact; 1: tampered or damaged.
    Verify {
        /// The verifier key to trust (default: .airlock/audit/verifier.key; keep a copy elsewhere).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// A signed checkpoint kept outside the log: the log must still contain its tree.
        #[arg(long = "from-checkpoint", value_name = "FILE")]
        from_checkpoint: Vec<PathBuf>,
        /// Also check that every entry is canonical JSON of the current entry version.
        #[arg(long)]
        deep: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print entries.
    Show {
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only entries about this change.
        #[arg(long)]
        change: Option<String>,
        /// One JSON object per line, with index and leaf hash.
        #[arg(long)]
        json: bool,
    },
    /// Print the inclusion proof of one entry.
    Prove {
        #[arg(long)]
        index: u64,
        /// Tree size to prove against (default: the latest checkpoint's).
        #[arg(long)]
        size: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Print the proof that the tree of OLD entries is a prefix of the tree of NEW.
    Consistency {
        old: u64,
        new: u64,
        #[arg(long)]
        json: bool,
    },
    /// Write an offline evidence bundle for one change (entries, proofs, checkpoint, key).
    Export {
        #[arg(long)]
        change: String,
        /// Output file (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check an evidence bundle with no server and no database. Exit 0: valid; 1: invalid.
    VerifyBundle {
        file: PathBuf,
        /// Pin the verifier key instead of trusting the one in the bundle.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Delete kept payloads (test output and other large or sensitive content) by age or
    /// by change. The entries that commit to them stay: the log still verifies, and
    /// proofs and bundles report the payloads as purged. The purge is itself recorded.
    Purge {
        /// Payloads of entries older than this age (for example 90d, 12h).
        #[arg(long, value_name = "AGE")]
        older_than: Option<String>,
        /// Payloads of this change's entries (for example a secret that reached test output).
        #[arg(long, value_name = "ID")]
        change: Option<String>,
        /// Count what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print the log's public verifier key.
    Key,
    /// Publish a signed checkpoint now (through the server when it is running).
    Checkpoint {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, ClapArgs)]
pub struct ClientArgs {
    /// airlock server URL.
    #[arg(long, env = "AIRLOCK_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// API token.
    #[arg(long, env = "AIRLOCK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, ClapArgs)]
#[group(id = "form", required = true, multiple = false, args = ["patch", "edits", "git_ref"])]
pub struct ProposeArgs {
    /// Send a new revision of this change instead of proposing a new one (earlier
    /// approvals no longer count; Level 1 runs again).
    #[arg(long, value_name = "ID", conflicts_with = "urgent")]
    pub revise: Option<String>,
    /// Break-glass (operator or admin tokens): skip human review; needs --reason.
    #[arg(long, requires = "reason")]
    pub urgent: bool,
    /// Why the change is urgent (recorded in the audit log).
    #[arg(long)]
    pub reason: Option<String>,
    /// A unified diff file, or - for standard input.
    #[arg(long, value_name = "FILE|-")]
    pub patch: Option<String>,
    /// A JSON file with a list of edits: {"op":"replace","path","old_text","new_text"},
    /// {"op":"create","path","content"}, {"op":"delete","path"}.
    #[arg(long, value_name = "FILE")]
    pub edits: Option<PathBuf>,
    /// A commit or branch of the repository holding the change.
    #[arg(long = "ref", value_name = "REV")]
    pub git_ref: Option<String>,
    /// Required for a new change.
    #[arg(long, required_unless_present = "revise")]
    pub title: Option<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Base commit (default: the target branch; for --ref, where it forked from it).
    #[arg(long)]
    pub base: Option<String>,
    /// Follow the change until Level 1 and the policy decide.
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanFormat {
    Text,
    Json,
    Sarif,
}
