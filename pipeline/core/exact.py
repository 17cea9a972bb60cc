"""Exact rounding: the last step from integer sums to float64 results (square roots of ratios,
differences of square roots), each the float64 nearest to the exact value."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

__all__ = ["nearest_sqrt_difference", "nearest_sqrt_ratio"]


def nearest_sqrt_ratio(numerator: int, denominator: int) -> float:
    """The float64 nearest to ``sqrt(numerator) / denominator``, ties to even.

    A first guess from an integer square root, then corrected by comparing the exact value
    with the midpoints between neighbouring floats, squared, in integers.
    """
    if numerator < 0 or denominator <= 0:
        raise ValueError("need numerator >= 0 and denominator > 0")
    if numerator == 0:
        return 0.0
    shift = 64
    guess = float(Fraction(math.isqrt(numerator << (2 * shift)), denominator << shift))

    def compare(midpoint: Fraction) -> int:
        """Sign of sqrt(numerator)/denominator - midpoint, exactly."""
        left = numerator * midpoint.denominator**2
        right = (midpoint.numerator * denominator) ** 2
        return (left > right) - (left < right)

    return _nearest_positive(guess, compare)


def nearest_sqrt_difference(x: Fraction, y: Fraction) -> float:
    """The float64 nearest to ``sqrt(x) - sqrt(y)`` (x, y >= 0 rationals), ties to even.

    A first guess from ``(x - y) / (sqrt(x) + sqrt(y))`` in floats (no cancellation: within a
    few ulps), then corrected by exact comparisons with the midpoints between neighbouring
    floats: ``sqrt(big) - sqrt(small) > m`` iff ``L = big - small - m**2 >= 0`` and ``L**2 >
    4 * m**2 * small``.
    """
    if x < 0 or y < 0:
        raise ValueError("need x >= 0 and y >= 0")
    if x == y:
        return 0.0
    big, small = (x, y) if x > y else (y, x)
    guess = float(big - small) / (math.sqrt(big) + math.sqrt(small))

    def compare(midpoint: Fraction) -> int:
        """Sign of sqrt(big) - sqrt(small) - midpoint, exactly."""
        if midpoint <= 0:
            return 1
        rest = big - small - midpoint * midpoint
        if rest < 0:
            return -1
        left, right = rest * rest, 4 * midpoint * midpoint * small
        return (left > right) - (left < right)

    nearest = _nearest_positive(guess, compare)
    return nearest if x > y else -nearest


def _nearest_positive(guess: float, compare: Callable[[Fraction], int]) -> float:
    """The float64 nearest to a positive value v, ties to even, from a ``guess`` within a few
    ulps and ``compare(m)``, the exact sign of v - m."""
    while True:
        below = math.nextafter(guess, 0.0)
        above = math.nextafter(guess, math.inf)
        low_mid = (Fraction(below) + Fraction(guess)) / 2
        high_mid = (Fraction(guess) + Fraction(above)) / 2
        if compare(low_mid) < 0:
            guess = below
        elif compare(high_mid) > 0:
            guess = above
        elif compare(low_mid) == 0:
            return guess if _even(guess) else below
        elif compare(high_mid) == 0:
            return guess if _even(guess) else above
        else:
            return guess


def _even(value: float) -> bool:
    """Whether the last bit of the float's 53-bit significand is 0."""
    return int(math.frexp(value)[0] * (1 << 53)) % 2 == 0
