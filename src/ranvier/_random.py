"""The global seed: ``manual_seed(seed)`` makes every default random draw reproducible.

Layer initialisation, Dropout masks and ``fit``'s shuffling take a ``seed=`` of their own; when
they get none they draw from the generator here, as ``torch.manual_seed`` and
``keras.utils.set_random_seed`` make a script's default draws reproducible. Before any
``manual_seed`` call the generator is seeded from the operating system's entropy.
"""
import numbers

import numpy as np

_generator = None


def manual_seed(seed):
    """Seed every default random draw in ranvier (weight initialisation, Dropout masks and the
    shuffling of ``fit`` when they are given no ``seed=``). Two processes that call it with the same
    value and build and train the same model get bitwise-identical weights, on any number of
    threads. Returns the generator."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"manual_seed: seed must be >= 0, got {seed}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def default_generator():
    """The generator that unseeded draws use (seeded by ``manual_seed``)."""
    global _generator
    if _generator is None:
        _generator = np.random.default_rng()
    return _generator


def generator_from(seed, name="seed"):
    """A numpy Generator for ``seed``: None draws a child of the default generator (so that
    ``manual_seed`` governs it), an int seeds a fresh one, a Generator is used as is."""
    if seed is None:
        return np.random.default_rng(default_generator().integers(0, 2**63 - 1))
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be None, an int or a numpy.random.Generator, "
                        f"got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name} must be >= 0, got {seed}")
    return np.random.default_rng(int(seed))
