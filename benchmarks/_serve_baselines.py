"""The serving benchmark's reference servers, on the same model through the same Predictor.

- ``naive``: a FastAPI endpoint that runs the model once per request (no batching), the way most first services
  are written. (A Hugging Face ``pipeline`` cannot express the run's mean-pooled head, so the Predictor stands in
  for it; the per-request cost is the same kind.)
- ``litserve``: LitServe with its own dynamic batching (max batch 64, 5 ms timeout: trustfm's defaults), on the
  run's torch model, as a LitServe user serves it.
- ``litserve-onnx``: the same, on the ONNX Runtime graph trustfm serves (exported at start-up, checked against
  torch): the comparison with the backend held equal.

Usage: python benchmarks/_serve_baselines.py naive|litserve|litserve-onnx RUN_DIR PORT
"""

# no `from __future__ import annotations`: FastAPI must see the request model itself, not a string
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def naive(run_dir: str, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel

    from trustfm.models.predictor import Predictor

    predictor = Predictor.from_run(run_dir)
    app = FastAPI()

    class Body(BaseModel):
        texts: list[str]

    @app.post("/v1/predict")
    def predict(body: Body):  # a plain def: FastAPI runs it in its thread pool, one request per model call
        proba = predictor.predict_proba(body.texts)
        names = predictor.label_names
        return {"predictions": [{"label": names[int(p.argmax())], "probabilities": dict(zip(names, map(float, p)))}
                                for p in proba]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


import litserve as ls  # noqa: E402  (LitServe pickles the API class into its worker: it must live at module level)


class TrustfmLitAPI(ls.LitAPI):
    def setup(self, device):
        from trustfm.models.predictor import Predictor

        self.predictor = Predictor.from_run(os.environ["TRUSTFM_BENCH_RUN"])
        if os.environ.get("TRUSTFM_BENCH_ONNX"):
            self.predictor = self.predictor.onnx_runtime_copy()

    def decode_request(self, request):
        return request["text"]

    def predict(self, texts):
        return self.predictor.predict_proba(list(texts))

    def unbatch(self, output):
        return list(output)

    def encode_response(self, p):
        names = self.predictor.label_names
        return {"label": names[int(p.argmax())], "probabilities": dict(zip(names, map(float, p)))}


def litserve(run_dir: str, port: int, onnx: bool = False) -> None:
    os.environ["TRUSTFM_BENCH_RUN"] = run_dir
    if onnx:
        os.environ["TRUSTFM_BENCH_ONNX"] = "1"
    server = ls.LitServer(TrustfmLitAPI(max_batch_size=64, batch_timeout=0.005), accelerator="cpu",
                          workers_per_device=1)
    server.run(host="127.0.0.1", port=port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    arms = {"naive": naive, "litserve": litserve, "litserve-onnx": lambda run, port: litserve(run, port, onnx=True)}
    arms[sys.argv[1]](sys.argv[2], int(sys.argv[3]))
