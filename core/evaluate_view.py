"""Plain-text rendering of evaluation results (base vs adapter side by side)."""
from __future__ import annotations

import textwrap


def render_results(results, width: int = 60) -> str:
    out = []
    for r in results:
        loss = f"{r.eval_loss:.4f}" if r.eval_loss is not None else "n/a"
        out.append(f"{r.label}: exact match {r.exact_match:.2f}, similarity {r.similarity:.2f}, eval loss {loss} "
                   f"({len(r.rows)} rows)")
    if not results:
        return ""
    for i, row in enumerate(results[0].rows):
        out.append("")
        out.append(f"line {row.line}: {textwrap.shorten(row.prompt, 100)}")
        out.append(f"  reference: {row.reference}")
        for r in results:
            x = r.rows[i]
            out.append(f"  {r.label + (' ✓' if x.exact else ' ✗'):<10} {x.answer}")
    return "\n".join(out)
