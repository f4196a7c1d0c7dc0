//! Video containers are decoded by the `ffmpeg` program on PATH.
//!
//! Why the program and not bindings to libav*: the `ffmpeg` binary is what Open-Sora-Plan's
//! decord/torchvision readers wrap and what every machine that prepares video already has; it
//! needs no C headers, clang or bindgen at build time and ties the build to no particular
//! libavcodec ABI; and a damaged file crashes a child process, not the trainer. The cost is one
//! process start per decode (~10 ms), small beside decoding a clip. FFmpeg also does the short-
//! side resize (bicubic) and centre crop, so only `resolution²` pixels per frame cross the pipe.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// How to install FFmpeg, for error messages.
pub const INSTALL_HINT: &str = "install FFmpeg (Debian/Ubuntu: `sudo apt-get install ffmpeg`; \
    Fedora: `sudo dnf install ffmpeg`; macOS: `brew install ffmpeg`; conda: `conda install -c \
    conda-forge ffmpeg`) so that `ffmpeg` is on PATH, or convert the clips to frame folders \
    (`<clip>/000001.png`…) or GIFs, which runner reads itself";

/// The `ffmpeg` program found on PATH.
#[derive(Debug, Clone)]
pub struct Ffmpeg {
    program: PathBuf,
    /// The first line of `ffmpeg -version` (logged with the run).
    version: String,
}

impl Ffmpeg {
    /// Finds `ffmpeg` on PATH and checks that it runs; `None` when there is none.
    pub fn find() -> Result<Option<Ffmpeg>> {
        let Some(program) = on_path("ffmpeg") else {
            return Ok(None);
        };
        let out = Command::new(&program)
            .args(["-hide_banner", "-version"])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot start `{}`", program.display()))?;
        if !out.status.success() {
            bail!(
                "`{} -version` failed ({}); reinstall FFmpeg",
                program.display(),
                out.status
            );
        }
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(Some(Ffmpeg { program, version }))
    }

    /// The first line of `ffmpeg -version`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every frame of the first video stream of `clip`, resized so that its short side is
    /// `size` (bicubic) and centre-cropped to `size × size`: `size² × 3` RGB bytes per frame.
    pub fn decode(&self, clip: &Path, size: u32) -> Result<Vec<u8>> {
        let filter = format!(
            "scale='if(lt(iw,ih),{size},-1)':'if(lt(iw,ih),-1,{size})':flags=bicubic,\
             crop={size}:{size}"
        );
        // One decoding thread: loader workers already run one clip each in parallel.
        let out = Command::new(&self.program)
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-threads",
                "1",
            ])
            .arg("-i")
            .arg(clip)
            .args(["-map", "0:v:0", "-filter_threads", "1", "-vf", &filter])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot start `{}`", self.program.display()))?;
        let frame = (size as usize).pow(2) * 3;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "FFmpeg cannot decode `{}` ({}): {}",
                clip.display(),
                out.status,
                tail.join(" | ")
            );
        }
        if out.stdout.is_empty() || out.stdout.len() % frame != 0 {
            bail!(
                "FFmpeg decoded no whole frames from `{}` ({} bytes)",
                clip.display(),
                out.stdout.len()
            );
        }
        Ok(out.stdout)
    }
}

/// `name` in a directory of PATH, as a shell would find it.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.with_extension("exe").is_file() || p.is_file()
}
