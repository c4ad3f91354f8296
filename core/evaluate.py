"""Did it learn: greedy answers on held-out rows, exact match, similarity and eval loss (base vs adapter)."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from .dataset import Example, example_to_prompt_and_answer


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


def normalise(text: str) -> str:
    return " ".join(text.split())


def load_for_eval(model: str, adapter: str | None, trust_remote_code: bool = False):
    import torch
    from transformers import AutoModelForCausalLM

    from .models import resolve
    from .render import tokenizer_from

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


def generate_answers(tok, model, examples: list[Example], max_new_tokens: int = 96, batch_size: int = 8) -> list[str]:
    import torch

    prompts = [tok.apply_chat_template(example_to_prompt_and_answer(e)[0], tokenize=False, add_generation_prompt=True)
               for e in examples]
    answers: list[str] = []
    tok.padding_side = "left"
    device = next(model.parameters()).device
    for i in range(0, len(prompts), batch_size):
        enc = tok(prompts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
        for row in out[:, enc["input_ids"].shape[1]:]:
            answers.append(tok.decode(row, skip_special_tokens=True).strip())
    return answers


def eval_loss(tok, model, examples: list[Example], max_length: int = 1024) -> float | None:
    import torch

    from .render import features

    total, count = 0.0, 0
    device = next(model.parameters()).device
    for e in examples:
        f = features(tok, e, max_length)
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
        sim = difflib.SequenceMatcher(None, normalise(a), normalise(ref)).ratio()
        result.rows.append(RowResult(e.line, prompt, ref, a, normalise(a) == normalise(ref), sim))
    return result


def evaluate(model: str, adapter: str | None, examples: list[Example], *, compare: bool = False,
             max_new_tokens: int = 96) -> list[EvalResult]:
    """Score the adapter (and the base model first, with `compare` or when no adapter is given)."""
    tok, base, tuned = load_for_eval(model, adapter)
    results = []
    if tuned is None or compare:
        if tuned is not None:
            with tuned.disable_adapter():
                results.append(_score_model("base", tok, tuned, examples, max_new_tokens))
        else:
            results.append(_score_model("base", tok, base, examples, max_new_tokens))
    if tuned is not None:
        results.append(_score_model("adapter", tok, tuned, examples, max_new_tokens))
    return results


def _score_model(label, tok, model, examples, max_new_tokens) -> EvalResult:
    answers = generate_answers(tok, model, examples, max_new_tokens)
    return score(label, examples, answers, eval_loss(tok, model, examples))
