"""The image: layered newc archives that the kernel unpacks in order.

  base      userspace from the host (busybox, multipath-tools, xfsprogs, udev, rootfs/);
            cached by the identity of its inputs, so a bisect step never rebuilds it
  modules   the kernel's modules in load order; cached per kernel identity
  scenario  the guest script and its settings; tiny, written for each boot

`cut` builds the cached layers and names them in image.json; each boot puts the scenario
layer in front of them (`assemble`), so any scenario boots without a new cut. What goes
in is declared in cut/<image>.yaml; this module only knows how to pack it.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

from rapido_mpio import cache, command, cpio, elfdeps, files, hostfs
from rapido_mpio.errors import SetupError, UntestableKernel
from rapido_mpio.inputs import Record, load_yaml, parse_json, read_text
from rapido_mpio.kernel import Kernel
from rapido_mpio.modules import ModuleIndex
from rapido_mpio.scenario import Scenario
from rapido_mpio.topology import guest_errors

# Debian 12 is merged-/usr; the image is too, so host paths and busybox applets agree.
MERGED_USR = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
DPKG_STATUS = Path("/var/lib/dpkg/status")


def _code_identity() -> str:
    """The packing code is an input of every layer too: a change to it invalidates them."""
    h = hashlib.sha256()
    for module in (__file__, cpio.__file__, elfdeps.__file__):
        h.update(Path(module).read_bytes())
    return h.hexdigest()[:12]


FORMAT_VERSION = _code_identity()


@dataclasses.dataclass(frozen=True)
class Manifest:
    path: Path
    busybox: str
    binaries: tuple[str, ...]
    dlopen: tuple[str, ...]  # globs
    files: tuple[str, ...]
    links: dict[str, str]
    rootfs: Path | None
    modules_required: tuple[str, ...]
    modules_optional: tuple[str, ...]

    def dlopened(self) -> list[str]:
        """Host files matching the dlopen globs; a glob that matches nothing is an error."""
        return _globbed(self.dlopen)


@dataclasses.dataclass(frozen=True)
class Image:
    """What boot needs: written by cut as image.json. The layers live in the cache."""

    manifest: str  # cut/<manifest>.yaml; a scenario names the one it needs
    kernel_image: Path
    kernel_release: str
    kernel_label: str
    layers: tuple[Path, ...]
    # the dm-multipath path selectors the kernel has (None: an image.json from before this)
    selectors: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest, "kernel_image": str(self.kernel_image),
            "kernel_release": self.kernel_release, "kernel_label": self.kernel_label,
            "layers": [str(p) for p in self.layers],
            "selectors": None if self.selectors is None else list(self.selectors),
        }

    @staticmethod
    def from_json(data: Record) -> Image:
        """What to_json wrote; a field of another type is a ValueError."""
        selectors = data.optional("selectors", list)
        paths = (data.get("kernel_image", str), *data.strings("layers"))
        if not all(p.isprintable() for p in paths):
            raise ValueError("a path with control characters")
        return Image(data.get("manifest", str), Path(paths[0]), data.get("kernel_release", str),
                     data.get("kernel_label", str), tuple(Path(p) for p in paths[1:]),
                     None if selectors is None else data.strings("selectors"))

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.layers)


def load_manifest(cut_dir: Path, name: str, seen: tuple[str, ...] = ()) -> Manifest:
    """cut/<name>.yaml; with `extends: BASE`, BASE's manifest plus what this one adds (so an
    image for a few scenarios, e.g. with fio, does not weigh down every other boot)."""
    path = cut_dir / f"{name}.yaml"
    if name in seen:
        raise SetupError(f"Image manifest {path} extends itself (through "
                         f"{' -> '.join(seen)}).")
    if not path.is_file():
        raise SetupError(f"No image manifest {path}.")
    data = load_yaml(read_text(path, "image manifest", "Fix the manifest."),
                     f"Image manifest {path}", "Fix the manifest.")
    keys = {"extends", "busybox", "binaries", "dlopen", "files", "links", "rootfs", "modules"}
    if not isinstance(data, dict) or not set(data) <= keys:
        raise SetupError(f"Image manifest {path} must be a mapping with keys "
                         + ", ".join(sorted(keys)) + ".")
    base = load_manifest(cut_dir, str(data["extends"]), (*seen, name)) \
        if "extends" in data else None

    def more(key: str, inherited: tuple[str, ...]) -> tuple[str, ...]:
        return inherited + tuple(map(str, data.get(key) or ()))

    modules = data.get("modules") or {}
    rootfs = data.get("rootfs")
    return Manifest(
        path=path,
        busybox=str(data.get("busybox", base.busybox if base else "/bin/busybox")),
        binaries=more("binaries", base.binaries if base else ()),
        dlopen=more("dlopen", base.dlopen if base else ()),
        files=more("files", base.files if base else ()),
        links={**(base.links if base else {}),
               **{str(k): str(v) for k, v in (data.get("links") or {}).items()}},
        rootfs=path.parent / str(rootfs) if rootfs else (base.rootfs if base else None),
        modules_required=tuple(map(str, modules.get("required") or ())) +
        (base.modules_required if base else ()),
        modules_optional=tuple(map(str, modules.get("optional") or ())) +
        (base.modules_optional if base else ()),
    )


# --- a layer under construction -----------------------------------------------------------


class Layer:
    """Entries keyed by image path; host paths are added with every symlink on the way."""

    def __init__(self) -> None:
        self.entries: dict[str, cpio.Entry] = {}

    def add(self, entry: cpio.Entry) -> None:
        self.entries[entry.path.strip("/")] = dataclasses.replace(entry,
                                                                  path=entry.path.strip("/"))

    def add_host(self, path: str) -> None:
        """Copy a host path, recreating each symlink met on the way (e.g. /sbin -> usr/sbin)."""
        parts = Path(path).parts[1:]
        current = "/"
        for i, part in enumerate(parts):
            current = os.path.join(current, part)
            if os.path.islink(current):
                target = os.readlink(current)
                self.add(cpio.Entry.symlink(current, target))
                resolved = os.path.normpath(os.path.join(os.path.dirname(current), target))
                self.add_host(os.path.join(resolved, *parts[i + 1:]))
                return
        st = os.stat(current)
        if stat.S_ISDIR(st.st_mode):
            self.add(cpio.Entry.directory(current, stat.S_IMODE(st.st_mode)))
        else:
            self.add(cpio.Entry.host_file(current, current, stat.S_IMODE(st.st_mode), st.st_size))

    def add_tree(self, root: Path) -> None:
        """A project directory copied over the image root (rootfs/)."""
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                host = Path(dirpath) / name
                rel = "/" + str(host.relative_to(root))
                st = host.stat()
                self.add(cpio.Entry.host_file(rel, str(host), stat.S_IMODE(st.st_mode) | 0o644,
                                              st.st_size))

    def write(self, path: Path, compression: str) -> Path:
        """Write atomically: an interrupted, failed or concurrent cut leaves no half layer
        and no temp file in the cache."""
        with hostfs.writes_to(hostfs.Place.cache(path.parent)), \
                files.temp_beside(path) as tmp:
            with open(tmp, "wb") as out:
                cpio.write(out, self.entries.values())
            if compression == "zstd":
                zstd = command.require("zstd", "zstd")
                with files.temp_beside(path, ".zst") as packed:
                    command.run([zstd, "-q", "-f", "-T0", "-10", str(tmp), "-o", str(packed)])
                    os.replace(packed, path)
            else:
                os.replace(tmp, path)
        return path


# --- base layer ------------------------------------------------------------------------------


def base_key(manifest: Manifest, compression: str) -> str:
    """Identity of everything the base layer is made of, without reading ELF files."""
    h = hashlib.sha256(f"{FORMAT_VERSION} {compression}\n".encode())
    h.update(manifest.path.read_bytes())
    h.update(repr(dataclasses.replace(manifest, path=Path())).encode())  # with its base's
    paths = [manifest.busybox, *manifest.binaries, *manifest.files, *manifest.dlopened()]
    if DPKG_STATUS.exists():  # a package upgrade may change a library no binary names
        paths.append(str(DPKG_STATUS))
    if manifest.rootfs:
        paths += sorted(str(p) for p in manifest.rootfs.rglob("*") if p.is_file())
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            h.update(f"{p} missing\n".encode())
            continue
        h.update(f"{p} {st.st_size} {st.st_mtime_ns} {st.st_ino}\n".encode())
    return h.hexdigest()[:20]


def build_base(manifest: Manifest, cache_dir: Path, compression: str) -> Path:
    out = cache_dir / "layers" / f"base-{base_key(manifest, compression)}.cpio"
    if out.exists():
        cache.used(out)
        return out
    layer = Layer()
    for top, target in MERGED_USR.items():
        layer.add(cpio.Entry.symlink(top, target))
    for d in ("dev", "proc", "sys", "run", "tmp", "mnt", "etc", "var", "root"):
        layer.add(cpio.Entry.directory(d))
    missing = [p for p in (manifest.busybox, *manifest.binaries, *manifest.files)
               if not os.path.exists(p)]
    if missing:
        raise SetupError(f"Host files named in {manifest.path} are missing: "
                         + ", ".join(missing) + ".",
                         hint="Install the packages: make setup (or scripts/setup-debian.sh).")
    _add_busybox(layer, manifest.busybox)
    try:
        closure = elfdeps.closure([*manifest.binaries, *manifest.dlopened()])
    except elfdeps.MissingLibrary as e:
        raise SetupError(f"{e}.", hint="Install the package that provides it.") from None
    for path in [*closure, *manifest.files]:
        layer.add_host(path)
    for link, target in manifest.links.items():
        layer.add(cpio.Entry.symlink(_in_usr(link), target))
    if manifest.rootfs:
        layer.add_tree(manifest.rootfs)
    return layer.write(out, compression)


def _add_busybox(layer: Layer, busybox: str) -> None:
    if elfdeps.is_elf(busybox) and elfdeps.read(busybox).needed:
        raise SetupError(f"{busybox} is not static.", hint="apt-get install busybox-static.")
    for applet in command.run([busybox, "--list-full"]).split():
        layer.add(cpio.Entry.symlink(_in_usr(applet), "/usr/bin/busybox"))
    # after the applets: the list may name busybox itself
    layer.add(cpio.Entry.host_file("usr/bin/busybox", busybox, 0o755,
                                   os.stat(busybox).st_size))


def _in_usr(path: str) -> str:
    top, _, rest = path.strip("/").partition("/")
    return f"{MERGED_USR[top]}/{rest}" if top in MERGED_USR and rest else path.strip("/")


def _globbed(patterns: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise SetupError(f"No host file matches {pattern}.",
                             hint="Install the packages: make setup.")
        found += matches
    return found


# --- modules layer ---------------------------------------------------------------------------


def build_modules(manifest: Manifest, kernel: Kernel, cache_dir: Path,
                  compression: str) -> Path | None:
    """The kernel's modules in load order, with /etc/mpio/modules listing that order."""
    if kernel.modules_dir is None:
        return None
    key = hashlib.sha256(
        f"{FORMAT_VERSION} {compression} {kernel.identity} {manifest.modules_required} "
        f"{manifest.modules_optional}".encode()).hexdigest()[:20]
    out = cache_dir / "layers" / f"modules-{kernel.release}-{key}.cpio"
    if out.exists():
        cache.used(out)
        return out
    index = ModuleIndex.load(kernel.modules_dir)
    order, missing = index.resolve(manifest.modules_required)
    if missing:
        raise UntestableKernel(f"{kernel.label} has no module for {', '.join(missing)}.",
                               hint="Enable them (see kconfig/mpio.config) and rebuild.")
    optional, _ = index.resolve(manifest.modules_optional)
    order += [m for m in optional if m not in order]
    layer = Layer()
    guest_dir = f"usr/lib/modules/{kernel.release}"
    for rel in order:
        source = kernel.modules_dir / rel
        layer.add(cpio.Entry.host_file(f"{guest_dir}/{rel}", str(source.resolve()), 0o644,
                                       source.stat().st_size))
    listing = "".join(f"/lib/modules/{kernel.release}/{rel}\n" for rel in order)
    layer.add(cpio.Entry.file("etc/mpio/modules", listing.encode()))
    return layer.write(out, compression)


# --- scenario layer and the whole image ------------------------------------------------------


def scenario_layer(scenario: Scenario) -> bytes:
    """The run's own layer: the scenario's steps, environment, topology and multipath
    settings (a conf.d snippet: multipathd reads it at start, after the base layer's
    defaults)."""
    env = "".join(f"export {k}={_shell_quote(v)}\n"
                  for k, v in sorted(scenario.guest_env().items()))
    entries = [
        cpio.Entry.file("etc/mpio/scenario.sh", scenario.steps_script.encode(), 0o755),
        cpio.Entry.file("etc/mpio/scenario.env", env.encode()),
        cpio.Entry.file("etc/mpio/topology", scenario.shape.guest_table().encode()),
    ]
    if scenario.lun_errors:  # where the LUN fails by itself, for the steps to aim at
        entries.append(cpio.Entry.file("etc/mpio/lun-errors",
                                       guest_errors(scenario.lun_errors).encode()))
    if scenario.multipath:
        entries.append(cpio.Entry.file("etc/multipath/conf.d/scenario.conf",
                                       scenario.multipath.encode()))
    buf = io.BytesIO()
    cpio.write(buf, entries)
    return buf.getvalue()


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


# dm-multipath's path selectors and the options that build them (round-robin comes with
# dm-multipath itself)
SELECTOR_OPTIONS = {
    "round-robin": "CONFIG_DM_MULTIPATH",
    "queue-length": "CONFIG_DM_MULTIPATH_QL",
    "service-time": "CONFIG_DM_MULTIPATH_ST",
    "historical-service-time": "CONFIG_DM_MULTIPATH_HST",
    "io-affinity": "CONFIG_DM_MULTIPATH_IOA",
}


def kernel_selectors(config: dict[str, str]) -> tuple[str, ...]:
    return tuple(name for name, option in SELECTOR_OPTIONS.items()
                 if config.get(option) in ("y", "m"))


def cut(manifest: Manifest, kernel: Kernel, cache_dir: Path, out_dir: Path,
        compression: str) -> Image:
    """Build (or reuse) the cached layers and write out_dir/image.json."""
    base = build_base(manifest, cache_dir, compression)
    mods = build_modules(manifest, kernel, cache_dir, compression)
    layers = tuple(p for p in (base, mods) if p is not None)
    image = Image(manifest.path.stem, kernel.image, kernel.release, kernel.label, layers,
                  kernel_selectors(kernel.config))
    files.write_atomic(out_dir / "image.json",
                       (json.dumps(image.to_json(), indent=2) + "\n").encode(),
                       hostfs.Place.output(out_dir))
    cache.evict(cache_dir / "layers", keep=layers)
    return image


def assemble(image: Image, scenario: Scenario, initrd: Path) -> bytes:
    """Write the initrd one boot needs: the scenario layer, then the cached layers. Returns
    the scenario layer, which a run keeps to be booted again by hand."""
    first = scenario_layer(scenario)
    with open(initrd, "wb") as out:
        # the small uncompressed scenario layer goes first: after a compressed archive the
        # kernel's decompressor would take what follows for more compressed data
        out.write(first)
        out.flush()
        for layer in image.layers:
            try:
                with open(layer, "rb") as f:
                    # in the kernel where it can: the bulk of a boot's start is this copy
                    files.copy(f.fileno(), out.fileno(), os.fstat(f.fileno()).st_size)
            except FileNotFoundError:  # evicted, or the cache was cleared
                raise SetupError(f"The image's layer {layer} is gone from the cache.",
                                 hint="Cut the image again.") from None
            cache.used(layer)
    return first


def load_image(out_dir: Path) -> Image:
    path = out_dir / "image.json"
    if not path.is_file():
        raise SetupError(f"No image in {out_dir}.", hint="Cut one first: rapido-mpio cut.")
    hint = "Cut the image again."
    try:
        return Image.from_json(Record(parse_json(read_text(path, "image", hint)), "image"))
    except ValueError:
        raise SetupError(f"{path} is damaged.", hint=hint) from None
