//! The git revision refwatch is built from, for `refwatch --version`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The revision text and the git files whose change should rebuild it.
#[derive(Debug)]
pub struct Revision {
    /// `abc1234`, `abc1234-dirty` (tracked files differ from HEAD), or
    /// `unknown` (not built from a git checkout of this workspace, or no git).
    pub text: String,
    /// HEAD, the branch's ref, packed-refs and the index, those that exist.
    pub watch: Vec<PathBuf>,
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        // Never take a lock or rewrite the index: the index is watched,
        // and a build must not change what it watches.
        .arg("--no-optional-locks")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The revision of the git checkout whose top folder is `workspace`.
pub fn revision(workspace: &Path) -> Revision {
    let unknown = Revision {
        text: "unknown".to_owned(),
        watch: Vec::new(),
    };
    // A checkout of this workspace, not some repository around it.
    let Some(top) = git(workspace, &["rev-parse", "--show-toplevel"]) else {
        return unknown;
    };
    let same = match (Path::new(&top).canonicalize(), workspace.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        return unknown;
    }
    let Some(hash) = git(workspace, &["rev-parse", "--short", "HEAD"]) else {
        return unknown;
    };
    let dirty = git(
        workspace,
        &["status", "--porcelain", "--untracked-files=no"],
    )
    .is_some_and(|s| !s.is_empty());
    let git_path =
        |name: &str| git(workspace, &["rev-parse", "--git-path", name]).map(|p| workspace.join(p));
    let mut watch: Vec<PathBuf> = ["HEAD", "index", "packed-refs"]
        .into_iter()
        .filter_map(git_path)
        .collect();
    if let Some(branch) = git(workspace, &["symbolic-ref", "-q", "HEAD"]) {
        // The loose ref, or its folder while the ref is only packed.
        if let Some(file) = git_path(&branch) {
            if file.exists() {
                watch.push(file);
            } else {
                watch.extend(file.parent().map(Path::to_path_buf));
            }
        }
    }
    watch.retain(|p| p.exists());
    Revision {
        text: if dirty { format!("{hash}-dirty") } else { hash },
        watch,
    }
}
