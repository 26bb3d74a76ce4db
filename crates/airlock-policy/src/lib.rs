//! Review policies: a Rego policy (evaluated by `regorus`, in-process) turns the facts
//! about a change (`airlock_core::review::PolicyInput`) into obligations
//! (`airlock_core::review::Obligations`), under a time limit, failing closed; plus the
//! default policy `airlock init` writes, and the CODEOWNERS reader that supplies the
//! owners the policy sees.
//!
//! No I/O except [`Policy::load`], which reads one file. Evaluation reaches no clock, no
//! network, no environment and no file: the builtins that would (`time.now_ns`,
//! `http.send`, `opa.runtime`, `uuid.rfc4122`) are compiled out, and `rand.intn` is
//! replaced by one that refuses, so a decision is a function of (policy, input).

mod codeowners;
mod policy;

pub use codeowners::{CodeOwners, CodeOwnersError};
pub use policy::{DEFAULT_POLICY, Policy, PolicyError};
