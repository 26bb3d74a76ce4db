# airlock review policy (Rego v1).
#
# airlock evaluates `data.airlock` for every revision of every change that passed Level 1
# (scan and checks), and reads the rules below as the change's obligations: its risk,
# who must approve it, whether it is refused outright, and how it must be rolled out.
# Edit this file to suit your team; it is a gate file, so changing it itself needs an
# admin's approval. Every module of a policy declares `package airlock`.
#
# The policy sees nothing but `input`: no clock (use input.time), no network, no
# environment, no files, no randomness. The builtins that would reach them (time.now_ns,
# http.send, opa.runtime, rand.intn, uuid.rfc4122, net.lookup_ip_addr) are not
# available, and a policy that calls one fails. Evaluation is time-limited; a policy that fails, times out or answers
# something invalid holds the change (fail closed). Builtin errors are errors, not
# undefined values. `numbers.range` returns at most 1,000,000 numbers.
#
# ---------------------------------------------------------------------------------------
# INPUT (every field is always present unless marked optional)
#
#   input.change.id             string   the change's id
#   input.change.title          string
#   input.change.revision       number   1 for the first revision, +1 per revision
#   input.change.target_branch  string   e.g. "main"
#   input.change.urgent         bool     marked urgent by an operator or admin (break-glass)
#
#   input.paths                 [string] every path the change touches, repository-
#                                        relative ("src/main.rs"), old and new paths of renames
#   input.files[_].path         string
#   input.files[_].old_path     string   optional: the old path of a rename or copy
#   input.files[_].op           string   "add", "modify", "delete", "rename" or "copy"
#   input.files[_].lines_added  number
#   input.files[_].lines_deleted number
#   input.files[_].owners       [string] the file's CODEOWNERS owners (last match wins)
#
#   input.lines.added           number   lines added over the whole change
#   input.lines.deleted         number   lines deleted over the whole change
#
#   input.findings.total        number   scanner findings that did not block Level 1
#                                        (low and medium ones by default, and findings
#                                        allowed inline or by an allowlist)
#   input.findings.by_severity  object   count per severity: "low", "medium", "high",
#                                        "critical" (all four always present)
#   input.findings.by_category  object   count per category, only categories found:
#                                        "secret", "sql-injection", "command-injection",
#                                        "destructive-op", "schema-contract", "ci-tamper",
#                                        "gate-tamper", "test-weakening", "mass-deletion",
#                                        "insecure-config", "unsafe-deserialization",
#                                        "dependency-change"
#   input.findings.items[_]     object   {rule, category, severity, path} per finding
#
#   input.agent.name            string   who proposed the change
#   input.agent.kind            string   "agent" or "human" (operators and admins propose too)
#   input.agent.owner           string   optional: the human who runs the agent
#   input.agent.track_record    object   the proposer's past changes by how they ended:
#                                        {proposed, approved, rejected, failed, expired,
#                                         rolled_back (approved, deployed, then reverted)}
#
#   input.owners                [string] CODEOWNERS owners of any touched path, sorted:
#                                        "@user", "@org/team" or email addresses
#   input.gate_files            [string] touched paths that configure airlock or
#                                        ownership: airlock.toml, .airlock/*, *.rego,
#                                        CODEOWNERS (such a change always needs an admin)
#
#   input.time.now              string   RFC 3339, UTC, when the policy is evaluated
#   input.time.unix_ms          number
#   input.time.weekday          string   "monday" ... "sunday", UTC
#   input.time.hour             number   0-23, UTC
#
# ---------------------------------------------------------------------------------------
# OUTPUT (rules of package airlock; rules left undefined take the default shown)
#
#   risk                      "low" | "medium" | "high" | "critical"   required
#   approvals.count           0-10: distinct humans who must approve   default 1
#   approvals.groups          {"@group": n}: n approvals (1-10) from members of each
#                             group, each from a different human       default {}
#   deny                      set of reasons (non-empty strings) why the change may not
#                             go ahead at all; empty lets it through   default empty
#   stages.staging            bool: staging and integration tests are mandatory
#                                                                      default true
#   stages.canary_steps       increasing traffic percentages, 1-100; [] leaves the
#                             deployment's default                     default []
#   auto_approve              bool: approve without a human; honoured only for "low"
#                             risk, nothing denied, no gate file       default false
#   break_glass_skips_checks  bool: an urgent (break-glass) change may skip Level 1's
#                             check commands (the scan always runs)    default false
#
# Any other rule whose name does not start with `_` is an error (a misspelt rule must
# not be silently ignored), so helper rules below are named `_like_this`. Whatever the
# policy says, airlock adds: a change touching a gate file needs an admin's approval
# and at least one human; nobody approves their own change or their agent's.
# ---------------------------------------------------------------------------------------

package airlock

# ---- risk -----------------------------------------------------------------------------
#
# critical: a gate file is touched; or a finding of category secret, gate-tamper or
#           ci-tamper reached the policy (it did not block Level 1, e.g. it was allowed
#           inline, but a human must still see it); or more than 1000 lines are deleted.
# high:     a finding of severity medium or above; or a finding of category
#           schema-contract, dependency-change or destructive-op; or a migration changes
#           (a path under migrations/, db/migrate/ or alembic/, at any depth); or more
#           than 500 lines change (added + deleted).
# low:      every path is documentation or tests (see _is_docs_or_tests), at most 100
#           lines change, and there are no findings at all.
# medium:   anything else.

risk := "critical" if _critical

risk := "high" if {
	not _critical
	_high
}

risk := "low" if {
	not _critical
	not _high
	_low
}

risk := "medium" if {
	not _critical
	not _high
	not _low
}

_lines_changed := input.lines.added + input.lines.deleted

_critical if count(input.gate_files) > 0

_critical if {
	some finding in input.findings.items
	finding.category in {"secret", "gate-tamper", "ci-tamper"}
}

_critical if input.lines.deleted > 1000

_high if {
	some finding in input.findings.items
	finding.severity in {"medium", "high", "critical"}
}

_high if {
	some finding in input.findings.items
	finding.category in {"schema-contract", "dependency-change", "destructive-op"}
}

# A migration, checked over all paths at once: a function called per path costs the
# interpreter several times more (a change of 30 files spent most of its decision on
# it). Paths never hold a newline, so a directory found in the joined text is a
# directory of one path.
_high if strings.any_prefix_match(input.paths, _migration_dirs)

_high if {
	some dir in _migration_dirs
	contains(_paths_text, concat("", ["/", dir]))
}

_high if _lines_changed > 500

# The cheap conditions first: a change with findings or many lines is not low, whatever
# its paths.
_low if {
	input.findings.total == 0
	_lines_changed <= 100
	count(input.paths) > 0
	every path in input.paths {
		_is_docs_or_tests(path)
	}
}

# A directory name anywhere in the path: "migrations/001.sql" and
# "services/billing/migrations/001.sql" are both migrations.
_migration_dirs := ["migrations/", "db/migrate/", "alembic/"]

_paths_text := concat("\n", input.paths)

# Documentation: under a docs/ or doc/ directory, or a .md, .rst, .adoc or .txt file
# (except the .txt files that are really build inputs: requirements*.txt,
# constraints*.txt, CMakeLists.txt).
_is_docs_or_tests(path) if _in_dir(path, {"docs", "doc"})

_is_docs_or_tests(path) if {
	some extension in {".md", ".rst", ".adoc", ".txt"}
	endswith(path, extension)
	not _is_build_text(_file_name(path))
}

# Tests: under a tests/, test/, __tests__/ or spec/ directory, or a file named the way
# test runners find tests: *_test.go, test_*.py, *_test.py, *.test.ts, *.spec.ts (and the
# same for .js, .tsx and .jsx), *_test.rs, *_spec.rb.
_is_docs_or_tests(path) if _in_dir(path, {"tests", "test", "__tests__", "spec"})

_is_docs_or_tests(path) if {
	name := _file_name(path)
	some suffix in {
		"_test.go", "_test.py", "_test.rs", "_spec.rb",
		".test.ts", ".spec.ts", ".test.tsx", ".spec.tsx",
		".test.js", ".spec.js", ".test.jsx", ".spec.jsx",
	}
	endswith(name, suffix)
}

_is_docs_or_tests(path) if {
	name := _file_name(path)
	startswith(name, "test_")
	endswith(name, ".py")
}

_is_build_text(name) if startswith(name, "requirements")

_is_build_text(name) if startswith(name, "constraints")

_is_build_text(name) if name == "CMakeLists.txt"

# Whether a directory (not the file itself) of the path has one of these names.
_in_dir(path, names) if {
	parts := split(path, "/")
	some i, part in parts
	i < count(parts) - 1
	part in names
}

_file_name(path) := parts[count(parts) - 1] if parts := split(path, "/")

# ---- approvals ------------------------------------------------------------------------
#
# count: 1 human for low and medium risk, 2 for high and critical.
# groups: one approval from each CODEOWNERS owner of the touched files that is a user or
# a team ("@name", "@org/team"; email owners cannot be matched to airlock's reviewers
# and are skipped). So a change touching a migration owned by @payments and a file
# owned by @security needs one approval from each. Groups add up: this is stricter than
# GitHub, where any one owner of a file may approve it. A touched path nobody owns
# (a migration with no CODEOWNERS line, say) adds no group; its risk still counts.

approvals := {"count": _approvals_count, "groups": _approvals_groups}

_approvals_count := 2 if risk in {"high", "critical"}

_approvals_count := 1 if risk in {"low", "medium"}

_approvals_groups := {owner: 1 |
	some owner in input.owners
	startswith(owner, "@")
}

# ---- deny -----------------------------------------------------------------------------
#
# One rule, easy to explain: a change deleting more than 20,000 lines is too large for a
# human to review; it must be split.

deny contains reason if {
	input.lines.deleted > 20000
	reason := sprintf(
		"the change deletes %d lines (more than 20000): too large to review; split it into smaller changes",
		[input.lines.deleted],
	)
}

# An example of a time-window rule (disabled): agents may not change gate files outside
# working hours, 08:00-18:00 UTC, Monday to Friday. input.time is the only clock a
# policy has.
#
# deny contains "agents may change airlock's configuration, policy or CODEOWNERS only on weekdays 08:00-18:00 UTC" if {
# 	input.agent.kind == "agent"
# 	count(input.gate_files) > 0
# 	not _working_hours
# }
#
# _working_hours if {
# 	not input.time.weekday in {"saturday", "sunday"}
# 	input.time.hour >= 8
# 	input.time.hour < 18
# }

# ---- stages ---------------------------------------------------------------------------
#
# Staging always. Canary traffic in the deployment's steps (`deploy.steps`, by default
# 1, 5, 25, 50, 100 %), or in 7 smaller ones for critical changes.

stages := {"staging": true, "canary_steps": _canary_steps}

_canary_steps := [1, 2, 5, 10, 25, 50, 100] if risk == "critical"

_canary_steps := [] if risk != "critical"

# ---- auto_approve ---------------------------------------------------------------------
#
# Never by default: every change is seen by a human. An example (disabled) that lets an
# agent with a clean record through on low-risk changes; airlock honours auto_approve
# only for low risk with nothing denied and no gate file, whatever this rule says.

default auto_approve := false

# auto_approve if {
# 	risk == "low"
# 	input.agent.kind == "agent"
# 	input.agent.track_record.approved >= 20
# 	input.agent.track_record.rejected + input.agent.track_record.failed + input.agent.track_record.rolled_back == 0
# }

# ---- break_glass_skips_checks -----------------------------------------------------------
#
# An urgent change still runs Level 1's check commands.

break_glass_skips_checks := false
