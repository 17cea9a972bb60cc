"""Reading stats for people: drift between two versions or stores (:mod:`.drift`, pure maths)
and the self-contained HTML report (:mod:`.html`, with matplotlib, imported only for it)."""

from .drift import METRICS, Comparison, compare, compare_stats, drift, exceeding

__all__ = ["METRICS", "Comparison", "compare", "compare_stats", "drift", "exceeding"]
