//! The guest's `/init`: `xtask/guest/init.sh` with the run's values filled
//! in, the modules to load and the scenarios (or a bench's script) to run.

use super::qemu::{
    SCRATCH_DISK_BYTES, SLOW_DISK_BYTES, SLOW_DISK_REQUEST_KB, SLOW_DISK_SCENARIOS, out_disk_bytes,
};
use super::scenarios::*;
use super::{LabRun, template};
use crate::initramfs;

const INIT_SH: &str = include_str!("../../guest/init.sh");

/// The guest's function that finds the PFNs an HMM `+watch` scenario
/// watches (`hmm_watch_pfns`), in the init of a run with such a scenario.
const HMM_WATCH_SH: &str = include_str!("../../guest/hmm_watch.sh");

/// Seconds the guest waits for refwatch to exit after SIGINT before SIGKILL.
pub const STOP_SECS: u32 = 30;

/// Seconds the guest gives the kernel, after refwatch was killed, to take
/// its BPF objects away (their release may be deferred to RCU callbacks
/// and workqueues).
pub const RELEASE_SECS: u32 = 10;

/// Whether `scenario` is an HMM `+watch` one, whose refwatch watches the
/// PFNs the guest's `hmm_watch_pfns` finds ([`HMM_WATCH_PFNS`]).
fn hmm_watched(scenario: &str) -> bool {
    split_watch(scenario).1 && split_variant(scenario).0.starts_with("hmm-")
}

/// The guest's `/init`: [`INIT_SH`] filled in for `run`, loading the
/// modules at `module_paths`.
pub fn init_script(run: &LabRun, module_paths: &[String]) -> anyhow::Result<String> {
    let modules: Vec<String> = module_paths
        .iter()
        .map(|path| format!("insmod {path} || fail \"insmod {path} (exit $?)\""))
        .collect();
    let hmm_check = if run
        .scenarios
        .iter()
        .any(|s| s == SELFTESTS || HMM_SCENARIOS.contains(&split_variant(s).0))
    {
        "wait_for -c /dev/hmm_dmirror0 || fail \"/dev/hmm_dmirror0 did not appear (CONFIG_TEST_HMM)\"\n\
         say \"HMM test driver ready: $(ls /dev | grep hmm_dmirror | tr '\\n' ' ')\"\n"
    } else {
        ""
    };
    let hmm_watch = if run.scenarios.iter().any(|s| hmm_watched(s)) {
        HMM_WATCH_SH
    } else {
        ""
    };
    let run_lines = match &run.script {
        Some(script) => format!(
            "# the run's own script (LabRun::script) instead of the scenarios\n{}{}say \"script finished\"\nfinish",
            script,
            if script.ends_with('\n') { "" } else { "\n" }
        ),
        None => scenario_lines(run),
    };
    template::fill(
        INIT_SH,
        &[
            ("MODULES", modules.join("\n")),
            ("OUT_SECTORS", (out_disk_bytes(run) / 512).to_string()),
            ("OUT_MIB", (out_disk_bytes(run) >> 20).to_string()),
            ("SCRATCH_SECTORS", (SCRATCH_DISK_BYTES / 512).to_string()),
            ("SCRATCH_MIB", (SCRATCH_DISK_BYTES >> 20).to_string()),
            ("SLOW_SECTORS", (SLOW_DISK_BYTES / 512).to_string()),
            ("SLOW_MIB", (SLOW_DISK_BYTES >> 20).to_string()),
            ("SLOW_KB", SLOW_DISK_REQUEST_KB.to_string()),
            ("SLOW_SCENARIOS", SLOW_DISK_SCENARIOS.join("|")),
            ("MKE2FS", initramfs::MKE2FS.to_owned()),
            ("MKFS_XFS", initramfs::MKFS_XFS.to_owned()),
            ("HMM_CHECK", hmm_check.to_owned()),
            ("HMM_WATCH", hmm_watch.to_owned()),
            ("REFWATCH", refwatch_cmd("$D", "$F")),
            ("ATTACH", attach_cmd("$D", "$F")),
            ("READY_TICKS", (u64::from(run.ready_secs) * 10).to_string()),
            ("READY_SECS", run.ready_secs.to_string()),
            ("PAGES", run.pages.to_string()),
            ("HOLD", run.hold_secs.to_string()),
            ("STOP_TICKS", (u64::from(STOP_SECS) * 10).to_string()),
            ("STOP_SECS", STOP_SECS.to_string()),
            ("RELEASE_TICKS", (u64::from(RELEASE_SECS) * 10).to_string()),
            ("RELEASE_SECS", RELEASE_SECS.to_string()),
            ("SNAP", (DETECTOR_SECS + 1).to_string()),
            ("HMM_TESTS", crate::selftests::HMM_TESTS.to_owned()),
            ("SUITE_SECS", SELFTEST_SECS.to_string()),
            (
                "EXCLUDED",
                SELFTEST_EXCLUDED
                    .iter()
                    .map(|t| format!(" -T {t}"))
                    .collect(),
            ),
            ("METRICS_PORT", METRICS_PORT.to_string()),
            ("METRICS_CGROUP", METRICS_CGROUP.to_owned()),
            ("RUN", run_lines),
        ],
    )
}

/// The lines of `/init` that run `run`'s scenarios, then finish.
fn scenario_lines(run: &LabRun) -> String {
    let mut s = String::new();
    let mut on_xfs = false;
    for scenario in &run.scenarios {
        let (workload, variant) = split_variant(scenario);
        if (variant == Variant::Xfs) != on_xfs {
            on_xfs = !on_xfs;
            s.push_str(if on_xfs {
                "use_fs xfs\n"
            } else {
                "use_fs ext4\n"
            });
        }
        let mut flags = run_flags(scenario);
        for a in &run.refwatch_args {
            flags.push(' ');
            flags.push_str(a);
        }
        if scenario == SELFTESTS {
            s.push_str(&format!("run_selftests {scenario} \"{}\"\n", flags.trim()));
            continue;
        }
        if let Variant::Signal(sig) = variant {
            s.push_str(&format!(
                "run_signal {scenario} {workload} \"{}\" {}\n",
                flags.trim(),
                sig.name()
            ));
            continue;
        }
        if variant == Variant::Metrics {
            s.push_str(&format!(
                "run_metrics {scenario} {workload} \"{}\"\n",
                flags.trim()
            ));
            continue;
        }
        if variant == Variant::Tui {
            let t = run.tui;
            s.push_str(&format!(
                "run_tui {scenario} {workload} \"{}\" {} {} {}{}\n",
                flags.trim(),
                t.hold_secs,
                t.cols,
                t.rows,
                if t.live { " live" } else { "" }
            ));
            continue;
        }
        if let Some(by) = variant.filter_by() {
            s.push_str(&format!(
                "run_filtered {scenario} {workload} \"{}\" {by} {FILTER_HOLD_SECS}\n",
                flags.trim()
            ));
            continue;
        }
        let watch_cmd = variant == Variant::WatchCmd;
        let late = variant == Variant::Late || watch_cmd;
        let tail = if late {
            let pages =
                super::scenarios::run_pages(scenario).map_or("\"\"".into(), |p| p.to_string());
            format!(" {pages} {LATE_HOLD_SECS} late")
        } else {
            super::scenarios::run_pages(scenario).map_or(String::new(), |p| format!(" {p}"))
        };
        let watched = super::scenarios::split_watch(scenario).1;
        if hmm_watched(scenario) {
            // The PFNs refwatch is to watch, before the workload takes them.
            s.push_str(&format!(
                "hmm_watch_pfns {}\n",
                super::scenarios::WATCH_PAGES
            ));
        }
        if watched {
            // The workload waits until the pages are armed.
            s.push_str(&format!(
                "export WATCH_READY=/out/{scenario}/{} WATCH_PAGES={}\n",
                super::scenarios::WATCH_READY_FILE,
                super::scenarios::WATCH_PAGES
            ));
        }
        if watch_cmd {
            // A user's `refwatch watch PFN` beside the late attach (see
            // `run_scenario`); the workload waits until its page is armed.
            s.push_str(&format!(
                "export WATCH_CMD=1 WATCH_READY=/out/{scenario}/{} WATCH_PAGES=1\n",
                super::scenarios::WATCH_READY_FILE
            ));
        }
        s.push_str(&format!(
            "run_scenario {scenario} {workload} \"{}\"{tail}\n",
            flags.trim()
        ));
        if watched || watch_cmd {
            s.push_str("unset WATCH_READY WATCH_PAGES WATCH_CMD\n");
        }
    }
    s.push_str("say \"all scenarios finished\"\nfinish");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::KernelId;

    /// The init of `run`, or the test fails.
    fn init_of(run: &LabRun, module_paths: &[String]) -> String {
        init_script(run, module_paths).unwrap_or_else(|e| panic!("{e:#}"))
    }

    use crate::lab::qemu::OUT_DISK_BYTES;

    #[test]
    fn only_hmm_blocked_asks_for_ram_holders() {
        assert!(!refwatch_cmd("/out/x", "").contains("--ram-holders"));
        assert_eq!(run_flags("hmm-blocked"), "--ram-holders");
        assert_eq!(
            run_flags("hmm-blocked+functions"),
            "--no-precise --ram-holders"
        );
        assert_eq!(run_flags("hmm-leak+functions"), "--no-precise");
        assert_eq!(run_flags("dax-hold+kprobe"), "--mode kprobe");
        for s in SCENARIOS.iter().chain(HMM_SCENARIOS) {
            assert_eq!(
                run_flags(s).contains("--ram-holders"),
                *s == "hmm-blocked",
                "{s}"
            );
        }
        let run = LabRun::new(KernelId::Hmm7_2, &["hmm-migrate", "hmm-blocked"]);
        let init = init_of(&run, &[]);
        assert!(init.contains("\nrun_scenario hmm-migrate hmm-migrate \"\"\n"));
        assert!(init.contains("\nrun_scenario hmm-blocked hmm-blocked \"--ram-holders\"\n"));
    }

    #[test]
    fn the_metrics_scenario_scrapes_its_port_in_its_cgroup() {
        let run = LabRun::new(KernelId::Debian6_12, &["dax-hold+metrics"]);
        let init = init_of(&run, &[]);
        assert!(
            init.contains("\nrun_metrics dax-hold+metrics dax-hold \"--metrics 9464\"\n"),
            "{init}"
        );
        assert!(init.contains("wget -q -O $1 http://127.0.0.1:9464/metrics"));
        assert!(init.contains(&format!("G=$C{METRICS_CGROUP}\n")));
        assert!(!init.contains("@METRICS"));
    }

    #[test]
    fn init_runs_each_scenario_once() {
        let run = LabRun::new(KernelId::Debian6_1, &["dax-hold", "dax-splice"]);
        let init = init_of(&run, &["/lib/modules/ext4.ko".to_owned()]);
        assert!(init.starts_with("#!/bin/sh\n"));
        assert!(init.contains("insmod /lib/modules/ext4.ko ||"));
        assert_eq!(
            init.matches("\nrun_scenario dax-hold dax-hold \"\"\n")
                .count(),
            1
        );
        assert_eq!(
            // dax-splice on SIZE_PAGES pages: the recording's size is measured there.
            init.matches("\nrun_scenario dax-splice dax-splice \"\" 1000\n")
                .count(),
            1
        );
        assert!(init.contains("P=${4:-16}\n    H=${5:-3}\n"));
        assert!(init.contains("--pages $P --hold-secs $H"));
        assert_eq!(
            init.matches("refwatch probes > /out/probes.txt").count(),
            1,
            "probes once per boot"
        );
        // Copied during the hold by run_scenario and run_metrics.
        assert_eq!(init.matches("recording.during-hold").count(), 2);
    }

    #[test]
    fn xfs_runs_switch_the_file_system_and_back() {
        let run = LabRun::new(
            KernelId::Debian7_2,
            &["dax-hold", "dax-truncate-pinned+xfs", "dax-splice"],
        );
        let init = init_of(&run, &[]);
        let pos = |p: &str| init.find(p).unwrap_or_else(|| panic!("{p} missing"));
        assert!(pos("\nrun_scenario dax-hold ") < pos("\nuse_fs xfs\n"));
        assert!(
            init.contains(
                "\nuse_fs xfs\nrun_scenario dax-truncate-pinned+xfs dax-truncate-pinned \"\"\n"
            ),
            "{init}"
        );
        assert!(init.contains("\nuse_fs ext4\nrun_scenario dax-splice dax-splice \"\" 1000\n"));
        assert_eq!(init.matches("\nuse_fs ").count(), 2);
        assert_eq!(
            split_variant("dax-truncate-pinned+xfs"),
            ("dax-truncate-pinned", Variant::Xfs)
        );
        assert!(parse_scenario("dax-truncate-pinned+xfs").is_ok());
        assert!(scenarios_for(KernelId::Debian7_2).contains(&"dax-truncate-pinned+xfs"));
        assert!(!scenarios_for(KernelId::Hmm7_2).contains(&"dax-truncate-pinned+xfs"));
    }

    #[test]
    fn a_script_replaces_the_scenarios() {
        let mut run = LabRun::new(KernelId::Debian6_12, &["dax-hold"]);
        run.script = Some("echo bench > /out/bench.txt".to_owned());
        let init = init_of(&run, &[]);
        assert!(!init.contains("\nrun_scenario dax-hold"));
        let probes = init.find("refwatch probes >").expect("probes line");
        let mount = init.find("mount -t ext4 -o dax").expect("dax mount");
        let script = init
            .find("\necho bench > /out/bench.txt\n")
            .expect("the script");
        let end = init.rfind("\nfinish\n").expect("finish");
        assert!(mount < probes && probes < script && script < end);
        assert!(init.ends_with("say \"script finished\"\nfinish\n"));
    }

    #[test]
    fn hmm_watch_scenarios_watch_the_drivers_first_pages() {
        let run = LabRun::new(KernelId::Hmm7_2, WATCH_HMM);
        let init = init_of(&run, &[]);
        assert!(init.contains("hmm_watch_pfns() {"));
        for s in WATCH_HMM {
            let call = format!("hmm_watch_pfns {WATCH_PAGES}\nexport WATCH_READY=/out/{s}/");
            assert!(init.contains(&call), "{s}: {init}");
            assert!(init.contains(&format!(
                "run_scenario {s} {} \"--no-precise --watch $HMM_WATCH_PFNS --watch-ready",
                split_variant(s).0
            )));
        }
        // Only there: the fs-dax watch scenarios watch new pages, or the
        // stuck ones without a holder after a late attach.
        let run = LabRun::new(KernelId::Debian6_12, WATCH_DAX);
        let init = init_of(&run, &[]);
        assert!(!init.contains("hmm_watch_pfns"));
        assert!(
            init.contains(
                "run_scenario dax-hold+late+watch dax-hold \"--watch unknown --watch-ready"
            )
        );
        // `refwatch watch` beside a late attach that watches nothing.
        assert!(init.contains(
            "export WATCH_CMD=1 WATCH_READY=/out/dax-hold+watch-cmd/watch-ready WATCH_PAGES=1\nrun_scenario dax-hold+watch-cmd dax-hold \"\" \"\" 30 late\n"
        ));
        assert_eq!(init.matches("export WATCH_CMD=1").count(), 1);
        assert!(
            init.contains("run_signal dax-hold+sigkill+watch dax-hold \"--watch new --watch-ready")
        );
        let run = LabRun::new(KernelId::Hmm7_2, WATCH_PIN);
        let init = init_of(&run, &[]);
        assert!(
            init.contains(
                "run_scenario dax-pin-long+watch dax-pin-long \"--watch new --watch-ready"
            )
        );
    }

    #[test]
    fn hmm_scenarios_only_where_the_driver_is() {
        for kernel in KernelId::ALL {
            let all = scenarios_for(kernel);
            assert_eq!(&all[..SCENARIOS.len()], SCENARIOS, "{kernel}");
            let (filters, metrics, tui, signals, watch) = if kernel == KernelId::Debian6_12 {
                (
                    FILTER_SCENARIOS,
                    METRICS_SCENARIOS,
                    &["dax-hold+tui"][..],
                    SIGNAL_SCENARIOS,
                    WATCH_DAX,
                )
            } else {
                (&[][..], &[][..], &[][..], &[][..], &[][..])
            };
            let first: &[&str] = if kernel == KernelId::Debian6_12 {
                &[
                    "dax-splice+tiny-ring",
                    "dax-splice+rate-cap",
                    "dax-hold+late",
                ]
            } else {
                &["dax-splice+tiny-ring", "dax-hold+late"]
            };
            let rest = [
                first, filters, metrics, tui, signals, watch, DAX_KPROBE, DAX_XFS,
            ]
            .concat();
            assert_eq!(&all[SCENARIOS.len()..], rest, "{kernel}");
        }
        let hmm = scenarios_for(KernelId::Hmm7_2);
        assert!(SCENARIOS.iter().all(|s| hmm.contains(s)));
        // Precise mode: the page and task filters.
        assert!(FILTER_SCENARIOS[..2].iter().all(|s| hmm.contains(s)));
        assert!(HMM_SCENARIOS.iter().all(|s| hmm.contains(s)));
        assert!(WATCH_HMM.iter().all(|s| hmm.contains(s)));
        assert!(WATCH_PIN.iter().all(|s| hmm.contains(s)));
        assert!(parse_scenario("hmm-leak").is_ok());
        assert!(parse_scenario("hmm-leak+functions").is_ok());
        assert_eq!(
            split_variant("hmm-leak+functions"),
            ("hmm-leak", Variant::Functions)
        );
        assert_eq!(
            split_variant("dax-hold+kprobe"),
            ("dax-hold", Variant::Kprobe)
        );
        assert!(parse_scenario("dax-hold+kprobe").is_ok());
        assert_eq!(
            split_variant("dax-splice+tiny-ring"),
            ("dax-splice", Variant::TinyRing)
        );
        assert!(hmm.contains(&"dax-splice+tiny-ring"));
        assert_eq!(split_variant("dax-hold+late"), ("dax-hold", Variant::Late));
        let init = init_of(&LabRun::new(KernelId::Debian6_1, &["dax-hold+late"]), &[]);
        assert!(
            init.contains("\nrun_scenario dax-hold+late dax-hold \"\" \"\" 30 late\n"),
            "{init}"
        );
        assert_eq!(
            split_variant("dax-hold+pfn-filter"),
            ("dax-hold", Variant::PfnFilter)
        );
        assert_eq!(
            split_variant("dax-hold+pid-filter"),
            ("dax-hold", Variant::PidFilter)
        );
        assert!(hmm.contains(&"dax-hold+pid-filter"));
        let init = init_of(
            &LabRun::new(
                KernelId::Debian6_12,
                &[
                    "dax-hold+pfn-filter",
                    "dax-hold+pid-filter",
                    "dax-hold+cgroup-filter",
                ],
            ),
            &[],
        );
        for by in ["pfn", "pid", "cgroup"] {
            let line = format!("\nrun_filtered dax-hold+{by}-filter dax-hold \"\" {by} 60\n");
            assert!(init.contains(&line), "{init}");
        }
        let mut tiny = LabRun::new(KernelId::Debian6_12, &["dax-splice+tiny-ring", "dax-hold"]);
        tiny.refwatch_args = vec!["--summary-secs".into(), "1".into()];
        let init = init_of(&tiny, &[]);
        assert!(
            init.contains(
                "\nrun_scenario dax-splice+tiny-ring dax-splice \"--ring-size 4096 --summary-secs 1\" 1000\n"
            ),
            "{init}"
        );
        assert!(init.contains("\nrun_scenario dax-hold dax-hold \"--summary-secs 1\"\n"));
        let mut run = LabRun::new(KernelId::Hmm7_2, &["hmm-blocked+functions"]);
        run.pages = 4;
        let init = init_of(&run, &[]);
        assert!(init.contains(
            "\nrun_scenario hmm-blocked+functions hmm-blocked \"--no-precise --ram-holders\"\n"
        ));
        assert!(init.contains("/dev/hmm_dmirror0"));

        let run = LabRun::new(KernelId::Hmm7_2, &["hmm-migrate"]);
        let init = init_of(&run, &[]);
        assert!(init.contains("wait_for -c /dev/hmm_dmirror0 ||"));
        let run = LabRun::new(KernelId::Debian6_1, &["dax-hold"]);
        assert!(!init_of(&run, &[]).contains("hmm_dmirror"));
    }

    #[test]
    fn the_tui_runs_attach_on_a_pseudo_terminal() {
        assert_eq!(split_variant("dax-hold+tui"), ("dax-hold", Variant::Tui));
        assert!(parse_scenario("dax-hold+tui").is_ok());
        assert!(!Variant::Tui.records() && Variant::Late.records());
        let mut run = LabRun::new(KernelId::Debian6_12, &["dax-hold", "dax-hold+tui"]);
        let init = init_of(&run, &[]);
        assert!(
            init.contains("\nrun_tui dax-hold+tui dax-hold \"\" 8 120 50\n"),
            "{init}"
        );
        let attach = init
            .lines()
            .find(|l| l.contains("workload pty ") && !l.contains("--passthrough"))
            .expect("the pty line");
        for part in [
            "--capture $D/tui.capture --keys-file $D/keys --quit-file $D/quit -- refwatch attach ",
            "--jsonl $D/events.jsonl --ready-file $D/ready --log-file $D/refwatch.log ",
            "--held-secs 1 ",
        ] {
            assert!(attach.contains(part), "{part} missing from {attach}");
        }
        run.tui = TuiConsole {
            cols: 200,
            rows: 60,
            hold_secs: 25,
            live: true,
        };
        assert!(
            init_of(&run, &[]).contains("\nrun_tui dax-hold+tui dax-hold \"\" 25 200 60 live\n")
        );
    }

    #[test]
    fn dax_pin_long_writes_to_the_slow_disk() {
        let run = LabRun::new(KernelId::Debian6_1, &["dax-direct-io", "dax-pin-long"]);
        let init = init_of(&run, &[]);
        assert!(init.contains("\n        dax-pin-long) B=/dev/vdc ;;\n        *) B=/dev/vdb ;;\n"));
        assert!(init.contains(" --bdev $B --out "));
        assert!(init.contains("wait_for -b /dev/vdc ||"));
        assert!(init.contains("[ \"$(cat /sys/block/vdc/size)\" = \"65536\" ]"));
        assert!(init.contains("echo 4 > /sys/block/vdc/queue/max_sectors_kb ||"));
        assert!(scenarios_for(KernelId::Debian6_1).contains(&"dax-pin-long"));
        assert!(scenarios_for(KernelId::Hmm7_2).contains(&"dax-pin-long"));
    }

    #[test]
    fn selftests_run_the_kernels_suite_instead_of_a_workload() {
        assert_eq!(scenarios_for(KernelId::Hmm7_2).last(), Some(&SELFTESTS));
        for kernel in KernelId::ALL {
            assert!(!scenarios_for(kernel).contains(&SELFTESTS), "{kernel}");
        }
        assert!(parse_scenario(SELFTESTS).is_ok());
        assert!(parse_scenario("hmm-selftests+functions").is_err());
        assert_eq!(run_flags(SELFTESTS), "", "refwatch's defaults");
        let run = LabRun::new(KernelId::Hmm7_2, &["hmm-migrate", SELFTESTS]);
        let init = init_of(&run, &[]);
        assert!(
            init.contains("\nrun_selftests hmm-selftests \"\"\n"),
            "{init}"
        );
        assert!(!init.contains("\nrun_scenario hmm-selftests"));
        assert!(init.contains(&format!(
            "timeout {SELFTEST_SECS} hmm-tests -T benchmark_thp_migration;"
        )));
        assert!(init.contains("wait_for -c /dev/hmm_dmirror0 ||"));
        assert_eq!(out_disk_bytes(&run), 1 << 30);
        assert!(init.contains(&format!(
            "\"{}\" ] || fail \"/dev/vda is not the 1024 MiB out disk",
            (1u64 << 30) / 512
        )));
        let alone = LabRun::new(KernelId::Hmm7_2, &[SELFTESTS]);
        assert!(init_of(&alone, &[]).contains("/dev/hmm_dmirror0"));
        assert_eq!(
            out_disk_bytes(&LabRun::new(KernelId::Hmm7_2, &["hmm-migrate"])),
            OUT_DISK_BYTES
        );
    }
}
