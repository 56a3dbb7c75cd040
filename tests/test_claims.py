import json

import pytest

from flatcast import claims
from flatcast.claims import CLAIMS, VERDICTS, claims_table, read_verdicts, write_verdicts


def test_registry_is_well_formed():
    assert len(CLAIMS) >= 9
    for cid, c in CLAIMS.items():
        assert c.id == cid and c.paper in claims.PAPERS and c.claim and c.where
    assert {c.paper for c in CLAIMS.values()} == set(claims.PAPERS)


def test_table_defaults_to_not_yet_tested(tmp_path):
    table = claims_table(results_dir=tmp_path)
    assert list(table.id) == list(CLAIMS)
    assert (table.verdict == "not yet tested").all() and (table.evidence == "").all()


def test_written_verdicts_appear_in_table(tmp_path):
    path = write_verdicts("toy_problem", {"samformer-toy-fails": {"verdict": "supported", "evidence": "0.41 vs 0.20"},
                                          "samformer-sharpness": "partly supported"},
                          provenance={"commit": "abc"}, results_dir=tmp_path)
    assert path.name == "toy_problem_claims.json"
    assert json.loads(path.read_text())["provenance"]["commit"] == "abc"
    table = claims_table(results_dir=tmp_path).set_index("id")
    assert table.loc["samformer-toy-fails", "verdict"] == "supported"
    assert table.loc["samformer-toy-fails", "evidence"] == "0.41 vs 0.20"
    assert table.loc["samformer-sharpness", "verdict"] == "partly supported"
    assert table.loc["oce-beats-mse", "verdict"] == "not yet tested"


def test_bad_verdicts_raise(tmp_path):
    with pytest.raises(KeyError, match="unknown claim 'nope'"):
        write_verdicts("x", {"nope": "supported"}, results_dir=tmp_path)
    with pytest.raises(ValueError, match="is not one of"):
        write_verdicts("x", {"oce-beats-mse": "true"}, results_dir=tmp_path)
    with pytest.raises(ValueError, match="chapter"):
        write_verdicts("a/b", {"oce-beats-mse": "supported"}, results_dir=tmp_path)
    (tmp_path / "broken_claims.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_verdicts(tmp_path)


def test_two_files_cannot_judge_one_claim(tmp_path):
    write_verdicts("a", {"oce-beats-mse": "supported"}, results_dir=tmp_path)
    write_verdicts("b", {"oce-beats-mse": "not supported"}, results_dir=tmp_path)
    with pytest.raises(ValueError, match="both"):
        claims_table(results_dir=tmp_path)


def test_verdict_vocabulary():
    assert "not yet tested" in VERDICTS and "supported" in VERDICTS
