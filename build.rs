//! With the `tch` feature:
//! 1. Record libtorch's library folder in the run path of `runner` (and of the test binaries),
//!    so they find libtorch_cpu.so and friends without LD_LIBRARY_PATH. torch-sys located the
//!    folder in the torch wheel and passes it on as DEP_TCH_LIBTORCH_LIB. Besides the absolute
//!    folder, the same folder relative to the binary ($ORIGIN) when it lies inside the checkout,
//!    so a checkout moved as a whole (target/ with .venv-tch/) still runs.
//! 2. Compile the c10d shim (src/dist/c10d_shim.cpp, c10d_nccl.cpp) against that libtorch's
//!    headers: data-parallel training over libtorch's own process groups. Gloo needs gloo's
//!    headers, which the wheel does not ship (Debian's `libgloo-dev`, or RUNNER_GLOO_INCLUDE);
//!    NCCL needs the CUDA and NCCL headers of the wheel's nvidia-* packages plus
//!    nvidia-cuda-nvcc-cu12 and nvidia-cuda-cccl-cu12 (`just setup-tch` installs them). What is
//!    missing is left out with a warning; `runner run` then says which backend this binary lacks.
//! 3. Compile the ops shim (src/kernels/libtorch_ops.cpp): libtorch kernels tch does not wrap
//!    (the fused AdamW), against the same headers.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    build_facts();
    // Set when the c10d shim was compiled (the `tch` feature with libtorch's headers found).
    println!("cargo::rustc-check-cfg=cfg(runner_c10d)");
    // Set when the libtorch ops shim (src/kernels/libtorch_ops.cpp) was compiled.
    println!("cargo::rustc-check-cfg=cfg(runner_torch_ops)");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!(
            "cargo:warning=torch-sys did not report libtorch's folder: runner will need \
             LD_LIBRARY_PATH=<site-packages>/torch/lib, and is built without data-parallel training"
        );
        return;
    };
    rpath(&lib);
    #[cfg(feature = "tch")]
    {
        c10d_shim(&lib);
        torch_ops(&lib);
    }
}

/// What the run record (`record::build`) and `runner --version` say of this binary: the commit
/// it was built from (`-dirty` when the work tree had changes) and, with `tch`, the torch
/// wheel's version.
fn build_facts() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&manifest)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).map(|c| {
        let dirty =
            git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        if dirty { format!("{c}-dirty") } else { c }
    });
    println!(
        "cargo:rustc-env=RUNNER_BUILD_COMMIT={}",
        commit.unwrap_or_default()
    );
    // A new commit or staged change is a new build id.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    let torch = std::env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .and_then(|lib| std::fs::read_to_string(lib.join("../version.py")).ok())
        .and_then(|v| {
            v.lines()
                .find_map(|l| l.strip_prefix("__version__ = "))
                .map(|s| s.trim_matches(|c| c == '\'' || c == '"').to_string())
        });
    // `runner --version`: the package version, and the libtorch this build links or, in the
    // libtorch build's `runner` (`delegate`), the one its `runner-tch` is built with in the
    // same environment (the python torch-sys asks).
    let pkg = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let line = match &torch {
        Some(t) => format!("{pkg} (libtorch {t})"),
        None if std::env::var_os("CARGO_FEATURE_DELEGATE").is_some() => {
            println!("cargo:rerun-if-env-changed=PATH");
            match python_torch_version() {
                Some(t) => format!("{pkg} (libtorch {t}, in runner-tch)"),
                None => format!("{pkg} (libtorch in runner-tch)"),
            }
        }
        None => pkg,
    };
    println!("cargo:rustc-env=RUNNER_VERSION_LINE={line}");
    println!(
        "cargo:rustc-env=RUNNER_LIBTORCH_VERSION={}",
        torch.unwrap_or_default()
    );
}

/// The torch version of the `python` on PATH (as torch-sys finds it with LIBTORCH_USE_PYTORCH).
fn python_torch_version() -> Option<String> {
    let out = std::process::Command::new("python")
        .args(["-c", "import torch; print(torch.__version__)"])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

fn rpath(lib: &Path) {
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

#[cfg(feature = "tch")]
fn c10d_shim(lib: &Path) {
    for f in [
        "src/dist/c10d_shim.cpp",
        "src/dist/c10d_nccl.cpp",
        "src/shim_guard.hpp",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    for v in ["RUNNER_GLOO_INCLUDE", "LIBTORCH_CXX11_ABI"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    // torch/lib → torch/include (wheel and libtorch zip alike).
    let torch = lib.parent().unwrap_or(lib);
    let include = torch.join("include");
    if !include
        .join("torch/csrc/distributed/c10d/TCPStore.hpp")
        .is_file()
    {
        panic!(
            "libtorch at `{}` has no c10d headers (include/torch/csrc/distributed/c10d): use the \
             torch wheel from PyPI (`just setup-tch`)",
            torch.display()
        );
    }
    let gloo = std::env::var_os("RUNNER_GLOO_INCLUDE")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/include", "/usr/local/include"].map(PathBuf::from))
        .find(|d| d.join("gloo/algorithm.h").is_file());
    if gloo.is_none() {
        println!(
            "cargo:warning=gloo's headers were not found (apt-get install libgloo-dev, or set \
             RUNNER_GLOO_INCLUDE): this runner cannot train data-parallel on CPUs"
        );
    }
    // <site-packages>/torch/lib → <site-packages>/nvidia/<package>/include.
    let nvidia = torch.parent().map(|s| s.join("nvidia"));
    let cuda_includes: Vec<PathBuf> = nvidia
        .as_deref()
        .and_then(|n| std::fs::read_dir(n).ok())
        .map(|entries| {
            let mut dirs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path().join("include")))
                .filter(|d| d.is_dir())
                .collect();
            dirs.sort();
            dirs
        })
        .unwrap_or_default();
    let has = |file: &str| cuda_includes.iter().any(|d| d.join(file).is_file());
    let nccl = lib.join("libtorch_cuda.so").is_file()
        && [
            "nccl.h",
            "cuda_runtime_api.h",
            "crt/host_config.h",
            "nv/target",
        ]
        .iter()
        .all(|f| has(f));
    if lib.join("libtorch_cuda.so").is_file() && !nccl {
        println!(
            "cargo:warning=CUDA/NCCL headers not found next to the torch wheel (`just setup-tch` \
             installs nvidia-cuda-nvcc-cu12 and nvidia-cuda-cccl-cu12): this runner cannot train \
             data-parallel on GPUs"
        );
    }

    let build = |defines: &[&str]| {
        let mut b = libtorch_cc(&include);
        for d in defines {
            b.define(d, None);
        }
        b
    };
    let mut shim = build(&[]);
    if let Some(gloo) = &gloo {
        shim.include(gloo)
            .define("USE_C10D_GLOO", None)
            .define("RUNNER_GLOO", None);
    }
    if nccl {
        shim.define("RUNNER_NCCL", None);
    }
    // The shim's archive first: the linker then meets the NCCL part it calls after it.
    shim.file("src/dist/c10d_shim.cpp").compile("runner_c10d");
    if nccl {
        build(&["USE_C10D_NCCL", "USE_CUDA"])
            .includes(&cuda_includes)
            .file("src/dist/c10d_nccl.cpp")
            .compile("runner_c10d_nccl");
    }
    println!("cargo:rustc-cfg=runner_c10d");
}

/// The C++ compiler set up for libtorch's headers in `torch/include`: glue around libtorch
/// calls, nothing to optimise, and the headers are heavy, so compiled quickly, without debug
/// info or warnings (libtorch's headers are not warning-free, and not ours to fix).
#[cfg(feature = "tch")]
fn libtorch_cc(include: &Path) -> cc::Build {
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut b = cc::Build::new();
    b.cpp(true)
        .std("c++17")
        .opt_level(1)
        .debug(false)
        .include(include)
        .include(include.join("torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        .warnings(false);
    b
}

#[cfg(feature = "tch")]
fn torch_ops(lib: &Path) {
    let source = "src/kernels/libtorch_ops.cpp";
    println!("cargo:rerun-if-changed={source}");
    let include = lib.parent().unwrap_or(lib).join("include");
    libtorch_cc(&include)
        .file(source)
        .compile("runner_torch_ops");
    println!("cargo:rustc-cfg=runner_torch_ops");
}
