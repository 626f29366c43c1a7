//! build.rs's helpers, compiled here from the same files: finding the
//! bpf-linker that `cargo xtask setup` installed, and the git revision.

#[path = "../build/linker.rs"]
mod linker;
#[path = "../build/revision.rs"]
mod revision;

use std::{
    ffi::{OsStr, OsString},
    fs,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::Command,
};

fn fake_linker(dir: &Path, mode: u32) {
    fs::create_dir_all(dir).expect("mkdir");
    let file = dir.join(linker::LINKER);
    fs::write(&file, "#!/bin/sh\n").expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn cache_dir_follows_xtask_rule() {
    let tmp = Path::new("/tmp");
    assert_eq!(
        linker::cache_dir(Some(OsStr::new("/c")), Some(OsStr::new("/h")), tmp),
        Path::new("/c")
    );
    assert_eq!(
        linker::cache_dir(Some(OsStr::new("")), Some(OsStr::new("/h")), tmp),
        Path::new("/h/.cache/refwatch")
    );
    assert_eq!(
        linker::cache_dir(None, None, tmp),
        Path::new("/tmp/refwatch-cache")
    );
}

#[test]
fn linker_on_path_wins_then_cache_then_one_line_error() {
    let t = tempfile::tempdir().expect("tempdir");
    let on_path = t.path().join("path-bin");
    let cache = t.path().join("cache");
    let other = t.path().join("other");
    fs::create_dir_all(&other).expect("mkdir");
    let path = |dirs: &[&Path]| -> OsString { std::env::join_paths(dirs).expect("join") };

    // Nowhere: the message says what to run and where it looked.
    let err = linker::find(Some(&path(&[&other])), &cache).expect_err("missing");
    assert!(err.contains("cargo xtask setup"), "{err}");
    assert!(err.contains(&cache.join("bpf-linker/bin").display().to_string()));
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(linker::find(None, &cache).is_err());

    // Only in the cache: its bin folder is to be put on PATH.
    fake_linker(&cache.join("bpf-linker/bin"), 0o755);
    assert_eq!(
        linker::find(Some(&path(&[&other])), &cache),
        Ok(linker::Found::InCache(cache.join("bpf-linker/bin")))
    );
    assert_eq!(
        linker::find(None, &cache),
        Ok(linker::Found::InCache(cache.join("bpf-linker/bin")))
    );

    // A non-executable file on PATH does not count.
    fake_linker(&on_path, 0o644);
    assert_eq!(
        linker::find(Some(&path(&[&other, &on_path])), &cache),
        Ok(linker::Found::InCache(cache.join("bpf-linker/bin")))
    );
    fake_linker(&on_path, 0o755);
    assert_eq!(
        linker::find(Some(&path(&[&other, &on_path])), &cache),
        Ok(linker::Found::OnPath)
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn revision_of_a_checkout_clean_and_dirty() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = t.path();
    git(repo, &["init", "-q", "-b", "main"]);
    fs::write(repo.join("a"), "1").expect("write");
    git(repo, &["add", "a"]);
    git(repo, &["commit", "-q", "-m", "one"]);
    let short = git(repo, &["rev-parse", "--short", "HEAD"]);

    let r = revision::revision(repo);
    assert_eq!(r.text, short);
    // HEAD, the index and the branch's loose ref are watched.
    for name in [".git/HEAD", ".git/index", ".git/refs/heads/main"] {
        assert!(
            r.watch
                .iter()
                .any(|p| p.canonicalize().ok() == repo.join(name).canonicalize().ok()),
            "{name} not in {:?}",
            r.watch
        );
    }
    assert!(r.watch.iter().all(|p| p.exists()));

    // An untracked file is not a change; an edited tracked one is.
    fs::write(repo.join("new"), "x").expect("write");
    assert_eq!(revision::revision(repo).text, short);
    fs::write(repo.join("a"), "2").expect("write");
    assert_eq!(revision::revision(repo).text, format!("{short}-dirty"));
}

#[test]
fn revision_outside_a_checkout_is_unknown() {
    let t = tempfile::tempdir().expect("tempdir");
    // A plain folder (were the temporary folder inside a checkout, its top
    // would not be this folder: unknown all the same).
    let plain = t.path().join("plain");
    fs::create_dir_all(&plain).expect("mkdir");
    let r = revision::revision(&plain);
    assert_eq!(r.text, "unknown");
    assert!(r.watch.is_empty());
    // A folder inside some other checkout is not that checkout.
    let repo = t.path().join("repo");
    fs::create_dir_all(repo.join("sub")).expect("mkdir");
    git(&repo, &["init", "-q"]);
    fs::write(repo.join("sub/a"), "1").expect("write");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    assert_eq!(revision::revision(&repo.join("sub")).text, "unknown");
    // A folder that does not exist.
    assert_eq!(revision::revision(&t.path().join("nope")).text, "unknown");
}
