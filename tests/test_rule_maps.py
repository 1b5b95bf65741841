"""Rule maps (a rule per layer): equal to nested single-rule contexts, and every bad map named."""

import re
import warnings
from fnmatch import fnmatchcase

import pytest
import torch
import torch.nn.functional as F
from small_nets import small_cnn
from torch import nn
from torchvision import models
from torchvision.models.densenet import _DenseLayer
from torchvision.models.resnet import BasicBlock

import deconvlab as dl
from deconvlab.escapes import RuleNotAppliedError
from deconvlab.rules import get_rule

# --- the reference: single-rule contexts entered in the matched modules' forward passes -------


def _first_match(entries, name, module):
    for key, rule in entries:
        if isinstance(key, str):
            hit = fnmatchcase(name, key)
        elif isinstance(key, type):
            hit = isinstance(module, key)
        else:
            hit = key(name, module)
        if hit:
            return rule
    return None


def _reference_grad(model, x, seed_of, entries, default):
    """``d(seed_of(model, x)) / dx`` with ``backward_rule(rule)`` open during each matched module's forward."""
    open_contexts, handles = [], []

    def enter(rule):
        def pre_hook(module, args):
            context = dl.backward_rule(rule, warn=False)
            context.__enter__()
            open_contexts.append(context)

        return pre_hook

    def leave(module, args, output):
        open_contexts.pop().__exit__(None, None, None)

    for name, module in model.named_modules():
        rule = _first_match(entries, name, module)
        if rule is not None:
            handles.append(module.register_forward_pre_hook(enter(rule)))
            handles.append(module.register_forward_hook(leave))
    leaf = x.clone().requires_grad_(True)
    try:
        with dl.backward_rule(default, warn=False):
            output, seed = seed_of(model, leaf)
        (grad,) = torch.autograd.grad(output, leaf, seed)
    finally:
        for handle in handles:
            handle.remove()
    assert not open_contexts
    return grad


def _class_seed(target):
    def seed_of(model, leaf):
        output = model(leaf)
        seed = torch.zeros_like(output)
        seed[:, target] = 1
        return output, seed

    return seed_of


def _assert_equal(got, expected):
    if not torch.equal(got, expected):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6 * expected.abs().max().item())


def _from_layer(name):
    """Predicate: modules of ``features``/``layerN`` from index ``name`` upward (the slider's map)."""
    return lambda path, module: path.startswith("features.") and int(path.split(".")[1]) >= name


VGG_MAPS = [
    ({"features.1*": "guided_backprop"}, "gradient"),
    ({"classifier.*": "gradient", nn.ReLU: "guided_backprop"}, "deconvnet"),
    ({_from_layer(8): "deconvnet"}, "guided_backprop"),
]
RESNET_MAPS = [
    ({"layer3*": "guided_backprop", "layer4*": "deconvnet"}, "gradient"),
    ({"layer4.1": "deconvnet", BasicBlock: "guided_backprop"}, "gradient"),
    ({lambda path, module: path.startswith(("layer3", "layer4")): "guided_backprop"}, "deconvnet"),
]
DENSENET_MAPS = [
    ({"features.denseblock4*": "guided_backprop", "features.transition*": "deconvnet"}, "gradient"),
    ({_DenseLayer: "deconvnet", "features.transition*": "guided_backprop"}, "gradient"),
    ({lambda path, module: path == "": "guided_backprop", "features.denseblock1*": "deconvnet"}, "gradient"),
]


def _torchvision(name):
    torch.manual_seed(0)
    return getattr(models, name)(weights=None).eval()


@pytest.fixture(scope="module")
def photo():
    torch.manual_seed(1)
    return torch.randn(1, 3, 64, 64)


@pytest.mark.parametrize(
    ("name", "entries", "default"),
    [("vgg11", *case) for case in VGG_MAPS]
    + [("resnet18", *case) for case in RESNET_MAPS]
    + [("densenet121", *case) for case in DENSENET_MAPS],
)
def test_a_rule_map_equals_nested_single_rule_contexts(name, entries, default, photo):
    model = _torchvision(name)
    expected = _reference_grad(model, photo, _class_seed(7), list(entries.items()), default)
    got = dl.attribute(model, photo, 7, rule=dl.RuleMap(entries, default=default))
    _assert_equal(got, expected)
    assert not torch.equal(got, dl.attribute(model, photo, 7, rule=default))  # the map changed something


def test_several_rule_maps_and_rules_from_one_forward_pass(photo):
    model = _torchvision("resnet18")
    top = dl.RuleMap({"layer4*": "guided_backprop"}, name="guided on top")
    bottom = dl.RuleMap({"layer1*": "guided_backprop"}, name="guided below")
    maps = dl.attribute(model, photo, 3, rules=[top, "gradient", bottom])
    assert list(maps) == ["guided on top", "gradient", "guided below"]
    for key, rule in (("guided on top", top), ("guided below", bottom), ("gradient", "gradient")):
        _assert_equal(maps[key], dl.attribute(model, photo, 3, rule=rule))
    expected = _reference_grad(model, photo, _class_seed(3), list(top.entries), top.default)
    _assert_equal(maps["guided on top"], expected)


def test_a_plain_dict_is_a_rule_map_named_after_its_entries(photo):
    model = _torchvision("vgg11")
    signals = dl.attribute(model, photo, 2, rules=[{"features.1*": "guided"}, "gradient"])
    assert list(signals) == ["features.1*: guided_backprop, else gradient", "gradient"]
    _assert_equal(signals["gradient"], dl.attribute(model, photo, 2, rule="gradient"))


def test_backward_rule_with_a_map_by_hand(photo):
    model = _torchvision("vgg11")
    mapping = {"features.1*": "guided_backprop", "classifier.*": "deconvnet"}
    x = photo.clone().requires_grad_(True)
    with dl.backward_rule(mapping) as context:
        assert isinstance(dl.active_rule(), dl.RuleMap) and dl.active_rule() is context.rule
        model(x)[0, 5].backward()
    assert dl.active_rule() is None
    _assert_equal(x.grad, dl.attribute(model, photo, 5, rule=mapping))


def test_project_with_a_map(photo):
    model = _torchvision("vgg11")
    entries = [("features.1*", get_rule("deconvnet"))]

    def seed_of(model, leaf):
        captured = {}
        handle = model.features[13].register_forward_hook(
            lambda m, a, out: captured.update(out=out.clone())
        )  # before features.14 ReLUs it in place
        try:
            model(leaf)
        finally:
            handle.remove()
        activation = captured["out"]
        seed = torch.zeros_like(activation)
        seed[:, 4] = activation[:, 4].detach()
        return activation, seed

    expected = _reference_grad(model, photo, seed_of, entries, "guided_backprop")
    got = dl.project(model, photo, "features.13", 4, rule=dl.RuleMap(entries, default="guided"))
    _assert_equal(got, expected)


# --- matching: first entry, innermost module, default --------------------------------------------


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.inner = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())

    def forward(self, x):
        x = self.act(self.conv(x))
        x = self.inner(x)
        return F.relu(x) + x.relu()  # functional ReLUs count as inside this block


def _nested():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), _Block(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    ).double()


def _rules_of(table):
    return [(row.module, row.rule) for row in table]


def test_the_innermost_matched_module_decides_whatever_the_order():
    model, x = _nested(), torch.randn(1, 3, 8, 8, dtype=torch.float64)
    expected = [
        ("1", "gradient"),
        ("2.act", "deconvnet"),
        ("2.inner.1", "guided_backprop"),
        ("2", "deconvnet"),
        ("2", "deconvnet"),
    ]
    for entries in ({"2": "deconvnet", "2.inner": "guided"}, {"2.inner": "guided", "2": "deconvnet"}):
        assert _rules_of(dl.explain_rules(model, x, entries)) == expected
        reference = _reference_grad(model, x, _class_seed(1), list(dl.RuleMap(entries).entries), "gradient")
        _assert_equal(dl.attribute(model, x, 1, rule=entries), reference)


def test_the_first_matching_entry_wins():
    model, x = _nested(), torch.randn(1, 3, 8, 8, dtype=torch.float64)
    relu_first = dl.explain_rules(model, x, {nn.ReLU: "deconvnet", "2.act": "guided"})
    path_first = dl.explain_rules(model, x, {"2.act": "guided", nn.ReLU: "deconvnet"})
    assert _rules_of(relu_first)[:3] == [
        ("1", "deconvnet"),
        ("2.act", "deconvnet"),
        ("2.inner.1", "deconvnet"),
    ]
    assert _rules_of(path_first)[:3] == [
        ("1", "deconvnet"),
        ("2.act", "guided_backprop"),
        ("2.inner.1", "deconvnet"),
    ]
    assert (path_first[1].decided_by, path_first[1].entry) == ("2.act", "2.act")
    assert (relu_first[1].decided_by, relu_first[1].entry) == ("2.act", "ReLU")
    # the order of entries decides only for one module: an inner match beats an earlier outer one
    block_first = dl.explain_rules(model, x, {"2": "guided", nn.ReLU: "deconvnet"})
    assert _rules_of(block_first)[1:] == [
        ("2.act", "deconvnet"),
        ("2.inner.1", "deconvnet"),
        ("2", "guided_backprop"),
        ("2", "guided_backprop"),
    ]


def test_the_default_applies_where_no_module_matches():
    model, x = _nested(), torch.randn(1, 3, 8, 8, dtype=torch.float64)
    table = dl.explain_rules(model, x, dl.RuleMap({"2.inner": "guided"}, default="deconvnet"))
    assert [row.rule for row in table] == [
        "deconvnet",
        "deconvnet",
        "guided_backprop",
        "deconvnet",
        "deconvnet",
    ]
    assert [row.decided_by for row in table] == [None, None, "2.inner", None, None]
    assert table.counts() == {"deconvnet": 4, "guided_backprop": 1}


def test_explain_rules_table_reads_well(photo):
    model = _torchvision("densenet121")
    table = dl.explain_rules(model, photo, {"features.denseblock4*": "guided", "features.norm5": "deconvnet"})
    assert (
        len(table) == 2 * (6 + 12 + 24 + 16) + 1 + 3 + 1
    )  # two per dense layer, relu0, 3 transitions, F.relu
    first, last = table[0], table[-1]
    assert (first.call, first.module, first.rule, first.decided_by, first.entry) == (
        0,
        "features.relu0",
        "gradient",
        None,
        "default",
    )
    assert (last.module, last.rule, last.decided_by) == ("", "gradient", None)  # DenseNet.forward's F.relu
    block4 = [row for row in table if row.module.startswith("features.denseblock4")]
    assert len(block4) == 32 and {row.rule for row in block4} == {"guided_backprop"}
    assert {row.entry for row in block4} == {"features.denseblock4*"}
    text = str(table)
    assert text.splitlines()[1].split() == ["call", "module", "rule", "decided", "by"]
    assert re.search(
        r"\n8\d\s+features\.denseblock4\.denselayer1\.relu1\s+guided_backprop\s+"
        r"features\.denseblock4\.denselayer1\.relu1 via 'features\.denseblock4\*'\n",  # the ReLU matches itself
        text,
    )
    assert re.search(r"<model>\s+gradient\s+default$", text)
    assert "<table>" in table._repr_html_() and "features.relu0" in table._repr_html_()


def test_an_explained_map_matches_the_attribution_it_explains(photo):
    model = _torchvision("resnet18")
    mapping = dl.RuleMap({"layer4.1": "deconvnet", BasicBlock: "guided_backprop"})
    table = dl.explain_rules(model, photo, mapping)
    assert table.counts() == {"gradient": 1, "guided_backprop": 14, "deconvnet": 2}
    assert [row.decided_by for row in table if row.rule == "deconvnet"] == ["layer4.1", "layer4.1"]


def test_other_rules_nest_inside_a_map_and_the_map_comes_back():
    model, x = _nested(), torch.randn(1, 3, 8, 8, dtype=torch.float64)
    with dl.backward_rule({"2": "deconvnet"}) as outer:
        with dl.backward_rule("guided"):
            assert dl.active_rule().name == "guided_backprop"
        assert dl.active_rule() is outer.rule
        model(x.requires_grad_())
    assert dl.active_rule() is None


@pytest.mark.filterwarnings("ignore:There is a performance drop because we have not yet implemented")
def test_maps_work_inside_torch_func_transforms():
    model = small_cnn()
    torch.manual_seed(2)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    mapping = {"1": "guided_backprop", nn.ReLU: "deconvnet"}
    expected = dl.attribute(model, x, 2, rule=mapping)

    def score(example):
        return model(example[None])[0, 2]

    with dl.backward_rule(mapping, model=model):
        per_example = torch.func.vmap(torch.func.grad(score))(x)
        one = torch.func.grad(score)(x[0])
    _assert_equal(per_example.detach(), expected)
    _assert_equal(one.detach(), expected[0])


@pytest.mark.filterwarnings("ignore:Using `torch.compile\\(module\\)` when there are global hooks")
def test_a_map_on_a_compiled_module_is_refused():
    model = small_cnn()
    compiled = torch.compile(model, backend="eager")
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    # Current PyTorch calls the interceptor, which refuses the map (RuleNotAppliedError). PyTorch
    # 2.5 traces the ReLU instead; the refusal then reaches the user wrapped in TorchDynamo's own
    # RuntimeError subclass, with deconvlab's message naming the fix.
    with pytest.raises(RuntimeError, match=r"rule map.*torch\.compile.*_orig_mod") as refused:
        with dl.backward_rule({"1": "guided"}):
            compiled(x)
    assert isinstance(refused.value, RuleNotAppliedError) or "ReLU is being traced" in str(refused.value)
    torch._dynamo.reset()
    _assert_equal(
        dl.attribute(compiled, x.detach(), 1, rule={"1": "guided"}),
        dl.attribute(model, x, 1, rule={"1": "guided"}),
    )


# --- bad maps are named ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "kwargs", "error", "message"),
    [
        ({3: "gradient"}, {}, TypeError, r"entries: a key must be a module path pattern.*not int"),
        ({int: "gradient"}, {}, TypeError, r"key int is a type but no nn\.Module type"),
        ({nn.ReLU(): "gradient"}, {}, TypeError, r"key is a module \(ReLU\); give its path"),
        ({lambda name: True: "gradient"}, {}, TypeError, r"predicate '<lambda>' must take two arguments"),
        ({"features.*": 3}, {}, TypeError, r"the rule for 'features\.\*': rule must be a rule name"),
        ({"features.*": "guided-backprop"}, {}, ValueError, r"unknown rule 'guided-backprop'.*did you mean"),
        ({"features.*": {"a": "gradient"}}, {}, TypeError, r"rule maps do not nest"),
        ({}, {}, ValueError, r"entries is empty"),
        ({"": "gradient"}, {}, ValueError, r"empty pattern ''; use '\*'"),
        ("features.*", {}, TypeError, r"entries must be a dict"),
        ([("a", "gradient"), ("a", "deconvnet")], {}, ValueError, r"lists the key 'a' twice"),
        ([("a", "gradient", 1)], {}, TypeError, r"sequence of \(where, rule\) pairs"),
        ({"a": "gradient"}, {"default": "nope"}, ValueError, r"default: unknown rule 'nope'"),
        ({"a": "gradient"}, {"default": None}, TypeError, r"default: rule must be"),
        ({"a": "gradient"}, {"name": 3}, TypeError, r"name must be a string"),
        ({"a": "gradient"}, {"name": ""}, ValueError, r"name is empty"),
    ],
)
def test_bad_rule_maps_are_named(entries, kwargs, error, message):
    with pytest.raises(error, match=message):
        dl.RuleMap(entries, **kwargs)


def test_a_bad_map_given_as_rule_names_the_argument():
    model = small_cnn()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^rule: entries: a key must be"):
        dl.attribute(model, x, 1, rule={3: "gradient"})
    with pytest.raises(TypeError, match=r"^rules\[1\]: entries: the rule for 'a'"):
        dl.attribute(model, x, 1, rules=["gradient", {"a": 3}])
    with pytest.raises(TypeError, match=r"^rule: entries"):
        dl.backward_rule({"a": None})
    with pytest.raises(
        TypeError, match=r"^rule must be a rule name .*, not int; .*or a rule per layer: a dict"
    ):
        dl.backward_rule(3)
    with pytest.raises(TypeError, match=r"rules must be a list"):
        dl.attribute(model, x, 1, rules={"1": "guided"})


def test_an_entry_matching_no_module_lists_the_model_paths():
    model = small_cnn()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    paths = "Its module paths: 0, 1, 2, 3, 4, 5, 6, 7$"
    with pytest.raises(
        ValueError, match=r"^rule: rule map .*the entry '9' matches no module of the Sequential.*" + paths
    ):
        dl.attribute(model, x, 1, rule={"1": "guided", "9": "deconvnet"})
    with pytest.raises(ValueError, match=r"entry 'Conv1d' .*\(its module types: Conv2d, Flatten, Linear"):
        dl.project(model, x, "3", 0, rule={nn.Conv1d: "guided"})

    def never(path, module):
        return False

    with pytest.raises(ValueError, match=r"^rules\[1\]: .*entry 'never'"):
        dl.attribute(model, x, 1, rules=["gradient", {never: "guided"}])
    with pytest.raises(
        ValueError, match=r"^mapping: .*entry '1\.\*' matches no module of the Sequential\. Its"
    ):
        dl.explain_rules(model, x, {"1.*": "guided"})
    with pytest.raises(ValueError, match=r"^rule: .*entry '9'"):
        dl.backward_rule({"9": "guided"}, model=model)
    with pytest.raises(ValueError, match=r"entry '9' matches no module"), dl.backward_rule({"9": "guided"}):
        model(x.requires_grad_())  # matched when the model runs its first ReLU
    assert dl.active_rule() is None


def test_a_big_model_lists_its_shallow_paths_and_a_count(photo):
    with pytest.raises(ValueError) as raised:
        dl.attribute(_torchvision("densenet121"), photo, 1, rule={"features.denseblock9*": "guided"})
    message = str(raised.value)
    assert "did you mean 'features.denseblock4'" in message
    assert re.search(
        r"Its module paths: features, features\.conv0, .*, classifier and \d+ more \(all of them: ", message
    )
    assert len(message) < 700


def test_duplicate_names_and_bad_explain_arguments():
    model = small_cnn()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    same = [dl.RuleMap({"1": "guided"}), dl.RuleMap({"1": "guided"})]
    with pytest.raises(
        ValueError, match=r"rules\[1\]: '1: guided_backprop, else gradient' is listed twice.*name="
    ):
        dl.attribute(model, x, 1, rules=same)
    with pytest.raises(ValueError, match=r"rules\[1\]: 'gradient' is listed twice"):
        dl.attribute(model, x, 1, rules=[dl.RuleMap({"1": "guided"}, name="gradient"), "gradient"])
    with pytest.raises(TypeError, match=r"^mapping must be a rule map"):
        dl.explain_rules(model, x, "guided")
    with pytest.raises(TypeError, match=r"^model must be the torch\.nn\.Module"):
        dl.backward_rule({"1": "guided"}, model="model")
    with pytest.raises(TypeError, match=r"^x must be a torch\.Tensor"):
        dl.explain_rules(model, x.numpy(), {"1": "guided"})


def test_a_map_leaves_no_hooks_and_no_rule_behind():
    model = small_cnn()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dl.attribute(model, x, 1, rule={"1": "guided"})
        dl.explain_rules(model, x, {"1": "guided"})
    assert dl.active_rule() is None and model.training  # left in the mode it was found in
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks
