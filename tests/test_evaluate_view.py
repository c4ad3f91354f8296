"""`evaluate --compare` as text: the scores, then each held-out row with base and adapter answers side by side."""
from core.adapter.evaluate import EvalResult, RowResult
from core.adapter.evaluate_view import render_results


def test_base_and_adapter_answers_share_lines_in_two_columns():
    prompt, ref = "Analyser cet élément technique du domaine safety.", "L'entité appartient à 'safety_rules' [un2]."
    base = EvalResult("base", [RowResult(3, prompt, ref, "Le contrôleur de freinage est un composant logique du "
                                                         "système, chargé de la décélération du train.", False, 0.3)],
                      2.8412)
    tuned = EvalResult("adapter", [RowResult(3, prompt, ref, ref, True, 1.0)], 0.3127)
    text = render_results([base, tuned], width=80)
    lines = text.splitlines()
    assert lines[:2] == ["base: exact match 0.00, similarity 0.30, eval loss 2.8412 (1 rows)",
                         "adapter: exact match 1.00, similarity 1.00, eval loss 0.3127 (1 rows)"]
    head = next(l for l in lines if "base ✗" in l)
    assert head.index("adapter ✓") > head.index("base ✗") + 20  # the adapter's column is to the right
    first = lines[lines.index(head) + 1]
    assert first.startswith("  Le contrôleur") and "L'entité appartient" in first
    assert all(len(l) <= 80 for l in lines)
