"""bench-data: the data path's speed and memory, prepared copy against per-run tokenization, side by side
(`python -m benchmarks bench-data`).

Each measurement runs in a fresh Python process (benchmarks.child; the same imports as `fit`), so its peak RSS is its
own. Printed: a table, then one JSON line with every figure."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.child import REPO, in_fresh_process
from lightning_trickster.commands import FitConfig
from lightning_trickster.errors import InvalidConfigError

TINY_SHAKESPEARE = REPO / "tests" / "data" / "tinyshakespeare.txt"
"""The corpus repeated by default: tiny Shakespeare as shipped with the tests (no download)."""


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _repeat_to_size(source: Path, target: Path, size_mb: float) -> Path:
    """source repeated (whole copies) until the file holds at least size_mb megabytes; kept for the next run."""
    wanted = int(size_mb * 1e6)
    text = source.read_bytes()
    copies = max(1, -(-wanted // len(text)))
    if not target.is_file() or target.stat().st_size != copies * len(text):
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for _ in range(copies):
                out.write(text)
    return target


# ---- the measurements, each run in a child process -------------------------------------------------------------


def _per_run_tokenization(path: str, tokenizer: str) -> dict[str, Any]:
    """Today's set-up before preparation existed: read the whole corpus and tokenize it into an int64 tensor."""
    import torch

    from lightning_trickster.tokenizer import CharTokenizer

    start = time.perf_counter()
    if tokenizer == "byte":
        tokens = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8).long()
    else:
        text = Path(path).read_text(encoding="utf-8")
        char_tokenizer = CharTokenizer.from_text(text)
        tokens = torch.tensor([char_tokenizer._ids[char] for char in text], dtype=torch.long)
    return {"seconds": time.perf_counter() - start, "tokens": len(tokens)}


def _prepare(path: str, tokenizer: str, cache_dir: str, vocab_size: int | None) -> dict[str, Any]:
    from lightning_trickster.data import CorpusDataModule

    start = time.perf_counter()
    data = CorpusDataModule(path=path, tokenizer=tokenizer, cache_dir=cache_dir, vocab_size=vocab_size)
    shutil.rmtree(data.prepared_path, ignore_errors=True)  # measure a build, not a reuse
    data = CorpusDataModule(path=path, tokenizer=tokenizer, cache_dir=cache_dir, vocab_size=vocab_size)
    data.prepare_data()
    meta = data.prepared.meta
    return {
        "seconds": time.perf_counter() - start,
        "tokens": meta["num_tokens"],
        "characters_per_token": round(data.prepared.characters_per_token, 3),
        "dtype": meta["dtype"],
        "token_file_mb": round(meta["num_tokens"] * data.prepared.tokens.itemsize / 1e6, 1),
    }


def _fit_setup(path: str, tokenizer: str, cache_dir: str, vocab_size: int | None) -> dict[str, Any]:
    """What fit does with the data before its first step, on a corpus already prepared."""
    from lightning_trickster.data import CorpusDataModule

    before = _current_rss_mb()
    start = time.perf_counter()
    data = CorpusDataModule(path=path, tokenizer=tokenizer, cache_dir=cache_dir, vocab_size=vocab_size, block_size=128)
    data.prepare_data()
    data.setup("fit")
    next(iter(data.train_dataloader()))
    seconds = time.perf_counter() - start
    assert data.prepared.reused, "the corpus should have been prepared by the prepare measurement"
    return {"seconds": seconds, "rss_added_mb": _current_rss_mb() - before, "tokens": len(data.prepared.tokens)}


def _training_throughput(
    path: str, small_path: str, cache_dir: str, model_args: dict[str, Any], data_args: dict[str, Any], seed: int,
    steps: int, warmup: int, rounds: int,
) -> dict[str, Any]:  # fmt: skip
    """Training tokens/s of the configuration's model (model_args, data_args: its settings as fit read them)
    reading windows from the large corpus' memory map, and from an in-memory int64 tensor of the small corpus (the
    pre-preparation path), interleaved in one process."""
    import lightning.pytorch as pl
    import torch

    from benchmarks.bench import timed_fit
    from lightning_trickster.data import CorpusDataModule, as_long_tensor
    from lightning_trickster.module import NanoTricksterModule

    class InMemory(CorpusDataModule):
        """The pre-preparation path: every token held as int64 in a tensor (for the small corpus: 8 bytes a token
        of a 1 GB corpus would not fit)."""

        def setup(self, stage: str) -> None:
            super().setup(stage)
            self.train_tokens = as_long_tensor(self.train_tokens)

    def tokens_per_second(datamodule_class: type, corpus: str) -> float:
        pl.seed_everything(seed, verbose=False)
        data = datamodule_class(
            path=corpus,
            tokenizer=data_args.get("tokenizer", "byte"),
            batch_size=data_args.get("batch_size", 16),
            block_size=model_args["max_seq_len"],
            cache_dir=cache_dir,
        )
        # A short run: warm-up shortened so it fits (the learning rate schedule does not change the step time).
        optimization = {**model_args.get("optimization", {}), "warmup_steps": 1}
        module = NanoTricksterModule(vocab_size=data.vocab_size, **{**model_args, "optimization": optimization})
        seconds = timed_fit(module, data, steps - warmup, warmup, accelerator="cpu")
        return (steps - warmup) * data.hparams.batch_size * model_args["max_seq_len"] / seconds

    results: dict[str, list[float]] = {"memmap": [], "in_memory": []}
    runs = {"memmap": (CorpusDataModule, path), "in_memory": (InMemory, small_path)}
    for round_index in range(rounds):
        # ABBA order: a machine that speeds up or slows down during the rounds favours neither path.
        for name in ("memmap", "in_memory") if round_index % 2 == 0 else ("in_memory", "memmap"):
            results[name].append(tokens_per_second(*runs[name]))
    ratios = [m / i for m, i in zip(results["memmap"], results["in_memory"], strict=True)]
    return {
        "memmap_tokens_per_sec": statistics.median(results["memmap"]),
        "in_memory_tokens_per_sec": statistics.median(results["in_memory"]),
        "median_paired_ratio": statistics.median(ratios),
        "all": results,
        "window_fetch_us": _window_fetch_microseconds(path, small_path, cache_dir, data_args, model_args),
        "threads": torch.get_num_threads(),
    }


def _window_fetch_microseconds(
    path: str, small_path: str, cache_dir: str, data_args: dict[str, Any], model_args: dict[str, Any]
) -> dict[str, float]:
    """The data path alone: microseconds to draw one training batch of windows, memory map vs in-memory tensor.
    Free of the step time's noise, it shows what the memory map can cost a step at most."""

    from lightning_trickster.data import CorpusDataModule, RandomWindows, as_long_tensor

    fetch = {}
    for name, corpus in (("memmap", path), ("in_memory", small_path)):
        data = CorpusDataModule(
            path=corpus, tokenizer=data_args.get("tokenizer", "byte"), cache_dir=cache_dir, block_size=128
        )
        data.setup("fit")
        tokens = data.train_tokens if name == "memmap" else as_long_tensor(data.train_tokens)
        windows = iter(RandomWindows(tokens, model_args["max_seq_len"], data_args.get("batch_size", 16), 0, 0, 0))
        for _ in range(100):
            next(windows)
        start = time.perf_counter()
        for _ in range(2000):
            next(windows)
        fetch[name] = (time.perf_counter() - start) / 2000 * 1e6
    return fetch


def bench_data(
    fit_config: FitConfig,
    corpus: str | None = None,
    size_mb: float = 1000.0,
    baseline_mb: float = 50.0,
    tokenizers: list[str] | None = None,
    bpe_vocab_size: int = 4096,
    work_dir: str = "data/bench_data",
    train_steps: int = 50,
    train_warmup: int = 10,
    train_rounds: int = 4,
) -> dict[str, Any]:
    """Measure the data path: preparing a large corpus against per-run tokenization, fit's data set-up on the
    prepared copy, and training throughput from the memory map against an in-memory tensor.

    Args:
        fit_config: the configuration (read as fit reads it) whose model and data settings the training throughput uses;
            e.g. --config cpu.yaml.
        corpus: a UTF-8 text file repeated to size_mb to make the large corpus (default: the configuration's
            --data.path if it is a file, else tests/data/tinyshakespeare.txt).
        size_mb: size of the large corpus in megabytes (1000 = the issue's 1 GB target).
        baseline_mb: size of the corpus per-run tokenization is timed on (it holds the whole corpus as int64).
        tokenizers: which tokenizers to prepare with; default byte, char and bpe.
        bpe_vocab_size: vocabulary size of the BPE trained on the large corpus.
        work_dir: where the generated corpora and their prepared copies are kept (several GB for 1000 MB).
        train_steps: optimizer steps per training-throughput run.
        train_warmup: leading steps left out of the timing.
        train_rounds: memmap and in-memory runs each, interleaved in ABBA order; medians are reported.
    """
    tokenizers = tokenizers or ["byte", "char", "bpe"]
    data_path = fit_config.config.data.path
    source = Path(corpus or (data_path if data_path and Path(data_path).is_file() else TINY_SHAKESPEARE))
    if not source.is_file():
        raise InvalidConfigError(f"--corpus {source} is not a file: pass a UTF-8 text file to repeat")
    work = Path(work_dir)
    cache = str(work / "cache")
    large = _repeat_to_size(source, work / f"corpus-{size_mb:g}mb.txt", size_mb)
    baseline = _repeat_to_size(source, work / f"corpus-{baseline_mb:g}mb.txt", baseline_mb)
    small = _repeat_to_size(source, work / "corpus-small.txt", 0)  # one copy: the "tiny Shakespeare" reference
    large_mb, baseline_real_mb = large.stat().st_size / 1e6, baseline.stat().st_size / 1e6
    vocab = {"byte": None, "char": None, "bpe": bpe_vocab_size}

    rows: dict[str, dict[str, Any]] = {}
    for name in tokenizers:
        row: dict[str, Any] = {}
        if name in ("byte", "char"):
            today = in_fresh_process(_per_run_tokenization, path=str(baseline), tokenizer=name)
            row["per_run_s_per_mb"] = today["seconds"] / baseline_real_mb
            row["per_run_peak_rss_mb"] = today["peak_rss_mb"]
        corpus_args = {"tokenizer": name, "cache_dir": cache, "vocab_size": vocab[name]}
        prepared = in_fresh_process(_prepare, path=str(large), **corpus_args)
        row["prepare_s"] = prepared["seconds"]
        row["prepare_mb_per_s"] = large_mb / prepared["seconds"]
        row["prepare_peak_rss_mb"] = prepared["peak_rss_mb"]
        row["characters_per_token"] = prepared["characters_per_token"]
        row["dtype"] = prepared["dtype"]
        row["token_file_mb"] = prepared["token_file_mb"]
        if "per_run_s_per_mb" in row:
            row["speedup_per_mb"] = row["per_run_s_per_mb"] / (prepared["seconds"] / large_mb)
        in_fresh_process(_prepare, path=str(small), **corpus_args)
        setup_large = in_fresh_process(_fit_setup, path=str(large), **corpus_args)
        setup_small = in_fresh_process(_fit_setup, path=str(small), **corpus_args)
        row["fit_setup_s"] = setup_large["seconds"]
        row["fit_setup_s_small"] = setup_small["seconds"]
        row["fit_setup_peak_rss_above_small_mb"] = setup_large["peak_rss_mb"] - setup_small["peak_rss_mb"]
        rows[name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}

    training = in_fresh_process(
        _training_throughput,
        path=str(large),
        small_path=str(small),
        cache_dir=cache,
        model_args={k: v for k, v in fit_config.config.model.as_dict().items() if k != "vocab_size"},
        data_args=fit_config.config.data.as_dict(),
        seed=fit_config.config.seed_everything if isinstance(fit_config.config.seed_everything, int) else 0,
        steps=train_steps,
        warmup=train_warmup,
        rounds=train_rounds,
    )
    memmap_tps, in_memory_tps = training["memmap_tokens_per_sec"], training["in_memory_tokens_per_sec"]
    fetch = training["window_fetch_us"]
    summary = {
        "large_corpus_mb": round(large_mb, 1),
        "baseline_corpus_mb": round(baseline_real_mb, 1),
        "small_corpus_mb": round(small.stat().st_size / 1e6, 2),
        "tokenizers": rows,
        "training": {
            "config": [str(path) for path in fit_config.config.get("config") or []],
            "memmap_tokens_per_sec": round(memmap_tps, 1),
            "in_memory_tokens_per_sec": round(in_memory_tps, 1),
            "memmap_vs_in_memory": round(memmap_tps / in_memory_tps, 4),
            "median_paired_ratio": round(training["median_paired_ratio"], 4),
            "window_fetch_us_memmap": round(fetch["memmap"], 1),
            "window_fetch_us_in_memory": round(fetch["in_memory"], 1),
            "runs_tokens_per_sec": {k: [round(x, 1) for x in v] for k, v in training["all"].items()},
            "torch_threads": training["threads"],
        },
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "cpu_count": os.cpu_count(),
    }
    _print_table(summary)
    print(json.dumps(summary))
    return summary


def _print_table(summary: dict[str, Any]) -> None:
    header = (
        f"{'tokenizer':<9} {'per-run s/MB':>12} {'prepare MB/s':>12} {'speed-up':>9} {'peak RSS MB':>11} "
        f"{'chars/token':>11} {'dtype':>6} {'setup s':>8} {'setup RSS +MB':>13}"
    )
    print(f"large corpus {summary['large_corpus_mb']} MB, per-run baseline on {summary['baseline_corpus_mb']} MB")
    print(header)
    for name, row in summary["tokenizers"].items():
        per_run = f"{row['per_run_s_per_mb']:.3f}" if "per_run_s_per_mb" in row else "-"
        speedup = f"{row['speedup_per_mb']:.0f}x" if "speedup_per_mb" in row else "-"
        print(
            f"{name:<9} {per_run:>12} {row['prepare_mb_per_s']:>12.1f} {speedup:>9} "
            f"{row['prepare_peak_rss_mb']:>11.0f} "
            f"{row['characters_per_token']:>11.2f} {row['dtype']:>6} {row['fit_setup_s']:>8.2f} "
            f"{row['fit_setup_peak_rss_above_small_mb']:>13.1f}"
        )
    training = summary["training"]
    print(
        f"training ({training['config']}): memmap {training['memmap_tokens_per_sec']:,.0f} tokens/s, in-memory "
        f"{training['in_memory_tokens_per_sec']:,.0f} tokens/s (medians), ratio {training['memmap_vs_in_memory']:.3f}, "
        f"median paired ratio {training['median_paired_ratio']:.3f}; one batch of windows: memmap "
        f"{training['window_fetch_us_memmap']:.0f} us, in-memory {training['window_fetch_us_in_memory']:.0f} us"
    )
