"""Peer defences, measured beside MeCa on the same benchmark runs.

Each is written from its paper's description and repairs the no-defence model of a run,
or trains a new one on the run's poisoned folder:

- `clp`: channel Lipschitzness pruning (Zheng et al., ECCV 2022), data-free.
- `finetuning`: fine-tune every layer on a small reserved clean set (Liu et al., RAID 2018).
- `finepruning`: prune the last convolution's channels that stay dormant on the reserved
  clean set, then fine-tune (Liu et al., RAID 2018).
- `abl`: anti-backdoor learning (Li et al., NeurIPS 2021), clean-data-free: trains a new
  model that isolates the fastest-learned samples and unlearns them.
- `cutmix`: trains a new model with CutMix (Borgnia et al., ICASSP 2021), then fine-tunes it
  on the reserved clean set.
- `dbr`: decoupling-based backdoor removal (Chen et al., NeurIPS 2022), clean-data-free:
  the samples whose representation a rotation or affine distortion moves most are
  unlearned while the most stable ones are relearned.
- `scanft`: SCAn (Tang et al., USENIX Security 2021) detects poison from the model's
  representations, then the model unlearns it while fine-tuning on the reserved clean set.

One configuration per defence, for every attack: each module's frozen config dataclass
(`ABLConfig`, `CutMixConfig`, `DBRConfig`, `RepairConfig`, `SCAnConfig`) and CLP's `u`.
"""

from __future__ import annotations

from meca_cli.defences.abl import abl
from meca_cli.defences.clp import clp
from meca_cli.defences.cutmix import cutmix
from meca_cli.defences.dbr import dbr
from meca_cli.defences.finetuning import finepruning, finetuning
from meca_cli.defences.scan import scanft

DEFENCES = ("finetuning", "finepruning", "clp", "abl", "dbr", "cutmix", "scanft")
NEEDS_CLEAN_DATA = {"finetuning": True, "finepruning": True, "clp": False, "abl": False, "dbr": False,
                    "cutmix": True, "scanft": True}

__all__ = ["DEFENCES", "NEEDS_CLEAN_DATA", "abl", "clp", "cutmix", "dbr", "finepruning", "finetuning", "scanft"]
