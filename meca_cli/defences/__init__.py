"""Peer defences, measured beside MeCa on the same benchmark runs.

Each is written from its paper's description and repairs the no-defence model of a run:

- `clp`: channel Lipschitzness pruning (Zheng et al., ECCV 2022), data-free.
- `finetuning`: fine-tune every layer on a small reserved clean set (Liu et al., RAID 2018).
- `finepruning`: prune the last convolution's channels that stay dormant on the reserved
  clean set, then fine-tune (Liu et al., RAID 2018).

One configuration per defence, for every attack (`DefenceConfig`).
"""

from __future__ import annotations

from meca_cli.defences.clp import clp
from meca_cli.defences.finetuning import finepruning, finetuning

DEFENCES = ("finetuning", "finepruning", "clp")
NEEDS_CLEAN_DATA = {"finetuning": True, "finepruning": True, "clp": False}

__all__ = ["DEFENCES", "NEEDS_CLEAN_DATA", "clp", "finepruning", "finetuning"]
