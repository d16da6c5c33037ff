"""KTO: Kahneman-Tversky optimisation (TRL's KTOTrainer) on desirable / undesirable completions.

The data is preference pairs; TRL unpairs them (chosen: desirable, rejected: undesirable). Like
DPO, it starts from the input adapter loaded trainable and TRL adds a frozen "ref" copy of it, so
the reference is the previous stage's model. Signals: rewards/chosen, rewards/rejected, kl.

The lifecycle is lifecycle.run_offline; this file holds what only KTO sets.
"""
from __future__ import annotations

from ..connection import Connection
from ..lifecycle import OfflineStage, length_and_eval, run_offline

STAGE = "kto"


def _prepare(rows, tokenizer, data: dict, seed: int):
    """Preference pairs become two unpaired rows each (TRL's unpair_preference_dataset: chosen is
    desirable, rejected undesirable), shuffled at the run's seed. Why shuffle here: TRL's KTO samples
    the training rows in order (its KL term pairs each row with its neighbour), and unpairing puts
    every desirable row first, so the first epoch would never see an undesirable one."""
    from trl.data_utils import unpair_preference_dataset

    if "chosen" in rows.column_names:
        rows = unpair_preference_dataset(rows)
    return rows.shuffle(seed=seed)


def _fields(train: dict, data: dict, rows, has_eval: bool) -> dict:
    return dict(
        **length_and_eval(train, data, has_eval),
        beta=float(train["beta"]),
        desirable_weight=float(train["desirable_weight"]),
        undesirable_weight=float(train["undesirable_weight"]),
    )


KTO = OfflineStage(
    name=STAGE, target="kto", trainer="KTOTrainer", config="KTOConfig", fields=_fields, prepare=_prepare,
    fresh_note="KTO starts from the base model with a fresh LoRA adapter; the reference is the base model.",
    summary_init_adapter=True,
)


def run(request: dict, conn: Connection):
    return run_offline(KTO, request, conn)
