//! A task's control group, read once from `/proc/TGID/cgroup` when refwatch
//! first writes one of its events, and the container id a container
//! runtime put in its name.

use std::{io::Read as _, rc::Rc};

use crate::fasthash::FastMap;

/// Longest cgroup path kept; a longer one is cut there (at a character).
pub const MAX_PATH: usize = 512;

/// Bytes of `/proc/TGID/cgroup` read at most.
const MAX_FILE: u64 = 8 << 10;

/// Processes whose cgroup is remembered; the table is forgotten when full.
pub const MAX_TASKS: usize = 8192;

/// The cgroup path in the text of `/proc/PID/cgroup`: the unified (v2)
/// hierarchy's `0::/path`, or on a v1-only system the `name=systemd` one,
/// or the first.
pub fn parse(text: &str) -> Option<String> {
    let mut lines = text.lines().filter_map(|l| {
        let mut f = l.splitn(3, ':');
        Some((f.next()?, f.next()?, f.next()?))
    });
    let v2 = lines
        .clone()
        .find(|(id, ctl, _)| *id == "0" && ctl.is_empty());
    let (_, _, path) = v2
        .or_else(|| lines.clone().find(|(_, ctl, _)| *ctl == "name=systemd"))
        .or_else(|| lines.next())?;
    if !path.starts_with('/') {
        return None;
    }
    let mut end = path.len().min(MAX_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    Some(path[..end].to_string())
}

/// The container id a runtime named the cgroup after: systemd scopes of
/// docker (`docker-ID.scope`), containerd (`cri-containerd-ID.scope`),
/// CRI-O (`crio-ID.scope`) and podman (`libpod-ID.scope`), and cgroupfs
/// paths such as docker's `/docker/ID` or a kubelet's
/// `/kubepods/…/podUID/ID`. ID is 12 to 64 hex digits; the last match in
/// the path wins (the innermost container).
pub fn container_id(path: &str) -> Option<&str> {
    path.split('/').rev().find_map(|part| {
        let id = match part.strip_suffix(".scope") {
            Some(scope) => ["docker-", "cri-containerd-", "crio-", "libpod-"]
                .iter()
                .find_map(|p| scope.strip_prefix(p))?,
            None => part,
        };
        let hex = (12..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        // A bare hex component is an id only as cgroupfs drivers name
        // them: 64 digits.
        (hex && (part.ends_with(".scope") || id.len() == 64)).then_some(id)
    })
}

/// Cgroups by process, each read once.
#[derive(Debug, Default)]
pub struct Cgroups {
    by_tgid: FastMap<u32, Option<Rc<str>>>,
    /// The last process asked about: runs of events come from one.
    last: Option<(u32, Option<Rc<str>>)>,
}

impl Cgroups {
    /// The cgroup of process `tgid`; `None` when its file could not be
    /// read (gone, or not allowed) or says none. Never fails.
    pub fn get(&mut self, tgid: u32) -> Option<Rc<str>> {
        if tgid == 0 {
            return None;
        }
        if let Some((t, c)) = &self.last
            && *t == tgid
        {
            return c.clone();
        }
        if let Some(c) = self.by_tgid.get(&tgid) {
            self.last = Some((tgid, c.clone()));
            return c.clone();
        }
        if self.by_tgid.len() >= MAX_TASKS {
            self.by_tgid.clear();
        }
        let c = read(tgid).map(Rc::from);
        self.by_tgid.insert(tgid, c.clone());
        self.last = Some((tgid, c.clone()));
        c
    }
}

fn read(tgid: u32) -> Option<String> {
    let f = std::fs::File::open(format!("/proc/{tgid}/cgroup")).ok()?;
    let mut text = String::new();
    f.take(MAX_FILE).read_to_string(&mut text).ok()?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::{Cgroups, MAX_PATH, container_id, parse};

    const ID: &str = "3f2b8e1c9d0a47b6a5e4f3d2c1b0a9f8e7d6c5b4a3928170f6e5d4c3b2a19080";

    #[test]
    fn the_unified_hierarchy_line_is_the_cgroup() {
        assert_eq!(
            parse("0::/user.slice/user-1000.slice/session-3.scope\n").as_deref(),
            Some("/user.slice/user-1000.slice/session-3.scope")
        );
        assert_eq!(parse("0::/\n").as_deref(), Some("/"));
        // Hybrid: v1 controllers and the unified line.
        let hybrid = "12:memory:/system.slice/nginx.service\n\
                      1:name=systemd:/system.slice/nginx.service\n\
                      0::/system.slice/nginx.service\n";
        assert_eq!(
            parse(hybrid).as_deref(),
            Some("/system.slice/nginx.service")
        );
        // v1 only: the systemd hierarchy.
        let v1 = format!("11:cpu,cpuacct:/docker/{ID}\n1:name=systemd:/docker/{ID}\n");
        assert_eq!(parse(&v1), Some(format!("/docker/{ID}")));
        for bad in ["", "garbage\n", "0::relative\n"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let long = format!("0::/{}é\n", "a".repeat(MAX_PATH - 2));
        let cut = parse(&long).unwrap_or_default();
        assert!(
            cut.len() <= MAX_PATH && cut.starts_with("/aaa"),
            "{}",
            cut.len()
        );
    }

    #[test]
    fn runtimes_name_their_containers() {
        let cases = [
            (
                format!("/system.slice/docker-{ID}.scope"),
                Some(ID.to_string()),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice/cri-containerd-{ID}.scope"
                ),
                Some(ID.to_string()),
            ),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podabc.slice/crio-{ID}.scope"),
                Some(ID.to_string()),
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-0123456789abcdef.scope/container".into(),
                Some("0123456789abcdef".into()),
            ),
            (format!("/docker/{ID}"), Some(ID.to_string())),
            (
                format!("/kubepods/burstable/pod1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d/{ID}"),
                Some(ID.to_string()),
            ),
            ("/".into(), None),
            ("/user.slice/user-1000.slice/session-3.scope".into(), None),
            ("/system.slice/docker.service".into(), None),
            // Not hex, or a short bare component: not an id.
            ("/system.slice/docker-xyz.scope".into(), None),
            ("/machine.slice/deadbeefcafe".into(), None),
        ];
        for (path, want) in cases {
            assert_eq!(container_id(&path).map(str::to_string), want, "{path}");
        }
    }

    #[test]
    fn this_process_has_a_cgroup_and_the_gone_have_none() {
        let mut c = Cgroups::default();
        let me = c.get(std::process::id());
        assert!(me.as_deref().is_some_and(|p| p.starts_with('/')), "{me:?}");
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        assert_eq!(me.as_deref(), parse(&text).as_deref());
        assert_eq!(c.get(std::process::id()), me, "asked again");
        assert_eq!(c.get(0), None);
        // Beyond the largest PID Linux allows (2^22): no such process.
        assert_eq!(c.get(u32::MAX), None);
    }
}
