//! With the `tch` feature: record libtorch's library folder in the run path of `runner` (and
//! of the test binaries), so they find libtorch_cpu.so and friends without LD_LIBRARY_PATH.
//! torch-sys located the folder in the torch wheel and passes it on as DEP_TCH_LIBTORCH_LIB.
//! Besides the absolute folder, the same folder relative to the binary ($ORIGIN) when it lies
//! inside the checkout, so a checkout moved as a whole (target/ with .venv-tch/) still runs.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!(
            "cargo:warning=torch-sys did not report libtorch's folder: runner will need \
             LD_LIBRARY_PATH=<site-packages>/torch/lib"
        );
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    if let Ok(inside) = lib.strip_prefix(&manifest) {
        // target/<profile>/runner and target/<profile>/deps/<test binary>.
        for up in ["../..", "../../.."] {
            println!(
                "cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/{up}/{}",
                inside.display()
            );
        }
    }
}
