"""The working memory of one training step: the peak of the memory a step allocates on top of what already lives.

SAMformer App. B.5 (Fig. 11) says SAM + σReparam "significantly increases training time and memory usage". The
time is easy to measure; the memory needs one definition that means the same on every device:

    peak step memory = max over the step of (bytes allocated since the step began − bytes freed since then)

i.e. the largest amount of *additional* memory the step holds at any moment — activations kept for backward,
gradients, SAM's saved weights, temporaries — not counting the parameters and optimizer state that exist before
and after it (those are the same for two recipes with the same number of weights, and are reported separately).

* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the allocation before the
  step (the caching allocator's own statistics).
* CPU: PyTorch's CPU allocator keeps no peak statistic, but the profiler with ``profile_memory=True`` records every
  allocation and free of the step as an instant event with its size; the running sum of those sizes in time order
  is the additional memory held, and its maximum is the peak (:func:`peak_from_events`, tested on hand-made event
  lists; :func:`peak_step_memory_mib` against tensors of known size).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["peak_from_events", "peak_step_memory_mib"]


def peak_from_events(events: Iterable[dict[str, Any]]) -> int:
    """Peak of the running sum of ``Bytes`` over the profiler's CPU ``[memory]`` events in time order (≥ 0)."""
    held, peak = 0, 0
    cpu = [e for e in events if e.get("name") == "[memory]" and int(e.get("args", {}).get("Device Type", 0)) == 0]
    for event in sorted(cpu, key=lambda e: float(e["ts"])):
        held += int(event["args"]["Bytes"])
        peak = max(peak, held)
    return peak


def _cpu_memory_events(step: Callable[[], Any]) -> list[dict[str, Any]]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    handle, path = tempfile.mkstemp(suffix=".json")
    os.close(handle)
    try:
        prof.export_chrome_trace(path)
        with open(path, encoding="utf-8") as file:
            return json.load(file).get("traceEvents", [])
    finally:
        os.unlink(path)


def peak_step_memory_mib(step: Callable[[], Any], device: torch.device | str = "cpu") -> float:
    """Run ``step()`` once and return its peak additional memory in MiB (module docstring) on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    if device.type != "cpu":
        raise ValueError(f"peak step memory is measured on 'cpu' or 'cuda', not {device.type!r}")
    return peak_from_events(_cpu_memory_events(step)) / 2**20
