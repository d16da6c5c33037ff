"""RLHF: train a reward model on preference pairs, then optimise the policy against it.

Two phases in one stage, each resumable, with one stage-wide step count:

1. ``reward_model`` (steps 1..N_rm, metrics prefixed ``rm/``): TRL's RewardTrainer on
   ``data.rlhf.preferences`` with a held-out split. The reward model is the base model as
   AutoModelForSequenceClassification(num_labels=1) with a fresh LoRA of task type SEQ_CLS (which
   trains and saves the ``score`` head through peft's modules_to_save). It starts from the BASE
   model, not from the input adapter: the saved reward model is then a delta on the base alone
   (loadable with plain peft, like every stage's adapter), independent of the policy lineage it
   judges; the input adapter is a causal-LM LoRA tuned for generating, and starting from it would
   mean merging it into the base first and shipping that merged base along with the reward model.
   Final: ``stage_dir/reward_model/`` (adapter + score head + tokenizer + posttrain.json with the
   held-out pair accuracy), written whole or not at all.
2. ``policy`` (steps N_rm+1.., metrics unprefixed): the input adapter (the GRPO stage's) loaded
   trainable, optimised with GRPO (the GRPO stage's trainer builder) or RLOO against the reward
   model, reloaded from ``stage_dir/reward_model`` and merged into a plain, frozen
   sequence-classification model. With beta > 0 TRL adds a frozen "ref" copy of the input adapter,
   so the KL term pulls towards the previous stage's policy. Cancel stops only at the end of a
   generation cycle. Final adapter: ``stage_dir/adapter``.

The reward model sees text exactly as TRL's GRPO/RLOO reward path builds it at policy time:
``prompt + completion`` tokenized without special tokens (no BOS, no EOS appended). RewardTrainer
on its own would append EOS and read the reward there, a position a generated completion (decoded
without special tokens) never has, so the pairs are tokenized here instead.

Resume: ``resume_from`` is the newest complete checkpoint under ``stage_dir/checkpoints/**``; its
marker says which phase wrote it. A reward-model checkpoint resumes the reward model, then runs
the policy phase fresh; a policy checkpoint reloads the saved reward model and resumes the policy.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..checkpoints import COMPLETE_MARKER, atomic_write_json, checkpoint_step, latest_complete
from ..connection import Connection, StageError
from ..distributed import barrier, is_main_process
from ..modeling import Runtime, load_policy, load_reward_model, load_tokenizer, resolve_runtime
from ..training import (
    StreamCallback,
    common_args,
    load_rows,
    prompt_text,
    resume_checkpoint,
    run_training,
    sample,
    save_adapter,
    seed_everything,
    split,
    eval_steps,
    trl_args,
    write_samples,
)

STAGE = "rlhf"
RM_PHASE = "reward_model"
POLICY_PHASE = "policy"
RM_DIR = "reward_model"  # stage_dir/reward_model: the final reward model (a stage artifact)
INPUT_FORMAT = "prompt + completion, tokenized without special tokens (no BOS/EOS added); reward = logits[:, 0] at the last non-pad token"


# --------------------------------------------------------------------------------------------
# paths and resume

def _ckpt_root(stage_dir: str, phase: str) -> Path:
    return Path(stage_dir) / "checkpoints" / phase


def checkpoint_phase(checkpoint: str) -> tuple[str, int]:
    """(phase, stage-wide step) from a checkpoint's completion marker (the folder it sits in when
    an older marker has no phase)."""
    marker = json.loads((Path(checkpoint) / COMPLETE_MARKER).read_text(encoding="utf-8"))
    phase = marker.get("phase") or Path(checkpoint).parent.name
    if phase not in (RM_PHASE, POLICY_PHASE):
        raise StageError("bad_checkpoint", f"{checkpoint} belongs to no RLHF phase (marker phase {marker.get('phase')!r})")
    return phase, int(marker.get("step") or checkpoint_step(checkpoint) or 0)


def _remove(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def read_reward_model_info(stage_dir: str) -> dict[str, Any]:
    """posttrain.json of the saved reward model; a StageError when it is missing or incomplete."""
    rm_dir = Path(stage_dir) / RM_DIR
    meta = rm_dir / "posttrain.json"
    if not meta.is_file() or not (rm_dir / "adapter_config.json").is_file():
        raise StageError(
            "bad_checkpoint",
            f"resuming the policy phase needs the trained reward model in {rm_dir}, which is missing or incomplete; "
            "resume from a reward_model checkpoint or start the stage afresh",
        )
    return json.loads(meta.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# phase 1: reward model

def tokenize_pairs(ds, tokenizer, max_length: int | None):
    """chosen_ids/rejected_ids as the policy phase will score text: prompt + response, no special
    tokens. Longer pairs keep their last max_length tokens (the reward is read at the last token),
    so nothing is dropped by RewardTrainer's length filter."""

    def tok(row):
        prompt = row.get("prompt") or ""
        out = {}
        for side in ("chosen", "rejected"):
            ids = tokenizer(prompt + row[side], add_special_tokens=False)["input_ids"]
            out[f"{side}_ids"] = ids[-max_length:] if max_length and len(ids) > max_length else ids
            out[f"{side}_truncated"] = bool(max_length and len(ids) > max_length)
        return out

    ds = ds.map(tok, remove_columns=ds.column_names)
    truncated = sum(1 for a, b in zip(ds["chosen_truncated"], ds["rejected_truncated"]) if a or b)
    return ds.remove_columns(["chosen_truncated", "rejected_truncated"]), truncated


def score_pairs(model, tokenizer, ds, batch_size: int) -> dict[str, Any]:
    """Exact held-out pair accuracy (chosen reward > rejected reward) and mean margin."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    wins, margins = 0, []
    with torch.no_grad():
        for i in range(0, len(ds), batch_size):
            rows = ds[i : i + batch_size]
            seqs = rows["chosen_ids"] + rows["rejected_ids"]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for j, s in enumerate(seqs):
                ids[j, : len(s)] = torch.tensor(s)
                mask[j, : len(s)] = 1
            r = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, 0].float()
            chosen, rejected = r.chunk(2)
            wins += int((chosen > rejected).sum().item())
            margins.extend((chosen - rejected).tolist())
    if was_training:
        model.train()
    n = len(margins)
    return {"heldout_accuracy": wins / n if n else None, "heldout_margin": sum(margins) / n if n else None, "eval_pairs": n}


def _final_eval_callback():
    from transformers import TrainerCallback

    class _EvalAtEnd(TrainerCallback):
        """Evaluate at the last step too, so rm/eval/* always ends at N_rm."""

        def on_step_end(self, args, state, control, **kw):
            if args.eval_strategy != "no" and state.max_steps and state.global_step >= state.max_steps:
                control.should_evaluate = True
            return control

    return _EvalAtEnd()


def train_reward_model(request: dict, conn: Connection, runtime: Runtime, checkpoint: str | None) -> tuple[str, dict]:
    from trl import RewardConfig, RewardTrainer

    config = request["config"]
    stage_dir = request["stage_dir"]
    data_cfg = config["data"]["rlhf"]["preferences"]
    rm_cfg = config["stages"]["rlhf"]["reward_model"]
    seed = int(config["runtime"]["seed"])

    rows = load_rows(request["data"]["rlhf.preferences"], data_cfg.get("limit"))
    if not {"chosen", "rejected"} <= set(rows.column_names):
        raise StageError("bad_data", f"preference rows need chosen and rejected (got columns {rows.column_names})")
    seed_everything(config)  # LoRA and the new score head are initialised here
    model, tokenizer = load_reward_model(config, runtime)
    max_length = data_cfg.get("max_length")
    train_raw, eval_raw = split(rows, float(data_cfg.get("eval_fraction") or 0), seed)
    train_ds, n_cut = tokenize_pairs(train_raw, tokenizer, max_length)
    eval_ds = None
    if eval_raw is not None:
        eval_ds, n_cut_eval = tokenize_pairs(eval_raw, tokenizer, max_length)
        n_cut += n_cut_eval
    else:
        conn.log("warning", "no held-out preference pairs (data.rlhf.preferences.eval_fraction is 0 or too few rows): the reward model's accuracy is not measured", STAGE)
    if n_cut:
        conn.log("info", f"{n_cut} preference pairs longer than max_length {max_length} keep their last {max_length} tokens", STAGE)

    args = trl_args(RewardConfig, "stages.rlhf.reward_model", dict(
        **{**common_args(config, rm_cfg, runtime, stage_dir), "output_dir": str(_ckpt_root(stage_dir, RM_PHASE))},
        max_length=int(max_length) if max_length else None,
        center_rewards_coefficient=(float(rm_cfg["center_rewards_coefficient"]) if rm_cfg.get("center_rewards_coefficient") is not None else None),
        eval_strategy="steps" if eval_ds is not None else "no",
        eval_steps=eval_steps(rm_cfg),
    ), rm_cfg, conn, STAGE)
    trainer = RewardTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer)
    trainer.add_callback(_final_eval_callback())
    callback = StreamCallback(conn, STAGE, prefix="rm/", phase=RM_PHASE)
    summary = run_training(trainer, conn, STAGE, checkpoint, callback)
    if callback.cancelled:
        return "cancelled", summary

    conn.state("saving", STAGE, "reward model")
    scores = score_pairs(model, tokenizer, eval_ds, int(rm_cfg["batch_size"])) if eval_ds is not None else {"heldout_accuracy": None, "heldout_margin": None, "eval_pairs": 0}
    n_rm = int(trainer.state.global_step)
    meta = {
        "kind": "reward_model",
        "stage": STAGE,
        "base_model": config["model"]["id"],
        "initialized_from": "base_model",
        "task_type": "SEQ_CLS",
        "num_labels": 1,
        "merged": False,
        "input_format": INPUT_FORMAT,
        "steps": n_rm,
        "train_pairs": len(train_ds),
        **scores,
    }
    rm_path = save_reward_model(model, tokenizer, stage_dir, meta) if is_main_process() else str(Path(stage_dir) / RM_DIR)
    barrier(conn)  # several ranks: the policy phase of every rank reads the reward model rank 0 saved
    return "ok", {**summary, **scores, "global_step": n_rm, "path": rm_path}


def save_reward_model(model, tokenizer, stage_dir: str, meta: dict[str, Any]) -> str:
    """stage_dir/reward_model: the SEQ_CLS LoRA (score head included via modules_to_save), the
    tokenizer (pad token set) and posttrain.json; replaced whole (temp folder + rename)."""
    import os

    out = Path(stage_dir) / RM_DIR
    tmp = Path(stage_dir) / f".{RM_DIR}.tmp"
    _remove(tmp)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    atomic_write_json(tmp / "posttrain.json", meta)
    _remove(out)
    os.replace(tmp, out)
    return str(out)


def load_frozen_reward_model(config: dict, runtime: Runtime, stage_dir: str):
    """The saved reward model as a reward function for TRL: LoRA merged into a plain
    AutoModelForSequenceClassification (kept as an unmerged PeftModel on a 4-bit base, where a
    merge would round the delta away), eval mode, no gradients; plus its tokenizer."""
    rm_dir = str(Path(stage_dir) / RM_DIR)
    model, tokenizer = load_reward_model(config, runtime, adapter=rm_dir, trainable=False)
    if runtime.mode != "qlora":
        model = model.merge_and_unload()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    # TRL names a model reward function after config._name_or_path: rewards/reward_model/mean.
    model.config._name_or_path = RM_DIR
    return model, tokenizer


def reward_of(rm, rm_tokenizer, prompts: list[str], completions: list[str]) -> list[float]:
    """Rewards exactly as TRL's GRPO/RLOO reward path computes them."""
    import torch

    device = next(rm.parameters()).device
    enc = rm_tokenizer(text=[p + c for p, c in zip(prompts, completions)], return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    with torch.no_grad():
        return rm(**{k: v.to(device) for k, v in enc.items()}).logits[:, 0].float().tolist()


# --------------------------------------------------------------------------------------------
# phase 2: policy

def build_rloo_trainer(config: dict, gen_cfg: dict, model, tokenizer, train_ds, reward_model, reward_tokenizer,
                       stage_dir: str, runtime: Runtime, *, eval_ds=None, output_dir: str, conn: Connection | None = None):
    """TRL's RLOOTrainer with the same generation settings as GRPO. RLOO 1.13 has no
    scale_rewards/loss_type (its baseline is the leave-one-out mean; beta enters as a KL penalty on
    the reward); checkpoints are moved to generation-cycle ends as in GRPO."""
    import math

    from trl import RLOOConfig, RLOOTrainer

    from .grpo import check_vllm, cycle_steps, epoch_seeded

    use_vllm = check_vllm(gen_cfg, runtime)
    kwargs = common_args(config, gen_cfg, runtime, stage_dir)
    spg = gen_cfg.get("steps_per_generation")
    kwargs.update(
        output_dir=str(output_dir),
        num_generations=int(gen_cfg["num_generations"]),
        max_completion_length=int(gen_cfg["max_completion_length"]),
        temperature=float(gen_cfg["temperature"]),
        top_p=float(gen_cfg["top_p"]),
        beta=float(gen_cfg["beta"]),
        epsilon=float(gen_cfg["epsilon"]),
        steps_per_generation=int(spg) if spg else None,
        num_iterations=int(gen_cfg["num_iterations"]),
        use_vllm=use_vllm,
        log_completions=False,
    )
    if use_vllm:
        kwargs["vllm_mode"] = "colocate"
    if eval_ds is not None:
        kwargs.update(eval_strategy="steps", eval_steps=eval_steps(gen_cfg))
    if conn and gen_cfg.get("scale_rewards") not in (None, "group"):
        conn.log("info", f"scale_rewards {gen_cfg['scale_rewards']!r} is a GRPO setting; RLOO uses its leave-one-out baseline unscaled", STAGE)
    try:
        args = trl_args(RLOOConfig, "stages.rlhf.policy", kwargs, gen_cfg, conn, STAGE)
    except StageError:
        raise
    except ValueError as e:
        raise StageError("bad_config", f"RLOO settings rejected: {e} (batch_size x steps_per_generation completions are generated at once, in groups of num_generations; make that product a multiple of num_generations)") from e
    cycle = cycle_steps(args)
    if args.save_strategy != "no" and cycle > 1 and args.save_steps % cycle:
        aligned = int(math.ceil(args.save_steps / cycle) * cycle)
        if conn:
            conn.log("info", f"save_steps {int(args.save_steps)} moved to {aligned}: checkpoints only at the end of a generation cycle ({cycle} steps)", STAGE)
        args.save_steps = aligned
    try:
        # Same per-epoch reseeding as GRPO, so a resume in a later epoch sees the same prompts.
        return epoch_seeded(RLOOTrainer)(
            model=model, reward_funcs=[reward_model], args=args, train_dataset=train_ds, eval_dataset=eval_ds,
            processing_class=tokenizer, reward_processing_classes=[reward_tokenizer],
        )
    except ValueError as e:
        raise StageError("bad_config", f"RLOO trainer rejected its settings: {e}") from e


def train_policy(request: dict, conn: Connection, runtime: Runtime, rm_info: dict, checkpoint: str | None) -> tuple[str, dict]:
    from .grpo import build_grpo_trainer, cycle_steps, prepare_prompts

    config = request["config"]
    stage_dir = request["stage_dir"]
    data_cfg = config["data"]["rlhf"]["prompts"]
    pol_cfg = config["stages"]["rlhf"]["policy"]
    seed = int(config["runtime"]["seed"])
    algorithm = pol_cfg.get("algorithm") or "grpo"
    n_rm = int(rm_info["steps"])
    if float(pol_cfg["beta"]) <= 0:
        conn.log("warning", "stages.rlhf.policy.beta is 0: the policy is optimised without a KL term to the reference", STAGE)

    rm, rm_tok = load_frozen_reward_model(config, runtime, stage_dir)
    seed_everything(config)
    tokenizer = load_tokenizer(config)
    init_adapter = request.get("init_adapter")
    model = load_policy(config, runtime, init_adapter, STAGE)
    if not init_adapter:
        conn.log("info", "the RLHF policy starts from the base model with a fresh LoRA adapter; the KL reference is the base model", STAGE)

    rows = load_rows(request["data"]["rlhf.prompts"], data_cfg.get("limit"))
    if "prompt" not in rows.column_names:
        raise StageError("bad_data", f"prompt rows need a prompt column (got {rows.column_names})")
    rows = prepare_prompts(rows, tokenizer, data_cfg.get("max_prompt_length"))
    train_ds, eval_ds = split(rows, float(data_cfg.get("eval_fraction") or 0), seed)

    prompts = [prompt_text(r, tokenizer) for r in rows.select(range(min(3, len(rows))))]
    max_new = int(pol_cfg["max_completion_length"])
    before = sample(model, tokenizer, prompts, max_new_tokens=max_new)
    out_dir = str(_ckpt_root(stage_dir, POLICY_PHASE))
    if algorithm == "rloo":
        trainer = build_rloo_trainer(config, pol_cfg, model, tokenizer, train_ds, rm, rm_tok, stage_dir, runtime,
                                     eval_ds=eval_ds, output_dir=out_dir, conn=conn)
    elif algorithm == "grpo":
        trainer = build_grpo_trainer(config, pol_cfg, model, tokenizer, train_ds, [rm], [1.0], stage_dir, runtime,
                                     eval_ds=eval_ds, output_dir=out_dir, reward_processing_classes=[rm_tok], conn=conn, stage=STAGE)
    else:
        raise StageError("bad_config", f"unknown stages.rlhf.policy.algorithm {algorithm!r} (grpo or rloo)")
    cycle = cycle_steps(trainer.args)
    callback = StreamCallback(conn, STAGE, boundary=cycle, step_offset=n_rm, phase=POLICY_PHASE)
    summary = run_training(trainer, conn, STAGE, checkpoint, callback)
    summary = {**summary, "generation_cycle_steps": cycle, "algorithm": algorithm}
    if callback.cancelled:
        return "cancelled", summary

    conn.state("saving", STAGE)
    after = sample(model, tokenizer, prompts, max_new_tokens=max_new)
    text_prompts = [p if isinstance(p, str) else "" for p in prompts]
    summary["sample_reward_before"] = reward_of(rm, rm_tok, text_prompts, before)
    summary["sample_reward_after"] = reward_of(rm, rm_tok, text_prompts, after)
    adapter = save_adapter(model, stage_dir, {
        "stage": STAGE,
        "base_model": config["model"]["id"],
        "parent_adapter": init_adapter,
        "reward_model": str(Path(stage_dir) / RM_DIR),
        "reward_model_heldout_accuracy": rm_info.get("heldout_accuracy"),
        "algorithm": algorithm,
        "beta": float(pol_cfg["beta"]),
    })
    write_samples(stage_dir, STAGE, prompts, before, after)
    return "ok", {**summary, "adapter": adapter}


# --------------------------------------------------------------------------------------------

def run(request: dict, conn: Connection):
    config = request["config"]
    stage_dir = request["stage_dir"]
    Path(stage_dir).mkdir(parents=True, exist_ok=True)

    checkpoint = resume_checkpoint(request)
    phase = checkpoint_phase(checkpoint)[0] if checkpoint else None

    conn.state("loading_model", STAGE, config["model"]["id"])
    runtime = resolve_runtime(config, conn, STAGE)

    if phase == POLICY_PHASE:
        rm_info = read_reward_model_info(stage_dir)
        ckpt_step = checkpoint_step(checkpoint)
        marker_step = checkpoint_phase(checkpoint)[1]
        if ckpt_step is not None and marker_step != int(rm_info["steps"]) + ckpt_step:
            raise StageError("bad_checkpoint", f"{checkpoint} (stage step {marker_step}) does not continue the saved reward model ({rm_info['steps']} steps); start the stage afresh")
        rm_summary = {"global_step": int(rm_info["steps"]), "heldout_accuracy": rm_info.get("heldout_accuracy"),
                      "heldout_margin": rm_info.get("heldout_margin"), "eval_pairs": rm_info.get("eval_pairs"),
                      "path": str(Path(stage_dir) / RM_DIR), "reused": True}
    else:
        # A new reward model invalidates whatever came after the old one; a fresh start also
        # drops stale reward-model checkpoints, so a later resume never mixes two runs.
        if is_main_process():
            _remove(_ckpt_root(stage_dir, POLICY_PHASE))
            _remove(Path(stage_dir) / RM_DIR)
            if checkpoint is None:
                _remove(_ckpt_root(stage_dir, RM_PHASE))
        barrier(conn)  # several ranks: none writes a checkpoint into a folder rank 0 is removing
        status, rm_summary = train_reward_model(request, conn, runtime, checkpoint if phase == RM_PHASE else None)
        if status == "cancelled":
            last = latest_complete(_ckpt_root(stage_dir, RM_PHASE))
            return "cancelled", {"phase": RM_PHASE, "reward_model": rm_summary, "global_step": rm_summary.get("global_step"),
                                 "checkpoint": str(last) if last else None}
        rm_info = read_reward_model_info(stage_dir)
        checkpoint = None

    status, pol_summary = train_policy(request, conn, runtime, rm_info, checkpoint if phase == POLICY_PHASE else None)
    n_rm = int(rm_info["steps"])
    total = n_rm + int(pol_summary.get("global_step") or 0)
    if status == "cancelled":
        last = latest_complete(_ckpt_root(stage_dir, POLICY_PHASE))
        return "cancelled", {"phase": POLICY_PHASE, "reward_model": rm_summary, "policy": pol_summary, "global_step": total,
                             "checkpoint": str(last) if last else None}
    return "ok", {
        "reward_model": rm_summary,
        "policy": pol_summary,
        "heldout_accuracy": rm_summary.get("heldout_accuracy"),
        "reward_model_path": str(Path(stage_dir) / RM_DIR),
        "adapter": pol_summary["adapter"],
        "global_step": total,
        "train_runtime_s": float(rm_summary.get("train_runtime_s") or 0.0) + float(pol_summary.get("train_runtime_s") or 0.0),
        "adapter_mode": runtime.mode,
        "device": runtime.device,
    }
