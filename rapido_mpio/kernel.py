"""The kernel under test: a user's build tree, or the built-in default kernel.

Either way the result is a `Kernel`: a bootable image, its release, its .config and a module
directory with depmod's indexes. Nothing is written into the user's tree: module indexes for a
build tree are generated on a staging copy (symlinks) in the cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rapido_mpio import command, files, hostfs
from rapido_mpio.config import Config
from rapido_mpio.errors import SetupError, UntestableKernel

FRAGMENT = Path(__file__).resolve().parent.parent / "kconfig" / "mpio.config"


@dataclasses.dataclass(frozen=True)
class Kernel:
    image: Path  # bzImage / vmlinuz
    release: str
    config: dict[str, str]  # CONFIG_X -> y/m/"string"/number
    modules_dir: Path | None  # .../lib/modules/<release> with modules.dep; None: no modules
    identity: str  # changes whenever the modules change (cache key)
    label: str  # for humans: "build tree /src/linux" or "Debian linux-image-6.1.0-56-amd64"


def read_config(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            values[key] = value.strip('"')
    return values


RECOMMENDED_MARK = "# @recommended"


def required_options(fragment: Path = FRAGMENT) -> list[str]:
    """The fragment's y/m options above the `# @recommended` line."""
    text = fragment.read_text()
    required = text.split(RECOMMENDED_MARK, 1)[0]
    return [line.partition("=")[0] for line in required.splitlines()
            if line.startswith("CONFIG_") and line.partition("=")[2] in ("y", "m")]


def check_config(kernel: Kernel, fragment: Path = FRAGMENT) -> None:
    """Every option of the fragment must be y or m; list all missing ones at once."""
    missing = [k for k in required_options(fragment) if kernel.config.get(k) not in ("y", "m")]
    # the protocol channel is the second serial port, ttyS1
    uarts = kernel.config.get("CONFIG_SERIAL_8250_RUNTIME_UARTS", "4")
    if uarts.isdigit() and int(uarts) < 2:
        missing.append("CONFIG_SERIAL_8250_RUNTIME_UARTS>=2")
    if missing:
        raise UntestableKernel(
            f"{kernel.label} lacks {', '.join(missing)}.",
            hint=f"Enable them (the list is in {fragment.relative_to(FRAGMENT.parents[1])}; "
            "`make mpio-kconfig` merges it) and rebuild.",
        )


def from_config(cfg: Config) -> Kernel:
    if cfg.kernel_src is None and cfg.kernel_build is None:
        return default_kernel(cfg)
    return from_tree(cfg)


# --- a user's build tree ---------------------------------------------------------------


def build_dir(cfg: Config) -> Path:
    """The directory holding .config and the build output (O= / KBUILD_OUTPUT or the tree)."""
    src = cfg.kernel_src
    build = cfg.kernel_build or src
    assert build is not None
    if not build.is_dir():
        what = "KERNEL_BUILD" if cfg.kernel_build else "KERNEL_SRC"
        raise SetupError(f"Kernel tree {build} does not exist.",
                         hint=f"Point {what} at a kernel build tree.")
    if not (build / "Makefile").is_file():
        raise SetupError(f"{build} is not a kernel tree (no Makefile).",
                         hint="Point KERNEL_SRC at a Linux source or build directory.")
    if not (build / ".config").is_file():
        if src is not None and cfg.kernel_build is None and (src / "scripts").is_dir():
            raise SetupError(
                f"Kernel tree {build} has no .config: it is not configured, or was built "
                "elsewhere.",
                hint="Run `make mpio-kconfig` and build it, or set KERNEL_BUILD to its O= "
                "directory.")
        raise SetupError(f"Kernel build directory {build} has no .config.",
                         hint="Configure and build the kernel first.")
    return build


def from_tree(cfg: Config) -> Kernel:
    build = build_dir(cfg)
    image = build / "arch/x86/boot/bzImage"
    release_file = build / "include/config/kernel.release"
    if not image.is_file() or not release_file.is_file():
        raise SetupError(f"Kernel tree {build} is not built (no arch/x86/boot/bzImage).",
                         hint=f"Build it first: make -C {build} -j{cfg.jobs} bzImage modules.")
    config = read_config(build / ".config")
    release = release_file.read_text().strip()
    label = f"kernel tree {build}"
    if config.get("CONFIG_MODULES") != "y":
        return Kernel(image, release, config, None, _digest(release, str(image)), label)
    if not (build / "modules.order").is_file():
        raise UntestableKernel(f"Kernel tree {build} has modules enabled but none built.",
                               hint=f"Build them: make -C {build} -j{cfg.jobs} modules.")
    modules_dir, identity = _stage_modules(build, release, cfg.cache_dir)
    return Kernel(image, release, config, modules_dir, identity, label)


def _module_paths(build: Path) -> list[str]:
    """Relative .ko paths listed in modules.order (6.1 names .ko; later kernels .o)."""
    paths = []
    for line in (build / "modules.order").read_text().split():
        rel = line.removeprefix("kernel/")
        rel = rel[:-2] + ".ko" if rel.endswith(".o") else rel
        paths.append(rel)
    return paths


def _stage_modules(build: Path, release: str, cache: Path) -> tuple[Path, str]:
    """A lib/modules/<release> of symlinks into the tree, indexed by depmod, cached by stat."""
    rels = _module_paths(build)
    h = hashlib.sha256(release.encode())
    for name in ("modules.order", "modules.builtin"):
        f = build / name
        if f.exists():
            h.update(f.read_bytes())
    for rel in rels:
        try:
            st = (build / rel).stat()
        except FileNotFoundError:
            raise UntestableKernel(f"Kernel tree {build} lists {rel} in modules.order but it "
                                   "was not built.",
                                   hint=f"Rebuild the modules: make -C {build} modules.") from None
        h.update(f"{rel} {st.st_size} {st.st_mtime_ns}\n".encode())
    identity = h.hexdigest()[:16]
    root = cache / "staged" / f"{release}-{identity}"
    moddir = root / "lib/modules" / release
    if (moddir / "modules.dep").is_file():
        return moddir, identity
    with _staging(cache / "staged", "stage-") as tmp:
        tmp_moddir = tmp / "lib/modules" / release
        for rel in rels:
            link = tmp_moddir / "kernel" / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(build / rel)
        for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if (build / name).exists():
                shutil.copyfile(build / name, tmp_moddir / name)
        _depmod(tmp, release)
        _publish(tmp, root)
    return moddir, identity


# --- the built-in default kernel -------------------------------------------------------


def default_kernel(cfg: Config) -> Kernel:
    """Debian's kernel package, downloaded with apt and unpacked into the cache once."""
    pointer = cfg.cache_dir / "kernels" / f"{cfg.default_kernel}.json"
    if pointer.is_file():
        info = json.loads(pointer.read_text())
        root = Path(info["root"])
        if (root / ".complete").is_file():
            return _unpacked(root, info["package"], info["release"])
    package, version = _resolve_package(cfg.default_kernel)
    root = cfg.cache_dir / "kernels" / f"{package}_{version}"
    if not (root / ".complete").is_file():
        _download_and_unpack(package, root, cfg.cache_dir)
    release = _release_of(root)
    files.write_atomic(root / ".complete", (version + "\n").encode())
    files.write_atomic(pointer, json.dumps({"package": package, "release": release,
                                            "root": str(root)}).encode())
    return _unpacked(root, package, release)


def _unpacked(root: Path, package: str, release: str) -> Kernel:
    bzimage = root / "boot" / f"vmlinuz-{release}"
    config = read_config(root / "boot" / f"config-{release}")
    moddir = root / "lib/modules" / release
    image = bzimage
    if config.get("CONFIG_PVH") == "y":
        image = _uncompressed(bzimage, root / "boot" / f"vmlinux-{release}") or bzimage
    return Kernel(image, release, config, moddir, f"{package}-{release}", f"Debian {package}")


def _uncompressed(bzimage: Path, vmlinux: Path) -> Path | None:
    """The ELF inside an XZ/gzip bzImage, kept in the cache.

    QEMU boots an ELF kernel through its PVH entry, skipping the decompressor: Debian's XZ
    kernel reaches start_kernel 2.2 s sooner under TCG. Done once per cached kernel.
    """
    if vmlinux.is_file():
        return vmlinux
    import lzma
    import zlib

    def unxz(b: bytes) -> bytes:
        return lzma.LZMADecompressor().decompress(b)  # stops at the stream's end

    def gunzip(b: bytes) -> bytes:
        return zlib.decompressobj(31).decompress(b)

    data = bzimage.read_bytes()
    for magic, decompress in ((b"\xfd7zXZ\x00", unxz), (b"\x1f\x8b\x08", gunzip)):
        offset = data.find(magic)
        if offset < 0:
            continue
        try:
            elf = decompress(data[offset:])
        except (lzma.LZMAError, zlib.error):
            continue
        if elf[:4] == b"\x7fELF":
            files.write_atomic(vmlinux, elf)  # a concurrent cut writes the same bytes
            return vmlinux
    return None


def _resolve_package(meta: str) -> tuple[str, str]:
    """linux-image-amd64 -> (linux-image-6.1.0-NN-amd64, its candidate version)."""
    command.require("apt-cache", "apt")
    no_lists = SetupError(f"apt knows no package {meta}.",
                          hint="Run apt-get update (and check the name of default_kernel).")
    shown = command.run(["apt-cache", "show", "--no-all-versions", meta], error=no_lists)
    fields = _deb_fields(shown)
    package = meta
    for dep in fields.get("Depends", "").split(","):
        name = dep.strip().split(" ")[0]
        if name.startswith("linux-image-") and name != meta:
            package = name
            break
    if package != meta:
        fields = _deb_fields(command.run(["apt-cache", "show", "--no-all-versions", package],
                                         error=no_lists))
    return package, fields.get("Version", "unknown").replace(":", "_")


def _deb_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith(" "):
            key, _, value = line.partition(":")
            fields.setdefault(key, value.strip())
    return fields


def _download_and_unpack(package: str, root: Path, cache: Path) -> None:
    command.require("apt-get", "apt")
    command.require("dpkg-deb", "dpkg")
    command.require("depmod", "kmod")
    with _staging(cache / "kernels", "download-") as work:
        command.run(["apt-get", "download", package], cwd=work, error=SetupError(
            f"Could not download {package}.", hint="Check apt's sources and the network."))
        debs = sorted(work.glob("*.deb"))
        if not debs:
            raise SetupError(f"apt-get download {package} produced no .deb.")
        tree = work / "tree"
        command.run(["dpkg-deb", "-x", str(debs[0]), str(tree)])
        _depmod(tree, _release_of(tree))
        _publish(tree, root)


def _release_of(root: Path) -> str:
    releases = sorted(p.name for p in (root / "lib/modules").iterdir())
    if len(releases) != 1:
        raise SetupError(f"Expected one kernel release in {root}, found {releases}.")
    return releases[0]


# --- shared ------------------------------------------------------------------------------


def _depmod(base: Path, release: str) -> None:
    command.require("depmod", "kmod")
    command.run(["depmod", "-b", str(base), release])


@contextlib.contextmanager
def _staging(parent: Path, prefix: str) -> Iterator[Path]:
    """A new directory in the cache to build a tree in; gone when the block ends, however
    it ends (SIGTERM and SIGINT arrive as KeyboardInterrupt), unless published."""
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        with hostfs.writes_to(hostfs.Place.cache(parent)):
            yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished directory into place atomically. A concurrent cut that published
    first won: its tree is the same, so it is used and ours dropped."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():
            raise SetupError(f"Cannot move {tmp} to {final} in the cache: "
                             f"{e.strerror or e}.") from None


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
