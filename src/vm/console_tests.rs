//! Tests of the console's expect engine against an in-process peer.

use super::*;

fn pair() -> (Console, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    (Console::new(a, "test", None).unwrap(), b)
}

#[test]
fn pattern_split_across_reads() {
    let (mut c, mut peer) = pair();
    let t = std::thread::spawn(move || {
        for part in [&b"boot...\r\nrabbit lo"[..], b"gin", b": "] {
            peer.write_all(part).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        peer
    });
    let m = c.exp_string("login: ").unwrap();
    assert_eq!(m.before, b"boot...\r\nrabbit ");
    assert_eq!(m.matched, b"login: ");
    drop(t.join().unwrap());
}

#[test]
fn regex_captures_and_consumption() {
    let (mut c, mut peer) = pair();
    peer.write_all(b"rc=17\nrc=3\n").unwrap();
    let m = c.exp_regex(r"rc=(\d+)\n").unwrap();
    assert_eq!(m.group(1).as_deref(), Some("17"));
    let m = c.exp_regex(r"rc=(\d+)\n").unwrap();
    assert_eq!(m.group(1).as_deref(), Some("3"));
}

#[test]
fn exp_any_takes_the_earliest() {
    let (mut c, mut peer) = pair();
    peer.write_all(b"xx Password: yy login: ").unwrap();
    let pats = [Pattern::exact("login: "), Pattern::exact("Password: ")];
    let (i, m) = c.exp_any(&pats, Duration::from_secs(2)).unwrap();
    assert_eq!(i, 1);
    assert_eq!(m.before, b"xx ");
    let (i, _) = c.exp_any(&pats, Duration::from_secs(2)).unwrap();
    assert_eq!(i, 0);
}

#[test]
fn non_utf8_and_ansi_do_not_break_matching() {
    let (mut c, mut peer) = pair();
    peer.write_all(b"\xff\xfe\x1b[6n\x1b[1;32mguest# \x1b[0m")
        .unwrap();
    let m = c.exp_string("guest# ").unwrap();
    assert_eq!(m.before, b"\xff\xfe\x1b[6n\x1b[1;32m");
}

#[test]
fn only_control_keys_are_sent_as_control_keys() {
    let (mut c, mut peer) = pair();
    c.send_control('c').unwrap();
    c.send_control('[').unwrap();
    let mut got = [0u8; 2];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(got, [3, 27]);
    for bad in ['1', 'é', ' ', '~'] {
        let e = c.send_control(bad).unwrap_err();
        assert!(e.to_string().contains("not a control key"), "{e}");
    }
}

#[test]
fn timeout_shows_the_tail() {
    let (mut c, mut peer) = pair();
    let lines: String = (0..30).map(|i| format!("line {i}\r\n")).collect();
    peer.write_all(lines.as_bytes()).unwrap();
    peer.write_all(b"no prompt\x1b[0m").unwrap();
    let err = c
        .expect(&Pattern::exact("login:"), Duration::from_millis(200))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("\"login:\" on console test"), "{msg}");
    assert!(msg.contains("line 29\nno prompt\\x1b[0m"), "{msg}");
    assert!(!msg.contains("line 5\n"), "only the tail is shown: {msg}");
}

#[test]
fn closed_console_fails_fast() {
    let (mut c, peer) = pair();
    drop(peer);
    let t0 = Instant::now();
    let err = c.exp_string("never").unwrap_err();
    assert!(matches!(err, Error::Closed(_)), "{err}");
    assert!(err.to_string().starts_with("closed: console test"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[derive(Clone, Default)]
struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);
impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn logs_whole_lines_and_prompts_escaped() {
    let buf = Shared::default();
    let _g = crate::logging::add_writer_sink(Box::new(buf.clone()));
    let (a, mut peer) = UnixStream::pair().unwrap();
    let mut c = Console::new(a, "logtest", None).unwrap();
    for part in [&b"boot li"[..], b"ne \xff\r\n", b"login: "] {
        peer.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    c.exp_string("login: ").unwrap();
    c.send_line("root").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once("[logtest] ").map(|x| x.1))
        .collect();
    assert_eq!(
        lines,
        [
            r#"< "boot line \xff\r\n""#,
            r#"< "login: ""#,
            r#"> "root\n""#
        ],
        "{text}"
    );
}

#[test]
fn transcript_holds_raw_bytes() {
    let dir = std::env::temp_dir().join(format!("alpy-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("console.log");
    let (a, mut b) = UnixStream::pair().unwrap();
    let mut c = Console::new(a, "t", Some(&path)).unwrap();
    b.write_all(b"raw \xff bytes\n").unwrap();
    c.exp_string("bytes\n").unwrap();
    drop(b);
    c.close().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"raw \xff bytes\n");
    std::fs::remove_dir_all(&dir).ok();
}
