"""Two DDP processes train on one prepared copy: prepared once (on local rank 0, in prepare_data), mapped by both."""

import json

import pytest
import torch
from conftest import fit_args
from test_ddp import TWO_PROCESSES, run_cli, run_dir

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


def test_two_processes_share_one_prepared_bpe_copy_of_a_directory(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for part in range(3):
        lines = [f"Part {part} line {i}: the quick brown fox jumps over the lazy dog {i % 7}.\n" for i in range(120)]
        (corpus / f"part{part}.txt").write_text("".join(lines), encoding="utf-8")
    cache, root = tmp_path / "cache", tmp_path / "run"
    data = ["--data.tokenizer", "bpe", "--data.vocab_size", "300", "--data.cache_dir", str(cache)]
    result = run_cli([*fit_args(corpus, root, *data, max_steps=3), *TWO_PROCESSES])

    (copy,) = [meta.parent for meta in cache.glob("prepared/*/bpe/meta.json")]
    assert len(list(copy.glob("build-*"))) == 1
    meta = json.loads((copy / "meta.json").read_text())
    assert [p.split("/")[-1] for p in (d["path"] for d in meta["documents"])] == ["part0.txt", "part1.txt", "part2.txt"]
    output = result.stdout + result.stderr
    assert output.count("prepare: tokenizing") == 1 and "rebuilding" not in output  # one process prepared it
    assert f"train {meta['train_tokens']:,} / val {meta['val_tokens']:,} tokens" in output
    assert torch.load(run_dir(root) / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
