//! The dashboard at `/` in a real browser (Debian's headless chromium over
//! WebDriver) against a real server and a real lab: it loads without
//! console errors, follows the queue live from `/events` without a
//! reload, shows a lab's console, lets only the holder type into it, and
//! offers operators their actions; the server refuses what a role may
//! not do, whatever the page shows; Pause and Resume catch up through
//! `Last-Event-ID`.
//!
//! `ALPY_UPDATE_DOCS=1` also copies its screenshot of the operator's page
//! to `docs/dashboard.png` (the README shows it).

#[path = "../../rabbit/tests/browser/mod.rs"]
#[allow(dead_code)] // shared with Rabbit's report tests, which use all of it
mod browser;
mod common;

use std::time::{Duration, Instant};

use browser::Browser;
use common::Server;
use fantoccini::Locator;
use serde_json::Value;

/// Runs the browser's async calls from this (blocking) test.
struct Page {
    rt: tokio::runtime::Runtime,
    b: Option<Browser>,
    url: String,
}

impl Page {
    fn new(url: &str) -> Page {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let b = rt.block_on(Browser::start());
        Page {
            rt,
            b: Some(b),
            url: url.to_string(),
        }
    }

    fn b(&self) -> &Browser {
        self.b.as_ref().unwrap()
    }

    fn js(&self, script: &str) -> Value {
        self.rt.block_on(self.b().js(script))
    }

    /// Waits (at most 20 s) until `script` returns true: how long it took.
    fn until(&self, what: &str, script: &str) -> Duration {
        let t = Instant::now();
        loop {
            if self.js(script) == Value::Bool(true) {
                return t.elapsed();
            }
            if t.elapsed() > Duration::from_secs(20) {
                let page = self.js("return document.body.innerText");
                panic!("the page never showed {what} ({script}); it shows:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Opens the page fresh and signs in with `token`; waits for the role.
    fn sign_in(&self, token: &str, role: &str) {
        self.rt.block_on(async {
            let c = &self.b().client;
            c.goto(&format!("{}/", self.url)).await.unwrap();
            // A sign-in of this page still waiting for /whoami would store
            // its token again after the clear: this page stores no more.
            c.execute(
                "Storage.prototype.setItem = function () {}; sessionStorage.clear()",
                vec![],
            )
            .await
            .unwrap();
            c.goto(&format!("{}/", self.url)).await.unwrap();
            // The form is in the page hidden until its script shows it:
            // typing before that is "element not interactable".
            // A loaded machine (a CI run beside other tests) can take a
            // while to run the page's script: a minute, then the page says
            // what it shows.
            let field = match c
                .wait()
                .at_most(Duration::from_secs(60))
                .for_element(Locator::Css("#signin:not([hidden]) #token"))
                .await
            {
                Ok(f) => f,
                Err(e) => {
                    let page = c.source().await.unwrap_or_default();
                    panic!("the sign-in form never showed ({e}); the page:\n{page}");
                }
            };
            field.send_keys(token).await.unwrap();
            c.find(Locator::Css("#signin button"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        });
        self.until(
            &format!("the {role} signed in"),
            &format!(
                "return document.getElementById('me').dataset.role === '{role}' \
                 && document.getElementById('stream').textContent === 'live'"
            ),
        );
    }

    /// Opens lab `id`'s console from its row; waits until attached.
    fn open_console(&self, id: &str) {
        self.until(
            "the lab",
            &format!("return !!document.querySelector('#labs tr[data-lab=\"{id}\"] button')"),
        );
        self.click(&format!("#labs tr[data-lab=\"{id}\"] button"));
        self.until(
            "the console attached",
            "return document.getElementById('console-note').textContent === 'attached'",
        );
    }

    fn click(&self, css: &str) {
        self.rt.block_on(async {
            let c = &self.b().client;
            c.find(Locator::Css(css))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        });
    }

    /// The open dialog's text, accepted.
    fn accept_dialog(&self) -> String {
        self.rt.block_on(async {
            let c = &self.b().client;
            let text = c.get_alert_text().await.unwrap();
            c.accept_alert().await.unwrap();
            text
        })
    }

    fn errors(&self) -> Vec<String> {
        self.rt.block_on(self.b().console_errors())
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        if let Some(b) = self.b.take() {
            self.rt.block_on(b.close());
        }
    }
}

fn row(handle: &str, status: &str) -> String {
    format!("return !!document.querySelector('#sessions tr[data-handle=\"{handle}\"][data-status=\"{status}\"]')")
}

#[test]
fn the_dashboard_follows_the_lab_live_and_enforces_roles() {
    let s = Server::start("dashboard", "max_sessions_per_token = 4");
    let page = Page::new(&s.url);

    // A viewer: the page loads clean, and follows the queue live.
    page.sign_in(&s.viewer, "viewer");
    assert_eq!(page.errors(), Vec::<String>::new());
    page.js("window.loadedOnce = true");
    let (a, _, _) = s.session();
    let ha = s.status(&a)["handle"].as_str().unwrap().to_string();
    let took = page.until("the new session", &row(&ha, "active"));
    println!("a session created with an HTTP call shows in the page after {took:?}");
    let (b, _, _) = s.session();
    let hb = s.status(&b)["handle"].as_str().unwrap().to_string();
    page.until("the waiting session", &row(&hb, "waiting"));
    assert_eq!(
        s.delete(&format!("/session/{a}")).send().unwrap().status(),
        204
    );
    let took = page.until("the waiting session promoted", &row(&hb, "active"));
    println!("the active session deleted: the next shows active after {took:?}");
    page.until(
        "the ended session gone",
        &format!("return !document.querySelector('#sessions tr[data-handle=\"{ha}\"]')"),
    );
    assert_eq!(
        page.js("return window.loadedOnce === true"),
        Value::Bool(true),
        "the page reloaded"
    );
    // A viewer has no buttons on sessions, and sees no session ids.
    assert_eq!(
        page.js("return document.querySelectorAll('#sessions button').length"),
        0
    );
    let text = page.js("return document.body.innerText").to_string();
    assert!(!text.contains(&b), "a session id on the page");

    // Paused, the page misses events; resumed, it gets them from the
    // server's history (Last-Event-ID), each once, in order.
    let last_seen = page.js("return Math.max(...[...document.querySelectorAll('#events li')].map(li => +li.dataset.id))");
    let shown = page.js("return document.querySelectorAll('#events li').length");
    page.click("#pause");
    page.until(
        "paused",
        "return document.getElementById('stream').textContent === 'paused'",
    );
    assert_eq!(
        s.delete(&format!("/session/{b}")).send().unwrap().status(),
        204
    );
    let (c, _, _) = s.session();
    assert_eq!(
        s.delete(&format!("/session/{c}")).send().unwrap().status(),
        204
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        page.js("return document.querySelectorAll('#events li').length"),
        shown,
        "events reached a paused page"
    );
    page.click("#pause");
    // Each missed change, once, in order, after what was seen (the page
    // lists every event but the periodic health checks).
    let hc = s.status(&c)["handle"].as_str().unwrap().to_string();
    page.until(
        "the missed events",
        &format!("return !!document.querySelector('#events li[data-subject=\"{hc}\"][data-action=\"ended\"]')"),
    );
    let missed = page.js(&format!(
        "return [...document.querySelectorAll('#events li')].reverse() \
         .filter(li => +li.dataset.id > {last_seen}) \
         .map(li => [+li.dataset.id, li.dataset.subject, li.dataset.action])"
    ));
    let missed: Vec<(u64, String, String)> = serde_json::from_value(missed).unwrap();
    let what: Vec<(&str, &str)> = missed
        .iter()
        .map(|(_, s, a)| (s.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        what,
        [
            (hb.as_str(), "ended"),
            (hc.as_str(), "created"),
            (hc.as_str(), "promoted"),
            (hc.as_str(), "ended")
        ],
        "{missed:?}"
    );
    assert!(missed.windows(2).all(|w| w[0].0 < w[1].0), "{missed:?}");

    // A lab, held through the client library (the holder is token "tests").
    let lab = alpy::lab::LabClient::connect(&s.url, &s.token).unwrap();
    let mut bed = lab
        .acquire(common::TOPOLOGY, Duration::from_secs(120))
        .unwrap();
    let id = bed.lab().lab_id.clone();
    page.until(
        "the lab, up, with its drawing",
        &format!("return !!document.querySelector('#labs tr[data-lab=\"{id}\"][data-status=\"up\"] img.topology')"),
    );
    // The holder, in the browser: its typing reaches the guest.
    page.sign_in(&s.token, "user");
    page.open_console(&id);
    page.js("document.getElementById('console-in').value = 'echo typed-$((6*7))'");
    page.click("#console-form button");
    page.until(
        "the typed command's output",
        "return document.getElementById('console-out').textContent.includes('typed-42')",
    );

    // A viewer watches the console: the guest's output shows (typed by
    // the holder's library client, once the holder's page is gone).
    page.sign_in(&s.viewer, "viewer");
    page.open_console(&id);
    let console = bed.console().unwrap();
    console.send_line("echo seen-$((6*7))").unwrap();
    console.exp_string("seen-42").unwrap();
    page.until(
        "the guest's output",
        "return document.getElementById('console-out').textContent.includes('seen-42')",
    );
    // The viewer's typing is refused by the server, and is not sent on.
    page.js("document.getElementById('console-in').value = 'echo viewer-$((5*5))'");
    page.click("#console-form button");
    page.until(
        "the refusal",
        "return document.getElementById('console-note').textContent.startsWith('read-only')",
    );
    console.send_line("echo after-$((1+1))").unwrap();
    console.exp_string("after-2").unwrap();
    page.until(
        "the later output",
        "return document.getElementById('console-out').textContent.includes('after-2')",
    );

    // Logs and captures: the holder and operators; the server refuses others.
    for (who, token, code) in [
        ("viewer", &s.viewer, 403),
        ("another user", &s.other, 403),
        ("the holder", &s.token, 200),
        ("an operator", &s.operator, 200),
    ] {
        for path in ["logs/console.log", "links/client/pcap"] {
            let r = s
                .req("GET", &format!("/labs/{id}/{path}"), Some(token))
                .send()
                .unwrap();
            assert_eq!(r.status(), code, "{path} as {who}");
        }
    }
    let log = s
        .req(
            "GET",
            &format!("/labs/{id}/logs/console.log"),
            Some(&s.operator),
        )
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(log.contains("typed-42") && log.contains("seen-42"), "{log}");
    assert!(
        !log.contains("viewer-"),
        "a viewer's typing reached the guest: {log}"
    );
    // The server refuses a user's destroy, whatever the page shows.
    let status = page.js(&format!(
        "return fetch('/labs/{id}?force=true', {{method: 'DELETE', \
         headers: {{Authorization: 'Bearer ' + state.token}}}}).then(r => r.status)"
    ));
    assert_eq!(status, 403);
    // The browser logs that refusal; nothing else went wrong.
    let errors = page.errors();
    assert!(
        errors.len() == 1 && errors[0].contains("403 (Forbidden)"),
        "{errors:?}"
    );
    // A user's page offers no operator actions.
    assert_eq!(
        page.js("return [...document.querySelectorAll('button')].filter(b => ['End', 'Destroy', 'Move'].includes(b.textContent)).length"),
        0
    );

    // An operator destroys the lab from the page, after a confirmation
    // that names it.
    page.sign_in(&s.operator, "operator");
    page.until(
        "the lab",
        &format!("return !!document.querySelector('#labs tr[data-lab=\"{id}\"]')"),
    );
    page.until(
        "the drawing",
        &format!("return !!document.querySelector('#labs tr[data-lab=\"{id}\"] img.topology')"),
    );
    let shot = page.rt.block_on(page.b().client.screenshot()).unwrap();
    std::fs::write(s.dir.join("dashboard.png"), &shot).unwrap();
    if std::env::var_os("ALPY_UPDATE_DOCS").is_some() {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/dashboard.png");
        std::fs::write(docs, &shot).unwrap();
    }
    page.js(&format!(
        "[...document.querySelectorAll('#labs tr[data-lab=\"{id}\"] button')].find(b => b.textContent === 'Destroy').click()"
    ));
    let asked = page.accept_dialog();
    assert!(
        asked.contains(&id) && asked.contains("held by 1"),
        "{asked}"
    );
    page.until(
        "the lab gone",
        &format!("return !document.querySelector('#labs tr[data-lab=\"{id}\"]')"),
    );
    page.until(
        "the lab's destroyed event",
        &format!("return !!document.querySelector('#events li[data-subject=\"{id}\"][data-action=\"destroyed\"]')"),
    );
    assert_eq!(page.errors(), Vec::<String>::new());
    drop(bed);
    drop(page);
}

/// Median and 99th percentile of `v` (sorted here).
fn median_p99(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Figures, not a test: the latency from a state change to the page (200
/// events, three runs), and the page's load time with 50 waiting
/// sessions and 10 labs up (five loads).
///
/// ```text
/// cargo test -p alpy-lab --test dashboard -- --ignored --nocapture bench_
/// ```
#[test]
#[ignore = "a benchmark that prints figures; run it with --ignored"]
fn bench_event_latency_and_load_time() {
    let s = Server::start(
        "bench-dashboard",
        "max_labs = 10\nmax_sessions_per_token = 200",
    );
    let page = Page::new(&s.url);
    page.sign_in(&s.viewer, "viewer");
    for run in 1..=3 {
        let first = page.js(
            "return Math.max(0, ...[...document.querySelectorAll('#events li')].map(li => +li.dataset.id))",
        );
        let first = first.as_u64().unwrap();
        let mut ids = Vec::new();
        for _ in 0..100 {
            ids.push(s.session().0);
            std::thread::sleep(Duration::from_millis(10));
        }
        for id in &ids {
            s.delete(&format!("/session/{id}")).send().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        let last = ids.last().unwrap();
        let handle = s.status(last)["handle"].as_str().unwrap().to_string();
        page.until(
            "the run's last event",
            &format!("return !!document.querySelector('#events li[data-subject=\"{handle}\"][data-action=\"ended\"]')"),
        );
        let last = page.js(
            "return Math.max(...[...document.querySelectorAll('#events li')].map(li => +li.dataset.id))",
        );
        let last = last.as_u64().unwrap();
        // The page keeps the last 200.
        let got = page.js(&format!(
            "return [...document.querySelectorAll('#events li')].filter(li => +li.dataset.id > {first}) \
             .map(li => (li.dataset.received - li.dataset.time) * 1000)"
        ));
        let mut ms: Vec<f64> = serde_json::from_value(got).unwrap();
        let n = ms.len();
        let (p50, p99) = median_p99(&mut ms);
        println!(
            "run {run}: the last {n} of {} events, change -> page: median {p50:.1} ms, p99 {p99:.1} ms",
            last - first
        );
    }

    // 10 labs (each its own topology, so none is reused), then 50 waiting
    // sessions.
    let mut beds = Vec::new();
    let t = Instant::now();
    for i in 0..10 {
        let lab = alpy::lab::LabClient::connect(&s.url, &s.token).unwrap();
        let topology = common::TOPOLOGY.replace("remote-forward", &format!("bench-{i}"));
        beds.push(lab.acquire(&topology, Duration::from_secs(300)).unwrap());
    }
    println!("10 labs up in {:.0} s", t.elapsed().as_secs_f64());
    let waiting: Vec<String> = (0..50).map(|_| s.session().0).collect();
    let mut loads = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        page.rt
            .block_on(page.b().client.goto(&format!("{}/", s.url)))
            .unwrap();
        page.until(
            "60 sessions and 10 labs with their drawings",
            "return document.querySelectorAll('#sessions tbody tr').length === 60 \
             && document.querySelectorAll('#labs img.topology').length === 10",
        );
        loads.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (p50, _) = median_p99(&mut loads);
    println!("dashboard load with 60 sessions (50 waiting) and 10 labs: median {p50:.0} ms of 5 ({loads:.0?})");
    for id in waiting {
        s.delete(&format!("/session/{id}")).send().unwrap();
    }
    for bed in beds {
        bed.close().unwrap();
    }
}
