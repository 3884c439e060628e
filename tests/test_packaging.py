"""The project's own files: dependencies in step, notebooks committed clean."""

import json
import re
import tomllib

from tests.conftest import REPO


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_dependencies():
    import yaml

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    wanted |= {_name(r) for r in project["optional-dependencies"]["test"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert wanted == conda, f"only in pyproject: {wanted - conda}; only in environment.yml: {conda - wanted}"


def test_notebooks_are_committed_without_outputs_and_declare_parameters():
    from redux_helpers.targets import STEPS

    # the chain's notebooks by name: a copy nbconvert writes beside them
    # (00_inspect.nbconvert.ipynb, ignored by git) is not one of them
    notebooks = [REPO / "notebooks" / f"{s}.ipynb" for s in STEPS]
    assert all(p.is_file() for p in notebooks)
    for path in notebooks:
        nb = json.loads(path.read_text())
        # nbformat renames a repeated cell id and warns in the user's terminal at every run
        ids = [c.get("id") for c in nb["cells"]]
        assert len(set(ids)) == len(ids), f"{path.name}: cell ids repeat"
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), path.name
        params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(params) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
        src = "".join(params[0]["source"])
        for name in ("target", "manifest", "products"):
            assert re.search(rf"^{name}\s*:\s*str\s*=", src, re.M), f"{path.name}: {name}"
