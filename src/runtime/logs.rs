//! `--log-dir`: each instance's raw stdout and stderr kept as private files.
//!
//! Guarantees (docs/hardening.md, issue 13 items 3 and 4):
//! - the directory is ours (or root's) and, if others may write into it, sticky — so
//!   nobody else can swap our files for links; otherwise the run is refused;
//! - files are created exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600): a link
//!   someone planted is never followed, an existing file is never truncated;
//! - files of an earlier run at this run's names are removed before anything is
//!   launched (only when they are ours), so they are never mistaken for this run's;
//! - every instance gets its own pair of files (see [`assign_stems`]);
//! - a failure to create or write a log is reported once per instance, never silent.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Creates the log directory (and missing parents) readable by the owner only. An
/// existing directory keeps its mode — changing it could lock others out of a shared
/// folder (`--log-dir /tmp`) — but the files written into it are always 0600.
pub fn create_dir(dir: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(dir.to_path_buf());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    Ok(dir.to_path_buf())
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a directory in which someone else could replace our log files: one owned by
/// another user (root excepted), or one that others may write into without the sticky
/// bit (which stops them from removing or renaming files that are not theirs).
pub fn check_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        // Created later by `create_dir`, as ours and 0700.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("--log-dir {}: {e}", dir.display())),
    };
    let me = euid();
    let owner = meta.uid();
    if owner != me && owner != 0 {
        return Err(format!(
            "--log-dir {}: owned by another user (uid {owner}), who could replace the log files; use a directory of your own",
            dir.display()
        ));
    }
    let mode = meta.mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(format!(
            "--log-dir {}: others may write into it (mode {:o}) and it is not sticky, so they could replace the log files; use a directory of your own or chmod go-w it",
            dir.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// A file name stem safe on any file system: letters, digits, `.`, `_` and `-` kept,
/// anything else replaced by `_`. When that changed the name, `~` and the instance
/// number are added: `~` never survives in a stem of an unchanged name, so a changed
/// name can never take the file of another instance's legal name (`a b` → `a_b~2`,
/// whatever `a_b-2` or `a_b~2` may be called).
pub fn file_stem(name: &str, id: usize) -> String {
    let safe: String = name
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.');
    if safe == name && !safe.is_empty() {
        safe.to_string()
    } else {
        format!(
            "{}~{}",
            if safe.is_empty() { "instance" } else { safe },
            id + 1
        )
    }
}

/// The stems of a run's instances, distinct even on a case-insensitive file system:
/// a stem equal (ignoring ASCII case) to an earlier one gets `~` and its number too.
pub fn assign_stems<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .enumerate()
        .map(|(id, name)| {
            let mut stem = file_stem(name, id);
            if !seen.insert(stem.to_ascii_lowercase()) {
                stem = format!("{stem}~{}", id + 1);
                seen.insert(stem.to_ascii_lowercase());
            }
            stem
        })
        .collect()
}

/// The two log files of an instance.
pub fn paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.jsonl")),
        dir.join(format!("{stem}.stderr")),
    )
}

/// Removes what an earlier run left at this run's log file names, before anything is
/// launched. Only our own files (or links) are removed; anything else is an error that
/// names the file.
pub fn remove_stale(dir: &Path, stems: &[String]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = euid();
    for stem in stems {
        let (out, err) = paths(dir, stem);
        for path in [out, err] {
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("--log-dir: {}: {e}", path.display())),
            };
            let kind = meta.file_type();
            if meta.uid() != me || !(kind.is_file() || kind.is_symlink()) {
                return Err(format!(
                    "--log-dir: {} exists and is not a file of ours to replace (owner uid {}); remove it or choose another --log-dir",
                    path.display(),
                    meta.uid()
                ));
            }
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(format!(
                        "--log-dir: cannot remove the earlier run's {}: {e}",
                        path.display()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Writes all of `parts` with as few `writev` calls as the file accepts.
fn write_all_vectored<'a>(
    f: &mut std::fs::File,
    parts: impl IntoIterator<Item = &'a [u8]>,
) -> io::Result<()> {
    let mut parts: Vec<&[u8]> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    let mut first = 0;
    while first < parts.len() {
        let slices: Vec<io::IoSlice<'_>> =
            parts[first..].iter().map(|p| io::IoSlice::new(p)).collect();
        let mut n = f.write_vectored(&slices)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while first < parts.len() && n >= parts[first].len() {
            n -= parts[first].len();
            first += 1;
        }
        if first < parts.len() {
            parts[first] = &parts[first][n..];
        }
    }
    Ok(())
}

/// Small lines are gathered up to this before they are written.
const BUF: usize = 8 * 1024;

/// One log file being written. Creation and write errors are kept (the first one), the
/// file is dropped after an error, and [`LogFile::finish`] reports it once.
#[derive(Debug)]
pub struct LogFile {
    file: Option<std::fs::File>,
    /// Small lines not written yet; allocated with the first one, so the log of a stream
    /// that stays empty (most instances' stderr) holds no buffer.
    buf: Vec<u8>,
    path: PathBuf,
    error: Option<String>,
}

impl LogFile {
    /// Creates `path` exclusively, mode 0600, without following a link at that name.
    /// Plain (blocking) calls: nothing here can panic for want of a thread.
    pub fn create(path: &Path) -> LogFile {
        use std::os::unix::fs::OpenOptionsExt;
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path);
        let (file, error) = match opened {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(format!("cannot create {}: {e}", path.display()))),
        };
        LogFile {
            file,
            buf: Vec::new(),
            path: path.to_path_buf(),
            error,
        }
    }

    /// Appends `parts`; after the first error nothing more is written. Small lines are
    /// gathered in the buffer; a line larger than what it has free goes to the file
    /// after what the buffer holds, both in one `writev`, never a write per part.
    pub fn write(&mut self, parts: &[&[u8]]) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if self.buf.len() + total <= BUF {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(BUF);
            }
            parts.iter().for_each(|p| self.buf.extend_from_slice(p));
            return;
        }
        let all = std::iter::once(&self.buf[..]).chain(parts.iter().copied());
        match write_all_vectored(f, all) {
            Ok(()) => self.buf.clear(),
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: io::Error) {
        if self.error.is_none() {
            self.error = Some(format!("cannot write {}: {e}", self.path.display()));
        }
        self.file = None;
        self.buf = Vec::new();
    }

    /// Writes what is buffered and closes the file; the first error it ever met, if any.
    pub fn finish(mut self) -> Option<String> {
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = write_all_vectored(f, [&self.buf[..]]) {
                self.fail(e);
            }
        }
        self.error.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_safe_and_distinct() {
        assert_eq!(file_stem("unit-tests", 0), "unit-tests");
        assert_eq!(file_stem("a b", 1), "a_b~2");
        assert_eq!(file_stem("a_b", 2), "a_b");
        assert_eq!(file_stem("a_b~2", 2), "a_b_2~3");
        assert_eq!(file_stem("../../etc/passwd", 0), "_.._etc_passwd~1");
        assert_eq!(file_stem("..", 4), "instance~5");
        assert_eq!(file_stem("", 0), "instance~1");
    }

    #[test]
    fn changed_names_never_take_a_legal_names_file() {
        // The collisions of issue 13: `a b` defaulted to `a_b-2`, `é` to `_-4`.
        let names = ["a_b-2", "a b", "_-4", "x", "é", "A", "a"];
        let stems = assign_stems(names.iter().copied());
        assert_eq!(stems, ["a_b-2", "a_b~2", "_-4", "x", "_~5", "A", "a~7"]);
        let lower: std::collections::HashSet<String> =
            stems.iter().map(|s| s.to_ascii_lowercase()).collect();
        assert_eq!(lower.len(), stems.len());
    }

    proptest::proptest! {
        #[test]
        fn stems_of_distinct_names_are_distinct(names in proptest::collection::hash_set(".{0,6}", 1..20)) {
            let names: Vec<String> = names.into_iter().collect();
            let stems = assign_stems(names.iter().map(String::as_str));
            let lower: std::collections::HashSet<String> =
                stems.iter().map(|s| s.to_ascii_lowercase()).collect();
            proptest::prop_assert_eq!(lower.len(), stems.len());
            for s in &stems {
                proptest::prop_assert!(!s.starts_with('.') && !s.contains('/') && !s.is_empty());
            }
        }
    }

    #[test]
    fn create_never_follows_a_link_nor_truncates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").expect("victim");
        let link = dir.path().join("a.jsonl");
        std::os::unix::fs::symlink(&victim, &link).expect("link");
        let mut log = LogFile::create(&link);
        log.write(&[b"x"]);
        let err = log.finish().expect("an error");
        assert!(err.contains("cannot create"), "{err}");
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        let existing = dir.path().join("b.jsonl");
        std::fs::write(&existing, "old").expect("old");
        assert!(LogFile::create(&existing).finish().is_some());
        assert_eq!(std::fs::read(&existing).expect("read"), b"old");
    }

    #[test]
    fn stale_files_of_ours_are_removed_links_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("x.jsonl"), "old").expect("old");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("x.stderr")).expect("link");
        remove_stale(dir.path(), &["x".into(), "y".into()]).expect("removed");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
        assert!(std::path::Path::new("/etc/passwd").exists());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Lines gathered in the buffer and lines written past it with one `writev`, in
        /// any order and size: the file holds exactly the lines, in order.
        #[test]
        fn the_log_is_the_lines_as_written(
            sizes in proptest::collection::vec(
                proptest::prop_oneof![0usize..200, 0usize..9_000, 60_000usize..140_000],
                1..40,
            ),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("log.jsonl");
            let lines: Vec<Vec<u8>> = sizes
                .iter()
                .zip((b'a'..=b'z').cycle())
                .map(|(&n, fill)| vec![fill; n])
                .collect();
            let mut log = LogFile::create(&path);
            for line in &lines {
                log.write(&[line, b"\n"]);
            }
            proptest::prop_assert_eq!(log.finish(), None);
            let expected: Vec<u8> = lines.iter().flat_map(|l| [&l[..], b"\n"].concat()).collect();
            let bytes = std::fs::read(&path).expect("read log");
            proptest::prop_assert_eq!(bytes.len(), expected.len());
            proptest::prop_assert!(bytes == expected);
        }
    }

    #[test]
    fn write_errors_are_kept_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = LogFile::create(&dir.path().join("ok.jsonl"));
        log.write(&[b"line", b"\n"]);
        assert_eq!(log.finish(), None);
        if std::path::Path::new("/dev/full").exists() {
            let mut full = LogFile {
                file: std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .ok(),
                buf: Vec::new(),
                path: "/dev/full".into(),
                error: None,
            };
            for _ in 0..1000 {
                full.write(&[b"0123456789abcdefghij"]);
            }
            let err = full.finish().expect("an error");
            assert!(err.contains("No space left"), "{err}");
        }
    }
}
