//! A real headless Chromium for the dashboard tests: `chromedriver` (Debian's
//! `chromium-driver`, installed by `scripts/test`) started on a free port, one WebDriver
//! session through `fantoccini`, screenshots under `target/ui-screenshots/`.
//!
//! Needs `common` as a sibling module of the test crate.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::common::{free_port, wait_for_port};

/// Where screenshots go.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/ui-screenshots"
    ))
}

/// A running chromedriver, killed when dropped (also when a test panics).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running chromedriver and one browser session on it.
pub struct Browser {
    pub client: Client,
    _driver: Driver,
    /// The test's name, for screenshot file names.
    name: String,
}

/// How long any wait for the page lasts at most (generous: a loaded 2-core machine).
pub const PATIENCE: Duration = Duration::from_secs(60);

impl Browser {
    /// Starts chromedriver and a headless Chromium session (tablet-sized window).
    pub async fn start(name: &str) -> Browser {
        let port = free_port();
        let driver = Driver(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "chromedriver does not start ({e}): install Debian's chromium and \
                     chromium-driver (scripts/test does)"
                    )
                }),
        );
        assert!(
            wait_for_port(port, PATIENCE),
            "chromedriver did not listen on {port}"
        );
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1024,1366",
                         "--no-first-run", "--no-default-browser-check"]
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session on headless Chromium");
        Browser {
            client,
            _driver: driver,
            name: name.to_string(),
        }
    }

    /// Saves a screenshot as `target/ui-screenshots/<test>-<step>.png`.
    pub async fn screenshot(&self, step: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}-{step}.png", self.name)), png).unwrap();
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigation");
    }

    /// The element `css`, waited for.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    /// The text of `css`. The live parts of a page replace their elements while a test reads
    /// them (a found element may be gone by the time its text is asked for): found again until
    /// it answers, within the same patience.
    pub async fn text(&self, css: &str) -> String {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            match self.find(css).await.text().await {
                Ok(text) => return text,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("{css} changed while read ({e}); reading it again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("the text of {css}: {e}"),
            }
        }
    }

    /// Types `text` into the input `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("cleared");
        e.send_keys(text).await.expect("typed");
    }

    /// Clicks `css`.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("clicked");
    }

    /// Waits until the page's text holds `needle`.
    pub async fn wait_for_text(&self, needle: &str) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let body = self.text("body").await;
            if body.contains(needle) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the page never showed {needle:?}:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Signs in with `token` through the sign-in form.
    pub async fn sign_in(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/ui/sign-in")).await;
        self.fill("#token", token).await;
        self.click("#sign-in").await;
    }
}
