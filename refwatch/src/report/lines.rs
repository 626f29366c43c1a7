//! `report --vmlinux`: the source lines of the frames a report shows.

use super::Report;

impl Report {
    /// Every frame the report shows: the holders' stacks and the
    /// releasers', per episode and per group.
    pub fn frames(&self) -> impl Iterator<Item = &String> {
        let episodes = self.episodes.iter().flat_map(|e| {
            e.holders.iter().flat_map(|h| h.stack.iter()).chain(
                e.released_by
                    .iter()
                    .flat_map(|r| r.stack.0.iter().flatten()),
            )
        });
        let groups = self.holder_groups.iter().flat_map(|g| g.stack.iter());
        episodes.chain(groups)
    }

    /// `--vmlinux`: names the source line of every frame shown.
    pub fn add_source_lines(&mut self, lines: &crate::symbols::SourceLines) {
        self.source_lines = lines.lines(self.frames());
    }

    /// A frame as the text shows it: with its source line when known.
    pub(crate) fn frame_text(&self, f: &str) -> String {
        match self.source_lines.get(f) {
            Some(l) => format!("      {f}  {l}\n"),
            None => format!("      {f}\n"),
        }
    }
}
