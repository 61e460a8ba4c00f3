# sitecustomize.py, written by tunelab into a run's engine/hook/ folder. tunelab puts this
# folder first on PYTHONPATH when it launches TRL, Axolotl or LLaMA-Factory, so Python imports
# it at start in every process of the launch (accelerate, torchrun and their workers).
#
# It does three things once `transformers.trainer` is imported, and nothing before:
#  - every Trainer gets a callback that appends what the Trainer logs, saves and finishes
#    to $TUNELAB_ENGINE_EVENTS as JSON lines (the main process only); tunelab turns them
#    into the run's events.jsonl as they arrive;
#  - SIGTERM (`tunelab runs stop`, the workbench's x) asks the Trainer to save a checkpoint
#    at the end of the current step and stop, instead of dying mid-step; every process that
#    builds a Trainer leaves its pid in $TUNELAB_TRAINER_PIDS (<host>-<pid>), so tunelab
#    signals the trainers and not their launchers (accelerate's kills its child 5 s after
#    a SIGTERM, which a checkpoint may need longer than);
#  - Trainer.train() resumes from $TUNELAB_RESUME_FROM when the tool passes no checkpoint;
#  - when tunelab's supervisor ($TUNELAB_SUPERVISOR_PID) is gone (killed), the Trainer saves
#    and stops as for a stop, so nothing trains unobserved and `--resume` continues from it.
# Another sitecustomize module further down sys.path (a distribution's) still runs.
import importlib.abc
import importlib.util
import json
import math
import os
import signal
import socket
import sys
import time

_EVENTS = os.environ.get("TUNELAB_ENGINE_EVENTS")
_RESUME = os.environ.get("TUNELAB_RESUME_FROM") or None
_PIDS = os.environ.get("TUNELAB_TRAINER_PIDS")
_SUPERVISOR = os.environ.get("TUNELAB_SUPERVISOR_PID")
_stop_requested = False


def _write(record):
    if not _EVENTS:
        return
    record["time"] = time.time()
    try:
        line = json.dumps(record, allow_nan=False, default=str)
    except ValueError:
        line = json.dumps(_finite(record), default=str)
    with open(_EVENTS, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()


def _finite(record):
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


def _number(v):
    try:
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, bool):
            return None
        if isinstance(v, (int, float)):
            return v
    except Exception:
        return None
    return None


def _on_sigterm(signum, frame):
    # Said once or several times (a launcher may pass it on too), it means the same: save at
    # the end of this step and stop.
    global _stop_requested
    _stop_requested = True


def _patch(module):
    Trainer = getattr(module, "Trainer", None)
    if Trainer is None or getattr(Trainer, "_tunelab_patched", False):
        return
    from transformers.trainer_callback import TrainerCallback

    class TunelabCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                _write({
                    "event": "begin",
                    "step": state.global_step,
                    "max_steps": state.max_steps,
                    "world_size": getattr(args, "world_size", 1),
                    "output_dir": os.path.abspath(args.output_dir),
                })

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                numbers = {k: _number(v) for k, v in logs.items()}
                numbers = {k: v for k, v in numbers.items() if v is not None}
                _write({"event": "log", "step": state.global_step, "max_steps": state.max_steps, "logs": numbers})

        def on_step_end(self, args, state, control, **kwargs):
            if _stop_requested and not control.should_training_stop:
                control.should_save = True
                control.should_training_stop = True
                if state.is_world_process_zero:
                    _write({"event": "stopping", "step": state.global_step})

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                path = os.path.join(os.path.abspath(args.output_dir), f"checkpoint-{state.global_step}")
                _write({"event": "save", "step": state.global_step, "dir": path})

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                _write({"event": "end", "step": state.global_step, "stopped": _stop_requested})

    init = Trainer.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.add_callback(TunelabCallback())
        try:
            signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:
            return  # not the main thread: the default stays, and tunelab signals the group
        if _PIDS:
            try:
                os.makedirs(_PIDS, exist_ok=True)
                open(os.path.join(_PIDS, f"{socket.gethostname()}-{os.getpid()}"), "w").close()
            except OSError:
                pass

    train = Trainer.train

    def train_(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint in (None, False) and _RESUME:
            resume_from_checkpoint = _RESUME
        return train(self, resume_from_checkpoint, *args, **kwargs)

    if _SUPERVISOR:
        import threading

        def watch(pid=int(_SUPERVISOR)):
            global _stop_requested
            while not _stop_requested:
                time.sleep(2)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    print("tunelab hook: tunelab's supervisor is gone; saving and stopping", file=sys.stderr)
                    _stop_requested = True
                except OSError:
                    pass

        threading.Thread(target=watch, name="tunelab-supervisor-watch", daemon=True).start()

    Trainer.__init__ = __init__
    Trainer.train = train_
    Trainer._tunelab_patched = True


class _Finder(importlib.abc.MetaPathFinder):
    """Patches `transformers.trainer` right after it is executed."""

    def find_spec(self, name, path, target=None):
        if name != "transformers.trainer":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            try:
                _patch(module)
            except Exception as e:  # never break the tool
                print(f"tunelab hook: could not follow the Trainer: {e}", file=sys.stderr)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Finder())


def _chain():
    """Runs the next sitecustomize on sys.path, which this module shadows."""
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == here:
            continue
        candidate = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_tunelab_chained_sitecustomize", candidate)
            if spec and spec.loader:
                try:
                    spec.loader.exec_module(importlib.util.module_from_spec(spec))
                except Exception:
                    pass
            return


_chain()
