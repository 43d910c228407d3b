//! How things end: the orchestrator's own exit codes (SPEC section 6), owned by one enum,
//! and how a child process ended.

use std::fmt;

/// The orchestrator's exit code. The numbers are part of the scripting contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Every instance completed.
    Success,
    /// An instance failed, timed out or was interrupted; or the run itself failed.
    Failed,
    /// Bad command line or config: nothing was launched.
    Usage,
    /// A budget stopped (terminated or blocked) an instance.
    Budget,
    /// Stopped by a signal from outside: 128 + the signal number.
    Signal(Interrupt),
}

impl ExitCode {
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Failed => 1,
            ExitCode::Usage => 2,
            ExitCode::Budget => 3,
            ExitCode::Signal(i) => 128 + i.signal_number(),
        }
    }
}

/// How the run was interrupted from outside. All three are handled alike (SPEC section 6:
/// stop launching, SIGTERM every instance's group, SIGKILL after `--kill-grace`, write the
/// report); SIGHUP — the terminal went away — is treated as an interrupt rather than left
/// to its default action, which would kill the orchestrator and orphan every instance. A
/// second signal of any of the three kills every instance at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Int,
    Term,
    Hup,
}

impl Interrupt {
    pub fn signal_number(self) -> i32 {
        match self {
            Interrupt::Int => libc::SIGINT,
            Interrupt::Term => libc::SIGTERM,
            Interrupt::Hup => libc::SIGHUP,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Interrupt::Int => "interrupted (SIGINT)",
            Interrupt::Term => "terminated by SIGTERM",
            Interrupt::Hup => "hung up (SIGHUP)",
        }
    }
}

/// How a child ended. Both fields are `None` only when the status could not be
/// collected at all (someone else reaped the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => match signal_name(s) {
                Some(name) => write!(f, "killed by {name}"),
                None => write!(f, "killed by signal {s}"),
            },
            (None, None) => write!(f, "unknown exit status"),
        }
    }
}

pub fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_scripting_contract() {
        assert_eq!(ExitCode::Success.code(), 0);
        assert_eq!(ExitCode::Failed.code(), 1);
        assert_eq!(ExitCode::Usage.code(), 2);
        assert_eq!(ExitCode::Budget.code(), 3);
        assert_eq!(ExitCode::Signal(Interrupt::Int).code(), 130);
        assert_eq!(ExitCode::Signal(Interrupt::Term).code(), 143);
        assert_eq!(ExitCode::Signal(Interrupt::Hup).code(), 129);
    }

    #[test]
    fn exit_info_says_how_a_child_ended() {
        let e = |code, signal| ExitInfo { code, signal }.to_string();
        assert_eq!(e(Some(3), None), "exit code 3");
        assert_eq!(e(None, Some(libc::SIGKILL)), "killed by SIGKILL");
        assert_eq!(e(None, Some(64)), "killed by signal 64");
        assert_eq!(e(None, None), "unknown exit status");
    }
}
