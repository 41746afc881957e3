"""Train stage: one fine-tuning loop that trust features join through callbacks."""

from trustfm.train.callbacks import Callback, JsonlLogger
from trustfm.train.loop import FineTuner, TrainState

__all__ = ["Callback", "FineTuner", "JsonlLogger", "TrainState"]
