//! The steps of refwatch's start, each with the time it took (its log
//! says them: on a slow machine the start is where the wait is).

use std::time::{Duration, Instant};

/// Steps done so far, each with the time since the one before.
#[derive(Debug, Clone)]
pub struct Steps {
    pub done: Vec<(&'static str, Duration)>,
    last: Instant,
}

impl Steps {
    pub fn start() -> Self {
        Self {
            done: Vec::new(),
            last: Instant::now(),
        }
    }

    /// `what` is done: it took the time since the last step.
    pub fn done(&mut self, what: &'static str) {
        let now = Instant::now();
        self.done.push((what, now - self.last));
        self.last = now;
    }

    /// The log line: `start: STEP in S s, …`.
    pub fn line(steps: &[(&str, Duration)]) -> String {
        let mut line = String::from("start:");
        for (i, (what, took)) in steps.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            line.push_str(&format!("{sep}{what} in {:.2} s", took.as_secs_f64()));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_line_says_each_step_in_order() {
        let steps = [
            ("kernel symbols read", Duration::from_millis(560)),
            ("kernel BTF read by the loader", Duration::from_millis(1250)),
            ("hooks attached", Duration::from_millis(40)),
        ];
        assert_eq!(
            Steps::line(&steps),
            "start: kernel symbols read in 0.56 s, kernel BTF read by the loader in 1.25 s, hooks attached in 0.04 s"
        );
        let mut s = Steps::start();
        s.done("one");
        s.done("two");
        assert_eq!(
            s.done.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
            ["one", "two"]
        );
    }
}
