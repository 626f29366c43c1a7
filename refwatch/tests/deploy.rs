//! The fleet deployment files (`deploy/`): the systemd unit passes
//! `systemd-analyze verify`, the DaemonSet grants what refwatch needs and
//! probes the port its arguments serve, and every metric the alert rules
//! use is one refwatch exposes.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use clap::Parser as _;
use refwatch::{
    cli::{Cli, Command as Sub},
    metrics::{Counts, Metrics, serve::parse_addr},
    tui::synthetic,
};
use serde_norway::Value;

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("read deploy/{file}: {e}"))
}

fn yaml_docs(file: &str) -> Vec<Value> {
    let text = read(file);
    serde_norway::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
        })
        .collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// The `--metrics` port of refwatch's arguments, which must parse as its
/// command line (`attach --headless`), and serve beyond loopback.
fn metrics_port(args: &[String]) -> u16 {
    let cli =
        Cli::try_parse_from(std::iter::once("refwatch".to_string()).chain(args.iter().cloned()))
            .unwrap_or_else(|e| panic!("refwatch rejects {args:?}: {e}"));
    let Sub::Attach(a) = cli.command else {
        panic!("not `refwatch attach`: {args:?}");
    };
    assert!(a.headless, "{args:?}");
    let addr = a
        .metrics
        .unwrap_or_else(|| panic!("no --metrics in {args:?}"));
    assert!(
        addr.ip().is_unspecified(),
        "{addr}: a scraper on another host cannot reach it"
    );
    addr.port()
}

/// Metric names in a PromQL expression: identifiers that start with
/// `refwatch_` or `process_`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("refwatch_") || word.starts_with("process_") {
            out.insert(word.to_string());
        }
    }
    out
}

/// The names of the samples refwatch renders for a synthetic tracker with
/// stuck pages (synthetic: the TUI's test data).
fn exposed() -> BTreeSet<String> {
    let mut m = Metrics::new();
    let counts = Counts {
        seen_by_kind: [0, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ..Counts::default()
    };
    m.update(
        &synthetic::stuck(),
        &counts,
        refwatch::metrics::process::read(),
    );
    m.render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
        .collect()
}

#[test]
fn the_unit_verifies_and_runs_refwatch_with_metrics() {
    let unit = read("refwatch.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/refwatch"));
    let args: Vec<String> = words.map(str::to_string).collect();
    let port = metrics_port(&args);
    assert_eq!(port, 9464);
    let bounding: BTreeSet<&str> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet=")
        .split_whitespace()
        .collect();
    for cap in ["CAP_BPF", "CAP_PERFMON", "CAP_SYSLOG", "CAP_SYS_ADMIN"] {
        assert!(bounding.contains(cap), "{cap} missing from the unit");
    }
    // systemd checks the unit with this build of refwatch as its program.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("refwatch.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/refwatch", env!("CARGO_BIN_EXE_refwatch")),
    )
    .expect("write the unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian's systemd; cargo xtask setup installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("refwatch.service"),
        "systemd-analyze verify warns: {stderr}"
    );
}

#[test]
fn the_daemonset_grants_mounts_and_probes_what_refwatch_needs() {
    let docs = yaml_docs("daemonset.yaml");
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"].as_bool(), Some(true), "holders' /proc/PID");
    let c = &pod["containers"][0];
    let args = strs(&c["args"]);
    let port = metrics_port(&args);
    assert_eq!(
        strs(&c["command"]),
        ["/usr/local/bin/refwatch"],
        "the image's refwatch"
    );
    let sc = &c["securityContext"];
    let added: BTreeSet<String> = strs(&sc["capabilities"]["add"]).into_iter().collect();
    let want: BTreeSet<String> = ["BPF", "PERFMON", "SYSLOG", "SYS_ADMIN"]
        .map(String::from)
        .into();
    assert_eq!(added, want);
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    // The kernel's type information and tracing file systems, from the host.
    let volumes = pod["volumes"].as_sequence().expect("volumes");
    for path in [
        "/sys/kernel/btf",
        "/sys/kernel/debug",
        "/sys/kernel/tracing",
    ] {
        let m = c["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("no mount at {path}"));
        let v = volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap_or_else(|| panic!("no volume for {path}"));
        assert_eq!(v["hostPath"]["path"].as_str(), Some(path));
    }
    // The probes ask the endpoint refwatch serves.
    let container_port = c["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "metrics")
        .and_then(|p| p["containerPort"].as_u64());
    assert_eq!(container_port, Some(u64::from(port)));
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/metrics"), "{probe}");
        let p = match &get["port"] {
            Value::String(name) if name == "metrics" => container_port,
            v => v.as_u64(),
        };
        assert_eq!(p, Some(u64::from(port)), "{probe}");
    }
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(port.to_string().as_str())
    );
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    // The Service selects these pods, on the same port.
    let svc = docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .expect("a Service");
    assert_eq!(
        svc["spec"]["selector"],
        ds["spec"]["template"]["metadata"]["labels"]
    );
    assert_eq!(
        svc["spec"]["ports"][0]["port"].as_u64(),
        Some(u64::from(port))
    );
    assert_eq!(parse_addr(&port.to_string()).map(|a| a.port()), Ok(port));
}

#[test]
fn every_metric_the_alert_rules_use_is_exposed() {
    let docs = yaml_docs("alerts.yaml");
    let exposed = exposed();
    let mut used = BTreeSet::new();
    let mut stuck_rule = false;
    for group in docs[0]["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr");
            assert!(rule["alert"].as_str().is_some_and(|a| !a.is_empty()));
            assert!(rule["labels"]["severity"].as_str().is_some());
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr} uses none of refwatch's metrics");
            stuck_rule |= names.contains("refwatch_stuck_oldest_seconds");
            used.extend(names);
        }
    }
    assert!(stuck_rule, "no rule on how long pages have been stuck");
    let missing: Vec<_> = used.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "metrics the rules use but refwatch does not expose: {missing:?} (exposed: {exposed:?})"
    );
    // And those the README lists.
    for name in refwatch::metrics::NAMES {
        assert!(exposed.contains(name), "{name}");
    }
}
