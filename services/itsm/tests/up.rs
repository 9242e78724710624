//! `itsm up` as a user runs it: every service SERVING, a write through the gateway, SIGTERM
//! exits 0 within 10 s, and after a restart on the same data directory the write is there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use itsm_proto::cmdb::cmdb_service_client::CmdbServiceClient;
use itsm_proto::cmdb::{ConfigurationItem, CreateConfigurationItemRequest, ListConfigurationItemsRequest};

struct Up {
    child: Child,
    endpoints: Vec<(String, String)>,
}

fn start(data_dir: &std::path::Path) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_itsm"))
        .args(["up", "--base-port", "0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn itsm up");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut endpoints = Vec::new();
    let mut ready = false;
    while let Some(Ok(line)) = lines.next() {
        if line.starts_with("itsm up: all services SERVING") {
            ready = true;
            continue;
        }
        if ready && line.starts_with("  ") {
            let mut parts = line.split_whitespace();
            if let (Some(name), Some(addr)) = (parts.next(), parts.next()) {
                endpoints.push((name.to_string(), addr.to_string()));
            }
        }
        if line.starts_with("stop with Ctrl-C") {
            break;
        }
    }
    assert!(ready, "itsm up did not report SERVING");
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Up { child, endpoints }
}

fn terminate(mut up: Up) {
    let started = Instant::now();
    let status = Command::new("kill").args(["-TERM", &up.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            assert!(status.success(), "itsm up exited with {status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "itsm up did not stop within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_everything_and_stops_cleanly_without_losing_writes() {
    let dir = tempfile::tempdir().unwrap();
    let up = start(dir.path());
    let names: Vec<&str> = up.endpoints.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["gateway", "service-desk", "incident", "change", "cmdb", "delivery"]);
    for (name, addr) in &up.endpoints {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.status, 1, "{name} is not SERVING");
    }
    let token = std::fs::read_to_string(dir.path().join("dev-admin.token")).unwrap();
    let gateway = format!("http://{}", up.endpoints[0].1);
    let mut cmdb = CmdbServiceClient::connect(gateway.clone()).await.unwrap();
    let item = ConfigurationItem {
        display_name: "kept".into(),
        ci_class: "application".into(),
        ..Default::default()
    };
    let created = cmdb
        .create_configuration_item(authed(
            CreateConfigurationItemRequest { configuration_item: Some(item), request_id: String::new() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    drop(cmdb);
    terminate(up);

    // Same data directory: the acknowledged write is still there, and the old token still works.
    let up = start(dir.path());
    let gateway = format!("http://{}", up.endpoints[0].1);
    let mut cmdb = CmdbServiceClient::connect(gateway).await.unwrap();
    let listed = cmdb
        .list_configuration_items(authed(ListConfigurationItemsRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.configuration_items.len(), 1);
    assert_eq!(listed.configuration_items[0].name, created.name);
    drop(cmdb);
    terminate(up);
}

/// Runs `git` in `dir` as a fixed author at a fixed time.
fn git(dir: &std::path::Path, args: &[&str], time: &str) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ann Lee")
        .env("GIT_AUTHOR_EMAIL", "ann@example.com")
        .env("GIT_COMMITTER_NAME", "Ann Lee")
        .env("GIT_COMMITTER_EMAIL", "ann@example.com")
        .env("GIT_AUTHOR_DATE", time)
        .env("GIT_COMMITTER_DATE", time)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

#[test]
fn the_client_imports_a_git_history_and_reports_unauthorised_changesets() {
    let data = tempfile::tempdir().unwrap();
    let up = start(data.path());
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"], "2026-03-01T10:00:00Z");
    for (i, message) in ["CHG0000042: tune the cache", "quick fix"].iter().enumerate() {
        std::fs::write(repo.path().join(format!("file{i}")), message).unwrap();
        git(repo.path(), &["add", "."], "2026-03-01T10:00:00Z");
        git(repo.path(), &["commit", "-q", "-m", message], &format!("2026-03-0{}T10:00:00Z", i + 1));
    }
    let itsm = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_itsm"))
            .args(args)
            .args(["--gateway", &format!("http://{}", up.endpoints[0].1), "--token-file"])
            .arg(data.path().join("dev-admin.token"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let path = repo.path().to_str().unwrap();
    let out = itsm(&["change", "import-changesets", "git", path, "-o", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["recorded"], 2);
    // No change exists in this fresh suite: the number in the message names nothing yet.
    assert_eq!(report["unlinked"], 2);
    let out = itsm(&["change", "changesets", "--unauthorized"]);
    assert!(out.contains("names no existing change: CHG0000042"), "{out}");
    assert!(out.contains("names no change"), "{out}");
    // Importing again records nothing new.
    let out = itsm(&["change", "import-changesets", "git", path]);
    assert!(out.starts_with("recorded 2 changesets"), "{out}");
    let out = itsm(&["change", "changesets", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["changesets"].as_array().unwrap().len(), 2);
    terminate(up);
}

#[test]
fn a_bad_configuration_key_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_itsm"))
        .args(["up", "--base-port", "0", "--data-dir"])
        .arg(dir.path())
        .env("ITSM__DATABASE__MAX_CONNECTONS", "5")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("database.max_connectons") && stderr.contains("ITSM__DATABASE__MAX_CONNECTONS"),
        "{stderr}"
    );
}

#[test]
fn migrate_prepares_every_service_database_including_the_gateways() {
    let dir = tempfile::tempdir().unwrap();
    for service in ["gateway", "service-desk", "incident", "change", "cmdb", "delivery"] {
        let url = format!("sqlite://{}", dir.path().join(format!("{service}.db")).display());
        let output = Command::new(env!("CARGO_BIN_EXE_itsm"))
            .args(["migrate", service])
            .env("ITSM__DATABASE__URL", &url)
            .output()
            .unwrap();
        assert!(output.status.success(), "{service}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("{service}: migrations applied")));
    }
}

#[test]
fn version_prints_the_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_itsm")).arg("version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("itsm {}", env!("CARGO_PKG_VERSION")));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_one_service_from_environment_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cmdb.db").display());
    let migrate = Command::new(env!("CARGO_BIN_EXE_itsm"))
        .args(["migrate", "cmdb"])
        .env("ITSM__DATABASE__URL", &url)
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    assert!(String::from_utf8_lossy(&migrate.stdout).contains("cmdb: migrations applied"));

    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_itsm"))
        .args(["serve", "cmdb"])
        .env("ITSM__SERVER__LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("ITSM__DATABASE__URL", &url)
        .env("ITSM__AUTH__INTERNAL_TOKEN", "secret-internal-token")
        .env("ITSM__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let channel = loop {
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
        {
            break channel;
        }
        assert!(Instant::now() < deadline, "itsm serve cmdb did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "itsm.cmdb.v1.CmdbService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, 1);
    // Without the internal token the service refuses; with it, the call goes through.
    let mut cmdb = CmdbServiceClient::new(channel);
    let err = cmdb.list_configuration_items(ListConfigurationItemsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut request = tonic::Request::new(ListConfigurationItemsRequest::default());
    for (key, value) in [
        ("x-itsm-internal-token", "secret-internal-token"),
        ("x-itsm-tenant", "acme"),
        ("x-itsm-principal", "alice"),
    ] {
        request.metadata_mut().insert(key, value.parse().unwrap());
    }
    cmdb.list_configuration_items(request).await.unwrap();
    terminate(Up {
        child: std::mem::replace(&mut child, Command::new("true").spawn().unwrap()),
        endpoints: vec![],
    });
    let _ = child.wait();
}
