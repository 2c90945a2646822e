"""`kdlight-analyze PATH...`: the paper's analyses of the teacher's words, and a view of them.

    kdlight-analyze cache/rationales/cqa-train-tiny-0123abcd     # one rationale cache
    kdlight-analyze multirun/2026-11-28/10-00-00 --k 1 3 5 10    # every run (and its cache) below

For each rationale cache (found directly, or through a run's results.json):
- answer overlap: the share of examples whose top-k teacher words contain a word of the gold
  answer (words of the answer text less stop-words; the numbers of a SVAMP equation; not
  defined for closed label sets such as NLI, whose labels are not input words), per k;
- on a generated task (cue_words), the recall of its planted words among the top k, and chance;
- rationale statistics per k: words, share of stop-words, coverage of the answer choices (CQA)
  and of the problem's numbers (SVAMP);
- saliency-<dataset>-<split>.html: N examples, every eligible word shaded by its teacher score,
  the top-k words boxed.
For each finished run with an exported student (one trained without the teacher is compared
with the analysed cache of its dataset and split): teacher-student similarity on the first
--examples rows of the split (matched by example id): Jaccard overlap of the teacher's top-k words with the student's own
gradient x input top-k words (same attribution settings, on the student's input), and how often
the student's greedy answer equals the teacher's (needs attribution.score_teacher=true).

Writes analysis.json and analysis.md into <PATH>/analysis (or --out).
"""

from __future__ import annotations

import argparse
import html
import logging
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

from kdlight.data.tasks import Example, Rendered, Task
from kdlight.io import write_json, write_text
from kdlight.teacher.cache import RationaleCache, rows_accuracy
from kdlight.teacher.selection import is_stopword

log = logging.getLogger(__name__)

DEFAULT_KS = (1, 3, 5, 10)
NUMBER = re.compile(r"\d+(?:\.\d+)?")


# ---------------------------------------------------------------- pure measures
def normalize_word(text: str) -> str:
    """Lower case without surrounding punctuation; numbers in one form ("5.0" and "5" agree)."""
    core = text.lower().strip()
    while core and unicodedata.category(core[0])[0] in "PS":
        core = core[1:]
    while core and unicodedata.category(core[-1])[0] in "PS":
        core = core[:-1]
    if NUMBER.fullmatch(core):
        return f"{float(core):g}"
    return core


def answer_words(task: Task, example: Example) -> frozenset[str] | None:
    """The words whose presence among the rationale words counts as "contains the answer".

    None where the question makes no sense: a closed label set (NLI) is not made of input words.
    """
    if task.label_set is not None:
        return None
    if task.answer_kind == "equation":
        return frozenset(normalize_word(n) for n in NUMBER.findall(example.label))
    words = [normalize_word(w) for w in example.label.split()]
    content = [w for w in words if w and not is_stopword(w)]
    return frozenset(content or [w for w in words if w])


def top_words(row: dict, k: int) -> list[str]:
    return [normalize_word(t) for t in row["texts"][:k]]


def answer_overlap(rows: list[dict], examples: list[Example], task: Task, k: int) -> dict:
    """Share of examples (with answer words) whose top-k words contain one of them."""
    hits = considered = 0
    for row, example in zip(rows, examples):
        wanted = answer_words(task, example)
        if not wanted:
            continue
        considered += 1
        hits += bool(wanted & set(top_words(row, k)))
    if considered == 0:
        return {"share": None, "examples": 0, "note": "answers are not input words for this task"}
    return {"share": round(hits / considered, 4), "examples": considered}


def rationale_stats(rows: list[dict], examples: list[Example], task: Task, k: int) -> dict:
    """Length, stop-word share, and coverage of the choices / numbers the example offers."""
    lengths, stop_shares, choice_cover, number_cover = [], [], [], []
    for row, example in zip(rows, examples):
        words = row["texts"][:k]
        chosen = {normalize_word(w) for w in words}
        lengths.append(len(words))
        if words:
            stop_shares.append(sum(is_stopword(w) for w in words) / len(words))
        choices = example.fields.get("choices")
        if choices:
            covered = [bool({normalize_word(w) for w in c.split()} & chosen) for c in choices]
            choice_cover.append(sum(covered) / len(choices))
        if task.answer_kind == "equation":
            numbers = {normalize_word(n) for n in NUMBER.findall(" ".join(example.fields.values()))}
            if numbers:
                number_cover.append(len(numbers & chosen) / len(numbers))

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    return {
        "words_mean": mean(lengths),
        "stopword_share": mean(stop_shares),
        "choice_coverage": mean(choice_cover),  # share of an example's answer choices with a word among the k
        "number_coverage": mean(number_cover),  # share of an example's numbers among the k
    }


def salient_recall(rationales: list[str | None], examples: list[Example], task: Task) -> dict | None:
    """Where the task knows its salient words (a generated task plants them): the mean share of an
    example's salient words found in its rationale, and the share expected from as many words drawn
    at random from the example's eligible words (chance). None for tasks without known salient words."""
    from kdlight.data.tasks import content_words

    recalls, chance = [], []
    for rationale, example in zip(rationales, examples):
        salient = task.salient_words(example)
        if not salient:
            continue
        wanted = {normalize_word(w) for w in salient}
        chosen = [normalize_word(w) for w in (rationale or "").split()]
        recalls.append(len(wanted & set(chosen)) / len(wanted))
        eligible = len(content_words(task.render_teacher(example)))
        chance.append(min(len(chosen), eligible) / eligible if eligible else 0.0)
    if not recalls:
        return None
    return {"recall": round(sum(recalls) / len(recalls), 4), "chance": round(sum(chance) / len(chance), 4), "examples": len(recalls)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def similarity(teacher_rows: list[dict], student_rows: list[dict], ks: list[int], answer_kind: str) -> dict:
    """Teacher-student overlap of top-k words (mean Jaccard per k) and agreement of their answers."""
    from kdlight.metrics import answer_correct

    by_id = {r["id"]: r for r in teacher_rows}
    pairs = [(by_id[s["id"]], s) for s in student_rows if s["id"] in by_id]
    result: dict[str, Any] = {
        "examples": len(pairs),
        "jaccard": {
            str(k): round(sum(jaccard(set(top_words(t, k)), set(top_words(s, k))) for t, s in pairs) / len(pairs), 4)
            if pairs else None
            for k in ks
        },
    }
    answered = [(t, s) for t, s in pairs if t.get("teacher_answer") is not None and s.get("teacher_answer") is not None]
    result["prediction_agreement"] = (
        round(sum(answer_correct(s["teacher_answer"], t["teacher_answer"], answer_kind) for t, s in answered) / len(answered), 4)
        if answered else None
    )
    if not answered:
        result["prediction_agreement_note"] = "the cache has no teacher answers; extract with attribution.score_teacher=true"
    result["student_accuracy"] = rows_accuracy([s for _, s in pairs])  # the student's answers, scored like the teacher's
    return result


# ---------------------------------------------------------------- the view
def _shade(score: float, top: float) -> str:
    alpha = 0.0 if top <= 0 else max(0.0, min(1.0, score / top))
    return f"background: rgba(220, 60, 30, {alpha:.2f})"


def saliency_html(prompts: list[Rendered], rows: list[dict], k: int, title: str) -> str:
    """Every eligible word shaded by its score (relative to the example's highest), the top-k boxed;
    template text (never eligible) in grey."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>", html.escape(title), "</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        ".ex{border-bottom:1px solid #ccc;padding:.8em 0;white-space:pre-wrap;line-height:1.8}"
        ".tpl{color:#999}.top{outline:2px solid #222;font-weight:bold}.meta{font-size:.8em;color:#555}</style>",
        "</head><body><h1>", html.escape(title), "</h1>",
        f"<p>Shade: the teacher's gradient x input score of each eligible word, relative to the example's highest. "
        f"Boxed: the top-{k} words (the rationale). Grey: prompt template, never eligible.</p>",
    ]
    for prompt, row in zip(prompts, rows):
        starts = row.get("unit_starts") or row["starts"]
        ends = row.get("unit_ends") or row["ends"]
        scores = row.get("unit_scores") or row["scores"]
        chosen = set(row["starts"][:k])
        top = max(scores, default=0.0)
        text, cursor, pieces = prompt.text, 0, []
        for start, end, score in sorted(zip(starts, ends, scores)):
            pieces.append(_template_or_plain(text, cursor, start, prompt.spans))
            css = " class='top'" if start in chosen else ""
            pieces.append(
                f"<span{css} style='{_shade(score, top)}' title='{score:.4g}'>{html.escape(text[start:end])}</span>"
            )
            cursor = end
        pieces.append(_template_or_plain(text, cursor, len(text), prompt.spans))
        answer = row.get("teacher_answer")
        meta = f"id {html.escape(str(row['id']))}" + (f"; teacher answer: {html.escape(answer)}" if answer is not None else "")
        parts.append(f"<div class='ex'><div class='meta'>{meta}</div>{''.join(pieces)}</div>")
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


# ---------------------------------------------------------------- loading
def cache_examples(cache: RationaleCache):
    """The datamodule and the examples a cache's rows belong to (from the dataset config in key.json)."""
    from hydra.utils import instantiate

    dataset_config = cache.about.get("dataset_config")
    if dataset_config is None:
        raise ValueError(f"{cache.path}/key.json records no dataset_config (made by an older kdlight); re-extract it")
    datamodule = instantiate(dataset_config)
    split = cache.fields["split"]
    examples = datamodule.load_examples()[split]
    return datamodule, examples


def student_rows(student_dir: str | Path, datamodule, split: str, attribution: dict, limit: int) -> list[dict]:
    """The trained student's own gradient x input units on its label-task input (first `limit` rows),
    scored with the teacher's machinery, with its greedy answers."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from kdlight.teacher.extract import TeacherBatches, plan_batches, tokenize_prompts
    from kdlight.teacher.module import TeacherModule

    tokenizer = AutoTokenizer.from_pretrained(str(student_dir))
    model = AutoModelForSeq2SeqLM.from_pretrained(str(student_dir))
    datamodule.tokenizer = tokenizer  # the student's eos token separates NLI inputs, as in training
    examples = datamodule.load_examples()[split][:limit]
    rendered = datamodule.model_inputs(split)
    prefix = datamodule.prefixes["label"]
    inputs = [
        Rendered(prefix + r.text, tuple((a + len(prefix), b + len(prefix)) for a, b in r.spans)) for r in rendered[:limit]
    ]
    settings = {**attribution, "score_teacher": True}
    scorer = TeacherModule(model, tokenizer, settings, name="student", precision="fp32", answer_kind=datamodule.task.answer_kind)
    tokenized = tokenize_prompts(
        tokenizer, [ex.id for ex in examples], inputs, [ex.label for ex in examples],
        settings["max_input_length"], settings["max_target_length"],
    )
    plan = plan_batches([len(x) for x in tokenized.input_ids], settings["batch_size"])
    batches = TeacherBatches(tokenized, plan, list(range(len(plan))), tokenizer.pad_token_id)
    rows: list[dict] = []
    with torch.enable_grad():
        for batch in batches:
            rows.extend(scorer.predict_step(batch)["rows"])
    return sorted(rows, key=lambda r: r["row"])


# ---------------------------------------------------------------- the command
def analyse_cache(cache: RationaleCache, ks: list[int], views: int, out_dir: Path) -> dict:
    datamodule, examples = cache_examples(cache)
    rows = cache.read()
    if [r["id"] for r in rows] != [ex.id for ex in examples]:
        raise ValueError(f"{cache.path}: its rows do not match the {cache.fields['split']} examples of its dataset config")
    task, split = datamodule.task, cache.fields["split"]
    view = out_dir / f"saliency-{task.name}-{split}-{cache.key[:8]}.html"
    prompts = datamodule.teacher_prompts(split)
    k_view = 5 if 5 in ks else ks[0]
    write_text(view, saliency_html(prompts[:views], rows[:views], k_view, f"{task.name} {split}: teacher {cache.fields['teacher']}"))
    return {
        "cache": str(cache.path),
        "dataset": task.name,
        "split": split,
        "teacher": cache.fields["teacher"],
        "examples": len(rows),
        "teacher_accuracy": rows_accuracy(rows),
        "answer_overlap": {str(k): answer_overlap(rows, examples, task, k) for k in ks},
        "rationale_stats": {str(k): rationale_stats(rows, examples, task, k) for k in ks},
        "salient_recall": {  # generated tasks only: the planted words among the top k
            str(k): salient_recall([" ".join(r["texts"][:k]) for r in rows], examples, task) for k in ks
        },
        "saliency_view": str(view),
        "_datamodule": datamodule,  # reused by the runs of this cache; dropped before writing
        "_rows": rows,
        "_attribution": cache.fields["attribution"],
    }


def find_targets(paths: list[Path], split: str) -> tuple[list[Path], list[dict]]:
    """Cache folders, and finished runs (results.json); a run's cache_path is the cache its
    rationales came from, or None (finetune, random, step_by_step)."""
    from kdlight.report import collect_runs

    caches: list[Path] = []
    runs: list[dict] = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; pass a rationale cache folder, run folders or sweep folders")
        caches += sorted(p.parent for p in [path / "key.json", *path.glob("*/key.json")] if p.is_file())
        for run in collect_runs([path]).finished:
            cache_path = ((run.get("teacher_stage") or {}).get("splits") or {}).get(split, {}).get("cache_path")
            if cache_path:
                caches.append(Path(cache_path))
            runs.append({**run, "cache_path": cache_path})
    unique = list(dict.fromkeys(p.resolve() for p in caches))
    return unique, runs


def markdown_summary(result: dict) -> str:
    lines = ["# kdlight analysis\n"]
    for c in result["caches"]:
        lines.append(f"## {c['dataset']} {c['split']}, teacher {c['teacher']} ({c['examples']} examples)\n")
        lines.append(f"Teacher accuracy: {c['teacher_accuracy']}. Cache: `{c['cache']}`. View: `{c['saliency_view']}`.\n")
        lines.append("| k | answer in top-k words | planted words (recall / chance) | words | stop-word share | choice coverage | number coverage |")
        lines.append("|---|---|---|---|---|---|---|")
        for k, overlap in c["answer_overlap"].items():
            s, planted = c["rationale_stats"][k], c["salient_recall"][k]
            recall = f"{planted['recall']} / {planted['chance']}" if planted else None
            lines.append(
                f"| {k} | {overlap['share']} | {recall} | {s['words_mean']} | {s['stopword_share']} | {s['choice_coverage']} | {s['number_coverage']} |"
            )
        lines.append("")
    if result["runs"]:
        lines.append("## Teacher and student\n")
        lines.append(
            "| run | method | k | examples | Jaccard of top-k words (per k) | answers agree | student acc on these rows "
            "| planted words in the student's top-k (per k) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in result["runs"]:
            s = r["similarity"]
            jac = ", ".join(f"k={k}: {v}" for k, v in s["jaccard"].items())
            planted = ", ".join(f"k={k}: {v['recall']}" for k, v in r["student_salient_recall"].items() if v) or None
            lines.append(
                f"| `{r['path']}` | {r['method']} | {r['k']} | {s['examples']} | {jac} | {s['prediction_agreement']} "
                f"| {s['student_accuracy']} | {planted} |"
            )
    return "\n".join(lines) + "\n"


def analyse(paths: list[Path], ks: list[int], split: str = "train", examples: int = 128, views: int = 20, out_dir: Path | None = None) -> dict:
    out = out_dir or paths[0] / "analysis"
    cache_paths, runs = find_targets(paths, split)
    if not cache_paths:
        raise FileNotFoundError(f"no rationale cache under {[str(p) for p in paths]} (nor a run that used one for split {split!r})")
    caches = {str(p): analyse_cache(RationaleCache.open(p), ks, views, out) for p in cache_paths}
    run_results = []
    for run in runs:
        if run["cache_path"]:
            cache = caches[str(Path(run["cache_path"]).resolve())]
        else:  # a student trained without the teacher: compare it with the teacher's cache of its dataset and split
            same = [c for c in caches.values() if (c["dataset"], c["split"]) == (run["dataset"], split)]
            if len(same) != 1:
                log.warning("%s: no single analysed %s %s cache to compare its student with; skipped", run["path"], run["dataset"], split)
                continue
            cache = same[0]
        student_dir = run.get("exported_student")
        if not student_dir or not Path(student_dir).is_dir():
            continue
        # The cache's keyed settings (order and batch size do not change the scores).
        attribution = {"order": "input", "batch_size": 16, **cache["_attribution"]}
        datamodule = cache["_datamodule"]
        rows = student_rows(student_dir, datamodule, split, attribution, examples)
        scored_examples = datamodule.load_examples()[split][: len(rows)]
        run_results.append(
            {
                "path": run["path"], "method": run["method"], "k": run["k"], "alpha": run["alpha"], "seed": run["seed"],
                "similarity": similarity(cache["_rows"], rows, ks, datamodule.task.answer_kind),
                "student_salient_recall": {  # generated tasks: the planted words among the student's own top k
                    str(k): salient_recall([" ".join(r["texts"][:k]) for r in rows], scored_examples, datamodule.task)
                    for k in ks
                },
            }
        )
    result = {
        "ks": ks,
        "split": split,
        "caches": [{k: v for k, v in c.items() if not k.startswith("_")} for c in caches.values()],
        "runs": run_results,
    }
    write_json(out / "analysis.json", result)
    write_text(out / "analysis.md", markdown_summary(result))
    return {**result, "out_dir": str(out)}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="kdlight-analyze", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="rationale cache folders, run folders or sweep folders")
    parser.add_argument("--k", nargs="+", type=int, default=list(DEFAULT_KS), help="k values to analyse")
    parser.add_argument("--split", default="train", help="the split whose rationales are analysed")
    parser.add_argument("--examples", type=int, default=128, help="rows used for the teacher-student similarity")
    parser.add_argument("--views", type=int, default=20, help="examples in the saliency HTML view")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <first path>/analysis)")
    args = parser.parse_args(argv)
    bad = [k for k in args.k if k < 1]
    if bad:
        parser.error(f"--k {bad} is not accepted; use integers >= 1")
    try:
        result = analyse(args.paths, sorted(set(args.k)), args.split, args.examples, args.views, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(Path(result["out_dir"], "analysis.md").read_text())
    print(f"analysis written to {result['out_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
