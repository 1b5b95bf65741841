"""The lowest versions pyproject.toml admits, read from pyproject.toml itself so the two cannot drift.

    python tools/lowest_pins.py --python            # the oldest Python `requires-python` admits: 3.9
    python tools/lowest_pins.py test                # pip constraints (`pip install -c`): for each name in
                                                    # the dependencies and these extras, its `>=` bound as
                                                    # `==` (the highest, where several name it)
    python tools/lowest_pins.py --core-below test   # core dependencies whose own bound those extras raise
                                                    # (e.g. ipywidgets>=7.7 beside ipywidgets>=8 in `test`)

`.ci/lowest` installs the package with these constraints into a venv of the oldest Python and runs the
tests there. A bound names a release that must exist: `numpy>=1.23` becomes `numpy==1.23` (1.23.0),
and pip fails if that release has no wheel for that Python. Lower bounds live only in pyproject.toml;
exact pins exist only in what this prints. Runs on Python 3.9+ (tomllib, else tomli, else pip's tomli).
"""

import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11
    try:
        import tomli as tomllib
    except ImportError:
        from pip._vendor import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def fail(message):
    sys.exit(f"tools/lowest_pins.py: {message}")


def lowest(requirement):
    """'numpy>=1.23; python_version < "3.11"' -> (key, name, '1.23', ' ; python_version < "3.11"')"""
    match = REQUIREMENT.match(requirement)
    if not match:
        fail(f"cannot parse {requirement!r}")
    name, specifiers, marker = match.groups()
    bounds = [s.strip()[2:].strip() for s in specifiers.split(",") if s.strip().startswith(">=")]
    if len(bounds) != 1 or not re.fullmatch(r"\d+(\.\d+)*", bounds[0]):
        fail(f"{requirement!r} needs exactly one numeric lower bound (>=)")
    marker = f"; {marker[1:].strip()}" if marker else ""
    return re.sub(r"[-_.]+", "-", name).lower() + marker, name, bounds[0], marker


def release(version):
    parts = [int(p) for p in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def main(argv):
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    if argv == ["--python"]:
        match = re.fullmatch(r">=\s*(3\.\d+)", project["requires-python"].strip())
        if not match:
            fail(f"cannot read the oldest Python from requires-python = {project['requires-python']!r}")
        print(match.group(1))
        return
    core_below = argv[:1] == ["--core-below"]
    extras = argv[1:] if core_below else argv
    declared = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in declared]
    if unknown:
        fail(f"no such extra in pyproject.toml: {', '.join(unknown)}")
    core = [lowest(r) for r in project["dependencies"]]
    pins = {}  # key -> (name, version, marker): the highest lower bound given for that name
    for key, name, version, marker in core + [lowest(r) for e in extras for r in declared[e]]:
        if key not in pins or release(version) > release(pins[key][1]):
            pins[key] = (name, version, marker)
    if core_below:
        lines = [f"{n}=={v}{m}" for k, n, v, m in core if release(v) < release(pins[k][1])]
    else:
        print(f"# tools/lowest_pins.py {' '.join(argv)}: generated from pyproject.toml, do not edit")
        lines = [f"{n}=={v}{m}" for n, v, m in pins.values()]
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
