"""The GGUF export run in llama.cpp itself (through llama-cpp-python): for a char, a byte and a BPE checkpoint, does
llama.cpp tokenize our prompts to our ids, compute our logits and continue them greedily with our text?

    pip install llama-cpp-python   # builds llama.cpp from source: several minutes on 2 cores
    python benchmarks/llama_cpp_check.py --output llama_cpp_check.json
    python benchmarks/llama_cpp_check.py --ckpt_path runs/cpu/lightning_logs/version_0/checkpoints/last.ckpt

Without --ckpt_path it first trains three small models on tiny Shakespeare (char, byte and BPE tokenizers, --steps
optimizer steps each). Every checkpoint is exported with the real command line (`export --format gguf`). The
continuations fill the model's context (max_seq_len tokens in all, prompt included): past it we slide our window and
llama.cpp does not. Greedy continuations are compared twice: with llama.cpp's default float16 KV cache (what a user
gets) and with a float32 one; the logits are compared with the float32 cache. Exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from cli_runs import CORPUS, run_cli

from lightning_trickster.checkpoint import load_trained_model
from lightning_trickster.export import GGUF_FILE
from lightning_trickster.model import SamplingSettings

SMALL_MODEL = [
    "--config", "cpu.yaml", "--data.path", str(CORPUS), "--model.hidden_dim", "64", "--model.num_layers", "2",
    "--model.num_heads", "4", "--model.mlp_dim", "128", "--model.max_seq_len", "64", "--model.compile", "false",
    "--data.batch_size", "8", "--trainer.val_check_interval", "50", "--samples.every_n_steps", "0", "-q",
]  # fmt: skip
TOKENIZER_OPTIONS = {
    "char": [],
    "byte": ["--data.tokenizer", "byte"],
    "bpe": ["--data.tokenizer", "bpe", "--data.vocab_size", "512"],
}
PROMPTS = ["ROMEO:", "First Citizen:\nWe are", "\n"]
GGML_TYPE_F32 = 0
"""llama.cpp's ggml_type for float32 (the KV cache's type_k/type_v)."""


def train_checkpoints(root: Path, steps: int) -> list[Path]:
    checkpoints = []
    for name, options in TOKENIZER_OPTIONS.items():
        run_root = root / name
        run_cli(["fit", *SMALL_MODEL, *options, "--trainer.max_steps", str(steps),
                 "--trainer.default_root_dir", str(run_root), "--data.cache_dir", str(root / "cache")])  # fmt: skip
        checkpoints.append(run_root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    return checkpoints


def check(checkpoint: Path, out_dir: Path, threads: int) -> dict:
    from llama_cpp import Llama

    run_cli(["export", "--ckpt_path", str(checkpoint), "--out", str(out_dir), "--format", "gguf"])
    trained = load_trained_model(checkpoint)
    model, tokenizer, context = trained.model, trained.tokenizer, trained.model.config.max_seq_len
    common = {"model_path": str(out_dir / GGUF_FILE), "n_ctx": context, "n_threads": threads, "verbose": False}
    default_cache = Llama(**common)
    f32_cache = Llama(**common, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, logits_all=True)
    result = {"checkpoint": str(checkpoint), "tokenizer": tokenizer.name, "context": context, "prompts": []}
    for prompt in PROMPTS:
        ours_prompt = tokenizer.encode(prompt).tolist()
        new_tokens = context - len(ours_prompt)
        ours = model.generate(torch.tensor([ours_prompt]), SamplingSettings(new_tokens, temperature=0.0))[0].tolist()
        eos = f32_cache.token_eos()
        if eos >= 0 and eos in ours[len(ours_prompt) :]:  # llama.cpp stops at end of text, we go on
            ours = ours[: ours.index(eos, len(ours_prompt))]
        entry = {
            "prompt": prompt,
            "same_prompt_ids": default_cache.tokenize(prompt.encode("utf-8"), add_bos=False) == ours_prompt,
            "ours": tokenizer.decode(ours[len(ours_prompt) :]),
        }
        for label, llm in (("f16_kv", default_cache), ("f32_kv", f32_cache)):
            start = time.perf_counter()
            theirs = greedy(llm, ours_prompt, len(ours) - len(ours_prompt))
            entry[f"{label}_seconds"] = round(time.perf_counter() - start, 3)
            entry[f"{label}_same_ids"] = theirs == ours[len(ours_prompt) :]
            entry[f"{label}_same_text"] = llm.detokenize(theirs).decode("utf-8", errors="replace") == entry["ours"]
        f32_cache.reset()
        f32_cache.eval(ours)
        with torch.no_grad():
            our_logits = model(torch.tensor([ours]))[0][0].numpy()
        their_logits = np.asarray(f32_cache.scores[: len(ours)])
        entry["max_abs_logit_diff_f32_kv"] = float(np.abs(their_logits - our_logits).max())
        entry["logit_scale"] = float(np.abs(our_logits).max())
        result["prompts"].append(entry)
    return result


def greedy(llm, prompt_ids: list[int], new_tokens: int) -> list[int]:
    """llama.cpp's greedy continuation (temperature 0), stopped at end of generation or after new_tokens."""
    out: list[int] = []
    if new_tokens == 0:
        return out
    for token in llm.generate(prompt_ids, temp=0.0, reset=True):
        if llm.token_eos() >= 0 and token == llm.token_eos():
            break
        out.append(token)
        if len(out) == new_tokens:
            break
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", type=Path, action="append", help="a checkpoint to check (repeatable)")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps of each model trained first")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp's CPU threads")
    parser.add_argument("--output", type=Path, help="write the results as JSON here too")
    args = parser.parse_args(argv)
    try:
        import llama_cpp
    except ImportError:
        sys.exit("error: llama-cpp-python is not installed: pip install llama-cpp-python (it builds llama.cpp)")
    with tempfile.TemporaryDirectory(prefix="llama_cpp_check-") as scratch:
        checkpoints = args.ckpt_path or train_checkpoints(Path(scratch), args.steps)
        results = [check(ckpt, Path(scratch) / f"gguf-{i}", args.threads) for i, ckpt in enumerate(checkpoints)]
    report = {"llama_cpp_python": llama_cpp.__version__, "results": results}
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    checks = [
        value for result in results for entry in result["prompts"] for key, value in entry.items()
        if key.startswith("same") or key.endswith(("_same_ids", "_same_text"))
    ]  # fmt: skip
    worst = max(entry["max_abs_logit_diff_f32_kv"] for result in results for entry in result["prompts"])
    print(f"llama.cpp agrees with us on {sum(checks)}/{len(checks)} checks; largest logit difference {worst:.2e}")
    sys.exit(0 if all(checks) and worst < 1e-3 else 1)


if __name__ == "__main__":
    main()
