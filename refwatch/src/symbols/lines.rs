//! Source lines of kernel frames (`symbol+0xoff` → `mm/gup.c:412`) from a
//! vmlinux with DWARF (`report --vmlinux`; Debian's `linux-image-*-dbg`
//! packages install one as `/usr/lib/debug/boot/vmlinux-VERSION`).
//!
//! A frame names a function and an offset, so the vmlinux's own symbol
//! table gives the address (no KASLR offset is involved), and its DWARF the
//! line. The line shown is the one in the function the frame names: where
//! the address is in code inlined into it, the line of the inlined call.
//! A name that several functions share (static functions of different
//! files) gives no line: the frame cannot say which one it is.

use std::{cell::RefCell, collections::BTreeMap, fs::File, path::Path, rc::Rc};

use anyhow::{Context as _, Result, bail};
use object::{Object as _, ObjectSymbol as _, SymbolKind, read::ReadCache};

use crate::fasthash::FastMap;

/// The source lines of one kernel image.
pub struct SourceLines {
    loader: addr2line::Loader,
    /// The kernel release the image's `linux_banner` names (`uname -r`).
    release: Option<String>,
    /// Text symbols by name: address and size (0: unknown); `None` for a
    /// name several functions share.
    addrs: FastMap<String, Option<(u64, u64)>>,
    /// The tree the image was built in (the directory holding it, with a
    /// trailing `/`): stripped from the paths the DWARF gives.
    root: String,
}

impl std::fmt::Debug for SourceLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceLines")
            .field("symbols", &self.addrs.len())
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl SourceLines {
    /// Opens `path`: its symbol table and its DWARF.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
        let cache = ReadCache::new(file);
        let obj = object::File::parse(&cache)
            .with_context(|| format!("{}: not an ELF kernel image", path.display()))?;
        let mut addrs: FastMap<String, Option<(u64, u64)>> = FastMap::default();
        for sym in obj.symbols() {
            if sym.kind() != SymbolKind::Text || !sym.is_definition() {
                continue;
            }
            let Ok(name) = sym.name() else { continue };
            let at = (sym.address(), sym.size());
            addrs
                .entry(name.to_owned())
                .and_modify(|a| {
                    if a.is_some_and(|(addr, _)| addr != at.0) {
                        *a = None;
                    }
                })
                .or_insert(Some(at));
        }
        if addrs.is_empty() {
            bail!(
                "{}: no function symbols (a stripped image?)",
                path.display()
            );
        }
        if obj.section_by_name(".debug_info").is_none() {
            bail!(
                "{}: no DWARF (.debug_info); Debian's linux-image-*-dbg package has a vmlinux with it",
                path.display()
            );
        }
        let release = banner_release(&obj);
        drop(obj);
        let loader = addr2line::Loader::new(path)
            .map_err(|e| anyhow::anyhow!("{}: reading its DWARF: {e}", path.display()))?;
        let root = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(|d| format!("{}/", d.display())))
            .unwrap_or_default();
        Ok(Self {
            loader,
            release,
            addrs,
            root,
        })
    }

    /// The kernel release (`uname -r`) the image's banner names, when it
    /// is a kernel image.
    pub fn release(&self) -> Option<&str> {
        self.release.as_deref()
    }

    /// An error unless the image is of kernel `release` (as far as its
    /// banner says: an image without one is taken as it is).
    pub fn check_release(&self, release: &str, path: &Path) -> Result<()> {
        match self.release() {
            Some(r) if r != release => bail!(
                "{} is an image of kernel {r}, not of {release}: its lines would name other code",
                path.display()
            ),
            _ => Ok(()),
        }
    }

    /// `file:line` of a frame `symbol+0xoff`, when the image knows it.
    pub fn line(&self, frame: &str) -> Option<String> {
        let (name, off) = split_frame(frame)?;
        let (start, size) = (*self.addrs.get(name)?)?;
        // Past the function's end: not this image's function (a module's
        // of the same name, say).
        if size > 0 && off >= size {
            return None;
        }
        // A frame above the first is a return address: the call is the
        // instruction before it.
        let probe = start.checked_add(off)?.saturating_sub(u64::from(off > 0));
        let mut frames = self.loader.find_frames(probe).ok()?;
        // Innermost first: the last is the function the frame names.
        let mut outer = None;
        while let Ok(Some(f)) = frames.next() {
            if let Some(loc) = f.location
                && let (Some(file), Some(line)) = (loc.file, loc.line)
            {
                outer = Some((file.to_owned(), line));
            }
        }
        let (file, line) = outer?;
        Some(format!("{}:{line}", shown_path(&self.root, &file)))
    }

    /// The lines of every frame in `frames` the image knows, by frame.
    pub fn lines<'a>(
        &self,
        frames: impl IntoIterator<Item = &'a String>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for f in frames {
            if out.contains_key(f) {
                continue;
            }
            if let Some(l) = self.line(f) {
                out.insert(f.clone(), l);
            }
        }
        out
    }
}

/// A source path as shown: below `root` (the image's directory, with a
/// trailing `/`) relative to it, `./` and Debian's build directory
/// dropped (its debug images name `debian/build/build_amd64_none_amd64/mm/gup.c`),
/// and control characters
/// replaced (the image is a file the user names; its strings reach the
/// terminal).
fn shown_path(root: &str, file: &str) -> String {
    let rel = match file.strip_prefix(root) {
        Some(rest) if !root.is_empty() => rest,
        _ => file.strip_prefix("./").unwrap_or(file),
    };
    // Debian builds each flavour in `debian/build/build_<arch>_<featureset>_<flavour>/`.
    let rel = rel
        .strip_prefix("debian/build/")
        .and_then(|r| r.split_once('/'))
        .map_or(rel, |(_, r)| r);
    rel.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Where Debian's `linux-image-*-dbg` package puts the image of kernel
/// `release`: the live TUI takes it from there when it is present.
pub fn debug_image(release: &str) -> std::path::PathBuf {
    Path::new("/usr/lib/debug/boot").join(format!("vmlinux-{release}"))
}

/// [`SourceLines`] looked up once per frame: the TUI draws the same frames
/// many times.
pub struct LineCache {
    lines: SourceLines,
    seen: RefCell<FastMap<String, Option<Rc<str>>>>,
}

impl std::fmt::Debug for LineCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineCache")
            .field("lines", &self.lines)
            .field("seen", &self.seen.borrow().len())
            .finish()
    }
}

/// Frames whose lines a [`LineCache`] keeps: the stacks of a long session
/// are few, but nothing here may grow without a bound.
const CACHE_MAX: usize = 1 << 16;

impl LineCache {
    pub fn new(lines: SourceLines) -> Self {
        Self {
            lines,
            seen: RefCell::default(),
        }
    }

    /// `file:line` of `frame`, looked up the first time only.
    pub fn of(&self, frame: &str) -> Option<Rc<str>> {
        if let Some(l) = self.seen.borrow().get(frame) {
            return l.clone();
        }
        let l: Option<Rc<str>> = self.lines.line(frame).map(Into::into);
        let mut seen = self.seen.borrow_mut();
        if seen.len() >= CACHE_MAX {
            seen.clear();
        }
        seen.insert(frame.to_owned(), l.clone());
        l
    }
}

/// The release in `linux_banner` (`Linux version RELEASE (…`).
fn banner_release<'d, R: object::ReadRef<'d>>(obj: &object::File<'d, R>) -> Option<String> {
    use object::ObjectSection as _;
    let sym = obj.symbols().find(|s| s.name() == Ok("linux_banner"))?;
    let section = obj.section_by_index(sym.section_index()?).ok()?;
    let len = sym.size().clamp(16, 512);
    let data = section.data_range(sym.address(), len).ok()??;
    let text = String::from_utf8_lossy(data);
    let rest = text.strip_prefix("Linux version ")?;
    let release = rest.split_whitespace().next()?;
    Some(release.to_owned())
}

/// `symbol+0xoff` → (`symbol`, off).
pub fn split_frame(frame: &str) -> Option<(&str, u64)> {
    let (name, off) = frame.rsplit_once('+')?;
    let off = u64::from_str_radix(off.strip_prefix("0x")?, 16).ok()?;
    (!name.is_empty()).then_some((name, off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shown_below_the_tree_and_without_control_characters() {
        let root = "/build/linux-7.2/";
        assert_eq!(shown_path(root, "/build/linux-7.2/mm/gup.c"), "mm/gup.c");
        assert_eq!(
            shown_path(root, "./include/linux/mm.h"),
            "include/linux/mm.h"
        );
        assert_eq!(
            shown_path(root, "/usr/lib/gcc/stddef.h"),
            "/usr/lib/gcc/stddef.h"
        );
        assert_eq!(shown_path("", "mm/gup.c"), "mm/gup.c");
        assert_eq!(
            shown_path(root, "debian/build/build_amd64_none_amd64/mm/gup.c"),
            "mm/gup.c"
        );
        assert_eq!(shown_path(root, "mm/\x1b[2Jgup.c\n"), "mm/?[2Jgup.c?");
    }

    #[test]
    fn frames_split_into_name_and_offset() {
        assert_eq!(
            split_frame("try_grab_folio_fast+0x5"),
            Some(("try_grab_folio_fast", 5))
        );
        assert_eq!(
            split_frame("gup_fast_pte_range.isra.0+0x1a2"),
            Some(("gup_fast_pte_range.isra.0", 0x1a2))
        );
        assert_eq!(split_frame("no_offset"), None);
        assert_eq!(split_frame("+0x10"), None);
        assert_eq!(split_frame("f+10"), None);
        assert_eq!(split_frame("f+0xzz"), None);
    }

    /// A function of this test binary with a name its symbol table keeps
    /// as it is, and the lines it spans.
    #[allow(unsafe_code, reason = "an unmangled symbol to look up by name")]
    #[unsafe(no_mangle)]
    #[inline(never)]
    pub fn refwatch_source_lines_probe(x: u64) -> (u64, u32, u32) {
        let first = line!();
        let y = std::hint::black_box(x).wrapping_mul(3);
        (y, first, line!())
    }

    /// The test binary is an ELF file with DWARF (the test profile's debug
    /// info): a frame in the function above resolves to this file, within
    /// the function's lines.
    #[test]
    fn a_frame_resolves_to_the_line_in_the_function_it_names() {
        let (_, first, last) = refwatch_source_lines_probe(1);
        let exe = std::env::current_exe().expect("the test binary");
        let lines = SourceLines::open(&exe).expect("the test binary has symbols and DWARF");
        for off in [0u64, 4, 8] {
            let frame = format!("refwatch_source_lines_probe+{off:#x}");
            let got = lines.line(&frame).expect("a line for the probe's frame");
            let (file, line) = got.rsplit_once(':').expect("file:line");
            assert!(file.ends_with("src/symbols/lines.rs"), "{frame}: {got}");
            let line: u32 = line.parse().expect("a line number");
            assert!(
                (first - 3..=last + 1).contains(&line),
                "{frame}: line {line} outside the function ({first}..{last})"
            );
        }
        assert_eq!(lines.release(), None, "no kernel banner in a test binary");
        lines
            .check_release("7.2.13", &exe)
            .expect("an image without a banner is taken as it is");
        assert_eq!(lines.line("no_such_function_anywhere+0x4"), None);
        assert_eq!(
            lines.line("refwatch_source_lines_probe+0x100000"),
            None,
            "an offset past the function's end"
        );
        assert_eq!(lines.line("refwatch_source_lines_probe"), None);
        let cache = LineCache::new(SourceLines::open(&exe).expect("again"));
        let probe = "refwatch_source_lines_probe+0x4";
        let once = cache.of(probe).expect("a line");
        assert_eq!(cache.of(probe), Some(once), "the same line from the cache");
        assert_eq!(cache.of("x+0x1"), None);
        assert_eq!(cache.seen.borrow().len(), 2);
        let map = lines.lines(&[
            "refwatch_source_lines_probe+0x4".to_owned(),
            "x+0x1".to_owned(),
        ]);
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn an_image_without_symbols_or_dwarf_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("vmlinux");
        std::fs::write(&junk, b"not an ELF file").expect("write");
        let e = SourceLines::open(&junk).expect_err("junk");
        assert!(
            format!("{e:#}").contains("not an ELF kernel image"),
            "{e:#}"
        );
        let e = SourceLines::open(&dir.path().join("missing")).expect_err("missing");
        assert!(format!("{e:#}").contains("open "), "{e:#}");
    }
}
