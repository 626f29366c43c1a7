//! Builds refwatch's kernel programs (the `refwatch-ebpf` package) with
//! aya-build; `main` embeds the object. `AYA_BUILD_SKIP=1` skips that build for
//! a quick `cargo check`: the binary then says it has no kernel programs.
//! Also sets `REFWATCH_GIT_REVISION` for `refwatch --version`.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

#[path = "build/linker.rs"]
mod linker;
#[path = "build/revision.rs"]
mod revision;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| anyhow!("CARGO_MANIFEST_DIR not set"))?,
    );
    let workspace = manifest.join("..");
    let rev = revision::revision(&workspace);
    println!("cargo:rustc-env=REFWATCH_GIT_REVISION={}", rev.text);
    for path in &rev.watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let object = out.join("refwatch");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        if !object.exists() {
            fs::write(&object, b"").context("write empty eBPF placeholder")?;
        }
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        return Ok(());
    }

    println!("cargo:rerun-if-env-changed=REFWATCH_CACHE");
    let cache = linker::cache_dir(
        env::var_os("REFWATCH_CACHE").as_deref(),
        env::var_os("HOME").as_deref(),
        &env::temp_dir(),
    );
    let path = env::var_os("PATH");
    match linker::find(path.as_deref(), &cache) {
        Ok(linker::Found::OnPath) => {}
        Ok(linker::Found::InCache(bin)) => {
            let mut dirs = vec![bin];
            dirs.extend(path.iter().flat_map(env::split_paths));
            let joined = env::join_paths(dirs).context("PATH with bpf-linker's folder")?;
            // SAFETY: the build script has one thread; the eBPF build that
            // aya-build starts below inherits this PATH.
            unsafe { env::set_var("PATH", joined) };
        }
        Err(line) => {
            // Cargo shows it as the build's error; no backtrace, one line.
            println!("cargo::error={line}");
            std::process::exit(1);
        }
    }

    let root = workspace.join("refwatch-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "refwatch-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
