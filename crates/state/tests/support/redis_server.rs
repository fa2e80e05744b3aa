//! A `redis-server` (from the Debian packages) on a loopback port, for the tests of the
//! shared state; shared by `crates/state/tests` and the multi-replica test.
#![allow(dead_code, reason = "each including test uses its own part")]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free loopback port (bound once and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// Starts one on `port` with its data in `dir`, its append-only file synced on every
    /// write (a restart on the same `dir` keeps everything); `None` without `redis-server`.
    pub fn start(port: u16, dir: tempfile::TempDir) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Self { child, port, dir };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start on port {port}");
    }

    /// Starts one on a free port, or says SKIPPED.
    pub fn start_or_skip() -> Option<Self> {
        let server = Self::start(free_port(), tempfile::tempdir().unwrap());
        if server.is_none() {
            eprintln!(
                "SKIPPED: redis-server is not on PATH (scripts/test.sh installs it: apt-get install redis-server)"
            );
        }
        server
    }

    /// Kills it (SIGKILL); returns the port and data a restart needs.
    pub fn kill(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (self.port, dir)
    }
}
