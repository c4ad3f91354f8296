"""The row formats a dataset may use: how a row's keys decide its format, and how each format's row (GenAptitude's
instruction/input/output, chat messages, ShareGPT conversations, prompt/completion, plain text) becomes chat turns.

A row that cannot be used raises `BadRow`, whose message and fix say what is wrong with it in the user's words;
`core.data.dataset` turns it into a Problem naming the line.
"""
from __future__ import annotations

import json
from itertools import islice
from typing import Any

from core.data.layout import prompt_turns

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

_MESSAGE_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
_ALIASES = {  # wanted key -> names people use for it
    "instruction": ("question", "query", "prompt", "instructions"),
    "output": ("response", "answer", "outputs", "target", "completion"),
    "input": ("context",),
    "messages": ("chat", "turns"),
    "conversations": ("conversation", "dialog", "dialogue"),
}


class BadRow(Exception):
    """One line is unusable; becomes a Problem."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message, self.fix = message, fix


# --------------------------------------------------------------------------- which format a row is


def guess_format(obj: dict) -> str | None:
    """The format a row's keys name, or None when it has none of the known fields."""
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


def unknown_keys(obj: dict, fmt: str | None) -> BadRow:
    """The error for a row with no known field: what the format (or any format) expects, and likely renames."""
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
    renames = [f"'{clip(k, 30)}' to '{w}'" for w in wanted if (k := _similar_key(obj, w))]
    fix = ("rename " + ", ".join(renames)) if renames else (
        f"use the {fmt} fields: {EXPECTED_KEYS[fmt]}" if fmt else "use the fields of one supported format")
    return BadRow(message, fix)


def _similar_key(obj: dict, wanted: str) -> str | None:
    for key in islice(obj, 200):
        k = key.strip().lower()
        if key != wanted and (k == wanted or k in _ALIASES.get(wanted, ())):
            return key
    return None


# --------------------------------------------------------------------------- each format's rows


def row_content(obj: dict, fmt: str, instruction_turn: str = "system") -> tuple[list[dict[str, str]], str | None]:
    """The row's chat turns ({"role", "content"}), or for the "text" format no turns and its text;
    `instruction_turn` lays out an alpaca row's instruction and input (core.data.layout.prompt_turns)."""
    if fmt == "text":
        return [], _text_row(obj)
    if fmt == "alpaca":
        return _alpaca(obj, instruction_turn), None
    return _CONVERTERS[fmt](obj), None


def _string(obj: dict, key: str, fmt: str, *, required: bool) -> str:
    """obj[key] as a string; optional fields may be missing or null ("")."""
    if key not in obj or (obj[key] is None and not required):
        if required:
            alt = _similar_key(obj, key)
            fix = (f"rename '{clip(alt, 30)}' to '{key}'" if alt
                   else f"add '{key}': every {fmt} row needs {EXPECTED_KEYS[fmt]}")
            raise BadRow(f"missing field '{key}'", fix)
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise BadRow(f"field '{key}' is {describe(value)}, expected a string", _string_fix(key, value))
    return value


def _string_fix(key: str, value: Any) -> str:
    if value is None:
        return f"write the text of '{key}' (e.g. \"{key}\": \"...\"), or remove the line"
    if isinstance(value, (bool, int, float)):
        return f"write it as a JSON string, e.g. \"{key}\": {json.dumps(_scalar(value))}"
    return f"'{key}' must be plain text: join the parts into one string"


def _alpaca(obj: dict, instruction_turn: str = "system") -> list[dict[str, str]]:
    instruction = _string(obj, "instruction", "alpaca", required=True)
    user_input = _string(obj, "input", "alpaca", required=False)
    output = _string(obj, "output", "alpaca", required=True)
    system = _string(obj, "system", "alpaca", required=False)
    if not instruction.strip():
        raise BadRow("field 'instruction' is empty", "write the task or question in 'instruction', or remove the line")
    if not output.strip():
        raise BadRow("empty answer: nothing to learn ('output' is empty)",
                     "write the expected answer in 'output', or remove the line")
    turns = prompt_turns(instruction, user_input, system, instruction_turn=instruction_turn)
    return turns + [{"role": "assistant", "content": output}]


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
            raise BadRow(f"missing field '{key}'", f"add '{key}': every prompt_completion row needs "
                                                 f"{EXPECTED_KEYS['prompt_completion']}")
    prompt, completion = obj["prompt"], obj["completion"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise BadRow("field 'prompt' is empty", "write the question in 'prompt', or remove the line")
        head = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list):
        head = _turns(prompt, "prompt", "role", "content", _MESSAGE_ROLES)
    else:
        raise BadRow(f"field 'prompt' is {describe(prompt)}, expected a string or a list of messages",
                     "write 'prompt' as a string, or as a list of {\"role\", \"content\"} objects")
    if isinstance(completion, str):
        if not completion.strip():
            raise BadRow("empty answer: nothing to learn ('completion' is empty)",
                         "write the expected answer in 'completion', or remove the line")
        tail = [{"role": "assistant", "content": completion}]
    elif isinstance(completion, list):
        tail = _turns(completion, "completion", "role", "content", {"assistant": "assistant"})
    else:
        raise BadRow(f"field 'completion' is {describe(completion)}, expected a string or a list of messages",
                     "write 'completion' as a string, or as a list of {\"role\": \"assistant\", \"content\"} objects")
    return _conversation(head + tail)


def _text_row(obj: dict) -> str:
    text = _string(obj, "text", "text", required=True)
    if not text.strip():
        raise BadRow("empty text: nothing to learn ('text' is empty)", "write the training text, or remove the line")
    return text


_CONVERTERS = {"messages": _messages, "sharegpt": _sharegpt,
               "prompt_completion": _prompt_completion}


def _turns(items: Any, key: str, role_key: str, content_key: str, roles: dict[str, str]) -> list[dict[str, str]]:
    """Validate a list of turn objects and map them to {"role", "content"}."""
    allowed = ", ".join(f"'{r}'" for r in roles)
    example = f"[{{\"{role_key}\": \"{next(iter(roles))}\", \"{content_key}\": \"...\"}}]"
    if not isinstance(items, list):
        raise BadRow(f"field '{key}' is {describe(items)}, expected a list of turns",
                     f"write '{key}' as a list, e.g. {example}")
    if not items:
        raise BadRow(f"field '{key}' is an empty list", "add the turns of the conversation, or remove the line")
    out = []
    for i, turn in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise BadRow(f"{where} is {describe(turn)}, expected an object with '{role_key}' and '{content_key}'",
                         f"write each turn as an object, e.g. {example}")
        if role_key not in turn:
            raise BadRow(f"{where} has no '{role_key}'", f"add '{role_key}' (one of {allowed}) to each turn")
        role = turn[role_key]
        if not isinstance(role, str) or role not in roles:
            if key == "completion" and isinstance(role, str) and role in _MESSAGE_ROLES:
                fix = "completion turns must be assistant turns; move the other turns into 'prompt'"
            elif isinstance(role, str) and role.strip().lower() in roles:
                fix = f"write the {role_key} in lowercase: '{role.strip().lower()}'"
            else:
                fix = f"use one of {allowed}"
            raise BadRow(f"{where} has {role_key} {_value(role)}; expected one of {allowed}", fix)
        if content_key not in turn:
            raise BadRow(f"{where} has no '{content_key}'", f"add '{content_key}' with the text of the turn")
        content = turn[content_key]
        if not isinstance(content, str):
            raise BadRow(f"{where}.{content_key} is {describe(content)}, expected a string",
                         f"write '{content_key}' as plain text (one JSON string)")
        mapped = roles[role]
        if mapped == "assistant" and not content.strip():
            raise BadRow(f"empty answer: nothing to learn ({where}.{content_key} is empty)",
                         "write the assistant's answer, or remove the turn or the line")
        out.append({"role": mapped, "content": content})
    return out


def _conversation(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    roles = [t["role"] for t in turns]
    if "assistant" not in roles:
        raise BadRow("the conversation has no assistant turn: nothing to learn",
                     "add the assistant's answer, or remove the line")
    if "user" not in roles:
        raise BadRow("the conversation has no user turn", "add the user's message before the assistant's answer")
    if roles[-1] != "assistant":
        raise BadRow(f"the conversation ends with a {roles[-1]} turn, nothing to learn",
                     "end the conversation with the assistant's answer, or drop the last turn")
    return turns


# --------------------------------------------------------------------------- wording helpers


def clip(text: str, limit: int = 40) -> str:
    """The text cut to `limit` characters, "..." marking the cut: how a user's value is quoted in a message."""
    return text if len(text) <= limit else text[:limit] + "..."


def _scalar(value: bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return clip(repr(value), 30)


def describe(value: Any) -> str:
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
    return repr(clip(value, 30)) if isinstance(value, str) else describe(value)


def _keys(obj: dict, limit: int = 8) -> str:
    shown = ", ".join(repr(clip(k, 30)) for k in islice(obj, limit))
    return shown + (f" and {len(obj) - limit} more" if len(obj) > limit else "")
