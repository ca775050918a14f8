"""The pipeline, config -> kernel -> image -> vm -> verdict, for the CLI and for bisect."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import io
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rapido_mpio.config import Config
from rapido_mpio.errors import (
    ExitCode,
    Interrupted,
    MpioError,
    SetupError,
    UntestableKernel,
)

if TYPE_CHECKING:  # cut must not pay for importing the boot side
    from rapido_mpio import results, vm
    from rapido_mpio.image import Image
    from rapido_mpio.scenario import Scenario
    from rapido_mpio.verdict import Verdict


@dataclasses.dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    run_dir: Path
    seconds: float
    retried: str | None = None  # why the first boot was not the verdict (it froze)


@dataclasses.dataclass(frozen=True)
class Repeated:
    """The same scenario booted several times on the same image."""

    scenario: str
    outcomes: tuple[Outcome, ...]

    @property
    def exit_code(self) -> ExitCode:
        """Any FAIL is a FAIL: an intermittent regression is still a regression. 125 or 255
        only when every run says so; a mix of PASS and untestable runs counts as PASS."""
        codes = [o.verdict.exit_code for o in self.outcomes]
        if ExitCode.FAIL in codes:
            return ExitCode.FAIL
        if len(set(codes)) == 1:
            return codes[0]
        return ExitCode.PASS if ExitCode.PASS in codes else ExitCode.SETUP

    def distribution(self) -> str:
        """'failover: 20/20 PASS', or 'failover: 17 PASS, 3 FAIL: kernel_paths x3'."""
        n = len(self.outcomes)
        results = collections.Counter(o.verdict.result for o in self.outcomes)
        if len(results) == 1:
            (result,) = results
            text = f"{self.scenario}: {n}/{n} {result}"
        else:
            text = f"{self.scenario}: " + ", ".join(
                f"{count} {result}" for result, count in results.most_common())
        why = collections.Counter(c.name for o in self.outcomes for c in o.verdict.failed)
        if why:
            text += ": " + ", ".join(f"{name} x{count}" for name, count in why.most_common())
        return text


def cut(cfg: Config, log: TextIO = sys.stderr) -> Image:
    """The cached layers for the kernel; any scenario that uses the image boots on them."""
    from rapido_mpio import image, kernel, scenario

    began = time.monotonic()
    sc = scenario.load(cfg.cut_dir, cfg.scenario)  # it names the image manifest
    sc.check_settings(cfg.disk_size)
    manifest = image.load_manifest(cfg.cut_dir, sc.image)
    k = kernel.from_config(cfg)
    kernel.check_config(k)
    out = _writable(cfg.output_dir / "image", cfg.output_dir)
    img = image.cut(manifest, k, cfg.cache_dir, out, cfg.compression)
    print(f"rapido-mpio: cut {img.manifest} for {k.label} ({k.release}): {out / 'image.json'}"
          f", {len(img.layers)} layers, {img.size / 1e6:.1f} MB in "
          f"{time.monotonic() - began:.2f}s", file=log)
    return img


def boot(cfg: Config, out: TextIO = sys.stdout, log: TextIO = sys.stderr) -> Outcome:
    """Boot the cut image with cfg.scenario: the scenario is chosen here, not at cut."""
    from rapido_mpio import hostfs, image, report, scenario, verdict, vm

    began = time.monotonic()
    img = image.load_image(cfg.output_dir / "image")
    sc = scenario.load(cfg.cut_dir, cfg.scenario).with_env(cfg.scenario_env).with_policy(
        cfg.path_selector, cfg.path_grouping)
    if sc.image != img.manifest:
        raise SetupError(f"Scenario {sc.name} needs image {sc.image}, but the image in "
                         f"{cfg.output_dir / 'image'} was cut from {img.manifest}.",
                         hint=f"Cut it again with --scenario {sc.name}, or use run.")
    sc.check_settings(cfg.disk_size)
    _check_selectors(sc, img)
    run_dir = _new_run_dir(cfg.output_dir, sc.name)
    with hostfs.writes_to(hostfs.Place.output(cfg.output_dir), hostfs.Place.scratch()):
        record = vm.boot(img, sc, cfg, run_dir)
        result = verdict.decide(record, sc.name, sc.kernel_log_allow, sc.expect_fail)
        retried = None
        froze = froze_before_scenario(record, result)
        if froze is not None:
            # said nothing about the kernel (README, Known problems): once more, never
            # silently; the first run keeps its own result.json, and a second freeze stays
            # untestable
            report.save(record, result, img, cfg.output_dir)
            retried = {"reason": froze, "first_run": str(run_dir)}
            print(f"rapido-mpio: {froze} Booting once more; the first run is in {run_dir}.",
                  file=log)
            run_dir = _new_run_dir(cfg.output_dir, sc.name)
            record = vm.boot(img, sc, cfg, run_dir)
            result = verdict.decide(record, sc.name, sc.kernel_log_allow, sc.expect_fail)
        report.save(record, result, img, cfg.output_dir, retried=retried)
    if record.host_fs:  # saved in result.json; no verdict to print
        raise SetupError(record.host_fs)
    print(f"rapido-mpio: {img.kernel_label} {img.kernel_release}, {record.accel}", file=log)
    report.print_summary(result, record, out)
    if retried is not None:
        print(f"  retried: {retried['reason']} First run: {retried['first_run']}", file=out)
    return Outcome(result, run_dir, time.monotonic() - began,
                   retried["reason"] if retried else None)


def froze_before_scenario(record: vm.RunRecord, result: Verdict) -> str | None:
    """Why the run is a freeze, or None. A freeze: the guest stopped before the scenario
    began, QEMU ran on (no panic, no reboot) and the kernel did not answer sysrq, so it
    was not stuck somewhere a task dump could show. A kernel that answers is alive and
    hangs in itself: that is its own untestable verdict, not retried. After the scenario
    began, a stop is a hang and a FAIL, as a regression looks; never retried."""
    if result.exit_code != ExitCode.UNTESTABLE or record.timed_out is None \
            or record.first("SCENARIO") is not None:
        return None
    if record.hang is not None and record.hang.dump:
        return None
    step = record.last_step()
    where = f"init's step {step.name}" if step is not None else "the kernel's boot"
    return (f"The guest froze in {where}, before the scenario began: QEMU ran on and the "
            f"kernel printed no task dump.")


def repeat(cfg: Config, times: int, out: TextIO = sys.stdout,
           log: TextIO = sys.stderr) -> Repeated:
    """Boot the cut image `times` times, as many VMs at a time as a matrix runs (one when
    the console streams: its lines would interleave); one summary per run, then the
    distribution."""
    from rapido_mpio import forked, pool, qemu

    if times == 1:
        outcome = boot(cfg, out=out, log=log)
        return Repeated(outcome.verdict.scenario, (outcome,))
    at_once = 1 if cfg.console else cfg.vms or pool.default_vms(
        cfg, qemu.detect_accel(cfg.accel).name)

    def one(i: int) -> Outcome:
        # a repeat prints a line per run (the files keep the rest), and one host line
        return boot(cfg, out=io.StringIO(), log=log if i == 0 else io.StringIO())

    outcomes: list[Outcome] = []
    for outcome in forked.run(one, times, at_once):
        outcomes.append(outcome)
        v = outcome.verdict
        why = "" if v.result == "PASS" else ": " + (
            ", ".join(f"{c.name} {c.observed}" for c in v.failed) or v.reason)
        again = ", booted twice: the first froze" if outcome.retried else ""
        print(f"run {len(outcomes)}/{times}: {v.result}{why} ({outcome.seconds:.1f}s{again}, "
              f"{outcome.run_dir})", file=out, flush=True)
    result = Repeated(outcomes[0].verdict.scenario, tuple(outcomes))
    print(result.distribution(), file=out)
    return result


def matrix(cfg: Config, file: Path | None, shard: str | None = None, list_only: bool = False,
           kcidb: Path | None = None, out: TextIO = sys.stdout,
           log: TextIO = sys.stderr) -> ExitCode:
    """Every combination the matrix file lists: each kernel cut once, the combinations booted
    several at a time, then matrix.json, JUnit, HTML (and KCIDB) in the output directory."""
    import shutil

    from rapido_mpio import matrix as mx
    from rapido_mpio import pool, progress, qemu, results, scenario
    from rapido_mpio.image import SELECTOR_OPTIONS

    began = time.monotonic()
    plan = mx.load(file or cfg.cut_dir / "matrix.yaml", cfg)
    shards = "1/1"
    if shard:
        index, count = mx.parse_shard(shard)
        plan, shards = plan.shard(index, count), f"{index}/{count}"
    if list_only:
        for c in plan.combinations:
            print(c.id, file=out)
        return ExitCode.PASS
    qemu.find_binary(cfg.qemu)  # a setup problem is one sentence now, not one per child
    accel = qemu.detect_accel(cfg.accel)
    root = _writable(cfg.output_dir, cfg.output_dir)
    with _sole_matrix(root):  # held until the reports are written
        work = root / "matrix-runs"
        shutil.rmtree(work, ignore_errors=True)  # the last matrix's runs: stale now
        if work.exists():  # each combination's run must be the only one in its directory
            raise SetupError(f"Cannot remove the last matrix's runs in {work}.",
                             hint="Remove it by hand, or choose another --output-dir.")
        kernels: list[results.KernelInfo] = []
        untestable: dict[str, str] = {}
        has: dict[str, tuple[str, ...] | None] = {}  # each kernel's selectors (None: unknown)
        # each scenario read once: it names the combination's image and its selectors
        loaded = {name: scenario.load(cfg.cut_dir, name)
                  for name in {c.scenario for c in plan.combinations}}
        image_of = {c: loaded[c.scenario].image for c in plan.combinations}
        for spec in plan.kernels:
            # each image the kernel's combinations boot, cut once (a scenario names its image)
            firsts = {image_of[c]: c.scenario for c in reversed(plan.combinations)
                      if c.kernel == spec.id}
            try:
                for name, first in sorted(firsts.items()):
                    img = cut(cfg.replace(kernel_src=spec.src, kernel_build=spec.build,
                                          scenario=first,
                                          output_dir=root / "kernels" / spec.id / name), log)
            except UntestableKernel as e:  # its combinations are untestable; the others run
                untestable[spec.id] = str(e)
                kernels.append(results.KernelInfo(spec.id, spec.id, "", str(spec.src)))
                continue
            kernels.append(results.KernelInfo(
                spec.id, img.kernel_label, img.kernel_release,
                str(spec.src) if spec.src else cfg.default_kernel))
            has[spec.id] = img.selectors
        vms = cfg.vms or pool.default_vms(cfg, accel.name)
        found: dict[results.Combination, results.CombinationResult] = {}
        jobs = []
        for i, c in enumerate(plan.combinations, 1):
            if c.kernel in untestable:
                found[c] = results.CombinationResult(c, "UNTESTABLE", int(ExitCode.UNTESTABLE),
                                                     untestable[c.kernel])
                continue
            missing = _lacking(loaded[c.scenario].with_policy(
                c.selector or "scenario", c.grouping or "scenario"), has[c.kernel])
            if missing:  # not a property of this kernel's dm-multipath: skipped, and said why
                found[c] = results.CombinationResult(
                    c, "SKIPPED", int(ExitCode.PASS),
                    f"The kernel lacks the {missing[0]} path selector "
                    f"({SELECTOR_OPTIONS.get(missing[0], '?')}).")
                continue
            slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", c.id.replace("/", "."))
            jobs.append(pool.Job(c, work / f"{i:02d}-{slug}",
                                 root / "kernels" / c.kernel / image_of[c] / "image"))
        with progress.Progress(len(plan.combinations), vms, out) as view:
            for r in found.values():
                view.finished(r)
            try:  # closing: the pool has stopped every child before the interrupt goes on
                with contextlib.closing(pool.run(jobs, cfg, vms, root,
                                                 on_tick=view.tick)) as finished:
                    for r in finished:
                        found[r.combination] = r
                        view.finished(r)
            except KeyboardInterrupt:
                raise Interrupted("the running combinations were stopped, and with them "
                                  "their QEMUs") from None
        result = results.MatrixResult(
            matrix=str(plan.file), shards=(shards,), seconds=round(time.monotonic() - began, 1),
            jobs=vms, kernels=tuple(kernels),
            results=tuple(found[c] for c in plan.combinations))
        written = _reports(result, root, cfg, kcidb)
        s = result.summary()
        print(f"rapido-mpio: matrix: {s.passed} PASS, {s.failed} FAIL, {s.controls_as_declared} "
              f"negative controls failed as declared, {s.controls_not_as_declared} did not, "
              f"{s.untestable} untestable, {s.skipped} skipped, {s.errors} errors, in "
              f"{result.seconds:.0f}s "
              f"(exit {int(result.exit_code)})", file=out)
        print("  reports: " + ", ".join(str(p) for p in written), file=out)
        return result.exit_code


def coverage(cfg: Config, file: Path | None, shard: str | None = None,
             kcidb: Path | None = None, out: TextIO = sys.stdout,
             log: TextIO = sys.stderr) -> ExitCode:
    """The matrix on a gcov build of the tree (made in the cache), then the coverage of
    dm-multipath it reached. The exit code is the matrix's: its verdicts still stand."""
    from rapido_mpio import coverage as cov
    from rapido_mpio import gcovbuild, results

    if cfg.kernel_src is None and cfg.kernel_build is None:
        raise SetupError("Coverage needs a kernel tree to build with gcov; Debian's kernel "
                         "has no counters.",
                         hint="Give one with --kernel-src (KERNEL_SRC), or run from it.")
    built = gcovbuild.ensure(cfg, log)
    print(f"rapido-mpio: gcov build ready in {built.seconds:.0f}s: {built.build}", file=log)
    # the guests send their counters only when asked: a run of a gcov kernel without it
    # spares the ~20 KB of base64 through the emulated serial port
    cmdline = f"{cfg.kernel_cmdline} {cov.GUEST_ARG}".strip()
    code = matrix(cfg.replace(kernel_src=built.src, kernel_build=built.build,
                              kernel_cmdline=cmdline), file, shard, kcidb=kcidb, out=out, log=log)
    ran = results.MatrixResult.read(cfg.output_dir / "matrix.json")
    report = cov.collect(ran, cfg.output_dir, built, cfg.output_dir / "coverage")
    total = report.total()
    print(f"rapido-mpio: coverage of dm-multipath: {total.functions_hit}/{total.functions} "
          f"functions, {total.lines_hit}/{total.lines} lines, from {len(report.counted)} "
          f"combinations; {len(report.unreached)} functions not reached", file=out)
    for f in report.files:
        print(f"  {f.file}: {f.functions_hit}/{f.functions} functions, "
              f"{f.lines_hit}/{f.lines} lines", file=out)
    print(f"  report: {cfg.output_dir / 'coverage' / 'coverage.txt'}, line by line: "
          f"{cfg.output_dir / 'coverage' / 'html' / 'index.html'}", file=out)
    return code


def merge(cfg: Config, parts: list[Path], kcidb: Path | None = None,
          out: TextIO = sys.stdout) -> ExitCode:
    """Shards' matrix.json joined into one report, with every run directory still linked."""
    from rapido_mpio import results

    root = _writable(cfg.output_dir, cfg.output_dir)
    read = []
    for part in parts:
        r = results.MatrixResult.read(part)
        rebased = tuple(dataclasses.replace(c, run_dir=os.path.relpath(
            part.parent / c.run_dir, root) if c.run_dir else "") for c in r.results)
        read.append(dataclasses.replace(r, results=rebased))
    result = results.merge(read)
    written = _reports(result, root, cfg, kcidb)
    s = result.summary()
    print(f"rapido-mpio: merged {len(parts)} shards, {s.total} combinations (exit "
          f"{int(result.exit_code)}): " + ", ".join(str(p) for p in written), file=out)
    return result.exit_code


def _lacking(sc: Scenario, selectors: tuple[str, ...] | None) -> list[str]:
    """The path selectors the scenario names and the kernel lacks (none known lacking for
    an image.json from before selectors were recorded)."""
    return [] if selectors is None else sorted(sc.selectors() - set(selectors))


def _reports(result: results.MatrixResult, root: Path, cfg: Config,
             kcidb: Path | None) -> list[Path]:
    from rapido_mpio import reports

    return reports.write_all(result, root, cfg.templates_dir, kcidb)


def _check_selectors(sc: Scenario, img: Image) -> None:
    """A kernel without the path selector a scenario names cannot run it: that says nothing
    about its dm-multipath, so it is untestable, not a FAIL."""
    from rapido_mpio.image import SELECTOR_OPTIONS

    missing = _lacking(sc, img.selectors)
    if missing:
        options = ", ".join(SELECTOR_OPTIONS.get(m, "?") for m in missing)
        raise UntestableKernel(
            f"Scenario {sc.name} uses the {', '.join(missing)} path selector, which "
            f"{img.kernel_label} lacks ({options}).",
            hint="Enable it and rebuild, or choose another scenario.")


@contextlib.contextmanager
def _sole_matrix(root: Path) -> Iterator[None]:
    """One matrix at a time in an output directory: a second would delete the first's runs
    and overwrite its reports. The kernel drops the lock when its holder dies, even by
    SIGKILL, so a dead matrix never blocks the next."""
    try:
        fd = os.open(root / ".matrix.lock",
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise SetupError(f"Cannot lock the output directory {root}: "
                         f"{e.strerror.lower() if e.strerror else e}.",
                         hint="Choose another with --output-dir.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise SetupError(
            f"Another matrix{f' (pid {holder})' if holder.isdecimal() else ''} is running "
            f"in {root}; two in one output directory would delete each other's runs.",
            hint="Wait for it to end, or choose another --output-dir.") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # for the sentence above
        yield
    finally:
        os.close(fd)


def _writable(path: Path, output_dir: Path) -> Path:
    """The directory, made if need be, once a file can be made in it: a directory that is
    already there says nothing about a read-only file system."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".rapido-mpio-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise _unwritable(output_dir, e) from None
    return path


def _unwritable(output_dir: Path, e: OSError) -> SetupError:
    return SetupError(f"Cannot write to the output directory {output_dir}: "
                      f"{e.strerror.lower() if e.strerror else e}.",
                      hint="Choose another with --output-dir.")


def _new_run_dir(output_dir: Path, scenario: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs = _writable(output_dir / "runs", output_dir)
    for n in range(1000):
        candidate = runs / (f"{stamp}-{scenario}" + (f"-{n}" if n else ""))
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as e:
            raise _unwritable(output_dir, e) from None
    raise MpioError(f"Cannot create a run directory under {runs}.")
