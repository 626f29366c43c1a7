use refwatch_common::pgmap;

use super::{
    Counts, Metrics, NAMES, OTHER_COMMS, Process, TOP_COMMS, process,
    serve::{self, MAX_REQUEST, Published},
};
use crate::{
    event::Kind,
    state::Tracker,
    tui::synthetic::{self, S, T0, event},
};

/// The value of the sample `name{labels}` in `text` (labels in any order).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|l| {
        let (series, v) = l.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let have: Vec<&str> = rest.split(',').filter(|s| !s.is_empty()).collect();
        let want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        (have.len() == want.len() && want.iter().all(|w| have.contains(&w.as_str())))
            .then(|| v.parse().ok())?
    })
}

fn updated(t: &Tracker, counts: &Counts) -> String {
    let mut m = Metrics::new();
    m.update(t, counts, None);
    m.render()
}

#[test]
fn stuck_pages_by_type_detector_and_holder_match_the_tracker() {
    // Synthetic: the TUI's tracker with three stuck fs-dax pages.
    let t = synthetic::stuck();
    let text = updated(&t, &Counts::default());
    let stuck = t.stuck();
    assert_eq!(stuck.len(), 3, "the synthetic tracker changed");
    for d in crate::state::Detector::ALL {
        let n = stuck.iter().filter(|p| p.open.contains_key(&d)).count();
        let got = value(
            &text,
            "refwatch_pages_stuck",
            &[("pgmap_type", "fsdax"), ("detector", d.name())],
        );
        assert_eq!(got.unwrap_or(0.0), n as f64, "{}\n{text}", d.name());
    }
    let fsdax = t.pages().filter(|p| p.pgmap_type == pgmap::FSDAX).count();
    assert_eq!(
        value(&text, "refwatch_pages_tracked", &[("pgmap_type", "fsdax")]),
        Some(fsdax as f64)
    );
    assert_eq!(
        value(
            &text,
            "refwatch_pages_tracked",
            &[("pgmap_type", "private")]
        ),
        Some(1.0)
    );
    // vmsplice-hold holds two of the stuck pages, fio pins the third.
    assert_eq!(
        value(
            &text,
            "refwatch_holder_stuck_pages",
            &[("comm", "vmsplice-hold")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "refwatch_holder_stuck_pages", &[("comm", "fio")]),
        Some(1.0)
    );
    // The oldest open episode began when the pipe took its page (+2 s);
    // the tracker's time is +12 s.
    assert_eq!(
        value(
            &text,
            "refwatch_stuck_oldest_seconds",
            &[("pgmap_type", "fsdax")]
        ),
        Some(10.0),
        "{text}"
    );
    let open = t.episodes.iter().filter(|e| e.end_ns.is_none()).count() as f64;
    let opened = value(&text, "refwatch_episodes_opened_total", &[]).unwrap_or(-1.0);
    let closed = value(&text, "refwatch_episodes_closed_total", &[]).unwrap_or(-1.0);
    assert_eq!(opened, t.episodes_opened() as f64);
    assert_eq!(opened - closed, open);
}

#[test]
fn every_documented_name_is_in_the_text() {
    let mut m = Metrics::new();
    let counts = Counts {
        seen_by_kind: [0, 5, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ..Counts::default()
    };
    m.update(
        &synthetic::stuck(),
        &counts,
        Some(Process {
            cpu_seconds: 1.5,
            resident_bytes: 8 << 20,
        }),
    );
    let text = m.render();
    for name in NAMES {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' '])),
            "{name} has no sample:\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn counters_take_totals_not_increments() {
    let t = synthetic::stuck();
    let mut m = Metrics::new();
    let mut counts = Counts::default();
    counts.seen_by_kind[Kind::Get.raw() as usize] = 10;
    counts.lost_ring_full = 3;
    counts.capped = 7;
    m.update(&t, &counts, None);
    m.update(&t, &counts, None);
    counts.seen_by_kind[Kind::Get.raw() as usize] = 15;
    m.update(
        &t,
        &counts,
        Some(Process {
            cpu_seconds: 2.0,
            resident_bytes: 4096,
        }),
    );
    m.update(
        &t,
        &counts,
        Some(Process {
            cpu_seconds: 2.5,
            resident_bytes: 8192,
        }),
    );
    let text = m.render();
    assert_eq!(
        value(&text, "refwatch_events_seen_total", &[("kind", "get")]),
        Some(15.0)
    );
    assert_eq!(
        value(
            &text,
            "refwatch_events_lost_total",
            &[("reason", "ring_full")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            "refwatch_events_lost_total",
            &[("reason", "inflight_full")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "refwatch_events_lost_total",
            &[("reason", "rate_cap")]
        ),
        Some(7.0)
    );
    // Kinds not seen have no series.
    assert_eq!(
        value(&text, "refwatch_events_seen_total", &[("kind", "pin")]),
        None
    );
    assert_eq!(
        value(&text, "refwatch_episodes_opened_total", &[]),
        Some(t.episodes_opened() as f64)
    );
    assert_eq!(value(&text, "process_cpu_seconds_total", &[]), Some(2.5));
    assert_eq!(
        value(&text, "process_resident_memory_bytes", &[]),
        Some(8192.0)
    );
}

#[test]
fn page_reads_count_agreed_and_corrected_apart() {
    let t = synthetic::stuck();
    let mut m = Metrics::new();
    let reads = |m: &Metrics, result: &str| {
        value(
            &m.render(),
            "refwatch_page_reads_total",
            &[("result", result)],
        )
    };
    m.update(&t, &Counts::default(), None);
    assert_eq!(reads(&m, "agreed"), Some(0.0));
    assert_eq!(reads(&m, "corrected"), Some(0.0));
    let mut counts = Counts {
        page_reads: 5,
        page_reads_corrected: 2,
        ..Counts::default()
    };
    m.update(&t, &counts, None);
    m.update(&t, &counts, None);
    assert_eq!(reads(&m, "agreed"), Some(3.0));
    assert_eq!(reads(&m, "corrected"), Some(2.0));
    counts.page_reads = 9;
    counts.page_reads_corrected = 3;
    m.update(&t, &counts, None);
    assert_eq!(reads(&m, "agreed"), Some(6.0));
    assert_eq!(reads(&m, "corrected"), Some(3.0));
}

#[test]
fn holder_comms_beyond_the_top_are_summed_as_other() {
    // Synthetic: 30 tasks each hold 1 + (i % 3) pages past the threshold.
    let mut t = synthetic::busy(0);
    let mut pfn = 0x50000;
    let mut total = 0;
    for i in 0..30u32 {
        for _ in 0..1 + i % 3 {
            let comm = format!("task-{i:02}");
            t.apply(&event(
                T0 + S,
                pfn,
                Kind::Get,
                1,
                2,
                100 + i,
                &comm,
                pgmap::FSDAX,
            ));
            pfn += 1;
            total += 1;
        }
    }
    t.advance(T0 + 20 * S);
    let text = updated(&t, &Counts::default());
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("refwatch_holder_stuck_pages{"))
        .collect();
    assert_eq!(series.len(), TOP_COMMS + 1, "{text}");
    let sum: f64 = series
        .iter()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(sum, total as f64);
    // The 10 tasks holding 3 pages come first, then those with 2 by name.
    assert_eq!(
        value(&text, "refwatch_holder_stuck_pages", &[("comm", "task-29")]),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            "refwatch_holder_stuck_pages",
            &[("comm", OTHER_COMMS)]
        ),
        Some(10.0),
        "{text}"
    );
}

#[test]
fn proc_self_lines_parse_with_odd_command_names() {
    // As Linux writes them; the name holds a space and a parenthesis.
    let stat = "4242 (refwatch (x) y) S 1 4242 4242 34816 4242 4194560 2931 0 0 0 \
                 250 37 0 0 20 0 2 0 123456 27000832 3512 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
    let statm = "6592 3512 2100 690 0 1200 0\n";
    let p = process::parse(stat, statm, 100, 4096).expect("parses");
    assert_eq!(p.cpu_seconds, 2.87);
    assert_eq!(p.resident_bytes, 3512 * 4096);
    assert_eq!(process::parse("4242 (x) S 1", statm, 100, 4096), None);
    assert_eq!(process::parse(stat, "", 100, 4096), None);
    // This process's own.
    let me = process::read().expect("/proc/self is readable");
    assert!(me.resident_bytes > 1 << 20, "{me:?}");
}

#[test]
fn addresses_default_to_loopback() {
    assert_eq!(
        serve::parse_addr("9464").map(|a| a.to_string()),
        Ok("127.0.0.1:9464".into())
    );
    assert_eq!(
        serve::parse_addr("0.0.0.0:9464").map(|a| a.to_string()),
        Ok("0.0.0.0:9464".into())
    );
    assert_eq!(
        serve::parse_addr("[::1]:80").map(|a| a.to_string()),
        Ok("[::1]:80".into())
    );
    for bad in ["", "host:9464", "99999", "1.2.3.4"] {
        assert!(serve::parse_addr(bad).is_err(), "{bad}");
    }
}

#[test]
fn only_get_metrics_is_answered() {
    let ok = String::from_utf8(serve::response(
        b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
        || "up 1\n# EOF\n".into(),
    ))
    .unwrap_or_default();
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.contains("Content-Type: application/openmetrics-text; version=1.0.0"));
    assert!(ok.contains("Content-Length: 11\r\n"));
    assert!(ok.ends_with("\r\n\r\nup 1\n# EOF\n"));
    for head in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"POST /metrics HTTP/1.1\r\n\r\n",
        b"GET /metricsx HTTP/1.1\r\n\r\n",
        b"\r\n\r\n",
    ] {
        let r = serve::response(head, || unreachable!("no body for a 404"));
        assert!(r.starts_with(b"HTTP/1.1 404 "), "{head:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_endpoint_serves_over_loopback_and_drops_oversized_requests() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = serve::bind(serve::parse_addr("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    // The port is taken: a second bind fails with one line naming it.
    let taken = serve::bind(addr)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        taken.starts_with(&format!("--metrics {addr}: cannot listen there")),
        "{taken}"
    );
    let text = Published::default();
    text.set("refwatch_pages_tracked 3\n# EOF\n".into());
    tokio::spawn(serve::serve(listener, text));
    let ask = |req: Vec<u8>| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(&req).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&out).into_owned())
    };
    let ok = ask(b"GET /metrics HTTP/1.0\r\n\r\n".to_vec())
        .await
        .unwrap_or_default();
    assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
    assert!(ok.ends_with("refwatch_pages_tracked 3\n# EOF\n"), "{ok}");
    let nf = ask(b"GET /other HTTP/1.1\r\n\r\n".to_vec())
        .await
        .unwrap_or_default();
    assert!(nf.starts_with("HTTP/1.1 404"), "{nf}");
    let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    big.resize(MAX_REQUEST + 100, b'a');
    let r = ask(big).await.unwrap_or_default();
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
}

#[test]
fn a_hostile_comm_stays_inside_its_label() {
    // Synthetic: a task named to forge a series of its own.
    let mut t = synthetic::busy(0);
    let comm = "x\"} 1\nevil 9\n\\";
    t.apply(&event(
        T0 + S,
        0x50000,
        Kind::Get,
        1,
        2,
        7,
        comm,
        pgmap::FSDAX,
    ));
    t.advance(T0 + 20 * S);
    let text = updated(&t, &Counts::default());
    assert!(!text.lines().any(|l| l.starts_with("evil")), "{text}");
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("refwatch_holder_stuck_pages{"))
        .collect();
    assert_eq!(series.len(), 1, "{text}");
    assert!(series[0].ends_with("} 1"), "{}", series[0]);
}
