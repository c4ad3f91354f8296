"""Deterministic generator of realistic GenAptitude export rows (Alpaca-style JSON Lines).

GenAptitude's Rust exporter writes one JSON object per line with exactly three string fields:
``instruction``, ``input`` (usually a whole serialized Arcadia model element, i.e. a string that
contains JSON) and ``output``.  This module fabricates such rows for tests and for the bundled
sample ``dataset.jsonl``.

The rows are built so that a very small model can *visibly* learn them: each instruction type has
ONE fixed French answer template, and every slot of that template is either copied verbatim from a
field of the input document, or taken from a fixed 5-entry mapping (Arcadia layer code -> label).
Names, ids, collections and spaces are drawn combinatorially, so held-out rows carry values never
seen in training: the model has to copy, not memorise.

Instruction types (``TEMPLATES``):

* ``collection``  "Analyser cet élément technique du domaine {domain}."
                  -> "L'entité appartient à la collection '{collection}' dans l'espace projet '{space}'."
* ``criticality`` "Évaluer la criticité de ce composant du domaine {domain}."
                  -> "Le composant '{name}' est de niveau de criticité {criticality} et relève de la couche {layer_label} ({layer})."
* ``allocation``  "Identifier l'allocation de cette fonction du domaine {domain}."
                  -> "La fonction '{name}' est allouée au composant '{parent.name}'."
* ``exchange``    "Décrire cet échange du domaine {domain}."
                  -> "L'échange '{name}' relie '{source.name}' à '{target.name}'."
* ``requirement`` "Vérifier le statut de cette exigence du domaine {domain}."
                  -> "L'exigence '{id}' est au statut '{status}'."
* ``layer`` (empty input) "Quel est le rôle de la couche {code} dans la méthode Arcadia ?"
                  -> one fixed sentence per code (LAYER_ANSWERS), e.g.
                     "Dans la méthode Arcadia, la couche LA est celle de l'architecture logique."

Usage::

    python tests/genexport.py [--seed N] [--rows N] [--out PATH]

Writes to stdout by default; UTF-8 without BOM, LF line endings, ``ensure_ascii=False`` so accents
stay readable.  ``generate(seed, rows)`` and ``write_jsonl(rows, path)`` are importable.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from pathlib import Path
from typing import Any, Iterable

if __package__ in (None, ""):  # run as a script (python tests/genexport.py): the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.genexport_words import (  # noqa: E402
                                   AUTHORS, COLLECTION_NOUNS, COMMON_EXCHANGES, COMPONENTS, COMPONENT_KINDS,
                                   DESC_TEMPLATES, DOMAINS, DOMAIN_CODE, DOMAIN_SLUG, ELEMENT_STATUSES, EXCHANGES,
                                   EXCHANGE_KINDS, FUNCTIONS, FUNCTION_KINDS, FUNC_SUFFIXES, INSTRUCTIONS,
                                   LAYER_ANSWERS, LAYER_LABELS, OTHER_KINDS, QUALIFIERS, REQ_SUBJECTS, SPACE_PREFIXES,
                                   STATUSES, TAGS, TEMPLATES, USES_DAL)

# --------------------------------------------------------------------------- helpers

MIN_INPUT = 250
MAX_INPUT = 700
EMPTY_FRACTION = 0.075
#: Long documents (`long_fraction`): the whole element with its revision history, 3,600-4,600 characters (about
#: 2,000 SmolLM2 tokens), as the exporter serialises elements that carry one. The history sits between the
#: element's own fields and its collection/space, so every answer slot stays at the document's start or end.
LONG_INPUT = (3600, 4600)


def dumps_doc(doc: dict[str, Any]) -> str:
    """Serialize an element the way the `input` field carries it (readable accents)."""
    return json.dumps(doc, ensure_ascii=False)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _elem_id(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.7:
        return _uuid(rng)
    if r < 0.85:
        return str(rng.randint(1, 9999))
    return f"_{rng.getrandbits(40):010x}"


def _component_name(rng: random.Random, domain: str) -> str:
    base = rng.choice(COMPONENTS[domain])
    r = rng.random()
    if r < 0.45:
        return f"{base} {rng.choice(QUALIFIERS)}"
    if r < 0.75:
        return f"{base} n°{rng.randint(1, 12)}"
    if r < 0.85:
        return f"{base} {rng.choice('ABCDEFGH')}{rng.randint(1, 4)}"
    return base


def _function_name(rng: random.Random, domain: str) -> str:
    base = rng.choice(FUNCTIONS[domain])
    r = rng.random()
    if r < 0.6:
        return f"{base} {rng.choice(FUNC_SUFFIXES)}"
    if r < 0.8:
        return f"{base} ({rng.choice('ABCDEFGH')}{rng.randint(1, 9)})"
    return base


def _exchange_name(rng: random.Random, domain: str) -> str:
    base = rng.choice(EXCHANGES[domain] + COMMON_EXCHANGES[:2])
    r = rng.random()
    if r < 0.5:
        return f"{base} {rng.choice(['primaire', 'secondaire', 'voie A', 'voie B', 'de secours', 'redondant'])}"
    if r < 0.8:
        return f"{base} n°{rng.randint(1, 20)}"
    return base


def _collection(rng: random.Random, domain: str) -> str:
    name = f"{DOMAIN_SLUG[domain]}_{rng.choice(COLLECTION_NOUNS)}"
    r = rng.random()
    if r < 0.35:
        name += f"_v{rng.randint(1, 9)}"
    elif r < 0.55:
        name += f"_{rng.randint(2019, 2026)}"
    return name


def _space(rng: random.Random) -> str:
    prefix = rng.choice(SPACE_PREFIXES)
    r = rng.random()
    if r < 0.4:
        return f"{prefix}{rng.randint(1, 99)}"
    if r < 0.7:
        letters = "".join(rng.choice("abcdefghjkmnpqrstuvwxyz") for _ in range(rng.randint(2, 4)))
        return f"{prefix}-{letters}{rng.randint(1, 9)}"
    return f"{prefix}_{rng.choice(['a320', 'tgv', 'sat', 'frégate', 'réseau', 'rer', 'drone', 'ariane'])}{rng.randint(1, 30)}"


def _criticality(rng: random.Random, domain: str) -> str:
    if domain in USES_DAL:
        return f"DAL {rng.choice('ABCDE')}"
    return f"SIL {rng.randint(0, 4)}"


def _description(rng: random.Random, domain: str) -> str:
    ref = rng.choice([f"{DOMAIN_CODE[domain]}-NT-{rng.randint(1, 999):03d}", f"DDJ-{rng.randint(10, 99)}",
                      f"REV-{rng.randint(1, 40)}", f"ED-{rng.randint(100, 999)}"])
    return rng.choice(DESC_TEMPLATES).format(ref=ref)


def _optional_fields(rng: random.Random, domain: str) -> list[tuple[str, Any]]:
    """Realistic extras (nested objects, lists, quotes); added in random subsets to vary length."""
    extras: list[tuple[str, Any]] = [
        ("description", _description(rng, domain)),
        ("status", rng.choice(ELEMENT_STATUSES)),
        ("properties", {"version": f"{rng.randint(1, 5)}.{rng.randint(0, 9)}",
                        "auteur": rng.choice(AUTHORS),
                        "validé": rng.random() < 0.5}),
        ("tags", rng.sample(TAGS, rng.randint(1, 3))),
        ("modifiedAt", f"20{rng.randint(21, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                       f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"),
    ]
    rng.shuffle(extras)
    return extras


def _finish(rng: random.Random, core: list[tuple[str, Any]], tail: list[tuple[str, Any]],
            domain: str) -> dict[str, Any]:
    """core fields first, then a random subset of extras, then tail (collection/space); 250-700 chars."""
    taken = {k for k, _ in core + tail}
    extras = [(k, v) for k, v in _optional_fields(rng, domain) if k not in taken]
    keep = rng.randint(1, len(extras))
    chosen = extras[:keep]
    spare = extras[keep:]

    def build() -> dict[str, Any]:
        return dict(core + chosen + tail)

    doc = build()
    while len(dumps_doc(doc)) > MAX_INPUT and chosen:
        chosen.pop()
        doc = build()
    while len(dumps_doc(doc)) < MIN_INPUT and spare:
        chosen.append(spare.pop())
        doc = build()
    n = len(dumps_doc(doc))
    if not MIN_INPUT <= n <= MAX_INPUT:  # pragma: no cover - vocabularies are sized to avoid this
        raise AssertionError(f"generated input of {n} chars is outside {MIN_INPUT}-{MAX_INPUT}")
    return doc


def _tail(rng: random.Random, domain: str) -> list[tuple[str, Any]]:
    return [("collection", _collection(rng, domain)), ("space", _space(rng))]


# --------------------------------------------------------------------------- row builders

def _row_collection(rng: random.Random, domain: str) -> dict[str, str]:
    pick = rng.random()
    if pick < 0.4:
        kind, layer = rng.choice(COMPONENT_KINDS)
        name = _component_name(rng, domain)
    elif pick < 0.7:
        kind, layer, _ = rng.choice(FUNCTION_KINDS)
        name = _function_name(rng, domain)
    else:
        kind, layer = rng.choice(OTHER_KINDS)
        name = rng.choice(REQ_SUBJECTS[domain]) if kind != "ExchangeItem" else _exchange_name(rng, domain)
    core = [("id", _elem_id(rng)), ("kind", kind), ("name", name), ("layer", layer)]
    tail = _tail(rng, domain)
    doc = _finish(rng, core, tail, domain)
    out = TEMPLATES["collection"].format(collection=doc["collection"], space=doc["space"])
    return _row("collection", domain, doc, out)


def _row_criticality(rng: random.Random, domain: str, layer: str | None = None) -> dict[str, str]:
    if layer is None:
        layer = rng.choice(list(LAYER_LABELS))
    kind = rng.choice([k for k, lay in COMPONENT_KINDS if lay == layer])
    core = [("id", _elem_id(rng)), ("kind", kind), ("name", _component_name(rng, domain)),
            ("layer", layer), ("layerName", LAYER_LABELS[layer]), ("criticality", _criticality(rng, domain))]
    if rng.random() < 0.5:
        core.append(("allocatedFunctions", [_function_name(rng, domain) for _ in range(rng.randint(1, 3))]))
    doc = _finish(rng, core, _tail(rng, domain), domain)
    out = TEMPLATES["criticality"].format(name=doc["name"], criticality=doc["criticality"],
                                          layer_label=doc["layerName"], layer=doc["layer"])
    return _row("criticality", domain, doc, out)


def _row_allocation(rng: random.Random, domain: str) -> dict[str, str]:
    kind, layer, parent_kind = rng.choice(FUNCTION_KINDS)
    parent = {"id": _elem_id(rng), "kind": parent_kind, "name": _component_name(rng, domain)}
    core = [("id", _elem_id(rng)), ("kind", kind), ("name", _function_name(rng, domain)),
            ("layer", layer), ("parent", parent)]
    doc = _finish(rng, core, _tail(rng, domain), domain)
    out = TEMPLATES["allocation"].format(name=doc["name"], parent=doc["parent"]["name"])
    return _row("allocation", domain, doc, out)


def _row_exchange(rng: random.Random, domain: str) -> dict[str, str]:
    kind, ends = rng.choice(EXCHANGE_KINDS)
    layer = rng.choice(["SA", "LA", "PA"])
    if ends == "component":
        a, b = _component_name(rng, domain), _component_name(rng, domain)
        while b == a:
            b = _component_name(rng, domain)
    else:
        a, b = _function_name(rng, domain), _function_name(rng, domain)
        while b == a:
            b = _function_name(rng, domain)
    core = [("id", _elem_id(rng)), ("kind", kind), ("name", _exchange_name(rng, domain)), ("layer", layer),
            ("source", {"id": _elem_id(rng), "name": a}), ("target", {"id": _elem_id(rng), "name": b})]
    doc = _finish(rng, core, _tail(rng, domain), domain)
    out = TEMPLATES["exchange"].format(name=doc["name"], source=doc["source"]["name"], target=doc["target"]["name"])
    return _row("exchange", domain, doc, out)


def _row_requirement(rng: random.Random, domain: str) -> dict[str, str]:
    req_id = f"REQ-{DOMAIN_CODE[domain]}-{rng.randint(1, 9999):04d}"
    core = [("id", req_id), ("kind", "Requirement"), ("name", rng.choice(REQ_SUBJECTS[domain])),
            ("layer", rng.choice(["SA", "LA", "PA"])), ("status", rng.choice(STATUSES))]
    if rng.random() < 0.5:
        core.append(("tracedTo", [_component_name(rng, domain)]))
    doc = _finish(rng, core, _tail(rng, domain), domain)
    out = TEMPLATES["requirement"].format(id=doc["id"], status=doc["status"])
    return _row("requirement", domain, doc, out)


def _row(kind: str, domain: str, doc: dict[str, Any], out: str) -> dict[str, str]:
    return {"instruction": INSTRUCTIONS[kind].format(domain=domain), "input": dumps_doc(doc), "output": out}


def _history(rng: random.Random, chars: int) -> list[dict[str, Any]]:
    """Revision records until the serialised list is about `chars` long."""
    out: list[dict[str, Any]] = []
    size = 2
    while size < chars:
        domain = rng.choice(DOMAINS)
        entry = {"révision": len(out) + 1,
                 "date": f"20{rng.randint(18, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                 "auteur": rng.choice(AUTHORS), "commentaire": _description(rng, domain),
                 "champsModifiés": rng.sample(["description", "status", "properties", "tags", "modifiedAt",
                                               "owner", "traces", "ports"], rng.randint(1, 3))}
        out.append(entry)
        size += len(dumps_doc(entry)) + 2
    return out


def lengthen(row: dict[str, str], rng: random.Random) -> dict[str, str]:
    """The row with its element's revision history added before `collection` (answer and other fields unchanged)."""
    doc = json.loads(row["input"])
    tail = {k: doc.pop(k) for k in ("collection", "space") if k in doc}
    doc["historique"] = _history(rng, rng.randint(*LONG_INPUT) - len(dumps_doc(doc)))
    doc.update(tail)
    return {**row, "input": dumps_doc(doc)}


def _row_layer(rng: random.Random) -> dict[str, str]:
    code = rng.choice(list(LAYER_LABELS))
    return {"instruction": INSTRUCTIONS["layer"].format(code=code, label=LAYER_LABELS[code]), "input": "",
            "output": LAYER_ANSWERS[code]}


_BUILDERS = {
    "collection": _row_collection,
    "criticality": _row_criticality,
    "allocation": _row_allocation,
    "exchange": _row_exchange,
    "requirement": _row_requirement,
}

# Cheap guard: the element-level statuses must never be mistaken for requirement statuses.
assert not set(STATUSES) & set(ELEMENT_STATUSES)
# Names are copied verbatim into answers: they must not need JSON escaping inside `input`.
assert not any('"' in n or "\\" in n for pool in (COMPONENTS, FUNCTIONS, EXCHANGES, REQ_SUBJECTS)
               for names in pool.values() for n in names)


# --------------------------------------------------------------------------- public API

def generate(seed: int = 0, rows: int = 240, long_fraction: float = 0.0) -> list[dict[str, str]]:
    """`rows` export rows, a pure function of (seed, rows, long_fraction). About 7.5 % have an empty `input`;
    `long_fraction` of all rows (taken among those with an input) carry a long document (LONG_INPUT)."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    rng = random.Random(seed)
    n_empty = round(rows * EMPTY_FRACTION)
    if rows >= 14:
        n_empty = max(n_empty, 1)
    kinds = list(_BUILDERS)
    codes = list(LAYER_LABELS)
    # Balanced plan: equal share per instruction type, and the criticality rows (the only ones whose
    # answer uses the layer-label mapping) cycle over the 5 layer codes so each label is well represented.
    plan: list[tuple[str, str | None]] = [("layer", None)] * n_empty
    for i in range(rows - n_empty):
        kind = kinds[i % len(kinds)]
        plan.append((kind, codes[(i // len(kinds)) % len(codes)] if kind == "criticality" else None))
    rng.shuffle(plan)
    out: list[dict[str, str]] = []
    for kind, layer in plan:
        if kind == "layer":
            out.append(_row_layer(rng))
        elif kind == "criticality":
            out.append(_row_criticality(rng, rng.choice(DOMAINS), layer))
        else:
            out.append(_BUILDERS[kind](rng, rng.choice(DOMAINS)))
    if long_fraction > 0:  # a separate generator: the rows themselves stay those of (seed, rows)
        long_rng = random.Random(seed * 7919 + 17)
        with_input = [i for i, r in enumerate(out) if r["input"]]
        long_rng.shuffle(with_input)
        for i in sorted(with_input[:round(rows * long_fraction)]):
            out[i] = lengthen(out[i], long_rng)
    return out


def to_jsonl(rows: Iterable[dict[str, str]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_jsonl(rows: Iterable[dict[str, str]], path: str | None = None) -> None:
    """Write rows as JSON Lines (UTF-8, no BOM, LF). `path` None or "-" means stdout."""
    data = to_jsonl(rows).encode("utf-8")
    if path is None or path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        with open(path, "wb") as f:
            f.write(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate deterministic GenAptitude-style export rows (JSONL).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=240)
    ap.add_argument("--out", default=None, help="output path (default: stdout)")
    ap.add_argument("--long-fraction", type=float, default=0.0,
                    help="fraction of rows whose input is a long document (~2,000 tokens), e.g. 0.5")
    args = ap.parse_args(argv)
    if args.rows < 0:
        ap.error("--rows must be >= 0")
    if not 0 <= args.long_fraction <= 1:
        ap.error("--long-fraction must be between 0 and 1")
    write_jsonl(generate(args.seed, args.rows, args.long_fraction), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
