//! Colours on or off. The screen is drawn in colour; with colours off
//! (`NO_COLOR`, see [`crate::conventions::colors_allowed`]) every cell then
//! loses its colours before the frame is shown, keeping its attributes: a
//! coloured background (a badge, an alarm count, a selection) becomes
//! reverse video and dark grey text becomes dim, so nothing that colour set
//! apart blends in.

use ratatui::{
    Frame,
    buffer::Buffer,
    style::{Color, Modifier},
};

use super::App;

/// Whether the TUI draws colours; decided once from the environment by the
/// caller, never read while drawing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colors {
    On,
    Off,
}

impl Colors {
    /// [`Colors::On`] unless `NO_COLOR` is set and non-empty.
    pub fn from_env() -> Self {
        if crate::conventions::colors_allowed_by_env() {
            Colors::On
        } else {
            Colors::Off
        }
    }
}

/// Draws `app` on the whole frame, in colour or not.
pub fn draw(f: &mut Frame, app: &App, colors: Colors) {
    f.render_widget(app, f.area());
    if colors == Colors::Off {
        strip(f.buffer_mut());
    }
}

/// Removes every colour from `buf`, keeping what colour set apart visible
/// by attributes alone.
pub fn strip(buf: &mut Buffer) {
    for cell in &mut buf.content {
        if cell.bg != Color::Reset {
            cell.modifier.insert(Modifier::REVERSED);
        }
        if cell.fg == Color::DarkGray {
            cell.modifier.insert(Modifier::DIM);
        }
        cell.fg = Color::Reset;
        cell.bg = Color::Reset;
        cell.underline_color = Color::Reset;
    }
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::{
        format::json::Format,
        tui::{
            model::Feed,
            synthetic::{self, S, T0},
        },
    };

    fn coloured(c: &ratatui::buffer::Cell) -> bool {
        c.fg != Color::Reset || c.bg != Color::Reset || c.underline_color != Color::Reset
    }

    /// The synthetic stuck pages (colour per detector, a selected row, the
    /// header's badges) drawn at 100×30, then the same with its detail open.
    fn screens(colors: Colors) -> Vec<Buffer> {
        let syms = synthetic::kallsyms();
        let hooks = synthetic::hook_symbols();
        let t = synthetic::stuck();
        let feed = Feed {
            tracker: &t,
            stacks: &crate::symbols::Live {
                syms: &syms,
                format: Format::default(),
                hooks,
            },
            now_ns: T0 + 12 * S,
        };
        let mut app = App::new(synthetic::header_info());
        app.resize(100, 30);
        app.refresh(&feed);
        let mut out = Vec::new();
        for open_detail in [false, true] {
            if open_detail {
                let enter = ratatui::crossterm::event::KeyEvent::new(
                    ratatui::crossterm::event::KeyCode::Enter,
                    ratatui::crossterm::event::KeyModifiers::NONE,
                );
                let _ = app.on_key(enter);
                app.refresh(&feed);
            }
            let mut term = Terminal::new(TestBackend::new(100, 30)).expect("test terminal");
            term.draw(|f| draw(f, &app, colors)).expect("draw");
            out.push(term.backend().buffer().clone());
        }
        out
    }

    #[test]
    fn no_color_leaves_no_colour_in_any_cell() {
        let on = screens(Colors::On);
        let off = screens(Colors::Off);
        for (on, off) in on.iter().zip(&off) {
            assert!(on.content.iter().any(coloured), "colours drawn by default");
            let left: Vec<_> = off.content.iter().filter(|c| coloured(c)).collect();
            assert!(left.is_empty(), "coloured cells with NO_COLOR: {left:?}");
            // The same text, cell for cell.
            let text = |b: &Buffer| b.content.iter().map(|c| c.symbol()).collect::<String>();
            assert_eq!(text(on), text(off));
            // What a background set apart is reverse video now; the rest
            // keeps its attributes.
            for (a, b) in on.content.iter().zip(&off.content) {
                if a.bg != Color::Reset {
                    assert!(b.modifier.contains(Modifier::REVERSED), "{a:?} → {b:?}");
                }
                assert!(b.modifier.contains(a.modifier), "{a:?} → {b:?}");
            }
        }
        // The selected row stands out without colour.
        assert!(
            off[0]
                .content
                .iter()
                .any(|c| c.modifier.contains(Modifier::REVERSED))
        );
        // The detail view differs from the list: both screens were checked.
        assert_ne!(on[0], on[1]);
    }
}
