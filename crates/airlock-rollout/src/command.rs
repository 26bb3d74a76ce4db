//! The `command` provider: for anything airlock does not drive itself, the operator's own
//! script deploys versions and shifts traffic, one action per call.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::child::{self, Completed, OUTPUT_TAIL_BYTES};
use crate::{
    Environment, Fence, FenceToken, Observed, Provider, RolloutError, Slot, Version, Weights,
};

/// How the operator's deploy script is called.
///
/// The script runs as `PROGRAM ACTION` (no shell), in its own process group, with an
/// exact environment: `PATH`, the entries of `env`, and
/// `AIRLOCK_ACTION` (`deploy`, `weights`, `get-weights`, `promote`, `stop`, `url`),
/// `AIRLOCK_TARGET`, `AIRLOCK_FENCE` (the fencing token, for scripts that fence their own
/// writes), `AIRLOCK_ENVIRONMENT`, and per action `AIRLOCK_VERSION`, `AIRLOCK_TREE`
/// (`deploy`, which also runs in the tree), `AIRLOCK_SLOT` (`deploy`, `stop`),
/// `AIRLOCK_WEIGHT_STABLE`, `AIRLOCK_WEIGHT_BASELINE`, `AIRLOCK_WEIGHT_CANARY` (`weights`).
/// `get-weights` prints `{"stable":N,"baseline":N,"canary":N}`; `url` prints the
/// environment's URL (or nothing). Exit status 0 is success; anything else, or running
/// past `timeout`, is an error quoting the output's tail.
#[derive(Clone, Debug)]
pub struct CommandOptions {
    pub program: PathBuf,
    /// The limit for one call; the script's process group is killed past it. Default
    /// 10 min (a deploy may build).
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
}

impl CommandOptions {
    /// Options for `program` with the default timeout and no extra environment.
    pub fn new(program: impl Into<PathBuf>) -> CommandOptions {
        CommandOptions {
            program: program.into(),
            timeout: Duration::from_secs(600),
            env: Vec::new(),
        }
    }
}

/// A [`Provider`] that calls the operator's script for every action. It measures
/// nothing: metrics come from Prometheus.
pub struct CommandProvider {
    options: CommandOptions,
    target: String,
    fence: Arc<dyn Fence>,
}

impl std::fmt::Debug for CommandProvider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CommandProvider")
            .field("options", &self.options)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The environment of one call, beyond what every call gets.
#[derive(Default)]
struct Call<'a> {
    slot: Option<Slot>,
    version: Option<&'a Version>,
    weights: Option<Weights>,
}

impl CommandProvider {
    /// A provider for deploy target `target`, fenced by `fence`. Fails if the program is
    /// not an absolute path to a file.
    pub fn new(
        options: CommandOptions,
        target: impl Into<String>,
        fence: Arc<dyn Fence>,
    ) -> Result<CommandProvider, RolloutError> {
        if !options.program.is_absolute() || !options.program.is_file() {
            return Err(RolloutError::InvalidOption {
                what: "deploy command",
                value: options.program.display().to_string(),
                accepted: "the absolute path of an executable file",
            });
        }
        child::validate_env(&options.env)?;
        Ok(CommandProvider {
            options,
            target: target.into(),
            fence,
        })
    }

    fn run(
        &self,
        action: &'static str,
        token: Option<FenceToken>,
        environment: Environment,
        call: Call<'_>,
    ) -> Result<Completed, RolloutError> {
        let mut command = Command::new(&self.options.program);
        command.arg(action);
        child::exact_environment(&mut command, &self.options.env);
        command
            .env("AIRLOCK_ACTION", action)
            .env("AIRLOCK_TARGET", &self.target)
            .env("AIRLOCK_ENVIRONMENT", environment.as_str());
        if let Some(token) = token {
            command.env("AIRLOCK_FENCE", token.0.to_string());
        }
        if let Some(slot) = call.slot {
            command.env("AIRLOCK_SLOT", slot.as_str());
        }
        if let Some(version) = call.version {
            command
                .env("AIRLOCK_VERSION", &version.commit)
                .env("AIRLOCK_TREE", &version.tree)
                .current_dir(&version.tree);
        }
        if let Some(weights) = call.weights {
            command
                .env("AIRLOCK_WEIGHT_STABLE", weights.stable.to_string())
                .env("AIRLOCK_WEIGHT_BASELINE", weights.baseline.to_string())
                .env("AIRLOCK_WEIGHT_CANARY", weights.canary.to_string());
        }
        let timeout = self.options.timeout;
        let completed = child::run_to_completion(command, timeout, "the deploy command")?;
        if !completed.succeeded() {
            return Err(RolloutError::Command {
                program: self.options.program.clone(),
                action,
                outcome: completed.outcome(timeout),
                output_tail: completed.output_tail(),
            });
        }
        Ok(completed)
    }

    /// Asks the script (`get-weights`) for the weights in force. A read: no fencing token.
    pub fn get_weights(&self, environment: Environment) -> Result<Weights, RolloutError> {
        let action = "get-weights";
        let completed = self.run(action, None, environment, Call::default())?;
        serde_json::from_slice::<Weights>(completed.stdout.trim_ascii()).map_err(|error| {
            RolloutError::CommandOutput {
                program: self.options.program.clone(),
                action,
                problem: error.to_string(),
                expected: r#"one JSON object {"stable":N,"baseline":N,"canary":N} on stdout"#,
                output: child::lossy_tail(&completed.stdout, OUTPUT_TAIL_BYTES),
            }
        })
    }
}

impl Provider for CommandProvider {
    fn name(&self) -> &'static str {
        "command"
    }

    fn deploy(
        &self,
        token: FenceToken,
        environment: Environment,
        slot: Slot,
        version: &Version,
    ) -> Result<(), RolloutError> {
        self.fence.admit(&self.target, token)?;
        version.validate()?;
        if !version.tree.is_dir() {
            return Err(RolloutError::MissingTree {
                commit: version.commit.clone(),
                tree: version.tree.clone(),
            });
        }
        let call = Call {
            slot: Some(slot),
            version: Some(version),
            weights: None,
        };
        self.run("deploy", Some(token), environment, call).map(drop)
    }

    fn set_weights(
        &self,
        token: FenceToken,
        environment: Environment,
        weights: Weights,
    ) -> Result<Weights, RolloutError> {
        self.fence.admit(&self.target, token)?;
        weights.validate()?;
        let call = Call {
            weights: Some(weights),
            ..Call::default()
        };
        self.run("weights", Some(token), environment, call)?;
        let actual = self.get_weights(environment)?;
        if actual != weights {
            return Err(RolloutError::WeightMismatch {
                wanted: weights,
                actual,
            });
        }
        Ok(actual)
    }

    fn promote(&self, token: FenceToken, environment: Environment) -> Result<(), RolloutError> {
        self.fence.admit(&self.target, token)?;
        self.run("promote", Some(token), environment, Call::default())
            .map(drop)
    }

    fn stop(
        &self,
        token: FenceToken,
        environment: Environment,
        slot: Slot,
    ) -> Result<(), RolloutError> {
        self.fence.admit(&self.target, token)?;
        let call = Call {
            slot: Some(slot),
            ..Call::default()
        };
        self.run("stop", Some(token), environment, call).map(drop)
    }

    /// Runs the script's `url` action; `None` if it fails or prints nothing.
    fn url(&self, environment: Environment) -> Option<String> {
        let completed = self.run("url", None, environment, Call::default()).ok()?;
        let url = String::from_utf8(completed.stdout).ok()?.trim().to_owned();
        (!url.is_empty()).then_some(url)
    }

    fn observe(
        &self,
        _environment: Environment,
    ) -> Result<Option<BTreeMap<Slot, Observed>>, RolloutError> {
        Ok(None)
    }

    /// The script's services are the operator's: nothing of airlock's runs.
    fn shutdown(&self) {}
}
