//! A real PostgreSQL server for the tests, never a mock: `initdb` into a temporary
//! directory, the server on 127.0.0.1 (a free port) and a unix socket in that directory,
//! run as the `postgres` user when the tests run as root (CI), stopped and removed at the
//! end. One file for both kinds of test: the unit tests include it (`store::pg_server`,
//! through `#[path]`) and the integration tests have it as `common::pg_server`.
//!
//! [`PgServer::shared`] is one server per test process (it starts in about a second),
//! and each test takes its own database from it ([`PgServer::database`]); a test that
//! takes the server away ([`PgServer::stop`], [`PgServer::start`]) starts its own with
//! [`PgServer::new`].
//!
//! The binaries are looked for under `/usr/lib/postgresql/<version>/bin` (the Debian
//! package `postgresql`; `scripts/test.sh` installs it) or in `ORCHESTRATOR_TEST_PG_BIN`. Without
//! them the tests fail, saying so: they never pass by skipping.
//!
//! Cleanup: the server is a child of a thread that lives as long as the test process and
//! dies with it (`PR_SET_PDEATHSIG`), a server dropped is stopped and its directory
//! removed, the shared one is stopped at exit, and a directory left by a test process
//! that was killed is removed by the next one.
#![allow(dead_code)] // each test crate uses its own subset

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Overrides where the server binaries (`initdb`, `postgres`, `pg_ctl`) are.
pub const BIN_ENV: &str = "ORCHESTRATOR_TEST_PG_BIN";
/// Temporary directories are named `orchestrator-pg-<pid of the test process>-…`.
const DIR_PREFIX: &str = "orchestrator-pg-";
const READY_WITHIN: Duration = Duration::from_secs(60);

pub struct PgServer {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    port: u16,
    password: String,
    /// The `postgres` user's uid and gid when the tests run as root.
    owner: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
}

impl PgServer {
    /// The server of this test process, started on first use.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            let s = PgServer::new();
            extern "C" fn stop_shared() {
                let _ = std::panic::catch_unwind(|| {
                    if let Some(s) = SHARED.get() {
                        s.kill();
                        if let Some(d) = &s.dir {
                            let _ = std::fs::remove_dir_all(d.path());
                        }
                    }
                });
            }
            // SAFETY: registers a plain function to run at exit; it touches only the
            // static above.
            unsafe { libc::atexit(stop_shared) };
            s
        })
    }

    /// A server of its own (stopped and removed when dropped).
    pub fn new() -> PgServer {
        let bin = find_bin().unwrap_or_else(|e| panic!("{e}"));
        let owner = postgres_owner();
        let base = if owner.is_some() {
            // The postgres user must reach it: not under a root-only TMPDIR.
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        sweep_stale(&base);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(&base)
            .expect("a temporary directory for PostgreSQL");
        let password = format!(
            "pw{}x{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).expect("write the password file");
        if let Some((uid, gid)) = owner {
            for p in [dir.path(), &pwfile] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod the temporary directory");
        let data = dir.path().join("data");
        let out = as_postgres(Command::new(bin.join("initdb")), owner)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut last = String::new();
        let mut dir = Some(dir);
        for _ in 0..5 {
            let mut server = PgServer {
                dir: dir.take(),
                bin: bin.clone(),
                port: free_port(),
                password: password.clone(),
                owner,
                child: Mutex::new(None),
            };
            match server.try_start() {
                Ok(()) => return server,
                // Maybe the port was taken in between: another one.
                Err(e) => {
                    last = e;
                    dir = server.dir.take();
                }
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The URL of database `db`.
    pub fn url_of(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// The URL of the server's `postgres` database.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// A new, empty database of this server, for one test: its URL.
    pub fn database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = postgres::Client::connect(&self.url(), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the test server: {e}"));
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.url_of(&name)
    }

    /// Takes the server away: a fast shutdown (`pg_ctl stop -m fast`), which ends every
    /// client's connection.
    pub fn stop(&self) {
        let out = as_postgres(Command::new(self.bin.join("pg_ctl")), self.owner)
            .arg("stop")
            .arg("-D")
            .arg(self.dir().join("data"))
            .args(["-m", "fast", "-w", "-t", "60"])
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(mut c) = self.child.lock().expect("child").take() {
            let _ = c.wait();
        }
    }

    /// Brings a stopped server back, on the same port; returns once it accepts clients.
    pub fn start(&self) {
        if let Err(e) = self.try_start() {
            panic!("PostgreSQL did not start again: {e}");
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let mut slot = self.child.lock().expect("child");
        assert!(slot.is_none(), "the server is already running");
        let log_path = self.dir().join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        if let Some((uid, gid)) = self.owner {
            let _ = std::os::unix::fs::chown(&log_path, Some(uid), Some(gid));
        }
        let mut cmd = as_postgres(Command::new(self.bin.join("postgres")), self.owner);
        cmd.arg("-D")
            .arg(self.dir().join("data"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(self.dir())
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death
        // signal (after the uid change, which would clear it).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = spawn_from_lasting_thread(cmd).map_err(|e| format!("spawn: {e}"))?;
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the server exited ({status}): {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                ));
            }
            let mut config: postgres::Config = self.url().parse().map_err(|e| format!("{e}"))?;
            config.connect_timeout(Duration::from_secs(2));
            if config.connect(postgres::NoTls).is_ok() {
                *slot = Some(child);
                return Ok(());
            }
            if start.elapsed() > READY_WITHIN {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "not ready within {READY_WITHIN:?}: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ends the server at once (an immediate shutdown), if it runs.
    fn kill(&self) {
        let Ok(mut slot) = self.child.lock() else {
            return;
        };
        if let Some(mut c) = slot.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: signals our own child, which has not been reaped yet.
                unsafe { libc::kill(pid, libc::SIGQUIT) };
            }
            let _ = c.wait();
        }
    }
}

impl Default for PgServer {
    fn default() -> Self {
        PgServer::new()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The directory with `initdb`, `pg_ctl` and `postgres`: `ORCHESTRATOR_TEST_PG_BIN`, else
/// the newest `/usr/lib/postgresql/<version>/bin`.
fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(BIN_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").is_file() {
            Ok(dir)
        } else {
            Err(format!(
                "{BIN_ENV}={}: no initdb there; point it at PostgreSQL's bin directory",
                dir.display()
            ))
        };
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "these tests need a real PostgreSQL server, and none was found: no /usr/lib/postgresql/<version>/bin/initdb. Install the Debian package `postgresql` (apt-get install -y postgresql; bash scripts/test.sh does this) or set ORCHESTRATOR_TEST_PG_BIN to PostgreSQL's bin directory".to_string()
    })
}

/// The `postgres` user's uid and gid when this process is root (PostgreSQL refuses to
/// run as root); `None` otherwise (the server runs as the current user).
fn postgres_owner() -> Option<(u32, u32)> {
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    // SAFETY: getpwnam returns a pointer to static storage or null; the fields are read
    // at once.
    let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    assert!(
        !pw.is_null(),
        "the tests run as root, and PostgreSQL will not: there is no `postgres` user to run it as (the Debian package `postgresql` creates it)"
    );
    // SAFETY: checked non-null above.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn as_postgres(mut cmd: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    cmd.env_remove("PGDATA")
        .env("LC_ALL", "C")
        .current_dir("/tmp");
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Spawns `cmd` from a thread that lives as long as the process: the parent-death signal
/// follows the thread that forked, and a test's own thread ends with the test.
fn spawn_from_lasting_thread(cmd: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let jobs = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("pg-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    jobs.lock()
        .map_err(|_| io::Error::other("spawner poisoned"))?
        .send((cmd, tx))
        .map_err(|_| io::Error::other("spawner gone"))?;
    rx.recv().map_err(|_| io::Error::other("spawner gone"))?
}

/// Removes the directories of test processes that no longer exist (killed before they
/// could clean up), ending their server first if it still runs.
fn sweep_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let pidfile = e.path().join("data/postmaster.pid");
        if let Some(server) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        {
            let comm = std::fs::read_to_string(format!("/proc/{server}/comm")).unwrap_or_default();
            if comm.trim() == "postgres" {
                // SAFETY: signals a server left by an earlier test process.
                unsafe { libc::kill(server, libc::SIGQUIT) };
            }
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
}
