"""Per-example gradient clipping in one backward pass ("book-keeping" clipping).

DP-SGD needs ``sum_i clip(g_i)``, the sum of each example's gradient clipped
to norm ``C``. Opacus gets it in one of two ways: materialise every example's
gradient (hooks mode: a (batch, *param) tensor per parameter, about 2x the step
time on a MiniLM), or run backward twice (ghost clipping: once for the
per-example norms, once more on the loss re-weighted by the clip factors).

:class:`BookkeepingClipper` runs backward once, with the trainable weights'
autograd switched off so that autograd computes only activation gradients. The
hooks keep each trainable layer's input ``a`` (b, t, in) and output gradient
``g`` (b, t, out), and then:

1. per-example gradient norms come from ``a`` and ``g`` without materialising
   the gradients: for a linear layer ``||g_i^T a_i||_F^2 = <a_i a_i^T, g_i g_i^T>``
   (the "ghost norm", cost b t^2 (in + out)), or the explicit per-example
   gradient when the sequence is long enough that it is cheaper;
2. the clip factors ``c_i = min(1, C / (||grad_i|| + 1e-6))`` (Opacus's rule);
3. each weight's clipped-sum gradient is one matmul, ``(c * g)^T a`` over all
   tokens: the same cost as the weight gradient autograd skipped.

So the step costs about one plain step plus the norms (Bu et al., 2023,
"Differentially private optimization on large model at small cost"). Supported
trainable layers: ``nn.Linear`` (this covers LoRA adapters), GPT-2's ``Conv1D``
(a linear layer with its weight stored transposed), ``nn.LayerNorm`` and RMS
norms (``nn.RMSNorm``, and the Llama/Qwen2 kind with a ``variance_epsilon``);
anything else is refused by name. The result equals Opacus's
clipped sum up to float rounding (tested against ``DPOptimizer``).
"""

from __future__ import annotations

import torch
from torch import nn

SUPPORTED = (nn.Linear, nn.LayerNorm)


def _linear_like(module: nn.Module) -> bool:
    """nn.Linear, or GPT-2's Conv1D (y = x W + b with W stored (in, out))."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def _rms_norm(module: nn.Module) -> bool:
    """An RMS norm: y = w * x / sqrt(mean(x^2) + eps), no bias (nn.RMSNorm, LlamaRMSNorm, Qwen2RMSNorm)."""
    return isinstance(module, getattr(nn, "RMSNorm", ())) or (
        hasattr(module, "variance_epsilon") and getattr(module, "bias", None) is None
        and getattr(module, "weight", None) is not None and module.weight.dim() == 1)


def _supported(module: nn.Module) -> bool:
    return isinstance(module, SUPPORTED) or _linear_like(module) or _rms_norm(module)


class BookkeepingClipper:
    """Attach to a model; after each backward of the *summed* per-example loss,
    :meth:`clipped_sum` returns ``{param: sum_i clip_C(grad_i)}``.

    ``attach()`` turns ``requires_grad`` off on the trainable parameters (so
    autograd does not compute their unclipped gradient) and ``detach()`` turns
    it back on. Hooks act only in training mode with grad enabled, so
    evaluation and inference are untouched.
    """

    def __init__(self, model: nn.Module, *, max_grad_norm: float):
        self.model = model
        self.max_grad_norm = max_grad_norm
        self.layers: list[tuple[str, nn.Module]] = []
        self._handles: list = []
        self._saved: dict[nn.Module, list] = {}
        self._frozen_here: list[nn.Parameter] = []
        self._trains: set[int] = set()  # ids of the parameters this clipper trains

    # -- wiring ----------------------------------------------------------------------------------------------------
    def attach(self) -> "BookkeepingClipper":
        if self._handles:
            raise RuntimeError("this clipper is already attached")
        self.layers = []
        owners = {}
        for name, module in self.model.named_modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if not own:
                continue
            if not _supported(module):
                raise ValueError(
                    f"book-keeping DP clipping supports trainable linear layers and layer or RMS norms only; "
                    f"{name} is a trainable {type(module).__name__}. Freeze it or use privacy.dp.clipping: opacus")
            owners[name] = module
        if not owners:
            raise ValueError("DP training has no trainable parameters")
        for name, module in owners.items():
            for p in module.parameters(recurse=False):
                if p.requires_grad:
                    p.requires_grad_(False)
                    self._frozen_here.append(p)
                    self._trains.add(id(p))
            self.layers.append((name, module))
            self._handles.append(module.register_forward_hook(self._forward_hook))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for p in self._frozen_here:
            p.requires_grad_(True)
        self._frozen_here.clear()
        self._trains.clear()
        self._saved.clear()

    def parameters(self) -> list[nn.Parameter]:
        """The parameters this clipper trains (their ``requires_grad`` is off while attached)."""
        return list(self._frozen_here)

    def _forward_hook(self, module, args, output):
        if not (module.training and torch.is_grad_enabled()):
            return None
        entry = [args[0].detach(), None]
        self._saved.setdefault(module, []).append(entry)
        replaced = None
        if not output.requires_grad:
            # below the lowest trainable layer nothing needs gradients: the graph starts at this output, so no
            # gradient is computed for anything beneath it
            output = replaced = output.detach().requires_grad_(True)

        def keep_grad(grad, entry=entry):
            entry[1] = grad.detach()

        output.register_hook(keep_grad)
        return replaced

    # -- the clipped sum ---------------------------------------------------------------------------------------------
    def per_example_norms(self, scale: float = 1.0) -> torch.Tensor:
        """L2 norm of each example's whole gradient, shape (b,); ``scale`` multiplies the captured gradients
        (the batch size when the loss was a mean)."""
        return _norms(self._captured(), self._trains) * scale

    def clipped_sum(self, scale: float = 1.0, weight: float = 1.0) -> dict[nn.Parameter, torch.Tensor]:
        """``{param: weight * sum_i c_i grad_i}`` with Opacus's clip factors ``c_i`` for the gradients ``grad_i``
        (the captured ones times ``scale``); clears the captured tensors."""
        captured = self._captured()
        norms = _norms(captured, self._trains) * scale
        factors = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0) * (scale * weight)
        grads: dict[nn.Parameter, torch.Tensor] = {}
        for module, a, g, hat in captured:
            for p, grad in _weighted_grads(module, a, g, hat, factors, self._trains).items():
                grads[p] = grads[p] + grad if p in grads else grad
        self.last_norms = norms.detach()
        self._saved.clear()
        return grads

    def _captured(self) -> list[tuple]:
        """``(module, a, g, hat)`` per captured forward: (b, t, d) float views, and LayerNorm's normalised input."""
        captured = []
        # the batch: the first axis of most captured inputs (every example's tokens)
        sizes = [a.shape[0] for entries in self._saved.values() for a, g in entries if g is not None]
        batch = max(set(sizes), key=sizes.count) if sizes else None
        for name, module in self.layers:
            # a layer whose output does not reach the loss has no gradient: it contributes nothing
            for a, g in self._saved.get(module, []):
                if g is None:
                    continue
                if a.shape[0] != batch:
                    # an input every example shares (DeBERTa's relative position embeddings through its key and
                    # query projections): what each example contributes to the gradient cannot be told apart
                    raise ValueError(f"book-keeping DP clipping cannot split {name}'s gradient per example: the layer "
                                     "also reads an input every example shares (relative position embeddings). "
                                     "Train the head only under DP on this family (privacy.dp.trainable: head)")
                a, g = _flat(a.float(), g.float())
                hat = (_layer_norm_hat(module, a) if isinstance(module, nn.LayerNorm)
                       else _rms_norm_hat(module, a) if _rms_norm(module) else None)
                captured.append((module, a, g, hat))
        if not captured:
            raise RuntimeError("no gradient was captured: call this after backward of a training-mode forward")
        return captured


def _flat(a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, t, d) views of a layer's input and output gradient (t = 1 for 2-D inputs)."""
    if a.dim() == 2:
        return a.unsqueeze(1), g.unsqueeze(1)
    return a.reshape(a.shape[0], -1, a.shape[-1]), g.reshape(g.shape[0], -1, g.shape[-1])


def _layer_norm_hat(module: nn.LayerNorm, a: torch.Tensor) -> torch.Tensor:
    """The normalised input (what LayerNorm's weight multiplies), via the fused kernel without affine."""
    return torch.nn.functional.layer_norm(a, module.normalized_shape, None, None, module.eps)


def _rms_norm_hat(module: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """The RMS-normalised input (what an RMS norm's weight multiplies)."""
    eps = getattr(module, "variance_epsilon", None) or getattr(module, "eps", None) or 1e-6
    return a * torch.rsqrt(a.pow(2).mean(dim=-1, keepdim=True) + eps)


def _trained(p, trains: set[int]) -> bool:
    return p is not None and id(p) in trains


def _norms(captured: list[tuple], trains: set[int]) -> torch.Tensor:
    """Each example's gradient norm over all trained parameters (ids in ``trains``), shape (b,).

    Query, key and value read the same input: its Gram matrix ``a a^T`` is computed once."""
    grams: dict[tuple, torch.Tensor] = {}
    total = torch.zeros(captured[0][1].shape[0], dtype=torch.float32, device=captured[0][1].device)
    for module, a, g, hat in captured:
        if _linear_like(module):
            if _trained(module.weight, trains):
                t, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
                if t * t * (d_in + d_out) <= t * d_in * d_out:
                    # ghost norm: <a a^T, g g^T> summed over token pairs
                    key = (a.data_ptr(), tuple(a.shape), a.stride())
                    if key not in grams:
                        grams[key] = torch.bmm(a, a.transpose(1, 2))
                    total += (grams[key] * torch.bmm(g, g.transpose(1, 2))).sum(dim=(1, 2))
                else:
                    total += torch.bmm(g.transpose(1, 2), a).pow(2).sum(dim=(1, 2))
        elif _trained(module.weight, trains):  # a layer or RMS norm
            total += (g * hat).sum(dim=1).pow(2).sum(dim=1)
        if _trained(getattr(module, "bias", None), trains):
            total += g.sum(dim=1).pow(2).sum(dim=1)
    return total.clamp_min(0).sqrt()


def _weighted_grads(module: nn.Module, a: torch.Tensor, g: torch.Tensor, hat: torch.Tensor | None,
                    factors: torch.Tensor, trains: set[int]) -> dict:
    """``{param: sum_i factors_i * grad_i}`` for ``module``'s trained parameters, one matmul per weight."""
    f = factors.view(-1, 1, 1)
    grads = {}
    if _trained(module.weight, trains):
        if _linear_like(module):
            # the factors scale whichever of input and output gradient is smaller
            if a.shape[-1] <= g.shape[-1]:
                a, gw = a * f, g
            else:
                gw = g * f
            grad = gw.reshape(-1, gw.shape[-1]).T @ a.reshape(-1, a.shape[-1])  # (out, in)
            grads[module.weight] = grad if isinstance(module, nn.Linear) else grad.T  # Conv1D stores (in, out)
        else:
            grads[module.weight] = factors @ (g * hat).sum(dim=1)
    if _trained(getattr(module, "bias", None), trains):
        grads[module.bias] = factors @ g.sum(dim=1)
    return {p: v.to(p.dtype).view_as(p) for p, v in grads.items()}
