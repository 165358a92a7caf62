"""Content-addressed stage outputs.

A stage's output directory is addressed by a fingerprint of (stage name, stage config, the
fingerprints of its inputs, the seed, the code version). It is built in a temporary sibling and
renamed into place only with its manifest, so a half-written output is never taken as complete,
and a re-run with the same fingerprint reuses the finished directory instead of recomputing it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
_PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ArtifactRef:
    """A finished stage output: where it is and what identifies its content."""

    stage: str
    path: str
    fingerprint: str

    def manifest(self) -> dict[str, Any]:
        return json.loads((Path(self.path) / MANIFEST).read_text())

    def file(self, name: str) -> Path:
        return Path(self.path) / name


@dataclass
class StageResult:
    """What a stage body returns: final metrics, content hashes of the data it wrote, extra info."""

    metrics: dict[str, float] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def code_version() -> str:
    """sha256 over the library's source files: a change to any algorithm changes every fingerprint."""
    h = hashlib.sha256()
    for p in sorted(_PACKAGE.rglob("*.py")):
        h.update(str(p.relative_to(_PACKAGE)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def fingerprint(payload: Any) -> str:
    """sha256 of a JSON-serialisable payload (keys sorted)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def directory_digest(path: str | Path) -> str:
    """sha256 over the names and bytes of every file under `path` (an input model's identity)."""
    h = hashlib.sha256()
    root = Path(path)
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        h.update(str(p.relative_to(root)).encode())
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class StageDir:
    """The output directory of one stage fingerprint: `root/stages/<stage>/<fingerprint[:16]>`."""

    def __init__(self, root: str | Path, stage: str, fp: str):
        self.final = Path(root).resolve() / "stages" / stage / fp[:16]
        self.stage, self.fp = stage, fp

    @property
    def complete(self) -> bool:
        return (self.final / MANIFEST).is_file()

    def ref(self) -> ArtifactRef:
        return ArtifactRef(self.stage, str(self.final), self.fp)

    def begin(self) -> Path:
        tmp = self.final.with_name(f".{self.final.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        return tmp

    def publish(self, tmp: Path, result: StageResult, extra: dict[str, Any]) -> ArtifactRef:
        """Write the manifest last, then rename: the directory appears complete or not at all."""
        manifest = {"stage": self.stage, "fingerprint": self.fp, **asdict(result), **extra}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        if self.final.exists():  # a stale incomplete dir from a killed run
            shutil.rmtree(self.final)
        tmp.rename(self.final)
        return self.ref()
