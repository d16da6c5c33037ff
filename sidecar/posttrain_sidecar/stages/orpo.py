"""ORPO: odds-ratio preference optimisation (TRL's experimental ORPOTrainer, pinned with TRL).

SFT on the chosen completion plus a log odds-ratio term that pushes chosen above rejected, in one
stage and without a reference model, so it may be the first stage of a run (``--stages orpo,grpo``).
Signals: rewards/margins and rewards/accuracies (beta times the log-probability gap), nll_loss.

The lifecycle is lifecycle.run_offline; this file holds what only ORPO sets.
"""
from __future__ import annotations

from ..connection import Connection
from ..lifecycle import OfflineStage, length_and_eval, run_offline

STAGE = "orpo"


def _fields(train: dict, data: dict, rows, has_eval: bool) -> dict:
    return dict(
        **length_and_eval(train, data, has_eval),
        beta=float(train["beta"]),
    )


ORPO = OfflineStage(name=STAGE, target="orpo", trainer="trl.experimental.orpo:ORPOTrainer",
                    config="trl.experimental.orpo:ORPOConfig", fields=_fields)


def run(request: dict, conn: Connection):
    return run_offline(ORPO, request, conn)
