"""The docs inside the repository stay true to the code: every config key is in the
configuration reference, every module in the architecture map, and the README links
nothing outside the repository."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from custseg.config import Config

REPO = Path(__file__).resolve().parents[1]


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        if name == "config_dir":
            continue
        annotation = field.annotation
        optional = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(optional) == 1 and len(typing.get_args(annotation)) == 2:  # a section | None
            annotation = optional[0]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _keys(annotation, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def test_every_config_key_is_in_the_configuration_reference() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    listed = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", text, flags=re.M))
    keys = set(_keys(Config))
    assert keys - listed == set(), "keys missing from docs/configuration.md"
    assert listed - keys == set(), "docs/configuration.md lists keys that do not exist"


def test_every_module_is_in_the_architecture_map() -> None:
    text = (REPO / "docs" / "architecture.md").read_text().split("## Around the package")[0]
    package = REPO / "src" / "custseg"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py")
               if p.name != "__init__.py" and p.parent.name != "report"}
    modules.add("report/")  # the report package is listed whole
    listed = set(re.findall(r"^\| `([a-z_0-9/]+\.py|report/)` \|", text, flags=re.M))
    assert modules - listed == set(), "modules missing from docs/architecture.md"
    assert listed - modules == set(), "docs/architecture.md lists modules that do not exist"


def test_the_readme_links_nothing_outside_the_repository() -> None:
    text = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        assert not target.startswith(("../", "/")), target
        assert (REPO / target.split("#")[0]).exists(), target
