//! How one instance is launched: the exact claude argv (SPEC section 4), shell quoting for
//! showing it to people, and finding the executable on `PATH`. No process is spawned here.
//!
//! Output formats: for `stream-json`, Claude Code requires `--verbose` with `-p`, and
//! `--include-partial-messages` (which gives the `stream_event` usage frames the live
//! accounting needs) only works with `-p` and `stream-json`. For `json` both are left out:
//! `--include-partial-messages` does not apply, and `--verbose` would turn the single
//! result object into an array of every message; without it claude prints one `result`
//! object, which the accounting reads like the last line of a stream.

use crate::core::plan::{InstanceSpec, OutputFormat};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The arguments after the program name, in SPEC order, the prompt last after `--` so a
/// prompt that starts with `-` stays a prompt.
pub fn claude_args(spec: &InstanceSpec) -> Vec<String> {
    claude_args_resuming(spec, None)
}

/// The prompt a resumed conversation is given (after a usage limit reset).
pub const RESUME_PROMPT: &str = "continue";

/// The argv of an instance; with `resume`, the same flags continuing Claude session
/// `resume` (`--resume ID`, in place of any `--session-id`) with [`RESUME_PROMPT`].
pub fn claude_args_resuming(spec: &InstanceSpec, resume: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-p".into(),
        "--output-format".into(),
        spec.output_format.as_str().into(),
    ];
    if spec.output_format == OutputFormat::StreamJson {
        a.push("--verbose".into());
        a.push("--include-partial-messages".into());
    }
    if let Some(m) = &spec.permission_mode {
        a.push("--permission-mode".into());
        a.push(m.clone());
    }
    if let Some(m) = &spec.model {
        a.push("--model".into());
        a.push(m.clone());
    }
    if !spec.allowed_tools.is_empty() {
        a.push("--allowedTools".into());
        a.push(spec.allowed_tools.join(","));
    }
    if !spec.disallowed_tools.is_empty() {
        a.push("--disallowedTools".into());
        a.push(spec.disallowed_tools.join(","));
    }
    match (resume, &spec.session_id) {
        (Some(r), _) => {
            a.push("--resume".into());
            a.push(r.to_string());
        }
        (None, Some(s)) => {
            a.push("--session-id".into());
            a.push(s.clone());
        }
        (None, None) => {}
    }
    if let Some(c) = spec.max_cost {
        a.push("--max-budget-usd".into());
        // Shortest decimal that round-trips: 0.5 → "0.5", never "0.50000000001".
        a.push(format!("{}", c.as_dollars()));
    }
    a.extend(spec.extra_args.iter().cloned());
    a.push("--".into());
    a.push(match resume {
        Some(_) => RESUME_PROMPT.to_string(),
        None => spec.command.clone(),
    });
    a
}

/// POSIX shell quoting: bare when every character is safe, else single quotes with
/// embedded `'` written as `'\''`.
pub fn shell_quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// A whole command line, quoted for a POSIX shell.
pub fn shell_join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| shell_quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The executable `program` names: a path with a `/` is checked as it is; a bare name is
/// looked up in `PATH`. Only regular files with an execute bit count.
pub fn find_in_path(program: &Path) -> Option<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    find_in(program, &path_var)
}

/// `find_in_path` with the search path given, so it can be tested without the environment.
pub fn find_in(program: &Path, path_var: &OsStr) -> Option<PathBuf> {
    if program.as_os_str().is_empty() {
        return None;
    }
    if program.components().count() > 1 || program.is_absolute() {
        return is_executable(program).then(|| program.to_path_buf());
    }
    std::env::split_paths(path_var)
        // An empty PATH entry means "current directory"; running whatever `claude` sits
        // in the current directory is a classic trap, so it is skipped.
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::usage::Usd;

    fn spec(command: &str) -> InstanceSpec {
        InstanceSpec {
            name: "x".into(),
            command: command.into(),
            ..InstanceSpec::default()
        }
    }

    #[test]
    fn minimal_argv_is_exactly_the_spec_prefix() {
        assert_eq!(
            claude_args(&spec("/test --unit")),
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--include-partial-messages",
                "--",
                "/test --unit"
            ]
        );
    }

    #[test]
    fn full_argv_keeps_spec_order_and_prompt_last() {
        let s = InstanceSpec {
            permission_mode: Some("acceptEdits".into()),
            model: Some("sonnet".into()),
            allowed_tools: vec!["Read".into(), "Bash(cargo test:*)".into()],
            disallowed_tools: vec!["WebFetch".into()],
            session_id: Some("123e4567-e89b-12d3-a456-426614174000".into()),
            max_cost: Some(Usd::from_dollars(0.3)),
            extra_args: vec!["--append-system-prompt".into(), "Be brief.".into()],
            ..spec("-rf is a prompt")
        };
        assert_eq!(
            claude_args(&s),
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--include-partial-messages",
                "--permission-mode",
                "acceptEdits",
                "--model",
                "sonnet",
                "--allowedTools",
                "Read,Bash(cargo test:*)",
                "--disallowedTools",
                "WebFetch",
                "--session-id",
                "123e4567-e89b-12d3-a456-426614174000",
                "--max-budget-usd",
                "0.3",
                "--append-system-prompt",
                "Be brief.",
                "--",
                "-rf is a prompt"
            ]
        );
    }

    #[test]
    fn json_output_drops_streaming_flags() {
        let s = InstanceSpec {
            output_format: OutputFormat::Json,
            ..spec("hi")
        };
        assert_eq!(
            claude_args(&s),
            ["-p", "--output-format", "json", "--", "hi"]
        );
    }

    #[test]
    fn quoting_is_bare_when_safe_and_round_trips_quotes() {
        assert_eq!(shell_quote("--output-format"), "--output-format");
        assert_eq!(shell_quote("/usr/bin/claude"), "/usr/bin/claude");
        assert_eq!(shell_quote("a,b=c:d@e%f+g"), "a,b=c:d@e%f+g");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("/test --unit"), "'/test --unit'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("Bash(git:*)"), "'Bash(git:*)'");
        assert_eq!(shell_join(&["claude", "-p", "a b"]), "claude -p 'a b'");
    }

    #[test]
    fn quoted_strings_survive_a_real_shell() {
        let tricky = ["it's", "a\nb", "$(echo no)", "`x`", "\\", "*", "é ü"];
        for t in tricky {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(t)))
                .output();
            if let Ok(out) = out {
                assert_eq!(String::from_utf8_lossy(&out.stdout), t);
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn path_lookup_respects_execute_bit_and_slashes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let plain = a.join("claude");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let exe = b.join("claude");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(a.join("dir-claude")).unwrap();

        let path = std::env::join_paths([&a, &b]).unwrap();
        // The non-executable one comes first on PATH and is skipped.
        assert_eq!(find_in(Path::new("claude"), &path), Some(exe.clone()));
        assert_eq!(find_in(Path::new("dir-claude"), &path), None);
        assert_eq!(find_in(Path::new("nope"), &path), None);
        assert_eq!(find_in(&exe, OsStr::new("")), Some(exe.clone()));
        assert_eq!(find_in(&plain, &path), None);
        assert_eq!(find_in(Path::new(""), &path), None);
    }
}
