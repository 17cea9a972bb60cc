"""Exact rounding of ratios of integers: the last step from integer sums to float64 results."""

from __future__ import annotations

import math
from fractions import Fraction

__all__ = ["nearest_sqrt_ratio"]


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
