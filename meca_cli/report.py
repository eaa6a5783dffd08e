"""`meca report`: a self-contained report.html (figures inline, no network) plus PNG figures.

Figures are drawn with Pillow, so the report needs nothing beyond the tool's own
dependencies: a grid of the top suspects (a trigger is often plain to see when forty of
them sit side by side), a grid of random cleared images for contrast, the KL score
histogram by verdict (and by ground truth when given), suspects per class, and the
enhancement rounds.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from meca_cli.errors import ArtifactError
from meca_cli.store.artifacts import atomic_path, atomic_write_text, read_csv, read_json

GRID = 40  # images per grid
TILE = 96  # pixels per image in a grid: 3x a 32-pixel image, so a few-pixel trigger is plain to see
COLOURS = {"suspected": (214, 69, 65), "clean": (66, 133, 244), "poison": (214, 69, 65), "cover": (244, 180, 0)}


def image_grid(images: torch.Tensor, captions: list[str], columns: int = 10) -> Image.Image:
    """uint8 N x 3 x H x W images as a captioned grid (nearest upscale keeps triggers crisp)."""
    rows = max(1, math.ceil(len(images) / columns))
    cap_h = 14
    canvas = Image.new("RGB", (columns * (TILE + 4) + 4, rows * (TILE + cap_h + 4) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, (img, caption) in enumerate(zip(images, captions)):
        r, c = divmod(k, columns)
        x, y = 4 + c * (TILE + 4), 4 + r * (TILE + cap_h + 4)
        tile = Image.fromarray(img.permute(1, 2, 0).contiguous().numpy(), "RGB").resize((TILE, TILE), Image.NEAREST)
        canvas.paste(tile, (x, y))
        draw.text((x, y + TILE + 1), caption[:16], fill=(40, 40, 40))
    return canvas


def bar_chart(groups: dict[str, list[float]], labels: list[str], title: str, width: int = 640,
              height: int = 260) -> Image.Image:
    """Side-by-side bars per label, one colour per group, with a value axis starting at 0."""
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    left, top, bottom = 48, 24, height - 40
    peak = max([v for vals in groups.values() for v in vals] + [1e-9])
    draw.text((left, 4), title, fill=(0, 0, 0))
    draw.line((left, top, left, bottom), fill=(0, 0, 0))
    draw.line((left, bottom, width - 8, bottom), fill=(0, 0, 0))
    draw.text((4, top), f"{peak:.3g}", fill=(0, 0, 0))
    draw.text((4, bottom - 10), "0", fill=(0, 0, 0))
    slot = (width - left - 16) / max(1, len(labels))
    bar = max(1.0, slot / (len(groups) + 1))
    for g, (name, vals) in enumerate(groups.items()):
        colour = COLOURS.get(name, (120, 120, 120))
        for i, v in enumerate(vals):
            height_px = (bottom - top) * v / peak
            if height_px < 1:
                continue
            x0 = left + 4 + i * slot + g * bar
            draw.rectangle((x0, bottom - height_px, x0 + max(bar - 1, 1), bottom - 1), fill=colour)
        draw.rectangle((width - 160, top + 14 * g + 2, width - 152, top + 14 * g + 10), fill=colour)
        draw.text((width - 148, top + 14 * g), name, fill=colour)
    step = max(1, len(labels) // 12)
    for i in range(0, len(labels), step):
        draw.text((left + 4 + i * slot, bottom + 4), labels[i][:10], fill=(0, 0, 0))
    return canvas


def histogram(values_by_group: dict[str, torch.Tensor], title: str, bins: int = 40) -> Image.Image:
    """Histogram of log10(KL) per group (the score spans decades)."""
    logs = {k: torch.log10(v.double().clamp_min(1e-8)) for k, v in values_by_group.items() if len(v)}
    if not logs:
        return bar_chart({}, [], title)
    lo = min(float(v.min()) for v in logs.values())
    hi = max(float(v.max()) for v in logs.values()) + 1e-9
    edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    counts = {k: torch.histc(v, bins=bins, min=lo, max=hi).tolist() for k, v in logs.items()}
    return bar_chart(counts, [f"{e:.1f}" for e in edges[:-1]], title + " (x: log10 KL)")


def _png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def build_report(run: Path, data: Path, common, ground_truth: Path | None = None, seed: int = 0) -> Path:
    """Write RUN/report/*.png and RUN/report.html; returns the HTML path."""
    from meca_cli import steps
    from meca_cli.core.evaluation import read_ground_truth

    run = Path(run)
    report_json = run / "report.json"
    if not report_json.is_file():
        raise ArtifactError(f"{run}: no report.json", hint="run 'meca sanitize' to completion first")
    report = read_json(report_json, hint="run 'meca sanitize' again to rewrite it")
    rows = read_csv(run / "split" / "split.csv", ("index", "label", "enhanced_conf", "kl", "verdict"))
    dataset = steps.open_data(data, common)
    steps.check_same_folder(dataset, run / "split" / "split.csv")  # grids must show the images the run judged
    if len(rows) != len(dataset):
        raise ArtifactError(f"{run}: the run has {len(rows)} samples, {data} holds {len(dataset)}",
                            hint="pass the folder the run was made on")
    kl = torch.tensor([float(r["kl"]) for r in rows], dtype=torch.float64)
    conf = torch.tensor([float(r["enhanced_conf"]) for r in rows], dtype=torch.float64)
    suspected = torch.tensor([r["verdict"] == "suspected" for r in rows])
    labels = dataset.labels
    classes = dataset.classes

    figures: dict[str, Image.Image] = {}
    sus_idx = suspected.nonzero().squeeze(1)
    # Most suspicious first: the enhanced model's confidence in the label, then the lowest KL.
    order = sorted(sus_idx.tolist(), key=lambda i: (-float(conf[i]), float(kl[i])))[:GRID]
    figures["suspects"] = image_grid(dataset.images[order] if order else dataset.images[:0],
                                     [f"{i} {classes[int(labels[i])][:10]}" for i in order])
    cleared = (~suspected).nonzero().squeeze(1)
    gen = torch.Generator().manual_seed(seed)
    pick = cleared[torch.randperm(len(cleared), generator=gen)[:GRID]].tolist() if len(cleared) else []
    figures["cleared"] = image_grid(dataset.images[pick] if pick else dataset.images[:0],
                                    [f"{i} {classes[int(labels[i])][:10]}" for i in pick])
    figures["kl_by_verdict"] = histogram({"clean": kl[~suspected], "suspected": kl[suspected]},
                                         "KL score by verdict")
    if ground_truth is not None:
        roles = read_ground_truth(ground_truth)
        role = [roles.get(i, "clean") for i in range(len(rows))]
        by_role = {r: kl[torch.tensor([x == r for x in role])] for r in ("clean", "poison", "cover")}
        figures["kl_by_truth"] = histogram(by_role, "KL score by ground truth")
    per_class = torch.bincount(labels[suspected], minlength=len(classes)).double()
    sizes = torch.bincount(labels, minlength=len(classes)).double().clamp_min(1)
    figures["suspects_per_class"] = bar_chart({"suspected": (per_class / sizes).tolist()}, classes,
                                              "suspected fraction per class")
    rounds = read_csv(run / "enhance" / "rounds.csv", ("round", "rho", "agreement"))
    figures["rounds"] = bar_chart({"clean": [float(r["agreement"] or 0) for r in rounds],  # blank: not measured
                                   "suspected": [float(r["rho"]) for r in rounds]},
                                  [f"round {r['round']}" for r in rounds],
                                  "enhancement: agreement with labels (blue), unlearned fraction (red)")

    out_dir = run / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    encoded = {}
    for name, img in figures.items():
        data_png = _png(img)
        with atomic_path(out_dir / f"{name}.png") as tmp:
            tmp.write_bytes(data_png)
        encoded[name] = base64.b64encode(data_png).decode()
    html_path = run / "report.html"
    atomic_write_text(html_path, render_html(report, encoded, ground_truth is not None))
    return html_path


def verdict_summary(v: dict) -> str:
    """The dataset verdict in a few words, for the commands' summary tables."""
    if v.get("suspected_class_name"):
        return f"{v['verdict']} (class {v['suspected_class_name']})"
    if v["verdict"] == "undetermined":
        return f"undetermined (the step-1 model fits {v['fit']:.1%} of the labels)"
    return v["verdict"]


def verdict_reason(v: dict, classes: list[str]) -> str:
    """The dataset verdict's reason in one sentence (core.verdict defines the statistics)."""
    name = lambda c: classes[c] if c is not None and 0 <= c < len(classes) else str(c)  # noqa: E731
    robust = (f"the class likeliest among the 1 % lowest scores ({name(v['robust_crowding_class'])}) is "
              f"{v['robust_crowding']:.2f}x as likely there as among the 25 % lowest (odds ratio; poisoned at "
              f"{v['robust_threshold']}, {v['robust_crowding_z']:.1f} standard deviations above chance)")
    spread = ("too few training errors to see where they go" if v["error_spread"] is None else
              f"the errors of {name(v['error_spread_class'])} spread over {v['error_spread']:.0%} of the other "
              f"classes, the most evenly (poisoned at {v['spread_threshold']:.0%})")
    if v["verdict"] == "poisoned":
        return f"class {name(v['suspected_class'])}: " + (robust if v["reason"] == "robust" else spread)
    if v["verdict"] == "undetermined":
        return (f"the step-1 model agrees with {v['fit']:.1%} of the labels (over {v['max_fit']:.0%}): where a model "
                f"fits nearly everything, one class's easiest images fill the robust end, poisoned or not; {robust}")
    return f"no class stands out: {robust}; {spread}"


def render_html(report: dict, figures: dict[str, str], with_truth: bool) -> str:
    v = report["dataset_verdict"]
    esc = html.escape
    why = esc(verdict_reason(v, report.get("classes", [])))
    colour = {"poisoned": "#d64541", "undetermined": "#9e9e9e"}.get(v["verdict"], "#2e7d32")

    def img(name: str, alt: str) -> str:
        return (f'<figure><img id="{name}" alt="{esc(alt)}" src="data:image/png;base64,{figures[name]}">'
                f"<figcaption>{esc(alt)}</figcaption></figure>") if name in figures else ""

    seconds = "".join(f"<tr><td>{esc(k)}</td><td>{'' if s is None else f'{s:.1f}'}</td></tr>"
                      for k, s in report.get("seconds", {}).items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>meca report: {esc(report['data'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1100px}}
.verdict{{padding:12px 16px;border-left:6px solid {colour};background:#f7f7f7;margin-bottom:16px}}
figure{{margin:12px 0}} img{{image-rendering:pixelated;max-width:100%}} td{{padding:2px 12px 2px 0}}</style>
</head><body>
<h1>meca report</h1>
<div class="verdict" id="verdict"><strong>Dataset verdict: {esc(v['verdict'])}</strong><br>{why}.<br>
{report['suspected']} of {report['samples']} samples suspected; estimated poison fraction
{v['estimated_poison_fraction']:.2%}. Data: <code>{esc(report['data'])}</code></div>
{img('suspects', 'Top suspected images (most confident first): index and given label')}
{img('cleared', 'Random cleared images, for contrast')}
{img('kl_by_verdict', 'KL robustness score by verdict')}
{img('kl_by_truth', 'KL robustness score by ground truth') if with_truth else ''}
{img('suspects_per_class', 'Suspected fraction per class')}
{img('rounds', 'Enhancement rounds')}
<h2>Time per step (seconds)</h2><table>{seconds}</table>
<p>Final model: <code>{esc(report['final_model'])}</code></p>
</body></html>
"""
