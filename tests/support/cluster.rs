//! A throwaway PostgreSQL cluster for tests that stop or restart the server: its own
//! data directory under /tmp and its own loopback port. The server binaries refuse to
//! run as root, so they run as the `postgres` OS user (through `runuser`) when the test
//! runs as root.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct Cluster {
    pub port: u16,
    dir: PathBuf,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a server binary, as `postgres` when we are root.
fn pg_command(program: &str, args: &[&str]) -> std::process::Output {
    let output = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--", program])
            .args(args)
            .output()
    } else {
        Command::new(program).args(args).output()
    };
    output.unwrap_or_else(|e| {
        panic!(
            "cannot run `{program}` ({e}): the outage tests need the PostgreSQL server binaries \
             (`initdb`, `pg_ctl`) on PATH: apt-get install postgresql"
        )
    })
}

fn check(what: &str, output: std::process::Output) {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Cluster {
    /// Creates and starts a cluster on a free loopback port (trust authentication,
    /// superuser `postgres`).
    pub fn start_new() -> Cluster {
        let dir = PathBuf::from(format!("/tmp/{}", super::pg::unique_name("_cluster")));
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        if is_root() {
            check(
                "chown",
                Command::new("chown")
                    .args(["postgres:postgres", dir.to_str().expect("utf-8 path")])
                    .output()
                    .expect("chown"),
            );
        }
        let data = dir.join("data");
        check(
            "initdb",
            pg_command(
                "initdb",
                &[
                    "-D",
                    data.to_str().expect("utf-8 path"),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                ],
            ),
        );
        let cluster = Cluster {
            port: super::closed_port(),
            dir,
        };
        cluster.start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        check(
            "pg_ctl start",
            pg_command(
                "pg_ctl",
                &[
                    "-D",
                    &self.data(),
                    "-o",
                    &options,
                    "-l",
                    log.to_str().expect("utf-8 path"),
                    "-w",
                    "start",
                ],
            ),
        );
    }

    /// Stops the server with `mode` (`smart`, `fast` or `immediate`); `wait` for it to end.
    pub fn stop(&self, mode: &str, wait: bool) {
        let wait = if wait { "-w" } else { "-W" };
        check(
            "pg_ctl stop",
            pg_command("pg_ctl", &["-D", &self.data(), "-m", mode, wait, "stop"]),
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Whether the server's port accepts TCP connections.
    pub fn listening(&self) -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = pg_command(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
