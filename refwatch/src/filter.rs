//! What `attach` and `record` watch (`--pfn`, `--type`, `--pid`,
//! `--cgroup`): checked here before anything is attached, and handed to the
//! kernel programs in the layout, which apply them before an event costs
//! anything.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};
use refwatch_common::{KernelLayout, MAX_PFN_RANGES};

use crate::event::{pgmap_from_name, pgmap_name};

/// The user's filters. Empty: everything is watched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watch {
    /// Inclusive PFN ranges, sorted and merged; empty means all.
    pub pfns: Vec<(u64, u64)>,
    /// Stable page-map types ([`refwatch_common::pgmap`]); empty means all.
    pub types: Vec<u32>,
    /// Only pages a task of this process (thread group) touched.
    pub tgid: Option<u32>,
    /// Only pages a task of this cgroup v2 touched: its path and id.
    pub cgroup: Option<(PathBuf, u64)>,
}

impl Watch {
    /// Checks the flags' values: `pfn` as `refwatch export --pfn` takes it,
    /// `types` by name, `pid` a running process, `cgroup` a cgroup v2
    /// directory. Every refusal is one line.
    pub fn from_args(
        pfn: Option<&str>,
        types: &[String],
        pid: Option<u32>,
        cgroup: Option<&Path>,
    ) -> Result<Self> {
        let pfns = match pfn {
            Some(spec) => pfn_ranges(spec)?,
            None => Vec::new(),
        };
        let mut ts = Vec::new();
        for name in types {
            let Some(t) = pgmap_from_name(name) else {
                bail!(
                    "--type {name:?}: not a page-map type (private, coherent, fsdax, generic, p2pdma, system, unknown)"
                );
            };
            if !ts.contains(&t) {
                ts.push(t);
            }
        }
        ts.sort_unstable();
        let tgid = match pid {
            Some(p) => Some(process(Path::new("/proc"), p)?),
            None => None,
        };
        let cgroup = match cgroup {
            Some(path) => Some((path.to_path_buf(), cgroup_id(path)?)),
            None => None,
        };
        Ok(Self {
            pfns,
            types: ts,
            tgid,
            cgroup,
        })
    }

    /// Whether a task filter (`--pid`, `--cgroup`) is on.
    pub fn by_task(&self) -> bool {
        self.tgid.is_some() || self.cgroup.is_some()
    }

    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.pfns.is_empty() && self.types.is_empty() && !self.by_task()
    }

    /// Whether the page `pfn` of type `pgmap_type` passes `--pfn` and
    /// `--type`.
    pub fn keeps_page(&self, pfn: u64, pgmap_type: u32) -> bool {
        (self.pfns.is_empty() || self.pfns.iter().any(|&(a, b)| (a..=b).contains(&pfn)))
            && (self.types.is_empty() || self.types.contains(&pgmap_type))
    }

    /// Writes the filters into the kernel programs' layout.
    pub fn encode(&self, raw: &mut KernelLayout) {
        raw.filter_pfn_ranges = self.pfns.len() as u32;
        for (i, &(a, b)) in self.pfns.iter().take(MAX_PFN_RANGES).enumerate() {
            raw.filter_pfn_lo[i] = a;
            raw.filter_pfn_hi[i] = b;
        }
        raw.filter_types = self.types.iter().fold(0, |m, &t| m | 1 << t);
        raw.filter_tgid = self.tgid.unwrap_or(0);
        raw.filter_cgroup = self.cgroup.as_ref().map_or(0, |c| c.1);
    }

    /// The filters in words, for the log and the end of a run.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.pfns.is_empty() {
            parts.push(format!(
                "--pfn {}",
                crate::state::groups::ranges_text(&self.pfns, usize::MAX)
            ));
        }
        if !self.types.is_empty() {
            let t: Vec<&str> = self.types.iter().map(|&t| pgmap_name(t)).collect();
            parts.push(format!("--type {}", t.join(",")));
        }
        if let Some(p) = self.tgid {
            parts.push(format!("--pid {p}"));
        }
        if let Some((path, id)) = &self.cgroup {
            parts.push(format!("--cgroup {} (id {id})", path.display()));
        }
        parts.join(" ")
    }
}

/// `--pfn`: the ranges of [`crate::format::export::parse_pfns`], sorted, with
/// overlapping and adjacent ones merged; at most [`MAX_PFN_RANGES`].
pub fn pfn_ranges(spec: &str) -> Result<Vec<(u64, u64)>> {
    let mut r =
        crate::format::export::parse_pfns(spec).map_err(|e| anyhow::anyhow!("--pfn: {e}"))?;
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    if out.len() > MAX_PFN_RANGES {
        bail!(
            "--pfn {spec:?}: {} separate ranges; the kernel programs take at most {MAX_PFN_RANGES}",
            out.len()
        );
    }
    Ok(out)
}

/// `--pid`: the process `pid` under `proc` (`/proc`); a thread's id is
/// refused with its process's.
fn process(proc: &Path, pid: u32) -> Result<u32> {
    let status = proc.join(pid.to_string()).join("status");
    let Ok(text) = std::fs::read_to_string(&status) else {
        bail!("--pid {pid}: no such process");
    };
    let tgid = text
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse::<u32>().ok());
    match tgid {
        Some(t) if t == pid => Ok(pid),
        Some(t) => bail!("--pid {pid}: a thread of process {t}; give the process id {t}"),
        None => bail!("--pid {pid}: {} has no Tgid line", status.display()),
    }
}

/// `--cgroup`: the id of the cgroup v2 directory `path` (the inode number
/// `bpf_get_current_cgroup_id` returns for its tasks).
fn cgroup_id(path: &Path) -> Result<u64> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => bail!("--cgroup {shown}: {e}"),
    };
    if !meta.is_dir() || !on_cgroup2(path) {
        bail!(
            "--cgroup {shown}: not a cgroup v2 directory (e.g. /sys/fs/cgroup/system.slice/NAME.service)"
        );
    }
    Ok(meta.ino())
}

/// Whether `path` is on a cgroup v2 file system.
#[allow(unsafe_code)]
fn on_cgroup2(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero `statfs` is valid to write into.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    // Both are `i64` on x86-64; other architectures type them otherwise.
    #[allow(clippy::unnecessary_cast)]
    let cgroup2 = st.f_type as i64 == libc::CGROUP2_SUPER_MAGIC as i64;
    rc == 0 && cgroup2
}

#[cfg(test)]
mod tests {
    use refwatch_common::{KernelLayout, pgmap};

    use super::*;

    #[test]
    fn pfn_ranges_are_sorted_merged_and_bounded() {
        assert_eq!(
            pfn_ranges("0x40100-0x401ff,0x40000-0x400ff,5,0x40050").expect("ok"),
            [(5, 5), (0x40000, 0x401ff)]
        );
        assert_eq!(
            pfn_ranges("0x10-0x20,0x30").expect("ok"),
            [(0x10, 0x20), (0x30, 0x30)]
        );
        let nine: Vec<String> = (0..9).map(|i| format!("{}", i * 10)).collect();
        let err = pfn_ranges(&nine.join(",")).expect_err("too many");
        assert!(err.to_string().contains("at most 8"), "{err}");
        // Eight separate ones fit.
        assert_eq!(pfn_ranges(&nine[..8].join(",")).expect("ok").len(), 8);
        for bad in ["zz", "0x20-0x10", ",", "0x40000-", "-1"] {
            let e = pfn_ranges(bad).expect_err(bad).to_string();
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn types_by_name_and_unknown_names_refused() {
        let w = Watch::from_args(None, &["p2pdma".into(), "fsdax".into()], None, None).expect("ok");
        assert_eq!(w.types, [pgmap::FSDAX, pgmap::P2PDMA]);
        let e = Watch::from_args(None, &["fs-dax".into()], None, None).expect_err("unknown");
        assert!(e.to_string().starts_with("--type \"fs-dax\""), "{e}");
    }

    #[test]
    fn every_refusal_is_one_line_naming_its_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let types = ["fs-dax".to_owned()];
        let refused = |r: Result<Watch>, flag: &str| {
            let e = r.expect_err(flag).to_string();
            assert!(e.starts_with(flag) && !e.contains('\n'), "{e}");
        };
        refused(
            Watch::from_args(Some("0x20-0x10"), &[], None, None),
            "--pfn",
        );
        refused(Watch::from_args(Some("zz"), &[], None, None), "--pfn");
        refused(Watch::from_args(None, &types, None, None), "--type");
        refused(Watch::from_args(None, &[], Some(u32::MAX), None), "--pid");
        refused(
            Watch::from_args(None, &[], None, Some(dir.path())),
            "--cgroup",
        );
    }

    #[test]
    fn the_layout_carries_the_filters() {
        let w = Watch {
            pfns: vec![(0x40000, 0x400ff), (0x50000, 0x50000)],
            types: vec![pgmap::FSDAX, pgmap::SYSTEM],
            tgid: Some(4242),
            cgroup: Some(("/sys/fs/cgroup/x".into(), 77)),
        };
        let mut raw = KernelLayout::empty();
        w.encode(&mut raw);
        assert_eq!(raw.filter_pfn_ranges, 2);
        assert_eq!(raw.filter_pfn_lo[..2], [0x40000, 0x50000]);
        assert_eq!(raw.filter_pfn_hi[..2], [0x400ff, 0x50000]);
        assert_eq!(raw.filter_pfn_lo[2..], [0; MAX_PFN_RANGES - 2]);
        assert_eq!(raw.filter_types, 1 << 3 | 1 << 6);
        assert_eq!(raw.filter_tgid, 4242);
        assert_eq!(raw.filter_cgroup, 77);
        // No filter: the layout says "everything".
        let mut none = KernelLayout::empty();
        Watch::default().encode(&mut none);
        assert_eq!(none, KernelLayout::empty());
        assert_eq!(
            w.describe(),
            "--pfn 0x40000-0x400ff,0x50000 --type fsdax,system --pid 4242 --cgroup /sys/fs/cgroup/x (id 77)"
        );
    }

    #[test]
    fn pages_kept_by_pfn_and_type() {
        let w = Watch {
            pfns: vec![(0x40000, 0x400ff)],
            types: vec![pgmap::FSDAX],
            ..Watch::default()
        };
        assert!(w.keeps_page(0x40000, pgmap::FSDAX));
        assert!(w.keeps_page(0x400ff, pgmap::FSDAX));
        assert!(!w.keeps_page(0x40100, pgmap::FSDAX));
        assert!(!w.keeps_page(0x40010, pgmap::PRIVATE));
        assert!(Watch::default().keeps_page(1, pgmap::UNKNOWN));
    }

    #[test]
    fn pids_must_be_processes() {
        // A fake /proc (synthetic): a process 10 with a thread 11.
        let dir = tempfile::tempdir().expect("tempdir");
        for (id, tgid) in [(10, 10), (11, 10)] {
            let d = dir.path().join(id.to_string());
            std::fs::create_dir(&d).expect("mkdir");
            std::fs::write(
                d.join("status"),
                format!("Name:\tw\nTgid:\t{tgid}\nPid:\t{id}\n"),
            )
            .expect("write");
        }
        assert_eq!(process(dir.path(), 10).expect("process"), 10);
        let e = process(dir.path(), 11).expect_err("thread").to_string();
        assert!(e.contains("a thread of process 10"), "{e}");
        let e = process(dir.path(), 12).expect_err("none").to_string();
        assert_eq!(e, "--pid 12: no such process");
        // This very process, through the real /proc.
        let me = std::process::id();
        let w = Watch::from_args(None, &[], Some(me), None).expect("self");
        assert_eq!(w.tgid, Some(me));
    }

    #[test]
    fn cgroups_must_be_cgroup_v2_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = cgroup_id(dir.path()).expect_err("tmp dir").to_string();
        assert!(e.contains("not a cgroup v2 directory"), "{e}");
        let e = cgroup_id(&dir.path().join("missing"))
            .expect_err("missing")
            .to_string();
        assert!(e.starts_with("--cgroup "), "{e}");
        // Every cgroup v2 mount of this machine is one, and a cgroup v1
        // directory is not.
        let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
        let of = |fs: &str| -> Vec<PathBuf> {
            mounts
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    (f.get(2) == Some(&fs)).then(|| PathBuf::from(f[1]))
                })
                .collect()
        };
        let v2 = of("cgroup2");
        assert!(
            !v2.is_empty(),
            "this test needs a mounted cgroup v2 hierarchy"
        );
        for m in v2 {
            let id = cgroup_id(&m).expect("cgroup2 mount");
            assert_eq!(id, std::fs::metadata(&m).expect("stat").ino());
        }
        for m in of("cgroup") {
            assert!(cgroup_id(&m).is_err(), "{}", m.display());
        }
    }
}
