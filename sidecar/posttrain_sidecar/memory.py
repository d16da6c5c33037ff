"""Will this fit? A stage's peak memory, estimated from the model's config before any weight loads.

``estimate_stage(model_cfg, config, stage, device=..., mode=..., dtype_bytes=..., checkpointing=...)``
returns an ``Estimate``: named parts in bytes and their total. The preflight (preflight.check_memory)
calls it for every selected stage, prints it, and refuses a stage whose estimate exceeds the
device's free memory (``runtime.memory_check``); the GPU check (bench/gpu/check.py) prints it beside
the measured peak. Peers answer this for full-weight inference (accelerate's estimate-memory), not
for LoRA/QLoRA training with a reference model and generation, which is what users run out of
memory in.

What is counted (each part is one key of ``Estimate.parts``):

  weights      the base model. Linear layers of the decoder: dtype bytes per parameter (LoRA),
               or 4-bit nf4 with double-quantised block constants, 0.516 bytes (QLoRA). Embeddings,
               the untied LM head and the norms stay in the compute dtype (bitsandbytes quantises
               Linear layers only; posttrain does not upcast them to float32, see modeling.py).
  adapter      the LoRA matrices of every targeted linear (r * (in + out) each), kept in float32
               by peft, with their gradients and AdamW's two moments: 16 bytes per parameter.
               DPO, KTO, GRPO and RLHF add TRL's frozen "ref" copy of the adapter (4 bytes per
               parameter). For the offline stages the catalogue says which keep one, and how many
               sequences a row puts through the model (catalogue.py ``memory``).
  activations  what the backward pass needs, per token and layer (element counts below), times
               the micro-batch's tokens. With gradient checkpointing only each layer's input is
               kept, plus one layer's activations while it is recomputed.
  logits       the LM head's output for every trained token (GRPO: completion tokens only, TRL
               passes logits_to_keep): the logits in the compute dtype,
               their float32 log-softmax kept for the backward, its gradient, and TRL's float32
               entropy/log-prob pass (3 float32 copies). Sequence classification (the reward model)
               has no vocabulary-sized output.
  generation   GRPO and the RLHF policy: the KV cache for one generation batch (batch_size *
               steps_per_generation completions of prompt + completion tokens) and the float32
               logits of the sampling step.
  reward_model RLHF policy phase: the frozen reward model (a second copy of the base weights).
  runtime      what every process holds besides: on CUDA the allocator's slack (10% of the rest;
               the CUDA context itself, ~0.5 GiB, is not in torch's allocated memory and is taken
               off the free memory instead); on CPU the interpreter with torch, transformers and
               TRL imported (resident set: 0.47 GiB measured with a tiny model) plus glibc's cached free memory
               (25% of the rest).

Activation elements per token per layer (Llama/Qwen2 shapes; h hidden, q = heads * head_dim,
kv = kv_heads * head_dim, i intermediate):
  attention  residual in, norm out (h each), q/k/v projections (q + 2kv), rotated q and k (q + kv),
             attention output (q), o-projection output (h)            = 3h + 3q + 3kv
  MLP        residual, norm out (h each), gate, up, act(gate), act*up (i each), down output (h)
                                                                      = 3h + 4i
  norms      RMSNorm computes in float32: its two inputs kept again at 4 bytes each
  LoRA       dropout > 0 keeps a dropped-out copy of each targeted input (+1 byte mask each)

A stage's peak is the largest of its phases (RLHF: reward model, then policy); a phase's peak is
its resident parts plus its largest transient (a training micro-batch, or generation). Lengths the
config leaves open are assumed (1024 tokens for offline stages' sequences, their default, 512 for
unbounded prompts, named in ``Estimate.assumptions``) so that the number is a bound a user can act
on: every knob that lowers it is listed by ``knobs()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GIB = 2**30
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit weights + 8-bit absmax per 64 + fp32 per 256 absmax
ADAPTER_TRAIN_BYTES = 16  # fp32 weight + fp32 grad + AdamW exp_avg + exp_avg_sq
CUDA_SLACK = 0.10
CPU_BASELINE = int(0.45 * GIB)
CPU_SLACK = 0.25
DEFAULT_SEQ = 1024  # SFT/DPO max_length when data.<stage>.max_length is null (the stages' default)
DEFAULT_PROMPT = 512  # an unbounded prompt length, for GRPO and the RLHF policy
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shape:
    hidden: int
    inter: int
    layers: int
    q: int  # heads * head_dim
    kv: int  # kv_heads * head_dim
    vocab: int
    tied: bool

    @classmethod
    def of(cls, mc: dict[str, Any]) -> "Shape":
        """From a transformers config dict (config.json): Llama/Qwen2/Mistral names, GPT-2 names as a fallback."""
        mc = {**mc.get("text_config", {}), **{k: v for k, v in mc.items() if k != "text_config"}}
        h = int(mc.get("hidden_size") or mc.get("n_embd") or mc.get("d_model"))
        heads = int(mc.get("num_attention_heads") or mc.get("n_head") or 1)
        head_dim = int(mc.get("head_dim") or h // heads)
        kv_heads = int(mc.get("num_key_value_heads") or heads)
        return cls(
            hidden=h,
            inter=int(mc.get("intermediate_size") or mc.get("n_inner") or 4 * h),
            layers=int(mc.get("num_hidden_layers") or mc.get("n_layer")),
            q=heads * head_dim,
            kv=kv_heads * head_dim,
            vocab=int(mc.get("vocab_size")),
            tied=bool(mc.get("tie_word_embeddings", True)),
        )

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear of one decoder layer."""
        h, q, kv, i = self.hidden, self.q, self.kv, self.inter
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linears().values())

    @property
    def other_params(self) -> int:
        """Embeddings, the untied LM head, norms: never quantised."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + (2 * self.layers + 1) * self.hidden

    @property
    def params(self) -> int:
        return self.linear_params + self.other_params

    def lora_params(self, r: int, targets: Any) -> int:
        mods = self.linears()
        names = LINEAR_NAMES if targets == "all-linear" else [t for t in targets if t in mods]
        return self.layers * sum(r * (mods[n][0] + mods[n][1]) for n in names)

    def targeted_inputs(self, targets: Any) -> int:
        """Elements of the inputs the targeted linears see per token and layer (LoRA dropout copies)."""
        mods = self.linears()
        names = LINEAR_NAMES if targets == "all-linear" else [t for t in targets if t in mods]
        return sum(mods[n][0] for n in names)


@dataclass
class Estimate:
    stage: str
    device: str
    mode: str
    parts: dict[str, float] = field(default_factory=dict)  # bytes
    phase: str | None = None  # RLHF: the phase whose peak this is
    assumptions: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()))

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "device": self.device, "mode": self.mode, "phase": self.phase,
                "total_gib": round(self.total / GIB, 3),
                "parts_gib": {k: round(v / GIB, 3) for k, v in self.parts.items() if v},
                "assumptions": self.assumptions}

    def line(self) -> str:
        parts = ", ".join(f"{k} {v / GIB:.2f}" for k, v in self.parts.items() if v >= 0.005 * GIB)
        return f"{self.total / GIB:.2f} GiB ({parts})"


# --------------------------------------------------------------------------------------------
# Measured: a stage's peak resident set on CPU (what the estimate is held against there).

def reset_peak_rss() -> None:
    """Start a stage's peak resident set from what the stage itself holds.

    One warm sidecar serves every stage, and glibc keeps the heap an earlier stage freed: without
    malloc_trim the next stage's RSS starts at the earlier stage's peak (a 135M model's DPO read
    2.4 GiB after SFT, 0.4 of it SFT's leftovers), and a long pipeline's RSS only grows. Then
    writing 5 to clear_refs resets VmHWM (Linux >= 4.0); elsewhere the peak is the process's."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------------------------

def _activation_bytes(s: Shape, tokens: int, dtype_bytes: int, checkpointing: bool, lora_dropout: bool,
                      targets: Any) -> float:
    per_layer = (6 * s.hidden + 3 * s.q + 3 * s.kv + 4 * s.inter) * dtype_bytes + 2 * s.hidden * 4
    if lora_dropout:
        per_layer += s.targeted_inputs(targets) * (dtype_bytes + 1)
    if checkpointing:
        return tokens * (s.layers * s.hidden * dtype_bytes + per_layer)
    return tokens * s.layers * per_layer


def _logit_bytes(s: Shape, tokens: int, dtype_bytes: int) -> float:
    return tokens * s.vocab * (dtype_bytes + 3 * 4)


def _weights(s: Shape, mode: str, dtype_bytes: int) -> float:
    linear = NF4_BYTES if mode == "qlora" else dtype_bytes
    return s.linear_params * linear + s.other_params * dtype_bytes


def _finish(est: Estimate) -> Estimate:
    rest = est.total
    if est.device == "cuda":
        est.parts["runtime"] = CUDA_SLACK * rest
    else:
        est.parts["runtime"] = CPU_BASELINE + CPU_SLACK * rest
    return est


def _length(value: Any, default: int, what: str, assumptions: list[str]) -> int:
    if value:
        return int(value)
    assumptions.append(f"{what} is unset: assumed {default} tokens")
    return default


def estimate_stage(model_cfg: dict[str, Any], config: dict[str, Any], stage: str, *, device: str, mode: str,
                   dtype_bytes: int, checkpointing: bool) -> Estimate:
    """Peak memory of one stage (bytes in ``parts``); see the module docstring for what is counted."""
    s = Shape.of(model_cfg)
    ad = config["model"]["adapter"]
    r, targets, dropout = int(ad["r"]), ad["target_modules"], float(ad["dropout"]) > 0
    data, st = config["data"], config["stages"]
    lora = s.lora_params(r, targets)
    assumptions: list[str] = []

    def base(phase: str | None = None, ref: bool = False) -> Estimate:
        e = Estimate(stage, device, mode, phase=phase, assumptions=assumptions)
        e.parts["weights"] = _weights(s, mode, dtype_bytes)
        e.parts["adapter"] = lora * (ADAPTER_TRAIN_BYTES + (4 if ref else 0))
        return e

    def train(e: Estimate, seqs: int, seq_len: int, logit_len: int | None = None, lm_head: bool = True) -> Estimate:
        tokens = seqs * seq_len
        e.parts["activations"] = _activation_bytes(s, tokens, dtype_bytes, checkpointing, dropout, targets)
        e.parts["logits"] = _logit_bytes(s, seqs * (logit_len or seq_len), dtype_bytes) if lm_head else 0.0
        return e

    def online(e: Estimate, gen: dict, prompts: dict, what: str) -> Estimate:
        p = _length(prompts.get("max_prompt_length"), DEFAULT_PROMPT, f"data.{what}.max_prompt_length", assumptions)
        c = int(gen["max_completion_length"])
        b = int(gen["batch_size"])
        g = b * int(gen.get("steps_per_generation") or gen["grad_accum"])
        kv_cache = g * (p + c) * s.layers * 2 * s.kv * dtype_bytes
        sampling = g * s.vocab * 4 * 2  # float32 logits of one step, and their softmax
        train(e, b, p + c, logit_len=c)  # TRL asks the model for the completion's logits only
        # Generation (no grad) and the training micro-batch do not overlap: the larger one counts.
        if kv_cache + sampling > e.parts["activations"] + e.parts["logits"]:
            e.parts["activations"], e.parts["logits"] = 0.0, 0.0
            e.parts["generation"] = kv_cache + sampling
        return e

    offline = offline_memory(stage)
    if offline is not None:
        # The catalogue says how many sequences a row puts through the model (DPO, ORPO, SimPO:
        # chosen and rejected together; KTO: a completion and its KL completion) and whether a
        # frozen reference adapter is kept.
        seq = _length(data[stage].get("max_length"), DEFAULT_SEQ, f"data.{stage}.max_length", assumptions)
        return _finish(train(base(ref=offline["reference"]), offline["sequences"] * int(st[stage]["batch_size"]), seq))
    if stage == "grpo":
        return _finish(online(base(ref=float(st["grpo"]["beta"]) > 0), st["grpo"], data["grpo"], "grpo"))
    if stage == "rlhf":
        rm_cfg, pol = st["rlhf"]["reward_model"], st["rlhf"]["policy"]
        seq = _length(data["rlhf"]["preferences"].get("max_length"), DEFAULT_PROMPT,
                      "data.rlhf.preferences.max_length", assumptions)
        rm = _finish(train(base(phase="reward_model"), 2 * int(rm_cfg["batch_size"]), seq, lm_head=False))
        policy = base(phase="policy", ref=float(pol["beta"]) > 0)
        policy.parts["reward_model"] = _weights(s, mode, dtype_bytes)
        policy = _finish(online(policy, pol, data["rlhf"]["prompts"], "rlhf.prompts"))
        return rm if rm.total > policy.total else policy
    raise ValueError(f"no memory model for stage {stage!r}")


def offline_memory(stage: str) -> dict[str, Any] | None:
    """The catalogue's memory model of an offline stage, or None (GRPO, RLHF: modelled here)."""
    from .catalogue import CATALOGUE

    return (CATALOGUE.get(stage) or {}).get("memory")


def knobs(config: dict[str, Any], stage: str, mode: str, checkpointing: bool) -> list[str]:
    """The settings that lower a stage's estimate, with their current values (for the refusal)."""
    st = config["stages"]
    key = "stages.rlhf.policy" if stage == "rlhf" else f"stages.{stage}"
    cfg = st["rlhf"]["policy"] if stage == "rlhf" else st[stage]
    out = [f"{key}.batch_size {cfg['batch_size']} (raise {key}.grad_accum to keep the effective batch)"]
    if offline_memory(stage) is not None:
        out.append(f"data.{stage}.max_length {config['data'][stage].get('max_length')}")
    else:
        out.append(f"{key}.max_completion_length {cfg['max_completion_length']}")
    if not checkpointing:
        out.append("model.gradient_checkpointing true")
    if mode != "qlora":
        out.append("model.use_4bit true (QLoRA, CUDA + bitsandbytes)")
    return out


# --------------------------------------------------------------------------------------------
# `posttrain plan` runs this module with the sidecar's Python: {config, stages} on stdin, one JSON
# line out: {plan: {device, mode, dtype_bytes, checkpointing}, problems: [...]}, the same
# memory_estimate / memory_exceeds problems the preflight sends before a run.

def main() -> int:
    import json
    import sys

    from .preflight import check_memory, memory_plan

    body = json.loads(sys.stdin.read() or "{}")
    config, stages = body.get("config") or {}, body.get("stages") or []
    plan = memory_plan(config)
    print(json.dumps({"plan": plan, "problems": check_memory(config, stages, plan=plan)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
