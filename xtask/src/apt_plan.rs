//! What `apt-get -s install` (simulate, `LC_ALL=C`) says it would do:
//! packages installed, upgraded, downgraded and removed. Setup installs
//! only when nothing would be removed or downgraded.

/// One `Inst` line: `Inst NAME [OLD] (NEW RELEASE [ARCH])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub name: String,
    /// The installed version it replaces, if any.
    pub old: Option<String>,
    pub new: String,
}

/// apt's plan for one install.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub installs: Vec<Install>,
    /// `Remv NAME [VERSION]` lines: the names.
    pub removes: Vec<String>,
    /// The versions of [`Plan::removes`] (`None` where the line had none).
    pub removed_versions: Vec<Option<String>>,
    /// The packages listed under "The following packages will be DOWNGRADED:".
    pub downgrades: Vec<String>,
}

impl Plan {
    /// The packages apt would install that were not there before.
    pub fn new_packages(&self) -> impl Iterator<Item = &Install> {
        self.installs.iter().filter(|i| i.old.is_none())
    }

    /// The packages apt would replace by another version (upgrades, and
    /// downgrades, which are also in [`Plan::downgrades`]).
    pub fn replaced(&self) -> impl Iterator<Item = &Install> {
        self.installs.iter().filter(|i| i.old.is_some())
    }

    /// Whether apt would take away anything the machine has.
    pub fn takes_away(&self) -> bool {
        !self.removes.is_empty() || !self.downgrades.is_empty()
    }

    /// The Debian release whose backports the packages apt would remove
    /// came from (`bookworm` for a version ending `~bpo12+1`), when every
    /// removal is such a package: their siblings then have to come from
    /// the same backports. `None` when nothing is removed or any removal
    /// is not a backport.
    pub fn removes_backports(&self) -> Option<&'static str> {
        let mut release = None;
        for v in &self.removed_versions {
            let bpo = v.as_deref()?.rsplit_once("~bpo")?.1;
            let major: String = bpo.chars().take_while(char::is_ascii_digit).collect();
            let this = match major.as_str() {
                "11" => "bullseye",
                "12" => "bookworm",
                "13" => "trixie",
                _ => return None,
            };
            if release.is_some_and(|r| r != this) {
                return None;
            }
            release = Some(this);
        }
        release
    }

    /// What it would take away, for a message: "remove a, b; downgrade c".
    pub fn losses(&self) -> String {
        let mut parts = Vec::new();
        if !self.removes.is_empty() {
            parts.push(format!("remove {}", self.removes.join(", ")));
        }
        if !self.downgrades.is_empty() {
            parts.push(format!("downgrade {}", self.downgrades.join(", ")));
        }
        parts.join("; ")
    }
}

/// The text between the first `[` … `]` or `(` … `)` pair at the start of
/// `s` (after spaces), and the rest.
fn bracketed(s: &str, open: char, close: char) -> Option<(&str, &str)> {
    let s = s.trim_start().strip_prefix(open)?;
    let end = s.find(close)?;
    Some((&s[..end], &s[end + 1..]))
}

fn parse_inst(rest: &str) -> Option<Install> {
    let rest = rest.trim_start();
    let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let (old, rest) = match bracketed(rest, '[', ']') {
        Some((old, rest)) => (Some(old.to_owned()), rest),
        None => (None, rest),
    };
    let (new, _) = bracketed(rest, '(', ')')?;
    let new = new.split_whitespace().next()?;
    Some(Install {
        name: name.to_owned(),
        old,
        new: new.to_owned(),
    })
}

/// Reads the simulation output. Unknown lines are ignored.
pub fn parse(text: &str) -> Plan {
    let mut plan = Plan::default();
    let mut in_downgraded = false;
    for line in text.lines() {
        // The lists under a "The following … :" heading are indented.
        if let Some(names) = line.strip_prefix("  ") {
            if in_downgraded {
                plan.downgrades
                    .extend(names.split_whitespace().map(str::to_owned));
            }
            continue;
        }
        in_downgraded = line.starts_with("The following packages will be DOWNGRADED");
        if let Some(rest) = line.strip_prefix("Inst ") {
            plan.installs.extend(parse_inst(rest));
        } else if let Some(rest) = line.strip_prefix("Remv ")
            && let Some(name) = rest.split_whitespace().next()
        {
            plan.removes.push(name.to_owned());
            let version = bracketed(&rest[name.len()..], '[', ']').map(|(v, _)| v.to_owned());
            plan.removed_versions.push(version);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apt-get -s install -y --no-install-recommends lintian zsh` on Debian
    /// 12 with an older perl installed (shortened).
    const UPGRADES: &str = "\
Reading package lists...
Building dependency tree...
Reading state information...
The following additional packages will be installed:
  diffstat libperl5.36 perl perl-base perl-modules-5.36 zsh-common
Suggested packages:
  zsh-doc
The following NEW packages will be installed:
  diffstat lintian zsh zsh-common
The following packages will be upgraded:
  libperl5.36 perl perl-base perl-modules-5.36
4 upgraded, 4 newly installed, 0 to remove and 135 not upgraded.
Inst libperl5.36 [5.36.0-7+deb12u2] (5.36.0-7+deb12u4 Debian-Security:12/oldstable-security [amd64]) [perl:amd64 ]
Inst perl [5.36.0-7+deb12u2] (5.36.0-7+deb12u4 Debian-Security:12/oldstable-security [amd64]) []
Inst perl-base [5.36.0-7+deb12u2] (5.36.0-7+deb12u4 Debian-Security:12/oldstable-security [amd64]) []
Conf perl-base (5.36.0-7+deb12u4 Debian-Security:12/oldstable-security [amd64]) []
Inst perl-modules-5.36 [5.36.0-7+deb12u2] (5.36.0-7+deb12u4 Debian-Security:12/oldstable-security [all])
Inst diffstat (1.65-1 Debian:12.15/oldstable [amd64])
Inst zsh-common (5.9-4 Debian:12.15/oldstable [all])
Inst zsh (5.9-4+b7 Debian:12.15/oldstable [amd64])
Inst lintian (2.116.3 Debian:12.15/oldstable [all])
Conf diffstat (1.65-1 Debian:12.15/oldstable [amd64])
Conf zsh (5.9-4+b7 Debian:12.15/oldstable [amd64])
Conf lintian (2.116.3 Debian:12.15/oldstable [all])
";

    /// `apt-get -s install -y --no-install-recommends busybox` with
    /// busybox-static installed: the two conflict.
    const REMOVES: &str = "\
Reading package lists...
Building dependency tree...
Reading state information...
The following packages will be REMOVED:
  busybox-static
The following NEW packages will be installed:
  busybox
0 upgraded, 1 newly installed, 1 to remove and 140 not upgraded.
Remv busybox-static [1:1.35.0-4+deb12u1+b1]
Inst busybox (1:1.35.0-4+deb12u1+b1 Debian:12.15/oldstable [amd64])
Conf busybox (1:1.35.0-4+deb12u1+b1 Debian:12.15/oldstable [amd64])
";

    /// A package whose dependency pins an older libfoo than the installed
    /// one (apt's format; the names are made up).
    const DOWNGRADES: &str = "\
Reading package lists...
Building dependency tree...
Reading state information...
The following NEW packages will be installed:
  foo-tools
The following packages will be DOWNGRADED:
  libfoo1 libfoo-data
0 upgraded, 1 newly installed, 2 downgraded, 0 to remove and 0 not upgraded.
Inst libfoo-data [2.1-1] (2.0-3 Debian:12.15/oldstable [all])
Inst libfoo1 [2.1-1] (2.0-3 Debian:12.15/oldstable [amd64])
Inst foo-tools (2.0-3 Debian:12.15/oldstable [amd64])
Conf libfoo-data (2.0-3 Debian:12.15/oldstable [all])
";

    /// `apt-get -s install -y --no-install-recommends qemu-system-x86` on a
    /// Debian 12 machine with qemu-utils from bookworm-backports and no
    /// backports in its sources (shortened).
    const BACKPORT_REMOVED: &str = "\
The following packages will be REMOVED:
  qemu-utils
The following NEW packages will be installed:
  qemu-system-common qemu-system-x86
0 upgraded, 2 newly installed, 1 to remove and 140 not upgraded.
Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]
Inst qemu-system-common (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
Conf qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
";

    const NOTHING: &str = "\
Reading package lists...
Building dependency tree...
Reading state information...
tmux is already the newest version (3.3a-3).
0 upgraded, 0 newly installed, 0 to remove and 140 not upgraded.
";

    #[test]
    fn new_packages_and_upgrades_take_nothing_away() {
        let plan = parse(UPGRADES);
        assert!(!plan.takes_away(), "{plan:?}");
        let new: Vec<(&str, &str)> = plan
            .new_packages()
            .map(|i| (i.name.as_str(), i.new.as_str()))
            .collect();
        assert_eq!(
            new,
            [
                ("diffstat", "1.65-1"),
                ("zsh-common", "5.9-4"),
                ("zsh", "5.9-4+b7"),
                ("lintian", "2.116.3")
            ]
        );
        let replaced: Vec<&Install> = plan.replaced().collect();
        assert_eq!(replaced.len(), 4);
        assert_eq!(
            replaced[0],
            &Install {
                name: "libperl5.36".into(),
                old: Some("5.36.0-7+deb12u2".into()),
                new: "5.36.0-7+deb12u4".into()
            }
        );
    }

    #[test]
    fn a_removal_is_seen() {
        let plan = parse(REMOVES);
        assert!(plan.takes_away());
        assert_eq!(plan.removes, ["busybox-static"]);
        assert_eq!(plan.removes_backports(), None);
        assert!(plan.downgrades.is_empty());
        assert_eq!(plan.losses(), "remove busybox-static");
        assert_eq!(plan.new_packages().count(), 1);
    }

    #[test]
    fn a_removed_backport_names_its_release() {
        let plan = parse(BACKPORT_REMOVED);
        assert!(plan.takes_away());
        assert_eq!(plan.removes, ["qemu-utils"]);
        assert_eq!(plan.removes_backports(), Some("bookworm"));
        // One removal that is no backport, and apt is not retried.
        let mixed = format!("{BACKPORT_REMOVED}Remv busybox-static [1:1.35.0-4+b3]\n");
        assert_eq!(parse(&mixed).removes_backports(), None);
        let other = BACKPORT_REMOVED.replace("~bpo12+1", "~bpo11+1");
        assert_eq!(parse(&other).removes_backports(), Some("bullseye"));
    }

    #[test]
    fn a_downgrade_is_seen() {
        let plan = parse(DOWNGRADES);
        assert!(plan.takes_away());
        assert!(plan.removes.is_empty());
        assert_eq!(plan.downgrades, ["libfoo1", "libfoo-data"]);
        assert_eq!(plan.losses(), "downgrade libfoo1, libfoo-data");
        // The NEW list before it is not mistaken for downgrades.
        assert!(!plan.downgrades.iter().any(|d| d == "foo-tools"));
    }

    #[test]
    fn nothing_to_do() {
        let plan = parse(NOTHING);
        assert_eq!(plan, Plan::default());
        assert!(!plan.takes_away());
    }
}
