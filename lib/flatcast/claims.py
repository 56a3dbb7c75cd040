"""The papers' claims that the book tests, and the verdicts its chapters reach.

:data:`CLAIMS` is the registry: one :class:`Claim` per claim (id, paper, the claim in one line, where the paper
makes it, the chapter that tests it). The intro shows :func:`claims_table`.

How a chapter publishes a verdict
---------------------------------
Verdicts come from committed result files, never from a chapter's quick run: the experiment's ``paper``-profile
runner (or the chapter, for a cheap exact check) calls :func:`write_verdicts`, which writes
``data/results/<chapter>_claims.json``::

    {"chapter": "toy_problem",
     "verdicts": {"samformer-toy-fails": {"verdict": "supported", "evidence": "val MSE 0.41 vs oracle 0.20"}},
     "provenance": {...}}

:func:`claims_table` reads every ``*_claims.json`` in the results folder and fills in the ``verdict`` and
``evidence`` columns; a claim without a result file stays ``"not yet tested"``. Unknown claim ids and verdicts
outside :data:`VERDICTS` raise, so a typo cannot silently drop a result.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

__all__ = ["Claim", "CLAIMS", "VERDICTS", "RESULTS_DIR", "claim", "claims_table", "read_verdicts",
           "write_verdicts"]

RESULTS_DIR = Path(__file__).resolve().parents[2] / "data" / "results"
NOT_TESTED = "not yet tested"
VERDICTS = ("supported", "partly supported", "not supported", "inconclusive", NOT_TESTED)
PAPERS = ("SAMformer", "EEO-TFV", "OCE-TS")


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    claim: str
    where: str
    chapter: str = ""  # the chapter (file stem in _toc.yml) that tests it; "" while none does yet


CLAIMS: dict[str, Claim] = {c.id: c for c in [
    Claim("samformer-toy-fails", "SAMformer",
          "On the linear toy problem a one-layer transformer trained with Adam misses the least-squares "
          "oracle, although it can represent the solution.", "§2.2, Fig. 1", "toy_problem"),
    Claim("samformer-random-beats-trained", "SAMformer",
          "A Random Transformer (attention frozen at initialisation) generalizes better than the trained one.",
          "§2.2, Figs. 1–2", "toy_problem"),
    Claim("samformer-entropy-collapse", "SAMformer",
          "The transformer's attention collapses to near-identity early in training (entropy collapse).",
          "§2.3, Fig. 3", "toy_problem"),
    Claim("samformer-sharpness", "SAMformer",
          "The transformer converges to a sharp minimum: a larger top Hessian eigenvalue λmax than with SAM.",
          "§2.3, Fig. 3b", "toy_problem"),
    Claim("samformer-sam-fixes-toy", "SAMformer",
          "Training the transformer with SAM reaches the oracle on the toy problem.", "§2.3, Fig. 2",
          "toy_problem"),
    Claim("samformer-sigma-reparam-fails", "SAMformer",
          "σReparam, which targets entropy collapse, does not close the gap to the oracle.", "§2.3, Fig. 2",
          "toy_problem"),
    Claim("samformer-not-the-optimizer", "SAMformer",
          "The failure is not the optimizer's: SGD, Adam and AdamW with weight decay all miss the oracle.",
          "App. C.3, Fig. 15", "toy_problem"),
    Claim("samformer-beats-tsmixer", "SAMformer",
          "SAMformer (channel-wise attention + RevIN + SAM) beats TSMixer by 14.33 % MSE on average over "
          "8 datasets × 4 horizons.", "§5, Table 1"),
    Claim("samformer-small", "SAMformer",
          "SAMformer has about 4× fewer parameters than TSMixer (and far fewer than other transformers).",
          "App. B.3, Table 8"),
    Claim("samformer-attention-ablation", "SAMformer",
          "Channel-wise learned attention beats identity and temporal attention.", "App. C.4, Tables 9–10"),
    Claim("eeo-beats-baselines", "EEO-TFV",
          "Training with the Escape-Explore Optimizer lowers the MSE/MAE of recent forecasters, SAMformer "
          "included, on 7 long-term benchmarks.", "Table 1, Table 5"),
    Claim("eeo-components", "EEO-TFV",
          "Each component (SAM step, escape, SGLD exploration, EMA) contributes: removing one raises the MSE.",
          "Table 4"),
    Claim("oce-order-aware", "OCE-TS",
          "Ordinal cross-entropy, unlike plain cross-entropy, penalises probability mass by its distance to "
          "the true bin.", "§3, Table 1"),
    Claim("oce-beats-mse", "OCE-TS",
          "DLinear trained with OCE on binned targets beats MSE-trained DLinear and recent forecasters.",
          "Table 2"),
    Claim("oce-noise-robust", "OCE-TS",
          "The advantage over MSE grows as the signal-to-noise ratio falls.", "Table 4, Table 6"),
]}


def claim(claim_id: str) -> Claim:
    """The :class:`Claim` called ``claim_id``; ``KeyError`` listing the known ids otherwise."""
    try:
        return CLAIMS[claim_id]
    except KeyError:
        raise KeyError(f"unknown claim {claim_id!r}: known claims are {sorted(CLAIMS)}") from None


def _check_verdicts(verdicts: dict, source: str) -> dict[str, dict[str, str]]:
    if not isinstance(verdicts, dict):
        raise ValueError(f"{source}: 'verdicts' must map claim ids to verdicts, got {type(verdicts).__name__}")
    out = {}
    for cid, entry in verdicts.items():
        claim(cid)
        if isinstance(entry, str):
            entry = {"verdict": entry}
        if not isinstance(entry, dict) or "verdict" not in entry:
            raise ValueError(f"{source}: the entry for {cid!r} needs a 'verdict', got {entry!r}")
        if entry["verdict"] not in VERDICTS:
            raise ValueError(f"{source}: verdict {entry['verdict']!r} for {cid!r} is not one of {VERDICTS}")
        out[cid] = {"verdict": entry["verdict"], "evidence": str(entry.get("evidence", ""))}
    return out


def write_verdicts(chapter: str, verdicts: dict, provenance: dict | None = None,
                   results_dir: str | os.PathLike | None = None) -> Path:
    """Write ``<results_dir>/<chapter>_claims.json`` (default ``data/results/``) and return its path.

    ``verdicts`` maps a claim id to a verdict string or to ``{"verdict": ..., "evidence": "..."}``.
    """
    if not isinstance(chapter, str) or not chapter or "/" in chapter:
        raise ValueError(f"chapter must be a chapter name such as 'toy_problem', got {chapter!r}")
    checked = _check_verdicts(verdicts, f"verdicts of chapter {chapter!r}")
    directory = Path(results_dir) if results_dir is not None else RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{chapter}_claims.json"
    payload = {"chapter": chapter, "verdicts": checked,
               "provenance": {"written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              **(provenance or {})}}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_verdicts(results_dir: str | os.PathLike | None = None) -> dict[str, dict[str, str]]:
    """All verdicts in ``<results_dir>/*_claims.json``: ``{claim id: {"verdict", "evidence", "chapter"}}``.

    A claim given a verdict by two files raises ``ValueError`` (one chapter owns each claim).
    """
    directory = Path(results_dir) if results_dir is not None else RESULTS_DIR
    found: dict[str, dict[str, str]] = {}
    for path in sorted(directory.glob("*_claims.json")) if directory.is_dir() else []:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        chapter = payload.get("chapter", path.name.removesuffix("_claims.json"))
        for cid, entry in _check_verdicts(payload.get("verdicts"), str(path)).items():
            if cid in found:
                raise ValueError(f"claim {cid!r} has verdicts from both {found[cid]['file']} and {path.name}")
            found[cid] = {**entry, "chapter": chapter, "file": path.name}
    return found


def claims_table(results_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per claim: id, paper, claim, where, chapter, verdict, evidence (verdicts merged from results)."""
    verdicts = read_verdicts(results_dir)
    rows = []
    for c in CLAIMS.values():
        row = asdict(c)
        v = verdicts.get(c.id, {})
        row["chapter"] = v.get("chapter") or c.chapter
        row["verdict"] = v.get("verdict", NOT_TESTED)
        row["evidence"] = v.get("evidence", "")
        rows.append(row)
    return pd.DataFrame(rows, columns=["id", "paper", "claim", "where", "chapter", "verdict", "evidence"])
