"""Image benchmarks on real data, scikit-learn's handwritten digits (1,797 scans, 10 classes), 64 px:

    python benchmarks/images_digits.py pretrained --rounds 3    # ImageNet-pretrained vs the same net from scratch
    python benchmarks/images_digits.py throughput --rounds 3    # trustfm's training loop vs a plain PyTorch loop
    python benchmarks/images_digits.py attacks --rounds 3       # FGSM/PGD success vs the Adversarial Robustness Toolbox

- ``pretrained``: two ``trustfm train`` runs per round on the same split and recipe (EfficientNet-Lite0, 5 epochs,
  AdamW 1e-3, batch 32, augmentation without flips), one from the shipped ImageNet weights and one from random
  weights (``model.pretrained: false``); each round has its own seed, shared by both arms; the arms alternate.
  Reports test accuracy per arm and the difference.
- ``throughput``: training images per second over 2 epochs of the training split, data loading included. trustfm:
  the images decoded once (``ImageInputs.encode``), then ``FineTuner``, augmented per batch. Baseline: the usual
  torchvision-style loop (a Dataset that opens each PIL image per item and applies random-resized crop and colour
  jitter per image, a DataLoader with 2 workers, AdamW). torchvision itself is not importable here (the only wheel
  this machine reaches is a CUDA build whose operators do not load against the CPU torch), so the baseline's
  per-image transforms are written with PIL and torch the way torchvision's are. Same model, batch size, learning
  rate and images; the ratio is trustfm / baseline images per second (above 1: trustfm faster).
- ``attacks``: one model trained on the digits (pretrained, 3 epochs); on 200 test images, untargeted L-infinity
  FGSM and PGD (10 steps of 2.5 eps / 10, one random start) at 2, 4 and 8 / 255, by trustfm
  (``models.pixel_attacks``) and by ART (``FastGradientMethod``, ``ProjectedGradientDescent``) on the same model
  and images. Success rate = share of correctly classified images the attack turns wrong. PGD's random start
  differs between the two implementations, so its rates are compared over rounds with different seeds.

Each part prints one JSON line per round and a summary line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rounds import ratio_summary  # noqa: E402

RECIPE = {"data.modality": "image", "data.image.size": 64, "data.image.augment.flip": False,
          "data.split.validation": 0.1, "data.split.test": 0.2, "data.split.seed": 0, "train.batch_size": 32,
          "train.learning_rate": 1e-3, "evaluate.bootstrap_samples": 0}


def _digits(root: Path) -> Path:
    from trustfm.data.image_datasets import write_digits

    folder = root / "digits"
    if not folder.exists():
        write_digits(folder)
    return folder


def _train(digits: Path, out: Path, *, seed: int, epochs: int, pretrained: bool = True) -> dict:
    from trustfm.config import load_config
    from trustfm.pipeline import train_and_evaluate

    config = load_config(None, {**RECIPE, "seed": seed, "output_dir": str(out), "data.train": str(digits),
                                "train.epochs": epochs, "model.pretrained": pretrained})
    started = time.perf_counter()
    run = train_and_evaluate(config, show_progress=False).root
    performance = json.loads((run / "results" / "performance.json").read_text())
    return {"accuracy": performance["accuracy"]["value"], "seconds": round(time.perf_counter() - started, 1),
            "run": str(run)}


def pretrained_vs_scratch(root: Path, rounds: int, epochs: int) -> None:
    digits = _digits(root)
    differences = []
    for r in range(rounds):
        seed = 100 + r
        arms = ["pretrained", "scratch"] if r % 2 == 0 else ["scratch", "pretrained"]
        result = {arm: _train(digits, root / f"{arm}-{r}", seed=seed, epochs=epochs, pretrained=arm == "pretrained")
                  for arm in arms}
        difference = result["pretrained"]["accuracy"] - result["scratch"]["accuracy"]
        differences.append(difference)
        print(json.dumps({"part": "pretrained", "round": r, "seed": seed, "epochs": epochs,
                          "pretrained_accuracy": round(result["pretrained"]["accuracy"], 4),
                          "scratch_accuracy": round(result["scratch"]["accuracy"], 4),
                          "difference": round(difference, 4),
                          "seconds": {a: result[a]["seconds"] for a in arms}}), flush=True)
    print(json.dumps({"part": "pretrained", "summary": True, "rounds": rounds,
                      "accuracy_difference_median": round(statistics.median(differences), 4),
                      "min": round(min(differences), 4), "max": round(max(differences), 4)}), flush=True)


def _split_paths(digits: Path) -> tuple[list[str], np.ndarray, list[str]]:
    from trustfm.config import load_config
    from trustfm.data.prepare import prepare_data

    config = load_config(None, {**RECIPE, "data.train": str(digits)})
    data = prepare_data(config.data, seed=config.seed)
    return data.train.texts, data.label_ids(data.train), data.label_names


def _trustfm_epochs(paths, labels, names, *, epochs: int, seed: int) -> float:
    """Seconds to decode the images once and train ``epochs`` epochs with trustfm's loop (no validation pass)."""
    import torch

    from trustfm.config.schema import ImageConfig, TrainConfig
    from trustfm.data.images import EncodedImages
    from trustfm.models.image import build_image_classifier
    from trustfm.models.inputs import ImageInputs
    from trustfm.train.loop import FineTuner

    torch.manual_seed(seed)
    model = build_image_classifier(num_labels=len(names), image_size=64, pretrained=True, dropout=0.2)
    config = TrainConfig(epochs=epochs, batch_size=32, learning_rate=1e-3, early_stopping=None)
    inputs = ImageInputs(ImageConfig(size=64, augment={"flip": False}), seed=seed)
    started = time.perf_counter()
    train = inputs.encode(paths, augment=True)
    one = EncodedImages(train.pixels[:1])  # a one-image validation pass: the baseline loop validates nothing
    FineTuner(config, seed=seed, show_progress=False).fit(
        model, train, labels, one, labels[:1], pad_id=0, checkpoint_dir=None,
        validation_metrics=lambda y, p: {"macro_f1": 0.0}, save_best=lambda m: None)
    return time.perf_counter() - started


class _PlainDataset:
    """The torchvision-style dataset: each item opened, converted, resized and augmented on its own."""

    def __init__(self, paths, labels, seed: int):
        self.paths, self.labels, self.seed = paths, labels, seed

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        import torch
        from PIL import Image

        rng = np.random.default_rng()  # fresh draws per item, as torchvision's random transforms make
        image = Image.open(self.paths[i]).convert("RGB")
        width, height = image.size
        area = rng.uniform(0.8, 1.0) * width * height  # RandomResizedCrop(64, scale=(0.8, 1))
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w = int(min(width, round(np.sqrt(area * ratio))))
        h = int(min(height, round(np.sqrt(area / ratio))))
        left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        image = image.crop((left, top, left + w, top + h)).resize((64, 64), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        for factor in rng.uniform(0.8, 1.2, size=3):  # ColorJitter(0.2, 0.2, 0.2), as tensors
            x = (x * factor).clamp(0, 1)
        return x, int(self.labels[i])


def _plain_epochs(paths, labels, names, *, epochs: int, seed: int) -> float:
    import torch
    import torch.nn.functional as F

    from trustfm.models.image import build_image_classifier

    torch.manual_seed(seed)
    model = build_image_classifier(num_labels=len(names), image_size=64, pretrained=True, dropout=0.2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(_PlainDataset(paths, labels, seed), batch_size=32, shuffle=True,
                                         num_workers=2, persistent_workers=False)
    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(pixel_values=x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def throughput(root: Path, rounds: int, epochs: int) -> None:
    from _rounds import alternate

    paths, labels, names = _split_paths(_digits(root))
    seconds = alternate({"trustfm": lambda: _trustfm_epochs(paths, labels, names, epochs=epochs, seed=0),
                         "plain": lambda: _plain_epochs(paths, labels, names, epochs=epochs, seed=0)}, rounds)
    images = len(paths) * epochs
    for r in range(rounds):
        print(json.dumps({"part": "throughput", "round": r, "images": images,
                          "trustfm_images_per_s": round(images / seconds["trustfm"][r], 1),
                          "plain_images_per_s": round(images / seconds["plain"][r], 1)}), flush=True)
    # images per second: trustfm / plain = plain seconds / trustfm seconds
    print(json.dumps({"part": "throughput", "summary": True, "rounds": rounds, "epochs": epochs,
                      "train_images": len(paths), "ratio_trustfm_over_plain": ratio_summary(seconds["plain"],
                                                                                             seconds["trustfm"])}),
          flush=True)


def attacks(root: Path, rounds: int, images: int) -> None:
    import torch
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    from trustfm.models.pixel_attacks import fgsm, pgd
    from trustfm.models.predictor import Predictor

    run = Path(_train(_digits(root), root / "attack-model", seed=0, epochs=3)["run"])
    predictor = Predictor.from_run(run)
    from trustfm.audit.context import AuditContext

    paths, gold, _ = AuditContext(run).sample_eval_texts(images)
    model = predictor.model.eval()
    pixels = torch.from_numpy(predictor.inputs.encode(paths).pixels).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(gold)
    with torch.no_grad():
        correct = (model(pixel_values=pixels).argmax(1) == y).numpy()

    art_model = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 64, 64),
                                  nb_classes=predictor.num_labels, clip_values=(0.0, 1.0), device_type="cpu")
    onehot = np.eye(predictor.num_labels)[gold]

    def success(adversarial) -> float:
        with torch.no_grad():
            wrong = model(pixel_values=torch.as_tensor(adversarial)).argmax(1).numpy() != gold
        return float(wrong[correct].mean())

    for epsilon in (2 / 255, 4 / 255, 8 / 255):
        step, steps = 2.5 * epsilon / 10, 10
        rows = {"trustfm_fgsm": [], "art_fgsm": [], "trustfm_pgd": [], "art_pgd": [], "seconds_ratio_trustfm_over_art": []}
        for r in range(rounds):
            order = [0, 1] if r % 2 == 0 else [1, 0]
            times = {}
            for arm in order:
                started = time.perf_counter()
                if arm == 0:
                    rows["trustfm_fgsm"].append(success(fgsm(model, pixels, y, epsilon=epsilon)))
                    rows["trustfm_pgd"].append(success(pgd(model, pixels, y, epsilon=epsilon, step=step, steps=steps,
                                                           generator=torch.Generator().manual_seed(r))))
                else:
                    np.random.seed(r)
                    rows["art_fgsm"].append(success(FastGradientMethod(art_model, norm=np.inf, eps=epsilon,
                                                                       batch_size=64).generate(pixels.numpy(), y=onehot)))
                    rows["art_pgd"].append(success(ProjectedGradientDescent(
                        art_model, norm=np.inf, eps=epsilon, eps_step=step, max_iter=steps, num_random_init=1,
                        batch_size=64, verbose=False).generate(pixels.numpy(), y=onehot)))
                times[arm] = time.perf_counter() - started
            rows["seconds_ratio_trustfm_over_art"].append(times[0] / times[1])
        print(json.dumps({"part": "attacks", "epsilon": f"{round(epsilon * 255)}/255", "images": len(paths),
                          "clean_correct": int(correct.sum()), "rounds": rounds,
                          **{k: [round(v, 4) for v in values] for k, values in rows.items()},
                          "pgd_success_difference_median": round(statistics.median(
                              np.subtract(rows["trustfm_pgd"], rows["art_pgd"])), 4)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["pretrained", "throughput", "attacks"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.rounds < 3:
        raise SystemExit("use at least 3 rounds")
    with tempfile.TemporaryDirectory(prefix="trustfm-images-") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if args.part == "pretrained":
            pretrained_vs_scratch(root, args.rounds, args.epochs or 5)
        elif args.part == "throughput":
            throughput(root, args.rounds, args.epochs or 2)
        else:
            attacks(root, args.rounds, args.images)


if __name__ == "__main__":
    main()
