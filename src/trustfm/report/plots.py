"""Figures for the report, rendered to inline SVG strings (no files, no network)."""

from __future__ import annotations

import io
import re


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # drop the XML prolog so it can sit inline in HTML
    # matplotlib's RDF metadata block carries a timestamp; figures should be reproducible
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # keep text as text: searchable, crisp
    return plt


def training_curves(steps: list[dict], epochs: list[dict]) -> str | None:
    """Loss per step (and a moving average) beside the validation metrics per epoch."""
    if not steps:
        return None
    plt = _pyplot()
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    x = np.array([s["step"] for s in steps])
    y = np.array([s["loss"] for s in steps])
    left.plot(x, y, color="#9db4d3", linewidth=0.8, label="step loss")
    window = max(1, len(y) // 25)
    if window > 1:
        smooth = np.convolve(y, np.ones(window) / window, mode="valid")
        left.plot(x[window - 1 :], smooth, color="#1f4e8c", linewidth=1.6, label=f"mean of {window}")
    left.set_xlabel("step")
    left.set_ylabel("training loss (nats)")
    left.legend(frameon=False, fontsize=8)
    if epochs:
        e = [r["epoch"] for r in epochs]
        for key, colour in (("accuracy", "#1f4e8c"), ("macro_f1", "#c0504d")):
            right.plot(e, [r["validation"][key] for r in epochs], marker="o", color=colour, label=f"validation {key}")
        right.set_xlabel("epoch")
        right.set_xticks(e)
        right.legend(frameon=False, fontsize=8)
    for ax in (left, right):
        ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def confusion_matrix(matrix: list[list[int]], labels: list[str]) -> str:
    plt = _pyplot()
    import numpy as np

    m = np.asarray(matrix)
    size = 1.2 + 0.6 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = m.max() / 2 if m.size else 0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > threshold else "black")
    return _svg(fig)


def reliability_diagram(bins: list[dict], ece: float) -> str:
    """Accuracy against mean confidence per bin; bar width is the bin, the diagonal is perfect calibration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 3.6))
    filled = [b for b in bins if b["count"]]
    ax.bar(
        [b["lower"] for b in filled],
        [b["accuracy"] for b in filled],
        width=[b["upper"] - b["lower"] for b in filled],
        align="edge",
        color="#1f4e8c",
        edgecolor="white",
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="#888", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE = {ece:.4f}", fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def group_intervals(groups: list[dict], metric: str, title: str) -> str:
    """One row per group: the metric's point value with its interval as a whisker."""
    plt = _pyplot()
    rows = [g for g in groups if g["metrics"][metric]["value"] == g["metrics"][metric]["value"]]  # drop NaN
    fig, ax = plt.subplots(figsize=(5.5, 0.9 + 0.32 * max(len(rows), 1)))
    for i, g in enumerate(rows):
        m = g["metrics"][metric]
        colour = "#c0504d" if g.get("too_small") else "#1f4e8c"
        if m.get("low") is not None:
            ax.plot([m["low"], m["high"]], [i, i], color=colour, linewidth=2, alpha=0.6)
        ax.plot([m["value"]], [i], "o", color=colour)
    ax.set_yticks(range(len(rows)), [f"{g['group']} (n={g['n']})" for g in rows], fontsize=8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (95% interval; red: group too small to judge)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def attention_grid(tokens: list[str], weights: list) -> str:
    """Layers (rows) x heads (columns) of attention heatmaps, plus tick labels on the first column."""
    plt = _pyplot()
    import numpy as np

    w = np.asarray(weights)  # (layers, heads, t, t)
    layers, heads = w.shape[0], w.shape[1]
    fig, axes = plt.subplots(layers, heads, figsize=(1.1 * heads + 1, 1.1 * layers + 0.6), squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer][head]
            ax.imshow(w[layer, head], cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if layer == 0:
                ax.set_title(f"head {head + 1}", fontsize=7)
            if head == 0:
                ax.set_ylabel(f"layer {layer + 1}", fontsize=7)
    fig.suptitle("attention weights (row token attends to column token): " + " ".join(tokens[:24]), fontsize=8)
    return _svg(fig)


def attention_layer_mean(tokens: list[str], weights: list, layer: int = -1) -> str:
    """One layer's attention averaged over heads, with token labels."""
    plt = _pyplot()
    import numpy as np

    w = np.asarray(weights)[layer].mean(axis=0)
    size = 1.5 + 0.28 * len(tokens)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(w, cmap="viridis", vmin=0, vmax=float(w.max()))
    ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
    ax.set_title(f"layer {layer % len(weights) + 1}, mean over heads", fontsize=9)
    return _svg(fig)


def coverage_accuracy(curve: list[dict], rules_point: tuple[float, float] | None) -> str:
    """Accuracy on answered texts against coverage when abstaining below each confidence threshold, plus the rules' point."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    points = [(p["coverage"], p["accuracy"]) for p in curve if p["accuracy"] is not None]
    ax.plot([c for c, _ in points], [a for _, a in points], marker=".", color="#1f4e8c", label="confidence threshold only")
    if rules_point is not None:
        ax.scatter([rules_point[0]], [rules_point[1]], color="#c0504d", zorder=3, label="with the rules")
    ax.set_xlabel("coverage (share answered)")
    ax.set_ylabel("accuracy on answered texts")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def delta_forest(deltas: list[dict], title: str) -> str:
    """One row per metric: its change (child - parent) with the paired interval as a whisker, zero marked.
    Red: the interval excludes zero on the worse side; green: on the better side; grey: no clear change."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.26 * max(len(deltas), 1)))
    for i, d in enumerate(deltas):
        iv, better = d["delta"], d.get("higher_is_better")
        low, high = iv.get("low"), iv.get("high")
        colour = "#7f7f7f"
        if low is not None and better is not None and (low > 0 or high < 0):
            colour = "#2e7d32" if (low > 0) == better else "#c0504d"
        if low is not None:
            ax.plot([low, high], [i, i], color=colour, linewidth=2, alpha=0.6)
        ax.plot([iv["value"]], [i], "o", color=colour, markersize=4)
    ax.axvline(0.0, color="#444444", linewidth=0.8)
    ax.set_yticks(range(len(deltas)), [d["metric"] for d in deltas], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("child - parent (paired 95% interval; red: worse, green: better)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def monitoring_series(windows: list[dict], alerts: list[dict]) -> str:
    """One panel per window metric that has values (x: windows, oldest first): prediction, confidence and length
    PSI, the embedding test's p-value (log scale), OOD rate, accuracy with its interval (feedback), and the group
    positive-rate gap. Dashed lines across every panel: an alert fired (red) or resolved (green) at that window."""
    plt = _pyplot()
    candidates = [("prediction_psi", "pred. PSI"), ("confidence_psi", "conf. PSI"), ("length_psi", "length PSI"),
                  ("embedding_mmd_p", "MMD p"), ("ood_rate", "OOD rate"), ("accuracy", "accuracy"),
                  ("positive_rate_gap", "group gap")]
    panels = [(k, label) for k, label in candidates if any(w.get(k) is not None for w in windows)]
    fig, axes = plt.subplots(max(len(panels), 1), 1, figsize=(6.5, 0.95 * max(len(panels), 1) + 0.5), sharex=True,
                             squeeze=False)
    axes = axes[:, 0]
    index = {w["end"]: i for i, w in enumerate(windows)}
    for ax, (key, label) in zip(axes, panels):
        values = [w.get(key) for w in windows]
        points = [(i, v["value"] if isinstance(v, dict) else v) for i, v in enumerate(values) if v is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color="#2962ff", markersize=3, linewidth=1)
        if key == "accuracy":
            for i, v in enumerate(values):
                if isinstance(v, dict) and v.get("low") is not None:
                    ax.plot([i, i], [v["low"], v["high"]], color="#2962ff", alpha=0.4)
        if key == "embedding_mmd_p":
            ax.set_yscale("log")
        for event in alerts:
            i = index.get(event["window_end"])
            if i is not None:
                ax.axvline(i, color="#c0504d" if event["status"] == "firing" else "#2e7d32", linewidth=0.8,
                           linestyle="--")
        ax.set_ylabel(label, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    axes[-1].set_xlabel("window (oldest first); dashed: an alert fired (red) or resolved (green)", fontsize=8)
    fig.align_ylabels(axes)
    return _svg(fig)


def federated_rounds(rounds: list[dict]) -> str:
    """The global model after each round (x: round): accuracy on the run's validation split, and the worst and
    best client's accuracy on their own held-out rows (rounds where clients scored it); crosses mark rounds in
    which a client failed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    xs = [r["round"] for r in rounds if r.get("validation")]
    ax.plot(xs, [r["validation"]["accuracy"] for r in rounds if r.get("validation")], "o-", color="#2962ff",
            markersize=3, linewidth=1, label="validation accuracy")
    scored = [r for r in rounds if r.get("client_evaluation")]
    if scored:
        worst = [min(c["accuracy"] for c in r["client_evaluation"].values()) for r in scored]
        best = [max(c["accuracy"] for c in r["client_evaluation"].values()) for r in scored]
        ax.fill_between([r["round"] for r in scored], worst, best, color="#ff9800", alpha=0.25,
                        label="client accuracy (worst to best)")
        ax.plot([r["round"] for r in scored], worst, "s-", color="#e65100", markersize=3, linewidth=1,
                label="worst client")
    failed = [r["round"] for r in rounds if r.get("failed")]
    if failed:
        ax.plot(failed, [ax.get_ylim()[0]] * len(failed), "x", color="#c0504d", label="a client failed")
    ax.set_xlabel("round", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def tuning_history(trials: list[dict], objective: dict, chosen: int | None) -> str | None:
    """A search's primary objective per trial in the order trials ended: complete trials (dots; hollow when a
    constraint failed), pruned ones at their last epoch's value (crosses), the best so far among feasible trials
    (step line) and the chosen trial (star)."""
    ended = sorted((t for t in trials if t["state"] in ("complete", "pruned")), key=lambda t: (t["finished"] or "",
                                                                                               t["number"]))
    if not ended:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    maximize = objective["direction"] == "maximize"
    best, best_xs, best_ys = None, [], []
    for x, t in enumerate(ended, start=1):
        if t["state"] == "pruned":
            if t["intermediate"]:
                ax.plot(x, t["intermediate"][-1], "x", color="#9e9e9e", markersize=5)
            continue
        y = t["values"][0]
        ax.plot(x, y, "o", color="#2962ff", markersize=4, fillstyle="full" if t["feasible"] else "none")
        if t["feasible"] and (best is None or (y > best if maximize else y < best)):
            best = y
        if best is not None:
            best_xs.append(x)
            best_ys.append(best)
        if t["number"] == chosen:
            ax.plot(x, y, "*", color="#c0504d", markersize=12, label=f"chosen (trial {chosen})")
    if best_xs:
        ax.step(best_xs, best_ys, where="post", color="#1f4e8c", linewidth=1, label="best feasible so far")
    ax.plot([], [], "x", color="#9e9e9e", label="pruned (last epoch's validation value)")
    ax.set_xlabel("trial, in the order it ended", fontsize=8)
    ax.set_ylabel(objective["metric"], fontsize=8)
    ax.tick_params(labelsize=7)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def tuning_front(trials: list[dict], objectives: list[dict], constraints: list[str], front: list[int],
                 chosen: int | None) -> str | None:
    """The trade-off the search explored: the first two objectives (several objectives), else the objective
    against the first constraint's metric, with the Pareto front (feasible trials no other dominates) joined and
    the chosen trial starred. None with one objective and no constraint."""
    complete = [t for t in trials if t["state"] == "complete"]
    if not complete or (len(objectives) < 2 and not constraints):
        return None
    y_name = objectives[0]["metric"]
    if len(objectives) >= 2:
        x_name, threshold = objectives[1]["metric"], None
        xs = [t["values"][1] for t in complete]
    else:
        from trustfm.rules import parse_rule

        rule = parse_rule(constraints[0], where="constraint")
        x_name, threshold = rule.name(), rule.value
        xs = [t["metrics"].get(x_name, float("nan")) for t in complete]
    ys = [t["values"][0] for t in complete]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for x, y, t in zip(xs, ys, complete):
        ax.plot(x, y, "o", color="#2962ff" if t["feasible"] else "#bdbdbd", markersize=5)
        ax.annotate(str(t["number"]), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    on_front = sorted((x, y) for x, y, t in zip(xs, ys, complete) if t["number"] in front)
    if len(objectives) >= 2 and len(on_front) > 1:
        ax.plot(*zip(*on_front), "-", color="#1f4e8c", linewidth=1, label="Pareto front")
    if threshold is not None:
        ax.axvline(threshold, color="#c0504d", linestyle="--", linewidth=1, label=constraints[0])
    for x, y, t in zip(xs, ys, complete):
        if t["number"] == chosen:
            ax.plot(x, y, "*", color="#c0504d", markersize=14, label=f"chosen (trial {chosen})")
    ax.plot([], [], "o", color="#bdbdbd", label="a constraint failed")
    ax.set_xlabel(x_name, fontsize=8)
    ax.set_ylabel(y_name, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def parameter_importances(importances: dict[str, float], metric: str) -> str | None:
    """Share of ``metric``'s variation each searched parameter explains (Optuna's PED-ANOVA), as bars."""
    if not importances:
        return None
    plt = _pyplot()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.5 + 0.35 * len(names)))
    ax.barh(names, [importances[n] for n in names], color="#2962ff")
    ax.set_xlabel(f"importance for {metric} (shares sum to 1)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)
