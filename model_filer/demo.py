"""``model-filer demo``: the whole workflow in a temp folder, on a local-directory remote.

Alice trains and dumps a model in her git repo; the commit hook refuses the registry while the
model is local; she pushes and commits; Bob clones, and the checkout hook fetches the model he
then loads. Real git, real hooks, no network.
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from model_filer.filer import Filer
from model_filer.git import gitops
from model_filer.git.install import install_hooks, write_hooks
from model_filer.local.store import ObjectStore
from model_filer.local.store_root import CACHE_ENV

_IDENTITY = {
    "GIT_AUTHOR_NAME": "Demo",
    "GIT_AUTHOR_EMAIL": "demo@example.com",
    "GIT_COMMITTER_NAME": "Demo",
    "GIT_COMMITTER_EMAIL": "demo@example.com",
}


@dataclass
class LinearModel:
    """A one-feature least-squares line: small enough to need no third-party library."""

    slope: float = 0.0
    intercept: float = 0.0

    @classmethod
    def fit(cls, xs: list[float], ys: list[float]) -> LinearModel:
        n = len(xs)
        mx, my = sum(xs) / n, sum(ys) / n
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
        return cls(slope, my - slope * mx)

    def predict(self, x: float) -> float:
        return self.slope * x + self.intercept


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _git(cwd: Path, *args: str, check: bool = True, store: Path | None = None) -> tuple[int, str]:
    """Run git as the demo's author (hooks using ``store``); return its exit status and output."""
    env = _IDENTITY if store is None else {**_IDENTITY, CACHE_ENV: str(store)}
    done = gitops.run(args, cwd, env=env, check=check)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


def _show(text: str) -> None:
    if text.strip():
        print(textwrap.indent(text.rstrip(), "   | "), flush=True)


def run_demo(keep: bool = False) -> int:
    """Run the demo; return 0 when Bob's model predicts exactly as Alice's."""
    root = Path(tempfile.mkdtemp(prefix="model-filer-demo-"))
    try:
        remote = root / "shared-drive"
        remote.mkdir()
        alice, bob = root / "alice", root / "bob"
        # Two people, two machines: each has a local object store of their own.
        stores = {who: ObjectStore(root / f"{who}-store") for who in ("alice", "bob")}
        _say(f"Alice's repo at {alice}, with model_filer's git hooks; remote {remote}")
        alice.mkdir()
        _git(alice, "init", "-q", "-b", "main")
        install_hooks(alice)
        # The project trusts its own model class: load() refuses any other import.
        (alice / "pyproject.toml").write_text(
            '[tool.model_filer]\ntrusted = ["model_filer.demo.LinearModel"]\n'
        )

        _say(
            "Alice trains a model and dumps it locally, with how good it is: "
            "filer.dump(model, 'house_prices', metrics={'rmse': ...})"
        )
        rng = random.Random(0)  # noqa: S311 - demo data, not crypto
        xs = [rng.uniform(50, 200) for _ in range(200)]
        ys = [3000 * x + 20000 + rng.gauss(0, 5000) for x in xs]
        model = LinearModel.fit(xs, ys)
        rmse = (sum((model.predict(x) - y) ** 2 for x, y in zip(xs, ys, strict=True)) / 200) ** 0.5
        filer = Filer(alice / "models", str(remote), "local", store=stores["alice"])
        filer.dump(model, "house_prices", metrics={"rmse": round(rmse, 1)})
        filer.show_files()

        _say("She commits the registry: the pre-commit hook refuses a local model")
        _git(alice, "add", "-A")
        refused, said = _git(alice, "commit", "-qm", "Add house price model", check=False)
        _show(said)
        print(f"   (git commit exit status {refused})")

        _say(
            "She pushes it and marks it as production, and the commit goes through: "
            "filer.push('house_prices'); filer.set_alias('production', 'house_prices')"
        )
        filer.push("house_prices")
        filer.set_alias("production", "house_prices")
        filer.show_files()
        _git(alice, "add", "-A")
        _git(alice, "commit", "-qm", "Add house price model")
        print("   committed:", _git(alice, "ls-files")[1].split())

        _say("Bob clones; his post-checkout hook fetches the model the registry names")
        # Hooks are not cloned: a template folder puts them in place before the checkout
        # that `git clone` ends with (`model-filer install-hooks --template-dir DIR`).
        template = root / "git-template"
        write_hooks(template / "hooks")
        clone = ("clone", "-q", f"--template={template}", str(alice), str(bob))
        _, fetched = _git(root, *clone, store=stores["bob"].root)
        install_hooks(bob, hooks=False)
        _show(fetched)
        fetched_ok = (bob / "models" / "house_prices.pkl").is_file()
        print("   bob/models:", sorted(p.name for p in (bob / "models").iterdir()))

        _say("Bob loads what production uses: filer.load('@production')")
        bobs = Filer(bob / "models", str(remote), "local", store=stores["bob"])
        theirs = bobs.load("@production")
        print(f"   its metrics: {bobs.list_files()[0].metrics}")
        same = theirs.predict(120.0) == model.predict(120.0)
        print(
            f"   price of 120 m2: Alice {model.predict(120.0):,.0f}, "
            f"Bob {theirs.predict(120.0):,.0f} -> {'identical' if same else 'DIFFERENT'}"
        )
        return 0 if same and fetched_ok and refused != 0 else 1
    finally:
        if keep:
            print(f"\nKept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_demo())
