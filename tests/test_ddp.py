"""Two CPU processes (gloo): DDP and FSDP (ShardedStrategy) through the real command line.

LightningCLI starts the second process by re-running the command, so each run is a subprocess. Each run takes
about 10-20 s on 2 cores; the DDP fit is shared by the tests that inspect it.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, fit_args
from faults import SignalGroupAtStart, SignalRanksAtStep, child_environment, injector
from lightning.pytorch import seed_everything
from realfaults import children, start_in_own_group
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_trickster.checkpoint import read_checkpoint
from lightning_trickster.cli import main
from lightning_trickster.data import ConsecutiveWindows, CorpusDataModule, RandomWindows
from lightning_trickster.module import NanoTricksterModule
from lightning_trickster.optim import warmup_cosine_over_time

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")

# AdamW in both, so DDP and FSDP (which shards the matrices Muon needs whole) take comparable steps.
TWO_PROCESSES = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--model.optimization.optimizer", "adamw"]
SHARDED = [
    "--model.optimization.optimizer", "adamw",
    "--trainer.devices", "2",
    "--trainer.strategy", "lightning_trickster.sharding.ShardedStrategy",
    "--trainer.strategy.auto_wrap_policy", "[lightning_trickster.model.Block]",
    "--trainer.strategy.activation_checkpointing_policy", "[lightning_trickster.model.Block]",
]  # fmt: skip


def run_cli(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", "lightning_trickster", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def run_dir(root: Path, version: int = 0) -> Path:
    return root / "lightning_logs" / f"version_{version}"


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["state_dict"]


def validate_on_one_process(corpus: Path, checkpoint: Path, root: Path) -> float:
    main(["validate", *fit_args(corpus, root)[1:], "--ckpt_path", str(checkpoint)])
    written = max(checkpoint.parent.parent.glob("eval/validate-*/metrics.json"), key=lambda path: path.stat().st_mtime)
    return json.loads(written.read_text())["metrics"]["val/loss"]


@pytest.mark.parametrize("num_tokens", [2, 33, 34, 97, 1000])
@pytest.mark.parametrize("world_size", [2, 3, 8])
def test_validation_shards_cover_every_window_once_in_equal_counts(num_tokens, world_size):
    tokens = torch.arange(num_tokens)
    single = ConsecutiveWindows(tokens, block_size=8)
    padded = ConsecutiveWindows(tokens, block_size=8, pad_to_multiple_of=world_size)
    shards = [
        [padded[i] for i in torch.utils.data.DistributedSampler(padded, world_size, rank, shuffle=False)]
        for rank in range(world_size)
    ]
    assert len({len(shard) for shard in shards}) == 1  # equal batch counts: FSDP runs collectives in every forward
    scored = sorted(
        (inputs[targets != -100].tolist(), targets[targets != -100].tolist())
        for shard in shards
        for inputs, targets in shard
        if (targets != -100).any()
    )
    assert scored == sorted(
        (inputs[targets != -100].tolist(), targets[targets != -100].tolist()) for inputs, targets in single
    )
    assert sum((targets != -100).sum().item() for shard in shards for _, targets in shard) == num_tokens - 1


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> dict[str, Path]:
    """One 6-step fit on 2 processes that validates and checkpoints every 3 steps."""
    tmp = tmp_path_factory.mktemp("ddp")
    corpus = tmp / "corpus.txt"  # the conftest small_corpus text: 57 validation windows, an odd number
    lines = [
        f"Line {i}: the quick brown fox jumps over the lazy dog, and {i * 7 % 13} birds sing.\n" for i in range(250)
    ]
    corpus.write_text("".join(lines), encoding="utf-8")
    root = tmp / "run"
    result = run_cli([*fit_args(corpus, root, "--checkpoint.save_top_k", "-1"), *TWO_PROCESSES])
    return {"corpus": corpus, "root": root, "tmp": tmp, "stdout": result.stdout + result.stderr}


def test_ddp_writes_one_run_and_states_the_global_batch(ddp_run):
    root = ddp_run["root"]
    assert [p.name for p in (root / "lightning_logs").iterdir()] == ["version_0"]
    assert len(list(run_dir(root).glob("events.out.tfevents.*"))) == 1
    checkpoints = sorted(p.name for p in (run_dir(root) / "checkpoints").iterdir())
    assert checkpoints == ["best-step=3.ckpt", "best-step=6.ckpt", "last.ckpt"]
    assert torch.load(run_dir(root) / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    assert "4 windows per device x 1 accumulation x 2 devices = 8 windows = 256 tokens" in ddp_run["stdout"]


def test_ddp_logs_the_training_loss_averaged_over_both_ranks(ddp_run, small_corpus, tmp_path):
    """Step 0 runs the initial weights, which are known: recompute each rank's first-batch loss here."""
    logged_first_loss = scalars(run_dir(ddp_run["root"]), "train/loss")[0]
    single = tmp_path / "single"
    main(fit_args(ddp_run["corpus"], single, max_steps=1))
    hparams = torch.load(run_dir(single) / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]

    seed_everything(1337)  # what the CLI does (cpu.yaml) before it builds the model
    data = CorpusDataModule(path=str(ddp_run["corpus"]), tokenizer="char", block_size=32, batch_size=4)
    module = NanoTricksterModule(**{k: v for k, v in hparams.items() if not k.startswith("_")})
    data.setup("fit")
    rank_losses = []
    with torch.no_grad():
        for rank in (0, 1):
            inputs, targets = next(iter(RandomWindows(data.train_tokens, 32, 4, seed=1337, rank=rank, first_batch=0)))
            rank_losses.append(module.model(inputs, targets)[1].item())

    # The reconstruction is right: one process logs exactly rank 0's loss.
    assert scalars(run_dir(single), "train/loss")[0][1] == pytest.approx(rank_losses[0], rel=1e-5)
    assert abs(rank_losses[0] - rank_losses[1]) > 1e-3  # the ranks drew different windows
    assert logged_first_loss == (0, pytest.approx(sum(rank_losses) / 2, rel=1e-5))


def test_ddp_validation_scores_every_window_once(ddp_run, tmp_path):
    """57 windows over 2 ranks: a padding sampler would score one window twice and change the mean."""
    # Step 0 holds the untrained model's loss (the sampling callback's baseline), not a validation run.
    logged = [(step, loss) for step, loss in scalars(run_dir(ddp_run["root"]), "val/loss") if step > 0]
    assert [step for step, _ in logged] == [2, 5]
    reference = validate_on_one_process(
        ddp_run["corpus"], run_dir(ddp_run["root"]) / "checkpoints" / "last.ckpt", tmp_path
    )
    assert logged[-1][1] == pytest.approx(reference, rel=1e-6)
    perplexity = scalars(run_dir(ddp_run["root"]), "val/perplexity")[-1][1]
    assert perplexity == pytest.approx(torch.tensor(logged[-1][1]).exp().item(), rel=1e-5)


def test_ddp_resume_from_last_continues_at_the_saved_step_exactly(ddp_run):
    straight = run_dir(ddp_run["root"]) / "checkpoints"
    interrupted = ddp_run["tmp"] / "interrupted"
    (run_dir(interrupted) / "checkpoints").mkdir(parents=True)
    shutil.copy(straight / "best-step=3.ckpt", run_dir(interrupted) / "checkpoints" / "last.ckpt")

    run_cli([*fit_args(ddp_run["corpus"], interrupted, "--ckpt_path", "last"), *TWO_PROCESSES])

    assert [step for step, _ in scalars(run_dir(interrupted), "train/loss")] == [3, 4, 5]
    resumed = torch.load(run_dir(interrupted) / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 6
    for name, tensor in weights(straight / "last.ckpt").items():
        torch.testing.assert_close(resumed["state_dict"][name], tensor, msg=name)


def test_sharded_fsdp_on_cpu_matches_ddp_and_writes_a_full_checkpoint(ddp_run, tmp_path):
    """FSDP (full shard, activation checkpointing, gradient clipping by the global norm) takes the same
    optimizer steps as DDP, and its checkpoint is an ordinary single-file one that one process can load."""
    root = tmp_path / "fsdp"
    run_cli([*fit_args(ddp_run["corpus"], root, "--checkpoint.save_top_k", "-1"), *SHARDED])

    checkpoint = torch.load(run_dir(root) / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 6
    groups = checkpoint["optimizer_states"][0]["param_groups"]
    # 2 blocks x (qkv, proj, gate, up, down) + embedding are decayed; 2 blocks x 2 norms + final norm are not.
    assert [(g["weight_decay"], len(g["params"])) for g in groups] == [(0.1, 11), (0.0, 5)]
    ddp_weights = weights(run_dir(ddp_run["root"]) / "checkpoints" / "last.ckpt")
    assert checkpoint["state_dict"].keys() == ddp_weights.keys()
    for name, tensor in ddp_weights.items():
        torch.testing.assert_close(checkpoint["state_dict"][name], tensor, atol=2e-5, rtol=1e-4, msg=name)
    ddp_losses = [loss for _, loss in scalars(run_dir(ddp_run["root"]), "train/loss")]
    fsdp_losses = [loss for _, loss in scalars(run_dir(root), "train/loss")]
    assert fsdp_losses == pytest.approx(ddp_losses, rel=1e-5)
    ddp_norms = [norm for _, norm in scalars(run_dir(ddp_run["root"]), "train/grad_norm")]
    assert [norm for _, norm in scalars(run_dir(root), "train/grad_norm")] == pytest.approx(ddp_norms, rel=1e-4)
    reference = validate_on_one_process(ddp_run["corpus"], run_dir(root) / "checkpoints" / "last.ckpt", tmp_path / "v")
    assert scalars(run_dir(root), "val/loss")[-1][1] == pytest.approx(reference, rel=1e-6)


def gone(pids: list[int], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("target", ["group", "other_ranks"])
def test_a_sigterm_under_ddp_saves_one_checkpoint_stops_every_rank_and_resumes_exactly(ddp_run, tmp_path, target):
    """A batch system's time limit sends SIGTERM to every process ("group"); a `kill` may reach one rank only
    ("other_ranks"). Either way the ranks agree, save ONE last.ckpt, all stop with 143, and --ckpt_path last on two
    processes ends where the uninterrupted run (ddp_run) does."""
    root = tmp_path / "stopped"
    args = [*fit_args(ddp_run["corpus"], root, "--checkpoint.save_top_k", "-1"), *TWO_PROCESSES]
    fit = start_in_own_group([*args, *injector(SignalRanksAtStep, step=2, signal_name="SIGTERM", target=target)])
    ranks: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not ranks and fit.poll() is None and time.monotonic() < deadline:
            ranks = children(fit.pid)  # rank 1, started by rank 0 (the command) re-running the command
            time.sleep(0.1)
        output, _ = fit.communicate(timeout=240)
    finally:
        fit.kill()
    lines = [line for line in output.splitlines() if line.strip()]
    assert fit.returncode == 143, output[-3000:]
    assert "Traceback" not in output and "Error" not in output.replace("error: training stopped", "")
    checkpoint = run_dir(root) / "checkpoints" / "last.ckpt"
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0]  # rank 0 reports; rank 1 stops silently
    assert errors[0].startswith("error: training stopped by SIGTERM after step ")
    assert errors[0].endswith(f"saved {checkpoint}; continue it with --ckpt_path last")
    stopped_after = int(errors[0].split("after step ")[1].split(":")[0])
    assert 2 <= stopped_after < 6 and read_checkpoint(checkpoint)["global_step"] == stopped_after
    assert ranks and gone(ranks)  # every rank stopped

    run_cli([*fit_args(ddp_run["corpus"], root, "--ckpt_path", "last"), *TWO_PROCESSES])  # the advice

    resumed = torch.load(checkpoint, weights_only=True)
    assert resumed["global_step"] == 6
    assert [step for step, _ in scalars(run_dir(root), "train/loss")] == list(range(6))
    for name, tensor in weights(run_dir(ddp_run["root"]) / "checkpoints" / "last.ckpt").items():
        torch.testing.assert_close(resumed["state_dict"][name], tensor, msg=name)


@pytest.mark.parametrize("hook", ["on_fit_start", "on_train_start"])
def test_a_sigterm_under_ddp_before_the_first_step_stops_every_rank_in_one_line(ddp_run, tmp_path, hook):
    """Before training, before or during the start-up baseline's collectives (Lightning's SIGTERM handler broadcast
    from inside itself and met the other rank in a barrier or the baseline's reduction: a hang, or a traceback on the
    rank whose peer had gone), every rank finishes the baseline, stops as training begins, 143 and one line."""
    message = (
        "error: training stopped by SIGTERM before its first training step (step 0): nothing new to save; run the "
        "command again"
    )
    args = [*fit_args(ddp_run["corpus"], tmp_path), *TWO_PROCESSES, *injector(SignalGroupAtStart, hook=hook)]
    fit = start_in_own_group(args)
    ranks: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not ranks and fit.poll() is None and time.monotonic() < deadline:
            ranks = children(fit.pid)
            time.sleep(0.1)
        output, _ = fit.communicate(timeout=120)
    finally:
        fit.kill()
    lines = [line for line in output.splitlines() if line.strip()]
    assert fit.returncode == 143, output[-3000:]
    assert "Traceback" not in output and "[rank1]" not in output, output[-3000:]
    assert [line for line in lines if line.startswith("error:")] == [message] and lines[-1] == message
    assert not (run_dir(tmp_path) / "checkpoints" / "last.ckpt").exists()  # nothing trained
    assert gone(ranks)


def test_under_ddp_every_rank_steps_by_rank_0s_clock_in_a_run_bounded_by_time(small_corpus, tmp_path):
    """A 10 s budget at 1 s a step by rank 0's clock, while rank 1's runs twice as fast: both ranks take rank 0's
    fraction of the budget (different rates would pull the replicas apart) and stop together after 10 steps."""
    clock = {"class_path": "clocks.SteppedTimer",
             "init_args": {"duration": "00:00:00:10", "seconds_per_step": 1, "rank_drift": 1.0}}  # fmt: skip
    args = [*fit_args(small_corpus, tmp_path, "--trainer.max_steps", "-1"), *TWO_PROCESSES,
            f"--trainer.callbacks+={json.dumps(clock)}", "--trainer.callbacks+=clocks.LearningRates"]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "lightning_trickster", *args], capture_output=True, text=True,
                            timeout=240, env=child_environment())  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rates = [json.loads((tmp_path / f"lr-rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(rates[0]) == 10 and rates[0] == rates[1]
    peak = 5e-3  # cpu.yaml's AdamW learning_rate (fit_args' base config)
    assert rates[0][5] == pytest.approx(peak * warmup_cosine_over_time(5, 1, 0.5, 0.0))  # rank 1's clock said 1.0
