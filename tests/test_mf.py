"""``mf`` and ``vqgan-replay`` on tiny data, through the planner and the runner (the path
`gaia-bench run` takes): MF runs its four stages, stage 3 changes only the head, a run killed in
stage 3 resumes there, and replay mixes upstream samples into every batch at the configured ratio."""

from __future__ import annotations

import pytest
import torch

from gaia_bench.api import Progress
from gaia_bench.cli.common import parse_shots
from gaia_bench.jobs import plan
from gaia_bench.manager import get_registries
from gaia_bench.paths import data_root
from gaia_bench.runner import Session, run_job

pytestmark = pytest.mark.slow

TINY = {"vqgan_steps": 2, "epochs": 1, "min_iters": 2, "max_iters": 2, "batch": 16}


def _job(adaptation: str, **overrides):
    jobs = plan(get_registries(), models=["test_resnet"], inits=["random"], adaptations=[adaptation],
                datasets=["lfw-faces"], shots=parse_shots(["10%"]), seeds=[0], image_size=32,
                overrides={**TINY, **overrides})
    assert len(jobs) == 1
    return jobs[0]


def _run(job, progress: Progress | None = None) -> dict:
    session = Session(data_root=data_root(), device="cpu", batch_size=64, workers=0, feature_cache=None,
                      plugin_versions={}, progress=progress or Progress())
    record = run_job(job, session)
    assert record["status"] == "done", record.get("error")
    return record


class _KillAt(Progress):
    """A progress display that 'kills' the run (KeyboardInterrupt) when a step named ``marker`` starts."""

    def __init__(self, marker: str) -> None:
        def start(description: str, total):
            if marker in description:
                raise KeyboardInterrupt(description)
            return lambda n: None

        super().__init__(start=start)


@pytest.fixture(scope="module")
def mf_runs():
    """One MF job killed as stage 3 starts, then run again to the end."""
    job = _job("mf", head_iters=5)
    with pytest.raises(KeyboardInterrupt):
        _run(job, _KillAt("mf stage 3/4"))
    from gaia_bench.plugins.adaptations.vqgan.mf import job_work_dir

    work = job_work_dir(job.job_id, "mf")
    killed_state = (work / "state.json").read_text()
    stage2_mtimes = {p.name: p.stat().st_mtime_ns for p in (work / "re-represented").iterdir()}
    return job, work, killed_state, stage2_mtimes, _run(job)


def test_mf_runs_all_four_stages_and_records_them(mf_runs):
    job, work, _, _, record = mf_runs
    details = record["details"]
    assert list(details["stages"]) == ["vqgan", "re-represent", "head", "finetune"]
    assert details["steps_per_stage"]["vqgan"] == 2 and details["steps_per_stage"]["head"] == 5
    assert details["steps_per_stage"]["re-represent"] == details["stages"]["re-represent"]["n_images"] > 0
    assert 0 < details["steps_per_stage"]["finetune"] <= 6  # max_iters 2, x3 for a random init
    timings = record["timings"]
    assert {"mf_vqgan", "mf_re_represent", "mf_head", "mf_finetune", "evaluate"} <= timings.keys()
    per_stage = details["trainable_params_per_stage"]
    assert 0 < per_stage["head"] < per_stage["finetune"] == record["trainable_params"]
    assert set(details["peak_rss_mb_per_stage"]) == {"vqgan", "re-represent", "head", "finetune"}
    assert 0.0 <= record["metrics"]["top1"] <= 100.0
    log = (work / "stages.log").read_text()
    assert "stage 4/4 finetune: done" in log and "evaluated" in log


def test_stage_3_trains_only_the_head(mf_runs):
    job, work, _, _, _ = mf_runs
    checkpoint = torch.load(work / "head.pt", weights_only=True)
    after = checkpoint["model"]
    initial = job.init.initialize(job.backbone, job.init_context).state_dict()  # what the job's backbone started from
    backbone_after = {k.removeprefix("0."): v for k, v in after.items() if k.startswith("0.")}
    assert backbone_after.keys() == initial.keys()
    for key, tensor in initial.items():  # weights and BatchNorm statistics alike
        assert torch.equal(backbone_after[key], tensor), key
    head_after = {k.removeprefix("1."): v for k, v in after.items() if k.startswith("1.")}
    assert head_after.keys() == checkpoint["head_before"].keys() == {"weight", "bias"}
    assert not torch.equal(head_after["weight"], checkpoint["head_before"]["weight"])
    assert not torch.equal(head_after["bias"], checkpoint["head_before"]["bias"])


def test_a_killed_run_resumes_at_the_stage_it_was_in(mf_runs):
    _, work, killed_state, stage2_mtimes, record = mf_runs
    assert '"re-represent"' in killed_state and '"head"' not in killed_state  # killed inside stage 3
    assert record["details"]["resumed_stages"] == ["vqgan", "re-represent"]
    assert record["details"]["started_at_stage"] == 3
    assert {p.name: p.stat().st_mtime_ns for p in (work / "re-represented").iterdir()} == stage2_mtimes
    log = (work / "stages.log").read_text()
    assert "resuming at stage 3/4 (vqgan, re-represent from checkpoints)" in log


def test_a_finished_job_run_again_starts_over_instead_of_resuming(mf_runs):
    job, work, _, _, _ = mf_runs
    again = _run(job)  # what `gaia-bench run --force` does with a finished job
    assert again["details"]["resumed_stages"] == [] and again["details"]["started_at_stage"] == 1
    assert "the job finished before: starting over" in (work / "stages.log").read_text()


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_replay_mixes_upstream_samples_at_the_configured_ratio(ratio):
    record = _run(_job("vqgan-replay", replay_ratio=ratio))
    replay = record["details"]["replay"]
    per_step = replay["per_step"]
    assert per_step["upstream"] / (per_step["upstream"] + per_step["downstream"]) == pytest.approx(ratio, abs=0.02)
    seen = replay["samples_seen"]
    steps = record["details"]["iterations_run"]
    assert seen == {"downstream": steps * per_step["downstream"], "upstream": steps * per_step["upstream"]}
    assert replay["measured_ratio"] == pytest.approx(ratio, abs=0.02)
    assert replay["upstream_classes"] == 18  # the pool's sources' classes, kept apart
    storage = record["details"]["storage"]
    assert storage["codes_bytes"] < storage["jpeg_q90_bytes"] and storage["compression_vs_jpeg"] > 1
