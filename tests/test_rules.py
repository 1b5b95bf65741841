"""The rules are the theory table, entry by entry; the registry resolves and protects them."""

import pytest
import torch

import deconvlab as dl
from deconvlab.rules import deconvnet, gradient, guided_backprop

# (x, p) -> (gradient, deconvnet, guided_backprop), straight from the theory table.
TABLE = [
    ((2.0, 3.0), (3.0, 3.0, 3.0)),
    ((2.0, -3.0), (-3.0, 0.0, 0.0)),
    ((-2.0, 3.0), (0.0, 3.0, 0.0)),
    ((-2.0, -3.0), (0.0, 0.0, 0.0)),
    ((0.0, 3.0), (0.0, 3.0, 0.0)),  # the gate is closed at x == 0
    ((0.0, -3.0), (0.0, 0.0, 0.0)),
    ((1.0, 0.0), (0.0, 0.0, 0.0)),
]


@pytest.mark.parametrize(("xp", "expected"), TABLE)
def test_each_rule_is_its_table_entry(xp, expected):
    x, p = (torch.tensor([value]) for value in xp)
    got = [float(rule(x, p)) for rule in (gradient, deconvnet, guided_backprop)]
    assert got == list(expected)


def test_rules_are_elementwise_over_tensors():
    x, p = torch.randn(50, 7), torch.randn(50, 7)
    torch.testing.assert_close(gradient(x, p), torch.where(x > 0, p, 0.0))
    torch.testing.assert_close(deconvnet(x, p), p.clamp(min=0))
    torch.testing.assert_close(guided_backprop(x, p), torch.where(x > 0, p.clamp(min=0), 0.0))


def test_fused_gates_equal_the_multiplied_brackets_bit_for_bit():
    x, p = torch.randn(4, 8, 9, 9), torch.randn(4, 8, 9, 9)
    x[0, 0, 0] = 0.0
    p[0, 0, 1] = 0.0
    assert torch.equal(gradient(x, p), p * (x > 0))
    assert torch.equal(deconvnet(x, p), p * (p > 0))
    assert torch.equal(guided_backprop(x, p), p * (x > 0) * (p > 0))
    p_before = p.clone()
    guided_backprop(x, p)
    assert torch.equal(p, p_before)  # the in-place clamp never touches the incoming signal


def test_gradient_rule_is_autograds_relu_derivative():
    x = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    p = torch.tensor([5.0, 5.0, 5.0])
    torch.relu(x).backward(p)
    torch.testing.assert_close(gradient(x.detach(), p), x.grad)


def test_each_rule_describes_itself_and_its_docstring_says_the_same():
    described = {
        rule.name: (rule.label, rule.equation, rule.reference.split(",")[0]) for rule in dl.BUILTIN_RULES
    }
    assert described == {
        "gradient": ("gradient", "p · [x > 0]", "Simonyan"),
        "deconvnet": ("DeConvNet", "p · [p > 0]", "Zeiler & Fergus"),
        "guided_backprop": ("guided backprop", "p · [x > 0] · [p > 0]", "Springenberg"),
    }
    for rule in dl.BUILTIN_RULES:
        assert rule.equation in rule.backward.__doc__ and rule.reference in rule.backward.__doc__
        assert rule.describe().startswith(f"{rule.label}: ReLU*(x, p) = {rule.equation}")
    assert guided_backprop.latex == r"p \cdot [x > 0] \cdot [p > 0]"


def test_a_user_rule_carries_its_own_description():
    rule = dl.register_rule("test_half", lambda x, p: p / 2, equation="p / 2", reference="a test")
    assert (rule.label, rule.equation, rule.reference) == ("test_half", "p / 2", "a test")
    assert dl.get_rule("test_half") is rule


def test_presentation_reads_the_rule_not_a_copy():
    from deconvlab import cli, viz

    assert viz.rule_label("guided") == "guided backprop" and viz.rule_label("my_key") == "my_key"
    assert "p · [p &gt; 0]" in viz.rule_heading("deconvnet")
    assert cli._rules("guided,deconvnet") == ["guided_backprop", "deconvnet"]  # aliases work in the CLI


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("guided", "guided_backprop"),
        ("guided_backprop", "guided_backprop"),
        ("deconvnet", "deconvnet"),
        ("gradient", "gradient"),
        ("vanilla", "gradient"),
        ("saliency", "gradient"),
    ],
)
def test_names_and_aliases_resolve(name, canonical):
    assert dl.get_rule(name).name == canonical


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("Guided-Backprop", "guided_backprop"),
        ("GRADIENT", "gradient"),
        ("DeConvNet", "deconvnet"),
        ("guided backprop", "guided_backprop"),
        ("Guided", "guided"),
    ],
)
def test_a_builtin_spelled_differently_is_refused_naming_the_spelling(name, meant):
    with pytest.raises(ValueError, match=f"matched exactly; did you mean '{meant}'"):
        dl.get_rule(name)


def test_user_rules_are_selected_exactly_as_registered():
    mine = dl.register_rule("MyRule", lambda x, p: p * 0.5)
    assert dl.get_rule("MyRule") is mine
    with pytest.raises(ValueError, match="unknown rule 'myrule'"):
        dl.get_rule("myrule")
    with pytest.raises(ValueError, match="differs from the built-in 'deconvnet' only in case"):
        dl.register_rule("Deconvnet", lambda x, p: p)
    assert dl.get_rule("deconvnet") is dl.rules.deconvnet


def test_unknown_rule_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown rule 'backprop'.*gradient, deconvnet, guided_backprop"):
        dl.get_rule("backprop")
    with pytest.raises(TypeError, match="rule must be a rule name"):
        dl.get_rule(3)


def test_register_rule_is_used_by_attribute(images):
    rule = dl.register_rule("all_pass", lambda x, p: p)
    assert "all_pass" in dl.rule_names()
    # A rule that passes everything makes a ReLU network linear: the map is W1^T w2.
    linear = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 5)
    ).double()
    expected = (linear[3].weight[1] @ linear[1].weight).view(3, 16, 16)
    for selected in ("all_pass", rule):
        torch.testing.assert_close(dl.attribute(linear, images, 1, rule=selected)[0], expected)


def test_register_rule_gets_the_true_input_even_for_inplace_relus():
    seen = []

    def spy(x, p):
        seen.append(x.clone())
        return p * (x > 0)

    dl.register_rule("spy", spy)
    h = torch.tensor([[-2.0, 3.0]], requires_grad=True)
    with dl.backward_rule("spy"):
        y = torch.nn.ReLU(inplace=True)(h * 1)
    y.sum().backward()
    torch.testing.assert_close(seen[0], torch.tensor([[-2.0, 3.0]]))  # x, not relu(x)


def test_register_rule_can_be_rerun_but_builtins_are_protected():
    dl.register_rule("mine", lambda x, p: p)
    dl.register_rule("mine", lambda x, p: 2 * p)  # re-running a notebook cell
    with pytest.raises(ValueError, match="built-in"):
        dl.register_rule("deconvnet", lambda x, p: p)
    with pytest.raises(ValueError, match="built-in"):
        dl.register_rule("guided", lambda x, p: p)
    with pytest.raises(ValueError, match="identifier"):
        dl.register_rule("my rule", lambda x, p: p)
    with pytest.raises(TypeError, match="callable"):
        dl.register_rule("nope", 3)


def test_a_rule_returning_the_wrong_shape_is_named_in_the_error():
    dl.register_rule("broken", lambda x, p: p.sum())
    h = torch.randn(4, requires_grad=True)
    with dl.backward_rule("broken"):
        y = torch.relu(h * 1)
    with pytest.raises(RuntimeError, match=r"rule 'broken'.*shaped like p"):
        y.sum().backward()
