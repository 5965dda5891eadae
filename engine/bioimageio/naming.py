"""What a package says about itself: its name, authors and licence, checked."""

from __future__ import annotations

import getpass
import json
import os
import re
from pathlib import Path

from engine.bioimageio.constants import ARCHITECTURES, NAME_CHARS
from engine.errors import UserError


def check_name(name: str) -> str:
    """The package name as bioimage.io takes it (5-128 letters, digits, spaces, ``_+-()``)."""
    name = " ".join(str(name).split())
    if len(name) < 5 or len(name) > 128:
        raise UserError(f"the model name must have 5 to 128 characters (got {len(name)}): {name!r}")
    if not NAME_CHARS.fullmatch(name):
        bad = sorted(set(ch for ch in name if not NAME_CHARS.fullmatch(ch)))
        raise UserError(f"the model name may only hold letters, digits, spaces and _ + - ( ); "
                        f"not {' '.join(bad)!s} in {name!r}")
    return name


def default_name(project_name: str, model_name: str) -> str:
    """``"Maskloop U-Net cells"``: the allowed characters of the project name, at most 64 in all."""
    arch = ARCHITECTURES.get(model_name, model_name)
    cleaned = " ".join(re.sub(r"[^A-Za-z0-9_+\-() ]+", " ", project_name).split())
    name = f"Maskloop {arch} {cleaned}".strip()
    name = re.sub(r"[^A-Za-z0-9_+\-() ]+", "-", name)[:64].strip()
    return name if len(name) >= 5 else "Maskloop model"


def default_author() -> str:
    """The logged-in user's name (the account's full name where the system has one)."""
    try:
        import pwd

        full = pwd.getpwuid(os.getuid()).pw_gecos.split(",")[0].strip()
        if full:
            return full.replace("/", "-")
    except (ImportError, KeyError, AttributeError, OSError):
        pass
    try:
        return getpass.getuser().replace("/", "-") or "Maskloop user"
    except Exception:  # getuser raises OSError (or KeyError) where no user name is known
        return "Maskloop user"


def _spdx_ids() -> set[str] | None:
    """SPDX licence ids from bioimageio.spec's copy of the list, where it is installed."""
    try:  # found, not imported: importing bioimageio.spec takes seconds
        from importlib.util import find_spec

        spec = find_spec("bioimageio.spec")
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(list(spec.submodule_search_locations)[0])
        text = (folder / "static" / "spdx_licenses.json").read_text(encoding="utf-8")
        return {entry["licenseId"] for entry in json.loads(text)["licenses"]}
    except Exception:  # not installed, or a layout we do not know: the pattern check remains
        return None


def check_license(license_id: str) -> str:
    license_id = str(license_id).strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+\-]*", license_id):
        raise UserError(f"the licence must be an SPDX identifier such as CC-BY-4.0 or MIT "
                        f"(got {license_id!r})")
    known = _spdx_ids()
    if known is not None and license_id not in known:
        raise UserError(f"{license_id!r} is not an SPDX licence identifier (e.g. CC-BY-4.0, "
                        "CC0-1.0, MIT, BSD-3-Clause; see spdx.org/licenses)")
    return license_id


def check_authors(authors: list[str]) -> list[str]:
    names = [" ".join(str(a).split()) for a in authors if str(a).strip()]
    if not names:
        raise UserError("give at least one author")
    for name in names:
        if "/" in name:
            raise UserError(f"an author's name may not contain '/': {name!r}")
    return names
