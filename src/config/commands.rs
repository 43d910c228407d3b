//! Slash-command discovery (SPEC section 2, `--list-commands` / `--inspect-command`, and
//! the dry run's "slash command not found" check): finds custom commands in
//! `WORKSPACE/.claude/commands/**/*.md` and `HOME/.claude/commands/**/*.md`, reads their
//! front matter, and renders the list and the inspect view. Also knows Claude Code's
//! built-in commands, which have no file.

use anyhow::Context;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Where a command file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandScope {
    /// `WORKSPACE/.claude/commands`.
    Project,
    /// `~/.claude/commands`.
    User,
}

impl CommandScope {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandScope::Project => "project",
            CommandScope::User => "user",
        }
    }
}

/// One custom slash command file.
#[derive(Debug, Clone, PartialEq)]
pub struct SlashCommand {
    /// `/build`, or `/frontend:build` for `frontend/build.md`.
    pub name: String,
    pub path: PathBuf,
    pub scope: CommandScope,
    /// Front matter `description`, else the first non-empty body line.
    pub description: Option<String>,
    /// Simple `key: value` lines of the front matter, quotes stripped.
    pub front_matter: BTreeMap<String, String>,
}

/// Descriptions longer than this are cut with `…` (the list is one line per command).
const MAX_DESCRIPTION_CHARS: usize = 100;

/// Directory nesting we follow at most; deeper trees are almost certainly a symlink
/// loop the visited-set did not catch (e.g. unreadable canonical paths).
const MAX_DEPTH: usize = 32;

/// Claude Code's own slash commands in print mode, which need no file. This is the
/// `slash_commands` list of Claude Code 2.1.197's `init` event (built-ins and bundled
/// skills). Interactive-only commands (`/help`, `/model`, `/login`, …) are left out on
/// purpose: `claude -p` answers them with `Unknown command`, so a dry run should warn.
pub fn builtin_commands() -> &'static [&'static str] {
    &[
        "/batch",
        "/claude-api",
        "/clear",
        "/code-review",
        "/compact",
        "/config",
        "/context",
        "/debug",
        "/deep-research",
        "/fewer-permission-prompts",
        "/goal",
        "/heapdump",
        "/init",
        "/insights",
        "/loop",
        "/reload-skills",
        "/review",
        "/run",
        "/run-skill-generator",
        "/security-review",
        "/simplify",
        "/team-onboarding",
        "/update-config",
        "/usage",
        "/verify",
    ]
}

/// Whether `name` (with or without the leading `/`) is a Claude Code built-in.
pub fn is_builtin(name: &str) -> bool {
    let bare = bare_name(name);
    builtin_commands()
        .iter()
        .any(|b| b.strip_prefix('/') == Some(bare))
}

/// Whether `name` is a discovered custom command or a built-in: a dry run warns about
/// a slash command only when this is false.
pub fn is_known(commands: &[SlashCommand], name: &str) -> bool {
    find(commands, name).is_some() || is_builtin(name)
}

/// Finds the custom commands of a workspace and of the user's home. Project commands
/// shadow user commands of the same name. Sorted by name. A missing folder gives no
/// commands; files that cannot be read are skipped.
pub fn discover(workspace: &Path, home: Option<&Path>) -> Vec<SlashCommand> {
    let mut found: BTreeMap<String, SlashCommand> = BTreeMap::new();
    let mut roots = vec![(workspace.join(".claude/commands"), CommandScope::Project)];
    if let Some(home) = home {
        roots.push((home.join(".claude/commands"), CommandScope::User));
    }
    for (root, scope) in roots {
        let mut files = Vec::new();
        let mut visited = HashSet::new();
        collect_md(&root, &mut Vec::new(), &mut files, &mut visited);
        for (segments, path) in files {
            let name = format!("/{}", segments.join(":"));
            if found.contains_key(&name) {
                // Project roots are read first, so the project file stays.
                continue;
            }
            let Ok(bytes) = fs::read(&path) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let (front_matter, body) = split_front_matter(&text);
            let description = front_matter
                .get("description")
                .map(|d| clean_line(d))
                .filter(|d| !d.is_empty())
                .or_else(|| first_body_line(body));
            found.insert(
                name.clone(),
                SlashCommand {
                    name,
                    path,
                    scope,
                    description,
                    front_matter,
                },
            );
        }
    }
    found.into_values().collect()
}

/// Looks a command up by name, with or without the leading `/`.
pub fn find<'a>(commands: &'a [SlashCommand], name: &str) -> Option<&'a SlashCommand> {
    let bare = bare_name(name);
    commands
        .iter()
        .find(|c| c.name.strip_prefix('/') == Some(bare))
}

/// The `--list-commands` table: name, scope, description, aligned.
pub fn render_list(commands: &[SlashCommand]) -> String {
    if commands.is_empty() {
        return "No custom slash commands found in .claude/commands or ~/.claude/commands.\n"
            .to_owned();
    }
    let name_w = commands
        .iter()
        .map(|c| c.name.chars().count())
        .chain(["NAME".len()])
        .max()
        .unwrap_or(4);
    let scope_w = "project".len();
    let mut out = String::new();
    let _ = writeln!(out, "{:name_w$}  {:scope_w$}  DESCRIPTION", "NAME", "SCOPE");
    for c in commands {
        let desc = c.description.as_deref().unwrap_or("");
        let line = format!(
            "{:name_w$}  {:scope_w$}  {desc}",
            sanitize(&c.name),
            c.scope.as_str()
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// The `--inspect-command` view: name, scope, path, front matter and body. Reads the
/// file again so the body shown is the current one.
pub fn render_inspect(cmd: &SlashCommand) -> anyhow::Result<String> {
    let bytes = fs::read(&cmd.path).with_context(|| {
        format!(
            "cannot read slash command {} at {}",
            cmd.name,
            cmd.path.display()
        )
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let (front_matter, body) = split_front_matter(&text);
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", sanitize(&cmd.name), cmd.scope.as_str());
    let _ = writeln!(out, "path: {}", cmd.path.display());
    if let Some(d) = &cmd.description {
        let _ = writeln!(out, "description: {d}");
    }
    if front_matter.is_empty() {
        let _ = writeln!(out, "front matter: none");
    } else {
        let _ = writeln!(out, "front matter:");
        for (k, v) in &front_matter {
            let _ = writeln!(out, "  {}: {}", sanitize(k), sanitize(v));
        }
    }
    let _ = writeln!(out, "body:");
    for line in body.lines() {
        let line = sanitize(line.trim_end());
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "  {line}");
        }
    }
    Ok(out)
}

fn bare_name(name: &str) -> &str {
    let name = name.trim();
    name.strip_prefix('/').unwrap_or(name)
}

/// Appends every `*.md` file under `dir` with its path segments (without `.md`).
/// Symlinked directories are followed once each; unreadable entries are skipped.
fn collect_md(
    dir: &Path,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, PathBuf)>,
    visited: &mut HashSet<PathBuf>,
) {
    if prefix.len() > MAX_DEPTH {
        return;
    }
    if let Ok(canonical) = fs::canonicalize(dir) {
        if !visited.insert(canonical) {
            return;
        }
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            // A non-UTF-8 name cannot be typed as a slash command.
            continue;
        };
        // fs::metadata follows symlinks, so linked files and folders count.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            prefix.push(file_name);
            collect_md(&path, prefix, out, visited);
            prefix.pop();
        } else if meta.is_file() {
            if let Some(stem) = file_name.strip_suffix(".md").filter(|s| !s.is_empty()) {
                let mut segments = prefix.clone();
                segments.push(stem.to_owned());
                out.push((segments, path));
            }
        }
    }
}

/// Splits `---\nkey: value\n---\nbody` into simple key/value pairs and the body. Only
/// what command files use is understood: `key: value` lines (quotes stripped) and
/// `- item` lists under an empty key (joined with `, `). Text without a closed front
/// matter block is all body.
fn split_front_matter(text: &str) -> (BTreeMap<String, String>, &str) {
    let mut map = BTreeMap::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return (map, text);
    };
    let mut offset = 0;
    let mut end = None;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            end = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let Some((fm_end, body_start)) = end else {
        return (map, text);
    };
    let mut last_key: Option<String> = None;
    for line in rest[..fm_end].lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if let (true, Some(key)) = (indented || line.starts_with('-'), &last_key) {
            if let Some(item) = line.trim().strip_prefix('-') {
                let item = unquote(item.trim());
                if let Some(v) = map.get_mut(key) {
                    let v: &mut String = v;
                    if !v.is_empty() {
                        v.push_str(", ");
                    }
                    v.push_str(item);
                }
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            let key = k.trim().to_owned();
            if key.is_empty() {
                continue;
            }
            map.insert(key.clone(), unquote(v.trim()).to_owned());
            last_key = Some(key);
        }
    }
    (map, &rest[body_start..])
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

fn first_body_line(body: &str) -> Option<String> {
    body.lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty())
        .map(clean_line)
}

/// One display line: control characters (a file could hold terminal escapes) become
/// spaces, and long text is cut at a character boundary.
fn clean_line(s: &str) -> String {
    let s = sanitize(s.trim());
    if s.chars().count() > MAX_DESCRIPTION_CHARS {
        let mut cut: String = s.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
        cut.truncate(cut.trim_end().len());
        cut.push('…');
        cut
    } else {
        s
    }
}

/// One line of a command file, safe to print (see `core::text`).
fn sanitize(s: &str) -> String {
    crate::core::text::sanitize(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            if let Err(e) = fs::create_dir_all(parent) {
                panic!("mkdir {}: {e}", parent.display());
            }
        }
        if let Err(e) = fs::write(&path, text) {
            panic!("write {}: {e}", path.display());
        }
    }

    fn tmp() -> TempDir {
        match TempDir::new() {
            Ok(t) => t,
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    fn names(cmds: &[SlashCommand]) -> Vec<&str> {
        cmds.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn nested_folders_become_colon_names_sorted() {
        let ws = tmp();
        write(ws.path(), ".claude/commands/test.md", "Run the tests\n");
        write(
            ws.path(),
            ".claude/commands/frontend/build.md",
            "Build the UI\n",
        );
        write(ws.path(), ".claude/commands/a/b/c.md", "deep\n");
        write(ws.path(), ".claude/commands/notes.txt", "not a command\n");
        let cmds = discover(ws.path(), None);
        assert_eq!(names(&cmds), ["/a:b:c", "/frontend:build", "/test"]);
        assert!(cmds.iter().all(|c| c.scope == CommandScope::Project));
        assert_eq!(
            find(&cmds, "frontend:build").map(|c| c.path.clone()),
            Some(ws.path().join(".claude/commands/frontend/build.md"))
        );
    }

    #[test]
    fn front_matter_gives_description_and_fields() {
        let ws = tmp();
        write(
            ws.path(),
            ".claude/commands/test.md",
            "---\ndescription: \"Run the unit tests\"\nallowed-tools: Bash(cargo test:*)\nmodel: 'sonnet'\nargument-hint:\n  - suite\n  - filter\n---\n\n# Test\nRun $ARGUMENTS\n",
        );
        let cmds = discover(ws.path(), None);
        let c = &cmds[0];
        assert_eq!(c.description.as_deref(), Some("Run the unit tests"));
        assert_eq!(
            c.front_matter.get("allowed-tools").map(String::as_str),
            Some("Bash(cargo test:*)")
        );
        assert_eq!(
            c.front_matter.get("model").map(String::as_str),
            Some("sonnet")
        );
        assert_eq!(
            c.front_matter.get("argument-hint").map(String::as_str),
            Some("suite, filter")
        );
    }

    #[test]
    fn without_front_matter_the_first_body_line_describes() {
        let ws = tmp();
        write(
            ws.path(),
            ".claude/commands/lint.md",
            "\n\n## Lint the code   \nthen fix it\n",
        );
        let long = "x".repeat(300);
        write(ws.path(), ".claude/commands/long.md", &long);
        write(ws.path(), ".claude/commands/empty.md", "");
        write(
            ws.path(),
            ".claude/commands/blankdesc.md",
            "---\ndescription:\n---\nFallback line\n",
        );
        let cmds = discover(ws.path(), None);
        let desc = |n: &str| find(&cmds, n).and_then(|c| c.description.clone());
        assert_eq!(desc("/lint").as_deref(), Some("Lint the code"));
        assert_eq!(desc("/empty"), None);
        assert_eq!(desc("/blankdesc").as_deref(), Some("Fallback line"));
        let long_desc = desc("/long").unwrap_or_default();
        assert_eq!(long_desc.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(long_desc.ends_with('…'));
    }

    #[test]
    fn unclosed_front_matter_is_body() {
        let (fm, body) = split_front_matter("---\ndescription: x\nno end");
        assert!(fm.is_empty());
        assert_eq!(body, "---\ndescription: x\nno end");
    }

    #[test]
    fn crlf_front_matter_is_read() {
        let (fm, body) = split_front_matter("---\r\ndescription: win\r\n---\r\nbody\r\n");
        assert_eq!(fm.get("description").map(String::as_str), Some("win"));
        assert_eq!(body, "body\r\n");
    }

    #[test]
    fn missing_folders_give_no_commands() {
        let ws = tmp();
        let home = tmp();
        assert!(discover(ws.path(), Some(home.path())).is_empty());
        assert!(discover(&ws.path().join("does-not-exist"), None).is_empty());
        assert!(render_list(&[]).starts_with("No custom slash commands"));
    }

    #[test]
    fn project_commands_shadow_user_commands() {
        let ws = tmp();
        let home = tmp();
        write(ws.path(), ".claude/commands/test.md", "project test\n");
        write(home.path(), ".claude/commands/test.md", "user test\n");
        write(home.path(), ".claude/commands/deploy.md", "user deploy\n");
        let cmds = discover(ws.path(), Some(home.path()));
        assert_eq!(names(&cmds), ["/deploy", "/test"]);
        let test = find(&cmds, "/test");
        assert_eq!(test.map(|c| c.scope), Some(CommandScope::Project));
        assert_eq!(
            test.and_then(|c| c.description.as_deref()),
            Some("project test")
        );
        assert_eq!(
            find(&cmds, "deploy").map(|c| c.scope),
            Some(CommandScope::User)
        );
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_files_are_skipped_and_symlink_loops_end() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let ws = tmp();
        write(ws.path(), ".claude/commands/ok.md", "fine\n");
        write(ws.path(), ".claude/commands/secret.md", "hidden\n");
        let secret = ws.path().join(".claude/commands/secret.md");
        let _ = fs::set_permissions(&secret, fs::Permissions::from_mode(0o000));
        let dir = ws.path().join(".claude/commands");
        let _ = symlink(&dir, dir.join("loop"));
        let cmds = discover(ws.path(), None);
        // Root can read anything, so the mode-000 file may legitimately be listed.
        let readable = fs::read(&secret).is_ok();
        assert_eq!(find(&cmds, "/secret").is_some(), readable);
        assert!(find(&cmds, "/ok").is_some());
        // The loop/ symlink leads back to a folder already read: no /loop:ok, /loop:loop:ok…
        assert_eq!(cmds.len(), if readable { 2 } else { 1 });
        let _ = fs::set_permissions(&secret, fs::Permissions::from_mode(0o644));
    }

    #[test]
    fn builtins_are_known_without_files_and_others_are_not() {
        let ws = tmp();
        write(ws.path(), ".claude/commands/test.md", "t\n");
        let cmds = discover(ws.path(), None);
        for b in ["/clear", "/compact", "/review", "security-review", "/usage"] {
            assert!(is_builtin(b), "{b}");
            assert!(is_known(&cmds, b), "{b}");
        }
        assert!(is_known(&cmds, "/test"));
        assert!(is_known(&cmds, " test"));
        assert!(!is_known(&cmds, "/tset"));
        assert!(!is_builtin("/help"));
        assert!(builtin_commands().iter().all(|b| b.starts_with('/')));
    }

    #[test]
    fn list_is_an_aligned_table() {
        let ws = tmp();
        let home = tmp();
        write(
            ws.path(),
            ".claude/commands/frontend/build.md",
            "---\ndescription: Build the UI\n---\n",
        );
        write(ws.path(), ".claude/commands/t.md", "Short \x1b[31mred\n");
        write(home.path(), ".claude/commands/nodesc.md", "");
        let out = render_list(&discover(ws.path(), Some(home.path())));
        assert_eq!(
            out,
            "NAME             SCOPE    DESCRIPTION\n\
             /frontend:build  project  Build the UI\n\
             /nodesc          user\n\
             /t               project  Short [31mred\n"
        );
    }

    #[test]
    fn inspect_shows_path_front_matter_and_body() {
        let ws = tmp();
        write(
            ws.path(),
            ".claude/commands/test.md",
            "---\ndescription: Run tests\nmodel: sonnet\n---\nRun the tests for $ARGUMENTS.\n\nThen report.\n",
        );
        let cmds = discover(ws.path(), None);
        let Some(cmd) = find(&cmds, "test") else {
            panic!("test command not found");
        };
        let out = match render_inspect(cmd) {
            Ok(o) => o,
            Err(e) => panic!("inspect: {e:#}"),
        };
        let path = ws.path().join(".claude/commands/test.md");
        assert_eq!(
            out,
            format!(
                "/test (project)\npath: {}\ndescription: Run tests\nfront matter:\n  description: Run tests\n  model: sonnet\nbody:\n  Run the tests for $ARGUMENTS.\n\n  Then report.\n",
                path.display()
            )
        );
    }

    #[test]
    fn inspect_of_a_vanished_file_is_an_error_naming_it() {
        let ws = tmp();
        write(ws.path(), ".claude/commands/gone.md", "x\n");
        let cmds = discover(ws.path(), None);
        let _ = fs::remove_file(ws.path().join(".claude/commands/gone.md"));
        let Some(cmd) = find(&cmds, "/gone") else {
            panic!("gone not discovered");
        };
        match render_inspect(cmd) {
            Ok(o) => panic!("expected an error, got {o}"),
            Err(e) => {
                let msg = format!("{e:#}");
                assert!(msg.contains("/gone") && msg.contains("gone.md"), "{msg}");
            }
        }
    }
}
