"""SimPO: simple preference optimisation, as TRL runs it (its experimental CPOTrainer with
``loss_type="simpo"``, pinned with TRL): reference-free, the reward is the length-normalised
log-likelihood scaled by beta, and the loss wants chosen above rejected by a target margin
(``simpo_gamma``). ``cpo_alpha > 0`` adds an NLL term on the chosen completion (CPO-SimPO).
Signals: rewards/margins, rewards/accuracies.

The lifecycle is lifecycle.run_offline; this file holds what only SimPO sets.
"""
from __future__ import annotations

from ..connection import Connection
from ..lifecycle import OfflineStage, length_and_eval, run_offline

STAGE = "simpo"


def _fields(train: dict, data: dict, rows, has_eval: bool) -> dict:
    return dict(
        **length_and_eval(train, data, has_eval),
        loss_type="simpo",
        beta=float(train["beta"]),
        simpo_gamma=float(train["simpo_gamma"]),
        cpo_alpha=float(train["cpo_alpha"]),
    )


SIMPO = OfflineStage(name=STAGE, target="simpo", trainer="trl.experimental.cpo:CPOTrainer",
                     config="trl.experimental.cpo:CPOConfig", fields=_fields)


def run(request: dict, conn: Connection):
    return run_offline(SIMPO, request, conn)
