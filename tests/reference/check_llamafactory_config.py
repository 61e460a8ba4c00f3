"""Checks a LLaMA-Factory export written by `tunelab export-config --to llamafactory` with
LLaMA-Factory's own argument parser and dataset loader.

    python3 -m venv /tmp/venv-lf && /tmp/venv-lf/bin/pip install llamafactory
    DISABLE_VERSION_CHECK=1 /tmp/venv-lf/bin/python tests/reference/check_llamafactory_config.py EXPORT_DIR [...]

(`pip install --no-deps llamafactory` plus omegaconf into a venv that sees torch,
transformers, peft, trl and datasets is enough; DISABLE_VERSION_CHECK=1 lets its
transformers pin pass.)

For each folder: `config.yaml` goes through `llamafactory.hparams.get_train_args`, the
parser `llamafactory-cli train` uses (every key must be one of its dataclasses' fields, with
a valid value, and its cross-field checks pass), the values it read back must equal the ones
written, and every dataset the config names must resolve through `data/dataset_info.json`
(`get_dataset_list`) with the columns its first record has, and convert with LLaMA-Factory's
own converter (`get_dataset_converter`) into prompt/response messages. Exits 1 on the first
folder that fails.
"""

import json
import os
import sys
from pathlib import Path

import yaml


def _stub_missing(*names):
    """Media libraries LLaMA-Factory imports at load time but text data never uses."""
    import importlib.machinery
    import importlib.util
    import types

    for name in names:
        if importlib.util.find_spec(name) is None:
            m = types.ModuleType(name)
            m.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = m


def check(folder):
    _stub_missing("torchaudio", "av", "librosa")
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import get_train_args

    folder = Path(folder)
    raw = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    here = os.getcwd()
    os.chdir(folder)
    try:
        args = dict(raw)
        if not _has_gpu():
            # The parser refuses bf16/fp16, quantization and distributed settings without a
            # GPU; the check is about names and values.
            for k in ("bf16", "fp16", "quantization_bit", "quantization_method", "quantization_type", "double_quantization", "deepspeed", "flash_attn"):
                args.pop(k, None)
        parse_args = dict(args)
        if "warmup_ratio" in parse_args and not _has_warmup_ratio():
            # LLaMA-Factory pins transformers <= 5.6, which still reads warmup_ratio; newer
            # transformers take the ratio as a float warmup_steps.
            parse_args["warmup_steps"] = parse_args.pop("warmup_ratio")
            args["warmup_steps"] = args.pop("warmup_ratio")
        model_args, data_args, training_args, finetuning_args, _ = get_train_args(parse_args)
        read = {}
        for obj in (model_args, data_args, training_args, finetuning_args):
            read.update(vars(obj))
        for k, want in args.items():
            got = read.get(k)
            if hasattr(got, "value"):
                got = got.value
            if k == "report_to":
                continue
            if k == "cutoff_len" and args.get("packing"):
                got += 1  # LLaMA-Factory keeps one position free when it packs
            if isinstance(want, (int, float)) and not isinstance(want, bool):
                assert got is not None and abs(float(got) - float(want)) < 1e-12, f"{k}: wrote {want!r}, read {got!r}"
            elif k == "lora_target":
                got = ",".join(got) if isinstance(got, list) else got
                assert got == want, f"{k}: wrote {want!r}, read {got!r}"
            elif k in ("dataset", "eval_dataset", "adapter_name_or_path", "ref_model_adapters"):
                assert got == [want] or got == want, f"{k}: wrote {want!r}, read {got!r}"
            else:
                assert got == want, f"{k}: wrote {want!r}, read {got!r}"
        for name in [raw["dataset"]] + ([raw["eval_dataset"]] if raw.get("eval_dataset") else []):
            (attr,) = get_dataset_list([name], raw["dataset_dir"])
            path = Path(raw["dataset_dir"]) / attr.dataset_name
            with open(path, encoding="utf-8") as f:
                records = [json.loads(line) for line in f if line.strip()]
            record = records[0]
            # A column the entry names must exist in the file (datasets fills the records
            # that lack it with None; a column no record has is a KeyError).
            keys = set().union(*records)
            for col in ("messages", "system", "tools", "chosen", "rejected", "kto_tag", "prompt"):
                key = getattr(attr, col, None)
                if key:
                    assert key in keys, f"{name}: column {col} = {key!r} not in {sorted(keys)}"
            converter = get_dataset_converter(attr.formatting, attr, data_args)
            out = converter(_with_defaults(record, attr))
            assert out["_prompt"], f"{name}: no prompt from {record}"
            if raw["stage"] != "pt":
                assert out["_response"], f"{name}: no response from {record}"
            if raw["stage"] == "kto":
                assert len(out["_response"]) == 2, "a KTO example carries the reply and its empty twin"
            if raw["stage"] == "dpo":
                assert len(out["_response"]) == 2, "a pair carries chosen and rejected"
    finally:
        os.chdir(here)
    return raw["stage"]


def _with_defaults(record, attr):
    """`datasets` fills columns a record lacks with None; so does this."""
    r = dict(record)
    for col in ("system", "tools", "images", "videos", "audios"):
        key = getattr(attr, col, None)
        if key and key not in r:
            r[key] = None
    return r


def _has_warmup_ratio():
    import dataclasses

    from transformers import TrainingArguments

    return any(f.name == "warmup_ratio" for f in dataclasses.fields(TrainingArguments))


def _has_gpu():
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def main():
    import warnings

    warnings.filterwarnings("ignore")
    folders = sys.argv[1:]
    if not folders:
        print(__doc__)
        return 2
    for f in folders:
        try:
            stage = check(f)
        except BaseException as e:  # argparse errors are SystemExit
            print(f"FAIL {f}: {type(e).__name__}: {e}")
            return 1
        print(f"ok   {f}: stage {stage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
