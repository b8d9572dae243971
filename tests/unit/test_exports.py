"""``geetcd.__all__`` is exactly the public surface of the package."""

from __future__ import annotations

import types

import geetcd
from geetcd import errors


def test_every_name_in_all_exists() -> None:
    for name in geetcd.__all__:
        assert hasattr(geetcd, name), f"geetcd.__all__ lists {name!r}, which geetcd lacks"


def test_all_has_no_duplicates_and_only_strings() -> None:
    assert all(isinstance(name, str) for name in geetcd.__all__)
    duplicates = sorted({n for n in geetcd.__all__ if geetcd.__all__.count(n) > 1})
    assert duplicates == []


def test_every_public_attribute_is_in_all() -> None:
    exported = set(geetcd.__all__)
    missing = [
        name
        for name, value in vars(geetcd).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
        if name not in exported
    ]
    assert missing == [], f"public but not in geetcd.__all__: {missing}"


def test_private_names_are_not_exported() -> None:
    assert [n for n in geetcd.__all__ if n.startswith("_") and n != "__version__"] == []
    assert isinstance(geetcd.__version__, str) and geetcd.__version__


def test_every_exception_class_is_exported() -> None:
    exported = set(geetcd.__all__)
    missing = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.EtcdError)
        if name not in exported
    ]
    assert missing == [], f"exception classes not exported from geetcd: {missing}"
    for name in exported:
        value = getattr(geetcd, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, errors.EtcdError), f"{name} is outside the EtcdError tree"


def test_exports_come_from_the_package() -> None:
    for name in geetcd.__all__:
        value = getattr(geetcd, name)
        module = getattr(value, "__module__", None)
        if isinstance(value, type) or callable(value):
            assert module is not None and module.split(".")[0] == "geetcd", (name, module)
