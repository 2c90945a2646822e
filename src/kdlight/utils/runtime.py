"""Process-wide settings: CPU threads, denormal floats, quiet libraries, the garbage collector's pauses.

Threads: on a shared machine PyTorch's default (one intra-op thread per core) makes threads that
busy-wait fight other jobs for cores; `threads: auto` takes half the cores, at most 4 (1 on a 2-core
machine). The setting also reaches child processes (DataLoader workers, sweep jobs) through the
environment, and the Rust tokenizers' thread pool.
"""

from __future__ import annotations

import _thread
import gc
import logging
import os
import random
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

log = logging.getLogger(__name__)

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS")


def resolve_threads(setting: object) -> int:
    """`auto` -> half the cores (at most 4, at least 1); else a positive integer."""
    if setting in (None, "auto"):
        return max(1, min(4, (os.cpu_count() or 2) // 2))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"threads={setting!r} is not accepted; use a positive integer or auto")
    return setting


def export_threads(setting: object) -> int:
    """Set the thread environment before torch is imported (and for every child process)."""
    threads = resolve_threads(setting)
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    os.environ["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")  # idle threads sleep, not spin
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    return threads


def apply_threads(setting: object) -> int:
    """export_threads, and the same for an already imported torch."""
    threads = export_threads(setting)
    import torch  # lazy: threads are exported before torch is imported (export_threads)

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only possible before the first parallel work; the intra-op count is what matters
        pass
    return threads


@contextmanager
def numeric_settings(flush_denormal: bool = True) -> Iterator[None]:
    """For the duration of a stage: CPU denormal floats count as zero (a 32k-way softmax yields them,
    and they made backward passes over twice as slow); PyTorch's default is restored afterwards."""
    import torch  # lazy: threads are exported before torch is imported (export_threads)

    if flush_denormal:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flush_denormal:
            torch.set_flush_denormal(False)


# Messages that say nothing about this run: library tips, deprecations inside libraries, and
# warnings about choices kdlight makes on purpose (e.g. no sanity validation, step-based loops).
_IGNORED_WARNINGS = (
    r".*LeafSpec.*",
    r".*does not have many workers.*",
    r"Checkpoint directory .* exists and is not empty.*",
    r".*tensorboardX.*",
    r"You're resuming from a checkpoint that ended before the epoch ended.*",
    r".*The number of training batches \(\d+\) is smaller than the logging interval.*",
    r"Experiment logs directory .* exists and is not empty.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"Couldn't infer the batch indices.*",
    r".*predict returned None.*",
    r"You have overridden `transfer_batch_to_device` in `LightningModule` but have passed in a `LightningDataModule`.*",
)
_QUIET_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",  # "GPU available: False", tips, "max_steps reached"
    "lightning.pytorch.utilities.rank_zero",
    "lightning_fabric.utilities.seed",
    "pytorch_lightning.accelerators.cuda",
    "pytorch_lightning.callbacks.model_summary",
)


def tokenizing_worker_init(worker_id: int) -> None:
    """For DataLoader workers that tokenise: one tokenizer thread each. The Rust tokenizers' thread
    pool does not survive a fork: a worker whose parent had used it (threads > 1) hung in its first
    encode_batch. The workers are the parallelism."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a loop that makes millions of short-lived lists and
    no reference cycles (tokenising a split): its full passes walk every object the process holds
    (a model, transformers' modules) and took a third of a 50k-row DataModule setup. Reference
    counting still frees everything; the collector is back on afterwards, as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def quiet_libraries() -> None:
    """Silence, once per process, the messages listed above (kdlight's own log stays)."""
    for pattern in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging  # lazy: threads are exported before torch is imported (export_threads)

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    except ImportError:
        pass
    try:
        import datasets  # lazy: threads are exported before torch is imported (export_threads)

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass


def announce_once(key: object, message: str, *args: object, logger: logging.Logger | None = None) -> None:
    """Log `message` as a warning the first time `key` is seen in this process."""
    if key in _ANNOUNCED:
        return
    _ANNOUNCED.add(key)
    (logger or log).warning(message, *args)


_ANNOUNCED: set = set()


@contextmanager
def ctrl_c_recorded() -> Iterator[threading.Event]:
    """SIGINT raises KeyboardInterrupt as usual and also sets the yielded event: Lightning turns a
    KeyboardInterrupt during fit into `sys.exit(1)`, and the event tells that exit from any other.

    A SIGINT that lands while the garbage collector runs some object's `__del__` raises there, and
    Python only prints such an exception ("Exception ignored in ...") and carries on: the run would
    go on training as if nothing was pressed. The unraisable hook has a helper thread interrupt the
    main thread again a moment later, once that `__del__` has returned (from inside the hook the new
    interrupt would be raised in the hook, and swallowed again)."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield pressed
        return

    def interrupt(signum, frame):
        pressed.set()
        raise KeyboardInterrupt

    left = threading.Event()  # a late re-interrupt must not land in the code that reports the stop

    def interrupt_again():
        if not left.is_set():
            _thread.interrupt_main()

    def swallowed(unraisable):
        if issubclass(unraisable.exc_type, KeyboardInterrupt) and pressed.is_set():
            threading.Timer(0.01, interrupt_again).start()
            return
        previous_hook(unraisable)

    previous, previous_hook = signal.signal(signal.SIGINT, interrupt), sys.unraisablehook
    sys.unraisablehook = swallowed
    try:
        yield pressed
    finally:
        left.set()
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook


def is_launching_process() -> bool:
    """False in the worker processes a DDP launcher starts (they must not take the lock)."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


@contextmanager
def random_state_kept() -> Iterator[None]:
    """What runs inside (e.g. a teacher fine-tuned with its own seed) leaves Python's, NumPy's and torch's
    random generators, and Lightning's seed variables, as it found them."""
    import torch  # lazy: threads are exported before torch is imported (export_threads)

    state, numpy_state = random.getstate(), np.random.get_state()
    seeds = {key: os.environ.get(key) for key in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            random.setstate(state)
            np.random.set_state(numpy_state)
            for key, value in seeds.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
