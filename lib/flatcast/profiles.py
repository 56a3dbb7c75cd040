"""Run profiles: ``quick`` (CPU, what CI runs, reduced sizes) and ``paper`` (the papers' sizes).

A chapter validates its ``profile`` parameter with :func:`get_profile` before any heavy work. Sizes that are
specific to one experiment live with that experiment (``flatcast.experiments``), keyed by the profile name.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    n_seeds: int
    reduced: bool


PROFILES = {
    "quick": Profile(
        name="quick",
        description="reduced sizes that run on 2 CPU cores in about 3 minutes per chapter (what CI runs)",
        n_seeds=3,
        reduced=True,
    ),
    "paper": Profile(
        name="paper",
        description="the papers' sizes; run on a GPU where one is needed, results committed under data/results/",
        n_seeds=5,
        reduced=False,
    ),
}


def get_profile(name: str | Profile) -> Profile:
    """Return the :class:`Profile` called ``name``; raise ``ValueError`` for anything but quick / paper."""
    if isinstance(name, Profile):
        return name
    if not isinstance(name, str) or name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: use one of {sorted(PROFILES)}")
    return PROFILES[name]
