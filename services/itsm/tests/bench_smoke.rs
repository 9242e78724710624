//! Benchmarks that run `itsm up` as a child process, in their smoke mode, so they never rot.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Command;

#[test]
fn tracing_overhead_benchmark_smoke() {
    let output = Command::new(env!("CARGO_BIN_EXE_itsm"))
        .args(["bench", "tracing", "--smoke", "--json"])
        .output()
        .expect("run itsm bench tracing");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "itsm bench tracing failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["export_off"]["calls"], 20);
    assert_eq!(report["export_on"]["calls"], 20);
    assert!(report["throughput_ratio"].as_f64().unwrap() > 0.0);
    // With export on, the receiver got the spans of every call (gateway, incident, CMDB, SQL, ...).
    assert!(report["spans_per_call"].as_f64().unwrap() >= 3.0, "{report}");
    assert_eq!(report["spans_dropped"], 0.0);
}

#[test]
fn resources_benchmark_smoke() {
    let output = Command::new(env!("CARGO_BIN_EXE_itsm"))
        .args(["bench", "resources", "--smoke", "--json"])
        .output()
        .expect("run itsm bench resources");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "itsm bench resources failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert!(report["start_ms"].as_f64().unwrap() > 0.0);
    assert!(report["idle_rss_mib"].as_f64().unwrap() > 1.0);
    assert!(report["load_peak_rss_mib"].as_f64().unwrap() >= report["idle_rss_mib"].as_f64().unwrap() * 0.5);
    assert_eq!(report["load_calls"], 20);
}
