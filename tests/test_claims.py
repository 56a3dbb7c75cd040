import json

import pytest

from flatcast import claims
from flatcast.claims import CLAIMS, VERDICTS, claims_table, read_verdicts, write_verdicts


def test_registry_is_well_formed():
    for cid, c in CLAIMS.items():
        assert c.id == cid and c.paper in claims.PAPERS and c.claim and c.where
    assert {c.paper for c in CLAIMS.values()} == set(claims.PAPERS)


def test_registry_lists_every_inventory_claim_and_nothing_else():
    expected = ([f"S{i}" for i in range(1, 33)] + [f"E{i}" for i in range(1, 21)] + [f"O{i}" for i in range(1, 16)])
    assert list(CLAIMS) == expected  # 67 claims, in the inventory's order
    prefix = {"S": "SAMformer", "E": "EEO-TFV", "O": "OCE-TS"}
    chapters = {"toy_problem", "sharpness", "attention", "eeo", "oce", "benchmark"}
    for cid, c in CLAIMS.items():
        assert c.paper == prefix[cid[0]]
        # either a chapter tests it, or it says why it cannot be tested here
        assert (c.chapter in chapters and not c.untestable) or (c.chapter == "" and c.untestable), cid
    assert {cid for cid, c in CLAIMS.items() if c.untestable} == {"E4", "E5", "E6", "E7", "E9"}
    toy = {cid for cid, c in CLAIMS.items() if c.chapter == "toy_problem"}
    assert toy == {"S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "S13", "S31", "E14", "E20"}


def test_locations_avoid_the_known_wrong_references():
    """Claims inventory §2: SAMformer has no §5 and OCE-TS no numbered sections; on the toy, SAM and σReparam are
    Fig. 1 (Fig. 2 shows only Transformer and Random Transformer) and SAM is §2.3, not §2.4."""
    for cid, c in CLAIMS.items():
        if c.paper == "SAMformer":
            assert "§5" not in c.where, cid
        if c.paper == "OCE-TS":
            assert "§" not in c.where, cid
    for cid in ("S9", "S10"):
        assert "Fig. 1" in CLAIMS[cid].where and "Fig. 2" not in CLAIMS[cid].where
        assert "§2.4" not in CLAIMS[cid].where
    assert "Fig. 2" in CLAIMS["S3"].where and "Fig. 1" not in CLAIMS["S3"].where
    # the papers' magnitudes are part of the claims
    assert "∼×10^4" in CLAIMS["S8"].claim and "several orders of magnitude" in CLAIMS["S8"].claim
    assert "improves slightly" in CLAIMS["S10"].claim and "fixed random attention" in CLAIMS["S10"].claim
    assert "benign" in CLAIMS["S7"].claim and "2%" in CLAIMS["S4"].claim


def test_table_defaults_to_not_yet_tested(tmp_path):
    table = claims_table(results_dir=tmp_path)
    assert list(table.id) == list(CLAIMS)
    testable = table.id.map(lambda cid: not CLAIMS[cid].untestable)
    assert (table.verdict[testable] == "not yet tested").all() and (table.evidence == "").all()
    assert (table.verdict[~testable] == "not testable here").all()
    e4 = table.set_index("id").loc["E4"]
    assert e4.chapter.startswith("not testable here: ") and "electricity" in e4.chapter


def test_written_verdicts_appear_in_table(tmp_path):
    path = write_verdicts("toy_problem", {"S1": {"verdict": "supported", "evidence": "0.41 vs 0.20"},
                                          "S8": "partly supported"},
                          provenance={"commit": "abc"}, results_dir=tmp_path)
    assert path.name == "toy_problem_claims.json"
    assert json.loads(path.read_text())["provenance"]["commit"] == "abc"
    table = claims_table(results_dir=tmp_path).set_index("id")
    assert table.loc["S1", "verdict"] == "supported"
    assert table.loc["S1", "evidence"] == "0.41 vs 0.20"
    assert table.loc["S8", "verdict"] == "partly supported"
    assert table.loc["O5", "verdict"] == "not yet tested"


def test_bad_verdicts_raise(tmp_path):
    with pytest.raises(KeyError, match="unknown claim 'nope'"):
        write_verdicts("x", {"nope": "supported"}, results_dir=tmp_path)
    with pytest.raises(ValueError, match="is not one of"):
        write_verdicts("oce", {"O5": "true"}, results_dir=tmp_path)
    with pytest.raises(ValueError, match="chapter"):
        write_verdicts("a/b", {"O5": "supported"}, results_dir=tmp_path)
    with pytest.raises(ValueError, match="only judge its own claims.*'O5': 'benchmark'"):
        write_verdicts("toy_problem", {"S1": "supported", "O5": "supported"}, results_dir=tmp_path)
    with pytest.raises(ValueError, match="'E4': 'no chapter'"):
        write_verdicts("benchmark", {"E4": "supported"}, results_dir=tmp_path)
    (tmp_path / "broken_claims.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_verdicts(tmp_path)


def test_two_files_cannot_judge_one_claim(tmp_path):
    write_verdicts("benchmark", {"O5": "supported"}, results_dir=tmp_path)
    (tmp_path / "other_claims.json").write_text(json.dumps({"chapter": "other", "verdicts": {"O5": "not supported"}}))
    with pytest.raises(ValueError, match="both"):
        claims_table(results_dir=tmp_path)


def test_verdict_vocabulary():
    assert "not yet tested" in VERDICTS and "supported" in VERDICTS


def test_cap_verdict_keeps_the_rule_outcome_and_says_why():
    # quick evidence never judges
    verdict, measured = claims.cap_verdict("supported", "ratio 6.1", quick_label="L=96, 4 epochs")
    assert verdict == "inconclusive"
    assert measured == "ratio 6.1 — rule outcome supported; quick profile only: L=96, 4 epochs"
    # a paper study judges once every item the claim needs is stored, not before
    verdict, measured = claims.cap_verdict("not supported", "m", needed={"a", "b", "c"}, stored={"a", "x"})
    assert (verdict, measured) == ("inconclusive", "m — rule outcome not supported; paper profile incomplete: "
                                                   "1 of 3 items this claim needs are stored (missing: b, c)")
    assert claims.cap_verdict("partly supported", "m", needed={"a"}, stored={"a", "b"}) == ("partly supported", "m")
    assert claims.cap_verdict("supported", "m") == ("supported", "m")  # nothing needed, paper profile
    # a verdict that judges nothing passes through, even from a quick study
    assert claims.cap_verdict("not yet tested", "no runs", quick_label="q") == ("not yet tested", "no runs")
    assert claims.cap_verdict("inconclusive", "m", needed={"a"}) == ("inconclusive", "m")


def test_cap_verdict_names_the_missing_items_up_to_a_limit():
    needed = {("ETTh1", 96), ("ETTh1", 192), ("ETTh1", 720), ("ETTm2", 96), ("weather", 336)}
    _, measured = claims.cap_verdict("supported", "m", needed=needed, stored={("ETTh1", 192)}, missing_shown=3)
    # in the order of the values, not of their text (96 before 720)
    assert measured.endswith("1 of 5 items this claim needs are stored (missing: ETTh1 96, ETTh1 720, ETTm2 96 and 1 "
                             "more)")
    _, measured = claims.cap_verdict("supported", "m", needed={"a", ("b", 1)}, stored=set())  # mixed: as text
    assert measured.endswith("(missing: a, b 1)")


@pytest.mark.parametrize("parts, verdict", [
    ([True, True], "supported"),
    ([True, False], "partly supported"),
    ([True, None], "partly supported"),   # an unresolved part keeps "supported" out of reach
    ([False, None], "not supported"),
    ([None, None], "inconclusive"),       # nothing resolved
    ([], "inconclusive"),                 # nothing measured
])
def test_parts_verdict(parts, verdict):
    assert claims.parts_verdict(parts) == verdict


def test_merge_verdicts_fills_only_untested_claims():
    paper = {"S12": {"verdict": "inconclusive", "evidence": "partial paper"},
             "E8": {"verdict": "not yet tested", "evidence": "no runs"},
             "E12": {"verdict": "partly supported", "evidence": "paper"},
             "S26": {"verdict": "not yet tested", "evidence": "no runs"}}
    quick = {"S12": {"verdict": "inconclusive", "evidence": "quick"},
             "E8": {"verdict": "inconclusive", "evidence": "quick E8"},
             "E12": {"verdict": "inconclusive", "evidence": "quick E12"},
             "S26": {"verdict": "not yet tested", "evidence": "no runs"},
             "S32": {"verdict": "inconclusive", "evidence": "quick S32"}}
    merged = claims.merge_verdicts(paper, quick)
    assert merged["S12"]["evidence"] == "partial paper"  # a capped paper verdict stays
    assert merged["E12"] == paper["E12"]
    assert merged["E8"] == quick["E8"]  # untested in the paper study: the quick evidence
    assert merged["S26"]["verdict"] == "not yet tested"
    assert merged["S32"] == quick["S32"]  # a claim only the fallback has
    assert paper["E8"]["verdict"] == "not yet tested"  # inputs untouched
