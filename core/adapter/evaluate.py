"""Did it learn: greedy answers on held-out rows, exact match, similarity and eval loss (base vs adapter)."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

from core.data.examples import Example, example_to_prompt_and_answer, flat
from core.errors import InputError
from core.presets import BUNDLED_MODEL

Say = Callable[[str], None]


@dataclass
class RowResult:
    line: int
    prompt: str
    reference: str
    answer: str
    exact: bool
    similarity: float


@dataclass
class EvalResult:
    label: str  # "base" or "adapter"
    rows: list[RowResult] = field(default_factory=list)
    eval_loss: float | None = None

    @property
    def exact_match(self) -> float:
        return sum(r.exact for r in self.rows) / len(self.rows) if self.rows else 0.0

    @property
    def similarity(self) -> float:
        return sum(r.similarity for r in self.rows) / len(self.rows) if self.rows else 0.0

    def to_dict(self) -> dict:
        return {"label": self.label, "exact_match": self.exact_match, "similarity": self.similarity,
                "eval_loss": self.eval_loss, "rows": [r.__dict__ for r in self.rows]}


@dataclass
class HeldOut:
    """The rows an evaluation scores and the base model it loads."""

    model: str
    examples: list[Example]
    split: str  # "eval": the run's own held-out rows; "all": every chat row of the file
    total: int  # chat rows in that split, before `limit`

    def describe(self, dataset: str) -> str:
        n = len(self.examples)
        if self.split == "eval":
            text = f"{n} held-out rows of {dataset} (the run's eval split"
            return text + (f", first {n} of {self.total})" if n < self.total else ")")
        return (f"{n} rows of {dataset} (all rows: this adapter's held-out split of this file is not known"
                + (f"; first {n} of {self.total})" if n < self.total else ")"))


def read_run_record(adapter: str | None) -> dict:
    """The adapter's run.json ({} without one); refuses a folder that is not an adapter, or a damaged record."""
    from core.runs.output import adapter_folder, read_run_json

    if not adapter:
        return {}
    return read_run_json(adapter_folder(adapter))


def held_out(dataset: str, adapter: str | None, *, model: str | None = None, split: str = "eval",
             limit: int | None = None, skip_invalid: bool = False) -> HeldOut:
    """What `evaluate` scores: with split "eval", the adapter run's held-out rows (same fraction and seed as its
    run.json) when the file is the one it trained on, otherwise every row; chat rows only, the first `limit`."""
    from core.data.dataset import read_dataset
    from core.data.examples import split_examples

    from core.data.layout import trained_turn

    record = read_run_record(adapter)
    report = read_dataset(dataset, skip_invalid=skip_invalid, instruction_turn=trained_turn(record))
    model = model or record.get("config", {}).get("model") or BUNDLED_MODEL
    examples, used = report.examples, "all"
    if split == "eval" and record.get("dataset", {}).get("sha256") == report.sha256:
        cfg = record["config"]
        _, examples = split_examples(report.examples, cfg["eval_fraction"], cfg["seed"])
        used = "eval"
    chat = [e for e in examples if e.text is None]
    if not chat[:limit]:
        raise InputError("no chat rows to evaluate", hint="use --split all or another dataset")
    return HeldOut(model, chat[:limit], used, len(chat))


def load_for_eval(model: str, adapter: str | None, trust_remote_code: bool = False):
    import torch
    from transformers import AutoModelForCausalLM

    from core.libraries import quiet_libraries
    from core.models import resolve, tokenizer_from

    quiet_libraries()  # transformers' "Loading weights" bar came before evaluate's first line
    path = resolve(model, trust_remote_code=trust_remote_code)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    tok = tokenizer_from(adapter or path)
    base = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, trust_remote_code=trust_remote_code).to(device)
    base.eval()
    if adapter is None:
        return tok, base, None
    from peft import PeftModel

    return tok, base, PeftModel.from_pretrained(base, str(adapter)).eval()


@dataclass(frozen=True)
class Fitting:
    """How the run laid out and fitted rows (its run.json): evaluation and chat build and cut prompts the same way.
    `instruction_turn` is the layout the run trained with (core.data.layout); `instruction` the instruction most
    of its rows share, which chat sends with each prompt as a row would be."""

    max_length: int = 1024
    truncation: str = "keep-answer"
    instruction_turn: str = "system"
    instruction: str | None = None

    @classmethod
    def of(cls, adapter: str | None) -> "Fitting":
        from core.data.layout import trained_turn

        record = read_run_record(adapter) if adapter else {}
        config, layout = record.get("config", {}), record.get("prompt_layout") or {}
        return cls(config.get("max_length", cls.max_length), config.get("truncation", "keep-answer"),
                   trained_turn(record), layout.get("instruction"))

    def lay_out(self, tok, examples: list[Example]) -> list[Example]:
        """The rows laid out as training laid them out for this tokenizer."""
        from core.data.layout import instruction_turn_for, lay_out

        return lay_out(examples, instruction_turn_for(tok, self.instruction_turn))


def prompt_of(tok, example: Example, fitting: Fitting = Fitting()) -> list[dict]:
    """The turns before the answer as training saw them: with keep-answer, a long row's input is cut by the same
    rule (core/data/truncation.py) with the reference answer in place, so the prompt is the trained one token for
    token; right and drop leave prompts whole (training never saw such a row's answer)."""
    if fitting.truncation == "keep-answer":
        from core.data.truncation import fit

        fitted = fit(tok, example, fitting.max_length, "keep-answer")
        if fitted.messages is not None and fitted.outcome != "fits":
            example = Example(example.line, fitted.messages, raw=example.raw)
    return example_to_prompt_and_answer(example)[0]


def generate_answers(tok, model, examples: list[Example], max_new_tokens: int = 96, batch_size: int = 8,
                     on_batch: Callable[[int, int], None] | None = None, max_time: float | None = None,
                     fitting: Fitting = Fitting()) -> list[str]:
    return generate_replies(tok, model, [prompt_of(tok, e, fitting) for e in examples], max_new_tokens,
                            batch_size, on_batch, max_time)


def generate_replies(tok, model, conversations: list[list[dict]], max_new_tokens: int = 96, batch_size: int = 8,
                     on_batch: Callable[[int, int], None] | None = None,
                     max_time: float | None = None, cut: list[bool] | None = None) -> list[str]:
    """Greedy replies to each conversation; `on_batch(first, last)` (1-based rows) before each batch;
    `max_time` (seconds) cuts each batch's generation short (a bounded check), and `cut`, when given, gets for each
    row whether the time limit stopped it (no end of turn, fewer than `max_new_tokens` tokens): such an answer is
    unfinished, not wrong."""
    import torch

    from core.data.spans import stop_token_ids

    prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    answers: list[str] = []
    tok.padding_side = "left"
    stop = stop_token_ids(tok)
    device = next(model.parameters()).device
    for i in range(0, len(prompts), batch_size):
        if on_batch:
            on_batch(i + 1, min(i + batch_size, len(prompts)))
        enc = tok(prompts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                                 eos_token_id=stop, max_time=max_time)
        for row in out[:, enc["input_ids"].shape[1]:]:
            answers.append(tok.decode(row, skip_special_tokens=True).strip())
            if cut is not None:
                ended = any(int(t) in stop for t in row)
                cut.append(not ended and row.shape[0] < max_new_tokens)
    return answers


def eval_loss(tok, model, examples: list[Example], max_length: int = 1024,
              truncation: str = "keep-answer") -> float | None:
    import torch

    from core.data.render import features

    total, count = 0.0, 0
    device = next(model.parameters()).device
    for e in examples:
        f = features(tok, e, max_length, truncation)
        if f.n_trained == 0:
            continue
        ids = torch.tensor([f.input_ids], device=device)
        labels = torch.tensor([f.labels], device=device)
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss
        total += float(loss) * f.n_trained
        count += f.n_trained
    return total / count if count else None


def score(label: str, examples: list[Example], answers: list[str], loss: float | None) -> EvalResult:
    result = EvalResult(label, eval_loss=loss)
    for e, a in zip(examples, answers):
        messages, ref = example_to_prompt_and_answer(e)
        prompt = messages[-1]["content"] if messages else ""
        sim = difflib.SequenceMatcher(None, flat(a), flat(ref)).ratio()
        result.rows.append(RowResult(e.line, prompt, ref, a, flat(a) == flat(ref), sim))
    return result


def evaluate(model: str, adapter: str | None, examples: list[Example], *, compare: bool = False,
             max_new_tokens: int = 96, on_progress: Say | None = None) -> list[EvalResult]:
    """Score the adapter (and the base model first, with `compare` or when no adapter is given).

    `on_progress(text)` is told each phase and batch; an exception it raises stops the evaluation there.
    """
    say = on_progress or (lambda text: None)
    say(f"loading {model}" + (" and the adapter" if adapter else ""))
    tok, base, tuned = load_for_eval(model, adapter)
    fitting = Fitting.of(adapter)
    examples = fitting.lay_out(tok, examples)
    results = []
    if tuned is None or compare:
        if tuned is not None:
            with tuned.disable_adapter():
                results.append(_score_model("base", tok, tuned, examples, max_new_tokens, say, fitting))
        else:
            results.append(_score_model("base", tok, base, examples, max_new_tokens, say, fitting))
    if tuned is not None:
        results.append(_score_model("adapter", tok, tuned, examples, max_new_tokens, say, fitting))
    return results


def _score_model(label, tok, model, examples, max_new_tokens, say: Say, fitting: Fitting) -> EvalResult:
    n = len(examples)
    answers = generate_answers(tok, model, examples, max_new_tokens, fitting=fitting,
                               on_batch=lambda first, last: say(f"{label}: answering rows {first}–{last} of {n}"))
    say(f"{label}: eval loss on {n} rows")
    return score(label, examples, answers, eval_loss(tok, model, examples, fitting.max_length, fitting.truncation))


class Chat:
    """An adapter loaded once; each prompt is answered by the base weights (adapter disabled) and by the adapter."""

    def __init__(self, adapter: str, model: str | None = None, max_new_tokens: int = 128) -> None:
        self.adapter = str(adapter)
        self.model = model or read_run_record(self.adapter).get("config", {}).get("model") or BUNDLED_MODEL
        self.max_new_tokens = max_new_tokens
        self.fitting = Fitting.of(self.adapter)
        self.tok, _, self.tuned = load_for_eval(self.model, self.adapter)

    def ask(self, prompt: str) -> tuple[str, str]:
        """(base answer, adapter answer), greedy, to `prompt` as a row's input: with the run's common instruction
        (`instruction`) laid out as training laid out its rows (core.data.layout), else as one user turn; a prompt
        longer than the run's max length (less room for the answer) is cut in its middle, as training cut long
        inputs (keep-answer)."""
        messages = [self.prompt_messages(prompt)]
        with self.tuned.disable_adapter():
            base = generate_replies(self.tok, self.tuned, messages, self.max_new_tokens)[0]
        return base, generate_replies(self.tok, self.tuned, messages, self.max_new_tokens)[0]

    @property
    def instruction(self) -> str | None:
        return self.fitting.instruction

    @property
    def instruction_turn(self) -> str:
        from core.data.layout import instruction_turn_for

        return instruction_turn_for(self.tok, self.fitting.instruction_turn)

    def prompt_messages(self, prompt: str) -> list[dict]:
        from core.data.layout import prompt_turns

        messages = prompt_turns(self.instruction or "", prompt, instruction_turn=self.instruction_turn)
        if self.fitting.truncation != "keep-answer":
            return messages
        from core.data.truncation import fit_prompt

        return fit_prompt(self.tok, messages, max(self.fitting.max_length - self.max_new_tokens, 64))[0]
