"""Plain-text rendering of evaluation results: the scores, then each row with base and adapter answers side by side."""
from __future__ import annotations

import itertools
import shutil
import textwrap

from core.events import loss_text


def render_results(results, width: int | None = None) -> str:
    if not results:
        return ""
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 160)
    out = []
    for r in results:
        out.append(f"{r.label}: exact match {r.exact_match:.2f}, similarity {r.similarity:.2f}, eval loss {loss_text(r.eval_loss)} "
                   f"({len(r.rows)} rows)")
    column = max((width - 2 * (len(results) - 1)) // len(results), 20)
    for i, row in enumerate(results[0].rows):
        out.append("")
        out.append(f"line {row.line}: {textwrap.shorten(row.prompt, max(width - 12, 40))}")
        out.append(f"  reference: {row.reference}")
        heads = [f"{r.label} {'✓' if r.rows[i].exact else '✗'}" for r in results]
        cells = [textwrap.wrap(r.rows[i].answer, column - 2) or ["(empty answer)"] for r in results]
        out.append("  " + "  ".join(h.ljust(column - 2) for h in heads).rstrip())
        for parts in itertools.zip_longest(*cells, fillvalue=""):
            out.append("  " + "  ".join(p.ljust(column - 2) for p in parts).rstrip())
    return "\n".join(out)
