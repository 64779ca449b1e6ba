"""Training on the taxonomy: a loss at genus and family besides the loss at the class.

The rollup at inference sums the probabilities of the classes under a taxon (``Vespa`` = *V. velutina* +
*V. crabro*) and answers that taxon when the sum is sure. A network trained only on the classes has no reason to
make that sum sure when it cannot tell the species apart: it may spread the rest of the probability over a bee
or an ant. The hierarchical loss adds, for each rank (genus, family, order), the cross-entropy of the summed
probability of the true class's taxon at that rank, so the network learns that a hornet it cannot place is
surely a *Vespa*. The summed probabilities are the same ones the rollup reads: the learned genus is answered by
the same decision, with no second head to keep consistent with the first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

#: the ranks the loss is taken at, below the class
RANKS = ("genus", "family", "order")


def rank_groups(class_names: Sequence[str], lineages: Mapping[str, Sequence[Sequence[str]]],
                ranks: Sequence[str] = RANKS) -> dict[str, list[int]]:
    """For each rank, the taxon each class belongs to there, as a group index per class.

    A class with no taxon at that rank (a background or look-alike class, a family-level class at genus) is a
    group of its own. Ranks where every group holds one class add nothing and are left out.

    >>> rank_groups(["a", "b", "c"], {"a": [["genus", "V"]], "b": [["genus", "V"]]})
    {'genus': [0, 0, 1]}
    """
    groups: dict[str, list[int]] = {}
    for rank in ranks:
        keys: dict[str, int] = {}
        row = []
        for i, name in enumerate(class_names):
            taxon = next((n for r, n in lineages.get(name, ()) if r == rank), None)
            key = f"{rank}:{taxon}" if taxon is not None else f"class:{i}"
            row.append(keys.setdefault(key, len(keys)))
        if len(keys) < len(class_names):
            groups[rank] = row
    return groups


class HierarchicalLoss(nn.Module):
    """Cross-entropy at the class plus ``weight`` times the cross-entropy of the summed probability at each rank.

    Args:
        groups: :func:`rank_groups`'s output (``{rank: group index per class}``).
        weight: the weight of each rank's term (0: plain cross-entropy).
        class_weights: per-class weights of the class term (``--balance loss``), or ``None``.
    """

    def __init__(self, groups: Mapping[str, Sequence[int]], weight: float,
                 class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = float(weight)
        self.class_weights: torch.Tensor | None
        self.register_buffer("class_weights", class_weights)
        self.ranks = list(groups)
        for rank, row in groups.items():
            m = torch.zeros(len(row), max(row) + 1)
            m[torch.arange(len(row)), torch.tensor(row)] = 1.0
            self.register_buffer(f"members_{rank}", m)
            self.register_buffer(f"group_of_{rank}", torch.tensor(row, dtype=torch.long))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean loss of a batch of logits (``N x classes``) against class indices."""
        loss = F.cross_entropy(logits, labels, weight=self.class_weights)
        if not self.weight or not self.ranks:
            return loss
        log_p = F.log_softmax(logits.float(), dim=1)
        for rank in self.ranks:
            members: torch.Tensor = getattr(self, f"members_{rank}")
            group_of: torch.Tensor = getattr(self, f"group_of_{rank}")
            # log of the summed probability of each group: logsumexp over its member classes
            log_group = torch.logsumexp(log_p.unsqueeze(2) + members.log().unsqueeze(0), dim=1)
            loss = loss + self.weight * F.nll_loss(log_group, group_of[labels])
        return loss
