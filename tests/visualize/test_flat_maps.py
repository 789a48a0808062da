"""A nearly uniform map (random weights: 0.489–0.5) is drawn as it is, not stretched to the full
colour range to look meaningful; a map with structure is still stretched."""

from __future__ import annotations

import numpy as np

from deploy_ran.visualize import _normalise, is_flat


def test_a_random_weight_map_is_flat_and_drawn_unstretched():
    values = np.linspace(0.489, 0.5, 64, dtype=np.float32).reshape(8, 8)
    assert is_flat(values)
    np.testing.assert_array_equal(_normalise(values), values)


def test_a_map_with_structure_is_stretched_to_the_full_range():
    values = np.linspace(0.2, 0.6, 64, dtype=np.float32).reshape(8, 8)
    assert not is_flat(values)
    shown = _normalise(values)
    assert shown.min() == 0.0 and shown.max() == 1.0


def test_a_softmax_map_with_structure_is_not_flat_though_its_values_are_small():
    values = np.full((8, 8), 0.01, dtype=np.float32)
    values[2, 3] = 0.3
    assert not is_flat(values / values.sum())


def test_a_uniform_softmax_map_is_flat():
    values = np.full((32, 32), 1 / 1024, dtype=np.float32) * np.linspace(0.99, 1.01, 1024).reshape(
        32, 32
    )
    assert is_flat(values)


def test_a_narrow_map_outside_zero_one_is_not_called_flat():
    """Flat means a mask in [0, 1] that barely moves; logits-like maps are stretched as before."""
    values = np.linspace(3.0, 3.01, 64, dtype=np.float32).reshape(8, 8)
    assert not is_flat(values)
