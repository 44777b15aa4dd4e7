"""The chapter runner: execute the book's notebooks with papermill, in place or into a folder.

The chapters are listed in ``_toc.yml``; each chapter notebook may carry a time
budget in its metadata (``{"pneumo": {"budget_seconds": 180}}``) and the earlier chapters
whose writes change its outputs (``"after": ["06_how_sure"]``: 06 stores the temperature that
07's explorer shows). The runner

* executes each chosen chapter into a temporary file beside it, with the chosen
  profile and any single-value overrides injected into its ``parameters`` cell,
* replaces the stored notebook only when the whole chapter succeeded (a failing
  chapter leaves the previously stored notebook untouched and names the cell),
* reports the wall time of every chapter against its budget as a table,
* with ``jobs=2`` runs two chapters at a time, in table-of-contents order, each one only after
  the chapters it is ``after`` have finished. Chapters that need the same cached model do not
  need to say so: the model cache trains an entry in one process while the other waits for it
  (:func:`pneumo_lib.experiments.finished_training`). A chapter's time then includes sharing the
  CPU; its budget is for a run alone.

Two ways of running leave the stored chapters alone:

* ``out``: the executed notebooks are written to that folder (``<out>/<chapter>.ipynb``;
  a failing chapter's partial run to ``<out>/<chapter>.failed.ipynb``); the kernel's working
  folder is still the chapter's, so relative paths work. Claims are not strict there
  (:mod:`pneumo_lib.prose`): a reader's run may differ from the stored text, a crash may not;
  the report counts each chapter's unsupported claims.
* ``rehearse`` (with ``profile="full"`` and ``out``): every code path of the full profile on
  CPU with small sizes and counts (:mod:`pneumo_lib.rehearsal`). Its report ends with an
  estimate (not a measurement) of a full run of each chapter on a Colab T4, from the trainings
  each chapter ran (the model cards it wrote) and CPU rates measured after the chapters
  (:mod:`pneumo_lib.colab_estimate`; the records go to ``<out>/rehearsal-trainings.json``).
  Models a chapter loads from a warm cache cost it nothing there: estimate with an empty
  ``PNEUMO_HOME`` model cache.

Runs that store chapters in place make claims strict (a false ``prose.claim`` stops them).
"""

from __future__ import annotations

import ast
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from pneumo_lib import prose
from pneumo_lib.profiles import PROFILES


class ChapterError(RuntimeError):
    """A chapter could not be found or failed to execute.

    A chapter that failed while executing carries its :class:`ChapterRun` (time, peak
    memory, ``error``) as ``run``.
    """

    run: "ChapterRun | None" = None


@dataclass(frozen=True)
class Chapter:
    """One executable chapter of the book.

    Attributes:
        name: The notebook's stem, e.g. ``"00_getting_started"``.
        path: Absolute path of the ``.ipynb`` file.
        budget_seconds: Wall-time budget of a quick-profile run, or ``None``.
        after: Stems of earlier chapters whose writes change this chapter's outputs (e.g. a
            temperature stored in a model card); a run of several chapters at a time starts
            it only once they have finished.
    """

    name: str
    path: Path
    budget_seconds: float | None
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChapterRun:
    """The result of executing one chapter: its wall time against its budget.

    Attributes:
        chapter: The chapter.
        seconds: Wall time of the execution (kernel start included).
        output: Where the executed notebook went when run with ``out`` (None: stored in place).
        unsupported_claims: Statements of the text this run's outputs did not support (only
            runs with ``out``; in place a false claim stops the chapter).
        error: Why the chapter failed (runs with ``out`` go on after a failing chapter), or None.
        peak_mb: Peak resident memory of the chapter's kernel (and its children) in MB,
            sampled twice a second (runs with ``out``; None when unmeasured).
    """

    chapter: Chapter
    seconds: float
    output: Path | None = None
    unsupported_claims: tuple[str, ...] = ()
    error: str | None = None
    peak_mb: float | None = None

    @property
    def over_budget(self) -> bool:
        """True when the chapter has a budget and took longer than it."""
        budget = self.chapter.budget_seconds
        return budget is not None and self.seconds > budget


def find_book_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding ``_toc.yml``: ``start`` (default: cwd) or its nearest parent.

    Raises:
        ChapterError: No ``_toc.yml`` above ``start``.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    raise ChapterError(
        f"No _toc.yml found in {here} or any parent folder. Run this inside the book's "
        "checkout or pass --root."
    )


def _toc_files(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        if "file" in node:
            yield str(node["file"])
        for value in node.values():
            if isinstance(value, (list, dict)):
                yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def list_chapters(root: str | os.PathLike[str] | None = None) -> list[Chapter]:
    """The notebook chapters of the book in table-of-contents order.

    Args:
        root: The book root (the folder with ``_toc.yml``); found from cwd if ``None``.

    Raises:
        ChapterError: A chapter's ``pneumo.after`` names a chapter that is not before it in
            ``_toc.yml`` (running the chapters in order must stay a valid schedule).
    """
    import yaml

    book_root = find_book_root(root)
    toc = yaml.safe_load((book_root / "_toc.yml").read_text(encoding="utf-8"))
    chapters: list[Chapter] = []
    for entry in [toc.get("root"), *_toc_files(toc.get("parts") or toc.get("chapters") or [])]:
        if not entry:
            continue
        path = book_root / entry
        if path.suffix != ".ipynb":
            path = path.with_suffix(".ipynb")
        if not path.is_file():
            continue  # a Markdown page, not an executable chapter
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("pneumo", {})
        budget = meta.get("budget_seconds")
        after = meta.get("after", [])
        earlier = [c.name for c in chapters]
        if isinstance(after, str) or not all(name in earlier for name in after):
            raise ChapterError(
                f"{path}: metadata pneumo.after is {after!r}; it must list chapters that come "
                f"before {path.stem} in _toc.yml ({', '.join(earlier) or 'none do'}), so that "
                "running the chapters in order stays a valid schedule.")
        chapters.append(Chapter(path.stem, path, float(budget) if budget is not None else None, tuple(after)))
    return chapters


def select_chapters(names: Iterable[str], chapters: list[Chapter]) -> list[Chapter]:
    """Pick chapters by stem, by unique prefix (``"01"``) or by file path.

    Raises:
        ChapterError: A name matches no chapter or several; lists the valid names.
    """
    names = list(names)
    if not names:
        return list(chapters)
    chosen = []
    for name in names:
        stem = Path(name).stem
        matches = [c for c in chapters if c.name == stem] or [
            c for c in chapters if c.name.startswith(stem)
        ]
        if len(matches) != 1:
            valid = ", ".join(c.name for c in chapters)
            what = "matches several chapters" if matches else "is not a chapter"
            raise ChapterError(f"{name!r} {what}. Valid chapters: {valid}.")
        chosen.append(matches[0])
    return chosen


def declared_parameters(path: Path) -> dict[str, Any]:
    """Names and default values assigned in a notebook's ``parameters`` cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            found: dict[str, Any] = {}
            for node in ast.parse(source).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target = node.targets[0]
                    if isinstance(target, ast.Name):
                        try:
                            found[target.id] = ast.literal_eval(node.value)
                        except ValueError:
                            found[target.id] = ast.unparse(node.value)
            return found
    raise ChapterError(f"{path.name} has no cell tagged 'parameters'; every chapter needs one.")


def _write_without_injected_cells(source: Path, target: Path) -> None:
    """Copy a notebook, dropping the parameters a previous run injected."""
    nb = json.loads(source.read_text(encoding="utf-8"))
    nb["cells"] = [
        c for c in nb["cells"] if "injected-parameters" not in c.get("metadata", {}).get("tags", [])
    ]
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _strip_run_metadata(path: Path) -> None:
    """Drop papermill's per-cell timestamps so re-runs do not churn the stored files."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb.get("metadata", {}).pop("papermill", None)
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def unsupported_claims(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The statements an executed notebook's outputs flag as unsupported, in cell order.

    Reads the output metadata ``{"pneumo": {"unsupported_claim": statement}}`` that
    :func:`pneumo_lib.prose.claim` writes when a claim does not hold in a non-strict run.
    """
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    found = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            statement = (output.get("metadata") or {}).get("pneumo", {}).get(prose.UNSUPPORTED_KEY)
            if statement:
                found.append(str(statement))
    return tuple(found)


def check_out_dir(out: str | os.PathLike[str], chapters: Iterable[Chapter]) -> Path:
    """The folder executed chapters go to, refused when it would hold stored chapters.

    Raises:
        ChapterError: ``out`` is a file, or lies in (or is) a folder holding chosen
            chapters (``book/``): the stored notebooks would be overwritten.
    """
    folder = Path(out).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ChapterError(f"--out {out} is a file; pass a folder for the executed chapters.")
    for chapter in chapters:
        home = chapter.path.parent.resolve()
        if folder == home or home in folder.parents:
            raise ChapterError(
                f"--out {out} lies in {home}, the folder of the stored chapters; they would be "
                "overwritten. Pass a folder outside it, e.g. --out _build/rehearsal.")
    return folder


class _PeakMemory:
    """Sample the summed resident memory of this process's descendants (the kernel) in a thread."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.peak = 0
        self.measured = False

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self.interval):
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self.measured = True

    def __enter__(self):
        import threading

        self._stop = threading.Event()
        try:
            import psutil  # noqa: F401  (installed with ipykernel)
        except ImportError:
            self._thread = None
            return self
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return False

    @property
    def megabytes(self) -> float | None:
        return self.peak / 1e6 if self.measured else None


class _environment:
    """Set (value) or unset (None) environment variables for a block; restore them after."""

    def __init__(self, values: dict[str, str | None]):
        self.values = values
        self.saved: dict[str, str | None] = {}

    def __enter__(self):
        for key, value in self.values.items():
            self.saved[key] = os.environ.get(key)
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        return self

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        return False


def run_chapter(chapter: Chapter, parameters: dict[str, Any], *, kernel_name: str | None = None,
                out_dir: str | os.PathLike[str] | None = None,
                env: dict[str, str | None] | None = None) -> ChapterRun:
    """Execute one chapter with papermill, in place or into ``out_dir``.

    Only parameters whose value differs from the chapter's declared default are
    injected, so a quick-profile run stores a notebook without an injected cell.

    Args:
        chapter: The chapter to run.
        parameters: Values for its ``parameters`` cell (undeclared names are skipped).
        kernel_name: Jupyter kernel; default: the notebook's own.
        out_dir: None: replace the stored notebook, claims strict. A folder: write
            ``<out_dir>/<chapter>.ipynb`` and leave the stored notebook alone; claims are
            not strict and the unsupported ones are counted.
        env: Extra environment variables for the kernel (None as a value unsets one),
            e.g. those of a rehearsal; the runner's own environment is restored afterwards.

    Raises:
        ChapterError: The chapter failed; the message names the cell and the error,
            and the stored notebook is left as it was.
    """
    import papermill

    declared = declared_parameters(chapter.path)
    inject = {k: v for k, v in parameters.items() if k in declared and declared[k] != v}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    target_dir = chapter.path.parent if out_dir is None else check_out_dir(out_dir, [chapter])
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / chapter.path.name
    variables = {
        # A stored chapter never contradicts its text: a false prose.claim stops it. A run into
        # another folder is a reader's run: an unsupported claim is a note, counted below.
        prose.CLAIMS_ENV: "strict" if out_dir is None else None,
        # A headless MPLBACKEND=Agg (common on servers and CI) would make plt.show() draw
        # nothing and silently drop every figure from the stored chapter.
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        **(env or {}),
    }
    fd, tmp_name = tempfile.mkstemp(prefix=f".{chapter.name}.", suffix=".ipynb", dir=target_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    _write_without_injected_cells(chapter.path, tmp)
    start = time.perf_counter()
    memory = _PeakMemory()
    try:
        with _environment(variables), memory:
            papermill.execute_notebook(
                str(tmp),
                str(tmp),
                parameters=inject,
                cwd=str(chapter.path.parent),
                kernel_name=kernel_name,
                progress_bar=False,
                log_output=False,
            )
    except papermill.PapermillExecutionError as err:
        failed_after = time.perf_counter() - start
        kept = ""
        if out_dir is not None:
            failed = target.with_suffix(".failed.ipynb")
            os.replace(tmp, failed)
            kept = f" The partial run is in {failed}."
        tmp.unlink(missing_ok=True)
        error = ChapterError(
            f"Chapter {chapter.name} failed in cell {err.cell_index} "
            f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
            f"The stored notebook {chapter.path} was left unchanged.{kept}"
        )
        error.run = ChapterRun(chapter, failed_after, error=str(error), peak_mb=memory.megabytes)
        raise error from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - start
    if out_dir is None:
        _strip_run_metadata(tmp)  # a run into a folder keeps papermill's per-cell durations
    os.replace(tmp, target)
    if out_dir is None:
        return ChapterRun(chapter, seconds)
    target.with_suffix(".failed.ipynb").unlink(missing_ok=True)
    return ChapterRun(chapter, seconds, output=target, unsupported_claims=unsupported_claims(target),
                      peak_mb=memory.megabytes)


def _say(message: str) -> None:
    print(message, flush=True)


def _run_isolated(chapter: Chapter, parameters: dict[str, Any], kernel_name: str | None,
                  out: str | os.PathLike[str] | None, env: dict[str, str | None]) -> ChapterRun:
    """:func:`run_chapter` in a worker process: a failure comes back as the run's ``error``."""
    try:
        return run_chapter(chapter, parameters, kernel_name=kernel_name, out_dir=out, env=env)
    except ChapterError as err:
        return getattr(err, "run", None) or ChapterRun(chapter, 0.0, error=str(err))


def run_side_by_side(chapters: list[Chapter], parameters: dict[str, Any], *, jobs: int,
                     kernel_name: str | None = None, out: str | os.PathLike[str] | None = None,
                     env: dict[str, str | None] | None = None, echo: Any = _say) -> list[ChapterRun]:
    """Execute chapters ``jobs`` at a time, each in its own worker process and kernel.

    Chapters start in the order given (table-of-contents order), each once every chapter it
    is ``after`` (among ``chapters``) has finished; the others it leaves alone. In place
    (``out`` None), a failure stops new chapters from starting: the running ones finish, and
    those not started keep their stored notebooks. With ``out`` every chapter runs.

    Returns:
        The runs in the order of ``chapters``; a failed chapter's run has its ``error``, a
        chapter not started after a failure is missing.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    if jobs < 1:
        raise ValueError(f"jobs must be 1 or more, got {jobs}.")
    chosen = {c.name for c in chapters}
    waiting, running, finished = list(chapters), {}, {}
    stop = False
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while running or (waiting and not stop):
            for chapter in list(waiting):
                if stop or len(running) >= jobs:
                    break
                if all(name in finished or name not in chosen for name in chapter.after):
                    waiting.remove(chapter)
                    echo(f"running {chapter.name} ...")
                    running[pool.submit(_run_isolated, chapter, parameters, kernel_name, out, env or {})] = chapter
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                run = future.result()
                finished[running.pop(future).name] = run
                if run.error is None:
                    claims = f", {len(run.unsupported_claims)} unsupported claim(s)" if run.output else ""
                    echo(f"  {run.chapter.name} done in {run.seconds:.1f} s{claims}")
                else:
                    echo(f"  FAILED: {run.error}")
                    stop = stop or out is None
    return [finished[c.name] for c in chapters if c.name in finished]


def format_report(runs: list[ChapterRun], profile: str, notes: Iterable[str] = (), *,
                  jobs: int = 1, wall_seconds: float | None = None) -> str:
    """A plain-text table of chapter wall times against budgets.

    With ``jobs`` above 1 (chapters run side by side) a ``wall time`` line follows the total
    (``wall_seconds``), saying that each chapter's time includes sharing the CPU.

    Runs into a folder (``out``) get a ``peak MB`` column (the kernel's peak resident memory)
    and a ``claims`` column: how many of the text's claims the chapter's outputs did not support. ``notes`` are appended as lines (e.g. which weights
    and data of a rehearsal are stand-ins).
    """
    width = max([len("chapter")] + [len(r.chapter.name) for r in runs])
    claims = any(r.output is not None for r in runs)
    claims_head = f"  {'peak MB':>7}  {'claims':>6}" if claims else ""
    lines = [
        f"Chapter times (profile {profile}):",
        f"  {'chapter':<{width}}  {'seconds':>8}  {'budget':>8}{claims_head}  status",
    ]
    for run in runs:
        budget = run.chapter.budget_seconds
        status = "FAILED" if run.error else "OVER BUDGET" if run.over_budget else "ok"
        budget_text = f"{budget:8.0f}" if budget is not None else f"{'-':>8}"
        peak = f"{run.peak_mb:7.0f}" if run.peak_mb is not None else f"{'-':>7}"
        claims_text = f"  {peak}  {len(run.unsupported_claims):>6}" if claims else ""
        lines.append(f"  {run.chapter.name:<{width}}  {run.seconds:8.1f}  {budget_text}{claims_text}  {status}")
    total = sum(r.seconds for r in runs)
    lines.append(f"  {'total':<{width}}  {total:8.1f}")
    if jobs > 1 and wall_seconds is not None:
        lines.append(f"  {'wall time':<{width}}  {wall_seconds:8.1f}  ({jobs} chapters at a time: a chapter's "
                     "seconds include sharing the CPU; its budget is for a run alone)")
    if claims and any(r.unsupported_claims for r in runs):
        lines.append("Unsupported claims (a reader's run may differ from the stored text):")
        for run in runs:
            for statement in run.unsupported_claims:
                lines.append(f"  {run.chapter.name}: {statement}")
    lines.extend(notes)
    return "\n".join(lines)


def _colab_section(records: list, data_dir: Path, out: Path, echo: Any, error: str = "",
                   measure: bool = True) -> str:
    """The rehearsal report's estimate of a full run on a Colab T4 (:mod:`pneumo_lib.colab_estimate`)."""
    from pneumo_lib import colab_estimate

    if error:
        return f"Estimated full run on a Colab T4 (estimate, not measured): unavailable: {error}"
    saved = colab_estimate.write_records(out / "rehearsal-trainings.json", records)
    if not measure:
        return ("Estimated full run on a Colab T4 (estimate, not measured): not computed in this run "
                f"(--no-t4-estimate); the trainings each chapter ran are in {saved}, and "
                f"`python benchmarks/colab_estimate.py {saved} --images {data_dir}` measures this CPU "
                "and computes it.")
    echo(f"measuring this CPU for the Colab T4 estimate (records in {saved}) ...")
    try:
        images = sorted(p for p in (data_dir / "train").glob("*/*") if p.suffix.lower() in (".jpeg", ".jpg"))
        cpu = colab_estimate.measure_cpu(records, images, echo=echo)
        return colab_estimate.format_section(
            [colab_estimate.estimate_chapter(r, cpu) for r in records], cpu)
    except colab_estimate.EstimateError as err:
        return f"Estimated full run on a Colab T4 (estimate, not measured): unavailable: {err}"


def run_book(
    names: Iterable[str] = (),
    *,
    profile: str = "quick",
    overrides: dict[str, Any] | None = None,
    root: str | os.PathLike[str] | None = None,
    kernel_name: str | None = None,
    echo: Any = None,
    out: str | os.PathLike[str] | None = None,
    rehearse: bool = False,
    report: str | os.PathLike[str] | None = None,
    t4_estimate: bool = True,
    jobs: int = 1,
) -> list[ChapterRun]:
    """Execute chapters (all, by default) with a profile; print progress and a report.

    Args:
        names: Chapter stems, unique prefixes or paths; empty means every chapter.
        profile: A profile name (validated against :data:`pneumo_lib.profiles.PROFILES`).
        overrides: Single parameter values to inject, e.g. ``{"epochs": 2}``. Each must
            be declared by at least one chosen chapter's parameters cell.
        root: The book root; found from cwd if ``None``.
        kernel_name: Jupyter kernel; default: the notebook's own.
        echo: Where progress lines go (default: stdout, flushed).
        out: None: store the executed chapters in place (claims strict). A folder outside
            the chapters' own: write them there and leave ``book/`` byte-identical (claims
            not strict, counted in the report); every chapter is run even when one fails.
        rehearse: Rehearse the full profile on CPU (needs ``profile="full"`` and ``out``):
            the chapters' kernels get :func:`pneumo_lib.rehearsal.prepare`'s environment; the
            report gets the section "Estimated full run on a Colab T4 (estimate, not measured)".
        report: Also write the report table to this file (before raising for failed chapters).
        t4_estimate: With ``rehearse``: measure this CPU after the chapters (a few minutes)
            and add the Colab T4 estimate to the report. False: only save the trainings to
            ``<out>/rehearsal-trainings.json`` (``benchmarks/colab_estimate.py`` estimates
            from it later).
        jobs: Chapters executed at a time (:func:`run_side_by_side`); 1: one after the other.
            Not with ``rehearse``, which tells each chapter's trainings apart by running
            them one at a time.

    Returns:
        One :class:`ChapterRun` per executed chapter, in order.

    Raises:
        ValueError: Unknown profile, ``rehearse`` without ``profile="full"`` or ``out`` (or
            with ``jobs`` above 1), or ``jobs`` below 1.
        ChapterError: Unknown chapter, undeclared override, ``out`` inside the chapters'
            folder, or a failing chapter (in place: the chapters before it keep their new
            outputs, it and those after it keep their stored ones; with ``out``: raised after
            the report, naming every failed chapter).
    """
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}. Valid profiles: {', '.join(PROFILES)}.")
    if rehearse and profile != "full":
        raise ValueError(f"--rehearse rehearses the full profile; pass --profile full (got {profile!r}).")
    if rehearse and out is None:
        raise ValueError("--rehearse needs --out DIR: a rehearsal never replaces the stored chapters.")
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs takes a whole number of chapters at a time, 1 or more; got {jobs!r}.")
    if rehearse and jobs > 1:
        raise ValueError("--rehearse runs one chapter at a time (its Colab T4 estimate counts each chapter's "
                         f"trainings); drop --jobs {jobs}.")
    chosen = select_chapters(names, list_chapters(root))
    if out is not None:
        check_out_dir(out, chosen)
    overrides = dict(overrides or {})
    declared_by_any = set()
    for chapter in chosen:
        declared_by_any |= set(declared_parameters(chapter.path))
    undeclared = sorted(set(overrides) - declared_by_any)
    if undeclared:
        raise ChapterError(
            f"No chosen chapter declares the parameter(s) {', '.join(undeclared)}. "
            f"Declared: {', '.join(sorted(declared_by_any))}."
        )
    parameters = {"profile": profile, **overrides}
    echo = echo or _say
    env: dict[str, str | None] = {}
    notes: list[str] = []
    if rehearse:
        from pneumo_lib import rehearsal

        echo("preparing the rehearsal (data, weights) ...")
        began = time.perf_counter()
        setup = rehearsal.prepare()
        env, notes = setup.env, [*setup.notes, f"rehearsal prepared in {time.perf_counter() - began:.1f} s "
                                 "(data and weights; reused on the next run)"]
        for line in notes:
            echo(line)
    runs = []
    records = []  # rehearsal: the trainings each chapter ran, for the Colab T4 estimate
    if rehearse:
        from pneumo_lib import colab_estimate, paths

        seen: set = set()
        estimate_error = ""
        cards = colab_estimate.snapshot_cards(paths.model_cache_dir())
    clock = time.perf_counter()
    if jobs > 1:
        runs = run_side_by_side(chosen, parameters, jobs=jobs, kernel_name=kernel_name, out=out, env=env,
                                echo=echo)
    else:
        for chapter in chosen:
            echo(f"running {chapter.name} ...")
            if out is None:
                run = run_chapter(chapter, parameters, kernel_name=kernel_name)
            else:
                start = time.perf_counter()
                try:
                    run = run_chapter(chapter, parameters, kernel_name=kernel_name, out_dir=out, env=env)
                except ChapterError as err:
                    run = getattr(err, "run", None) or ChapterRun(chapter, time.perf_counter() - start, error=str(err))
                    echo(f"  FAILED: {err}")
            if run.error is None:
                claims = f", {len(run.unsupported_claims)} unsupported claim(s)" if run.output else ""
                echo(f"  done in {run.seconds:.1f} s{claims}")
            runs.append(run)
            if rehearse:
                after = colab_estimate.snapshot_cards(paths.model_cache_dir())
                try:
                    trained = tuple(colab_estimate.new_trainings(cards, after, seen))
                except colab_estimate.EstimateError as err:
                    estimate_error, trained = estimate_error or f"{chapter.name}: {err}", ()
                records.append(colab_estimate.ChapterRecord(chapter.name, run.seconds, trained))
                cards = after
    label = f"{profile}, rehearsal" if rehearse else profile
    table = format_report(runs, label, notes, jobs=jobs, wall_seconds=time.perf_counter() - clock)
    if rehearse:
        table += "\n" + _colab_section(records, setup.data_dir, Path(out), echo, estimate_error,
                                       measure=t4_estimate)
    echo(table)
    if report is not None:
        report = Path(report)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(table + "\n", encoding="utf-8")
    failed = [r for r in runs if r.error]
    if failed:
        ran = {r.chapter.name for r in runs}
        skipped = [c.name for c in chosen if c.name not in ran]
        not_run = (f"\nNot started after the failure (their stored notebooks are unchanged): {', '.join(skipped)}."
                   if skipped else "")
        raise ChapterError(f"{len(failed)} chapter(s) failed:\n" + "\n".join(r.error for r in failed) + not_run)
    return runs
