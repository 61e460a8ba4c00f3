"""A tunelab run's TensorBoard files read by TensorBoard's own reader.

    check_tensorboard.py RUN_DIR [LOGDIR]

Reads LOGDIR (default RUN_DIR/tensorboard) with the `tensorboard` package's
EventAccumulator, the reader TensorBoard's scalar dashboard is built on, and checks that its
scalars are exactly the numbers of RUN_DIR/events.jsonl: the same tags, and for each tag the
same steps, values (as the f32 TensorBoard stores) and wall times, in order. Every record's
checksums are checked by tensorboard's own TFRecord reader, and each file must open with
`file_version: "brain.Event:2"`.

The expected tags are computed here from events.jsonl, independently of tunelab's code, by
the rule docs/src/training.md states (transformers' `rewrite_logs`): a train event's numbers
under `train/` (`lr` as `train/learning_rate`; `rss`, `gpu_mem`, `gpu_util` under
`system/`), an eval event's under `eval/` without the `eval_` prefix; nulls are left out; a
`resume` event from step N drops what was logged after N (TensorBoard's restart purge).

    pip install tensorboard
    python tests/reference/check_tensorboard.py ~/.local/share/tunelab/runs/<run>

Exit status 0 when everything matches; 1 with the differences otherwise. `cargo test`
(tests/it/trackers.rs) runs it on a fresh tiny run when a Python with `tensorboard` is found.
"""
import json
import math
import pathlib
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import (
    SCALARS,
    EventAccumulator,
)
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

SKIP = {"type", "time", "step", "total_steps"}
SYSTEM = {"rss", "gpu_mem", "gpu_util"}


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def tag_of(kind, key):
    if kind == "train":
        if key == "lr":
            return "train/learning_rate"
        if key in SYSTEM:
            return "system/" + key
        return "train/" + key
    return "eval/" + (key[len("eval_"):] if key.startswith("eval_") else key)


def expected(events_path):
    series = {}
    for line in events_path.read_text().splitlines():
        if not line.strip():
            continue
        e = json.loads(line)
        kind = e.get("type")
        if kind == "resume":
            n = e["from_step"]
            for points in series.values():
                points[:] = [p for p in points if p[0] <= n]
            continue
        if kind not in ("train", "eval"):
            continue
        for k, v in e.items():
            if k in SKIP or not number(v):
                continue
            series.setdefault(tag_of(kind, k), []).append((e["step"], f32(v), e["time"]))
    return {t: p for t, p in series.items() if p}


def check_records(logdir):
    """Every record of every event file through tensorboard's checksumming reader."""
    files = sorted(p for p in logdir.iterdir() if "tfevents" in p.name)
    if not files:
        sys.exit(f"FAIL: no event files in {logdir}")
    total = 0
    for path in files:
        reader = pywrap_tensorflow.PyRecordReader_New(str(path), 0, None)
        first = True
        while True:
            try:
                reader.GetNext()
            except Exception as e:  # OutOfRangeError at the end; DataLossError on damage
                if type(e).__name__ == "OutOfRangeError":
                    break
                sys.exit(f"FAIL: {path.name}: {e}")
            event = event_pb2.Event.FromString(reader.record())
            if first and event.file_version != "brain.Event:2":
                sys.exit(f"FAIL: {path.name} opens with {event!r}, not brain.Event:2")
            first = False
            total += 1
    return files, total


def main():
    run = pathlib.Path(sys.argv[1])
    logdir = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else run / "tensorboard"
    files, records = check_records(logdir)
    want = expected(run / "events.jsonl")
    acc = EventAccumulator(str(logdir), size_guidance={SCALARS: 0})
    acc.Reload()
    got = {
        t: [(s.step, s.value, s.wall_time) for s in acc.Scalars(t)]
        for t in acc.Tags()["scalars"]
    }
    problems = []
    for t in sorted(set(want) | set(got)):
        if t not in got:
            problems.append(f"{t}: in events.jsonl, not in TensorBoard")
        elif t not in want:
            problems.append(f"{t}: in TensorBoard, not in events.jsonl")
        elif got[t] != want[t]:
            diff = next(
                (i, w, g) for i, (w, g) in enumerate(zip(want[t] + [None] * len(got[t]), got[t] + [None] * len(want[t]))) if w != g
            )
            problems.append(
                f"{t}: {len(want[t])} points expected, {len(got[t])} read; first difference "
                f"at {diff[0]}: expected {diff[1]}, read {diff[2]}"
            )
    points = sum(len(p) for p in got.values())
    if problems:
        print("FAIL:\n  " + "\n  ".join(problems))
        sys.exit(1)
    if not want:
        sys.exit("FAIL: the run logged no scalars")
    loss = got.get("train/loss", [])
    print(
        f"OK: {len(files)} file(s), {records} records; {len(got)} tags, {points} points match "
        f"events.jsonl (train/loss at {len(loss)} steps, "
        f"{loss[0][0] if loss else '-'}..{loss[-1][0] if loss else '-'}; "
        f"tags: {', '.join(sorted(got))})"
    )


if __name__ == "__main__":
    main()
