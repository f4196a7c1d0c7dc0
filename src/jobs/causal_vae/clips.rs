//! Where the CausalVAE's clips come from: `data.video_path` is a folder searched recursively
//! (UCF101's `<class>/<clip>.avi`, or folders of extracted frames), or a text file listing
//! clips one per line (Open-Sora-Plan's `--video_path` accepts both).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Container formats handed to FFmpeg (case-insensitive extensions).
pub const CONTAINER_EXTENSIONS: [&str; 11] = [
    "mp4", "avi", "mkv", "webm", "mov", "m4v", "mpg", "mpeg", "flv", "wmv", "ts",
];
/// Frame files of a frame folder, ordered by name (`000001.png`, `000002.png`, …).
pub const FRAME_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// One clip and how to read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Clip {
    /// A container (mp4, avi, …), decoded by FFmpeg.
    Container(PathBuf),
    /// An animated GIF, decoded natively.
    Gif(PathBuf),
    /// A folder of still frames in name order, decoded natively.
    Frames { dir: PathBuf, frames: Vec<PathBuf> },
}

impl Clip {
    pub fn path(&self) -> &Path {
        match self {
            Clip::Container(p) | Clip::Gif(p) => p,
            Clip::Frames { dir, .. } => dir,
        }
    }

    pub fn needs_ffmpeg(&self) -> bool {
        matches!(self, Clip::Container(_))
    }
}

fn extension_in(path: &Path, list: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| list.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn is_gif(path: &Path) -> bool {
    extension_in(path, &["gif"])
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The clip a single path names: a container or GIF file, or a frame folder.
fn clip_at(path: &Path) -> Result<Clip> {
    if path.is_dir() {
        let frames = frame_files(path)?;
        if frames.is_empty() {
            bail!(
                "`{}` is a folder without frame files (.png, .jpg): a frame folder holds one \
                 clip's frames in name order",
                path.display()
            );
        }
        return Ok(Clip::Frames {
            dir: path.to_path_buf(),
            frames,
        });
    }
    if !path.is_file() {
        bail!("`{}` does not exist", path.display());
    }
    if is_gif(path) {
        Ok(Clip::Gif(path.to_path_buf()))
    } else if extension_in(path, &CONTAINER_EXTENSIONS) {
        Ok(Clip::Container(path.to_path_buf()))
    } else {
        bail!(
            "`{}` is not a clip: expected a video file ({}), a .gif, or a folder of frames",
            path.display(),
            CONTAINER_EXTENSIONS.join(", ")
        )
    }
}

/// The frame files directly inside `dir`, in name order.
fn frame_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut frames: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list `{}`", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !is_hidden(p) && extension_in(p, &FRAME_EXTENSIONS))
        .collect();
    frames.sort();
    Ok(frames)
}

/// Every clip `video_path` names, sorted by path: a folder is searched recursively, and a
/// folder that holds frame files is one clip; any other file is read as a list of clip paths
/// (relative ones are taken from the list file's folder; blank lines and `#` comments skipped).
pub fn list(video_path: &Path) -> Result<Vec<Clip>> {
    if video_path.is_file() {
        if is_gif(video_path) || extension_in(video_path, &CONTAINER_EXTENSIONS) {
            return Ok(vec![clip_at(video_path)?]);
        }
        return read_list_file(video_path);
    }
    if !video_path.is_dir() {
        bail!("`{}` does not exist", video_path.display());
    }
    let mut clips = Vec::new();
    let mut walk = walkdir::WalkDir::new(video_path)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.with_context(|| format!("cannot list `{}`", video_path.display()))?;
        let path = entry.path();
        if entry.depth() > 0 && is_hidden(path) {
            if entry.file_type().is_dir() {
                walk.skip_current_dir();
            }
            continue;
        }
        if entry.file_type().is_dir() {
            let frames = frame_files(path)?;
            if !frames.is_empty() {
                clips.push(Clip::Frames {
                    dir: path.to_path_buf(),
                    frames,
                });
                // A frame folder is a leaf: its frames are not clips of their own.
                walk.skip_current_dir();
            }
        } else if is_gif(path) {
            clips.push(Clip::Gif(path.to_path_buf()));
        } else if extension_in(path, &CONTAINER_EXTENSIONS) {
            clips.push(Clip::Container(path.to_path_buf()));
        }
    }
    if clips.is_empty() {
        bail!(
            "`{}` holds no clips: expected video files ({}), .gif files, or folders of frames \
             (`<clip>/000001.png`…), in any depth of sub-folders",
            video_path.display(),
            CONTAINER_EXTENSIONS.join(", ")
        );
    }
    Ok(clips)
}

fn read_list_file(list: &Path) -> Result<Vec<Clip>> {
    let text = std::fs::read_to_string(list).with_context(|| {
        format!(
            "`{}` is neither a folder nor a video file, so it was read as a list of clips, but \
             it is not readable text",
            list.display()
        )
    })?;
    let base = list.parent().unwrap_or(Path::new("."));
    let mut clips = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let path = base.join(line);
        match clip_at(&path) {
            Ok(clip) => clips.push(clip),
            Err(e) => errors.push(format!("line {}: {e:#}", n + 1)),
        }
    }
    if !errors.is_empty() {
        const SHOWN: usize = 5;
        let more = errors.len().saturating_sub(SHOWN);
        bail!(
            "the clip list `{}` names {} unusable entr{}: {}{}",
            list.display(),
            errors.len(),
            if errors.len() == 1 { "y" } else { "ies" },
            errors[..errors.len().min(SHOWN)].join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        );
    }
    if clips.is_empty() {
        bail!(
            "the clip list `{}` names no clips (one path per line, relative to the list's folder)",
            list.display()
        );
    }
    Ok(clips)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn folders_are_searched_recursively_and_frame_folders_are_one_clip() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("Biking/v_Biking_g01_c01.avi"));
        touch(&root.join("Archery/v_Archery_g01_c01.MP4"));
        touch(&root.join("gifs/wave.gif"));
        touch(&root.join("frames/clip_b/000002.png"));
        touch(&root.join("frames/clip_b/000001.png"));
        touch(&root.join("frames/clip_b/notes.txt"));
        touch(&root.join(".cache/hidden.mp4"));
        touch(&root.join("readme.md"));
        let clips = list(root).unwrap();
        let names: Vec<String> = clips
            .iter()
            .map(|c| c.path().strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "Archery/v_Archery_g01_c01.MP4",
                "Biking/v_Biking_g01_c01.avi",
                "frames/clip_b",
                "gifs/wave.gif"
            ]
        );
        let Clip::Frames { frames, .. } = &clips[2] else {
            panic!("{:?}", clips[2])
        };
        let frames: Vec<_> = frames.iter().map(|f| f.file_name().unwrap()).collect();
        assert_eq!(frames, ["000001.png", "000002.png"]);
        assert!(clips[0].needs_ffmpeg() && !clips[2].needs_ffmpeg() && !clips[3].needs_ffmpeg());
    }

    #[test]
    fn list_files_are_relative_to_their_folder_and_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("videos/a.mp4"));
        touch(&root.join("frames/b/0001.jpg"));
        std::fs::write(
            root.join("train.txt"),
            "# clips\nvideos/a.mp4\n\nframes/b\n",
        )
        .unwrap();
        let clips = list(&root.join("train.txt")).unwrap();
        assert_eq!(clips.len(), 2);
        assert_eq!(clips[0], Clip::Container(root.join("videos/a.mp4")));

        std::fs::write(
            root.join("bad.txt"),
            "videos/a.mp4\nvideos/missing.mp4\nnotes.md\n",
        )
        .unwrap();
        touch(&root.join("notes.md"));
        let e = format!("{:#}", list(&root.join("bad.txt")).unwrap_err());
        assert!(e.contains("2 unusable entries"), "{e}");
        assert!(
            e.contains("line 2:") && e.contains("missing.mp4` does not exist"),
            "{e}"
        );
        assert!(e.contains("line 3:") && e.contains("is not a clip"), "{e}");
    }

    #[test]
    fn an_empty_folder_says_what_it_expected() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("a/readme.md"));
        let e = format!("{:#}", list(dir.path()).unwrap_err());
        assert!(
            e.contains("holds no clips") && e.contains("folders of frames"),
            "{e}"
        );
        let e = format!("{:#}", list(&dir.path().join("nope")).unwrap_err());
        assert!(e.contains("does not exist"), "{e}");
    }
}
