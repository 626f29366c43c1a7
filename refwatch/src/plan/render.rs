//! The plan as `refwatch probes` prints it (and the log of a live run).

use crate::loader::PlanRow;

/// The plan as a table: one line per logical hook, then its notes.
pub fn plan_table(rows: &[PlanRow]) -> String {
    let mut out = format!(
        "{:<18} {:<12} {:<34} {:<7} {}\n",
        "HOOK", "EVENTS", "SYMBOL", "MODE", "STATUS"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<18} {:<12} {:<34} {:<7} {}\n",
            r.logical,
            r.events,
            r.symbol.unwrap_or("-"),
            r.mode.map_or("-", |m| m.name()),
            r.status
        ));
        for n in &r.notes {
            out.push_str(&format!("{:<18}   note: {n}\n", ""));
        }
    }
    out
}
