"""Shared helpers: seeding, devices, thread counts, eval mode, profiles and provenance."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from flatcast.profiles import PROFILES, get_profile
from flatcast.provenance import provenance
from flatcast.utils import (check_nonnegative, check_positive_int, eval_mode, model_device, resolve_device, seed_everything,
                            torch_threads)


def test_seed_everything_makes_every_generator_repeat():
    def draw():
        generator = seed_everything(7)
        return random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=generator)

    a, b = draw(), draw()
    assert a[0] == b[0] and a[1] == b[1]
    assert torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])
    with pytest.raises(TypeError, match="seed"):
        seed_everything(1.5)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_profiles_are_validated():
    assert get_profile("quick") is PROFILES["quick"] and get_profile("paper").reduced is False
    with pytest.raises(ValueError, match=r"unknown profile 'fast'.*\['paper', 'quick'\]"):
        get_profile("fast")


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("restored even on error")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive integer"):
        with torch_threads(0):
            pass


def test_eval_mode_restores_each_submodule_flag():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    model[0].eval()  # mixed flags must come back as they were
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and not model[0].training and model[1].training
    assert model_device(model) == torch.device("cpu") and model_device(nn.Identity()) == torch.device("cpu")


def test_check_positive_int():
    assert check_positive_int("n", 3) == 3 and check_positive_int("n", np.int64(2)) == 2
    for bad in (0, -1, 1.0, True, "3"):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            check_positive_int("n", bad)


def test_provenance_names_code_machine_and_command():
    record = provenance("cpu", ["python", "-m", "flatcast.experiments.toy", "--profile", "paper"])
    assert record["command"] == "python -m flatcast.experiments.toy --profile paper"
    assert record["torch"] == torch.__version__ and record["device"].startswith("cpu")
    assert set(record) >= {"commit", "dirty", "date", "python", "threads"}


def test_device_type_reads_what_trained_a_record():
    from flatcast.provenance import device_type

    assert device_type({"provenance": provenance("cpu")}) == "cpu"  # written as "cpu: <processor>"
    assert device_type({"provenance": {"device": "cuda: NVIDIA H200"}}) == "cuda"
    assert device_type({"device": "cuda:0", "provenance": {"device": "cpu: x86_64"}}) == "cuda"  # the record's own wins
    assert device_type({}) == device_type({"provenance": None}) == "cpu"  # before any GPU: the CPU


def test_check_nonnegative():
    assert check_nonnegative("rho", 0) == 0.0 and check_nonnegative("rho", np.float32(0.5)) == 0.5
    for bad in (-1e-9, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
            check_nonnegative("rho", bad)
    for bad in (True, "0.1", None):
        with pytest.raises(TypeError, match="rho must be a real number"):
            check_nonnegative("rho", bad)


def test_runner_start_is_provenance_reduced_to_the_code_and_time():
    from flatcast.provenance import provenance, runner_start

    start = runner_start("cpu")
    assert set(start) == {"commit", "dirty", "date"}
    full = provenance("cpu")
    assert start["commit"] == full["commit"] and start["dirty"] == full["dirty"]
