//! A throwaway PostgreSQL server per scenario: its own data directory under /tmp, its
//! own free loopback port, never the machine's shared server on 5432.
//!
//! The server binaries refuse to run as root, so they run as the `postgres` OS user
//! (through `runuser -u postgres --`) when the tests run as root.
//!
//! Besides start and stop, a [`PgServer`] can be **killed with `SIGKILL`** (the postmaster
//! and every server process, as the OOM killer or a crashed host would leave it) and
//! restarted on the same port and data directory: PostgreSQL then runs crash recovery.
//! Because PID 1 of this machine does not reap orphans, the killed processes stay as
//! zombies, which makes PostgreSQL believe its old postmaster still runs; [`start`]
//! therefore removes lock files whose process is dead or a zombie.
//!
//! [`start`]: PgServer::start

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prefix of every directory this module creates under /tmp.
const PREFIX: &str = "resilient_rel_";

/// How the server authenticates TCP clients.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `None`: trust. `Some(pw)`: the superuser `postgres` has this password and TCP
    /// connections must give it (`scram-sha-256`); the Unix socket stays trusted.
    pub superuser_password: Option<String>,
}

/// A PostgreSQL server of our own.
#[derive(Debug)]
pub struct PgServer {
    /// The loopback port it listens on.
    pub port: u16,
    dir: PathBuf,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Where a server binary is: on PATH, else in Debian's `/usr/lib/postgresql/<version>/bin`.
fn pg_bin(program: &str) -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if on_path {
        return program.to_string();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin").join(program))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.is_file());
    versions.sort();
    versions
        .pop()
        .map_or_else(|| program.to_string(), |p| p.to_string_lossy().into_owned())
}

/// Runs a server binary, as `postgres` when we are root, at a lower CPU priority
/// (`nice -n 10`, inherited by the server it starts): on two cores, the server's
/// startup and crash recovery must not preempt the test's own threads, whose latencies
/// the scenarios measure.
fn pg_command(program: &str, args: &[&str]) -> Output {
    let program = &pg_bin(program);
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "nice", "-n", "10", program]);
        c
    } else {
        let mut c = Command::new("nice");
        c.args(["-n", "10", program]);
        c
    };
    let output = command.args(args).output();
    output.unwrap_or_else(|e| {
        panic!(
            "cannot run `{program}` ({e}): the reliability suite needs the PostgreSQL server \
             binaries (`initdb`, `pg_ctl`) on PATH: apt-get install postgresql"
        )
    })
}

fn check(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Whether `pid` is a live process (a zombie counts as dead).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: "pid (comm) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The live children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|ppid| ppid.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .filter(|child| alive(*child))
        .collect()
}

fn sigkill(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-9")
        .args(pids.iter().map(u32::to_string))
        .output();
}

/// Stops servers and removes directories left by test processes that died before
/// cleaning up (their pid is part of the directory name).
fn remove_leftovers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir("/tmp") else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let owner = rest.split('_').next().and_then(|p| p.parse::<u32>().ok());
            if owner.is_some_and(|pid| pid != std::process::id() && !alive(pid)) {
                let server = PgServer {
                    port: 0,
                    dir: entry.path(),
                };
                drop(server); // kills what runs there and removes the directory
            }
        }
    });
}

impl PgServer {
    /// Creates a cluster (trust authentication, superuser `postgres`) on a free
    /// loopback port and starts it.
    pub fn start_new(tag: &str) -> PgServer {
        Self::start_with(tag, &Options::default())
    }

    /// Like [`start_new`](Self::start_new), with options.
    pub fn start_with(tag: &str, options: &Options) -> PgServer {
        remove_leftovers();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "/tmp/{PREFIX}{}_{}_{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        if is_root() {
            check(
                "chown",
                &Command::new("chown")
                    .args(["postgres:postgres", dir.to_str().expect("utf-8 path")])
                    .output()
                    .expect("chown"),
            );
        }
        let data = dir.join("data");
        let data_arg = data.to_str().expect("utf-8 path").to_string();
        let mut args: Vec<String> = vec![
            "-D".into(),
            data_arg,
            "-U".into(),
            "postgres".into(),
            "--no-sync".into(),
        ];
        match &options.superuser_password {
            None => args.extend(["-A".into(), "trust".into()]),
            Some(password) => {
                let pwfile = dir.join("pwfile");
                std::fs::write(&pwfile, format!("{password}\n")).expect("write pwfile");
                if is_root() {
                    let _ = Command::new("chown")
                        .args(["postgres:postgres", pwfile.to_str().expect("utf-8 path")])
                        .output();
                }
                args.extend([
                    "--auth-local=trust".into(),
                    "--auth-host=scram-sha-256".into(),
                    format!("--pwfile={}", pwfile.display()),
                ]);
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        check("initdb", &pg_command("initdb", &args));
        let server = PgServer {
            port: free_port(),
            dir,
        };
        server.start();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The postmaster's pid, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Whether the postmaster runs.
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some_and(alive)
    }

    /// Removes `postmaster.pid` and the socket lock file if the process they name is
    /// gone or a zombie (left by [`kill9`](Self::kill9)).
    fn clear_stale_locks(&self) {
        let locks = [
            self.data().join("postmaster.pid"),
            self.dir.join(format!(".s.PGSQL.{}.lock", self.port)),
        ];
        for lock in locks {
            let pid = std::fs::read_to_string(&lock)
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok());
            if pid.is_some_and(|pid| !alive(pid)) {
                let _ = std::fs::remove_file(&lock);
            }
        }
    }

    /// Starts the server on its port and data directory and waits until it accepts
    /// connections (after crash recovery, if it was killed).
    pub fn start(&self) {
        self.clear_stale_locks();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        let data = self.data();
        let output = pg_command(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-o",
                &options,
                "-l",
                log.to_str().expect("utf-8 path"),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        if !output.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            panic!(
                "pg_ctl start failed: {}\n{}\nserver log:\n{log}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// A clean stop (`pg_ctl stop -m fast`): sessions are terminated with `57P01`.
    pub fn stop(&self) {
        let data = self.data();
        check(
            "pg_ctl stop",
            &pg_command(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().expect("utf-8 path"),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
            ),
        );
    }

    /// `kill -9` of the postmaster and every server process (backends included), as a
    /// crash would leave them: no message to any client, sockets reset by the kernel.
    /// Returns how many processes were killed, once all of them are gone.
    pub fn kill9(&self) -> usize {
        let Some(postmaster) = self.postmaster_pid().filter(|p| alive(*p)) else {
            return 0;
        };
        // Stopped first, so that it forks no new child between the listing and the kill.
        let _ = Command::new("kill")
            .args(["-STOP", &postmaster.to_string()])
            .output();
        let mut pids = children(postmaster);
        pids.push(postmaster);
        sigkill(&pids);
        let end = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|p| alive(*p)) {
            assert!(Instant::now() < end, "server processes survived SIGKILL");
            sigkill(&pids);
            std::thread::sleep(Duration::from_millis(5));
        }
        pids.len()
    }

    /// The URL of database `postgres`, straight to the server (not through a proxy).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL of database `postgres` through a proxy listening on `port`.
    pub fn url_via(port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        if self.postmaster_pid().is_some_and(alive) {
            let _ = pg_command(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap_or_default(),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "10",
                    "stop",
                ],
            );
        }
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
