//! The login page in a real browser: headless Chromium driven over
//! WebDriver (chromedriver), no JavaScript needed by the page itself.
//!
//! Skips with a notice when Chromium or chromedriver is missing, except
//! with `GATEHOUSE_REQUIRE_BROWSER=1` (CI sets it), where it fails.

use crate::support::client::req;
use crate::support::sessions::{session_gateway, Store, ALICE_PW};
use crate::support::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    client: Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn found(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Driver {
    async fn start() -> Option<Driver> {
        if !found("chromium") || !found("chromedriver") {
            if std::env::var("GATEHOUSE_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("chromium and chromedriver are required (GATEHOUSE_REQUIRE_BROWSER=1)");
            }
            eprintln!("SKIPPED browser test: chromium/chromedriver not installed (apt-get install chromium chromium-driver)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let client = Client::plain(format!("127.0.0.1:{port}").parse().unwrap());
        let up = poll(Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(client.addr).await.is_ok()
        })
        .await;
        assert!(up, "chromedriver did not start");
        let profile = tempdir();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--no-first-run", "--disable-quic",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let mut d = Driver {
            child,
            client,
            session: String::new(),
            _profile: profile,
        };
        let r = d.call("POST", "/session", caps).await;
        d.session = r["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_string();
        Some(d)
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, v) = self.try_call(method, path, &body).await;
        assert_eq!(status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    async fn try_call(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let body = if method == "GET" || method == "DELETE" {
            String::new()
        } else {
            body.to_string()
        };
        let r = self
            .client
            .send(req(
                method,
                path,
                &[("content-type", "application/json"), ("host", "localhost")],
                &body,
            ))
            .await;
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        )
    }

    /// Waits (up to 10 s) until the page's text contains `needle`: a click
    /// that submits a form returns before the next page has loaded.
    async fn wait_for_text(&self, needle: &str) {
        if poll(Duration::from_secs(10), || async {
            self.page_text().await.contains(needle)
        })
        .await
        {
            return;
        }
        panic!("page never showed {needle:?}: {}", self.page_text().await);
    }

    fn at(&self, p: &str) -> String {
        format!("/session/{}{p}", self.session)
    }

    async fn goto(&self, url: &str) {
        self.call("POST", &self.at("/url"), json!({ "url": url }))
            .await;
    }

    async fn url(&self) -> String {
        self.call("GET", &self.at("/url"), Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn element(&self, css: &str) -> String {
        // Poll: the page may still be loading.
        let q = json!({"using": "css selector", "value": css});
        poll(Duration::from_secs(10), || async {
            self.try_call("POST", &self.at("/element"), &q).await.0 == 200
        })
        .await;
        let v = self.call("POST", &self.at("/element"), q).await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.call(
            "POST",
            &self.at(&format!("/element/{e}/value")),
            json!({ "text": text }),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.call("POST", &self.at(&format!("/element/{e}/click")), json!({}))
            .await;
    }

    async fn page_text(&self) -> String {
        let q = json!({"using": "css selector", "value": "body"});
        let (s, v) = self.try_call("POST", &self.at("/element"), &q).await;
        let Some(e) = v["value"][ELEMENT].as_str().filter(|_| s == 200) else {
            return String::new();
        };
        let (_, t) = self
            .try_call("GET", &self.at(&format!("/element/{e}/text")), &Value::Null)
            .await;
        t["value"].as_str().unwrap_or("").to_string()
    }
}

#[tokio::test]
async fn browser_logs_in_through_the_form_reaches_the_app_and_logs_out() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let b = Backend::start("app").await;
    let gw = session_gateway(&Store::Memory, &b, "", "").await;
    let base = format!("http://127.0.0.1:{}", gw.addr().port());

    // A protected page sends the browser to the login form.
    driver.goto(&format!("{base}/app/reports?month=11")).await;
    let url = driver.url().await;
    assert!(
        url.starts_with(&format!("{base}/.gatehouse/login?rd=")),
        "{url}"
    );
    driver.type_into("#username", "alice").await;
    driver.type_into("#password", "wrong password").await;
    driver.click("button[type=submit]").await;
    driver.wait_for_text("Wrong username or password").await;

    driver.type_into("#password", ALICE_PW).await;
    driver.click("button[type=submit]").await;
    // Back on the page it asked for, served by the app, which saw the user.
    assert!(
        poll(Duration::from_secs(10), || async {
            b.requests()
                .iter()
                .any(|s| s.path_and_query == "/app/reports?month=11")
        })
        .await
    );
    driver.wait_for_text("\"backend\":\"app\"").await;
    assert_eq!(driver.url().await, format!("{base}/app/reports?month=11"));
    let seen = b
        .requests()
        .into_iter()
        .rfind(|s| s.path_and_query == "/app/reports?month=11")
        .unwrap();
    assert_eq!(seen.headers["x-auth-user"], "alice");

    // Log out the way a page would: a same-origin POST.
    let status = driver
        .call(
            "POST",
            &driver.at("/execute/async"),
            json!({"script": "const done = arguments[0]; fetch('/.gatehouse/logout', {method: 'POST'}).then(r => done(r.status));", "args": []}),
        )
        .await;
    assert_eq!(status, 204);
    driver.goto(&format!("{base}/app/reports")).await;
    driver.wait_for_text("Sign in").await;
    assert!(
        driver.url().await.contains("/.gatehouse/login"),
        "logged out: back to the login page"
    );
    driver.call("DELETE", &driver.at(""), Value::Null).await;
    gw.stop().await;
}
