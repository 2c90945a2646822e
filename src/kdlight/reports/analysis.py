"""`kdlight-analyze PATH...`: the paper's analyses of the teacher's words, their quality, and views.

    kdlight-analyze cache/rationales/cqa-train-tiny-0123abcd     # one rationale cache
    kdlight-analyze multirun/2026-11-28/10-00-00 --k 1 3 5 10    # every run (and its cache) below
    kdlight-analyze --compare CACHE_A CACHE_B                     # two caches of the same rows (4-bit vs bf16 teacher)

For each rationale cache (found directly, or through a run's results.json):
- answer overlap: the share of examples whose top-k teacher words contain a word of the gold
  answer (not defined for closed label sets such as NLI, whose labels are not input words), per k;
- planted-word recall on a generated task (cue_words), and its chance level;
- rationale statistics per k: words, stop-word share, coverage of the CQA choices and SVAMP numbers;
- rationale quality: faithfulness to the teacher (comprehensiveness, sufficiency, AOPC; the
  teacher's accuracy drop when the cache scored it; random words as the reference), on the first
  --examples rows; plausibility against human highlights where the data has them (CQA's CoS-E);
- saliency-<dataset>-<split>-<key>.html: --views examples, every eligible word shaded, top-k boxed,
  gold and teacher answers shown, planted words marked.
For each finished run with an exported student (one trained without the teacher is compared with
the analysed cache of its dataset and split): teacher-student similarity on the first --examples
rows: Jaccard overlap of the teacher's top-k words with the student's own gradient x input top-k
words, and how often their greedy answers agree (needs attribution.score_teacher=true).

Writes analysis.json and analysis.md into <PATH>/analysis (or --out), saying what it does as it goes.
With --compare, two caches of the same rows (made by two teachers, precisions or quantizations) are
compared row by row: Kendall's tau-b of the scores of the words both scored, and the top-k overlap;
compare.json and compare.md go into <CACHE_A>/analysis (or --out).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from kdlight.answers import AnswerChecker
from kdlight.data.tasks import TaskWords
from kdlight.errors import user_errors
from kdlight.models.export import read_input_format
from kdlight.models.loading import from_folder
from kdlight.reports import measures
from kdlight.reports.runs import collect_runs
from kdlight.reports.views import word_scores_html
from kdlight.teacher.cache import CacheCorrupt, CacheFormatError, RationaleCache
from kdlight.teacher.extract import TeacherBatches
from kdlight.teacher.module import TeacherModule
from kdlight.teacher.stage import cache_teacher, measure_quality
from kdlight.trust import trusted_dataset_node
from kdlight.utils.io import write_json, write_text
from kdlight.utils.markdown import markdown_table
from kdlight.utils.runtime import apply_threads, quiet_libraries

log = logging.getLogger("kdlight.analyze")

DEFAULT_KS = (1, 3, 5, 10)


def cache_datamodule(cache: RationaleCache):
    """The datamodule the cache's rows belong to (from the dataset config recorded in key.json, checked
    against kdlight's own dataset options before it is built: a cache may come from someone else)."""
    dataset_config = cache.about.get("dataset_config")
    if dataset_config is None:
        raise ValueError(f"{cache.path}/key.json records no dataset_config; extract it again")
    return instantiate(trusted_dataset_node(dataset_config, Path(cache.path) / "key.json"))


def student_rows(student_dir: str | Path, datamodule, split: str, attribution: dict, limit: int) -> list[dict]:
    """The trained student's own gradient x input units on its label-task input (first `limit` rows),
    scored with the teacher's machinery, with its greedy answers."""
    model, tokenizer, family = from_folder(student_dir)
    fmt = read_input_format(student_dir)
    datamodule.separator = fmt.get("separator")  # the student's NLI separator, as in training
    words = TaskWords.from_format(fmt)

    def render(example):
        return words.render("label", datamodule.model_input(example))

    settings = {**attribution, "score_teacher": True, "method": "grad_x_input", "chunk_rows": limit, "num_workers": 0,
                "flush_batches": 1, "shard_rows": limit}
    scorer = TeacherModule(model, tokenizer, family, settings, name="student", precision="fp32", answer_kind=datamodule.task.answer_kind)
    batches = TeacherBatches(datamodule.examples[split].head(limit), render, tokenizer, family, settings, set())
    rows: list[dict] = []
    with torch.enable_grad():
        for batch in batches:
            rows.extend(scorer.rationale_rows(batch, scorer.predict_step(batch)))
    return sorted(rows, key=lambda r: r["row"])


def eraser_lines(part: dict) -> list[str]:
    """The analysis.md table of attribution.quality.convention=eraser (teacher / random in each cell)."""
    lines = ["", f"ERASER's convention on the same rows (probability of the teacher's predicted answer; human highlights: "
                 f"{part['plausibility']['teacher']['examples']} rows with a partial highlight):", ""]
    rows = []
    for k in part["sources"]["teacher"]:
        cells = [k]
        for measure in ("comprehensiveness", "sufficiency"):
            cells.append(f"{part['sources']['teacher'][k][measure]} / {part['sources']['random'][k][measure]}")
        for measure in ("token_f1", "iou_f1"):
            cells.append(" / ".join(_cell((part["plausibility"][s].get(k) or {}).get(measure), "n/a") for s in ("teacher", "random")))
        rows.append(cells)
    lines += markdown_table(["k", "compr. (prob) teacher / random", "suff. (prob) teacher / random", "token F1", "IOU F1 (0.5)"], rows)
    aopc, plaus, tau = part["aopc"], part["plausibility"], part.get("kendall_tau_loo") or {}
    lines.append(
        f"\nAOPC over {[f'{b:.0%}' for b in part['bins']]} of the words: comprehensiveness teacher {aopc['teacher']['comprehensiveness']}, "
        f"random {aopc['random']['comprehensiveness']}; sufficiency teacher {aopc['teacher']['sufficiency']}, random "
        f"{aopc['random']['sufficiency']}. AUPRC (trapezoid) teacher {plaus['teacher']['auprc']}, random {plaus['random']['auprc']}; "
        f"average precision teacher {plaus['teacher']['average_precision']}, random {plaus['random']['average_precision']}; "
        f"Kendall's tau against leave-one-out teacher {tau.get('teacher')}, random {tau.get('random')}."
    )
    return lines


def analyse_cache(cache: RationaleCache, ks: list[int], views: int, examples: int, out_dir: Path, faithful: bool,
                  convention: str = "kdlight") -> dict:
    datamodule = cache_datamodule(cache)
    task, split = datamodule.task, cache.fields["split"]
    rows = cache.read_rows(0, max(examples, views))
    chosen = datamodule.examples[split].chunk(0, len(rows))
    if [r["id"] for r in rows] != [ex.id for ex in chosen]:
        raise ValueError(f"{cache.path}: its rows do not match the {split} examples of its dataset config")
    total = cache.summary(None)
    view = out_dir / f"saliency-{task.name}-{split}-{cache.key[:8]}.html"
    k_view = int((cache.about.get("attribution_settings") or {}).get("k") or (5 if 5 in ks else ks[0]))
    method = cache.fields.get("attribution", {}).get("method", "grad_x_input")
    write_text(view, word_scores_html([task.render_teacher(ex) for ex in chosen[:views]], rows[:views], k_view,
                                   f"{task.name} {split}: teacher {cache.fields['teacher']} ({method})", chosen[:views], task, method))
    result: dict[str, Any] = {
        "cache": str(cache.path), "dataset": task.name, "split": split, "teacher": cache.fields["teacher"], "attribution": method,
        "examples": total["examples"], "analysed_examples": len(rows), "teacher_accuracy": total["teacher_accuracy"],
        "answer_overlap": {str(k): measures.answer_overlap(rows, chosen, task, k) for k in ks},
        "rationale_stats": {str(k): measures.rationale_stats(rows, chosen, task, k) for k in ks},
        "salient_recall": {str(k): measures.salient_recall([" ".join(r["texts"][:k]) for r in rows], chosen, task) for k in ks},
        "saliency_view": str(view), "saliency_view_k": k_view,
    }
    if faithful:
        log.info("  rationale quality: scoring %d altered prompts per k with the teacher ...", 4 * len(rows))
        result["quality"] = measure_quality(cache, datamodule, cache_teacher(cache, datamodule), ks, examples, convention=convention)
    result["_datamodule"], result["_rows"] = datamodule, rows  # reused by the runs of this cache; dropped before writing
    return result


def find_targets(paths: list[Path], split: str) -> tuple[list[Path], list[dict]]:
    """Cache folders, and finished runs (results.json); a run's cache_path is the cache its
    rationales came from, or None (finetune, random, step_by_step)."""
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
    return list(dict.fromkeys(p.resolve() for p in caches)), runs


def _cell(value, missing: str = "n/a") -> str:
    return missing if value is None else str(value)


def markdown_summary(result: dict) -> str:
    lines = ["# kdlight analysis\n"]
    for c in result["caches"]:
        accuracy = _cell(c["teacher_accuracy"], "not scored (extract with attribution.score_teacher=true)")
        lines.append(f"## {c['dataset']} {c['split']}, teacher {c['teacher']}, {c['attribution']} ({c['examples']} examples)\n")
        lines.append(f"Teacher accuracy: {accuracy}. Cache: `{c['cache']}`. View (top-{c['saliency_view_k']} boxed): `{c['saliency_view']}`.\n")
        rows = []
        for k, overlap in c["answer_overlap"].items():
            s, planted = c["rationale_stats"][k], c["salient_recall"][k]
            rows.append([k, _cell(overlap["share"], "n/a (labels are not input words)"),
                         f"{planted['recall']} / {planted['chance']}" if planted else "n/a (no planted words)",
                         _cell(s["words_mean"]), _cell(s["stopword_share"]), _cell(s["choice_coverage"], "n/a"),
                         _cell(s["number_coverage"], "n/a")])
        lines += markdown_table(["k", "answer in top-k words", "planted words (recall / chance)", "words", "stop-word share",
                                 "choice coverage", "number coverage"], rows)
        quality = c.get("quality")
        if quality:
            lines += ["", f"Rationale quality on the first {quality['examples']} rows (nats of log p(gold); random: as many random words):", ""]
            partial_t = quality["plausibility"].get("partial", {})
            partial_r = quality["plausibility_random"].get("partial", {})
            rows = []
            for k in quality["sources"]["teacher"]:
                t, r = quality["sources"]["teacher"][k], quality["sources"]["random"][k]
                f1 = (f"{_cell((partial_t.get(k) or {}).get('f1'))} / {_cell((partial_r.get(k) or {}).get('f1'))}"
                      if partial_t.get("examples") else "n/a (no human highlights)")
                acc = (f"{_cell(t.get('comprehensiveness_acc'))} / {_cell(r.get('comprehensiveness_acc'))}"
                       if "comprehensiveness_acc" in t else "n/a (teacher not scored)")
                rows.append([k, f"{t['comprehensiveness']} / {r['comprehensiveness']}", f"{t['sufficiency']} / {r['sufficiency']}", acc, f1])
            lines += markdown_table(["k", "compr. teacher / random", "suff. teacher / random", "compr. acc teacher / random",
                                     "plausibility F1 teacher / random"], rows)
            aopc = quality["aopc"]
            lines.append(f"\nAOPC comprehensiveness: teacher {aopc['teacher']['comprehensiveness']}, random {aopc['random']['comprehensiveness']}; "
                         f"sufficiency: teacher {aopc['teacher']['sufficiency']}, random {aopc['random']['sufficiency']}.")
            whole = quality["plausibility"].get("whole", {})
            if whole.get("examples"):
                lines.append(f"Rows whose highlight is a whole content span (no signal, reported apart): {whole['examples']}; "
                             f"AUPRC there {whole.get('auprc')}.")
            if quality.get("eraser"):
                lines += eraser_lines(quality["eraser"])
        lines.append("")
    if result["runs"]:
        lines.append("## Teacher and student\n")
        rows = []
        for r in result["runs"]:
            s = r["similarity"]
            jac = ", ".join(f"k={k}: {v}" for k, v in s["jaccard"].items())
            planted = ", ".join(f"k={k}: {v['recall']}" for k, v in r["student_salient_recall"].items() if v) or "n/a (no planted words)"
            rows.append([f"`{r['path']}`", r["method"], _cell(r["k"], "-"), s["examples"], jac,
                         _cell(s["prediction_agreement"], "n/a (teacher not scored)"), _cell(s["student_accuracy"]), planted])
        lines += markdown_table(["run", "method", "k", "examples", "Jaccard of top-k words (per k)", "answers agree",
                                 "student acc on these rows", "planted words in the student's top-k (per k)"], rows)
    return "\n".join(lines) + "\n"


def analyse(paths: list[Path], ks: list[int], split: str = "train", examples: int = 128, views: int = 20,
            out_dir: Path | None = None, faithful: bool = True, convention: str = "kdlight") -> dict:
    out = out_dir or paths[0] / "analysis"
    cache_paths, runs = find_targets(paths, split)
    if not cache_paths:
        raise FileNotFoundError(f"no rationale cache under {[str(p) for p in paths]} (nor a run that used one for split {split!r})")
    caches = {}
    for number, path in enumerate(cache_paths, 1):
        started = time.monotonic()
        log.info("cache %d/%d: %s", number, len(cache_paths), path.name)
        caches[str(path)] = analyse_cache(RationaleCache.open(path), ks, views, examples, out, faithful, convention)
        log.info("  done in %.1f s", time.monotonic() - started)
    run_results = []
    with_students = [r for r in runs if r.get("exported_student") and Path(r["exported_student"]).is_dir()]
    for number, run in enumerate(with_students, 1):
        if run["cache_path"]:
            cache = caches[str(Path(run["cache_path"]).resolve())]
        else:  # a student trained without the teacher: compare it with the teacher's cache of its dataset and split
            same = [c for c in caches.values() if (c["dataset"], c["split"]) == (run["dataset"], split)]
            if len(same) != 1:
                log.warning("%s: no single analysed %s %s cache to compare its student with; skipped", run["path"], run["dataset"], split)
                continue
            cache = same[0]
        log.info("student %d/%d: %s (%s)", number, len(with_students), Path(run["path"]).name, run["method"])
        attribution = {**(RationaleCache.open(cache["cache"]).about.get("attribution_settings") or {}), "order": "input"}
        datamodule = cache["_datamodule"]
        rows = student_rows(run["exported_student"], datamodule, split, attribution, examples)
        scored = datamodule.examples[split].chunk(0, len(rows))
        run_results.append({
            "path": run["path"], "method": run["method"], "k": run["k"], "alpha": run["alpha"], "seed": run["seed"],
            "similarity": measures.similarity(cache["_rows"], rows, ks, AnswerChecker(datamodule.task.answer_kind)),
            "student_salient_recall": {  # generated tasks: the planted words among the student's own top k
                str(k): measures.salient_recall([" ".join(r["texts"][:k]) for r in rows], scored, datamodule.task) for k in ks
            },
        })
    result = {"ks": ks, "split": split, "caches": [{k: v for k, v in c.items() if not k.startswith("_")} for c in caches.values()],
              "runs": run_results}
    write_json(out / "analysis.json", result)
    write_text(out / "analysis.md", markdown_summary(result))
    return {**result, "out_dir": str(out)}


def compare_caches(path_a: Path, path_b: Path, ks: list[int], out_dir: Path | None = None) -> dict:
    """kdlight-analyze --compare: the agreement of two caches of the same rows (measures.cache_agreement)."""
    caches = [RationaleCache.open(path) for path in (path_a, path_b)]
    for cache, path in zip(caches, (path_a, path_b)):
        if not cache.is_complete():
            raise ValueError(f"{path} is not a complete rationale cache; pass two finished cache folders")
    (a, b) = caches
    if (a.fields["dataset"], a.fields["split"]) != (b.fields["dataset"], b.fields["split"]):
        raise ValueError(f"{path_a} holds {a.fields['dataset']} {a.fields['split']} and {path_b} holds {b.fields['dataset']} "
                         f"{b.fields['split']}: compare caches of the same rows")
    columns = ["id", "unit_starts", "unit_ends", "unit_scores"]
    result = {"caches": [str(path_a), str(path_b)], "teachers": [c.fields["teacher"] for c in caches],
              "dataset": a.fields["dataset"], "split": a.fields["split"], "ks": ks,
              **measures.cache_agreement(a.read(columns), b.read(columns), ks)}
    out = out_dir or path_a / "analysis"
    lines = [f"# Two caches of {result['dataset']} {result['split']}: {result['rows']} rows in both", "",
             f"- A: {path_a}", f"- B: {path_b}", "",
             f"Kendall's tau-b of the word scores, per row: mean {_cell(result['kendall_tau']['mean'])}, "
             f"median {_cell(result['kendall_tau']['median'])} ({result['rows_with_different_units']} rows where the two scored different words)", "",
             *markdown_table(["k", "top-k overlap", "rows with identical top k"],
                             [[k, _cell(result["top_k_overlap"][str(k)]), _cell(result["identical_top_k_rows"][str(k)])] for k in ks])]
    write_json(out / "compare.json", result)
    write_text(out / "compare.md", "\n".join(lines) + "\n")
    return {**result, "out_dir": str(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kdlight-analyze", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="rationale cache folders, run folders or sweep folders")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("CACHE_A", "CACHE_B"),
                        help="compare two caches of the same rows (rank correlation and top-k overlap per row) instead")
    parser.add_argument("--k", nargs="+", type=int, default=list(DEFAULT_KS), help="k values to analyse")
    parser.add_argument("--split", default="train", help="the split whose rationales are analysed")
    parser.add_argument("--examples", type=int, default=128, help="rows used for quality and teacher-student similarity")
    parser.add_argument("--views", type=int, default=20, help="examples in the saliency HTML view")
    parser.add_argument("--no-faithfulness", action="store_true", help="skip the measures that run the teacher")
    parser.add_argument("--convention", choices=["kdlight", "eraser"], default="kdlight",
                        help="eraser: also ERASER's convention (probabilities, AOPC bins, token/IOU F1, AUPRC, tau vs leave-one-out)")
    parser.add_argument("--threads", default="auto", help="CPU threads (auto: half the cores, at most 4)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <first path>/analysis)")
    args = parser.parse_args(argv)
    bad = [k for k in args.k if k < 1]
    if bad:
        parser.error(f"--k {bad} is not accepted; use integers >= 1")

    if bool(args.paths) == bool(args.compare):
        parser.error("pass either PATH... (caches, runs, sweeps to analyse) or --compare CACHE_A CACHE_B")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.compare:
        try:
            result = compare_caches(*args.compare, sorted(set(args.k)), args.out)
        except (FileNotFoundError, ValueError, CacheCorrupt, CacheFormatError, *user_errors()) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(Path(result["out_dir"], "compare.md").read_text())
        return 0
    apply_threads(int(args.threads) if str(args.threads).isdigit() else args.threads)
    quiet_libraries()
    try:
        result = analyse(args.paths, sorted(set(args.k)), args.split, args.examples, args.views, args.out, not args.no_faithfulness,
                         args.convention)
    except (FileNotFoundError, ValueError, CacheCorrupt, CacheFormatError, *user_errors()) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(Path(result["out_dir"], "analysis.md").read_text())
    print(f"analysis written to {result['out_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
