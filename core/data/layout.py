"""Where an instruction/input row's parts go in the chat (the prompt layout): the one owner of that rule, and of
the words every screen says it in. Training, `check`, the preview, the after-run check, `evaluate` and chat all
build their turns through `prompt_turns`.

RAISE (GenAptitude's successor, the program that answers with the trained model) prompts in ChatML with a system
turn, and its own trainer renders an export row as `instruction` -> system turn, `input` -> user turn, `output` ->
answer. An adapter learns the prompt it is trained on, so rows are laid out the way RAISE will ask: "system".
"user" keeps the earlier layout (instruction and input joined in the user turn, under the template's default
system prompt), for an adapter that is prompted that way (and for runs trained before the setting existed).

Pure standard library (the TUI reads datasets with it before any model loads); the template checks take a tokenizer.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

from core.data.examples import Example

INSTRUCTION_TURNS = ("system", "user")
BEFORE_THE_SETTING = "user"  # the layout of runs whose run.json predates the setting


def prompt_turns(instruction: str, user_input: str, system: str = "", *,
                 instruction_turn: str = "system") -> list[dict[str, str]]:
    """The turns before the answer for an instruction, an input and an optional system text.

    - A row's own `system` wins the system turn; the instruction and input then share the user turn.
    - "system": the instruction is the system turn and the input the user turn, as RAISE sends them.
      An empty input makes the instruction the user turn instead: such a row is a question on its own (most
      Alpaca-style rows are), which a chat sends as a user message; a system turn followed by an empty user turn is
      a prompt no runtime sends (RAISE always has a user text) and some templates refuse or drop empty turns.
    - "user": the instruction and input are joined (a blank line between) in the user turn.
    An empty instruction (a chat prompt with no instruction) leaves the input alone in the user turn.
    """
    if system.strip():
        return [{"role": "system", "content": system}, {"role": "user", "content": _join(instruction, user_input)}]
    if instruction_turn == "system" and instruction.strip() and user_input.strip():
        return [{"role": "system", "content": instruction}, {"role": "user", "content": user_input}]
    return [{"role": "user", "content": _join(instruction, user_input)}]


def _join(instruction: str, user_input: str) -> str:
    if not instruction.strip():
        return user_input
    return instruction if not user_input.strip() else instruction + "\n\n" + user_input


def describe(instruction_turn: str, setting: str | None = None) -> str:
    """The layout in words, for `check`, the run log and the TUI; `setting` the asked one when the model's template
    made it differ."""
    if instruction_turn == "system":
        text = "instruction → system turn, input → user turn, as RAISE prompts (empty input: instruction → user turn)"
    else:
        text = "instruction + input → user turn, under the template's default system prompt"
    if setting is not None and setting != instruction_turn:
        text += f" (instruction turn {setting} asked, but this model's chat template has no system role)"
    return text


def template_has_system(tok) -> bool:
    """Whether the tokenizer's chat template renders a system turn: some refuse one (raise_exception: Gemma's,
    early Mistral's), others drop it silently; both are told apart by rendering one."""
    if not getattr(tok, "chat_template", None):
        return True  # no template: `check` and training say so themselves; nothing to fall back from
    mark = "Qz8Wv system"
    try:
        text = tok.apply_chat_template([{"role": "system", "content": mark}, {"role": "user", "content": "q"}],
                                       tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - jinja2's TemplateError from raise_exception, or a template's TypeError
        return False
    return mark in text


def instruction_turn_for(tok, setting: str) -> str:
    """The layout that applies with this tokenizer: `setting`, or "user" where the template has no system role
    (the instruction then goes where it can be read at all: the user turn)."""
    if setting == "system" and not template_has_system(tok):
        return "user"
    return setting


def lay_out(examples: list[Example], instruction_turn: str) -> list[Example]:
    """The examples with their instruction/input rows laid out as `instruction_turn` says (rows already laid out
    that way, and rows of other formats, are the same objects)."""
    return [_relaid(e, instruction_turn) if e.layout not in (None, instruction_turn) else e for e in examples]


def _relaid(example: Example, instruction_turn: str) -> Example:
    raw = example.raw or {}
    answer = example.messages[-1]
    turns = prompt_turns(raw.get("instruction") or "", raw.get("input") or "", raw.get("system") or "",
                         instruction_turn=instruction_turn)
    return replace(example, messages=turns + [dict(answer)], layout=instruction_turn)


def common_instruction(examples: list[Example]) -> tuple[str, int] | None:
    """The instruction most instruction/input rows share and how many share it (chat offers it as the system turn)."""
    counts = Counter((e.raw or {}).get("instruction") for e in examples if e.layout is not None)
    counts.pop(None, None)
    return counts.most_common(1)[0] if counts else None


def trained_turn(record: dict) -> str:
    """The layout an adapter was trained with, from its run.json (`record`; {} for no adapter: the setting's
    default): its own record of it, else its config's setting; a run.json from before the setting existed was
    trained with the user-turn layout."""
    if not record:
        return INSTRUCTION_TURNS[0]
    layout = record.get("prompt_layout")
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    return ((layout.get("instruction_turn") if isinstance(layout, dict) else None)
            or config.get("instruction_turn") or BEFORE_THE_SETTING)


def chat_words(instruction: str | None, instruction_turn: str) -> str:
    """How chat sends a typed prompt, in words: as the input of a row with the run's common instruction."""
    if not instruction:
        return "your prompt is the user turn"
    where = "as the system turn" if instruction_turn == "system" else "before it in the user turn"
    return f"your prompt is the input, the run's instruction «{instruction}» {where}"
