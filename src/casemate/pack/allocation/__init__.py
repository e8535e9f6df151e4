"""Task allocation: decentralised CBBA and centralised baselines (Hungarian, MILP, greedy)."""

from casemate.pack.allocation.baselines import greedy_assignment, hungarian, milp_multi, sequential_greedy
from casemate.pack.allocation.cbba import CBBA, CBBAConfig, path_score, score_matrix

__all__ = [
    "CBBA",
    "CBBAConfig",
    "greedy_assignment",
    "hungarian",
    "milp_multi",
    "path_score",
    "score_matrix",
    "sequential_greedy",
]
