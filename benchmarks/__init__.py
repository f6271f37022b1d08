"""The lab beside the product: harnesses that measure the project's own targets.

`python -m benchmarks NAME [options]` runs one (bench, bench-generation, bench-data, memory; `--help` lists them).
time_to_quality.py and gpu.py are scripts that run the command lines as a user does (cli_runs.py). The product
(lightning_trickster) imports nothing from here.
"""
