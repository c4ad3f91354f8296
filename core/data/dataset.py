"""Read a JSON Lines training file, detect its format and validate every line.

Pure standard library: the TUI imports this to preview a dataset before any model loads.
The only exception `read_dataset` and `parse_lines` raise is `DatasetError`; its problems name
each bad line and say how to fix it.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import stat
from dataclasses import dataclass
from itertools import islice
from typing import Any

from core.errors import DatasetError, InputError, Problem

FORMATS = ("alpaca", "messages", "sharegpt", "prompt_completion", "text")
FORMAT_LABELS = {
    "alpaca": "GenAptitude / Alpaca (instruction, input, output)",
    "messages": "chat messages (role/content)",
    "sharegpt": "ShareGPT conversations (from/value)",
    "prompt_completion": "prompt / completion",
    "text": "plain text",
}
# What a row of each format needs, as shown in messages.
EXPECTED_KEYS = {
    "alpaca": "'instruction' and 'output', optionally 'input' and 'system'",
    "messages": "'messages' (a list of {\"role\", \"content\"} objects)",
    "sharegpt": "'conversations' (a list of {\"from\", \"value\"} objects)",
    "prompt_completion": "'prompt' and 'completion'",
    "text": "'text'",
}
EXPORT_HINT = ("export a dataset from GenAptitude with `cargo run --bin genaptitude ai_export_dataset`, "
               "or write one JSON object per line")
JSON_FIX = "each line must be one complete JSON object; check quotes and escapes"
ARRAY_FIX = "write one JSON object per line, e.g. `jq -c '.[]' file.json > dataset.jsonl`"
PRETTY_FIX = "write each object on one line, e.g. `jq -c . file.json > dataset.jsonl`"

_BOM = b"\xef\xbb\xbf"
_MESSAGE_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
_ALIASES = {  # wanted key -> names people use for it
    "instruction": ("question", "query", "prompt", "instructions"),
    "output": ("response", "answer", "outputs", "target", "completion"),
    "input": ("context",),
    "messages": ("chat", "turns"),
    "conversations": ("conversation", "dialog", "dialogue"),
}
_WS = re.compile(r"\s*")


@dataclass
class Example:
    """One valid training row."""

    line: int  # 1-based line number in the file
    messages: list[dict[str, str]]  # [{"role": ..., "content": ...}]; empty for the "text" format
    text: str | None = None  # only for the "text" format
    raw: dict | None = None  # the parsed JSON object, for previews


@dataclass
class DatasetReport:
    """What was read: the valid rows, the skipped ones, and facts about the file."""

    path: str
    format: str
    examples: list[Example]
    problems: list[Problem]
    total_lines: int
    blank_lines: int
    sha256: str
    had_bom: bool
    had_crlf: bool
    invalid_lines: int = 0  # may exceed len(problems) when more than max_problems_kept were found
    encoding: str = "utf-8"  # "utf-8", "utf-8-sig" (BOM), "utf-16" or "utf-32" (converted on read)

    @property
    def skipped(self) -> int:
        """Invalid lines left out of `examples`."""
        return max(self.invalid_lines, len(self.problems))


@dataclass
class _Detected:
    """The file's format, once a line has decided it."""

    format: str | None = None
    line: int = 0


class _Bad(Exception):
    """One line is unusable; becomes a Problem."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message, self.fix = message, fix


# --------------------------------------------------------------------------- public API


def read_dataset(path: str | os.PathLike, *, skip_invalid: bool = False,
                 max_problems_kept: int = 1000) -> DatasetReport:
    """Read and validate a JSON Lines file. Raises DatasetError only."""
    try:
        name = os.path.expanduser(os.fspath(path))
    except TypeError:
        raise DatasetError(f"the dataset path must be a file path, not {type(path).__name__}",
                           hint=EXPORT_HINT) from None
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not name.strip():
        raise DatasetError("no dataset path given", hint="pass the path of a .jsonl file; " + EXPORT_HINT)
    data = _read_file(name)
    return parse_lines(data, name, skip_invalid=skip_invalid, max_problems_kept=max_problems_kept)


def parse_lines(data: bytes, path: str = "<memory>", *, skip_invalid: bool = False,
                max_problems_kept: int = 1000) -> DatasetReport:
    """Validate JSON Lines given as bytes (what `read_dataset` does after reading). Raises DatasetError for any
    file; any other exception is a bug of ours and keeps its traceback (the fuzz tests hold this contract)."""
    return _parse(bytes(data), str(path), skip_invalid, max(0, int(max_problems_kept)))


def split_examples(examples: list[Example], eval_fraction: float,
                   seed: int) -> tuple[list[Example], list[Example]]:
    """Seeded split into (train, eval); each side keeps file order. Train is never empty."""
    if not (0.0 <= eval_fraction < 1.0):
        raise InputError(f"eval fraction must be at least 0 and below 1, got {eval_fraction}",
                         hint="use e.g. 0.05 to hold out 5% of the rows, or 0 for no evaluation")
    n = len(examples)
    if eval_fraction == 0 or n < 2:
        return list(examples), []
    k = min(max(round(n * eval_fraction), 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:k])
    train = [e for i, e in enumerate(examples) if i not in held]
    evals = [e for i, e in enumerate(examples) if i in held]
    return train, evals


def example_to_prompt_and_answer(example: Example) -> tuple[list[dict], str]:
    """The turns before the last assistant turn, and that turn's content."""
    if example.text is not None or not example.messages:
        raise ValueError(f"line {example.line}: a plain-text example has no prompt/answer split")
    for i in range(len(example.messages) - 1, -1, -1):
        if example.messages[i]["role"] == "assistant":
            return [dict(m) for m in example.messages[:i]], example.messages[i]["content"]
    raise ValueError(f"line {example.line}: the example has no assistant turn")


# --------------------------------------------------------------------------- reading the file


def _read_file(name: str) -> bytes:
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise DatasetError(f"{name}: no such file", hint=_missing_hint(name), path=name) from None
    except PermissionError:
        raise DatasetError(f"{name}: permission denied (cannot look into its folder)",
                           hint="check the folder permissions, or copy the file somewhere you can read",
                           path=name) from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{name}: cannot access the file ({_os_reason(exc)})",
                           hint="check the path", path=name) from None
    if stat.S_ISDIR(st.st_mode):
        found = _jsonl_files(name)
        hint = ("pass one of the .jsonl files in it: " + ", ".join(found)) if found else (
            "pass the path of a .jsonl file, not a folder; " + EXPORT_HINT)
        raise DatasetError(f"{name}: is a directory, not a file", hint=hint, path=name)
    if not stat.S_ISREG(st.st_mode):
        raise DatasetError(f"{name}: is not a regular file (a device, pipe or socket?)",
                           hint="save the dataset to a .jsonl file and pass that path", path=name)
    try:
        with open(name, "rb") as f:
            return f.read()
    except PermissionError:
        raise DatasetError(f"{name}: permission denied, the file cannot be read",
                           hint=f"give yourself read access (e.g. `chmod u+r {name}`) or copy the file",
                           path=name) from None
    except MemoryError:
        raise DatasetError(f"{name}: the file is too large to read into memory",
                           hint="split it into smaller files", path=name) from None
    except OSError as exc:
        raise DatasetError(f"{name}: could not read the file ({_os_reason(exc)})",
                           hint="check the disk and the path, then try again", path=name) from None


def _os_reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc)


def _jsonl_files(folder: str, limit: int = 5) -> list[str]:
    try:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jsonl", ".json")))
    except OSError:
        return []
    return [os.path.join(folder, n) for n in names[:limit]]


def _missing_hint(name: str) -> str:
    try:
        where = f"relative paths start from {os.getcwd()}"
    except OSError:
        where = "check the spelling"
    if os.path.isfile(name + ".jsonl"):
        return f"did you mean {name}.jsonl?"
    found = _jsonl_files(os.path.dirname(name) or ".")
    near = f"; .jsonl files there: {', '.join(found)}" if found else ""
    return f"check the path ({where}){near}; or {EXPORT_HINT}"


# Files people pass by mistake, by their first bytes: one sentence about the whole file, not one per line.
_SIGNATURES = ((b"\x1f\x8b", "a gzip archive", "decompress it first (`gunzip`)"),
               (b"PK\x03\x04", "a zip archive (or an .xlsx/.docx file)", "extract the .jsonl from it, or export the "
                                                                       "sheet as JSON Lines"),
               (b"PAR1", "a Parquet file", "convert it, e.g. `pandas.read_parquet(f).to_json(out, orient='records', "
                                           "lines=True, force_ascii=False)`"),
               (b"SQLite format 3\x00", "an SQLite database", "export the table as JSON Lines"),
               (b"%PDF", "a PDF document", "export the data as JSON Lines"),
               (b"\x89PNG", "a PNG image", "pass the dataset's .jsonl file"),
               (b"\x7fELF", "a program (ELF binary)", "pass the dataset's .jsonl file"))
_UTF32 = ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"))


def _not_text(data: bytes, path: str) -> None:
    """Refuse a binary file with one sentence (a few lines of it with NUL bytes among mostly unreadable lines)."""
    name = os.path.basename(path) or path
    for magic, what, fix in _SIGNATURES:
        if data.startswith(magic):
            raise DatasetError(f"{path}: {name} is {what}, not JSON Lines text", hint=fix, path=path)
    head = data[:65536]
    if b"\x00" not in head:
        return
    lines = [line for line in head.split(b"\n")[:-1 if len(data) > len(head) else None] if line.strip()][:1000]
    bad = 0
    for line in lines:
        try:
            line.decode("utf-8")
            bad += b"\x00" in line
        except UnicodeDecodeError:
            bad += 1
    if bad >= 3 and bad * 2 >= len(lines):
        raise DatasetError(f"{path}: {name} looks like a binary file, not JSON Lines text ({bad} of its first "
                           f"{len(lines)} lines hold NUL bytes or bytes that are not UTF-8)",
                           hint="pass the .jsonl file GenAptitude exported (UTF-8 text, one JSON object per line); "
                                + EXPORT_HINT, path=path)


def _decode_file(data: bytes, path: str) -> tuple[bytes, str, bool]:
    """Return UTF-8 bytes without BOM, the encoding seen, and whether there was a BOM."""
    if data.startswith(_BOM):
        return data[len(_BOM):], "utf-8-sig", True
    for bom, codec in _UTF32:  # before UTF-16: the UTF-32 little-endian BOM starts like UTF-16's
        if data.startswith(bom):
            try:
                return data[4:].decode(codec).encode("utf-8"), "utf-32", True
            except UnicodeError:
                raise DatasetError(f"{path}: the file starts like UTF-32 text but cannot be decoded as UTF-32",
                                   hint="re-save the file as UTF-8", path=path) from None
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[2:].decode(codec).encode("utf-8"), "utf-16", True
            except UnicodeError:
                raise DatasetError(f"{path}: the file starts like UTF-16 text but cannot be decoded as UTF-16",
                                   hint="re-save the file as UTF-8 (in Notepad: Save As, Encoding: UTF-8)",
                                   path=path) from None
    # UTF-16 without BOM (e.g. PowerShell output): every other byte of ASCII text is NUL.
    if len(data) >= 4 and data[0] and data[2] and not data[1] and not data[3]:
        codec = "utf-16-le"
    elif len(data) >= 4 and not data[0] and not data[2] and data[1] and data[3]:
        codec = "utf-16-be"
    else:
        _not_text(data, path)
        return data, "utf-8", False
    try:
        return data.decode(codec).encode("utf-8"), "utf-16", False
    except UnicodeError:
        _not_text(data, path)
        return data, "utf-8", False  # not UTF-16 after all: the NUL bytes are reported line by line


# --------------------------------------------------------------------------- the line loop


def _parse(data: bytes, path: str, skip_invalid: bool, max_kept: int) -> DatasetReport:
    sha256 = hashlib.sha256(data).hexdigest()
    body, encoding, had_bom = _decode_file(data, path)
    had_crlf = b"\r\n" in body
    sep = b"\n" if (b"\n" in body or b"\r" not in body) else b"\r"  # old Mac files use CR alone
    lines = body.split(sep)
    if lines and lines[-1] == b"":
        lines.pop()

    state = _Detected()
    examples: list[Example] = []
    problems: list[Problem] = []
    invalid = blank = 0
    first: tuple[int, bytes] | None = None
    for number, raw in enumerate(lines, 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        offset = len(_BOM) if number == 1 and encoding == "utf-8-sig" else 0  # byte positions count the BOM
        if raw.startswith(_BOM):  # files glued together with `cat` keep their BOMs
            raw, offset = raw[len(_BOM):], len(_BOM)
        if not raw or raw.isspace():
            blank += 1
            continue
        if first is None:
            first = (number, raw)
        try:
            examples.append(_read_line(raw, number, offset, state))
        except _Bad as bad:
            problem = Problem(bad.message, bad.fix, number)
        except RecursionError:
            problem = Problem("the JSON is nested too deeply to read", _DEEP_FIX, number)
        else:
            continue
        invalid += 1
        if len(problems) < max_kept:
            problems.append(problem)

    if first is None:
        what = "the file is empty" if not lines else f"the file is empty (only {blank} blank line(s))"
        raise DatasetError(f"{path}: {what}", hint=EXPORT_HINT, path=path)
    _check_shape(first, body, path, bool(examples))
    rows = len(lines) - blank
    if invalid and not skip_invalid:
        if examples:
            hint = f"fix the lines above, or pass --skip-invalid to train on the {len(examples)} valid rows only"
        else:
            hint = "fix the lines above: no line of the file is a valid row"
        raise DatasetError(f"{path}: {invalid} invalid line(s) out of {rows}", problems=problems, path=path,
                           hint=hint)
    if not examples:
        raise DatasetError(f"{path}: no valid rows left after skipping {invalid} invalid line(s)",
                           problems=problems, path=path, hint="fix the lines above; " + EXPORT_HINT)
    return DatasetReport(path=path, format=state.format or "", examples=examples, problems=problems,
                         total_lines=len(lines), blank_lines=blank, sha256=sha256, had_bom=had_bom,
                         had_crlf=had_crlf, invalid_lines=invalid, encoding=encoding)


def _check_shape(first: tuple[int, bytes], body: bytes, path: str, has_examples: bool) -> None:
    """Refuse a whole JSON array or a pretty-printed JSON file with one clear message."""
    number, raw = first
    head = raw.strip()
    if head.startswith(b"["):
        raise DatasetError(
            f"{path}: the file looks like a JSON array, not JSON Lines", path=path,
            problems=[Problem("the file starts with '[': it holds one JSON array, but JSON Lines needs "
                              "one JSON object per line", ARRAY_FIX, number)])
    pretty = head == b"{"
    if not pretty and not has_examples and head.startswith(b"{") and not _parses(raw):
        pretty = _is_json_stream(body.decode("utf-8", "replace"))
    if pretty:
        raise DatasetError(
            f"{path}: the file looks like pretty-printed JSON (objects spread over several lines), "
            "not JSON Lines", path=path,
            problems=[Problem("this line opens an object that continues on the next lines; JSON Lines "
                              "needs each object complete on one line", PRETTY_FIX, number)])


def _parses(raw: bytes) -> bool:
    try:
        json.loads(raw.decode("utf-8"))
        return True
    except (ValueError, RecursionError):
        return False


def _is_json_stream(text: str) -> bool:
    """True if `text` is one or more JSON values separated by whitespace."""
    decoder = json.JSONDecoder()
    i, count = 0, 0
    try:
        while True:
            i = _WS.match(text, i).end()
            if i >= len(text):
                return count > 0
            _, i = decoder.raw_decode(text, i)
            count += 1
    except (ValueError, RecursionError):
        return False


# --------------------------------------------------------------------------- one line


_DEEP_FIX = "a row needs only a few levels (an object holding a list of messages); flatten the data"


def _read_line(raw: bytes, number: int, offset: int, state: _Detected) -> Example:
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise _Bad(f"contains NUL bytes (binary data?), first at byte {nul + 1 + offset}",
                   "remove the NUL bytes; if every line has them the file may be UTF-16 or binary: "
                   "re-save it as UTF-8 JSON Lines")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.end].hex(" ")
        raise _Bad(f"not valid UTF-8 at byte {exc.start + 1 + offset} of line {number} (bytes {bad})",
                   "re-save the file as UTF-8 (it may have been saved as Windows-1252/Latin-1, "
                   "e.g. by Excel or Notepad)") from None
    obj = _load_json(text)
    if not isinstance(obj, dict):
        raise _Bad(f"the line is {_describe(obj)}, not a JSON object", _not_object_fix(obj))
    fmt = _guess_format(obj)
    if fmt is None:
        raise _unknown_keys(obj, state.format)
    if state.format is None:
        state.format, state.line = fmt, number
    elif fmt != state.format:
        file_fmt = state.format
        raise _Bad(f"this line looks like {fmt} but the file is {file_fmt} (decided at line {state.line})",
                   f"convert this line to the {file_fmt} format ({EXPECTED_KEYS[file_fmt]}), "
                   "or split the file so that each file holds one format")
    if fmt == "text":
        body = _text_row(obj)
        example = Example(line=number, messages=[], text=body, raw=obj)
    else:
        example = Example(line=number, messages=_CONVERTERS[fmt](obj), raw=obj)
    if "\\ud" in text or "\\uD" in text:
        _check_surrogates(example)
    return example


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        near = text[max(0, exc.pos - 20):exc.pos + 20]
        raise _Bad(f"invalid JSON at column {exc.colno}: {exc.msg} (near {near!r})",
                   _json_fix(exc, text)) from None
    except RecursionError:
        raise _Bad("the JSON is nested too deeply to read", _DEEP_FIX) from None
    except ValueError as exc:  # e.g. an integer with more than 4300 digits
        raise _Bad(f"invalid JSON: {_clip(str(exc), 120)}", JSON_FIX) from None


def _json_fix(exc: json.JSONDecodeError, text: str) -> str:
    msg, rest = exc.msg, text[exc.pos:].lstrip()
    if text.lstrip().startswith("{'"):
        return "this looks like a Python dict (single quotes); write real JSON with double quotes, e.g. json.dumps(row)"
    if msg.startswith("Extra data"):
        if rest.startswith(","):
            return "remove the comma after the object: JSON Lines has no commas between lines"
        return "each line must hold exactly one JSON object; this line has more after the object ends"
    if msg.startswith("Invalid control character"):
        return "a string contains a raw tab or line break; write it as \\t or \\n inside the string"
    if msg.startswith("Invalid \\escape"):
        return "a backslash inside a string must be doubled (e.g. Windows paths: \"C:\\\\Users\"), or use a valid escape"
    if msg.startswith("Unterminated string"):
        return "a string is not closed: check for a missing closing quote or a line cut short"
    if msg.startswith("Expecting property name"):
        return "keys need double quotes, and no comma may follow the last field"
    if msg.startswith("Expecting value") and exc.pos == 0:
        return "this line is not JSON; a JSON Lines file has one {...} object per line (is this a CSV or text file?)"
    return JSON_FIX


def _not_object_fix(obj: Any) -> str:
    if isinstance(obj, str) and obj.lstrip().startswith("{"):
        try:
            if isinstance(json.loads(obj), dict):
                return "the object was JSON-encoded twice (a string holding JSON); write the object itself"
        except (ValueError, RecursionError):
            pass
    return "each line must be one JSON object, e.g. {\"instruction\": \"...\", \"input\": \"\", \"output\": \"...\"}"


def _guess_format(obj: dict) -> str | None:
    if "messages" in obj:
        return "messages"
    if "conversations" in obj:
        return "sharegpt"
    if "instruction" in obj or "output" in obj:
        return "alpaca"
    if "prompt" in obj or "completion" in obj:
        return "prompt_completion"
    if "text" in obj:
        return "text"
    return None


def _unknown_keys(obj: dict, fmt: str | None) -> _Bad:
    if not obj:
        message = "the line is an empty object {}"
    else:
        message = f"no known fields (found keys: {_keys(obj)})"
    if fmt:
        message += f"; expected {EXPECTED_KEYS[fmt]} for the {fmt} format"
        wanted = {"alpaca": ("instruction", "output", "input"), "messages": ("messages",),
                  "sharegpt": ("conversations",), "prompt_completion": ("prompt", "completion"),
                  "text": ("text",)}[fmt]
    else:
        message += "; expected one of: " + "; ".join(f"{EXPECTED_KEYS[f]} ({f})" for f in FORMATS)
        wanted = ("instruction", "output", "input", "messages", "conversations", "prompt", "completion", "text")
    renames = [f"'{_clip(k, 30)}' to '{w}'" for w in wanted if (k := _similar_key(obj, w))]
    fix = ("rename " + ", ".join(renames)) if renames else (
        f"use the {fmt} fields: {EXPECTED_KEYS[fmt]}" if fmt else "use the fields of one supported format")
    return _Bad(message, fix)


def _similar_key(obj: dict, wanted: str) -> str | None:
    for key in islice(obj, 200):
        k = key.strip().lower()
        if key != wanted and (k == wanted or k in _ALIASES.get(wanted, ())):
            return key
    return None


def _check_surrogates(example: Example) -> None:
    parts = [example.text or ""] + [m["content"] for m in example.messages]
    for part in parts:
        try:
            part.encode("utf-8")
        except UnicodeEncodeError:
            raise _Bad("contains a broken \\u escape (half of a UTF-16 surrogate pair, e.g. half an emoji)",
                       "fix or remove the escape; an emoji written as \\u escapes needs both halves, "
                       "e.g. \\ud83d\\ude00") from None


# --------------------------------------------------------------------------- formats


def _string(obj: dict, key: str, fmt: str, *, required: bool) -> str:
    """obj[key] as a string; optional fields may be missing or null ("")."""
    if key not in obj or (obj[key] is None and not required):
        if required:
            alt = _similar_key(obj, key)
            fix = f"rename '{_clip(alt, 30)}' to '{key}'" if alt else f"add '{key}': every {fmt} row needs {EXPECTED_KEYS[fmt]}"
            raise _Bad(f"missing field '{key}'", fix)
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise _Bad(f"field '{key}' is {_describe(value)}, expected a string", _string_fix(key, value))
    return value


def _string_fix(key: str, value: Any) -> str:
    if value is None:
        return f"write the text of '{key}' (e.g. \"{key}\": \"...\"), or remove the line"
    if isinstance(value, (bool, int, float)):
        return f"write it as a JSON string, e.g. \"{key}\": {json.dumps(_scalar(value))}"
    return f"'{key}' must be plain text: join the parts into one string"


def _alpaca(obj: dict) -> list[dict[str, str]]:
    instruction = _string(obj, "instruction", "alpaca", required=True)
    user_input = _string(obj, "input", "alpaca", required=False)
    output = _string(obj, "output", "alpaca", required=True)
    system = _string(obj, "system", "alpaca", required=False)
    if not instruction.strip():
        raise _Bad("field 'instruction' is empty", "write the task or question in 'instruction', or remove the line")
    if not output.strip():
        raise _Bad("empty answer: nothing to learn ('output' is empty)",
                   "write the expected answer in 'output', or remove the line")
    user = instruction if not user_input.strip() else instruction + "\n\n" + user_input
    head = [{"role": "system", "content": system}] if system.strip() else []
    return head + [{"role": "user", "content": user}, {"role": "assistant", "content": output}]


def _messages(obj: dict) -> list[dict[str, str]]:
    turns = _turns(obj["messages"], "messages", "role", "content", _MESSAGE_ROLES)
    return _conversation(turns)


def _sharegpt(obj: dict) -> list[dict[str, str]]:
    turns = _turns(obj["conversations"], "conversations", "from", "value", _SHAREGPT_ROLES)
    system = _string(obj, "system", "sharegpt", required=False)
    if system.strip() and not any(t["role"] == "system" for t in turns):
        turns.insert(0, {"role": "system", "content": system})
    return _conversation(turns)


def _prompt_completion(obj: dict) -> list[dict[str, str]]:
    for key in ("prompt", "completion"):
        if key not in obj:
            raise _Bad(f"missing field '{key}'", f"add '{key}': every prompt_completion row needs "
                                                 f"{EXPECTED_KEYS['prompt_completion']}")
    prompt, completion = obj["prompt"], obj["completion"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise _Bad("field 'prompt' is empty", "write the question in 'prompt', or remove the line")
        head = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list):
        head = _turns(prompt, "prompt", "role", "content", _MESSAGE_ROLES)
    else:
        raise _Bad(f"field 'prompt' is {_describe(prompt)}, expected a string or a list of messages",
                   "write 'prompt' as a string, or as a list of {\"role\", \"content\"} objects")
    if isinstance(completion, str):
        if not completion.strip():
            raise _Bad("empty answer: nothing to learn ('completion' is empty)",
                       "write the expected answer in 'completion', or remove the line")
        tail = [{"role": "assistant", "content": completion}]
    elif isinstance(completion, list):
        tail = _turns(completion, "completion", "role", "content", {"assistant": "assistant"})
    else:
        raise _Bad(f"field 'completion' is {_describe(completion)}, expected a string or a list of messages",
                   "write 'completion' as a string, or as a list of {\"role\": \"assistant\", \"content\"} objects")
    return _conversation(head + tail)


def _text_row(obj: dict) -> str:
    text = _string(obj, "text", "text", required=True)
    if not text.strip():
        raise _Bad("empty text: nothing to learn ('text' is empty)", "write the training text, or remove the line")
    return text


_CONVERTERS = {"alpaca": _alpaca, "messages": _messages, "sharegpt": _sharegpt,
               "prompt_completion": _prompt_completion}


def _turns(items: Any, key: str, role_key: str, content_key: str, roles: dict[str, str]) -> list[dict[str, str]]:
    """Validate a list of turn objects and map them to {"role", "content"}."""
    allowed = ", ".join(f"'{r}'" for r in roles)
    example = f"[{{\"{role_key}\": \"{next(iter(roles))}\", \"{content_key}\": \"...\"}}]"
    if not isinstance(items, list):
        raise _Bad(f"field '{key}' is {_describe(items)}, expected a list of turns", f"write '{key}' as a list, e.g. {example}")
    if not items:
        raise _Bad(f"field '{key}' is an empty list", "add the turns of the conversation, or remove the line")
    out = []
    for i, turn in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise _Bad(f"{where} is {_describe(turn)}, expected an object with '{role_key}' and '{content_key}'",
                       f"write each turn as an object, e.g. {example}")
        if role_key not in turn:
            raise _Bad(f"{where} has no '{role_key}'", f"add '{role_key}' (one of {allowed}) to each turn")
        role = turn[role_key]
        if not isinstance(role, str) or role not in roles:
            if key == "completion" and isinstance(role, str) and role in _MESSAGE_ROLES:
                fix = "completion turns must be assistant turns; move the other turns into 'prompt'"
            elif isinstance(role, str) and role.strip().lower() in roles:
                fix = f"write the {role_key} in lowercase: '{role.strip().lower()}'"
            else:
                fix = f"use one of {allowed}"
            raise _Bad(f"{where} has {role_key} {_value(role)}; expected one of {allowed}", fix)
        if content_key not in turn:
            raise _Bad(f"{where} has no '{content_key}'", f"add '{content_key}' with the text of the turn")
        content = turn[content_key]
        if not isinstance(content, str):
            raise _Bad(f"{where}.{content_key} is {_describe(content)}, expected a string",
                       f"write '{content_key}' as plain text (one JSON string)")
        mapped = roles[role]
        if mapped == "assistant" and not content.strip():
            raise _Bad(f"empty answer: nothing to learn ({where}.{content_key} is empty)",
                       "write the assistant's answer, or remove the turn or the line")
        out.append({"role": mapped, "content": content})
    return out


def _conversation(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    roles = [t["role"] for t in turns]
    if "assistant" not in roles:
        raise _Bad("the conversation has no assistant turn: nothing to learn", "add the assistant's answer, or remove the line")
    if "user" not in roles:
        raise _Bad("the conversation has no user turn", "add the user's message before the assistant's answer")
    if roles[-1] != "assistant":
        raise _Bad(f"the conversation ends with a {roles[-1]} turn, nothing to learn",
                   "end the conversation with the assistant's answer, or drop the last turn")
    return turns


# --------------------------------------------------------------------------- wording helpers


def flat(text: str) -> str:
    """The text on one line, every run of whitespace (line breaks, tabs) one space: how a row is shown in a line,
    and how answers are compared (core.adapter.evaluate)."""
    return " ".join(text.split())


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _scalar(value: bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _clip(repr(value), 30)


def _describe(value: Any) -> str:
    """A JSON value's type, as a user would call it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({_scalar(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({_scalar(value)})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list (JSON array)"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _value(value: Any) -> str:
    return repr(_clip(value, 30)) if isinstance(value, str) else _describe(value)


def _keys(obj: dict, limit: int = 8) -> str:
    shown = ", ".join(repr(_clip(k, 30)) for k in islice(obj, limit))
    return shown + (f" and {len(obj) - limit} more" if len(obj) > limit else "")
