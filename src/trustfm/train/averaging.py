"""Weight averaging: an exponential moving average (EMA) of the trained parameters.

After every optimizer step the average moves towards the new weights::

    average <- decay_t * average + (1 - decay_t) * weights,   decay_t = min(decay, (1 + t) / (10 + t))

where ``t`` counts the steps taken so far (the ramp keeps the first steps from
being dominated by the starting weights, as TensorFlow's
``ExponentialMovingAverage(num_updates=...)`` does). Validation, best-checkpoint
selection and the saved model use the average; training continues from the raw
weights.

Why it is here: under DP-SGD every step adds Gaussian noise, and the weights
random-walk around where the gradients lead. Averaging the last ~``1 / (1 -
decay)`` iterates cancels part of that walk. It reads only the released
iterates, so it is post-processing and costs no privacy (De et al., "Unlocking
High-Accuracy Differentially Private Image Classification through Scale",
2022, use it for this reason).
"""

from __future__ import annotations

from typing import Any

import torch

from trustfm.train.callbacks import Callback


class WeightAveraging(Callback):
    """EMA of the parameters the optimizer steps, swapped in for validation and saving.

    ``decay`` in (0, 1): the weight of the running average per step; the average spans about ``1 / (1 - decay)``
    steps. At the end of training the model keeps the averaged weights.
    """

    def __init__(self, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.updates = 0
        self.average: list[torch.Tensor] | None = None
        self._weights: list[torch.Tensor] = []  # detached views of the trained parameters (same storage)

    def on_fit_start(self, trainer) -> None:
        # what the optimizer steps (a DP clipper turns requires_grad off on the parameters it trains); the
        # optimizer updates them in place, so views taken once follow every step
        self._weights = [p.detach() for group in trainer.optimizer.param_groups for p in group["params"]]
        if self.average is None:
            self.average = [w.clone() for w in self._weights]
        elif [a.shape for a in self.average] != [w.shape for w in self._weights]:
            raise ValueError("the checkpoint's weight average does not match the model's trained parameters")

    @torch.no_grad()
    def on_step_end(self, trainer, record: dict) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.average, self._weights, 1.0 - decay)

    @torch.no_grad()
    def _swap(self) -> None:
        for averaged, weights in zip(self.average, self._weights):
            held = weights.clone()
            weights.copy_(averaged)
            averaged.copy_(held)

    def on_validation_start(self, trainer) -> None:
        self._swap()

    def on_validation_end(self, trainer) -> None:
        self._swap()

    @torch.no_grad()
    def on_fit_end(self, trainer) -> None:
        torch._foreach_copy_(self._weights, self.average)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "average": [a.clone() for a in self.average or []]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.average = [a.clone() for a in state["average"]] or None
