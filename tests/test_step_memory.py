"""Peak working memory of a step (flatcast.diagnostics.step_memory): hand-made event lists and tensors of known size."""

import pytest
import torch

from flatcast.diagnostics.step_memory import peak_from_events, peak_step_memory_mib

MIB = 2**20


def _event(ts, size, device_type=0):
    return {"name": "[memory]", "ts": ts, "args": {"Bytes": size, "Device Type": device_type}}


def test_peak_is_the_largest_running_sum_in_time_order():
    events = [_event(3, -4), _event(1, 10), _event(2, 5), _event(4, 7), {"name": "aten::mm", "ts": 0},
              _event(5, 100, device_type=1)]  # not CPU: ignored
    # in time order: +10 → 10, +5 → 15, −4 → 11, +7 → 18
    assert peak_from_events(events) == 18
    assert peak_from_events([_event(1, -8), _event(2, 3)]) == 0  # only frees of older tensors: nothing held
    assert peak_from_events([]) == 0


def test_cpu_peak_of_tensors_of_known_size():
    def step():
        a = torch.ones(MIB // 4)        # 1 MiB of float32
        b = torch.ones(2 * MIB // 4)    # 2 MiB: 3 MiB held
        del a                           # 2 MiB
        c = torch.ones(MIB // 4)        # 3 MiB again, never more
        return b.sum() + c.sum()

    step()
    assert peak_step_memory_mib(step, "cpu") == pytest.approx(3.0, abs=0.01)

    def smaller():
        return torch.ones(MIB // 4).sum()

    assert peak_step_memory_mib(smaller, "cpu") == pytest.approx(1.0, abs=0.01)


def test_unsupported_device_is_refused():
    with pytest.raises(ValueError, match="cpu' or 'cuda"):
        peak_step_memory_mib(lambda: None, "meta")
