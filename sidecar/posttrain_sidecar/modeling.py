"""Device, adapter mode, tokenizer, policy and reward-model loading.

Decisions made here are logged once as ``event.log`` (never silent): the device actually used,
and QLoRA → LoRA fallbacks. Heavy imports (torch, transformers, peft) happen inside functions so
the sidecar can say hello before paying for them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .connection import Connection, StageError


@dataclass
class Runtime:
    device: str  # "cpu" | "cuda"
    mode: str  # "lora" | "qlora"
    dtype: Any  # torch dtype of the base weights / compute
    checkpointing: bool = False  # gradient checkpointing


def decide(config: dict, *, cuda: bool, bitsandbytes: bool, bf16: bool = True) -> dict[str, Any]:
    """The one rule for device, adapter mode, dtype name and gradient checkpointing, from the
    config and what the machine has. Pure: resolve_runtime applies it (and says why), the
    preflight's memory estimate reads it before torch is imported."""
    rt, model = config["runtime"], config["model"]
    device = "cuda" if rt["device"] == "cuda" or (rt["device"] == "auto" and cuda) else "cpu"
    adapter_mode = model["adapter"]["mode"]
    want_4bit = adapter_mode == "qlora" or (adapter_mode == "auto" and bool(model.get("use_4bit")))
    mode = "qlora" if want_4bit and device == "cuda" and bitsandbytes else "lora"
    dtype = model.get("dtype", "auto")
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" and bf16 else "float32"
    gc = model.get("gradient_checkpointing", "auto")
    return {"device": device, "mode": mode, "want_4bit": want_4bit, "dtype": dtype,
            "checkpointing": device == "cuda" if gc == "auto" else bool(gc)}


def _has_bitsandbytes() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # ImportError, or a CUDA-less build raising at import
        return False
    return True


def resolve_runtime(config: dict, conn: Connection | None = None, stage: str | None = None) -> Runtime:
    """Pick device, adapter mode and dtype from the config and what this machine has."""
    import torch

    rt = config["runtime"]
    say = (lambda level, msg: conn.log(level, msg, stage)) if conn else (lambda level, msg: None)

    cuda = torch.cuda.is_available()
    if rt["device"] == "cuda" and not cuda:
        raise StageError(
            "device_unavailable",
            "runtime.device is 'cuda' but torch sees no CUDA device (torch "
            f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). Use runtime.device 'auto' or 'cpu'.",
        )
    bnb = _has_bitsandbytes() if cuda else False
    d = decide(config, cuda=cuda, bitsandbytes=bnb, bf16=bool(cuda and torch.cuda.is_bf16_supported()))
    device, mode, dtype = d["device"], d["mode"], getattr(torch, d["dtype"])
    if rt.get("threads") and device == "cpu":
        torch.set_num_threads(int(rt["threads"]))
    if d["want_4bit"] and mode != "qlora":
        if device != "cuda":
            say("warning", "QLoRA (4-bit) needs CUDA; this machine trains plain LoRA instead.")
        else:
            say("warning", "QLoRA (4-bit) needs bitsandbytes, which is not installed (pip install 'posttrain-sidecar[gpu]'); training plain LoRA instead.")
    say("info", f"device {device}{' (' + torch.cuda.get_device_name(0) + ')' if device == 'cuda' else ''}, adapter {mode}, "
                f"dtype {d['dtype']}, gradient checkpointing {'on' if d['checkpointing'] else 'off'}")
    return Runtime(device=device, mode=mode, dtype=dtype, checkpointing=d["checkpointing"])


def _model_kwargs(config: dict, runtime: Runtime) -> dict[str, Any]:
    import torch

    model = config["model"]
    kwargs: dict[str, Any] = {
        "revision": model.get("revision") or None,
        "trust_remote_code": bool(model.get("trust_remote_code")),
        "dtype": runtime.dtype,
    }
    if runtime.mode == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    return kwargs


def _offline_hint(model_id: str) -> str:
    if os.path.isdir(model_id):
        return ""
    return " (if this machine has no network, download the model elsewhere and set model.id to its local folder)"


def load_tokenizer(config: dict):
    from transformers import AutoTokenizer

    model_id = config["model"]["id"]
    try:
        tok = AutoTokenizer.from_pretrained(
            model_id, revision=config["model"].get("revision") or None, trust_remote_code=bool(config["model"].get("trust_remote_code"))
        )
    except Exception as e:  # noqa: BLE001 - any loading failure is the same user-facing problem
        raise StageError("model_load_failed", f"cannot load a tokenizer from {model_id}: {e}{_offline_hint(model_id)}") from e
    if tok.pad_token is None:
        # Padding with EOS is the usual fix for causal LMs that ship without a pad token.
        tok.pad_token = tok.eos_token
    return tok


def lora_config(config: dict, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    a = config["model"]["adapter"]
    return LoraConfig(
        r=int(a["r"]),
        lora_alpha=float(a["alpha"]),
        lora_dropout=float(a["dropout"]),
        target_modules=a["target_modules"],
        # DoRA: a learnt magnitude per output row on top of LoRA's direction (peft's use_dora);
        # rsLoRA: scale alpha / sqrt(r) instead of alpha / r, steadier at large ranks.
        use_dora=bool(a.get("use_dora", False)),  # .get: configs of runs made before these keys existed
        use_rslora=bool(a.get("use_rslora", False)),
        task_type=task_type,
    )


def prepare_4bit(base, runtime: Runtime):
    """What QLoRA needs of a 4-bit base before the adapter goes on: every base weight frozen, and
    with gradient checkpointing, inputs that require grad (so checkpointed segments backprop).

    Not peft's prepare_model_for_kbit_training: it casts every parameter that is not 4-bit to
    float32, the embeddings and LM head included. For an 8B Llama (vocab 128,256 x 4,096, untied)
    that is 2.1 GB of bf16 weights becoming 4.2 GB, most of what 4-bit saved on the decoder; the
    trainers' bf16 autocast computes in bf16 whatever the embedding dtype (as Axolotl and
    torchtune train QLoRA)."""
    for param in base.parameters():
        param.requires_grad_(False)
    if runtime.checkpointing:
        base.enable_input_require_grads()
    return base


def load_policy(config: dict, runtime: Runtime, init_adapter: str | None, stage: str):
    """The policy to train: the base model with the previous stage's adapter loaded trainable,
    or with a fresh LoRA when the stage starts from the base.

    Chaining keeps ONE adapter that every stage continues to train (rather than merging each
    stage into the base): the final adapter of every stage is a delta on the base model, loadable
    with peft as is, and QLoRA never merges into 4-bit weights. TRL then adds a frozen "ref" copy
    of the adapter as the reference model, so the reference is the previous stage's policy.
    """
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    model_id = config["model"]["id"]
    try:
        base = AutoModelForCausalLM.from_pretrained(model_id, **_model_kwargs(config, runtime))
    except Exception as e:  # noqa: BLE001
        raise StageError("model_load_failed", f"cannot load model {model_id}: {e}{_offline_hint(model_id)}") from e
    if runtime.mode == "qlora":
        base = prepare_4bit(base, runtime)
    if runtime.device == "cuda" and runtime.mode != "qlora":
        base = base.to("cuda")
    if init_adapter:
        if not os.path.isfile(os.path.join(init_adapter, "adapter_config.json")):
            raise StageError("missing_adapter", f"input adapter {init_adapter} has no adapter_config.json (was the previous stage finished?)")
        return PeftModel.from_pretrained(base, init_adapter, is_trainable=True)
    return get_peft_model(base, lora_config(config))


def load_reward_model(config: dict, runtime: Runtime, adapter: str | None = None, trainable: bool = True):
    """A scalar reward model: the base as AutoModelForSequenceClassification(num_labels=1) with a
    LoRA of task_type SEQ_CLS (without it peft leaves the new score head frozen, silently)."""
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForSequenceClassification

    model_id = config["model"]["id"]
    tok = load_tokenizer(config)
    try:
        base = AutoModelForSequenceClassification.from_pretrained(model_id, num_labels=1, **_model_kwargs(config, runtime))
    except Exception as e:  # noqa: BLE001
        raise StageError("model_load_failed", f"cannot load {model_id} as a reward model: {e}{_offline_hint(model_id)}") from e
    base.config.pad_token_id = tok.pad_token_id
    if runtime.device == "cuda" and runtime.mode != "qlora":
        base = base.to("cuda")
    if adapter:
        return PeftModel.from_pretrained(base, adapter, is_trainable=trainable), tok
    return get_peft_model(base, lora_config(config, task_type="SEQ_CLS")), tok
