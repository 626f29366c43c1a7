//! `--metrics` at the command line: an address it cannot serve on is one
//! line and a non-zero exit, before anything is loaded or attached.

use std::process::Command;

fn refwatch(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_refwatch"))
        .args(args)
        .output()
        .expect("run refwatch");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_taken_port_fails_before_attaching() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = taken.local_addr().expect("its address").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = dir.path().join("rec");
    let rec = rec.to_str().expect("utf-8 path");
    for cmd in [
        vec!["attach", "--headless", "--metrics", addr.as_str()],
        vec!["record", "-o", rec, "--metrics", addr.as_str()],
    ] {
        let (code, stdout, stderr) = refwatch(&cmd);
        assert_eq!(code, Some(1), "{cmd:?}: {stderr}");
        // One line, naming the address; nothing attached (stdout says so
        // once hooks are attached).
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "refwatch: --metrics {addr}: cannot listen there: "
            )),
            "{stderr}"
        );
        assert!(!stdout.contains("attached"), "{stdout}");
    }
    assert!(
        !dir.path().join("rec").exists(),
        "the recording was created"
    );
}

#[test]
fn an_address_that_is_no_address_is_refused() {
    let (code, _, stderr) = refwatch(&["attach", "--headless", "--metrics", "localhost:x"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("is not PORT, IP:PORT or [IPv6]:PORT"),
        "{stderr}"
    );
}
