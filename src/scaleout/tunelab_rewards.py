# --- tunelab's reward semantics (tunelab's src/reward/), read by the rewards at the end ---
#
# Every helper name starts with an underscore: the rewards are reached through the module's
# `__getattr__` (below), so a reward may be called `format` or `len` without shadowing the
# builtins these helpers use.

import json as _json
import math as _math
import os as _os
import re as _re
import shutil as _shutil
import signal as _signal
import subprocess as _subprocess
import threading as _threading
import warnings as _warnings

# Rust's `char::is_whitespace` (Unicode White_Space): what tunelab's `trim` strips. Python's
# `str.strip()` strips \x1c-\x1f too.
_WS = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WS_RUN = _re.compile("[" + _re.escape(_WS) + "]+")

# A decimal number as Rust's `f64::from_str` reads it (ASCII digits only; `float()` would
# also take other scripts' digits and underscores).
_F64 = _re.compile(r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)", _re.IGNORECASE)

# A plain number (commas only between groups of three digits), as tunelab's reward/number.rs.
_NUM = r"[-−]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER = _re.compile(r"([-−]?)\\[dt]?frac\{\s*(%s)\s*\}\{\s*(%s)\s*\}|(%s)" % (_NUM, _NUM, _NUM))

_NO_REFERENCE = (
    "no reference to compare with (the record needs a final assistant turn or an "
    "answer/solution column)"
)


def _trim(text):
    return text.strip(_WS)


def _words(text):
    return [w for w in _WS_RUN.split(text) if w]


def _clip(text, limit):
    """Whitespace collapsed, at most `limit` characters, `…` when cut."""
    flat = " ".join(_words(text))
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _quoted(text):
    """A string quoted as tunelab's messages quote it (Rust's `{:?}`)."""
    return _json.dumps(text, ensure_ascii=False)


def _float(text):
    """`text` as a float the way Rust parses it, else None."""
    return float(text) if _F64.fullmatch(text) else None


def _content_text(message):
    """A message's text: its `content` string, or its text parts joined by newlines."""
    content = message.get("content") if isinstance(message, dict) else message
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        parts = []
        for p in content:
            text = p.get("text") if isinstance(p, dict) else p
            if isinstance(text, str):
                parts.append(text)
        return "\n".join(parts)
    return _json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def _completion_text(completion):
    """A completion's text: TRL hands conversational completions as
    `[{"role": "assistant", "content": …}]` (the content is the text) and plain ones as
    strings. A tokenizer with a response template has TRL split reasoning out of `content`;
    tunelab scores the whole decoded completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion)
    return "".join(_content_text(m) for m in completion or [])


def _compile(name, field, pattern):
    """`pattern` with `.` matching newlines, as tunelab compiles it. Python's `re` warns where
    it reads a pattern differently from other engines (`[[:alpha:]]`): that is an error here,
    at import, rather than a reward that quietly scores something else."""
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("error")
            return _re.compile(pattern, _re.DOTALL)
    except (_re.error, Warning) as e:
        raise ValueError(
            "reward `%s`: %s %s is not a regex Python's re reads as tunelab does: %s"
            % (name, field, _quoted(pattern), e)
        ) from None


def _is_alphanumeric(c):
    """Rust's `char::is_alphanumeric` (Alphabetic or Numeric), near enough."""
    return c.isalpha() or c.isnumeric()


def _plain(text, signed):
    cleaned = text.replace(",", "").replace("−", "-")
    v = _float(cleaned)
    if v is None:
        return None
    return v if signed else abs(v)


def _last_number(text):
    """The last finite number in `text` (tunelab's `number::last_number`): thousands commas,
    `−`, `.5`, exponents, `\\frac{a}{b}`; a minus right after a letter or digit is a hyphen."""
    last = None
    for m in _NUMBER.finditer(text):
        start = m.start()
        signed = not (start > 0 and _is_alphanumeric(text[start - 1]))
        if m.group(2) is not None and m.group(3) is not None:
            n, d = _plain(m.group(2), True), _plain(m.group(3), True)
            if n is None or d is None:
                return None
            v = n / d if d != 0 else _math.nan
            if m.group(1) and signed:
                v = -v
        elif m.group(4) is not None:
            v = _plain(m.group(4), signed)
            if v is None:
                continue
        else:
            continue
        if _math.isfinite(v):
            last = v
    return last


def _last_boxed(text):
    """The content of the last `\\boxed{…}` whose braces close (nested braces kept)."""
    opener = "\\boxed{"
    starts = []
    i = text.find(opener)
    while i >= 0:
        starts.append(i + len(opener))
        i = text.find(opener, i + len(opener))
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i]
    return None


def _last_match(rx, text):
    """The last match's first group, or the whole match when there is no group (or it took
    no part)."""
    last = None
    for m in rx.finditer(text):
        last = m
    if last is None:
        return None
    if rx.groups >= 1 and last.group(1) is not None:
        return last.group(1)
    return last.group(0)


class _Reward:
    """One reward function as TRL calls it: keyword arguments `prompts`, `completions`,
    `completion_ids` and one list per dataset column; one float per completion back.
    `__name__` is the tunelab reward's name, which TRL logs as `rewards/<name>/mean`."""

    def __init__(self, name):
        self.__name__ = name

    def __repr__(self):
        return "<tunelab reward %s>" % self.__name__

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs):
        completions = list(completions or [])
        return [float(s) for s in self.scores(prompts, completions, completion_ids, kwargs)]

    def _column(self, kwargs, column, n):
        values = kwargs.get(column)
        return list(values) if values is not None else [None] * n


class _Regex(_Reward):
    """1 when the whole trimmed completion matches, else 0 (tunelab's `pattern`)."""

    def __init__(self, name, pattern):
        super().__init__(name)
        self.rx = _compile(name, "regex", pattern)

    def score(self, text):
        return 1.0 if self.rx.fullmatch(_trim(text)) else 0.0

    def scores(self, prompts, completions, completion_ids, kwargs):
        return [self.score(_completion_text(c)) for c in completions]


class _ReferenceError(Exception):
    """What is wrong with a record's reference (the caller names the reward and the line)."""


class _Answer(_Reward):
    """1 when the completion's last `\\boxed{}` or regex match equals the reference, else 0
    (tunelab's `answer`); a record without a reference to read stops the run."""

    def __init__(self, name, extract, compare, reference_regex, tolerance):
        super().__init__(name)
        if not (tolerance >= 0):
            raise ValueError("reward `%s`: answer.tolerance must be >= 0 (it is %r)" % (name, tolerance))
        self.extract = None if extract == "boxed" else _compile(name, "answer.extract", extract)
        self.compare = compare
        self.reference_pattern = reference_regex
        self.reference = (
            None if reference_regex is None else _compile(name, "answer.reference_regex", reference_regex)
        )
        self.tolerance = tolerance

    def close(self, a, b):
        return a == b or abs(a - b) <= self.tolerance * max(abs(a), abs(b))

    def score(self, completion, reference):
        if reference is None:
            raise _ReferenceError(_NO_REFERENCE)
        expected = reference
        if self.reference is not None:
            expected = _last_match(self.reference, reference)
            if expected is None:
                raise _ReferenceError(
                    "the reference does not match reference_regex `%s`: %s"
                    % (self.reference_pattern, _quoted(_clip(reference, 80)))
                )
        got = _last_match(self.extract, completion) if self.extract is not None else _last_boxed(completion)
        if got is None:
            return 0.0
        if self.compare == "exact":
            same = _trim(got) == _trim(expected)
        else:
            want = _last_number(expected)
            if want is None:
                raise _ReferenceError(
                    "the reference has no number to compare with: %s" % _quoted(_clip(expected, 80))
                )
            value = _last_number(got)
            same = value is not None and self.close(value, want)
        return 1.0 if same else 0.0

    def scores(self, prompts, completions, completion_ids, kwargs):
        references = self._column(kwargs, "reference", len(completions))
        out = []
        for i, (c, r) in enumerate(zip(completions, references)):
            try:
                out.append(self.score(_completion_text(c), r))
            except _ReferenceError as e:
                raise ValueError("reward `%s`: line %d of the batch: %s" % (self.__name__, i + 1, e)) from None
        return out


def _token_counts(name, completion_ids, n):
    if completion_ids is None or len(completion_ids) != n:
        raise ValueError(
            "reward `%s`: TRL passed no completion_ids (TRL 1.16 passes them); the length "
            "reward counts tokens" % name
        )
    return [len(ids) for ids in completion_ids]


class _Length(_Reward):
    """1 for `min..=max` completion tokens, `len/min` below, `max/len` above (tunelab's
    `length`). TRL's `completion_ids` end with the stop token when the model wrote one, as
    tunelab's completions do."""

    def __init__(self, name, lo, hi):
        super().__init__(name)
        if hi == 0 or lo > hi:
            raise ValueError(
                "reward `%s`: length needs 0 <= min <= max and max >= 1 (it has min %d, max %d)" % (name, lo, hi)
            )
        self.lo, self.hi = lo, hi

    def score(self, tokens):
        if tokens < self.lo:
            return tokens / self.lo
        if tokens > self.hi:
            return self.hi / tokens
        return 1.0

    def scores(self, prompts, completions, completion_ids, kwargs):
        return [self.score(t) for t in _token_counts(self.__name__, completion_ids, len(completions))]


class _Persona(_Reward):
    """The share of markers the completion contains, ignoring case (tunelab's `persona`);
    blank markers are left out."""

    def __init__(self, name, markers):
        super().__init__(name)
        self.markers = [m.lower() for m in markers if _trim(m)]
        if not self.markers:
            raise ValueError("reward `%s`: persona.markers must name at least one marker" % name)

    def score(self, text):
        lower = text.lower()
        return sum(1 for m in self.markers if m in lower) / len(self.markers)

    def scores(self, prompts, completions, completion_ids, kwargs):
        return [self.score(_completion_text(c)) for c in completions]


def _chunks(n, workers):
    """`n` items in at most `workers` contiguous, near-equal, non-empty ranges."""
    k = min(max(workers, 1), max(n, 1))
    base, extra = divmod(n, k)
    out, start = [], 0
    for i in range(k):
        size = base + (1 if i < extra else 0)
        if size > 0:
            out.append((start, start + size))
        start += size
    return out


def _lines_of(start, end):
    if end - start == 1:
        return "line %d of the batch" % (start + 1)
    return "lines %d–%d of the batch" % (start + 1, end)


def _seconds(x):
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _tail(data, limit=600):
    flat = " ".join(_words(data.decode("utf-8", "replace")))
    return flat if len(flat) <= limit else "…" + flat[len(flat) - limit :]


def _drop_nulls(value):
    """A dataset value without the nulls `datasets` fills in for keys a record lacks."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _prompt_messages(prompt):
    """The prompt conversation as tunelab hands it to commands (`role`, `content` as text,
    and `tool_calls`, `reasoning_content`, `weight` when set)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    out = []
    for m in prompt or []:
        o = {"role": m.get("role"), "content": _content_text(m)}
        for key in ("tool_calls", "reasoning_content", "weight"):
            if m.get(key) not in (None, []):
                o[key] = _drop_nulls(m[key])
        out.append(o)
    return out


def _prompt_text(prompt):
    """The last user message's text (a plain prompt is its own text)."""
    if isinstance(prompt, str):
        return prompt
    return _content_text(prompt[-1]) if prompt else ""


class _Command(_Reward):
    """An executable over JSON Lines (tunelab's `command`): one object per completion on stdin
    (`prompt`, `messages`, `completion`, `completion_tokens`, `reference`, `metadata`), one
    finite number per line on stdout. The batch is split into `workers` contiguous chunks, one
    process each, all at once; a crash, a timeout (the process group is killed), a missing,
    extra or unreadable line stops the run, as it stops tunelab's."""

    def __init__(self, name, run, timeout_s, workers, columns):
        super().__init__(name)
        self.run = list(run)
        self.line = " ".join(self.run)
        self.timeout_s = float(timeout_s)
        self.workers = int(workers)
        self.columns = list(columns)
        if not self.run or not _trim(self.run[0]):
            raise ValueError("reward `%s`: command.run must name a program (and its arguments)" % name)
        program = self.run[0]
        if "/" in program:
            ok = _os.path.isfile(program) and _os.access(program, _os.X_OK)
        else:
            ok = _shutil.which(program) is not None
        if not ok:
            raise ValueError(
                "reward `%s`: command `%s`: %s is not an executable file%s"
                % (name, self.line, program, "" if "/" in program else " on PATH")
            )

    def fail(self, message):
        return RuntimeError("reward `%s`: command `%s`: %s" % (self.__name__, self.line, message))

    def lines(self, prompts, completions, completion_ids, kwargs):
        n = len(completions)
        tokens = _token_counts(self.__name__, completion_ids, n)
        prompts = list(prompts) if prompts is not None else [None] * n
        references = self._column(kwargs, "reference", n)
        columns = [c for c in kwargs if c in self.columns]
        out = []
        for i in range(n):
            metadata = {c: _drop_nulls(kwargs[c][i]) for c in columns if kwargs[c][i] is not None}
            item = {
                "prompt": _prompt_text(prompts[i]),
                "messages": _prompt_messages(prompts[i]),
                "completion": _completion_text(completions[i]),
                "completion_tokens": tokens[i],
                "reference": references[i],
                "metadata": metadata,
            }
            out.append(_json.dumps(item, ensure_ascii=False, separators=(",", ":")))
        return out

    def scores(self, prompts, completions, completion_ids, kwargs):
        lines = self.lines(prompts, completions, completion_ids, kwargs)
        ranges = _chunks(len(lines), self.workers)
        results = [None] * len(ranges)

        def work(k, start, end):
            try:
                results[k] = self.chunk(lines, start, end)
            except Exception as e:  # handed to the caller, in batch order
                results[k] = e

        threads = [_threading.Thread(target=work, args=(k, s, e)) for k, (s, e) in enumerate(ranges)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out = []
        for r in results:
            if isinstance(r, Exception):
                raise r
            out.extend(r)
        return out

    def chunk(self, lines, start, end):
        where = _lines_of(start, end)
        data = "".join(line + "\n" for line in lines[start:end]).encode("utf-8")
        try:
            proc = _subprocess.Popen(
                self.run,
                stdin=_subprocess.PIPE,
                stdout=_subprocess.PIPE,
                stderr=_subprocess.PIPE,
                start_new_session=True,  # its own process group, killed whole on a timeout
            )
        except OSError as e:
            raise self.fail("cannot start it: %s" % e) from None
        try:
            out, err = proc.communicate(data, timeout=self.timeout_s)
        except _subprocess.TimeoutExpired:
            exited = proc.poll() is not None
            try:
                _os.killpg(proc.pid, _signal.SIGKILL)
            except OSError:
                pass
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                stream.close()
            raise self.fail(
                "timed out after %s s on %s (killed%s)"
                % (
                    _seconds(self.timeout_s),
                    where,
                    "; it had exited, but something it started kept its output open" if exited else "",
                )
            ) from None
        return self.read(proc.returncode, out, err, start, end)

    def read(self, code, out, err, start, end):
        where = _lines_of(start, end)
        stderr = _tail(err)
        if code != 0:
            how = "exited with status %d" % code if code > 0 else "was killed by signal %d" % -code
            said = "; stderr ends: " + stderr if stderr else "; nothing on stderr"
            raise self.fail("%s on %s%s" % (how, where, said))
        text = out.decode("utf-8", "replace").rstrip(_WS)
        written = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")] if text else []
        scores = []
        for k, raw in enumerate(written[: end - start]):
            at = start + k + 1
            v = _trim(raw)
            x = _float(v)
            if x is None:
                raise self.fail(
                    "line %d of the batch: %s is not a number (one number per input line expected)"
                    % (at, _quoted(_clip(v, 80)))
                )
            if not _math.isfinite(x):
                raise self.fail("line %d of the batch: %s is not a finite number" % (at, _quoted(v)))
            scores.append(x)
        if len(written) != end - start:
            said = "; stderr ends: " + stderr if stderr else ""
            raise self.fail(
                "wrote %d line%s for the %d completions on %s (one number per input line expected)%s"
                % (len(written), "" if len(written) == 1 else "s", end - start, where, said)
            )
        return scores


def __getattr__(name):
    """`tunelab_rewards.<name>`: the run's rewards, by the names run.sh passes to TRL."""
    try:
        return _REWARDS[name]
    except KeyError:
        raise AttributeError("module %r has no reward %r (it has %s)" % (__name__, name, ", ".join(_REWARDS))) from None


def __dir__():
    return sorted(list(globals()) + list(_REWARDS))
