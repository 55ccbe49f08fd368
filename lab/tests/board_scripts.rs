//! A board class's scripts, through a real server: the setup script runs
//! when a session reserves a board (the session waits for it), the
//! teardown script when it lets the board go (nobody gets the board
//! before it ends), the health check every N sessions; a failing script
//! takes the board offline with what it printed, and an operator puts it
//! back.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{json, Value};

/// The scripts append `WHAT BOARD SESSION` to `log`; a setup waits until
/// `go` exists beside it, and fails while `bad-setup` does; a teardown
/// fails while `bad-teardown` does.
fn config(dir: &Path) -> String {
    let (log, bad_setup, bad_teardown) = (
        dir.join("scripts.log"),
        dir.join("bad-setup"),
        dir.join("bad-teardown"),
    );
    format!(
        r#"
[[board]]
name = "s-1"
class = "solo"
console = {{ kind = "tcp", addr = "127.0.0.1:9" }}
power = {{ driver = "qmp", socket = "/nonexistent/s-1.qmp" }}

[[board_class]]
name = "solo"
setup_script = ["sh", "-c", "echo setup $ALPY_BOARD $ALPY_SESSION >> {log}; while [ ! -e {go} ]; do sleep 0.1; done; if [ -e {bad_setup} ]; then echo flash failed; exit 4; fi"]
teardown_script = ["sh", "-c", "echo teardown $ALPY_BOARD $ALPY_SESSION >> {log}; if [ -e {bad_teardown} ]; then echo wipe failed >&2; exit 5; fi"]
health_check = ["sh", "-c", "echo check $ALPY_BOARD - >> {log}"]
check_every_sessions = 2
"#,
        log = log.display(),
        go = dir.join("go").display(),
        bad_setup = bad_setup.display(),
        bad_teardown = bad_teardown.display(),
    )
}

/// Polls `what` every 100 ms until it returns `Some`, for 30 s at most.
fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn scripts_run_on_reserve_release_and_every_n_sessions_and_failures_go_offline() {
    let dir = common::temp_dir("board-scripts").keep();
    let s = Server::start_config("board-scripts", &config(&dir), "", "");
    let log = || std::fs::read_to_string(dir.join("scripts.log")).unwrap_or_default();
    let board = || -> Value {
        let all: Value = s.get("/boards").send().unwrap().json().unwrap();
        all["boards"][0].clone()
    };
    let reserve = || s.reserve_board("solo");
    let active = |v: &Value| {
        let id = v["session_id"].as_str().unwrap().to_string();
        until("the session is active", || {
            s.post_as("/session/heartbeat", &id).send().unwrap();
            let now = s.status(&id);
            (now["status"] == "active").then_some(now)
        })
    };
    let end = |v: &Value| {
        let id = v["session_id"].as_str().unwrap();
        let r = s.delete(&format!("/session/{id}")).send().unwrap();
        assert_eq!(r.status(), 204);
    };

    // A reserves: the board is A's, but A waits while the setup runs.
    let a = reserve();
    assert_eq!(
        (a["status"].as_str(), a["board"].as_str()),
        (Some("waiting"), Some("s-1")),
        "{a}"
    );
    assert_eq!(board()["busy"], "setup", "{}", board());
    std::fs::write(dir.join("go"), "").unwrap();
    let a = active(&a);
    assert_eq!(a["board"], "s-1");
    // B waits for the board; A lets it go: teardown, then B's setup.
    let b = reserve();
    assert_eq!(
        (b["status"].as_str(), b["board"].as_str()),
        (Some("waiting"), None),
        "{b}"
    );
    end(&a);
    let b = active(&b);
    assert_eq!(b["board"], "s-1");
    let (ah, bh) = (a["handle"].as_str().unwrap(), b["handle"].as_str().unwrap());
    assert_eq!(
        log(),
        format!("setup s-1 {ah}\nteardown s-1 {ah}\nsetup s-1 {bh}\n"),
        "each script once, in order, with the session's handle"
    );
    assert_eq!(board()["lent_since_check"], 2);
    // Lent twice: once free again, its health check is due.
    end(&b);
    let checked = until("the health check after two sessions", || {
        let now = board();
        (now["checked"].is_number() && now["busy"].is_null()).then_some(now)
    });
    assert_eq!(checked["lent_since_check"], 0, "{checked}");
    assert!(
        log().ends_with(&format!("teardown s-1 {bh}\ncheck s-1 -\n")),
        "{}",
        log()
    );

    // A failing setup: offline with its output; C waits on, unserved.
    std::fs::write(dir.join("bad-setup"), "").unwrap();
    let c = reserve();
    let offline = until("the board goes offline", || {
        let now = board();
        (now["state"] == "offline").then_some(now)
    });
    let reason = offline["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("setup script failed: flash failed") && reason.contains("exit status 4"),
        "{offline}"
    );
    assert_eq!(offline["changed_by"], "setup script");
    assert!(
        offline["holder"].is_null() && offline["busy"].is_null(),
        "{offline}"
    );
    let cid = c["session_id"].as_str().unwrap();
    let c_now = s.status(cid);
    assert_eq!(
        (c_now["status"].as_str(), c_now["board"].as_str()),
        (Some("waiting"), None),
        "{c_now}"
    );
    // Mended and put back online by an operator: C gets it.
    std::fs::remove_file(dir.join("bad-setup")).unwrap();
    let r = s
        .req("POST", "/boards/s-1/online", Some(&s.operator))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let c = active(&c);
    // A failing teardown: offline, and nobody gets the board.
    std::fs::write(dir.join("bad-teardown"), "").unwrap();
    let d = reserve();
    end(&c);
    let offline = until("the board goes offline after its teardown", || {
        let now = board();
        (now["state"] == "offline").then_some(now)
    });
    let reason = offline["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("teardown script failed: wipe failed")
            && reason.contains("exit status 5"),
        "{offline}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let d_now = s.status(d["session_id"].as_str().unwrap());
    assert_eq!(
        d_now["status"], "waiting",
        "an offline board is not lent: {d_now}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's rack example is a configuration the server takes, and
/// lists as two boards of one class.
#[test]
fn the_readme_s_rack_example_is_a_configuration_the_server_takes() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let block = readme
        .split("<!-- rack example -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- end of rack example -->").next())
        .expect("the README marks its rack example");
    let toml = block
        .trim()
        .strip_prefix("```toml")
        .and_then(|b| b.strip_suffix("```"))
        .expect("a toml block between the marks");
    let s = Server::start_config("rack-example", toml, "", "");
    let boards: Value = s.get("/boards").send().unwrap().json().unwrap();
    let names: Vec<_> = boards["boards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].clone(), b["class"].clone(), b["ports"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            (json!("fw-1"), json!("fw-9000"), json!(2)),
            (json!("fw-2"), json!("fw-9000"), json!(2))
        ],
        "{boards}"
    );
}

/// A held board that leaves the configuration ends its session as any
/// end does: told why, and said on the event stream.
#[test]
fn a_held_board_that_leaves_the_configuration_ends_its_session() {
    let board = |n: &str| {
        format!(
            "[[board]]\nname = \"{n}\"\nclass = \"c\"\nconsole = {{ kind = \"tcp\", addr = \"127.0.0.1:9\" }}\npower = {{ driver = \"qmp\", socket = \"/nonexistent/{n}.qmp\" }}\n"
        )
    };
    let mut s = Server::start_config(
        "orphans",
        &format!("{}{}", board("o-1"), board("o-2")),
        "",
        "",
    );
    let r = s.reserve_board("c");
    assert_eq!(
        (r["status"].as_str(), r["board"].as_str()),
        (Some("active"), Some("o-1")),
        "{r}"
    );
    let id = r["session_id"].as_str().unwrap().to_string();
    s.kill();
    let config = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, config.replace(&board("o-1"), "")).unwrap();
    s.restart();
    let now = s.status(&id);
    assert_eq!(now["status"], "ended", "{now}");
    assert_eq!(now["note"], "its board o-1 left the configuration", "{now}");
    let (ok, text, err) = s.alpy_lab(&s.operator, &["events", "--count", "2", "--json"]);
    assert!(
        ok && text.contains("\"ended\"") && text.contains("left the configuration"),
        "{text}{err}"
    );
}

/// A server that dies leaves its running script behind (the script has
/// its own process group); the restarted server kills it before it runs
/// the script again, so two never run at once.
#[test]
fn a_restarted_server_kills_the_script_its_last_run_left() {
    let config = "[[board]]\nname = \"k-1\"\nclass = \"k\"\nconsole = { kind = \"tcp\", addr = \"127.0.0.1:9\" }\npower = { driver = \"qmp\", socket = \"/nonexistent/k-1.qmp\" }\n\n[[board_class]]\nname = \"k\"\nsetup_script = [\"sleep\", \"61.2345\"]\n";
    let sleepers = || -> Vec<String> {
        let out = Command::new("pgrep")
            .args(["-f", "^sleep 61.2345$"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let mut s = Server::start_config("left-over", config, "", "");
    s.reserve_board("k");
    let first = until("the setup script to run", || {
        let now = sleepers();
        (now.len() == 1).then(|| now[0].clone())
    });
    s.kill();
    assert_eq!(
        sleepers(),
        std::slice::from_ref(&first),
        "the script outlives its server"
    );
    s.restart();
    // Killed at start; the setup, still marked, runs again.
    let again = until("the old script killed and the setup run again", || {
        let now = sleepers();
        (now.len() == 1 && now[0] != first).then(|| now[0].clone())
    });
    drop(s);
    let _ = Command::new("kill").args(["-9", &again]).status();
}
