//! `airlock scan`: the dangerous-change scanner on a diff, standalone, in the output
//! formats of the public contract (text, JSON, SARIF 2.1.0).

use std::io::IsTerminal;
use std::path::Path;

use airlock_scan::{Finding, RulePack, ScanOptions, Scanner, Severity};
use anyhow::Context;
use serde_json::{Value, json};

use crate::Outcome;
use crate::cli::ScanFormat;

/// Without an airlock.toml, findings at or above this severity block, as Level 1's default.
const BLOCKING: Severity = Severity::High;

/// Scans with the rules and allowlists of the repository's airlock.toml when `dir` is in
/// a repository that has one, else with the built-in rules. In a repository, the patch
/// is taken to apply to `HEAD`, whose tree the rules that need more than the diff read
/// (the schema its SQL files declare).
pub fn run(dir: &Path, patch: &str, format: ScanFormat) -> anyhow::Result<Outcome> {
    let diff = crate::commands::read_patch(patch)?;
    let repo = airlock_git::Repo::open(dir).ok();
    let head = repo
        .as_ref()
        .and_then(|repo| repo.resolve_commit("HEAD").ok());
    let base = repo
        .as_ref()
        .zip(head.as_ref())
        .map(|(repo, commit)| airlock_server::GitTree { repo, commit });
    let configured = repo
        .as_ref()
        .filter(|repo| repo.root().join(airlock_core::config::FILE_NAME).exists());
    let (scanner, options, blocking) = match configured {
        Some(repo) => {
            let (repo, config) = crate::commands::load(repo.root())?;
            let (scanner, options) = airlock_server::scanning(repo.root(), &config)?;
            (scanner, options, config.scan.blocking)
        }
        None => {
            let scanner = Scanner::new(&RulePack::builtin())
                .context("the built-in rule pack does not compile")?;
            (scanner, ScanOptions::default(), BLOCKING)
        }
    };
    let report = scanner
        .scan_in(
            &diff,
            &options,
            base.as_ref()
                .map(|tree| tree as &dyn airlock_scan::BaseTree),
        )
        .context("cannot scan the patch")?;
    match format {
        ScanFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "findings": report.findings }))?
        ),
        ScanFormat::Sarif => println!(
            "{}",
            serde_json::to_string_pretty(&sarif(&scanner, &report.findings))?
        ),
        ScanFormat::Text => print_text(&report.findings, blocking),
    }
    Ok(if report.blocking(blocking).next().is_some() {
        Outcome::Rejected
    } else {
        Outcome::Success
    })
}

fn print_text(findings: &[Finding], blocking: Severity) {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let paint = |code: &str, text: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    };
    for finding in findings {
        let severity = match finding.severity {
            Severity::Critical | Severity::High => paint("1;31", finding.severity.as_str()),
            Severity::Medium => paint("33", finding.severity.as_str()),
            Severity::Low => paint("36", finding.severity.as_str()),
        };
        let allowed = finding
            .allowed
            .as_deref()
            .map(|why| format!(" (allowed: {why})"))
            .unwrap_or_default();
        println!(
            "{}:{}: {severity} {} [{}]{allowed}",
            finding.path, finding.line, finding.rule, finding.category
        );
        println!("    {}", finding.message);
        if let Some(preview) = &finding.preview {
            println!("    | {preview}");
        }
        println!("    fix: {}", finding.remediation);
    }
    let count = findings.iter().filter(|f| f.blocks(blocking)).count();
    println!(
        "{} findings, {count} blocking (severity {blocking} or above)",
        findings.len()
    );
}

/// A SARIF 2.1.0 log: one run, every rule of the pack with its metadata, one result per
/// finding with its location and fingerprint.
fn sarif(scanner: &Scanner, findings: &[Finding]) -> Value {
    let level = |severity: Severity| match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    };
    let rules: Vec<Value> = scanner
        .rules()
        .iter()
        .map(|rule| {
            json!({
                "id": rule.id,
                "shortDescription": { "text": rule.message },
                "help": { "text": rule.remediation },
                "defaultConfiguration": { "level": level(rule.severity) },
                "properties": { "tags": [rule.category.as_str()], "severity": rule.severity.as_str() },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|finding| {
            let mut result = json!({
                "ruleId": finding.rule,
                "level": level(finding.severity),
                "message": { "text": finding.message },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": finding.path },
                        "region": { "startLine": finding.line.max(1) },
                    }
                }],
                "partialFingerprints": { "airlock/v1": finding.fingerprint },
                "properties": { "category": finding.category.as_str(), "severity": finding.severity.as_str() },
            });
            if let Some(index) = scanner.rules().iter().position(|rule| rule.id == finding.rule) {
                result["ruleIndex"] = index.into();
            }
            if let Some(reason) = &finding.allowed {
                result["suppressions"] = json!([{ "kind": "inSource", "justification": reason }]);
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "airlock",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}
