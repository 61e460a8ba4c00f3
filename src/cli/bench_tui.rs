//! `tunelab bench tui`: what a user of the workbench waits for. Time to the first frame
//! (new and existing workspace), render time per frame on the Train tab (a live tiny run)
//! and the Runs tab, and key latency (key → action → frame), with `--runs N` long finished
//! runs in the data folder so listing and tailing are measured at the sizes users reach.

use super::exit;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tunelab::runs::event::{Eval, Start, Train};
use tunelab::runs::{EventKind, RunDir, RunEvent, RunState, Status};
use tunelab::tui::app::App;
use tunelab::tui::effect::Effect;
use tunelab::tui::tabs::Tab;
use tunelab::tui::{build_app, ui, Options};

/// Writes `n` finished runs of `steps` steps each under `root` (one train event per step,
/// an eval every 100 steps), as a trainer would have left them.
fn fill_runs(root: &Path, n: usize, steps: u64) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for r in 0..n {
        let run = RunDir::new(root.join(format!("bench-{r:03}-20260101-000000")));
        std::fs::create_dir_all(&run.root)?;
        std::fs::write(run.config(), tunelab::config::PRESETS[0].1)?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(run.events_path())?);
        let mut line = |kind: EventKind, t: f64| -> anyhow::Result<()> {
            serde_json::to_writer(&mut out, &RunEvent { kind, time: t })?;
            out.write_all(b"\n")?;
            Ok(())
        };
        let t0 = 1.7e9 + r as f64 * 1e5;
        line(
            EventKind::Start(Start {
                total_steps: steps,
                trainable_params: 32768,
                ..Default::default()
            }),
            t0,
        )?;
        let mut best = f64::MAX;
        let mut last = 0.0;
        for s in 1..=steps {
            let loss =
                7.5 * (-(s as f64) / (steps as f64 / 8.0)).exp() + 1.0 + 0.01 * (s % 7) as f64;
            last = loss;
            line(
                EventKind::Train(Train {
                    step: s,
                    total_steps: steps,
                    loss,
                    lr: 1e-4,
                    grad_norm: 0.8,
                    tokens: 2048,
                    tokens_per_s: 9000.0,
                    epoch: s as f64 / 1000.0,
                    elapsed: s as f64 * 0.2,
                    eta: (steps - s) as f64 * 0.2,
                    rss: Some(1 << 30),
                    ..Default::default()
                }),
                t0 + s as f64 * 0.2,
            )?;
            if s % 100 == 0 {
                best = best.min(loss + 0.1);
                line(
                    EventKind::Eval(Eval {
                        step: s,
                        eval_loss: loss + 0.1,
                        eval_tokens: 4096,
                        perplexity: (loss + 0.1).exp(),
                        ..Default::default()
                    }),
                    t0 + s as f64 * 0.2,
                )?;
            }
        }
        out.flush()?;
        drop(out);
        bytes += std::fs::metadata(run.events_path())?.len();
        run.write_status(&Status {
            state: RunState::Done,
            pid: None,
            step: steps,
            total_steps: steps,
            last_loss: Some(last),
            best_eval_loss: (best < f64::MAX).then_some(best),
            updated: t0 + steps as f64 * 0.2,
            ..Status::starting(t0)
        })?;
    }
    Ok(bytes)
}

/// Milliseconds of each call of `f`, sorted; `gap` passes between calls (not timed), as
/// between a user's keys or the watcher's updates.
fn timed(
    n: usize,
    gap: Duration,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        std::thread::sleep(gap);
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

fn pct(times: &[f64], p: f64) -> f64 {
    times
        .get(((times.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

fn mean(times: &[f64]) -> f64 {
    times.iter().sum::<f64>() / times.len().max(1) as f64
}

fn frame(term: &mut Terminal<TestBackend>, app: &mut App) -> anyhow::Result<()> {
    app.tick();
    term.draw(|f| ui::draw(f, app))?;
    Ok(())
}

pub fn run(frames: usize, runs: usize, steps: u64, as_json: bool) -> anyhow::Result<ExitCode> {
    let home = tempfile::tempdir()?;
    let paths = tunelab::paths::Paths {
        config: home.path().join("config"),
        data: home.path().join("data"),
        state: home.path().join("state"),
        cache: home.path().join("cache"),
    };
    let exe = std::env::current_exe()?;
    std::fs::create_dir_all(tunelab::runs::runs_root(&paths.data))?;
    let fill = Instant::now();
    let bytes = fill_runs(&tunelab::runs::runs_root(&paths.data), runs, steps)?;
    let fill_s = fill.elapsed().as_secs_f64();
    let mut first = Vec::new();
    // Cold: the demo workspace is created (tiny model, tokenizer training); warm: it exists.
    for _ in 0..2 {
        let t = Instant::now();
        let mut app =
            build_app(&paths, &Options::default(), exe.clone()).map_err(anyhow::Error::msg)?;
        let mut term = Terminal::new(TestBackend::new(120, 40))?;
        term.draw(|f| ui::draw(f, &mut app))?;
        first.push(t.elapsed().as_secs_f64());
    }
    let mut app = build_app(&paths, &Options::default(), exe).map_err(anyhow::Error::msg)?;
    let t = Instant::now();
    app.settle(Duration::from_secs(120));
    let settled_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut term = Terminal::new(TestBackend::new(120, 40))?;
    // A live run: the tiny preset, detached, attached in the Train tab.
    app.apply(Effect::<()>::StartRun);
    let t = Instant::now();
    while app.train.view.as_ref().is_none_or(|v| v.train.len() < 5) && t.elapsed().as_secs() < 60 {
        app.tick();
        std::thread::sleep(Duration::from_millis(20));
    }
    let live = app.train.view.as_ref().map(|v| v.run.clone());
    app.tab = Tab::Train;
    let gap = Duration::from_millis(20);
    let train = timed(frames, gap, || frame(&mut term, &mut app))?;
    let points = app.train.view.as_ref().map_or(0, |v| v.train.len());
    app.tab = Tab::Runs;
    let runs_frames = timed(frames, gap, || frame(&mut term, &mut app))?;
    // Key latency: `j` on the Runs tab (move, details job, frame) and `l` on the Data tab.
    let j = KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE);
    let keys_runs = timed(frames, gap, || {
        app.on_key(j);
        frame(&mut term, &mut app)
    })?;
    app.tab = Tab::Data;
    let l = KeyEvent::new(KeyCode::Char('l'), KeyModifiers::NONE);
    let keys_data = timed(frames, gap, || {
        app.on_key(l);
        frame(&mut term, &mut app)
    })?;
    // Attach the Train tab to the longest finished run: the whole file is read off the UI
    // thread; frames meanwhile are what the user sees.
    let attach_points;
    let attach = {
        let newest = app
            .run_list
            .iter()
            .find(|r| r.id.starts_with("bench-"))
            .map(|r| r.dir.clone());
        match newest {
            Some(dir) => {
                app.apply(Effect::<()>::Attach(dir));
                let t = Instant::now();
                let mut frames_during = Vec::new();
                while app.train.view.as_ref().is_none_or(|v| v.train.is_empty())
                    && t.elapsed().as_secs() < 60
                {
                    let f0 = Instant::now();
                    frame(&mut term, &mut app)?;
                    frames_during.push(f0.elapsed().as_secs_f64() * 1e3);
                    std::thread::sleep(Duration::from_millis(5));
                }
                let loaded_ms = t.elapsed().as_secs_f64() * 1e3;
                attach_points = app.train.view.as_ref().map_or(0, |v| v.train.len());
                let after = timed(frames, gap, || frame(&mut term, &mut app))?;
                frames_during.sort_by(f64::total_cmp);
                Some((loaded_ms, frames_during, after))
            }
            None => {
                attach_points = 0;
                None
            }
        }
    };
    if let Some(run) = live {
        let _ = tunelab::runs::request_stop(&run);
    }
    let summary = |t: &[f64]| json!({"mean_ms": mean(t), "p50_ms": pct(t, 0.5), "p99_ms": pct(t, 0.99), "max_ms": pct(t, 1.0)});
    if as_json {
        println!(
            "{}",
            json!({
                "runs": runs, "steps": steps, "events_bytes": bytes, "fill_s": fill_s,
                "first_frame_cold_ms": first[0] * 1e3, "first_frame_warm_ms": first[1] * 1e3,
                "settled_ms": settled_ms,
                "train_frames": summary(&train), "loss_points": points,
                "runs_frames": summary(&runs_frames),
                "key_runs": summary(&keys_runs), "key_data": summary(&keys_data),
                "attach_long_run": attach.as_ref().map(|(ms, during, after)| json!({
                    "loaded_ms": ms, "frames_while_loading": summary(during),
                    "frames_after": summary(after), "chart_points": attach_points})),
                "frames": frames,
            })
        );
    } else {
        let line = |name: &str, t: &[f64]| {
            println!(
                "{name:<34} mean {:.2} ms  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                mean(t),
                pct(t, 0.5),
                pct(t, 0.99),
                pct(t, 1.0)
            )
        };
        println!(
            "{runs} finished runs of {steps} steps in the data folder ({} of events, written in {fill_s:.1}s)",
            tunelab::units::bytes(bytes)
        );
        println!(
            "first frame: {:.1} ms (new workspace), {:.1} ms (existing); everything loaded after {settled_ms:.0} ms",
            first[0] * 1e3,
            first[1] * 1e3
        );
        line("frame, Train tab (live run)", &train);
        line("frame, Runs tab", &runs_frames);
        line("key j → frame, Runs tab", &keys_runs);
        line("key l → frame, Data tab", &keys_data);
        if let Some((ms, during, after)) = &attach {
            println!("attach to a finished {steps}-step run: chart ready after {ms:.0} ms ({attach_points} points)");
            line("frame while it loads", during);
            line("frame after, Train tab", after);
        }
    }
    Ok(ExitCode::from(exit::OK))
}
