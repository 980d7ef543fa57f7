"""`facefuse batch`: one source onto a whole folder, or explicit source,target[,output] pairs.

Kill-safe by construction: only the driver process writes, every output goes through
`write_bytes_atomic` (temp file + rename), so an output that exists is complete. A re-run
therefore skips every output that exists and redoes none; a `kill -9` loses at most the
images in flight. Results are appended to OUTDIR/report.jsonl as they arrive, one line each,
so a killed run keeps its report.

Workers (in-process, a local process pool, or Ray actors) each hold one Fuser and prepare
each distinct source once; they receive the target's bytes and send back encoded bytes, so a
Ray cluster needs no shared filesystem.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
import threading
import time
from collections import Counter, OrderedDict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .commands import (
    EXIT_ENGINE,
    EXIT_INPUT,
    EXIT_NOFACE,
    EXIT_OK,
    EXIT_USAGE,
    add_fusion_options,
    fusion_overrides,
    load_settings,
    parse_face_map,
)
from .config import MAX_DEFAULT_WORKERS, default_workers
from .errors import ConfigError, EngineError, FaceFuseError, InputError, NoFaceError, OutputExistsError, Terminated
from .io import FORMAT_NAMES, WRITABLE_SUFFIXES, no_space_error, remove_stale_temps

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
REPORT_NAME = "report.jsonl"
LOCK_NAME = ".facefuse-batch.lock"
MAPPED_SOURCE = "-"  # a job's source under --map: every source comes from the mapping
SOURCE_CACHE = 4  # prepared sources kept per worker (each holds the whole source photo)

EXIT_HELP = """exit codes (the first that applies):
  2  a bad option, --ray without Ray installed, or an engine that cannot start (nothing done)
  5  an engine or internal error on some image
  3  some input could not be read or some output written, or the folder/CSV is unusable
  4  some image (or a source) had no usable face
  0  every output was written or already existed
The report OUTDIR/report.jsonl has one line per input (input, output, status ok/skipped/failed,
reason, seconds) and a summary line per run."""


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path
    output: Path


# -- planning: which outputs to make --------------------------------------------------
def _out_suffix(fmt: str | None, input_path: Path) -> str:
    if fmt:
        return "." + fmt
    suffix = input_path.suffix.lower()
    return suffix if suffix in WRITABLE_SUFFIXES else ".jpg"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def list_images(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under folder (recursive, hidden files and `exclude` skipped), sorted."""
    found = []
    skip = exclude.resolve() if exclude is not None else None
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs
                         if not d.startswith(".") and (skip is None or (Path(root) / d).resolve() != skip))
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(root) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def plan_folder(source: Path, targets: Path, outdir: Path, fmt: str | None) -> list[Job]:
    if not targets.is_dir():
        raise InputError(f"{targets}: not a folder")
    if targets.resolve() == outdir.resolve():
        raise InputError(f"{outdir}: the output folder must not be the --targets folder")
    images = list_images(targets, exclude=outdir if _inside(outdir, targets) else None)
    if not images:
        raise InputError(f"{targets}: no image files found ({' '.join(sorted(IMAGE_SUFFIXES))})")
    jobs = [Job(source, img, outdir / img.relative_to(targets).with_suffix(_out_suffix(fmt, img))) for img in images]
    return _check_unique(jobs)


def plan_pairs(csv_path: Path, outdir: Path, fmt: str | None) -> list[Job]:
    """Rows `source,target[,output]`; an optional header row; `#` comments and blank lines skipped.

    Relative inputs are resolved against the CSV's folder, outputs against OUTDIR, and an
    output that would land outside OUTDIR is refused (so is the whole file, before any work).
    """
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: file not found")
    base = csv_path.parent
    try:
        rows = list(csv.reader(csv_path.read_text(encoding="utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{csv_path}: not a readable CSV file ({exc})") from exc
    jobs = []
    for n, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if n == 1 and [c.lower() for c in cells[:2]] == ["source", "target"]:
            continue
        where = f"{csv_path}:{n}"
        if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
            raise InputError(f"{where}: expected 'source,target[,output]', got {len(cells)} column(s)")
        source, target = base / cells[0], base / cells[1]
        if len(cells) == 3 and cells[2]:
            output = outdir / cells[2]
            if not _inside(output, outdir):
                raise InputError(f"{where}: output '{cells[2]}' is outside the output folder {outdir}")
            if output.suffix.lower() not in WRITABLE_SUFFIXES:
                raise InputError(f"{where}: output '{cells[2]}' must end in {' '.join(sorted(WRITABLE_SUFFIXES))}")
        else:
            output = outdir / f"{Path(cells[1]).stem}_{Path(cells[0]).stem}{_out_suffix(fmt, target)}"
        jobs.append(Job(source, target, output))
    if not jobs:
        raise InputError(f"{csv_path}: no rows")
    return _check_unique(jobs)


def _check_unique(jobs: list[Job]) -> list[Job]:
    """Two jobs writing one file, or a job writing over an input, is refused before any work."""
    seen: dict[Path, Job] = {}
    inputs = {p.resolve() for j in jobs for p in (j.source, j.target)}
    for job in jobs:
        key = job.output.resolve()
        if key in seen:
            raise InputError(f"{seen[key].target} and {job.target} would both write {job.output}; "
                             "rename one or give outputs with --pairs")
        if key in inputs:
            raise InputError(f"{job.output}: an output would replace an input")
        seen[key] = job
    return jobs


# -- the work, in whichever process runs it -------------------------------------------
class FuserWorker:
    """One Fuser plus the prepared sources it has seen; turns target bytes into output bytes.

    Never raises for a bad input: failures come back as a result with a reason.
    """

    def __init__(self, settings, params, quality: int, face_map: dict[int, tuple[str, bytes]] | None = None):
        from .pipeline import Fuser

        self.error: FaceFuseError | None = None
        try:
            self.fuser = Fuser(settings)
        except FaceFuseError as exc:  # e.g. an engine or model missing here: reported by run()
            self.error = exc
        self.params = params
        self.quality = quality
        self.sources: OrderedDict[str, Any] = OrderedDict()
        self.face_map = face_map  # target face index -> (photo name, its bytes): --map, the same for every target
        self.mapped: dict[int, Any] | FaceFuseError | None = None

    def _mapped(self) -> dict[int, Any]:
        """The --map sources, prepared once (a bad one fails every target at once)."""
        if self.mapped is None:
            try:
                self.mapped = {}
                for index, (name, data) in self.face_map.items():
                    image = self.fuser.read(data, name=f"--map source {name}")
                    try:
                        self.mapped[index] = self.fuser.prepare_source(image, self.params.source_face_index,
                                                                       self.params.threshold)
                    except NoFaceError as exc:
                        raise exc.named(f"--map source {name}") from None
            except FaceFuseError as exc:
                self.mapped = exc
        if isinstance(self.mapped, FaceFuseError):
            raise self.mapped.with_traceback(None)
        return self.mapped

    def _source(self, key: str, ref: Any):
        if key not in self.sources:
            try:
                image = self.fuser.read(_load_ref(ref), name=f"source {key}")
                p = self.params
                self.sources[key] = self.fuser.prepare_source(image, p.source_face_index, p.threshold)
            except NoFaceError as exc:
                self.sources[key] = exc.named(f"source {key}")
            except FaceFuseError as exc:
                self.sources[key] = exc  # a bad source fails each of its targets at once
            while len(self.sources) > SOURCE_CACHE:
                self.sources.popitem(last=False)
        self.sources.move_to_end(key)
        prepared = self.sources[key]
        if isinstance(prepared, FaceFuseError):
            raise prepared.with_traceback(None)
        return prepared

    def run(self, index: int, source_key: str, source_ref: Any, target: bytes, name: str, fmt: str) -> dict:
        t0 = time.perf_counter()
        if self.error is not None:
            return _failure(index, str(self.error), self.error.exit_code)
        try:
            data, faces = self._fuse(source_key, source_ref, target, name, fmt)
            return {"index": index, "status": "ok", "data": data, "faces": faces, "seconds": time.perf_counter() - t0}
        except FaceFuseError as exc:
            return _failure(index, str(exc), exc.exit_code, time.perf_counter() - t0)
        except Exception as exc:  # a bug must not stop the batch; it is reported with exit 5
            reason = f"internal error: {type(exc).__name__}: {exc}"
            return _failure(index, reason, EXIT_ENGINE, time.perf_counter() - t0)

    def _fuse(self, source_key: str, source_ref: Any, target: bytes, name: str, fmt: str) -> tuple[bytes, int]:
        mapped = self._mapped() if self.face_map else None
        source = None if mapped else self._source(source_key, source_ref)
        try:
            fused = self.fuser.fuse_encoded(source, target, self.params, fmt, self.quality, target_name=name,
                                            sources=mapped)
        except NoFaceError as exc:
            raise exc.named(name) from None
        return fused.data, len(fused.result.faces)


def _failure(index: int, reason: str, code: int, seconds: float = 0.0) -> dict:
    return {"index": index, "status": "failed", "reason": reason, "code": code, "seconds": seconds}


def _load_ref(ref) -> bytes:
    """A source is a local path (in-process, pool) or a boxed Ray object (fetched on first use)."""
    if isinstance(ref, str):
        from .io import read_bytes

        return read_bytes(ref, f"source {ref}")
    import ray

    return ray.get(ref[0])


# local process pool: one FuserWorker per process, created by the initializer
_WORKER: FuserWorker | None = None


def _init_process(settings, params, quality: int, face_map=None) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _exit_with_parent()
    _WORKER = FuserWorker(settings, params, quality, face_map)


def _run_in_process(*args) -> dict:
    assert _WORKER is not None
    return _WORKER.run(*args)


def _exit_with_parent() -> None:
    """Pool workers block on a pipe the parent never closes when it is killed with -9;
    this watcher makes them exit instead of lingering as orphans."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="facefuse-parent-watch").start()


# -- backends: each yields one result dict per task, in the order they finish ---------
Task = tuple  # (index, source_key, target path, output format)


def _read_target(task: Task) -> bytes | dict:
    """The target's bytes, read by the driver (workers may be on other machines)."""
    from .io import read_bytes

    try:
        return read_bytes(task[2], task[2])
    except InputError as exc:
        return _failure(task[0], str(exc), exc.exit_code)


def run_inline(tasks: Iterable[Task], settings, params, quality: int, face_map=None) -> Iterator[dict]:
    worker = FuserWorker(settings, params, quality, face_map)
    for index, key, target, fmt in tasks:
        data = _read_target((index, key, target, fmt))
        yield data if isinstance(data, dict) else worker.run(index, key, key, data, target, fmt)


def run_pool(tasks: Iterable[Task], settings, params, quality: int, workers: int, face_map=None) -> Iterator[dict]:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # mediapipe does not survive fork after init
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_process,
                               initargs=(settings, params, quality, face_map))
    pending: dict = {}
    todo = iter(tasks)
    try:
        while True:
            while len(pending) < 2 * workers:  # a small window keeps every worker busy
                task = next(todo, None)
                if task is None:
                    break
                data = _read_target(task)
                if isinstance(data, dict):
                    yield data
                    continue
                index, key, target, fmt = task
                pending[pool.submit(_run_in_process, index, key, key, data, target, fmt)] = index
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                index = pending.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    yield _failure(index, "a worker process died", EXIT_ENGINE)
                    raise EngineError("a worker process died (out of memory?); re-run to continue") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _import_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # silences a token notice on local clusters
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray, which is not installed: pip install 'facefuse[ray]'") from None
    return ray


def _start_ray(address: str, workers: int | None):
    import logging

    ray = _import_ray()

    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    on_term = signal.getsignal(signal.SIGTERM)
    if address == "local":
        ray.init(num_cpus=workers or os.cpu_count(), **quiet)
    else:
        ray.init(address=address, **quiet)
    if on_term is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)  # ours (a clean shutdown), not Ray's crash handler
    return ray


def run_ray(tasks: list[Task], settings, params, quality: int, workers: int | None, address: str,
            face_map=None) -> Iterator[dict]:
    """One actor (holding a Fuser) per worker, two calls queued on each, results by ray.wait."""
    ray = _start_ray(address, workers)
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = min(workers, max(1, len(tasks)))
        actor_cls = ray.remote(num_cpus=1)(FuserWorker)
        actors = {slot: actor_cls.remote(settings, params, quality, face_map) for slot in range(workers)}
        load = dict.fromkeys(actors, 0)
        sources: dict[str, Any] = {}  # source path -> [ObjectRef] (boxed: the actor fetches it once) or error
        pending: dict = {}  # ObjectRef -> (slot, index)
        todo = iter(tasks)
        while True:
            for slot in list(actors):
                while load[slot] < 2:
                    task = next(todo, None)
                    if task is None:
                        break
                    index, key, target, fmt = task
                    if key not in sources:
                        try:  # with --map the actors hold every source already
                            sources[key] = [ray.put(b"" if face_map else _load_ref(key))]
                        except InputError as exc:
                            sources[key] = exc
                    data = _read_target(task)
                    if isinstance(sources[key], InputError):
                        data = _failure(index, str(sources[key]), EXIT_INPUT)
                    if isinstance(data, dict):
                        yield data
                        continue
                    pending[actors[slot].run.remote(index, key, sources[key], data, target, fmt)] = (slot, index)
                    load[slot] += 1
            if not pending:
                return
            done, _ = ray.wait(list(pending), num_returns=1)
            slot, index = pending.pop(done[0])
            load[slot] -= 1
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayActorError:
                actors.pop(slot, None)  # its other queued calls fail the same way
                yield _failure(index, "a Ray worker died", EXIT_ENGINE)
                if not actors:
                    raise EngineError("every Ray worker died; re-run to continue") from None
            except ray.exceptions.RayError as exc:
                yield _failure(index, f"Ray error: {type(exc).__name__}", EXIT_ENGINE)
    finally:
        ray.shutdown()


# -- the driver: plan, skip, dispatch, write, report ---------------------------------
class Report:
    """OUTDIR/report.jsonl, one line per result, appended with one write() each."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(self.fd).st_size
        if size:  # a run killed mid-line leaves no newline: start on a fresh line
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    os.write(self.fd, b"\n")

    def add(self, record: dict) -> None:
        try:
            os.write(self.fd, (json.dumps(record) + "\n").encode())
        except OSError as exc:  # a full disk stops the run with its one line (exit 3), not an internal error
            raise no_space_error(exc, self.path) or exc from None

    def close(self) -> None:
        os.close(self.fd)


def _lock(outdir: Path):
    """One batch per output folder at a time (released by the OS even after kill -9)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    fd = os.open(outdir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InputError(f"{outdir}: another batch is writing to this folder") from None
    return fd


def _remove_stale_temps(jobs: list[Job]) -> None:
    """Temp files a killed run left beside its outputs (never visible under an output name)."""
    by_folder: dict[Path, set[str]] = {}
    for job in jobs:
        by_folder.setdefault(job.output.parent, set()).add(job.output.name)
    for folder, names in by_folder.items():
        remove_stale_temps(folder, names)


def run_batch(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    params = settings.fusion_params(**fusion_overrides(args))  # bad values fail before any work
    quality = settings.output_quality(args.quality)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {args.workers}")
    from .engines import available

    if settings.inference.engine not in available():
        raise ConfigError(f"inference.engine: unknown engine '{settings.inference.engine}'; "
                          f"choose one of {', '.join(available())}")
    if args.ray:
        _import_ray()  # a missing extra is reported before any work
    outdir = Path(args.output)
    face_map = _read_face_map(args)
    if args.targets:
        if face_map:
            source = Path(MAPPED_SOURCE)
        elif not args.source or args.source == MAPPED_SOURCE:
            raise ConfigError("--targets needs --source (or --map)")
        else:
            source = Path(args.source)
            if not source.is_file():
                raise InputError(f"source {source}: file not found")
        jobs = plan_folder(source, Path(args.targets), outdir, args.format)
    else:
        if args.source:
            raise ConfigError("--source goes with --targets; --pairs rows name their own source")
        if face_map:
            raise ConfigError("--map goes with --targets; --pairs rows name their own source")
        jobs = plan_pairs(Path(args.pairs), outdir, args.format)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir}: exists and is not a folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        lock = _lock(outdir)
        report = Report(outdir / REPORT_NAME)
    except OSError as exc:
        raise InputError(f"{outdir}: cannot write there ({exc.strerror or exc})") from None
    previous = _terminate_like_interrupt()
    try:
        return _execute(args, jobs, settings, params, quality, report, face_map)
    finally:
        report.close()
        if lock is not None:  # the lock file goes with the run (removed while still held)
            (outdir / LOCK_NAME).unlink(missing_ok=True)
            os.close(lock)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate_like_interrupt():
    """SIGTERM unwinds like Ctrl-C, so the pool or the local Ray instance is shut down cleanly."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise Terminated

    return signal.signal(signal.SIGTERM, stop)


def _read_face_map(args: argparse.Namespace) -> dict[int, tuple[str, bytes]] | None:
    """--map INDEX=PHOTO,...: each photo (relative to the working folder) read here, by the
    driver, so workers on other machines need no shared files."""
    if not args.face_map:
        return None
    from .io import read_bytes

    if args.source and args.source != MAPPED_SOURCE:
        raise ConfigError("--map names every source; leave out --source (or give --source -)")
    return {index: (path, read_bytes(path, f"--map source {path}"))
            for index, path in parse_face_map(args.face_map).items()}


def _execute(args, jobs: list[Job], settings, params, quality: int, report: Report, face_map=None) -> int:
    from tqdm import tqdm

    from .io import write_bytes_atomic

    _remove_stale_temps(jobs)
    started = time.perf_counter()
    counts: Counter = Counter()
    codes: Counter = Counter()
    todo: list[int] = []
    for i, job in enumerate(jobs):
        if job.output.exists() and not args.overwrite:
            report.add(_record(job, "skipped", "output exists", 0.0, None, time.perf_counter() - started))
            counts["skipped"] += 1
        else:
            todo.append(i)
    # grouped by source so each worker's source cache hits; stable, so folder order is kept
    todo.sort(key=lambda i: str(jobs[i].source))
    tasks = [(i, str(jobs[i].source), str(jobs[i].target), _fmt(jobs[i].output)) for i in todo]
    workers = args.workers if args.ray else min(args.workers or default_workers(), max(1, len(tasks)))
    if settings.inference.threads == 0 and (args.ray or workers > 1):
        # one worker per core: OpenCV's own threads would only oversubscribe them
        settings = settings.model_copy(update={"inference": settings.inference.model_copy(update={"threads": 1})})
    if not tasks:
        results: Iterator[dict] = iter(())
    elif args.ray:
        results = run_ray(tasks, settings, params, quality, workers, args.ray, face_map)
    elif workers > 1:
        results = run_pool(tasks, settings, params, quality, workers, face_map)
    else:
        results = run_inline(tasks, settings, params, quality, face_map)
    bar = tqdm(total=len(tasks), unit="img", file=sys.stderr, dynamic_ncols=True, smoothing=0.1, disable=None)
    try:
        for res in results:
            job = jobs[res["index"]]
            status, reason = res["status"], res.get("reason", "")
            if status == "ok":
                try:
                    job.output.parent.mkdir(parents=True, exist_ok=True)
                    write_bytes_atomic(job.output, res["data"], overwrite=args.overwrite)
                except OutputExistsError:  # appeared meanwhile (written by someone else): keep it
                    status, reason = "skipped", "output exists"
                except (OSError, InputError) as exc:
                    status, reason = "failed", f"cannot write {job.output}: {getattr(exc, 'strerror', None) or exc}"
                    res["code"] = EXIT_INPUT
            if res.get("code") == EXIT_USAGE:  # the workers cannot start (bad engine/model): stop now
                raise ConfigError(reason)
            counts[status] += 1
            if status == "failed":
                codes[res["code"]] += 1
                named = reason if reason.startswith(str(job.target)) else f"{job.target}: {reason}"
                bar.write(f"failed: {named}", file=sys.stderr)
            report.add(_record(job, status, reason, res["seconds"], res.get("faces"), time.perf_counter() - started))
            bar.update(1)
    finally:
        bar.close()
        if hasattr(results, "close"):
            results.close()  # shuts the pool / Ray down, also on Ctrl-C
    seconds = time.perf_counter() - started
    code = _exit_code(codes)
    done = counts["ok"]
    summary = {"status": "summary", "ok": done, "skipped": counts["skipped"], "failed": counts["failed"],
               "total": len(jobs), "no_face": codes[EXIT_NOFACE], "seconds": round(seconds, 3),
               "images_per_s": round(done / seconds, 3) if seconds > 0 else 0.0, "exit_code": code}
    report.add(summary)
    if not tasks:
        print(f"batch: all {len(jobs)} outputs already exist, nothing to do (--overwrite redoes them); "
              f"report: {report.path}")
    else:
        print(f"batch: {done} written, {counts['skipped']} skipped (already done), {counts['failed']} failed "
              f"({codes[EXIT_NOFACE]} no face) of {len(jobs)} in {seconds:.1f} s, {summary['images_per_s']:.2f} "
              f"img/s; report: {report.path}")
    return code


def _fmt(output: Path) -> str:
    return WRITABLE_SUFFIXES[output.suffix.lower()]


def _record(job: Job, status: str, reason: str, seconds: float, faces: int | None, at: float) -> dict:
    """One report line; `seconds` is the work on this image, `at` the time since the run started."""
    rec = {"input": str(job.target), "source": str(job.source), "output": str(job.output), "status": status,
           "reason": reason, "seconds": round(seconds, 4)}
    if faces is not None:
        rec["faces"] = faces
    rec["at"] = round(at, 3)
    return rec


def _exit_code(codes: Counter) -> int:
    if not codes:
        return EXIT_OK
    if any(c not in (EXIT_INPUT, EXIT_NOFACE) for c in codes):
        return EXIT_ENGINE
    return EXIT_INPUT if codes[EXIT_INPUT] else EXIT_NOFACE


def add_parser(sub) -> None:
    p = sub.add_parser(
        "batch", help="fuse one source onto every image of a folder, or the pairs of a CSV file",
        description="Kill-safe batch fusion: outputs are written atomically, a re-run skips outputs "
                    "that exist and redoes none.",
        epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", help="the source face (with --targets)")
    p.add_argument("--map", dest="face_map", metavar="INDEX=PHOTO,...",
                   help="with --targets, instead of --source: fuse these faces of every target (indices as "
                        "`facefuse detect` lists them), each from its own photo (paths relative to the working folder)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--targets", help="a folder: every image in it and its subfolders; outputs mirror its tree")
    what.add_argument("--pairs", help="a CSV of source,target[,output] rows: paths relative to the CSV, outputs "
                                      "relative to OUTDIR and inside it (default OUTDIR/<target>_<source>.<ext>)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (created if missing)")
    add_fusion_options(p)
    p.add_argument("--workers", type=int, help=f"worker processes, each with its own models (default: the number of "
                                                f"cores, at most {MAX_DEFAULT_WORKERS}; with --ray: the cluster's CPUs)")
    p.add_argument("--ray", metavar="ADDRESS", help="'local' starts a local Ray instance; an address joins a cluster "
                                                    "(needs pip install 'facefuse[ray]')")
    p.add_argument("--format", choices=FORMAT_NAMES, help="output format (default: the input's when it is "
                                                            "jpg/png/webp, else jpg)")
    p.add_argument("--quality", type=int, help="JPEG/WebP quality 1-100 (default 95)")
    p.add_argument("--overwrite", action="store_true", help="redo and replace outputs that exist")
    p.set_defaults(run=run_batch)
