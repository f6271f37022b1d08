"""Today's default generation against the model.py of an earlier commit, same weights, side by side in one process.

    python benchmarks/decode_against_commit.py --commit a8274a1              # nano, batch 1, 500 tokens

The earlier `lightning_trickster/model.py` is read with `git show COMMIT:...` and imported as a module of its own;
both models get the same random weights (nano's shape) and the same 16-token prompt, generate greedily once untimed,
then `--rounds` times each, interleaved, the order reversed every round. Prints the median ms/token of each, the
per-round ratios, whether both gave the same tokens, and the JSON of it all on the last line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from lightning_trickster.model import NanoTrickster, NanoTricksterConfig, SamplingSettings  # noqa: E402

NANO = {"vocab_size": 256, "hidden_dim": 256, "num_layers": 6, "num_heads": 8, "mlp_dim": 768, "max_seq_len": 512}


def model_at(commit: str, directory: Path):
    """The model module of lightning_trickster at `commit`."""
    source = subprocess.run(["git", "show", f"{commit}:lightning_trickster/model.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    path = directory / f"model_{commit}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commit", required=True)
    parser.add_argument("--new_tokens", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        before = model_at(args.commit, Path(scratch))
        torch.manual_seed(0)
        today = NanoTrickster(NanoTricksterConfig(**NANO)).eval()
        earlier = before.NanoTrickster(before.NanoTricksterConfig(**NANO)).eval()
        earlier.load_state_dict(today.state_dict())
        prompt = torch.randint(0, NANO["vocab_size"], (1, 16), generator=torch.Generator().manual_seed(0))
        decoders = {
            args.commit: lambda: earlier.generate(prompt, before.SamplingSettings(args.new_tokens, temperature=0)),
            "today": lambda: today.generate(prompt, SamplingSettings(args.new_tokens, temperature=0)),
        }
        tokens = {name: decode() for name, decode in decoders.items()}
        seconds: dict[str, list[float]] = {name: [] for name in decoders}
        for round_ in range(args.rounds):
            for name in list(decoders)[:: 1 if round_ % 2 == 0 else -1]:
                start = time.perf_counter()
                decoders[name]()
                seconds[name].append(time.perf_counter() - start)
    ms = {name: round(1000 * statistics.median(values) / args.new_tokens, 3) for name, values in seconds.items()}
    report = {
        "commit": args.commit, "new_tokens": args.new_tokens, "threads": torch.get_num_threads(),
        "ms_per_token": ms, "speedup": round(ms[args.commit] / ms["today"], 2),
        "speedup_per_round": [round(a / b, 2) for a, b in zip(seconds[args.commit], seconds["today"], strict=True)],
        "same_greedy_tokens": bool(torch.equal(tokens[args.commit], tokens["today"])),
    }  # fmt: skip
    print(f"{args.commit}: {ms[args.commit]} ms/token, today: {ms['today']} ms/token, {report['speedup']}x "
          f"(per round {report['speedup_per_round']}), same tokens: {report['same_greedy_tokens']}")  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main()
