//! A review policy: Rego modules parsed once, then evaluated per change into obligations,
//! each evaluation on a thread apart from its caller (kept for the next ones) under a
//! time limit, failing closed.

use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use airlock_core::review::{Obligations, PolicyInput};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, LimitError, Value};
use sha2::{Digest, Sha256};

/// The policy `airlock init` writes to `.airlock/policy.rego`. Its header documents every
/// input field and every output rule; it is the reference for writing a policy.
pub const DEFAULT_POLICY: &str = include_str!("default.rego");

/// The package every module must declare; its rules are the policy's answer.
const PACKAGE: &str = "airlock";

/// How many interpreter steps pass between two reads of the clock. Reading it is cheap
/// (tens of nanoseconds) but not free; 64 steps are far below a millisecond.
const CHECK_INTERVAL: NonZeroU32 = NonZeroU32::new(64).unwrap();

/// The most elements `numbers.range` and `numbers.range_step` may produce. The regorus
/// builtins reserve the whole array up front and fill it without consulting the time
/// limit, so `numbers.range(1, 1e9)` would take seconds and gigabytes (and `1e12` would
/// abort the process on a failed allocation) before any limit could act.
const MAX_RANGE: i64 = 1_000_000;

/// Evaluations that overran their limit and whose threads are still running. A thread
/// cannot be killed, so a policy that blocks inside one builtin keeps its thread busy
/// after the caller has been answered; past this many, evaluations are refused instead
/// of piling up threads.
const MAX_OVERRUNNING: usize = 4;
static OVERRUNNING: AtomicUsize = AtomicUsize::new(0);

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

/// Stack of an evaluation thread. The interpreter recurses per nested rule and
/// expression; reserving more than the 2 MiB default costs address space, not memory.
const STACK_SIZE: usize = 16 * 1024 * 1024;

/// Why a policy could not be loaded or could not decide. Every variant means "no
/// obligations": a change whose policy fails is held, never waved through.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the policy file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the policy has no modules; accepted: one or more Rego files declaring `package airlock`"
    )]
    NoModules,
    #[error("two policy modules are named `{0}`; accepted: distinct module names")]
    DuplicateModule(String),
    /// The module's text is not Rego v1; `message` names the line and column.
    #[error(
        "the policy module {module} does not parse (accepted: Rego v1, where rule bodies follow `if` and set rules use `contains`): {message}"
    )]
    Parse { module: String, message: String },
    #[error(
        "the policy module {module} declares `package {found}`; accepted: `package airlock` in every module (helper rules go in the same package, named with a leading `_`)"
    )]
    Package { module: String, found: String },
    /// The modules parse but regorus's preparation refuses them (a function defined with
    /// different numbers of arguments, a variable used before it is bound, ...). Other
    /// semantic errors (unsafe variables, recursion, conflicting values) surface only
    /// when the rule is evaluated, as [`PolicyError::Evaluation`].
    #[error("the policy {module} is invalid: {message}")]
    Invalid { module: String, message: String },
    #[error(
        "the policy did not decide within its limit of {} ms and was stopped; accepted: a policy that decides within the limit (do not iterate over large ranges or nest comprehensions over large collections)",
        limit.as_millis()
    )]
    Timeout { limit: Duration },
    #[error(
        "{running} earlier policy evaluations overran their time limit and are still running; fix the policy (they block inside a builtin) or restart airlock"
    )]
    Overloaded { running: usize },
    /// The policy raised an error while deciding: a builtin failed (strict mode: builtin
    /// errors are errors, not undefined values), a function does not exist (those that
    /// read the clock, the network or the environment are not available), conflicting
    /// values were produced for one rule, ...
    #[error(
        "the policy failed while deciding: {message}; the builtins that read the clock, the network, the environment or randomness are not available to airlock policies"
    )]
    Evaluation { message: String },
    /// The policy decided, but its answer is not a valid set of obligations.
    #[error("{}", answer_message(message))]
    Answer { message: String },
}

/// A parsed review policy: one or more Rego modules, all in `package airlock`.
///
/// Cloning an evaluation engine per call keeps `evaluate` `&self` and lets one `Policy`
/// serve concurrent callers; parsing and preparation happen once, in the constructor.
pub struct Policy {
    /// Module names and texts, sorted by name (the order of [`Policy::bundle_sha256`]).
    modules: Vec<(String, String)>,
    engine: Engine,
    bundle_sha256: String,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("modules", &self.module_names().collect::<Vec<_>>())
            .field("bundle_sha256", &self.bundle_sha256)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Parses named Rego modules (v1 syntax: `if`, `contains`, `in`, `every`) into one
    /// policy. Every module must declare `package airlock`; names must be distinct and
    /// are only used in messages and in [`Policy::bundle_sha256`]. Errors name the module,
    /// and for syntax errors the line and column.
    pub fn from_modules<N: AsRef<str>, T: AsRef<str>>(
        modules: &[(N, T)],
    ) -> Result<Policy, PolicyError> {
        if modules.is_empty() {
            return Err(PolicyError::NoModules);
        }
        let mut sorted: Vec<(String, String)> = modules
            .iter()
            .map(|(n, t)| (n.as_ref().to_owned(), t.as_ref().to_owned()))
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(PolicyError::DuplicateModule(pair[0].0.clone()));
        }

        let mut engine = new_engine();
        for (name, text) in &sorted {
            let package =
                engine
                    .add_policy(name.clone(), text.clone())
                    .map_err(|e| PolicyError::Parse {
                        module: name.clone(),
                        message: one_line(&e),
                    })?;
            let found = package.strip_prefix("data.").unwrap_or(&package);
            if found != PACKAGE {
                return Err(PolicyError::Package {
                    module: name.clone(),
                    found: found.to_owned(),
                });
            }
        }
        // Prepare now (rule gathering, scheduling, loop hoisting) so every evaluation's
        // clone starts prepared, and what this finds is reported at load. Most semantic
        // errors (unsafe variables, recursion, conflicting values) only surface when a
        // rule is evaluated; they are evaluation errors then, and hold the change.
        engine
            .eval_query("true".to_owned(), false)
            .map_err(|e| PolicyError::Invalid {
                module: sorted
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                message: one_line(&e),
            })?;

        let bundle_sha256 = bundle_sha256(&sorted);
        Ok(Policy {
            modules: sorted,
            engine,
            bundle_sha256,
        })
    }

    /// Reads one policy file. The module is named by the file's name alone (for example
    /// `policy.rego`), so the bundle hash does not depend on where the repository is
    /// checked out; errors name the full path.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: shown.clone(),
            source,
        })?;
        let name = path
            .file_name()
            .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());
        Policy::from_modules(&[(name, text)]).map_err(|error| match error {
            PolicyError::Parse { message, .. } => PolicyError::Parse {
                module: shown,
                message,
            },
            PolicyError::Package { found, .. } => PolicyError::Package {
                module: shown,
                found,
            },
            PolicyError::Invalid { message, .. } => PolicyError::Invalid {
                module: shown,
                message,
            },
            other => other,
        })
    }

    /// The modules' names, in bundle order.
    pub fn module_names(&self) -> impl Iterator<Item = &str> {
        self.modules.iter().map(|(name, _)| name.as_str())
    }

    /// SHA-256, lower-case hex, identifying exactly which policy decided; recorded with
    /// every decision. It is computed over the modules sorted by name (byte order), each
    /// framed as:
    ///
    /// ```text
    /// u64 big-endian byte length of the name ‖ name (UTF-8)
    /// ‖ u64 big-endian byte length of the text ‖ text (UTF-8, exactly as given)
    /// ```
    ///
    /// with nothing before, between or after the modules. The lengths make the framing
    /// unambiguous: no two different bundles hash the same bytes.
    pub fn bundle_sha256(&self) -> &str {
        &self.bundle_sha256
    }

    /// Decides a change: evaluates `data.airlock` with `input` and reads the answer with
    /// [`Obligations::from_policy`]. Rules the policy leaves undefined are absent from
    /// the answer.
    ///
    /// The evaluation runs on an evaluation thread, not the caller's (threads are kept
    /// between evaluations; one that overran is not reused). Within it, regorus's cooperative
    /// execution timer stops the interpreter once `limit` has passed (it checks the clock
    /// every few dozen steps of rule, comprehension and loop evaluation). A single builtin
    /// call is not interrupted by that timer, so the caller also waits at most
    /// `limit * 1.5 + 20 ms` for the thread and then answers [`PolicyError::Timeout`]
    /// whatever the thread is doing; the thread is left to finish on its own, then ends.
    ///
    /// Every failure is an error (fail closed): timeout, evaluation error, or an answer
    /// that is not a valid set of obligations.
    pub fn evaluate(
        &self,
        input: &PolicyInput,
        limit: Duration,
    ) -> Result<Obligations, PolicyError> {
        let value = self.evaluate_value(input, limit)?;
        Obligations::from_policy(&value, &input.gate_files)
            .map_err(|message| PolicyError::Answer { message })
    }

    /// The raw value of `data.airlock` (`null` when the package produced nothing).
    fn evaluate_value(
        &self,
        input: &PolicyInput,
        limit: Duration,
    ) -> Result<serde_json::Value, PolicyError> {
        let input_json = serde_json::to_string(input).map_err(|e| PolicyError::Evaluation {
            message: format!("the input could not be encoded: {e}"),
        })?;
        // The input is loaded here, before the clock starts: its size is airlock's doing,
        // not the policy's.
        let mut engine = self.engine.clone();
        engine
            .set_input_json(&input_json)
            .map_err(|e| PolicyError::Evaluation {
                message: format!("the input could not be loaded: {}", one_line(&e)),
            })?;
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit,
            check_interval: CHECK_INTERVAL,
        });
        on_thread_within(limit, move || run(&mut engine, limit))
    }
}

/// Runs `work` on an evaluation thread and waits for it at most `limit * 1.5 + 20 ms`
/// (`work` is expected to stop itself at `limit`; the margin lets it report that
/// precisely). Past that, answers [`PolicyError::Timeout`] and leaves the thread to
/// finish alone, counted in [`OVERRUNNING`] until it does; a thread left that way ends
/// after its evaluation and never takes another.
fn on_thread_within<T: Send + 'static>(
    limit: Duration,
    work: impl FnOnce() -> Result<T, PolicyError> + Send + 'static,
) -> Result<T, PolicyError> {
    let running = OVERRUNNING.load(Ordering::SeqCst);
    if running >= MAX_OVERRUNNING {
        return Err(PolicyError::Overloaded { running });
    }
    let state = Arc::new(AtomicU8::new(RUNNING));
    let (sender, receiver) = mpsc::sync_channel(1);
    let thread_state = Arc::clone(&state);
    let evaluator = Evaluator::take()?;
    evaluator.run(Box::new(move || {
        let _finished = Finished(thread_state);
        // The caller may have given up and dropped the receiver; nothing to do.
        let _ = sender.send(work());
    }))?;

    let wait = limit
        .saturating_add(limit / 2)
        .saturating_add(Duration::from_millis(20));
    match receiver.recv_timeout(wait) {
        Ok(outcome) => {
            evaluator.give_back();
            outcome
        }
        Err(RecvTimeoutError::Timeout) => {
            // Count the thread as overrunning before marking it abandoned, so that its
            // own decrement (in `Finished`) can never come first.
            OVERRUNNING.fetch_add(1, Ordering::SeqCst);
            if state
                .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // It finished in the meantime: not overrunning, and its answer is there.
                OVERRUNNING.fetch_sub(1, Ordering::SeqCst);
                let outcome = receiver.try_recv().unwrap_or_else(|_| Err(panicked()));
                evaluator.give_back();
                return outcome;
            }
            // Dropping the evaluator ends its thread once the evaluation returns.
            Err(PolicyError::Timeout { limit })
        }
        // The evaluation panicked, which ended its thread.
        Err(RecvTimeoutError::Disconnected) => Err(panicked()),
    }
}

/// An evaluation, as its thread receives it.
type Job = Box<dyn FnOnce() + Send>;

/// Most idle evaluation threads kept for the next evaluations.
const MAX_IDLE_EVALUATORS: usize = 8;

/// Evaluation threads waiting for work. Starting a thread with its large stack and
/// joining it cost about 100 µs per decision (mapping, then unmapping and flushing the
/// stack), a third of a whole decision of the default policy; a kept thread costs a
/// channel message.
static IDLE_EVALUATORS: Mutex<Vec<Evaluator>> = Mutex::new(Vec::new());

/// A thread that runs evaluations one after the other until its `Evaluator` is dropped.
struct Evaluator {
    jobs: mpsc::Sender<Job>,
}

impl Evaluator {
    /// An idle evaluation thread, or a new one.
    fn take() -> Result<Evaluator, PolicyError> {
        let idle = IDLE_EVALUATORS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(evaluator) = idle {
            return Ok(evaluator);
        }
        let (jobs, received) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("airlock-policy".to_owned())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                for job in received {
                    job();
                }
            })
            .map_err(|e| PolicyError::Evaluation {
                message: format!("cannot start the evaluation thread: {e}"),
            })?;
        Ok(Evaluator { jobs })
    }

    fn run(&self, job: Job) -> Result<(), PolicyError> {
        self.jobs.send(job).map_err(|_| panicked())
    }

    /// Keeps the thread for a later evaluation (it finished this one).
    fn give_back(self) {
        let mut idle = IDLE_EVALUATORS
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_EVALUATORS {
            idle.push(self);
        }
    }
}

/// Marks an evaluation thread finished when it ends, even by a panic; if its caller had
/// already given up on it, it stops counting as overrunning.
struct Finished(Arc<AtomicU8>);

impl Drop for Finished {
    fn drop(&mut self) {
        if self
            .0
            .compare_exchange(RUNNING, FINISHED, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            OVERRUNNING.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// `Obligations::from_policy`'s messages mostly say "the policy ..." already.
fn answer_message(message: &str) -> String {
    if message.starts_with("the policy") {
        message.to_owned()
    } else {
        format!("the policy's answer is rejected: {message}")
    }
}

fn panicked() -> PolicyError {
    PolicyError::Evaluation {
        message: "the policy engine stopped unexpectedly (it panicked)".to_owned(),
    }
}

/// One evaluation, on the evaluation thread, of an engine holding its input and limit.
fn run(engine: &mut Engine, limit: Duration) -> Result<serde_json::Value, PolicyError> {
    let results = engine
        .eval_query(format!("data.{PACKAGE}"), false)
        .map_err(|e| {
            if is_time_limit(&e) {
                PolicyError::Timeout { limit }
            } else {
                PolicyError::Evaluation {
                    message: one_line(&e),
                }
            }
        })?;
    let Some(value) = results
        .result
        .first()
        .and_then(|result| result.expressions.first())
        .map(|expression| &expression.value)
    else {
        return Ok(serde_json::Value::Null);
    };
    serde_json::to_value(value).map_err(|e| PolicyError::Evaluation {
        message: format!("the answer could not be read: {e}"),
    })
}

fn is_time_limit(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<LimitError>(),
            Some(LimitError::TimeLimitExceeded { .. })
        )
    }) || matches!(
        error.downcast_ref::<LimitError>(),
        Some(LimitError::TimeLimitExceeded { .. })
    )
}

/// regorus's messages span several lines: `--> file:line:col`, a source excerpt with a
/// caret, then `error: reason` (repeated for chains such as a recursion). Keep the
/// locations and reasons on one line, for logs and JSON: `policy.rego:3:7: error: ...`.
fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for line in format!("{error:#}").lines().map(str::trim) {
        if let Some(location) = line.strip_prefix("-->") {
            parts.push(format!("{}:", location.trim()));
        } else if is_excerpt(line) {
            continue;
        } else {
            parts.push(line.to_owned());
        }
    }
    parts.join(" ")
}

/// A line of regorus's source excerpt: `|`, `12 | text` or a caret line.
fn is_excerpt(line: &str) -> bool {
    let after_number = line
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start();
    line.is_empty()
        || after_number.starts_with('|')
        || line.chars().all(|c| matches!(c, '^' | '-' | ' ' | '~'))
}

/// An engine with airlock's settings and its replacements for builtins.
fn new_engine() -> Engine {
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    // A builtin that fails (a bad regex, a type error) is an error, not an undefined
    // value that could silently drop a `deny` reason or a risk rule.
    engine.set_strict_builtin_errors(true);
    // `print` must not write to airlock's stderr; the output is collected and dropped.
    engine.set_gather_prints(true);
    // Extensions take precedence over builtins of the same name. They are added to a
    // fresh engine, so the names cannot already be taken.
    let refuse = |_: Vec<Value>| -> anyhow::Result<Value> {
        anyhow::bail!(
            "rand.intn is not available: a policy must decide the same way every time it sees the same change"
        )
    };
    let added = [
        engine.add_extension("numbers.range".to_owned(), 2, Box::new(range)),
        engine.add_extension("numbers.range_step".to_owned(), 3, Box::new(range_step)),
        engine.add_extension("rand.intn".to_owned(), 2, Box::new(refuse)),
    ];
    for result in added {
        debug_assert!(result.is_ok(), "{result:?}");
    }
    engine
}

fn integer(name: &str, what: &str, value: &Value) -> anyhow::Result<i64> {
    let number = value
        .as_number()
        .map_err(|_| anyhow::anyhow!("{name}: {what} must be a number"))?;
    match number.as_i64() {
        Some(n) if number.is_integer() => Ok(n),
        _ => anyhow::bail!("{name}: {what} must be an integer"),
    }
}

/// `numbers.range(a, b)`: the integers from `a` to `b` inclusive, ascending or descending,
/// as OPA defines it, but at most [`MAX_RANGE`] of them.
fn range(args: Vec<Value>) -> anyhow::Result<Value> {
    let name = "numbers.range";
    let (Some(a), Some(b)) = (args.first(), args.get(1)) else {
        anyhow::bail!("{name} takes 2 arguments");
    };
    let (a, b) = (
        integer(name, "the first operand", a)?,
        integer(name, "the second operand", b)?,
    );
    stepped(name, a, b, 1)
}

/// `numbers.range_step(a, b, step)`: from `a` towards `b` by `step` (positive), at most
/// [`MAX_RANGE`] elements.
fn range_step(args: Vec<Value>) -> anyhow::Result<Value> {
    let name = "numbers.range_step";
    let (Some(a), Some(b), Some(step)) = (args.first(), args.get(1), args.get(2)) else {
        anyhow::bail!("{name} takes 3 arguments");
    };
    let a = integer(name, "the first operand", a)?;
    let b = integer(name, "the second operand", b)?;
    let step = integer(name, "the step", step)?;
    if step <= 0 {
        anyhow::bail!("{name}: the step must be a positive integer");
    }
    stepped(name, a, b, step)
}

fn stepped(name: &str, a: i64, b: i64, step: i64) -> anyhow::Result<Value> {
    let span = i128::from(b) - i128::from(a);
    let count = span.abs() / i128::from(step) + 1;
    if count > i128::from(MAX_RANGE) {
        anyhow::bail!(
            "{name} from {a} to {b} would produce {count} numbers; accepted: at most {MAX_RANGE} in an airlock policy"
        );
    }
    let direction = if span < 0 { -1 } else { 1 };
    let values = (0..count as i64)
        .map(|i| Value::from(a + direction * i * step))
        .collect::<Vec<_>>();
    Ok(Value::from(values))
}

fn bundle_sha256(sorted: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    for (name, text) in sorted {
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_framing_is_the_documented_one() {
        let mut expected = Vec::new();
        for (name, text) in [("a.rego", "package airlock\n"), ("b.rego", "")] {
            expected.extend_from_slice(&(name.len() as u64).to_be_bytes());
            expected.extend_from_slice(name.as_bytes());
            expected.extend_from_slice(&(text.len() as u64).to_be_bytes());
            expected.extend_from_slice(text.as_bytes());
        }
        let sorted = vec![
            ("a.rego".to_owned(), "package airlock\n".to_owned()),
            ("b.rego".to_owned(), String::new()),
        ];
        assert_eq!(
            bundle_sha256(&sorted),
            hex::encode(Sha256::digest(&expected))
        );
        // Moving bytes between a name and a text changes the hash.
        let shifted = vec![
            ("a.regop".to_owned(), "ackage airlock\n".to_owned()),
            ("b.rego".to_owned(), String::new()),
        ];
        assert_ne!(bundle_sha256(&sorted), bundle_sha256(&shifted));
    }

    /// The watchdog, on its own: work that ignores its limit (as a builtin stuck in one
    /// call does) is abandoned at `limit * 1.5 + 20 ms`, counted while it runs on, and
    /// past `MAX_OVERRUNNING` such threads evaluations are refused until they end.
    /// The only test in this binary that overruns, so it owns `OVERRUNNING`.
    #[test]
    fn the_caller_is_answered_on_time_whatever_the_thread_does() {
        let limit = Duration::from_millis(40);
        let stuck = Duration::from_millis(1500);
        let started = std::time::Instant::now();
        let outcome = on_thread_within(limit, move || {
            std::thread::sleep(stuck);
            Ok(1)
        });
        let waited = started.elapsed();
        assert!(
            matches!(outcome, Err(PolicyError::Timeout { .. })),
            "{outcome:?}"
        );
        assert!(waited >= limit, "{waited:?}");
        assert!(
            waited < limit * 3,
            "answered after {waited:?}, limit {limit:?}"
        );
        assert_eq!(OVERRUNNING.load(Ordering::SeqCst), 1);

        for _ in 1..MAX_OVERRUNNING {
            let outcome = on_thread_within(limit, move || {
                std::thread::sleep(stuck);
                Ok(1)
            });
            assert!(
                matches!(outcome, Err(PolicyError::Timeout { .. })),
                "{outcome:?}"
            );
        }
        let refused = on_thread_within(limit, || Ok(1));
        assert!(
            matches!(
                refused,
                Err(PolicyError::Overloaded {
                    running: MAX_OVERRUNNING
                })
            ),
            "{refused:?}"
        );

        // Once the stuck threads end, they stop counting and work is accepted again.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while OVERRUNNING.load(Ordering::SeqCst) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "stuck threads never counted as ended"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(on_thread_within(limit, || Ok(7)).unwrap(), 7);
        // Work that finishes in time is answered, errors included, and a panic is an error.
        assert!(matches!(
            on_thread_within::<()>(limit, || Err(PolicyError::NoModules)),
            Err(PolicyError::NoModules)
        ));
        // (A long limit: printing the panic's backtrace can take longer than 40 ms.)
        let panicked = on_thread_within::<()>(Duration::from_secs(10), || panic!("boom"));
        assert!(
            matches!(panicked, Err(PolicyError::Evaluation { .. })),
            "{panicked:?}"
        );
        assert_eq!(OVERRUNNING.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn ranges_are_opa_ranges_within_the_cap() {
        let eval = |f: fn(Vec<Value>) -> anyhow::Result<Value>, args: &[i64]| {
            f(args.iter().map(|n| Value::from(*n)).collect())
                .map(|v| serde_json::to_value(&v).unwrap())
        };
        assert_eq!(
            eval(range, &[1, 4]).unwrap(),
            serde_json::json!([1, 2, 3, 4])
        );
        assert_eq!(
            eval(range, &[2, -1]).unwrap(),
            serde_json::json!([2, 1, 0, -1])
        );
        assert_eq!(eval(range, &[3, 3]).unwrap(), serde_json::json!([3]));
        assert_eq!(
            eval(range_step, &[0, 10, 4]).unwrap(),
            serde_json::json!([0, 4, 8])
        );
        assert_eq!(
            eval(range_step, &[10, 0, 4]).unwrap(),
            serde_json::json!([10, 6, 2])
        );
        assert!(eval(range_step, &[0, 10, 0]).is_err());
        assert_eq!(
            eval(range, &[1, MAX_RANGE])
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            MAX_RANGE as usize
        );
        let error = eval(range, &[0, MAX_RANGE]).unwrap_err().to_string();
        assert!(error.contains("at most 1000000"), "{error}");
        assert!(eval(range, &[i64::MIN, i64::MAX]).is_err());
        assert!(range(vec![Value::from(1.5), Value::from(3)]).is_err());
        assert!(range(vec![Value::from("1"), Value::from(3)]).is_err());
    }
}
