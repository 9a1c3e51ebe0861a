"""The model card: a ``README.md`` written next to every trained artifact, from its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streammood.runtime.labels import QUADRANTS

EMBEDDINGS = {
    200: "the penultimate layer of the MSD musicnn tagger",
    400: "the penultimate layers of the MSD and MTT musicnn taggers, 200 each",
    656: "the penultimate layers of the MSD and MTT musicnn taggers, 200 each, and the last "
    "pooled feature map of the MSD VGG tagger, 256",
}
"""What an embedding of each width is, for the card (the embedders in ``models/musicnn``)."""


def _f(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}"


def render_model_card(manifest: dict[str, Any], command: str) -> str:
    """Markdown model card of an artifact (``manifest.json`` contents)."""
    tr = manifest.get("training", {})
    split = tr.get("split", {})
    test = manifest.get("metrics", {}).get("test") or {}
    cfg = manifest.get("model_config", {})
    members = tr.get("members", [])
    student = tr.get("student")
    teacher_test = manifest.get("metrics", {}).get("test_ensemble") or {}
    refit = tr.get("refit") or []
    if student:
        alpha = tr.get("config", {}).get("distill_alpha")
        readout = (
            "its linear read-out is the mean of the members' read-outs (a bagged logistic "
            "regression on the window statistics) and its LSTM branch is "
            if student.get("readout")
            else ""
        )
        shipped = (
            f"The shipped model is one student of this architecture, built from an ensemble "
            f"of {len(members)} seeds: {readout}trained on every train+validation song "
            f"{'(then on every song, see below) ' if refit else ''}"
            + (
                "with the ensemble's per-step outputs as targets"
                if alpha == 1
                else f"with per-step targets {1 - alpha:g} × label + {alpha:g} × ensemble output"
            )
            + ", so the live step runs "
            "one sequence core instead of one per member."
        )
    else:
        shipped = (
            f"An ensemble of {manifest['members']} seeds is averaged inside the exported step "
            "model."
        )
    lines = [
        f"# {manifest['name']} v{manifest['version']}",
        "",
        f"Task: **{manifest['task']}** of Russell's circumplex quadrants, class order "
        f"{', '.join(QUADRANTS)} (AP = +valence +arousal, AN = −valence +arousal, "
        "PP = +valence −arousal, PN = −valence −arousal). One prediction every 500 ms over an "
        f"exact rolling window of {manifest['window_steps']} steps (30 s); before 30 s have "
        "arrived, over the steps so far.",
        "",
        "## Model",
        "",
        "The seed's CNN-LSTM — per step a 1-D CNN over the 21 x 20 MFCC block (LayerNorm, "
        "Conv1D 32x8 / 64x4 / 64x4 with max-pooling, Dense 256, LeakyReLU 0.05) concatenated with "
        "260 openSMILE ComParE_2016 LLD statistics — strengthened with a pretrained "
        f"embedding ({manifest['emb_dim']} values: "
        f"{EMBEDDINGS.get(manifest['emb_dim'], 'of a pretrained tagger')}) of the 3 s "
        "ending at the step. Two LSTM(128) run over the window; their head and a linear, "
        "L2-regularised read-out of the window's running mean and standard deviation of the "
        f"embedding add up to the logits. {shipped} Hyper-parameters: `{cfg}`.",
        "",
        f"Features: {tr.get('features', '')}. Normalisation statistics come from the training "
        "songs and are part of the model.",
        "",
        "**Valence and arousal** of this classifier come from the quadrant probabilities: "
        "valence = P(AP) + P(PP) − P(AN) − P(PN), arousal = P(AP) + P(AN) − P(PP) − P(PN), "
        "each in [−1, 1].",
        "",
        "Serving: `step.tflite` (LiteRT, explicit LSTM states, 60 staggered windows advanced in "
        "one call) and `embedder.tflite` (the pretrained taggers on LiteRT); no TensorFlow "
        "needed. "
        "`keras/member*.weights.h5` hold the shipped Keras model(s) for further training and "
        "evaluation.",
        "",
        "## Data and split",
        "",
        f"Data set: `{tr.get('dataset')}` from `{tr.get('data_dir')}`. Split: {split.get('method')}"
        f" (seed {split.get('seed')}): 80/20 train+validation / test as in the seed report; then "
        f"{split.get('members', '80/20 train / validation')}. No artist appears on both sides of "
        "a split; test figures come from models that never saw the test songs or their artists.",
        "",
        "| part | songs | artists | " + " | ".join(QUADRANTS) + " |",
        "|---|---|---|" + "---|" * len(QUADRANTS),
    ]
    for part in ("train+validation", "validation (member 0's fold)", "test"):
        d = split.get(part) or {}
        per = d.get("per_class") or {}
        lines.append(
            f"| {part} | {d.get('songs', 0)} | {d.get('groups', 0)} | "
            + " | ".join(str(per.get(q, 0)) for q in QUADRANTS)
            + " |"
        )
    if members:
        lines += [
            "",
            "Training: "
            + ", ".join(
                f"seed {m['seed']}: best epoch {m['best_epoch']} of {m['epochs_run']} "
                f"({m['seconds']:.0f} s, LSTM branch {m.get('lstm_branch', 'trained')})"
                for m in members
            )
            + ". Early stopping on the validation loss; training runs in two stages — the pooled "
            "read-out alone, then the whole model from there at a lower learning rate — and a "
            "member keeps its LSTM branch only where that lowered its validation loss "
            '("zero": the branch\'s output layer stays at zero).',
        ]
    if student:
        lines += [
            "",
            f"Student: {student['train_songs']} songs, "
            + (
                f"read-out the {student['readout']}, LSTM stage for "
                f"{student['stage_best_epochs'][-1]} epochs"
                if student.get("readout")
                else "the two stages for "
                + " and ".join(str(e) for e in student["stage_best_epochs"])
                + " epochs"
            )
            + " (the median of the members' best epochs; no songs are left for early stopping), "
            f"{student['seconds']:.0f} s, LSTM branch {student.get('lstm_branch')}.",
        ]
    if refit:
        lines += [
            "",
            f"**Refit on every song.** After the test figures below were measured, the shipped "
            f"model was trained once more, the same way, on all {refit[0]['train_songs']} songs "
            "(test songs and their artists included) for the epochs found above "
            f"({', '.join(' and '.join(str(e) for e in r['stage_best_epochs']) for r in refit)}"
            ")"
            + (
                " — each member's read-out on every song but its own validation fold ("
                + ", ".join(str(n) for n in refit[0]["readout_train_songs"])
                + " songs) before averaging"
                if refit[0].get("readout_train_songs")
                else ""
            )
            + ", so it has learned from every artist. The figures below are therefore those of "
            "its **held-out twin** — the model of the same recipe that never saw the test "
            "songs — and the best estimate of the shipped model on artists neither has seen; "
            "`streammood evaluate` on this data set leaves every song out as seen.",
        ]
    if test:
        pw, ps = test.get("per_window", {}), test.get("per_step", {})
        lines += [
            "",
            "## Metrics on the artist-disjoint test split" + (" (held-out twin)" if refit else ""),
            "",
            "| | per window (song, last step) | per step |",
            "|---|---|---|",
            f"| accuracy | {_f(pw.get('accuracy'))} | {_f(ps.get('accuracy'))} |",
            f"| macro-F1 | {_f(pw.get('macro_f1'))} | {_f(ps.get('macro_f1'))} |",
            f"| ROC AUC (one-vs-rest) | {_f(pw.get('roc_auc'))} | {_f(ps.get('roc_auc'))} |",
            "",
            "| per window | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for q in QUADRANTS:
            c = pw.get("per_class", {}).get(q, {})
            lines.append(
                f"| {q} | {_f(c.get('precision'))} | {_f(c.get('recall'))} | "
                f"{_f(c.get('f1'))} | {c.get('support', 0)} |"
            )
        cm = pw.get("confusion_matrix")
        if cm:
            lines += [
                "",
                "Confusion matrix per window (rows true, columns predicted):",
                "",
                "| true \\ predicted | " + " | ".join(QUADRANTS) + " |",
                "|---|" + "---|" * len(QUADRANTS),
            ]
            lines += [
                f"| {q} | " + " | ".join(str(v) for v in row) + " |"
                for q, row in zip(QUADRANTS, cm, strict=True)
            ]
        if teacher_test:
            tw, ts = teacher_test.get("per_window", {}), teacher_test.get("per_step", {})
            lines += [
                "",
                f"The teacher ensemble ({len(members)} members, not shipped) on the same songs: "
                f"macro-F1 {_f(tw.get('macro_f1'))} per window, {_f(ts.get('macro_f1'))} per "
                f"step; ROC AUC {_f(tw.get('roc_auc'))} per window (`report/ensemble/`).",
            ]
        lines += ["", "Pictures: `report/confusion_matrix.png`, `report/va_plane.png`."]
    lines += _stream_lines(manifest.get("metrics", {}).get("stream", {}), twin=bool(refit))
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        command,
        "```",
        "",
        "## Credits and licences",
        "",
        '- musicnn weights: Jordi Pons and Xavier Serra, "musicnn: pre-trained convolutional '
        'neural networks for music audio tagging", ISMIR 2019 LBD; ISC licence, © 2019 Jordi '
        "Pons (see `models/musicnn/README.md`); the VGG tagger is that package's baseline. "
        "Converted unchanged from the checkpoints in the `musicnn==0.1.0` wheel.",
        '- 4Q audio emotion data set: Panda, Malheiro & Paiva, "Novel audio features for music '
        'emotion recognition", IEEE Trans. Affective Computing, 2018; research use, not '
        "redistributed here.",
        "- openSMILE ComParE_2016 feature set (audEERING), through the `opensmile` package.",
        "",
        "## Limitations",
        "",
        "Trained on 30 s AllMusic clips with song-level labels (720 songs): quadrant labels "
        "describe whole clips, so per-step predictions inside a song are not individually "
        "validated. Western popular genres dominate the data. Scores at n = 144 test songs carry "
        "about ±0.07 of sampling noise.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(folder: Path, manifest: dict[str, Any], command: str) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(render_model_card(manifest, command))
    return path


def _stream_lines(stream: dict[str, Any], twin: bool = False) -> list[str]:
    """The card's section on streams: the test songs played back to back (hard cuts, 4 s
    crossfades) through the live path, fixed and change-aware window (``twin``: measured on the
    held-out twin of a refitted model)."""
    if not stream:
        return []
    runs = [(k, v) for k, v in stream.items() if isinstance(v, dict) and "change_aware" in v]
    if not runs:
        return []
    first = runs[0][1]
    lines = [
        "",
        "## On streams (the test songs back to back" + (", held-out twin)" if twin else ")"),
        "",
        f"The {first['songs']} test songs in {first['streams']} streams (seeded order, a random "
        f"gain of {first['gain_db'][0]:g} to {first['gain_db'][1]:g} dB per song) through the live "
        "path (`extract_offline` of the joined audio, then the streaming runtime), with the fixed "
        "60-step window and with the change-aware one (the window restarts at each detected "
        "change, and again at the segment's first embedding of its own audio); "
        "`streammood evaluate --stream [--xfade 4]`.",
        "",
        "| | "
        + " | ".join(f"{_how(v)}, {w}" for _, v in runs for w in ("fixed", "change-aware"))
        + " |",
        "|---|" + "---|" * (2 * len(runs)),
    ]
    cells = [v[w] for _, v in runs for w in ("fixed_window", "change_aware")]

    def row(label: str, get) -> str:
        return f"| {label} | " + " | ".join(_f(get(c)) for c in cells) + " |"

    lines.append(row("per-step macro-F1", lambda c: c["per_step"]["macro_f1"]))
    for b in ("0-5", "5-10", "10-15", "20-25"):
        lines.append(
            row(
                f"accuracy {b} s after a change",
                lambda c, b=b: c["accuracy_since_change"][b]["accuracy"],
            )
        )
    lines.append(
        "| median time to follow a change, s | "
        + " | ".join(
            "-" if c["follow"]["median_s"] is None else f"{c['follow']['median_s']:.1f}"
            for c in cells
        )
        + " |"
    )
    lines.append(row("change precision (±3 s)", lambda c: c["changes"]["precision"]))
    lines.append(row("change recall (±3 s)", lambda c: c["changes"]["recall"]))
    lines.append(
        "| false changes per hour | "
        + " | ".join(
            "-"
            if c["changes"]["false_per_hour"] is None
            else f"{c['changes']['false_per_hour']:.1f}"
            for c in cells
        )
        + " |"
    )
    det = first["detector"]
    lines += [
        "",
        f"Change detector: look-ahead {det['lookahead_s']:.1f} s, {det['cpu_ms_per_step']:.2f} ms "
        "of CPU per step. Timelines: "
        + ", ".join(f"`report/{v['timeline']}`" for _, v in runs)
        + ".",
    ]
    return lines


def _how(run: dict[str, Any]) -> str:
    return f"{run['xfade_s']:g} s crossfades" if run["xfade_s"] else "hard cuts"
