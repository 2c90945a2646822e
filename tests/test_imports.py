"""The import graph's rules that import-linter (pyproject's contracts, run by .ci/run) does not state:
an import inside a function says why it is there, and the one reason that counts is measured."""

from __future__ import annotations

import ast
from pathlib import Path

import kdlight

SOURCE = Path(kdlight.__file__).parent
REASONS = (
    "# lazy: off the config check's import path (tests/test_train.py)",  # measured by test_train's importtime tests
    "# lazy: threads are exported before torch is imported (export_threads)",
    "# lazy: an optional extra",
    "# lazy: plugins load in the command's error handling (tests/test_trust.py)",
)

# Inside classes whose source keys cached rows (kdlight.provenance.code_digest: tasks parse the examples store,
# attribution methods the rationale cache): a moved import or an added comment would change the digest and
# leave every existing cache unused, so these stay as the caches were made.
FROZEN = {
    ("kdlight/data/tasks.py", "from kdlight.answers import evaluate_equation  # local: answers imports nothing from data"),
    ("kdlight/data/tasks.py", "from kdlight.data.cue_words import CLASS_NAMES"),
    ("kdlight/attribution/base.py", "from kdlight.provenance import code_digest"),
}


def function_level_imports(tree: ast.AST) -> list[ast.stmt]:
    found = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if in_function:
                    found.append(child)
            else:
                walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    walk(tree, False)
    return found


def unexplained_imports(source_root: Path) -> list[str]:
    problems = []
    for path in sorted(source_root.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in function_level_imports(ast.parse("\n".join(lines))):
            where = str(path.relative_to(source_root.parent))
            if (where, lines[node.lineno - 1].strip()) in FROZEN:
                continue
            if not any(reason in lines[node.end_lineno - 1] for reason in REASONS):
                problems.append(f"{where}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return problems


def test_every_import_inside_a_function_says_why():
    assert unexplained_imports(SOURCE) == []


def test_the_code_digests_of_cached_rows_are_the_ones_the_caches_were_made_with():
    """The tasks' and attribution methods' digests (cache keys) as before the imports moved to the top
    (commit 90a2354); a change here is a deliberate rebuild of every cache those classes made."""
    from kdlight.attribution import METHODS
    from kdlight.data.tasks import TASKS
    from kdlight.provenance import code_digest

    tasks = {name: code_digest(type(TASKS[name])) for name in ("anli", "cqa", "cue_words", "esnli", "svamp")}
    assert tasks == {"anli": "b4949a5743a50192", "cqa": "15555f38f36f8897", "cue_words": "822b45230387b41f",
                     "esnli": "605014b6dd2e8547", "svamp": "7f09f7098873ef98"}
    methods = {name: code_digest(METHODS[name]) for name in ("grad_x_input", "gradient", "integrated_gradients", "occlusion")}
    assert methods == {"grad_x_input": "5afc0395c21eca4a", "gradient": "92310667bc28e330",
                       "integrated_gradients": "db0c181d68adce30", "occlusion": "fd45ced953e23aef"}


def test_moved_factories_and_renamed_settings_keep_their_teachers_cache_keys():
    """kdlight.tiny and kdlight.models became kdlight.models.tiny and kdlight.models.loading, and LoRA's alpha
    became lora_alpha; a teacher's identity (the key of its fine-tuned weights and rationale caches) names
    the old ones, so caches made before still hit. The digests are the ones commit d37da13 (before) computed."""
    from kdlight.compose import compose_config
    from kdlight.teacher.stage import TeacherStage
    from kdlight.utils.io import json_digest

    def identity(*overrides):
        cfg = compose_config(list(overrides), output_dir="unused")
        assert cfg.teacher.model._target_.startswith(("kdlight.models.tiny.", "kdlight.models.loading."))
        return json_digest(TeacherStage.from_config(cfg).identity(), 16)

    assert identity("teacher=tiny") == "269dd92e340062d7"
    assert identity("teacher=tiny_encoder") == "b15b142f5bf4f33a"
    assert identity("experiment=quickstart") == "57a433d0af8b5153"
    assert identity("teacher=flan_t5_xl") == "507efcfc35713708"
    assert identity("teacher=flan_t5_xl", "teacher.finetune=true", "teacher.finetune_peft=lora") == "d3605654d601ab07"


def test_an_unexplained_import_inside_a_function_is_named(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text(
        "import os\n\n\ndef f():\n    import json\n    return json, os\n\n\n"
        "def g():\n    import torch  # lazy: an optional extra\n    return torch\n"
    )
    assert unexplained_imports(package) == ["pkg/mod.py:5: import json"]
