"""Runs inside TextAttack's own venv (see attack_vs_textattack.py): TextAttack's DeepWordBug recipe on a trustfm run.

With ``fp32`` or ``bf16`` the model is wrapped through trustfm's own
``Predictor.predict_proba`` (the same batched inference our attack uses, at the
same precision), so the two searches pay the same cost per model query. With
``stock`` it goes through TextAttack's own ``HuggingFaceModelWrapper``, as a
TextAttack user would run it: fp32, each query tokenised and padded to the
tokenizer's ``model_max_length`` (512 here). Prints one JSON object on stdout.

Usage: python _textattack_child.py RUN_DIR TEXTS_JSON SEED fp32|bf16|stock
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> None:
    run_dir, texts_file, seed, precision = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    import textattack
    from textattack.attack_recipes import DeepWordBugGao2018
    from textattack.attack_results import FailedAttackResult, SkippedAttackResult, SuccessfulAttackResult
    from textattack.models.wrappers import ModelWrapper

    from trustfm.models.predictor import Predictor

    runner = Predictor.from_run(run_dir)

    class Wrapper(ModelWrapper):
        def __init__(self):
            self.model = runner.model

        def __call__(self, text_input_list):
            return runner.predict_proba(list(text_input_list), precision=precision)

    if precision == "stock":
        import torch
        from textattack.models.wrappers import HuggingFaceModelWrapper
        from transformers.modeling_outputs import SequenceClassifierOutput

        class HuggingFaceStyle(torch.nn.Module):
            """Our classifier with a Hugging Face model's call signature and output, for TextAttack's wrapper."""

            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                return SequenceClassifierOutput(logits=self.model(input_ids, attention_mask))

        class StockWrapper(HuggingFaceModelWrapper):
            """TextAttack's wrapper, its ``__call__`` unchanged; only its check for a ``PreTrainedModel`` is skipped."""

            def __init__(self, model, tokenizer):
                self.model, self.tokenizer = model, tokenizer

        model_wrapper = StockWrapper(HuggingFaceStyle(runner.model).eval(), runner.tokenizer)
    else:
        model_wrapper = Wrapper()
    rows = json.loads(open(texts_file, encoding="utf-8").read())
    dataset = textattack.datasets.Dataset([(t, l) for t, l in zip(rows["texts"], rows["labels"])])
    attack = DeepWordBugGao2018.build(model_wrapper)
    args = textattack.AttackArgs(num_examples=len(rows["texts"]), random_seed=seed, disable_stdout=True, silent=True)
    started = time.perf_counter()
    results = textattack.Attacker(attack, dataset, args).attack_dataset()
    seconds = time.perf_counter() - started
    succeeded = sum(isinstance(r, SuccessfulAttackResult) for r in results)
    failed = sum(isinstance(r, FailedAttackResult) for r in results)
    skipped = sum(isinstance(r, SkippedAttackResult) for r in results)
    attacked = [r for r in results if not isinstance(r, SkippedAttackResult)]
    print(json.dumps({
        "seconds": seconds, "succeeded": succeeded, "failed": failed, "skipped": skipped,
        "success_rate": succeeded / max(succeeded + failed, 1),
        "robust_accuracy": failed / len(results),
        "mean_queries": float(np.mean([r.num_queries for r in attacked])) if attacked else 0.0,
    }))


if __name__ == "__main__":
    main()
