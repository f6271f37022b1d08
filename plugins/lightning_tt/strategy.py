"""TTStrategy: one Tenstorrent chip; the strategy owns forward, backward and the parameter update (IPU pattern).

The LightningModule and its torch model (the interface in lightning_tt.interface) stay on the host as the source
of truth for hyper-parameters, logging, metrics and checkpoints. The strategy
- reads the model's parameter map from its state_dict and checks it (lightning_tt.interface), then opens the chip
  (ttml AutoContext) in setup_environment, and builds a ttml twin from the host weights in setup;
- runs the module's own *_step methods with `module.model.forward` routed to the twin, so the step code, its
  metrics and logging are the CPU ones;
- on backward runs the ttml backward; on the optimizer step clips on the chip, sets the LR the host scheduler
  computed and steps ttml's optimizer, one per host param group with that group's betas/eps/weight decay/amsgrad
  (read from the torch AdamW's param_groups): AdamW on bfloat16 weights for bf16-true (optionally with stochastic
  rounding), AdamWFullPrecision with float32 master weights and moments for bf16-mixed;
- reads the loss (and the gradients, for train/grad_norm) back to the host only on logging steps;
- copies chip weights (bf16-mixed: the float32 masters) into the host module before every checkpoint and at
  teardown, and closes the chip at teardown, also after an exception;
- writes ttml's AdamW moments into the checkpoint's optimizer state in torch's AdamW format and restores them on
  resume (a checkpoint without moments resumes with fresh ones, said in one line).

The mesh data-parallel subclass (lightning_tt.mesh.TTMeshStrategy, "tt_ddp") overrides the hooks `mesh_shape`,
`_after_open_device` (mappers), `_upload` (shard the batch), `_pad_rows`, `_download` and `_mean_over_chips`
(compose the chips' shards) and `_after_backward` (average gradients across chips). Opening the chips (fabric,
descriptor check, ttml's data-parallel context) is lightning_tt.fabric.open_mesh, shared with `tt-check`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.precision import HalfPrecision, MixedPrecision, Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn

from lightning_tt import STRATEGY_NAME, bridge, fabric, interface
from lightning_tt.errors import TTConfigError, TTHardwareError
from lightning_tt.precision import TTPrecision


@dataclasses.dataclass
class DeviceOptimizer:
    """One ttml optimizer for one host param group."""

    group: dict[str, Any]
    """The host torch AdamW's param group: its lr (set by the host scheduler) is applied before every step."""
    optimizer: Any
    names: list[str]
    """The group's parameters by torch name, in the group's order."""
    keys: list[str]
    """The same parameters as ttml names them ("<twin name>/<torch name>"): the keys of the optimizer's state."""


class TTStrategy(SingleDeviceStrategy):
    strategy_name = STRATEGY_NAME

    def __init__(
        self,
        accelerator: Any = None,
        checkpoint_io: Any = None,
        precision_plugin: Any = None,
        stochastic_rounding: bool = False,
    ) -> None:
        """
        Args:
            stochastic_rounding: bf16-true only: ttml's AdamW rounds each updated bfloat16 weight up or down at
                random in proportion to the remainder (AdamWConfig stochastic_rounding, as tt-train's optimizer
                comparison runs it), so updates smaller than half a bfloat16 step still move weights on average.
                bf16-mixed keeps float32 master weights instead and refuses it.
        """
        # The host mirror of the model (and every batch before upload) lives on the CPU.
        super().__init__(device="cpu", accelerator=accelerator, checkpoint_io=checkpoint_io)
        self.precision_plugin = precision_plugin
        self.stochastic_rounding = bool(stochastic_rounding)
        self.spec: interface.ModelSpec | None = None
        """The model's parameter map and sizes, read from its state_dict when the chips open."""
        self.device_model: Any | None = None
        """The ttml twin on the chip (lightning_tt.twin.NanoTricksterTT) once set up."""
        self._ttml: Any = None
        self._ttnn: Any = None
        self._device_open = False
        self._device_optimizers: list[DeviceOptimizer] = []
        self._pending_loss: Any = None
        self._backward_since_step = False
        self._in_optimizer_step = False
        # The KVCache of the generation in progress and its token history. Held by reference and compared with `is`:
        # keyed by id(), a freed cache's id can be reused by the next one and hand it a stale history.
        self._generation_history: tuple[Any, np.ndarray | None] = (None, None)

    # Lightning hands every strategy the precision plugin built from --trainer.precision, through this setter; it is
    # mapped onto the chip's and kept here, not in the base Strategy's storage, which Lightning's connector reads
    # before --trainer.precision: a default stored there would silently win over a config's precision.
    @property
    def precision_plugin(self) -> TTPrecision:
        if self._chip_precision is None:  # used without a Trainer
            self._chip_precision_default = getattr(self, "_chip_precision_default", None) or TTPrecision()
            return self._chip_precision_default
        return self._chip_precision

    @precision_plugin.setter
    def precision_plugin(self, plugin: Precision | None) -> None:
        if plugin is None or isinstance(plugin, TTPrecision):
            self._chip_precision = plugin
        elif type(plugin) is Precision:  # Lightning's "32-true" (also its default)
            self._chip_precision = TTPrecision("32-true")  # refused there, with the reason
        elif type(plugin) is HalfPrecision and plugin.precision == "bf16-true":
            self._chip_precision = TTPrecision("bf16-true")
        elif type(plugin) is MixedPrecision and plugin.precision == "bf16-mixed":
            self._chip_precision = TTPrecision("bf16-mixed")
        else:
            raise TTConfigError(
                f"--trainer.precision {getattr(plugin, 'precision', type(plugin).__name__)!r} is not supported "
                "with strategy 'tt': use bf16-mixed (float32 master weights) or bf16-true (bfloat16 weights)"
            )

    @property
    def mesh_shape(self) -> list[int]:
        return [1, 1]

    def mesh_plan(self) -> fabric.MeshPlan:
        """The mesh to open and its descriptor (one chip: none)."""
        return fabric.MeshPlan([1, 1], None)

    # ---------------------------------------------------------------- device lifetime
    def setup_environment(self) -> None:
        super().setup_environment()
        _, self.spec = interface.check_network(self.lightning_module)  # before any chip opens
        self._check_shapes(self.spec)
        self._ttml, self._ttnn = self._import_vendor("ttml"), self._import_vendor("ttnn")
        mesh_device = fabric.open_mesh(self._ttml, self.mesh_plan())
        self._device_open = True
        self.accelerator_mesh_device = mesh_device
        self._after_open_device(mesh_device)
        self._ttml.autograd.AutoContext.get_instance().set_seed(torch.initial_seed() % 2**32)

    @staticmethod
    def _import_vendor(name: str) -> Any:
        problem = bridge.import_problem(name)
        if problem:
            raise TTHardwareError(f"accelerator 'tt' cannot run here: {problem}")
        return importlib.import_module(name)

    @property
    def accelerator_mesh_device(self) -> Any:
        return getattr(self.accelerator, "mesh_device", None)

    @accelerator_mesh_device.setter
    def accelerator_mesh_device(self, mesh_device: Any) -> None:
        # The accelerator reads memory statistics from the open mesh; it must never ask ttml for the device
        # itself (AutoContext.get_device() would open a 1x1 device when none is open).
        if self.accelerator is not None:
            self.accelerator.mesh_device = mesh_device

    def _after_open_device(self, mesh_device: Any) -> None:
        """Hook: what needs the open device (a mesh builds its batch mapper and composer here)."""

    def setup(self, trainer: Any) -> None:
        super().setup(trainer)
        spec = self.spec
        if spec.dropout > 0:
            rank_zero_warn(
                f"model.dropout={spec.dropout}: on Tenstorrent only the residual-branch dropout is applied; "
                "ttml's fused attention has no dropout on attention probabilities"
            )
        from lightning_tt.twin import NanoTricksterTT

        dtype = bridge.ttnn_dtype(self._ttnn, self.precision_plugin.precision)
        chips = math.prod(self.mesh_shape)
        self.device_model = NanoTricksterTT(spec, self._host_weights(), dtype, per_device_dropout=chips > 1)
        if trainer.state.fn == TrainerFn.FITTING:
            self._build_device_optimizers()

    def teardown(self) -> None:
        try:
            if self._device_open and self.device_model is not None:
                self.copy_weights_to_host()
        finally:
            self._close_device()
            super().teardown()

    def _close_device(self) -> None:
        if not self._device_open:
            return
        self.device_model, self._device_optimizers, self._pending_loss = None, [], None
        self._generation_history = (None, None)
        self._device_open = False
        self.accelerator_mesh_device = None
        self._ttml.autograd.AutoContext.get_instance().close_device()

    # ---------------------------------------------------------------- host <-> chip weights
    def _network(self) -> torch.nn.Module:
        return self.lightning_module.model  # its interface was checked in setup_environment (lightning_tt.interface)

    @staticmethod
    def _check_shapes(spec: interface.ModelSpec) -> None:
        tile = bridge.TILE_SIZE
        rules = {
            "max_seq_len": spec.max_seq_len % tile == 0,
            "hidden_dim": spec.hidden_dim % tile == 0,
            "mlp_dim": spec.mlp_dim % tile == 0,
            "hidden_dim/num_heads": spec.head_dim % tile == 0,
        }
        broken = [name for name, ok in rules.items() if not ok]
        if broken:
            raise TTConfigError(
                f"on Tenstorrent {', '.join(broken)} must be multiples of {tile} (ttml works in 32x32 tiles; RoPE "
                f"needs head_dim % 32 == 0): got max_seq_len={spec.max_seq_len}, hidden_dim={spec.hidden_dim}, "
                f"mlp_dim={spec.mlp_dim}, num_heads={spec.num_heads}"
            )

    def _named_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The host parameters of the model's parameter map (the state_dict's names; the tied output weight is the
        embedding's tensor and appears once, as embedding.weight)."""
        params = dict(self._network().named_parameters())
        return {name: params[name] for name in self.spec.parameter_shapes}

    def _host_weights(self) -> dict[str, np.ndarray]:
        return {name: p.detach().cpu().float().numpy() for name, p in self._named_parameters().items()}

    @property
    def _keeps_master_weights(self) -> bool:
        return self.precision_plugin.precision == "bf16-mixed"

    def copy_weights_to_host(self) -> None:
        """Chip weights -> the host module's parameters (a sync point). Under bf16-mixed the float32 master weights
        of AdamWFullPrecision are what the host (and so every checkpoint) gets; the chip computes with their
        bfloat16 copy."""
        params = self._named_parameters()
        arrays = self.device_model.export_weights(self.spec.parameter_shapes)
        if self._keeps_master_weights:
            arrays |= self._master_weights()
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(torch.from_numpy(arrays[name]))

    def copy_weights_to_device(self) -> None:
        """Host module parameters -> the chip, in place (optimizer state on the chip is kept; bf16-mixed: the
        float32 masters take the host values too)."""
        weights = self._host_weights()
        self.device_model.load_weights(weights)
        if self._keeps_master_weights and self._device_optimizers:
            self._set_master_weights(weights)

    def lightning_module_state_dict(self) -> dict[str, Any]:
        if self.device_model is not None:
            self.copy_weights_to_host()
        return super().lightning_module_state_dict()

    def load_model_state_dict(self, checkpoint: dict[str, Any], strict: bool = True) -> None:
        super().load_model_state_dict(checkpoint, strict=strict)
        if self.device_model is not None:
            self.copy_weights_to_device()

    # ---------------------------------------------------------------- optimizer on the chip
    def _build_device_optimizers(self) -> None:
        """One ttml optimizer per host param group, configured from that group (lr, betas, eps, weight_decay,
        amsgrad): the torch AdamW's param_groups are the contract, not the module's hyper-parameter names."""
        ttml, model = self._ttml, self.device_model
        if len(self.optimizers) != 1:
            raise TTConfigError(
                f"strategy 'tt' supports one optimizer, configure_optimizers returned {len(self.optimizers)}"
            )
        host_optimizer = self.optimizers[0]
        if not isinstance(host_optimizer, torch.optim.AdamW):
            raise TTConfigError(
                f"strategy 'tt' runs AdamW on the chip; configure_optimizers returned {type(host_optimizer).__name__}: "
                "use AdamW (--model.optimization.optimizer adamw)"
            )
        mixed = self._keeps_master_weights
        if mixed and self.stochastic_rounding:
            raise TTConfigError(
                "stochastic_rounding is an option of ttml's AdamW on bfloat16 weights (bf16-true); bf16-mixed updates "
                "float32 master weights (AdamWFullPrecision), which it does not apply to: drop "
                "--trainer.strategy.stochastic_rounding or use --trainer.precision bf16-true"
            )
        names = {id(p): name for name, p in self._named_parameters().items()}
        all_params = model.parameters()
        prefix = model.get_name()
        self._device_optimizers = []
        for group in host_optimizer.param_groups:
            if group.get("maximize"):
                raise TTConfigError("strategy 'tt': ttml's AdamW minimizes; an AdamW with maximize=True cannot run")
            # ttml optimizers take a NamedParameters map (an opaque nanobind map type, not a dict).
            subset = type(all_params)()
            group_names = [names[id(param)] for param in group["params"]]
            keys = [f"{prefix}/{name}" for name in group_names]
            for key, name in zip(keys, group_names, strict=True):
                subset[key] = model.tensors[name]
            beta1, beta2 = group["betas"]
            hyper = (float(group["lr"]), float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"]))
            amsgrad = bool(group.get("amsgrad", False))
            if mixed:
                config = ttml.optimizers.AdamWFullPrecisionConfig.make(*hyper, amsgrad)
                optimizer = ttml.optimizers.AdamWFullPrecision(subset, config)
            else:
                config = ttml.optimizers.AdamWConfig.make(*hyper, amsgrad, self.stochastic_rounding)
                optimizer = ttml.optimizers.AdamW(subset, config)
            self._device_optimizers.append(DeviceOptimizer(group, optimizer, group_names, keys))
        if mixed:
            # AdamWFullPrecision starts its masters from the bfloat16 weights (adamw_full_precision.cpp); the host
            # holds the float32 values, which are the masters to keep.
            self._set_master_weights(self._host_weights())

    def _replace_state(self, device: DeviceOptimizer, **entries: Any) -> None:
        state = device.optimizer.get_state_dict()
        state.update(entries)
        device.optimizer.set_state_dict(state)

    def _named_tensors(self, like: Any, arrays: dict[str, np.ndarray], device: DeviceOptimizer, dtype: Any) -> Any:
        """A NamedParameters (the type of `like`) of chip tensors from torch-shaped host arrays, keyed as ttml keys
        the optimizer's state."""
        named = type(like)()
        for key, name in zip(device.keys, device.names, strict=True):
            laid_out = self.device_model.device_layout(name, arrays[name])
            named[key] = self._ttml.autograd.Tensor.from_numpy(laid_out, self._ttnn.Layout.TILE, dtype)
        return named

    def _set_master_weights(self, weights: dict[str, np.ndarray]) -> None:
        for device in self._device_optimizers:
            masters = device.optimizer.get_state_dict()["master_weights"]
            float32 = self._ttnn.DataType.FLOAT32
            self._replace_state(device, master_weights=self._named_tensors(masters, weights, device, float32))

    def _master_weights(self) -> dict[str, np.ndarray]:
        arrays = {}
        for device in self._device_optimizers:
            masters = device.optimizer.get_state_dict()["master_weights"]
            for key, name in zip(device.keys, device.names, strict=True):
                arrays[name] = self.device_model.read_array(masters[key], self.spec.parameter_shapes[name])
        return arrays

    # ---------------------------------------------------------------- optimizer state in checkpoints
    MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    """ttml's AdamW/AdamWFullPrecision state entries (NamedParameters keyed like the parameters) that torch's AdamW
    state holds under the same names."""

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        """The host optimizer's state dict with ttml's moments and step count in it, in torch's AdamW format, so a
        TT checkpoint resumes on TT and on CPU/GPU alike."""
        state = super().optimizer_state(optimizer)
        if not self._device_optimizers or not state:
            return state
        moments: dict[int, dict[str, torch.Tensor]] = {}
        for group_state, device in zip(state["param_groups"], self._device_optimizers, strict=True):
            chip_state = device.optimizer.get_state_dict()
            steps = int(chip_state["steps"])
            if steps == 0:
                continue
            for index, key, name in zip(group_state["params"], device.keys, device.names, strict=True):
                shape = self.spec.parameter_shapes[name]
                entry = {"step": torch.tensor(float(steps))}
                for moment in self.MOMENTS:
                    if moment in chip_state:
                        entry[moment] = torch.from_numpy(self.device_model.read_array(chip_state[moment][key], shape))
                moments[index] = entry
        return {**state, "state": moments}

    def load_optimizer_state_dict(self, checkpoint: Any) -> None:
        """The host optimizer's state, then its AdamW moments and step count onto the chip (ttml's set_state_dict);
        where the checkpoint has none, one line says the moments restart."""
        super().load_optimizer_state_dict(checkpoint)
        if not self._device_optimizers:
            return
        host = self.optimizers[0]
        # torch's load_state_dict replaces the param_group dicts (same parameters, restored hyper-parameters): the
        # lr the scheduler sets from now on is in the new ones.
        for device, group in zip(self._device_optimizers, host.param_groups, strict=True):
            device.group = group
        restarting = []
        dtype = self._ttnn.DataType.FLOAT32 if self._keeps_master_weights else self._ttnn.DataType.BFLOAT16
        for device in self._device_optimizers:
            entries = [host.state.get(param, {}) for param in device.group["params"]]
            if not all("exp_avg" in e and "exp_avg_sq" in e and "step" in e for e in entries):
                restarting += device.names
                continue
            current = device.optimizer.get_state_dict()
            update: dict[str, Any] = {"steps": int(float(entries[0]["step"]))}
            for moment in self.MOMENTS:
                if moment in current and all(moment in e for e in entries):
                    arrays = {
                        n: e[moment].detach().float().cpu().numpy() for n, e in zip(device.names, entries, strict=True)
                    }
                    update[moment] = self._named_tensors(current[moment], arrays, device, dtype)
            self._replace_state(device, **update)
        host.state.clear()  # the chip holds them now; a checkpoint reads them back from there
        if restarting:
            total = sum(len(d.names) for d in self._device_optimizers)
            rank_zero_warn(
                f"resuming on Tenstorrent: the checkpoint holds no AdamW moments for {len(restarting)} of {total} "
                f"parameters ({restarting[0]}, ...), so ttml's AdamW starts their moments from zero (the weights, "
                "the step count and the schedule resume)"
            )

    def optimizer_step(self, optimizer: Any, closure: Any, model: Any = None, **kwargs: Any) -> Any:
        self._in_optimizer_step = True
        try:
            result = super().optimizer_step(optimizer, closure, model, **kwargs)
        finally:
            self._in_optimizer_step = False
        if self._backward_since_step:
            self._step_device_optimizers()
        return result

    def _step_device_optimizers(self) -> None:
        clip_norm, self.precision_plugin.requested_clip_norm = self.precision_plugin.requested_clip_norm, None
        if clip_norm is not None:
            self._ttml.core.clip_grad_norm(self.device_model.parameters(), clip_norm, 2.0, False)
        for device in self._device_optimizers:
            device.optimizer.set_lr(float(device.group["lr"]))  # what the host LR scheduler set for this step
            device.optimizer.step()
        for device in self._device_optimizers:
            device.optimizer.zero_grad()
        self._backward_since_step = False

    # ---------------------------------------------------------------- steps
    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        with self._network_on_device(training=True):
            return super().training_step(*args, **kwargs)

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        with self._network_on_device(training=False):
            return super().validation_step(*args, **kwargs)

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        with self._network_on_device(training=False):
            return super().test_step(*args, **kwargs)

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        with self._network_on_device(training=False):
            return super().predict_step(*args, **kwargs)

    @contextlib.contextmanager
    def _network_on_device(self, training: bool) -> Iterator[None]:
        """Route the host network's forward to the chip for the duration of one step."""
        network = self._network()
        network.forward = self._train_forward if training else self._eval_forward
        try:
            yield
        finally:
            del network.forward  # back to the class's forward

    def backward(self, closure_loss: torch.Tensor, optimizer: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        module = self.lightning_module
        self.pre_backward(closure_loss)
        closure_loss = self.precision_plugin.pre_backward(closure_loss, module)  # on_before_backward hooks
        loss, self._pending_loss = self._pending_loss, None
        if loss is None:
            raise RuntimeError("TTStrategy.backward: no device loss; the training step did not run on the chip")
        accumulate = self.lightning_module.trainer.accumulate_grad_batches
        if accumulate > 1:  # Lightning scales the host loss the same way
            loss = self._ttml.ops.binary.mul(loss, 1.0 / accumulate)
        loss.backward(False)
        self._ttml.autograd.AutoContext.get_instance().reset_graph()
        self._after_backward()
        self._backward_since_step = True
        if self._in_optimizer_step and self._is_logging_step():
            self._copy_gradients_to_host()  # for on_before_optimizer_step (train/grad_norm), logging steps only
        closure_loss = self.precision_plugin.post_backward(closure_loss, module)  # on_after_backward hooks
        self.post_backward(closure_loss)
        return closure_loss

    def _after_backward(self) -> None:
        """Hook for a mesh strategy: average gradients across chips here."""

    def _is_logging_step(self) -> bool:
        trainer = self.lightning_module.trainer
        every = trainer.log_every_n_steps
        return every > 0 and (trainer.global_step + 1) % every == 0

    def _copy_gradients_to_host(self) -> None:
        params = self._named_parameters()
        grads = self.device_model.export_gradients(self.spec.parameter_shapes)
        for name, grad in grads.items():
            params[name].grad = torch.from_numpy(grad)

    # ---------------------------------------------------------------- forwards on the chip
    def _upload(self, array: np.ndarray, dtype: Any, layout: Any) -> Any:
        """Host array -> ttml tensor on the chip (a mesh strategy shards the batch dimension here)."""
        return self._ttml.autograd.Tensor.from_numpy(array, layout, dtype)

    def _set_grad_mode(self, enabled: bool) -> None:
        mode = self._ttml.autograd.GradMode.ENABLED if enabled else self._ttml.autograd.GradMode.DISABLED
        self._ttml.autograd.AutoContext.get_instance().set_gradient_mode(mode)

    def _train_forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: Any = None):
        """Same contract as NanoTrickster.forward; returns (None, host loss). The loss is read back only on
        logging steps; otherwise NaN stands in (Lightning does not read it, the module logs only then)."""
        vocab = self.spec.vocab_size
        ttnn = self._ttnn
        if targets is None or cache is not None:
            raise RuntimeError("training on Tenstorrent needs (inputs, targets) batches and no KV cache")
        if idx.shape[1] % bridge.TILE_SIZE:
            raise TTConfigError(
                f"training windows of {idx.shape[1]} tokens: on Tenstorrent the window (model.max_seq_len) must be "
                f"a multiple of {bridge.TILE_SIZE}"
            )
        tokens = self._upload(bridge.tokens_layout(idx.numpy(), vocab), ttnn.DataType.UINT32, ttnn.Layout.ROW_MAJOR)
        labels = self._upload(
            bridge.targets_layout(targets.numpy(), vocab), ttnn.DataType.UINT32, ttnn.Layout.ROW_MAJOR
        )
        self._set_grad_mode(True)
        self.device_model.train()
        logits = self.device_model(tokens)
        loss = self._ttml.ops.loss.cross_entropy_loss(logits, labels, reduce=self._ttml.ops.ReduceType.MEAN)
        self._pending_loss = loss
        if self._is_logging_step():
            return None, torch.tensor(self._loss_to_host(loss))  # a sync point, logging steps only
        return None, torch.tensor(math.nan)

    def _loss_to_host(self, loss: Any) -> float:
        return self._mean_over_chips(loss)

    def _pad_rows(self, array: np.ndarray) -> np.ndarray:
        """Hook: evaluation batches a mesh cannot split evenly get filler rows here (cropped after)."""
        return array

    def _download(self, tensor: Any) -> np.ndarray:
        """Chip tensor -> host float32 array (a mesh concatenates the chips' shards)."""
        return tensor.to_numpy(self._ttnn.DataType.FLOAT32)

    def _eval_forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: Any = None):
        """Same contract as NanoTrickster.forward, computed on the chip; returns host (logits, loss).

        With targets (validation/test) the loss is computed on the chip: ttml's per-position cross-entropy
        (ReduceType.NONE) times a mask of the scored positions, averaged on the chip, so the host reads one
        scalar per chip. The logits are downloaded only if the LightningModule needs them (its
        `evaluation_needs_logits`, default True; see lightning_tt's docstring); otherwise None is returned.

        With a KVCache (generation) the chip recomputes the whole cached sequence each call, which gives the same
        logits as cached attention; the cache object only keys the token history here.
        """
        config = self.spec
        if cache is not None:
            owner, history = self._generation_history
            if owner is not cache:  # a new generation, or the window slid and generation re-created the cache
                history = idx.numpy()[:, :0]
            sequence = np.concatenate([history, idx.numpy()], axis=1)
            self._generation_history = (cache, sequence)
            cache.length += idx.shape[1]
        else:
            sequence = idx.numpy()
        if sequence.shape[1] > config.max_seq_len:
            raise TTConfigError(
                f"sequence of {sequence.shape[1]} tokens exceeds max_seq_len={config.max_seq_len}: "
                "use shorter windows or a model with a larger max_seq_len"
            )
        padded, length = bridge.pad_time(sequence)
        rows = padded.shape[0]
        ttnn = self._ttnn
        token_ids = bridge.tokens_layout(self._pad_rows(padded), config.vocab_size)
        tokens = self._upload(token_ids, ttnn.DataType.UINT32, ttnn.Layout.ROW_MAJOR)
        want_logits = targets is None or getattr(self.lightning_module, "evaluation_needs_logits", True)
        self._set_grad_mode(False)
        self.device_model.eval()
        try:
            device_logits = self.device_model(tokens)
            loss = None if targets is None else self._device_loss(device_logits, targets.numpy(), padded.shape[1])
            logits = self._download(device_logits)[:rows] if want_logits else None  # [B, 1, T_pad, V_pad]
        finally:
            self._ttml.autograd.AutoContext.get_instance().reset_graph()
            self._set_grad_mode(True)
        if logits is not None:
            logits = torch.from_numpy(np.ascontiguousarray(logits[:, 0, :length, : config.vocab_size]))
            logits = logits[:, -idx.shape[1] :]  # only the positions this call asked for
        return logits, loss

    def _device_loss(self, logits: Any, targets: np.ndarray, padded_length: int) -> torch.Tensor:
        """Mean cross-entropy over the scored positions (targets != -100), computed on the chip; NaN when none is
        scored (as torch's cross_entropy with ignore_index gives)."""
        ttml, ttnn = self._ttml, self._ttnn
        labels, weights = bridge.scored_targets(targets, self.spec.vocab_size, padded_length)
        labels, weights = self._pad_rows(labels), self._pad_rows(weights)
        labels_on_chip = self._upload(labels, ttnn.DataType.UINT32, ttnn.Layout.ROW_MAJOR)
        weights_on_chip = self._upload(weights, ttnn.DataType.BFLOAT16, ttnn.Layout.TILE)
        per_position = ttml.ops.loss.cross_entropy_loss(logits, labels_on_chip, reduce=ttml.ops.ReduceType.NONE)
        chip_means = ttml.ops.unary.mean(ttml.ops.binary.mul(per_position, weights_on_chip))
        scored = int(weights.sum())
        # Every chip holds the same number of rows, so the sum over positions is the mean of the chips' means
        # times all positions (filler rows and padded time steps weigh 0).
        total = self._mean_over_chips(chip_means) * weights.size
        return torch.tensor(total / scored if scored else math.nan, dtype=torch.float32)

    def _mean_over_chips(self, value: Any) -> float:
        """A per-chip scalar averaged over the chips (one chip: the value)."""
        return float(value.get_value().item())

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        strategy_registry.register(
            cls.strategy_name, cls, description="One Tenstorrent chip through ttml; the strategy owns the step"
        )
