//! The stacks of pages' last puts under refwatch's defaults (`--stacks
//! holders`): the free hook's put walks only while its page has an open
//! episode. Where the free hook reports last puts (0-based fs-dax pages
//! without the page_ref tracepoints: 6.15 and later), a page that was
//! never stuck gets its last put without a stack, and a stuck page's
//! release still names its releaser with one. Elsewhere the free hook
//! reports no put (fs-dax puts go through `__put_devmap_managed_*_refs`
//! before 6.15, and the page_ref tracepoints report them in precise mode),
//! and the counts printed must say so too.

use serde_json::Value;

use super::Ev;

/// Whether `e` is a last put the free hook reported.
fn free_hook_put(e: &Ev) -> bool {
    e.event == "put" && e.symbol.starts_with("free_zone_device_")
}

/// Whether the free hook reporting last puts on this kernel (`expected`)
/// and what the run shows (`found` of them) agree.
fn free_hook_agrees(expected: bool, found: usize) -> Option<String> {
    (expected != (found > 0)).then(|| {
        format!(
            "{found} last puts by the free hook, where {} expected",
            if expected { "some were" } else { "none was" }
        )
    })
}

/// `dax-splice` (nothing held for long, no episode): the free hook's last
/// puts carry no stack. `free_hook`: this kernel's last puts of fs-dax
/// pages come from the free hook.
pub fn check_unwalked_last_puts(events: &[Ev], episodes: &[Value], free_hook: bool) -> Vec<String> {
    let last_puts: Vec<&Ev> = events.iter().filter(|e| free_hook_put(e)).collect();
    let walked = last_puts.iter().filter(|e| !e.stack.is_empty()).count();
    println!(
        "    last puts by the free hook: {}, with a stack: {walked} (episodes: {})",
        last_puts.len(),
        episodes.len()
    );
    let mut bad: Vec<String> = free_hook_agrees(free_hook, last_puts.len())
        .into_iter()
        .collect();
    // The free hook sends a last put and its free in one record, both
    // stamped at the free's exit: the page's next event is that free, at
    // the same nanosecond.
    let apart: Vec<u64> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| free_hook_put(e))
        .filter(|(i, e)| {
            let next = events.iter().skip(i + 1).find(|n| n.pfn == e.pfn);
            !next.is_some_and(|n| n.event == "free" && n.ts == e.ts)
        })
        .map(|(_, e)| e.pfn)
        .collect();
    println!(
        "    of them with their free in one record: {}",
        last_puts.len() - apart.len()
    );
    if let Some(pfn) = apart.first() {
        bad.push(format!(
            "{} last puts by the free hook not followed by their free at the same time (first: pfn {pfn:#x})",
            apart.len()
        ));
    }
    if episodes.is_empty() && walked > 0 {
        bad.push(format!(
            "{walked} of {} last puts by the free hook walked their stack on pages never stuck",
            last_puts.len()
        ));
    }
    bad
}

/// `dax-hold`, `dax-truncate-pinned`: every episode a drop ended names
/// that drop with its stack, the free hook's last puts included (where
/// `free_hook`, those are what ends them).
pub fn check_releasers_named(episodes: &[Value], free_hook: bool) -> Vec<String> {
    let released: Vec<&Value> = episodes
        .iter()
        .filter_map(|e| e.get("released_by").filter(|r| !r.is_null()))
        .collect();
    let by_free_hook = released
        .iter()
        .filter(|r| {
            r["symbol"]
                .as_str()
                .is_some_and(|s| s.starts_with("free_zone_device_"))
        })
        .count();
    let without: Vec<String> = released
        .iter()
        .filter(|r| r["stack"].as_array().is_none_or(|s| s.is_empty()))
        .map(|r| {
            format!(
                "{} on {:#x}",
                r["symbol"].as_str().unwrap_or("?"),
                r["pfn"].as_u64().unwrap_or_default()
            )
        })
        .collect();
    println!(
        "    releasers: {} episodes ended by a drop ({by_free_hook} by the free hook's last put), {} without a stack",
        released.len(),
        without.len()
    );
    if released.is_empty() {
        return vec!["no episode names the drop that ended it".into()];
    }
    let mut bad: Vec<String> = free_hook_agrees(free_hook, by_free_hook)
        .into_iter()
        .collect();
    if !without.is_empty() {
        bad.push(format!("releasers without a stack: {}", without.join(", ")));
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(symbol: &str, stack: &[&str]) -> Ev {
        Ev {
            ts: 0,
            pfn: 1,
            event: "put".into(),
            before: Some(1),
            after: Some(0),
            pgmap_type: "fsdax".into(),
            symbol: symbol.into(),
            comm: "workload".into(),
            owner: None,
            migration: None,
            late: false,
            stack: stack.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The free the free hook's record carries after its last put.
    fn free(ts: u64) -> Ev {
        Ev {
            ts,
            event: "free".into(),
            before: Some(0),
            ..put("free_zone_device_folio", &[])
        }
    }

    #[test]
    fn a_walked_last_put_on_a_page_never_stuck_is_reported() {
        let unwalked = [put("free_zone_device_folio", &[]), free(0)];
        assert!(check_unwalked_last_puts(&unwalked, &[], true).is_empty());
        let walked = [
            put("free_zone_device_folio", &["free_zone_device_folio+0x5"]),
            free(0),
            put("folios_put_refs", &["folios_put_refs+0x1f9"]),
        ];
        assert_eq!(check_unwalked_last_puts(&walked, &[], true).len(), 1);
    }

    #[test]
    fn a_last_put_must_come_with_its_free() {
        let together = [put("free_zone_device_folio", &[]), free(0)];
        assert!(check_unwalked_last_puts(&together, &[], true).is_empty());
        // Stamped apart (two records), or no free after it.
        let apart = [put("free_zone_device_folio", &[]), free(5)];
        assert_eq!(check_unwalked_last_puts(&apart, &[], true).len(), 1);
        let alone = [put("free_zone_device_folio", &[])];
        assert_eq!(check_unwalked_last_puts(&alone, &[], true).len(), 1);
        // Another page's free between them does not count.
        let other = Ev { pfn: 2, ..free(0) };
        let interleaved = [put("free_zone_device_folio", &[]), other, free(0)];
        assert!(check_unwalked_last_puts(&interleaved, &[], true).is_empty());
    }

    #[test]
    fn last_puts_by_the_free_hook_must_come_where_expected_only() {
        let other = [put("__put_devmap_managed_folio_refs", &["x+0x1"])];
        assert!(check_unwalked_last_puts(&other, &[], false).is_empty());
        assert_eq!(check_unwalked_last_puts(&other, &[], true).len(), 1);
        let by_free = [put("free_zone_device_folio", &[]), free(0)];
        assert_eq!(check_unwalked_last_puts(&by_free, &[], false).len(), 1);
    }

    #[test]
    fn a_releaser_without_a_stack_is_reported() {
        let ep = |stack: Value| {
            serde_json::json!({"released_by": {
                "symbol": "free_zone_device_folio", "pfn": 7, "stack": stack
            }})
        };
        let walked = ep(serde_json::json!(["x+0x1"]));
        assert!(check_releasers_named(std::slice::from_ref(&walked), true).is_empty());
        // Released by the free hook where it reports no put.
        assert_eq!(check_releasers_named(&[walked], false).len(), 1);
        assert_eq!(check_releasers_named(&[ep(Value::Null)], true).len(), 1);
        assert_eq!(check_releasers_named(&[], true).len(), 1);
    }
}
