"""The manifest is validated as a whole, with messages that name the key and the file."""

import pytest

from redux_helpers.errors import ManifestError
from redux_helpers.manifest import load_target
from tests.conftest import write_manifest


def test_defaults_merge_and_paths_resolve(tmp_path):
    (tmp_path / "raw").mkdir()
    m = write_manifest(tmp_path / "m.yaml",
                       {"night": {"raw_dir": "raw", "gain": 2.5, "extinction": {"R": 0.2}}},
                       defaults={"gain": 1.6, "read_noise": 9.0, "extinction": {"B": 0.3}})
    t = load_target("night", m)
    assert t.raw_dir == tmp_path / "raw"
    assert t.get("gain") == 2.5           # the target overrides the default
    assert t.get("read_noise") == 9.0     # the default fills in
    assert t.get("extinction") == {"B": 0.3, "R": 0.2}   # mappings merge key by key


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    (tmp_path / "raw").mkdir()
    m = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": "raw", "bad_colums": [3]}})
    with pytest.raises(ManifestError) as err:
        load_target("night", m)
    text = str(err.value)
    assert "targets.night.bad_colums" in text and "bad_columns" in text and str(m) in text


def test_unknown_nested_key_and_wrong_type(tmp_path):
    (tmp_path / "raw").mkdir()
    m = write_manifest(tmp_path / "m.yaml",
                       {"night": {"raw_dir": "raw", "galaxy": {"ra": 1.0, "inclnation_deg": 3}}})
    with pytest.raises(ManifestError, match="galaxy.inclnation_deg.*inclination_deg"):
        load_target("night", m)
    m = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": "raw", "gain": "high"}})
    with pytest.raises(ManifestError, match="'targets.night.gain' should be a number"):
        load_target("night", m)
    m = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": "raw", "gain": True}})
    with pytest.raises(ManifestError, match="gain"):
        load_target("night", m)


def test_missing_folder_and_unknown_target(tmp_path):
    m = write_manifest(tmp_path / "m.yaml", {"night": {"raw_dir": "nowhere"}})
    with pytest.raises(ManifestError, match="raw_dir points to .*nowhere.*does not exist"):
        load_target("night", m)
    with pytest.raises(ManifestError, match="target 'nigth' is not in .*did you mean 'night'"):
        load_target("nigth", m, check_paths=False)


def test_demo_target_may_point_to_files_made_on_first_use(tmp_path):
    m = write_manifest(tmp_path / "m.yaml", {"demo": {
        "raw_dir": "d/raw", "demo": {"size": 64}, "standards": "d/standards.ecsv"}})
    t = load_target("demo", m)
    assert t.raw_dir == tmp_path / "d" / "raw"


def test_repository_manifest_is_valid():
    """Every target of the repository's manifest loads, and every file it names is where it says:
    a demo target's files inside its own demo folder (the demo writes them there), a real
    target's files on disk (when ../shared/realdata is here)."""
    from pathlib import Path

    from redux_helpers.manifest import load_target, read_manifest
    from tests.conftest import REPO

    manifest = REPO / "data_manifest.yaml"
    doc = read_manifest(manifest)
    assert "demo" in doc["targets"]

    def files(value, relative=False):
        if isinstance(value, dict):
            for v in value.values():
                yield from files(v, relative)
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from files(v, relative)
        elif isinstance(value, (str, Path)) and (relative or Path(value).is_absolute()):
            yield Path(value)

    realdata = (REPO.parent / "shared" / "realdata").resolve()
    checked = 0
    for name, entry in doc["targets"].items():
        if "demo" not in entry and not realdata.is_dir():
            # a clone without the real frames beside it: the target can't load (its files
            # are not there), but every path it names must still point into that folder
            entry = {k: v for k, v in entry.items() if k != "description"}
            paths = [p for p in files(entry, relative=True) if "/" in str(p)]
            named = [(manifest.parent / p).resolve() for p in paths]
            assert named, f"{name}: names no file"
            assert all(realdata in p.parents for p in named), f"{name}: a path outside {realdata}"
            continue
        target = load_target(name, manifest)
        named = list(files(target.settings))
        assert named, f"{name}: names no file"
        if "demo" in target.settings:
            home = target.raw_dir.parent
            assert target.raw_dir.name == "raw" and home.parent == REPO / "demo_data"
            assert all(home in p.parents for p in named), name
            continue
        for p in named:
            assert realdata in p.resolve().parents, f"{name}: {p} outside the real-data folder"
            if realdata.is_dir():
                assert p.exists(), f"{name}: {p} does not exist"
                checked += 1
    assert checked >= 8 or not realdata.is_dir()
