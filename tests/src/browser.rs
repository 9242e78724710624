//! Browser tests' harness: headless Chromium through chromedriver (Debian's `chromium` and
//! `chromium-driver`), and the few WebDriver steps the console's tests repeat.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness: a panic is the failure report

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use itsm_runtime::testing::TestBackend;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a page may take to show what the test waits for.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A chromedriver process on a port of its own, with a fresh browser profile. Dropping it kills
/// chromedriver and the browser it started (its process group).
pub struct Chromedriver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Chromedriver {
    /// Starts chromedriver, or `None` when it is not installed (then the test is skipped, except
    /// under CI, where that is a failure).
    pub async fn start() -> Option<Self> {
        if !Path::new(CHROMEDRIVER).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{CHROMEDRIVER} is missing: the console's browser test needs `apt-get install chromium chromium-driver`"
            );
            println!(
                "skipped: the console's browser test needs {CHROMEDRIVER} and {CHROMIUM} \
                 (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so the browser it starts goes with it.
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let driver =
            Self { child, url: format!("http://127.0.0.1:{port}"), profile: tempfile::tempdir().unwrap() };
        let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not listen within {PAGE_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(driver)
    }

    /// A headless Chromium session.
    pub async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_string(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a headless Chromium session through chromedriver")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go (the SQLite run only: both runs would write the same files).
pub fn screenshot_dir(backend: TestBackend) -> Option<PathBuf> {
    if backend != TestBackend::Sqlite {
        return None;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/console/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    Some(dir)
}

pub async fn screenshot(browser: &Client, dir: Option<&Path>, page: &str) {
    let Some(dir) = dir else { return };
    let png = browser.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{page}.png")), png).unwrap();
}

/// Checks the colour contrast of the page the browser shows against WCAG 2.x AA: every visible
/// element with text of its own (SVG text too, by its `fill`), its colour blended over its
/// composited background, reaches 4.5:1, or 3:1 for large text (see `contrast.js`). Returns one
/// line per failure (`<tag#id.class> 'text': ratio < required (colour on background)`), at most
/// 50; empty when the page passes.
pub async fn contrast_failures(browser: &Client) -> Vec<String> {
    let found = browser.execute(include_str!("contrast.js"), vec![]).await.unwrap();
    let Some(failures) = found.as_array() else { panic!("the contrast check returned {found}") };
    failures.iter().map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_string)).collect()
}

/// Asserts that the page the browser shows, called `page` in the failure, passes
/// [`contrast_failures`].
pub async fn assert_contrast(browser: &Client, page: &str) {
    let failures = contrast_failures(browser).await;
    assert!(
        failures.is_empty(),
        "{page}: {} text elements fail the WCAG AA contrast:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Waits until the page shows element `id` and returns its text.
pub async fn text_of(browser: &Client, id: &str) -> String {
    wait_for(browser, id).await;
    browser.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
}

pub async fn wait_for(browser: &Client, id: &str) {
    browser
        .wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id} did not appear: {e}"));
}

pub async fn type_into(browser: &Client, id: &str, text: &str) {
    wait_for(browser, id).await;
    browser.find(Locator::Id(id)).await.unwrap().send_keys(text).await.unwrap();
}

pub async fn click(browser: &Client, id: &str) {
    wait_for(browser, id).await;
    browser.find(Locator::Id(id)).await.unwrap().click().await.unwrap();
}

/// Path and query of the page the browser shows.
pub async fn location(browser: &Client) -> (String, String) {
    let url = browser.current_url().await.unwrap();
    (url.path().to_string(), url.query().unwrap_or_default().to_string())
}

/// Signs in on the sign-in page the browser shows.
pub async fn sign_in(browser: &Client, token: &str) {
    type_into(browser, "token", token).await;
    click(browser, "sign-in").await;
}

/// Signs out from any page and waits for the sign-in page.
pub async fn sign_out(browser: &Client) {
    click(browser, "sign-out").await;
    wait_for(browser, "token").await;
}
