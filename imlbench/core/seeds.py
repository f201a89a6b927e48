"""Every random choice of a run flows from its seed through one of these named streams.

A stream is `SeedSequence([seed, purpose])`: streams of one seed are independent, and the same seed
gives every learner the same data, so comparisons between learners are paired. The numbers are part
of the published results (changing one changes every record that uses it), so they are fixed here,
once, by name.
"""

from __future__ import annotations

import hashlib

import numpy as np

# purposes drawn by the harness
LEARNER = 1  # a learner's `random_state`
STAGE2_ORDER = 2  # the order of the one-stage union of stage-1 and stage-2 examples
DIAGNOSTICS = 3  # a diagnostic's own choices (sampled variables, probe folds)
SEARCH = 4  # an elicitation search's sampler, per trial: stream(seed, SEARCH) spawned by trial number
# purposes drawn by the built-in tasks for their data (each task its own stream)
SYNTHETIC_DEFS = 0x5D
SYNTHETIC_DEFS_TEXT = 0x7E47
SET_INCLUSION = 0x5E7
TAGGED_DIGITS = 0x1D6


def stream(seed: int, purpose: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, purpose])


def search_seed(seed: int, trial_number: int) -> int:
    """The sampler seed of one trial of a search (a trial's number is unique in its study)."""
    return int(np.random.SeedSequence([seed, SEARCH, trial_number + 1]).generate_state(1)[0])


def rng(seed: int, purpose: int) -> np.random.Generator:
    """The generator of one named stream of a run's seed, as the tasks draw their data."""
    return np.random.default_rng(stream(seed, purpose))


def harness_rng(seed: int, purpose: int) -> np.random.Generator:
    """The generator of one of the harness's streams (one-stage order, diagnostics): seeded with
    `derive_seed`, as the published records were (a different generator than `rng`'s)."""
    return np.random.default_rng(derive_seed(seed, purpose))


def derive_seed(seed: int, purpose: int) -> int:
    """One integer of a named stream, for libraries that take an int seed (a learner's random_state)."""
    return int(stream(seed, purpose).generate_state(1)[0])


def sealed_seed(seed: int, entropy: str) -> int:
    """The seed a sealed run draws everything from: `seed` mixed with 128 bits of entropy held back
    from the learner (hex), through a cryptographic hash, so that neither its data nor its
    `random_state` lets anyone recover the seed or regenerate the task without the entropy."""
    digest = hashlib.blake2b(f"imlbench-sealed:{seed}:{entropy}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big")
