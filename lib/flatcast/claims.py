"""The papers' claims that the book tests, and the verdicts its chapters reach.

:data:`CLAIMS` is the registry: one :class:`Claim` per claim (id, paper, the claim in one line, where the paper
makes it, the chapter that tests it). The intro shows :func:`claims_table`.

How a chapter publishes a verdict
---------------------------------
Verdicts come from committed result files, never from a chapter's quick run: the experiment's ``paper``-profile
runner (or the chapter, for a cheap exact check) calls :func:`write_verdicts`, which writes
``data/results/<chapter>_claims.json``::

    {"chapter": "toy_problem",
     "verdicts": {"S1": {"verdict": "supported", "evidence": "val MSE 2.5 × the Oracle's (paper profile)"}},
     "provenance": {...}}

:func:`claims_table` reads every ``*_claims.json`` in the results folder and fills in the ``verdict`` and
``evidence`` columns; a claim without a result file stays ``"not yet tested"``. Unknown claim ids and verdicts
outside :data:`VERDICTS` raise, so a typo cannot silently drop a result, and a chapter may only judge the claims
the registry assigns to it (``Claim.chapter``).

The registry holds every testable claim of the three papers, keyed by its number in the claims inventory
(``S1``–``S32`` SAMformer, ``E1``–``E20`` EEO-TFV, ``O1``–``O15`` OCE-TS). Each claim is one line in the paper's
own terms (its quotes, its magnitudes) with the section, figure, table or equation that makes it. Claims that
cannot be tested here carry the reason in ``untestable`` and no chapter. Where a claim has a weak and a strong
reading (e.g. "sharper" against "∼×10^4 sharper") the owning chapter grades its verdict ("partly supported") and
says in the evidence which reading holds.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd

__all__ = ["Claim", "CLAIMS", "VERDICTS", "RESULTS_DIR", "SIMILAR_TO_ADAM", "DIVERGED_FACTOR", "claim",
           "claims_table", "read_verdicts", "write_verdicts", "JUDGED", "cap_verdict", "merge_verdicts"]

RESULTS_DIR = Path(__file__).resolve().parents[2] / "data" / "results"
NOT_TESTED = "not yet tested"

# Thresholds shared by the chapters that judge SAMformer App. C.3's optimizer claims (S5 on the toy, S27 on real data)
#: "Similar behavior … than when it is trained with Adam" (App. C.3): within this relative distance of Adam's MSE.
SIMILAR_TO_ADAM = 0.2
#: SGD "leads to high-magnitude losses and divergence" / AdamW wd=1e-3 "does not converge": a final validation or test
#: MSE at least this many times Adam's (or a NaN).
DIVERGED_FACTOR = 3.0
VERDICTS = ("supported", "partly supported", "not supported", "inconclusive", NOT_TESTED)
#: The verdicts that judge a claim (the others say it has not been judged).
JUDGED = ("supported", "partly supported", "not supported")
PAPERS = ("SAMformer", "EEO-TFV", "OCE-TS")


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    claim: str
    where: str
    chapter: str = ""  # the chapter (file stem in _toc.yml) that tests it; "" while none does yet
    untestable: str = ""  # why it cannot be tested here (unavailable data, pretrained weights); "" if it can



# The inventory of every testable claim (../shared/reference/claims_inventory.md §1), keyed by its number there.
# Wording and locations checked against the paper texts (../shared/papers/) in the fidelity pass (issue 8): the
# toy claims quote §2.2–2.3 and Figs. 1–3 as printed; each chapter publishes verdicts under these ids.
INVENTORY_CLAIMS: list[Claim] = [
    Claim('S1', 'SAMformer', 'On the toy linear problem (Eq. 2), the one-layer channel-wise Transformer trained with Adam "fail[s] to recover W_toy": its validation loss stays above the least-squares Oracle ("a strong lack of generalization")', '§2.2 ¶Motivational Example, Fig. 2; §1 contribution 1; Fig. 1 ("Transformer overfits")', 'toy_problem'),
    Claim('S2', 'SAMformer', 'Proposition (Existence of optimal solutions): with W_Q, W_K, W_V, W_O fixed and P = X + A(X)XW_VW_O, a W with PW = XW_toy exists "if, and only if, rank([P XW_toy]) = rank(P)", which "is verified if P is full rank and D<H"', '§2.2 Proposition "Existence of optimal solutions" (proof: App. E.2, "Proposition 4")', 'toy_problem'),
    Claim('S3', 'SAMformer', 'The Random Transformer (only W optimized; W_Q, W_K, W_V, W_O fixed at Glorot initialisation): "Fixing the attention weights … improves the generalization", but it "remains suboptimal" (above the Oracle)', '§2.2 ¶Motivational Example, Fig. 2', 'toy_problem'),
    Claim('S4', 'SAMformer', 'There is "only a 2% increase in the number of parameters between the Random Transformer and the Transformer", so the failure "is not due to overfitting"', '§2.2 ¶Motivational Example', 'toy_problem'),
    Claim('S5', 'SAMformer', 'The failure is "consistent across various optimizers … and values of learning rate": SGD "leads to high-magnitude losses and divergence", AdamW with wd=1e-3 "does not converge", with wd∈{1e-5, 1e-4} it behaves like Adam', '§2.2; App. C.3, Fig. 15(a, b)', 'toy_problem'),
    Claim('S6', 'SAMformer', 'The Transformer\'s "attention matrix is close to the identity matrix right after the very first epoch and barely changes afterward"', '§2.3 ¶Intuition, Fig. 3(a)', 'toy_problem'),
    Claim('S7', 'SAMformer', 'The Transformer\'s attention entropy is "dropping sharply along the epochs"; with SAM it "remains close to that of a base Transformer with a slight increase in the later stages", so "entropy collapse … is benign in this scenario"', '§2.3 ¶Intuition and ¶Existing solutions, Fig. 3(b, right)', 'toy_problem'),
    Claim('S8', 'SAMformer', 'The Transformer "converges to sharper minimum than Transformer+SAM with much larger λmax (∼×10^4)": SAM\'s sharpness is "several orders of magnitude lower", and with fixed (random) attention it is "orders of magnitude lower"', '§2.3 ¶Existing solutions; Fig. 3(b, left) caption', 'toy_problem'),
    Claim('S9', 'SAMformer', 'Only SAM makes the Transformer converge to the Oracle\'s solution: "this is only achieved with SAM"; Fig. 1: "Transformer+SAM generalizes perfectly"', '§2.3 ¶Existing solutions; Fig. 1 (printed in §1)', 'toy_problem'),
    Claim('S10', 'SAMformer', 'σReparam "improves slightly but fails to reach Oracle"; on the toy it "makes it comparable to the performance of a transformer with fixed random attention"', 'Fig. 1 caption; §2.3 ¶Existing solutions; §3.4 ¶SAM vs σReparam', 'toy_problem'),
    Claim('S11', 'SAMformer', 'Proposition 5: if W_QW_Kᵀ is symmetric positive semi-definite, ‖XW_QW_KᵀXᵀ‖_* ≤ ‖W_QW_Kᵀ‖₂‖X‖_F², so lowering ‖W_QW_Kᵀ‖₂ (σReparam) lowers the nuclear norm of the attention scores', '§2.3 Proposition 5 (proof: App. E.3, called "Theorem 5" there and in App. B.5)', 'toy_problem'),
    Claim('S12', 'SAMformer', '"σReparam heavily penalizes the nuclear norms"; "SAMformer maintains it above Transformer"', '§2.3 end; §3.2 ¶Better attention; Fig. 7', 'attention'),
    Claim('S13', 'SAMformer', 'Channel-wise (D×D) attention "ensures feature permutation invariance, eliminating the need for positional encoding" and "leads to a reduced time and memory complexity as D ≤ L"', '§2.4 SAMformer: Putting It All Together', 'toy_problem'),
    Claim('S14', 'SAMformer', 'gains of 14.33 % over TSMixer, 5.25 % over TSMixer+SAM, 16.96 % over Transformer, 12.36 % over FEDformer, 11.13 % over PatchTST, 3.94 % over iTrans ("8.38% without it"), 72.20 % over Informer and 22.65 % over Autoformer', '§3 intro; §3.1; Table 1 "Overall MSE improvement"', 'benchmark'),
    Claim('S15', 'SAMformer', '"outperforms its competitors on 7 out of 8 datasets"; "For every horizon and dataset (except Exchange), SAMformer is ranked either first or second"; iTrans "gets beaten by SAMformer on all datasets, except Exchange"', '§3.1', 'benchmark'),
    Claim('S16', 'SAMformer', '"SAM\'s integration improves … TSMixer, resulting in an average enhancement of 9.58%"', '§3.1', 'benchmark'),
    Claim('S17', 'SAMformer', '"A similar study with the MAE in Table 6 leads to the same conclusions"', '§3.1; App. B.1 Table 6', 'benchmark'),
    Claim('S18', 'SAMformer', '"significantly improves upon TSMixer trained with SAM on 7 out of 8 datasets" (t-test, p<0.05, 5 runs)', 'App. B.2 Table 7', 'benchmark'),
    Claim('S19', 'SAMformer', 'on ETTh1 and Exchange, SAMformer\'s sharpness is "an order of magnitude smaller" than Transformer\'s', '§3.1 ¶Smoother loss landscape, Fig. 5(a)', 'sharpness'),
    Claim('S20', 'SAMformer', 'Transformer "exhibits significant variance" across 5 seeds, SAMformer stable; "holds across all datasets and prediction horizons"', '§3.1 ¶Improved robustness, Fig. 5(b); App. B.4 Figs. 9–10', 'sharpness'),
    Claim('S21', 'SAMformer', '"∼4 times fewer parameters than TSMixer" (overall ratio 3.73)', '§3.2 ¶Computational efficiency; App. B.3 Table 8', 'benchmark'),
    Claim('S22', 'SAMformer', '"SAMformer consistently outperforms its best competitor TSMixer (trained with SAM) for all horizons" (C.1: "on 7 out of 8 datasets")', '§3.2 ¶Fewer hyperparameters; App. C.1 Fig. 13', 'benchmark'),
    Claim('S23', 'SAMformer', 'Weather, H=96: Transformer "low values on the diagonal", SAMformer "strongly promotes them", σReparam "almost equal rows"; SAMformer+σReparam: "most of the information has been lost"', '§3.2, Fig. 6; App. B.5 Fig. 12', 'attention'),
    Claim('S24', 'SAMformer', 'A(X)=I_D "is largely outperformed by SAMformer": 11.93 % MSE, 4.18 % MAE', '§3.2; App. C.4 Table 10', 'attention'),
    Claim('S25', 'SAMformer', '"on-par with MOIRAI on most datasets, superior on 3 …, and overall improves MOIRAI by at least 1.1% and up to 7.6%"', '§3.3, Table 2', 'benchmark'),
    Claim('S26', 'SAMformer', 'channel-wise attention beats temporal attention: "12.97% improvement in MSE and 18.09% in MAE"', '§3.4 ¶Choices of implementation; App. C.4 Table 9', 'attention'),
    Claim('S27', 'SAMformer', '"SGD … fails to converge and AdamW … leads to similar performance but is very sensitive to the choice of the weight decay" (the only evidence is the toy, App. C.3)', '§3.4 ¶Choices of implementation', 'sharpness'),
    Claim('S28', 'SAMformer', 'TSMixer "exhibits less sensitivity to ρ"; "ρ, generally above 0.7 enables SAMformer to achieve lower MSE than TSMixer"; ρ=0 "confirms that SAM always improves the performance of SAMformer"', '§3.4 ¶Sensitivity to ρ; App. C.2 Fig. 14; Table 4', 'sharpness'),
    Claim('S29', 'SAMformer', 'on ETTh1 and Exchange σReparam "fails to match SAMformer\'s improvements, even underperforming Transformer in some cases"; SAM+σReparam "does not surpass … SAM alone"', '§3.4 ¶SAM vs σReparam, Fig. 8', 'sharpness'),
    Claim('S30', 'SAMformer', 'SAM+σReparam "significantly increases training time and memory usage, especially for larger datasets and longer horizons"', '§3.4; App. B.5 Fig. 11', 'sharpness'),
    Claim('S31', 'SAMformer', 'A linear model with RevIN has a closed-form prediction, Ŷ_kt = μ̂[X_k] + Σ_j (X_kj − μ̂[X_k])W_jt − (β_k/γ_k)√(σ̂²[X_k]+ε)(1 − Σ_j W_jt); "It leads to channel-independent forecasting"', 'App. D.1 Proposition "Closed-form formulation", Eqs. (10)–(11) (proof: App. E.4, "Proposition 9")', 'toy_problem'),
    Claim('S32', 'SAMformer', 'channel-wise attention "can be more efficient – both computationally and performance-wise – than temporal attention"', '§4 Discussion', 'attention'),
    Claim('E1', 'EEO-TFV', '"performance on par with state-of-the-art models across 11 time-series benchmark datasets and the Synapse …"', 'Abstract', 'benchmark'),
    Claim('E2', 'EEO-TFV', '"EEO-TFV consistently outperforms all baselines across eight long-horizon datasets, with MSE significantly reduced relative to … TimeMixer++ … and SAMFormer"', '§4.1.1, Table 1', 'benchmark'),
    Claim('E3', 'EEO-TFV', '"EEO-TFV outperforms all models except for ETTm1, particularly excelling on the ETTh1 and ETTh2"', 'App. .1.1, Table 5', 'benchmark'),
    Claim('E4', 'EEO-TFV', 'ECL/Traffic: "gains … over iTransformer … and PatchTST … are more pronounced, indicating that larger datasets benefit more"', '§4.1.1', '', untestable='needs electricity and traffic, which cannot be had on these machines'),
    Claim('E5', 'EEO-TFV', '"leading results on the 0304 dataset"; "slightly lower performance on … PEMS07 and PEMS08"', '§4.1.1; App. .1.2, Table 6', '', untestable='needs the PEMS datasets, which cannot be had on these machines'),
    Claim('E6', 'EEO-TFV', '"+EEO": "consistent improvements of 0.3%–0.6% in both Dice and IoU"; the toy-scale transformer cuts #Params/#FLOPs (8:1:1 split, 5 runs)', '§4.1.2, Table 2', '', untestable="image segmentation: needs the segmentation datasets and networks, not part of this study's data"),
    Claim('E7', 'EEO-TFV', '"improvements of 0.3%–0.9% across all models, while further reducing HD95"; liver and kidney "show significant performance gains"', '§4.1.3, Table 3', '', untestable='needs the Synapse multi-organ CT dataset, which cannot be had on these machines'),
    Claim('E8', 'EEO-TFV', 'Traffic subset: "no effective-rank degradation is observed"; on Synapse EEO "restores—and even improves—representational diversity"', '§4.2, Fig. 2', 'attention'),
    Claim('E9', 'EEO-TFV', '"verified the statistical significance of the 0.3–0.6% performance gain using paired t-tests and Wilcoxon tests" (no statistics printed)', '§4.2', '', untestable='the paper prints no statistics, and the segmentation results it tests cannot be reproduced here'),
    Claim('E10', 'EEO-TFV', 'last-layer spectrum shows "a smooth long-tail decay … high effective rank even after convergence"', '§4.3, Fig. 3', 'attention'),
    Claim('E11', 'EEO-TFV', 'ETT ablation (MSE): toy < "Original" architecture; EEO < AdamW; SAM alone > +SGLD > +SGLD+EMA > EEO full; "our original model performs best in all cases"', '§4.4, Table 4', 'eeo'),
    Claim('E12', 'EEO-TFV', 'ETTh1/ETTm1/Exchange: "EEO optimizer (orange) significantly reduces the nuclear norm"; "The Reparam model (green) performs best on the ETTm1"', 'App. 3, Fig. 4', 'attention'),
    Claim('E13', 'EEO-TFV', 'Weather, H=96: Transformer has "low diagonal values", "EEO-TFV strongly emphasizes this self-correlation"', 'App. 3, Fig. 5', 'attention'),
    Claim('E14', 'EEO-TFV', 'On the toy Y = XW_toy + ε (Eq. 2), "Transformers may converge to sharp minima and experience entropy collapse or rank collapse, leading to a significant decline in generalization ability"; EEO is proposed to "escape degenerate solutions"', '§3.3 Motivating Example, Eq. (2)', 'toy_problem'),
    Claim('E15', 'EEO-TFV', 'E[L_att(W_{t+1})] ≤ L_att − ηc1‖∇_A L_att‖² − η²c2γ + ηc3T + …, "which strictly decreases the attention loss"', 'Lemma 3.1 (§3.5; App. .2.2, Eqs. 15–17)', 'eeo'),
    Claim('E16', 'EEO-TFV', 'U_ρ = L + ρ‖g‖ + O(ρ²); ∇U_ρ = g(w+e_w) + O(ρ); descent for η∈(0,2/L)', 'Lemma 3.2 (§3.6.1; App. .2.3, Eqs. 18–21)', 'eeo'),
    Claim('E17', 'EEO-TFV', 'FD-HVP error "≤ ρ_H/6 α²‖v‖³"; L(w+ηu) ≤ L(w) − η²γ/2 + O(η³ρ_H)', 'Lemma 3.3 (§3.6.2; App. .2.4, Eqs. 22–25)', 'eeo'),
    Claim('E18', 'EEO-TFV', 'E[U_ρ(w_{t+1})] ≤ U_ρ(w_t) − η(1−Lη/2)‖∇U_ρ‖² + ηTd + …', 'Lemma 3.4 (§3.6.4; App. .2.5, Eqs. 26–29)', 'eeo'),
    Claim('E19', 'EEO-TFV', 'EEO lets the model "escape saddle points and converge toward flatter optima, significantly enhancing training stability"', '§1 contributions; §3.6', 'eeo'),
    Claim('E20', 'EEO-TFV', 'The "toy-scale channel-attention Transformer" is adopted "to alleviate entropy collapse in attention matrices during training"', '§1 contributions ("Lightweight Architecture")', 'toy_problem'),
    Claim('O1', 'OCE-TS', 'B has lower CE "(0.449 vs 0.518)" but higher OCE "(1.528 vs 1.396)"; "CE may underestimate the ordinal errors"', '"Comparative Analysis of OCE and CE", Table 1; Def. 1, Eq. (2)', 'oce'),
    Claim('O2', 'OCE-TS', 'influence-function ratio bounds; "CE loss becomes more stable than MSE when … R ≤ 1" ⇔ κ2(Σ_X) ≤ λmin(P)\\|y−xᵀθ\\|/√2', '"Comparative Analysis of OCE and MSE", Theorem 1, Eq. (7) (App. A Theorem 2, Eqs. 70–71)', 'oce'),
    Claim('O3', 'OCE-TS', '‖σ−e_y‖₂ ≤ √2', 'App. A Lemma 1, Eq. (34)', 'oce'),
    Claim('O4', 'OCE-TS', 'truncated-Gaussian bin masses satisfy "Σ p_k = 1, p_k ≥ 0"', '"Target-to-Probability Transformation", Eqs. (8)–(11)', 'oce'),
    Claim('O5', 'OCE-TS', '"OCE-TS consistently outperforms benchmark models" (text: "superior … across most benchmark datasets")', 'Abstract; "Comparative Results", Table 2', 'benchmark'),
    Claim('O6', 'OCE-TS', '720-step forecasts on ETTm2 and Weather: "Our method tracks ground truth better than DLinear"', '"Comparative Results", Fig. 2', 'oce'),
    Claim('O7', 'OCE-TS', 'ms/iter OCE-TS 34.9 vs DLinear 19.3: "high accuracy with moderate cost"', 'Table 3', 'oce'),
    Claim('O8', 'OCE-TS', 'Gaussian best on ETTh1 "across all prediction horizons"; "Student\'s-t … better performance on ETTm2"; ETTh2/ETTm1 "without statistically significant differences"', '"Study of Different Probability Distributions", Fig. 3; App. C "Distributions", Eqs. 78–87', 'oce'),
    Claim('O9', 'OCE-TS', '"ETTm1 achieves optimal performance with ≥336 steps, while ETTh2 performs best at 192"; App.: Exchange and ILI "show greater sensitivity"; recommends 192/336', '"Lookback Window Sizes", Fig. 4 (row 1); App. C Fig. 8', 'oce'),
    Claim('O10', 'OCE-TS', 'bins {30,45,75,100} have "relatively limited impact"; σ∈{0.001,…,1} "significantly affects"; at σ=1 "the MSE on ETTm1 increases significantly"', '"Parameter Sensitivity", Fig. 4 (row 2); App. C Fig. 10', 'oce'),
    Claim('O11', 'OCE-TS', '"OCE loss achieves superior metric performance (MAE / MSE) over CE loss"; "consistent improvement across all benchmark datasets"', '"Comparison with CE", Fig. 5 (Weather); App. C Fig. 9 (6 datasets)', 'oce'),
    Claim('O12', 'OCE-TS', 'OCE-TS is better at every SNR (−3…20 dB); "the impact of noise on the model\'s performance is minimal"; DLinear "degrades significantly"', '"Model Performance under Different SNRs", Table 4 (H=720); App. C Table 6', 'oce'),
    Claim('O13', 'OCE-TS', 'Nemenyi CD: "statistically significant advantages over counterparts"', '"Significance Analysis", Fig. 6; App. C Eq. (88)', 'benchmark'),
    Claim('O14', 'OCE-TS', 'OCE-TS "quantif[ies] uncertainty through probability output" (no uncertainty metric is ever reported)', 'Abstract; Introduction', 'oce'),
    Claim('O15', 'OCE-TS', '"significantly outperforms baseline models in both prediction accuracy and stability"', 'Conclusion', 'benchmark'),
]


CLAIMS: dict[str, Claim] = {c.id: c for c in INVENTORY_CLAIMS}


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
    foreign = {cid: CLAIMS[cid].chapter or "no chapter" for cid in checked if CLAIMS[cid].chapter != chapter}
    if foreign:
        raise ValueError(f"chapter {chapter!r} may only judge its own claims; these belong elsewhere: {foreign}")
    directory = Path(results_dir) if results_dir is not None else RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{chapter}_claims.json"
    payload = {"chapter": chapter, "verdicts": checked,
               "provenance": {"written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              **(provenance or {})}}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def parts_verdict(parts: Sequence[bool | None]) -> str:
    """The verdict of a claim made of parts (each ``True``: holds, ``False``: fails, ``None``: measured but not
    resolved, e.g. within a one-seed margin): every part holds → supported; some hold → partly supported; none holds
    but one fails → not supported; nothing resolved, or no part measured → inconclusive."""
    if parts and all(p is True for p in parts):
        return "supported"
    if any(p is True for p in parts):
        return "partly supported"
    return "not supported" if any(p is False for p in parts) else "inconclusive"


def _natural_order(items: set) -> list:
    """``items`` sorted as values (so that ("ETTm1", 96) comes before ("ETTm1", 192)), or as text where their types
    do not compare."""
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=_item_text)


def _item_text(item) -> str:
    return " ".join(map(str, item)) if isinstance(item, tuple) else str(item)


def cap_verdict(verdict: str, measured: str, *, quick_label: str | None = None,
                needed: set | frozenset | None = None, stored: set | frozenset = frozenset(),
                missing_shown: int = 8) -> tuple[str, str]:
    """``(verdict, measured)`` of a claim whose rule gave ``verdict``, capped at ``"inconclusive"`` where the evidence
    cannot judge it: a quick-profile study (``quick_label`` names its reduced settings), or a paper-profile study that
    has not yet stored every item (run, landscape, cost record…) in ``needed``, the items the claim rests on. A capped
    verdict keeps the rule's outcome and the reason in ``measured``, naming up to ``missing_shown`` of the missing
    items (a tuple item as its fields joined by spaces); a verdict that judges nothing is passed through.
    """
    if verdict not in JUDGED:
        return verdict, measured
    if quick_label is not None:
        why = f"quick profile only: {quick_label}"
    elif needed is not None and not set(needed) <= set(stored):
        missing = [_item_text(item) for item in _natural_order(set(needed) - set(stored))]
        shown = ", ".join(missing[:missing_shown]) + (f" and {len(missing) - missing_shown} more"
                                                      if len(missing) > missing_shown else "")
        why = (f"paper profile incomplete: {len(set(needed) & set(stored))} of {len(set(needed))} items this claim "
               f"needs are stored (missing: {shown})")
    else:
        return verdict, measured
    return "inconclusive", f"{measured} — rule outcome {verdict}; {why}"


def merge_verdicts(primary: dict[str, dict[str, str]], fallback: dict[str, dict[str, str]]
                   ) -> dict[str, dict[str, str]]:
    """``primary``'s verdicts (``{claim id: {"verdict", "evidence"}}``, e.g. a half-run paper-profile study), with
    each claim ``primary`` has not tested at all taken from ``fallback`` (e.g. the quick profile) where it is tested
    there. A capped ``"inconclusive"`` in ``primary`` stays: its partial paper-size numbers say more than a quick run.
    """
    merged = {cid: dict(entry) for cid, entry in primary.items()}
    for cid, entry in fallback.items():
        if merged.get(cid, {}).get("verdict", NOT_TESTED) == NOT_TESTED and entry.get("verdict") != NOT_TESTED:
            merged[cid] = dict(entry)
    return merged


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


#: What the claims table shows in the chapter and verdict columns of a claim that cannot be tested here.
NOT_TESTABLE = "not testable here"


def claims_table(results_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per claim: id, paper, claim, where, chapter, verdict, evidence (verdicts merged from results).

    A claim that cannot be tested here has ``chapter`` "not testable here: <reason>" and ``verdict``
    "not testable here"; one that a chapter will test but has no verdict yet is "not yet tested"."""
    verdicts = read_verdicts(results_dir)
    rows = []
    for c in CLAIMS.values():
        row = asdict(c)
        v = verdicts.get(c.id, {})
        if c.untestable:
            row["chapter"], row["verdict"] = f"{NOT_TESTABLE}: {c.untestable}", NOT_TESTABLE
        else:
            row["chapter"] = v.get("chapter") or c.chapter
            row["verdict"] = v.get("verdict", NOT_TESTED)
        row["evidence"] = v.get("evidence", "")
        rows.append(row)
    return pd.DataFrame(rows, columns=["id", "paper", "claim", "where", "chapter", "verdict", "evidence"])
