"""vLLM is an optional extra: a missing or unsupported install stops with an error naming the fix."""

import sys
import types

import pytest

from alignkit.errors import AlignkitError
from alignkit.rollout.vllm_setup import INSTALL_HINT, SUPPORTED_VLLM, check_version, import_vllm


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(AlignkitError, match=r"pip install 'alignkit\[vllm\]'") as e:
        import_vllm()
    assert "--rollout.engine hf" in str(e.value)


@pytest.mark.parametrize("version", ["0.20.0", "0.26.0", "0.26.0+cu129", "0.33.0", "0.33.1rc1", "0.26.1.dev5+gabc"])
def test_supported_versions_pass(version):
    check_version(version)


@pytest.mark.parametrize("version", ["0.19.1", "0.11.0", "0.34.0", "0.34.0.dev3", "1.0.0"])
def test_unsupported_versions_are_refused_with_the_range(version):
    with pytest.raises(AlignkitError, match="alignkit supports vllm") as e:
        check_version(version)
    assert version in str(e.value) and str(SUPPORTED_VLLM) in str(e.value) and INSTALL_HINT in str(e.value)


def test_unreadable_version():
    with pytest.raises(AlignkitError, match="cannot read"):
        check_version("not a version")


def test_import_checks_the_installed_version(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(__version__="0.10.2"))
    with pytest.raises(AlignkitError, match="vLLM 0.10.2 is installed"):
        import_vllm()
    fake = types.SimpleNamespace(__version__="0.26.0")
    monkeypatch.setitem(sys.modules, "vllm", fake)
    assert import_vllm() is fake


def test_pyproject_extra_matches_the_checked_range():
    import re
    from pathlib import Path

    from packaging.requirements import Requirement

    text = (Path(__file__).parents[3] / "pyproject.toml").read_text()
    (extra,) = re.findall(r'^vllm = \["([^"]+)"\]', text, flags=re.M)
    assert Requirement(extra).specifier == SUPPORTED_VLLM
