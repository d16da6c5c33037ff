"""Per-stage peak GPU memory and throughput of the newest run under a runs folder (gpu-check)."""
import json
import sys
from pathlib import Path


def main(runs_dir: str) -> None:
    run = max((p for p in Path(runs_dir).iterdir() if (p / "run.json").is_file()), key=lambda p: p.name)
    record = json.loads((run / "run.json").read_text())
    print(f"run {record['id']}  model {record['config']['model']['id']}  status {record['status']}")
    print(f"{'stage':6} {'status':9} {'steps':>5} {'peak GPU GiB':>12} {'samples/s':>10} {'tokens/s':>10} {'train s':>8}")
    for stage in record["stages_selected"]:
        summary_file = run / "stages" / stage / "summary.json"
        s = json.loads(summary_file.read_text())["sidecar"] if summary_file.is_file() else {}
        runtime = s.get("train_runtime_s") or 0
        tokens = s.get("tokens_seen")
        print(
            f"{stage:6} {record['stages'][stage]['status']:9} {s.get('global_step', '-'):>5} "
            f"{s.get('peak_gpu_mem_gb', float('nan')):12.2f} {s.get('train/train_samples_per_second', float('nan')):10.2f} "
            f"{(tokens / runtime) if tokens and runtime else float('nan'):10.1f} {runtime:8.1f}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
