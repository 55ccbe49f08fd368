//! Every Rabbit test's `report.html`, and the suite's page, in a real
//! browser (headless Debian chromium over WebDriver): no console errors,
//! the timeline holds each phase of `timings.json`, the links' frame
//! counts are what the pcap files hold, and with `RABBIT_SKIP=nat` the nat
//! page is failed, its first failure the NAT check, shown in red with the
//! console around it, and the suite page links it.
//!
//! `ALPY_UPDATE_DOCS=1` also copies the failed page's screenshot to
//! `docs/report-failed.png` (the README shows it).

mod browser;

use std::path::{Path, PathBuf};
use std::process::Command;

use browser::Browser;
use serde_json::Value;

/// The NAT test's check that fails without NAT.
const NAT_CHECK: &str = "the server sees Rabbit's address as the source";

/// Runs the Rabbit suite with its artifacts under `root` and `--html`;
/// returns the suite page.
fn suite(root: &Path, args: &[&str], env: &[(&str, &str)]) -> PathBuf {
    let page = root.join("suite.html");
    let out = Command::new(env!("CARGO_BIN_EXE_rabbit-suite"))
        .args(args)
        .arg("--html")
        .arg(&page)
        .env("ALPY_ARTIFACTS", root)
        .envs(env.iter().copied())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run rabbit-suite");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rabbit-suite {args:?} {env:?}:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    page
}

/// The bed directories under `root`, by name.
fn beds(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|d| d.join("report.html").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Checks one bed's page; returns its outcome.
async fn check_page(b: &Browser, dir: &Path) -> String {
    b.open(&dir.join("report.html")).await;
    let errors = b.console_errors().await;
    assert!(
        errors.is_empty(),
        "{}: console errors {errors:?}",
        dir.display()
    );
    // Every phase of timings.json is on the timeline.
    let timings: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("timings.json")).unwrap()).unwrap();
    let shown = b
        .js("return Array.from(document.querySelectorAll('#timeline .bar')).map(b => b.dataset.phase)")
        .await;
    let shown: Vec<&str> = shown
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for phase in timings.as_object().unwrap().keys() {
        if phase != "notes" {
            assert!(
                shown.contains(&phase.as_str()),
                "{}: phase {phase} is not on the timeline {shown:?}",
                dir.display()
            );
        }
    }
    // Each link's frame count is what the pcap holds, in the table and on
    // the topology's label.
    let rows = b
        .js(
            "return Array.from(document.querySelectorAll('#links tr.link')).map(r => \
             [r.dataset.file, r.querySelector('.frames').textContent])",
        )
        .await;
    let rows = rows.as_array().unwrap();
    let pcaps = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pcap"))
        .count();
    assert!(
        pcaps > 0 && rows.len() == pcaps,
        "{}: {rows:?}",
        dir.display()
    );
    let topology = b
        .js("return document.querySelector('#topology').textContent")
        .await;
    for row in rows {
        let (file, shown) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
        let frames = alpy::pcap::Capture::open(&dir.join(file))
            .unwrap()
            .frames()
            .len();
        assert_eq!(shown, frames.to_string(), "{}: {file}", dir.display());
        assert!(
            topology
                .as_str()
                .unwrap()
                .contains(&format!("· {frames} frames")),
            "{}: the topology does not label {file} with {frames} frames",
            dir.display()
        );
    }
    // Clicking a link shows the console of its time window.
    if let Some(first) = rows.first() {
        b.js("document.querySelector('#links tr.link td.frames').click(); return 0")
            .await;
        let note = b
            .js(
                "return document.querySelector('#window').className + '|' + \
                 document.querySelector('#window-text').textContent",
            )
            .await;
        assert!(
            note.as_str()
                .unwrap()
                .starts_with(&format!("|{}", first[0].as_str().unwrap())),
            "{}: {note}",
            dir.display()
        );
    }
    b.js("return document.querySelector('#outcome').textContent")
        .await
        .as_str()
        .unwrap()
        .to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rabbit_report_in_a_real_browser() {
    let root = std::env::temp_dir().join(format!("alpy-report-pages-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (passing, failing) = (root.join("passing"), root.join("failing"));
    std::fs::create_dir_all(&passing).unwrap();
    std::fs::create_dir_all(&failing).unwrap();
    let suite_page = tokio::task::block_in_place(|| suite(&passing, &["--jobs", "2"], &[]));
    let failed_suite = tokio::task::block_in_place(|| {
        suite(
            &failing,
            &["--only", "nat", "--expect-fail"],
            &[("RABBIT_SKIP", "nat")],
        )
    });
    let b = Browser::start().await;

    // Every passing test's page.
    let dirs = beds(&passing);
    assert_eq!(dirs.len(), 6, "one bed per Rabbit test: {dirs:?}");
    for dir in &dirs {
        let outcome = check_page(&b, dir).await;
        assert_eq!(outcome, "passed", "{}", dir.display());
    }
    b.open(&suite_page).await;
    assert!(b.console_errors().await.is_empty());
    let links = b
        .js("return document.querySelectorAll('#tests a[href$=\"report.html\"]').length")
        .await;
    assert_eq!(links, 6, "the suite page links every test's page");

    // The failed nat page: the NAT check first, red, with its console.
    let nat = beds(&failing);
    assert_eq!(nat.len(), 1, "{nat:?}");
    assert_eq!(check_page(&b, &nat[0]).await, "failed");
    let first = b
        .js("return document.querySelector('#first-failure').textContent")
        .await;
    assert!(
        first.as_str().unwrap().starts_with(NAT_CHECK),
        "the first failure is {first}"
    );
    let red = b
        .js(
            "const c = Array.from(document.querySelectorAll('#context .check.bad')); \
             return c.map(e => [e.textContent, getComputedStyle(e).color])",
        )
        .await;
    let red = red.as_array().unwrap();
    assert!(
        red.iter()
            .any(|e| e[0].as_str().unwrap().contains(NAT_CHECK) && e[1] == "rgb(207, 34, 46)"),
        "the failed check is not in red in the context: {red:?}"
    );
    let context_lines = b
        .js("return document.querySelectorAll('#context .console').length")
        .await;
    assert!(
        context_lines.as_u64().unwrap() > 0,
        "no console lines around the failed check"
    );
    let shot = b.client.screenshot().await.unwrap();
    std::fs::write(root.join("report-failed.png"), &shot).unwrap();
    if std::env::var_os("ALPY_UPDATE_DOCS").is_some() {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/report-failed.png");
        std::fs::write(docs, &shot).unwrap();
    }

    // The failing suite's page links the nat page, which opens.
    b.open(&failed_suite).await;
    assert!(b.console_errors().await.is_empty());
    let row = b
        .js("const r = document.querySelector('#tests tr.test'); \
             return [r.dataset.outcome, r.querySelector('.why').textContent]")
        .await;
    assert_eq!(row[0], "failed");
    assert!(row[1].as_str().unwrap().contains(NAT_CHECK), "{row}");
    b.js("document.querySelector('#tests a').click(); return 0")
        .await;
    let title = b.client.title().await.unwrap();
    assert!(title.starts_with("FAILED nat"), "the link opened {title:?}");
    b.close().await;
    std::fs::remove_dir_all(&root).unwrap();
}
