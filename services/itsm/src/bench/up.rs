//! `itsm up` as a child process, for benchmarks that measure the suite as users run it: its
//! start time, its memory, and load through its gateway.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `itsm up`; killed when dropped (call [`UpProcess::stop`] for a clean stop).
pub struct UpProcess {
    child: Child,
    /// (service, host:port) in the order `itsm up` prints them; the gateway first.
    pub endpoints: Vec<(String, String)>,
    /// The dev admin token `itsm up` wrote.
    pub token: String,
    /// From spawning the process to its "all services SERVING" line.
    pub started_in: Duration,
}

impl UpProcess {
    /// Starts `itsm` (`binary`) with `up --base-port 0` on `data_dir`, with `env` added.
    pub async fn start(binary: &Path, data_dir: &Path, env: &[(&str, String)]) -> Result<Self, String> {
        let started = Instant::now();
        let mut command = Command::new(binary);
        command
            .args(["up", "--base-port", "0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut endpoints = Vec::new();
        let mut started_in = None;
        let reading = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("itsm up: all services SERVING") {
                    started_in = Some(started.elapsed());
                    continue;
                }
                if started_in.is_some() && line.starts_with("  ") {
                    let mut parts = line.split_whitespace();
                    if let (Some(name), Some(addr)) = (parts.next(), parts.next()) {
                        endpoints.push((name.to_string(), addr.to_string()));
                    }
                }
                if line.starts_with("stop with Ctrl-C") {
                    return true;
                }
            }
            false
        };
        let ready = tokio::time::timeout(Duration::from_secs(120), reading).await.unwrap_or(false);
        let started_in = started_in.filter(|_| ready).ok_or("itsm up did not report SERVING within 120 s")?;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let token = std::fs::read_to_string(data_dir.join("dev-admin.token"))
            .map_err(|e| format!("dev token: {e}"))?
            .trim()
            .to_string();
        Ok(Self { child, endpoints, token, started_in })
    }

    /// `http://host:port` of `service`.
    pub fn url(&self, service: &str) -> Result<String, String> {
        self.endpoints
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, addr)| format!("http://{addr}"))
            .ok_or_else(|| format!("itsm up printed no address for {service}"))
    }

    /// Resident memory of the process, in MiB (Linux `/proc`).
    pub fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        let kib: f64 =
            status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// SIGTERM, then waits for a clean exit (telemetry is flushed on the way out).
    pub async fn stop(mut self) -> Result<(), String> {
        let pid = self.child.id().ok_or("itsm up already exited")?;
        let signalled = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        if !signalled.is_ok_and(|s| s.success()) {
            return Err("could not signal itsm up".into());
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("itsm up exited with {status}")),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("itsm up did not stop within 30 s".into()),
        }
    }
}

/// The `itsm` binary to run: `--itsm` when given, else this very program.
pub fn itsm_binary(given: Option<&PathBuf>) -> Result<PathBuf, String> {
    match given {
        Some(path) => Ok(path.clone()),
        None => std::env::current_exe().map_err(|e| format!("cannot find the itsm binary: {e}")),
    }
}
