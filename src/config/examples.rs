//! zen's `--generate-example TYPE` and `--list-examples`: ready-to-edit config files for
//! common workflows, in this tool's config format (which zen's own files also load in).

/// (type, one-line description, config JSON).
pub const EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "data_analysis",
        "explore a data set, then summarise the findings",
        r#"{
  "instances": [
    {"name": "explore", "command": "Explore the data files in data/ and list their columns, sizes and anomalies", "permission_mode": "plan", "allowed_tools": ["Read", "Glob", "Grep"]},
    {"name": "summarise", "command": "Write ANALYSIS.md summarising the key statistics of data/", "permission_mode": "acceptEdits", "allowed_tools": ["Read", "Write"]}
  ],
  "budget": {"overall_tokens": "200K", "enforcement_mode": "warn", "warn_at_percent": 80}
}"#,
    ),
    (
        "code_review",
        "review the code base for bugs, security and style in parallel",
        r#"{
  "instances": [
    {"name": "bugs", "command": "Review src/ for correctness bugs; list each with file:line", "permission_mode": "plan", "allowed_tools": ["Read", "Grep", "Glob"]},
    {"name": "security", "command": "Review src/ for security problems; list each with file:line", "permission_mode": "plan", "allowed_tools": ["Read", "Grep", "Glob"]},
    {"name": "style", "command": "Review src/ for readability and naming; list the worst ten", "permission_mode": "plan", "allowed_tools": ["Read", "Grep", "Glob"]}
  ],
  "budget": {"overall_tokens": "300K", "overall_cost_usd": "$3", "enforcement_mode": "block"}
}"#,
    ),
    (
        "content_creation",
        "draft documentation and a changelog",
        r#"{
  "instances": [
    {"name": "docs", "command": "Update README.md so every command-line flag is documented", "permission_mode": "acceptEdits", "allowed_tools": ["Read", "Edit"]},
    {"name": "changelog", "command": "Write CHANGELOG.md entries for the commits since the last tag", "permission_mode": "acceptEdits", "allowed_tools": ["Read", "Edit", "Bash(git log:*)"]}
  ],
  "budget": {"overall_tokens": "150K", "enforcement_mode": "warn"}
}"#,
    ),
    (
        "testing_workflow",
        "run the test slash commands with per-command budgets",
        r#"{
  "instances": [
    {"name": "unit-tests", "command": "/test --unit", "timeout": "15m"},
    {"name": "integration-tests", "command": "/test --integration", "timeout": "30m"},
    {"name": "lint", "command": "/lint"}
  ],
  "budget": {"overall_tokens": "500K", "commands": {"/test": "400K", "/lint": "50K"}, "enforcement_mode": "block"},
  "profiles": {
    "testing": {"overall_tokens": "50K", "commands": {"/test": "40K"}},
    "production": {"overall_tokens": "2M", "overall_cost_usd": "$20"}
  }
}"#,
    ),
    (
        "migration_workflow",
        "plan a migration, then apply it module by module",
        r#"{
  "instances": [
    {"name": "plan", "command": "Write MIGRATION.md: the steps to move from the old API to the new one", "permission_mode": "plan", "allowed_tools": ["Read", "Grep", "Glob", "Write"]},
    {"name": "apply-core", "command": "Apply MIGRATION.md to src/core", "permission_mode": "acceptEdits", "timeout": "20m"},
    {"name": "apply-cli", "command": "Apply MIGRATION.md to src/cli", "permission_mode": "acceptEdits", "timeout": "20m"}
  ],
  "budget": {"overall_tokens": "600K", "overall_cost_usd": "$6", "enforcement_mode": "block"}
}"#,
    ),
    (
        "debugging_workflow",
        "reproduce a failure, find its cause and propose a fix",
        r#"{
  "instances": [
    {"name": "reproduce", "command": "Reproduce the failing test in tests/ and record the exact error", "permission_mode": "plan", "allowed_tools": ["Read", "Bash(cargo test:*)"]},
    {"name": "root-cause", "command": "Find the root cause of the failing test and explain it with file:line", "permission_mode": "plan", "allowed_tools": ["Read", "Grep", "Glob"]}
  ],
  "budget": {"overall_tokens": "250K", "enforcement_mode": "warn", "warn_at_percent": 70}
}"#,
    ),
];

/// The example config of `kind`, or the one-line error naming the known types.
pub fn example(kind: &str) -> Result<&'static str, String> {
    let k = kind.trim().to_ascii_lowercase().replace('-', "_");
    EXAMPLES
        .iter()
        .find(|(name, _, _)| *name == k)
        .map(|(_, _, json)| *json)
        .ok_or_else(|| {
            let names: Vec<&str> = EXAMPLES.iter().map(|(n, _, _)| *n).collect();
            format!(
                "--generate-example {kind}: no such example; choose one of {} (see --list-examples)",
                names.join(", ")
            )
        })
}

/// `--list-examples`: one type and what it does per line.
pub fn list() -> String {
    let mut out =
        String::from("Example configs (orchestrator --generate-example TYPE > config.json):\n");
    for (name, what, _) in EXAMPLES {
        out.push_str(&format!("  {name:<20} {what}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::parse_config;

    #[test]
    fn every_example_is_a_valid_config() {
        for (name, _, json) in EXAMPLES {
            let f = parse_config(json, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!f.instances.is_empty(), "{name}");
        }
        assert_eq!(EXAMPLES.len(), 6);
    }

    #[test]
    fn lookup_is_forgiving_and_errors_list_the_types() {
        assert!(example("code-review").is_ok());
        assert!(example("Testing_Workflow").is_ok());
        let e = example("nope").unwrap_err();
        assert!(
            e.contains("data_analysis") && e.contains("--list-examples"),
            "{e}"
        );
        assert!(list().contains("debugging_workflow"));
    }
}
