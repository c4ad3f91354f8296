"""`check`: validate a dataset, detect its format and count tokens with the chosen model's tokenizer."""
from __future__ import annotations

from .dataset import FORMAT_LABELS, read_dataset


def check_dataset(path: str, *, model: str | None, max_length: int, skip_invalid: bool = False) -> dict:
    report = read_dataset(path, skip_invalid=skip_invalid)
    result = {
        "path": report.path,
        "format": report.format,
        "format_label": FORMAT_LABELS.get(report.format, report.format),
        "rows": len(report.examples),
        "blank_lines": report.blank_lines,
        "skipped": [{"line": p.line, "message": p.message, "fix": p.fix} for p in report.problems],
        "sha256": report.sha256,
        "tokens": None,
    }
    if model:
        from .render import length_stats, load_tokenizer, render_example

        tok = load_tokenizer(model)
        result["tokens"] = {"model": model, **length_stats(tok, report.examples, max_length).to_dict()}
        sample = render_example(tok, report.examples[0], max_length)
        result["sample"] = {"line": report.examples[0].line, "text": "".join(t for t, _ in sample.segments),
                            "trained_text": "".join(t for t, trained in sample.segments if trained),
                            "n_tokens": sample.n_tokens, "n_trained": sample.n_trained}
    return result


def render_check(r: dict) -> str:
    lines = [f"{r['path']}: {r['rows']} valid rows, format: {r['format_label']}"]
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
        s = r["sample"]
        lines.append(f"  sample (line {s['line']}), {s['n_tokens']} tokens, {s['n_trained']} trained:")
        lines.append("    as the model sees it: " + s["text"].replace("\n", "\\n")[:600])
        lines.append("    loss on:              " + s["trained_text"].replace("\n", "\\n"))
    lines.append("OK")
    return "\n".join(lines)
