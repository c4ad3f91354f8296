"""Read a JSON Lines training file, detect its format and validate every line into a `DatasetReport`.

The file as a whole is checked in `core.data.datafile`, each row's format in `core.data.formats`; this module walks
the lines, turns each unusable one into a Problem naming its line, and decides whether the file can be used.
Pure standard library: the TUI imports this to preview a dataset before any model loads.
The only exception `read_dataset` and `parse_lines` raise is `DatasetError`; its problems name
each bad line and say how to fix it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from core.data.datafile import BOM, EXPORT_HINT, check_shape, decode_file, read_file
from core.data.examples import Example
from core.data.formats import EXPECTED_KEYS, BadRow, clip, describe, guess_format, row_content, unknown_keys
from core.errors import DatasetError, Problem

JSON_FIX = "each line must be one complete JSON object; check quotes and escapes"


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
    """The file's format, once a line has decided it (and the instruction turn its alpaca rows are laid out with)."""

    format: str | None = None
    line: int = 0
    instruction_turn: str = "system"


# --------------------------------------------------------------------------- public API


def read_dataset(path: str | os.PathLike, *, skip_invalid: bool = False,
                 max_problems_kept: int = 1000, instruction_turn: str = "system") -> DatasetReport:
    """Read and validate a JSON Lines file; instruction/input rows are laid out as `instruction_turn` says
    (core.data.layout). Raises DatasetError only."""
    try:
        name = os.path.expanduser(os.fspath(path))
    except TypeError:
        raise DatasetError(f"the dataset path must be a file path, not {type(path).__name__}",
                           hint=EXPORT_HINT) from None
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not name.strip():
        raise DatasetError("no dataset path given", hint="pass the path of a .jsonl file; " + EXPORT_HINT)
    data = read_file(name)
    return parse_lines(data, name, skip_invalid=skip_invalid, max_problems_kept=max_problems_kept,
                       instruction_turn=instruction_turn)


def parse_lines(data: bytes, path: str = "<memory>", *, skip_invalid: bool = False,
                max_problems_kept: int = 1000, instruction_turn: str = "system") -> DatasetReport:
    """Validate JSON Lines given as bytes (what `read_dataset` does after reading). Raises DatasetError for any
    file; any other exception is a bug of ours and keeps its traceback (the fuzz tests hold this contract)."""
    return _parse(bytes(data), str(path), skip_invalid, max(0, int(max_problems_kept)), instruction_turn)


# --------------------------------------------------------------------------- the line loop


def _parse(data: bytes, path: str, skip_invalid: bool, max_kept: int, instruction_turn: str) -> DatasetReport:
    sha256 = hashlib.sha256(data).hexdigest()
    body, encoding, had_bom = decode_file(data, path)
    had_crlf = b"\r\n" in body
    sep = b"\n" if (b"\n" in body or b"\r" not in body) else b"\r"  # old Mac files use CR alone
    lines = body.split(sep)
    if lines and lines[-1] == b"":
        lines.pop()

    state = _Detected(instruction_turn=instruction_turn)
    examples: list[Example] = []
    problems: list[Problem] = []
    invalid = blank = 0
    first: tuple[int, bytes] | None = None
    for number, raw in enumerate(lines, 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        offset = len(BOM) if number == 1 and encoding == "utf-8-sig" else 0  # byte positions count the BOM
        if raw.startswith(BOM):  # files glued together with `cat` keep their BOMs
            raw, offset = raw[len(BOM):], len(BOM)
        if not raw or raw.isspace():
            blank += 1
            continue
        if first is None:
            first = (number, raw)
        try:
            examples.append(_read_line(raw, number, offset, state))
        except BadRow as bad:
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
    check_shape(first, body, path, bool(examples))
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


# --------------------------------------------------------------------------- one line


_DEEP_FIX = "a row needs only a few levels (an object holding a list of messages); flatten the data"


def _read_line(raw: bytes, number: int, offset: int, state: _Detected) -> Example:
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise BadRow(f"contains NUL bytes (binary data?), first at byte {nul + 1 + offset}",
                     "remove the NUL bytes; if every line has them the file may be UTF-16 or binary: "
                     "re-save it as UTF-8 JSON Lines")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.end].hex(" ")
        raise BadRow(f"not valid UTF-8 at byte {exc.start + 1 + offset} of line {number} (bytes {bad})",
                     "re-save the file as UTF-8 (it may have been saved as Windows-1252/Latin-1, "
                     "e.g. by Excel or Notepad)") from None
    obj = _load_json(text)
    if not isinstance(obj, dict):
        raise BadRow(f"the line is {describe(obj)}, not a JSON object", _not_object_fix(obj))
    fmt = guess_format(obj)
    if fmt is None:
        raise unknown_keys(obj, state.format)
    if state.format is None:
        state.format, state.line = fmt, number
    elif fmt != state.format:
        file_fmt = state.format
        raise BadRow(f"this line looks like {fmt} but the file is {file_fmt} (decided at line {state.line})",
                     f"convert this line to the {file_fmt} format ({EXPECTED_KEYS[file_fmt]}), "
                     "or split the file so that each file holds one format")
    messages, body = row_content(obj, fmt, state.instruction_turn)
    example = Example(line=number, messages=messages, text=body, raw=obj,
                      layout=state.instruction_turn if fmt == "alpaca" else None)
    if "\\ud" in text or "\\uD" in text:
        _check_surrogates(example)
    return example


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        near = text[max(0, exc.pos - 20):exc.pos + 20]
        raise BadRow(f"invalid JSON at column {exc.colno}: {exc.msg} (near {near!r})",
                     _json_fix(exc, text)) from None
    except RecursionError:
        raise BadRow("the JSON is nested too deeply to read", _DEEP_FIX) from None
    except ValueError as exc:  # e.g. an integer with more than 4300 digits
        raise BadRow(f"invalid JSON: {clip(str(exc), 120)}", JSON_FIX) from None


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


def _check_surrogates(example: Example) -> None:
    parts = [example.text or ""] + [m["content"] for m in example.messages]
    for part in parts:
        try:
            part.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRow("contains a broken \\u escape (half of a UTF-16 surrogate pair, e.g. half an emoji)",
                         "fix or remove the escape; an emoji written as \\u escapes needs both halves, "
                         "e.g. \\ud83d\\ude00") from None
