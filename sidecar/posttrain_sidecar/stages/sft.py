"""SFT: supervised fine-tuning on prompt/completion or chat rows, loss on the response only.

The lifecycle is lifecycle.run_offline; this file holds what only SFT sets.
"""
from __future__ import annotations

from ..connection import Connection
from ..lifecycle import OfflineStage, length_and_eval, run_offline

STAGE = "sft"


def _fields(train: dict, data: dict, rows, has_eval: bool) -> dict:
    chat = "messages" in rows.column_names
    only_response = bool(train["completion_only_loss"])
    return dict(
        **length_and_eval(train, data, has_eval),
        packing=bool(train["packing"]),
        # Prompt/completion rows: loss on the completion. Chat rows: loss on assistant turns
        # (needs a chat template with {% generation %} markers).
        completion_only_loss=only_response if not chat else None,
        assistant_only_loss=only_response and chat,
    )


SFT = OfflineStage(name=STAGE, target="sft", trainer="SFTTrainer", config="SFTConfig", fields=_fields)


def run(request: dict, conn: Connection):
    return run_offline(SFT, request, conn)
