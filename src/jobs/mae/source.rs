//! Where MAE's images come from: an image folder in ImageNet layout (decoded on demand with the
//! `image` crate, in loader workers) or an IDX file of MNIST-family images (read whole at start;
//! Fashion-MNIST's 60 000 images are 47 MB).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::RgbImage;

/// File extensions decoded from image folders (case-insensitive).
const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

pub enum Images {
    /// Image files under a folder, sorted by path (class folders are not labels here).
    Files { paths: Vec<PathBuf> },
    /// `count` grey images of `rows × cols` bytes from one IDX file.
    Idx {
        file: PathBuf,
        rows: usize,
        cols: usize,
        pixels: Vec<u8>,
    },
}

impl Images {
    /// Opens `path`: an IDX image file, a folder holding exactly one, or an image folder.
    pub fn open(path: &Path) -> Result<Images> {
        match find(path)? {
            Found::Idx(file) => read_idx(&file),
            Found::Files(mut paths) => {
                paths.sort();
                Ok(Images::Files { paths })
            }
        }
    }

    /// How many images [`Images::open`] would give, without reading them: an IDX file's
    /// header (checked against the file's size), or the image files under a folder.
    pub fn count(path: &Path) -> Result<usize> {
        match find(path)? {
            Found::Idx(file) => count_idx(&file),
            Found::Files(paths) => Ok(paths.len()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Images::Files { paths } => paths.len(),
            Images::Idx {
                rows, cols, pixels, ..
            } => pixels.len() / (rows * cols),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where image `i` comes from, for messages.
    pub fn describe(&self, i: usize) -> String {
        match self {
            Images::Files { paths } => paths[i].display().to_string(),
            Images::Idx { file, .. } => format!("{} (image {i})", file.display()),
        }
    }

    /// Image `i` as RGB (grey images are repeated over the three channels, as PIL's
    /// `convert("RGB")` does in the reference loader).
    pub fn load(&self, i: usize) -> Result<RgbImage> {
        match self {
            Images::Files { paths } => {
                let path = &paths[i];
                let img = image::ImageReader::open(path)
                    .and_then(|r| r.with_guessed_format())
                    .with_context(|| format!("cannot open `{}`", path.display()))?
                    .decode()
                    .with_context(|| format!("cannot decode `{}`", path.display()))?;
                Ok(img.into_rgb8())
            }
            Images::Idx {
                rows, cols, pixels, ..
            } => {
                let n = rows * cols;
                let grey = &pixels[i * n..(i + 1) * n];
                let rgb: Vec<u8> = grey.iter().flat_map(|&v| [v, v, v]).collect();
                Ok(RgbImage::from_raw(*cols as u32, *rows as u32, rgb).expect("sized buffer"))
            }
        }
    }

    /// Keeps only the images at `keep` (in that order).
    pub fn subset(&self, keep: &[usize]) -> Images {
        match self {
            Images::Files { paths } => Images::Files {
                paths: keep.iter().map(|&i| paths[i].clone()).collect(),
            },
            Images::Idx {
                file,
                rows,
                cols,
                pixels,
            } => {
                let n = rows * cols;
                Images::Idx {
                    file: file.clone(),
                    rows: *rows,
                    cols: *cols,
                    pixels: keep
                        .iter()
                        .flat_map(|&i| pixels[i * n..(i + 1) * n].iter().copied())
                        .collect(),
                }
            }
        }
    }
}

/// Where a `data.path` leads.
enum Found {
    Idx(PathBuf),
    /// Image files under a folder, unsorted.
    Files(Vec<PathBuf>),
}

fn find(path: &Path) -> Result<Found> {
    if path.is_file() {
        return Ok(Found::Idx(path.to_path_buf()));
    }
    if !path.is_dir() {
        bail!("`{}` does not exist", path.display());
    }
    let idx: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list `{}`", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_idx_images_name(p))
        .collect();
    match idx.len() {
        0 => {}
        1 => return Ok(Found::Idx(idx[0].clone())),
        _ => {
            let mut names: Vec<String> = idx
                .iter()
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into())
                .collect();
            names.sort();
            bail!(
                "`{}` holds several IDX image files ({}); point data.path at the training \
                 file and data.eval_path at the held-out one",
                path.display(),
                names.join(", ")
            );
        }
    }
    let mut paths = Vec::new();
    for entry in walkdir::WalkDir::new(path).follow_links(true) {
        let entry = entry.with_context(|| format!("cannot list `{}`", path.display()))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if entry.file_type().is_file() && !hidden && has_image_extension(entry.path()) {
            paths.push(entry.into_path());
        }
    }
    if paths.is_empty() {
        bail!(
            "`{}` holds no images: expected `<class>/<image>` files ending in .jpg, .jpeg \
             or .png (ImageNet layout), or an IDX file `*-images-idx3-ubyte[.gz]`",
            path.display()
        );
    }
    Ok(Found::Files(paths))
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn is_idx_images_name(p: &Path) -> bool {
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    name.ends_with("-images-idx3-ubyte") || name.ends_with("-images-idx3-ubyte.gz")
}

/// Reads an IDX file of unsigned bytes with three dimensions (images × rows × columns),
/// gzip-compressed or not (told by the content, not the name).
fn read_idx(path: &Path) -> Result<Images> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("`{}` is not a valid gzip file", path.display()))?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).with_context(|| {
        format!(
            "`{}` is not an IDX image file (expected MNIST's `*-images-idx3-ubyte[.gz]` format: \
             magic 0x00000803, then image count, rows and columns)",
            path.display()
        )
    }).map(|(rows, cols, pixels)| Images::Idx {
        file: path.to_path_buf(),
        rows,
        cols,
        pixels,
    })
}

/// The image count of an IDX file from its 16-byte header, checked against the data's length
/// (for a gzip file, the uncompressed length its trailer records, modulo 2³²) instead of
/// decompressing it all, so `runner plan` counts ImageNet-sized files at once.
fn count_idx(path: &Path) -> Result<usize> {
    use std::io::{Seek, SeekFrom};
    let fail = |why: String| {
        anyhow::anyhow!(
            "`{}` is not an IDX image file (expected MNIST's `*-images-idx3-ubyte[.gz]` format: \
             magic 0x00000803, then image count, rows and columns): {why}",
            path.display()
        )
    };
    let open =
        || std::fs::File::open(path).with_context(|| format!("cannot read `{}`", path.display()));
    let mut file = open()?;
    let len = file.metadata()?.len();
    let mut magic = [0u8; 2];
    file.read_exact(&mut magic)
        .map_err(|_| fail(format!("only {len} bytes")))?;
    let gzipped = magic == [0x1f, 0x8b];
    let mut header = [0u8; 16];
    let read = if gzipped {
        flate2::read::GzDecoder::new(open()?).read_exact(&mut header)
    } else {
        file.seek(SeekFrom::Start(0))?;
        file.read_exact(&mut header)
    };
    read.map_err(|_| fail("shorter than its 16-byte header".into()))?;
    let (count, rows, cols) = parse_idx_header(&header).map_err(|e| fail(format!("{e}")))?;
    let expected = 16 + (count * rows * cols) as u64;
    // gzip's trailer ends with the uncompressed length modulo 2³² (RFC 1952, ISIZE).
    let (actual, wanted) = if gzipped {
        file.seek(SeekFrom::End(-4))?;
        let mut isize = [0u8; 4];
        file.read_exact(&mut isize)?;
        (u64::from(u32::from_le_bytes(isize)), expected % (1 << 32))
    } else {
        (len, expected)
    };
    if actual != wanted {
        return Err(fail(format!(
            "the header announces {count} images of {rows}×{cols} ({} bytes) but the data is \
             {} bytes (truncated or damaged file)",
            expected - 16,
            actual.saturating_sub(16)
        )));
    }
    Ok(count)
}

/// Image count, rows and columns from an IDX image header.
fn parse_idx_header(bytes: &[u8]) -> Result<(usize, usize, usize)> {
    if bytes.len() < 16 {
        bail!("only {} bytes", bytes.len());
    }
    let word = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
    match (bytes[2], bytes[3]) {
        (0x08, 3) if bytes[0] == 0 && bytes[1] == 0 => {}
        (0x08, d) if bytes[0] == 0 && bytes[1] == 0 => {
            bail!("it has {d} dimensions; image files have 3 (a labels file has 1)")
        }
        _ => bail!(
            "magic bytes {:02x}{:02x}{:02x}{:02x}",
            bytes[0],
            bytes[1],
            bytes[2],
            bytes[3]
        ),
    }
    let (count, rows, cols) = (word(4), word(8), word(12));
    if rows == 0 || cols == 0 {
        bail!("the header announces images of {rows}×{cols}");
    }
    Ok((count, rows, cols))
}

fn parse_idx(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>)> {
    let (count, rows, cols) = parse_idx_header(bytes)?;
    let expected = count * rows * cols;
    let data = &bytes[16..];
    if data.len() != expected {
        bail!(
            "the header announces {count} images of {rows}×{cols} ({expected} bytes) but {} \
             bytes follow (truncated or damaged file)",
            data.len()
        );
    }
    Ok((rows, cols, data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(count: u32, rows: u32, cols: u32, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, 3];
        for w in [count, rows, cols] {
            v.extend(w.to_be_bytes());
        }
        v.extend(data);
        v
    }

    #[test]
    fn idx_plain_and_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * 3 * 2).map(|v| v as u8 * 10).collect();
        let bytes = idx(2, 3, 2, &data);
        let plain = dir.path().join("x-images-idx3-ubyte");
        std::fs::write(&plain, &bytes).unwrap();
        let gz = dir.path().join("y-images-idx3-ubyte.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &bytes).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        for p in [&plain, &gz] {
            let images = Images::open(p).unwrap();
            assert_eq!(images.len(), 2);
            assert_eq!(Images::count(p).unwrap(), 2);
            let second = images.load(1).unwrap();
            assert_eq!(second.dimensions(), (2, 3));
            // Row-major: pixel (x=1, y=0) of image 1 is byte 6 + 1.
            assert_eq!(second.get_pixel(1, 0).0, [70, 70, 70]);
        }
        // A folder with two IDX image files is ambiguous and says so.
        let err = Images::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("several IDX image files"), "{err}");
    }

    #[test]
    fn damaged_idx_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t-images-idx3-ubyte");
        std::fs::write(&p, &idx(3, 2, 2, &[0; 11])[..]).unwrap();
        let err = format!("{:#}", Images::open(&p).err().unwrap());
        assert!(
            err.contains("announces 3 images of 2×2 (12 bytes) but 11"),
            "{err}"
        );
        // Counting reads the header alone, and still finds the file short, gzipped or not.
        let err = format!("{:#}", Images::count(&p).err().unwrap());
        assert!(err.contains("(12 bytes) but the data is 11 bytes"), "{err}");
        let gz = dir.path().join("t-images-idx3-ubyte.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &idx(3, 2, 2, &[0; 11])).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let err = format!("{:#}", Images::count(&gz).err().unwrap());
        assert!(err.contains("(12 bytes) but the data is 11 bytes"), "{err}");
        let mut labels = idx(3, 2, 2, &[0; 12]);
        labels[3] = 1;
        std::fs::write(&p, &labels).unwrap();
        let err = format!("{:#}", Images::open(&p).err().unwrap());
        assert!(err.contains("a labels file has 1"), "{err}");
    }

    #[test]
    fn folders_are_searched_recursively_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        for (class, name) in [("b", "2.PNG"), ("a", "1.png"), ("a/deep", "3.jpg")] {
            std::fs::create_dir_all(dir.path().join(class)).unwrap();
            let img = RgbImage::from_pixel(4, 3, image::Rgb([1, 2, 3]));
            let path = dir.path().join(class).join(name);
            let format = if name.ends_with("jpg") {
                image::ImageFormat::Jpeg
            } else {
                image::ImageFormat::Png
            };
            img.save_with_format(&path, format).unwrap();
        }
        std::fs::write(dir.path().join("a/notes.txt"), "not an image").unwrap();
        std::fs::write(dir.path().join("a/.hidden.png"), "junk").unwrap();
        let images = Images::open(dir.path()).unwrap();
        let names: Vec<String> = (0..images.len()).map(|i| images.describe(i)).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(Images::count(dir.path()).unwrap(), 3);
        assert!(
            names[0].ends_with("a/1.png") && names[2].ends_with("b/2.PNG"),
            "{names:?}"
        );
        assert_eq!(images.load(0).unwrap().get_pixel(0, 0).0, [1, 2, 3]);
        // A corrupt file is an error naming it, not a panic.
        std::fs::write(dir.path().join("b/2.PNG"), "junk").unwrap();
        let err = format!("{:#}", images.load(2).err().unwrap());
        assert!(err.contains("2.PNG"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = Images::open(empty.path()).err().unwrap().to_string();
        assert!(err.contains("holds no images"), "{err}");
    }
}
