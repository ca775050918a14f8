"""Kernel module resolution: names -> .ko files in an order the guest can insmod.

Reads depmod's output (modules.dep, modules.softdep, modules.alias, modules.builtin) from a
module directory. Soft dependencies matter: xfs needs libcrc32c, whose `pre: crc32c` softdep
is only an alias; a loader that ignores it fails with a misleading "unknown symbol".
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable
from pathlib import Path

_WILDCARD = re.compile(r"[*?[]")


def normalize(name: str) -> str:
    """Module name as the kernel sees it: no directory, no .ko*, '-' folded to '_'."""
    base = name.rsplit("/", 1)[-1]
    base = base.split(".ko", 1)[0]
    return base.replace("-", "_")


@dataclasses.dataclass(frozen=True)
class ModuleIndex:
    root: Path  # lib/modules/<release>
    deps: dict[str, tuple[str, ...]]  # name -> relative paths of its dependencies
    paths: dict[str, str]  # name -> relative path of its .ko
    softdeps: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]  # name -> (pre, post)
    aliases: tuple[tuple[str, str], ...]  # (pattern, module name)
    builtin: frozenset[str]

    @staticmethod
    def load(root: Path) -> ModuleIndex:
        deps: dict[str, tuple[str, ...]] = {}
        paths: dict[str, str] = {}
        for line in _lines(root / "modules.dep"):
            ko, _, rest = line.partition(":")
            name = normalize(ko)
            paths[name] = ko
            deps[name] = tuple(rest.split())
        softdeps: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for line in _lines(root / "modules.softdep"):
            words = line.split()
            if len(words) < 2 or words[0] != "softdep":
                continue
            pre: list[str] = []
            post: list[str] = []
            bucket = pre
            for w in words[2:]:
                if w == "pre:":
                    bucket = pre
                elif w == "post:":
                    bucket = post
                else:
                    bucket.append(w)
            softdeps[normalize(words[1])] = (tuple(pre), tuple(post))
        aliases = tuple(
            (w[1], normalize(w[2]))
            for w in (line.split() for line in _lines(root / "modules.alias"))
            if len(w) == 3 and w[0] == "alias"
        )
        builtin = frozenset(normalize(line) for line in _lines(root / "modules.builtin"))
        return ModuleIndex(root, deps, paths, softdeps, aliases, builtin)

    def alias_matches(self, wanted: str) -> list[str]:
        """Modules whose alias is `wanted` exactly or, failing that, as a glob pattern.

        Exact first: globbing all of modules.alias (tens of thousands of device patterns,
        each compiled to a regex) costs seconds, and names like crc32c are exact aliases.
        """
        exact = [mod for pattern, mod in self.aliases if pattern == wanted]
        if exact:
            return exact
        # a pattern matches only names that start with its literal head (what comes before
        # its first wildcard): compile just those. A name nothing matches (an optional
        # module the kernel lacks: dm_historical_service_time on Debian's) took 2 s
        matches = []
        for pattern, mod in self.aliases:
            wild = _WILDCARD.search(pattern)
            if wild and wanted.startswith(pattern[:wild.start()]) \
                    and fnmatch.fnmatchcase(wanted, pattern):
                matches.append(mod)
        return matches

    def lookup(self, wanted: str) -> list[str]:
        """Module names that satisfy `wanted` (a module name or an alias); [] if builtin."""
        name = normalize(wanted)
        if name in self.builtin:
            return []
        if name in self.paths:
            return [name]
        matches = self.alias_matches(wanted)
        if any(m in self.builtin for m in matches):
            return []
        return list(dict.fromkeys(m for m in matches if m in self.paths))

    def resolve(self, wanted: Iterable[str]) -> tuple[list[str], list[str]]:
        """(load order as relative .ko paths, names found nowhere).

        Order: softdep pre, hard dependencies (deepest first), the module, softdep post.
        """
        order: dict[str, None] = {}
        missing: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in order or name in visiting:
                return
            visiting.add(name)
            pre, post = self.softdeps.get(name, ((), ()))
            for soft in pre:
                for m in self.lookup(soft):
                    visit(m)
            for dep in reversed(self.deps.get(name, ())):
                visit(normalize(dep))
            order[name] = None
            for soft in post:
                for m in self.lookup(soft):
                    visit(m)

        for w in wanted:
            found = self.lookup(w)
            if not found and normalize(w) not in self.builtin and not any(
                    m in self.builtin for m in self.alias_matches(w)):
                missing.append(w)
            for m in found:
                visit(m)
        return [self.paths[m] for m in order], missing


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
