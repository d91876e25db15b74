"""The package's layers, its table of jobs and steps, and the specs' transcripts agree."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from fedscore.audit import read_transcript
from fedscore.protocols import ANY_PARTY, JOBS, STEPS, coordinator_of, options_of, step_of

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fedscore"
SPECS = ROOT / "protocols"

UPPER_LAYERS = ("fedscore.api", "fedscore.cli", "fedscore.demo", "fedscore.report")
"""What the protocols, the runtime and the kit must never import: they sit below these."""
HEAVY = ("sklearn", "tenseal", "matplotlib", "pandas", "pyarrow", "flwr", "ray", "phe")
"""Libraries that a light import (the wire format, the command line's help) must not load."""


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def imports(name, path):
    """Absolute names of the fedscore modules ``path`` imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("fedscore"):
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fedscore"))
    return found


def under(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_import_runs_back_up_the_layers():
    lower = ("fedscore.protocols", "fedscore.runtime", "fedscore.kit", "fedscore.he")
    violations = [f"{name} imports {target}" for name, path in modules() if under(name, lower)
                  for target in imports(name, path) if under(target, UPPER_LAYERS)]
    violations += [f"{name} imports {target}" for name, path in modules() if under(name, ("fedscore.kit",))
                   for target in imports(name, path) if under(target, ("fedscore.protocols", "fedscore.runtime"))]
    assert violations == []


def is_module(name):
    relative = Path(*name.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def test_nothing_imports_a_private_module_of_another_package():
    violations = []
    for name, path in modules():
        for target in imports(name, path):
            parts = target.split(".")
            private = next((i for i, part in enumerate(parts)
                            if part.startswith("_") and is_module(".".join(parts[:i + 1]))), None)
            package = ".".join(parts[:private])
            if private is not None and not (name == package or name.startswith(package + ".")):
                violations.append(f"{name} imports {target}")
    assert violations == []


def test_a_party_module_imports_nothing_of_the_other_party():
    for name, path in modules():
        if name.endswith((".brand", ".media")):
            other = name.rpartition(".")[0] + (".media" if name.endswith(".brand") else ".brand")
            assert not [t for t in imports(name, path) if under(t, (other,))], name


def test_every_job_and_step_in_the_table_exists():
    for name in JOBS:
        assert callable(coordinator_of(name)) and options_of(name).job == name
    for step, targets in STEPS.items():
        for role in targets:
            assert callable(step_of(step, "brand" if role == ANY_PARTY else role)), step


def spec_steps(job):
    return {row[0] for row in read_transcript(SPECS / JOBS[job].spec)}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_each_spec_lists_exactly_its_jobs_steps(job):
    """A step on the wire is a protocol name: the spec and the table name the same steps."""
    listed = spec_steps(job)
    own = {s for s in STEPS if s.split(".")[0] == job}
    assert own <= listed, f"steps of {job} missing from its spec: {sorted(own - listed)}"
    assert {s for s in listed if s in STEPS} == listed, f"spec rows of unknown steps: {sorted(listed - set(STEPS))}"


def loaded_after(code):
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    return set(done.stdout.split())


def test_the_wire_format_and_the_command_line_help_load_no_heavy_library():
    for code in ("import fedscore.wire", "import fedscore",
                 "from fedscore.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
                 "from fedscore.cli import main\ntry:\n    main(['lookalike', '--help'])\nexcept SystemExit:\n    pass"):
        heavy = {m.split(".")[0] for m in loaded_after(code)} & set(HEAVY)
        assert heavy == set(), (code, heavy)
