//! Run directories written by earlier tunelab versions still load: every line of their
//! `events.jsonl` parses as a typed event and is written back byte for byte, and the run
//! list shows their losses though their `status.json` predates the summary fields.

use crate::common;
use tunelab::runs::{self, EventKind, RunDir, RunEvent, RunState};

fn fixture(name: &str) -> RunDir {
    RunDir::new(common::fixture("runs").join(name))
}

#[test]
fn old_event_lines_parse_and_write_back_unchanged() {
    let mut kinds = std::collections::BTreeSet::new();
    for name in ["v0-done", "v0-resumed-failed"] {
        let run = fixture(name);
        let text = std::fs::read_to_string(run.events_path()).unwrap();
        let (typed, end) = runs::read_events(&run.events_path(), 0).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(end as usize, text.len());
        assert_eq!(typed.len(), lines.len(), "{name}: every line is an event");
        for (line, e) in lines.iter().zip(&typed) {
            assert_ne!(e.kind, EventKind::Unknown, "{line}");
            assert_eq!(serde_json::to_string(e).unwrap(), *line, "{name}");
            kinds.insert(e.kind.name());
        }
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        vec![
            "checkpoint",
            "checkpoint_skipped",
            "done",
            "eval",
            "failed",
            "resume",
            "start",
            "stopped",
            "train"
        ]
    );
}

#[test]
fn old_runs_summarize_from_their_events() {
    let done = runs::summarize(&fixture("v0-done"));
    assert_eq!(done.state, Some(RunState::Done));
    assert_eq!((done.step, done.total_steps), (12, 12));
    let (events, _) = runs::read_events(&fixture("v0-done").events_path(), 0).unwrap();
    let last_train = events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::Train(t) => Some(t.loss),
            _ => None,
        })
        .unwrap();
    assert_eq!(done.last_loss, Some(last_train));
    assert_eq!(done.best_eval_loss, Some(5.351912073186926));
    let failed = runs::summarize(&fixture("v0-resumed-failed"));
    assert_eq!(failed.state, Some(RunState::Failed));
    assert!(failed
        .error
        .as_deref()
        .is_some_and(|e| e.contains("loss is NaN at step 18")));
    assert_eq!(failed.best_eval_loss, None, "that run never evaluated");
}

#[test]
fn new_runs_answer_the_list_from_status_alone() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path().join("r"));
    std::fs::create_dir_all(&run.root).unwrap();
    run.write_status(&runs::Status {
        state: RunState::Done,
        step: 3,
        total_steps: 3,
        last_loss: Some(1.25),
        best_eval_loss: Some(1.5),
        ..runs::Status::starting(10.0)
    })
    .unwrap();
    // No events at all: the summary still has the losses.
    let s = runs::summarize(&run);
    assert_eq!((s.last_loss, s.best_eval_loss), (Some(1.25), Some(1.5)));
    let e = RunEvent {
        kind: EventKind::Stopped { step: 3 },
        time: 11.0,
    };
    run.append_event(&e).unwrap();
    assert_eq!(runs::read_events(&run.events_path(), 0).unwrap().0, vec![e]);
}
