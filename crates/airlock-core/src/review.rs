//! Level 2, the rules that do not depend on who runs them: the facts a policy sees, the
//! obligations it answers with, separation of duties, counting approvals against the
//! obligations, and the review clock. The policy language itself (Rego) is evaluated by
//! `airlock-policy`; this module only knows its input and output shapes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::Actor;
use crate::ids::Role;

/// How risky a change is, as the policy judges it. Ordered: `Low < ... < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub const ALL: [Risk; 4] = [Risk::Low, Risk::Medium, Risk::High, Risk::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

impl FromStr for Risk {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Risk::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown risk `{}`; accepted: low, medium, high, critical",
                    crate::ids::printable(text)
                )
            })
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Paths that configure airlock itself or who owns what. A change touching one always
/// needs an `admin` approval, whatever the policy says.
pub fn is_gate_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    path == crate::config::FILE_NAME
        || path.starts_with(".airlock/")
        || name.ends_with(".rego")
        || name == "CODEOWNERS"
}

/// What the policy is told about a change: `input` of the Rego query. Field names are
/// part of the policy contract (documented in the default policy).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyInput {
    pub change: ChangeFacts,
    /// Every path the change touches (old and new paths of renames).
    pub paths: Vec<String>,
    pub files: Vec<FileFacts>,
    pub lines: LineCounts,
    pub findings: FindingFacts,
    pub agent: AgentFacts,
    /// Owners of any touched path, from CODEOWNERS (last matching line wins), sorted.
    pub owners: Vec<String>,
    /// Touched paths that configure airlock or ownership (see [`is_gate_file`]).
    pub gate_files: Vec<String>,
    pub time: TimeFacts,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeFacts {
    pub id: String,
    pub title: String,
    pub revision: i64,
    pub target_branch: String,
    /// Marked urgent by an operator or admin (break-glass).
    pub urgent: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileFacts {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    pub op: crate::change::FileOp,
    pub lines_added: usize,
    pub lines_deleted: usize,
    pub owners: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineCounts {
    pub added: usize,
    pub deleted: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FindingFacts {
    pub total: usize,
    /// Count per severity ("low" … "critical"); every severity is present.
    pub by_severity: BTreeMap<String, usize>,
    /// Count per category ("secret", "sql-injection", …, the scanner's names); only
    /// categories found.
    pub by_category: BTreeMap<String, usize>,
    pub items: Vec<FindingFact>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FindingFact {
    pub rule: String,
    pub category: String,
    pub severity: String,
    pub path: String,
}

impl FindingFacts {
    pub fn from_findings(findings: &[airlock_scan::Finding]) -> FindingFacts {
        let mut facts = FindingFacts {
            total: findings.len(),
            by_severity: ["low", "medium", "high", "critical"]
                .into_iter()
                .map(|s| (s.to_owned(), 0))
                .collect(),
            ..FindingFacts::default()
        };
        for finding in findings {
            *facts
                .by_severity
                .entry(finding.severity.as_str().to_owned())
                .or_default() += 1;
            *facts
                .by_category
                .entry(finding.category.as_str().to_owned())
                .or_default() += 1;
            facts.items.push(FindingFact {
                rule: finding.rule.clone(),
                category: finding.category.as_str().to_owned(),
                severity: finding.severity.as_str().to_owned(),
                path: finding.path.clone(),
            });
        }
        facts
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentFacts {
    pub name: String,
    /// "agent" or "human" (operators and admins may propose too).
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub track_record: TrackRecord,
}

/// The proposer's past changes, by how they ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackRecord {
    pub proposed: u64,
    pub approved: u64,
    pub rejected: u64,
    pub failed: u64,
    pub expired: u64,
    /// Approved, deployed, then rolled back.
    #[serde(default)]
    pub rolled_back: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeFacts {
    /// RFC 3339, UTC.
    pub now: String,
    pub unix_ms: i64,
    /// "monday" … "sunday", UTC.
    pub weekday: String,
    /// 0-23, UTC.
    pub hour: u32,
}

impl TimeFacts {
    pub fn at(unix_ms: i64) -> TimeFacts {
        let days = unix_ms.div_euclid(86_400_000);
        let ms_of_day = unix_ms.rem_euclid(86_400_000);
        // 1970-01-01 was a Thursday.
        const WEEKDAYS: [&str; 7] = [
            "thursday",
            "friday",
            "saturday",
            "sunday",
            "monday",
            "tuesday",
            "wednesday",
        ];
        TimeFacts {
            now: crate::units::rfc3339_utc(unix_ms),
            unix_ms,
            weekday: WEEKDAYS[days.rem_euclid(7) as usize].to_owned(),
            hour: (ms_of_day / 3_600_000) as u32,
        }
    }
}

/// What the policy requires of a change: its answer, validated and completed with the
/// rules airlock enforces whatever the policy says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Obligations {
    pub risk: Risk,
    /// Distinct human approvals needed in all.
    pub approvals: u32,
    /// Approvals needed from members of each group (`@payments` → 1), each from a
    /// different human than any other group's.
    pub groups: BTreeMap<String, u32>,
    /// One approval must come from an `admin` (the change touches gate files).
    pub admin_required: bool,
    /// Reasons the change may not go ahead at all.
    pub deny: Vec<String>,
    /// Staging and integration tests are mandatory before rollout.
    pub staging: bool,
    /// Canary traffic percentages, in order; empty leaves the deployment default.
    pub canary_steps: Vec<u32>,
    /// The policy allows approval without a human (only ever honoured for low risk).
    pub auto_approve: bool,
    /// A break-glass change may skip Level 1's check commands (the scan still runs).
    pub break_glass_skips_checks: bool,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// The most approvals or group members a policy may ask for: a typo such as 100 must not
/// make every change unapprovable without anyone noticing.
pub const MAX_APPROVALS: u32 = 10;

impl Obligations {
    /// Reads the policy's answer (the value of `data.airlock`), strictly: unknown fields,
    /// wrong types and out-of-range values are errors, so a broken policy fails closed.
    /// `gate_files` are the touched gate files, which force an admin approval.
    pub fn from_policy(
        value: &serde_json::Value,
        gate_files: &[String],
    ) -> Result<Obligations, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            risk: Option<Risk>,
            #[serde(default)]
            approvals: Option<RawApprovals>,
            #[serde(default)]
            deny: Vec<String>,
            #[serde(default)]
            stages: Option<RawStages>,
            #[serde(default)]
            auto_approve: bool,
            #[serde(default)]
            break_glass_skips_checks: bool,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawApprovals {
            #[serde(default = "one")]
            count: u32,
            #[serde(default)]
            groups: BTreeMap<String, u32>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawStages {
            #[serde(default = "yes")]
            staging: bool,
            #[serde(default)]
            canary_steps: Vec<u32>,
        }
        // Rules the policy leaves undefined are absent; helper rules a policy defines for
        // itself (lower-case names starting with `_` are conventional) are ignored.
        let mut object = value
            .as_object()
            .cloned()
            .ok_or_else(|| "the policy's package `airlock` produced no object".to_owned())?;
        object.retain(|key, _| !key.starts_with('_'));
        let raw: Raw = serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| {
            format!(
                "the policy's answer is invalid: {e}; accepted rules: risk, approvals {{count, groups}}, deny, stages {{staging, canary_steps}}, auto_approve, break_glass_skips_checks"
            )
        })?;
        let risk = raw
            .risk
            .ok_or("the policy did not define `risk`; accepted: \"low\", \"medium\", \"high\", \"critical\"")?;
        let (count, groups) = raw
            .approvals
            .map(|a| (a.count, a.groups))
            .unwrap_or((1, BTreeMap::new()));
        // At least one human looks at every change the policy does not auto-approve.
        if count == 0 || count > MAX_APPROVALS {
            return Err(format!(
                "`approvals.count` is {count}; accepted: 1 to {MAX_APPROVALS} (approval without a human is `auto_approve`)"
            ));
        }
        for (group, n) in &groups {
            validate_group(group)?;
            if *n == 0 || *n > MAX_APPROVALS {
                return Err(format!(
                    "`approvals.groups[\"{group}\"]` is {n}; accepted: 1 to {MAX_APPROVALS}"
                ));
            }
        }
        let stages = raw.stages.unwrap_or(RawStages {
            staging: true,
            canary_steps: Vec::new(),
        });
        let mut last = 0;
        for &step in &stages.canary_steps {
            if step <= last || step > 100 {
                return Err(format!(
                    "`stages.canary_steps` {:?} is invalid; accepted: increasing percentages from 1 to 100",
                    stages.canary_steps
                ));
            }
            last = step;
        }
        for reason in &raw.deny {
            if reason.trim().is_empty() || reason.len() > 1000 {
                return Err("a `deny` reason is empty or longer than 1000 bytes".to_owned());
            }
        }
        let admin_required = !gate_files.is_empty();
        Ok(Obligations {
            risk,
            approvals: count,
            groups,
            admin_required,
            deny: raw.deny,
            staging: stages.staging,
            canary_steps: stages.canary_steps,
            auto_approve: raw.auto_approve,
            break_glass_skips_checks: raw.break_glass_skips_checks,
        })
    }

    /// Whether the change is approved by rule, with no human: only when the policy says
    /// so, for a low-risk change that is not denied and touches no gate file.
    pub fn approved_by_rule(&self) -> bool {
        self.auto_approve && self.risk == Risk::Low && self.deny.is_empty() && !self.admin_required
    }

    /// Humans needed at least: the total, and one per group slot.
    pub fn humans_needed(&self) -> u32 {
        let slots: u32 = self.groups.values().sum();
        self.approvals
            .max(slots)
            .max(u32::from(self.admin_required))
    }
}

/// Group names as CODEOWNERS writes teams: `@name` or `@org/team`.
pub fn validate_group(group: &str) -> Result<(), String> {
    let body = group.strip_prefix('@').unwrap_or("");
    let ok = !body.is_empty()
        && body.len() <= 100
        && body.split('/').count() <= 2
        && body.split('/').all(|part| {
            part.as_bytes()
                .first()
                .is_some_and(u8::is_ascii_alphanumeric)
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a group; accepted: `@name` or `@org/team` (letters, digits, '-', '_', '.')",
            crate::ids::printable(group)
        ))
    }
}

/// What a reviewer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewVerdict {
    Approve,
    Reject,
    RequestChanges,
}

impl ReviewVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewVerdict::Approve => "approve",
            ReviewVerdict::Reject => "reject",
            ReviewVerdict::RequestChanges => "request_changes",
        }
    }
}

/// Someone who reviews: a human's token, with the groups it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviewer {
    pub name: String,
    pub token_id: crate::ids::TokenId,
    pub role: Role,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One recorded approval of one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub reviewer: Reviewer,
    pub comment: String,
    pub at_ms: i64,
}

/// Why someone may not review a change. Each is a separation-of-duties rule the server
/// enforces; none can be lifted by policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "role `{0}` may not review changes; reviews come from reviewer, operator or admin tokens"
    )]
    NotAReviewer(Role),
    #[error("`{0}` proposed this change and may not review it")]
    Proposer(String),
    #[error("`{0}` owns the agent `{1}` that proposed this change and may not review it")]
    AgentOwner(String, String),
    #[error(
        "`{0}` has already approved revision {1} of this change; approvals are counted once per human"
    )]
    AlreadyApproved(String, i64),
}

/// Whether `reviewer` may review a change proposed by `proposer` (an agent owned by
/// `owner`, when known). Humans are identified by name: two tokens of one name are one
/// human.
pub fn may_review(
    reviewer: &Reviewer,
    proposer: &Actor,
    owner: Option<&str>,
) -> Result<(), Refusal> {
    if !matches!(reviewer.role, Role::Reviewer | Role::Operator | Role::Admin) {
        return Err(Refusal::NotAReviewer(reviewer.role));
    }
    if reviewer.name == proposer.name {
        return Err(Refusal::Proposer(reviewer.name.clone()));
    }
    if owner == Some(reviewer.name.as_str()) {
        return Err(Refusal::AgentOwner(
            reviewer.name.clone(),
            proposer.name.clone(),
        ));
    }
    Ok(())
}

/// How far a change's approvals go towards its obligations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    pub satisfied: bool,
    /// Distinct humans who approved.
    pub approvers: Vec<String>,
    /// What is still missing, in words ("1 more approval", "1 from @security", "an admin").
    pub missing: Vec<String>,
}

/// Counts approvals against obligations. Each human counts once, and fills at most one
/// group slot: "one from @payments and one from @security" takes two people even if one
/// person is in both groups. An admin approval may also fill a group slot.
pub fn assess(obligations: &Obligations, approvals: &[Approval]) -> Assessment {
    // One reviewer per human name; the union of their groups and the highest role.
    let mut humans: BTreeMap<&str, (Vec<&str>, bool)> = BTreeMap::new();
    for approval in approvals {
        let entry = humans.entry(&approval.reviewer.name).or_default();
        entry
            .0
            .extend(approval.reviewer.groups.iter().map(String::as_str));
        entry.1 |= approval.reviewer.role == Role::Admin;
    }
    let names: Vec<&str> = humans.keys().copied().collect();
    let mut missing = Vec::new();

    // Group slots, filled by bipartite matching (augmenting paths; sizes are tiny).
    let slots: Vec<&str> = obligations
        .groups
        .iter()
        .flat_map(|(group, n)| std::iter::repeat_n(group.as_str(), *n as usize))
        .collect();
    let mut holder: Vec<Option<usize>> = vec![None; slots.len()];
    for person in 0..names.len() {
        let mut seen = vec![false; slots.len()];
        augment(person, &names, &humans, &slots, &mut holder, &mut seen);
    }
    let mut group_missing = 0;
    for (group, needed) in &obligations.groups {
        let filled = slots
            .iter()
            .zip(&holder)
            .filter(|(slot, h)| *slot == group && h.is_some())
            .count() as u32;
        if filled < *needed {
            group_missing += needed - filled;
            missing.push(format!("{} from {group}", needed - filled));
        }
    }
    let admin_missing = obligations.admin_required && !humans.values().any(|(_, admin)| *admin);
    if admin_missing {
        missing.push(
            "1 from an admin (the change touches airlock's configuration, policy or CODEOWNERS)"
                .to_owned(),
        );
    }
    // Humans still needed beyond those the group slots and the admin will bring.
    let total = names.len() as u32;
    let needed = obligations.humans_needed();
    let extra = needed
        .saturating_sub(total)
        .saturating_sub(group_missing)
        .saturating_sub(u32::from(admin_missing));
    if extra > 0 {
        missing.push(format!(
            "{extra} more approval{}",
            if extra == 1 { "" } else { "s" }
        ));
    }
    Assessment {
        satisfied: missing.is_empty() && total >= needed,
        approvers: names.iter().map(|n| (*n).to_owned()).collect(),
        missing,
    }
}

fn augment(
    person: usize,
    names: &[&str],
    humans: &BTreeMap<&str, (Vec<&str>, bool)>,
    slots: &[&str],
    holder: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    let groups = &humans[names[person]].0;
    for slot in 0..slots.len() {
        if seen[slot] || !groups.contains(&slots[slot]) {
            continue;
        }
        seen[slot] = true;
        let free = match holder[slot] {
            None => true,
            Some(other) => augment(other, names, humans, slots, holder, seen),
        };
        if free {
            holder[slot] = Some(person);
            return true;
        }
    }
    false
}

/// The review's deadlines, all in Unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewClock {
    pub requested_at_ms: i64,
    /// Half the SLA: reviewers are reminded.
    pub remind_at_ms: i64,
    /// The SLA: the review is escalated.
    pub escalate_at_ms: i64,
    /// When set, a review still open then rejects the change as expired.
    pub expire_at_ms: Option<i64>,
}

impl ReviewClock {
    pub fn start(
        requested_at_ms: i64,
        sla: Duration,
        expire_after: Option<Duration>,
    ) -> ReviewClock {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        ReviewClock {
            requested_at_ms,
            remind_at_ms: requested_at_ms.saturating_add(ms(sla) / 2),
            escalate_at_ms: requested_at_ms.saturating_add(ms(sla)),
            expire_at_ms: expire_after.map(|d| requested_at_ms.saturating_add(ms(d))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ActorKind;

    fn reviewer(name: &str, role: Role, groups: &[&str]) -> Approval {
        Approval {
            reviewer: Reviewer {
                name: name.to_owned(),
                token_id: crate::ids::TokenId::from_bytes([1; 6]),
                role,
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            },
            comment: String::new(),
            at_ms: 0,
        }
    }

    fn obligations(count: u32, groups: &[(&str, u32)], admin: bool) -> Obligations {
        Obligations {
            risk: Risk::Medium,
            approvals: count,
            groups: groups.iter().map(|(g, n)| ((*g).to_owned(), *n)).collect(),
            admin_required: admin,
            deny: vec![],
            staging: true,
            canary_steps: vec![],
            auto_approve: false,
            break_glass_skips_checks: false,
        }
    }

    #[test]
    fn one_human_counts_once_and_fills_one_group_slot() {
        let needs = obligations(2, &[("@payments", 1), ("@security", 1)], false);
        let both = reviewer("carol", Role::Reviewer, &["@payments", "@security"]);
        // The same human twice (two tokens): still one approval.
        let a = assess(&needs, &[both.clone(), both.clone()]);
        assert!(!a.satisfied, "{a:?}");
        assert_eq!(a.approvers, ["carol"]);
        // A second human from security: carol takes payments, dave security.
        let dave = reviewer("dave", Role::Reviewer, &["@security"]);
        let a = assess(&needs, &[both.clone(), dave]);
        assert!(a.satisfied, "{a:?}");
        // Order does not matter: matching moves carol to the slot dave cannot fill.
        let dave = reviewer("dave", Role::Reviewer, &["@security"]);
        assert!(assess(&needs, &[dave, both]).satisfied);
        // Two humans, neither in payments.
        let a = assess(
            &needs,
            &[
                reviewer("x", Role::Reviewer, &["@security"]),
                reviewer("y", Role::Reviewer, &["@security"]),
            ],
        );
        assert_eq!(a.missing, ["1 from @payments"]);
    }

    #[test]
    fn admin_and_counts() {
        let needs = obligations(1, &[], true);
        let a = assess(&needs, &[reviewer("r", Role::Reviewer, &[])]);
        assert!(!a.satisfied);
        assert!(a.missing[0].contains("admin"), "{a:?}");
        assert!(assess(&needs, &[reviewer("root", Role::Admin, &[])]).satisfied);
        let needs = obligations(3, &[], false);
        let a = assess(&needs, &[reviewer("a", Role::Reviewer, &[])]);
        assert_eq!(a.missing, ["2 more approvals"]);
        let a = assess(&obligations(1, &[], true), &[]);
        assert_eq!(a.missing.len(), 1, "the admin is the one approval: {a:?}");
        assert!(!assess(&needs, &[]).satisfied);
    }

    #[test]
    fn separation_of_duties() {
        let agent = Actor {
            kind: ActorKind::Agent,
            name: "bot".into(),
            token_id: None,
        };
        let r = |name: &str, role| reviewer(name, role, &[]).reviewer;
        assert!(may_review(&r("alice", Role::Reviewer), &agent, Some("bob")).is_ok());
        assert_eq!(
            may_review(&r("bob", Role::Admin), &agent, Some("bob")),
            Err(Refusal::AgentOwner("bob".into(), "bot".into()))
        );
        assert_eq!(
            may_review(&r("bot", Role::Reviewer), &agent, None),
            Err(Refusal::Proposer("bot".into()))
        );
        assert_eq!(
            may_review(&r("other-bot", Role::Agent), &agent, None),
            Err(Refusal::NotAReviewer(Role::Agent))
        );
    }

    #[test]
    fn policy_answers_are_read_strictly_and_gate_files_force_an_admin() {
        let value = serde_json::json!({"risk": "low", "auto_approve": true, "_helper": 3});
        let o = Obligations::from_policy(&value, &[]).unwrap();
        assert!(o.approved_by_rule());
        assert_eq!(o.approvals, 1);
        assert!(o.staging);
        let o = Obligations::from_policy(
            &serde_json::json!({"risk": "high", "approvals": {"groups": {"@security": 1}}, "stages": {"canary_steps": [10, 100]}}),
            &[],
        )
        .unwrap();
        assert_eq!(
            (o.approvals, o.staging),
            (1, true),
            "omitted keys keep their safe defaults"
        );
        let o = Obligations::from_policy(&value, &["airlock.toml".into()]).unwrap();
        assert!(o.admin_required && !o.approved_by_rule());
        let o = Obligations::from_policy(
            &serde_json::json!({"risk": "high", "auto_approve": true}),
            &[],
        )
        .unwrap();
        assert!(!o.approved_by_rule(), "never auto-approved above low risk");
        for (bad, what) in [
            (serde_json::json!({}), "risk"),
            (serde_json::json!({"risk": "extreme"}), "extreme"),
            (
                serde_json::json!({"risk": "low", "aprovals": 1}),
                "aprovals",
            ),
            (
                serde_json::json!({"risk": "low", "approvals": {"count": 50}}),
                "1 to 10",
            ),
            (
                serde_json::json!({"risk": "low", "approvals": {"count": 0}}),
                "auto_approve",
            ),
            (
                serde_json::json!({"risk": "low", "approvals": {"groups": {"payments": 1}}}),
                "@name",
            ),
            (
                serde_json::json!({"risk": "low", "stages": {"canary_steps": [5, 1]}}),
                "increasing",
            ),
            (serde_json::json!([1]), "object"),
        ] {
            let error = Obligations::from_policy(&bad, &[]).unwrap_err();
            assert!(error.contains(what), "{bad}: {error}");
        }
    }

    #[test]
    fn gate_files() {
        for path in [
            "airlock.toml",
            ".airlock/policy.rego",
            "policy/x.rego",
            "CODEOWNERS",
            ".github/CODEOWNERS",
            "docs/CODEOWNERS",
        ] {
            assert!(is_gate_file(path), "{path}");
        }
        for path in ["src/airlock.toml.rs", "CODEOWNERS.md", "rego/readme"] {
            assert!(!is_gate_file(path), "{path}");
        }
    }

    #[test]
    fn time_facts_and_review_clock() {
        // 2026-11-23T13:05:00Z is a Monday.
        let t = TimeFacts::at(1_795_439_100_000);
        assert_eq!(t.weekday, "monday");
        assert_eq!(t.hour, 13);
        assert_eq!(t.now, "2026-11-23T13:05:00Z");
        let c = ReviewClock::start(1000, Duration::from_secs(4 * 3600), None);
        assert_eq!(c.remind_at_ms, 1000 + 2 * 3_600_000);
        assert_eq!(c.escalate_at_ms, 1000 + 4 * 3_600_000);
        assert_eq!(c.expire_at_ms, None);
    }
}
