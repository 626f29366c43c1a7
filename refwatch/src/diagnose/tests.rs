//! Each failure case and its message (synthetic inputs: errnos, logs, process states).

use super::*;

fn caps(list: &[u32]) -> Caps {
    Caps(list.iter().fold(0, |m, c| m | 1 << c))
}

/// Root with every capability on a 6.x kernel, lockdown as given.
fn root(lockdown: Lockdown) -> Facts {
    Facts {
        caps: Some(Caps((1 << 41) - 1)),
        cap_last_cap: Some(40),
        kptr_restrict: Some(0),
        perf_event_paranoid: Some(2),
        lockdown,
    }
}

fn eperm(text: &str) -> Refusal {
    Refusal {
        errno: Some(EPERM),
        verifier_log: None,
        text: text.into(),
    }
}

fn assert_short(d: &Diagnosis) {
    assert!(!d.cause.contains('\n'), "{d:?}");
    assert!(d.hint.as_ref().is_none_or(|h| !h.contains('\n')), "{d:?}");
    assert!(
        !d.cause.contains("Some(") && !d.cause.contains(" { "),
        "{d:?}"
    );
}

#[test]
fn capability_masks_from_proc_status() {
    let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\nCapBnd:\t0\n";
    let c = Caps::from_status(status).expect("CapEff");
    assert!(c.has(CAP_BPF) && c.has(CAP_PERFMON) && c.has(CAP_SYS_ADMIN));
    assert!(!c.has(24), "CAP_SYS_RESOURCE is off in that mask");
    assert_eq!(Caps::from_status("CapInh:\t0\n"), None);
}

#[test]
fn lockdown_modes() {
    assert_eq!(
        Lockdown::parse("none [integrity] confidentiality\n"),
        Lockdown::Integrity
    );
    assert_eq!(
        Lockdown::parse("[none] integrity confidentiality"),
        Lockdown::None
    );
    assert_eq!(
        Lockdown::parse("none integrity [confidentiality]"),
        Lockdown::Confidentiality
    );
    assert_eq!(Lockdown::parse(""), Lockdown::Unknown);
}

#[test]
fn root_with_every_capability_passes_the_preflight() {
    assert_eq!(preflight(&root(Lockdown::None)), None);
    // Capabilities unknown: nothing is claimed.
    let f = Facts {
        caps: None,
        ..root(Lockdown::None)
    };
    assert_eq!(preflight(&f), None);
}

#[test]
fn missing_bpf_and_perfmon_are_named_with_the_fix() {
    let mut f = root(Lockdown::None);
    f.caps = Some(caps(&[CAP_SYSLOG, 0, 1]));
    let d = preflight(&f).expect("refused");
    assert_short(&d);
    assert_eq!(
        d.cause,
        "missing capabilities: CAP_BPF (to load kernel programs) and CAP_PERFMON (to attach them and read kernel memory)"
    );
    let hint = d.hint.expect("hint");
    assert!(hint.contains("run it as root"), "{hint}");
    assert!(hint.contains("setcap cap_bpf,cap_perfmon+ep"), "{hint}");
    // CAP_SYS_ADMIN covers both.
    f.caps = Some(caps(&[CAP_SYS_ADMIN, CAP_SYSLOG]));
    assert_eq!(preflight(&f), None);
}

#[test]
fn cap_syslog_only_when_kallsyms_hides_addresses() {
    let mut f = root(Lockdown::None);
    f.caps = Some(caps(&[CAP_BPF, CAP_PERFMON]));
    let d = preflight(&f).expect("paranoid 2 hides kallsyms without CAP_SYSLOG");
    assert!(
        d.cause.starts_with("missing capabilities: CAP_SYSLOG ("),
        "{d:?}"
    );
    f.perf_event_paranoid = Some(1);
    assert_eq!(preflight(&f), None, "kptr_restrict 0, paranoid 1: shown");
    f.kptr_restrict = Some(1);
    assert!(preflight(&f).is_some());
}

#[test]
fn before_linux_5_8_it_is_cap_sys_admin() {
    let mut f = root(Lockdown::None);
    f.cap_last_cap = Some(37);
    f.caps = Some(caps(&[CAP_SYSLOG, CAP_BPF, CAP_PERFMON]));
    let d = preflight(&f).expect("refused");
    assert!(
        d.cause.starts_with("missing capabilities: CAP_SYS_ADMIN ("),
        "{d:?}"
    );
}

#[test]
fn map_creation_eperm_without_capabilities_names_them_once() {
    let mut f = root(Lockdown::None);
    f.caps = Some(caps(&[CAP_SYSLOG]));
    let r = eperm("failed to create map `AYA_LOGS`: Operation not permitted (os error 1)");
    let d = load_failed(&f, &r, false);
    assert_short(&d);
    assert!(
        d.cause.starts_with("missing capabilities: CAP_BPF ("),
        "{d:?}"
    );
    assert_eq!(d.cause.matches("CAP_BPF").count(), 1, "{d:?}");
}

#[test]
fn eperm_under_lockdown_says_lockdown_and_how_to_check() {
    for (mode, name) in [
        (Lockdown::Integrity, "integrity"),
        (Lockdown::Confidentiality, "confidentiality"),
    ] {
        let o = Outcome {
            hooks: 3,
            refusals: vec![eperm("a"), eperm("b")],
        };
        let d = nothing_attached(&root(mode), "6.12.0", &o);
        assert_short(&d);
        assert_eq!(
            d.cause,
            format!(
                "no hook could attach on kernel 6.12.0: kernel lockdown ({name}) blocks every program: the kernel refused with EPERM"
            )
        );
        let hint = d.hint.expect("hint");
        assert!(hint.contains("cat /sys/kernel/security/lockdown"), "{hint}");
        assert!(hint.contains("refwatch probes"), "{hint}");
        let d = load_failed(&root(mode), &eperm("x"), false);
        assert!(d.cause.starts_with("kernel lockdown ("), "{d:?}");
    }
}

#[test]
fn eperm_with_capabilities_and_no_lockdown_points_at_policies() {
    let o = Outcome {
        hooks: 1,
        refusals: vec![eperm("a")],
    };
    let d = nothing_attached(&root(Lockdown::None), "6.18", &o);
    assert!(d.cause.contains("not locked down"), "{d:?}");
    assert!(d.hint.expect("hint").contains("dmesg"));
    // Lockdown not readable (securityfs not mounted): both, and how to check.
    let d = nothing_attached(&root(Lockdown::Unknown), "6.18", &o);
    assert!(
        d.cause.contains("lockdown or a security policy forbids it"),
        "{d:?}"
    );
    let hint = d.hint.expect("hint");
    assert!(
        hint.contains("mount -t securityfs securityfs /sys/kernel/security"),
        "{hint}"
    );
    assert!(hint.contains("dmesg | grep -i 'locked down'"), "{hint}");
}

/// Synthetic refusals as a confidentiality lockdown gives them: the
/// verifier refuses the kernel-memory helper (EINVAL), kprobes EPERM.
#[test]
fn confidentiality_lockdown_behind_verifier_refusals() {
    let helper = Refusal {
        errno: Some(22),
        verifier_log: Some(
            "0: R1=ctx()\n5: (85) call bpf_probe_read_kernel#113\nprogram of this type cannot use helper bpf_probe_read_kernel#113".into(),
        ),
        text: "fexit_free on f: BPF_PROG_LOAD returned Invalid argument (os error 22) (the verifier refused it)".into(),
    };
    let o = Outcome {
        hooks: 2,
        refusals: vec![
            helper.clone(),
            eperm("kprobe_free on f: Operation not permitted"),
        ],
    };
    let d = nothing_attached(&root(Lockdown::Confidentiality), "6.12.0", &o);
    assert_short(&d);
    assert_eq!(
        d.cause,
        "no hook could attach on kernel 6.12.0: kernel lockdown (confidentiality) blocks every program: it forbids reading kernel memory from BPF"
    );
    assert!(
        d.hint
            .expect("hint")
            .contains("/sys/kernel/security/lockdown")
    );
    // Lockdown unreadable: the helper in the verifier's log names it.
    let d = nothing_attached(&root(Lockdown::Unknown), "6.12.0", &o);
    assert!(
        d.cause
            .contains("the verifier refused bpf_probe_read_kernel"),
        "{d:?}"
    );
    assert!(d.hint.expect("hint").contains("dmesg"));
    // Not locked down: a plain verifier refusal.
    let d = nothing_attached(&root(Lockdown::None), "6.12.0", &o);
    assert!(d.cause.contains("verifier refused 1 of"), "{d:?}");
}

#[test]
fn nothing_attachable_for_lack_of_symbols() {
    let o = Outcome {
        hooks: 22,
        refusals: vec![],
    };
    let d = nothing_attached(&root(Lockdown::None), "5.4.0", &o);
    assert_short(&d);
    assert_eq!(
        d.cause,
        "no hook could attach on kernel 5.4.0: none of the 22 kernel functions and tracepoints refwatch watches is in it"
    );
    assert!(d.hint.expect("hint").starts_with("`refwatch probes`"));
}

#[test]
fn verifier_refusals_point_at_the_flag_not_the_log() {
    let log = "0: R1=ctx() R10=fp0\n1: (79) r2 = *(u64 *)(r1 +0)\ninvalid access\n".repeat(50);
    let r = Refusal {
        errno: Some(EACCES),
        verifier_log: Some(log.clone()),
        text: "fexit_free on f: BPF_PROG_LOAD returned Permission denied (os error 13) (the verifier refused it)".into(),
    };
    let o = Outcome {
        hooks: 2,
        refusals: vec![r.clone(), r],
    };
    let d = nothing_attached(&root(Lockdown::None), "6.1.0", &o);
    assert_short(&d);
    assert!(!d.cause.contains("invalid access"), "{d:?}");
    assert!(d.cause.contains("verifier refused 2 of"), "{d:?}");
    assert!(
        d.hint
            .expect("hint")
            .contains("refwatch probes --verifier-log")
    );
}

/// Synthetic refusals: fentry and a retry of the same program, and
/// another program refused without a log.
#[test]
fn each_verifier_log_once_per_program() {
    let r = |text: &str, log: Option<&str>| Refusal {
        errno: Some(EACCES),
        verifier_log: log.map(Into::into),
        text: text.into(),
    };
    let refusals = [
        r(
            "fexit_free on free_zone_device_folio: BPF_PROG_LOAD returned …",
            Some("log A"),
        ),
        r(
            "fexit_free on free_zone_device_page: BPF_PROG_LOAD returned …",
            Some("log A"),
        ),
        r(
            "fexit_gup_put on gup_put_folio: BPF_PROG_LOAD returned …",
            None,
        ),
        r(
            "fentry_fork on kernel_clone: BPF_PROG_LOAD returned …",
            Some("log B"),
        ),
    ];
    assert_eq!(
        verifier_logs(&refusals),
        vec![("fexit_free", "log A"), ("fentry_fork", "log B")]
    );
}

#[test]
fn other_refusals_are_counted_by_errno() {
    let r = |e| Refusal {
        errno: Some(e),
        verifier_log: None,
        text: String::new(),
    };
    let o = Outcome {
        hooks: 4,
        refusals: vec![r(524), r(524), r(22), r(1)],
    };
    let d = nothing_attached(&root(Lockdown::None), "6.6", &o);
    assert_short(&d);
    assert_eq!(
        d.cause,
        "no hook could attach on kernel 6.6: the kernel refused every load or attach (ENOTSUPP ×2, EINVAL ×1, EPERM ×1)"
    );
    assert!(d.hint.expect("hint").contains("CONFIG_KPROBES"));
}

/// aya's map error repeats its source; the message says it once.
#[test]
fn an_error_chain_on_one_line_says_each_cause_once() {
    let io = std::io::Error::from_raw_os_error(EPERM);
    let map = aya::maps::MapError::CreateError {
        name: "AYA_LOGS".into(),
        io_error: io,
    };
    let e = anyhow::Error::new(aya::EbpfError::MapError(map))
        .context("load refwatch's kernel programs");
    let line = one_line(&e);
    assert_eq!(
        line,
        "load refwatch's kernel programs: map error: failed to create map `AYA_LOGS`: Operation not permitted (os error 1)"
    );
    let r = Refusal::of(&e);
    assert_eq!(r.errno, Some(EPERM));
    assert_eq!(r.verifier_log, None);
}

/// A program refused by the verifier: the log is kept apart, once, and
/// the one-line text only says that the verifier refused it.
#[test]
fn a_verifier_log_is_kept_apart_from_the_line() {
    let log = "func#0 @0\nR1 invalid mem access 'scalar'\nprocessed 12 insns\n";
    let load = aya::programs::ProgramError::LoadError {
        io_error: std::io::Error::from_raw_os_error(EACCES),
        verifier_log: aya_obj::VerifierLog::new(log.into()),
    };
    let e = anyhow::Error::new(load).context("fexit_free on free_zone_device_folio");
    let r = Refusal::of(&e);
    assert_eq!(r.errno, Some(EACCES));
    assert_eq!(r.verifier_log.as_deref(), Some(log.trim_end()));
    assert_eq!(
        r.text,
        "fexit_free on free_zone_device_folio: BPF_PROG_LOAD returned Permission denied (os error 13) (the verifier refused it)"
    );
    let msg = message(&e);
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(!msg.contains("invalid mem access"), "{msg}");
}

#[test]
fn a_diagnosis_prints_as_a_line_and_a_hint() {
    let d = no_terminal("replay", false, true).expect("no terminal");
    let msg = message(&anyhow::Error::new(d));
    let lines: Vec<&str> = msg.lines().collect();
    assert_eq!(
        lines,
        [
            "replay draws a terminal UI, but standard output is not a terminal",
            "hint: without a terminal, `refwatch report FILE` prints the stuck episodes and `refwatch export FILE --format jsonl` the events",
        ]
    );
    assert!(!msg.contains("--headless"), "replay has no such flag");
    let d = no_terminal("attach", true, false).expect("no keys");
    assert!(d.cause.ends_with("there is no terminal to read keys from"));
    assert!(d.hint.expect("hint").contains("--headless"));
    assert_eq!(no_terminal("replay", true, true), None);
}
