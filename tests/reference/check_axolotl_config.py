"""Validates an Axolotl config written by `tunelab export-config --to axolotl` against
Axolotl's own config model, as `axolotl train` does before it loads anything.

    python3 -m venv /tmp/venv-axolotl && /tmp/venv-axolotl/bin/pip install axolotl
    /tmp/venv-axolotl/bin/python tests/reference/check_axolotl_config.py EXPORT_DIR [...]

(Axolotl 0.19 is the newest on Python 3.11; 0.20+ needs 3.12. Only its config model is
used: `pip install --no-deps axolotl` into a venv that sees torch, transformers, peft, trl
and pydantic, plus pillow and addict, is enough.)

For each folder: `config.yml` goes through `axolotl.utils.config.validate_config` with the
capabilities of an 8-GPU H100 node (bf16, sm_90), the way `axolotl.cli.config.load_cfg`
calls it, so every field name, type, enum value and cross-field rule is Axolotl's. Then the
files the config names (datasets, test_datasets, deepspeed, chat_template_jinja,
lora_model_dir) must exist, and the first training record must have what the dataset
`type` reads. Exits 1 on the first folder that fails, printing why.
"""

import json
import os
import sys
from pathlib import Path

import yaml


def capabilities(n_gpu):
    import torch

    return (
        {"bf16": True, "fp8": True, "tf32": True, "n_gpu": n_gpu, "compute_capability": "sm_90"},
        {"torch_version": str(torch.__version__).split("+", maxsplit=1)[0]},
    )


def first_record(path):
    with open(path, encoding="utf-8") as f:
        return json.loads(f.readline())


def check_record(cfg, ds, record):
    """The keys the dataset's loader reads are in the record."""
    kind = ds.get("type")
    rl = cfg.get("rl")
    if kind == "chat_template":
        msgs = record[ds.get("field_messages", "messages")]
        roles = {m["role"] for m in msgs}
        assert roles <= {"system", "user", "assistant", "tool"}, roles
        assert any(m["role"] == "assistant" for m in msgs), "no assistant turn"
    elif kind == "completion":
        assert isinstance(record[ds.get("field", "text")], str)
    elif kind == "chat_template.default":
        for key in (ds.get("field_messages", "messages"), ds.get("field_chosen", "chosen"), ds.get("field_rejected", "rejected")):
            assert key in record, f"{key} missing from {sorted(record)}"
    elif kind == "chat_template.argilla":
        for side in ("chosen", "rejected"):
            assert [m["role"] for m in record[side]] == ["user", "assistant"], record[side]
    elif kind is None and rl == "kto":
        # No transform: KTOTrainer reads text prompt and completion (Axolotl tokenizes them
        # to filter long rows) and a boolean label.
        assert isinstance(record["prompt"], str) and isinstance(record["completion"], str), record
        assert isinstance(record["label"], bool), record
    else:
        raise AssertionError(f"unexpected dataset type {kind!r} (rl {rl!r})")


def check(folder):
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    folder = Path(folder)
    raw = yaml.safe_load((folder / "config.yml").read_text(encoding="utf-8"))
    n_gpu = 1
    acc = folder / "accelerate.yaml"
    if acc.is_file():
        n_gpu = int(yaml.safe_load(acc.read_text())["num_processes"])
    caps, env = capabilities(n_gpu)
    here = os.getcwd()
    os.chdir(folder)  # relative paths are the launch folder's
    try:
        cfg = validate_config(DictDefault(dict(raw)), capabilities=caps, env_capabilities=env)
        for key in ("datasets", "test_datasets"):
            for ds in raw.get(key) or []:
                assert Path(ds["path"]).is_file(), f"{key}: {ds['path']} missing"
                check_record(raw, ds, first_record(ds["path"]))
        for key in ("deepspeed", "chat_template_jinja", "lora_model_dir"):
            if raw.get(key):
                assert Path(raw[key]).exists(), f"{key}: {raw[key]} missing"
        if raw.get("deepspeed"):
            json.loads(Path(raw["deepspeed"]).read_text())
    finally:
        os.chdir(here)
    # Fields the model normalized away or renamed would have changed; the ones we set must
    # survive validation with their values.
    for key in ("base_model", "learning_rate", "lora_r", "lora_alpha", "sequence_len", "micro_batch_size", "gradient_accumulation_steps", "seed", "rl"):
        if key in raw:
            got = cfg.get(key)
            want = raw[key]
            if hasattr(got, "value"):
                got = got.value
            assert got == want, f"{key}: validated {got!r}, written {want!r}"
    return cfg


def main():
    folders = sys.argv[1:]
    if not folders:
        print(__doc__)
        return 2
    for f in folders:
        try:
            cfg = check(f)
        except Exception as e:  # report the folder and Axolotl's message
            print(f"FAIL {f}: {type(e).__name__}: {e}")
            return 1
        print(f"ok   {f}: rl={cfg.get('rl')} adapter={cfg.get('adapter')} datasets={len(cfg.get('datasets') or [])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
