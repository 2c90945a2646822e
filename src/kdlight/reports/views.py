"""Views a person reads: the resolved config as a tree, and the teacher's saliency as HTML."""

from __future__ import annotations

import html
from collections.abc import Sequence
from io import StringIO

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

from kdlight.data.tasks import Example, Rendered, Task

CONFIG_ORDER = ("dataset", "method", "attribution", "teacher", "student", "trainer", "logger", "callbacks", "paths")


def config_tree(cfg: DictConfig) -> str:
    """The resolved config (without Hydra's node) as a tree, the main groups first (rich's renderer)."""
    tree = Tree("config", guide_style="dim")
    keys = [key for key in CONFIG_ORDER if key in cfg] + [key for key in cfg if key not in CONFIG_ORDER and key != "hydra"]
    for key in keys:
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if OmegaConf.is_config(node) else str(node)
        tree.add(key).add(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    buffer = StringIO()
    Console(file=buffer, width=110, color_system=None, force_terminal=False).print(tree)
    return buffer.getvalue()


def _shade(score: float, top: float) -> str:
    alpha = 0.0 if top <= 0 else max(0.0, min(1.0, score / top))
    return f"background: rgba(220, 60, 30, {alpha:.2f})"


LEGEND = (
    "<div class='legend'><b>Legend.</b> "
    "<span style='background: rgba(220, 60, 30, 0.9)'>&nbsp;strong&nbsp;</span>"
    "<span style='background: rgba(220, 60, 30, 0.45)'>&nbsp;medium&nbsp;</span>"
    "<span style='background: rgba(220, 60, 30, 0.1)'>&nbsp;weak&nbsp;</span>: the teacher's score of each eligible word, "
    "relative to the example's highest. <span class='top'>boxed</span>: the top-{k} words (the rationale). "
    "<span class='planted'>underlined green</span>: words planted as the answer's cue (generated tasks). "
    "<span class='tpl'>grey</span>: prompt template, never eligible.</div>"
)


def word_scores_html(
    prompts: Sequence[Rendered], rows: Sequence[dict], k: int, title: str, examples: Sequence[Example] | None = None,
    task: Task | None = None, method: str = "gradient x input",
) -> str:
    """Every eligible word shaded by its score (relative to the example's highest), the run's top-k
    boxed, planted words (generated tasks) underlined, template text grey; per example the gold label
    and, when the teacher was scored, its answer."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>", html.escape(title), "</title>",
        "<style>body{font-family:sans-serif;max-width:62em;margin:2em auto}"
        ".ex{border-bottom:1px solid #ccc;padding:.8em 0;white-space:pre-wrap;line-height:1.9}"
        ".tpl{color:#999}.top{outline:2px solid #222;font-weight:bold}.planted{border-bottom:3px solid #2a2}"
        ".meta{font-size:.85em;color:#333}.legend{font-size:.9em;background:#f6f6f6;padding:.6em;line-height:2}</style>",
        "</head><body><h1>", html.escape(title), "</h1>",
        f"<p>Scores: the teacher's {html.escape(method)} attribution.</p>",
        LEGEND.format(k=k),
    ]
    for index, (prompt, row) in enumerate(zip(prompts, rows)):
        example = examples[index] if examples is not None and index < len(examples) else None
        planted = {w.lower() for w in (task.salient_words(example) or ())} if task is not None and example is not None else set()
        starts = row.get("unit_starts") or row["starts"]
        ends = row.get("unit_ends") or row["ends"]
        scores = row.get("unit_scores") or row["scores"]
        chosen = set(row["starts"][:k])
        top = max(scores, default=0.0)
        text, cursor, pieces = prompt.text, 0, []
        for start, end, score in sorted(zip(starts, ends, scores)):
            pieces.append(_template_or_plain(text, cursor, start, prompt.spans))
            classes = (["top"] if start in chosen else []) + (["planted"] if text[start:end].lower() in planted else [])
            css = f" class='{' '.join(classes)}'" if classes else ""
            pieces.append(f"<span{css} style='{_shade(score, top)}' title='{score:.4g}'>{html.escape(text[start:end])}</span>")
            cursor = end
        pieces.append(_template_or_plain(text, cursor, len(text), prompt.spans))
        meta = [f"id {html.escape(str(row['id']))}"]
        if example is not None:
            meta.append(f"gold: <b>{html.escape(example.label)}</b>")
        answer = row.get("teacher_answer")
        if answer is not None:
            verdict = {True: "correct", False: "wrong"}.get(row.get("teacher_correct"), "")
            meta.append(f"teacher's answer: <b>{html.escape(answer)}</b> ({verdict})")
        parts.append(f"<div class='ex'><div class='meta'>{'; '.join(meta)}</div>{''.join(pieces)}</div>")
    parts.append("</body></html>")
    return "".join(parts)


def _template_or_plain(text: str, start: int, end: int, spans: tuple[tuple[int, int], ...]) -> str:
    """Text between scored words: content (ineligible words, spaces) plain, template grey."""
    out, position = [], start
    while position < end:
        inside = any(a <= position < b for a, b in spans)
        stop = position + 1
        while stop < end and any(a <= stop < b for a, b in spans) == inside:
            stop += 1
        chunk = html.escape(text[position:stop])
        out.append(chunk if inside else f"<span class='tpl'>{chunk}</span>")
        position = stop
    return "".join(out)
