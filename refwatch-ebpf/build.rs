//! Rebuild the kernel programs when the linker changes (it is not a cargo dependency).
use which::which;

fn main() {
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
