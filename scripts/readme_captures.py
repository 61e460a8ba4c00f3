#!/usr/bin/env python3
"""Copies the workbench snapshots (tests/it/snapshots, rendered by tests/it/tui.rs) into the
user guide's screen captures (docs/src), so the guide shows what the tests check.

    INSTA_UPDATE=always cargo test --test it tui:: && python3 scripts/readme_captures.py

(The name is historical: the captures moved from the README into the guide.)

Each capture is the ```text block (or blocks) after a label line below.
"""
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SNAPS = ROOT / "tests" / "it" / "snapshots"
WORKBENCH = "docs/src/workbench.md"
KTO = "docs/src/kto.md"
# label line -> (page, [(snapshot, lines kept or None for all), ...] for the blocks that follow it)
CAPTURES = {
    "Data tab (80×24):": (WORKBENCH, [("data_80x24", None)]),
    "Token view:": (WORKBENCH, [("data_tokens_80x24", None)]),
    "A preference pair in the token view (120×40, cut): the prompt above, each completion trained":
        (WORKBENCH, [("data_pair_tokens_120x40", 14)]),
    "A rated reply (KTO data) in the Data tab (120×40, cut):": (KTO, [("data_kto_120x40", 8)]),
    "Adapter tab:": (WORKBENCH, [("adapter_120x40", None)]),
    "Train tab (a finished run):": (WORKBENCH, [("train_120x40", None)]),
    "The Train tab during an evaluation (120×40, cut):": ("docs/src/training.md", [("train_phase_120x40", 14)]),
    "The same tab while the run evaluates between steps (120×40, cut): the step gauge holds, the phase":
        ("README.md", [("train_phase_120x40", 14)]),
    "The Train tab on an eight-GPU TRL run's events (the snapshot test's; 120×40, cut):": ("README.md", [("train_engine_120x40", 16)]),
    "Chat tab and Runs tab:": (WORKBENCH, [("chat_80x24", None), ("runs_80x24", None)]),
}


def snapshot(name, keep):
    text = (SNAPS / f"it__tui__{name}.snap").read_text()
    body = text.split("---\n", 2)[2].rstrip("\n").split("\n")
    return body[:keep] if keep else body


def main():
    for page in sorted({page for page, _ in CAPTURES.values()}):
        path = ROOT / page
        lines = path.read_text().split("\n")
        for label, (where, blocks) in CAPTURES.items():
            if where == page:
                replace(lines, label, blocks)
        path.write_text("\n".join(lines))


def replace(lines, label, blocks):
    """Replaces the ```text blocks after `label` with the snapshots, in place."""
    i = lines.index(label)
    for name, keep in blocks:
        while lines[i] != "```text":
            i += 1
        j = i + 1
        while lines[j] != "```":
            j += 1
        lines[i + 1:j] = snapshot(name, keep)
        i += 1 + len(snapshot(name, keep)) + 1


if __name__ == "__main__":
    main()
