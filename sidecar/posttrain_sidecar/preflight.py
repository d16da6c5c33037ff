"""Preflight: what can be checked before the first stage trains, without loading model weights.

``check(body, known_stages) -> [problem, ...]`` answers the controller's ``preflight {config, stages}``
request (see server.run_preflight). A problem is ``{stage, code, message, severity, fix}``:
``stage`` is None when it concerns every stage (the model, the device); ``severity`` "error" stops
the run, "warning" and "info" are notes (e.g. QLoRA falling back to LoRA, which is allowed).

Checked:
  * every requested stage has a trainer here (``unknown_stage``);
  * the model config loads (AutoConfig) and the tokenizer loads (AutoTokenizer): from a local
    folder with ``local_files_only``; for a hub id only from the local Hugging Face cache, never
    the network (not cached: an "info" note, the stage downloads it);
  * ``runtime.device: cuda`` only with a CUDA device (``device_unavailable``);
  * ``use_vllm`` (grpo, rlhf policy) only with CUDA and vllm installed (``vllm_unavailable``);
  * every reward function of a selected grpo stage resolves (``reward_import_failed``,
    ``bad_reward_args``) through rewards.resolve_reward_funcs, exactly as the stage will;
  * 4-bit (QLoRA) only with CUDA and bitsandbytes: a warning (``qlora_unavailable``), since the
    stage falls back to plain LoRA;
  * every selected stage's peak memory, estimated from the model config (memory.estimate_stage), fits
    the device's free memory: one "info" line per stage (``memory_estimate``), and
    ``memory_exceeds`` (an error, a warning with ``runtime.memory_check: warn``, nothing with
    ``off``) naming the settings that would make it fit;
  * every conversational row of a selected stage (``messages``; body ``data: {target: path}``, the
    run's copies) renders through the model's chat template (``chat_template_refused``, with the
    rows; ``chat_template_missing``; ``chat_template_no_generation`` for assistant-only loss);
  * every ``trainer_args`` of a selected stage fits its TRL config dataclass (``bad_trainer_args``);
  * every ``runtime.report_to`` integration is installed (``integration_missing``: transformers
    would otherwise fail while building the first trainer, after the model loaded); W&B in online
    mode without credentials is a warning (``wandb_not_logged_in``: wandb.init fails without a tty).
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from typing import Any, Callable, Iterable, Sequence

from .connection import StageError

Problem = dict[str, Any]


def problem(stage: str | None, code: str, message: str, fix: str | None = None, severity: str = "error",
            data: dict[str, Any] | None = None) -> Problem:
    out = {"stage": stage, "code": code, "message": message, "severity": severity, "fix": fix}
    if data is not None:
        out["data"] = data
    return out


def is_local_model(model_id: str) -> bool:
    """Mirrors the controller's isLocalModelPath (after resolution local ids are absolute)."""
    return model_id.startswith(("/", "./", "../", "~")) or model_id == "." or os.path.isdir(model_id)


# --------------------------------------------------------------------------------------------
# Environment probes (patchable in tests)


def has_module(name: str) -> bool:
    """Installed, without importing it (vllm and bitsandbytes are heavy or touch the GPU at import)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def hub_cached(model_id: str, revision: str | None) -> bool:
    """Whether a hub model's config.json is in the local cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        found = try_to_load_from_cache(model_id, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - a malformed id is "not cached"; AutoConfig says more below
        return False
    return isinstance(found, str)


# --------------------------------------------------------------------------------------------
# Checks


def _short(e: BaseException, limit: int = 400) -> str:
    text = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_model(config: dict, loaded: dict[str, Any] | None = None) -> list[Problem]:
    """The model config and tokenizer load (locally, no network). ``loaded`` (optional) receives
    the tokenizer as ``loaded["tokenizer"]``, so later checks do not load it again."""
    model = config.get("model") or {}
    model_id = model.get("id")
    if not isinstance(model_id, str) or not model_id:
        return [problem(None, "bad_config", "model.id is missing", "Set model.id to a hub id or a local model folder.")]
    revision = model.get("revision") or None
    trust = bool(model.get("trust_remote_code"))
    local = is_local_model(model_id)
    if local:
        path = os.path.expanduser(model_id)
        if not os.path.isdir(path):
            return [problem(None, "model_not_found", f"model.id {model_id} does not exist (or is not a folder) on the sidecar's machine",
                            "Point model.id at a folder saved with save_pretrained.")]
    elif not hub_cached(model_id, revision):
        return [problem(None, "model_not_cached",
                        f"model {model_id} is not in the local Hugging Face cache; its config and tokenizer were not checked "
                        "(the first stage downloads them)",
                        "On a machine without network, download it first (`hf download " + model_id + "`) or set model.id to a local folder.",
                        severity="info")]
    # A hub model found in the cache may still lack files the stage would download: not fatal.
    fail_severity = "error" if local else "warning"
    where = "the model folder" if local else "the local Hugging Face cache"
    out: list[Problem] = []
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(model_id, revision=revision, trust_remote_code=trust, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any failure is the same user-facing problem
        if "trust_remote_code" in str(e) and not trust:
            # transformers' own text is long and cut; say it whole, with the key to set.
            return [problem(None, "trust_remote_code_required",
                            f"model {model_id} ships its own modelling code (auto_map in its config.json); loading it means running that code, "
                            "which posttrain does only when model.trust_remote_code is true",
                            "Set model.trust_remote_code true if you trust where the model comes from (its code runs with your permissions).",
                            fail_severity)]
        out.append(problem(None, "model_config_failed", f"cannot load the model config of {model_id} from {where}: {_short(e)}",
                           "model.id must be a transformers model folder (config.json with a model_type).", fail_severity))
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision, trust_remote_code=trust, local_files_only=True)
        if loaded is not None:
            loaded["tokenizer"] = tokenizer
    except Exception as e:  # noqa: BLE001
        out.append(problem(None, "tokenizer_failed", f"cannot load a tokenizer for {model_id} from {where}: {_short(e)}",
                           "Save the tokenizer beside the model (tokenizer.save_pretrained(folder)) or copy its tokenizer files there.",
                           fail_severity))
    return out


# Stage -> the data target whose rows may be conversations (``messages``). Issue 16 widens this.
CHAT_TARGETS = {"sft": "sft"}
SHOWN_ROWS = 20


def check_chat_rows(config: dict, stages: Sequence[str], data: dict[str, str], tokenizer: Any) -> list[Problem]:
    """Render every conversational row of the selected stages through the model's chat template,
    the way the stage will, and report the rows it refuses (a strict template raises on roles out
    of order: user, user, assistant), with ``data: {target, rows: [{row, roles, reason}]}`` (row:
    0-based in the run's copy; the controller turns it into file:line). Also: a conversational file
    for a tokenizer without a chat template, and assistant-only loss with a template that does not
    mark assistant turns (``{% generation %}``), which TRL refuses only once training starts.
    ``tokenizer``: the one check_model loaded; None (it did not load) skips the check."""
    out: list[Problem] = []
    if tokenizer is None:
        return out
    for stage in stages:
        target = CHAT_TARGETS.get(stage)
        path = data.get(target) if target else None
        if not path or not os.path.isfile(path):
            continue
        convos: list[tuple[int, list]] = []
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if line.strip():
                    row = json.loads(line)
                    if isinstance(row.get("messages"), list):
                        convos.append((i, row["messages"]))
        if not convos:
            continue
        template = getattr(tokenizer, "chat_template", None)
        if not template:
            out.append(problem(stage, "chat_template_missing",
                               f"data.{target} holds conversations (messages), but the tokenizer of {config['model']['id']} has no chat template to render them",
                               f"Use a model whose tokenizer has a chat template, or give data.{target} prompt/response rows."))
            continue
        bad = []
        for i, messages in convos:
            try:
                tokenizer.apply_chat_template(messages, tokenize=False)
            except Exception as e:  # noqa: BLE001 - jinja's raise_exception, or a KeyError in the template
                roles = ", ".join(str(m.get("role")) if isinstance(m, dict) else "?" for m in messages)
                bad.append({"row": i, "roles": roles, "reason": _short(e, 200)})
        if bad:
            first = bad[0]
            out.append(problem(stage, "chat_template_refused",
                               f"the chat template of {config['model']['id']} refuses {len(bad)} of {len(convos)} conversations in data.{target} "
                               f"(first: row {first['row'] + 1} of the run's copy, roles {first['roles']}: {first['reason']})",
                               "Fix or drop those rows (most templates want user and assistant turns alternating, an optional system "
                               "turn first), or use a model whose template accepts them.",
                               data={"target": target, "rows": bad[:SHOWN_ROWS], "count": len(bad)}))
        train = ((config.get("stages") or {}).get(stage) or {})
        if train.get("completion_only_loss") and not _training_template_ok(tokenizer):
            out.append(problem(stage, "chat_template_no_generation",
                               f"stages.{stage}.completion_only_loss is true, so conversations train on assistant turns only, but the chat "
                               f"template of {config['model']['id']} does not mark them ({{% generation %}}) and TRL has no patched "
                               "version of it; TRL would stop when the trainer is built",
                               f"Set stages.{stage}.completion_only_loss false (loss on every token), or use a template with {{% generation %}} markers."))
    return out


def _training_template_ok(tok: Any) -> bool:
    """What TRL's SFTTrainer does with assistant_only_loss: a template with generation markers is
    used as is, a known one is swapped for TRL's patched copy, any other is refused."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tok.chat_template):
        return True
    try:
        get_training_chat_template(tok)
    except ValueError:
        return False
    return True


def check_trainer_args(config: dict, stages: Sequence[str]) -> list[Problem]:
    """Every ``stages.<s>.trainer_args`` of a selected stage against its TRL config dataclass
    (trainer_args.problems, which the stage applies again when it builds its config)."""
    from .catalogue import CATALOGUE, section_of, trainer_sections, trl_class
    from .trainer_args import problems as arg_problems

    out: list[Problem] = []
    for stage in stages:
        if stage not in CATALOGUE:
            continue
        for section, cls_name in trainer_sections(stage, config):
            args = section_of(config, section).get("trainer_args")
            if not args:
                continue
            for path, message in arg_problems(section, trl_class(cls_name), args):
                out.append(problem(stage, "bad_trainer_args", f"{path}: {message}",
                                   f"Fix or remove {path}; `posttrain config --preset …` shows the resolved config."))
    return out


def check_stages(stages: Sequence[str], known_stages: Iterable[str]) -> list[Problem]:
    known = sorted(known_stages)
    return [
        problem(s, "unknown_stage", f"unknown stage {s!r}: this sidecar trains {', '.join(known)}",
                "Use one of those names in runtime.stages / --stages.")
        for s in stages if s not in known
    ]


def check_rewards(config: dict, stages: Sequence[str],
                  resolve: Callable[[Sequence[dict]], Any] | None = None) -> list[Problem]:
    if "grpo" not in stages:
        return []
    if resolve is None:
        from .rewards import resolve_reward_funcs as resolve
    specs = ((config.get("stages") or {}).get("grpo") or {}).get("reward_funcs") or []
    out: list[Problem] = []
    # One at a time, so every bad function is reported, not just the first.
    for i, spec in enumerate(specs):
        try:
            resolve([spec])
        except StageError as e:
            fix = ("Check the module is importable from the directory posttrain runs in (it is on the import path) "
                   "and the function name is right; built-ins are exact_answer, format, length."
                   if e.code == "reward_import_failed" else "Fix the args of this reward function (see README, Training).")
            out.append(problem("grpo", e.code, f"stages.grpo.reward_funcs.{i}: {e.message}", fix))
        except Exception as e:  # noqa: BLE001
            out.append(problem("grpo", "reward_import_failed", f"stages.grpo.reward_funcs.{i}: {_short(e)}"))
    if not specs:
        out.append(problem("grpo", "bad_reward_args", "stages.grpo.reward_funcs is empty", "Add at least one reward function."))
    return out


def check_runtime(config: dict, stages: Sequence[str], *, cuda: Callable[[], bool] = cuda_available,
                  module: Callable[[str], bool] = has_module) -> list[Problem]:
    rt = config.get("runtime") or {}
    model = config.get("model") or {}
    st = config.get("stages") or {}
    device = rt.get("device", "auto")
    vllm_stages = []
    if "grpo" in stages and (st.get("grpo") or {}).get("use_vllm"):
        vllm_stages.append(("grpo", "stages.grpo.use_vllm"))
    if "rlhf" in stages and ((st.get("rlhf") or {}).get("policy") or {}).get("use_vllm"):
        vllm_stages.append(("rlhf", "stages.rlhf.policy.use_vllm"))
    adapter_mode = (model.get("adapter") or {}).get("mode", "auto")
    want_4bit = adapter_mode == "qlora" or (adapter_mode == "auto" and bool(model.get("use_4bit")))

    out: list[Problem] = []
    # Importing torch costs a second or two: only when the answer matters.
    if device == "cpu":
        has_cuda = False
    elif device == "cuda" or vllm_stages or want_4bit:
        has_cuda = cuda()
    else:
        return out
    if device == "cuda" and not has_cuda:
        out.append(problem(None, "device_unavailable", "runtime.device is 'cuda' but torch sees no CUDA device",
                           "Use runtime.device 'auto' or 'cpu', or install a CUDA build of torch."))
    training_on_cuda = has_cuda and device != "cpu"
    for stage, path in vllm_stages:
        if not training_on_cuda:
            out.append(problem(stage, "vllm_unavailable", f"{path} needs a CUDA device; this run trains on CPU", f"Set {path} false."))
        elif not module("vllm"):
            out.append(problem(stage, "vllm_unavailable", f"{path} is set but vllm is not installed in the sidecar's environment",
                               f"pip install vllm, or set {path} false to generate with transformers."))
    if want_4bit:
        if not training_on_cuda:
            out.append(problem(None, "qlora_unavailable", "4-bit QLoRA needs CUDA; this machine trains plain LoRA instead",
                               "Set model.use_4bit false (adapter.mode lora) to silence this.", "warning"))
        elif not module("bitsandbytes"):
            out.append(problem(None, "qlora_unavailable", "4-bit QLoRA needs bitsandbytes, which is not installed; training plain LoRA instead",
                               "pip install 'posttrain-sidecar[gpu]'.", "warning"))
    return out


# report_to name -> (module transformers looks for, what to install)
INTEGRATIONS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "trackio": ("trackio", "trackio")}


def wandb_credentials(env: dict[str, str] | None = None) -> bool:
    """Whether wandb will find an API key without asking: WANDB_API_KEY, or a netrc entry for its
    host (what `wandb login` writes). Read from files only, never the network."""
    import netrc
    from urllib.parse import urlparse

    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        return netrc.netrc(env.get("NETRC") or None).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def check_integrations(config: dict, *, module: Callable[[str], bool] = has_module,
                       env: dict[str, str] | None = None, python: str = "python") -> list[Problem]:
    report_to = (config.get("runtime") or {}).get("report_to") or []
    env = os.environ if env is None else env
    out: list[Problem] = []
    for name in report_to:
        mod, package = INTEGRATIONS.get(name, (name, name))
        if not module(mod):
            out.append(problem(None, "integration_missing",
                               f"runtime.report_to includes {name!r} but {package} is not installed in the sidecar's environment",
                               f"{python} -m pip install {package}  (or remove {name!r} from runtime.report_to)"))
    if "wandb" in report_to and module("wandb") and env.get("WANDB_MODE", "online") not in ("offline", "disabled", "dryrun") \
            and not wandb_credentials(env):
        out.append(problem(None, "wandb_not_logged_in",
                           "runtime.report_to includes 'wandb' in online mode but no W&B API key was found (WANDB_API_KEY or `wandb login`); "
                           "the first stage will fail when wandb starts",
                           "Run `wandb login`, set WANDB_API_KEY, or set WANDB_MODE=offline to log locally.", "warning"))
    return out


def free_memory(device: str) -> tuple[int, str]:
    """(bytes free, where): CUDA device 0's free memory less the CUDA context a process takes
    (~0.5 GiB, outside torch's allocator), or the machine's MemAvailable on CPU."""
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(0)
        return max(0, int(free) - 2**29), f"free on {torch.cuda.get_device_name(0)}"
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available RAM"
    except OSError:
        pass
    return 0, "unknown"


def memory_plan(config: dict, *, cuda: Callable[[], bool] = cuda_available,
                module: Callable[[str], bool] = has_module) -> dict[str, Any]:
    """How the stages will hold the model (modeling.decide, the rule resolve_runtime applies):
    device, adapter mode, dtype bytes, gradient checkpointing. torch is imported only when CUDA
    could matter."""
    from .modeling import decide

    has_cuda = False if (config.get("runtime") or {}).get("device") == "cpu" else cuda()
    d = decide(config, cuda=has_cuda, bitsandbytes=has_cuda and module("bitsandbytes"))
    return {"device": d["device"], "mode": d["mode"], "dtype_bytes": 4 if d["dtype"] == "float32" else 2,
            "checkpointing": d["checkpointing"]}


def check_memory(config: dict, stages: Sequence[str], *, plan: dict[str, Any] | None = None,
                 free: Callable[[str], tuple[int, str]] = free_memory) -> list[Problem]:
    from .memory import GIB, Shape, estimate_stage, knobs

    policy = (config.get("runtime") or {}).get("memory_check", "error")
    if policy == "off":
        return []
    model = config.get("model") or {}
    try:
        from transformers import AutoConfig

        mc = AutoConfig.from_pretrained(model["id"], revision=model.get("revision") or None,
                                        trust_remote_code=bool(model.get("trust_remote_code")), local_files_only=True).to_dict()
        Shape.of(mc)
    except Exception:  # noqa: BLE001 - no config (check_model says why) or an architecture we cannot read
        return []
    plan = plan or memory_plan(config)
    available, where = free(plan["device"])
    unit = "GPU memory" if plan["device"] == "cuda" else "RAM (peak resident set)"
    out: list[Problem] = []
    for stage in stages:
        try:
            est = estimate_stage(mc, config, stage, **plan)
        except (KeyError, ValueError, TypeError):
            continue
        note = f" [{'; '.join(est.assumptions)}]" if est.assumptions else ""
        phase = f" {est.phase} phase" if est.phase else ""
        out.append(problem(stage, "memory_estimate",
                           f"estimated peak {unit}{phase}: {est.line()}, {plan['mode']}, "
                           f"{'gradient checkpointing' if plan['checkpointing'] else 'no checkpointing'}; "
                           f"{available / GIB:.1f} GiB {where}{note}", severity="info",
                           data={**est.as_dict(), "available_gib": round(available / GIB, 3), "checkpointing": plan["checkpointing"]}))
        if available and est.total > available:
            out.append(problem(stage, "memory_exceeds",
                               f"estimated peak {unit} {est.total / GIB:.1f} GiB exceeds the {available / GIB:.1f} GiB {where}",
                               "Lower one of: " + "; ".join(knobs(config, stage, plan["mode"], plan["checkpointing"]))
                               + ". Or set runtime.memory_check warn to try anyway (the estimate errs high).",
                               "warning" if policy == "warn" else "error"))
    return out


def check(body: dict, known_stages: Iterable[str]) -> list[Problem]:
    """Every problem of a ``preflight {config, stages}`` body."""
    config = body.get("config") or {}
    stages = [s for s in body.get("stages") or [] if isinstance(s, str)]
    out = check_stages(stages, known_stages)
    out += check_runtime(config, stages)
    out += check_integrations(config, python=sys.executable)
    loaded: dict[str, Any] = {}
    out += check_model(config, loaded)
    out += check_rewards(config, stages)
    out += check_trainer_args(config, stages)
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    if not any(p["severity"] == "error" for p in out):
        out += check_chat_rows(config, stages, {k: v for k, v in data.items() if isinstance(v, str)}, loaded.get("tokenizer"))
    if not any(p["severity"] == "error" for p in out):
        out += check_memory(config, [s for s in stages if s in set(known_stages)])
    return out
