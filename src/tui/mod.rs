//! The workbench: a ratatui shell over the core. It reads run directories and starts
//! detached trainers; it never trains, generates or opens a file on its own thread
//! (training runs in its own process, generation and file work on worker threads whose
//! results wake the event loop through one channel).

pub mod action;
pub mod app;
pub mod background;
pub mod context;
pub mod effect;
pub mod keymap;
pub mod model_list;
pub mod run_view;
pub mod tab;
pub mod tabs;
pub mod text;
pub mod theme;
pub mod ui;
pub mod widgets;

use app::{App, AppOptions, Workspace};
use keymap::Keymap;
use ratatui::crossterm::event::{Event, EventStream};
use ratatui::crossterm::{execute, terminal};
use ratatui::prelude::CrosstermBackend;
use ratatui::Terminal;
use std::time::{Duration, Instant};
use theme::Theme;

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub theme: Option<String>,
    pub mouse: bool,
    /// The folder to open as the workspace (default: the current folder when it looks like
    /// a project, else the data folder with the demo).
    pub dir: Option<std::path::PathBuf>,
}

/// The workspace `opts` asks for.
pub fn workspace(
    paths: &crate::paths::Paths,
    opts: &Options,
    exe: std::path::PathBuf,
) -> Result<Workspace, String> {
    use crate::workspace::Project;
    let project = match &opts.dir {
        Some(d) => Some(Project::open(d)?),
        None => std::env::current_dir()
            .ok()
            .and_then(|d| Project::detect(&d)),
    };
    Ok(match project {
        Some(p) if p.root != paths.data => Workspace::project(&p, paths.data.clone(), exe),
        _ => Workspace::new(paths.data.clone(), exe),
    })
}

/// The file whose presence means the first-start tour was seen.
pub fn tour_marker(paths: &crate::paths::Paths) -> std::path::PathBuf {
    paths.state.join("tour-seen")
}

/// Builds the app for `paths`: ensures the demo workspace, opens the workspace, loads key
/// overrides and the theme; the tour shows on the first start.
pub fn build_app(
    paths: &crate::paths::Paths,
    opts: &Options,
    exe: std::path::PathBuf,
) -> Result<App, String> {
    crate::workspace::Demo::new(&paths.data)
        .ensure()
        .map_err(|e| e.to_string())?;
    let ws = workspace(paths, opts, exe)?;
    let marker = tour_marker(paths);
    let overrides = std::fs::read_to_string(paths.config.join("keys.yaml")).ok();
    let keymap = Keymap::load(overrides.as_deref())?;
    // --theme wins; else `theme:` in <config>/config.yaml; else dark (mono under NO_COLOR).
    let configured = std::fs::read_to_string(paths.config.join("config.yaml"))
        .ok()
        .and_then(|t| serde_yaml::from_str::<serde_yaml::Value>(&t).ok())
        .and_then(|v| v.get("theme").and_then(|t| t.as_str()).map(str::to_string));
    let theme = Theme::choose(opts.theme.as_deref().or(configured.as_deref()));
    Ok(App::with_options(
        ws,
        theme,
        keymap,
        AppOptions {
            telemetry: true,
            tour: (!marker.exists()).then_some(marker),
        },
    ))
}

/// Restores the terminal when dropped, also on panic (a hook runs it before the message).
struct TerminalGuard {
    mouse: bool,
}

impl TerminalGuard {
    fn enter(mouse: bool) -> std::io::Result<Self> {
        terminal::enable_raw_mode()?;
        let mut out = std::io::stdout();
        execute!(out, terminal::EnterAlternateScreen)?;
        if mouse {
            execute!(out, ratatui::crossterm::event::EnableMouseCapture)?;
        }
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if crate::files::panic_is_contained() {
                return;
            }
            restore(mouse);
            prev(info);
        }));
        Ok(TerminalGuard { mouse })
    }
}

fn restore(mouse: bool) {
    let mut out = std::io::stdout();
    if mouse {
        let _ = execute!(out, ratatui::crossterm::event::DisableMouseCapture);
    }
    let _ = execute!(
        out,
        terminal::LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
    let _ = terminal::disable_raw_mode();
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore(self.mouse);
    }
}

/// At most this many frames per second; frames are drawn only when something changed.
const MAX_FPS: u64 = 30;

/// Runs the workbench until the user quits.
pub fn run(mut app: App, opts: &Options) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let _guard = TerminalGuard::enter(opts.mouse)?;
    let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    term.clear()?;
    rt.block_on(async move {
        use futures_util::StreamExt;
        let mut events = EventStream::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let frame_gap = Duration::from_millis(1000 / MAX_FPS);
        let mut last_frame = Instant::now() - frame_gap;
        let mut pending = true;
        loop {
            if pending && last_frame.elapsed() >= frame_gap {
                draw_frame(&mut term, &mut app)?;
                last_frame = Instant::now();
                pending = false;
            }
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(Event::Key(k))) if k.kind == ratatui::crossterm::event::KeyEventKind::Press => {
                        app.on_key(k);
                        pending = true;
                    }
                    Some(Ok(Event::Resize(_, _))) => {
                        term.autoresize()?;
                        pending = true;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(anyhow::Error::from(e)),
                    None => break,
                },
                u = app.next_update() => {
                    if let Some(u) = u {
                        app.apply_update(u);
                        pending = true;
                    }
                }
                _ = tick.tick() => {
                    if app.tick() {
                        pending = true;
                    }
                }
            }
            if app.quit {
                break;
            }
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

/// One frame inside a synchronized update, so the terminal never shows half of it.
fn draw_frame(
    term: &mut Terminal<CrosstermBackend<std::io::Stdout>>,
    app: &mut App,
) -> anyhow::Result<()> {
    execute!(std::io::stdout(), terminal::BeginSynchronizedUpdate)?;
    term.draw(|f| ui::draw(f, app))?;
    execute!(std::io::stdout(), terminal::EndSynchronizedUpdate)?;
    Ok(())
}
