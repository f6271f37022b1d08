"""`complete`: a terminal REPL that loads a checkpoint once and continues whatever you type."""

from __future__ import annotations

import signal
from dataclasses import asdict, replace
from pathlib import Path

import torch

from lightning_trickster.checkpoint import TrainedModel, load_trained_model
from lightning_trickster.errors import StoppedBySignal, TricksterError
from lightning_trickster.model import SamplingSettings

HELP = """Type or paste text (several lines are fine), then an empty line to complete it.
Commands:
  :temperature T     sampling temperature (0 = greedy)
  :top_k K|none      sample among the K most likely tokens
  :top_p P|none      sample from the smallest set holding probability P
  :max_new_tokens N  length of each completion
  :seed S            restart the random generator with seed S
  :settings          show the current settings
  :help              this text
  :quit              leave (Ctrl-D does too; Ctrl-C stops a completion, or at the prompt leaves with status 130)"""

SETTING_TYPES = {"temperature": float, "top_k": int, "top_p": float, "max_new_tokens": int}


class CompletionSession:
    def __init__(self, trained: TrainedModel, settings: SamplingSettings, seed: int) -> None:
        self.trained = trained
        self.settings = settings
        self.generator = torch.Generator().manual_seed(seed)

    def read_prompt(self) -> str | None:
        """Lines up to an empty line; None at end of input."""
        lines: list[str] = []
        while True:
            try:
                line = input("... " if lines else ">>> ")
            except EOFError:
                return "\n".join(lines) if lines else None
            if not line:
                if lines:
                    return "\n".join(lines)
                continue
            if not lines and line.startswith(":"):
                return line
            lines.append(line)

    def run_command(self, command: str) -> bool:
        """Apply a :command; False means quit."""
        name, _, value = command[1:].partition(" ")
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            print(HELP)
        elif name == "settings":
            print(", ".join(f"{k}={v}" for k, v in asdict(self.settings).items()))
        elif name == "seed":
            if value.strip().isdigit() and int(value) < 2**64:
                self.generator.manual_seed(int(value))
            else:
                print(f"error: :seed takes a whole number from 0 to 2**64 - 1, got {value.strip()!r}")
        elif name in SETTING_TYPES:
            self.change_setting(name, value.strip())
        else:
            print(f"unknown command {command!r}: type :help")
        return True

    def change_setting(self, name: str, value: str) -> None:
        try:
            parsed = None if value.lower() == "none" and name in ("top_k", "top_p") else SETTING_TYPES[name](value)
            candidate = replace(self.settings, **{name: parsed})
            candidate.check(self.trained.model.config.vocab_size)
        except (ValueError, TricksterError) as err:
            print(f"error: {err}")
            return
        self.settings = candidate

    def complete(self, prompt: str) -> None:
        tokenizer = self.trained.tokenizer
        try:
            tokens = tokenizer.encode(prompt).unsqueeze(0)
        except TricksterError as err:
            print(f"error: {err}")
            return
        decode = tokenizer.incremental_decoder()
        print(prompt, end="", flush=True)
        try:
            for token in self.trained.model.stream(tokens, self.settings, generator=self.generator):
                print(decode(int(token)), end="", flush=True)
        except (KeyboardInterrupt, StoppedBySignal) as stop:
            if isinstance(stop, StoppedBySignal) and stop.signal_name != "SIGINT":
                raise  # SIGTERM ends the session; Ctrl-C only this completion
            print(" [stopped]", end="")
        print("\n")


def complete(ckpt_path: Path, sampling: SamplingSettings | None = None, seed: int = 1337) -> None:
    """Load a checkpoint once and complete what you type, streaming the text as it is sampled.

    Args:
        ckpt_path: a .ckpt written by fit.
        sampling: sampling settings to start with (default: the checkpoint's own); :temperature and the other
            commands change them while it runs.
        seed: seed of the random generator (:seed S restarts it).
    """
    trained = load_trained_model(ckpt_path)
    settings = sampling or trained.sampling
    settings.check(trained.model.config.vocab_size)
    session = CompletionSession(trained, settings, seed)
    val = f", val loss {trained.val_loss:.3f}" if trained.val_loss is not None else ""
    print(f"{ckpt_path}: step {trained.step}{val}, {trained.tokenizer.name} tokenizer.")
    print("Type text, then an empty line to complete it. :help lists commands; Ctrl-D quits.\n")
    try:
        while (prompt := session.read_prompt()) is not None:
            if prompt.startswith(":"):
                if not session.run_command(prompt):
                    break
            else:
                session.complete(prompt)
    except KeyboardInterrupt:
        print()
        raise StoppedBySignal(signal.SIGINT) from None
    except StoppedBySignal:
        print()
        raise
