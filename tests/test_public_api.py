"""The top level: about a dozen core names, every submodule visible to dir() and tab completion."""

import importlib
import pkgutil

import deconvlab as dl


def test_the_top_level_is_the_core():
    assert sorted(dl.__all__) == sorted(
        [
            "BUILTIN_RULES",
            "NoReLUWarning",
            "Rule",
            "RuleMap",
            "UnsupportedActivationWarning",
            "__version__",
            "active_rule",
            "attribute",
            "backward_rule",
            "explain_rules",
            "get_rule",
            "grad_cam",
            "guided_grad_cam",
            "project",
            "record",
            "register_rule",
            "rule_names",
            "smoothgrad",
        ]
    )
    assert all(hasattr(dl, name) for name in dl.__all__)


def test_every_submodule_shows_in_dir_and_imports():
    on_disk = {module.name for module in pkgutil.iter_modules(dl.__path__) if module.name != "__main__"}
    assert on_disk == set(dl.SUBMODULES)
    assert on_disk <= set(dir(dl))
    for name in on_disk:
        assert getattr(dl, name) is importlib.import_module(f"deconvlab.{name}")


def test_the_package_declares_its_types():
    from importlib.resources import files

    assert files("deconvlab").joinpath("py.typed").is_file()
