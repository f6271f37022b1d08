"""The matrix products of one decoded nano token, in each weight layout and dtype generation could use, timed side by
side: what chose the decode-time weights (model.py's InferenceWeights) and the opt-in dtypes.

    python benchmarks/decode_products.py                   # batch 1, torch's threads
    python benchmarks/decode_products.py --batch 8 --threads 1

A token of nano makes 25 products (per block: qkv 256->768, output 256->256, gate|up 256->1536, down 768->256; then
the output 256->256 of a 256-token vocabulary): 20 MB of float32 weights, more than the CPU's caches hold. Each
variant runs all 25 on its own copy of the weights, 20 times per round, so the weights come from memory as in
generation; the variants take turns, `--rounds` times; the median milliseconds per token are printed, and the JSON
of it all on the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

SHAPES = [(768, 256), (256, 256), (1536, 256), (256, 768)] * 6 + [(256, 256)]
"""(out, in) of the 25 products of a nano token."""


def variants(batch: int) -> dict:
    """name -> a function that runs the 25 products once."""
    draw = torch.Generator().manual_seed(0)
    weights = [torch.randn(shape, generator=draw) * 0.05 for shape in SHAPES]
    rows = {size: torch.randn(batch, size, generator=draw) for size in (256, 768)}
    rows16 = {size: row.bfloat16() for size, row in rows.items()}
    transposed = [w.t().contiguous() for w in weights]  # (in, out)
    transposed16 = [w.bfloat16() for w in transposed]
    scales = [w.abs().amax(dim=1) / 127 for w in weights]
    int8 = [torch.round(w / s[:, None]).to(torch.int8) for w, s in zip(weights, scales, strict=True)]
    scales16 = [s.bfloat16() for s in scales]
    return {
        "float32, (out, in) as nn.Linear": lambda: [F.linear(rows[w.shape[1]], w) for w in weights],
        "float32, (in, out) (the default)": lambda: [torch.mm(rows[w.shape[0]], w) for w in transposed],
        "bfloat16, (in, out)": lambda: [torch.mm(rows16[w.shape[0]], w) for w in transposed16],
        "int8 weight-only, bfloat16 rows": lambda: [
            torch._weight_int8pack_mm(rows16[w.shape[1]], w, s) for w, s in zip(int8, scales16, strict=True)
        ],
        "int8 weight-only, float32 rows": lambda: [
            torch._weight_int8pack_mm(rows[w.shape[1]], w, s) for w, s in zip(int8, scales, strict=True)
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = variants(args.batch)
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        for round_ in range(args.rounds):
            for name in list(runs)[:: 1 if round_ % 2 == 0 else -1]:
                runs[name]()
                start = time.perf_counter()
                for _ in range(20):
                    runs[name]()
                times[name].append((time.perf_counter() - start) / 20 * 1000)
    ms = {name: round(statistics.median(values), 3) for name, values in times.items()}
    default = ms["float32, (in, out) (the default)"]
    for name, value in ms.items():
        print(f"{name:34s} {value:7.3f} ms per token ({default / value:.2f}x the default's speed)")
    print(json.dumps({"batch": args.batch, "threads": torch.get_num_threads(), "ms_per_token": ms}))


if __name__ == "__main__":
    main()
