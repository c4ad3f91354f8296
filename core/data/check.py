"""`check`: validate a dataset, detect its format and count tokens with the chosen model's tokenizer."""
from __future__ import annotations

from core.data.dataset import read_dataset
from core.data.formats import FORMAT_LABELS


def check_dataset(path: str, *, model: str | None, max_length: int, skip_invalid: bool = False,
                  truncation: str = "keep-answer", instruction_turn: str = "system") -> dict:
    report = read_dataset(path, skip_invalid=skip_invalid, instruction_turn=instruction_turn)
    result = {
        "path": report.path,
        "format": report.format,
        "format_label": FORMAT_LABELS.get(report.format, report.format),
        "rows": len(report.examples),
        "blank_lines": report.blank_lines,
        "skipped": [{"line": p.line, "message": p.message, "fix": p.fix} for p in report.problems],
        "sha256": report.sha256,
        "tokens": None,
        # instruction/input rows: where the instruction goes (core.data.layout); the model's template may change it
        "instruction_turn": instruction_turn if report.format == "alpaca" else None,
        "instruction_turn_setting": instruction_turn,
    }
    if model:
        from core.data.layout import instruction_turn_for, lay_out
        from core.data.render import length_stats, render_example
        from core.data.truncation import long_rows_text
        from core.models import load_tokenizer

        tok = load_tokenizer(model)
        if report.format == "alpaca":
            result["instruction_turn"] = instruction_turn_for(tok, instruction_turn)
            report.examples = lay_out(report.examples, result["instruction_turn"])
        stats = length_stats(tok, report.examples, max_length)
        result["tokens"] = {"model": model, "truncation": truncation, **stats.to_dict(),
                            "long_rows": long_rows_text(stats, truncation)}
        # The sample is the first row over max length when there is one (among the first 200): it shows the cut.
        sample_row, sample = report.examples[0], render_example(tok, report.examples[0], max_length, truncation)
        for e in report.examples[1:200] if stats.over_max and not sample.truncated else ():
            if (r := render_example(tok, e, max_length, truncation)).truncated:
                sample_row, sample = e, r
                break
        result["sample"] = {"line": sample_row.line, "text": "".join(t for t, _ in sample.segments),
                            "trained_text": "".join(t for t, trained in sample.segments if trained),
                            "n_tokens": sample.n_tokens, "n_trained": sample.n_trained,
                            "outcome": sample.outcome, "n_before": sample.n_before,
                            "cut_tokens": sample.cut_tokens, "answer_lost": sample.answer_lost}
    return result


def render_check(r: dict) -> str:
    lines = [f"{r['path']}: {r['rows']} valid rows, format: {r['format_label']}"]
    if r.get("instruction_turn"):
        from core.data.layout import describe

        other = "user" if r.get("instruction_turn_setting") == "system" else "system"
        lines.append(f"  prompts: {describe(r['instruction_turn'], r.get('instruction_turn_setting'))}; "
                     f"--instruction-turn {other} to change")
    if r["blank_lines"]:
        lines.append(f"  {r['blank_lines']} blank line(s) ignored")
    if r["skipped"]:
        lines.append(f"  skipped {len(r['skipped'])} invalid line(s) (--skip-invalid):")
        for p in r["skipped"][:20]:
            lines.append(f"    line {p['line']}: {p['message']}")
        if len(r["skipped"]) > 20:
            lines.append(f"    ... and {len(r['skipped']) - 20} more")
    t = r.get("tokens")
    if t:
        lines.append(f"  tokens ({t['model']}): min {t['min']}, median {t['median']}, p95 {t['p95']}, max {t['max']}; "
                     f"{t['over_max']} row(s) over --max-length {t['max_length']}")
        if t["over_max"]:
            lines += [f"  ⚠ {line}" for line in t["long_rows"]]
            s = t["suggested_max_length"]
            lines.append(f"  --max-length {s['p95']} would hold 95% of the rows as written, {s['all']} all of them")
        s = r["sample"]
        how = {"cut": f", input cut from {s['n_before']} tokens ({s['cut_tokens']} cut), answer whole",
               "answer-cut": f", {s['answer_lost']} answer tokens cut", "right": f", cut from {s['n_before']} "
               f"tokens ({s['answer_lost']} answer tokens lost)", "dropped": " (left out of training)"}
        lines.append(f"  sample (line {s['line']}), {s['n_tokens']} tokens, {s['n_trained']} trained"
                     f"{how.get(s['outcome'], '')}:")
        lines.append("    as the model sees it: " + _middle(s["text"].replace("\n", "\\n"), 600))
        lines.append("    loss on:              " + s["trained_text"].replace("\n", "\\n"))
    lines.append("OK")
    return "\n".join(lines)


def _middle(text: str, limit: int) -> str:
    """The start and end of a long text (a cut marker sits in the middle of a long row: show where it is)."""
    if len(text) <= limit:
        return text
    third = limit // 3
    at = text.find("…[")
    if at > third:
        return f"{text[:third]} ... {text[at - third // 2:at + third // 2]} ... {text[-third:]}"
    return f"{text[:limit // 2]} ... {text[-limit // 2:]}"
