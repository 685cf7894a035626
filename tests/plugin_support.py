"""A real installed distribution for plugin tests: a `.dist-info` directory (METADATA and
entry_points.txt) and its modules in one directory, to put on sys.path or PYTHONPATH."""

from pathlib import Path


def make_distribution(
    root: Path,
    name: str,
    entry_points: dict[str, dict[str, str]],
    modules: dict[str, str],
    version: str = "0.1",
) -> Path:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in points.items())
            for group, points in entry_points.items()
        )
    )
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)
    return root
