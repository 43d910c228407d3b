//! `--log-dir`: each instance's raw stdout and stderr kept as private files.

use std::io;
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

/// A file name stem safe on any file system: letters, digits, `.`, `_` and `-` kept, anything
/// else replaced by `_`; when that changed the name, the instance number is added so two
/// names that differ only in unsafe characters cannot share a file.
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
            "{}-{}",
            if safe.is_empty() { "instance" } else { safe },
            id + 1
        )
    }
}

/// Opens a new log file with mode 0600; `None` (with a warning) when that fails.
pub async fn create_private(path: &Path) -> Option<tokio::fs::File> {
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true).mode(0o600);
    match opts.open(path).await {
        Ok(f) => {
            // `mode` applies only to a file created now; an old one is tightened too.
            use std::os::unix::fs::PermissionsExt;
            if let Err(e) = f
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .await
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot make log file private");
            }
            Some(f)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write log file");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_safe_and_distinct() {
        assert_eq!(file_stem("unit-tests", 0), "unit-tests");
        assert_eq!(file_stem("a b", 1), "a_b-2");
        assert_eq!(file_stem("a_b", 2), "a_b");
        assert_eq!(file_stem("../../etc/passwd", 0), "_.._etc_passwd-1");
        assert_eq!(file_stem("..", 4), "instance-5");
        assert_eq!(file_stem("", 0), "instance-1");
    }
}
