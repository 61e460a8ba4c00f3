//! `tunelab runs plot`: SFT, DPO and KTO runs written as the trainer writes them (and the
//! committed old run folders) drawn to SVG, checked as XML (a polyline per series and run,
//! eval markers, the legend's run names, the structure as a snapshot), and to PNG, decoded
//! at the requested size; the errors name what is wrong.

use crate::common;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tunelab::runs::event::{Eval, Start, Train};
use tunelab::runs::plot::{self, Format, Options, RunSeries};
use tunelab::runs::{self, EventKind, RunDir, RunEvent, RunState, Status};

/// How a synthetic run's objective reports.
#[derive(Clone, Copy, PartialEq)]
enum Method {
    Sft,
    Dpo,
    Kto,
}

/// A finished run folder of `steps` train steps (eval every `eval_every`, from step 0), its
/// events as the trainer's journal writes them, under `parent/name`.
fn write_run(parent: &Path, name: &str, method: Method, steps: u64, eval_every: u64) -> PathBuf {
    let root = parent.join(name);
    std::fs::create_dir_all(&root).unwrap();
    let run = RunDir::new(&root);
    run.write_status(&Status {
        state: RunState::Done,
        step: steps,
        total_steps: steps,
        ..Status::starting(1_800_000_000.0)
    })
    .unwrap();
    let method_name = match method {
        Method::Sft => "sft",
        Method::Dpo => "dpo",
        Method::Kto => "kto",
    };
    let at = |kind| RunEvent { kind, time: 1.8e9 };
    run.append_event(&at(EventKind::Start(Start {
        total_steps: steps,
        name: Some(name.into()),
        method: Some(method_name.into()),
        ..Default::default()
    })))
    .unwrap();
    let warmup = (steps / 10).max(1) as f64;
    let metrics = |step: u64, eval: bool| {
        let t = step as f64;
        let mut m = BTreeMap::new();
        let margin = 2.0 * (1.0 - (-t / 40.0).exp()) + if eval { 0.0 } else { 0.3 * t.sin() };
        match method {
            Method::Sft => {}
            Method::Dpo => {
                m.insert("rewards/chosen".into(), margin / 2.0);
                m.insert("rewards/rejected".into(), -margin / 2.0);
                m.insert("rewards/margins".into(), margin);
                m.insert("rewards/accuracies".into(), (0.5 + t / 100.0).min(1.0));
                m.insert("logps/chosen".into(), -40.0 + t / 10.0);
                m.insert("logps/rejected".into(), -42.0 - t / 10.0);
            }
            Method::Kto => {
                m.insert("rewards/chosen".into(), margin / 2.0);
                m.insert("rewards/rejected".into(), -margin / 2.0);
                m.insert("rewards/margins".into(), margin);
                m.insert("logps/chosen".into(), -40.0);
                m.insert("kl".into(), 0.05 * t / (t + 10.0));
            }
        }
        m
    };
    for step in 0..=steps {
        let t = step as f64;
        if step > 0 {
            let lr = if t <= warmup {
                2e-4 * t / warmup
            } else {
                1e-4 * (1.0 + (std::f64::consts::PI * (t - warmup) / (steps as f64 - warmup)).cos())
            };
            run.append_event(&at(EventKind::Train(Train {
                step,
                total_steps: steps,
                loss: 0.8 + 2.5 * (-t / 150.0).exp() + 0.25 * (t * 1.7).sin(),
                lr,
                grad_norm: 1.0,
                tokens: 300,
                tokens_per_s: 3000.0,
                epoch: t / 50.0,
                elapsed: t * 0.1,
                metrics: metrics(step, false),
                ..Default::default()
            })))
            .unwrap();
        }
        if eval_every > 0 && step % eval_every == 0 {
            let loss = 0.9 + 2.5 * (-t / 150.0).exp();
            run.append_event(&at(EventKind::Eval(Eval {
                step,
                eval_loss: loss,
                eval_tokens: 148,
                perplexity: loss.exp(),
                metrics: metrics(step, true),
            })))
            .unwrap();
        }
    }
    run.append_event(&at(EventKind::Done {
        step: steps,
        adapter: root.join("adapter").display().to_string(),
        best_eval_loss: None,
    }))
    .unwrap();
    root
}

fn plot_cli(
    h: &tempfile::TempDir,
    runs: &[&Path],
    out: &Path,
    extra: &[&str],
) -> (i32, String, String) {
    let mut args: Vec<&str> = vec!["runs", "plot"];
    args.extend(runs.iter().map(|r| r.to_str().unwrap()));
    args.extend(["-o", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    common::run(h, &args)
}

fn by_id<'a, 'i>(doc: &'a roxmltree::Document<'i>, id: &str) -> Option<roxmltree::Node<'a, 'i>> {
    doc.descendants().find(|n| n.attribute("id") == Some(id))
}

/// How many `tag` elements the group `id` holds (0 when there is no such group).
fn count(doc: &roxmltree::Document, id: &str, tag: &str) -> usize {
    by_id(doc, id).map_or(0, |g| {
        g.descendants()
            .filter(|n| n.tag_name().name() == tag)
            .count()
    })
}

/// The SVG's structure without coordinates: element names, ids, classes and run names,
/// the legend's and titles' text, and runs of alike siblings (ticks, markers) as counts.
fn outline(doc: &roxmltree::Document) -> String {
    fn label(n: roxmltree::Node, in_axis: bool) -> String {
        let mut s = n.tag_name().name().to_string();
        if let Some(id) = n.attribute("id") {
            s.push_str(&format!("#{id}"));
        }
        if let Some(c) = n.attribute("class") {
            s.push_str(&format!(".{}", c.replace(' ', ".")));
        }
        if let Some(r) = n.attribute("data-run") {
            s.push_str(&format!(" [{r}]"));
        }
        if n.tag_name().name() == "text" && !in_axis {
            s.push_str(&format!(" {:?}", n.text().unwrap_or("")));
        }
        s
    }
    fn walk(n: roxmltree::Node, depth: usize, in_axis: bool, out: &mut String) {
        let kids: Vec<_> = n.children().filter(|c| c.is_element()).collect();
        let in_axis = in_axis || matches!(n.attribute("class"), Some("axis" | "grid"));
        let mut i = 0;
        while i < kids.len() {
            let l = label(kids[i], in_axis);
            let mut j = i + 1;
            while j < kids.len()
                && label(kids[j], in_axis) == l
                && !kids[j].children().any(|c| c.is_element())
            {
                j += 1;
            }
            out.push_str(&"  ".repeat(depth));
            out.push_str(&l);
            if j - i > 1 {
                out.push_str(&format!(" ×{}", j - i));
            }
            out.push('\n');
            walk(kids[i], depth + 1, in_axis, out);
            i = j;
        }
    }
    let mut out = format!("{}\n", label(doc.root_element(), false));
    walk(doc.root_element(), 1, false, &mut out);
    out
}

/// Two SFT runs on one SVG: per run a raw and a smoothed loss polyline, one marker per
/// evaluation, a learning-rate polyline, the names in the legend, no preference panel.
#[test]
fn sft_runs_share_one_svg() {
    let h = tempfile::tempdir().unwrap();
    let a = write_run(h.path(), "sft-a", Method::Sft, 60, 20);
    let b = write_run(h.path(), "sft-b", Method::Sft, 40, 10);
    let out = h.path().join("curves.svg");
    let (code, stdout, err) = plot_cli(&h, &[&a, &b], &out, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout.trim(), out.display().to_string());
    let text = std::fs::read_to_string(&out).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("the SVG is XML");
    let svg = doc.root_element();
    assert_eq!(svg.tag_name().name(), "svg");
    assert_eq!(svg.attribute("width"), Some("1200"));
    assert_eq!(svg.attribute("height"), Some("800"));
    for (i, (name, evals)) in [("sft-a", 4), ("sft-b", 5)].into_iter().enumerate() {
        assert_eq!(count(&doc, &format!("loss-train-{i}"), "polyline"), 1);
        assert_eq!(count(&doc, &format!("loss-smoothed-{i}"), "polyline"), 1);
        assert_eq!(count(&doc, &format!("loss-eval-{i}"), "circle"), evals);
        assert_eq!(count(&doc, &format!("lr-{i}"), "polyline"), 1);
        let legend = by_id(&doc, &format!("legend-{i}")).unwrap();
        assert_eq!(legend.attribute("data-run"), Some(name));
        let shown: Vec<&str> = legend.descendants().filter_map(|n| n.text()).collect();
        assert!(shown.contains(&name), "{shown:?}");
    }
    let raw = by_id(&doc, "loss-train-0").unwrap();
    let line = raw
        .descendants()
        .find(|n| n.has_tag_name("polyline"))
        .unwrap();
    assert_eq!(line.attribute("points").unwrap().split(' ').count(), 60);
    assert!(
        line.attribute("stroke-opacity").is_some(),
        "raw values are faint"
    );
    for panel in ["panel-loss", "panel-lr"] {
        assert!(by_id(&doc, panel).is_some(), "{panel}");
    }
    for panel in ["panel-margins", "panel-accuracy", "panel-kl"] {
        assert!(by_id(&doc, panel).is_none(), "{panel}");
    }
    insta::assert_snapshot!("sft_two_runs_svg", outline(&doc));
}

/// DPO's reward margin and accuracy, KTO's margin and KL, each in its panel when some run
/// has it, beside an SFT run that has none.
#[test]
fn preference_runs_get_their_panels() {
    let h = tempfile::tempdir().unwrap();
    let dpo = write_run(h.path(), "dpo", Method::Dpo, 50, 25);
    let kto = write_run(h.path(), "kto", Method::Kto, 50, 25);
    let sft = write_run(h.path(), "sft", Method::Sft, 50, 25);
    let out = h.path().join("pref.svg");
    let (code, _, err) = plot_cli(&h, &[&dpo, &kto, &sft], &out, &["--smoothing", "0.6"]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let has = |id: &str| count(&doc, id, "polyline");
    assert_eq!(has("margins-smoothed-0"), 1);
    assert_eq!(has("margins-smoothed-1"), 1);
    assert_eq!(has("margins-smoothed-2"), 0, "SFT has no margins");
    assert_eq!(has("accuracy-smoothed-0"), 1);
    assert_eq!(has("accuracy-smoothed-1"), 0, "KTO has no accuracy");
    assert_eq!(has("kl-smoothed-1"), 1);
    assert_eq!(has("kl-train-1"), 1);
    assert_eq!(has("kl-smoothed-0"), 0, "DPO has no KL");
    assert_eq!(count(&doc, "margins-eval-0", "circle"), 3);
    assert_eq!(count(&doc, "kl-eval-1", "circle"), 3);
    assert!(text.contains("smoothed (EMA 0.6)"));
    insta::assert_snapshot!("preference_runs_svg", outline(&doc));
}

/// A PNG at the requested size that decodes, with the runs' colours in it; drawn without a
/// system font.
#[test]
fn png_has_the_requested_size_and_the_curves() {
    let h = tempfile::tempdir().unwrap();
    let a = write_run(h.path(), "a", Method::Dpo, 80, 20);
    let b = write_run(h.path(), "b", Method::Sft, 80, 20);
    let out = h.path().join("curves.PNG");
    let (code, stdout, err) = plot_cli(&h, &[&a, &b], &out, &["--width", "640", "--height", "480"]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("curves.PNG"));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (640, 480));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let px: Vec<[u8; 3]> = buf[..info.buffer_size()]
        .chunks(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    let distinct: std::collections::HashSet<_> = px.iter().collect();
    assert!(distinct.len() > 20, "{} colours", distinct.len());
    let near = |c: [u8; 3], p: &[u8; 3]| (0..3).all(|k| (c[k] as i32 - p[k] as i32).abs() <= 8);
    let [blue, orange] = [plot::PALETTE[0], plot::PALETTE[1]].map(|c| [c.0, c.1, c.2]);
    let blues = px.iter().filter(|p| near(blue, p)).count();
    let oranges = px.iter().filter(|p| near(orange, p)).count();
    assert!(blues > 500 && oranges > 500, "{blues} {oranges}");
    // Text is drawn (dark pixels in the legend band, where no curve goes).
    let dark_in_legend = px[..640 * 36]
        .iter()
        .filter(|p| p.iter().all(|v| *v < 90))
        .count();
    assert!(dark_in_legend > 20, "{dark_in_legend}");
}

/// The committed old run folders plot: a resumed run's repeated steps are drawn once.
#[test]
fn old_run_folders_plot_and_resumes_draw_each_step_once() {
    let done = RunDir::new(common::fixture("runs/v0-done"));
    let resumed = RunDir::new(common::fixture("runs/v0-resumed-failed"));
    let s = plot::load(&resumed, "resumed", 0.9).unwrap();
    let steps: Vec<f64> = s.loss.train.iter().map(|p| p.0).collect();
    assert_eq!(steps, (1..=17).map(f64::from).collect::<Vec<_>>());
    assert_eq!(s.lr.len(), 17);
    assert_eq!(s.method, None);
    let h = tempfile::tempdir().unwrap();
    let out = h.path().join("old.png");
    let plotted = plot::plot(&[done, resumed], &out, &Options::default()).unwrap();
    assert_eq!(plotted.format, Format::Png);
    assert_eq!(plotted.runs, ["v0-done", "v0-resumed-failed"]);
    assert_eq!(
        std::fs::metadata(&out).unwrap().len() as usize,
        plotted.bytes
    );
}

/// The same run twice is told apart in the legend; the figure replaces an older one
/// atomically (no temporary file stays behind).
#[test]
fn a_figure_replaces_the_old_one_and_names_stay_distinct() {
    let h = tempfile::tempdir().unwrap();
    let a = write_run(h.path(), "run", Method::Sft, 10, 5);
    let figs = h.path().join("figs");
    std::fs::create_dir_all(&figs).unwrap();
    let out = figs.join("f.svg");
    std::fs::write(&out, "old").unwrap();
    let plotted = plot::plot(
        &[RunDir::new(&a), RunDir::new(&a)],
        &out,
        &Options::default(),
    )
    .unwrap();
    assert_eq!(plotted.runs, ["run", "run (2)"]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains(r#"data-run="run (2)""#));
    let left: Vec<_> = std::fs::read_dir(&figs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["f.svg"]);
}

/// A run of one step draws a dot, not nothing; a long run's lines keep a bounded number of
/// points (each pixel column's first, lowest, highest and last).
#[test]
fn one_step_and_long_runs() {
    let h = tempfile::tempdir().unwrap();
    let one = write_run(h.path(), "one", Method::Sft, 1, 0);
    let long = write_run(h.path(), "long", Method::Sft, 20_000, 2_000);
    let series: Vec<RunSeries> = [&one, &long]
        .iter()
        .map(|r| plot::load(&RunDir::new(r), &plot::run_name(&RunDir::new(r)), 0.9).unwrap())
        .collect();
    let svg = plot::render(&series, Format::Svg, &Options::default()).unwrap();
    let text = String::from_utf8(svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let points = |id: &str| {
        by_id(&doc, id)
            .unwrap()
            .descendants()
            .find(|n| n.has_tag_name("polyline"))
            .unwrap()
            .attribute("points")
            .unwrap()
            .split(' ')
            .count()
    };
    assert_eq!(points("loss-smoothed-0"), 2, "a dot");
    let n = points("loss-train-1");
    assert!(n <= 4 * 1200 && n > 1000, "{n}");
    assert_eq!(count(&doc, "loss-eval-1", "circle"), 11);
}

/// Errors: an output that is neither .svg nor .png, a run with no train step, an unknown
/// run, a size out of range; each names the culprit, exits 2 and writes nothing.
#[test]
fn errors_name_the_culprit() {
    let h = tempfile::tempdir().unwrap();
    let a = write_run(h.path(), "fine", Method::Sft, 5, 0);
    for bad in ["curves.jpg", "curves"] {
        let out = h.path().join(bad);
        let (code, _, err) = plot_cli(&h, &[&a], &out, &[]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(&out.display().to_string()), "{err}");
        assert!(err.contains("FILE.svg or FILE.png"), "{err}");
        assert!(!out.exists());
    }
    let empty = h.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let run = RunDir::new(&empty);
    run.write_status(&Status::starting(1.0)).unwrap();
    run.append_event(&RunEvent {
        kind: EventKind::Start(Start::default()),
        time: 1.0,
    })
    .unwrap();
    let out = h.path().join("x.svg");
    let (code, _, err) = plot_cli(&h, &[&a, &empty], &out, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("run empty has no train events"), "{err}");
    assert!(!out.exists());
    let (code, _, err) = common::run(
        &h,
        &["runs", "plot", "no-such-run", "-o", out.to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert!(err.contains("no run \"no-such-run\""), "{err}");
    let (code, _, err) = plot_cli(&h, &[&a], &out, &["--width", "10"]);
    assert_eq!(code, 2);
    assert!(err.contains("10x800"), "{err}");
    assert!(!out.exists());
    // The core says the same.
    let e = plot::plot(&[run], &out, &Options::default()).unwrap_err();
    assert!(matches!(e, plot::PlotError::NoTrainEvents { .. }), "{e}");
    let e = Format::from_path(Path::new("a.pdf")).unwrap_err();
    assert!(e.to_string().starts_with("a.pdf: "), "{e}");
}

/// Runs resolve by id under the data folder's runs, as `runs show` does.
#[test]
fn runs_resolve_by_id() {
    let h = tempfile::tempdir().unwrap();
    let root = runs::runs_root(&h.path().join("data"));
    write_run(&root, "by-id", Method::Sft, 5, 0);
    let out = h.path().join("id.svg");
    let (code, stdout, err) =
        common::run(&h, &["runs", "plot", "by-id", "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout.trim(), out.display().to_string());
}
