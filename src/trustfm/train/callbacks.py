"""Training callbacks: the hook points where trust features join the one training loop.

Differential privacy, adversarial training and fairness mitigation are
callbacks, not forks of the loop. The hooks, in call order:

- ``on_fit_start(trainer)``: may wrap ``trainer.model`` / ``trainer.optimizer``
  (a DP engine wraps both here) before the first step.
- ``on_epoch_start(trainer, epoch)``
- ``on_epoch_rows(trainer, epoch, rows) -> rows``: the training rows (positions,
  repeats allowed, shape (n,)) this epoch draws its batches from; a sampler such
  as balanced sampling replaces them. Keep the count so the LR schedule holds.
- ``on_epoch_batches(trainer, epoch, batches) -> batches``: the epoch's batches
  (arrays of row positions); DP-SGD replaces them with Poisson-sampled ones.
- ``on_batch(trainer, batch) -> batch``: may change the batch, e.g. add a
  ``weight`` tensor (shape (b,)) that scales each example's loss (re-weighting).
- ``on_after_backward(trainer, batch)``: gradients of the clean loss exist; an
  adversarial method adds the gradients of its perturbed loss here.
- ``on_step_gradients(trainer, rows)``: every micro-batch of the step has been
  back-propagated (``rows``: the step's rows in this process), before gradient
  clipping; data parallelism averages the processes' gradients here.
- ``on_before_optimizer_step(trainer)``: after gradient clipping.
- ``on_step_end(trainer, record)``: ``record`` is the step's log dict.
- ``on_validation_start(trainer)`` / ``on_validation_end(trainer)``: around the
  epoch's validation and best-checkpoint save; weight averaging swaps its
  averaged weights in and back out here.
- ``on_epoch_end(trainer, record)``: ``record`` holds the validation metrics.
- ``on_fit_end(trainer)``

A callback that carries state across epochs implements ``state_dict`` and
``load_state_dict`` so that a resumed run continues exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class Callback:
    """Base class with no-op hooks; override the ones you need."""

    def on_fit_start(self, trainer) -> None: ...

    def on_epoch_start(self, trainer, epoch: int) -> None: ...

    def on_epoch_rows(self, trainer, epoch: int, rows: np.ndarray) -> np.ndarray:
        return rows

    def on_epoch_batches(self, trainer, epoch: int, batches: list[np.ndarray]) -> list[np.ndarray]:
        return batches

    def on_batch(self, trainer, batch: dict) -> dict:
        return batch

    def on_after_backward(self, trainer, batch: dict) -> None: ...

    def on_step_gradients(self, trainer, rows: int) -> None: ...

    def on_before_optimizer_step(self, trainer) -> None: ...

    def on_step_end(self, trainer, record: dict) -> None: ...

    def on_validation_start(self, trainer) -> None: ...

    def on_validation_end(self, trainer) -> None: ...

    def on_epoch_end(self, trainer, record: dict) -> None: ...

    def on_fit_end(self, trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class JsonlLogger(Callback):
    """Appends one JSON object per step and per epoch to ``path``.

    On resume the file is cut back to the checkpoint's step so the log never
    shows steps that the resumed run repeats.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._handle = None

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a killed process
            if record.get("step", 0) <= step:
                kept.append(line)
        from trustfm.fileio import write_lines_atomic

        write_lines_atomic(self.path, kept)

    def on_fit_start(self, trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if trainer.state.global_step == 0 and self.path.exists():
            self.path.unlink()
        self.truncate_after(trainer.state.global_step)
        self._handle = self.path.open("a", encoding="utf-8")

    def _write(self, record: dict) -> None:
        self._handle.write(json.dumps(record) + "\n")

    def on_step_end(self, trainer, record: dict) -> None:
        self._write({"kind": "step", **record})
        self._handle.flush()  # visible per step, during the epoch (one small write per step)

    def on_epoch_end(self, trainer, record: dict) -> None:
        self._write({"kind": "epoch", **record})
        self._handle.flush()

    def on_fit_end(self, trainer) -> None:
        if self._handle:
            self._handle.close()
            self._handle = None


class TensorBoardLogger(Callback):
    """Scalars to TensorBoard (needs ``tensorboard``: ``pip install 'trustfm[tracking]'``)."""

    def __init__(self, log_dir: str | Path):
        from trustfm.errors import ConfigError

        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.tracking.tensorboard needs tensorboard: pip install 'trustfm[tracking]'") from None
        self.writer = SummaryWriter(str(log_dir))

    def on_step_end(self, trainer, record: dict) -> None:
        self.writer.add_scalar("train/loss", record["loss"], record["step"])
        self.writer.add_scalar("train/lr", record["lr"], record["step"])

    def on_epoch_end(self, trainer, record: dict) -> None:
        for key, value in record.get("validation", {}).items():
            self.writer.add_scalar(f"validation/{key}", value, record["step"])

    def on_fit_end(self, trainer) -> None:
        self.writer.close()


class MlflowLogger(Callback):
    """Params and metrics to MLflow's active tracking URI (needs ``mlflow``)."""

    def __init__(self, params: dict):
        from trustfm.errors import ConfigError

        try:
            import mlflow
        except ImportError:
            raise ConfigError("train.tracking.mlflow needs mlflow: pip install 'trustfm[tracking]'") from None
        self.mlflow = mlflow
        self.params = params

    def on_fit_start(self, trainer) -> None:
        self.mlflow.start_run()
        self.mlflow.log_params(self.params)

    def on_epoch_end(self, trainer, record: dict) -> None:
        metrics = {f"validation_{k}": v for k, v in record.get("validation", {}).items()}
        metrics["train_loss"] = record["train_loss"]
        self.mlflow.log_metrics(metrics, step=record["step"])

    def on_fit_end(self, trainer) -> None:
        self.mlflow.end_run()
