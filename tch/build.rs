//! Records libtorch's library folder in `runner-tch`'s run path, as the root package's build.rs
//! does for `runner`: absolute, and relative to the executable ($ORIGIN) when the folder lies
//! inside the checkout, so a moved checkout still runs. On another machine (the GPU host),
//! LD_LIBRARY_PATH names the torch there (bench/gpu_check.py does).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!(
            "cargo:warning=torch-sys did not report libtorch's folder: runner-tch will need \
             LD_LIBRARY_PATH=<site-packages>/torch/lib"
        );
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let checkout = manifest.parent().unwrap_or(&manifest);
    if let Ok(inside) = lib.strip_prefix(checkout) {
        // target/<profile>/runner-tch and target/<dir>/<profile>/runner-tch.
        for up in ["../..", "../../.."] {
            println!(
                "cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/{up}/{}",
                inside.display()
            );
        }
    }
}
