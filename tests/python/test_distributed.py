"""Distributed pieces of the sidecar (distributed.py): launcher command lines, and the control
collectives between two real gloo ranks (torchrun, CPU): request broadcast and the cancel flag
agreed at step boundaries through StreamCallback. The full 2-rank pipeline is tests/e2e/distributed.test.ts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from posttrain_sidecar import distributed as d


def test_should_launch_only_in_the_spawned_process():
    assert d.should_launch({"POSTTRAIN_LAUNCHER": "accelerate"})
    assert d.should_launch({"POSTTRAIN_LAUNCHER": "torchrun"})
    assert not d.should_launch({"POSTTRAIN_LAUNCHER": "local"})
    assert not d.should_launch({})
    # The ranks see the launcher env too: they must serve, not launch again.
    assert not d.should_launch({"POSTTRAIN_LAUNCHER": "accelerate", "POSTTRAIN_LAUNCHED": "1"})


def test_torchrun_command_is_standalone():
    cmd = d.launcher_command({"POSTTRAIN_LAUNCHER": "torchrun", "POSTTRAIN_NUM_PROCESSES": "4"}, python="py")
    assert cmd == ["py", "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "4",
                   "-m", "posttrain_sidecar"]


def test_accelerate_command_gets_a_free_port_unless_the_config_names_one(tmp_path: Path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("distributed_type: MULTI_GPU\nnum_machines: 1\n")
    env = {"POSTTRAIN_LAUNCHER": "accelerate", "POSTTRAIN_NUM_PROCESSES": "2", "POSTTRAIN_ACCELERATE_CONFIG": str(plain)}
    cmd = d.launcher_command(env, python="py")
    assert cmd[:7] == ["py", "-m", "accelerate.commands.launch", "--config_file", str(plain), "--num_processes", "2"]
    assert cmd[7] == "--main_process_port" and int(cmd[8]) > 0
    assert cmd[-2:] == ["-m", "posttrain_sidecar"]

    multi = tmp_path / "multi.yaml"
    multi.write_text("distributed_type: MULTI_GPU\nnum_machines: 2\nmain_process_ip: 10.0.0.1\n")
    env["POSTTRAIN_ACCELERATE_CONFIG"] = str(multi)
    assert "--main_process_port" not in d.launcher_command(env, python="py")


def test_accelerate_without_config_is_refused():
    with pytest.raises(SystemExit, match="POSTTRAIN_ACCELERATE_CONFIG"):
        d.launcher_command({"POSTTRAIN_LAUNCHER": "accelerate"}, python="py")


def test_summary_gets_the_world_size():
    assert d.with_world_size(("ok", {"a": 1}), 2) == ("ok", {"a": 1, "world_size": 2})
    assert d.with_world_size(("cancelled", None), 1) == ("cancelled", {"world_size": 1})


RANK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading
    from types import SimpleNamespace
    from posttrain_sidecar.distributed import NullConnection, RankConnection, Ranks
    from posttrain_sidecar.training import StreamCallback

    ranks = Ranks.init()
    request = ranks.broadcast({"stage": "sft", "from": 0} if ranks.rank == 0 else None)
    out = {"rank": ranks.rank, "request": request}
    for boundary in (1, 2):
        if ranks.rank == 0:
            real = SimpleNamespace(cancel_requested=threading.Event(), metric=lambda *a, **k: True)
            conn = RankConnection(real, ranks)
        else:
            conn = NullConnection(ranks)
        cb = StreamCallback(conn, "sft", boundary=boundary)
        stopped = None
        for step in range(1, 11):
            if ranks.rank == 0 and step == 3:
                real.cancel_requested.set()  # the controller's cancel reaches rank 0 only
            control = SimpleNamespace(should_save=False, should_training_stop=False)
            cb.on_step_end(None, SimpleNamespace(global_step=step), control)
            if control.should_training_stop:
                stopped = step
                break
        out[f"stopped_boundary_{boundary}"] = stopped
    with open(os.path.join(os.environ["RESULT_DIR"], f"rank{ranks.rank}.json"), "w") as f:
        json.dump(out, f)  # one file per rank: their stderr lines interleave
    # Leave as the real sidecar does (__main__.py, os._exit): a normal interpreter teardown with
    # gloo's threads still alive sometimes aborts ("terminate called without an active exception").
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)
    """
)


def test_two_gloo_ranks_agree_on_request_and_cancel_step(tmp_path: Path):
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RESULT_DIR": str(tmp_path)}
    p = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        env=env, capture_output=True, text=True, timeout=170,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in results] == [0, 1]
    for r in results:
        assert r["request"] == {"stage": "sft", "from": 0}  # rank 1 got rank 0's request
        # Both ranks stop at the step where rank 0 saw the cancel, or at the next boundary.
        assert r["stopped_boundary_1"] == 3
        assert r["stopped_boundary_2"] == 4
