//! A lab server on a non-loopback address: refused without TLS, served
//! with it; the client library (sessions, a lab, exec, the console over
//! wss://) and the `alpy lab` command reach it with the lab's CA given in
//! `REMOTE_LAB_CA`, and fail without it. One test in its own binary: it
//! sets `REMOTE_LAB_CA` for the whole process.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA, and a certificate for `localhost` and 127.0.0.1 signed by it:
/// (ca.pem, cert.pem, key.pem) in `dir`.
fn make_certs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "alpy-lab test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let server =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

#[test]
fn a_tls_lab_on_a_non_loopback_address_serves_the_client_and_the_cli() {
    let dir = common::temp_dir("tls-certs");
    let (ca, cert, key) = make_certs(&dir);
    // Plain HTTP on 0.0.0.0 is refused, with what to do.
    let plain = common::temp_dir("tls-plain");
    std::fs::write(plain.join("lab.toml"), "listen = \"0.0.0.0:0\"\n").unwrap();
    let out = Command::new(common::lab_bin())
        .args(["serve", "--config"])
        .arg(plain.join("lab.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("without TLS") && err.contains("insecure_plain_http"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&plain);
    // With a certificate it serves https on every address.
    let s = common::Server::start_config(
        "tls",
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"",
            cert.display(),
            key.display()
        ),
        "",
        "",
    );
    // The helper started it on 127.0.0.1; start a second on 0.0.0.0.
    let (child, url) = common::serve(&s.dir, &s.config, &["--listen", "0.0.0.0:0"]);
    // Killed however the test ends, like the helper's own server.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _second = Killed(child);
    assert!(url.starts_with("https://0.0.0.0:"), "{url}");
    let url = url.replace("0.0.0.0", "localhost");
    // Without the CA the client refuses the certificate.
    let e = alpy::lab::LabClient::connect(&url, &s.token)
        .err()
        .expect("an unknown CA is refused")
        .to_string();
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("reach"),
        "{e}"
    );
    // SAFETY (edition 2021 set_var): this binary's only test, before any
    // thread of its own reads the environment.
    std::env::set_var(alpy::lab::CA_VAR, &ca);
    let lab = alpy::lab::LabClient::connect(&url, &s.token).unwrap();
    let mut bed = lab
        .acquire(common::TOPOLOGY, Duration::from_secs(300))
        .unwrap();
    let out = bed
        .node_succeed("client", &["ping", "-c", "1", "-W", "5", "192.168.2.2"])
        .unwrap();
    assert!(out.contains("1 received"), "{out}");
    let console = bed.console().unwrap();
    console.send_line("echo tls-$((6*7))").unwrap();
    console
        .expect(&alpy::vm::Pattern::exact("tls-42"), Duration::from_secs(30))
        .unwrap();
    // The CLI, with the CA in its environment.
    let cli = Command::new(common::alpy_bin())
        .args(["lab", "status", "--url", &url, "--token", &s.token])
        .env(alpy::lab::CA_VAR, &ca)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success() && text.contains("1 active session"),
        "{text}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    bed.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
