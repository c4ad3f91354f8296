"""The dataset file as a whole, before its lines are read: the path names a readable regular file, its bytes are
text (UTF-8, or UTF-16/UTF-32 converted), and it is JSON Lines rather than one JSON array or pretty-printed JSON.

Each refusal is one `DatasetError` sentence about the whole file, with a hint, never one problem per line.
"""
from __future__ import annotations

import json
import os
import re
import stat

from core.errors import DatasetError, Problem

EXPORT_HINT = ("export a dataset from GenAptitude with `cargo run --bin genaptitude ai_export_dataset`, "
               "or write one JSON object per line")
ARRAY_FIX = "write one JSON object per line, e.g. `jq -c '.[]' file.json > dataset.jsonl`"
PRETTY_FIX = "write each object on one line, e.g. `jq -c . file.json > dataset.jsonl`"

BOM = b"\xef\xbb\xbf"
_WS = re.compile(r"\s*")


# --------------------------------------------------------------------------- the path


def read_file(name: str) -> bytes:
    """The file's bytes; a missing path, a folder, a device or an unreadable file is one DatasetError."""
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


# --------------------------------------------------------------------------- text or not, and its encoding


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


def decode_file(data: bytes, path: str) -> tuple[bytes, str, bool]:
    """Return UTF-8 bytes without BOM, the encoding seen, and whether there was a BOM."""
    if data.startswith(BOM):
        return data[len(BOM):], "utf-8-sig", True
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


# --------------------------------------------------------------------------- JSON Lines, not JSON


def check_shape(first: tuple[int, bytes], body: bytes, path: str, has_examples: bool) -> None:
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
