//! Files refwatch is asked to write (`export -o`, and as it goes `record -o`
//! and `--jsonl`, [`create_growing`]): safe when run as root in
//! a directory others can write to. A regular (or new) file is written to
//! an exclusively created, unpredictably named temporary file beside it and
//! renamed over it only when complete, keeping the old file's mode; a
//! device, FIFO or socket is written in place; `-` is standard output; a
//! symbolic link, a directory and the file being read are refused.

use std::{
    fs::{self, File, OpenOptions, Permissions},
    io::{self, BufWriter, Write},
    os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use tempfile::NamedTempFile;

/// Mode of a file refwatch creates.
pub const NEW_FILE_MODE: u32 = 0o644;

/// How `-o PATH` is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Stdout,
    /// A device, FIFO or socket: written in place.
    InPlace(PathBuf),
    /// A regular file or a new one: replaced when complete, keeping its
    /// mode (`None`: new, [`NEW_FILE_MODE`]).
    Replace(PathBuf, Option<u32>),
}

/// Decides how to write `path`, refusing what must not be written.
pub fn dest(path: &Path) -> Result<Dest> {
    if path.as_os_str() == "-" {
        return Ok(Dest::Stdout);
    }
    match fs::symlink_metadata(path) {
        Ok(m) => {
            let t = m.file_type();
            if t.is_symlink() {
                bail!(
                    "{} is a symbolic link: refwatch does not write through links; give the path it points to",
                    path.display()
                );
            }
            if t.is_dir() {
                bail!("{} is a directory", path.display());
            }
            if t.is_file() {
                return Ok(Dest::Replace(path.to_path_buf(), Some(m.mode() & 0o7777)));
            }
            if t.is_char_device() || t.is_block_device() || t.is_fifo() || t.is_socket() {
                return Ok(Dest::InPlace(path.to_path_buf()));
            }
            bail!("{} is not a file refwatch can write", path.display())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Ok(Dest::Replace(path.to_path_buf(), None))
        }
        Err(e) => Err(e).with_context(|| format!("look at {}", path.display())),
    }
}

/// A file written as it goes (`record -o`, `attach --jsonl`), readable
/// while it grows and, after a crash, up to its last complete line.
pub struct Growing {
    pub file: File,
    /// The mode it was given (the old file's, or [`NEW_FILE_MODE`]).
    pub mode: u32,
}

/// Whether `path` may be written as it goes ([`create_growing`]): what
/// [`dest`] allows, but standard output (refwatch's own summary goes there).
pub fn check_growing(path: &Path) -> Result<Dest> {
    match dest(path)? {
        Dest::Stdout => bail!(
            "{}: refwatch prints its summary on standard output; give a file to write to",
            path.display()
        ),
        d => Ok(d),
    }
}

/// [`check_growing`] for every output of a run, refusing one named twice
/// (the second would replace the first while it is written).
pub fn check_growing_all(paths: &[&Path]) -> Result<()> {
    let mut seen = Vec::with_capacity(paths.len());
    for p in paths {
        check_growing(p)?;
        let abs = std::path::absolute(p).with_context(|| format!("look at {}", p.display()))?;
        if seen.contains(&abs) {
            bail!(
                "{} is given twice as an output: write each to a file of its own",
                p.display()
            );
        }
        seen.push(abs);
    }
    Ok(())
}

/// Opens `path` to write as it goes, by the rules of [`Output`]: a device,
/// FIFO or socket is written in place; a regular file or a new one is
/// created exclusively under an unpredictable name beside it, given the old
/// file's mode (or [`NEW_FILE_MODE`], or `mode`), and renamed over `path`
/// at once, before anything is written: it then grows at `path` (a crash
/// leaves what was written there, and no temporary file). A symbolic link
/// or a directory is refused; a link planted between the check and the
/// rename is replaced, never followed.
pub fn create_growing(path: &Path, mode: Option<u32>) -> Result<Growing> {
    match check_growing(path)? {
        Dest::InPlace(p) => {
            let file = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&p)
                .with_context(|| format!("open {}", p.display()))?;
            Ok(Growing {
                file,
                mode: NEW_FILE_MODE,
            })
        }
        Dest::Replace(p, old) => {
            let mode = mode.or(old).unwrap_or(NEW_FILE_MODE);
            let tmp = temp_beside(&p)?;
            tmp.as_file()
                .set_permissions(Permissions::from_mode(mode))
                .with_context(|| format!("set the mode of {}", p.display()))?;
            let file = tmp
                .persist(&p)
                .map_err(|e| e.error)
                .with_context(|| format!("create {}", p.display()))?;
            Ok(Growing { file, mode })
        }
        Dest::Stdout => bail!("internal: standard output for {}", path.display()),
    }
}

/// An exclusively created, unpredictably named temporary file in the
/// directory of `p`.
fn temp_beside(p: &Path) -> Result<NamedTempFile> {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("create a temporary file beside {}", p.display()))
}

/// Whether `a` and `b` are the same file (both exist).
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// An output being written; [`Output::commit`] makes it visible.
pub struct Output {
    dest: Dest,
    sink: Sink,
}

enum Sink {
    Stdout(io::Stdout),
    File(BufWriter<File>),
    Temp(BufWriter<NamedTempFile>),
}

impl Output {
    /// Opens `path` for writing; `input` is a file the command reads, which
    /// must not be the output.
    pub fn create(path: &Path, input: Option<&Path>) -> Result<Self> {
        if let Some(i) = input
            && same_file(i, path)
        {
            bail!(
                "{} is also the input: write the output elsewhere",
                path.display()
            );
        }
        let dest = dest(path)?;
        let sink = match &dest {
            Dest::Stdout => Sink::Stdout(io::stdout()),
            Dest::InPlace(p) => Sink::File(BufWriter::new(
                OpenOptions::new()
                    .write(true)
                    .open(p)
                    .with_context(|| format!("open {}", p.display()))?,
            )),
            Dest::Replace(p, _) => Sink::Temp(BufWriter::new(temp_beside(p)?)),
        };
        Ok(Self { dest, sink })
    }

    /// Where the bytes go.
    pub fn writer(&mut self) -> &mut dyn Write {
        match &mut self.sink {
            Sink::Stdout(s) => s,
            Sink::File(f) => f,
            Sink::Temp(t) => t,
        }
    }

    /// Flushes and, for a replaced file, syncs it and renames it over the
    /// target with the target's mode. Dropped without this, a replaced
    /// file's temporary file is removed and the target left as it was.
    pub fn commit(self) -> Result<()> {
        let name = self.display();
        match self.sink {
            Sink::Stdout(mut s) => s.flush().context("write standard output"),
            Sink::File(mut f) => f.flush().with_context(|| format!("write {name}")),
            Sink::Temp(t) => {
                let Dest::Replace(path, mode) = self.dest else {
                    bail!("internal: a temporary file for {name}");
                };
                let tmp = t
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(|| format!("write {name}"))?;
                tmp.as_file()
                    .set_permissions(Permissions::from_mode(mode.unwrap_or(NEW_FILE_MODE)))
                    .with_context(|| format!("set the mode of {name}"))?;
                tmp.as_file()
                    .sync_all()
                    .with_context(|| format!("write {name}"))?;
                tmp.persist(&path)
                    .map_err(|e| e.error)
                    .with_context(|| format!("replace {name}"))?;
                Ok(())
            }
        }
    }

    /// The target, for messages.
    pub fn display(&self) -> String {
        match &self.dest {
            Dest::Stdout => "standard output".into(),
            Dest::InPlace(p) | Dest::Replace(p, _) => p.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn write(path: &Path, input: Option<&Path>, text: &str) -> Result<()> {
        let mut o = Output::create(path, input)?;
        o.writer().write_all(text.as_bytes())?;
        o.commit()
    }

    #[test]
    fn a_new_file_appears_whole_with_the_default_mode() {
        let d = dir();
        let p = d.path().join("out.jsonl");
        write(&p, None, "hello\n").expect("write");
        assert_eq!(fs::read_to_string(&p).expect("read"), "hello\n");
        let mode = fs::metadata(&p).expect("meta").mode() & 0o777;
        assert_eq!(mode, NEW_FILE_MODE);
        assert_eq!(names(d.path()), vec!["out.jsonl"]);
    }

    #[test]
    fn an_existing_file_keeps_its_mode() {
        let d = dir();
        let p = d.path().join("secret.csv");
        fs::write(&p, "old").expect("write");
        fs::set_permissions(&p, Permissions::from_mode(0o600)).expect("chmod");
        write(&p, None, "new").expect("write");
        assert_eq!(fs::read_to_string(&p).expect("read"), "new");
        assert_eq!(fs::metadata(&p).expect("meta").mode() & 0o777, 0o600);
    }

    #[test]
    fn an_unfinished_output_leaves_nothing_behind() {
        let d = dir();
        let p = d.path().join("a.json");
        fs::write(&p, "keep").expect("write");
        let mut o = Output::create(&p, None).expect("create");
        o.writer().write_all(b"half").expect("write");
        drop(o);
        assert_eq!(fs::read_to_string(&p).expect("read"), "keep");
        assert_eq!(names(d.path()), vec!["a.json"]);
    }

    #[test]
    fn a_planted_symlink_is_refused_and_its_target_untouched() {
        let d = dir();
        let victim = d.path().join("victim");
        fs::write(&victim, "root's").expect("write");
        let link = d.path().join("out.jsonl");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        let e = write(&link, None, "attack").expect_err("refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "root's");
    }

    #[test]
    fn two_outputs_beside_each_other_do_not_collide() {
        let d = dir();
        let a = d.path().join("a.jsonl");
        let b = d.path().join("a.csv");
        let mut oa = Output::create(&a, None).expect("a");
        let mut ob = Output::create(&b, None).expect("b");
        oa.writer().write_all(b"A").expect("a");
        ob.writer().write_all(b"B").expect("b");
        oa.commit().expect("a");
        ob.commit().expect("b");
        assert_eq!(fs::read_to_string(&a).expect("a"), "A");
        assert_eq!(fs::read_to_string(&b).expect("b"), "B");
        // A file of the user's with the old fixed temporary name is left alone.
        let notes = d.path().join("a.partial");
        fs::write(&notes, "mine").expect("write");
        write(&a, None, "again").expect("write");
        assert_eq!(fs::read_to_string(&notes).expect("read"), "mine");
    }

    #[test]
    fn devices_are_written_in_place() {
        let null = Path::new("/dev/null");
        assert_eq!(dest(null).expect("dest"), Dest::InPlace(null.into()));
        write(null, None, "gone").expect("write");
        assert!(
            fs::metadata(null)
                .expect("meta")
                .file_type()
                .is_char_device()
        );
        assert_eq!(dest(Path::new("-")).expect("dest"), Dest::Stdout);
    }

    #[test]
    fn a_fifo_is_written_in_place() {
        let d = dir();
        let fifo = d.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read_to_string(fifo).expect("read fifo"))
        };
        write(&fifo, None, "through\n").expect("write");
        assert_eq!(reader.join().expect("reader"), "through\n");
        assert!(fs::metadata(&fifo).expect("meta").file_type().is_fifo());
    }

    #[test]
    fn the_input_is_never_the_output() {
        let d = dir();
        let rec = d.path().join("run.rec");
        fs::write(&rec, "recording").expect("write");
        let e = write(&rec, Some(&rec), "x").expect_err("refused");
        assert!(e.to_string().contains("also the input"), "{e}");
        assert_eq!(fs::read_to_string(&rec).expect("read"), "recording");
        let e = write(d.path(), None, "x").expect_err("a directory");
        assert!(e.to_string().contains("is a directory"), "{e}");
    }

    #[test]
    fn a_missing_directory_is_named() {
        let p = Path::new("/nonexistent-dir-of-refwatch/out.csv");
        let e = write(p, None, "x").expect_err("no dir");
        assert!(
            format!("{e:#}").contains("/nonexistent-dir-of-refwatch/out.csv"),
            "{e:#}"
        );
    }

    // `create_growing` (`record -o`, `--jsonl`), on real files.

    #[test]
    fn a_growing_file_is_at_its_path_while_it_is_written() {
        let d = dir();
        let p = d.path().join("run.rec");
        let mut g = create_growing(&p, None).expect("create");
        g.file.write_all(b"line 1\n").expect("write");
        // Readable before it is finished (a crash leaves this).
        assert_eq!(fs::read_to_string(&p).expect("read"), "line 1\n");
        assert_eq!(names(d.path()), vec!["run.rec"]);
        assert_eq!(
            fs::metadata(&p).expect("meta").mode() & 0o777,
            NEW_FILE_MODE
        );
        drop(g);
        assert_eq!(fs::read_to_string(&p).expect("read"), "line 1\n");
    }

    #[test]
    fn a_growing_file_replaces_a_regular_file_keeping_its_mode() {
        let d = dir();
        let p = d.path().join("run.rec");
        fs::write(&p, "old recording").expect("write");
        fs::set_permissions(&p, Permissions::from_mode(0o600)).expect("chmod");
        // Another name of the old file (a hard link) keeps the old bytes:
        // the new file is a new inode, not the old one truncated.
        let other = d.path().join("other-name");
        fs::hard_link(&p, &other).expect("link");
        let mut g = create_growing(&p, None).expect("create");
        g.file.write_all(b"new").expect("write");
        assert_eq!(g.mode, 0o600);
        assert_eq!(fs::read_to_string(&p).expect("read"), "new");
        assert_eq!(fs::metadata(&p).expect("meta").mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&other).expect("read"), "old recording");
        // A mode asked for wins (a rotated recording keeps its first's).
        let q = d.path().join("next.rec");
        let g = create_growing(&q, Some(0o640)).expect("create");
        assert_eq!(
            (g.mode, fs::metadata(&q).expect("meta").mode() & 0o777),
            (0o640, 0o640)
        );
    }

    #[test]
    fn a_growing_file_refuses_a_planted_symlink_and_leaves_its_target() {
        let d = dir();
        let victim = d.path().join("victim");
        fs::write(&victim, "root's").expect("write");
        let link = d.path().join("events.jsonl");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        let e = create_growing(&link, None).err().expect("refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "root's");
        assert!(
            fs::symlink_metadata(&link)
                .expect("meta")
                .file_type()
                .is_symlink()
        );
        // A dangling link too (it would create the file it names).
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nothing-here"), &dangling).expect("symlink");
        assert!(create_growing(&dangling, None).is_err());
        assert!(!d.path().join("nothing-here").exists());
    }

    #[test]
    fn a_growing_file_writes_a_fifo_in_place_and_refuses_the_rest() {
        let d = dir();
        let fifo = d.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read_to_string(fifo).expect("read fifo"))
        };
        let mut g = create_growing(&fifo, None).expect("open fifo");
        g.file.write_all(b"through\n").expect("write");
        drop(g);
        assert_eq!(reader.join().expect("reader"), "through\n");
        assert!(fs::metadata(&fifo).expect("meta").file_type().is_fifo());
        let mut null = create_growing(Path::new("/dev/null"), None).expect("null");
        null.file.write_all(b"gone").expect("write");
        let e = create_growing(Path::new("-"), None).err().expect("stdout");
        assert!(e.to_string().contains("give a file"), "{e}");
        let e = create_growing(d.path(), None).err().expect("a directory");
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert_eq!(names(d.path()), vec!["pipe"]);
    }

    #[test]
    fn one_file_is_not_two_outputs() {
        let d = dir();
        let a = d.path().join("run.rec");
        let b = d.path().join("events.jsonl");
        check_growing_all(&[&a, &b]).expect("two files");
        let same = d.path().join(".").join("run.rec");
        let e = check_growing_all(&[&a, &same]).expect_err("the same file");
        assert!(e.to_string().contains("given twice"), "{e}");
        assert_eq!(names(d.path()), Vec::<String>::new());
    }
}
